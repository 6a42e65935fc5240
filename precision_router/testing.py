"""Tiny stand-ins for tests and examples: a small tokenizer, random tiny models, fake tool callers.

Nothing here downloads anything: the tokenizer is trained in memory on a short built-in text
and the models are randomly initialised from a config, so tests run in seconds anywhere.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

__all__ = [
    "HashingEncoder",
    "ScriptedChatModel",
    "mean_next_token_kl",
    "tiny_causal_lm",
    "tiny_precision_ladder",
    "tiny_precision_pair",
    "tiny_tokenizer",
]

_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = """
You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2,
a countertop 1, a drawer 1, a fridge 1, a microwave 1, a shelf 1, a sinkbasin 1 and a toaster 1.
Your task is to: put a clean mug in the coffeemachine. go to countertop 1. take mug 1 from
countertop 1. clean mug 1 with sinkbasin 1. move mug 1 to coffeemachine 1. open fridge 1.
heat egg 2 with microwave 1. cool apple 3 with fridge 1. use desklamp 1. examine book 4.
Nothing happens. OK. You pick up the mug 1. think: I need to find the mug first.
<tool_call> {"name": "add", "arguments": {"a": 1, "b": 2}} </tool_call> <tool_response>
The weather in Paris is sunny. What is 2 + 2? The answer is 4. Hello, how are you today?
system user assistant tool function arguments name description parameters properties type
integer string object required 0 1 2 3 4 5 6 7 8 9 [ ] { } ( ) , . : ; " ' _ - + * / = ? !
"""


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return str(tokenizer.to_str())


def tiny_tokenizer() -> Any:
    """A ~600-token byte-level BPE tokenizer with a ChatML chat template (built in memory)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from precision_router.models.local import CHATML_TEMPLATE

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_causal_lm(
    tokenizer: Any = None, *, seed: int = 0, hidden_size: int = 64, layers: int = 2, vocab_size: int | None = None
) -> Any:
    """A randomly initialised Llama-architecture causal LM sized for unit tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init give peaked, distinct outputs
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.2)
    return model.eval()


def tiny_precision_pair(low: str = "rtn-3bit", *, seed: int = 0, **chat_kwargs: Any) -> tuple[Any, Any]:
    """``(high, low)`` :class:`~precision_router.models.LocalChatModel` s over one tiny random model.

    ``low`` is a round-to-nearest precision (``"rtn-3bit"``, ``"rtn-4bit"`` ...) applied to a
    copy of the high model.
    """
    import copy

    from precision_router.models.local import LocalChatModel
    from precision_router.models.quantize import parse_precision, rtn_quantize_

    spec = parse_precision(low)
    tokenizer = tiny_tokenizer()
    high_model = tiny_causal_lm(tokenizer, seed=seed)
    low_model = copy.deepcopy(high_model)
    if spec.method != "none":
        rtn_quantize_(low_model, spec.bits, spec.group_size)
    chat_kwargs.setdefault("max_tokens", 8)
    high = LocalChatModel(hf_model=high_model, tokenizer=tokenizer, model_name="tiny@fp32", **chat_kwargs)
    low_chat = LocalChatModel(hf_model=low_model, tokenizer=tokenizer, model_name=f"tiny@{spec.key}", **chat_kwargs)
    return high, low_chat


def tiny_precision_ladder(
    precisions: Sequence[str] = ("fp32", "rtn-4bit", "rtn-3bit"), *, seed: int = 0, **chat_kwargs: Any
) -> dict[str, Any]:
    """A precision ladder of :class:`~precision_router.models.LocalChatModel` s over one tiny random model.

    Returns ``{precision: model}``, highest precision first (pass it to ``from_ladder``); each
    rung is a round-to-nearest copy (``"fp32"``: the model itself).
    """
    import copy

    from precision_router.models.local import LocalChatModel
    from precision_router.models.quantize import parse_precision, rtn_quantize_

    tokenizer = tiny_tokenizer()
    base = tiny_causal_lm(tokenizer, seed=seed)
    chat_kwargs.setdefault("max_tokens", 8)
    ladder = {}
    for precision in precisions:
        spec = parse_precision(precision)
        model = copy.deepcopy(base)
        if spec.method != "none":
            rtn_quantize_(model, spec.bits, spec.group_size)
        ladder[precision] = LocalChatModel(
            hf_model=model, tokenizer=tokenizer, model_name=f"tiny@{spec.key}", **chat_kwargs
        )
    return ladder


KL_PROMPTS = (
    "You are in the middle of a room. Your task is to: put a clean mug in the coffeemachine.",
    "go to countertop 1. take mug 1 from countertop 1.",
    "What is 2 + 2? The answer is",
)


def mean_next_token_kl(high: Any, low: Any, tokenizer: Any, prompts: Sequence[str] = KL_PROMPTS) -> float:
    """Mean over prompts and positions of ``KL(low || high)`` between next-token distributions (nats)."""
    import torch

    values = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            log_high = torch.log_softmax(high(ids).logits.float(), -1)
            log_low = torch.log_softmax(low(ids).logits.float(), -1)
            values.append((log_low.exp() * (log_low - log_high)).sum(-1).mean().item())
    return sum(values) / len(values)


class HashingEncoder:
    """A fast deterministic stand-in for the sentence encoder: hashed, normalised word counts.

    Has the interface training and :class:`~precision_router.routing.LearnedRouter` use
    (``name``, ``dim``, ``encode(texts)``), so router tests run without loading a real encoder.
    """

    name = "test/hashing-encoder"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> Any:
        """``(len(texts), dim)`` float tensor."""
        import hashlib

        import torch

        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)

    def encode_state(self, state: Any) -> Any:
        """The router input sequence of a routing state."""
        return self.encode(state.step_texts())


class ScriptedChatModel(BaseChatModel):
    """A fake chat model that replays scripted replies and supports ``bind_tools``.

    Each reply is a string (plain text) or a dict ``{"tool": name, "args": {...}}`` (a tool
    call); ``"<invalid>"`` yields an unparsable tool call. The script cycles. Every call is
    recorded in ``calls`` (the messages it saw and the tools bound).
    """

    replies: list[Any] = Field(default_factory=lambda: ["ok"])
    model_name: str = "scripted"
    calls: list[dict[str, Any]] = Field(default_factory=list)
    usage: tuple[int, int] = (10, 2)

    def model_post_init(self, context: Any, /) -> None:
        """Start the reply cycle."""
        super().model_post_init(context)
        self._cycle: Iterator[Any] = itertools.cycle(self.replies)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Record the tools with each call."""
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    def _next_message(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.calls.append(
            {"messages": list(messages), "tools": kwargs.get("tools"), "tool_choice": kwargs.get("tool_choice")}
        )
        reply = next(self._cycle)
        usage = {"input_tokens": self.usage[0], "output_tokens": self.usage[1], "total_tokens": sum(self.usage)}
        call_id = f"call_{len(self.calls)}"
        if reply == "<invalid>":
            return AIMessage(
                content="",
                invalid_tool_calls=[
                    {"type": "invalid_tool_call", "name": None, "args": "{oops", "id": call_id, "error": "bad JSON"}
                ],
                usage_metadata=usage,  # type: ignore[arg-type]
            )
        if isinstance(reply, dict):
            return AIMessage(
                content="",
                tool_calls=[{"type": "tool_call", "name": reply["tool"], "args": reply.get("args", {}), "id": call_id}],
                usage_metadata=usage,  # type: ignore[arg-type]
                response_metadata={"model_name": self.model_name},
            )
        return AIMessage(content=str(reply), usage_metadata=usage, response_metadata={"model_name": self.model_name})  # type: ignore[arg-type]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next_message(messages, kwargs)
        words = str(message.content).split(" ") if message.content else [""]
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=word if last else word + " ",
                    tool_call_chunks=[
                        {
                            "type": "tool_call_chunk",
                            "name": c["name"],
                            "args": json.dumps(c["args"]),
                            "id": c["id"],
                            "index": j,
                        }
                        for j, c in enumerate(message.tool_calls)
                    ]
                    if last
                    else [],
                    invalid_tool_calls=message.invalid_tool_calls if last else [],
                    usage_metadata=message.usage_metadata if last else None,
                    response_metadata=message.response_metadata if last else {},
                    chunk_position="last" if last else None,
                )
            )
