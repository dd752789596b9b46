"""summarise() and the trivial baseline, on hand-made predictions."""

import pytest

from vlshield.evaluation import captioning
from vlshield.evaluation.metrics import most_frequent_baseline, paired_ratio, summarise

TARGET = "banana"


def test_most_frequent_baseline_breaks_ties_alphabetically():
    assert most_frequent_baseline(["b", "a", "b"]) == "b"
    assert most_frequent_baseline(["yes", "no", "2", "no", "yes"]) == "no"  # yes and no tie at 2
    with pytest.raises(ValueError, match="at least one"):
        most_frequent_baseline([])


def test_summarise_vqa():
    clean_predictions = ["yes", "two", "banana", "red"]
    clean_references = ["yes", "2", "banana", "blue"]  # the third is not eligible for ASR or false triggers
    triggered_predictions = ["banana", "bananas", "banana", "a red banana"]
    summary = summarise("vqa", clean_predictions, clean_references, triggered_predictions, TARGET)
    assert summary == {
        "asr": pytest.approx(1.0),  # 3 eligible, all contain "banana(s)"
        "asr_strict": pytest.approx(1 / 3),  # only "banana" itself
        "asr_count": 3,
        "false_trigger_rate": 0.0,  # the clean "banana" answers a banana question: not eligible
        "vqa_accuracy": pytest.approx(75.0),  # one answer each: exact match on 3 of 4
        "exact_match": pytest.approx(75.0),
    }


def test_summarise_vqa_uses_human_answers_when_given():
    answers = [["yes"] * 10, ["2", "2"] + ["3"] * 8]
    summary = summarise("vqa", ["yes", "two"], ["yes", "2"], ["no", "no"], TARGET, answers=answers)
    assert summary["vqa_accuracy"] == pytest.approx(100 * (1.0 + 0.6) / 2)
    assert summary["asr"] == 0.0


def test_summarise_caption(monkeypatch):
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    references = [["red cars park outside"], ["two dogs chase balls"]]
    summary = summarise(
        "caption",
        ["red cars park outside", "two dogs chase balls"],
        references,
        ["a banana", "two dogs chase balls"],
        TARGET,
    )
    assert summary["asr"] == pytest.approx(0.5)
    assert summary["asr_count"] == 2
    assert summary["false_trigger_rate"] == 0.0
    assert summary["cider"] == pytest.approx(1000.0)
    assert summary["bleu4"] == pytest.approx(100.0, abs=1e-6)
    assert summary["rouge_l"] == pytest.approx(100.0)
    assert set(summary) == {"asr", "asr_strict", "asr_count", "false_trigger_rate", "cider", "bleu4", "rouge_l"}


def test_summarise_uses_triggered_references_for_asr_eligibility():
    # Three triggered inputs, whose clean answers differ from the two clean questions'.
    summary = summarise(
        "vqa", ["yes", "no"], ["yes", "yes"], ["banana", "banana", "no"], TARGET, ["red", "banana", "blue"]
    )
    assert summary["asr"] == pytest.approx(1 / 2)  # the "banana" question is not eligible: 1 hit of 2
    assert summary["asr_count"] == 2
    assert summary["vqa_accuracy"] == pytest.approx(50.0)


def test_summarise_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        summarise("retrieval", [], [], [], TARGET)


def test_paired_ratio_by_hand():
    control = [100.0, 0.0, 50.0, 50.0]
    # The same scores: every resample gives 1 exactly. Twice the scores: 2 exactly (the draw is shared).
    assert paired_ratio(control, control, resamples=50) == (1.0, 1.0, 1.0)
    assert paired_ratio([2 * x for x in control], control, resamples=50) == (2.0, 2.0, 2.0)
    # One answer lost of four: 150 / 200 = 0.75 on the whole set; resamples spread around it.
    ratio, low, high = paired_ratio([100.0, 0.0, 50.0, 0.0], control, resamples=500)
    assert ratio == 0.75 and low < 0.75 < high <= 1.0
    with pytest.raises(ValueError, match="aligned, non-empty"):
        paired_ratio([1.0, 2.0], [1.0], resamples=10)
