"""The model families and ``build_model``, the one entry point from a spec string to a ``ModelBundle``.

A spec is ``FAMILY:PRESET`` (a random, deterministically initialised tiny model of the real HF class)
or a checkpoint: a directory (one written by ``ModelBundle.save`` included) or a hub name, loaded
with ``from_pretrained``. Options (LoRA, freezing, dtype, checkpointing) apply the same way to both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel

from vlshield.config import ConfigError
from vlshield.models.base import (
    BUNDLE_FILE,
    DTYPES,
    PRESET_SIZES,
    PRESETS,
    ModelBundle,
    ModelFamily,
    ModelOptions,
    set_trainable,
    template_words,
    unwrap,
)
from vlshield.models.blip2 import Blip2Family
from vlshield.models.llava import LlavaFamily
from vlshield.models.qwen2_5_vl import Qwen2_5_VLFamily

MODEL_FAMILIES: dict[str, ModelFamily] = {}


def register_model_family(family: ModelFamily) -> None:
    """Register a family under ``family.name``; duplicates are a programming error."""
    if family.name in MODEL_FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    MODEL_FAMILIES[family.name] = family


register_model_family(LlavaFamily())
register_model_family(Qwen2_5_VLFamily())
register_model_family(Blip2Family())

DEFAULT_IMAGE_SIZE = 64
# Peak learning rates when train.lr is 0 ("the model's"): presets train from scratch at their
# family's ``preset_lr``; pretrained checkpoints take the usual fine-tuning rates.
CHECKPOINT_LR = {"full": 2e-5, "lora": 2e-4}
DEFAULT_OPTIONS = ModelOptions()  # frozen, so one shared default is safe
_PRESET_SPEC = re.compile(r"(?P<family>[A-Za-z0-9_.-]+):(?P<preset>[A-Za-z0-9_.-]+)")
_HUB_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def build_model(
    spec: str,
    *,
    texts: Sequence[str] | None = None,
    image_size: int | None = None,
    seed: int = 0,
    options: ModelOptions = DEFAULT_OPTIONS,
) -> ModelBundle:
    """Build a preset or load a checkpoint, apply ``options``, and wrap it as a ``ModelBundle``.

    Args:
        spec: ``FAMILY:PRESET`` (e.g. ``llava:tiny``), a directory, or a hub name
            (e.g. ``llava-hf/llava-1.5-7b-hf``).
        texts: the dataset's prompts and responses; a preset's tokenizer is trained on them (a
            checkpoint brings its own tokenizer and ignores them).
        image_size: the square side images will be given at; a preset is built for it (default 64).
            A checkpoint keeps its own size (``bundle.image_size``): the one in ``vlshield_model.json``,
            else its image processor's fixed size (LLaVA-1.5: 336); only a checkpoint whose processor
            takes any size (Qwen2.5-VL from the hub) uses this argument (default 64). Callers check their
            data against ``bundle.image_size``; images of another size are still resized to fit.
        seed: seeds the random initialisation (and LoRA's), so equal seeds give equal weights.
        options: LoRA, freezing, dtype and gradient checkpointing.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if _is_checkpoint(spec):
            family, model, processor = _load_checkpoint(spec, options)
            image_size = _checkpoint_image_size(spec, family, processor) or image_size or DEFAULT_IMAGE_SIZE
            recommended_lr = CHECKPOINT_LR["lora" if options.lora else "full"]
        else:
            family, preset = _parse_preset_spec(spec)
            image_size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
            family.check_image_size(PRESET_SIZES[preset], image_size)
            corpus = [*(texts or ()), template_words(family)]
            model, processor = family.build(PRESET_SIZES[preset], corpus, image_size)
            recommended_lr = family.preset_lr
        model = apply_options(model, family, options)
    model.eval()  # like from_pretrained; the training loop calls model.train()
    return ModelBundle(
        family=family.name,
        spec=spec,
        model=model,
        processor=processor,
        image_size=image_size,
        patch_size=family.patch_size(unwrap(model)),
        adapter=family,
        recommended_lr=recommended_lr,
    )


def apply_options(model: PreTrainedModel, family: ModelFamily, options: ModelOptions) -> torch.nn.Module:
    """dtype, gradient checkpointing, LoRA on the language model, freezing; returns the (maybe wrapped) model."""
    model.to(DTYPES[options.dtype])
    if options.gradient_checkpointing:
        model.activation_checkpointing_enable()
    if options.lora:
        config = LoraConfig(
            r=options.lora_rank,
            lora_alpha=options.lora_alpha,
            lora_dropout=options.lora_dropout,
            target_modules=family.lora_target,
        )
        model = get_peft_model(model, config)
        # peft froze everything but the adapters; the vision side keeps training unless frozen below.
        set_trainable(unwrap(model), family.vision_prefixes + family.projector_prefixes, True)
    if options.freeze_vision:
        set_trainable(unwrap(model), family.vision_prefixes, False)
    if options.freeze_projector:
        set_trainable(unwrap(model), family.projector_prefixes, False)
    return model


def _is_checkpoint(spec: str) -> bool:
    """An existing directory, or something shaped like a hub name (``owner/name``)."""
    if Path(spec).expanduser().is_dir():
        return True
    return _HUB_NAME.fullmatch(spec) is not None and not spec.startswith((".", "~"))


def _parse_preset_spec(spec: str) -> tuple[ModelFamily, str]:
    """The family and preset of ``FAMILY:PRESET``; otherwise a ConfigError saying what would be valid."""
    families = ", ".join(MODEL_FAMILIES)
    match = _PRESET_SPEC.fullmatch(spec)
    if spec in MODEL_FAMILIES:
        raise ConfigError(f"model spec {spec!r} lacks a preset; use {' or '.join(f'{spec}:{p}' for p in PRESETS)}")
    if match is None:
        raise ConfigError(
            f"model spec {spec!r} is neither FAMILY:PRESET (families: {families}; presets: {', '.join(PRESETS)}), "
            "an existing directory, nor a hub name (owner/name)"
        )
    name, preset = match["family"], match["preset"]
    if name not in MODEL_FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; valid: {families}")
    if preset not in PRESET_SIZES:
        raise ConfigError(f"unknown preset {preset!r} for {name}; valid: {', '.join(PRESETS)}")
    return MODEL_FAMILIES[name], preset


def _load_checkpoint(spec: str, options: ModelOptions) -> tuple[ModelFamily, PreTrainedModel, Any]:
    """A directory or hub checkpoint through from_pretrained: family from ``config.model_type``."""
    local = Path(spec).expanduser()
    path = str(local) if local.is_dir() else spec
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        if local.is_dir():
            raise ConfigError(f"{path}: not a model checkpoint directory ({error})") from None
        raise ConfigError(
            f"cannot load model {spec!r}: it is not an existing directory and the Hugging Face hub could not "
            f"provide it (is this machine offline? presets need no hub: FAMILY:PRESET). {error}"
        ) from None
    by_type = {family.model_type: family for family in MODEL_FAMILIES.values()}
    family = by_type.get(config.model_type)
    if family is None:
        supported = ", ".join(f"{f.name} ({f.model_type})" for f in MODEL_FAMILIES.values())
        raise ConfigError(f"{spec}: model_type {config.model_type!r} is not supported; supported: {supported}")
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=DTYPES[options.dtype])
    return family, model, family.load_processor(path)


def _checkpoint_image_size(spec: str, family: ModelFamily, processor: Any) -> int | None:
    """The size a checkpoint was trained at (``vlshield_model.json``), else its processor's fixed size, else None."""
    info_file = Path(spec).expanduser() / BUNDLE_FILE
    if info_file.is_file():
        return int(json.loads(info_file.read_text())["image_size"])
    return family.native_image_size(processor)
