"""Model presets this package ships: SmolLM2-135M-Instruct fine-tuned on ALFWorld (a LoRA adapter).

Registered through the ``precision_router.presets`` entry point, so
``load_precision_pair("smollm2-135m-alfworld", low="gptq-3bit")`` works wherever this package is
installed: the adapter is merged into the base once and the merged model is quantized and
cached like any other source. How the adapter was trained: ``benchmarks/results/finetune/``.
"""

from __future__ import annotations

from pathlib import Path

from precision_router.models.presets import ModelPreset

__all__ = ["ADAPTERS", "SMOLLM2_ALFWORLD"]

ADAPTERS = Path(__file__).resolve().parent / "adapters"
"""Folder of the adapters shipped with the package."""

SMOLLM2_ALFWORLD = ModelPreset(
    name="smollm2-135m-alfworld",
    package="precision_router_alfworld",
    gguf_file="",
    install="pip install precision-router-alfworld",
    description="SmolLM2-135M-Instruct + LoRA fine-tuned on ALFWorld expert trajectories (merged on first load)",
    adapter=lambda: ADAPTERS / "smollm2-135m-alfworld",
    base="smollm2-135m-instruct",
)
