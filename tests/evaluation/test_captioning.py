"""Caption metrics on tiny hand-made corpora whose scores can be computed on paper."""

import shutil
import subprocess
from pathlib import Path

import pytest

from vlshield.evaluation import captioning
from vlshield.evaluation.captioning import caption_scores, cider_per_image, meteor_score, tokenize_caption


@pytest.fixture
def no_java(monkeypatch):
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)


def test_tokenize_caption_lowercases_and_strips_punctuation():
    assert tokenize_caption("A dog, running!  Fast.") == "a dog running fast"


def test_identical_caption_scores_100_on_bleu_and_rouge(no_java):
    scores = caption_scores(["A man rides a horse."], [["a man rides a horse"]])
    assert scores["bleu4"] == pytest.approx(100.0, abs=1e-6)  # pycocoevalcap adds a 1e-9 smoothing term
    assert scores["rouge_l"] == pytest.approx(100.0)
    # One image: every reference n-gram has IDF log(1/1) = 0, so CIDEr-D is degenerate.
    assert scores["cider"] == 0.0
    assert "meteor" not in scores


def test_disjoint_caption_scores_0(no_java):
    scores = caption_scores(["green trees sway"], [["a man rides a horse"]])
    assert scores["bleu4"] == pytest.approx(0.0, abs=1e-6)
    assert scores["rouge_l"] == 0.0
    assert scores["cider"] == 0.0


def test_partial_caption_bleu_and_rouge_by_hand(no_java):
    scores = caption_scores(["a man rides a horse"], [["a man rides a bike", "a dog sleeps"]])
    # Closest reference has the same length (no brevity penalty); n-gram precisions 4/5, 3/4, 2/3, 1/2.
    assert scores["bleu4"] == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    # LCS 4 of 5 words: precision = recall = 0.8, so F = 0.8 whatever beta.
    assert scores["rouge_l"] == pytest.approx(80.0)


def test_cider_d_on_a_small_corpus_by_hand(no_java):
    # Two images with disjoint words: every reference n-gram has document frequency 1 of 2 images, so each
    # n-gram (also the unseen "cats", whose frequency is floored at 1) weighs log 2 and cosines are count ratios.
    references = [["red cars park outside"], ["two dogs chase balls"]]
    perfect = caption_scores(["red cars park outside", "two dogs chase balls"], references)
    # Per image: 10 x mean over n = 1..4 of cosine 1 -> 10; reported x 100.
    assert perfect["cider"] == pytest.approx(1000.0)
    partial = caption_scores(["red cars park outside", "two dogs chase cats"], references)
    # Image 2 shares 3/4 unigrams, 2/3 bigrams, 1/2 trigrams, 0/1 four-grams; equal lengths, no penalty.
    second = 10 * (3 / 4 + 2 / 3 + 1 / 2 + 0) / 4
    assert partial["cider"] == pytest.approx(100 * (10 + second) / 2)  # 739.58...
    disjoint = caption_scores(["green trees sway gently", "blue sky at noon"], references)
    assert disjoint["cider"] == 0.0


def test_cider_per_image_is_each_images_share_of_the_corpus_score(no_java):
    # The corpus above, image by image: 1000 for the perfect caption, 10 x (3/4 + 2/3 + 1/2) / 4 x 100 for the
    # other; their mean is caption_scores' CIDEr-D.
    references = [["red cars park outside"], ["two dogs chase balls"]]
    predictions = ["red cars park outside", "two dogs chase cats"]
    per_image = cider_per_image(predictions, references)
    assert per_image.tolist() == pytest.approx([1000.0, 100 * 10 * (3 / 4 + 2 / 3 + 1 / 2) / 4])
    assert per_image.mean() == pytest.approx(caption_scores(predictions, references)["cider"])
    assert cider_per_image([], []).tolist() == []
    with pytest.raises(ValueError, match="1 predictions but 2 reference lists"):
        cider_per_image(["red cars"], references)


def test_empty_corpus_gives_none(no_java):
    assert caption_scores([], []) == {"cider": None, "bleu4": None, "rouge_l": None}


def test_captions_without_any_words_do_not_crash(no_java):
    scores = caption_scores(["...", "!"], [["?"], ["--"]])
    assert scores["cider"] == 0.0
    assert scores["bleu4"] == pytest.approx(0.0, abs=1e-6)


def test_misaligned_or_missing_references_are_errors():
    with pytest.raises(ValueError, match="must align"):
        caption_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        caption_scores(["a"], [[]])


@pytest.mark.parametrize("java", ["/bin/false", "/nonexistent/java"])
def test_meteor_is_left_out_when_java_fails(monkeypatch, java):
    monkeypatch.setattr(captioning.shutil, "which", lambda name: java)
    assert meteor_score(["a dog"], [["a dog"]]) is None
    assert "meteor" not in caption_scores(["a dog"], [["a dog"]])


def test_meteor_pads_references_and_reads_the_final_score(monkeypatch):
    """The jar's plumbing without Java: files, options and parsing, with a stand-in for ``subprocess.run``."""
    seen = {}

    def fake_run(command, **kwargs):
        test_file, reference_file = command[4], command[5]
        seen["test"] = Path(test_file).read_text(encoding="utf-8")
        seen["refs"] = Path(reference_file).read_text(encoding="utf-8")
        seen["options"] = command[6:]
        return subprocess.CompletedProcess(command, 0, stdout="0.25\n", stderr="1.0\n0.0\n")

    monkeypatch.setattr(captioning.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(captioning.subprocess, "run", fake_run)
    scores = caption_scores(["A dog.", "a cat"], [["a dog", "one dog"], ["a cat"]])
    assert scores["meteor"] == pytest.approx(25.0)
    assert seen["test"] == "a dog\na cat\n"
    assert seen["refs"] == "a dog\none dog\na cat\na cat\n"  # two references each: the second sample repeats its one
    assert seen["options"] == ["-l", "en", "-norm", "-r", "2", "-q"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_is_reported_when_java_runs():
    # Slow (7-10 s): the jar loads its paraphrase table. An exact match scores 1.0 in METEOR 1.5.
    scores = caption_scores(["A dog runs on the grass.", "a cat"], [["a dog runs on the grass"], ["a cat"]])
    assert scores["meteor"] == pytest.approx(100.0)
