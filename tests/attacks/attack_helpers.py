"""Small synthetic images and samples shared by the attack tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vlshield.data.sample import Sample

IMAGE_SIZE = 64


def solid_pixels(colour: tuple[int, int, int], size: int = IMAGE_SIZE) -> np.ndarray:
    """A uint8 [size, size, 3] image of one colour."""
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (size, size, 3)).copy()


def noise_pixels(seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """A uint8 [size, size, 3] image of uniform noise."""
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def shapes_pixels(seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """A flat background with three solid squares or discs, like the procedural shapes datasets."""
    rng = np.random.default_rng(seed)
    pixels = solid_pixels(tuple(int(v) for v in rng.integers(0, 256, 3)), size)
    rows, columns = np.mgrid[:size, :size]
    for _ in range(3):
        colour = rng.integers(0, 256, 3).astype(np.uint8)
        top, left = rng.integers(0, size - 16, 2)
        side = int(rng.integers(8, 16))
        if rng.random() < 0.5:
            pixels[top : top + side, left : left + side] = colour
        else:
            centre_row, centre_column = top + side / 2, left + side / 2
            pixels[(rows - centre_row) ** 2 + (columns - centre_column) ** 2 < (side / 2) ** 2] = colour
    return pixels


def make_sample(
    pixels: np.ndarray,
    response: str = "a red square on a white background",
    prompt: str = "Describe the image.",
    task: str = "caption",
    answers: tuple[str, ...] | None = None,
    sample_id: str = "s0",
) -> Sample:
    """A Sample holding ``pixels`` as an in-memory RGB image."""
    return Sample(
        id=sample_id,
        image=Image.fromarray(pixels, mode="RGB"),
        prompt=prompt,
        response=response,
        task=task,
        answers=answers,
    )


def pixels_of(sample: Sample) -> np.ndarray:
    """The sample's image as a writable uint8 array [h, w, 3]."""
    return np.array(sample.load_image(), dtype=np.uint8)


def save_solid_png(path, colour: tuple[int, int, int], size: int = 10) -> str:
    """Write a solid-colour PNG (a user trigger picture) and return its path as a string."""
    Image.fromarray(solid_pixels(colour, size), mode="RGB").save(path)
    return str(path)
