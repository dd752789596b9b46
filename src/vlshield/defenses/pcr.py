"""PCR: patch augmentation + cross-view regularity + an entropy constraint (the seed paper's defense).

Three modes, each adding to the previous one's ingredients (the ablation switches):

- ``aug``: train on a patch-augmented view as well: ``L = CE(orig) + a * CE(aug)``.
- ``aug_cross``: add the hinge pull-apart of original vs augmented view and an entropy ceiling:
  ``L += b * mean_i relu(tau - D_i) + g * mean_i relu(H_i - h_max)``.
- ``full`` (default): cross-view detection and suppression. Every batch also gets the extreme
  patch view (every patch set to the image mean, scored without gradients), in the epochs whose
  scores a detection reads: every epoch but the run's last, or every ``score_every``-th of the
  schedule (the last epoch views only the flagged samples it unlearns). Per sample, the
  cross-view score ``log_ratio = log CE(orig) - log CE(mean view)`` is averaged over visits (EMA);
  it is low when the image explains the response far better than an image-free view can, which
  is what an installed trigger does for its target. At each epoch end, samples whose score lies
  more than ``robust_threshold`` robust SDs (1.4826 MAD) below the median AND below
  ``max_score`` are flagged (sticky); if more than ``max_flag_fraction`` would be, none are.
  Tasks of short answers (median response at most ``short_answer_tokens`` tokens) use another
  score: there a correct one-word answer that the image decides has a log-ratio as low as a
  target's (llava:tiny VQA: 212 clean answers flagged at epoch 5, no poisoned one). It is the
  image's ``evidence`` for the response, ``CE(mean view) - CE(orig)`` summed over its tokens (nats;
  EMA like the log-ratio); a top group of it, above ``robust_threshold`` SDs and set apart from
  every other sample of its task by ``evidence_gap`` nats, is flagged: a target put in place of a
  one-word answer owes all of its tokens to the trigger. (On captions it flagged clean samples:
  llava:tiny badnet, 5 at epoch 1.) A response of that group given mostly to one question is spared
  (``prompt_share``): it is that question's answer, not a target, which answers every kind of question.
  Then a flag spreads to every sample whose response holds a
  run of ``shared_words`` words (or is, if shorter) that flagged samples make up ``response_share``
  of the carriers of (or of which so many carriers are flagged that flags blind to words would flag
  that many with probability at most 10 ** -``spread_significance``), and that at least
  ``run_prevalence`` of the flagged samples hold: a backdoor
  puts the same target words in all its samples, in place of the answer or inserted into it, and
  the scores find only those whose backdoor has installed by then
  (qwen2_5_vl:tiny badnet seeds 1, 2: 66 and 59 of 100, ASR 30 and 44 %; llava:tiny vlood: 24 of
  100, in captions that differ but for the inserted target).
  Flagged samples get CE weight 0 (isolation). Once detection settles (an epoch end adds at
  most ``settle_growth`` to flags holding at least ``settle_min_fraction`` of the samples),
  they also get a bounded entropy-raising term (the
  entropy constraint: raise normalised token entropy up to ``entropy_floor``, never beyond) and
  unlikelihood on the response tokens that their image makes more likely than the mean view
  does. Unlearning earlier weakened the backdoor on the poisoned samples not yet flagged, which
  then never became outliers (llava:tiny badnet: 40 of 100 flagged, ASR 92 %).
  A backdoor that installs late is flagged late, when the cosine schedule has little learning
  rate left (qwen2_5_vl:tiny badnet: flags from epoch 7 of 12, ASR 96.5 %); so ``repair_epochs``
  more epochs follow the schedule, with a cosine of their own from ``repair_lr`` times the peak,
  in which every flagged sample is unlearnt whether detection settled or not (ASR 2.5 %), when
  the flags make a group (``settle_min_fraction``): on llava:tiny wanet at 10 %, where there was
  nothing to find, 2 clean flags brought a repair epoch that trained the weak backdoor on (ASR
  7.0 -> 12.0 %, false triggers 7.5 -> 13.5 %; 5.5 % and 5.5 % without it).

Nothing here reads the poison flag, the trigger or the target: only prompts, responses, images
and the model's own outputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from vlshield.config import ConfigError, to_dict
from vlshield.defenses.augment import PIXEL_OPS, TOKEN_OPS, image_mean
from vlshield.defenses.base import Batch, DefenseContext, View, ViewOutput
from vlshield.defenses.detection import (
    normalised,
    one_question_answers,
    robust_high_gap,
    robust_low_outliers,
    spread_flags,
    word_runs,
)
from vlshield.defenses.losses import (
    DIVERGENCES,
    entropy_ceiling,
    entropy_floor,
    hinge_pull_apart,
    normalised_entropy,
    unlikelihood,
)
from vlshield.defenses.pcr_config import PCRAugConfig, PCRAugCrossConfig, PCRConfig


class PCRDefense:
    """The PCR defense (see the module docstring); one instance per training run."""

    name = "pcr"

    def __init__(self, config: PCRConfig) -> None:
        self.config = config

    def setup(self, context: DefenseContext) -> None:
        self.grid = self.config.grid or context.bundle.patch_size
        self.steps_per_epoch = context.steps_per_epoch
        self.schedule_steps = context.total_steps
        self.schedule_epochs = context.total_steps // context.steps_per_epoch
        n = context.train_size
        self.log_ratio = np.full(n, np.nan)
        self.evidence = np.full(n, np.nan)  # nats the image adds to the response, summed over its tokens
        self.tokens = np.full(n, np.nan)  # response length in tokens
        # Pairs (sample, word run it holds) for the spread of flags; without the responses, nothing spreads.
        self.carriers, self.runs = np.arange(n), np.arange(n)
        self.answers = self.prompts = None  # normalised texts, to spare one question's answers
        if context.responses is not None:
            self.carriers, self.runs = word_runs(context.responses, self.config.shared_words)
            self.answers = np.array([normalised(response) for response in context.responses])
        if context.prompts is not None:
            self.prompts = np.array([normalised(prompt) for prompt in context.prompts])
        # Scores are compared within each task: a one-word answer decided by the image scores as low as
        # a trigger's target, far below descriptions (llava:tiny shapes VQA mix: 329 clean flagged).
        self.groups = np.asarray(context.tasks if context.tasks is not None else [""] * n)
        self.flagged = np.zeros(n, dtype=bool)
        self.suspected = np.zeros(n, dtype=bool)  # left out of the CE in the repair epochs (not unlearnt)
        self.unlearning = False
        self.history: list[dict[str, Any]] = []
        if context.bundle.image_size % self.grid:
            raise ConfigError(f"defense.grid: {self.grid} px does not divide the {context.bundle.image_size} px image")

    def repair_schedule(self) -> tuple[int, float]:
        if self.config.mode != "full" or not self.config.suppress:
            return 0, 0.0
        return self.config.repair_epochs, self.config.repair_lr

    def repair_needed(self, step: int) -> bool:
        """At the start of a repair epoch: detect, then repair only if the flags make a group (at least
        ``settle_min_fraction`` of the samples, as unlearning waits for). A few flags stay isolated and
        the run ends with the schedule: a repair epoch for a few clean flags unlearns clean responses
        and trains a weak backdoor on."""
        self._detect_once(step)
        return self._a_group(int(self.flagged.sum()))

    def _a_group(self, flags: int) -> bool:
        return flags >= self.config.min_group(len(self.flagged))

    def _detect_once(self, step: int) -> None:
        """At an epoch end that follows a scoring epoch, once: detect."""
        if step == 0 or step % self.steps_per_epoch or not self._scoring_epoch(step // self.steps_per_epoch - 1):
            return
        if not any(h["step"] == step for h in self.history):
            self._detect(step)

    def _scoring_epoch(self, epoch: int) -> bool:
        """Whether the image-free view scores the samples in ``epoch`` (from 0): only where a detection follows
        that reads the scores, every ``score_every``-th epoch of the schedule counted back from its last
        and the first ``score_first``, and every repair epoch but the last (the next one starts with a
        detection)."""
        last = self.schedule_epochs + self.repair_schedule()[0] - 1
        if epoch >= last:
            return False
        if epoch >= self.schedule_epochs:
            return True
        return epoch < self.config.score_first or (self.schedule_epochs - 1 - epoch) % self.config.score_every == 0

    def views(self, batch: Batch, step: int, generator: torch.Generator) -> list[View]:
        if self.config.mode == "full":
            self._detect_once(step)
            self.scored_rows = self._scored_rows(batch, step, generator)
            if len(self.scored_rows) == 0:
                return []
            images = None
            if self.config.counterfactual == "mean_image":
                images = image_mean(batch.images[self.scored_rows], self.grid, generator)
            return [View("counterfactual", images, requires_grad=False, rows=self.scored_rows)]
        names = self.config.augmentations
        op = PIXEL_OPS[names[int(torch.randint(len(names), (1,), generator=generator))]]
        perturb = None
        if self.config.token_augmentation is not None:
            token_op = TOKEN_OPS[self.config.token_augmentation]

            def perturb(tokens: torch.Tensor) -> torch.Tensor:
                return token_op(tokens, generator)

        return [
            View("augmented", op(batch.images, self.grid, generator), requires_grad=True, token_perturbation=perturb)
        ]

    def loss_terms(
        self, batch: Batch, outputs: dict[str, ViewOutput], step: int
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        original = outputs["original"]
        if self.config.mode != "full":
            return None, self._augmentation_terms(original, outputs["augmented"])
        rows = self.scored_rows
        counterfactual = outputs.get("counterfactual")
        if counterfactual is not None:
            self._update_scores(batch.indices[rows].numpy(), original, counterfactual, rows)
        flagged = torch.from_numpy(self.flagged[batch.indices.numpy()]).to(original.sample_loss.device)
        if not self.config.suppress:
            flagged = torch.zeros_like(flagged)
        suspected = torch.from_numpy(self.suspected[batch.indices.numpy()]).to(flagged.device)
        weights = (~(flagged | suspected)).to(original.sample_loss.dtype)
        unlearn = flagged if self.unlearning else torch.zeros_like(flagged)
        if self.config.unlearn_below is not None:
            # Only while the image still drives the response (a score not seen yet, NaN, compares False).
            held = self.log_ratio[batch.indices.numpy()] < self.config.unlearn_below
            unlearn = unlearn & torch.from_numpy(held).to(unlearn.device)
        return weights, self._suppression_terms(original, counterfactual, rows, unlearn)

    def _scored_rows(self, batch: Batch, step: int, generator: torch.Generator) -> torch.Tensor:
        """Batch positions that get the image-free view: in a scoring epoch a random ``score_fraction`` of
        the batch, plus the flagged samples while they are unlearnt (their terms need that view)."""
        size = len(batch.prompts)
        scoring = self._scoring_epoch(step // self.steps_per_epoch)
        if scoring and self.config.score_fraction >= 1.0:
            return torch.arange(size)
        chosen = torch.zeros(size, dtype=torch.bool)
        if scoring:
            chosen[torch.randperm(size, generator=generator)[: math.ceil(self.config.score_fraction * size)]] = True
        if self.unlearning and self.config.suppress:
            chosen |= torch.from_numpy(self.flagged[batch.indices.numpy()])
        return chosen.nonzero().squeeze(1)

    def _augmentation_terms(self, original: ViewOutput, augmented: ViewOutput) -> dict[str, torch.Tensor]:
        config = self.config
        terms = {"aug_loss": config.aug_weight * augmented.sample_loss.mean()}
        if config.mode == "aug_cross":
            divergence = DIVERGENCES[config.divergence](original.logits, augmented.logits, original.mask)  # [b]
            entropy = normalised_entropy(original.logits)  # [b, t]
            terms["cross_view_loss"] = config.cross_view_weight * hinge_pull_apart(divergence, config.margin)
            terms["entropy_loss"] = (
                config.entropy_weight * entropy_ceiling(entropy, original.mask, config.entropy_max).mean()
            )
        return terms

    def _suppression_terms(
        self, original: ViewOutput, counterfactual: ViewOutput | None, scored: torch.Tensor, flagged: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        # Normalised by the batch size, so the terms grow with the share of flagged samples in the batch
        # (a mean over the flagged samples alone did not help: qwen2_5_vl:tiny badnet 96.0 % vs 96.5 %).
        size = float(len(flagged))
        zero = original.sample_loss.sum() * 0.0  # keeps the graph (and DDP's used-parameter check) intact
        if not bool(flagged.any()):
            return {"suppression_loss": zero, "unlikelihood_loss": zero}
        rows = flagged.nonzero().squeeze(1)
        logits, mask, targets = original.logits[rows], original.mask[rows], original.targets[rows]
        entropy = normalised_entropy(logits)  # [f, t]
        raise_entropy = entropy_floor(entropy, mask, self.config.entropy_floor).sum() / size
        with torch.no_grad():
            # Tokens the image makes more likely than the image-free view does: what a trigger drives.
            log_p = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            # The image-free view covers the ``scored`` rows of the batch, flagged ones among them. A view
            # over fewer rows may be padded to another length, so its response tokens are matched to
            # the original's by position within each response (both masks hold the same tokens, in order).
            mine = torch.searchsorted(scored, rows.cpu()).to(rows.device)
            q_targets, q_mask = counterfactual.targets[mine], counterfactual.mask[mine]
            log_q = torch.log_softmax(counterfactual.logits[mine].float(), -1)
            log_q = log_q.gather(-1, q_targets.unsqueeze(-1)).squeeze(-1)
            driven = torch.zeros_like(mask)
            driven[mask] = log_p[mask] > log_q[q_mask]
        push_down = unlikelihood(logits, targets, driven).sum() / size
        return {
            "suppression_loss": self.config.suppression_weight * raise_entropy,
            "unlikelihood_loss": self.config.unlikelihood_weight * push_down,
        }

    def _update_scores(
        self, indices: np.ndarray, original: ViewOutput, counterfactual: ViewOutput, rows: torch.Tensor
    ) -> None:
        with torch.no_grad():
            original_loss = original.sample_loss[rows].float()
            counterfactual_loss = counterfactual.sample_loss.float()
            # 1e-6 keeps the logarithm finite for a perfectly fit sample.
            log_ratio = torch.log(original_loss + 1e-6) - torch.log(counterfactual_loss + 1e-6)
            # token_loss is 0 off the response; sums need no token alignment between the views (they
            # may be padded differently).
            evidence = counterfactual.token_loss.float().sum(1) - original.token_loss[rows].float().sum(1)
        self.tokens[indices] = original.mask[rows].sum(1).cpu().numpy()
        decay = self.config.score_decay
        for scores, values in ((self.log_ratio, log_ratio), (self.evidence, evidence)):
            previous = scores[indices]
            values = values.cpu().numpy()
            scores[indices] = np.where(np.isnan(previous), values, decay * previous + (1 - decay) * values)

    def _detect(self, step: int) -> None:
        """Epoch end: flag far-low outliers of the score that are also below ``max_score`` (flags are sticky)."""
        record: dict[str, Any] = {"step": step, "epoch": step // self.steps_per_epoch}
        before = int(self.flagged.sum())
        found = self._task_outliers(self.config)
        # The positions each epoch adds (by score, by spread) let a change of rule be replayed on the record.
        record["outlier_indices"] = np.flatnonzero(found & ~self.flagged).tolist()
        self.flagged |= found
        record["new_outliers"] = int(found.sum())
        shared = self._shared_responses() & ~self.flagged
        self.flagged |= shared
        record["shared_response"] = int(shared.sum())
        record["spread_indices"] = np.flatnonzero(shared).tolist()
        record["flagged"] = int(self.flagged.sum())
        # Unlearning weakens the backdoor on every triggered input, which hides the poisoned
        # samples not flagged yet; so flagged samples are first only isolated (CE weight 0), and the
        # unlearning terms start once detection settles: a round adding few flags to those there.
        if self._a_group(before) and record["flagged"] - before <= self.config.settle_growth * before:
            self.unlearning = True
        # A backdoor that installs late is flagged late; the repair epochs unlearn it whatever the schedule left.
        repairing = step >= self.schedule_steps and self._a_group(record["flagged"])
        self.unlearning = self.unlearning or repairing
        if repairing or (self.unlearning and self.config.isolate_while_unlearning):
            if self.config.repair_isolation > 0 and self.config.suppress:
                loose = dataclasses.replace(self.config, robust_threshold=self.config.repair_isolation)
                self.suspected = self._task_outliers(loose)
                record["suspected"] = int((self.suspected & ~self.flagged).sum())
        record["unlearning"] = self.unlearning
        if self.config.keep_score_history:
            record["scores"] = {"log_ratio": _rounded(self.log_ratio), "evidence": _rounded(self.evidence)}
        self.history.append(record)

    def _task_outliers(self, config: PCRConfig) -> np.ndarray:
        """[n] bool: the samples pcr flags under ``config``, each task's scores on their own: low
        log-ratio outliers (``flag_rule``), or in a short-answer task a high group of evidence."""
        found = np.zeros(len(self.log_ratio), dtype=bool)
        for group in np.unique(self.groups):
            seen = np.flatnonzero(~np.isnan(self.log_ratio) & (self.groups == group))
            if len(seen) == 0:
                continue
            lengths = self.tokens[seen][~np.isnan(self.tokens[seen])]
            if not (len(lengths) and np.median(lengths) <= config.short_answer_tokens):
                found[seen[flag_rule(self.log_ratio[seen], config)]] = True
                continue
            scored = seen[~np.isnan(self.evidence[seen])]
            if config.evidence_gap > 0 and len(scored):
                group_found = robust_high_gap(
                    self.evidence[scored],
                    config.robust_threshold,
                    config.evidence_gap,
                    max_fraction=config.max_flag_fraction,
                )
                group_found = scored[group_found]
                if self.prompts is not None and self.answers is not None:
                    spared = one_question_answers(group_found, seen, self.answers, self.prompts, config.prompt_share)
                    group_found = group_found[~spared]
                found[group_found] = True
        return found

    def _shared_responses(self) -> np.ndarray:
        """[n] bool: the samples holding a word run (``word_runs``) that flagged samples make up at least
        ``response_share`` of the carriers of, two or more: one target in every poisoned response, in
        place of the answer or inserted into it, spreads a flag to them all (``spread_flags``)."""
        config = self.config
        groups = self.groups if config.spread_within_tasks else None
        return spread_flags(
            self.flagged,
            self.carriers,
            self.runs,
            config.response_share,
            config.run_prevalence,
            groups,
            config.spread_significance,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_ratio": self.log_ratio,
            "evidence": self.evidence,
            "tokens": self.tokens,
            "flagged": self.flagged,
            "suspected": self.suspected,
            "unlearning": self.unlearning,
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_ratio, self.unlearning = state["log_ratio"], bool(state["unlearning"])
        self.flagged, self.history = state["flagged"], state["history"]
        self.suspected = state.get("suspected", np.zeros_like(self.flagged))
        self.evidence = state.get("evidence", np.full(len(self.flagged), np.nan))
        self.tokens = state.get("tokens", np.full(len(self.flagged), np.nan))

    def summary(self) -> dict[str, Any]:
        """What the defense decided, for the run's records: its resolved settings (defaults included, so a
        record stays readable after a default changes), flagged positions, detection history."""
        if self.config.mode != "full":
            return {}
        return {
            "config": to_dict(self.config),
            "flagged_indices": np.flatnonzero(self.flagged).tolist(),
            "detections": self.history,
            "log_ratio": _rounded(self.log_ratio),
        }


def flag_rule(scores: np.ndarray, config: PCRConfig) -> np.ndarray:
    """Positions of ``scores`` (one task's) that pcr flags: robust low outliers also below ``max_score``."""
    found = robust_low_outliers(scores, config.robust_threshold, config.max_flag_fraction)
    if found is None:
        return np.array([], dtype=int)
    return found[scores[found] < config.max_score]


def _rounded(scores: np.ndarray) -> list[float | None]:
    """Scores for JSON: 5 decimals, None for samples not seen yet."""
    return [None if math.isnan(v) else round(float(v), 5) for v in scores]


__all__ = ["PCRAugConfig", "PCRAugCrossConfig", "PCRConfig", "PCRDefense", "flag_rule"]
