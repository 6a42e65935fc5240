"""``RoutedChatModel``: one LangChain chat model over a high- and a low-precision model."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import AliasChoices, ConfigDict, Field, PrivateAttr, model_validator

from precision_router.conversation import (
    ConversationTracker,
    conversation_id_from_config,
    display_name,
    split_conversation,
)
from precision_router.routing.base import RouteDecision, Router
from precision_router.traces.schema import Episode
from precision_router.traces.store import TraceStore

__all__ = ["RoutedChatModel", "bound_tool_names", "check_routing_setup", "escalation_reason", "output_problem"]

logger = logging.getLogger(__name__)

_CONVERSATION_KWARG = "conversation_id"
_CHILD_TAGS = ["nostream", "precision_router:delegate"]


def output_problem(message: AIMessage, tool_names: Sequence[str] = (), tool_choice: Any = None) -> str | None:
    """Why ``message`` cannot be used as an agent step, or ``None`` if it can.

    Problems: a tool call that did not parse, a call to a tool that was not bound, or no call
    at all when ``tool_choice`` required one.
    """
    if message.invalid_tool_calls:
        bad = message.invalid_tool_calls[0]
        return f"invalid tool call {bad.get('name')!r}: {bad.get('error')}"
    if tool_names:
        unknown = [c["name"] for c in message.tool_calls if c["name"] not in tool_names]
        if unknown:
            return f"call to unknown tool {unknown[0]!r}"
    required = tool_choice not in (None, "auto", "none", False)
    if required and not message.tool_calls:
        return "no tool call although tool_choice required one"
    return None


def escalation_reason(
    message: AIMessage,
    tool_names: Sequence[str] = (),
    tool_choice: Any = None,
    output_validator: Callable[[AIMessage], str | None] | None = None,
) -> str | None:
    """Why a low-precision reply must be retried on the high model, or ``None`` to keep it.

    The one escalation rule of every entry point: :func:`output_problem`, then the user's
    ``output_validator``.
    """
    reason = output_problem(message, tool_names, tool_choice)
    if reason is None and output_validator is not None:
        reason = output_validator(message)
    return reason or None


def bound_tool_names(tools: Sequence[Any]) -> list[str]:
    """Names of the client-side tools in ``tools`` (``BaseTool``, functions, schemas, OpenAI dicts).

    Returns an empty list, which turns the unknown-tool check of :func:`output_problem` off,
    when a tool has no client-side name (a provider built-in tool such as web search).
    """
    names = []
    for tool in tools:
        if isinstance(tool, BaseTool):
            names.append(tool.name)
            continue
        try:
            names.append(convert_to_openai_tool(tool)["function"]["name"])
        except (KeyError, TypeError, ValueError):
            return []
    return names


def check_routing_setup(high: Any, low: Any, router: Any, trace_store: Any = None) -> None:
    """Refuse a router, trace store or model pair that cannot work together.

    Raises:
        TypeError: ``router`` is not a :class:`~precision_router.routing.Router` or
            ``trace_store`` is not a :class:`~precision_router.traces.TraceStore`.
        InvalidArgumentError: ``high`` and ``low`` are the same object.
        TokenizerMismatchError: ``high`` and ``low`` are local models with different tokenizers.
    """
    if not isinstance(router, Router):
        msg = f"router must have a name and decide(state) -> RouteDecision, got {type(router).__name__}"
        raise TypeError(msg)
    if trace_store is not None and not isinstance(trace_store, TraceStore):
        msg = f"trace_store must be a TraceStore (e.g. JsonlTraceStore), got {type(trace_store).__name__}"
        raise TypeError(msg)
    if high is not None and high is low:
        from precision_router.errors import InvalidArgumentError

        msg = "high and low are the same model object: pass the low-precision copy as low (load_precision_pair)"
        raise InvalidArgumentError(msg)
    high_tok, low_tok = getattr(high, "tokenizer", None), getattr(low, "tokenizer", None)
    if high_tok is not None and low_tok is not None:
        from precision_router.models.pair import check_same_tokenizer

        check_same_tokenizer(high_tok, low_tok, getattr(high, "hf_model", None), getattr(low, "hf_model", None))


@dataclass
class _Call:
    """One routed call in flight."""

    conversation_id: str
    decision: RouteDecision
    task: str
    observation: str
    model: Any
    high: Any
    tool_names: list[str]
    tool_choice: Any
    kwargs: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)


class RoutedChatModel(BaseChatModel):
    """A chat model that sends each call to ``high`` or ``low`` as ``router`` decides.

    Drop it in wherever a chat model goes (``create_agent(model=...)``, a LangGraph node, a
    chain). Before every call the router sees the conversation so far; the chosen model
    answers; the reply carries ``response_metadata["precision_router"] = {"route", "p_high",
    "policy", "router_version", "latency_ms", "escalated", "model"}`` and the chosen model's
    ``usage_metadata``. Tools bound with :meth:`bind_tools` are forwarded to whichever model is
    chosen. Conversations are keyed by the run config's ``thread_id`` (LangGraph) or
    ``session_id``; each has its own routing state and open trace episode, closed by
    :meth:`end_episode`.

    When the low model's reply cannot be used (a tool call that does not parse, an unknown
    tool, or ``output_validator`` returns a reason), the step is retried on ``high`` when
    ``escalate_on_parse_error`` is on; the metadata and the trace say so.

    Example:
        .. code-block:: python

            from precision_router import RandomRouter, RoutedChatModel, load_precision_pair

            high, low = load_precision_pair("smollm2-135m-instruct", low="gptq-3bit")
            model = RoutedChatModel(high, low, RandomRouter(0.3, seed=0))
            reply = model.invoke("Say hi.", config={"configurable": {"thread_id": "t1"}})
            print(reply.response_metadata["precision_router"]["route"])
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    high: BaseChatModel
    """The high-precision model."""
    low: BaseChatModel
    """The low-precision (cheap) model."""
    router: Any
    """The routing policy (any :class:`~precision_router.routing.Router`)."""
    trace_store: Any = None
    """Where finished episodes are written (a :class:`~precision_router.traces.TraceStore`)."""
    escalate_on_parse_error: bool = True
    """Retry a step on ``high`` when the low model's reply is unusable."""
    output_validator: Callable[[AIMessage], str | None] | None = None
    """Extra check of a low-precision reply: return a reason to escalate, or ``None``."""
    trace_delegate_runs: bool = False
    """Report the chosen model's call to callbacks (LangSmith) as a child run of the routed call.
    Off by default: a routed call is one chat-model run whose metadata names the model that answered."""
    model_name: str = Field(default="precision-router", validation_alias=AliasChoices("model_name", "model"))
    """Name reported to LangSmith."""

    _tracker: ConversationTracker = PrivateAttr()

    def __init__(self, high: Any = None, low: Any = None, router: Any = None, /, **data: Any) -> None:
        for key, value in (("high", high), ("low", low), ("router", router)):
            if value is not None:
                data[key] = value
        super().__init__(**data)

    @model_validator(mode="after")
    def _check(self) -> RoutedChatModel:
        check_routing_setup(self.high, self.low, self.router, self.trace_store)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Create the conversation tracker."""
        super().model_post_init(context)
        self._tracker = ConversationTracker(self.router, self.trace_store)

    # -- public API --------------------------------------------------------------------------
    @property
    def tracker(self) -> ConversationTracker:
        """The per-conversation routing state and episode recorder."""
        return self._tracker

    def end_episode(
        self,
        thread_id: str = "default",
        *,
        success: bool | None = None,
        reward: float | None = None,
        info: dict[str, Any] | None = None,
    ) -> Episode | None:
        """Close the conversation's episode, write it to ``trace_store`` and return it."""
        return self._tracker.end_episode(thread_id, success=success, reward=reward, info=info)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; each call forwards them to the model the router picks."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # -- conversation key: taken from the run config on the way in ----------------------------
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Invoke with the conversation key taken from ``config``."""
        config = ensure_config(config)
        kwargs.setdefault(_CONVERSATION_KWARG, conversation_id_from_config(config))
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Async :meth:`invoke`."""
        config = ensure_config(config)
        kwargs.setdefault(_CONVERSATION_KWARG, conversation_id_from_config(config))
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Stream with the conversation key taken from ``config``."""
        config = ensure_config(config)
        kwargs.setdefault(_CONVERSATION_KWARG, conversation_id_from_config(config))
        return super().stream(input, config, stop=stop, **kwargs)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Async :meth:`stream`."""
        config = ensure_config(config)
        kwargs.setdefault(_CONVERSATION_KWARG, conversation_id_from_config(config))
        return super().astream(input, config, stop=stop, **kwargs)

    # -- LangChain plumbing ------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "precision-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "policy": self._tracker.policy_name}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="precision-router", ls_model_name=kwargs.get("model", self.model_name), ls_model_type="chat"
        )
        if stop:
            params["ls_stop"] = stop
        return params

    # -- routing -----------------------------------------------------------------------------
    def _begin(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> _Call:
        conversation_id = str(kwargs.pop(_CONVERSATION_KWARG, None) or conversation_id_from_config(ensure_config()))
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        task, history, observation = split_conversation(messages)
        decision = self._tracker.decide(conversation_id, task, history)
        high: Runnable[Any, Any] = self.high
        low: Runnable[Any, Any] = self.low
        if tools:
            choice = {"tool_choice": tool_choice} if tool_choice is not None else {}
            high = self.high.bind_tools(tools, **choice)
            low = self.low.bind_tools(tools, **choice)
        return _Call(
            conversation_id=conversation_id,
            decision=decision,
            task=task,
            observation=observation,
            model=high if decision.route == "high" else low,
            high=high,
            tool_names=bound_tool_names(tools),
            tool_choice=tool_choice,
            kwargs=kwargs,
        )

    def _problem(self, call: _Call, message: AIMessage) -> str | None:
        if call.decision.route != "low" or not self.escalate_on_parse_error:
            return None
        reason = escalation_reason(message, call.tool_names, call.tool_choice, self.output_validator)
        if reason:
            logger.info("escalating step of %s to high: %s", call.conversation_id, reason)
        return reason

    def _finish(self, call: _Call, message: AIMessage, escalation: str | None) -> dict[str, Any]:
        """Record the step and return the ``precision_router`` metadata for the reply."""
        return self._tracker.record_reply(
            call.conversation_id,
            call.decision,
            message,
            task=call.task,
            observation=call.observation,
            model=display_name(self.high if escalation or call.decision.route == "high" else self.low),
            latency_ms=(time.perf_counter() - call.started) * 1000,
            escalation=escalation,
        )

    def _child_config(
        self, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
    ) -> RunnableConfig:
        """Config of the delegate call.

        By default the delegate is invisible to callbacks (``callbacks=[]`` also shields it from
        the ambient LangGraph config): one model call is one chat-model run, whose metadata names
        the model that answered. With ``trace_delegate_runs`` it is a child run of this one.
        Either way it is hidden from LangGraph's token streaming (this run streams the tokens).
        """
        if run_manager is None or not self.trace_delegate_runs:
            return RunnableConfig(callbacks=[], tags=list(_CHILD_TAGS))
        manager_cls = (
            AsyncCallbackManager if isinstance(run_manager, AsyncCallbackManagerForLLMRun) else CallbackManager
        )
        manager = manager_cls(handlers=[], parent_run_id=run_manager.run_id)
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(run_manager.inheritable_metadata)
        return RunnableConfig(callbacks=manager, tags=list(_CHILD_TAGS))

    # -- sync --------------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        message = call.model.invoke(messages, config, stop=stop, **call.kwargs)
        escalation = self._problem(call, message)
        if escalation:
            message = call.high.invoke(messages, config, stop=stop, **call.kwargs)
        return _result(message, self._finish(call, message, escalation))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        buffer = (
            call.decision.route == "low"
            and self.escalate_on_parse_error
            and bool(call.tool_names or self.output_validator)
        )
        chunks: list[AIMessageChunk] = []
        for chunk in call.model.stream(messages, config, stop=stop, **call.kwargs):
            chunks.append(chunk)
            if not buffer:
                yield _emit(chunk, run_manager)
        escalation = self._problem(call, _merge(chunks))
        if escalation:
            chunks = []
            for chunk in call.high.stream(messages, config, stop=stop, **call.kwargs):
                chunks.append(chunk)
                yield _emit(chunk, run_manager)
        elif buffer:
            for chunk in chunks:
                yield _emit(chunk, run_manager)
        yield _last_chunk(self._finish(call, _merge(chunks), escalation))

    # -- async -------------------------------------------------------------------------------
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        message = await call.model.ainvoke(messages, config, stop=stop, **call.kwargs)
        escalation = self._problem(call, message)
        if escalation:
            message = await call.high.ainvoke(messages, config, stop=stop, **call.kwargs)
        return _result(message, self._finish(call, message, escalation))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        call = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        buffer = (
            call.decision.route == "low"
            and self.escalate_on_parse_error
            and bool(call.tool_names or self.output_validator)
        )
        chunks: list[AIMessageChunk] = []
        async for chunk in call.model.astream(messages, config, stop=stop, **call.kwargs):
            chunks.append(chunk)
            if not buffer:
                yield await _aemit(chunk, run_manager)
        escalation = self._problem(call, _merge(chunks))
        if escalation:
            chunks = []
            async for chunk in call.high.astream(messages, config, stop=stop, **call.kwargs):
                chunks.append(chunk)
                yield await _aemit(chunk, run_manager)
        elif buffer:
            for chunk in chunks:
                yield await _aemit(chunk, run_manager)
        yield _last_chunk(self._finish(call, _merge(chunks), escalation))


# -- helpers ---------------------------------------------------------------------------------


def _result(message: AIMessage, meta: dict[str, Any]) -> ChatResult:
    message.response_metadata = {**message.response_metadata, "precision_router": meta}
    return ChatResult(generations=[ChatGeneration(message=message)])


def _merge(chunks: list[AIMessageChunk]) -> AIMessage:
    if not chunks:
        return AIMessage(content="")
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    return message_chunk_to_message(merged)  # type: ignore[return-value]


def _emit(chunk: AIMessageChunk, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
    out = ChatGenerationChunk(message=chunk.model_copy(update={"chunk_position": None}))
    if run_manager and isinstance(chunk.content, str) and chunk.content:
        run_manager.on_llm_new_token(chunk.content, chunk=out)
    return out


async def _aemit(chunk: AIMessageChunk, run_manager: AsyncCallbackManagerForLLMRun | None) -> ChatGenerationChunk:
    out = ChatGenerationChunk(message=chunk.model_copy(update={"chunk_position": None}))
    if run_manager and isinstance(chunk.content, str) and chunk.content:
        await run_manager.on_llm_new_token(chunk.content, chunk=out)
    return out


def _last_chunk(meta: dict[str, Any]) -> ChatGenerationChunk:
    return ChatGenerationChunk(
        message=AIMessageChunk(content="", response_metadata={"precision_router": meta}, chunk_position="last")
    )
