"""The configuration of one run: data, model, training schedule, defense, evaluation."""

from __future__ import annotations

import dataclasses
from typing import Any

from vlshield.config import ConfigError, field
from vlshield.models.base import ModelOptions


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and schedule (AdamW, linear warm-up then cosine decay)."""

    epochs: int = field(12, help="Passes over the training set; long enough that an undefended backdoor installs.")
    batch_size: int = field(16, help="Samples per device per micro-batch.")
    gradient_accumulation: int = field(1, help="Micro-batches per optimizer step.")
    lr: float = field(
        0.0,
        help="Peak learning rate; 0: the model's (presets: llava, blip2 1e-3, qwen2_5_vl 5e-4; "
        "checkpoints 2e-5, with LoRA 2e-4).",
    )
    weight_decay: float = field(0.01, help="AdamW weight decay.")
    warmup_ratio: float = field(0.05, help="Fraction of the steps spent warming up linearly from 0.")
    max_grad_norm: float = field(1.0, help="Gradient clipping norm (0 disables).")
    seed: int = field(0, help="Initialisation, data order and defense randomness.")
    checkpoint_every: int = field(
        200, help="Save a resumable checkpoint every N optimizer steps (0: only at the end)."
    )
    log_every: int = field(10, help="Record the loss terms every N optimizer steps.")

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "gradient_accumulation"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}: must be >= 1, got {getattr(self, key)}")
        if self.lr < 0:
            raise ConfigError(f"train.lr: must be > 0 (or 0 for the model's), got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.checkpoint_every < 0 or self.log_every < 1:
            raise ConfigError("train.checkpoint_every must be >= 0 and train.log_every >= 1")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Greedy generation for evaluation."""

    batch_size: int = field(64, help="Prompts per generate call.")
    max_new_tokens: int = field(24, help="Generation length bound.")

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("eval.batch_size and eval.max_new_tokens must be >= 1")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that decides a training run (saved as ``RUN/config.json``)."""

    data: str = field("", help="Poisoned dataset directory written by `vlshield poison`.")
    model: str = field("llava:tiny", help="FAMILY:PRESET (e.g. llava:tiny) or a checkpoint name or path.")
    model_options: ModelOptions = field(default_factory=ModelOptions, help="LoRA, freezing, dtype, checkpointing.")
    train: TrainConfig = field(default_factory=TrainConfig, help="Optimisation and schedule.")
    defense: str = field("none", help="Defense registry name (none: the undefended baseline).")
    defense_options: dict[str, Any] = field(default_factory=dict, help="Overrides of the defense's config.")
    eval: EvalConfig = field(default_factory=EvalConfig, help="Evaluation settings.")

    def __post_init__(self) -> None:
        if not self.data:
            raise ConfigError("data: a poisoned dataset directory is required (--data DIR)")
