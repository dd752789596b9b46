"""Run a grid's cells: poison -> train -> evaluate, one result file per cell, finished cells skipped.

Layout of a results directory ``OUT``:

    OUT/cells/<cell>.json     one result per cell (status "ok" or "failed"), written atomically
    OUT/data/<data key>--<digest>/   poisoned datasets, shared by cells that differ only in model or defense
    OUT/runs/<cell>/          the run directory (config, loss log, metrics, predictions); its
                              checkpoints/ and model/ are deleted once the result is written
                              unless ``keep_runs``
    OUT/grids/<name>.json     the resolved grid of the last invocation

A cell whose file says "ok" is skipped, so a killed benchmark resumes where it stopped (a cell
killed mid-training resumes from its last checkpoint, or starts again if the vlshield source has
changed since). A cell whose file says "failed" is run
again by the next invocation. ``Shard(i, n)`` takes the cells whose index in ``grid.cells()``
is ``i`` modulo ``n``, so n processes split a grid without talking to each other, e.g. a SLURM
array: ``vlshield benchmark --grid paper --out results --shard $SLURM_ARRAY_TASK_ID/8``. Several
shards on one CPU machine should share its cores (``OMP_NUM_THREADS=1`` each on 2 cores): torch
threads fighting over oversubscribed cores made training 5-10x slower here. ``workers=N`` does
that within one invocation: N cells at a time in worker processes with one torch thread each
(the demo: 356 s against 503 s one cell at a time on two threads, on 2 cores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import queue
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vlshield.benchmark.estimate import estimate_cell_seconds
from vlshield.benchmark.grid import Cell, GridConfig, check_grid, config_digest
from vlshield.benchmark.progress import GridProgress
from vlshield.config import ConfigError, to_dict
from vlshield.evaluation.evaluate import evaluate_run
from vlshield.poisoning import PoisonConfig, poison_dataset
from vlshield.storage import atomic_write_json, run_info
from vlshield.training.loop import train

BULKY_RUN_PARTS = ("checkpoints", "model")
LONG_LIST = 50  # longer lists in a defense summary stay in RUN/train_summary.json only


@dataclasses.dataclass(frozen=True)
class Shard:
    """Cells whose grid index is ``index`` modulo ``count`` (0-based), e.g. ``Shard(1, 4)`` from ``--shard 1/4``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard: {self.index}/{self.count} needs 0 <= I < N (cells with index % N == I)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` -> ``Shard(I, N)``."""
        index, slash, count = text.partition("/")
        if not slash or not index.strip().isdigit() or not count.strip().isdigit():
            raise ConfigError(f"--shard: {text!r} must look like I/N, e.g. 0/4")
        return cls(int(index), int(count))

    def select(self, cells: list[Cell]) -> list[tuple[int, Cell]]:
        """(grid index, cell) of this shard's cells."""
        return [(i, cell) for i, cell in enumerate(cells) if i % self.count == self.index]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything of a results directory lives."""

    root: Path

    def cell_file(self, cell: Cell) -> Path:
        return self.root / "cells" / f"{cell.name}.json"

    def run_dir(self, cell: Cell) -> Path:
        return self.root / "runs" / cell.name

    def data_dir(self, cell: Cell, poison: PoisonConfig) -> Path:
        return self.root / "data" / f"{cell.data_key}--{config_digest(poison)}"


def cell_status(path: Path) -> str:
    """ "ok", "failed" or "pending" (no file, or one that cannot be read)."""
    try:
        return json.loads(path.read_text()).get("status", "pending")
    except (OSError, ValueError):
        return "pending"


@dataclasses.dataclass
class GridOutcome:
    """What one invocation did: cell names by what happened to them."""

    ran: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)


def plan(grid: GridConfig, out: str | Path, shard: Shard = Shard()) -> list[dict[str, Any]]:
    """This shard's cells with their grid index, status and estimated seconds (for ``--dry-run``)."""
    layout = Layout(Path(out))
    return [
        {
            "index": index,
            "cell": cell,
            "status": cell_status(layout.cell_file(cell)),
            "estimate_seconds": estimate_cell_seconds(grid, cell),
        }
        for index, cell in shard.select(check_grid(grid))
    ]


def run_grid(
    grid: GridConfig,
    out: str | Path,
    shard: Shard = Shard(),
    keep_runs: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> GridOutcome:
    """Run this shard's unfinished cells of ``grid`` into ``out``; the grid is checked first, as a whole.

    ``workers`` > 1 runs that many cells at a time, each in its own process with one torch thread
    (longest estimated cells first), so a cell's numbers do not depend on how many cores the
    machine has: they equal a one-by-one run with ``OMP_NUM_THREADS=1``. ``workers`` = 1 runs the
    cells one by one in this process, with torch's threads as they are.
    A cell that raises is recorded as failed (error and traceback tail) and the grid goes on;
    KeyboardInterrupt (or, with workers, SIGTERM) stops it with nothing recorded for the current cells.
    """
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    cells = shard.select(check_grid(grid))
    layout = Layout(Path(out))
    atomic_write_json(layout.root / "grids" / f"{grid.name}.json", to_dict(grid))
    finished = {cell.name for _, cell in cells if cell_status(layout.cell_file(cell)) == "ok"}
    outcome = GridOutcome(skipped=[cell.name for _, cell in cells if cell.name in finished])
    pending = [(index, cell) for index, cell in cells if cell.name not in finished]
    estimates = {cell.name: estimate_cell_seconds(grid, cell) for _, cell in pending}
    display = GridProgress(len(cells), estimates, enabled=progress, workers=min(workers, max(1, len(pending))))
    display.skipped(len(finished))
    try:
        if workers > 1 and pending:
            _run_in_workers(grid, pending, layout, keep_runs, display, outcome, workers)
        else:
            for index, cell in pending:
                if cell_status(layout.cell_file(cell)) == "ok":  # another process on the same --out finished it
                    outcome.skipped.append(cell.name)
                    continue
                display.start(index, cell)
                record = run_cell(grid, cell, layout.root, keep_runs=keep_runs, on_stage=display.stage)
                display.finish(cell, record)
                (outcome.ran if record["status"] == "ok" else outcome.failed).append(cell.name)
    finally:
        display.close()
    return outcome


def _run_in_workers(
    grid: GridConfig,
    pending: list[tuple[int, Cell]],
    layout: Layout,
    keep_runs: bool,
    display: GridProgress,
    outcome: GridOutcome,
    workers: int,
) -> None:
    """Run ``pending`` cells ``workers`` at a time in spawned processes; their stages come back through a queue.

    The workers ignore Ctrl-C; this process stops them (leaving the cells they were running
    unrecorded, to resume) when it is interrupted, by Ctrl-C or by SIGTERM (a scheduler's stop, `kill`):
    killed by SIGTERM alone, it left its workers training on, orphaned, each to write its cell later.
    """
    context = multiprocessing.get_context("spawn")  # fork would copy this process's torch threads and locks
    order = sorted(pending, key=lambda item: -display.estimates[item[1].name])
    indexed = {cell.name: (index, cell) for index, cell in order}
    events = context.Queue()
    pool = context.Pool(min(workers, len(order)), initializer=_start_worker, initargs=(events,))
    with _sigterm_exits():
        try:
            arguments = {cell.name: (grid, cell, layout.root, keep_runs) for _, cell in order}
            results = {name: pool.apply_async(_run_cell_in_worker, args) for name, args in arguments.items()}
            ended: set[str] = set()
            while len(ended) < len(results):
                _show_events(events, display, indexed, ended)
                for name, result in results.items():
                    if name in ended or not result.ready():
                        continue
                    ended.add(name)
                    record = result.get()
                    if record is None:  # another process on the same --out finished it
                        outcome.skipped.append(name)
                        continue
                    index, cell = indexed[name]
                    if name not in display.running:  # its "start" event is still on the way
                        display.start(index, cell)
                    display.finish(cell, record)
                    (outcome.ran if record["status"] == "ok" else outcome.failed).append(name)
        except BaseException:
            pool.terminate()  # interrupted: stop the workers' cells (each resumes next time)
            raise
        else:
            pool.close()  # every cell is done: let the workers exit on their own
        finally:
            pool.join()
            events.close()
            events.join_thread()


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in this process (the main thread's handler), so that the code it
    interrupts unwinds as after Ctrl-C; the previous handler comes back on exit. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on_sigterm(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show_events(events: Any, display: GridProgress, indexed: dict[str, tuple[int, Cell]], ended: set[str]) -> None:
    """Pass the workers' (cell name, stage) events to the display for 0.5 s; stage "start" starts a cell."""
    deadline = time.monotonic() + 0.5
    while (left := deadline - time.monotonic()) > 0:
        try:
            name, stage = events.get(timeout=left)
        except queue.Empty:
            return
        if name in ended:
            continue
        if stage == "start":
            display.start(*indexed[name])
        elif name in display.running:
            display.stage(stage, name)


_EVENTS: Any = None  # a worker process's queue of (cell name, stage) events


def _start_worker(events: Any) -> None:
    """A worker: one torch thread, Ctrl-C left to the parent, events to ``events``, no Hugging Face bars."""
    import torch
    from transformers.utils import logging as hf_logging

    global _EVENTS
    _EVENTS = events
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()


def _run_cell_in_worker(grid: GridConfig, cell: Cell, out: Path, keep_runs: bool) -> dict[str, Any] | None:
    """``run_cell`` in a worker process, or None if the cell's file already says "ok"."""
    if cell_status(Layout(out).cell_file(cell)) == "ok":
        return None
    _EVENTS.put((cell.name, "start"))
    return run_cell(grid, cell, out, keep_runs=keep_runs, on_stage=lambda stage: _EVENTS.put((cell.name, stage)))


def run_cell(
    grid: GridConfig,
    cell: Cell,
    out: str | Path,
    keep_runs: bool = False,
    on_stage: Callable[[str], None] = lambda stage: None,
) -> dict[str, Any]:
    """Poison (or reuse), train and evaluate one cell; write ``OUT/cells/<cell>.json`` and return its record."""
    layout = Layout(Path(out))
    poison = grid.poison_config(cell)
    data_dir = layout.data_dir(cell, poison)
    run_dir = layout.run_dir(cell)
    config = grid.run_config(cell, data_dir)
    record: dict[str, Any] = {
        "name": cell.name,
        "grid": grid.name,
        "cell": dataclasses.asdict(cell),
        "config": {"poison": to_dict(poison), "run": to_dict(config)},
        "data_dir": str(data_dir),
        "run_dir": str(run_dir),
        "started_at": _now(),
        **run_info(),
    }
    timings: dict[str, float] = {}
    stage = "poison"
    try:
        on_stage(stage)
        with _timed(timings, "poison_seconds"):
            record["poison_cached"] = _ensure_poisoned(poison, data_dir)
        stage = "train"
        on_stage(stage)
        with _timed(timings, "train_seconds"):
            summary = _train(config, run_dir)
        stage = "evaluate"
        on_stage(stage)
        with _timed(timings, "eval_seconds"):
            metrics = evaluate_run(
                run_dir, data_dir, config.eval.batch_size, config.eval.max_new_tokens, progress=False
            )
    except Exception as error:  # a crashing cell is recorded and the grid goes on
        record.update(status="failed", stage=stage, error=f"{type(error).__name__}: {error}")
        record["traceback"] = traceback.format_exc().splitlines()[-20:]
    else:
        record.update(status="ok", metrics=metrics, train=_train_record(summary))
    record["timings"] = {**timings, "total_seconds": sum(timings.values())}
    record["finished_at"] = _now()
    atomic_write_json(layout.cell_file(cell), record)
    if record["status"] == "ok" and not keep_runs:
        for part in BULKY_RUN_PARTS:
            shutil.rmtree(run_dir / part, ignore_errors=True)
    return record


def _ensure_poisoned(config: PoisonConfig, data_dir: Path) -> bool:
    """Write the poisoned dataset unless it is there; True if it was (cached).

    It is written to a private temporary directory and renamed into place, so that shards
    poisoning the same data at once never touch each other's files: the first rename wins and
    the others' identical copies are dropped.
    """
    if (data_dir / "config.json").is_file():
        return True
    tmp = data_dir.with_name(f".{data_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    poison_dataset(config, tmp, progress=False)
    try:
        os.rename(tmp, data_dir)
    except OSError:
        if not (data_dir / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return False


def _train(config, run_dir: Path) -> dict[str, Any]:
    """Train, resuming a run that a killed benchmark left behind; a run that cannot resume starts again."""
    if (run_dir / "config.json").is_file():
        try:
            return train(config, run_dir, resume=True, progress=False)
        except ConfigError:
            shutil.rmtree(run_dir)
    elif run_dir.exists():
        shutil.rmtree(run_dir)
    return train(config, run_dir, resume=False, progress=False)


def _train_record(summary: dict[str, Any]) -> dict[str, Any]:
    """Steps, seconds, the last logged losses and the defense's decisions.

    Every list in the defense summary gets a ``<key>_count``; lists longer than ``LONG_LIST``
    (per-sample scores) stay in ``RUN/train_summary.json`` only.
    """
    record = {key: summary.get(key) for key in ("steps", "epochs", "train_seconds")}
    record["final_losses"] = summary["log"][-1] if summary.get("log") else {}
    defense: dict[str, Any] = {}
    for key, value in (summary.get("defense") or {}).items():
        if isinstance(value, list):
            defense[f"{key}_count"] = len(value)
            if len(value) > LONG_LIST:
                continue
        defense[key] = value
    record["defense"] = defense
    return record


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the block's wall time in ``timings[key]`` (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(time.perf_counter() - started, 3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
