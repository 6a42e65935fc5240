"""Candidate scoring on llama.cpp: :class:`~precision_router.models.scoring.ActionScorer`'s contract on a GGUF runtime.

The prompt is evaluated once into the KV cache (and kept between calls: the next step of a
conversation evaluates only the tokens after the longest common prefix); all candidates are then
evaluated in one llama.cpp call, each on its own sequence that shares the prompt's cache cells
(llama.cpp's sequence copy, no data copied), and the cache cut back to the prompt, so a
candidate costs its own tokens only. As in the torch scorer, every candidate ends
with the end-of-turn token, and the result is the summed (or mean) token log-likelihood.

On the same weights (a GGUF file at F32 and transformers' float32 dequantization of it) the
scores equal the torch scorer's within 1e-3 nats per candidate token (tested); on quantized
rungs llama.cpp's integer kernels quantize activations too, so they differ from a torch
dequantization by more, as any two runtimes of one quantized file do.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from precision_router.models.llamacpp import END_OF_TURN, LlamaCppRuntime

__all__ = ["LlamaCppScorer", "scorer_for"]


class LlamaCppScorer:
    """Scores candidate continuations of a prompt on a :class:`LlamaCppRuntime`.

    Args:
        runtime: the loaded GGUF file (shared with a chat model is fine: calls are serialised).
        end_token: token appended to every candidate (default: ``<|im_end|>`` if the vocabulary
            has it, else EOS); ``""`` for none.
        keep_cache: keep the prompt in the KV cache between calls (else it is re-evaluated).
    """

    def __init__(self, runtime: LlamaCppRuntime, *, end_token: str | None = None, keep_cache: bool = True) -> None:
        self.runtime = runtime
        self.keep_cache = keep_cache
        self.end_id = _end_id(runtime, end_token)
        self._lock = threading.Lock()
        self.stats = {"prefill_tokens": 0, "reused_tokens": 0, "candidate_tokens": 0}

    def reset(self) -> None:
        """Forget the cached prompt."""
        with self.runtime.lock:
            self.runtime._truncate(0)

    def score(self, prompt: str, candidates: Sequence[str], *, normalize: str = "sum") -> Any:
        """Log-likelihood of each candidate after ``prompt``: a float64 torch tensor of ``len(candidates)``."""
        import torch

        if not candidates:
            return torch.zeros(0, dtype=torch.float64)
        runtime = self.runtime
        with self._lock, runtime.lock:
            if not self.keep_cache:
                runtime._truncate(0)
            ids = runtime.encode(prompt)
            if not ids:
                msg = "the prompt is empty; scoring needs at least one prompt token"
                raise ValueError(msg)
            before = dict(runtime.stats)
            first = _log_softmax(runtime.logits_after(ids))
            cands = []
            for text in candidates:
                cand = runtime.encode(text) if text else []
                if self.end_id is not None:
                    cand.append(self.end_id)
                if not cand:
                    msg = "an empty candidate has no tokens to score; pass end_token or drop empty candidates"
                    raise ValueError(msg)
                cands.append(cand)
            branches = runtime.branch_logits(ids, [cand[:-1] for cand in cands])
            scores = np.empty(len(cands), dtype=np.float64)
            for i, (cand, logits) in enumerate(zip(cands, branches, strict=True)):
                value = float(first[cand[0]])
                if len(cand) > 1:
                    value += float(_log_softmax(logits)[np.arange(len(cand) - 1), cand[1:]].sum())
                self.stats["candidate_tokens"] += len(cand)
                scores[i] = value / len(cand) if normalize == "mean" else value
            self.stats["reused_tokens"] += runtime.stats["reused_tokens"] - before["reused_tokens"]
            self.stats["prefill_tokens"] += max(
                runtime.stats["evaluated_tokens"] - before["evaluated_tokens"] - self.stats["candidate_tokens"], 0
            )
            return torch.from_numpy(scores)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    top = values.max(axis=-1, keepdims=True)
    return values - top - np.log(np.exp(values - top).sum(axis=-1, keepdims=True))


def _end_id(runtime: LlamaCppRuntime, end_token: str | None) -> int | None:
    if end_token == "":
        return None
    if end_token is None:
        end = runtime.special_id(END_OF_TURN)
        return end if end is not None else runtime.eos_id
    token = runtime.special_id(end_token)
    if token is None:
        msg = f"end token {end_token!r} is not a single token of this vocabulary; pass end_token=... or ''"
        raise ValueError(msg)
    return token


def scorer_for(chat: Any, **kwargs: Any) -> Any:
    """The action scorer of a local chat model: llama.cpp's for a GGUF model, torch's otherwise.

    Raises:
        TypeError: ``chat`` is neither a :class:`LlamaCppChatModel` nor a model with ``hf_model``.
    """
    if hasattr(chat, "action_scorer"):
        return chat.action_scorer(**kwargs)
    if getattr(chat, "hf_model", None) is None:
        msg = f"scoring needs a local model (LocalChatModel or LlamaCppChatModel), not {type(chat).__name__}"
        raise TypeError(msg)
    from precision_router.models.scoring import ActionScorer

    return ActionScorer(chat.hf_model, chat.tokenizer, **kwargs)
