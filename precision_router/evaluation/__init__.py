"""Evaluation: metrics over traces, calibration, reports and plots."""

from precision_router.evaluation.metrics import RunMetrics, binomial_se, ghc, ghc_se, summarize
from precision_router.evaluation.report import PolicyResult, cpt, pgr, plot_frontier, report_table

__all__ = [
    "PolicyResult",
    "RunMetrics",
    "binomial_se",
    "cpt",
    "ghc",
    "ghc_se",
    "pgr",
    "plot_frontier",
    "report_table",
    "summarize",
]
