"""Loss math of the defenses as pure functions over response tokens.

Shapes: ``logits`` [b, t, v], ``mask`` [b, t] (1 on response tokens), per-sample results [b].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [b, t] over each row's masked positions -> [b].

    A row with no masked position gives 0 (the count is clamped to 1 so 0/0 never becomes NaN).
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence of two views' next-token distributions, averaged over response tokens -> [b].

    In nats, between 0 (identical views) and log 2. Computed in float32 from log-probabilities.
    """
    log_p = F.log_softmax(logits_p.float(), dim=-1)  # [b, t, v]
    log_q = F.log_softmax(logits_q.float(), dim=-1)
    # log of the mixture m = (p + q) / 2, via logsumexp for stability.
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)  # [b, t]
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    # clamp: rounding can make a divergence of identical rows -1e-8 instead of 0.
    return masked_mean((0.5 * (kl_pm + kl_qm)).clamp(min=0.0), mask)


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p||q) + KL(q||p) averaged over response tokens -> [b] (nats, unbounded above)."""
    log_p = F.log_softmax(logits_p.float(), dim=-1)
    log_q = F.log_softmax(logits_q.float(), dim=-1)
    per_token = ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1)  # [b, t]
    return masked_mean(per_token.clamp(min=0.0), mask)


DIVERGENCES = {"js": js_divergence, "skl": symmetric_kl}


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Token entropy divided by log V -> [b, t] in [0, 1] (uniform logits give 1)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return entropy / math.log(logits.shape[-1])


def hinge_pull_apart(divergence: torch.Tensor, margin: float) -> torch.Tensor:
    """mean_i relu(margin - D_i): pulls apart views whose outputs are closer than ``margin`` -> scalar."""
    return F.relu(margin - divergence).mean()


def entropy_ceiling(entropy: torch.Tensor, mask: torch.Tensor, ceiling: float) -> torch.Tensor:
    """Per-sample mean of relu(H - ceiling) over response tokens -> [b]: keeps outputs sharp."""
    return masked_mean(F.relu(entropy - ceiling), mask)


def entropy_floor(entropy: torch.Tensor, mask: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-sample mean of relu(floor - H) over response tokens -> [b]: raises entropy, but never past ``floor``."""
    return masked_mean(F.relu(floor - entropy), mask)


def unlikelihood(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of -log(1 - p(target token)) over masked tokens -> [b] (Welleck et al., 2020).

    Pushes the given tokens down. ``1 - p`` is clamped at 1e-6 so a certain token costs ~13.8, not inf.
    """
    probabilities = F.softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [b, t]
    return masked_mean(-torch.log((1.0 - probabilities).clamp(min=1e-6)), mask)
