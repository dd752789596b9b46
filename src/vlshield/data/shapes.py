"""The built-in ``shapes`` dataset: procedural scenes of 1-3 coloured shapes, captions and questions.

A scene puts one to three shapes in distinct columns (left, middle, right) of a 3 x 3 grid, each
with a shape, a colour, a size and a row, plus a small seeded jitter. Everything a caption or an
answer says is in the scene's labels, which each sample carries in ``meta["shapes"]``. The
vocabulary is deliberately small (17 caption words) so that tiny models learn it from scratch
in a few thousand samples.

Captions list the shapes from left to right::

    one shape     "a large green triangle"
    two shapes    "a small red circle left of a large blue square"
    three shapes  "three shapes: small red circle, large blue square, small green triangle"

Questions (one per VQA sample, kind chosen uniformly among those that fit the scene)::

    color     "what color is the circle?"            -> "red"          (the shape occurs once)
    shape     "what shape is red?"                   -> "circle"       (the colour occurs once)
    count     "how many shapes are there?"           -> "one" | "two" | "three"
    position  "what is left of the blue square?"     -> "red circle"   (exactly one shape on that side)
    exists    "is there a green triangle?"           -> "yes" | "no"   (even odds)

A VQA sample's ``answers`` is the one-element tuple ``(answer,)``: the answer is exact, so
there is a single reference, as in easy-vqa.

The VQA training split is an instruction mix, as LLaVA's is: each scene gives one question
sample and one description sample (the caption, task "caption", id suffix ``-describe``), so
``count`` questions make ``2 * count`` training samples. A tiny model trained from scratch on single-word answers
alone never learns to look at the image (measured: llava:tiny answered each question kind with
one constant answer, 37.5 % accuracy); the descriptions teach it to. The test split holds
questions only, so VQA metrics measure question answering.

Train and test scenes are disjoint by construction: a scene's labels (shape, colour, size,
column and row of every shape) hash to the test side for about 1 in 8 label tuples, and each
split only keeps scenes of its own side. The partition does not depend on the seed, so no seed's
test scene ever appears in any seed's training set. Images render lazily at any size.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vlshield.data.formats import CAPTION_PROMPT
from vlshield.data.sample import DataError, Sample

SHAPE_NAMES = ("circle", "square", "triangle", "diamond")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
SIZES = ("small", "large")
COLUMNS = ("left", "middle", "right")
ROWS = ("top", "middle", "bottom")
COUNT_WORDS = ("one", "two", "three")
QUESTION_KINDS = ("color", "shape", "count", "position", "exists")
SPLITS = ("train", "test")
DEFAULT_TRAIN_SIZE = 2000  # used when the caller gives no training size (no ``limit``)

PLAIN_BACKGROUND = (240, 240, 240)
DIAMETER = {"small": 0.18, "large": 0.28}  # fraction of the image side; a grid cell is 1/3
SUPERSAMPLE_SIDE = 256  # shapes are drawn on a canvas of at least this side and averaged down (anti-aliasing)
TEST_SHARE = 8  # one label tuple in TEST_SHARE belongs to the test side
_SCENE_STREAM, _QUESTION_STREAM = 0, 1  # separate streams: caption and VQA samples share scenes


@dataclasses.dataclass(frozen=True)
class PlacedShape:
    """One shape of a scene: its labels, grid cell and jitter (a fraction of the image side)."""

    shape: str
    color: str
    size: str
    column: int  # 0 left, 1 middle, 2 right
    row: int  # 0 top, 1 middle, 2 bottom
    jitter_x: float = 0.0
    jitter_y: float = 0.0

    @property
    def name(self) -> str:
        """Colour and shape, e.g. "red circle" (how questions and answers refer to it)."""
        return f"{self.color} {self.shape}"

    def labels(self) -> dict[str, str]:
        """The labels stored in ``meta["shapes"]``."""
        return {
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "column": COLUMNS[self.column],
            "row": ROWS[self.row],
        }


@dataclasses.dataclass(frozen=True)
class Scene:
    """Shapes sorted left to right, and the seed of the textured background (None: plain)."""

    shapes: tuple[PlacedShape, ...]
    texture_seed: int | None = None

    def key(self) -> tuple[tuple[str, str, str, int, int], ...]:
        """The label tuple that identifies the scene (jitter and background excluded)."""
        return tuple((item.shape, item.color, item.size, item.column, item.row) for item in self.shapes)


def scene_split(scene: Scene) -> str:
    """ "test" for about one label tuple in eight, else "train"; a fixed function of the labels."""
    digest = hashlib.sha256(repr(scene.key()).encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % TEST_SHARE == 0 else "train"


def random_scene(rng: np.random.Generator, texture_fraction: float = 0.0) -> Scene:
    """A scene of 1-3 shapes in distinct columns, each label drawn uniformly."""
    count = int(rng.integers(1, 4))
    columns = sorted(int(column) for column in rng.choice(3, size=count, replace=False))
    shapes = []
    for column in columns:
        size = SIZES[int(rng.integers(len(SIZES)))]
        # The jitter keeps the shape inside its cell: at most 80 % of the free margin.
        margin = 0.8 * (1 / 3 - DIAMETER[size]) / 2
        shapes.append(
            PlacedShape(
                shape=SHAPE_NAMES[int(rng.integers(len(SHAPE_NAMES)))],
                color=list(COLORS)[int(rng.integers(len(COLORS)))],
                size=size,
                column=column,
                row=int(rng.integers(3)),
                jitter_x=float(rng.uniform(-margin, margin)),
                jitter_y=float(rng.uniform(-margin, margin)),
            )
        )
    texture_seed = int(rng.integers(2**31)) if rng.random() < texture_fraction else None
    return Scene(shapes=tuple(shapes), texture_seed=texture_seed)


def generate_scenes(split: str, count: int, seed: int = 0, texture_fraction: float = 0.0) -> list[Scene]:
    """``count`` scenes of ``split``'s side of the partition; the first k are the same for any count >= k."""
    if split not in SPLITS:
        raise DataError(f"shapes: unknown split {split!r} (valid: {', '.join(SPLITS)})")
    rng = np.random.default_rng([seed, _SCENE_STREAM, SPLITS.index(split)])
    scenes: list[Scene] = []
    while len(scenes) < count:
        scene = random_scene(rng, texture_fraction)
        if scene_split(scene) == split:
            scenes.append(scene)
    return scenes


def _texture(seed: int, image_size: int) -> np.ndarray:
    """A low-contrast background: tinted stripes at a random angle and period plus grey noise. [s, s, 3] uint8."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.15, 0.4) * image_size
    steps = np.arange(image_size, dtype=np.float32) * np.float32(2 * np.pi / period)  # [s]
    across, down = steps * np.float32(np.cos(angle)), steps * np.float32(np.sin(angle))
    # sin(x + y) = sin x cos y + cos x sin y, as outer products: [s, s] without a [s, s] sin.
    stripes = np.outer(np.cos(down), np.sin(across)) + np.outer(np.sin(down), np.cos(across))  # [rows, columns]
    grey = 220 + 12 * stripes + 5 * rng.standard_normal((image_size, image_size), dtype=np.float32)
    tint = rng.uniform(-12, 12, size=3).astype(np.float32)
    pixels = grey[..., None] + tint  # [s, s, 3]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _draw_shape(draw: ImageDraw.ImageDraw, item: PlacedShape, image_size: int) -> None:
    center_x = ((item.column + 0.5) / 3 + item.jitter_x) * image_size
    center_y = ((item.row + 0.5) / 3 + item.jitter_y) * image_size
    radius = DIAMETER[item.size] * image_size / 2
    color = COLORS[item.color]
    if item.shape == "circle":
        draw.ellipse([center_x - radius, center_y - radius, center_x + radius, center_y + radius], fill=color)
    elif item.shape == "square":
        half = 0.85 * radius  # a square of the same width looks larger than the circle
        draw.rectangle([center_x - half, center_y - half, center_x + half, center_y + half], fill=color)
    elif item.shape == "triangle":
        points = [
            (center_x, center_y - radius),
            (center_x + radius, center_y + 0.8 * radius),
            (center_x - radius, center_y + 0.8 * radius),
        ]
        draw.polygon(points, fill=color)
    elif item.shape == "diamond":
        points = [
            (center_x, center_y - radius),
            (center_x + radius, center_y),
            (center_x, center_y + radius),
            (center_x - radius, center_y),
        ]
        draw.polygon(points, fill=color)
    else:
        raise DataError(f"shapes: unknown shape {item.shape!r} (valid: {', '.join(SHAPE_NAMES)})")


def render_scene(scene: Scene, image_size: int = 64) -> Image.Image:
    """The scene drawn as an ``image_size`` x ``image_size`` RGB image.

    Below 256 px, shapes are drawn at up to 4 times the size and box-filtered down, which keeps
    a small circle round at 32 px; the background is upscaled by repetition first, so the filter
    gives its pixels back unchanged.
    """
    factor = min(4, max(1, SUPERSAMPLE_SIDE // image_size))
    if scene.texture_seed is None:
        background = Image.new("RGB", (image_size, image_size), PLAIN_BACKGROUND)
    else:
        background = Image.fromarray(_texture(scene.texture_seed, image_size), mode="RGB")
    large_size = image_size * factor
    canvas = background.resize((large_size, large_size), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for item in scene.shapes:
        _draw_shape(draw, item, large_size)
    return canvas.reduce(factor) if factor > 1 else canvas


def describe_scene(scene: Scene) -> str:
    """The caption: shapes from left to right with size, colour and shape (see the module docstring)."""
    phrases = [f"{item.size} {item.color} {item.shape}" for item in scene.shapes]
    if len(phrases) == 1:
        return f"a {phrases[0]}"
    if len(phrases) == 2:
        return f"a {phrases[0]} left of a {phrases[1]}"
    return f"{COUNT_WORDS[len(phrases) - 1]} shapes: {', '.join(phrases)}"


@dataclasses.dataclass(frozen=True)
class Question:
    """One question about a scene: its kind (``QUESTION_KINDS``), text and exact answer."""

    kind: str
    text: str
    answer: str


def _unique(values: list[str]) -> list[str]:
    return [value for value in values if values.count(value) == 1]


def _position_referents(scene: Scene) -> list[tuple[str, int, int]]:
    """(direction, referent index, answer index) where exactly one shape lies on that side of a nameable referent."""
    names = [item.name for item in scene.shapes]
    nameable = set(_unique(names))
    last = len(scene.shapes) - 1
    options = []
    if last >= 1 and names[1] in nameable:
        options.append(("left", 1, 0))
    if last >= 1 and names[last - 1] in nameable:
        options.append(("right", last - 1, last))
    return options


def _applicable_kinds(scene: Scene) -> list[str]:
    fits = {
        "color": bool(_unique([item.shape for item in scene.shapes])),
        "shape": bool(_unique([item.color for item in scene.shapes])),
        "count": True,
        "position": bool(_position_referents(scene)),
        "exists": True,
    }
    return [kind for kind in QUESTION_KINDS if fits[kind]]


def ask_question(scene: Scene, rng: np.random.Generator) -> Question:
    """One question about ``scene``, its kind drawn uniformly among the kinds that fit (module docstring)."""
    kind = str(rng.choice(_applicable_kinds(scene)))
    items = scene.shapes
    if kind == "color":
        shape = str(rng.choice(_unique([item.shape for item in items])))
        answer = next(item.color for item in items if item.shape == shape)
        return Question(kind, f"what color is the {shape}?", answer)
    if kind == "shape":
        color = str(rng.choice(_unique([item.color for item in items])))
        answer = next(item.shape for item in items if item.color == color)
        return Question(kind, f"what shape is {color}?", answer)
    if kind == "count":
        return Question(kind, "how many shapes are there?", COUNT_WORDS[len(items) - 1])
    if kind == "position":
        options = _position_referents(scene)
        direction, referent, answer_index = options[int(rng.integers(len(options)))]
        return Question(kind, f"what is {direction} of the {items[referent].name}?", items[answer_index].name)
    present = [item.name for item in items]
    if rng.random() < 0.5:
        return Question(kind, f"is there a {present[int(rng.integers(len(present)))]}?", "yes")
    absent = [f"{color} {shape}" for color in COLORS for shape in SHAPE_NAMES if f"{color} {shape}" not in present]
    return Question(kind, f"is there a {absent[int(rng.integers(len(absent)))]}?", "no")


def answer_vocabulary() -> tuple[str, ...]:
    """Every answer a shapes question can have: colours, shapes, counts, yes/no and "colour shape" phrases."""
    names = tuple(f"{color} {shape}" for color in COLORS for shape in SHAPE_NAMES)
    return (*COLORS, *SHAPE_NAMES, *COUNT_WORDS, "yes", "no", *names)


def caption_vocabulary() -> tuple[str, ...]:
    """Every word a caption can use (punctuation stripped)."""
    return ("a", "left", "of", "three", "shapes", *SIZES, *COLORS, *SHAPE_NAMES)


def _meta(scene: Scene) -> dict[str, Any]:
    return {
        "shapes": [item.labels() for item in scene.shapes],
        "background": "plain" if scene.texture_seed is None else "textured",
    }


def load_shapes(
    split: str,
    task: str,
    count: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    texture_fraction: float = 0.0,
) -> list[Sample]:
    """``count`` samples of ``split`` ("train" or "test") for ``task`` ("caption" or "vqa").

    VQA training samples come in question + description pairs (the instruction mix of the module
    docstring): ``2 * count`` samples.

    Images are zero-argument callables that render at ``image_size`` on demand; ids look like
    ``shapes-train-000123``. The caption and VQA samples of one seed share their scenes (and ids).
    ``texture_fraction`` of the scenes get a seeded low-contrast textured background.
    """
    if task not in ("caption", "vqa"):
        raise DataError(f"shapes: unknown task {task!r} (valid: caption, vqa)")
    describe = task == "vqa" and split == "train"  # the instruction mix (module docstring)
    scenes = generate_scenes(split, count, seed, texture_fraction)
    question_rng = np.random.default_rng([seed, _QUESTION_STREAM, SPLITS.index(split)])
    samples = []
    for index, scene in enumerate(scenes):
        image = functools.partial(render_scene, scene, image_size)
        sample_id = f"shapes-{split}-{index:06d}"
        caption = describe_scene(scene)
        if task == "caption":
            samples.append(Sample(sample_id, image, CAPTION_PROMPT, caption, "caption", meta=_meta(scene)))
            continue
        question = ask_question(scene, question_rng)
        meta = {**_meta(scene), "question_kind": question.kind}
        samples.append(Sample(sample_id, image, question.text, question.answer, "vqa", (question.answer,), meta))
        if describe:
            samples.append(
                Sample(f"{sample_id}-describe", image, CAPTION_PROMPT, caption, "caption", meta=_meta(scene))
            )
    return samples


def build_splits(
    task: str,
    *,
    seed: int = 0,
    train_size: int | None = None,
    test_size: int = 200,
    image_size: int = 64,
    texture_fraction: float = 0.0,
) -> tuple[list[Sample], list[Sample]]:
    """(train, test) for the registry: ``train_size`` (default 2000) and ``test_size`` scenes."""
    train = load_shapes(
        "train",
        task,
        train_size or DEFAULT_TRAIN_SIZE,
        seed=seed,
        image_size=image_size,
        texture_fraction=texture_fraction,
    )
    test = load_shapes("test", task, test_size, seed=seed, image_size=image_size, texture_fraction=texture_fraction)
    return train, test
