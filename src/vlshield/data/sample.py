"""The unit of data: one image, one prompt, one response."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

Task = Literal["caption", "vqa"]
TASKS: tuple[str, ...] = ("caption", "vqa")


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and what is wrong."""


ImageSource = Path | Image.Image | Callable[[], Image.Image]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image-prompt-response triple.

    ``image`` is a path (loaded lazily), an in-memory PIL image, or a zero-argument callable
    that renders one (procedural datasets). ``answers`` holds VQA reference answers; ``meta``
    carries anything else (labels, attack bookkeeping).
    """

    id: str
    image: ImageSource
    prompt: str
    response: str
    task: Task
    answers: tuple[str, ...] | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def load_image(self) -> Image.Image:
        """The image as RGB; a DataError naming the path if it is missing or corrupt."""
        source = self.image
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, Path):
            image = load_image_file(source)
        else:
            image = source()
        return image if image.mode == "RGB" else image.convert("RGB")

    def replace(self, **changes: Any) -> Sample:
        """A copy with some fields changed (samples are immutable)."""
        return dataclasses.replace(self, **changes)


def load_image_file(path: Path) -> Image.Image:
    """Open and fully decode an image file, converting to RGB, with a clear error naming ``path``."""
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: corrupt or unreadable image ({error})") from None
