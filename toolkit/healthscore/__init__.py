"""healthscore: customer health scores that predict churn and expansion.

>>> import healthscore as hs
>>> hs.__version__
'0.1.0'

The public names below load their module on first use, so ``import healthscore`` stays fast
and a notebook that only scores never imports statsmodels or papermill.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "read_snapshots": "healthscore.snapshots",
    "read_events": "healthscore.snapshots",
    "validate_snapshots": "healthscore.snapshots",
    "ValidationError": "healthscore.snapshots",
    "make_portfolio": "healthscore.datasets",
    "Portfolio": "healthscore.datasets",
    "load_sample": "healthscore.datasets",
    "load_model": "healthscore.model",
    "load_models": "healthscore.model",
    "ScoreModel": "healthscore.model",
    "ModelError": "healthscore.model",
    "score": "healthscore.scoring",
    "calibrate": "healthscore.scoring",
    "combine": "healthscore.scoring",
    "label_outcomes": "healthscore.fitting",
    "fit_logit": "healthscore.fitting",
    "fit_weights": "healthscore.fitting",
    "WeightFit": "healthscore.fitting",
    "LogitResult": "healthscore.fitting",
    "leakage_check": "healthscore.fitting",
    "segment_lr_test": "healthscore.fitting",
    "SegmentTest": "healthscore.fitting",
    "evaluate": "healthscore.evaluation",
    "Evaluation": "healthscore.evaluation",
    "ProbabilityMap": "healthscore.evaluation",
    "compare_cohorts": "healthscore.cohorts",
    "CohortComparison": "healthscore.cohorts",
    "score_trend": "healthscore.cohorts",
    "band_migration": "healthscore.cohorts",
    "biggest_movers": "healthscore.cohorts",
    "metric_deciles": "healthscore.cohorts",
    "suggest_breakpoints": "healthscore.cohorts",
    "csm_view": "healthscore.cohorts",
    "cohort_review": "healthscore.cohorts",
    "render_review": "healthscore.reports",
    "WeightTuner": "healthscore.widgets",
    "render_scorecards": "healthscore.reports",
}

_SUBMODULES = {
    "datasets", "snapshots", "calibration", "model", "scoring", "fitting", "evaluation",
    "cohorts", "widgets", "reports", "charts", "files", "cli",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"healthscore.{name}")
    raise AttributeError(f"module 'healthscore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
