"""Defense registry: one visible line per defense."""

from __future__ import annotations

from typing import Any

from vlshield.config import ConfigError, from_dict
from vlshield.defenses.base import DEFENSES, Defense, NoDefense, NoDefenseConfig, register_defense
from vlshield.defenses.controls import OracleFlags, RandomFlags, RandomFlagsConfig
from vlshield.defenses.pcr import PCRAugConfig, PCRAugCrossConfig, PCRConfig, PCRDefense

register_defense("none", NoDefenseConfig, NoDefense)
register_defense("pcr", PCRConfig, PCRDefense)
# pcr's ablation switches as names, so that a grid can run them side by side with pcr itself.
register_defense("pcr_aug", PCRAugConfig, PCRDefense)
register_defense("pcr_aug_cross", PCRAugCrossConfig, PCRDefense)
# Controls for measuring pcr (they read the poison flags; never a defense): the perfect detector's
# suppression, and the same suppression on random samples.
register_defense("oracle", PCRConfig, OracleFlags)
register_defense("random_flags", RandomFlagsConfig, RandomFlags)


def build_defense(name: str, options: dict[str, Any] | None = None) -> Defense:
    """The defense registered as ``name`` with its config built from ``options``."""
    if name not in DEFENSES:
        raise ConfigError(f"unknown defense {name!r}; valid defenses: {', '.join(DEFENSES)}")
    config_cls, builder = DEFENSES[name]
    return builder(from_dict(config_cls, options or {}, prefix="defense."))
