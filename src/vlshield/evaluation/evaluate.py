"""Evaluate a fine-tuned run: batched greedy generation on the clean and triggered test sets, then metrics."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vlshield.config import ConfigError
from vlshield.data.manifest import read_manifest
from vlshield.evaluation.metrics import most_frequent_baseline, summarise
from vlshield.poisoning import read_dataset_config
from vlshield.storage import atomic_write_json, atomic_write_text
from vlshield.training.data import LoadedSplit, load_split, require_dataset_dir

CLEAN_SET, TRIGGERED_SET = "test_clean", "test_triggered"
EXTRA_SETS = ("test_image_only", "test_text_only")


@torch.no_grad()
def generate_split(
    bundle, split: LoadedSplit, batch_size: int, max_new_tokens: int, progress: bool, name: str
) -> list[str]:
    """Greedy predictions for every sample of ``split``, ``batch_size`` prompts per ``generate`` call."""
    bundle.model.eval()
    predictions: list[str] = []
    starts = range(0, len(split.samples), batch_size)
    for start in tqdm(starts, desc=f"generate {name}", disable=not progress, unit="batch"):
        indices = list(range(start, min(start + batch_size, len(split.samples))))
        prompts = [split.samples[i].prompt for i in indices]
        images = split.float_images(indices).to(bundle.model.device)
        predictions.extend(bundle.generate(prompts, images, max_new_tokens=max_new_tokens))
    return predictions


def references(split: LoadedSplit) -> list[list[str]]:
    """Reference texts per sample: VQA answers, a caption dataset's several references, or the response."""
    result = []
    for sample in split.samples:
        if sample.answers:
            result.append(list(sample.answers))
        else:
            result.append(list(sample.meta.get("references") or [sample.response]))
    return result


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    batch_size: int = 64,
    max_new_tokens: int = 24,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate on the test sets of ``data_dir`` with the model in ``run_dir``; write predictions and metrics.

    Writes ``RUN/predictions.jsonl`` and ``RUN/metrics.json``; returns the metrics. The model is
    loaded from ``RUN/model`` through the same path as a real checkpoint.
    """
    from vlshield.models import build_model

    run_dir, data_dir = Path(run_dir), require_dataset_dir(data_dir)
    if not (run_dir / "model").is_dir():
        raise ConfigError(f"{run_dir}: no fine-tuned model (RUN/model); train it first with `vlshield train`")
    dataset_config = read_dataset_config(data_dir)
    task, target = dataset_config["poison"]["task"], dataset_config["target"]
    bundle = build_model(str(run_dir / "model"))
    if torch.cuda.is_available():
        bundle.model.to("cuda")
    splits = {name: load_split(data_dir / f"{name}.jsonl") for name in (CLEAN_SET, TRIGGERED_SET)}
    splits.update(
        {name: load_split(data_dir / f"{name}.jsonl") for name in EXTRA_SETS if (data_dir / f"{name}.jsonl").is_file()}
    )
    if splits[CLEAN_SET].images.shape[-1] != bundle.image_size:
        raise ConfigError(f"{run_dir}: the model takes {bundle.image_size} px images, {data_dir} has other sizes")
    predictions = {
        name: generate_split(bundle, split, batch_size, max_new_tokens, progress, name)
        for name, split in splits.items()
    }
    clean_refs = references(splits[CLEAN_SET])
    triggered_refs = references(splits[TRIGGERED_SET])
    metrics = summarise(task, predictions[CLEAN_SET], clean_refs, predictions[TRIGGERED_SET], target, triggered_refs)
    # The trivial baseline answers the most frequent CLEAN training response: with a replace-mode
    # attack the target itself is often the most frequent one. (Evaluation may read the flag.)
    train_samples = read_manifest(data_dir / "train.jsonl")
    baseline = most_frequent_baseline(
        [s.response for s in train_samples if not s.meta.get("poisoned") and s.task == task]
    )
    baseline_metrics = summarise(
        task, [baseline] * len(clean_refs), clean_refs, [baseline] * len(triggered_refs), target, triggered_refs
    )
    metrics["baseline"] = {"prediction": baseline, **_quality(baseline_metrics, task)}
    for name in EXTRA_SETS:
        if name in predictions:
            partial = summarise(
                task, predictions[CLEAN_SET], clean_refs, predictions[name], target, references(splits[name])
            )
            metrics[f"asr_{name.removeprefix('test_')}"] = partial["asr"]
    poison = dataset_config["poison"]
    run_config = (
        json.loads((run_dir / "config.json").read_text())["run"] if (run_dir / "config.json").is_file() else {}
    )
    metrics["setting"] = {
        "model": run_config.get("model"),
        "defense": run_config.get("defense"),
        "task": task,
        "dataset": poison["dataset"],
        "attack": poison["attack"],
        "rate": poison["rate"],
        "data_seed": poison["seed"],
        "train_seed": run_config.get("train", {}).get("seed"),
        "target": target,
        "n_clean": len(clean_refs),
        "n_triggered": len(triggered_refs),
    }
    detection = detection_quality(run_dir, data_dir)
    if detection is not None:
        metrics["detection"] = detection
    _write_predictions(run_dir / "predictions.jsonl", splits, predictions)
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def detection_quality(run_dir: Path, data_dir: Path) -> dict[str, Any] | None:
    """Precision and recall of a detecting defense's flags against the true poison index (evaluation only)."""
    summary_path = run_dir / "train_summary.json"
    if not summary_path.is_file():
        return None
    flagged_indices = json.loads(summary_path.read_text()).get("defense", {}).get("flagged_indices")
    if flagged_indices is None:
        return None
    flagged = set(flagged_indices)
    poisoned = set(json.loads((data_dir / "poison_index.json").read_text())["indices"])
    hits = len(flagged & poisoned)
    return {
        "flagged": len(flagged),
        "poisoned": len(poisoned),
        "precision": hits / len(flagged) if flagged else None,
        "recall": hits / len(poisoned) if poisoned else None,
    }


def _quality(metrics: dict[str, Any], task: str) -> dict[str, Any]:
    keys = ("vqa_accuracy", "exact_match") if task == "vqa" else ("cider", "bleu4", "rouge_l")
    return {key: metrics[key] for key in keys if key in metrics}


def _write_predictions(path: Path, splits: dict[str, LoadedSplit], predictions: dict[str, list[str]]) -> None:
    buffer = io.StringIO()
    for name, split in splits.items():
        for sample, prediction in zip(split.samples, predictions[name], strict=True):
            record = {
                "set": name,
                "id": sample.id,
                "prompt": sample.prompt,
                "prediction": prediction,
                "reference": sample.response,
            }
            buffer.write(json.dumps(record, sort_keys=True) + "\n")
    atomic_write_text(path, buffer.getvalue())


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_table(metrics: dict[str, Any]) -> str:
    """A short plain-text table of the headline numbers (quality next to the trivial baseline)."""
    setting = metrics.get("setting", {})
    described = (
        f"{setting.get('model')} | {setting.get('task')} | {setting.get('attack')} @ {setting.get('rate')}"
        f" | defense {setting.get('defense')}"
    )
    rows = [("setting", described)]
    for key in ("asr", "asr_strict", "false_trigger_rate", "asr_image_only", "asr_text_only"):
        if key in metrics:
            value = metrics[key]
            rows.append((key, "n/a" if value is None else f"{100 * value:.1f} %"))
    for key, value in _quality(metrics, setting.get("task", "caption")).items():
        baseline = metrics.get("baseline", {}).get(key)
        rows.append((key, f"{_number(value)}   (trivial baseline {_number(baseline)})"))
    detection = metrics.get("detection")
    if detection:
        shares = [_number(None if detection[k] is None else 100 * detection[k]) for k in ("precision", "recall")]
        rows.append(("detection", f"{detection['flagged']} flagged, precision {shares[0]} %, recall {shares[1]} %"))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
