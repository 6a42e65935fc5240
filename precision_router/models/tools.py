"""Tool calling for local models: schemas rendered into the prompt, ``<tool_call>`` blocks parsed back.

The format is the Hermes / Qwen one: the model answers with one or more
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks. Templates that know tools
(``tools=`` in the chat template) receive the schemas themselves; for templates that do not
(SmolLM2's), :func:`tools_system_prompt` renders them into the system message.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import InvalidToolCall, ToolCall

__all__ = [
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "drop_undeclared_arguments",
    "forced_prefix",
    "guided_prefix",
    "parse_tool_calls",
    "render_tool_call",
    "tool_names",
    "tools_system_prompt",
]

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    """Names of OpenAI-format tool schemas."""
    return [t["function"]["name"] for t in tools if "function" in t]


def tools_system_prompt(tools: Sequence[dict[str, Any]], tool_choice: str | None = None) -> str:
    """System-prompt text that describes ``tools`` (OpenAI format) and the call format."""
    schemas = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    lines = [
        "You may call functions to help with the request. The available functions are "
        "described, one JSON schema per line, between <tools> and </tools>:",
        "<tools>",
        schemas,
        "</tools>",
        "To call a function, reply with <tool_call></tool_call> tags around a JSON object whose "
        '"name" is the function name and whose "arguments" is an object of argument values; '
        "write one block per call.",
    ]
    if tool_choice in {"any", "required"}:
        lines.append("You must call at least one function.")
    elif tool_choice and tool_choice not in {"auto", "none"}:
        lines.append(f"You must call the function {tool_choice}.")
    return "\n".join(lines)


def forced_prefix(tool_choice: str | None) -> str:
    """Text to start the assistant turn with so that the model must emit a tool call."""
    if tool_choice in {"any", "required"}:
        return f'{TOOL_CALL_OPEN}\n{{"name": "'
    if tool_choice and tool_choice not in {"auto", "none"}:
        return f'{TOOL_CALL_OPEN}\n{{"name": "{tool_choice}", "arguments": '
    return ""


def render_tool_call(name: str, args: dict[str, Any]) -> str:
    """One call in the ``<tool_call>`` format (used to render past calls back into prompts)."""
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall], list[InvalidToolCall]]:
    """Split model output into ``(content, tool_calls, invalid_tool_calls)``.

    A block whose body is not a JSON object with a string ``name`` (and object ``arguments``,
    possibly JSON-encoded) becomes an invalid tool call carrying the error.
    """
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for match in _BLOCK.finditer(text):
        body = match.group(1).strip()
        call_id = f"call_{uuid.uuid4().hex[:16]}"
        try:
            data = _loads_closing_braces(body)
            if not isinstance(data, dict) or not isinstance(data.get("name"), str):
                raise ValueError('expected a JSON object with a string "name"')
            args = data.get("arguments", data.get("parameters", {}))
            if isinstance(args, str):
                args = json.loads(args) if args.strip() else {}
            if not isinstance(args, dict):
                raise ValueError('"arguments" must be a JSON object')
        except ValueError as exc:
            name = _guess_name(body)
            invalid.append(InvalidToolCall(type="invalid_tool_call", name=name, args=body, id=call_id, error=str(exc)))
            continue
        calls.append(ToolCall(type="tool_call", name=data["name"], args=args, id=call_id))
    content = _BLOCK.sub("", text).strip() if (calls or invalid) else text
    return content, calls, invalid


def _loads_closing_braces(body: str) -> Any:
    """The first JSON object in ``body``, repaired the way small models need.

    Tolerates trailing text after a complete call, up to two missing closing braces, and a call
    cut short (by the token budget or a stop string) in the middle of a later argument: it then
    keeps the arguments completed before the cut.
    """
    decoder = json.JSONDecoder()
    first_error: json.JSONDecodeError | None = None
    candidates = [body + suffix for suffix in ("", "}", "}}", '"}}')]
    candidates += [body[:cut] + "}}" for cut in reversed([i for i, ch in enumerate(body) if ch == ","])]
    for text in candidates:
        try:
            value = decoder.raw_decode(text)[0]
        except json.JSONDecodeError as exc:
            first_error = first_error or exc
            continue
        if isinstance(value, dict):
            return value
    assert first_error is not None
    raise first_error


def guided_prefix(name: str, schema: dict[str, Any]) -> str:
    """Opening of a call to ``name`` up to its first argument's value (or the whole empty call)."""
    properties = list((schema.get("parameters") or {}).get("properties") or {})
    required = (schema.get("parameters") or {}).get("required") or []
    first = next((p for p in properties if p in required), properties[0] if properties else None)
    head = f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {{'
    if first is None:
        return head + "}}"
    opening = '"' if (schema["parameters"]["properties"][first] or {}).get("type") == "string" else ""
    return f'{head}"{first}": {opening}'


def drop_undeclared_arguments(call: ToolCall, tools: Sequence[dict[str, Any]]) -> ToolCall:
    """``call`` without the arguments its tool's schema does not declare.

    Calls to unknown tools, and tools whose schema declares no properties or allows additional
    ones, are returned unchanged.
    """
    schema = next((t["function"] for t in tools if t.get("function", {}).get("name") == call["name"]), None)
    parameters = (schema or {}).get("parameters") or {}
    declared = parameters.get("properties")
    if not declared or parameters.get("additionalProperties") is True:
        return call
    return ToolCall(
        type="tool_call",
        name=call["name"],
        args={k: v for k, v in call["args"].items() if k in declared},
        id=call["id"],
    )


def _guess_name(body: str) -> str | None:
    match = re.search(r'"name"\s*:\s*"([^"]+)"', body)
    return match.group(1) if match else None
