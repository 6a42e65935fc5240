"""Evaluation: metrics over traces, calibration, reports and plots."""

from precision_router.evaluation.metrics import RunMetrics, binomial_se, ghc, summarize
from precision_router.evaluation.report import PolicyResult, cpt, pgr, plot_frontier, report_table

__all__ = [
    "PolicyResult",
    "RunMetrics",
    "binomial_se",
    "cpt",
    "ghc",
    "pgr",
    "plot_frontier",
    "report_table",
    "summarize",
]
