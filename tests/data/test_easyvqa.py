"""The easy-vqa built-in: the package's splits, its 13 answers, and image labels that agree with the questions."""

import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlshield.data.easyvqa import (
    PALETTE,
    SHAPE_NAMES,
    answer_vocabulary,
    build_splits,
    image_labels,
    labels_from_pixels,
    labels_from_questions,
    load_easy_vqa,
)
from vlshield.data.formats import CAPTION_PROMPT


@pytest.fixture(scope="module")
def train_vqa():
    return load_easy_vqa("train", "vqa")


def test_answer_vocabulary_has_13_answers():
    assert len(answer_vocabulary()) == 13
    assert set(answer_vocabulary()) == set(PALETTE) | set(SHAPE_NAMES) | {"yes", "no"}


def test_train_vqa_covers_4000_images_with_answers_from_the_vocabulary(train_vqa):
    assert len(train_vqa) == 38575
    assert len({sample.meta["image_id"] for sample in train_vqa}) == 4000
    assert {sample.response for sample in train_vqa} == set(answer_vocabulary())
    assert all(sample.answers == (sample.response,) for sample in train_vqa)
    assert train_vqa[0].prompt == "what is the blue shape?"
    assert train_vqa[0].response == "rectangle"
    assert train_vqa[0].id == "easy-vqa-train-q00000"
    assert len({sample.id for sample in train_vqa}) == len(train_vqa)


def test_image_labels_agree_with_every_colour_and_shape_answer(train_vqa):
    # Any question whose answer is a colour (or a shape) is about the image's one shape.
    for sample in train_vqa:
        labels = sample.meta["shapes"][0]
        if sample.response in PALETTE:
            assert labels["color"] == sample.response, sample.id
        elif sample.response in SHAPE_NAMES:
            assert labels["shape"] == sample.response, sample.id


def test_caption_samples_one_per_image():
    train, test = load_easy_vqa("train", "caption"), load_easy_vqa("test", "caption")
    assert (len(train), len(test)) == (4000, 1000)
    first = train[0]
    assert first.id == "easy-vqa-train-0000"
    assert first.prompt == CAPTION_PROMPT
    # Image 0's questions: "what is the blue shape?" -> rectangle, "what color is the shape?" -> blue.
    assert first.response == "a blue rectangle"
    assert first.meta["shapes"] == [{"shape": "rectangle", "color": "blue"}]
    pattern = re.compile(rf"a ({'|'.join(PALETTE)}) ({'|'.join(SHAPE_NAMES)})")
    for sample in train + test:
        color, shape = pattern.fullmatch(sample.response).groups()
        assert sample.meta["shapes"] == [{"shape": shape, "color": color}]


def test_most_labels_come_from_questions_the_rest_from_pixels():
    sources = [labels["label_source"] for labels in image_labels("train").values()]
    assert len(sources) == 4000
    assert 3400 < sources.count("questions") < 4000
    assert sources.count("questions") + sources.count("pixels") == 4000


def test_labels_from_questions_on_hand_written_questions():
    questions = [
        "what color is the shape?",
        "is there not a circle?",
        "is there a triangle?",
        "what shape is present?",
    ]
    answers = ["teal", "no", "no", "circle"]
    assert labels_from_questions(questions, answers, [5, 5, 6, 6]) == {5: {"shape": "circle", "color": "teal"}}


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_labels_from_pixels_on_a_drawn_shape(shape):
    image = Image.new("RGB", (64, 64), (250, 245, 240))
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([12, 12, 44, 44], fill=PALETTE["brown"])
    elif shape == "rectangle":
        draw.rectangle([10, 20, 50, 40], fill=PALETTE["brown"])
    else:
        draw.polygon([(30, 8), (52, 48), (8, 48)], fill=PALETTE["brown"])
    assert labels_from_pixels(np.asarray(image)) == {"shape": shape, "color": "brown"}


def test_labels_from_pixels_match_question_labels_on_the_first_100_images():
    checked = 0
    for sample in load_easy_vqa("test", "caption")[:100]:
        labels = image_labels("test")[sample.meta["image_id"]]
        if labels["label_source"] == "questions":
            expected = {"shape": labels["shape"], "color": labels["color"]}
            assert labels_from_pixels(np.asarray(sample.load_image())) == expected, sample.id
            checked += 1
    assert checked > 80


def test_splits_are_the_package_splits_and_share_no_image():
    train, test = build_splits("vqa")
    assert (len(train), len(test)) == (38575, 9673)
    assert {sample.image for sample in train}.isdisjoint(sample.image for sample in test)
    assert test[0].load_image().size == (64, 64)
