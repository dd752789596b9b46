"""The attack context every attack test starts from: 64 px images, seed 0, captioning."""

from __future__ import annotations

import pytest

from vlshield.attacks.base import AttackContext

from .attack_helpers import IMAGE_SIZE


@pytest.fixture
def context() -> AttackContext:
    return AttackContext(image_size=IMAGE_SIZE, seed=0, task="caption")
