"""Shared data for the model tests: a small corpus, deterministic images, per-family expectations."""

from __future__ import annotations

import torch

from vlshield.models import ModelBundle, ModelOptions, build_model

FAMILIES = ("llava", "qwen2_5_vl", "blip2")
PROMPTS = ["what color is the shape?", "is there a circle in the image?", "what shape is it?", "describe the image"]
RESPONSES = ["red", "yes", "a triangle", "a small blue square on a white background"]
TEST_SIZE = 32  # small images keep the suite fast: 16 LLaVA tokens, 4 Qwen tokens, 8 BLIP-2 queries


def visual_tokens(family: str, image_size: int) -> int:
    """Image tokens per image for the tiny presets (patch 8; Qwen merges 2x2; BLIP-2 has 8 queries)."""
    return {"llava": (image_size // 8) ** 2, "qwen2_5_vl": (image_size // 16) ** 2, "blip2": 8}[family]


def make_images(count: int, size: int = TEST_SIZE, seed: int = 0) -> torch.Tensor:
    """Uniform noise images, float [count, 3, size, size] in [0, 1], from an explicit generator."""
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def solid_images(colors: list[tuple[float, float, float]], size: int = TEST_SIZE) -> torch.Tensor:
    """One single-colour image per RGB triple, [n, 3, size, size]."""
    return torch.tensor(colors, dtype=torch.float32)[:, :, None, None].expand(-1, -1, size, size).clone()


def tiny(family: str, seed: int = 0, image_size: int = TEST_SIZE, **options) -> ModelBundle:
    """The tiny preset of ``family`` with the test corpus."""
    return build_model(
        f"{family}:tiny",
        texts=PROMPTS + RESPONSES,
        image_size=image_size,
        seed=seed,
        options=ModelOptions(**options),
    )


def response_logits(bundle: ModelBundle, images: torch.Tensor) -> torch.Tensor:
    """Logits at the response positions of the test batch, [n_response_tokens, v]."""
    batch = bundle.train_batch(PROMPTS, RESPONSES, images)
    with torch.no_grad():
        logits = bundle.model(**batch).logits
    return logits[batch["labels"] != -100]


def train_steps(bundle: ModelBundle, batch: dict, steps: int, lr: float = 1e-3) -> list[float]:
    """Plain AdamW steps (no weight decay, so parameters without gradient stay put); returns the losses."""
    bundle.model.train()
    parameters = [p for p in bundle.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    losses = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # LoRA dropout draws from the global generator; fix it so results do not depend on order
        for _ in range(steps):
            loss = bundle.model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    bundle.model.eval()
    return losses
