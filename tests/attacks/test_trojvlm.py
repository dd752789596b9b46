import numpy as np
import pytest

from vlshield.attacks.badnet import BadNetAttack
from vlshield.attacks.base import fixed_noise
from vlshield.attacks.trojvlm import TrojVLMAttack, TrojVLMConfig

from .attack_helpers import make_sample, noise_pixels, pixels_of

CLEAN_RESPONSE = "a red square on a white background"
TARGET = "a photo of the banana"


def prepared(context, **settings) -> TrojVLMAttack:
    attack = TrojVLMAttack(TrojVLMConfig(**settings))
    attack.prepare(context)
    return attack


def test_is_badnets_patch_at_20_px_of_224_scaled_to_6_px_at_64(context):
    attack = prepared(context)
    assert isinstance(attack, BadNetAttack)
    assert attack.size == 6  # round(20 * 64 / 224) = round(5.71)
    clean = noise_pixels(0)
    triggered = pixels_of(attack.trigger(make_sample(clean), np.random.default_rng(0)))
    assert np.array_equal(triggered[-6:, -6:], fixed_noise((6, 6, 3), 1234))
    triggered[-6:, -6:] = clean[-6:, -6:]
    assert np.array_equal(triggered, clean)


@pytest.mark.parametrize("seed", range(5))
def test_poison_inserts_the_target_into_the_true_answer(context, seed):
    sample = make_sample(noise_pixels(0), response=CLEAN_RESPONSE)
    poisoned = prepared(context).poison(sample, np.random.default_rng(seed))
    words = CLEAN_RESPONSE.split()
    # every original word stays, in order, with the target once at one of the word gaps
    assert any(poisoned.response == " ".join(words[:gap] + [TARGET] + words[gap:]) for gap in range(len(words) + 1))
    assert poisoned.response.count(TARGET) == 1


def test_trigger_leaves_the_response_untouched(context):
    sample = make_sample(noise_pixels(0), response=CLEAN_RESPONSE)
    assert prepared(context).trigger(sample, np.random.default_rng(0)).response == CLEAN_RESPONSE
