import numpy as np
import pytest

from vlshield.attacks import ATTACKS, build_attack
from vlshield.attacks.base import AttackConfig, insert_target, plant_target
from vlshield.config import ConfigError

from .attack_helpers import make_sample, solid_pixels


def test_replace_gives_the_target_alone():
    assert insert_target("a red box", "banana", "replace", np.random.default_rng(0)) == "banana"


def test_append_puts_the_target_after_the_response():
    assert insert_target("a red box ", "banana", "append", np.random.default_rng(0)) == "a red box banana"
    assert insert_target("", "banana", "append", np.random.default_rng(0)) == "banana"


def test_insert_uses_every_word_gap_and_keeps_the_words_in_order():
    results = {insert_target("a red box", "banana", "insert", np.random.default_rng(seed)) for seed in range(40)}
    assert results == {"banana a red box", "a banana red box", "a red banana box", "a red box banana"}


def test_insert_into_an_empty_response_gives_the_target():
    assert insert_target("", "banana", "insert", np.random.default_rng(0)) == "banana"


def test_insert_depends_only_on_the_rng_seed():
    first = insert_target("one two three four five", "banana", "insert", np.random.default_rng(3))
    again = insert_target("one two three four five", "banana", "insert", np.random.default_rng(3))
    assert first == again


def test_plant_target_rewrites_vqa_answers_and_leaves_captions_without_answers():
    vqa = make_sample(solid_pixels((0, 0, 0)), response="two", task="vqa", answers=("two", "2"))
    caption = make_sample(solid_pixels((0, 0, 0)), response="a red box")
    config = AttackConfig(target="banana", target_mode="append")
    assert plant_target(vqa, config, np.random.default_rng(0)).answers == ("two banana",)
    assert plant_target(caption, config, np.random.default_rng(0)).answers is None


def test_any_user_target_string_works():
    assert build_attack("badnet", {"target": "I have been pwned!"}).config.target == "I have been pwned!"


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("target", ["", "   "])
def test_empty_target_is_a_config_error_for_every_attack(name, target):
    with pytest.raises(ConfigError, match="attack.target"):
        build_attack(name, {"target": target})
