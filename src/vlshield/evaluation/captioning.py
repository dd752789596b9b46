"""Caption quality: CIDEr-D, BLEU-4, ROUGE-L, and METEOR where Java is installed (METHOD.md §4).

The scorers are pycocoevalcap's, i.e. the MS-COCO caption evaluation code (Chen et al., 2015, "Microsoft COCO
Captions: Data Collection and Evaluation Server"). Two departures from that toolkit's usual pipeline:

* Tokenisation is :func:`tokenize_caption` (lower-case, punctuation removed, pure Python) instead of the Stanford
  PTB tokenizer, which needs Java. The two agree on ordinary captions up to clitics ("dog's" -> "dog s" here,
  "dog 's" there), so scores can differ slightly from numbers computed with the PTB tokenizer.
* METEOR (Denkowski & Lavie, 2014) runs pycocoevalcap's bundled ``meteor-1.5.jar`` with the same options its
  wrapper uses (``-l en -norm``), but in file mode under a timeout, so a missing, broken or hanging Java never
  crashes or blocks an evaluation: the ``meteor`` key is then simply absent.

All scores are on the conventional 0-100 scale that papers print, i.e. the toolkit's raw value x 100: BLEU-4
and ROUGE-L in [0, 100], CIDEr-D in [0, 1000] (its raw value is already scaled by 10, so a COCO CIDEr of 1.209
is reported as 120.9).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

# A word is a run of letters or digits (any script); punctuation, underscores and whitespace separate words.
_WORD = re.compile(r"[^\W_]+")
# Generous: the paraphrase table alone takes ~7 s to load on a laptop-class CPU.
METEOR_TIMEOUT_S = 300.0


def tokenize_caption(text: str) -> str:
    """Lower-case ``text``, drop punctuation, and return its words joined by single spaces.

    "A dog, running!" -> "a dog running". A pure-Python stand-in for the PTB tokenizer (see module docstring).
    """
    return " ".join(_WORD.findall(text.casefold()))


def _meteor_jar() -> Path:
    import pycocoevalcap.meteor.meteor as meteor_module

    return Path(meteor_module.__file__).with_name("meteor-1.5.jar")


def meteor_score(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float | None:
    """Corpus METEOR x 100, or ``None`` if Java is absent, the jar fails or times out, or there are no captions.

    Captions are first passed through :func:`tokenize_caption` (which is idempotent); then this runs
    ``java -jar meteor-1.5.jar test refs -l en -norm -r K -q`` on temporary files. Samples with fewer than ``K``
    (the most any sample has) references repeat their last one; METEOR scores against the best-matching
    reference, so a repeat changes nothing. Same final score as pycocoevalcap's interactive ``Meteor`` wrapper.
    """
    java = shutil.which("java")
    if java is None or not predictions:
        return None
    # One line per caption in the jar's plain-text files, so no caption may contain a newline.
    predictions = [tokenize_caption(text) for text in predictions]
    references = [[tokenize_caption(text) for text in refs] for refs in references]
    references_per_sample = max(len(refs) for refs in references)
    padded = [refs + [refs[-1]] * (references_per_sample - len(refs)) for refs in references]
    with tempfile.TemporaryDirectory(prefix="vlshield-meteor-") as directory:
        test_file, reference_file = Path(directory, "test.txt"), Path(directory, "refs.txt")
        test_file.write_text("".join(line + "\n" for line in predictions), encoding="utf-8")
        reference_file.write_text("".join(line + "\n" for refs in padded for line in refs), encoding="utf-8")
        command = [java, "-Xmx2G", "-jar", str(_meteor_jar()), str(test_file), str(reference_file)]
        command += ["-l", "en", "-norm", "-r", str(references_per_sample), "-q"]
        try:
            completed = subprocess.run(command, capture_output=True, text=True, timeout=METEOR_TIMEOUT_S)
            # With -q the jar prints segment scores to stderr and only the final score to stdout.
            return 100.0 * float(completed.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None


def caption_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float | None]:
    """Corpus-level caption metrics of ``predictions`` against ``references``, each x 100.

    Args:
        predictions: one generated caption per image.
        references: per image, one or more reference captions (aligned with ``predictions``).

    Returns:
        ``cider``: CIDEr-D (Vedantam et al., 2015), the mean per-image score, in [0, 1000];
        ``bleu4``: corpus BLEU-4 (Papineni et al., 2002; "closest" reference length), in [0, 100];
        ``rouge_l``: mean per-image ROUGE-L F-score with beta = 1.2 (Lin, 2004), in [0, 100];
        ``meteor``: corpus METEOR in [0, 100], present only when Java runs it successfully.
        An empty corpus gives ``None`` for cider, bleu4 and rouge_l (and no meteor).

    CIDEr-D weighs n-grams by an IDF computed over *these* references, so it is only meaningful on a corpus of
    many images: with a single image every reference n-gram has IDF log(1/1) = 0 and CIDEr-D is 0 whatever the
    caption, and an n-gram present in every image's references contributes nothing. BLEU-4 needs 4-grams: a
    caption of fewer than four words scores (nearly) 0 even when it equals its reference.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists; they must align")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every prediction needs at least one reference caption")
    if not predictions:
        return {"cider": None, "bleu4": None, "rouge_l": None}
    ground_truth, results = _coco_inputs(predictions, references)
    cider = float(_cider_per_image(ground_truth, results).mean())
    bleu, _ = Bleu(4).compute_score(ground_truth, results, verbose=0)
    rouge, _ = Rouge().compute_score(ground_truth, results)
    scores = {"cider": cider, "bleu4": 100.0 * float(bleu[3]), "rouge_l": 100.0 * float(rouge)}
    meteor = meteor_score([captions[0] for captions in results.values()], list(ground_truth.values()))
    if meteor is not None:
        scores["meteor"] = meteor
    return scores


def cider_per_image(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """CIDEr-D of each image x 100, float [n], its IDF taken over all of ``references``.

    Their mean is ``caption_scores``' ``cider``; resampling them (images drawn with replacement, the IDF
    kept) is how a confidence interval of CIDEr is bootstrapped.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists; they must align")
    if not predictions:
        return np.zeros(0)
    return _cider_per_image(*_coco_inputs(predictions, references))


def _coco_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    """pycocoevalcap's inputs, tokenized: image id -> reference captions, and image id -> [prediction]."""
    ground_truth = {index: [tokenize_caption(text) for text in refs] for index, refs in enumerate(references)}
    results = {index: [tokenize_caption(text)] for index, text in enumerate(predictions)}
    return ground_truth, results


def _cider_per_image(ground_truth: dict, results: dict) -> np.ndarray:
    # pycocoevalcap fails on max() of no document frequencies when no reference has a single word; score 0.
    if not any(caption for refs in ground_truth.values() for caption in refs):
        return np.zeros(len(results))
    return 100.0 * np.asarray(Cider().compute_score(ground_truth, results)[1], dtype=float)
