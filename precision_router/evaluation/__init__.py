"""Evaluation: metrics over traces, baseline sweeps, reports and plots."""

from precision_router.evaluation.metrics import RunMetrics, binomial_se, ghc, summarize

__all__ = ["RunMetrics", "binomial_se", "ghc", "summarize"]
