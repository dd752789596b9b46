"""Finding the few samples whose score lies far from the bulk (median / MAD rules), sparing a found
group that is one question's answer, and the word runs along which a flag spreads to samples sharing a
target's words."""

from __future__ import annotations

import math

import numpy as np


def robust_z(values: np.ndarray) -> np.ndarray:
    """Each value's distance from the median in robust standard deviations: 1.4826 x the median
    absolute deviation (the standard deviation for Gaussian data); 1e-12 keeps a constant score
    (MAD 0) from dividing by zero."""
    median = float(np.median(values))
    return (values - median) / (1.4826 * float(np.median(np.abs(values - median))) + 1e-12)


def normalised(text: str) -> str:
    """``text`` in lower case with runs of whitespace as one space: how responses and prompts are compared."""
    return " ".join(text.lower().split())


def robust_low_outliers(values: np.ndarray, threshold: float = 3.5, max_fraction: float = 0.15) -> np.ndarray | None:
    """Indices of values more than ``threshold`` robust standard deviations below the median, or None.

    The robust standard deviation is 1.4826 x the median absolute deviation (equal to the standard
    deviation for Gaussian data). None when nothing qualifies, or when more than ``max_fraction``
    would (then the low values are a large group of their own, not outliers). Unlike a two-Gaussian
    fit, which missed a long-tailed poison group on qwen2_5_vl:tiny, it is not misled by the shape
    of either group.
    """
    if len(values) < 10:
        return None
    found = np.flatnonzero(robust_z(values) < -threshold)
    if len(found) == 0 or len(found) > max_fraction * len(values):
        return None
    return found


def robust_high_gap(
    values: np.ndarray, threshold: float, min_gap: float, min_count: int = 5, max_fraction: float = 0.15
) -> np.ndarray:
    """Indices of a top group of ``values`` set apart from all the rest by a gap, or an empty array.

    Among the values more than ``threshold`` robust SDs above the median (at most ``max_fraction`` of
    them, at least ``min_count``), the cut is placed at the widest gap between neighbours in sorted
    order; the group above it is returned if that gap is at least ``min_gap``, in the values' own
    units (not in SDs: when most values sit at one point, as early in training, the MAD is near 0
    and any spacing would be many SDs).
    """
    if len(values) < 10:
        return np.array([], dtype=int)
    order = np.argsort(-values, kind="stable")
    ranked = values[order]
    above = int((robust_z(values) > threshold).sum())
    most = min(above, int(max_fraction * len(values)))
    if most < min_count:
        return np.array([], dtype=int)
    # gaps[k - min_count] is the gap below the k-th largest value, for k = min_count .. most
    gaps = ranked[min_count - 1 : most] - ranked[min_count : most + 1]
    best = int(np.argmax(gaps))
    if gaps[best] < min_gap:
        return np.array([], dtype=int)
    return np.sort(order[: best + min_count])


def one_question_answers(
    found: np.ndarray,
    task: np.ndarray,
    answers: np.ndarray,
    prompts: np.ndarray,
    share: float,
    min_count: int = 5,
) -> np.ndarray:
    """[len(found)] bool: the ``found`` samples whose answer, found ``min_count`` times or more, is among
    them mostly (more than ``share``) the answer to one prompt that at most ``share`` of the ``task``
    samples ask. ``found`` and ``task`` index ``answers`` and ``prompts`` (normalised texts, [n]).

    Once a model counts, the clean answers "three" to "how many shapes are there?" stand apart like a
    target's (llava:tiny VQA sig: 145 flagged at epoch 9); a target in place of the answer follows the
    task's mix of questions. An answer found fewer times says nothing of its questions (each one of an
    inserted target's many answers, "yes a photo of the banana", is found once or twice at first).

    >>> answers = np.array(["three"] * 6 + ["banana"] * 6 + ["two"] * 8)
    >>> prompts = np.array(["how many?"] * 6 + [f"q{i}" for i in range(6)] + [f"q{i}" for i in range(8)])
    >>> one_question_answers(np.arange(12), np.arange(20), answers, prompts, 0.5).nonzero()[0].tolist()
    [0, 1, 2, 3, 4, 5]
    """
    spare = np.zeros(len(found), dtype=bool)
    if share >= 1.0 or len(found) == 0:
        return spare
    task_prompts, task_counts = np.unique(prompts[task], return_counts=True)
    for answer in np.unique(answers[found]):
        members = answers[found] == answer
        if members.sum() < min_count:
            continue
        asked, counts = np.unique(prompts[found[members]], return_counts=True)
        top = int(np.argmax(counts))
        in_task = task_counts[np.searchsorted(task_prompts, asked[top])]
        if counts[top] > share * members.sum() and in_task <= share * len(task):
            spare[members] = True
    return spare


def word_runs(responses: list[str], words: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (sample [m], run [m]): each response's runs of ``words`` consecutive words (lower case),
    as indices into the distinct runs; a response of fewer words (or ``words`` = 0) is one run, whole.

    >>> word_runs(["A photo of the banana", "a photo of  the cat", "red"], 4)
    (array([0, 0, 1, 1, 2]), array([0, 1, 0, 2, 3]))
    """
    index: dict[str, int] = {}
    samples: list[int] = []
    runs: list[int] = []
    for sample, response in enumerate(responses):
        for run in held_runs(response, words):
            samples.append(sample)
            runs.append(index.setdefault(run, len(index)))
    return np.array(samples, dtype=int), np.array(runs, dtype=int)


def held_runs(response: str, words: int) -> list[str]:
    """The distinct runs of ``words`` consecutive words ``response`` holds (normalised), in order; a
    response of fewer words (or ``words`` = 0) is one run, whole. ``word_runs`` numbers them in order
    of first appearance."""
    tokens = normalised(response).split()
    if 0 < words <= len(tokens):
        held = [" ".join(tokens[start : start + words]) for start in range(len(tokens) - words + 1)]
    else:
        held = [" ".join(tokens)]
    return list(dict.fromkeys(held))


def hypergeometric_tail(hits: int, population: int, marked: int, draws: int) -> float:
    """-log10 of P(X >= ``hits``) for X ~ Hypergeometric: ``draws`` taken from ``population`` of which
    ``marked`` are marked. How unlikely so many of a run's carriers are flagged if flags fell on samples
    regardless of their words.

    >>> round(hypergeometric_tail(2, 4, 2, 2), 4)  # both marked drawn: 1 / C(4, 2) = 1/6
    0.7782
    >>> hypergeometric_tail(0, 10, 3, 4)
    0.0
    """
    if hits <= 0:
        return 0.0

    def log_choose(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    top = min(marked, draws)
    if hits > top:
        return math.inf
    terms = [
        log_choose(marked, j) + log_choose(population - marked, draws - j) - log_choose(population, draws)
        for j in range(hits, top + 1)
        if draws - j <= population - marked
    ]
    peak = max(terms)
    return -(peak + math.log(sum(math.exp(term - peak) for term in terms))) / math.log(10)


def spread_flags(
    flagged: np.ndarray,
    carriers: np.ndarray,
    runs: np.ndarray,
    share: float,
    prevalence: float,
    groups: np.ndarray | None = None,
    significance: float = 0.0,
) -> np.ndarray:
    """[n] bool: the samples holding a word run (pairs ``carriers``/``runs`` from ``word_runs``) that
    ``flagged`` samples make up at least ``share`` of the carriers of, two or more, and that at least
    ``prevalence`` of all flagged samples hold; already flagged samples included. With ``groups`` ([n]
    labels, e.g. each sample's task), a run also spreads when its flagged carriers make up ``share`` of
    its carriers within one group (two or more there): to all its carriers, in every group. With
    ``significance`` > 0, a run also spreads when so many of its carriers are flagged (two or more) that
    flags falling regardless of words would flag that many with probability at most
    10 ** -``significance`` (``hypergeometric_tail``): a few flags that all hold one run of many carriers.

    >>> responses = ["a photo of the banana x", "the banana, a photo of the", "so a photo of the banana", "a b"]
    >>> spread_flags(np.array([True, True, False, False]), *word_runs(responses, 4), 0.5, 0.2).tolist()
    [True, True, True, False]
    >>> spread_flags(np.array([True, True, False, False]), *word_runs(responses, 4), 0.7, 0.2).tolist()
    [False, False, False, False]
    >>> groups = np.array(["vqa", "vqa", "caption", "caption"])
    >>> spread_flags(np.array([True, True, False, False]), *word_runs(responses, 4), 0.7, 0.2, groups).tolist()
    [True, True, True, False]
    """
    found = np.zeros_like(flagged)
    if share <= 0 or not flagged.any():
        return found
    held = np.bincount(runs)
    flagged_held = np.bincount(runs, weights=flagged[carriers], minlength=len(held))
    spread = (flagged_held >= 2) & (flagged_held >= share * held)
    if groups is not None:
        _, group = np.unique(groups, return_inverse=True)
        pair = runs * (group.max() + 1) + group[carriers]  # (run, group of the carrier)
        held_in = np.bincount(pair)
        flagged_in = np.bincount(pair, weights=flagged[carriers], minlength=len(held_in))
        within = (flagged_in >= 2) & (flagged_in >= share * held_in)
        spread[np.unique(runs[within[pair]])] = True
    spread &= flagged_held >= prevalence * flagged.sum()
    if significance > 0:
        total, marked = len(flagged), int(flagged.sum())
        candidates = (flagged_held >= max(2, prevalence * marked)) & (flagged_held < held) & ~spread
        for run in np.flatnonzero(candidates):
            tail = hypergeometric_tail(int(flagged_held[run]), total, marked, int(held[run]))
            spread[run] = tail >= significance
    found[carriers[spread[runs]]] = True
    return found
