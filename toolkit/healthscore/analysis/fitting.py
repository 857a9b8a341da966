"""Point-in-time outcome labels and weight fitting with logistic regression.

A training row is one snapshot (an account as it looked on ``as_of``) and a label saying whether
the outcome happened in the following ``horizon``. Features only ever come from the snapshot
itself; the events table contributes the label and nothing else.

>>> import datetime as dt, polars as pl
>>> snaps = pl.DataFrame({"account_id": ["a", "a", "a"],
...                       "as_of": [dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)]})
>>> events = pl.DataFrame({"account_id": ["a"], "date": [dt.date(2024, 1, 20)], "event": ["expanded"]})
>>> label_outcomes(snaps, events, outcome="expanded", horizon="28d")["expanded"].to_list()
[True, False]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from healthscore.analysis.monitoring import reference_from
from healthscore.core.calibration import calibrate_expr
from healthscore.core.extract import is_cross_sectional, observation_end
from healthscore.core.labels import _input_error, label_outcomes
from healthscore.core.scoring import calibrate, combine
from healthscore.io.fingerprint import data_hash
from healthscore.results import Summary
from healthscore.spec.outcomes import horizon_days, parse_horizon, resolve_outcome

__all__ = [
    "label_outcomes",
    "parse_horizon",
    "fit_logit",
    "LogitResult",
    "fit_weights",
    "WeightFit",
    "leakage_check",
    "training_rows",
    "segment_lr_test",
    "SegmentTest",
    "fitted_record",
]


def fitted_record(
    snapshots: pl.DataFrame | pl.LazyFrame,
    rows: pl.DataFrame,
    model: Any,
    *,
    method: str,
    outcome: str,
    horizon: str,
    data_end: date | None = None,
    labelled: bool = False,
) -> dict[str, Any]:
    """What a fit learned from, for the fitted model's ``[fitted]`` table.

    ``snapshots`` are the snapshots the fit was given (their hash covers the keys and the
    columns the model reads), ``rows`` the labelled rows it fitted on (first and last
    ``as_of``). ``observed_until`` is the last day whose events the labels could see: the data
    end (``data_end``, else the last snapshot), or for rows labelled elsewhere (``labelled``)
    the last ``as_of`` plus the horizon.

    >>> import datetime as dt, polars as pl
    >>> snaps = pl.DataFrame({"account_id": ["a"] * 3, "as_of": [dt.date(2024, 1, d) for d in (1, 8, 15)]})
    >>> r = fitted_record(snaps, snaps.head(2), None, method="weights", outcome="churned", horizon="7d")
    >>> r["first_as_of"], r["last_as_of"], r["observed_until"], r["rows"]
    (datetime.date(2024, 1, 1), datetime.date(2024, 1, 8), datetime.date(2024, 1, 15), 2)
    """
    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    wanted = ["account_id", "as_of", *(getattr(model, "columns", None) or [])]
    cols = [c for c in dict.fromkeys(wanted) if c in snaps.columns]
    first, last = rows["as_of"].min(), rows["as_of"].max()
    if data_end is not None:
        until = data_end
    elif labelled:
        until = last + timedelta(days=horizon_days(horizon)) if last is not None else None
    else:
        until = snaps["as_of"].max()
    record = {
        "method": method,
        "outcome": outcome,
        "horizon": parse_horizon(horizon),
        "data_hash": data_hash(snaps, cols),
        "rows": int(rows.height),
        "first_as_of": first,
        "last_as_of": last,
        "observed_until": until,
        "fitted_at": date.today(),
    }
    return {k: v for k, v in record.items() if v is not None}


# ---------------------------------------------------------------- logistic fits
# A standard error above this many log-odds per standard deviation of the feature means the
# likelihood is flat in that direction: the mark of (quasi-)separation, not of a real effect.
_HUGE_SE_PER_SD = 5.0
_HUGE_COEF_PER_SD = 10.0
_BIG_DATA = 200_000  # above this many rows, start Newton from a fit on a subsample
_BLOCK = 65_536  # rows per block of the Hessian product


@dataclass
class LogitResult:
    """A fitted logistic regression: estimates, clustered inference and what was done to the data.

    ``params_``, ``bse_``, ``pvalues_`` map each term (``const`` first) to a number and
    ``conf_int_`` to a 95% interval; ``naive_bse_`` are the textbook (independent rows) standard
    errors, kept to show how much repeated snapshots of one account inflate the uncertainty.
    Penalised fits have no valid standard errors: those entries are NaN and ``inference_`` is False.
    """

    outcome: str
    features: list[str]
    terms_: list[str]
    params_: dict[str, float]
    bse_: dict[str, float]
    naive_bse_: dict[str, float]
    conf_int_: dict[str, tuple[float, float]]
    pvalues_: dict[str, float]
    result_: Any
    n_obs_: int
    n_events_: int
    n_groups_: int
    penalty_: str | None
    alpha_: float | None
    inference_: bool
    fill_values_: dict[str, float] = field(default_factory=dict)
    na_indicators_: list[str] = field(default_factory=list)
    center_: dict[str, float] = field(default_factory=dict)
    scale_: dict[str, float] = field(default_factory=dict)
    dropped_: dict[str, str] = field(default_factory=dict)
    separation_: list[str] = field(default_factory=list)
    fallback_: str | None = None
    notes_: list[str] = field(default_factory=list)

    @property
    def table(self) -> pl.DataFrame:
        """One row per term: coefficient, clustered SE, z, p, 95% CI, naive SE."""
        t = self.terms_
        return pl.DataFrame(
            {
                "term": t,
                "coef": [self.params_[k] for k in t],
                "se": [self.bse_[k] for k in t],
                "p_value": [self.pvalues_[k] for k in t],
                "coef_lower": [self.conf_int_[k][0] for k in t],
                "coef_upper": [self.conf_int_[k][1] for k in t],
                "naive_se": [self.naive_bse_[k] for k in t],
            },
            schema={
                "term": pl.Utf8,
                "coef": pl.Float64,
                "se": pl.Float64,
                "p_value": pl.Float64,
                "coef_lower": pl.Float64,
                "coef_upper": pl.Float64,
                "naive_se": pl.Float64,
            },
        )

    def design(self, frame: pl.DataFrame) -> np.ndarray:
        """The design matrix (``const`` first) this fit would build from ``frame``: same fills,
        indicators and scaling as in training, so it can score new rows."""
        cols = [pl.lit(1.0).alias("const")]
        for term in self.terms_[1:]:
            if term in self.na_indicators_:
                src = term[len("na_") :]
                cols.append(pl.col(src).is_null().cast(pl.Float64).alias(term))
            else:
                e = pl.col(term).cast(pl.Float64).fill_null(self.fill_values_.get(term, 0.0))
                if term in self.scale_:
                    e = (e - self.center_[term]) / self.scale_[term]
                cols.append(e.alias(term))
        return frame.select(cols).to_numpy().astype(np.float64, copy=False)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Predicted probability of the outcome for each row of ``frame``."""
        beta = np.array([self.params_[k] for k in self.terms_])
        return 1.0 / (1.0 + np.exp(-(self.design(frame) @ beta)))

    def summary(self) -> Summary:
        """A readable report: the fit, each term, and every note about the data."""
        kind = "clustered by account" if self.inference_ else "none (penalised fit)"
        head = [
            f"Logistic regression of {self.outcome!r}: {self.n_obs_:,} rows, {self.n_events_:,} events, "
            f"{self.n_groups_:,} accounts",
            f"fit: {'maximum likelihood' if self.penalty_ is None else self.penalty_.upper() + ' penalised'}"
            f"{'' if self.alpha_ is None else f' (alpha={self.alpha_:g})'}; standard errors: {kind}",
        ]
        if self.fallback_:
            head.append(f"fallback: {self.fallback_}")
        lines = [f"{'term':<28}{'coef':>11}{'se':>11}{'p':>10}  95% CI"]
        for row in self.table.iter_rows(named=True):
            ci = f"[{row['coef_lower']:.4g}, {row['coef_upper']:.4g}]"
            lines.append(f"{row['term']:<28}{row['coef']:>11.4g}{row['se']:>11.3g}{_fmt_p(row['p_value']):>10}  {ci}")
        notes = [f"dropped {k}: {v}" for k, v in self.dropped_.items()] + self.separation_ + self.notes_
        return Summary("\n".join(head + [""] + lines + ([""] + [f"note: {n}" for n in notes] if notes else [])))

    def __repr__(self) -> str:
        return f"LogitResult({self.outcome!r}, {len(self.terms_) - 1} features, n={self.n_obs_})"


def _fmt_p(p: float) -> str:
    if p != p:  # NaN: no inference
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _outcome_array(frame: pl.DataFrame, outcome: str) -> np.ndarray:
    dtype = frame.schema[outcome]
    if dtype == pl.Boolean:
        return frame[outcome].cast(pl.Float64).to_numpy()
    if dtype.is_numeric():
        bad = frame.filter(~pl.col(outcome).is_in([0, 1]))
        if bad.height:
            raise _input_error(
                "training rows",
                f"holds values other than 0/1, e.g. {bad[outcome][0]}",
                "Pass a Boolean or 0/1 outcome column",
                column=outcome,
            )
        return frame[outcome].cast(pl.Float64).to_numpy()
    raise _input_error(
        "training rows", f"is {dtype}, not Boolean", "Pass a Boolean or 0/1 outcome column", column=outcome
    )


def _prepare(
    frame: pl.DataFrame, features: list[str], outcome: str, na_threshold: float, standardize: bool
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fill nulls, add N/A indicators, drop unusable columns. Returns the design frame and notes."""
    missing = [c for c in [*features, outcome] if c not in frame.columns]
    if missing:
        raise _input_error(
            "training rows",
            f"lacks column(s) {missing}",
            "Name existing columns in features/outcome",
            column=missing[0],
        )
    not_numeric = [c for c in features if not frame.schema[c].is_numeric() and frame.schema[c] != pl.Boolean]
    if not_numeric:
        raise _input_error(
            "training rows",
            f"feature is {frame.schema[not_numeric[0]]}, not numeric",
            "Encode it as numbers (e.g. 0/1 indicators) or leave it out",
            column=not_numeric[0],
        )
    stats = frame.select(
        *[pl.col(c).cast(pl.Float64).mean().alias(f"mean|{c}") for c in features],
        *[pl.col(c).cast(pl.Float64).std().alias(f"std|{c}") for c in features],
        *[pl.col(c).null_count().alias(f"null|{c}") for c in features],
    ).row(0, named=True)
    n = frame.height
    info: dict[str, Any] = {"fill": {}, "na": [], "dropped": {}, "center": {}, "scale": {}, "sd": {}}
    exprs: list[pl.Expr] = []
    for c in features:
        share = stats[f"null|{c}"] / n if n else 0.0
        if stats[f"mean|{c}"] is None:
            info["dropped"][c] = "no value in any training row"
            continue
        if not stats[f"std|{c}"]:
            info["dropped"][c] = "the same value in every training row (nothing to learn from)"
            continue
        e = pl.col(c).cast(pl.Float64)
        if share > 0:
            info["fill"][c] = stats[f"mean|{c}"]
            e = e.fill_null(stats[f"mean|{c}"])
        if standardize:
            info["center"][c], info["scale"][c] = stats[f"mean|{c}"], stats[f"std|{c}"]
            e = (e - stats[f"mean|{c}"]) / stats[f"std|{c}"]
        exprs.append(e.alias(c))
        info["sd"][c] = 1.0 if standardize else stats[f"std|{c}"]
        if na_threshold < share < 1.0:
            info["na"].append(f"na_{c}")
            info["sd"][f"na_{c}"] = (share * (1 - share)) ** 0.5
            exprs.append(pl.col(c).is_null().cast(pl.Float64).alias(f"na_{c}"))
    return frame.select(exprs), info


def _separation_checks(design: pl.DataFrame, y: np.ndarray) -> list[str]:
    """Single-feature separation: a threshold or a level that predicts the outcome perfectly."""
    found: list[str] = []
    if design.width == 0:
        return found
    # one pass: min and max of every column among events and among non-events
    by_class = (
        design.with_columns(pl.Series("_y", y > 0.5))
        .group_by("_y")
        .agg(
            *[pl.col(c).min().alias(f"min|{c}") for c in design.columns],
            *[pl.col(c).max().alias(f"max|{c}") for c in design.columns],
        )
    )
    if by_class.height < 2:
        return found
    pos = by_class.filter(pl.col("_y")).row(0, named=True)
    neg = by_class.filter(~pl.col("_y")).row(0, named=True)
    st: dict[str, Any] = {}
    for c in design.columns:
        st[f"pmin|{c}"], st[f"pmax|{c}"] = pos[f"min|{c}"], pos[f"max|{c}"]
        st[f"nmin|{c}"], st[f"nmax|{c}"] = neg[f"min|{c}"], neg[f"max|{c}"]
        lo, hi = min(st[f"pmin|{c}"], st[f"nmin|{c}"]), max(st[f"pmax|{c}"], st[f"nmax|{c}"])
        # two levels only, when both classes sit on the extremes (an indicator)
        st[f"two|{c}"] = {st[f"pmin|{c}"], st[f"pmax|{c}"], st[f"nmin|{c}"], st[f"nmax|{c}"]} <= {lo, hi}
    for c in design.columns:
        # every event on one side of a threshold (ties allowed); for a two-level feature such as
        # an indicator this is the same as a level with no event or with nothing but events
        if st[f"pmin|{c}"] >= st[f"nmax|{c}"] or st[f"pmax|{c}"] <= st[f"nmin|{c}"]:
            how = (
                "a level of it has no event or only events (an empty or pure cell)"
                if st[f"two|{c}"]
                else "every event lies on one side of a threshold"
            )
            found.append(
                f"quasi-separation: {c} alone separates the outcome ({how}), so its coefficient runs off to infinity"
            )
    return found


def _matrix(design: pl.DataFrame) -> np.ndarray:
    """Float design matrix with the constant first, column-major: each column is one contiguous
    copy out of polars, and the blocked Hessian runs as fast on it as on a row-major one."""
    X = np.empty((design.height, design.width + 1), order="F")
    X[:, 0] = 1.0
    for j, col in enumerate(design.columns, start=1):
        X[:, j] = design[col].cast(pl.Float64).to_numpy()
    return X


def _cluster_cov(res: Any, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """CRV1 clustered covariance from statsmodels' own score and Hessian, as statsmodels computes
    it for ``cov_type="cluster"`` (same small-sample correction), but without re-deriving both."""
    from scipy.sparse import csr_array  # scipy.stats is loaded only when a test statistic is computed

    X = res.model.exog
    nobs, k = X.shape
    # per-account sums of the score (y - p) x: an account x row matrix holding each row's
    # residual, times X, without building the rows x features score matrix
    resid = res.model.endog - res.model.cdf(X @ res.params)
    weighted = csr_array((resid, (codes, np.arange(nobs))), shape=(n_groups, nobs))
    sums = np.column_stack([weighted @ X[:, j] for j in range(k)])  # contiguous columns
    bread = res.normalized_cov_params
    correction = n_groups / (n_groups - 1.0) * (nobs - 1.0) / (nobs - k)
    return correction * bread @ (sums.T @ sums) @ bread


def _attach_cluster_cov(res: Any, codes: np.ndarray, n_groups: int) -> None:
    """Make ``res`` report clustered inference, as statsmodels' own ``cov_type="cluster"`` does."""
    from statsmodels.base.covtype import (
        descriptions,  # statsmodels takes about a second to import; only fits and tests need it
    )

    res = getattr(res, "_results", res)  # set on the results, not on their wrapper
    res._cache = {}  # bse, pvalues, ... are cached from the textbook covariance
    res.cov_params_default = _cluster_cov(res, codes, n_groups)
    res.cov_type = "cluster"
    res.cov_kwds = {
        "use_t": res.use_t,
        "adjust_df": True,
        "groups": codes,
        "use_correction": True,
        "description": descriptions["cluster"],
        "scaling_factor": None,
    }
    res.n_groups = n_groups
    res.df_resid_inference = n_groups - 1


def _logit_model(y: np.ndarray, X: np.ndarray) -> Any:
    """statsmodels' Logit with a faster, algebraically identical Hessian: -X'WX summed over
    blocks of rows as products of sqrt(W)X with itself, so each block stays in cache (about
    twice as fast as statsmodels' one transposed product on a million rows). Rank is checked
    by the caller."""
    import statsmodels.api as sm  # statsmodels takes about a second to import; only fits and tests need it

    class _Logit(sm.Logit):
        def hessian(self, params: np.ndarray) -> np.ndarray:
            X = self.exog
            p = self.cdf(X @ params)
            sw = np.sqrt(p * (1 - p))
            out = np.zeros((X.shape[1], X.shape[1]))
            for start in range(0, X.shape[0], _BLOCK):  # a loop over blocks of rows, not rows
                xw = X[start : start + _BLOCK] * sw[start : start + _BLOCK, None]
                out += xw.T @ xw
            return -out

    _Logit.__name__ = _Logit.__qualname__ = "Logit"
    return _Logit(y, X, check_rank=False)


def _mle(X: np.ndarray, y: np.ndarray, maxiter: int) -> tuple[Any, list[str]]:
    """Unpenalised Newton fit. On big data Newton starts from a fit on a random subsample and
    takes two full steps, then we check convergence in units of standard errors."""
    from statsmodels.tools.sm_exceptions import (  # statsmodels is loaded only when a model is fitted
        ConvergenceWarning,
        PerfectSeparationWarning,
    )

    problems: list[str] = []
    start, steps = None, maxiter
    model = _logit_model(y, X)
    if len(y) > _BIG_DATA:
        rows = np.sort(np.random.default_rng(0).choice(len(y), size=_BIG_DATA // 2, replace=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                # a rough start is enough: Newton's last steps happen on the full data
                sub = _logit_model(y[rows], X[rows]).fit(method="newton", disp=False, maxiter=maxiter, tol=1e-4)
                # one step with the full data's gradient and the subsample's (mean) Hessian brings
                # the start within a fraction of a standard error, for the price of one gradient
                full_grad = model.score(sub.params) / len(y)
                start = sub.params + np.linalg.solve(sub.mle_retvals["Hessian"], full_grad)
                steps = 1  # one full Newton step converges from there (checked below)
            except np.linalg.LinAlgError:
                start = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # statsmodels' perfect-prediction check runs after every step; on big data once at the end
        quiet = {"callback": lambda *_: None} if start is not None else {}
        res = model.fit(method="newton", disp=False, maxiter=steps, start_params=start, warn_convergence=False, **quiet)
        if quiet:
            model._check_perfect_pred(res.params)
        if start is not None and not res.mle_retvals["converged"]:
            # the Newton step still to go, in standard errors: below 1e-4 the fit has converged
            # for every practical purpose; otherwise keep iterating in the usual way
            # statsmodels keeps the Hessian and score of the mean negative log-likelihood
            hess, grad = res.mle_retvals["Hessian"], res.mle_retvals["score"]
            step = np.linalg.solve(hess, grad)
            se = np.sqrt(np.abs(np.diag(np.linalg.inv(hess))) / len(y))
            if np.all(np.isfinite(step)) and np.max(np.abs(step) / se) < 1e-4:
                res.mle_retvals["converged"] = True
                res.mle_retvals["convergence"] = "remaining Newton step below 1e-4 standard errors"
            else:
                res = model.fit(
                    method="newton", disp=False, maxiter=maxiter, start_params=res.params, warn_convergence=False
                )
    for w in caught:
        if issubclass(w.category, PerfectSeparationWarning):
            problems.append("quasi-separation: statsmodels reports perfect separation or prediction")
        elif issubclass(w.category, ConvergenceWarning) or "overflow" in str(w.message):
            problems.append(f"quasi-separation suspected: {w.message}")
    if not res.mle_retvals.get("converged", True):
        problems.append(
            f"quasi-separation suspected: the maximum-likelihood fit did not converge in {maxiter} Newton steps"
        )
    return res, list(dict.fromkeys(problems))


def _penalised(X: np.ndarray, y: np.ndarray, penalty: str, alpha: float) -> Any:
    """Elastic-net GLM fit on standardised columns (the intercept is never penalised)."""
    import statsmodels.api as sm  # statsmodels takes about a second to import; only fits and tests need it

    weights = np.full(X.shape[1], alpha)
    weights[0] = 0.0
    model = sm.GLM(y, X, family=sm.families.Binomial())
    return model.fit_regularized(
        method="elastic_net", alpha=weights, L1_wt=1.0 if penalty == "l1" else 0.0, maxiter=200
    )


def fit_logit(
    frame: pl.DataFrame,
    features: list[str],
    outcome: str,
    *,
    groups: str | None = "account_id",
    penalty: Literal["l2", "l1"] | None = None,
    alpha: float | None = None,
    standardize: bool = False,
    na_threshold: float = 0.05,
    maxiter: int = 50,
    on_separation: Literal["l2", "raise", "keep"] = "l2",
) -> LogitResult:
    """Fit a logistic regression of ``outcome`` on ``features`` with statsmodels.

    * Unpenalised fits are maximum likelihood (Newton) with standard errors clustered by
      ``groups`` (repeated snapshots of one account are not independent rows). ``groups=None``
      gives the textbook standard errors.
    * ``penalty="l2"`` or ``"l1"`` fits an elastic net (``alpha`` on standardised columns, default
      1e-3); no valid standard errors exist for a penalised fit, so they are NaN.
    * Nulls (a sub-score that is N/A): the column's training mean fills them, and when more than
      ``na_threshold`` of the rows are null an indicator ``na_<feature>`` joins the design, so the
      fit can learn what "not measured" means instead of dropping those accounts. Complete-case
      fitting would throw away most rows of sparse signals such as NPS and bias the rest toward
      accounts that answer surveys. Columns that are all null or constant are dropped (noted).
    * Separation (our own checks: a feature that alone splits events from non-events, a pure or
      empty level of an indicator, statsmodels' perfect-separation warning, non-convergence, or a
      standard error above 5 log-odds per standard deviation): with ``on_separation="l2"`` the fit
      falls back to an L2-penalised one and says so in ``separation_`` and ``fallback_``.
    * ``standardize=True`` reports coefficients per standard deviation of each feature.

    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=4000)
    >>> df = pl.DataFrame({"account_id": np.arange(4000) // 4, "x": x,
    ...                    "y": rng.random(4000) < 1 / (1 + np.exp(-(x - 1)))})
    >>> fit = fit_logit(df, ["x"], "y")
    >>> round(fit.params_["x"], 1), fit.inference_
    (1.0, True)
    """
    if penalty not in (None, "l1", "l2"):
        raise _input_error("fit", f"penalty {penalty!r} is not known", "Use None, 'l2' or 'l1'")
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    features = list(dict.fromkeys(features))
    if outcome not in frame.columns:
        raise _input_error(
            "training rows",
            f"lacks the outcome column {outcome!r}",
            "Label the rows first with label_outcomes()",
            column=outcome,
        )
    if groups is not None and groups not in frame.columns:
        raise _input_error(
            "training rows",
            f"lacks the cluster column {groups!r}",
            "Pass groups= the account key column, or groups=None",
            column=groups,
        )
    frame = frame.filter(pl.col(outcome).is_not_null())
    y = _outcome_array(frame, outcome)
    n, n_events = len(y), int(y.sum())
    if n_events == 0 or n_events == n:
        raise _input_error(
            "training rows",
            f"every one of the {n:,} rows has the same outcome",
            "Use a longer history or horizon so both outcomes occur",
            column=outcome,
        )
    scaled = standardize or penalty is not None
    design, info = _prepare(frame, features, outcome, na_threshold, scaled)
    terms = ["const", *design.columns]
    X = _matrix(design)
    if groups is not None:
        codes = frame.select(pl.col(groups).rank("dense") - 1)[groups].to_numpy().astype(np.int64)
        n_groups = int(codes.max()) + 1
    else:
        codes, n_groups = np.arange(n), n
    rank = np.linalg.matrix_rank(X[: min(n, 50_000)] if n > 50_000 else X)
    if rank < X.shape[1]:
        raise _input_error(
            "training rows",
            f"the {len(terms) - 1} features are linearly dependent (rank {rank} of {X.shape[1]})",
            "Leave out one of each group of features that add up to another (see the VIF)",
        )

    separation = _separation_checks(design, y)
    res, fallback, fit_penalty, fit_alpha = None, None, penalty, alpha
    if penalty is None:
        try:
            res, problems = _mle(X, y, maxiter)
            separation += problems
        except (np.linalg.LinAlgError, ValueError) as exc:
            separation.append(f"quasi-separation suspected: the maximum-likelihood fit failed ({exc})")
        if res is not None and not separation:
            sd = [0.0, *(info["sd"][t] for t in terms[1:])]
            huge = [
                t
                for t, b, s, c in zip(terms, res.bse, sd, res.params)
                if t != "const" and (not np.isfinite(b) or b * s > _HUGE_SE_PER_SD or abs(c * s) > _HUGE_COEF_PER_SD)
            ]
            separation += [
                f"quasi-separation: {t} has a huge standard error or coefficient (the likelihood does not pin it down)"
                for t in huge
            ]
        if separation:
            if on_separation == "raise":
                raise _input_error(
                    "training rows", "; ".join(separation), "Drop or merge the feature, or fit with penalty='l2'"
                )
            if on_separation == "l2" or res is None:
                fallback = "L2-penalised fit because of quasi-separation (no valid standard errors)"
                fit_penalty, fit_alpha = "l2", alpha
                if not scaled:
                    design, info = _prepare(frame, features, outcome, na_threshold, True)
                    X = _matrix(design)
                scaled = True
                res = None
    if res is None:
        fit_alpha = 1e-3 if fit_alpha is None else float(fit_alpha)
        res = _penalised(X, y, fit_penalty or "l2", fit_alpha)
        inference = False
    else:
        inference = True
        res.model.data.xnames = terms  # statsmodels' own summary names the terms
        if groups is not None:
            _attach_cluster_cov(res, codes, n_groups)

    params = np.asarray(res.params, dtype=float)
    if scaled and not standardize:
        # the penalty needed standardised columns; report per unit of each feature as asked
        for j, t in enumerate(terms[1:], start=1):
            if t in info["scale"]:
                params[j] /= info["scale"][t]
                params[0] -= params[j] * info["center"][t]
        info["center"], info["scale"] = {}, {}
    if inference:
        bse = np.asarray(res.bse, dtype=float)
        naive = np.sqrt(np.diag(res.normalized_cov_params))
        ci = np.asarray(res.conf_int(), dtype=float)
        pvals = np.asarray(res.pvalues, dtype=float)
    else:
        bse = naive = pvals = np.full(len(terms), np.nan)
        ci = np.full((len(terms), 2), np.nan)
    return LogitResult(
        outcome=outcome,
        features=features,
        terms_=terms,
        params_=dict(zip(terms, params.tolist())),
        bse_=dict(zip(terms, bse.tolist())),
        naive_bse_=dict(zip(terms, naive.tolist())),
        conf_int_={t: (float(lo), float(hi)) for t, (lo, hi) in zip(terms, ci)},
        pvalues_=dict(zip(terms, pvals.tolist())),
        result_=res,
        n_obs_=n,
        n_events_=n_events,
        n_groups_=n_groups,
        penalty_=fit_penalty,
        alpha_=fit_alpha if fit_penalty else None,
        inference_=inference,
        fill_values_=info["fill"],
        na_indicators_=info["na"],
        center_=info["center"],
        scale_=info["scale"],
        dropped_=info["dropped"],
        separation_=separation,
        fallback_=fallback,
    )


# ---------------------------------------------------------------- leakage
def leakage_check(frame: pl.DataFrame, features: list[str], outcome: str, auc_limit: float = 0.95) -> pl.DataFrame:
    """Flag features that predict ``outcome`` (almost) perfectly on their own.

    No honest health signal measured at ``as_of`` separates next quarter's churners from the
    rest: a feature that does was almost certainly built with knowledge of the outcome (a status
    column updated after the fact, a label joined by mistake). Returns one row per feature with
    its AUC alone (direction-free: max(AUC, 1 - AUC)), whether it separates the outcome, and
    ``leak`` (either of the two).

    >>> import polars as pl
    >>> df = pl.DataFrame({"x": [1.0, 2, 3, 4], "y": [False, False, True, True]})
    >>> leakage_check(df, ["x"], "y")["leak"].to_list()
    [True]
    """
    from sklearn.metrics import roc_auc_score  # scikit-learn is loaded only when a model is fitted

    rows = []
    for c in features:
        part = frame.select(pl.col(c).cast(pl.Float64), pl.col(outcome).cast(pl.Boolean)).drop_nulls()
        y = part[outcome].to_numpy()
        if part.height == 0 or y.all() or not y.any() or part[c].n_unique() < 2:
            rows.append((c, None, False, False))
            continue
        auc = float(roc_auc_score(y, part[c].to_numpy()))
        auc = max(auc, 1.0 - auc)
        separated = bool(_separation_checks(part.select(c), y.astype(float)))
        rows.append((c, auc, separated, separated or auc >= auc_limit))
    return pl.DataFrame(
        rows,
        schema={"feature": pl.Utf8, "auc_alone": pl.Float64, "separated": pl.Boolean, "leak": pl.Boolean},
        orient="row",
    )


# ---------------------------------------------------------------- weight fitting
def is_adverse(outcome: str) -> bool:
    """Whether ``outcome`` is bad news (churn, contraction): then a higher sub-score should lower
    its odds. For expansion a higher sub-score should raise them. The rule is the backtest's
    (the outcome's definition), so a fit and its evaluation never disagree on direction."""
    return resolve_outcome(outcome).adverse


def _orientation(model: Any, features: str) -> dict[str, float]:
    """+1 where a larger feature value means healthier, -1 where it means less healthy: sub-scores
    are always oriented (100 is good); raw columns follow the metric's direction."""
    # a categorical metric enters a raw fit as its level scores, which are oriented already
    return {
        m.name: -1.0 if features == "raw" and m.direction == "lower_is_better" and m.method != "categorical" else 1.0
        for m in model.metrics
    }


def _raw_numeric(model: Any, cols: dict[str, str], schema: pl.Schema) -> list[pl.Expr]:
    """Raw columns a regression can take: yes/no as 0/1, a categorical metric as its level scores.

    A text column with no categorical calibration cannot be fitted raw: the error says so.
    """

    exprs = []
    for m in model.metrics:
        col = cols.get(m.name)
        if col is None:
            continue
        if m.method == "categorical":
            exprs.append(calibrate_expr(col, m.method, m.params, m.direction))
        elif schema[col] == pl.Boolean:
            exprs.append(pl.col(col).cast(pl.Float64))
        elif schema[col] == pl.Utf8:
            raise _input_error(
                "snapshots",
                f"column {col!r} of metric {m.name} holds text",
                "Give the metric a categorical calibration (its levels become scores), or fit "
                "on sub-scores (features='subscores')",
                column=col,
            )
    return exprs


def _feature_columns(model: Any, features: str) -> dict[str, str]:
    """metric name -> the column the fit uses for it."""
    if features == "subscores":
        return {m.name: f"sub_{m.name}" for m in model.metrics}
    if features == "raw":
        out: dict[str, str] = {}
        for m in model.metrics:  # two metrics on one raw column share it: fit it once
            if m.column not in out.values():
                out[m.name] = m.column
        return out
    raise _input_error(
        "fit_weights",
        f"features={features!r} is not known",
        "Use 'subscores' (the model's calibrated 0..100 sub-scores) or 'raw' (raw columns)",
    )


def _vif(X: np.ndarray, terms: list[str]) -> dict[str, float]:
    from statsmodels.stats.outliers_influence import (
        variance_inflation_factor,  # statsmodels takes about a second to import; only fits and tests need it
    )

    with np.errstate(divide="ignore", invalid="ignore"):
        return {t: float(variance_inflation_factor(X, j)) for j, t in enumerate(terms) if j > 0}


def _collinear_groups(
    X: np.ndarray, terms: list[str], vif: dict[str, float], corr_limit: float, vif_limit: float
) -> list[list[str]]:
    """Groups of features that move together: |correlation| above ``corr_limit`` links two
    features; a feature with a VIF above ``vif_limit`` joins its most correlated partner."""
    names = terms[1:]
    if len(names) < 2:
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.nan_to_num(np.corrcoef(X[:, 1:], rowvar=False))
    np.fill_diagonal(corr, 0.0)
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    links = list(zip(*np.nonzero(np.triu(np.abs(corr) > corr_limit))))
    links += [(i, int(np.argmax(np.abs(corr[i])))) for i, t in enumerate(names) if vif.get(t, 0) > vif_limit]
    for i, j in links:
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[str]] = {}
    for i, t in enumerate(names):
        groups.setdefault(root(i), []).append(t)
    return [g for g in groups.values() if len(g) > 1]


@dataclass
class WeightFit:
    """Weights learned from history for one score model, with the evidence behind them.

    ``table`` has one row per metric: coefficient (per sub-score point), odds ratio per 10 points
    with its 95% interval, p-value, VIF and flags; ``flags`` hold the warnings about the whole
    fit. :meth:`suggested_model` turns the coefficients into weights, :meth:`comparison` shows
    current against suggested, :meth:`save_suggested` writes the new model file.
    """

    model: Any
    outcome: str
    horizon: str
    features: str
    logit: LogitResult
    table: pl.DataFrame
    flags: list[str]
    groups: list[list[str]]
    leakage: pl.DataFrame
    adverse: bool
    significance: float = 0.05
    floor: float = 0.0
    basis: LogitResult | None = None
    drop_insignificant: bool = False
    # the history the fit learned from: save_suggested takes the model's monitoring reference on it
    history: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)
    # what "within" means when it is not the horizon (one snapshot per account: the observation window)
    window: str | None = None
    # what the fit learned from (``fitted_record``): the suggested model carries it as ``[fitted]``
    fitted: dict[str, Any] | None = None

    # ------------------------------------------------------------ report
    def summary(self) -> Summary:
        """A readable text table of the fit, one line per metric, then every flag."""
        lg = self.logit
        unit = "per 10 points" if self.features == "subscores" else "per SD"
        want = "lower" if self.adverse else "raise"
        head = [
            f"Weight fit of model {self.model.name!r} v{self.model.version} on {self.outcome!r} within {self.window or self.horizon}",
            f"{lg.n_obs_:,} snapshots of {lg.n_groups_:,} accounts, {lg.n_events_:,} events; "
            + ("standard errors clustered by account" if lg.inference_ else "penalised fit: no valid standard errors"),
            f"a healthy metric should {want} the odds of {self.outcome!r}: odds ratio {unit} "
            f"{'below' if self.adverse else 'above'} 1",
            "",
            f"{'metric':<24}{'coef':>10}{'OR ' + unit:>18}{'95% CI':>14}{'p':>9}{'VIF':>7}  flags",
        ]
        body = []
        for r in self.table.iter_rows(named=True):
            if r["coef"] is None:
                body.append(f"{r['metric']:<24}{'-':>10}{'-':>18}{'-':>14}{'-':>9}{'-':>7}  {r['flags']}")
                continue
            ci = (
                "-"
                if r["or_lower"] is None or r["or_lower"] != r["or_lower"]
                else f"{r['or_lower']:.2f}-{r['or_upper']:.2f}"
            )
            vif = "-" if r["vif"] is None else f"{r['vif']:.1f}"
            body.append(
                f"{r['metric']:<24}{r['coef']:>10.4f}{r['odds_ratio']:>18.3f}{ci:>14}"
                f"{_fmt_p(r['p_value']):>9}{vif:>7}  {r['flags']}"
            )
        tail = ([""] + [f"! {f}" for f in self.flags]) if self.flags else []
        return Summary("\n".join(head + body + tail))

    def __repr__(self) -> str:
        return f"WeightFit({self.model.name!r}, {self.outcome!r}, {self.horizon}, {self.table.height} metrics)"

    # ------------------------------------------------------------ suggestions
    def to_frame(self) -> pl.DataFrame:
        """One row per metric: coefficient, odds ratio per 10 points with its interval, p-value, VIF, flags."""
        return self.table

    def suggested_weights(self) -> pl.DataFrame:
        """Metric weights from the coefficients, with the reason for each.

        A metric's weight is proportional to the change in log-odds its coefficient implies per
        10 sub-score points, in the direction a healthy metric should push (its risk reduction for
        churn, its lift for expansion). The coefficients come from ``basis``: a refit in which an
        N/A sub-score is filled the way the score itself fills it (by its category's score, else
        the overall score), so the weights fit the score as it will be computed. Metrics with the
        wrong sign or that could not be fitted get ``floor`` (0 by default): a score should not
        reward a signal the history contradicts. Metrics that are not significant keep their
        (small) estimate, as zeroing them throws away real but noisy signal; with
        ``drop_insignificant=True`` they get the floor too. Weights are scaled to add up to 100,
        so each is the metric's share of the score in percent; a category's weight is the sum of
        its metrics' shares.
        """
        rows = self._strengths()
        strength = {m: s for m, _, s, fixed, _ in rows if fixed is None}
        total = sum(strength.values())
        if total <= 0:
            raise _input_error(
                "fit_weights",
                f"no metric has an effect in the healthy direction on {self.outcome!r}",
                "Keep the current weights; try a longer history, a longer horizon or penalty='l2'",
            )
        floors = sum(fixed for _, _, _, fixed, _ in rows if fixed is not None)
        budget = max(100.0 - floors, 0.0)
        out = [
            (m, c, round(budget * strength[m] / total, 1) if fixed is None else float(fixed), why)
            for m, c, _, fixed, why in rows
        ]
        return pl.DataFrame(
            out, schema={"metric": pl.Utf8, "category": pl.Utf8, "weight": pl.Float64, "reason": pl.Utf8}, orient="row"
        )

    def _good(self, metric: str, coef: float) -> float:
        """A coefficient as the change in log-odds in the healthy direction per 10 points (per SD raw)."""
        step = 10.0 if self.features == "subscores" else 1.0
        return (-coef if self.adverse else coef) * step * _orientation(self.model, self.features)[metric]

    def _strengths(self) -> list[tuple[str, str, float, float | None, str]]:
        """Per metric: (metric, category, strength, fixed weight or None when free, reason)."""
        basis = self.basis or self.logit
        how = "per 10 points" if self.features == "subscores" else "per SD"
        rows: list[tuple[str, str, float, float | None, str]] = []
        for r in self.table.iter_rows(named=True):
            f = r["feature"]
            if f not in basis.params_:
                rows.append((r["metric"], r["category"], 0.0, self.floor, "could not be fitted: set to the floor"))
                continue
            coef, p = basis.params_[f], basis.pvalues_[f]
            good = self._good(r["metric"], coef)
            if good <= 0:
                rows.append((r["metric"], r["category"], 0.0, self.floor, "wrong sign: set to the floor"))
            elif basis.inference_ and not (p <= self.significance):
                if self.drop_insignificant:
                    rows.append(
                        (r["metric"], r["category"], good, self.floor, f"not significant (p={p:.2f}): set to the floor")
                    )
                else:
                    rows.append(
                        (
                            r["metric"],
                            r["category"],
                            good,
                            None,
                            f"proportional to its effect {how} (not significant, p={p:.2f})",
                        )
                    )
            else:
                rows.append((r["metric"], r["category"], good, None, f"proportional to its effect {how}"))
        return rows

    def suggested_shares(self) -> pl.DataFrame:
        """Each metric's suggested share of the score in percent, with an interval in the same unit.

        ``share`` is the suggested model's :meth:`~healthscore.spec.model.ScoreModel.weight_shares`
        (the one rule for shares). ``share_lower``/``share_upper`` put the ends of the coefficient's
        95% interval (from the same fit as the suggestion) through the same rule, the other metrics
        held at their estimates; an effect whose interval reaches the unhealthy side gets 0 there.
        Null where the fit gives no interval (a penalised fit, a metric that could not be fitted).
        """
        shares = self.suggested_model().weight_shares()
        basis = self.basis or self.logit
        rows = self._strengths()
        total = sum(s for _, _, s, fixed, _ in rows if fixed is None)
        budget = max(100.0 - sum(fixed for _, _, _, fixed, _ in rows if fixed is not None), 0.0)
        feature = dict(self.table.select("metric", "feature").iter_rows())
        out = []
        for m in self.model.metrics:
            point = shares[m.name]
            f = feature.get(m.name)
            row = next((r for r in rows if r[0] == m.name), None)
            if row is None or f not in basis.params_ or f not in basis.conf_int_ or not basis.inference_:
                out.append((m.name, m.category, point, None, None))
                continue
            others = total - (row[2] if row[3] is None else 0.0)
            ends = []
            for coef in basis.conf_int_[f]:
                g = max(self._good(m.name, coef), 0.0)
                ends.append(budget * g / (g + others) if g + others > 0 else 0.0)
            # the suggested weights are rounded to 0.1: keep the point inside its own interval
            out.append((m.name, m.category, point, min(*ends, point), max(*ends, point)))
        return pl.DataFrame(
            out,
            schema={
                "metric": pl.Utf8,
                "category": pl.Utf8,
                "share": pl.Float64,
                "share_lower": pl.Float64,
                "share_upper": pl.Float64,
            },
            orient="row",
        )

    def suggested_model(self) -> Any:
        """A new ScoreModel with the suggested metric and category weights and a bumped version."""
        w = self.suggested_weights()
        metrics = dict(zip(w["metric"].to_list(), w["weight"].to_list()))
        names = {m.name for m in self.model.metrics}
        for m in names - set(metrics):  # metrics that shared a raw column with another
            metrics[m] = self.floor
        cats = w.group_by("category").agg(pl.col("weight").sum()).sort("category")
        categories = {c: round(v, 1) for c, v in cats.iter_rows()}
        categories.update({c: 0.0 for c in self.model.categories if c not in categories})
        new = self.model.with_weights(metrics=metrics, categories=categories)
        if any(v.weights or v.categories for v in new.variants):
            # one fit learns one set of weights for every account: a variant's own weights would
            # silently replace them for its accounts (segment_lr_test says whether to split)
            new = replace(new, variants=[replace(v, weights={}, categories={}) for v in new.variants])
            new.validate()
        return new.bump_version().with_fitted(self.fitted)

    def comparison(self) -> pl.DataFrame:
        """Current against suggested weights: each metric's effective share of the score (metric
        weight within its category times the category's share), in percent."""
        new = self.suggested_model()
        reasons = dict(self.suggested_weights().select("metric", "reason").iter_rows())
        cur, sug = self.model.weight_shares(), new.weight_shares()
        rows = [
            (
                m.name,
                m.category,
                m.weight,
                round(cur[m.name], 1),
                n.weight,
                round(sug[m.name], 1),
                round(sug[m.name] - cur[m.name], 1),
                reasons.get(m.name, "shares its raw column"),
            )
            for m, n in zip(self.model.metrics, new.metrics)
        ]
        return pl.DataFrame(
            rows,
            schema={
                "metric": pl.Utf8,
                "category": pl.Utf8,
                "current_weight": pl.Float64,
                "current_share": pl.Float64,
                "suggested_weight": pl.Float64,
                "suggested_share": pl.Float64,
                "change": pl.Float64,
                "reason": pl.Utf8,
            },
            orient="row",
        )

    def comparison_text(self) -> str:
        """:meth:`comparison` as a readable table."""
        t = self.comparison()
        lines = [f"{'metric':<24}{'category':<14}{'current %':>10}{'suggested %':>13}{'change':>8}  reason"]
        lines += [
            f"{r['metric']:<24}{r['category']:<14}{r['current_share']:>10.1f}{r['suggested_share']:>13.1f}"
            f"{r['change']:>+8.1f}  {r['reason']}"
            for r in t.iter_rows(named=True)
        ]
        if self.basis is not None:
            lines += [
                "",
                "Suggested weights come from a refit in which each N/A sub-score is filled the way the score fills it",
                "(its category's score, else the overall score), so their p-values "
                "and signs can differ from the table above.",
            ]
        return "\n".join(lines)

    def save_suggested(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the suggested model to a new TOML file, keeping the comments of the model's file.

        Refuses to replace an existing file unless ``overwrite=True``. The file also gets a
        ``[reference]`` table: the fitted score's distribution, its metrics' and its AUC on the
        history it was fitted on, which ``healthscore monitor`` later holds new snapshots against.
        """
        target = Path(path)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; choose a new file name or pass overwrite=True")
        model = self.suggested_model()
        if self.history is not None:
            # monitoring builds on this module's labels: imported here to keep the import graph acyclic

            snapshots, events = self.history
            model = model.with_reference(
                reference_from(snapshots, events, model, outcome=self.outcome, horizon=self.horizon)
            )
        return model.save(target)


def training_rows(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame,
    model: Any,
    outcome: str = "churned",
    horizon: str = "90d",
    features: str = "subscores",
    cadence: Literal["weekly", "monthly"] = "weekly",
    data_end: date | None = None,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Labelled rows ready to fit, and the metric -> column map of the features.

    Sub-scores are calibrated on the full history first (trend metrics need the weeks before
    ``as_of``), then the rows are labelled point-in-time.
    """
    cols = _feature_columns(model, features)
    if features == "subscores":
        frame = calibrate(snapshots, model)
    else:
        frame = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
        missing = [c for c in cols.values() if c not in frame.columns]
        if missing:
            raise _input_error(
                "snapshots",
                f"lacks the raw metric column(s) {missing}",
                "Pass snapshots with every metric column of the model",
                column=missing[0],
            )
        frame = frame.with_columns(_raw_numeric(model, cols, frame.schema))
    return label_outcomes(frame, events, outcome=outcome, horizon=horizon, cadence=cadence, data_end=data_end), cols


def fit_weights(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame,
    model: Any,
    *,
    outcome: str = "churned",
    horizon: str = "90d",
    features: Literal["subscores", "raw"] = "subscores",
    penalty: Literal["l2", "l1"] | None = None,
    alpha: float | None = None,
    cadence: Literal["weekly", "monthly"] = "weekly",
    data_end: date | None = None,
    na_threshold: float = 0.05,
    significance: float = 0.05,
    floor: float = 0.0,
    drop_insignificant: bool = False,
    min_epv: float = 10.0,
    vif_limit: float = 5.0,
    corr_limit: float = 0.8,
) -> WeightFit:
    """Learn a score model's weights from history: which metrics actually predict ``outcome``.

    Features are the model's calibrated sub-scores (``features="raw"``: the raw metric columns,
    standardised), so each coefficient maps onto one metric of the model. The fit is
    :func:`fit_logit` with standard errors clustered by account. Expansion works the same way
    (``outcome="expanded"``): then a higher sub-score should raise the odds.

    Flags per metric: wrong sign, not significant, collinear group (VIF above ``vif_limit`` or
    |correlation| above ``corr_limit``), quasi-separation; for the whole fit: too few events
    (fewer than ``min_epv`` events per feature), separation and the L2 fallback, features that
    look like leaks from the future.

    >>> import healthscore as hs
    >>> p = hs.make_portfolio(n_accounts=400, n_weeks=40, seed=2)
    >>> fit = fit_weights(p.snapshots, p.events, hs.load_model(hs.datasets.sample_dir() / "model.toml"))
    >>> fit.table.columns[:4]
    ['metric', 'category', 'feature', 'coef']
    """
    adverse = is_adverse(outcome)
    rows, cols = training_rows(snapshots, events, model, outcome, horizon, features, cadence, data_end)
    feats = list(cols.values())
    if rows.is_empty():
        raise _input_error(
            "snapshots",
            f"no snapshot can be labelled for {outcome!r} within {horizon}",
            "The history must be longer than the horizon: pass more weeks or a shorter horizon",
        )
    flags: list[str] = []
    leak = leakage_check(rows, feats, outcome)
    for r in leak.filter(pl.col("leak")).iter_rows(named=True):
        how = "separates it" if r["separated"] else f"has AUC {r['auc_alone']:.3f} on its own"
        flags.append(
            f"possible leakage: {r['feature']} {how}; a signal measured at as_of should not know "
            "the future so well. Check how the column is built before trusting any weight"
        )
    fit = fit_logit(
        rows,
        feats,
        outcome,
        groups="account_id",
        penalty=penalty,
        alpha=alpha,
        standardize=features == "raw",
        na_threshold=na_threshold,
    )
    n_feat = len(fit.terms_) - 1
    epv = fit.n_events_ / max(n_feat, 1)
    if epv < min_epv:
        msg = (
            f"too few events: {fit.n_events_} events for {n_feat} features is {epv:.1f} events per variable "
            f"(below {min_epv:g}); estimates are unstable. Use a longer history, fewer metrics or penalty='l2'"
        )
        flags.append(msg)
        warnings.warn(msg, stacklevel=2)
    flags += fit.separation_
    if fit.fallback_:
        flags.append(f"fell back to an {fit.fallback_}")

    X = fit.design(rows)
    vif = _vif(X, fit.terms_)
    groups = _collinear_groups(X, fit.terms_, vif, corr_limit, vif_limit)
    by_feature = {f: m for m, f in cols.items()}
    for g in groups:
        names = [by_feature.get(t, t) for t in g]
        flags.append(
            f"collinear group {names}: these move together, so their separate weights are unreliable; "
            "consider merging them into one metric"
        )
    table = _metric_table(model, cols, fit, vif, groups, leak, adverse, significance, features)
    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    if is_cross_sectional(snaps):
        end = data_end or observation_end(
            snaps, events.collect() if isinstance(events, pl.LazyFrame) else events, outcome
        )
        window = f"the observation window (as_of .. {end}; one snapshot per account, so that window is the horizon)"
    else:
        window, end = None, None
    wf = WeightFit(
        model=model,
        outcome=outcome,
        horizon=parse_horizon(horizon),
        features=features,
        logit=fit,
        table=table,
        flags=flags,
        groups=groups,
        leakage=leak,
        adverse=adverse,
        significance=significance,
        floor=floor,
        drop_insignificant=drop_insignificant,
        history=(snapshots, events),
        window=window,
        fitted=fitted_record(
            snapshots,
            rows,
            model,
            method="weights",
            outcome=outcome,
            horizon=horizon,
            data_end=end if window is not None else data_end,
        ),
    )
    if features == "subscores" and fit.inference_:
        wf.basis = _score_consistent_fit(wf, rows, outcome, penalty, alpha)
    return wf


def _score_consistent_fit(
    wf: WeightFit, rows: pl.DataFrame, outcome: str, penalty: str | None, alpha: float | None
) -> LogitResult | None:
    """Refit with each N/A sub-score filled as the score fills it under the first suggestion.

    The score leaves an N/A metric out and renormalises: the same as giving it its category's
    score (or, when the whole category is N/A, the overall score). The main fit fills with the
    column mean instead, which is right for estimating effects but not for weights that will be
    used through that renormalisation. None when no first suggestion exists.
    """
    try:
        first = wf.suggested_model()
    except Exception:
        return None
    scored = combine(rows, first)
    fills = [
        pl.col(f"sub_{m.name}").fill_null(pl.col(f"cat_{m.category}")).fill_null(pl.col("score"))
        for m in wf.model.metrics
        if f"cat_{m.category}" in scored.columns
    ]
    filled = scored.with_columns(fills).drop_nulls("score")
    feats = [f for f in wf.table["feature"].to_list() if f in filled.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fit_logit(filled, feats, outcome, groups="account_id", penalty=penalty, alpha=alpha)
        except ValueError:
            return None


def _metric_table(
    model: Any,
    cols: dict[str, str],
    fit: LogitResult,
    vif: dict[str, float],
    groups: list[list[str]],
    leak: pl.DataFrame,
    adverse: bool,
    significance: float,
    features: str,
) -> pl.DataFrame:
    step = 10.0 if features == "subscores" else 1.0
    healthy = _orientation(model, features)
    leaks = set(leak.filter(pl.col("leak"))["feature"].to_list())
    sep_text = " ".join(fit.separation_)
    rows = []
    for m in model.metrics:
        if m.name not in cols:
            continue
        f = cols[m.name]
        if f not in fit.params_:
            rows.append(
                (
                    m.name,
                    m.category,
                    f,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    f"dropped: {fit.dropped_.get(f, 'not fitted')}",
                )
            )
            continue
        coef, p = fit.params_[f], fit.pvalues_[f]
        lo, hi = fit.conf_int_[f]
        flags = []
        if coef * healthy[m.name] * (-1.0 if adverse else 1.0) < 0:  # pushes the unhealthy way
            flags.append("wrong sign")
        if fit.inference_ and not (p <= significance):
            flags.append("not significant")
        group = next((g for g in groups if f in g), None)
        if group:
            flags.append("collinear: " + "+".join(t.removeprefix("sub_") for t in group))
        if f in sep_text:
            flags.append("quasi-separation")
        if f in leaks:
            flags.append("possible leakage")
        rows.append(
            (
                m.name,
                m.category,
                f,
                coef,
                fit.bse_[f],
                float(np.exp(step * coef)),
                float(np.exp(step * lo)),
                float(np.exp(step * hi)),
                p,
                vif.get(f),
                ", ".join(flags),
            )
        )
    return pl.DataFrame(
        rows,
        schema={
            "metric": pl.Utf8,
            "category": pl.Utf8,
            "feature": pl.Utf8,
            "coef": pl.Float64,
            "se": pl.Float64,
            "odds_ratio": pl.Float64,
            "or_lower": pl.Float64,
            "or_upper": pl.Float64,
            "p_value": pl.Float64,
            "vif": pl.Float64,
            "flags": pl.Utf8,
        },
        orient="row",
    )


# ---------------------------------------------------------------- segments
@dataclass
class SegmentTest:
    """Likelihood-ratio test of one pooled fit against one fit per segment."""

    by: str
    outcome: str
    lr: float
    df: int
    pvalue: float
    pooled: LogitResult
    segments: dict[str, LogitResult]
    table: pl.DataFrame
    verdict: str
    notes: list[str] = field(default_factory=list)

    @property
    def p_value(self) -> float:
        """The likelihood-ratio test's p-value (the one name for it across healthscore)."""
        return self.pvalue

    def to_frame(self) -> pl.DataFrame:
        """One row per fit (pooled and each segment) with its coefficients."""
        return self.table

    def summary(self) -> Summary:
        """The verdict, the test statistic, and each segment's size."""
        lines = [self.verdict, f"LR = {self.lr:.2f} on {self.df} degrees of freedom, p = {self.pvalue:.3g}", ""]
        lines += [
            f"{r[self.by]:<16}{r['rows']:>9,} rows{r['events']:>7,} events  log-likelihood {r['loglik']:.1f}"
            for r in self.table.iter_rows(named=True)
        ]
        return Summary("\n".join(lines + [f"note: {n}" for n in self.notes]))


def segment_lr_test(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame,
    model: Any,
    *,
    by: str = "touch_model",
    outcome: str = "churned",
    horizon: str = "90d",
    features: Literal["subscores", "raw"] = "subscores",
    cadence: Literal["weekly", "monthly"] = "monthly",
    na_threshold: float = 0.05,
    alpha: float = 0.05,
) -> SegmentTest:
    """Do segments (e.g. high-touch and digital accounts) need separate scorecards?

    Fits the model's metrics once on all rows (pooled) and once per value of ``by``; twice the
    gain in log-likelihood is chi-square distributed with as many degrees of freedom as the
    per-segment fits add. A small p-value means the metrics predict ``outcome`` differently per
    segment. The likelihood-ratio test treats rows as independent, so repeated snapshots of one
    account make it too eager: hence one row per account and month by default.

    >>> import healthscore as hs
    >>> p = hs.make_portfolio(n_accounts=600, n_weeks=52, seed=4)
    >>> t = segment_lr_test(p.snapshots, p.events, hs.load_model(hs.datasets.sample_dir() / "model.toml"))
    >>> t.df > 0 and 0 <= t.pvalue <= 1
    True
    """
    from scipy.stats import chi2  # scipy.stats is loaded only when a test statistic is computed

    rows, cols = training_rows(snapshots, events, model, outcome, horizon, features, cadence)
    if by not in rows.columns:
        raise _input_error(
            "snapshots",
            f"has no segment column {by!r}",
            "Name an attribute column such as 'touch_model' or 'segment'",
            column=by,
        )
    rows = rows.filter(pl.col(by).is_not_null())
    feats = list(cols.values())
    levels = sorted(rows[by].unique().to_list(), key=str)
    if len(levels) < 2:
        raise _input_error(
            "snapshots",
            f"has {len(levels)} value(s) of {by!r}: nothing to compare",
            "Pick a column with at least two segments",
            column=by,
        )
    kw = dict(groups="account_id", na_threshold=na_threshold, on_separation="keep")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooled = fit_logit(rows, feats, outcome, **kw)
        fits = {str(v): fit_logit(rows.filter(pl.col(by) == v), feats, outcome, **kw) for v in levels}
    notes = [f"{name}: {s}" for name, f in {"pooled": pooled, **fits}.items() for s in f.separation_]
    llf_pooled = float(pooled.result_.llf)
    llf_seg = sum(float(f.result_.llf) for f in fits.values())
    df = sum(len(f.terms_) for f in fits.values()) - len(pooled.terms_)
    lr = max(2.0 * (llf_seg - llf_pooled), 0.0)
    p = float(chi2.sf(lr, df)) if df > 0 else 1.0
    names = ", ".join(str(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
    if p < alpha:
        verdict = f"separate scorecards per {by} ({names}) are warranted (p={p:.3g})"
    else:
        verdict = f"one pooled scorecard serves every {by} ({names}); separate ones are not warranted (p={p:.3g})"
    if notes:
        verdict += "; treat with care: some fits show quasi-separation"
    table = pl.DataFrame(
        [(str(v), f.n_obs_, f.n_events_, float(f.result_.llf)) for v, f in fits.items()],
        schema={by: pl.Utf8, "rows": pl.Int64, "events": pl.Int64, "loglik": pl.Float64},
        orient="row",
    )
    return SegmentTest(
        by=by,
        outcome=outcome,
        lr=lr,
        df=df,
        pvalue=p,
        pooled=pooled,
        segments=fits,
        table=table,
        verdict=verdict,
        notes=notes,
    )
