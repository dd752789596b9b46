"""A fake poison -> train -> evaluate pipeline, so the runner's bookkeeping is tested in milliseconds."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from vlshield.benchmark import runner
from vlshield.benchmark.grid import GridConfig
from vlshield.config import to_dict


class FakePipeline:
    """Stands in for poison_dataset, train and evaluate_run; records every call; ``fail`` makes train raise."""

    def __init__(self) -> None:
        self.poisoned: list[str] = []
        self.trained: list[str] = []
        self.evaluated: list[str] = []
        self.fail: set[tuple[str, str]] = set()  # (attack, defense) pairs whose training raises

    def poison_dataset(self, config, out, overwrite=False, progress=True):
        out = Path(out)
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps({"poison": to_dict(config)}))
        self.poisoned.append(out.name)
        return out

    def train(self, config, run_dir, resume=False, progress=True):
        attack = json.loads((Path(config.data) / "config.json").read_text())["poison"]["attack"]
        if (attack, config.defense) in self.fail:
            raise RuntimeError(f"boom in {attack}/{config.defense}")
        run_dir = Path(run_dir)
        for part in ("model", "checkpoints/step-0000004"):
            (run_dir / part).mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text("{}")
        self.trained.append(run_dir.name)
        summary = {"steps": 4, "epochs": 1, "train_seconds": 0.01, "log": [{"step": 4, "task_loss": 0.5}]}
        if config.defense == "pcr":
            summary["defense"] = {"flagged_indices": [1, 2, 3], "pmi": [0.0] * 60, "threshold": 0.5}
        return summary

    def evaluate_run(self, run_dir, data_dir, batch_size=64, max_new_tokens=24, progress=True):
        self.evaluated.append(Path(run_dir).name)
        return {"asr": 0.25, "asr_strict": 0.25, "false_trigger_rate": 0.0, "cider": 123.0, "baseline": {}}


@pytest.fixture
def fake(monkeypatch) -> FakePipeline:
    pipeline = FakePipeline()
    for name in ("poison_dataset", "train", "evaluate_run"):
        monkeypatch.setattr(runner, name, getattr(pipeline, name))
    return pipeline


@pytest.fixture
def grid() -> GridConfig:
    """2 attacks x 2 defenses of one model: 4 cells, 2 poisoned datasets."""
    return GridConfig(
        name="unit",
        attacks=("badnet", "blended"),
        defenses=("none", "pcr"),
        rates=(0.1,),
        poison={"limit": 40, "test_size": 4},
        train={"epochs": 1},
    )


@pytest.fixture
def write_cell():
    """Writes one ok llava:tiny caption cell at 5 % into ``out/cells`` with the fields that
    benchmarks/pcr_cells.py and benchmarks/variant_cells.py read."""

    def write(
        out: Path,
        attack: str,
        defense: str,
        seed: int,
        asr: float,
        cider: float,
        detection=None,
        threads=1,
        revision="0123abc",
        source=None,
        cpu=None,
        cpu_model=None,
    ) -> None:
        cell = {
            "model": "llava:tiny",
            "task": "caption",
            "dataset": "shapes",
            "attack": attack,
            "defense": defense,
            "rate": 0.05,
            "seed": seed,
        }
        metrics = {"asr": asr, "cider": cider}
        if detection is not None:
            metrics["detection"] = detection
        name = f"llava_tiny--caption--{attack}--{defense}--0.05--{seed}"
        (out / "cells").mkdir(parents=True, exist_ok=True)
        record = {"cell": cell, "status": "ok", "metrics": metrics}
        record.update(git_revision=revision, torch_threads=threads)
        if source is not None:
            record["source_sha256"] = source
        if cpu is not None:
            record["cpu_capability"] = cpu
        if cpu_model is not None:
            record["cpu_model"] = cpu_model
        (out / "cells" / f"{name}.json").write_text(json.dumps(record))

    return write


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmark_script():
    """Loads ``benchmarks/NAME.py`` as a module; benchmarks/ is on the path meanwhile, as when the script
    runs (the scripts import each other from beside them)."""

    def load(name: str):
        sys.path.insert(0, str(BENCHMARKS))
        try:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(BENCHMARKS))
        return module

    return load
