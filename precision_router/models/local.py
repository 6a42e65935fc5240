"""``LocalChatModel``: a LangChain chat model over a local transformers causal LM."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk, message_chunk_to_message
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr

from precision_router.models.loading import forward_with_cache
from precision_router.models.tools import (
    TOOL_CALL_CLOSE,
    drop_undeclared_arguments,
    forced_prefix,
    guided_prefix,
    parse_tool_calls,
    render_tool_call,
    tools_system_prompt,
)
from precision_router.text import scrub, scrub_surrogates

__all__ = ["CHATML_TEMPLATE", "LocalChatModel"]

logger = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Template used for tokenizers that ship none."""

_DEFAULT_MAX_TOKENS = 512


class LocalChatModel(BaseChatModel):
    """A chat model that runs a transformers causal LM in this process.

    Messages are rendered with the tokenizer's chat template. Bound tools go to the template
    when it supports them; otherwise (SmolLM2's template has no tool support) their schemas
    are written into the system message in the Hermes style, and the model is asked to answer
    with ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks, which are parsed
    into ``AIMessage.tool_calls`` (unparsable blocks go to ``invalid_tool_calls``). With
    ``tool_choice="any"`` or a tool name, the assistant turn is started with the opening of a
    tool call, so even a small model answers in the right form.

    Construct it around a loaded model (``LocalChatModel(hf_model=..., tokenizer=...)``), from a
    source with :meth:`from_pretrained`, or lazily with ``model_path=`` (loaded on first call).

    Example:
        .. code-block:: python

            from precision_router import LocalChatModel

            chat = LocalChatModel.from_pretrained("smollm2-135m-instruct", max_tokens=32)
            print(chat.invoke("Name a fruit.").content)
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = Field(default="local", validation_alias=AliasChoices("model_name", "model"))
    """Display name, reported as ``ls_model_name`` and in response metadata."""
    model_path: str | None = None
    """Source to load lazily when ``hf_model`` is not given (preset, folder, GGUF file, hub id)."""
    hf_model: Any = Field(default=None, exclude=True)
    """The transformers ``PreTrainedModel``."""
    tokenizer: Any = Field(default=None, exclude=True)
    """The matching tokenizer (with a chat template, or ChatML is assumed)."""
    dtype: str = "float32"
    """Dtype used when loading lazily from ``model_path``."""
    device: str | None = None
    """Device used when loading lazily (default: where the model is)."""
    temperature: float = 0.0
    """0 decodes greedily; above 0 samples."""
    top_p: float | None = None
    """Nucleus sampling mass (only when sampling)."""
    max_tokens: int | None = _DEFAULT_MAX_TOKENS
    """Most new tokens per call."""
    stop: list[str] | None = None
    """Default stop strings (the call's ``stop`` adds to them)."""
    seed: int | None = None
    """Seed for sampling (set per call for reproducible samples)."""
    streaming: bool = False
    """Kept for LangChain compatibility: ``invoke`` streams internally when true."""
    guided_tool_calls: bool = True
    """When a call is forced (``tool_choice`` any / required / a name), choose the tool by its
    likelihood among the bound names and open its arguments in the prompt, so that even a small
    model answers with a well-formed call; and keep only the arguments a tool declares (small
    models tend to copy schema keys such as ``"type"`` into their arguments)."""
    tool_format: Literal["auto", "template", "hermes"] = "auto"
    """How bound tools reach the prompt: the template's ``tools=`` argument, Hermes text in the
    system message, or ``auto`` (the template when it mentions tools, Hermes otherwise)."""

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, source: str, *, dtype: str = "float32", device: str | None = None, **kwargs: Any
    ) -> LocalChatModel:
        """Load ``source`` (preset name, HF folder, ``.gguf`` file or hub id) and wrap it."""
        from precision_router.models.loading import load_causal_lm

        loaded = load_causal_lm(source, dtype=dtype, device=device)
        kwargs.setdefault("model_name", loaded.name)
        return cls(hf_model=loaded.model, tokenizer=loaded.tokenizer, model_path=loaded.path, dtype=dtype, **kwargs)

    def ensure_loaded(self) -> None:
        """Load ``model_path`` if no model was given."""
        if self.hf_model is not None and self.tokenizer is not None:
            return
        with self._lock:
            if self.hf_model is None:
                if not self.model_path:
                    msg = "LocalChatModel needs hf_model= (and tokenizer=) or model_path="
                    raise ValueError(msg)
                from precision_router.models.loading import load_causal_lm

                loaded = load_causal_lm(self.model_path, dtype=self.dtype, device=self.device, tokenizer=self.tokenizer)
                self.hf_model, self.tokenizer = loaded.model, loaded.tokenizer

    # -- LangChain plumbing ------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "precision-router-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="local",
            ls_model_name=kwargs.get("model", self.model_name),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        if (max_tokens := kwargs.get("max_tokens", self.max_tokens)) is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (any format LangChain converts to OpenAI schemas) and an optional choice.

        ``tool_choice``: ``"auto"`` / ``None``, ``"any"`` / ``"required"`` / ``True`` (must call
        one), or a tool name (must call that one).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        choice = _normalise_tool_choice(tool_choice)
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    # -- prompt ---------------------------------------------------------------------------------
    def _template_takes_tools(self) -> bool:
        template = getattr(self.tokenizer, "chat_template", None) or ""
        if self.tool_format == "template":
            return True
        if self.tool_format == "hermes":
            return False
        return "tools" in template

    def render(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        *,
        add_generation_prompt: bool = True,
    ) -> str:
        """The exact prompt text for ``messages`` (including any forced tool-call prefix).

        Lone surrogates in the messages are replaced by U+FFFD (:mod:`precision_router.text`):
        a tokenizer cannot encode them.
        """
        self.ensure_loaded()
        native = bool(tools) and self._template_takes_tools()
        turns = _chat_turns(messages, hermes=not native)
        if tools and not native:
            extra = tools_system_prompt(tools, tool_choice)
            if turns and turns[0]["role"] == "system":
                turns[0] = {"role": "system", "content": f"{turns[0]['content']}\n\n{extra}"}
            else:
                turns.insert(0, {"role": "system", "content": extra})
        template_kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
        if not getattr(self.tokenizer, "chat_template", None):
            template_kwargs["chat_template"] = CHATML_TEMPLATE
        if native:
            template_kwargs["tools"] = list(tools or [])
        text = self.tokenizer.apply_chat_template(scrub(turns), **template_kwargs)
        if tools and add_generation_prompt:
            text += forced_prefix(tool_choice)
        return scrub_surrogates(str(text))

    # -- generation -----------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = list(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))
            merged = chunks[0]
            for chunk in chunks[1:]:
                merged += chunk
            message = message_chunk_to_message(merged.message)
            return ChatResult(generations=[ChatGeneration(message=message)])
        prompt, pieces, state = self._start(messages, stop, kwargs)
        text = prompt.prefix + "".join(pieces)
        message = self._final_message(text, state, prompt.tools)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt, pieces, state = self._start(messages, stop, kwargs)
        if prompt.tools:
            # Tool calls are only known once complete: emit the parsed message as one chunk.
            text = prompt.prefix + "".join(pieces)
            final = self._final_message(text, state, prompt.tools)
            yield ChatGenerationChunk(message=_message_to_last_chunk(final))
            return
        for piece in pieces:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=state.usage(),
                response_metadata=state.response_metadata(self.model_name),
                chunk_position="last",
            )
        )

    def _start(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[_Prompt, Iterator[str], _DecodeState]:
        self.ensure_loaded()
        tools = kwargs.get("tools") or []
        tool_choice = kwargs.get("tool_choice")
        if tool_choice in {"any", "required"} and len(tools) == 1:
            tool_choice = tools[0]["function"]["name"]  # one tool to call: force its name too
        text = self.render(messages, tools, tool_choice)
        prefix = forced_prefix(tool_choice) if tools else ""
        stops = [s for s in [*(self.stop or []), *(stop or [])] if s]
        if prefix and self.guided_tool_calls:
            base = text[: len(text) - len(prefix)]
            name = self._choose_tool(base, tools, tool_choice)
            schema = next(t["function"] for t in tools if t["function"]["name"] == name)
            prefix = guided_prefix(name, schema)
            text = base + prefix
            stops += [TOOL_CALL_CLOSE, "\n"]  # a guided call is one line of JSON
        state = _DecodeState()
        pieces = self._decode(
            text,
            stops,
            state,
            max_new_tokens=kwargs.get("max_tokens", self.max_tokens) or _DEFAULT_MAX_TOKENS,
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            seed=kwargs.get("seed", self.seed),
        )
        return _Prompt(text, prefix, tools), pieces, state

    def _choose_tool(self, base: str, tools: Sequence[dict[str, Any]], tool_choice: str | None) -> str:
        """The forced tool, or the bound tool name the model finds most likely after ``base``."""
        names = [t["function"]["name"] for t in tools]
        if tool_choice in names:
            return str(tool_choice)
        from precision_router.models.scoring import ActionScorer

        scorer = ActionScorer(self.hf_model, self.tokenizer, end_token="", keep_cache=False)
        with self._lock:
            scores = scorer.score(base + forced_prefix("any"), [f'{n}"' for n in names])
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
        """Yield decoded text pieces, honouring end-of-turn tokens, stop strings and the budget.

        A short explicit loop (rather than ``generate`` + a streamer thread) so that stop strings
        are cut exactly even while streaming, with no background thread to leak.
        """
        import torch
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        model, tokenizer = self.hf_model, self.tokenizer
        device = next(model.parameters()).device
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids.to(device)
        state.input_tokens = int(ids.shape[1])
        eos = _eos_ids(model, tokenizer)
        sample = temperature is not None and temperature > 0
        warpers = LogitsProcessorList()
        if sample:
            warpers.append(TemperatureLogitsWarper(float(temperature)))
            if top_p is not None and top_p < 1.0:
                warpers.append(TopPLogitsWarper(float(top_p)))
        generator = torch.Generator(device=device)
        if seed is not None:
            generator.manual_seed(int(seed))
        else:
            generator.seed()
        scanner = _StopScanner(stops)
        generated: list[int] = []
        emitted_text = ""
        # Inference mode and the model lock are taken per decoding step, never across a yield: the
        # consumer may resume this generator on another thread (LangChain's default async stream).
        past = None
        step_input = ids
        for _ in range(max_new_tokens):
            with self._lock, torch.inference_mode():
                out, past = forward_with_cache(model, past, input_ids=step_input)
                logits = out.logits[:, -1, :].float()
                if sample:
                    probs = torch.softmax(warpers(step_input, logits), dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                else:
                    token = int(logits.argmax(dim=-1))
            if token in eos:
                state.finish_reason = "stop"
                break
            generated.append(token)
            state.output_tokens = len(generated)
            step_input = torch.tensor([[token]], device=device)
            text = tokenizer.decode(generated, skip_special_tokens=True)
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

    def _final_message(self, text: str, state: _DecodeState, tools: Sequence[dict[str, Any]]) -> AIMessage:
        content, calls, invalid = parse_tool_calls(text) if tools else (text, [], [])
        if calls and self.guided_tool_calls:
            calls = [drop_undeclared_arguments(call, tools) for call in calls]
        if calls:
            state.finish_reason = "tool_calls"
        return AIMessage(
            content=content,
            tool_calls=calls,
            invalid_tool_calls=invalid,
            usage_metadata=state.usage(),
            response_metadata=state.response_metadata(self.model_name),
        )


# -- helpers ---------------------------------------------------------------------------------


class _Prompt:
    __slots__ = ("prefix", "text", "tools")

    def __init__(self, text: str, prefix: str, tools: list[dict[str, Any]]) -> None:
        self.text, self.prefix, self.tools = text, prefix, tools


class _DecodeState:
    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.finish_reason = "stop"

    def usage(self) -> UsageMetadata:
        return UsageMetadata(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            total_tokens=self.input_tokens + self.output_tokens,
        )

    def response_metadata(self, model_name: str) -> dict[str, Any]:
        return {"model_name": model_name, "finish_reason": self.finish_reason, "model_provider": "local"}


class _StopScanner:
    """Cuts streamed text at the first stop string, holding back a possible partial match."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        self.held = ""
        self.hold = max((len(s) for s in self.stops), default=1) - 1

    def feed(self, piece: str) -> tuple[str, bool]:
        buffer = self.held + piece
        cut = min((i for s in self.stops if (i := buffer.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.held = ""
            return buffer[:cut], True
        keep = self.hold if self.stops else 0
        emit_upto = max(len(buffer) - keep, 0)
        self.held = buffer[emit_upto:]
        return buffer[:emit_upto], False

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if isinstance(end_of_turn, int):
        ids.add(end_of_turn)
    return ids


def _normalise_tool_choice(choice: str | bool | dict[str, Any] | None) -> str | None:
    if choice is None or choice is False:
        return None
    if choice is True:
        return "any"
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name") or choice.get("name") or "any")
    return str(choice)


def _chat_turns(messages: Sequence[BaseMessage], *, hermes: bool) -> list[dict[str, Any]]:
    """LangChain messages -> chat-template dicts (Hermes-style tool turns when ``hermes``)."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "chat": "user"}
    turns: list[dict[str, Any]] = []
    for message in messages:
        text = message.text if isinstance(message.text, str) else message.text()  # type: ignore[operator]
        role = roles.get(message.type, "user")
        if message.type == "ai" and getattr(message, "tool_calls", None):
            if hermes:
                blocks = [render_tool_call(c["name"], c["args"]) for c in message.tool_calls]  # type: ignore[attr-defined]
                turns.append({"role": "assistant", "content": "\n".join([t for t in [text] if t] + blocks)})
            else:
                turns.append(
                    {
                        "role": "assistant",
                        "content": text,
                        "tool_calls": [
                            {
                                "type": "function",
                                "id": c.get("id"),
                                "function": {"name": c["name"], "arguments": c["args"]},
                            }
                            for c in message.tool_calls  # type: ignore[attr-defined]
                        ],
                    }
                )
            continue
        if message.type == "tool" and hermes:
            block = f"<tool_response>\n{text}\n</tool_response>"
            if turns and turns[-1]["role"] == "user" and turns[-1].get("_tool"):
                turns[-1]["content"] += "\n" + block
            else:
                turns.append({"role": "user", "content": block, "_tool": True})
            continue
        turns.append({"role": role, "content": text})
    for turn in turns:
        turn.pop("_tool", None)
    return turns


def _message_to_last_chunk(message: AIMessage) -> AIMessageChunk:
    chunks = [
        ToolCallChunk(name=c["name"], args=_json(c["args"]), id=c["id"], index=i, type="tool_call_chunk")
        for i, c in enumerate(message.tool_calls)
    ]
    chunks += [
        ToolCallChunk(
            name=c.get("name"), args=c.get("args"), id=c.get("id"), index=len(chunks) + i, type="tool_call_chunk"
        )
        for i, c in enumerate(message.invalid_tool_calls)
    ]
    return AIMessageChunk(
        content=message.content,
        tool_call_chunks=chunks,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        chunk_position="last",
    )


def _json(args: Any) -> str:
    import json

    return json.dumps(args, ensure_ascii=False)
