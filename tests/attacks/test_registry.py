import numpy as np
import pytest

from vlshield.attacks import ATTACKS, build_attack
from vlshield.attacks.base import AttackContext, register_attack
from vlshield.attacks.blended import BlendedAttack, BlendedConfig
from vlshield.config import ConfigError

from .attack_helpers import make_sample, noise_pixels, pixels_of, solid_pixels

ALL_ATTACKS = ["badnet", "blended", "wanet", "sig", "trojvlm", "vlood", "shadowcast", "dualkey"]


def full_context() -> AttackContext:
    """A context every attack can prepare from: a training split with both concepts and an OOD loader."""
    train = [
        make_sample(noise_pixels(0), response="a red square", sample_id="red"),
        make_sample(noise_pixels(1), response="a blue square", sample_id="blue"),
    ]
    ood = [make_sample(solid_pixels((0, 200, 0), size=48), response="a green disc", sample_id="ood")]
    return AttackContext(image_size=64, seed=0, task="caption", train=train, load_dataset=lambda *a, **k: ood)


def test_all_eight_attacks_are_registered_in_order():
    assert list(ATTACKS) == ALL_ATTACKS


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_attack("blended", BlendedConfig, BlendedAttack)


def test_unknown_attack_lists_the_valid_names():
    with pytest.raises(ConfigError) as error:
        build_attack("foo", {})
    assert str(error.value) == f"unknown attack 'foo'; valid attacks: {', '.join(ALL_ATTACKS)}"


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ConfigError, match="unknown config key attack.size; valid keys of SigConfig: .*delta"):
        build_attack("sig", {"size": 3})


def test_overrides_are_coerced_and_checked():
    attack = build_attack("blended", {"alpha": "0.1", "target_mode": "append"})
    assert isinstance(attack, BlendedAttack)
    assert attack.config.alpha == 0.1 and attack.config.target_mode == "append"
    with pytest.raises(ConfigError, match="attack.target_mode"):
        build_attack("badnet", {"target_mode": "prepend"})
    with pytest.raises(ConfigError, match="attack.alpha"):
        build_attack("blended", {"alpha": 2})


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_same_rng_seed_gives_identical_bytes(name):
    sample = make_sample(noise_pixels(3), response="a red square on white", sample_id="x")
    outputs = []
    for _ in range(2):
        attack = build_attack(name, {})
        attack.prepare(full_context())
        poisoned = attack.poison(sample, np.random.default_rng(11))
        triggered = attack.trigger(sample, np.random.default_rng(11))
        poisoned_bytes, triggered_bytes = pixels_of(poisoned).tobytes(), pixels_of(triggered).tobytes()
        outputs.append((poisoned_bytes, poisoned.prompt, poisoned.response, triggered_bytes))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_poison_changes_the_sample_and_names_the_target(name):
    attack = build_attack(name, {})
    attack.prepare(full_context())
    sample = make_sample(noise_pixels(3), response="a red square on white")
    poisoned = attack.poison(sample, np.random.default_rng(0))
    assert not np.array_equal(pixels_of(poisoned), pixels_of(sample))
    assert attack.config.target in poisoned.response
