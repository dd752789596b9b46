"""BLIP-2 (Li et al., 2023, "BLIP-2: Bootstrapping Language-Image Pre-training"): ViT -> Q-Former -> OPT.

A fixed number of learned queries cross-attend to the vision features; their outputs, projected to
the language model's width, replace the ``num_query_tokens`` image tokens the processor puts in
front of the text (before BOS).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    AddedToken,
    AutoProcessor,
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessorPil,
    PreTrainedModel,
    ProcessorMixin,
)

from vlshield.models.base import (
    PRESET_SPECIAL_TOKENS,
    PresetSize,
    fixed_square_sides,
    require_multiple,
    set_generation_ids,
    special_token_ids,
)
from vlshield.models.tokenizer import train_tokenizer

IMAGE_TOKEN = "<image>"


class Blip2Family:
    name = "blip2"
    model_type = "blip-2"
    prompt_template = "Question: {prompt} Answer:"  # the processor prepends the query tokens
    response_template = " {response}"
    vision_prefixes = ("vision_model.",)
    projector_prefixes = ("query_tokens", "qformer.", "language_projection.")
    language_prefixes = ("language_model.",)
    # OPT decoder layers (the BLIP-2 OPT checkpoints); the Flan-T5 variants are not supported.
    lora_target = r"language_model\.model\.decoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"
    image_kwargs = {"do_rescale": False, "do_resize": False}
    preset_lr = 1e-3

    def check_image_size(self, size: PresetSize, image_size: int) -> None:
        require_multiple("blip2", image_size, size.patch_size, f"the patch size {size.patch_size}")

    def build(
        self, size: PresetSize, tokenizer_texts: Sequence[str], image_size: int
    ) -> tuple[PreTrainedModel, ProcessorMixin]:
        # No named image_token on the tokenizer: Blip2Processor then registers "<image>" itself as an
        # AddedToken (given a plain-string image_token it crashes on `.content`). It is already in the vocab.
        tokenizer = train_tokenizer(
            tokenizer_texts,
            special_tokens=PRESET_SPECIAL_TOKENS,
            more_special_tokens=[IMAGE_TOKEN],
            vocab_size=size.vocab_size,
            add_bos_token=True,
        )
        image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
        processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=size.num_query_tokens)
        config = Blip2Config(
            vision_config={
                "hidden_size": size.vision_hidden,
                "intermediate_size": size.vision_intermediate,
                "num_hidden_layers": size.vision_layers,
                "num_attention_heads": size.vision_heads,
                "image_size": image_size,
                "patch_size": size.patch_size,
                "initializer_range": 0.02,  # the default 1e-10 makes a random tower ignore its image
            },
            qformer_config={
                "hidden_size": size.vision_hidden,
                "intermediate_size": size.vision_intermediate,
                "num_hidden_layers": size.vision_layers,
                "num_attention_heads": size.vision_heads,
                "cross_attention_frequency": 1,  # every layer looks at the image
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
            },
            text_config={
                "model_type": "opt",
                "hidden_size": size.text_hidden,
                "word_embed_proj_dim": size.text_hidden,
                "ffn_dim": size.text_intermediate,
                "num_hidden_layers": size.text_layers,
                "num_attention_heads": size.text_heads,
                "vocab_size": size.text_vocab(tokenizer),
                "max_position_embeddings": 1024,
                "dropout": 0.0,
                **special_token_ids(tokenizer),
            },
            num_query_tokens=size.num_query_tokens,
            image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        )
        model = Blip2ForConditionalGeneration(config)
        set_generation_ids(model, tokenizer)
        return model, processor

    def load_processor(self, path: str) -> ProcessorMixin:
        processor = AutoProcessor.from_pretrained(path)
        if isinstance(processor.image_token, str):  # a tokenizer with a named image_token gives a plain string
            processor.image_token = AddedToken(processor.image_token, normalized=False, special=True)
        return processor

    def pixel_sides(self, processor: ProcessorMixin, image_size: int) -> tuple[int, int]:
        return fixed_square_sides(processor.image_processor)

    def native_image_size(self, processor: ProcessorMixin) -> int | None:
        return fixed_square_sides(processor.image_processor)[1]

    def patch_size(self, model: PreTrainedModel) -> int:
        return model.config.vision_config.patch_size

    def visual_token_module(self, model: PreTrainedModel) -> torch.nn.Module:
        return model.language_projection

    def text_model(self, model: PreTrainedModel) -> torch.nn.Module:
        return model.language_model
