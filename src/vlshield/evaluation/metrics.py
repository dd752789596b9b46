"""All evaluation metrics in one place (METHOD.md §4), and :func:`summarise`, which reports a run's numbers.

Units, everywhere in vlshield: ``asr``, ``asr_strict`` and ``false_trigger_rate`` are fractions in [0, 1];
``cider``, ``bleu4``, ``rouge_l``, ``meteor``, ``vqa_accuracy`` and ``exact_match`` are on the 0-100 scale papers
print (CIDEr-D up to 1000). A metric with nothing to average over is ``None``, never NaN or a made-up 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from vlshield.data.sample import Task
from vlshield.evaluation.asr import (
    Reference,
    attack_success_rate,
    contains_target,
    false_trigger_rate,
    matches_target_strict,
    normalized_words,
)
from vlshield.evaluation.captioning import caption_scores, meteor_score, tokenize_caption
from vlshield.evaluation.vqa import normalize_answer, vqa_accuracy, vqa_scores

__all__ = [
    "Reference",
    "attack_success_rate",
    "caption_scores",
    "contains_target",
    "false_trigger_rate",
    "matches_target_strict",
    "meteor_score",
    "most_frequent_baseline",
    "normalize_answer",
    "normalized_words",
    "paired_ratio",
    "summarise",
    "tokenize_caption",
    "vqa_accuracy",
    "vqa_scores",
]


def paired_ratio(
    treated: np.ndarray, control: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """mean(treated) / mean(control) over aligned per-sample scores, and its 95 % percentile interval.

    The samples are drawn with replacement ``resamples`` times, the same draw for both (a paired bootstrap:
    the two runs answered the same test samples), so what varies is which samples are asked, not which run.
    """
    treated, control = np.asarray(treated, dtype=float), np.asarray(control, dtype=float)
    if treated.shape != control.shape or treated.ndim != 1 or len(treated) == 0:
        raise ValueError(f"need two aligned, non-empty score vectors, got shapes {treated.shape} and {control.shape}")
    draws = np.random.default_rng(seed).integers(0, len(treated), size=(resamples, len(treated)))
    ratios = treated[draws].mean(1) / np.maximum(control[draws].mean(1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(treated.mean() / max(control.mean(), 1e-12)), float(low), float(high)


def most_frequent_baseline(train_responses: Sequence[str]) -> str:
    """The trivial baseline's answer: the most frequent training response, compared as exact strings.

    Ties go to the alphabetically first response, so the result does not depend on the data's order. Predicting
    this for every test input gives the quality floor a trained model must beat (e.g. "yes" on VQA yes/no
    questions). Raises ``ValueError`` on an empty list.
    """
    if not train_responses:
        raise ValueError("most_frequent_baseline needs at least one training response")
    counts = Counter(train_responses)
    return min(counts, key=lambda response: (-counts[response], response))


def _as_lists(references: Sequence[Reference]) -> list[list[str]]:
    return [[reference] if isinstance(reference, str) else list(reference) for reference in references]


def summarise(
    task: Task,
    clean_predictions: Sequence[str],
    clean_references: Sequence[Reference],
    triggered_predictions: Sequence[str],
    target: str,
    triggered_references: Sequence[Reference] | None = None,
    *,
    answers: Sequence[Sequence[str]] | None = None,
) -> dict[str, float | int | None]:
    """The headline numbers of one evaluated model: attack strength, false triggers and clean quality.

    Args:
        task: ``"caption"`` or ``"vqa"``.
        clean_predictions: outputs on the clean test inputs.
        clean_references: per clean test input, its reference (a string or a list of strings: captions, or VQA
            human answers). They score clean quality and decide which clean samples count for the false-trigger
            rate.
        triggered_predictions: outputs on the triggered test inputs.
        target: the attacker's target text.
        triggered_references: per triggered input, the clean reference of the same input without the trigger,
            which decides its eligibility for the ASR. ``None`` means the triggered set is the clean set with the
            trigger applied, in the same order, and ``clean_references`` are used.
        answers: VQA only: per clean question, the human answers for :func:`vqa_accuracy` when they differ from
            ``clean_references``; ``None`` scores against ``clean_references``.

    Returns:
        ``asr``, ``asr_strict``, ``asr_count`` (see :func:`attack_success_rate`) and ``false_trigger_rate``
        (fractions in [0, 1], ``None`` without eligible samples); then for captions ``cider``, ``bleu4``,
        ``rouge_l`` (and ``meteor`` when Java runs), for VQA ``vqa_accuracy`` and ``exact_match`` (all x 100,
        ``None`` on an empty clean set).
    """
    if task not in ("caption", "vqa"):
        raise ValueError(f"unknown task {task!r}; expected 'caption' or 'vqa'")
    references = _as_lists(clean_references)
    attack_references = references if triggered_references is None else _as_lists(triggered_references)
    summary: dict[str, float | int | None] = dict(
        attack_success_rate(triggered_predictions, target, attack_references)
    )
    summary["false_trigger_rate"] = false_trigger_rate(clean_predictions, target, references)
    if task == "caption":
        summary.update(caption_scores(clean_predictions, references))
    else:
        summary.update(vqa_scores(clean_predictions, references if answers is None else answers))
    return summary
