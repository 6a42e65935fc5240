"""Resolve a model source (preset, local folder, GGUF file, hub id) and load it with transformers."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from precision_router.cache import cache_dir
from precision_router.errors import ModelLoadError
from precision_router.models.presets import get_preset

__all__ = ["LoadedModel", "forward_with_cache", "load_causal_lm", "merge_adapter", "resolve_source", "torch_dtype"]

logger = logging.getLogger(__name__)

_DONE = "precision_router.json"


@dataclass
class LoadedModel:
    """A transformers causal LM, its tokenizer, a display name and the folder it came from."""

    model: Any
    tokenizer: Any
    name: str
    path: str


@functools.cache
def _cache_argument(model_class: Any) -> str:
    """The name under which ``model_class.forward`` takes the KV cache."""
    import inspect

    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def forward_with_cache(model: Any, cache: Any, **inputs: Any) -> tuple[Any, Any]:
    """Run ``model(**inputs)`` extending the KV ``cache``; returns ``(output, cache)``.

    transformers renamed the argument and output field ``past_key_values`` to ``cache`` (5.2x);
    this passes and reads whichever name the model's ``forward`` takes.
    """
    name = _cache_argument(model.__class__)
    out = model(**inputs, **{name: cache}, use_cache=True)
    new_cache = out.get("cache") if name == "cache" else out.get("past_key_values")
    return out, new_cache


def torch_dtype(name: str | Any) -> Any:
    """``"float32"`` / ``"fp32"`` / ``"bfloat16"`` / ``"bf16"`` / ``"float16"`` -> a torch dtype."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    value = getattr(torch, aliases.get(str(name), str(name)), None)
    if not isinstance(value, torch.dtype):
        msg = f"unknown dtype {name!r}; use float32, bfloat16 or float16"
        raise ValueError(msg)
    return value


def resolve_source(source: str | os.PathLike[str]) -> tuple[str, str]:
    """``(hf_location, display_name)`` for a source.

    A preset or a ``.gguf`` file is exported once to an HF folder in the cache (GGUF weights
    dequantized to float32); a local HF folder is used as is; anything else is taken as a hub
    id for ``from_pretrained``.
    """
    text = str(source)
    preset = get_preset(text)
    if preset is not None:
        if preset.adapter is not None:
            base, _ = resolve_source(preset.base)
            return str(merge_adapter(base, preset.adapter(), preset.cache_key())), preset.name
        return str(_export_gguf(preset.gguf_path(), preset.name)), preset.name
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
        return str(_export_gguf(path, f"{path.stem}-{digest}")), path.stem
    if path.is_dir():
        if not (path / "config.json").exists():
            msg = f"{path} is a folder without config.json; point to a transformers model folder"
            raise ModelLoadError(msg)
        return str(path), path.name
    if path.exists() or text.startswith((".", "/", "~")):
        msg = f"model source {text!r} is neither a preset, a .gguf file nor a model folder"
        raise ModelLoadError(msg)
    return text, text.rsplit("/", 1)[-1]


def _export_gguf(gguf: Path, key: str) -> Path:
    """Dequantize a GGUF checkpoint once into ``<cache>/models/<key>/fp32`` (an HF folder)."""
    from filelock import FileLock

    out = cache_dir("models", key, "fp32")
    if (out / _DONE).exists():
        return out
    with FileLock(str(out) + ".lock"):
        if (out / _DONE).exists():
            return out
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logger.info("exporting %s to %s (one time)", gguf.name, out)
        start = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / _DONE).write_text(json.dumps({"source": str(gguf), "dtype": "float32"}))
        logger.info("exported %s in %.1f s", gguf.name, time.perf_counter() - start)
    return out


def merge_adapter(base: str | os.PathLike[str], adapter: str | os.PathLike[str], key: str) -> Path:
    """Merge a LoRA adapter (``peft`` folder) into ``base`` once: ``<cache>/models/<key>/fp32``.

    Raises:
        ModelLoadError: the adapter folder is missing, or ``peft`` is not installed.
    """
    from filelock import FileLock

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        msg = f"no LoRA adapter at {adapter} (adapter_config.json missing); reinstall the package that ships it"
        raise ModelLoadError(msg)
    out = cache_dir("models", key, "fp32")
    if (out / _DONE).exists():
        return out
    with FileLock(str(out) + ".lock"):
        if (out / _DONE).exists():
            return out
        try:
            from peft import PeftModel
        except ImportError as exc:
            msg = 'merging a fine-tuned adapter needs peft: pip install "precision-router[train]"'
            raise ModelLoadError(msg) from exc
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        logger.info("merging adapter %s into %s (one time)", adapter, base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        merged.save_pretrained(out)
        AutoTokenizer.from_pretrained(base).save_pretrained(out)
        (out / _DONE).write_text(json.dumps({"base": str(base), "adapter": str(adapter), "dtype": "float32"}))
    return out


def load_causal_lm(
    source: str | os.PathLike[str],
    *,
    dtype: str | Any = "float32",
    device: str | None = None,
    tokenizer: Any = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from any source :func:`resolve_source` accepts."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location, name = resolve_source(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype(dtype))
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(location)
    except OSError as exc:
        msg = (
            f"could not load model {str(source)!r} ({exc}). Use a preset ("
            "'smollm2-135m-instruct'), a local transformers folder, or a hub id with hub access"
        )
        raise ModelLoadError(msg) from exc
    if device:
        model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, path=location)
