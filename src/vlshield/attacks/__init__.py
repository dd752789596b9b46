"""The attack suite: one file per attack, registered here one line each, built by name with ``build_attack``."""

from __future__ import annotations

from typing import Any

from vlshield.attacks.badnet import BadNetAttack, BadNetConfig
from vlshield.attacks.base import ATTACKS, Attack, AttackConfig, AttackContext, register_attack
from vlshield.attacks.blended import BlendedAttack, BlendedConfig
from vlshield.attacks.dualkey import DualKeyAttack, DualKeyConfig
from vlshield.attacks.shadowcast import ShadowCastAttack, ShadowCastConfig
from vlshield.attacks.sig import SigAttack, SigConfig
from vlshield.attacks.trojvlm import TrojVLMAttack, TrojVLMConfig
from vlshield.attacks.vlood import VLOODAttack, VLOODConfig
from vlshield.attacks.wanet import WaNetAttack, WaNetConfig
from vlshield.config import ConfigError, from_dict

register_attack("badnet", BadNetConfig, BadNetAttack)
register_attack("blended", BlendedConfig, BlendedAttack)
register_attack("wanet", WaNetConfig, WaNetAttack)
register_attack("sig", SigConfig, SigAttack)
register_attack("trojvlm", TrojVLMConfig, TrojVLMAttack)
register_attack("vlood", VLOODConfig, VLOODAttack)
register_attack("shadowcast", ShadowCastConfig, ShadowCastAttack)
register_attack("dualkey", DualKeyConfig, DualKeyAttack)


def build_attack(name: str, overrides: dict[str, Any] | None = None) -> Attack:
    """The attack registered as ``name`` with its config built from ``overrides`` (keys reported as ``attack.*``).

    An unknown name raises ConfigError listing the valid ones; an unknown or invalid key raises
    ConfigError naming it.
    """
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACKS)}")
    config_cls, builder = ATTACKS[name]
    return builder(from_dict(config_cls, overrides, prefix="attack."))


__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackContext",
    "BadNetAttack",
    "BadNetConfig",
    "BlendedAttack",
    "BlendedConfig",
    "DualKeyAttack",
    "DualKeyConfig",
    "ShadowCastAttack",
    "ShadowCastConfig",
    "SigAttack",
    "SigConfig",
    "TrojVLMAttack",
    "TrojVLMConfig",
    "VLOODAttack",
    "VLOODConfig",
    "WaNetAttack",
    "WaNetConfig",
    "build_attack",
    "register_attack",
]
