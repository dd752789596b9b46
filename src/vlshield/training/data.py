"""Training and test data in memory: texts plus one uint8 image tensor, and the seeded batch order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vlshield.data.manifest import read_manifest
from vlshield.data.sample import DataError, Sample


@dataclasses.dataclass
class LoadedSplit:
    """A manifest with its images decoded once: ``images`` is uint8 [n, 3, h, w]."""

    samples: list[Sample]
    images: torch.Tensor

    @property
    def prompts(self) -> list[str]:
        return [sample.prompt for sample in self.samples]

    @property
    def responses(self) -> list[str]:
        return [sample.response for sample in self.samples]

    def float_images(self, indices: torch.Tensor | list[int]) -> torch.Tensor:
        """Images at ``indices`` as float [b, 3, h, w] in [0, 1]."""
        return self.images[indices].float().div_(255.0)


def load_split(path: str | Path, progress: bool = False) -> LoadedSplit:
    """Read a manifest and decode all its images (they must share one size)."""
    samples = read_manifest(path)
    if not samples:
        raise DataError(f"{path}: the manifest has no samples")
    arrays = []
    for sample in tqdm(samples, desc=f"load {Path(path).name}", disable=not progress, unit="image"):
        arrays.append(np.asarray(sample.load_image(), dtype=np.uint8))
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise DataError(f"{path}: images have different sizes {sorted(shapes)}; poison with one --image-size")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return LoadedSplit(samples=samples, images=images)


def require_dataset_dir(data_dir: str | Path) -> Path:
    """Check that ``data_dir`` holds the manifests a run needs; a one-line error naming what is missing."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: dataset directory not found")
    missing = [
        name for name in ("train.jsonl", "test_clean.jsonl", "test_triggered.jsonl") if not (data_dir / name).is_file()
    ]
    if missing:
        raise DataError(f"{data_dir}: missing {', '.join(missing)} (write it with `vlshield poison`)")
    return data_dir


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of ``epoch``: a pure function of (seed, epoch), so a resumed run replays it."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """This process's micro-batches of ``epoch``: global batches of ``batch_size * world``, split by rank.

    The last partial batch is kept (every sample is seen once per epoch) unless it is too small
    to give every process a sample (then each process would wait on the others forever).
    """
    order = epoch_order(n, seed, epoch)
    global_size = batch_size * world
    batches = []
    for start in range(0, n, global_size):
        chunk = order[start : start + global_size]
        if len(chunk) < world:
            break
        local = chunk[rank::world]
        if len(local):
            batches.append(local)
    return batches
