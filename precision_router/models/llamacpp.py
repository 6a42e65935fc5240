"""``LlamaCppChatModel``: the :class:`~precision_router.LocalChatModel` contract over a GGUF file on llama.cpp.

Needs the ``[llamacpp]`` extra (``llama-cpp-python``, which compiles llama.cpp on install).
What users run on a CPU: a 3- or 4-bit GGUF file is several times cheaper per token than an
8-bit one, so routing most steps to it saves wall-clock time, not only a share of steps.

The model renders messages with the chat template stored in the GGUF file (ChatML when there
is none), writes bound tools in the Hermes style, streams, reports usage, and guides forced
tool calls exactly as :class:`~precision_router.LocalChatModel` does (it inherits all of that);
only the token loop runs on llama.cpp. A :class:`LlamaCppRuntime` holds one loaded file and the
tokens in its KV cache, so successive calls (and :class:`~precision_router.models.llamacpp_scoring.LlamaCppScorer`
calls on the same runtime) only evaluate what follows the longest common token prefix.

Example:
    .. code-block:: python

        from precision_router import RoutedChatModel, load_precision_pair

        high, low = load_precision_pair("smollm2-135m-instruct", backend="llama.cpp", high="q8_0", low="q4_k_m")
        chat = RoutedChatModel(high=high, low=low)
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import PrivateAttr

from precision_router.errors import require
from precision_router.models.local import CHATML_TEMPLATE, LocalChatModel, _DecodeState, _StopScanner

__all__ = ["GGUFTokenizer", "LlamaCppChatModel", "LlamaCppRuntime", "load_runtime"]

END_OF_TURN = "<|im_end|>"


def _llama_cpp() -> Any:
    return require("llama_cpp", extra="llamacpp", purpose="the llama.cpp backend", package="llama-cpp-python")


_LOG_CALLBACK: Any = None


def default_threads() -> int:
    """Threads for llama.cpp when none are given.

    ``$OMP_NUM_THREADS`` when set (Ray sets it to each worker's CPUs, so workers do not
    oversubscribe the machine), else the cores this process may use.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _quiet_logs(lib: Any) -> None:
    """Send llama.cpp's own log lines (model loading, quantization) nowhere, once per process."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = lib.llama_log_callback(lambda level, text, data: None)
        lib.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


class LlamaCppRuntime:
    """One GGUF file loaded in llama.cpp, with the token sequence its KV cache holds.

    The KV cache is unified across sequences: sequence 0 holds the current prompt, and
    :meth:`branch_logits` evaluates several continuations of it at once, each on its own
    sequence that shares the prompt's cells (no copy), in one llama.cpp call. Every method takes
    the runtime's lock; :meth:`logits_after` reuses the cached prefix.

    Args:
        path: the ``.gguf`` file.
        n_ctx: context length in tokens (the prompt plus the continuations scored at once).
        n_threads: CPU threads (default: :func:`default_threads`, ``$OMP_NUM_THREADS`` or the usable cores).
        n_batch: most tokens evaluated per llama.cpp call.
        n_seq: most sequences (continuations scored in one call, plus the prompt's).
        repack: let llama.cpp repack quantized weights for this CPU (its "extra buffer types":
            faster on many CPUs, but it crashed on quantized files on this project's AMX machines,
            so it is off unless asked for).
        f32_cache: keep the KV cache and attention in float32 (llama.cpp's default is float16):
            slower, for comparisons with torch at float32.
        flash_attention: use llama.cpp's fused attention kernel (``None``: llama.cpp's choice,
            which turns it on for CPUs). Off by default: attention then runs as matrix products,
            which on this project's 2-core CPU made a warm score-mode step 28 % faster and a
            generated token 40 % faster at a 600-token prompt (a first step 10 % slower;
            ``benchmarks/llamacpp_speed.py --flash-attention on|off``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_seq: int = 64,
        repack: bool = False,
        f32_cache: bool = False,
        flash_attention: bool | None = False,
    ) -> None:
        lib = _llama_cpp()
        self.lib = lib
        self.path = Path(path)
        if not self.path.is_file():
            msg = f"no GGUF file at {self.path}"
            raise FileNotFoundError(msg)
        threads = n_threads or default_threads()
        _quiet_logs(lib)
        lib.llama_backend_init()
        model_params = lib.llama_model_default_params()
        model_params.use_extra_bufts = repack
        self.model = lib.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not self.model:
            msg = f"llama.cpp could not load {self.path}"
            raise RuntimeError(msg)
        n_seq = max(2, min(n_seq, int(lib.llama_max_parallel_sequences())))
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        if flash_attention is not None:
            params.flash_attn_type = (
                lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        if f32_cache:
            params.type_k = params.type_v = lib.GGML_TYPE_F32
            params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED  # its CPU kernel rounds queries to f16
        self.ctx = lib.llama_init_from_model(self.model, params)
        if not self.ctx:
            msg = f"llama.cpp could not create a context for {self.path} (n_ctx={n_ctx})"
            raise RuntimeError(msg)
        self.n_ctx = int(lib.llama_n_ctx(self.ctx))
        self.n_batch = n_batch
        self.n_seq = n_seq
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        self.eos_id = int(lib.llama_vocab_eos(self.vocab))
        self.bos_id = int(lib.llama_vocab_bos(self.vocab))
        template = lib.llama_model_chat_template(self.model, None)
        self.chat_template: str | None = template.decode("utf-8") if template else None
        self.memory = lib.llama_get_memory(self.ctx)
        self.lock = threading.RLock()
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self._ids: list[int] = []
        self._last: np.ndarray | None = None
        self.stats = {"evaluated_tokens": 0, "reused_tokens": 0}

    def __del__(self) -> None:
        lib = getattr(self, "lib", None)
        if lib is None or lib.llama_free is None:  # interpreter shutdown: the library is gone
            return
        batch, ctx, model = getattr(self, "_batch", None), getattr(self, "ctx", None), getattr(self, "model", None)
        self._batch = self.ctx = self.model = None
        if batch is not None:
            lib.llama_batch_free(batch)
        if ctx:
            lib.llama_free(ctx)
        if model:
            lib.llama_model_free(model)

    # -- text <-> tokens -------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens such as ``<|im_start|>`` parsed, no BOS added)."""
        data = text.encode("utf-8")
        size = len(data) + 8
        while True:
            buffer = (self.lib.llama_token * size)()
            count = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, size, False, True)
            if count >= 0:
                return list(buffer[:count])
            size = -count

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens (an incomplete UTF-8 tail shows as U+FFFD)."""
        tokens = (self.lib.llama_token * max(len(ids), 1))(*ids)
        size = 8 * len(ids) + 16
        while True:
            buffer = ctypes.create_string_buffer(size)
            count = self.lib.llama_detokenize(self.vocab, tokens, len(ids), buffer, size, True, False)
            if count >= 0:
                return buffer.raw[:count].decode("utf-8", errors="replace")
            size = -count

    def token_text(self, token: int) -> str:
        """The vocabulary entry of ``token`` as stored in the file."""
        return bytes(self.lib.llama_vocab_get_text(self.vocab, token)).decode("utf-8", errors="replace")

    def special_id(self, text: str) -> int | None:
        """The id of ``text`` when it is one token of the vocabulary, else ``None``."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def end_ids(self) -> set[int]:
        """Tokens that end a turn: EOS and ``<|im_end|>`` when the vocabulary has it."""
        ids = {self.eos_id}
        if (end := self.special_id(END_OF_TURN)) is not None:
            ids.add(end)
        return {i for i in ids if i >= 0}

    # -- evaluation ----------------------------------------------------------------------------
    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> np.ndarray:
        """One llama.cpp call over ``(token, position, sequence, wants_logits)`` entries; their logits rows."""
        lib, batch = self.lib, self._batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = logits
        code = lib.llama_decode(self.ctx, batch)
        if code != 0:
            msg = f"llama_decode returned {code} (the context of {self.n_ctx} tokens may be full: pass a larger n_ctx=)"
            raise RuntimeError(msg)
        rows = sum(1 for entry in entries if entry[3])
        self.stats["evaluated_tokens"] += len(entries)
        return np.ctypeslib.as_array(lib.llama_get_logits(self.ctx), shape=(rows, self.n_vocab)).copy()

    def _check_fits(self, tokens: int) -> None:
        if tokens > self.n_ctx:
            msg = f"{tokens} tokens do not fit the llama.cpp context of {self.n_ctx}; pass a larger n_ctx= to the model"
            raise ValueError(msg)

    def _truncate(self, length: int) -> None:
        self.lib.llama_memory_seq_rm(self.memory, 0, length, -1)
        del self._ids[length:]
        self._last = None

    def logits_after(self, ids: Sequence[int]) -> np.ndarray:
        """Next-token logits after ``ids`` (float32, ``n_vocab``), evaluating only what the cache lacks."""
        if not ids:
            msg = "llama.cpp needs at least one token to evaluate"
            raise ValueError(msg)
        with self.lock:
            ids = list(ids)
            if ids == self._ids and self._last is not None:
                self.stats["reused_tokens"] += len(ids)
                return self._last
            self._check_fits(len(ids))
            known = len(self._ids)
            if known <= len(ids) and ids[:known] == self._ids:
                common = known
            else:
                common = 0
                limit = min(known, len(ids))
                while common < limit and ids[common] == self._ids[common]:
                    common += 1
            common = min(common, len(ids) - 1)  # re-evaluate the last token when its logits are unknown
            if common < known:
                self._truncate(common)
            rows = np.empty((0, self.n_vocab), dtype=np.float32)
            for start in range(common, len(ids), self.n_batch):
                chunk = ids[start : start + self.n_batch]
                end = start + len(chunk)
                rows = self._decode([(t, start + i, 0, start + i == len(ids) - 1) for i, t in enumerate(chunk)])
                self._ids = ids[:end]
            self.stats["reused_tokens"] += common
            self._ids, self._last = ids, rows[-1]
            return self._last

    def branch_logits(self, prefix: Sequence[int], branches: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """For each branch, the logits after each of its tokens following ``prefix`` (``len x n_vocab``).

        Branches are evaluated together, each on its own sequence sharing the prefix's cache
        cells, in as few llama.cpp calls as ``n_batch`` and ``n_seq`` allow; the cache then holds
        the prefix again.
        """
        with self.lock:
            last = self.logits_after(prefix)
            base = len(self._ids)
            out: list[np.ndarray] = [np.zeros((0, self.n_vocab), dtype=np.float32)] * len(branches)
            todo = [(i, list(b)) for i, b in enumerate(branches) if b]
            for branch in todo:
                if len(branch[1]) > self.n_batch:
                    msg = f"a continuation of {len(branch[1])} tokens exceeds n_batch={self.n_batch}"
                    raise ValueError(msg)
            while todo:
                group: list[tuple[int, list[int]]] = []
                size = 0
                while todo and len(group) < self.n_seq - 1 and size + len(todo[0][1]) <= self.n_batch:
                    group.append(todo.pop(0))
                    size += len(group[-1][1])
                self._check_fits(base + size)
                entries = []
                for sequence, (_, tokens) in enumerate(group, start=1):
                    self.lib.llama_memory_seq_cp(self.memory, 0, sequence, -1, -1)
                    entries += [(t, base + k, sequence, True) for k, t in enumerate(tokens)]
                try:
                    rows = self._decode(entries)
                finally:
                    for sequence in range(1, len(group) + 1):
                        self.lib.llama_memory_seq_rm(self.memory, sequence, -1, -1)
                start = 0
                for index, tokens in group:
                    out[index] = rows[start : start + len(tokens)]
                    start += len(tokens)
            self._last = last
            return out


def load_runtime(path: str | os.PathLike[str], **kwargs: Any) -> LlamaCppRuntime:
    """Load ``path`` into a new :class:`LlamaCppRuntime` (its keyword arguments: ``n_ctx``, ``flash_attention`` ...)."""
    return LlamaCppRuntime(path, **kwargs)


class GGUFTokenizer:
    """The tokenizer side of a GGUF file, shaped like the parts of a transformers tokenizer we use.

    It renders chat templates (the file's ``tokenizer.chat_template``) with the same sandboxed
    Jinja environment transformers uses, and exposes the vocabulary for the check that two
    precisions share one tokenizer.
    """

    def __init__(self, runtime: LlamaCppRuntime) -> None:
        self.runtime = runtime
        self.chat_template: str | None = runtime.chat_template
        self.eos_token = runtime.token_text(runtime.eos_id) if runtime.eos_id >= 0 else ""
        self.bos_token = runtime.token_text(runtime.bos_id) if runtime.bos_id >= 0 else ""
        self._vocab: dict[str, int] | None = None

    def __len__(self) -> int:
        return self.runtime.n_vocab

    def get_vocab(self) -> dict[str, int]:
        """``{token text: id}`` for the whole vocabulary."""
        if self._vocab is None:
            self._vocab = {self.runtime.token_text(i): i for i in range(self.runtime.n_vocab)}
        return self._vocab

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens parsed, no BOS)."""
        return self.runtime.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens."""
        return self.runtime.decode(ids)

    def __call__(self, text: str, *, add_special_tokens: bool = False, **kwargs: Any) -> Any:
        """``tokenizer(text).input_ids``, as a transformers tokenizer answers (no BOS is ever added)."""
        if not isinstance(text, str):
            msg = f"GGUFTokenizer takes one text, got {type(text).__name__}"
            raise TypeError(msg)
        return SimpleNamespace(input_ids=self.encode(text))

    def apply_chat_template(
        self,
        conversation: Sequence[dict[str, Any]],
        *,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
        chat_template: str | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """Render ``conversation`` with the file's template (or ``chat_template``); text only."""
        if tokenize:
            msg = "GGUFTokenizer.apply_chat_template renders text only (tokenize=False)"
            raise ValueError(msg)
        return _render_template(
            chat_template or self.chat_template or CHATML_TEMPLATE,
            messages=list(conversation),
            add_generation_prompt=add_generation_prompt,
            tools=list(tools) if tools else None,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            **kwargs,
        )


def _render_template(template: str, **context: Any) -> str:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(**context)


class LlamaCppChatModel(LocalChatModel):
    """A chat model over a GGUF file on llama.cpp, with :class:`~precision_router.LocalChatModel`'s contract.

    Construct it from a file with :meth:`from_gguf`, around a loaded runtime
    (``LlamaCppChatModel(runtime=..., model_name=...)``), or lazily with ``model_path=`` (a
    ``.gguf`` file, loaded on first call). Usable as ``high`` or ``low`` of
    :class:`~precision_router.RoutedChatModel`.
    """

    runtime: Any = None
    """The :class:`LlamaCppRuntime` (loaded from ``model_path`` when not given)."""
    n_ctx: int = 4096
    """Context length when loading lazily."""
    n_threads: int | None = None
    """CPU threads when loading lazily (default: every core)."""
    flash_attention: bool | None = False
    """llama.cpp's fused attention kernel when loading lazily (off by default; ``None``: llama.cpp's choice)."""

    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_gguf(
        cls,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        flash_attention: bool | None = False,
        **kwargs: Any,
    ) -> LlamaCppChatModel:
        """Load the GGUF file at ``path`` and wrap it (``flash_attention``: see :class:`LlamaCppRuntime`)."""
        runtime = load_runtime(path, n_ctx=n_ctx, n_threads=n_threads, flash_attention=flash_attention)
        kwargs.setdefault("model_name", Path(path).stem)
        return cls(
            runtime=runtime,
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            flash_attention=flash_attention,
            **kwargs,
        )

    @classmethod
    def from_pretrained(
        cls, source: str, *, dtype: str = "float32", device: str | None = None, **kwargs: Any
    ) -> LlamaCppChatModel:
        """Load a ``.gguf`` file, or a preset's GGUF file, as it is (no requantization)."""
        from precision_router.models.presets import get_preset

        preset = get_preset(source)
        path = preset.gguf_path() if preset is not None else Path(source).expanduser()
        kwargs.setdefault("model_name", preset.name if preset is not None else Path(path).stem)
        return cls.from_gguf(path, **kwargs)

    def ensure_loaded(self) -> None:
        """Load ``model_path`` if no runtime was given."""
        if self.runtime is None:
            with self._load_lock:
                if self.runtime is None:
                    if not self.model_path:
                        msg = "LlamaCppChatModel needs runtime= or model_path= (a .gguf file)"
                        raise ValueError(msg)
                    self.runtime = load_runtime(
                        self.model_path,
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads,
                        flash_attention=self.flash_attention,
                    )
        if self.tokenizer is None:
            self.tokenizer = GGUFTokenizer(self.runtime)

    @property
    def _llm_type(self) -> str:
        return "precision-router-llamacpp"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llamacpp"
        return params

    def action_scorer(self, *, end_token: str | None = None, keep_cache: bool = True) -> Any:
        """A :class:`~precision_router.models.llamacpp_scoring.LlamaCppScorer` on this model's runtime."""
        from precision_router.models.llamacpp_scoring import LlamaCppScorer

        self.ensure_loaded()
        return LlamaCppScorer(self.runtime, end_token=end_token, keep_cache=keep_cache)

    def _choose_tool(self, base: str, tools: Sequence[dict[str, Any]], tool_choice: str | None) -> str:
        names = [t["function"]["name"] for t in tools]
        if tool_choice in names:
            return str(tool_choice)
        from precision_router.models.tools import forced_prefix

        scores = self.action_scorer(end_token="", keep_cache=False).score(
            base + forced_prefix("any"), [f'{n}"' for n in names]
        )
        return names[int(scores.argmax())]

    def _decode(
        self,
        prompt: str,
        stops: list[str],
        state: _DecodeState,
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float | None,
        seed: int | None,
    ) -> Iterator[str]:
        runtime: LlamaCppRuntime = self.runtime
        ids = runtime.encode(prompt)
        state.input_tokens = len(ids)
        eos = runtime.end_ids()
        sample = temperature is not None and temperature > 0
        rng = np.random.default_rng(seed)
        scanner = _StopScanner(stops)
        generated: list[int] = []
        emitted_text = ""
        # The runtime's lock is taken per token, never across a yield: another call on the same
        # runtime in between only costs re-evaluating the tokens it displaced.
        for _ in range(max_new_tokens):
            logits = runtime.logits_after(ids + generated)
            token = _sample(logits, float(temperature), top_p, rng) if sample else int(np.argmax(logits))
            if token in eos:
                state.finish_reason = "stop"
                break
            generated.append(token)
            state.output_tokens = len(generated)
            text = runtime.decode(generated)
            if text.endswith("\ufffd"):
                continue  # an incomplete UTF-8 sequence: wait for the next token
            piece, text_stopped = scanner.feed(text[len(emitted_text) :])
            emitted_text = text
            if piece:
                yield piece
            if text_stopped:
                state.finish_reason = "stop"
                return
        else:
            state.finish_reason = "length"
        if rest := scanner.flush():
            yield rest


def _sample(logits: np.ndarray, temperature: float, top_p: float | None, rng: np.random.Generator) -> int:
    """A token drawn from ``softmax(logits / temperature)``, within the ``top_p`` nucleus when given."""
    scaled = logits.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs)
        keep = np.cumsum(probs[order]) - probs[order] < top_p
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))
