"""The progress display over a grid's cells: which cell, its stage, elapsed and remaining time.

One tqdm bar counts cells; its text shows the running cells (several when cells run in parallel
worker processes), each one's stage (poison, train, evaluate) and how long the stage has run,
and the bar's end shows the elapsed time and an estimate of the remaining time. The estimate is
the remaining cells' estimated seconds (``estimate.py``), scaled by how fast this machine has run
the cells finished so far and divided by the number of workers. A line per finished cell gives its
headline numbers. A background thread redraws the bar every second. Without a terminal (a log
file, a SLURM job) there is no bar: a line per cell and per stage instead.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import Any

from tqdm.auto import tqdm

from vlshield.benchmark.estimate import format_duration
from vlshield.benchmark.grid import Cell


class GridProgress:
    """Progress of one invocation over ``total`` cells; ``estimates`` maps the cells it will run to seconds.

    ``enabled`` and a terminal: a live bar. ``enabled`` without a terminal (a log file): a line
    per cell and stage. Not ``enabled``: a line per finished cell only.
    """

    def __init__(self, total: int, estimates: dict[str, float], enabled: bool = True, workers: int = 1) -> None:
        self.total, self.done, self.workers = total, 0, workers
        self.estimates = dict(estimates)
        self.started = time.perf_counter()
        self.measured = self.estimated = 0.0  # seconds of the cells finished here, actual and estimated
        self.running: dict[str, _Running] = {}  # by cell name, in the order they started
        self.verbose = enabled
        self.lock = threading.Lock()
        live = enabled and sys.stderr.isatty()
        layout = "{desc} {bar:12}| {n_fmt}/{total_fmt} cells{postfix}"
        self.bar = tqdm(total=total, disable=not live, dynamic_ncols=True, bar_format=layout)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._redraw_every, args=(1.0,), daemon=True) if live else None
        if self.thread is not None:
            self.thread.start()

    def skipped(self, count: int) -> None:
        """``count`` cells were finished by an earlier invocation."""
        if count:
            self.done += count
            self.bar.update(count)
            self._write(f"{count} of {self.total} cells already finished: skipped")

    def start(self, index: int, cell: Cell) -> None:
        now = time.perf_counter()
        with self.lock:
            self.running[cell.name] = _Running(cell, now, "", now)
            position = self.done + len(self.running)
        if self.verbose:
            self._write(f"[{position}/{self.total}] cell {index}: {cell.name}")

    def stage(self, name: str, cell_name: str | None = None) -> None:
        """The running cell ``cell_name`` (default: the only one) entered stage ``name``."""
        with self.lock:
            running = self.running[cell_name] if cell_name else next(iter(self.running.values()))
            running.stage, running.stage_started = name, time.perf_counter()
        if not self.bar.disable:
            self._redraw()
        elif self.verbose:
            prefix = f"{running.cell.name}: " if self.workers > 1 else ""
            self._write(f"  {prefix}{name} ({self._times()})")

    def finish(self, cell: Cell, record: dict[str, Any]) -> None:
        with self.lock:
            seconds = time.perf_counter() - self.running.pop(cell.name).started
            self.measured += seconds
            self.estimated += self.estimates.pop(cell.name, seconds)
            self.done += 1
        self._write(f"  {cell.name}: {describe_record(record)} ({format_duration(seconds)})")
        self.bar.update(1)
        if not self.bar.disable:
            self._redraw()

    def remaining_seconds(self) -> float:
        """Estimated seconds left: the unfinished cells, scaled by this machine's measured speed, over the workers."""
        speed = self.measured / self.estimated if self.estimated > 0 else 1.0
        left = sum(self.estimates.values())
        now = time.perf_counter()
        for running in self.running.values():
            left -= min(now - running.started, self.estimates.get(running.cell.name, 0.0))
        return max(0.0, left * speed / self.workers)

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self.bar.close()

    def _times(self) -> str:
        elapsed = format_duration(time.perf_counter() - self.started)
        return f"elapsed {elapsed}, ~{format_duration(self.remaining_seconds())} left"

    def _redraw_every(self, interval: float) -> None:
        while not self.stop.wait(interval):
            self._redraw()

    def _redraw(self) -> None:
        with self.lock:
            now = time.perf_counter()
            doing = ", ".join(
                f"{running.cell.name} | {running.stage} {format_duration(now - running.stage_started)}"
                for running in self.running.values()
            )
            times = self._times()
        self.bar.set_description_str(doing, refresh=False)
        self.bar.set_postfix_str(times, refresh=False)
        self.bar.refresh()

    def _write(self, line: str) -> None:
        if self.bar.disable:
            print(line, flush=True)
        else:
            self.bar.write(line)


@dataclasses.dataclass
class _Running:
    """A cell being run: when it started, its stage and when that started (``time.perf_counter``)."""

    cell: Cell
    started: float
    stage: str
    stage_started: float


def describe_record(record: dict[str, Any]) -> str:
    """``ok: ASR 98.0 %, CIDEr 312.4`` or ``FAILED in train: RuntimeError: ...``."""
    if record.get("status") != "ok":
        return f"FAILED in {record.get('stage')}: {record.get('error')}"
    metrics = record.get("metrics", {})
    parts = [f"ASR {_percent(metrics.get('asr'))}"]
    if "cider" in metrics:
        parts.append(f"CIDEr {_number(metrics.get('cider'))}")
    if "vqa_accuracy" in metrics:
        parts.append(f"VQA accuracy {_number(metrics.get('vqa_accuracy'))}")
    return "ok: " + ", ".join(parts)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
