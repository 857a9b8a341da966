"""Cohort comparison on the bundled sample (2,000 accounts x 52 weeks, scored with its model).

- ``compare_cohorts`` (segment x touch model, churn and expansion labelled point-in-time, every
  omnibus and pairwise test) with our Holm step-down against the same call through statsmodels'
  ``multipletests(method="holm")``, which runs a full ``gc.collect()`` per family; the adjusted
  p-values must be identical. Goal: at least 2x faster end to end.
- The cross-section (each account's latest snapshot) as a window filter against the obvious
  ``group_by("account_id").agg(pl.all().last())`` on the wide score frame (sub_/cat_/drv_ columns
  per metric) and the same staleness rule. Goal: at least 1.5x faster, same rows.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from tests.benchmarks import Result, timeit


def _sample() -> tuple[pl.DataFrame, pl.DataFrame]:
    from healthscore.core.scoring import score
    from healthscore.datasets.portfolio import load_sample, sample_dir
    from healthscore.spec.model import load_model

    p = load_sample()
    return score(p.snapshots, load_model(sample_dir() / "model.toml")), p.events


def bench_compare_cohorts_holm() -> list[Result]:
    from healthscore.analysis import cohorts
    from statsmodels.stats.multitest import multipletests

    scores, events = _sample()

    def run():
        return cohorts.compare_cohorts(scores, by=["segment", "touch_model"], events=events)

    ours_tests = run().tests
    ours = timeit(run, repeat=5)
    original = cohorts._holm
    cohorts._holm = lambda p: multipletests(p, method="holm")[1]
    try:
        base_tests = run().tests
        baseline = timeit(run, repeat=5)
    finally:
        cohorts._holm = original
    same = ours_tests["p_adjusted"].to_list() == base_tests["p_adjusted"].to_list()
    ratio = baseline / ours
    return [
        Result(
            "cohorts.compare_cohorts",
            f"segment x touch model, {ours_tests.height} tests, own Holm vs statsmodels multipletests",
            ours,
            baseline,
            ratio,
            ">= 2x, identical p_adjusted",
            ok=same and ratio >= 2,
            detail={"identical": same, "accounts": scores["account_id"].n_unique()},
        )
    ]


def bench_cross_section() -> list[Result]:
    from healthscore.analysis import cohorts

    scores, _ = _sample()

    def ours_fn():
        return cohorts.cross_section(scores)

    last = scores["as_of"].max()

    def base_fn():  # the same rule: latest row per account, seen within the weekly cadence
        return (
            scores.sort("account_id", "as_of")
            .group_by("account_id")
            .agg(pl.all().last())
            .filter(pl.col("as_of") > last - dt.timedelta(days=7))
            .sort("account_id")
        )

    same = ours_fn().select(scores.columns).sort("account_id").equals(base_fn().select(scores.columns))
    ours = timeit(ours_fn, repeat=5)
    baseline = timeit(base_fn, repeat=5)
    ratio = baseline / ours
    return [
        Result(
            "cohorts.cross_section",
            f"latest snapshot per account, {scores.height:,} rows x "
            f"{scores.width} columns, window filter vs group_by/last",
            ours,
            baseline,
            ratio,
            ">= 1.5x, same rows",
            ok=same and ratio >= 1.5,
            detail={"identical": same},
        )
    ]
