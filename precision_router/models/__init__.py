"""Local chat models, precision pairs, quantization and action scoring."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from precision_router.models.llamacpp import LlamaCppChatModel
    from precision_router.models.local import LocalChatModel
    from precision_router.models.pair import check_same_tokenizer, load_precision_pair
    from precision_router.models.presets import PRESETS, ModelPreset, register_preset
    from precision_router.models.quantize import QuantSpec, parse_precision, rtn_quantize_

__all__ = [
    "PRESETS",
    "LlamaCppChatModel",
    "LocalChatModel",
    "ModelPreset",
    "QuantSpec",
    "check_same_tokenizer",
    "load_precision_pair",
    "parse_precision",
    "register_preset",
    "rtn_quantize_",
]

_LAZY = {
    "LlamaCppChatModel": "precision_router.models.llamacpp",
    "LocalChatModel": "precision_router.models.local",
    "check_same_tokenizer": "precision_router.models.pair",
    "load_precision_pair": "precision_router.models.pair",
    "PRESETS": "precision_router.models.presets",
    "ModelPreset": "precision_router.models.presets",
    "register_preset": "precision_router.models.presets",
    "QuantSpec": "precision_router.models.quantize",
    "parse_precision": "precision_router.models.quantize",
    "rtn_quantize_": "precision_router.models.quantize",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
