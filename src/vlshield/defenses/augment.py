"""Patch-level augmentations: pixel ops on a grid aligned with the vision encoder's patches, and token ops.

Pixel ops take float images [b, 3, h, w] in [0, 1], a patch side ``grid`` (pixels) and a
``torch.Generator``; token ops take visual tokens [b, n, d]. Every op is pure given the generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def to_patches(images: torch.Tensor, grid: int) -> torch.Tensor:
    """[b, 3, h, w] -> [b, n, 3, grid, grid] with n = (h / grid) * (w / grid), row-major."""
    b, c, h, w = images.shape
    patches = images.reshape(b, c, h // grid, grid, w // grid, grid)
    return patches.permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c, grid, grid)


def from_patches(patches: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of ``to_patches``: [b, n, 3, grid, grid] -> [b, 3, h, w]."""
    b, _, c, grid, _ = patches.shape
    rows, columns = height // grid, width // grid
    images = patches.reshape(b, rows, columns, c, grid, grid).permute(0, 3, 1, 4, 2, 5)
    return images.reshape(b, c, height, width)


def _check_grid(images: torch.Tensor, grid: int) -> None:
    if images.shape[-1] % grid or images.shape[-2] % grid:
        raise ValueError(f"patch grid {grid} does not divide the {images.shape[-2]}x{images.shape[-1]} image")


def patch_mask(
    images: torch.Tensor, grid: int, generator: torch.Generator, fraction: float = 0.25, fill: str = "mean"
) -> torch.Tensor:
    """Replace a random ``fraction`` of patches by the image mean colour (``fill="mean"``) or uniform noise."""
    _check_grid(images, grid)
    patches = to_patches(images, grid)  # [b, n, 3, g, g]
    b, n = patches.shape[:2]
    chosen = torch.rand(b, n, generator=generator) < fraction  # [b, n]
    if fill == "mean":
        filler = images.mean(dim=(2, 3))[:, None, :, None, None].expand_as(patches)
    else:
        filler = torch.rand(patches.shape, generator=generator).to(images)
    patches = torch.where(chosen[:, :, None, None, None].to(images.device), filler, patches)
    return from_patches(patches, *images.shape[-2:])


def image_mean(images: torch.Tensor, grid: int, generator: torch.Generator) -> torch.Tensor:
    """Every patch set to the image's mean colour: the image-free counterfactual (patch masking at 100 %)."""
    return images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()


def patch_shuffle(images: torch.Tensor, grid: int, generator: torch.Generator, window: int = 2) -> torch.Tensor:
    """Shuffle patches inside each ``window`` x ``window`` block of patches (local shuffle)."""
    _check_grid(images, grid)
    b, c, h, w = images.shape
    rows, columns = h // grid, w // grid
    patches = to_patches(images, grid).reshape(b, rows, columns, c, grid, grid)
    out = patches.clone()
    for top in range(0, rows, window):
        for left in range(0, columns, window):
            block = patches[:, top : top + window, left : left + window]  # [b, r, s, c, g, g]
            r, s = block.shape[1:3]
            flat = block.reshape(b, r * s, c, grid, grid)
            order = torch.argsort(torch.rand(b, r * s, generator=generator), dim=1).to(images.device)
            shuffled = flat.gather(1, order[:, :, None, None, None].expand_as(flat))
            out[:, top : top + r, left : left + s] = shuffled.reshape(b, r, s, c, grid, grid)
    return from_patches(out.reshape(b, rows * columns, c, grid, grid), h, w)


def patch_jitter(images: torch.Tensor, grid: int, generator: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Per-patch brightness and contrast jitter of relative size ``strength``."""
    _check_grid(images, grid)
    patches = to_patches(images, grid)
    b, n = patches.shape[:2]
    gain = 1.0 + strength * (2 * torch.rand(b, n, 1, 1, 1, generator=generator) - 1)
    shift = strength * 0.5 * (2 * torch.rand(b, n, 1, 1, 1, generator=generator) - 1)
    mean = patches.mean(dim=(2, 3, 4), keepdim=True)
    jittered = (patches - mean) * gain.to(images) + mean + shift.to(images)
    return from_patches(jittered.clamp(0.0, 1.0), *images.shape[-2:])


def patch_noise(images: torch.Tensor, grid: int, generator: torch.Generator, std: float = 0.1) -> torch.Tensor:
    """Gaussian noise with a random per-patch scale in [0, ``std``]."""
    _check_grid(images, grid)
    patches = to_patches(images, grid)
    b, n = patches.shape[:2]
    scale = std * torch.rand(b, n, 1, 1, 1, generator=generator)
    noise = torch.randn(patches.shape, generator=generator) * scale
    return from_patches((patches + noise.to(images)).clamp(0.0, 1.0), *images.shape[-2:])


def patch_blur(images: torch.Tensor, grid: int, generator: torch.Generator, fraction: float = 0.5) -> torch.Tensor:
    """Box-blur (3x3) a random ``fraction`` of patches."""
    _check_grid(images, grid)
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    patches, blurred_patches = to_patches(images, grid), to_patches(blurred, grid)
    chosen = (torch.rand(patches.shape[:2], generator=generator) < fraction)[:, :, None, None, None]
    return from_patches(torch.where(chosen.to(images.device), blurred_patches, patches), *images.shape[-2:])


def sub_patch_shift(images: torch.Tensor, grid: int, generator: torch.Generator) -> torch.Tensor:
    """Roll each image by a random offset of less than one patch in each direction (wrap-around)."""
    out = torch.empty_like(images)
    shifts = torch.randint(-(grid // 2), grid // 2 + 1, (images.shape[0], 2), generator=generator)
    for index, (down, right) in enumerate(shifts.tolist()):
        out[index] = torch.roll(images[index], shifts=(down, right), dims=(1, 2))
    return out


PixelOp = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
PIXEL_OPS: dict[str, PixelOp] = {}
PIXEL_OPS["patch_mask"] = patch_mask
PIXEL_OPS["patch_shuffle"] = patch_shuffle
PIXEL_OPS["patch_jitter"] = patch_jitter
PIXEL_OPS["patch_noise"] = patch_noise
PIXEL_OPS["patch_blur"] = patch_blur
PIXEL_OPS["sub_patch_shift"] = sub_patch_shift
PIXEL_OPS["image_mean"] = image_mean


def token_dropout(tokens: torch.Tensor, generator: torch.Generator, fraction: float = 0.25) -> torch.Tensor:
    """Zero a random ``fraction`` of visual tokens [b, n, d]."""
    keep = torch.rand(tokens.shape[:2], generator=generator) >= fraction
    return tokens * keep[:, :, None].to(tokens)


def token_shuffle(tokens: torch.Tensor, generator: torch.Generator, window: int = 4) -> torch.Tensor:
    """Shuffle visual tokens [b, n, d] inside consecutive windows of ``window`` tokens."""
    b, n, _ = tokens.shape
    keys = torch.arange(n, dtype=torch.float32)[None].expand(b, n) // window * window
    keys = keys + torch.rand(b, n, generator=generator) * 0.999  # random order within each window
    order = torch.argsort(keys, dim=1).to(tokens.device)
    return tokens.gather(1, order[:, :, None].expand_as(tokens))


def token_noise(tokens: torch.Tensor, generator: torch.Generator, scale: float = 0.5) -> torch.Tensor:
    """Add Gaussian noise scaled to each token's own RMS norm times ``scale``."""
    rms = tokens.detach().float().pow(2).mean(dim=-1, keepdim=True).sqrt()
    noise = torch.randn(tokens.shape, generator=generator).to(tokens)
    return tokens + scale * rms.to(tokens) * noise


TokenOp = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
TOKEN_OPS: dict[str, TokenOp] = {}
TOKEN_OPS["token_dropout"] = token_dropout
TOKEN_OPS["token_shuffle"] = token_shuffle
TOKEN_OPS["token_noise"] = token_noise
