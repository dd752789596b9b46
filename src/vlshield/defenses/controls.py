"""Controls for measuring pcr, not defenses: they read the poison flags, which the loop hands only to
classes declaring ``reads_poison_flags``. ``oracle`` is pcr's suppression on the TRUE poisoned samples
from step 0 (the ceiling of detect-then-suppress); ``random_flags`` the same suppression on as many
random samples (what suppression alone costs)."""

from __future__ import annotations

import dataclasses

import numpy as np

from vlshield.config import ConfigError, field
from vlshield.defenses.base import DefenseContext
from vlshield.defenses.pcr import PCRConfig, PCRDefense


class OracleFlags(PCRDefense):
    """Control, not a defense: PCR's suppression applied to the TRUE poisoned samples from step 0.

    The ceiling of detect-then-suppress (a perfect detector). It reads the poison flags, which
    only classes declaring ``reads_poison_flags`` are given; PCR itself never is.
    """

    name = "oracle"
    reads_poison_flags = True

    def setup(self, context: DefenseContext) -> None:
        super().setup(context)
        if context.poison_flags is None:
            raise ConfigError(f"defense {self.name!r} needs the poison flags, and the loop gave none")
        self.flagged = self.control_flags(np.asarray(context.poison_flags, dtype=bool))
        self.unlearning = True  # the flags are complete from the first step

    def control_flags(self, poisoned: np.ndarray) -> np.ndarray:
        return poisoned.copy()

    def _detect(self, step: int) -> None:
        """The flags are fixed at setup; nothing to detect."""


@dataclasses.dataclass(frozen=True)
class RandomFlagsConfig(PCRConfig):
    """PCR's suppression settings plus the seed of the random flags."""

    flag_seed: int = field(0, help="Seed of the random choice of flagged samples.")


RANDOM_FLAGS_STREAM = 0x464C4147  # "FLAG"


class RandomFlags(OracleFlags):
    """Control: PCR's suppression on random samples, as many as are poisoned (what suppression alone costs)."""

    name = "random_flags"
    config: RandomFlagsConfig

    def control_flags(self, poisoned: np.ndarray) -> np.ndarray:
        # A stream of its own: default_rng(seed).choice is also how poisoning picks its samples, and
        # the same draw would turn this control into the perfect detector.
        rng = np.random.default_rng([self.config.flag_seed, RANDOM_FLAGS_STREAM])
        chosen = rng.choice(len(poisoned), int(poisoned.sum()), replace=False)
        flags = np.zeros(len(poisoned), dtype=bool)
        flags[chosen] = True
        return flags
