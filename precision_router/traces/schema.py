"""Versioned trace records: one :class:`Episode` holds the :class:`Step` s of one conversation."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from precision_router.errors import TraceSchemaError

__all__ = ["SCHEMA_VERSION", "Episode", "Step"]

SCHEMA_VERSION = 1
"""Version written into every record; readers refuse any other."""


class Step(BaseModel):
    """One model call inside one conversation.

    ``observation`` is the new input the agent saw before acting (the tool results or user
    turn since the previous step; the opening observation for step 0) and ``action`` is what
    the chosen model produced.
    """

    model_config = ConfigDict(extra="forbid")

    index: int
    observation: str = ""
    action: str = ""
    route: Literal["high", "low"]
    """``"high"`` for the top precision, ``"low"`` for any cheaper one (see ``rung``)."""
    rung: str | None = None
    """The precision that answered, by name (``"high"`` / ``"low"``, or a ladder rung such as ``"gptq-4bit"``)."""
    cost: float | None = None
    """The rung's cost relative to the top rung (1 for ``high``, 0 for ``low`` in a two-rung setup)."""
    p_high: float | None = None
    policy: str = ""
    model: str = ""
    latency_ms: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    escalated: bool = False
    escalation_reason: str | None = None
    candidates: list[str] | None = None
    """The action space at this step (e.g. ALFWorld's admissible commands), when known."""
    logprobs: dict[str, list[float]] | None = None
    """Per-precision log-likelihood of each candidate (keys ``"high"``, ``"low"``)."""
    kl: float | None = None
    """``KL(pi_low || pi_high)`` over the candidates, when both distributions were scored."""
    info: dict[str, Any] = Field(default_factory=dict)

    @property
    def relative_cost(self) -> float:
        """The step's cost relative to the top precision (records without ``cost``: 1 if high, else 0)."""
        return self.cost if self.cost is not None else float(self.route == "high")


class Episode(BaseModel):
    """Every step of one conversation plus its outcome; one JSONL line in a trace file."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    episode_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    conversation_id: str = "default"
    task: str = ""
    steps: list[Step] = Field(default_factory=list)
    success: bool | None = None
    reward: float | None = None
    policy: str = ""
    router_version: str | None = None
    started_at: float = Field(default_factory=time.time)
    ended_at: float | None = None
    info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            msg = (
                f"trace record has schema_version {value}, but this precision-router reads "
                f"version {SCHEMA_VERSION} only; upgrade precision-router (or re-record the "
                "traces with this version)"
            )
            raise TraceSchemaError(msg)
        return value

    @property
    def n_high(self) -> int:
        """Number of steps routed to the high-precision model."""
        return sum(step.route == "high" for step in self.steps)

    @property
    def high_share(self) -> float:
        """Share of steps routed high (0.0 for an episode with no steps)."""
        return self.n_high / len(self.steps) if self.steps else 0.0
