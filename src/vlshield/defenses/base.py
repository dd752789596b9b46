"""The defense protocol: extra views of a batch and extra loss terms, plugged into the one training loop.

A defense never sees the poison flag, the trigger or the target: the loop hands it a ``Batch``
built from prompts, responses, images and dataset positions only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import torch


@dataclasses.dataclass
class Batch:
    """One training batch as the loop and the defense see it.

    ``indices`` are positions in the training set (so a defense can keep per-sample statistics
    across steps); ``images`` are float [b, 3, h, w] in [0, 1], before the model's normalisation.
    """

    indices: torch.Tensor  # [b] long
    prompts: list[str]
    responses: list[str]
    images: torch.Tensor  # [b, 3, h, w]


@dataclasses.dataclass
class View:
    """An extra view of the batch: other pixels and/or a perturbation of the visual tokens.

    Views with ``requires_grad`` share the original view's batched forward; the others run once
    more under ``torch.no_grad`` (scoring only). ``token_perturbation`` maps the visual-token
    tensor of this view to a perturbed one (applied through a forward hook on the model's
    visual-token module).
    """

    name: str
    # [b, 3, h, w], or [len(rows), 3, h, w]; None: no image at all, the prompt and response alone
    # (``ModelBundle.text_batch``), only for views without gradients.
    images: torch.Tensor | None
    requires_grad: bool = True
    token_perturbation: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Positions in the batch this view covers, ascending (None: all); only for views without gradients.
    # Its ViewOutput then has one row per position.
    rows: torch.Tensor | None = None


@dataclasses.dataclass
class ViewOutput:
    """What the loop computed for one view: response-position logits and per-sample CE.

    ``logits`` [b, t, v] and ``mask`` [b, t] are aligned so that ``logits[:, j]`` predicts the
    response token at ``targets[:, j]``; ``mask`` is 1 on response tokens; ``token_loss`` [b, t]
    is the masked cross-entropy and ``sample_loss`` [b] its per-sample mean.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    token_loss: torch.Tensor
    sample_loss: torch.Tensor


@dataclasses.dataclass
class DefenseContext:
    """Given to a defense once before training."""

    bundle: Any  # vlshield.models.base.ModelBundle
    train_size: int
    total_steps: int  # steps of the schedule (train.epochs), before any repair epochs
    steps_per_epoch: int
    # Each training sample's task ("caption", "vqa"): public data, so that scores are compared
    # within a kind of response (None: one kind).
    tasks: Any = None
    # Each training sample's response text [n] (public data, like the tasks); None: not given.
    responses: Any = None
    # Each training sample's prompt text [n] (public data); None: not given.
    prompts: Any = None
    # The training set's poison flags [n] bool: handed ONLY to defenses whose class sets
    # ``reads_poison_flags = True``, which are controls (the perfect detector), not defenses.
    poison_flags: Any = None


class Defense(Protocol):
    name: str

    def setup(self, context: DefenseContext) -> None:
        """Called once before the first step."""

    def views(self, batch: Batch, step: int, generator: torch.Generator) -> list[View]:
        """Extra views of ``batch`` for this step (none for the undefended baseline)."""

    def loss_terms(
        self, batch: Batch, outputs: dict[str, ViewOutput], step: int
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Per-sample task-loss weights [b] (None: all ones) and named extra loss terms (weighted already)."""

    def state_dict(self) -> dict[str, Any]:
        """Per-sample statistics to checkpoint (resume must give the same run)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def repair_schedule(self) -> tuple[int, float]:
        """Epochs to train after the schedule ends, and their learning rate as a fraction of the peak."""

    def repair_needed(self, step: int) -> bool:
        """Asked before each repair epoch (at ``step``); False ends training there."""


class NoDefense:
    """The undefended baseline: no views, no terms; it runs the same loop as every defense."""

    name = "none"

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def setup(self, context: DefenseContext) -> None:
        pass

    def views(self, batch: Batch, step: int, generator: torch.Generator) -> list[View]:
        return []

    def loss_terms(
        self, batch: Batch, outputs: dict[str, ViewOutput], step: int
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        return None, {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def repair_schedule(self) -> tuple[int, float]:
        return 0, 0.0

    def repair_needed(self, step: int) -> bool:
        return False


@dataclasses.dataclass(frozen=True)
class NoDefenseConfig:
    """The undefended baseline has no settings."""


DEFENSES: dict[str, tuple[type, Callable[[Any], Defense]]] = {}


def register_defense(name: str, config_cls: type, builder: Callable[[Any], Defense]) -> None:
    """Register a defense under ``name``; duplicates are a programming error."""
    if name in DEFENSES:
        raise ValueError(f"defense {name!r} is already registered")
    DEFENSES[name] = (config_cls, builder)
