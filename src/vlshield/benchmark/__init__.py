"""The benchmark: a grid of cells (poison -> train -> evaluate), its runner and its report.

- ``grid``: ``GridConfig`` (YAML), ``Cell``, ``load_grid``, ``check_grid`` (names every bad entry).
- ``runner``: ``run_grid`` / ``run_cell`` (one result file per cell, finished cells skipped), ``Shard``.
- ``report``: ``build_report`` (Markdown table, CSV, plots from the result files only).
- ``estimate``, ``progress``, ``plots``: time estimates, the progress display, the PNG plots.

Submodules are imported where used, so that reading results never loads the models.
"""
