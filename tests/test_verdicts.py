"""Evaluate concludes: the paired AUC difference against a brute-force bootstrap, and the verdicts,
warnings and catch rates on constructed books where the answer is known."""

from __future__ import annotations

import datetime as dt
import math

import healthscore as hs
import numpy as np
import polars as pl
import pytest
from healthscore.analysis import evaluation as E
from sklearn.metrics import roc_auc_score


# ---------------------------------------------------------------- the paired interval
def _clustered(seed: int, n_acc: int = 300, per: int = 6):
    """Accounts with a latent risk shared by their rows; two scores that read it with different noise."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n_acc)
    g = np.repeat(np.arange(n_acc), per)
    y = (rng.random(g.size) < 1 / (1 + np.exp(-(-2.0 + 1.2 * risk[g])))).astype(float)
    a = risk[g] + rng.normal(scale=0.6, size=g.size)
    b = risk[g] + rng.normal(scale=1.0, size=g.size) + 0.5 * rng.normal(size=n_acc)[g]
    return y, a, b, g


def test_paired_interval_matches_a_brute_force_bootstrap_by_account():
    y, a, b, g = _clustered(7)
    d = E.auc_difference(y, a, b, groups=g)
    assert d.estimate == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    # resample whole accounts with replacement, recompute both AUCs on the same resampled rows
    rng = np.random.default_rng(1)
    rows_of = [np.flatnonzero(g == k) for k in range(g.max() + 1)]
    diffs = []
    for _ in range(600):
        take = np.concatenate([rows_of[k] for k in rng.integers(0, len(rows_of), len(rows_of))])
        diffs.append(roc_auc_score(y[take], a[take]) - roc_auc_score(y[take], b[take]))
    se_boot = float(np.std(diffs, ddof=1))
    se_delong = (d.upper - d.lower) / (2 * 1.959963984540054)
    assert se_delong == pytest.approx(se_boot, rel=0.12)
    # the paired interval is much narrower than the two separate ones suggest
    ca, cb = E.auc_ci(y, a, groups=g), E.auc_ci(y, b, groups=g)
    assert (d.upper - d.lower) < 0.8 * math.hypot(ca.upper - ca.lower, cb.upper - cb.lower)


def test_paired_interval_against_a_constant_is_the_single_auc_interval():
    y, a, _, g = _clustered(3)
    d = E.auc_difference(y, a, np.zeros_like(a), groups=g)
    ci = E.auc_ci(y, a, groups=g)
    assert d.estimate == pytest.approx(ci.estimate - 0.5)
    assert d.upper - d.lower == pytest.approx(ci.upper - ci.lower)
    d0 = E.auc_difference(y, a, np.zeros_like(a))  # unclustered: DeLong's own
    c0 = E.auc_ci(y, a)
    assert d0.upper - d0.lower == pytest.approx(c0.upper - c0.lower)


def test_paired_interval_covers_a_zero_difference_at_its_nominal_rate():
    # two scores with the same noise: the true AUC difference is 0
    hits = 0
    for seed in range(120):
        rng = np.random.default_rng(100 + seed)
        risk = rng.normal(size=200)
        g = np.repeat(np.arange(200), 4)
        y = (rng.random(g.size) < 1 / (1 + np.exp(-(-1.5 + risk[g])))).astype(float)
        a = risk[g] + rng.normal(size=g.size)
        b = risk[g] + rng.normal(size=g.size)
        d = E.auc_difference(y, a, b, groups=g)
        hits += d.lower <= 0.0 <= d.upper
    assert 0.88 <= hits / 120 <= 0.995


# ---------------------------------------------------------------- verdicts on a constructed book
@pytest.fixture(scope="module")
def book():
    """800 accounts over 40 weeks; each churns with a weekly hazard set by its latent risk."""
    rng = np.random.default_rng(5)
    n_acc, n_weeks = 800, 40
    risk = rng.normal(size=n_acc)
    start = dt.date(2024, 1, 1)
    hazard = 1 / (1 + np.exp(-(-4.2 + 1.4 * risk)))
    churn_week = rng.geometric(hazard)
    ids = [f"acc{k:04d}" for k in range(n_acc)]
    events = pl.DataFrame(
        {
            "account_id": [ids[k] for k in range(n_acc) if churn_week[k] < n_weeks],
            "date": [
                start + dt.timedelta(days=7 * int(churn_week[k]) - 3) for k in range(n_acc) if churn_week[k] < n_weeks
            ],
            "event": "churned",
        }
    )
    acc = np.repeat(np.arange(n_acc), n_weeks)
    week = np.tile(np.arange(n_weeks), n_acc)
    snaps = pl.DataFrame(
        {
            "account_id": [ids[k] for k in acc],
            "as_of": [start + dt.timedelta(days=7 * int(w)) for w in week],
            "segment": np.where(acc % 2 == 0, "smb", "enterprise"),
        }
    )
    noise = rng.normal(size=acc.size)
    clear = 50 - 15 * risk[acc] + 3 * noise  # reads the risk well
    blurred = 50 - 15 * (risk[acc] + 2.5 * rng.normal(size=n_acc)[acc]) + 3 * noise  # reads it badly

    def frame(score: np.ndarray) -> pl.DataFrame:
        s = np.clip(score, 0, 100)
        band = np.where(s < 40, "red", np.where(s < 70, "yellow", "green"))
        return snaps.select("account_id", "as_of").with_columns(score=pl.Series(s), band=pl.Series(band))

    return {
        "snaps": snaps,
        "events": events,
        "clear": frame(clear),
        "blurred": frame(blurred),
        "reversed": frame(100 - clear),
    }


def _evaluate(book, models, **kw):
    return E.evaluate(book["snaps"], book["events"], models, horizon="28d", **kw)


def test_identical_models_show_no_measurable_difference(book):
    ev = _evaluate(book, {"the clear score": book["clear"], "its exact copy": book["clear"]})
    c = ev.comparisons.row(0, named=True)
    assert c["auc_difference"] == 0.0
    assert c["verdict"].startswith("no measurable difference between the clear score and its exact copy")
    assert c["verdict"] in str(ev.summary()).splitlines()[1]  # among the first lines


@pytest.mark.parametrize("order", ["better first", "worse first"])
def test_a_clearly_better_model_gets_the_verdict(book, order):
    models = {"clear": book["clear"], "blurred": book["blurred"]}
    if order == "worse first":
        models = dict(reversed(list(models.items())))
    ev = _evaluate(book, models)
    c = ev.comparisons.row(0, named=True)
    t = {r["model"]: r["auc"] for r in ev.table.iter_rows(named=True)}
    assert (c["model_a"], c["model_b"]) == ("clear", "blurred")
    assert c["auc_difference"] == pytest.approx(t["clear"] - t["blurred"])
    assert 0 < c["auc_difference_lower"] < c["auc_difference"] < c["auc_difference_upper"]
    assert c["p_value"] < 0.01
    d, lo, hi = c["auc_difference"], c["auc_difference_lower"], c["auc_difference_upper"]
    assert c["verdict"] == f"clear ranks churners better than blurred: AUC {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    assert set(ev.comparisons.columns) >= {
        "model_a",
        "model_b",
        "auc_difference",
        "auc_difference_lower",
        "auc_difference_upper",
        "verdict",
    }
    assert ev.to_frame().height == 2  # the per-model table is unchanged


def test_a_reversed_score_is_warned_about(book):
    ev = _evaluate(book, {"clear": book["clear"], "upside down": book["reversed"]})
    assert ev.table.filter(pl.col("model") == "upside down")["auc"][0] < 0.5
    assert len(ev.warnings) == 1 and ev.warnings[0].startswith("upside down has AUC ")
    assert "a higher score goes with more churn: is a direction reversed?" in ev.warnings[0]
    head = str(ev.summary()).splitlines()[:6]
    assert any(line.startswith("  warning: upside down has AUC") for line in head)
    assert "warning: upside down" in E.key_table_text(ev)
    ok = _evaluate(book, {"clear": book["clear"]})
    assert ok.warnings == []


def test_red_and_red_plus_yellow_catch_rates_lead_the_summary(book):
    ev = _evaluate(book, {"clear": book["clear"]})
    r = ev.table.row(0, named=True)
    labelled = hs.label_outcomes(book["snaps"], book["events"], horizon="28d")
    test = (
        labelled.filter(pl.col("as_of") >= ev.split)
        .join(book["clear"], on=["account_id", "as_of"])
        .select("band", "churned")
    )
    churners = test.filter(pl.col("churned"))
    red = churners.filter(pl.col("band") == "red").height / churners.height
    red_yellow = churners.filter(pl.col("band") != "green").height / churners.height
    assert r["alarm_recall"] == pytest.approx(red) and r["alarm_watch_recall"] == pytest.approx(red_yellow)
    assert r["alarm_watch_share"] == pytest.approx(test.filter(pl.col("band") != "green").height / test.height)
    line = str(ev.summary()).splitlines()[1]
    assert line == (
        f"  With clear, red catches {red:.0%} of churners while flagging {r['alarm_share']:.0%} of snapshots; "
        f"red plus yellow catches {red_yellow:.0%} while flagging {r['alarm_watch_share']:.0%}."
    )


def test_long_model_names_are_never_cut(book):
    long_a = "hand-set health score for the enterprise book"
    long_b = "hand-set health score for the enterprise book, refitted"
    ev = _evaluate(book, {long_a: book["clear"], long_b: book["blurred"]})
    text = E.key_table_text(ev)
    rows = [line for line in text.splitlines() if line.startswith("hand-set")]
    assert rows[0].startswith(long_a + " ") and rows[1].startswith(long_b + " ")
    assert f"{long_a} ranks churners better than {long_b}" in text
    assert long_b in str(ev.summary())
