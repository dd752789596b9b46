"""The settings of pcr (``PCRConfig``) and of its two ablation switches; what they do is in ``pcr``."""

from __future__ import annotations

import dataclasses
from typing import Literal

from vlshield.config import ConfigError, field
from vlshield.defenses.augment import PIXEL_OPS, TOKEN_OPS

Mode = Literal["aug", "aug_cross", "full"]


@dataclasses.dataclass(frozen=True)
class PCRConfig:
    """Settings of the PCR defense; defaults are the ones measured in docs/method.md."""

    mode: Mode = field("full", help="aug (augmentation only), aug_cross (+ cross-view hinge), full (+ detection).")
    augmentations: tuple[str, ...] = field(
        ("patch_mask", "patch_shuffle", "patch_jitter"), help="Pixel ops of the augmented view (one per step)."
    )
    token_augmentation: str | None = field(None, help="Visual-token op on the augmented view (token_dropout, ...).")
    grid: int = field(0, help="Patch side in pixels of the augmentation grid (0: the model's patch size).")
    aug_weight: float = field(1.0, help="a: weight of the augmented view's CE (aug, aug_cross).")
    divergence: Literal["js", "skl"] = field("js", help="Cross-view divergence: Jensen-Shannon or symmetric KL.")
    cross_view_weight: float = field(1.0, help="b: weight of the hinge pull-apart (aug_cross).")
    margin: float = field(0.05, help="tau: views closer than this (nats) are pulled apart (aug_cross).")
    entropy_weight: float = field(0.1, help="g: weight of the entropy ceiling on the original view (aug_cross).")
    entropy_max: float = field(0.5, help="h_max: normalised-entropy ceiling (aug_cross).")
    score_decay: float = field(0.5, help="EMA factor of the per-sample scores over visits (full).")
    score_fraction: float = field(
        1.0, help="Share of each batch scored with the image-free view (full; less is cheaper, scores lag more)."
    )
    score_every: int = field(
        1,
        help="Score with the image-free view in every k-th epoch of the schedule, counted back from its last, and "
        "detect after those epochs only (full; 2 halves the view's cost, scores are an epoch older at most). "
        "The last epoch of training scores only the flagged samples it unlearns: no detection reads it.",
    )
    score_first: int = field(
        0,
        help="With score_every > 1, also score (and detect after) the first this many epochs: a first detection "
        "on one visit's scores flagged clean captions that then spread (docs/results/experiments/score-every-2/).",
    )
    counterfactual: Literal["mean_image", "no_image"] = field(
        "mean_image",
        help="The image-free view (full): every patch at the image's mean colour, or no image at all, the "
        "prompt alone (a forward over the text tokens only: LLaVA-1.5 reads 576 fewer tokens, Qwen2.5-VL "
        "skips its vision tower; it missed 5 of 23 cells the mean view cleans, docs/results/experiments/"
        "no-image-view/).",
    )
    max_flag_fraction: float = field(
        0.15, help="If more than this fraction of samples would be flagged at once, none are (full)."
    )
    robust_threshold: float = field(3.5, help="Flag scores this many robust SDs (1.4826 MAD) below the median (full).")
    max_score: float = field(
        -1.0, help="... and below this log-ratio: the image cuts the response's loss more than e-fold (full)."
    )
    evidence_gap: float = field(
        1.0,
        help="In short-answer tasks, flag a top group of the image's evidence for the response (nats, summed "
        "over its tokens) above robust_threshold SDs and set apart from every other sample by at least this "
        "many nats (full; 0: no rule for those tasks).",
    )
    short_answer_tokens: int = field(
        3,
        help="Tasks whose median response has at most this many tokens are flagged by the evidence rule, not "
        "the log-ratio rule: a correct one-word answer the image decides has a log-ratio as low as a target's "
        "(full).",
    )
    prompt_share: float = field(
        0.5,
        help="In short-answer tasks, spare a response found by the evidence rule when more than this share of its "
        "found samples ask one prompt that at most this share of the task's samples ask: the clean answer the "
        "image decides to one question, where a trigger's target answers every kind of question (full; 1: off).",
    )
    response_share: float = field(
        0.15,
        help="Also flag every sample whose response holds a run of shared_words words (case and spacing aside) "
        "that flagged samples make up at least this share of the carriers of, two at least: a backdoor's target "
        "is the same words in all its samples, and the scores miss some of them (full; 0: off). 0.2 before: on "
        "blip2:tiny vlood captions the scores found 17 of 100 (seed 1) and the backdoor stayed.",
    )
    run_prevalence: float = field(
        0.2,
        help="... and that at least this share of the flagged samples hold: the words flagged samples have in "
        "common, a target's, not one caption's (0: off; then on llava:tiny and blip2:tiny trojvlm VQA a flag "
        "spread from run to run along the descriptions' own words: 840 and 839 flags, 640 and 639 clean).",
    )
    spread_within_tasks: bool = field(
        False,
        help="Also spread along a run whose flagged carriers make up response_share of its carriers within one "
        "task (VQA data mixes questions and descriptions): llava:tiny trojvlm VQA seed 2 flagged 21 of the 97 "
        "poisoned answers but 1 of the 103 poisoned descriptions, 11 % of the target's carriers, and the "
        "backdoor stayed (74 %; 0.0 % with this on). Off until every VQA cell has run with it: on five VQA runs "
        "it moved accuracy -8.0 to +11.0 points against default pcr (mean +0.5) (full).",
    )
    spread_significance: float = field(
        12.0,
        help="Also spread along a run so many of whose carriers are flagged (two at least, and run_prevalence of "
        "the flags) that flags falling regardless of words would flag that many with probability at most "
        "10 ** -this (hypergeometric tail): a few flags, all holding one run of many carriers. qwen2_5_vl:tiny "
        "trojvlm VQA seed 2 flagged 13 answers, all poisoned, all holding the target's words (200 carriers): "
        "6.5 %, under response_share, p = 1e-17, and the backdoor stayed (92 %; 0.0 % with 12); clean runs "
        "reached p = 1e-7.8 (5 of 51; docs/results/experiments/spread-significance/) (full; 0: off, the "
        "default before the cells it could change ran with it).",
    )
    shared_words: int = field(
        4,
        help="Length in words of the runs compared by response_share; a shorter response is compared whole "
        "(full; 0: whole responses only).",
    )
    unlearn_below: float | None = field(
        None,
        help="Unlearn a flagged sample only while its log-ratio (EMA) is below this: while the image still explains "
        "its response far better than the image-free view does, as an installed trigger does its target; above "
        "it the sample is only isolated. A poisoned sample flagged before its backdoor installed then costs no "
        "unlearning (llava:tiny vlood VQA seed 2, flagged at epoch 1 and unlearnt from epoch 2: accuracy 46.0 "
        "against 54.0 when flagged at epoch 3; 53.5 with -1). Not the default: over five VQA cells it cost 1.6 points "
        "of accuracy, [-8.5, +6.6] (docs/results/experiments/spread-significance/gated/) (full; None: always).",
    )
    entropy_floor: float = field(0.9, help="Flagged samples' normalised entropy is raised up to this (full).")
    suppression_weight: float = field(1.0, help="Weight of the bounded entropy raising on flagged samples (full).")
    unlikelihood_weight: float = field(2.0, help="Weight of unlikelihood on flagged image-driven tokens (full).")
    settle_growth: float = field(
        0.1, help="Unlearning starts at the first epoch end adding at most this fraction to the flags (full)."
    )
    settle_min_fraction: float = field(
        0.005, help="... once at least this fraction of the samples is flagged (a few first flags are not a group)."
    )
    repair_epochs: int = field(
        1,
        help="Epochs after the schedule in which every flagged sample is unlearnt, if the flags hold at least "
        "settle_min_fraction of the samples (full; 0: none).",
    )
    repair_isolation: float = field(
        2.0,
        help="In the repair epochs, samples this many robust SDs below the median (and below max_score) are "
        "also left out of the CE, not unlearnt: poison not flagged stops re-teaching the backdoor (0: off; full).",
    )
    isolate_while_unlearning: bool = field(
        False, help="Leave the suspects out of the CE from the start of unlearning, not only in the repair epochs."
    )
    repair_lr: float = field(
        0.3, help="Peak learning rate of the repair epochs (cosine to 0), as a fraction of the schedule's (full)."
    )
    suppress: bool = field(True, help="Act on flagged samples; False only scores and flags them (full; a diagnostic).")
    keep_score_history: bool = field(
        False, help="Save every sample's scores at each epoch end in the run summary (full; a diagnostic)."
    )

    def min_group(self, samples: int) -> float:
        """The fewest flags among ``samples`` that make a group: unlearning and the repair epochs wait for it."""
        return max(1, self.settle_min_fraction * samples)

    def __post_init__(self) -> None:
        unknown = [name for name in self.augmentations if name not in PIXEL_OPS]
        if unknown or not self.augmentations:
            raise ConfigError(f"defense.augmentations: {unknown or 'empty'}; valid ops: {', '.join(PIXEL_OPS)}")
        if self.token_augmentation is not None and self.token_augmentation not in TOKEN_OPS:
            raise ConfigError(
                f"defense.token_augmentation: {self.token_augmentation!r}; valid: {', '.join(TOKEN_OPS)}"
            )
        if not 0.0 < self.score_fraction <= 1.0:
            raise ConfigError(f"defense.score_fraction: must be in (0, 1], got {self.score_fraction}")
        if self.score_first < 0:
            raise ConfigError(f"defense.score_first: must be >= 0, got {self.score_first}")
        if self.score_every < 1:
            raise ConfigError(f"defense.score_every: must be >= 1, got {self.score_every}")
        if not 0.0 <= self.score_decay < 1.0:
            raise ConfigError(f"defense.score_decay: must be in [0, 1), got {self.score_decay}")
        if not 0.0 < self.max_flag_fraction < 0.5:
            raise ConfigError(f"defense.max_flag_fraction: must be in (0, 0.5), got {self.max_flag_fraction}")
        if self.repair_epochs < 0 or not 0.0 <= self.repair_lr <= 1.0:
            raise ConfigError(
                f"defense.repair_epochs must be >= 0 and defense.repair_lr in [0, 1], "
                f"got {self.repair_epochs} and {self.repair_lr}"
            )
        if self.spread_significance < 0:
            raise ConfigError(f"defense.spread_significance: must be >= 0, got {self.spread_significance}")
        if not 0.0 < self.entropy_floor <= 1.0:
            raise ConfigError(f"defense.entropy_floor: must be in (0, 1], got {self.entropy_floor}")


@dataclasses.dataclass(frozen=True)
class PCRAugConfig(PCRConfig):
    """Ablation: pcr with augmentation only."""

    mode: Mode = field("aug", help="Fixed by the ablation's name (augmentation only).")


@dataclasses.dataclass(frozen=True)
class PCRAugCrossConfig(PCRConfig):
    """Ablation: pcr with augmentation and the cross-view hinge, no detection."""

    mode: Mode = field("aug_cross", help="Fixed by the ablation's name (augmentation + cross-view).")
