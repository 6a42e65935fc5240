"""LangChain's standard integration tests for RoutedChatModel over the real SmolLM2-135M pair.

The pair is SmolLM2-135M-Instruct in fp32 (high) and GPTQ 3-bit (low), loaded once per module
(the first run on a fresh machine quantizes, about 3 minutes; later runs load from the cache).
The router alternates high / low call by call, so both precisions answer standard tests.
Tests a 135M model cannot pass are marked xfail with the reason.
"""

from __future__ import annotations

import functools
import itertools
import threading
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from precision_router import RoutedChatModel
from precision_router.routing import RouteDecision

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

MAX_TOKENS = 32


@functools.lru_cache(maxsize=1)
def _smol_pair() -> tuple[Any, Any]:
    from precision_router import load_precision_pair
    from precision_router.models.presets import get_preset

    try:
        get_preset("smollm2-135m-instruct").gguf_path()
    except Exception as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"SmolLM2 weights unavailable: {exc}")
    pytest.importorskip("gptqmodel")
    return load_precision_pair("smollm2-135m-instruct", low="gptq-3bit", max_tokens=MAX_TOKENS)


class Alternating:
    """Routes calls high, low, high, ... in call order, whatever the conversation."""

    name = "alternating"
    version = None

    def __init__(self) -> None:
        self._routes = itertools.cycle(["high", "low"])
        self._lock = threading.Lock()

    def decide(self, state: Any) -> RouteDecision:
        with self._lock:
            route = next(self._routes)
        return RouteDecision(route, 1.0 if route == "high" else 0.0)


_ROUTER = Alternating()

SMALL_MODEL_STRUCTURED = "SmolLM2-135M often omits a required field or writes arguments that are not JSON"


class TestRoutedChatModelIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        high, low = _smol_pair()
        return {"high": high, "low": low, "router": _ROUTER}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False  # one routed pair; there is no per-call `model=` to switch to

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    # -- what SmolLM2-135M (or a known bug outside this module) cannot pass ----------------------
    @pytest.mark.xfail(
        reason="asked 'Hello!' with a required call, SmolLM2-135M writes arguments that do not parse within the budget"
    )
    def test_tool_choice(self, model: Any) -> None:
        super().test_tool_choice(model)

    @pytest.mark.xfail(reason="without tool_choice SmolLM2-135M answers in text instead of calling the tool")
    def test_agent_loop(self, model: Any) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(
        reason="SmolLM2-135M does not reliably copy the Chinese / Japanese names into the arguments "
        "(seen: customer_name='Achaaros'); passes or fails with the precision that answers"
    )
    def test_unicode_tool_call_integration(self, model: Any, **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(model, **kwargs)

    @pytest.mark.xfail(reason=SMALL_MODEL_STRUCTURED)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output(self, model: Any, schema_type: Any) -> None:
        super().test_structured_output(model, schema_type)

    @pytest.mark.xfail(reason=SMALL_MODEL_STRUCTURED)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async(self, model: Any, schema_type: Any) -> None:
        await super().test_structured_output_async(model, schema_type)

    @pytest.mark.xfail(reason=SMALL_MODEL_STRUCTURED)
    def test_structured_output_pydantic_2_v1(self, model: Any) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    @pytest.mark.xfail(reason=SMALL_MODEL_STRUCTURED)
    def test_structured_output_optional_param(self, model: Any) -> None:
        super().test_structured_output_optional_param(model)
