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

import re
import warnings
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import numpy as np
import polars as pl

__all__ = ["label_outcomes", "parse_horizon", "fit_logit", "LogitResult", "TERMINAL_OUTCOMES"]

# Outcomes after which an account leaves the book: no snapshot after the first one is labellable.
TERMINAL_OUTCOMES = frozenset({"churned"})

_HORIZON = re.compile(r"^\s*(\d+)\s*(d|w|mo)\s*$")


def _input_error(source: str, message: str, fix: str, column: str | None = None) -> Exception:
    """A ValidationError naming the table (and column) at fault and what to do about it."""
    from healthscore.snapshots import Problem, ValidationError
    return ValidationError(source, [Problem("fitting", column, message, fix)])


def parse_horizon(horizon: str) -> str:
    """Check a horizon such as ``"90d"``, ``"13w"`` or ``"3mo"`` and return it normalised.

    >>> parse_horizon(" 13w ")
    '13w'
    """
    m = _HORIZON.match(str(horizon))
    if not m or int(m.group(1)) == 0:
        raise _input_error("horizon", f"horizon {horizon!r} is not understood",
                           "Write a positive number of days, weeks or calendar months, e.g. '90d', '13w' or '3mo'")
    return f"{int(m.group(1))}{m.group(2)}"


def _require(frame: pl.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise _input_error(what, f"lacks column(s) {missing}; it has {frame.columns[:12]}",
                           f"Rename the columns or pass a {what} table with {columns}", column=missing[0])


def _as_date(frame: pl.DataFrame, column: str, what: str) -> pl.DataFrame:
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return frame
    if isinstance(dtype, pl.Datetime):
        return frame.with_columns(pl.col(column).dt.date())
    raise _input_error(what, f"must be a date, not {dtype}",
                       f"Parse it first, e.g. pl.col({column!r}).str.to_date()", column=column)


def label_outcomes(
    snapshots: pl.DataFrame | pl.LazyFrame,
    events: pl.DataFrame | pl.LazyFrame,
    outcome: str = "churned",
    horizon: str = "90d",
    cadence: Literal["weekly", "monthly"] = "weekly",
    data_end: date | None = None,
    terminal: bool | None = None,
) -> pl.DataFrame:
    """Label each snapshot by whether ``outcome`` happens in ``(as_of, as_of + horizon]``.

    Rules, so the labels are point-in-time and unbiased:

    * the event must fall strictly after ``as_of`` and on or before ``as_of + horizon``;
    * terminal outcomes (``churned`` by default, see ``terminal``): snapshots on or after the
      account's first such event are dropped; non-terminal outcomes (``expanded``) label each
      snapshot by the next event after it and keep going;
    * censored rows are dropped: those with ``as_of + horizon`` past the end of the data, which
      is the last snapshot ``as_of`` unless ``data_end`` is given;
    * ``cadence="monthly"`` keeps one snapshot per account and calendar month (the last one),
      for fits that want fewer, less dependent rows.

    The result holds the snapshot columns unchanged plus one Boolean column named ``outcome``,
    sorted by ``account_id`` and ``as_of``. Nothing else from the future is joined on.

    >>> import datetime as dt, polars as pl
    >>> snaps = pl.DataFrame({"account_id": ["a"] * 4,
    ...     "as_of": [dt.date(2024, 1, 1) + dt.timedelta(weeks=k) for k in range(4)]})
    >>> ev = pl.DataFrame({"account_id": ["a"], "date": [dt.date(2024, 1, 10)], "event": ["churned"]})
    >>> label_outcomes(snaps, ev, horizon="7d", data_end=dt.date(2024, 3, 1))["churned"].to_list()
    [False, True]
    """
    if cadence not in ("weekly", "monthly"):
        raise _input_error("cadence", f"cadence {cadence!r} is not known",
                           "Use 'weekly' (every snapshot) or 'monthly' (the last snapshot of each month)")
    horizon = parse_horizon(horizon)
    if terminal is None:
        terminal = outcome in TERMINAL_OUTCOMES
    snaps = snapshots.collect() if isinstance(snapshots, pl.LazyFrame) else snapshots
    ev = events.collect() if isinstance(events, pl.LazyFrame) else events
    _require(snaps, ["account_id", "as_of"], "snapshots")
    _require(ev, ["account_id", "date", "event"], "events")
    if outcome in snaps.columns:
        raise _input_error("snapshots", f"already has a column named after the outcome {outcome!r}",
                           "Outcomes come from the events table only: drop or rename that column so no "
                           "label can leak into the features", column=outcome)
    snaps = _as_date(snaps, "as_of", "snapshots")
    ev = _as_date(ev, "date", "events")
    if snaps.is_empty():
        return snaps.with_columns(pl.lit(None, pl.Boolean).alias(outcome)).clear()

    if data_end is None:
        data_end = snaps["as_of"].max()
    ev = (ev.lazy()
          .filter(pl.col("event") == outcome)
          .select(pl.col("account_id").cast(snaps.schema["account_id"]), pl.col("date"))
          .drop_nulls()
          .unique()
          .sort("account_id", "date")
          .collect())
    if ev.is_empty():
        warnings.warn(f"the events table holds no {outcome!r} event: every label is False", stacklevel=2)

    rows = snaps.lazy()
    if cadence == "monthly":
        rows = (rows.sort("account_id", "as_of")
                .filter(pl.col("as_of") == pl.col("as_of").max()
                        .over("account_id", pl.col("as_of").dt.truncate("1mo"))))
    end = pl.col("as_of").dt.offset_by(horizon)
    rows = rows.with_columns(_next_after=pl.col("as_of").dt.offset_by("1d")).sort("account_id", "_next_after")
    # forward as-of join on as_of + 1 day: the first event strictly after as_of
    labelled = rows.join_asof(ev.lazy().rename({"date": "_event"}), left_on="_next_after", right_on="_event",
                              by="account_id", strategy="forward", check_sortedness=False)
    if terminal:
        first = ev.group_by("account_id").agg(_first=pl.col("date").min()).lazy()
        labelled = (labelled.join(first, on="account_id", how="left")
                    .filter(pl.col("_first").is_null() | (pl.col("as_of") < pl.col("_first"))))
    out = (labelled
           .filter(end <= pl.lit(data_end))
           .with_columns(pl.col("_event").is_not_null().and_(pl.col("_event") <= end).alias(outcome))
           .select(*snaps.columns, outcome)
           .sort("account_id", "as_of")
           .collect())
    return out


# ---------------------------------------------------------------- logistic fits
_ADVERSE_OUTCOMES = frozenset({"churned", "contracted"})
# A standard error above this many log-odds per standard deviation of the feature means the
# likelihood is flat in that direction: the mark of (quasi-)separation, not of a real effect.
_HUGE_SE_PER_SD = 5.0
_HUGE_COEF_PER_SD = 10.0
_BIG_DATA = 200_000  # above this many rows, start Newton from a fit on a subsample


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
        return pl.DataFrame({
            "term": t,
            "coef": [self.params_[k] for k in t],
            "se": [self.bse_[k] for k in t],
            "p": [self.pvalues_[k] for k in t],
            "ci_low": [self.conf_int_[k][0] for k in t],
            "ci_high": [self.conf_int_[k][1] for k in t],
            "naive_se": [self.naive_bse_[k] for k in t],
        }, schema={"term": pl.Utf8, "coef": pl.Float64, "se": pl.Float64, "p": pl.Float64,
                   "ci_low": pl.Float64, "ci_high": pl.Float64, "naive_se": pl.Float64})

    def design(self, frame: pl.DataFrame) -> np.ndarray:
        """The design matrix (``const`` first) this fit would build from ``frame``: same fills,
        indicators and scaling as in training, so it can score new rows."""
        cols = [pl.lit(1.0).alias("const")]
        for term in self.terms_[1:]:
            if term in self.na_indicators_:
                src = term[len("na_"):]
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

    def summary(self) -> str:
        """A readable report: the fit, each term, and every note about the data."""
        kind = "clustered by account" if self.inference_ else "none (penalised fit)"
        head = [f"Logistic regression of {self.outcome!r}: {self.n_obs_:,} rows, {self.n_events_:,} events, "
                f"{self.n_groups_:,} accounts",
                f"fit: {'maximum likelihood' if self.penalty_ is None else self.penalty_.upper() + ' penalised'}"
                f"{'' if self.alpha_ is None else f' (alpha={self.alpha_:g})'}; standard errors: {kind}"]
        if self.fallback_:
            head.append(f"fallback: {self.fallback_}")
        lines = [f"{'term':<28}{'coef':>11}{'se':>11}{'p':>10}  95% CI"]
        for row in self.table.iter_rows(named=True):
            ci = f"[{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
            lines.append(f"{row['term']:<28}{row['coef']:>11.4g}{row['se']:>11.3g}{_fmt_p(row['p']):>10}  {ci}")
        notes = [f"dropped {k}: {v}" for k, v in self.dropped_.items()] + self.separation_ + self.notes_
        return "\n".join(head + [""] + lines + ([""] + [f"note: {n}" for n in notes] if notes else []))

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
            raise _input_error("training rows", f"holds values other than 0/1, e.g. {bad[outcome][0]}",
                               "Pass a Boolean or 0/1 outcome column", column=outcome)
        return frame[outcome].cast(pl.Float64).to_numpy()
    raise _input_error("training rows", f"is {dtype}, not Boolean", "Pass a Boolean or 0/1 outcome column",
                       column=outcome)


def _prepare(frame: pl.DataFrame, features: list[str], outcome: str, na_threshold: float,
             standardize: bool) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fill nulls, add N/A indicators, drop unusable columns. Returns the design frame and notes."""
    missing = [c for c in [*features, outcome] if c not in frame.columns]
    if missing:
        raise _input_error("training rows", f"lacks column(s) {missing}",
                           "Name existing columns in features/outcome", column=missing[0])
    not_numeric = [c for c in features if not frame.schema[c].is_numeric() and frame.schema[c] != pl.Boolean]
    if not_numeric:
        raise _input_error("training rows", f"feature is {frame.schema[not_numeric[0]]}, not numeric",
                           "Encode it as numbers (e.g. 0/1 indicators) or leave it out", column=not_numeric[0])
    stats = frame.select(
        *[pl.col(c).cast(pl.Float64).mean().alias(f"mean|{c}") for c in features],
        *[pl.col(c).cast(pl.Float64).std().alias(f"std|{c}") for c in features],
        *[pl.col(c).null_count().alias(f"null|{c}") for c in features],
    ).row(0, named=True)
    n = frame.height
    info: dict[str, Any] = {"fill": {}, "na": [], "dropped": {}, "center": {}, "scale": {}}
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
        if na_threshold < share < 1.0:
            info["na"].append(f"na_{c}")
            exprs.append(pl.col(c).is_null().cast(pl.Float64).alias(f"na_{c}"))
    return frame.select(exprs), info


def _separation_checks(design: pl.DataFrame, y: np.ndarray) -> list[str]:
    """Single-feature separation: a threshold or a level that predicts the outcome perfectly."""
    found: list[str] = []
    if design.width == 0:
        return found
    lab = pl.lit(pl.Series("_y", y > 0.5))
    aggs = []
    for c in design.columns:
        col = pl.col(c)
        aggs += [col.filter(lab).min().alias(f"pmin|{c}"), col.filter(lab).max().alias(f"pmax|{c}"),
                 col.filter(~lab).min().alias(f"nmin|{c}"), col.filter(~lab).max().alias(f"nmax|{c}"),
                 ((col == col.min()) | (col == col.max())).all().alias(f"two|{c}")]
    st = design.select(aggs).row(0, named=True)
    for c in design.columns:
        # every event on one side of a threshold (ties allowed); for a two-level feature such as
        # an indicator this is the same as a level with no event or with nothing but events
        if st[f"pmin|{c}"] >= st[f"nmax|{c}"] or st[f"pmax|{c}"] <= st[f"nmin|{c}"]:
            how = ("a level of it has no event or only events (an empty or pure cell)" if st[f"two|{c}"]
                   else "every event lies on one side of a threshold")
            found.append(f"quasi-separation: {c} alone separates the outcome ({how}), "
                         "so its coefficient runs off to infinity")
    return found


def _matrix(design: pl.DataFrame) -> np.ndarray:
    """C-ordered float design matrix with the constant first (row-major suits the Hessian)."""
    X = np.empty((design.height, design.width + 1))
    X[:, 0] = 1.0
    for j, col in enumerate(design.columns, start=1):
        X[:, j] = design[col].to_numpy()
    return X


def _cluster_cov(res: Any, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """CRV1 clustered covariance from statsmodels' own score and Hessian, as statsmodels computes
    it for ``cov_type="cluster"`` (same small-sample correction), but without re-deriving both."""
    scores = np.ascontiguousarray(res.model.score_obs(res.params).T)
    sums = np.column_stack([np.bincount(codes, weights=col, minlength=n_groups) for col in scores])
    bread = res.normalized_cov_params
    k, nobs = scores.shape
    correction = n_groups / (n_groups - 1.0) * (nobs - 1.0) / (nobs - k)
    return correction * bread @ (sums.T @ sums) @ bread


def _attach_cluster_cov(res: Any, codes: np.ndarray, n_groups: int) -> None:
    """Make ``res`` report clustered inference, as statsmodels' own ``cov_type="cluster"`` does."""
    from statsmodels.base.covtype import descriptions
    res = getattr(res, "_results", res)  # set on the results, not on their wrapper
    res._cache = {}  # bse, pvalues, ... are cached from the textbook covariance
    res.cov_params_default = _cluster_cov(res, codes, n_groups)
    res.cov_type = "cluster"
    res.cov_kwds = {"use_t": res.use_t, "adjust_df": True, "groups": codes, "use_correction": True,
                    "description": descriptions["cluster"], "scaling_factor": None}
    res.n_groups = n_groups
    res.df_resid_inference = n_groups - 1


def _logit_model(y: np.ndarray, X: np.ndarray) -> Any:
    """statsmodels' Logit with a faster, algebraically identical Hessian (-X'WX as one
    symmetric product of sqrt(W)X, which BLAS runs several times faster than statsmodels'
    transposed product on a million rows). Rank is checked by the caller."""
    import statsmodels.api as sm

    class _Logit(sm.Logit):
        def hessian(self, params: np.ndarray) -> np.ndarray:
            p = self.cdf(self.exog @ params)
            xw = self.exog * np.sqrt(p * (1 - p))[:, None]
            return -(xw.T @ xw)

    _Logit.__name__ = _Logit.__qualname__ = "Logit"
    return _Logit(y, X, check_rank=False)


def _mle(X: np.ndarray, y: np.ndarray, maxiter: int) -> tuple[Any, list[str]]:
    """Unpenalised Newton fit. On big data Newton starts from a fit on a random subsample and
    takes two full steps, then we check convergence in units of standard errors."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    problems: list[str] = []
    start, steps = None, maxiter
    big = len(y) > _BIG_DATA
    if big:
        rows = np.sort(np.random.default_rng(0).choice(len(y), size=_BIG_DATA // 2, replace=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                start = _logit_model(y[rows], X[rows]).fit(method="newton", disp=False, maxiter=maxiter).params
                steps = 2  # Newton converges quadratically from there
            except np.linalg.LinAlgError:
                start = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _logit_model(y, X)
        res = model.fit(method="newton", disp=False, maxiter=steps, start_params=start, warn_convergence=False)
        if start is not None and not res.mle_retvals["converged"]:
            # the Newton step still to go, in standard errors: below 1e-4 the fit has converged
            # for every practical purpose; otherwise keep iterating in the usual way
            hess, grad = res.mle_retvals["Hessian"], res.mle_retvals["score"]
            step = np.linalg.solve(hess, grad)
            se = np.sqrt(np.abs(np.diag(np.linalg.inv(-hess))))
            if np.all(np.isfinite(step)) and np.max(np.abs(step) / se) < 1e-4:
                res.mle_retvals["converged"] = True
                res.mle_retvals["convergence"] = "remaining Newton step below 1e-4 standard errors"
            else:
                res = model.fit(method="newton", disp=False, maxiter=maxiter, start_params=res.params,
                                warn_convergence=False)
    for w in caught:
        if issubclass(w.category, PerfectSeparationWarning):
            problems.append("quasi-separation: statsmodels reports perfect separation or prediction")
        elif issubclass(w.category, ConvergenceWarning) or "overflow" in str(w.message):
            problems.append(f"quasi-separation suspected: {w.message}")
    if not res.mle_retvals.get("converged", True):
        problems.append(f"quasi-separation suspected: the maximum-likelihood fit did not converge "
                        f"in {maxiter} Newton steps")
    return res, list(dict.fromkeys(problems))


def _penalised(X: np.ndarray, y: np.ndarray, penalty: str, alpha: float) -> Any:
    """Elastic-net GLM fit on standardised columns (the intercept is never penalised)."""
    import statsmodels.api as sm
    weights = np.full(X.shape[1], alpha)
    weights[0] = 0.0
    model = sm.GLM(y, X, family=sm.families.Binomial())
    return model.fit_regularized(method="elastic_net", alpha=weights,
                                 L1_wt=1.0 if penalty == "l1" else 0.0, maxiter=200)


def fit_logit(
    frame: pl.DataFrame,
    features: list[str],
    outcome: str,
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
        raise _input_error("training rows", f"lacks the outcome column {outcome!r}",
                           "Label the rows first with label_outcomes()", column=outcome)
    if groups is not None and groups not in frame.columns:
        raise _input_error("training rows", f"lacks the cluster column {groups!r}",
                           "Pass groups= the account key column, or groups=None", column=groups)
    frame = frame.filter(pl.col(outcome).is_not_null())
    y = _outcome_array(frame, outcome)
    n, n_events = len(y), int(y.sum())
    if n_events == 0 or n_events == n:
        raise _input_error("training rows", f"every one of the {n:,} rows has the same outcome",
                           "Use a longer history or horizon so both outcomes occur", column=outcome)
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
        raise _input_error("training rows", f"the {len(terms) - 1} features are linearly dependent "
                           f"(rank {rank} of {X.shape[1]})",
                           "Leave out one of each group of features that add up to another (see the VIF)")

    separation = _separation_checks(design, y)
    res, fallback, fit_penalty, fit_alpha = None, None, penalty, alpha
    if penalty is None:
        try:
            res, problems = _mle(X, y, maxiter)
            separation += problems
        except (np.linalg.LinAlgError, ValueError) as exc:
            separation.append(f"quasi-separation suspected: the maximum-likelihood fit failed ({exc})")
        if res is not None and not separation:
            sd = np.r_[0.0, X[:, 1:].std(axis=0)]
            huge = [t for t, b, s, c in zip(terms, res.bse, sd, res.params)
                    if t != "const" and (not np.isfinite(b) or b * s > _HUGE_SE_PER_SD
                                         or abs(c * s) > _HUGE_COEF_PER_SD)]
            separation += [f"quasi-separation: {t} has a huge standard error or coefficient "
                           "(the likelihood does not pin it down)" for t in huge]
        if separation:
            if on_separation == "raise":
                raise _input_error("training rows", "; ".join(separation),
                                   "Drop or merge the feature, or fit with penalty='l2'")
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
        outcome=outcome, features=features, terms_=terms,
        params_=dict(zip(terms, params.tolist())), bse_=dict(zip(terms, bse.tolist())),
        naive_bse_=dict(zip(terms, naive.tolist())),
        conf_int_={t: (float(lo), float(hi)) for t, (lo, hi) in zip(terms, ci)},
        pvalues_=dict(zip(terms, pvals.tolist())), result_=res, n_obs_=n, n_events_=n_events,
        n_groups_=n_groups, penalty_=fit_penalty, alpha_=fit_alpha if fit_penalty else None,
        inference_=inference, fill_values_=info["fill"], na_indicators_=info["na"],
        center_=info["center"], scale_=info["scale"], dropped_=info["dropped"],
        separation_=separation, fallback_=fallback,
    )
