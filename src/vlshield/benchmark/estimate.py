"""A rough time estimate per cell, for ``--dry-run`` and the progress display.

    poison   = POISON_SECONDS_PER_SAMPLE * (limit + 2 * test_size)
    train    = SECONDS_PER_SAMPLE_EPOCH[family] * limit * epochs * DEFENSE_COST[defense] * length
    evaluate = EVAL_SECONDS_PER_SAMPLE * 2 * test_size * max_new_tokens / 24 * length
    cell     = CELL_OVERHEAD_SECONDS + poison + train + evaluate (+ METEOR_SECONDS for captions)

where ``length`` is the sequence length relative to 64 px images: ``((image_size / 8) ** 2 + 30)
/ 94`` (8 px patches plus about 30 text tokens). The constants were measured for the ``tiny``
presets on the 2-core CPU machine this project is developed on, one torch thread per process
and other work running beside it (``small`` presets: x ``SMALL_PRESET_FACTOR``); they are good
to a factor of about 2. Oversubscribed cores are far worse: two processes with two torch
threads each on two cores ran 5-10x slower, hence ``OMP_NUM_THREADS`` in the runner's notes.
A GPU is far faster; a real checkpoint has no estimate of its own and is counted like a
``small`` LLaVA. The progress display rescales the estimate by the speed it measures on the
cells it has finished.
"""

from __future__ import annotations

from vlshield.benchmark.grid import Cell, GridConfig
from vlshield.training.config import EvalConfig, TrainConfig

POISON_SECONDS_PER_SAMPLE = 0.0008
SECONDS_PER_SAMPLE_EPOCH = {"llava": 0.008, "qwen2_5_vl": 0.007, "blip2": 0.005}  # 64 px, tiny preset
EVAL_SECONDS_PER_SAMPLE = 0.01  # 64 px, 24 new tokens
# Training time relative to no defense (pcr and its controls: 1.4x per step, plus the repair epoch).
DEFENSE_COST = {"none": 1.0, "pcr": 1.5, "oracle": 1.5, "random_flags": 1.5}
UNKNOWN_DEFENSE_COST = 1.5
SMALL_PRESET_FACTOR = 3.0
METEOR_SECONDS = 10.0  # two METEOR runs in Java (model and trivial baseline) per captioning evaluation
CELL_OVERHEAD_SECONDS = 3.0  # building the model, saving and loading it, writing files
DEFAULT_LIMIT = 2000  # what a built-in dataset generates when poison.limit is None


def estimate_cell_seconds(grid: GridConfig, cell: Cell) -> float:
    """Seconds one cell should take on a 2-core CPU (see the module docstring for the formula)."""
    limit = grid.poison.get("limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
    test_size = grid.poison.get("test_size", 200)
    epochs = grid.train.get("epochs", TrainConfig.epochs)
    tokens = grid.eval.get("max_new_tokens", EvalConfig.max_new_tokens)
    family = cell.family or "llava"
    size = 1.0 if cell.model.endswith(":tiny") else SMALL_PRESET_FACTOR
    size *= ((grid.poison.get("image_size", 64) / 8) ** 2 + 30) / 94
    defense = DEFENSE_COST.get(cell.defense, UNKNOWN_DEFENSE_COST)
    poison = POISON_SECONDS_PER_SAMPLE * (limit + 2 * test_size)
    train = SECONDS_PER_SAMPLE_EPOCH.get(family, 0.01) * limit * epochs * defense * size
    evaluate = EVAL_SECONDS_PER_SAMPLE * 2 * test_size * tokens / 24 * size
    metric = METEOR_SECONDS if cell.task == "caption" else 0.0
    return CELL_OVERHEAD_SECONDS + poison + train + evaluate + metric


def format_duration(seconds: float) -> str:
    """``1 h 05 min``, ``4 min 10 s`` or ``12 s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
