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

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PrivateAttr

from precision_router.errors import require
from precision_router.models.local import CHATML_TEMPLATE, LocalChatModel, _DecodeState, _StopScanner

__all__ = ["GGUFTokenizer", "LlamaCppChatModel", "LlamaCppRuntime", "load_runtime"]

END_OF_TURN = "<|im_end|>"


def _llama_cpp() -> Any:
    return require("llama_cpp", extra="llamacpp", purpose="the llama.cpp backend", package="llama-cpp-python")


class LlamaCppRuntime:
    """One GGUF file loaded in llama.cpp, with the token sequence its KV cache holds.

    Every method takes the runtime's lock; :meth:`logits_after` reuses the cached prefix.

    Args:
        path: the ``.gguf`` file.
        n_ctx: context length in tokens.
        n_threads: CPU threads (default: every core).
        n_batch: most tokens evaluated per llama.cpp call.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, n_ctx: int = 4096, n_threads: int | None = None, n_batch: int = 512
    ) -> None:
        lib = _llama_cpp()
        self.lib = lib
        self.path = Path(path)
        threads = n_threads or os.cpu_count() or 1
        self.llama = lib.Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=False,
        )
        self.n_ctx = int(self.llama.n_ctx())
        self.n_batch = n_batch
        self.n_vocab = int(self.llama.n_vocab())
        self.vocab = lib.llama_model_get_vocab(self.llama.model)
        self.memory = lib.llama_get_memory(self.llama.ctx)
        self.lock = threading.RLock()
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self._ids: list[int] = []
        self._last: np.ndarray | None = None
        self.stats = {"evaluated_tokens": 0, "reused_tokens": 0}

    def __del__(self) -> None:
        batch = getattr(self, "_batch", None)
        if batch is not None:
            self._batch = None
            self.lib.llama_batch_free(batch)

    # -- text <-> tokens -------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens such as ``<|im_start|>`` parsed, no BOS added)."""
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` without special tokens (an incomplete UTF-8 tail shows as U+FFFD)."""
        return bytes(self.llama.detokenize(list(ids), special=False)).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        """The vocabulary entry of ``token`` as stored in the file."""
        return bytes(self.lib.llama_vocab_get_text(self.vocab, token)).decode("utf-8", errors="replace")

    def special_id(self, text: str) -> int | None:
        """The id of ``text`` when it is one token of the vocabulary, else ``None``."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def end_ids(self) -> set[int]:
        """Tokens that end a turn: EOS and ``<|im_end|>`` when the vocabulary has it."""
        ids = {int(self.llama.token_eos())}
        if (end := self.special_id(END_OF_TURN)) is not None:
            ids.add(end)
        return {i for i in ids if i >= 0}

    # -- evaluation ----------------------------------------------------------------------------
    def _evaluate(self, tokens: Sequence[int], start: int, *, every: bool) -> np.ndarray:
        """Evaluate ``tokens`` at positions ``start...`` on sequence 0; the logits of every token or the last."""
        if start + len(tokens) > self.n_ctx:
            msg = (
                f"{start + len(tokens)} tokens do not fit the llama.cpp context of {self.n_ctx}; "
                "pass a larger n_ctx= to the model"
            )
            raise ValueError(msg)
        lib, batch, rows = self.lib, self._batch, []
        for offset in range(0, len(tokens), self.n_batch):
            chunk = tokens[offset : offset + self.n_batch]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = every
            batch.logits[len(chunk) - 1] = True
            code = lib.llama_decode(self.llama.ctx, batch)
            if code != 0:
                msg = f"llama_decode returned {code}"
                raise RuntimeError(msg)
            n_out = len(chunk) if every else 1
            pointer = lib.llama_get_logits(self.llama.ctx)
            rows.append(np.ctypeslib.as_array(pointer, shape=(n_out, self.n_vocab)).copy())
        self.stats["evaluated_tokens"] += len(tokens)
        return np.concatenate(rows) if len(rows) > 1 else rows[0]

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
            logits = self._evaluate(ids[common:], common, every=False)[-1]
            self.stats["reused_tokens"] += common
            self._ids, self._last = ids, logits
            return logits

    def continuation_logits(self, prefix: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """Logits after each of ``tokens`` following ``prefix`` (``len(tokens) x n_vocab``).

        The KV cache is returned to ``prefix`` afterwards, so the next continuation of the same
        prefix evaluates only its own tokens.
        """
        with self.lock:
            last = self.logits_after(prefix)
            if not tokens:
                return np.zeros((0, self.n_vocab), dtype=np.float32)
            rows = self._evaluate(list(tokens), len(self._ids), every=True)
            self.lib.llama_memory_seq_rm(self.memory, 0, len(self._ids), -1)
            self._last = last
            return rows


def load_runtime(path: str | os.PathLike[str], **kwargs: Any) -> LlamaCppRuntime:
    """Load ``path`` into a new :class:`LlamaCppRuntime` (``n_ctx``, ``n_threads``, ``n_batch``)."""
    return LlamaCppRuntime(path, **kwargs)


class GGUFTokenizer:
    """The tokenizer side of a GGUF file, shaped like the parts of a transformers tokenizer we use.

    It renders chat templates (the file's ``tokenizer.chat_template``) with the same sandboxed
    Jinja environment transformers uses, and exposes the vocabulary for the check that two
    precisions share one tokenizer.
    """

    def __init__(self, runtime: LlamaCppRuntime) -> None:
        self.runtime = runtime
        metadata = runtime.llama.metadata or {}
        self.chat_template: str | None = metadata.get("tokenizer.chat_template") or None
        self.eos_token = runtime.token_text(int(runtime.llama.token_eos()))
        bos = int(runtime.llama.token_bos())
        self.bos_token = runtime.token_text(bos) if bos >= 0 else ""
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

    _load_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_gguf(
        cls, path: str | os.PathLike[str], *, n_ctx: int = 4096, n_threads: int | None = None, **kwargs: Any
    ) -> LlamaCppChatModel:
        """Load the GGUF file at ``path`` and wrap it."""
        runtime = load_runtime(path, n_ctx=n_ctx, n_threads=n_threads)
        kwargs.setdefault("model_name", Path(path).stem)
        return cls(runtime=runtime, model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, **kwargs)

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
                    self.runtime = load_runtime(self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads)
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
