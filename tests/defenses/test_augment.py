import torch

from vlshield.defenses.augment import (
    PIXEL_OPS,
    from_patches,
    image_mean,
    patch_mask,
    patch_shuffle,
    to_patches,
    token_dropout,
    token_shuffle,
)


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_patches_round_trip():
    images = _images()
    assert torch.equal(from_patches(to_patches(images, 4), 16, 16), images)


def test_mask_fraction_one_fills_every_patch_with_the_image_mean():
    images = _images()
    masked = patch_mask(images, 4, torch.Generator().manual_seed(0), fraction=1.0)
    assert torch.allclose(masked, image_mean(images, 4, torch.Generator()))
    assert torch.allclose(masked[0, :, 0, 0], images[0].mean(dim=(1, 2)))


def test_mask_changes_whole_patches_only():
    images = _images()
    masked = patch_mask(images, 4, torch.Generator().manual_seed(3), fraction=0.5)
    changed = (to_patches(masked, 4) != to_patches(images, 4)).flatten(2).any(-1)  # [b, n]
    unchanged = (to_patches(masked, 4) == to_patches(images, 4)).flatten(2).all(-1)
    assert torch.equal(changed, ~unchanged) and 0 < changed.sum() < changed.numel()


def test_local_shuffle_keeps_the_multiset_of_patches_within_each_window():
    images = _images()
    shuffled = patch_shuffle(images, 4, torch.Generator().manual_seed(0), window=2)
    before = to_patches(images, 4).reshape(2, 4, 4, -1)
    after = to_patches(shuffled, 4).reshape(2, 4, 4, -1)
    window_before = before[:, :2, :2].reshape(2, 4, -1).sort(dim=1).values
    window_after = after[:, :2, :2].reshape(2, 4, -1).sort(dim=1).values
    assert torch.equal(window_before, window_after) and not torch.equal(images, shuffled)


def test_every_pixel_op_keeps_shape_and_range_and_is_deterministic():
    images = _images()
    for name, op in PIXEL_OPS.items():
        first = op(images, 4, torch.Generator().manual_seed(5))
        second = op(images, 4, torch.Generator().manual_seed(5))
        assert first.shape == images.shape and torch.equal(first, second), name
        assert first.min() >= 0 and first.max() <= 1, name


def test_token_ops():
    tokens = torch.arange(24, dtype=torch.float32).reshape(1, 8, 3)
    dropped = token_dropout(tokens, torch.Generator().manual_seed(0), fraction=1.0)
    assert torch.equal(dropped, torch.zeros_like(tokens))
    shuffled = token_shuffle(tokens, torch.Generator().manual_seed(0), window=4)
    assert torch.equal(shuffled[0, :4].sort(dim=0).values, tokens[0, :4])
