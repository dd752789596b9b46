"""LLaVA (Liu et al., 2023, "Visual Instruction Tuning"): CLIP ViT -> MLP projector -> Llama.

The preset is the real ``LlavaForConditionalGeneration`` with a shrunken CLIP vision tower and
Llama; the image token is repeated once per patch ((image_size / patch)^2 times, 64 at 64 px).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    AutoProcessor,
    CLIPImageProcessorPil,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    ProcessorMixin,
)

from vlshield.models.base import (
    PRESET_SPECIAL_TOKENS,
    PresetSize,
    decoder_text_config,
    fixed_square_sides,
    require_multiple,
    set_generation_ids,
)
from vlshield.models.tokenizer import train_tokenizer


class LlavaFamily:
    name = "llava"
    model_type = "llava"
    prompt_template = "USER: {image}\n{prompt} ASSISTANT:"
    response_template = " {response}"
    vision_prefixes = ("model.vision_tower.",)
    projector_prefixes = ("model.multi_modal_projector.",)
    language_prefixes = ("model.language_model.", "lm_head.")
    lora_target = r"model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
    image_kwargs = {"do_rescale": False, "do_resize": False, "do_center_crop": False}
    preset_lr = 1e-3

    def check_image_size(self, size: PresetSize, image_size: int) -> None:
        require_multiple("llava", image_size, size.patch_size, f"the patch size {size.patch_size}")

    def build(
        self, size: PresetSize, tokenizer_texts: Sequence[str], image_size: int
    ) -> tuple[PreTrainedModel, ProcessorMixin]:
        tokenizer = train_tokenizer(
            tokenizer_texts,
            special_tokens=PRESET_SPECIAL_TOKENS,
            extra_special_tokens={"image_token": "<image>"},
            vocab_size=size.vocab_size,
            add_bos_token=True,
        )
        image_processor = CLIPImageProcessorPil(size={"height": image_size, "width": image_size}, do_center_crop=False)
        # "default" drops the CLS token, so an image gives exactly (image_size / patch)^2 tokens, as in LLaVA-1.5.
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=size.patch_size,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
        )
        num_patches = (image_size // size.patch_size) ** 2
        config = LlavaConfig(
            vision_config={
                "model_type": "clip_vision_model",
                "hidden_size": size.vision_hidden,
                "intermediate_size": size.vision_intermediate,
                "num_hidden_layers": size.vision_layers,
                "num_attention_heads": size.vision_heads,
                "image_size": image_size,
                "patch_size": size.patch_size,
                "projection_dim": size.vision_hidden,
            },
            text_config=decoder_text_config(size, tokenizer, model_type="llama"),
            image_token_index=processor.image_token_id,
            image_seq_length=num_patches,
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,  # the last layer, so every vision layer gets gradients (LLaVA-1.5 uses -2)
        )
        model = LlavaForConditionalGeneration(config)
        set_generation_ids(model, tokenizer)
        return model, processor

    def load_processor(self, path: str) -> ProcessorMixin:
        return AutoProcessor.from_pretrained(path)

    def pixel_sides(self, processor: ProcessorMixin, image_size: int) -> tuple[int, int]:
        return fixed_square_sides(processor.image_processor)

    def native_image_size(self, processor: ProcessorMixin) -> int | None:
        return fixed_square_sides(processor.image_processor)[1]

    def patch_size(self, model: PreTrainedModel) -> int:
        return model.config.vision_config.patch_size

    def visual_token_module(self, model: PreTrainedModel) -> torch.nn.Module:
        return model.model.multi_modal_projector

    def text_model(self, model: PreTrainedModel) -> torch.nn.Module:
        return model
