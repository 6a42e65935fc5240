"""A high-precision model and its low-precision copy, as two LocalChatModels sharing one tokenizer."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from precision_router.errors import InvalidArgumentError, TokenizerMismatchError
from precision_router.models.loading import load_causal_lm, resolve_source
from precision_router.models.local import LocalChatModel
from precision_router.models.presets import get_preset
from precision_router.models.quantize import gptq_checkpoint, parse_precision, rtn_quantize_

__all__ = ["check_same_tokenizer", "load_precision_pair"]

logger = logging.getLogger(__name__)


def check_same_tokenizer(
    high_tokenizer: Any, low_tokenizer: Any, high_model: Any = None, low_model: Any = None
) -> None:
    """Raise :class:`TokenizerMismatchError` unless both sides share one vocabulary.

    Routing switches models between the steps of one conversation, and action distributions
    are compared token by token, so both precisions must tokenise identically.
    """
    if high_tokenizer is not low_tokenizer and high_tokenizer.get_vocab() != low_tokenizer.get_vocab():
        msg = (
            f"the high and low models use different tokenizers ({len(high_tokenizer)} vs "
            f"{len(low_tokenizer)} tokens): both precisions must be copies of one base model; "
            "quantize the high model with load_precision_pair(source, low='gptq-3bit') instead"
        )
        raise TokenizerMismatchError(msg)
    if high_model is not None and low_model is not None:
        high_vocab = high_model.get_output_embeddings().weight.shape[0]
        low_vocab = low_model.get_output_embeddings().weight.shape[0]
        if high_vocab != low_vocab:
            msg = (
                f"the high model scores {high_vocab} tokens but the low one {low_vocab}: they are "
                "not copies of one base model; quantize the high model instead"
            )
            raise TokenizerMismatchError(msg)


def load_precision_pair(
    source: str | os.PathLike[str] = "smollm2-135m-instruct",
    low: str | None = None,
    high: str | None = None,
    *,
    gptq_texts: list[str] | None = None,
    backend: str = "torch",
    device: str | None = None,
    calibration: list[str] | None = None,
    **chat_kwargs: Any,
) -> tuple[LocalChatModel, LocalChatModel]:
    """Load ``source`` at ``high`` precision and a ``low`` copy of it, sharing one tokenizer.

    Args:
        source: a preset (``"smollm2-135m-instruct"``), a local transformers folder, a ``.gguf``
            file or a hub id.
        low: ``"gptq-3bit"`` / ``"gptq-4bit"`` (GPTQ via gptqmodel, cached on disk; on CPU the
            weights are dequantized to float32), ``"rtn-4bit"`` / ``"rtn-3bit"`` (round-to-nearest,
            no GPTQ texts needed), ``"bf16"``, or the path of an already-quantized model folder.
            With ``backend="llama.cpp"``: a GGUF rung (default ``"q4_k_m"``; ``"q3_k_m"``, ``"q2_k"``
            ...) or a ``.gguf`` file; see :mod:`precision_router.models.gguf_rungs`.
        high: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``. With ``backend="llama.cpp"``: a GGUF
            rung (default ``"q8_0"``; ``"f16"`` ...) or a ``.gguf`` file.
        gptq_texts: the texts GPTQ quantizes on (default: a small built-in chat set,
            :func:`~precision_router.models.gptq_texts.default_gptq_texts`).
        backend: ``"torch"`` (transformers, default) or ``"llama.cpp"`` (GGUF rungs on llama.cpp,
            :class:`~precision_router.models.llamacpp.LlamaCppChatModel` s; the ``[llamacpp]`` extra).
        device: torch device (default: CPU, or CUDA for gptqmodel's kernels when available).
        calibration: former name of ``gptq_texts``.
        chat_kwargs: passed to both :class:`LocalChatModel` s (``max_tokens``, ``temperature``...).

    Returns:
        ``(high, low)`` chat models.

    Raises:
        InvalidArgumentError: ``high`` or ``low`` names no known precision (checked before loading).
        TokenizerMismatchError: ``low`` is a folder (or ``.gguf`` file) whose tokenizer differs.
    """
    if backend in {"llama.cpp", "llamacpp", "gguf"}:
        from precision_router.models.gguf_rungs import load_gguf_pair

        return load_gguf_pair(source, high, low, **chat_kwargs)  # type: ignore[return-value]
    if backend != "torch":
        msg = f"unknown backend {backend!r}; use 'torch' or 'llama.cpp'"
        raise ValueError(msg)
    low, high = low or "gptq-3bit", high or "fp32"
    high_spec = parse_precision(high)
    if high_spec.method != "none":
        msg = f"high must be a full precision (fp32, bf16, fp16), got {high!r}"
        raise InvalidArgumentError(msg)
    low_path = Path(str(low)).expanduser()
    low_spec = None if low_path.is_dir() else parse_precision(low)  # both checked before anything loads
    location, name = resolve_source(source)
    high_loaded = load_causal_lm(location, dtype=high_spec.dtype, device=device)
    tokenizer = high_loaded.tokenizer
    if low_spec is None:
        low_loaded = load_causal_lm(low_path, device=device)
        check_same_tokenizer(tokenizer, low_loaded.tokenizer, high_loaded.model, low_loaded.model)
        low_model, low_name = low_loaded.model, f"{name}@{low_path.name}"
    else:
        spec = low_spec
        low_name = f"{name}@{spec.key}"
        if spec.method == "none":
            low_model = load_causal_lm(location, dtype=spec.dtype, device=device, tokenizer=tokenizer).model
        elif spec.method == "rtn":
            low_model = rtn_quantize_(
                load_causal_lm(location, device=device, tokenizer=tokenizer).model, spec.bits, spec.group_size
            )
        else:
            low_model = _load_gptq(str(source), location, name, spec, gptq_texts or calibration, device)
    high_chat = LocalChatModel(
        hf_model=high_loaded.model,
        tokenizer=tokenizer,
        model_name=f"{name}@{high_spec.key}",
        model_path=location,
        **chat_kwargs,
    )
    low_chat = LocalChatModel(hf_model=low_model, tokenizer=tokenizer, model_name=low_name, **chat_kwargs)
    return high_chat, low_chat


def _cache_key(source: str, location: str, name: str) -> str:
    """Cache folder name of a source: the preset name, else its name plus a hash of its location."""
    preset = get_preset(source)
    if preset is not None:
        return preset.cache_key()
    return f"{name}-{hashlib.sha256(location.encode()).hexdigest()[:10]}"


def _load_gptq(
    source: str, location: str, name: str, spec: Any, gptq_texts: list[str] | None, device: str | None
) -> Any:
    import torch

    hf_dir = location
    if not Path(location).is_dir():  # a hub id: materialise it once so gptqmodel reads a folder
        hf_dir = str(_materialise(location, name))
    use_kernels = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    key = _cache_key(source, hf_dir, name)
    folder = gptq_checkpoint(hf_dir, key, spec, gptq_texts=gptq_texts, dequantize=not use_kernels)
    if use_kernels:
        from precision_router.models.quantize import _gptqmodel

        return _gptqmodel().GPTQModel.load(str(folder), device=device or "cuda").model
    return load_causal_lm(folder, device=device).model


def _materialise(hub_id: str, name: str) -> Path:
    from precision_router.cache import cache_dir

    out = cache_dir("models", name.replace("/", "--"), "hf")
    if not (out / "config.json").exists():
        loaded = load_causal_lm(hub_id)
        loaded.model.save_pretrained(out)
        loaded.tokenizer.save_pretrained(out)
    return out
