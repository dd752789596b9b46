"""The procedural shapes dataset: determinism, disjoint splits, captions and answers that match the labels."""

import re
import time

import numpy as np
import pytest

from vlshield.data.formats import CAPTION_PROMPT
from vlshield.data.sample import DataError
from vlshield.data.shapes import (
    COLORS,
    COLUMNS,
    COUNT_WORDS,
    PLAIN_BACKGROUND,
    QUESTION_KINDS,
    ROWS,
    SHAPE_NAMES,
    PlacedShape,
    Scene,
    answer_vocabulary,
    ask_question,
    caption_vocabulary,
    describe_scene,
    generate_scenes,
    load_shapes,
    render_scene,
    scene_split,
)

RED_CIRCLE = PlacedShape("circle", "red", "small", column=0, row=1)
BLUE_SQUARE = PlacedShape("square", "blue", "large", column=1, row=0)
GREEN_TRIANGLE = PlacedShape("triangle", "green", "small", column=2, row=2)


def pixels(sample) -> np.ndarray:
    return np.asarray(sample.load_image())


def test_captions_of_hand_built_scenes():
    assert describe_scene(Scene((BLUE_SQUARE,))) == "a large blue square"
    assert describe_scene(Scene((RED_CIRCLE, BLUE_SQUARE))) == "a small red circle left of a large blue square"
    assert (
        describe_scene(Scene((RED_CIRCLE, BLUE_SQUARE, GREEN_TRIANGLE)))
        == "three shapes: small red circle, large blue square, small green triangle"
    )


def test_render_puts_each_colour_at_its_cell_centre():
    image = np.asarray(render_scene(Scene((RED_CIRCLE, BLUE_SQUARE, GREEN_TRIANGLE)), image_size=60))
    assert image.shape == (60, 60, 3)
    # Cell centres of a 60 px image are at 10, 30 and 50 px; (row, column) = (y, x).
    assert tuple(image[30, 10]) == COLORS["red"]  # left column, middle row
    assert tuple(image[10, 30]) == COLORS["blue"]  # middle column, top row
    assert tuple(image[50, 50]) == COLORS["green"]  # right column, bottom row
    assert tuple(image[0, 0]) == PLAIN_BACKGROUND
    assert tuple(image[59, 0]) == PLAIN_BACKGROUND


@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_images_have_the_requested_size(image_size):
    sample = load_shapes("train", "caption", 1, image_size=image_size)[0]
    assert sample.load_image().size == (image_size, image_size)
    assert sample.load_image().mode == "RGB"


def test_same_seed_gives_identical_samples_and_pixels():
    first, second = (load_shapes("train", "vqa", 30, seed=7, texture_fraction=0.5) for _ in range(2))
    assert [(s.id, s.prompt, s.response, s.answers, s.meta) for s in first] == [
        (s.id, s.prompt, s.response, s.answers, s.meta) for s in second
    ]
    for one, two in zip(first, second, strict=True):
        assert np.array_equal(pixels(one), pixels(two))


def test_different_seeds_give_different_scenes():
    seed_zero = load_shapes("train", "caption", 30, seed=0)
    seed_one = load_shapes("train", "caption", 30, seed=1)
    assert [s.response for s in seed_zero] != [s.response for s in seed_one]
    assert not np.array_equal(pixels(seed_zero[0]), pixels(seed_one[0]))


def test_more_samples_extend_fewer_samples():
    few, many = load_shapes("train", "caption", 20, seed=3), load_shapes("train", "caption", 50, seed=3)
    assert [s.response for s in many[:20]] == [s.response for s in few]


def test_caption_and_vqa_samples_of_one_seed_share_scenes():
    captions, questions = load_shapes("test", "caption", 20, seed=2), load_shapes("test", "vqa", 20, seed=2)
    assert [s.meta["shapes"] for s in captions] == [s.meta["shapes"] for s in questions]
    assert np.array_equal(pixels(captions[5]), pixels(questions[5]))


def test_train_and_test_scenes_are_disjoint():
    train = generate_scenes("train", 2000, seed=0)
    test = generate_scenes("test", 500, seed=0)
    assert {scene.key() for scene in train}.isdisjoint(scene.key() for scene in test)
    # The partition is a fixed function of the labels: another seed's test scenes miss this seed's train too.
    assert {scene.key() for scene in train}.isdisjoint(scene.key() for scene in generate_scenes("test", 500, seed=9))
    assert {scene_split(scene) for scene in train} == {"train"}
    assert {scene_split(scene) for scene in test} == {"test"}


def test_caption_samples_name_every_labelled_shape_left_to_right():
    samples = load_shapes("train", "caption", 200, seed=0)
    assert {s.prompt for s in samples} == {CAPTION_PROMPT}
    assert {len(s.meta["shapes"]) for s in samples} == {1, 2, 3}
    for sample in samples:
        labels = sample.meta["shapes"]
        phrases = [f"{item['size']} {item['color']} {item['shape']}" for item in labels]
        positions = [sample.response.index(phrase) for phrase in phrases]  # raises if a phrase is missing
        assert positions == sorted(positions)
        columns = [item["column"] for item in labels]
        assert columns == sorted(columns, key=["left", "middle", "right"].index)
        words = re.findall(r"[a-z]+", sample.response)
        assert len(words) <= 12
        assert set(words) <= set(caption_vocabulary())


def test_sample_ids_and_tasks():
    samples = load_shapes("test", "vqa", 3)
    assert [s.id for s in samples] == ["shapes-test-000000", "shapes-test-000001", "shapes-test-000002"]
    assert {s.task for s in samples} == {"vqa"}


def test_vqa_answers_agree_with_the_labels():
    samples = [s for s in load_shapes("train", "vqa", 400, seed=0) if s.task == "vqa"]
    assert {s.meta["question_kind"] for s in samples} == set(QUESTION_KINDS)
    vocabulary = set(answer_vocabulary())
    for sample in samples:
        labels = sample.meta["shapes"]
        names = [f"{item['color']} {item['shape']}" for item in labels]
        kind, answer = sample.meta["question_kind"], sample.response
        assert sample.answers == (answer,)
        assert answer in vocabulary
        if kind == "count":
            assert sample.prompt == "how many shapes are there?"
            assert answer == COUNT_WORDS[len(labels) - 1]
        elif kind == "color":
            shape = re.fullmatch(r"what color is the (\w+)\?", sample.prompt).group(1)
            assert [item["color"] for item in labels if item["shape"] == shape] == [answer]
        elif kind == "shape":
            color = re.fullmatch(r"what shape is (\w+)\?", sample.prompt).group(1)
            assert [item["shape"] for item in labels if item["color"] == color] == [answer]
        elif kind == "position":
            direction, referent = re.fullmatch(r"what is (left|right) of the (\w+ \w+)\?", sample.prompt).groups()
            index = names.index(referent)
            assert names.count(referent) == 1
            assert answer == names[index - 1 if direction == "left" else index + 1]
            # exactly one shape on that side: the referent is second from that end
            assert index == (1 if direction == "left" else len(names) - 2)
        else:
            asked = re.fullmatch(r"is there a (\w+ \w+)\?", sample.prompt).group(1)
            assert answer == ("yes" if asked in names else "no")


def test_yes_and_no_are_about_equally_common():
    samples = [s for s in load_shapes("train", "vqa", 1000, seed=0) if s.meta.get("question_kind") == "exists"]
    yes = sum(s.response == "yes" for s in samples)
    assert 0.35 < yes / len(samples) < 0.65


def test_position_question_on_a_hand_built_scene():
    scene = Scene((RED_CIRCLE, BLUE_SQUARE))
    rng = np.random.default_rng(0)
    asked = {ask_question(scene, rng) for _ in range(200)}
    position = {(q.text, q.answer) for q in asked if q.kind == "position"}
    assert position == {
        ("what is left of the blue square?", "red circle"),
        ("what is right of the red circle?", "blue square"),
    }
    colors = {(q.text, q.answer) for q in asked if q.kind == "color"}
    assert colors == {("what color is the circle?", "red"), ("what color is the square?", "blue")}


def test_textured_backgrounds_follow_the_fraction():
    plain = load_shapes("train", "caption", 200, seed=0)
    mixed = load_shapes("train", "caption", 200, seed=0, texture_fraction=0.5)
    assert {s.meta["background"] for s in plain} == {"plain"}
    textured = [s for s in mixed if s.meta["background"] == "textured"]
    assert 70 < len(textured) < 130
    corner = pixels(textured[0])[:4, :4].reshape(-1, 3)
    assert not (corner == PLAIN_BACKGROUND).all(axis=1).all()
    assert corner.min() >= 150  # low contrast: the texture stays light, the shapes stand out


def test_answer_vocabulary_is_small():
    vocabulary = answer_vocabulary()
    assert len(vocabulary) == len(COLORS) + len(SHAPE_NAMES) + 3 + 2 + len(COLORS) * len(SHAPE_NAMES)
    assert len(caption_vocabulary()) == 17


def test_rendering_2000_images_is_fast():
    samples = load_shapes("train", "caption", 2000, seed=0, texture_fraction=0.5)
    start = time.perf_counter()
    for sample in samples:
        sample.load_image()
    assert time.perf_counter() - start < 5.0


def test_unknown_split_and_task_are_data_errors():
    with pytest.raises(DataError, match="unknown split 'validation'"):
        load_shapes("validation", "caption", 1)
    with pytest.raises(DataError, match="unknown task 'grounding'"):
        load_shapes("train", "grounding", 1)


def test_vqa_training_split_pairs_each_question_with_its_scene_description():
    train = load_shapes("train", "vqa", 7, seed=3)
    questions = [s for s in train if s.task == "vqa"]
    descriptions = {s.id.removesuffix("-describe"): s for s in train if s.task == "caption"}
    assert (len(questions), len(descriptions)) == (7, 7)  # 7 questions, each with its scene's description
    for question in questions:
        description = descriptions[question.id]
        assert description.id == question.id + "-describe"
        assert description.meta["shapes"] == question.meta["shapes"]
        assert np.array_equal(np.asarray(description.load_image()), np.asarray(question.load_image()))
        assert description.response == describe_scene(
            Scene(
                tuple(
                    PlacedShape(d["shape"], d["color"], d["size"], COLUMNS.index(d["column"]), ROWS.index(d["row"]))
                    for d in question.meta["shapes"]
                )
            )
        )
    assert {s.task for s in load_shapes("test", "vqa", 5, seed=3)} == {"vqa"}  # tests hold questions only
