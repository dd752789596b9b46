"""Vision-language models behind one interface: ``build_model(spec) -> ModelBundle``.

One builder per family (``llava``, ``qwen2_5_vl``, ``blip2``), each giving the real Hugging Face
class: a tiny preset built from a shrunken config (``llava:tiny``) or a checkpoint loaded with
``from_pretrained`` (a hub name or a directory written by ``ModelBundle.save``).
"""

from vlshield.models.base import PRESET_SIZES, PRESETS, ModelBundle, ModelFamily, ModelOptions, PresetSize
from vlshield.models.registry import MODEL_FAMILIES, apply_options, build_model, register_model_family

__all__ = [
    "MODEL_FAMILIES",
    "PRESETS",
    "PRESET_SIZES",
    "ModelBundle",
    "ModelFamily",
    "ModelOptions",
    "PresetSize",
    "apply_options",
    "build_model",
    "register_model_family",
]
