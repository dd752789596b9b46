"""Atomic file and directory writes, and the provenance record saved next to every artifact."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlshield import __version__


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Sorted, indented JSON written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``path`` only if the block succeeds.

    A failure (or a kill) leaves no ``path`` behind, only a hidden ``.name.tmp-*`` sibling
    that the next attempt ignores. ``overwrite`` replaces an existing ``path`` at the end.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (choose another --out or remove it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


@functools.cache
def git_revision() -> str | None:
    """The git commit of the vlshield source tree, with "+dirty" when its files differ from that
    commit's (a result then came from uncommitted code), or None outside a checkout. Read once per
    process, as near as can be to when the code was loaded: a commit made while a benchmark runs
    does not relabel the cells it runs afterwards with the old code."""
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


@functools.cache
def source_sha256() -> str:
    """SHA-256 over the vlshield package's Python files (paths and contents): the code a run used,
    committed or not, so that a run is never resumed by different code. Read once per process."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a result."""
    versions = {"vlshield": __version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "tokenizers", "numpy", "pillow"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def run_info() -> dict[str, Any]:
    """Provenance stored with every artifact: git revision, source hash, package versions, and what
    decides a CPU run's floats besides them: torch's thread count and the instruction set its kernels
    use (``cpu_capability``: AVX2, AVX512, ...), with the CPU's name. A cell reruns bit for bit only
    where all of these match."""
    import torch

    return {
        "git_revision": git_revision(),
        "source_sha256": source_sha256(),
        "versions": package_versions(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
    }


def cpu_model() -> str:
    """The CPU's name as the OS gives it (``/proc/cpuinfo`` on Linux), or ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
