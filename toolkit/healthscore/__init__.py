"""healthscore: customer health scores that predict churn and expansion.

>>> import healthscore as hs
>>> hs.__version__
'0.1.0'

The public names below load their module on first use, so ``import healthscore`` stays fast
and a notebook that only scores never imports statsmodels or papermill.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "read_snapshots": "healthscore.io.snapshots",
    "read_events": "healthscore.io.snapshots",
    "validate_snapshots": "healthscore.io.snapshots",
    "ValidationError": "healthscore.io.snapshots",
    "make_portfolio": "healthscore.datasets.portfolio",
    "Portfolio": "healthscore.datasets.portfolio",
    "load_sample": "healthscore.datasets.portfolio",
    "RawLayer": "healthscore.datasets.raw",
    "load_model": "healthscore.spec.model",
    "load_models": "healthscore.spec.model",
    "ScoreModel": "healthscore.spec.model",
    "ModelError": "healthscore.spec.model",
    "score": "healthscore.core.scoring",
    "calibrate": "healthscore.core.scoring",
    "fit_calibration": "healthscore.core.calibration",
    "Outcome": "healthscore.spec.outcomes",
    "resolve_outcome": "healthscore.spec.outcomes",
    "HealthscoreError": "healthscore.errors",
    "Summary": "healthscore.results",
    "combine": "healthscore.core.scoring",
    "label_outcomes": "healthscore.core.labels",
    "score_to_file": "healthscore.core.scoring",
    "check_scores": "healthscore.core.scoring",
    "ScoresError": "healthscore.core.scoring",
    "scan_snapshots": "healthscore.io.stream",
    "FolderBusyError": "healthscore.io.files",
    "score_with": "healthscore.core.sqlscore",
    "score_file_with": "healthscore.core.sqlscore",
    "score_sql": "healthscore.core.sqlscore",
    "score_query": "healthscore.core.sqlscore",
    "fit_logit": "healthscore.analysis.fitting",
    "fit_weights": "healthscore.analysis.fitting",
    "WeightFit": "healthscore.analysis.fitting",
    "LogitResult": "healthscore.analysis.fitting",
    "leakage_check": "healthscore.analysis.fitting",
    "segment_lr_test": "healthscore.analysis.fitting",
    "SegmentTest": "healthscore.analysis.fitting",
    "fit_shapes": "healthscore.analysis.shapes",
    "ShapeFit": "healthscore.analysis.shapes",
    "evaluate": "healthscore.analysis.evaluation",
    "Evaluation": "healthscore.analysis.evaluation",
    "ProbabilityMap": "healthscore.analysis.evaluation",
    "auc_difference": "healthscore.analysis.evaluation",
    "compare_models": "healthscore.analysis.evaluation",
    "data_hash": "healthscore.io.fingerprint",
    "monitor": "healthscore.analysis.monitoring",
    "Monitoring": "healthscore.analysis.monitoring",
    "reference_from": "healthscore.analysis.monitoring",
    "psi": "healthscore.analysis.monitoring",
    "compare_cohorts": "healthscore.analysis.cohorts",
    "CohortComparison": "healthscore.analysis.cohorts",
    "score_trend": "healthscore.analysis.cohorts",
    "band_migration": "healthscore.analysis.cohorts",
    "biggest_movers": "healthscore.analysis.cohorts",
    "metric_deciles": "healthscore.analysis.cohorts",
    "suggest_breakpoints": "healthscore.analysis.cohorts",
    "csm_view": "healthscore.analysis.cohorts",
    "cohort_review": "healthscore.analysis.cohorts",
    "band_outcomes": "healthscore.analysis.cohorts",
    "metric_labels": "healthscore.analysis.cohorts",
    "render_review": "healthscore.app.batch",
    "AlertRule": "healthscore.spec.alerts",
    "alerts": "healthscore.analysis.alerts",
    "alert_history": "healthscore.analysis.alerts",
    "AlertRun": "healthscore.analysis.alerts",
    "backtest_alerts": "healthscore.analysis.alerts",
    "AlertBacktest": "healthscore.analysis.alerts",
    "threshold_for_capacity": "healthscore.analysis.alerts",
    "deliver_alerts": "healthscore.app.notify",
    "WeightTuner": "healthscore.app.widgets",
    "render_scorecards": "healthscore.app.batch",
    "accounts_by_risk": "healthscore.analysis.scorecard",
    "account_alert_history": "healthscore.analysis.scorecard",
    "override_history": "healthscore.analysis.scorecard",
    "build_snapshots": "healthscore.core.build",
    "build_outcomes": "healthscore.core.build",
    "BuildError": "healthscore.core.build",
    "load_spec": "healthscore.spec.metrics",
    "MetricSpec": "healthscore.spec.metrics",
}

# the layers, and the flat module names of release 0.1 that now live inside them
_LAYERS = {"io", "spec", "core", "analysis", "viz", "render", "app", "datasets", "resources", "errors"}
_MOVED: dict[str, str] = {
    "files": "healthscore.io.files",
    "snapshots": "healthscore.io.snapshots",
    "model": "healthscore.spec.model",
    "calibration": "healthscore.core.calibration",
    "scoring": "healthscore.core.scoring",
    "fitting": "healthscore.analysis.fitting",
    "evaluation": "healthscore.analysis.evaluation",
    "cohorts": "healthscore.analysis.cohorts",
    "charts": "healthscore.viz.charts",
    "reports": "healthscore.render.reports",
    "widgets": "healthscore.app.widgets",
    "cli": "healthscore.app.cli",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _LAYERS:
        return importlib.import_module(f"healthscore.{name}")
    if name in _MOVED:
        # deprecated for one release: ``hs.scoring`` is now ``hs.core.scoring``
        warnings.warn(
            f"healthscore.{name} moved to {_MOVED[name]}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'healthscore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _LAYERS)
