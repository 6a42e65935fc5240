"""The escalation rule: when a reply of a cheaper precision cannot be used and must be retried on the top one.

Every entry point (:class:`~precision_router.RoutedChatModel`,
:class:`~precision_router.PrecisionRoutingMiddleware`, the graph's model nodes and the ALFWorld
agent) asks :func:`escalation_reason` through :class:`~precision_router.step.RoutedStep`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = ["OutputValidator", "bound_tool_names", "escalation_reason", "output_problem"]

OutputValidator = Callable[[AIMessage], str | None]
"""A user's extra check of a reply: a reason to escalate, or ``None`` to keep it."""


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
