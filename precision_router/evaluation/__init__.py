"""Evaluation: metrics over traces, calibration, reports and plots."""

from precision_router.evaluation.metrics import RunMetrics, binomial_se, ghc, ghc_se, summarize
from precision_router.evaluation.report import (
    PolicyResult,
    cpt,
    paired_difference,
    paired_table,
    pgr,
    plot_frontier,
    report_table,
)
from precision_router.evaluation.uplift import UpliftRow, step_uplift

__all__ = [
    "PolicyResult",
    "RunMetrics",
    "UpliftRow",
    "binomial_se",
    "cpt",
    "ghc",
    "ghc_se",
    "paired_difference",
    "paired_table",
    "pgr",
    "plot_frontier",
    "report_table",
    "step_uplift",
    "summarize",
]
