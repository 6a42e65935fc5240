"""Text hygiene: lone UTF-16 surrogates replaced before text reaches a file or a tokenizer.

Python strings may hold lone surrogates (U+D83D alone: half an emoji from a truncated UTF-16
source, or bytes decoded with ``surrogateescape``); UTF-8 cannot encode them, so a JSON writer
or a tokenizer fails on them. :func:`scrub_surrogates` joins a valid high/low pair into its
character and replaces a lone surrogate with U+FFFD (the replacement character).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REPLACEMENT", "has_surrogates", "scrub", "scrub_surrogates"]

REPLACEMENT = "\ufffd"
"""What a lone surrogate becomes."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds any surrogate code point."""
    return _SURROGATE.search(text) is not None


def scrub_surrogates(text: str) -> str:
    """``text`` with surrogate pairs joined and lone surrogates replaced by U+FFFD (unchanged when it has none)."""
    if not has_surrogates(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def scrub(value: Any) -> Any:
    """:func:`scrub_surrogates` applied to every string in ``value`` (dict keys, lists and tuples included)."""
    if isinstance(value, str):
        return scrub_surrogates(value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v) for v in value)
    return value
