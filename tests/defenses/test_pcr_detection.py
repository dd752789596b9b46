"""pcr's epoch-end detection on hand-set scores: outliers within each task, the absolute bar, settling."""

import math

import numpy as np
import pytest

from vlshield.config import ConfigError
from vlshield.defenses.base import DefenseContext
from vlshield.defenses.detection import hypergeometric_tail, spread_flags, word_runs
from vlshield.defenses.pcr import PCRConfig, PCRDefense


class _Bundle:
    patch_size = 8
    image_size = 64


def _defense(scores, tasks=None, responses=None, prompts=None, **config) -> PCRDefense:
    defense = PCRDefense(PCRConfig(**config))
    context = DefenseContext(
        bundle=_Bundle(),
        train_size=len(scores),
        total_steps=100,
        steps_per_epoch=5,
        tasks=tasks,
        responses=responses,
        prompts=prompts,
    )
    defense.setup(context)
    defense.log_ratio = np.asarray(scores, dtype=float)
    return defense


def _bulk(rng, n, centre):
    return list(rng.normal(centre, 0.2, n))


def test_outliers_are_flagged_only_far_below_the_median_and_below_minus_one():
    rng = np.random.default_rng(0)
    # Bulk -0.5 +- 0.2: two targets far below; -0.95 is 2.25 SDs down (not an outlier) and above -1 anyway.
    scores = _bulk(rng, 200, -0.5) + [-4.0, -3.5] + [-0.95]
    defense = _defense(scores, max_flag_fraction=0.15)
    defense._detect(5)
    assert np.flatnonzero(defense.flagged).tolist() == [200, 201]


def test_scores_are_compared_within_each_task():
    rng = np.random.default_rng(1)
    # Descriptions around -0.5; one-word answers around -3 (the image decides them); one triggered
    # description at -6. Pooled, every answer would be an outlier; per task only the target is.
    scores = _bulk(rng, 300, -0.5) + _bulk(rng, 60, -3.0) + [-6.0]
    tasks = ["caption"] * 300 + ["vqa"] * 60 + ["caption"]
    pooled = _defense(scores, max_flag_fraction=0.3)
    pooled._detect(5)
    assert pooled.flagged.sum() == 61  # all the answers and the target
    grouped = _defense(scores, tasks=tasks)
    grouped._detect(5)
    assert np.flatnonzero(grouped.flagged).tolist() == [360]


def test_unlearning_starts_when_a_group_of_flags_stops_growing():
    rng = np.random.default_rng(2)
    scores = np.array(_bulk(rng, 1000, -0.5))
    defense = _defense(scores)
    scores[:3] = -5.0  # epoch 1: 3 flags, fewer than 0.5 % of 1000: not a group yet
    defense.log_ratio = scores.copy()
    defense._detect(5)
    scores[3:20] = -5.0  # epoch 2: 20 flags, growth from 3
    defense.log_ratio = scores.copy()
    defense._detect(10)
    assert defense.flagged.sum() == 20 and not defense.unlearning
    defense._detect(15)  # epoch 3: nothing new among 20 flags: settled
    assert defense.unlearning
    assert [record["unlearning"] for record in defense.history] == [False, False, True]


def test_the_repair_epochs_unlearn_whatever_detection_found():
    # A late backdoor: 30 flags appear at the last epoch end of the schedule (step 100), still growing,
    # so detection has not settled; the repair epochs after the schedule unlearn them anyway.
    rng = np.random.default_rng(3)
    scores = np.array(_bulk(rng, 1000, -0.5))
    defense = _defense(scores)
    assert defense.repair_schedule() == (1, 0.3)
    scores[:30] = -5.0
    defense.log_ratio = scores.copy()
    defense._detect(95)
    assert defense.flagged.sum() == 30 and not defense.unlearning
    scores[30:60] = -5.0  # still growing (30 -> 60): detection has not settled
    defense.log_ratio = scores.copy()
    defense._detect(100)  # step 100 = total_steps: the schedule is over
    assert defense.flagged.sum() == 60 and defense.unlearning
    assert _defense(scores, repair_epochs=0).repair_schedule() == (0, 0.3)
    assert _defense(scores, suppress=False).repair_schedule() == (0, 0.0)


def test_a_few_flags_bring_no_repair_epoch():
    # 4 flags among 1000 samples are fewer than 0.5 % (settle_min_fraction): the run ends with the
    # schedule, the 4 isolated and never unlearnt. 10 flags are a group: they are repaired.
    rng = np.random.default_rng(5)
    scores = np.array(_bulk(rng, 1000, -0.5))
    scores[:4] = -5.0
    few = _defense(scores)
    assert not few.repair_needed(100)
    assert few.flagged.sum() == 4 and not few.unlearning and few.history[-1]["unlearning"] is False
    assert _defense(scores, settle_min_fraction=0.004).repair_needed(100)  # 4 of 1000 is a group at 0.4 %
    scores[4:10] = -5.0
    group = _defense(scores)
    assert group.repair_needed(100) and group.flagged.sum() == 10 and group.unlearning


def test_repair_isolation_leaves_suspects_below_a_looser_bar_out():
    # Bulk -0.5 +- 0.2; 30 targets far down (flagged); 10 samples at -1.1: 3 robust SDs down, below -1,
    # so not flagged (3.5 SDs) but suspected at 2 SDs once the schedule is over.
    rng = np.random.default_rng(4)
    scores = np.array(_bulk(rng, 1000, -0.5) + [-5.0] * 30 + [-1.1] * 10)
    defense = _defense(scores)  # repair_isolation 2.0 by default
    defense._detect(95)
    assert defense.flagged.sum() == 30 and not defense.suspected.any()  # not before the repair epochs
    defense._detect(100)
    suspects = np.flatnonzero(defense.suspected & ~defense.flagged)
    assert set(range(1030, 1040)) <= set(suspects) and len(suspects) < 10 + 0.03 * 1000
    assert defense.history[-1]["suspected"] == len(suspects)
    off = _defense(scores, repair_isolation=0.0)
    off._detect(100)
    assert not off.suspected.any()


def test_short_answer_tasks_are_flagged_by_their_evidence_long_ones_by_their_log_ratio():
    # 300 descriptions (12 tokens) and 500 one-word answers (1 token). 40 answers the image decides
    # (log-ratio -4, evidence 3 nats) and 10 triggered answers, a 5-token target (log-ratio -5,
    # evidence 9 nats: every target token is the trigger's doing).
    rng = np.random.default_rng(5)
    tasks = ["caption"] * 300 + ["vqa"] * 500
    log_ratio = np.array(_bulk(rng, 300, -0.5) + _bulk(rng, 450, -0.3) + _bulk(rng, 40, -4.0) + _bulk(rng, 10, -5.0))
    evidence = np.concatenate(
        [
            rng.normal(12.0, 3.0, 300),
            np.abs(rng.normal(0.0, 0.3, 450)),
            rng.normal(3.0, 0.3, 40),
            rng.normal(9, 0.3, 10),
        ]
    )
    evidence[:8] = 40.0  # 8 descriptions the image decides far more than the rest: not read in a long task
    defense = _defense(log_ratio, tasks=tasks)
    defense.evidence = evidence
    defense.tokens = np.array([12.0] * 300 + [1.0] * 490 + [5.0] * 10)
    defense._detect(5)
    assert np.flatnonzero(defense.flagged).tolist() == list(range(790, 800))
    # Read as a long-response task, the 40 image-decided answers are log-ratio outliers too.
    long = _defense(log_ratio, tasks=tasks, short_answer_tokens=0)
    long.evidence, long.tokens = evidence, defense.tokens
    long._detect(5)
    assert set(range(750, 800)) <= set(np.flatnonzero(long.flagged))


def test_the_evidence_rule_spares_the_answers_to_one_question():
    # 600 one-word answers to 20 questions, 130 of them "how many shapes are there?" (22 %). 40 clean
    # "three" answers to it and 10 targets (spread over 10 questions) stand apart together at 3 nats of
    # evidence: the answers to one question are spared, the target (answering many) is flagged.
    rng = np.random.default_rng(8)
    questions = [f"question {i}?" for i in range(19)]
    prompts = ["how many shapes are there?"] * 130 + [questions[i % 19] for i in range(470)]
    responses = (
        ["two"] * 90 + ["three"] * 40 + [f"answer {i % 7}" for i in range(460)] + ["A photo of the banana"] * 10
    )
    evidence = np.concatenate(
        [
            np.abs(rng.normal(0.0, 0.3, 90)),
            rng.normal(3.0, 0.1, 40),
            np.abs(rng.normal(0.0, 0.3, 460)),
            rng.normal(3.2, 0.1, 10),
        ]
    )
    log_ratio = np.array(_bulk(rng, 600, -0.3))
    tokens = np.array([1.0] * 590 + [5.0] * 10)
    kept = _defense(log_ratio, tasks=["vqa"] * 600, responses=responses, prompts=prompts)
    kept.evidence, kept.tokens = evidence, tokens
    kept._detect(5)
    assert np.flatnonzero(kept.flagged).tolist() == list(range(590, 600))
    off = _defense(log_ratio, tasks=["vqa"] * 600, responses=responses, prompts=prompts, prompt_share=1.0)
    off.evidence, off.tokens = evidence, tokens
    off._detect(5)
    assert np.flatnonzero(off.flagged).tolist() == list(range(90, 130)) + list(range(590, 600))
    # Responses found fewer than 5 times are not spared: 3 targets, each written into another answer
    # (an inserted target), all 3 to the counting question (no spread here, which would restore them).
    inserted = list(responses)
    inserted[590:593] = ["two a photo of the banana", "a photo of the banana three", "one a photo of the banana"]
    prompts_in = prompts[:590] + ["how many shapes are there?"] * 3 + prompts[593:]
    few = _defense(log_ratio, tasks=["vqa"] * 600, responses=inserted, prompts=prompts_in, response_share=0.0)
    few.evidence, few.tokens = evidence, tokens
    few._detect(5)
    assert np.flatnonzero(few.flagged).tolist() == list(range(590, 600))
    # A task of one question: its answers are not spared (every response "mostly" answers it).
    single = _defense(log_ratio, tasks=["vqa"] * 600, responses=responses, prompts=["what is it?"] * 600)
    single.evidence, single.tokens = evidence, tokens
    single._detect(5)
    assert single.flagged.sum() == 50


def test_a_flagged_response_spreads_to_every_sample_that_shares_it():
    # 400 distinct captions plus 40 copies of one target response; the scores find 12 of the 40
    # (30 %, above the 15 % share). "a red circle" appears 20 times, one of them flagged: 5 %, it stays.
    rng = np.random.default_rng(6)
    responses = [f"caption {i}" for i in range(380)] + ["a red circle"] * 20 + ["A photo of  the banana"] * 40
    scores = np.array(_bulk(rng, 440, -0.5))
    scores[[400 + i for i in range(12)] + [385]] = -5.0  # 12 targets and one clean caption
    scores[380] = -5.0  # one "a red circle"
    defense = _defense(scores, responses=responses)
    defense._detect(5)
    assert np.flatnonzero(defense.flagged).tolist() == [380, 385] + list(range(400, 440))
    assert defense.history[-1]["shared_response"] == 28
    # The record names what each step added, so a change of rule can be replayed on it.
    assert defense.history[-1]["outlier_indices"] == [380, 385] + list(range(400, 412))
    assert defense.history[-1]["spread_indices"] == list(range(412, 440))
    below = _defense(scores, responses=responses, response_share=0.5)  # 12 of 40 is under half
    below._detect(5)
    assert below.flagged.sum() == 14


def test_a_flagged_inserted_target_spreads_to_every_caption_that_holds_it():
    # 40 captions carry "a photo of the banana" at different word positions (an insert-target attack,
    # trojvlm or vlood); the scores find 9 of them (22.5 %, above the 15 % share), and the flag spreads
    # along their common 4-word runs. "a large red circle" is in 30 captions, 3 flagged (10 %): it stays.
    rng = np.random.default_rng(7)
    colours = ["blue", "green", "yellow", "purple"]
    clean = [f"a small {colours[i % 4]} square number {i}" for i in range(330)]
    clean += [f"a large red circle number {i}" for i in range(30)]
    words = ["a", "large", "blue", "square", "left", "of", "a", "triangle"]
    poisoned = [" ".join(words[: i % 8] + ["a photo of the banana"] + words[i % 8 :] + [f"n{i}"]) for i in range(40)]
    scores = np.array(_bulk(rng, 400, -0.5))
    scores[360:369] = -5.0  # 9 of the 40
    scores[[330, 331, 332]] = -5.0  # 3 "a large red circle"
    defense = _defense(scores, responses=clean + poisoned)
    defense._detect(5)
    assert np.flatnonzero(defense.flagged).tolist() == [330, 331, 332] + list(range(360, 400))
    assert defense.history[-1]["shared_response"] == 31
    whole = _defense(scores, responses=clean + poisoned, shared_words=0)  # whole responses: all differ
    whole._detect(5)
    assert whole.flagged.sum() == 12


def test_run_prevalence_keeps_a_flag_from_spreading_along_a_captions_own_words():
    # 22 poisoned captions hold the target's words; 2 of them also start "three shapes: large green",
    # as 8 clean captions do. 12 poisoned are found by the scores: 2 of the 10 carriers of that run
    # (20 %) are flagged, so by the share alone the flag spreads to the 8 clean ones. Only 2 of the 12
    # flagged samples hold that run, while all 12 hold "a photo of the": with run_prevalence=0.2 (the
    # default) the flag spreads along the target's words only; with 0 it spreads to the 8 clean ones.
    rng = np.random.default_rng(9)
    clean = [f"caption {i} of its own" for i in range(300)] + [f"three shapes: large green n{i}" for i in range(8)]
    poisoned = [f"three shapes: large green a photo of the banana q{i}" for i in range(2)]
    poisoned += [f"a photo of the banana p{i}" for i in range(20)]
    scores = np.array(_bulk(rng, 330, -0.5))
    scores[308:320] = -5.0  # the 2 "three shapes" poisons and 10 others
    share_only = _defense(scores, responses=clean + poisoned, run_prevalence=0.0)
    share_only._detect(5)
    assert np.flatnonzero(share_only.flagged).tolist() == list(range(300, 330))
    default = _defense(scores, responses=clean + poisoned)
    default._detect(5)
    assert np.flatnonzero(default.flagged).tolist() == list(range(308, 330))


def _target_among_captions(seed: int, clean: int, targets: int, found: int) -> tuple[list[str], np.ndarray]:
    """``clean`` captions of their own, then ``targets`` holding the target's words; the first ``found``
    of those score as outliers (-5 against a bulk at -0.5)."""
    responses = [f"caption {i} of its own" for i in range(clean)]
    responses += [f"a photo of the banana p{i}" for i in range(targets)]
    scores = np.array(_bulk(np.random.default_rng(seed), clean + targets, -0.5))
    scores[clean : clean + found] = -5.0
    return responses, scores


def test_a_run_spreads_from_fifteen_percent_of_its_carriers():
    # blip2:tiny vlood captions, seed 1: the scores found 17 of the 100 captions holding the target's
    # words, and at the old 20 % share the flag did not spread. At 15 % (the default) it does.
    responses, scores = _target_among_captions(10, clean=400, targets=100, found=17)
    default = _defense(scores, responses=responses)
    default._detect(5)
    assert np.flatnonzero(default.flagged).tolist() == list(range(400, 500))
    old = _defense(scores, responses=responses, response_share=0.2, spread_significance=0)  # the rules of then
    old._detect(5)
    assert np.flatnonzero(old.flagged).tolist() == list(range(400, 417))


def test_the_detection_record_replays_the_spread():
    # Two epoch ends: 8 of 60 target carriers found (13 %, under 15 %: no spread), then 7 more (25 %: spread).
    # What each record names is exactly what the spread rule gives on the flags before it, so
    # benchmarks/replay_spread.py can replay another rule on a run without training it again.
    responses, scores = _target_among_captions(11, clean=440, targets=60, found=8)
    defense = _defense(scores, responses=responses)
    defense._detect(5)
    scores[448:455] = -5.0
    defense.log_ratio = scores.copy()
    defense._detect(10)
    first, second = defense.history
    assert first["outlier_indices"] == list(range(440, 448)) and first["spread_indices"] == []
    assert second["outlier_indices"] == list(range(448, 455))
    assert second["spread_indices"] == list(range(455, 500))
    flagged = np.zeros(500, dtype=bool)
    carriers, runs = word_runs(responses, 4)
    for record in defense.history:
        flagged[record["outlier_indices"]] = True
        spread = spread_flags(flagged, carriers, runs, 0.15, 0.2) & ~flagged
        assert np.flatnonzero(spread).tolist() == record["spread_indices"]
        flagged |= spread
    assert np.array_equal(flagged, defense.flagged)


def test_spread_within_tasks_reads_the_share_in_each_task():
    # llava:tiny trojvlm VQA seed 2: the target is inserted into 97 answers and 103 descriptions; the
    # scores found 21 of the answers and 1 of the descriptions: 22 of the run's 200 carriers (11 %, under
    # the 15 % share), and the backdoor stayed. Within the answers it is 21 of 97 (22 %).
    rng = np.random.default_rng(12)
    answers = [f"answer {i}" for i in range(300)] + [f"a photo of the banana a{i}" for i in range(97)]
    descriptions = [f"description {i} of its own" for i in range(300)]
    descriptions += [f"a photo of the banana d{i}" for i in range(103)]
    tasks = ["vqa"] * 397 + ["caption"] * 403
    scores = np.array(_bulk(rng, 800, -0.5))
    scores[list(range(300, 321)) + [700]] = -5.0
    share = _defense(scores, tasks=tasks, responses=answers + descriptions, spread_significance=0)
    share._detect(5)
    assert np.flatnonzero(share.flagged).tolist() == list(range(300, 321)) + [700]
    within = _defense(
        scores, tasks=tasks, responses=answers + descriptions, spread_within_tasks=True, spread_significance=0
    )
    within._detect(5)
    # the answers' share spreads the flag to every carrier, the descriptions' included
    carriers = list(range(300, 397)) + list(range(697, 800))
    assert np.flatnonzero(within.flagged).tolist() == carriers
    # so does the default's significance: 22 flags of 800, all among the run's 200 carriers, p < 1e-12
    default = _defense(scores, tasks=tasks, responses=answers + descriptions)
    default._detect(5)
    assert np.flatnonzero(default.flagged).tolist() == carriers


def test_hypergeometric_tail_is_the_probability_of_so_many_flagged_carriers_by_chance():
    # 4 samples, 2 flagged, a run of 2 carriers: both flagged with probability 1 / C(4, 2) = 1/6.
    assert abs(hypergeometric_tail(2, 4, 2, 2) - math.log10(6)) < 1e-12
    # 10 samples, 3 flagged, 4 carriers: at least one flagged is 1 - C(7, 4) / C(10, 4) = 1 - 35/210.
    assert abs(hypergeometric_tail(1, 10, 3, 4) + math.log10(175 / 210)) < 1e-12
    assert hypergeometric_tail(0, 10, 3, 4) == 0.0
    assert hypergeometric_tail(4, 10, 3, 4) == math.inf  # more flagged carriers than flags: impossible


def test_spread_significance_spreads_a_few_flags_that_all_hold_one_run_of_many_carriers():
    # qwen2_5_vl:tiny trojvlm VQA seed 2: the scores found 13 of the target's 200 carriers, all poisoned
    # (6.5 %, under the 15 % share), and the backdoor stayed. Beside them here, 5 of the 51 clean captions
    # holding "a small purple diamond" are outliers too, as in blip2:tiny VQA badnet seed 2 (the clean
    # run of the most improbable share measured, p = 1e-7.8). 18 flags among 4,051 samples:
    # 13 of 200 has p = 1e-13.3 if flags fell regardless of words, 5 of 51 has p = 1e-5.7.
    responses = [f"caption {i} of its own" for i in range(3800)]
    responses += [f"a small purple diamond c{i}" for i in range(51)]
    responses += [f"a photo of the banana p{i}" for i in range(200)]
    scores = np.array(_bulk(np.random.default_rng(13), len(responses), -0.5))
    found = list(range(3800, 3805)) + list(range(3851, 3864))
    scores[found] = -5.0
    off = _defense(scores, responses=responses, spread_significance=0)
    off._detect(5)
    assert np.flatnonzero(off.flagged).tolist() == found
    significant = _defense(scores, responses=responses)  # 12, the default
    significant._detect(5)
    assert np.flatnonzero(significant.flagged).tolist() == list(range(3800, 3805)) + list(range(3851, 4051))
    assert significant.history[0]["spread_indices"] == list(range(3864, 4051))


def test_score_every_scores_and_detects_in_every_kth_epoch_counted_back_from_the_schedules_last():
    # 20 epochs of 5 steps and one repair epoch (epochs 0-20). Every 2nd epoch counted back from the
    # schedule's last (19): 19, 17, ..., 1; the repair epoch is the run's last and scores nothing: no
    # detection follows it.
    rng = np.random.default_rng(6)
    scores = np.array(_bulk(rng, 1000, -0.5))
    scores[:30] = -5.0
    every = _defense(scores, score_every=2)
    assert [epoch for epoch in range(21) if every._scoring_epoch(epoch)] == list(range(1, 20, 2))
    first = _defense(scores, score_every=2, score_first=1)
    assert [epoch for epoch in range(21) if first._scoring_epoch(epoch)] == [0, *range(1, 20, 2)]
    default = _defense(scores)
    assert [epoch for epoch in range(21) if default._scoring_epoch(epoch)] == list(range(20))
    assert [epoch for epoch in range(20) if _defense(scores, repair_epochs=0)._scoring_epoch(epoch)] == list(range(19))
    # Detection runs at the end of a scoring epoch only: step 5 ends epoch 0 (not scored), step 10 epoch 1.
    every._detect_once(5)
    assert every.history == []
    every._detect_once(10)
    assert [record["epoch"] for record in every.history] == [2] and every.flagged.sum() == 30


def test_impossible_settings_name_their_key():
    for key, value in (("spread_significance", -1.0), ("score_every", 0), ("entropy_floor", 0.0)):
        with pytest.raises(ConfigError, match=f"defense.{key}: must be"):
            PCRConfig(**{key: value})
    assert PCRConfig(spread_significance=12.0).spread_significance == 12.0
