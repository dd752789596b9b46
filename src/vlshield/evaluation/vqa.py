"""VQA accuracy with the official VQAv2 formula and answer normalisation (Antol et al., 2015; Goyal et al., 2017).

Follows ``vqaEval.py`` of the official evaluation tools (GT-Vision-Lab/VQA) with one deliberate difference: the
official script normalises the human answers (and, in its later version, the prediction) only when the humans
disagree, because the released annotations are already normalised. Here the prediction and every human answer
are always normalised, so raw answers from any dataset compare fairly; on the official annotations the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The official punctuation list; "'", ":" and "." are handled elsewhere (kept, kept, and `_PERIOD` below).
_PUNCTUATION = tuple(';/[]"{}()=+\\_-><@`,?!')
# The official regex "(?!<=\d)(\.)(?!\d)" opens with a look-ahead (not a look-behind) that can never fail before a
# ".", so it is exactly: a period not followed by a digit. "3.5" keeps its period, "dogs." loses it.
_PERIOD = re.compile(r"\.(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# The official contraction table maps apostrophe-less spellings to the canonical ones. It is generated here from the
# canonical forms: one apostrophe -> the key drops it ("dont" -> "don't"); several -> one key per dropped apostrophe
# ("hed've" and "he'dve" -> "he'd've"; the official table has no key dropping all of them). Its entries that can
# never fire are omitted: capitalised keys ("Im", "Ive", "Id've", "I'dve"; answers are lower-cased first) and the
# identities "let's" and "she's".
_CANONICAL_CONTRACTIONS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd "
    "he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't must've "
    "needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd've "
    "somebody'll somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll "
    "that's there'd there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've "
    "weren't what'll what're what's what've when's where'd where's where've who'd who'd've who'll who's who've "
    "why'll why're why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll "
    "you're you've"
).split()


def _contraction_keys(canonical: str) -> list[str]:
    apostrophes = [index for index, char in enumerate(canonical) if char == "'"]
    if len(apostrophes) == 1:
        return [canonical.replace("'", "")]
    return [canonical[:index] + canonical[index + 1 :] for index in apostrophes]


_CONTRACTIONS = {key: canonical for canonical in _CANONICAL_CONTRACTIONS for key in _contraction_keys(canonical)}
# A quirk of the official table, kept for fidelity: it maps this one the other way round.
_CONTRACTIONS["somebody'd"] = "somebodyd"


def _strip_punctuation(text: str) -> str:
    """The official ``processPunctuation``: each listed mark is deleted or turned into a space, then periods go."""
    # As in the official code, the conditions look at the original text, not the partially processed one.
    delete_everywhere = _DIGIT_COMMA_DIGIT.search(text) is not None
    processed = text
    for mark in _PUNCTUATION:
        touches_space = mark + " " in text or " " + mark in text
        processed = processed.replace(mark, "" if delete_everywhere or touches_space else " ")
    return _PERIOD.sub("", processed)


def normalize_answer(text: str) -> str:
    """Normalise a VQA answer as the official VQAv2 evaluation does.

    Newlines and tabs become spaces; punctuation is deleted where it touches a space (or anywhere, when the text
    has a digit-comma-digit like "1,000") and otherwise becomes a space; a period not followed by a digit is
    deleted; the text is lower-cased and split into words; number words zero..ten (and "none") become digits;
    articles a/an/the are dropped; apostrophe-less contractions are restored ("dont" -> "don't").
    E.g. "The Two dogs." -> "2 dogs", "yes!" -> "yes", "1,000" -> "1000", "black-and-white" -> "black and white".
    """
    text = _strip_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of one prediction against the human answers, in [0, 1].

    With n >= 2 answers, the official formula: for each of the n leave-one-out subsets of n - 1 answers, score
    min(#answers in the subset equal to the prediction / 3, 1), and average the n scores (all after
    :func:`normalize_answer`). With the usual 10 answers, 2 matching humans give (8 * 2/3 + 2 * 1/3) / 10 = 0.6
    and 4 or more give 1. With fewer answers the cap of 1 is reached later or never: n = 2 or 3 identical answers
    give at most (n - 1) / 3, so compare such numbers only with each other. With a single answer (where the
    leave-one-out subset would be empty) it is exact match after normalisation: 1.0 or 0.0.

    Raises ``ValueError`` when ``answers`` is empty.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    predicted = normalize_answer(prediction)
    matches = [normalize_answer(answer) == predicted for answer in answers]
    if len(matches) == 1:
        return float(matches[0])
    total = sum(matches)
    # Leaving out answer i removes one match exactly when answer i matches.
    return sum(min((total - left_out) / 3, 1.0) for left_out in matches) / len(matches)


def vqa_scores(predictions: Sequence[str], answers_list: Sequence[Sequence[str]]) -> dict[str, float | None]:
    """Mean VQA accuracy and exact match over questions, each x 100 (percent).

    ``vqa_accuracy``: mean of :func:`vqa_accuracy`; ``exact_match``: percentage of predictions that equal at
    least one of their human answers after :func:`normalize_answer` (with one answer per question the two
    coincide). ``answers_list[i]`` holds the human answers for ``predictions[i]``. No questions give ``None``s.
    """
    if len(predictions) != len(answers_list):
        raise ValueError(f"{len(predictions)} predictions but {len(answers_list)} answer lists; they must align")
    if not predictions:
        return {"vqa_accuracy": None, "exact_match": None}
    accuracies = [
        vqa_accuracy(prediction, answers) for prediction, answers in zip(predictions, answers_list, strict=True)
    ]
    exact = [
        normalize_answer(prediction) in {normalize_answer(answer) for answer in answers}
        for prediction, answers in zip(predictions, answers_list, strict=True)
    ]
    return {
        "vqa_accuracy": 100.0 * sum(accuracies) / len(accuracies),
        "exact_match": 100.0 * sum(exact) / len(exact),
    }
