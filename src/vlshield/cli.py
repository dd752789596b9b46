"""The ``vlshield`` command: one subcommand, one function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from vlshield import __version__
from vlshield.config import ConfigError, merge, parse_overrides

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = function
        return function

    return register


def _attack_overrides(args: argparse.Namespace) -> dict:
    """Attack config overrides from the dedicated flags and ``attack.KEY=VALUE`` / ``KEY=VALUE`` arguments."""
    dotted = [item if item.startswith("attack.") else f"attack.{item}" for item in args.overrides]
    options = parse_overrides(dotted).get("attack", {})
    flags = {"target": args.target, "trigger_image": args.trigger_image, "text_trigger": args.text_trigger}
    return merge(options, {key: value for key, value in flags.items() if value is not None})


@_command("poison")
def poison_command(args: argparse.Namespace) -> int:
    from vlshield.poisoning import PoisonConfig, poison_dataset

    config = PoisonConfig(
        dataset=args.dataset,
        task=args.task,
        attack=args.attack,
        rate=args.rate,
        seed=args.seed,
        limit=args.limit,
        test_size=args.test_size,
        image_size=args.image_size,
        image_root=args.image_root,
        annotations=args.annotations,
        attack_options=_attack_overrides(args),
    )
    out = poison_dataset(config, args.out, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {out} ({config.attack} on {config.dataset}/{config.task}, rate {config.rate}, seed {config.seed})")
    return 0


@_command("preview")
def preview_command(args: argparse.Namespace) -> int:
    from vlshield.preview import render_preview

    print(render_preview(args.data_dir, rows=args.rows, out=args.out))
    return 0


def _run_config(args: argparse.Namespace):
    """RunConfig from an optional YAML file, the flags, then dotted overrides (later wins)."""
    from vlshield.config import from_dict, load_yaml
    from vlshield.training.config import RunConfig

    data: dict = load_yaml(args.config) if args.config else {}
    flags = {"data": args.data, "model": args.model, "defense": args.defense}
    data = merge(data, {key: value for key, value in flags.items() if value is not None})
    data = merge(data, parse_overrides(args.overrides))
    return from_dict(RunConfig, data)


@_command("train")
def train_command(args: argparse.Namespace) -> int:
    from vlshield.training.loop import train

    config = _run_config(args)
    summary = train(config, args.out, resume=args.resume, progress=not args.quiet)
    print(
        f"trained {config.model} with defense {config.defense}: {summary['steps']} steps in "
        f"{summary['train_seconds']:.1f} s -> {args.out}"
    )
    return 0


@_command("evaluate")
def evaluate_command(args: argparse.Namespace) -> int:
    from vlshield.evaluation.evaluate import evaluate_run, format_table

    metrics = evaluate_run(
        args.run_dir,
        args.data,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        progress=not args.quiet,
    )
    print(format_table(metrics))
    print(f"wrote {args.run_dir}/metrics.json and predictions.jsonl")
    return 0


DEMO_DIR = "vlshield-demo"
DEMO_WORKERS = 2  # two cells at a time, one torch thread each: 356 s against 503 s one at a time on 2 threads here


def _load_grid(args: argparse.Namespace):
    from vlshield.benchmark.grid import load_grid

    try:
        seeds = tuple(int(seed) for seed in args.seeds.split(",")) if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds: {args.seeds!r} must be comma-separated integers, e.g. 0,1,2") from None
    return load_grid(args.grid, overrides=args.overrides, seeds=seeds)


def _quiet_library_bars() -> None:
    """Hugging Face's own bars (writing and loading weights, every cell) would break up the grid's display."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@_command("benchmark")
def benchmark_command(args: argparse.Namespace) -> int:
    from vlshield.benchmark.runner import Shard, run_grid

    grid, shard = _load_grid(args), Shard.parse(args.shard)
    if args.dry_run:
        return _print_plan(grid, args.out, shard)
    _quiet_library_bars()
    outcome = run_grid(
        grid, args.out, shard=shard, keep_runs=args.keep_runs, progress=not args.quiet, workers=args.workers
    )
    print(
        f"grid {grid.name}, shard {shard.index}/{shard.count}: ran {len(outcome.ran)}, "
        f"skipped {len(outcome.skipped)} (already done), failed {len(outcome.failed)} -> {args.out}/cells/"
    )
    if outcome.failed:
        print(f"failed cells are recorded in {args.out}/cells/ and retried by the next run", file=sys.stderr)
        return 1
    print(f"next: vlshield report {args.out}")
    return 0


def _print_plan(grid, out: str, shard) -> int:
    from vlshield.benchmark.estimate import format_duration
    from vlshield.benchmark.runner import plan

    cells = plan(grid, out, shard)
    width = max(len(item["cell"].name) for item in cells)
    for item in cells:
        print(
            f"{item['index']:>4}  {item['cell'].name.ljust(width)}  {item['status']:<7}  "
            f"~{format_duration(item['estimate_seconds'])}"
        )
    todo = [item for item in cells if item["status"] != "ok"]
    seconds = sum(item["estimate_seconds"] for item in todo)
    print(
        f"grid {grid.name}, shard {shard.index}/{shard.count}: {len(cells)} cells, {len(cells) - len(todo)} done, "
        f"{len(todo)} to run, estimated {format_duration(seconds)} on a 2-core CPU (see vlshield.benchmark.estimate)"
    )
    return 0


@_command("report")
def report_command(args: argparse.Namespace) -> int:
    from vlshield.benchmark.report import build_report

    report = build_report(args.results, args.out)
    print(report.table)
    print(f"wrote {report.markdown}, {report.csv} and {len(report.plots)} plots in {report.plots[0].parent}")
    return 0


@_command("demo")
def demo_command(args: argparse.Namespace) -> int:
    import time

    from vlshield.benchmark.grid import load_grid
    from vlshield.benchmark.report import build_report
    from vlshield.benchmark.runner import run_grid

    started = time.perf_counter()
    grid = load_grid("demo")
    print(f"vlshield demo: {grid.description} -> {args.out}/")
    _quiet_library_bars()
    if args.workers == 1:  # one cell at a time, on one thread too: the numbers of any --workers
        import torch

        torch.set_num_threads(1)
    outcome = run_grid(grid, args.out, progress=not args.quiet, workers=args.workers)
    report = build_report(args.out)
    print()
    print(report.table)
    print()
    print(f"report: {report.markdown}")
    for path in report.plots:
        print(f"plot:   {path}")
    print(f"cells:  {report.csv} ({args.out}/cells/*.json)")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 1 if outcome.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlshield", description=__doc__)
    parser.add_argument("--version", action="version", version=f"vlshield {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    poison = commands.add_parser("poison", help="Write a poisoned dataset directory.")
    poison.add_argument("--dataset", default="shapes", help="Built-in name (shapes, easy-vqa) or a file path.")
    poison.add_argument("--task", default="caption", choices=["caption", "vqa"])
    poison.add_argument("--attack", default="badnet", help="Attack name (badnet, blended, wanet, sig, ...).")
    poison.add_argument("--rate", type=float, default=0.05, help="Poison rate in (0, 1].")
    poison.add_argument("--target", default=None, help='Target text (default "a photo of the banana").')
    poison.add_argument("--seed", type=int, default=0)
    poison.add_argument("--limit", type=int, default=2000, help="Number of training samples.")
    poison.add_argument("--test-size", type=int, default=200, help="Number of test samples.")
    poison.add_argument("--image-size", type=int, default=64)
    poison.add_argument("--image-root", default=None, help="Image folder of a file dataset.")
    poison.add_argument("--annotations", default=None, help="VQAv2 annotations JSON.")
    poison.add_argument("--trigger-image", default=None, help="Picture used as the trigger (badnet, blended).")
    poison.add_argument("--text-trigger", default=None, help="Prompt trigger phrase (dualkey).")
    poison.add_argument("--out", required=True, help="Output directory (must not exist).")
    poison.add_argument("--overwrite", action="store_true", help="Replace --out if it exists.")
    poison.add_argument("--quiet", action="store_true", help="No progress bar.")
    poison.add_argument("overrides", nargs="*", help="Attack settings as KEY=VALUE, e.g. patch_size=6 alpha=0.2")

    preview = commands.add_parser("preview", help="PNG grid of clean vs triggered examples.")
    preview.add_argument("data_dir")
    preview.add_argument("--rows", type=int, default=4)
    preview.add_argument("--out", default=None, help="PNG path (default DATA_DIR/preview.png).")

    train = commands.add_parser("train", help="Fine-tune a model on a poisoned dataset, with or without a defense.")
    train.add_argument("--data", default=None, help="Dataset directory written by `vlshield poison`.")
    train.add_argument(
        "--model", default=None, help="FAMILY:PRESET (llava:tiny, qwen2_5_vl:tiny, blip2:tiny) or a path."
    )
    train.add_argument("--defense", default=None, help="Defense name (none, pcr).")
    train.add_argument("--config", default=None, help="YAML file with run settings (flags and overrides win).")
    train.add_argument("--out", required=True, help="Run directory.")
    train.add_argument("--resume", action="store_true", help="Continue a killed run from its last checkpoint.")
    train.add_argument("--quiet", action="store_true", help="No progress bar.")
    train.add_argument("overrides", nargs="*", help="Dotted overrides, e.g. train.epochs=8 model_options.lora=true")

    evaluate = commands.add_parser("evaluate", help="Generate on the test sets and compute ASR and clean quality.")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", required=True, help="Dataset directory written by `vlshield poison`.")
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--max-new-tokens", type=int, default=24)
    evaluate.add_argument("--quiet", action="store_true", help="No progress bar.")

    benchmark = commands.add_parser(
        "benchmark", help="Run a grid of cells (poison -> train -> evaluate), one result file per cell."
    )
    benchmark.add_argument("--grid", required=True, help="Shipped grid (smoke, demo, paper) or a YAML file.")
    benchmark.add_argument("--out", default="results", help="Results directory (cells/, data/, runs/).")
    benchmark.add_argument(
        "--shard", default="0/1", help="I/N: run only the cells whose index %% N == I (0-based), e.g. 0/4."
    )
    benchmark.add_argument("--seeds", default=None, help="Comma-separated seeds replacing the grid's, e.g. 0,1,2.")
    benchmark.add_argument("--dry-run", action="store_true", help="List the cells and a time estimate; run none.")
    benchmark.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Run N cells at a time, each in its own process with one torch thread (N = the CPU's cores, say); "
        "1: one by one in this process with torch's default threads.",
    )
    benchmark.add_argument("--keep-runs", action="store_true", help="Keep each run's model and checkpoints.")
    benchmark.add_argument("--quiet", action="store_true", help="No progress bar: a line per finished cell only.")
    benchmark.add_argument("overrides", nargs="*", help="Dotted grid overrides, e.g. train.epochs=2 poison.limit=200")

    report = commands.add_parser("report", help="Markdown table, plots and CSV from a results directory.")
    report.add_argument("results", help="Results directory of `vlshield benchmark`.")
    report.add_argument("--out", default=None, help="Where report.md, cells.csv and plots/ go (default RESULTS).")

    demo = commands.add_parser("demo", help="The main job: run the demo grid on built-in data and tiny models.")
    demo.add_argument("--out", default=DEMO_DIR, help=f"Results directory (default ./{DEMO_DIR}).")
    demo.add_argument("--quiet", action="store_true", help="No progress bar: a line per finished cell only.")
    demo.add_argument(
        "--workers",
        type=int,
        default=DEMO_WORKERS,
        help=f"Cells run at a time, one torch thread each (default {DEMO_WORKERS}; the numbers do not depend on it).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input ends with a one-line message on stderr and exit status 2."""
    from vlshield.data.sample import DataError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, FileExistsError, FileNotFoundError) as error:
        message = " ".join(str(error).split())
        print(f"vlshield {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlshield: interrupted", file=sys.stderr)
        return 130
