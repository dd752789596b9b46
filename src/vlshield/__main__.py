from vlshield.cli import main

raise SystemExit(main())
