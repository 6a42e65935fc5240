"""Action distributions: each candidate action's log-likelihood under a causal LM.

For an action space given as a list of candidate strings (ALFWorld's admissible commands), a
model's distribution over actions is the softmax of each candidate's summed token
log-likelihood given the prompt. :class:`ActionScorer` computes it in one packed pass:

1. the prompt is prefilled once, and its KV cache is kept between calls, so the next step of a
   conversation only runs the tokens that follow the longest common token prefix;
2. all candidates are concatenated into one sequence scored with a 4-D attention mask in which
   every candidate token sees the prompt and the earlier tokens of its own candidate only, with
   positions restarting at the prompt length for each candidate.

Every candidate ends with an end token (the chat end-of-turn token by default) so that
``"cabinet 1"`` is not scored as a prefix of ``"cabinet 10"``. :func:`score_naive` is the
one-forward-per-candidate reference used in tests and benchmarks.

For free-form agents with no candidate list, :func:`next_token_kl` compares the two models'
next-token distributions at the first position of the action.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

import torch

from precision_router.models.loading import forward_with_cache
from precision_router.text import scrub_surrogates

__all__ = [
    "ActionScorer",
    "action_log_probs",
    "kl_divergence",
    "next_token_kl",
    "score_naive",
]

logger = logging.getLogger(__name__)

Normalisation = Literal["sum", "mean"]


def _end_token_id(tokenizer: Any, end_token: str | None) -> int | None:
    if end_token is None:
        end_token = "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token
    if end_token == "":
        return None
    token_id = tokenizer.convert_tokens_to_ids(end_token)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        msg = f"end token {end_token!r} is not a single token of this tokenizer; pass end_token=... or ''"
        raise ValueError(msg)
    return token_id


def _candidate_ids(tokenizer: Any, candidates: Sequence[str], end_id: int | None) -> list[list[int]]:
    out = []
    for text in candidates:
        ids = list(tokenizer(scrub_surrogates(text), add_special_tokens=False).input_ids)
        if end_id is not None:
            ids.append(end_id)
        if not ids:
            msg = "an empty candidate has no tokens to score; pass end_token or drop empty candidates"
            raise ValueError(msg)
        out.append(ids)
    return out


class ActionScorer:
    """Scores candidate continuations of a prompt with one model, keeping the prompt's KV cache.

    Not safe to share between threads scoring different conversations at once (calls are
    serialised by a lock); use one scorer per model per conversation stream, or call
    :meth:`reset` between conversations (a changed prompt only costs the differing suffix).

    Args:
        model: a transformers causal LM (eval mode).
        tokenizer: its tokenizer.
        end_token: token appended to every candidate (default: ``<|im_end|>`` if the vocabulary
            has it, else the EOS token); ``""`` for none.
        keep_cache: reuse the prompt's KV cache across calls.
    """

    def __init__(self, model: Any, tokenizer: Any, *, end_token: str | None = None, keep_cache: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.end_id = _end_token_id(tokenizer, end_token)
        self.keep_cache = keep_cache
        self._ids: list[int] = []
        self._cache: Any = None
        self._last_logits: torch.Tensor | None = None
        self._lock = threading.Lock()
        self.stats = {"prefill_tokens": 0, "reused_tokens": 0, "candidate_tokens": 0}

    def reset(self) -> None:
        """Forget the cached prompt."""
        with self._lock:
            self._ids, self._cache, self._last_logits = [], None, None

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def _prefill(self, ids: list[int]) -> tuple[Any, torch.Tensor]:
        """KV cache and last-position logits for ``ids``, reusing the common prefix with the last prompt."""
        from transformers import DynamicCache

        common = 0
        if self.keep_cache and self._cache is not None:
            limit = min(len(ids), len(self._ids))
            while common < limit and ids[common] == self._ids[common]:
                common += 1
        if common == len(ids) and common == len(self._ids) and self._last_logits is not None:
            self.stats["reused_tokens"] += common
            return self._cache, self._last_logits
        if common == len(ids):
            common -= 1  # recompute the last prompt token to get its logits
        if common > 0:
            cache = self._cache
            cache.crop(-(cache.get_seq_length() - common)) if cache.get_seq_length() > common else None
        else:
            cache = DynamicCache(config=self.model.config)
        new = torch.tensor([ids[common:]], device=self.device)
        positions = torch.arange(common, len(ids), device=self.device)[None]
        out, cache = forward_with_cache(self.model, cache, input_ids=new, position_ids=positions)
        self.stats["prefill_tokens"] += len(ids) - common
        self.stats["reused_tokens"] += common
        return cache, out.logits[0, -1].float()

    @torch.inference_mode()
    def score(self, prompt: str, candidates: Sequence[str], *, normalize: Normalisation = "sum") -> torch.Tensor:
        """Log-likelihood of each candidate after ``prompt``: a float64 tensor of ``len(candidates)``.

        ``normalize="mean"`` divides each sum by the candidate's token count.
        """
        if not candidates:
            return torch.zeros(0, dtype=torch.float64)
        with self._lock:
            ids = list(self.tokenizer(prompt, add_special_tokens=False).input_ids)
            if not ids:
                msg = "the prompt is empty; scoring needs at least one prompt token"
                raise ValueError(msg)
            cache, last_logits = self._prefill(ids)
            prompt_len = len(ids)
            cand = _candidate_ids(self.tokenizer, candidates, self.end_id)
            flat = [t for c in cand for t in c]
            lengths = [len(c) for c in cand]
            total = len(flat)
            self.stats["candidate_tokens"] += total
            device = self.device
            positions = torch.cat([torch.arange(prompt_len, prompt_len + n) for n in lengths]).to(device)
            owner = torch.repeat_interleave(torch.arange(len(cand)), torch.tensor(lengths)).to(device)
            index = torch.arange(total, device=device)
            allowed = (owner[:, None] == owner[None, :]) & (index[:, None] >= index[None, :])
            allowed = torch.cat([torch.ones(total, prompt_len, dtype=torch.bool, device=device), allowed], dim=1)
            dtype = next(self.model.parameters()).dtype
            mask = torch.zeros(1, 1, total, prompt_len + total, dtype=dtype, device=device)
            mask.masked_fill_(~allowed[None, None], torch.finfo(dtype).min)
            out, cache = forward_with_cache(
                self.model,
                cache,
                input_ids=torch.tensor([flat], device=device),
                position_ids=positions[None],
                attention_mask=mask,
            )
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)
            first_logp = torch.log_softmax(last_logits, dim=-1)
            # restore the cache to the prompt so the next call can extend it
            cache.crop(-total)
            if self.keep_cache:
                self._ids, self._cache, self._last_logits = ids, cache, last_logits
            else:
                self._ids, self._cache, self._last_logits = [], None, None
            scores = torch.empty(len(cand), dtype=torch.float64)
            start = 0
            targets = torch.tensor(flat, device=device)
            for i, n in enumerate(lengths):
                value = first_logp[targets[start]].double()
                if n > 1:
                    rows = torch.arange(start, start + n - 1, device=device)
                    value = value + logp[rows, targets[start + 1 : start + n]].double().sum()
                scores[i] = value / n if normalize == "mean" else value
                start += n
            return scores


@torch.inference_mode()
def score_naive(
    model: Any,
    tokenizer: Any,
    prompt: str,
    candidates: Sequence[str],
    *,
    end_token: str | None = None,
    normalize: Normalisation = "sum",
) -> torch.Tensor:
    """Reference scoring: one full forward pass per candidate (slow; for tests and benchmarks)."""
    end_id = _end_token_id(tokenizer, end_token)
    ids = list(tokenizer(prompt, add_special_tokens=False).input_ids)
    device = next(model.parameters()).device
    scores = []
    for cand in _candidate_ids(tokenizer, candidates, end_id):
        full = torch.tensor([ids + cand], device=device)
        logp = torch.log_softmax(model(input_ids=full).logits[0].float(), dim=-1)
        rows = torch.arange(len(ids) - 1, len(ids) + len(cand) - 1, device=device)
        value = logp[rows, torch.tensor(cand, device=device)].double().sum()
        scores.append(value / len(cand) if normalize == "mean" else value)
    return torch.stack(scores) if scores else torch.zeros(0, dtype=torch.float64)


def action_log_probs(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log of the softmax distribution over candidates given their log-likelihoods."""
    return torch.log_softmax(scores.double() / temperature, dim=-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> float:
    """``KL(p || q)`` in nats for two log-distributions over the same support."""
    return float((log_p.exp() * (log_p - log_q)).sum().clamp(min=0.0))


@torch.inference_mode()
def next_token_kl(high_model: Any, low_model: Any, tokenizer: Any, prompt: str) -> float:
    """``KL(pi_low || pi_high)`` of the next-token distributions after ``prompt``.

    The fallback signal for free-form agents (tool calls, open text) that have no candidate
    list: the divergence at the first token of the action.
    """
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    log_high = torch.log_softmax(
        high_model(input_ids=ids.to(next(high_model.parameters()).device)).logits[0, -1].double(), -1
    )
    log_low = torch.log_softmax(
        low_model(input_ids=ids.to(next(low_model.parameters()).device)).logits[0, -1].double(), -1
    )
    return kl_divergence(log_low.cpu(), log_high.cpu())
