"""``RoutedChatModel``: one LangChain chat model over a high- and a low-precision model."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

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

from precision_router.conversation import ConversationTracker, conversation_id_from_config
from precision_router.escalation import bound_tool_names, escalation_reason, output_problem
from precision_router.routing.ladder import TWO_RUNGS, PrecisionLadder
from precision_router.step import LadderEntryPoint, RoutedStep, check_routing_setup

__all__ = ["RoutedChatModel", "bound_tool_names", "check_routing_setup", "escalation_reason", "output_problem"]
# the escalation rule and the setup check live in `escalation` and `step`; kept importable from here

logger = logging.getLogger(__name__)

_CONVERSATION_KWARG = "conversation_id"
_CHILD_TAGS = ["nostream", "precision_router:delegate"]


F = TypeVar("F", bound=Callable[..., Any])


def _keyed(method: F) -> F:
    """``method`` (invoke, ainvoke, stream, astream) with the conversation key taken from its run config."""

    @functools.wraps(method)
    def keyed(self: Any, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        kwargs.setdefault(_CONVERSATION_KWARG, conversation_id_from_config(config))
        return method(self, input, config, **kwargs)

    return cast(F, keyed)


class RoutedChatModel(LadderEntryPoint, BaseChatModel):
    """A chat model that sends each call to ``high`` or ``low`` (or a ladder's rung) as ``router`` decides.

    Drop it in wherever a chat model goes (``create_agent(model=...)``, a LangGraph node, a
    chain). Before every call the router sees the conversation so far; the chosen model
    answers; the reply carries ``response_metadata["precision_router"] = {"route", "rung", "cost",
    "p_high", "policy", "router_version", "latency_ms", "escalated", "model"}`` and the chosen model's
    ``usage_metadata``. Tools bound with :meth:`bind_tools` are forwarded to whichever model is
    chosen. Conversations are keyed by the run config's ``thread_id`` (LangGraph) or
    ``session_id``; each has its own routing state and open trace episode, closed by
    :meth:`end_episode`.

    When the low model's reply cannot be used (a tool call that does not parse, an unknown
    tool, or ``output_validator`` returns a reason), the step is retried on ``high`` when
    ``escalate_on_parse_error`` is on; the metadata and the trace say so.

    More than two precisions: :meth:`from_ladder` takes an ordered ladder of models (highest
    precision first) and a cost per rung; the router returns a rung's name (``"high"`` and
    ``"low"`` still name the top and the bottom rung), the metadata and the trace record the
    rung and its cost, and unusable replies escalate to the top rung.

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
    rungs: dict[str, BaseChatModel] | None = None
    """A precision ladder's models by rung name, highest precision first (see :meth:`from_ladder`);
    ``None``: the two rungs ``high`` and ``low``."""
    costs: dict[str, float] | None = None
    """Each rung's cost (relative to the top rung); default: linear from 1 (top) to 0 (bottom)."""

    _tracker: ConversationTracker = PrivateAttr()
    _models: list[BaseChatModel] = PrivateAttr()

    def __init__(self, high: Any = None, low: Any = None, router: Any = None, /, **data: Any) -> None:
        for key, value in (("high", high), ("low", low), ("router", router)):
            if value is not None:
                data[key] = value
        super().__init__(**data)

    @model_validator(mode="after")
    def _check(self) -> RoutedChatModel:
        models = list(self.rungs.values()) if self.rungs else [self.high, self.low]
        for model in models[1:]:
            check_routing_setup(models[0], model, self.router, self.trace_store)
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Create the conversation tracker over the ladder."""
        super().model_post_init(context)
        if self.rungs:
            ladder = PrecisionLadder(list(self.rungs), self.costs)
            self._models = list(self.rungs.values())
        else:
            ladder = PrecisionLadder(TWO_RUNGS.names, self.costs) if self.costs else TWO_RUNGS
            self._models = [self.high, self.low]
        self._tracker = ConversationTracker(self.router, self.trace_store, ladder)

    # -- public API --------------------------------------------------------------------------
    @property
    def models(self) -> list[BaseChatModel]:
        """The models by rung, highest precision first."""
        return list(self._models)

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
    invoke = _keyed(BaseChatModel.invoke)
    ainvoke = _keyed(BaseChatModel.ainvoke)
    stream = _keyed(BaseChatModel.stream)
    astream = _keyed(BaseChatModel.astream)

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
    def _begin(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> RoutedStep:
        """Route the call (``kwargs`` loses the routing keys; what is left goes to the model)."""
        conversation_id = str(kwargs.pop(_CONVERSATION_KWARG, None) or conversation_id_from_config(ensure_config()))
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        models: list[Any] = self._models
        if tools:
            choice = {"tool_choice": tool_choice} if tool_choice is not None else {}
            models = [model.bind_tools(tools, **choice) for model in models]
        return RoutedStep.begin(
            self._tracker,
            conversation_id,
            messages,
            models,
            escalate=self.escalate_on_parse_error,
            tool_names=bound_tool_names(tools),
            tool_choice=tool_choice,
            output_validator=self.output_validator,
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
        step = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        message, meta = step.run(lambda model: model.invoke(messages, config, stop=stop, **kwargs))
        return _result(message, meta)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        step = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        relay, model = _Relay(step), step.model
        while model is not None:
            for chunk in model.stream(messages, config, stop=stop, **kwargs):
                for out in relay.take(chunk):
                    yield _emit(out, run_manager)
            model = relay.next_model()
        for out in relay.held():
            yield _emit(out, run_manager)
        yield relay.last()

    # -- async -------------------------------------------------------------------------------
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        step = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        message, meta = await step.arun(lambda model: model.ainvoke(messages, config, stop=stop, **kwargs))
        return _result(message, meta)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        step = self._begin(messages, kwargs)
        config = self._child_config(run_manager)
        relay, model = _Relay(step), step.model
        while model is not None:
            async for chunk in model.astream(messages, config, stop=stop, **kwargs):
                for out in relay.take(chunk):
                    yield await _aemit(out, run_manager)
            model = relay.next_model()
        for out in relay.held():
            yield await _aemit(out, run_manager)
        yield relay.last()


# -- helpers ---------------------------------------------------------------------------------


class _Relay:
    """The routed step of a stream: which chunks go out when, and the escalation between two streams.

    A reply that might escalate (tools bound, or a validator) is held back until it is complete
    and known to be usable; an escalated step streams the top rung's reply instead.
    """

    def __init__(self, step: RoutedStep) -> None:
        self.step = step
        self.hold = step.escalates and bool(step.tool_names or step.output_validator)
        self.chunks: list[AIMessageChunk] = []
        self.escalation: str | None = None
        self.first = True

    def take(self, chunk: AIMessageChunk) -> list[AIMessageChunk]:
        """Record ``chunk``; the chunks to send now."""
        self.chunks.append(chunk)
        return [] if self.hold and self.first else [chunk]

    def next_model(self) -> Any:
        """After a stream: the model to stream from next (the top rung when escalating), else ``None``."""
        if not self.first:
            return None
        self.first = False
        self.escalation = self.step.escalation(_merge(self.chunks))
        if self.escalation:
            self.chunks = []
            return self.step.escalate_to
        return None

    def held(self) -> list[AIMessageChunk]:
        """The held-back chunks of a reply that turned out usable (to send before :meth:`last`)."""
        return self.chunks if self.hold and not self.escalation else []

    def last(self) -> ChatGenerationChunk:
        """The closing chunk: the step recorded, its metadata attached."""
        return _last_chunk(self.step.finish(_merge(self.chunks), self.escalation))


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
