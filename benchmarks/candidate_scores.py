"""Score every training sample of a finished run with candidate detection scores, per task.

    python benchmarks/candidate_scores.py RUN --data DATA

Loads ``RUN/model`` (keep it: `vlshield train` does; `vlshield benchmark` deletes it unless
``--keep-runs``), runs the original and pcr's image-free view (every patch set to the image mean)
over ``DATA/train.jsonl`` without gradients, and prints, for each task's samples, how well each
score separates the poisoned ones (the poison flags are read here, to measure; the defense never
reads them):

- ``log_ratio``: log CE(orig) - log CE(mean view), per-token means; pcr's score (poison low);
- ``evidence``: CE(mean view) - CE(orig) summed over the response tokens: the nats of evidence
  the image gives for the whole response (poison high; pcr's second score);
- ``pmi_max``: the largest single-token difference (poison high);
- ``log_ratio_text``, ``evidence_text``: the first two with the prompt alone in place of the mean
  view (no image tokens at all: a far cheaper forward on a real model).

For each: AUROC, and the robust-outlier rule pcr uses (3.5 robust SDs from the median), as
count, precision and recall. Also the largest gap among the top 15 % of the scores (in robust
SDs), which is where a score separates two groups without an outlier threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from score_gap import auroc_low  # benchmarks/ is on the path when this runs as a script
from tqdm.auto import tqdm

from vlshield.defenses.augment import image_mean
from vlshield.defenses.base import Batch, View
from vlshield.defenses.detection import robust_low_outliers
from vlshield.models import build_model
from vlshield.training.data import load_split
from vlshield.training.forward import forward_views

LOW_IS_POISON = {
    "log_ratio": True,
    "evidence": False,
    "pmi_max": False,
    "log_ratio_text": True,
    "evidence_text": False,
}


def score_samples(run: Path, data: Path, batch_size: int = 64) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Candidate scores [n] per name, poison flags [n] and tasks [n] of ``data``'s training split."""
    bundle = build_model(str(run / "model"))
    bundle.model.eval()
    split = load_split(data / "train.jsonl")
    poisoned = np.array([bool(sample.meta.get("poisoned")) for sample in split.samples])
    tasks = np.array([sample.task for sample in split.samples])
    scores: dict[str, list[float]] = {name: [] for name in LOW_IS_POISON}
    for start in tqdm(range(0, len(poisoned), batch_size), desc="score"):
        indices = torch.arange(start, min(len(poisoned), start + batch_size))
        batch = Batch(
            indices,
            [split.prompts[i] for i in indices],
            [split.responses[i] for i in indices],
            split.float_images(indices),
        )
        mean_view = View("mean", image_mean(batch.images, bundle.patch_size, torch.Generator()), requires_grad=False)
        with torch.no_grad():
            outputs = forward_views(bundle, batch, [mean_view, View("text", None, requires_grad=False)])
        original = outputs["original"]
        for suffix, view in (("", outputs["mean"]), ("_text", outputs["text"])):
            log_ratio = torch.log(original.sample_loss + 1e-6) - torch.log(view.sample_loss + 1e-6)
            scores["log_ratio" + suffix] += log_ratio.tolist()
            # token_loss is 0 off the response: the sums need no token alignment between the views.
            scores["evidence" + suffix] += (view.token_loss.sum(1) - original.token_loss.sum(1)).tolist()
        pmi = (outputs["mean"].token_loss - original.token_loss) * original.mask  # [b, t]
        scores["pmi_max"] += pmi.masked_fill(~original.mask, -torch.inf).max(1).values.tolist()
    return {name: np.array(values) for name, values in scores.items()}, poisoned, tasks


def robust_sd(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    scores, poisoned, tasks = score_samples(args.run, args.data)
    for task in np.unique(tasks):
        rows = tasks == task
        truth = poisoned[rows]
        print(f"task {task}: {rows.sum()} samples, {truth.sum()} poisoned")
        for name, low in LOW_IS_POISON.items():
            values = -scores[name][rows] if low else scores[name][rows]  # high = suspicious from here on
            spread = robust_sd(values)
            flagged = np.zeros(len(values), dtype=bool)
            outliers = robust_low_outliers(-values, 3.5, max_fraction=1.0)  # pcr's outlier rule, no cap
            if outliers is not None:
                flagged[outliers] = True
            top = np.sort(values)[::-1][: int(0.15 * len(values)) + 1]
            gaps = top[:-1] - top[1:]
            cut = int(np.argmax(gaps[9:])) + 10 if len(gaps) > 10 else len(top)  # at least 10 samples above it
            above = values >= top[cut - 1]
            print(
                f"  {name:9s} AUROC {1 - auroc_low(values, truth):.3f} | outlier rule: {flagged.sum()} flagged, "
                f"precision {truth[flagged].mean() if flagged.any() else 0:.2f}, "
                f"recall {(flagged & truth).sum() / max(1, truth.sum()):.2f} | largest top gap "
                f"{gaps[cut - 1] / max(spread, 1e-12):.2f} SD above {cut}: precision {truth[above].mean():.2f}, "
                f"recall {(above & truth).sum() / max(1, truth.sum()):.2f}"
            )


if __name__ == "__main__":
    main()
