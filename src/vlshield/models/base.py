"""The uniform model interface: options, preset sizes, the family protocol and the bundle.

Every vision-language model the toolkit trains is a ``ModelBundle``: a Hugging Face model (maybe
peft-wrapped), its real HF processor, and the few family-specific facts (prompt template, module
paths) held by a ``ModelFamily``. The training loop and the defenses only talk to the bundle:
``train_batch`` turns prompts, responses and float images into model kwargs with labels,
``generate`` decodes greedily, ``visual_token_module`` is where a defense hooks the visual tokens.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, ProcessorMixin

from vlshield.config import ConfigError, field

ModelDType = Literal["float32", "bfloat16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
IGNORE_INDEX = -100  # label value the HF losses skip
BUNDLE_FILE = "vlshield_model.json"
# Per-token tensors a processor returns next to input_ids; they are padded and extended with the response.
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """How a built or loaded model is prepared for training."""

    lora: bool = field(False, help="Train LoRA adapters on the language model only; its base weights are frozen.")
    lora_rank: int = field(16, help="LoRA rank r.")
    lora_alpha: int = field(32, help="LoRA scaling alpha (the update is scaled by alpha / r).")
    lora_dropout: float = field(0.05, help="Dropout on the LoRA branch input.")
    freeze_vision: bool = field(False, help="Freeze the vision encoder (requires_grad False).")
    freeze_projector: bool = field(False, help="Freeze the vision-to-language bridge (projector, BLIP-2 Q-Former).")
    dtype: ModelDType = field("float32", help="Weight dtype: float32 or bfloat16.")
    gradient_checkpointing: bool = field(False, help="Recompute activations in backward to save memory.")

    def __post_init__(self) -> None:
        if self.lora_rank < 1:
            raise ConfigError(f"model.lora_rank: must be at least 1, got {self.lora_rank}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"model.lora_alpha: must be positive, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"model.lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype: {self.dtype!r} is not one of {', '.join(map(repr, DTYPES))}")


@dataclasses.dataclass(frozen=True)
class PresetSize:
    """Sizes of a preset; every family reads the parts it has."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_intermediate: int  # MLP width of the language model
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_intermediate: int  # MLP width of the vision encoder (and BLIP-2 Q-Former)
    patch_size: int  # vision patch side in pixels; a 64 px image gives (64 / patch)^2 patches
    num_query_tokens: int  # BLIP-2 Q-Former queries (= visual tokens)
    vocab_size: int  # upper bound for the BPE tokenizer trained on the dataset's text
    # Rows of the token embedding and LM head: at least the trained tokenizer's length; more pad the
    # matrices to a real checkpoint's vocabulary (what they cost), the extra rows never read.
    embedding_rows: int = 0

    def text_vocab(self, tokenizer: Any) -> int:
        """``vocab_size`` of the language model's config: the tokenizer's length, padded to ``embedding_rows``."""
        return max(len(tokenizer), self.embedding_rows)


PRESET_SIZES: dict[str, PresetSize] = {
    "tiny": PresetSize(128, 2, 4, 256, 64, 2, 4, 128, patch_size=8, num_query_tokens=8, vocab_size=1024),
    "small": PresetSize(256, 4, 4, 512, 128, 4, 4, 256, patch_size=8, num_query_tokens=16, vocab_size=2048),
    # LLaVA-1.5-7B's sizes (a Llama-7B decoder, a CLIP ViT-L/14 tower, Llama's 32000-token vocabulary;
    # BLIP-2 reads 32 queries): random weights at real cost, for measuring time and memory on a GPU.
    # Every family builds it as a 7B-class model of its own architecture. Images: 336 px.
    "7b": PresetSize(
        text_hidden=4096,
        text_layers=32,
        text_heads=32,
        text_intermediate=11008,
        vision_hidden=1024,
        vision_layers=24,
        vision_heads=16,
        vision_intermediate=4096,
        patch_size=14,
        num_query_tokens=32,
        vocab_size=32000,
        embedding_rows=32000,
    ),
}
PRESETS: tuple[str, ...] = tuple(PRESET_SIZES)


class ModelFamily(Protocol):
    """What differs between VLM families; one small class per family implements it."""

    name: str  # registry key, the FAMILY of a FAMILY:PRESET spec
    model_type: str  # ``config.model_type`` of this family's checkpoints
    prompt_template: str  # format string with {image} (the processor's image token) and {prompt}
    response_template: str  # format string with {response}; EOS is appended as a token
    vision_prefixes: tuple[str, ...]  # parameter-name prefixes of the vision encoder
    projector_prefixes: tuple[str, ...]  # ... of the vision-to-language bridge
    language_prefixes: tuple[str, ...]  # ... of the language model (with its head)
    lora_target: str  # regex (peft full match) naming the language model's linear layers
    image_kwargs: Mapping[str, Any]  # processor kwargs that switch off its own resizing and rescaling
    preset_lr: float  # peak learning rate of its presets trained from scratch (the default of train.lr)

    def check_image_size(self, size: PresetSize, image_size: int) -> None:
        """Raise ConfigError if a preset model cannot take ``image_size`` px images."""

    def build(
        self, size: PresetSize, tokenizer_texts: Sequence[str], image_size: int
    ) -> tuple[PreTrainedModel, ProcessorMixin]:
        """A randomly initialised model and its processor (the caller seeds the RNG)."""

    def load_processor(self, path: str) -> ProcessorMixin:
        """The processor of a checkpoint directory or hub name."""

    def pixel_sides(self, processor: ProcessorMixin, image_size: int) -> tuple[int, int]:
        """(resize side, center-crop side) the image processor would give a square ``image_size`` image."""

    def native_image_size(self, processor: ProcessorMixin) -> int | None:
        """The square side the image processor resizes to, or None if it takes any size (Qwen)."""

    def patch_size(self, model: PreTrainedModel) -> int:
        """The vision encoder's patch side in pixels."""

    def visual_token_module(self, model: PreTrainedModel) -> torch.nn.Module:
        """The module whose forward output is the visual tokens the language model reads."""

    def text_model(self, model: PreTrainedModel) -> torch.nn.Module:
        """The module that reads a prompt with no image (``input_ids``, ``attention_mask`` -> ``.logits``)."""


# The special tokens of every tokenizer a preset trains (the image token is added per family).
PRESET_SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def special_token_ids(tokenizer: Any) -> dict[str, int]:
    """pad/bos/eos ids for a text config."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def decoder_text_config(size: PresetSize, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The text config of a Llama-style preset decoder (LLaVA's Llama, Qwen2.5-VL's text model)."""
    return {
        "hidden_size": size.text_hidden,
        "intermediate_size": size.text_intermediate,
        "num_hidden_layers": size.text_layers,
        "num_attention_heads": size.text_heads,
        "num_key_value_heads": size.text_heads,
        "vocab_size": size.text_vocab(tokenizer),
        "max_position_embeddings": 4096,
        **special_token_ids(tokenizer),
        **extra,
    }


def require_multiple(family: str, image_size: int, factor: int, what: str) -> None:
    """ConfigError unless ``image_size`` is a positive multiple of ``factor`` (the family's patch constraint)."""
    if image_size <= 0 or image_size % factor:
        raise ConfigError(
            f"image_size {image_size} does not work with {family} presets: it must be a positive multiple of {what}"
        )


def template_words(family: ModelFamily) -> str:
    """The fixed words of a family's templates, added to the tokenizer corpus so they get whole tokens."""
    return family.prompt_template.format(image="", prompt="") + family.response_template.format(response="")


def fixed_square_sides(image_processor: Any) -> tuple[int, int]:
    """(resize side, crop side) of a CLIP/BLIP-style image processor for a square image."""
    size = image_processor.size
    side = size.height or size.shortest_edge
    if side is None:
        raise ConfigError(f"{type(image_processor).__name__}: cannot tell the target image size from {size}")
    crop = image_processor.crop_size.height if getattr(image_processor, "do_center_crop", False) else side
    return side, crop


def resize_and_crop(images: torch.Tensor, resize_side: int, crop_side: int) -> torch.Tensor:
    """Bicubic (antialiased) resize to ``resize_side`` then center crop, in torch so no uint8 rounding. [b,3,h,w]."""
    if images.shape[-1] != resize_side or images.shape[-2] != resize_side:
        images = F.interpolate(images, size=(resize_side, resize_side), mode="bicubic", antialias=True)
        images = images.clamp(0.0, 1.0)  # bicubic overshoots a little around edges
    if crop_side != resize_side:
        top = (resize_side - crop_side) // 2
        images = images[..., top : top + crop_side, top : top + crop_side]
    return images


def set_generation_ids(model: PreTrainedModel, tokenizer: Any) -> None:
    """Give a freshly built model's generation config the tokenizer's pad/bos/eos ids."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id


def set_trainable(model: torch.nn.Module, prefixes: Sequence[str], trainable: bool) -> int:
    """Set requires_grad on every parameter whose name starts with one of ``prefixes``; returns how many."""
    count = 0
    for name, parameter in model.named_parameters():
        if name.startswith(tuple(prefixes)):
            parameter.requires_grad_(trainable)
            count += 1
    return count


def unwrap(model: torch.nn.Module) -> PreTrainedModel:
    """The HF model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclasses.dataclass
class ModelBundle:
    """A model, its real HF processor and the family facts the training loop and defenses need.

    ``image_size`` is the square side images are given at; ``patch_size`` the vision encoder's patch
    side (equal in pixels of the given image for the presets, whose processors do not resize).
    """

    family: str
    spec: str
    model: PreTrainedModel  # maybe peft-wrapped
    processor: ProcessorMixin
    image_size: int
    patch_size: int
    adapter: ModelFamily = dataclasses.field(repr=False)
    recommended_lr: float = 1e-3  # what train.lr=0 means for this model (see models.registry)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def visual_token_module(self) -> torch.nn.Module:
        """The module whose forward output is the visual tokens fed to the LM (hook it to perturb them).

        LLaVA: ``multi_modal_projector`` (output [b, n, d]); Qwen2.5-VL: ``visual.merger`` (output
        [sum of n over images, d], images one after another); BLIP-2: ``language_projection`` ([b, q, d]).
        """
        return self.adapter.visual_token_module(unwrap(self.model))

    def prompt_texts(self, prompts: Sequence[str], with_image: bool = True) -> list[str]:
        """Prompts in the family template, with one (unexpanded) image placeholder each (or none)."""
        image = getattr(self.processor, "image_token", "") if with_image else ""
        image = getattr(image, "content", image)  # BLIP-2 keeps it as an AddedToken
        return [self.adapter.prompt_template.format(image=image, prompt=prompt) for prompt in prompts]

    def train_batch(self, prompts: Sequence[str], responses: Sequence[str], images: torch.Tensor) -> dict[str, Any]:
        """Model kwargs for a teacher-forced training step, right padded, on the model's device.

        Args:
            prompts, responses: b strings each.
            images: float [b, 3, H, W] in [0, 1], un-normalised; the processor normalises (and, for
                Qwen, patchifies) them, so no gradient flows back to ``images``.
        Returns:
            input_ids / attention_mask [b, t], the family's pixel inputs (``pixel_values``, Qwen's
            ``image_grid_thw`` and ``mm_token_type_ids``) and ``labels`` [b, t]: the response tokens
            and EOS, -100 on prompt, image and padding tokens.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        prompt_texts = self.prompt_texts(prompts)
        encoded = self._encode(prompt_texts, images, padding_side="right")
        response_ids = self._response_ids(prompt_texts, responses)
        batch = _append_responses(encoded, response_ids, self.tokenizer.pad_token_id)
        return self._to_model(batch)

    def with_images(self, inputs: Mapping[str, Any], images: torch.Tensor) -> dict[str, Any]:
        """``inputs`` (from ``train_batch``) with the pixel inputs of ``images`` in place of theirs.

        The same prompts and responses with other images of the same size: the tokens are kept,
        only the image processor runs (what ``train_batch`` would give, without tokenising again).
        """
        pixels = self.processor.image_processor(
            images=self._pixels(images), return_tensors="pt", **self.adapter.image_kwargs
        )
        return {**inputs, **self._to_model(dict(pixels))}

    def text_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, Any]:
        """``train_batch`` with no image: the template without its image placeholder, tokenised alone.

        For ``text_logits``; no image tokens, so a fraction of the sequence (LLaVA-1.5: 576 fewer).
        """
        prompt_texts = self.prompt_texts(prompts, with_image=False)
        encoded = self.tokenizer(prompt_texts, padding=True, padding_side="right", return_tensors="pt")
        batch = _append_responses(encoded, self._response_ids(prompt_texts, responses), self.tokenizer.pad_token_id)
        return self._to_model(batch)

    def text_logits(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Logits [b, t, v] of the language model on ``text_batch`` inputs (labels are not read)."""
        model = self.adapter.text_model(unwrap(self.model))  # peft's LoRA layers sit inside it
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits

    def generate_batch(self, prompts: Sequence[str], images: torch.Tensor) -> dict[str, Any]:
        """Left-padded model kwargs for ``model.generate`` (prompts in the template, no response)."""
        return self._to_model(dict(self._encode(self.prompt_texts(prompts), images, padding_side="left")))

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], images: torch.Tensor, max_new_tokens: int = 32) -> list[str]:
        """Greedy decoding of a batch; returns only the new text of each sample, stripped."""
        inputs = self.generate_batch(prompts, images)
        tokenizer = self.tokenizer
        was_training = self.model.training
        self.model.eval()
        try:
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        finally:
            self.model.train(was_training)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # generate returns prompt + new tokens
        return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def save(self, path: str | Path) -> None:
        """save_pretrained model and processor plus ``vlshield_model.json``; ``build_model(path)`` loads it.

        A LoRA model is saved merged (from a copy, so this bundle keeps its adapters).
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        model = self.model
        if hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(path)
        self.processor.save_pretrained(path)
        info = {"family": self.family, "spec": self.spec, "image_size": self.image_size, "patch_size": self.patch_size}
        (path / BUNDLE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    def _pixels(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Validated float images at the size the image processor expects, one [3, h, w] tensor each."""
        if (
            images.ndim != 4
            or images.shape[1] != 3
            or images.shape[2] != images.shape[3]
            or not images.is_floating_point()
        ):
            raise ValueError(
                f"images must be a float tensor [b, 3, H, H] (square), got {images.dtype} {tuple(images.shape)}"
            )
        low, high = images.aminmax()
        if low < 0 or high > 1:
            raise ValueError(f"images must be in [0, 1] (not normalised, not 0-255), got [{low:.3g}, {high:.3g}]")
        resize_side, crop_side = self.adapter.pixel_sides(self.processor, images.shape[-1])
        images = resize_and_crop(images.detach().float().cpu(), resize_side, crop_side)
        return list(images)

    def _encode(self, prompt_texts: list[str], images: torch.Tensor, padding_side: str) -> Any:
        """Prompts and images through the real processor (which expands the image placeholder)."""
        if len(prompt_texts) != images.shape[0]:
            raise ValueError(f"got {len(prompt_texts)} prompts but {images.shape[0]} images")
        return self.processor(
            text=prompt_texts,
            images=self._pixels(images),
            padding=True,
            padding_side=padding_side,
            return_tensors="pt",
            **self.adapter.image_kwargs,
        )

    def _response_ids(self, prompt_texts: list[str], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of each response plus EOS, as the tokenizer splits them after their prompt."""
        tokenizer = self.tokenizer
        response_texts = [self.adapter.response_template.format(response=response) for response in responses]
        prompt_only = tokenizer(prompt_texts).input_ids
        joint = tokenizer([p + r for p, r in zip(prompt_texts, response_texts, strict=True)]).input_ids
        ids = []
        for prompt_ids, joint_ids, response_text in zip(prompt_only, joint, response_texts, strict=True):
            if joint_ids[: len(prompt_ids)] == prompt_ids:
                ids.append(joint_ids[len(prompt_ids) :])
            else:  # a token merged across the prompt/response boundary: encode the response alone
                ids.append(tokenizer(response_text, add_special_tokens=False).input_ids)
        return [response + [tokenizer.eos_token_id] for response in ids]

    def _to_model(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Tensors on the model's device; floating inputs (pixels) in the model's dtype."""
        device, dtype = self.device, unwrap(self.model).dtype
        return {
            key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
            for key, value in batch.items()
        }


def _append_responses(encoded: Mapping[str, Any], response_ids: list[list[int]], pad_id: int) -> dict[str, Any]:
    """Right-padded prompt encodings with the responses appended and ``labels`` set on them only.

    ``encoded``: processor output, right padded (prompt length = attention_mask sum).
    """
    lengths = encoded["attention_mask"].sum(1).tolist()
    total = max(length + len(response) for length, response in zip(lengths, response_ids, strict=True))
    batch_size = len(lengths)
    token_keys = [key for key in TOKEN_KEYS if key in encoded]
    out = {key: torch.zeros(batch_size, total, dtype=encoded[key].dtype) for key in token_keys}
    out["input_ids"].fill_(pad_id)
    labels = torch.full((batch_size, total), IGNORE_INDEX, dtype=torch.long)
    for row, (length, response) in enumerate(zip(lengths, response_ids, strict=True)):
        end = length + len(response)
        for key in token_keys:
            out[key][row, :length] = encoded[key][row, :length]
        response_tensor = torch.tensor(response, dtype=torch.long)
        out["input_ids"][row, length:end] = response_tensor
        out["attention_mask"][row, length:end] = 1
        labels[row, length:end] = response_tensor  # mm/token type ids stay 0 (text) on the response
    out["labels"] = labels
    out.update({key: value for key, value in encoded.items() if key not in TOKEN_KEYS})
    return out
