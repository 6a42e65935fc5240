"""Low-precision copies of a model: GPTQ through gptqmodel, or round-to-nearest (RTN).

GPTQ checkpoints are made once and cached under ``$PRECISION_ROUTER_CACHE/models``. On a
CUDA machine the low model runs on gptqmodel's kernels; on CPU, where those kernels are slower
than float32 (3-bit needs bf16 and runs far slower), the GPTQ weights are dequantized once into
a plain float32 checkpoint: the same quantized values, at float32 speed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from precision_router.cache import cache_dir
from precision_router.errors import InvalidArgumentError, require

__all__ = [
    "QuantSpec",
    "dequantize_gptq",
    "gptq_checkpoint",
    "gptq_quantize",
    "parse_precision",
    "rtn_quantize_",
]

logger = logging.getLogger(__name__)

_SPEC = re.compile(r"^(?P<method>gptq|rtn)-(?P<bits>[2-8])bit(?:-g(?P<group>\d+))?$")
_DONE = "precision_router.json"


@dataclass(frozen=True)
class QuantSpec:
    """A precision: ``method`` ``"none"`` (full weights in ``dtype``), ``"gptq"`` or ``"rtn"``."""

    method: str = "none"
    bits: int = 16
    group_size: int = 32
    dtype: str = "float32"

    @property
    def key(self) -> str:
        """Folder / display name, e.g. ``gptq-3bit-g32`` or ``fp32``."""
        if self.method == "none":
            return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[self.dtype]
        return f"{self.method}-{self.bits}bit-g{self.group_size}"


def parse_precision(text: str) -> QuantSpec:
    """``"fp32"``, ``"bf16"``, ``"fp16"``, ``"gptq-3bit"``, ``"gptq-4bit-g128"``, ``"rtn-4bit"`` ... -> spec."""
    value = text.strip().lower()
    full = {
        "fp32": "float32",
        "float32": "float32",
        "bf16": "bfloat16",
        "bfloat16": "bfloat16",
        "fp16": "float16",
        "float16": "float16",
    }
    if value in full:
        return QuantSpec(dtype=full[value])
    match = _SPEC.match(value)
    if not match:
        msg = (
            f"unknown precision {text!r}; use fp32, bf16, fp16, gptq-<2..8>bit[-g<group>] "
            "or rtn-<2..8>bit[-g<group>] (e.g. gptq-3bit, gptq-4bit-g128, rtn-4bit)"
        )
        raise InvalidArgumentError(msg)
    return QuantSpec(method=match["method"], bits=int(match["bits"]), group_size=int(match["group"] or 32))


def rtn_quantize_(model: Any, bits: int, group_size: int = 32) -> Any:
    """Round every decoder ``nn.Linear`` weight to ``bits`` in place (asymmetric, per group of inputs).

    The embeddings and the output head stay in full precision, as in GPTQ. Returns ``model``.
    """
    import torch
    from torch import nn

    levels = 2**bits - 1
    head = model.get_output_embeddings()
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, nn.Linear) or module is head:
                continue
            weight = module.weight
            out_features, in_features = weight.shape
            size = group_size if group_size > 0 and in_features % group_size == 0 else in_features
            groups = weight.float().reshape(out_features, in_features // size, size)
            low = groups.amin(dim=-1, keepdim=True)
            high = groups.amax(dim=-1, keepdim=True)
            scale = (high - low).clamp(min=1e-8) / levels
            q = ((groups - low) / scale).round().clamp(0, levels)
            weight.copy_((q * scale + low).reshape(out_features, in_features).to(weight.dtype))
    return model


def _gptqmodel() -> Any:
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(os.cpu_count() or 1, 4)))
    os.environ.setdefault("GPTQMODEL_CACHE_DIR", str(cache_dir("gptqmodel")))
    os.environ.setdefault("GPTQMODEL_TORCH_EXTENSIONS_DIR", str(cache_dir("gptqmodel", "extensions")))
    module = require("gptqmodel", extra="gptq", purpose="GPTQ quantization")
    try:  # gptqmodel writes per-run logs to ./logs; keep them in the cache instead of the user's folder
        from gptqmodel.looper import loop_processor

        loop_processor._PROJECT_LOG_DIR = cache_dir("gptqmodel", "logs")
    except (ImportError, AttributeError):  # pragma: no cover - other gptqmodel versions
        logger.debug("could not redirect gptqmodel's log folder")
    return module


def gptq_quantize(
    hf_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    bits: int,
    group_size: int = 32,
    gptq_texts: list[str] | None = None,
) -> Path:
    """GPTQ-quantize the float model in ``hf_dir`` into ``out_dir`` (a gptqmodel checkpoint).

    ``gptq_texts``: the texts GPTQ measures the layers on (default :func:`default_gptq_texts`).
    """
    import torch

    gptqmodel = _gptqmodel()
    from transformers import AutoTokenizer

    from precision_router.models.gptq_texts import default_gptq_texts

    out = Path(out_dir)
    texts = gptq_texts or default_gptq_texts(AutoTokenizer.from_pretrained(hf_dir))
    config = gptqmodel.QuantizeConfig(
        bits=bits, group_size=group_size, offload_to_disk_path=str(cache_dir("gptqmodel", "offload"))
    )
    start = time.perf_counter()
    logger.info("GPTQ %d-bit (group %d) of %s on %d texts", bits, group_size, hf_dir, len(texts))
    model = gptqmodel.GPTQModel.load(str(hf_dir), config, dtype=torch.float32)
    model.quantize(texts, batch_size=4)
    model.save(str(out))
    logger.info("GPTQ done in %.0f s -> %s", time.perf_counter() - start, out)
    return out


def dequantize_gptq(
    gptq_dir: str | os.PathLike[str], hf_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """Write a float32 HF checkpoint whose linear weights are the GPTQ checkpoint's, dequantized."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gptqmodel = _gptqmodel()
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    quantized = gptqmodel.GPTQModel.load(str(gptq_dir), backend=gptqmodel.BACKEND.GPTQ_TORCH, device="cpu")
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    targets = dict(model.named_modules())
    replaced = 0
    with torch.no_grad():
        for name, module in quantized.model.named_modules():
            if isinstance(module, TorchLinear):
                target = targets[name]
                target.weight.copy_(module.dequantize_weight().T.to(torch.float32))
                replaced += 1
    if not replaced:
        msg = f"{gptq_dir} holds no GPTQ linear layers to dequantize"
        raise RuntimeError(msg)
    out = Path(out_dir)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(hf_dir).save_pretrained(out)
    logger.info("dequantized %d GPTQ layers into %s", replaced, out)
    return out


def gptq_checkpoint(
    hf_dir: str | os.PathLike[str],
    key: str,
    spec: QuantSpec,
    *,
    gptq_texts: list[str] | None = None,
    dequantize: bool = True,
) -> Path:
    """The cached GPTQ copy of ``hf_dir`` for ``spec``, made on first use.

    Returns the gptqmodel checkpoint folder, or (``dequantize=True``) its float32 dequantized
    copy. ``key`` names the source model in the cache.
    """
    from filelock import FileLock

    root = cache_dir("models", key)
    packed = root / spec.key
    target = root / f"{spec.key}-dequant" if dequantize else packed
    if (target / _DONE).exists():
        return target
    with FileLock(str(root / f"{spec.key}.lock")):
        if not (packed / _DONE).exists():
            gptq_quantize(hf_dir, packed, bits=spec.bits, group_size=spec.group_size, gptq_texts=gptq_texts)
            (packed / _DONE).write_text(json.dumps({"source": str(hf_dir), "spec": spec.key}))
        if dequantize and not (target / _DONE).exists():
            dequantize_gptq(packed, hf_dir, target)
            (target / _DONE).write_text(json.dumps({"source": str(packed), "spec": spec.key, "dequantized": True}))
    return target
