"""VQAv2 normalisation and the leave-one-out accuracy, checked against hand-computed values."""

import pytest

from vlshield.evaluation.vqa import normalize_answer, vqa_accuracy, vqa_scores


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Two dogs.", "2 dogs"),  # article dropped, number word -> digit, period stripped, lower-cased
        ("yes!", "yes"),
        ("an apple", "apple"),
        ("none", "0"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),  # digit-comma-digit: punctuation deleted, not spaced
        ("black-and-white", "black and white"),  # punctuation between letters becomes a space
        ("red, white", "red white"),  # punctuation touching a space is deleted
        ("dont", "don't"),  # contraction restored
        ("hed've", "he'd've"),
        ("  left\tside\n", "left side"),
    ],
)
def test_normalize_answer_follows_the_official_rules(raw, normalized):
    assert normalize_answer(raw) == normalized


def ten_answers(matching: int) -> list[str]:
    return ["2"] * matching + ["3"] * (10 - matching)


@pytest.mark.parametrize(
    ("matching", "accuracy"),
    [
        (0, 0.0),
        (1, 0.3),  # 9 subsets hold the match -> 1/3, 1 holds none -> 0: 9 * (1/3) / 10
        (2, 0.6),  # 8 subsets hold both -> 2/3, 2 hold one -> 1/3: (8 * 2/3 + 2 * 1/3) / 10
        (3, 0.9),  # 7 subsets hold all three -> 1, 3 hold two -> 2/3: (7 + 3 * 2/3) / 10
        (4, 1.0),  # every subset of 9 holds at least 3
    ],
)
def test_vqa_accuracy_leave_one_out_over_ten_answers(matching, accuracy):
    assert vqa_accuracy("two", ten_answers(matching)) == pytest.approx(accuracy)


def test_vqa_accuracy_with_one_answer_is_exact_match_after_normalisation():
    assert vqa_accuracy("The dog.", ["dog"]) == 1.0
    assert vqa_accuracy("dogs", ["dog"]) == 0.0


def test_vqa_accuracy_with_few_answers_caps_below_one():
    # Two identical answers: each leave-one-out subset holds one match -> 1/3.
    assert vqa_accuracy("yes", ["yes", "yes"]) == pytest.approx(1 / 3)


def test_vqa_accuracy_needs_answers():
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("yes", [])


def test_vqa_scores_are_percentages():
    predictions = ["two", "Yes.", "blue"]
    answers = [ten_answers(2), ["yes"], ["red", "green"]]
    scores = vqa_scores(predictions, answers)
    assert scores["vqa_accuracy"] == pytest.approx(100 * (0.6 + 1.0 + 0.0) / 3)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 3)  # "2" is among the ten answers; "yes" matches
    assert vqa_scores([], []) == {"vqa_accuracy": None, "exact_match": None}
