"""Qwen2.5-VL (Bai et al., 2025, "Qwen2.5-VL Technical Report"): windowed ViT -> 2x2 patch merger -> Qwen2.

Images enter as flattened patches plus ``image_grid_thw``; every 2x2 block of patches becomes one
visual token, so a 64 px image with patch 8 gives 16 tokens between ``<|vision_start|>`` and
``<|vision_end|>``. ``mm_token_type_ids`` (1 on image tokens) steer the 3-D rotary positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from vlshield.models.base import PresetSize, decoder_text_config, require_multiple, set_generation_ids
from vlshield.models.tokenizer import train_tokenizer

MERGE_SIZE = 2  # patches merged per side into one visual token (Qwen's spatial_merge_size)


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor, which cannot be built without torchvision.

    All image and text processing is the parent's; it is saved under the parent's class name.
    """

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["processor_class"] = Qwen2_5_VLProcessor.__name__
        return output


def mrope_section(head_dim: int) -> list[int]:
    """Rotary frequency split (temporal, height, width) summing to head_dim / 2, in Qwen's 16:24:24 ratio."""
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


class Qwen2_5_VLFamily:
    name = "qwen2_5_vl"
    model_type = "qwen2_5_vl"
    prompt_template = (
        "<|im_start|>user\n<|vision_start|>{image}<|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    response_template = "{response}"  # EOS is <|im_end|>, closing the assistant turn
    vision_prefixes = ("model.visual.patch_embed.", "model.visual.blocks.")
    projector_prefixes = ("model.visual.merger.",)
    language_prefixes = ("model.language_model.", "lm_head.")
    lora_target = r"model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
    image_kwargs = {"do_rescale": False, "do_resize": False}
    preset_lr = 5e-4  # at 1e-3 the tiny preset never learnt to use the image on shapes VQA

    def check_image_size(self, size: PresetSize, image_size: int) -> None:
        factor = size.patch_size * MERGE_SIZE
        require_multiple(
            "qwen2_5_vl", image_size, factor, f"patch size x merge size = {size.patch_size} x {MERGE_SIZE} = {factor}"
        )

    def build(
        self, size: PresetSize, tokenizer_texts: Sequence[str], image_size: int
    ) -> tuple[PreTrainedModel, ProcessorMixin]:
        tokenizer = train_tokenizer(
            tokenizer_texts,
            special_tokens={
                "pad_token": "<|endoftext|>",
                "bos_token": "<s>",
                "eos_token": "<|im_end|>",
                "unk_token": "<unk>",
            },
            extra_special_tokens={
                "image_token": "<|image_pad|>",
                "video_token": "<|video_pad|>",
                "vision_bos_token": "<|vision_start|>",
                "vision_eos_token": "<|vision_end|>",
            },
            more_special_tokens=["<|im_start|>"],
            vocab_size=size.vocab_size,
            add_bos_token=False,  # Qwen prepends no BOS; the turn starts with <|im_start|>
        )
        factor = size.patch_size * MERGE_SIZE
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=size.patch_size,
            merge_size=MERGE_SIZE,
            temporal_patch_size=2,
            size={"shortest_edge": factor * factor, "longest_edge": image_size * image_size},
        )
        processor = Qwen2_5_VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer)
        token_id = tokenizer.convert_tokens_to_ids
        rope = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": mrope_section(size.text_hidden // size.text_heads),
        }
        config = Qwen2_5_VLConfig(
            text_config=decoder_text_config(size, tokenizer, rope_parameters=rope),
            vision_config={
                "depth": size.vision_layers,
                "hidden_size": size.vision_hidden,
                "intermediate_size": size.vision_intermediate,
                "num_heads": size.vision_heads,
                "patch_size": size.patch_size,
                "spatial_merge_size": MERGE_SIZE,
                "temporal_patch_size": 2,
                "window_size": 2 * factor,  # windows of 2x2 visual tokens
                "fullatt_block_indexes": list(range(1, size.vision_layers, 2)),  # every other layer global
                "out_hidden_size": size.text_hidden,
            },
            image_token_id=token_id("<|image_pad|>"),
            video_token_id=token_id("<|video_pad|>"),
            vision_start_token_id=token_id("<|vision_start|>"),
            vision_end_token_id=token_id("<|vision_end|>"),
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
        set_generation_ids(model, tokenizer)
        return model, processor

    def load_processor(self, path: str) -> ProcessorMixin:
        # AutoProcessor would also build the video processor, which needs torchvision; images need only these two.
        return Qwen2_5_VLImageOnlyProcessor(
            AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        )

    def pixel_sides(self, processor: ProcessorMixin, image_size: int) -> tuple[int, int]:
        image_processor = processor.image_processor
        side, _ = smart_resize(
            image_size,
            image_size,
            factor=image_processor.patch_size * image_processor.merge_size,
            min_pixels=image_processor.size.shortest_edge,
            max_pixels=image_processor.size.longest_edge,
        )
        return side, side

    def native_image_size(self, processor: ProcessorMixin) -> int | None:
        return None  # any multiple of patch x merge; smart_resize picks the grid

    def patch_size(self, model: PreTrainedModel) -> int:
        return model.config.vision_config.patch_size

    def visual_token_module(self, model: PreTrainedModel) -> torch.nn.Module:
        return model.model.visual.merger

    def text_model(self, model: PreTrainedModel) -> torch.nn.Module:
        return model
