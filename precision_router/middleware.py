"""``PrecisionRoutingMiddleware``: precision routing for agents built with ``create_agent``."""

from __future__ import annotations

import logging
import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    OmitFromInput,
)
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import Command

from precision_router.conversation import (
    ConversationTracker,
    conversation_id_from_config,
    is_anonymous,
    tag_reply,
)
from precision_router.escalation import OutputValidator, bound_tool_names
from precision_router.routing.base import Router
from precision_router.routing.ladder import TWO_RUNGS, PrecisionLadder
from precision_router.step import LadderEntryPoint, RoutedStep, check_routing_setup
from precision_router.traces.store import TraceStore

__all__ = ["ROUTES_KEY", "PrecisionRoutingMiddleware", "PrecisionRoutingState", "thread_conversation_id"]

logger = logging.getLogger(__name__)

ROUTES_KEY = "precision_router_routes"
"""State key holding the route of every routed step of the thread, oldest first."""


class PrecisionRoutingState(AgentState[Any]):
    """Agent state added by :class:`PrecisionRoutingMiddleware` (checkpointed with the thread)."""

    precision_router_routes: NotRequired[Annotated[list[str], OmitFromInput, operator.add]]
    """Rung actually used by each model step of the thread (``"high"`` / ``"low"``, or a ladder's
    rung name), oldest first;
    its length is the thread's step count, so a resumed thread continues its numbering."""


def thread_conversation_id(runtime: Runtime[Any] | None = None) -> str:
    """The conversation key inside a running graph: ``thread_id`` / ``session_id``, else an anonymous one-step key."""
    try:
        conversation_id = conversation_id_from_config(get_config())
    except RuntimeError:  # outside a runnable context
        conversation_id = conversation_id_from_config(None)
    info = getattr(runtime, "execution_info", None)
    if is_anonymous(conversation_id) and info is not None and info.thread_id:
        return str(info.thread_id)
    return conversation_id


class PrecisionRoutingMiddleware(LadderEntryPoint, AgentMiddleware[PrecisionRoutingState, Any, Any]):
    """Route every model call of a ``create_agent`` agent to ``high`` or ``low``.

    Before each model call the router sees the conversation so far (task, past actions and
    observations) and picks a precision; the middleware swaps the request's model with
    ``request.override(model=...)`` and calls on. A low-precision reply that cannot be used (a
    tool call that does not parse, an unknown tool, no call although ``tool_choice`` required
    one, or ``output_validator`` gives a reason) is retried on ``high`` when
    ``escalate_on_parse_error`` is on: the same rule as :class:`~precision_router.RoutedChatModel`.
    The reply carries ``response_metadata["precision_router"]`` exactly as the routed chat model's
    does, and the step is recorded in the thread's open trace episode.

    Conversations are LangGraph threads (``configurable.thread_id``, else ``session_id``, else
    ``"default"``). The route of each step is also written to the thread's state
    (``precision_router_routes``), so it is checkpointed with the thread: a thread resumed later,
    even in a new process over the same checkpointer, continues its step numbering. Episodes
    are closed by :meth:`end_episode` (or at the end of every run with
    ``end_episode_after_run=True``).

    Pass ``high`` as the agent's model: the middleware replaces it on every call. For more than
    two precisions, build it with :meth:`from_ladder` (models by rung, highest first, and their
    costs); the routes list in the thread's state then holds rung names.

    Order with LangChain's built-in middleware (``middleware=[...]`` runs first = outermost):

    .. code-block:: python

        agent = create_agent(
            model=high,
            tools=tools,
            middleware=[
                ModelCallLimitMiddleware(run_limit=8, exit_behavior="end"),
                PrecisionRoutingMiddleware(high, low, router, trace_store=store),
                ModelFallbackMiddleware(backup_model),
            ],
        )

    - ``ModelFallbackMiddleware`` goes **after** (inside) the routing middleware. It retries a
      failed call by overriding the request's model; inside, it guards whichever precision was
      picked. Placed before (outside) it would be defeated: each retry passes through routing
      again, which puts ``high`` / ``low`` back in place of the fallback model. A step a fallback
      model answered is recorded under the route the router chose (the reply's own
      ``response_metadata["model_name"]`` names the model that answered).
    - ``ModelCallLimitMiddleware`` works in either position: it counts in ``before_model`` /
      ``after_model`` hooks, once per agent step, so an escalated step (two model calls) counts
      once; when it ends a run early the model node does not run, so nothing is routed or
      recorded.
    - A middleware that changes ``tool_choice`` (e.g. requiring a tool call) should come before
      this one, so that a low reply that ignores the requirement is escalated.

    Args:
        high: the high-precision chat model.
        low: the low-precision (cheap) chat model.
        router: the routing policy (any :class:`~precision_router.routing.Router`).
        trace_store: where finished episodes are written.
        escalate_on_parse_error: retry a step on ``high`` when the low reply is unusable.
        output_validator: extra check of a low reply: return a reason to escalate, or ``None``.
        end_episode_after_run: close (and write) the thread's episode at the end of every run,
            with ``success=None``; off by default, as a thread may span several runs.
        rungs: route over these models by rung name, highest precision first, instead of
            ``(high, low)`` (prefer :meth:`from_ladder`).
        costs: with ``rungs``, each rung's cost relative to the top one (default: linear 1 to 0).

    Example:
        .. code-block:: python

            from langchain.agents import create_agent
            from precision_router import PrecisionRoutingMiddleware, RandomRouter, load_precision_pair

            high, low = load_precision_pair("smollm2-135m-instruct", low="gptq-3bit")
            routing = PrecisionRoutingMiddleware(high, low, RandomRouter(0.3, seed=0))
            agent = create_agent(model=high, tools=[...], middleware=[routing])
            agent.invoke({"messages": [("user", "...")]}, {"configurable": {"thread_id": "t1"}})
            routing.end_episode("t1", success=True)
    """

    state_schema = PrecisionRoutingState

    def __init__(
        self,
        high: BaseChatModel,
        low: BaseChatModel,
        router: Router,
        *,
        trace_store: TraceStore | None = None,
        escalate_on_parse_error: bool = True,
        output_validator: OutputValidator | None = None,
        end_episode_after_run: bool = False,
        rungs: Mapping[str, BaseChatModel] | None = None,
        costs: Mapping[str, float] | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.models = list(rungs.values()) if rungs else [high, low]
        ladder = PrecisionLadder(list(rungs) if rungs else TWO_RUNGS.names, costs)
        for role, model in zip(ladder.names, self.models, strict=True):
            if not isinstance(model, BaseChatModel):
                msg = (
                    f"{role} must be a LangChain chat model (BaseChatModel), got {type(model).__name__}; "
                    "create_agent swaps request.model, which accepts chat models only"
                )
                raise TypeError(msg)
        for model in self.models[1:]:
            check_routing_setup(self.models[0], model, router, trace_store)
        self.high = self.models[0]
        self.low = self.models[-1]
        self.router = router
        self.escalate_on_parse_error = escalate_on_parse_error
        self.output_validator = output_validator
        self.end_episode_after_run = end_episode_after_run
        self._tracker = ConversationTracker(router, trace_store, ladder)

    # -- hooks -------------------------------------------------------------------------------
    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Route the call, escalate an unusable low reply, record the step."""
        step = self._begin(request)
        response, meta = step.run(lambda model: handler(request.override(model=model)), _reply)
        return _tagged(response, meta)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Async :meth:`wrap_model_call`."""
        step = self._begin(request)
        response, meta = await step.arun(lambda model: handler(request.override(model=model)), _reply)
        return _tagged(response, meta)

    def after_agent(self, state: PrecisionRoutingState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Close the thread's episode when ``end_episode_after_run`` is on."""
        if self.end_episode_after_run:
            self._tracker.end_episode(thread_conversation_id(runtime))
        return None

    async def aafter_agent(self, state: PrecisionRoutingState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Async :meth:`after_agent`."""
        return self.after_agent(state, runtime)

    # -- routing -----------------------------------------------------------------------------
    def _begin(self, request: ModelRequest[Any]) -> RoutedStep:
        state: Mapping[str, Any] = request.state or {}
        return RoutedStep.begin(
            self._tracker,
            thread_conversation_id(request.runtime),
            request.messages,
            self.models,
            escalate=self.escalate_on_parse_error,
            index=len(state.get(ROUTES_KEY) or ()),
            tool_names=_tool_names(request),
            tool_choice=request.tool_choice,
            output_validator=self.output_validator,
        )


def _tagged(response: ModelResponse[Any], meta: dict[str, Any]) -> ExtendedModelResponse[Any]:
    """The response with its reply tagged, and the step's rung appended to the thread's state."""
    reply = _reply(response)
    result: list[BaseMessage] = [
        tag_reply(message, meta) if message is reply else message for message in response.result
    ]
    return ExtendedModelResponse(
        model_response=ModelResponse(result=result, structured_response=response.structured_response),
        command=Command(update={ROUTES_KEY: [meta["rung"]]}),
    )


def _reply(response: ModelResponse[Any]) -> AIMessage | None:
    """The AI message of a model response (structured output may add a tool message)."""
    return next((m for m in response.result if isinstance(m, AIMessage)), None)


def _tool_names(request: ModelRequest[Any]) -> list[str]:
    """Names of the tools the reply may call; empty (no unknown-tool check) when unknowable.

    Structured output adds its own tools when the model is bound, so it turns the check off.
    """
    return [] if request.response_format is not None else bound_tool_names(request.tools)
