"""Trace records and stores."""

from precision_router.traces.schema import SCHEMA_VERSION, Episode, Step
from precision_router.traces.store import JsonlTraceStore, ReadReport, TraceStore

__all__ = ["SCHEMA_VERSION", "Episode", "JsonlTraceStore", "ReadReport", "Step", "TraceStore"]
