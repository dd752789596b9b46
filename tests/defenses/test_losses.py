import math

import torch

from vlshield.defenses.losses import (
    entropy_ceiling,
    entropy_floor,
    hinge_pull_apart,
    js_divergence,
    masked_mean,
    normalised_entropy,
    symmetric_kl,
    unlikelihood,
)


def _logits(seed: int, shape=(3, 5, 7)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_identical_views_have_zero_divergence():
    logits, mask = _logits(0), torch.ones(3, 5, dtype=torch.bool)
    assert torch.equal(js_divergence(logits, logits, mask), torch.zeros(3))
    assert torch.allclose(symmetric_kl(logits, logits, mask), torch.zeros(3))


def test_disjoint_one_hot_views_reach_log_two():
    # Two views certain of different tokens: JS is log 2 per token.
    p = torch.full((1, 1, 2), -1e4)
    q = p.clone()
    p[0, 0, 0] = 0.0
    q[0, 0, 1] = 0.0
    assert math.isclose(js_divergence(p, q, torch.ones(1, 1)).item(), math.log(2), rel_tol=1e-5)


def test_divergence_ignores_masked_tokens_and_a_fully_masked_row_gives_zero():
    p, q = _logits(1), _logits(2)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, :2] = True
    result = js_divergence(p, q, mask)
    assert result[1:].tolist() == [0.0, 0.0] and not torch.isnan(result).any()
    by_hand = js_divergence(p[:1, :2], q[:1, :2], torch.ones(1, 2))
    assert torch.allclose(result[0], by_hand[0])


def test_uniform_logits_have_normalised_entropy_one_and_one_hot_zero():
    assert torch.allclose(normalised_entropy(torch.zeros(2, 3, 11)), torch.ones(2, 3))
    one_hot = torch.full((1, 1, 11), -1e4)
    one_hot[..., 4] = 0
    assert normalised_entropy(one_hot).item() < 1e-6


def test_hinge_entropy_bounds_and_masked_mean_by_hand():
    assert math.isclose(
        hinge_pull_apart(torch.tensor([0.0, 0.2, 0.05]), 0.1).item(), (0.1 + 0.0 + 0.05) / 3, rel_tol=1e-6
    )
    entropy = torch.tensor([[0.2, 0.8, 0.9]])
    mask = torch.tensor([[1, 1, 0]])
    assert math.isclose(entropy_ceiling(entropy, mask, 0.5).item(), 0.15, rel_tol=1e-6)  # (0 + 0.3) / 2
    assert math.isclose(entropy_floor(entropy, mask, 0.5).item(), 0.15, rel_tol=1e-6)  # (0.3 + 0) / 2
    assert masked_mean(torch.tensor([[2.0, 4.0, 100.0]]), mask).item() == 3.0


def test_unlikelihood_by_hand():
    # Two tokens with p(target) = 0.5 -> -log(0.5) each.
    logits = torch.zeros(1, 2, 2)
    targets = torch.tensor([[0, 1]])
    value = unlikelihood(logits, targets, torch.ones(1, 2)).item()
    assert math.isclose(value, math.log(2), rel_tol=1e-6)
