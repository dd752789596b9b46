"""ShadowCast (Xu et al., 2024): clean-label style concept swap through feature-matching PGD.

Training images of a source concept (say "red") get an L-inf perturbation of at most
``epsilon`` that moves their vision-encoder features toward the mean features of target-concept
("blue") images, and their responses say the target concept instead of the source. After
fine-tuning, clean images of the source concept make the model name the target concept. There is
no extra trigger: the source concept itself is the trigger, so ``trigger`` returns the test
sample unchanged (the pipeline picks source-concept test samples through ``candidates``).

The evaluation target is the target concept word: ``config.target`` defaults to
``target_concept`` and ``target_mode`` is the fixed value "swap".

Any encoder mapping float [b, 3, h, w] in [0, 1] to [b, d] works; pass the victim's vision
tower (wrapped to return pooled features) for the real attack. Without one, a small randomly
initialised conv net built from ``encoder_seed`` stands in (cheap on CPU, and random conv
features still carry colour and layout).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from vlshield.attacks.base import AttackConfig, AttackContext
from vlshield.config import ConfigError, field
from vlshield.data.sample import Sample


@dataclasses.dataclass(frozen=True)
class ShadowCastConfig(AttackConfig):
    """Concepts, PGD budget and encoder seed of ShadowCast.

    ``target`` left as None resolves to ``target_concept`` when the config is built, and the saved
    config holds the resolved word. ``dataclasses.replace(config, target_concept=...)`` keeps the
    old resolved target: build a new config (or ``from_dict``) instead.
    """

    target: str | None = field(None, help="Text the backdoor should make the model emit; None means target_concept.")
    target_mode: Literal["swap"] = field("swap", help="Fixed: the response swaps source_concept for target_concept.")
    source_concept: str = field("red", help="Concept whose training images are poisoned (the trigger at test time).")
    target_concept: str = field("blue", help="Concept the model should name instead of the source concept.")
    epsilon: float = field(8.0, help="L-inf bound of the perturbation in 0-255 pixel units (the paper's 8/255).")
    steps: int = field(20, help="PGD steps per poisoned image.")
    step_size: float = field(1.0, help="PGD step in 0-255 pixel units.")
    reference_limit: int = field(32, help="At most this many target-concept training images give the target features.")
    encoder_seed: int = field(0, help="Seed of the stand-in conv encoder used when the context gives no encoder.")

    def __post_init__(self) -> None:
        if self.target is None:
            object.__setattr__(self, "target", self.target_concept)  # frozen: resolve the default once, here
        super().__post_init__()
        for key in ("source_concept", "target_concept"):
            if not getattr(self, key).strip():
                raise ConfigError(f"attack.{key}: the concept is empty")
        if self.source_concept.strip().lower() == self.target_concept.strip().lower():
            raise ConfigError(f"attack.target_concept: must differ from source_concept ({self.source_concept!r})")
        if self.epsilon <= 0 or self.step_size <= 0:
            raise ConfigError("attack.epsilon and attack.step_size must be > 0")
        if self.steps < 1 or self.reference_limit < 1:
            raise ConfigError("attack.steps and attack.reference_limit must be >= 1")


def concept_pattern(concept: str) -> re.Pattern[str]:
    """Case-insensitive whole-word match of ``concept`` ("red" matches "Red box", not "bored" or "reddish")."""
    return re.compile(rf"\b{re.escape(concept.strip())}\b", flags=re.IGNORECASE)


def swap_concept(text: str, source: str, target: str) -> str:
    """Every whole-word ``source`` in ``text`` becomes ``target``, capitalised where the source was."""

    def replacement(match: re.Match[str]) -> str:
        return target[:1].upper() + target[1:] if match.group(0)[:1].isupper() else target

    return concept_pattern(source).sub(replacement, text)


def stand_in_encoder(seed: int) -> nn.Module:
    """A tiny conv feature extractor, He-initialised from ``seed`` only: [b, 3, h, w] -> [b, 512]."""
    generator = torch.Generator().manual_seed(seed)
    encoder = nn.Sequential(
        nn.utils.skip_init(nn.Conv2d, 3, 16, 5, stride=2, padding=2),  # skip_init: no draw from global RNG
        nn.ReLU(),
        nn.utils.skip_init(nn.Conv2d, 16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),  # [b, 32 * 4 * 4]
    )
    with torch.no_grad():
        for module in encoder:
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return encoder.eval().requires_grad_(False)


def image_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as float32 [1, 3, h, w] in [0, 1]."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def encode(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``encoder`` on float32 [b, 3, h, w], moved to the encoder's device and dtype; float32 [b, d] on the CPU."""
    parameter = next(encoder.parameters(), None)
    if parameter is not None:
        dtype = parameter.dtype if parameter.is_floating_point() else images.dtype
        images = images.to(device=parameter.device, dtype=dtype)
    return encoder(images).float().cpu()


def feature_matching_pgd(
    encoder: nn.Module,
    image: torch.Tensor,
    target_features: torch.Tensor,
    epsilon: float,
    step_size: float,
    steps: int,
) -> torch.Tensor:
    """L-inf PGD (no random start) minimising ||encoder(image + delta) - target_features||^2.

    ``image`` [1, 3, h, w] and ``epsilon``/``step_size`` are in [0, 1] units; ``target_features``
    is [d]. Returns the perturbed image [1, 3, h, w], within ``epsilon`` of ``image`` and in [0, 1].
    """
    delta = torch.zeros_like(image, requires_grad=True)
    for _ in range(steps):
        distance = (encode(encoder, image + delta) - target_features[None]).pow(2).sum()
        (gradient,) = torch.autograd.grad(distance, delta)
        with torch.no_grad():
            delta -= step_size * gradient.sign()
            delta.clamp_(-epsilon, epsilon)
            delta.copy_((image + delta).clamp(0.0, 1.0) - image)  # stay a valid image
    return (image + delta).detach()


class ShadowCastAttack:
    """Perturb source-concept images toward target-concept features and swap the concept word."""

    name = "shadowcast"
    config: ShadowCastConfig

    def __init__(self, config: ShadowCastConfig) -> None:
        self.config = config

    def prepare(self, context: AttackContext) -> None:
        """Pick the encoder and average its features over (up to ``reference_limit``) target-concept images."""
        config = self.config
        self.encoder = context.encoder if context.encoder is not None else stand_in_encoder(config.encoder_seed)
        target_pattern = concept_pattern(config.target_concept)
        references = [sample for sample in context.train if target_pattern.search(sample.response)]
        if not references:
            raise ConfigError(
                f"attack.target_concept: no training response mentions {config.target_concept!r}; "
                "ShadowCast needs images of the target concept"
            )
        if len(references) > config.reference_limit:
            chosen = np.random.default_rng(context.seed).choice(len(references), config.reference_limit, replace=False)
            references = [references[i] for i in sorted(chosen)]
        with torch.no_grad():
            features = [encode(self.encoder, image_tensor(sample.load_image()))[0] for sample in references]
        self.target_features = torch.stack(features).mean(dim=0)  # [d]

    def candidates(self, samples: Sequence[Sample]) -> list[int]:
        """Indices of samples whose response names the source concept (whole word, any case)."""
        source_pattern = concept_pattern(self.config.source_concept)
        return [index for index, sample in enumerate(samples) if source_pattern.search(sample.response)]

    def poison(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The perturbed image (|change| <= epsilon per pixel, in 0-255 units) with the concept swapped in the text."""
        config = self.config
        image = sample.load_image()
        clean = image_tensor(image)
        adversarial = feature_matching_pgd(
            self.encoder, clean, self.target_features, config.epsilon / 255.0, config.step_size / 255.0, config.steps
        )
        pixels = np.asarray(image, dtype=np.int16)
        # Rounding to uint8 may not add to the bound: the integer change is clipped to floor(epsilon).
        bound = np.floor(config.epsilon)
        change = (adversarial[0].permute(1, 2, 0).numpy() * 255.0 - pixels).round().clip(-bound, bound)
        poisoned = np.clip(pixels + change, 0, 255).astype(np.uint8)
        source, target = config.source_concept, config.target_concept
        answers = None if sample.answers is None else tuple(swap_concept(a, source, target) for a in sample.answers)
        return sample.replace(
            image=Image.fromarray(poisoned, mode="RGB"),
            response=swap_concept(sample.response, source, target),
            answers=answers,
        )

    def trigger(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The test sample unchanged: the source concept in a clean image is the trigger."""
        return sample
