"""A PNG grid to eyeball a poisoned dataset: clean vs triggered test inputs and poisoned training samples."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from vlshield.data.manifest import read_manifest
from vlshield.data.sample import DataError
from vlshield.storage import atomic_write_bytes


def _wrap(text: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(text, width)[:3])


def render_preview(data_dir: str | Path, rows: int = 4, out: str | Path | None = None) -> Path:
    """Write ``preview.png`` in ``data_dir``: per row, a clean test image, its triggered version, the
    amplified difference, and a poisoned training sample with its response. Returns the PNG path."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data_dir = Path(data_dir)
    for name in ("train.jsonl", "test_clean.jsonl", "test_triggered.jsonl"):
        if not (data_dir / name).is_file():
            raise DataError(f"{data_dir}: no {name}; is this a directory written by `vlshield poison`?")
    clean = {sample.id: sample for sample in read_manifest(data_dir / "test_clean.jsonl")}
    triggered = [sample for sample in read_manifest(data_dir / "test_triggered.jsonl") if sample.id in clean]
    poisoned = [sample for sample in read_manifest(data_dir / "train.jsonl") if sample.meta.get("poisoned")]
    rows = max(1, min(rows, len(triggered), max(len(poisoned), 1)))
    figure, axes = plt.subplots(rows, 4, figsize=(10, 2.9 * rows), squeeze=False)
    for row in range(rows):
        after = triggered[row]
        before = clean[after.id]
        before_pixels = np.asarray(before.load_image(), dtype=np.int16)
        after_pixels = np.asarray(after.load_image(), dtype=np.int16)
        difference = np.abs(after_pixels - before_pixels)
        # Amplify so that faint triggers (blend, SIG, WaNet) are visible; clip to the 8-bit range.
        amplified = np.clip(difference * 4, 0, 255).astype(np.uint8)
        panels = [
            (before_pixels.astype(np.uint8), f"clean test\n{_wrap(before.prompt)}"),
            (after_pixels.astype(np.uint8), f"triggered\n{_wrap(after.prompt)}"),
            (amplified, f"|difference| x4\nmax {int(difference.max())}/255"),
        ]
        if row < len(poisoned):
            sample = poisoned[row]
            panels.append((np.asarray(sample.load_image()), f"poisoned train\n-> {_wrap(sample.response)}"))
        for column, axis in enumerate(axes[row]):
            axis.axis("off")
            if column < len(panels):
                pixels, title = panels[column]
                axis.imshow(pixels, interpolation="nearest")
                axis.set_title(title, fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    path = Path(out) if out else data_dir / "preview.png"
    atomic_write_bytes(path, buffer.getvalue())
    return path
