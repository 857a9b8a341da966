"""Alerts and their backtest over a long score history, against a straightforward pandas version.

A synthetic history (accounts x weekly snapshots: a random-walk score, two sub-scores, a usage
count, an overdue count, two flags, a CSM) and ten rules of every kind (bands, drops, thresholds on
sub-scores and columns, a trend, a flag, an event, a combination; several with a cool-down). Ours:
``alerts`` (a weekly run: the whole history replayed for the state, the last week reported with ids
and evidence) plus ``backtest_alerts``. Baseline: pandas ``groupby().rolling()`` for the windowed
conditions, a per-account Python walk for the firings with the cool-down, ``merge`` for the backtest
(precision and median lead time per rule). Both must find the same firings per rule, the same precision
and the same median lead time. Ours does more: the weekly report (ids, evidence, state) and the whole
backtest table (interval, share caught, quartiles, load per CSM). The two calls on the same scores share
one prepared history, as the baseline computes its conditions once. Goal: at least 10x faster; the table also gives our
seconds per million account-weeks. ``HS_BENCH_ALERT_ROWS`` sets the size (default 300,000 so the run
stays short; the 1,000,000 figure is in the report of the change).
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import polars as pl

from tests.benchmarks import Result

WEEKS = 50
RULES = """
[[alerts]]
name = "red"
kind = "enters_band"
band = "red"
cooldown = "8w"
{common}
[[alerts]]
name = "drop15"
kind = "drop"
points = 15
within = "4w"
cooldown = "8w"
{common}
[[alerts]]
name = "drop25"
kind = "drop"
points = 25
within = "2w"
{common}
[[alerts]]
name = "low_a"
kind = "threshold"
metric = "a"
op = "<"
value = 25
{common}
[[alerts]]
name = "low_b"
kind = "threshold"
metric = "b"
op = "<="
value = 30
cooldown = "4w"
{common}
[[alerts]]
name = "overdue"
kind = "threshold"
column = "overdue"
op = ">"
value = 30
{common}
[[alerts]]
name = "users_falling"
kind = "trend"
column = "users"
change = -0.3
over = "4w"
cooldown = "6w"
{common}
[[alerts]]
name = "escalated"
kind = "flag"
column = "escalated"
{common}
[[alerts]]
name = "champion_left"
kind = "event"
column = "champion_left"
equals = 1
cooldown = "13w"
{common}
[[alerts]]
name = "red_and_escalated"
all = ["red", "escalated"]
{common}
"""
COMMON = 'severity = "high"\nowner = "CSM"\naction = "Call."'
HEAD = """
[model]
name = "bench"
[categories.u]
weight = 1
[[metrics]]
name = "a"
column = "a_raw"
category = "u"
method = "thresholds"
params = { points = [[0, 0], [1, 100]] }
[[metrics]]
name = "b"
column = "b_raw"
category = "u"
method = "thresholds"
params = { points = [[0, 0], [1, 100]] }
"""


def _history(rows: int, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    n_acc = max(1, rows // WEEKS)
    start = dt.date(2025, 1, 6)
    acc = np.repeat(np.arange(n_acc), WEEKS)
    week = np.tile(np.arange(WEEKS), n_acc)
    score = np.clip(60 + np.cumsum(rng.normal(0, 6, (n_acc, WEEKS)), axis=1), 0, 100).ravel()
    band = np.where(score < 40, "red", np.where(score < 70, "yellow", "green"))
    frame = pl.DataFrame(
        {
            "account_id": [f"A{i:07d}" for i in acc],
            "as_of": [start + dt.timedelta(weeks=int(w)) for w in week],
            "score": score,
            "band": band,
            "sub_a": np.clip(score + rng.normal(0, 20, acc.size), 0, 100),
            "sub_b": np.clip(score + rng.normal(0, 25, acc.size), 0, 100),
            "users": rng.poisson(np.clip(score / 5, 0.5, None)).astype(float),
            "overdue": rng.choice([0, 0, 0, 10, 45], acc.size).astype(float),
            "escalated": rng.random(acc.size) < 0.05,
            "champion_left": (rng.random(acc.size) < 0.02).astype(np.int64),
            "csm": [f"csm{i % max(1, n_acc // 60)}" for i in acc],
        }
    )
    churners = rng.choice(n_acc, size=max(1, n_acc // 12), replace=False)
    when = rng.integers(10, WEEKS + 8, churners.size)
    events = pl.DataFrame(
        {
            "account_id": [f"A{i:07d}" for i in churners],
            "date": [start + dt.timedelta(weeks=int(w), days=3) for w in when],
            "event": ["churned"] * churners.size,
        }
    )
    # terminal outcome: no snapshot on or after churn
    frame = (
        frame.join(events.select("account_id", "date"), on="account_id", how="left")
        .filter(pl.col("date").is_null() | (pl.col("as_of") < pl.col("date")))
        .drop("date")
    )
    return frame, events


# ---------------------------------------------------------------- the pandas baseline
def _pandas(scores, events, rules, horizon_days: int = 90):
    import pandas as pd

    df = scores.to_pandas().sort_values(["account_id", "as_of"]).reset_index(drop=True)
    df["as_of"] = pd.to_datetime(df["as_of"])
    cond: dict[str, pd.Series] = {}
    g = df.groupby("account_id", sort=False)

    def rolled(col: str, days: int, how: str, closed: str) -> pd.Series:
        r = g.rolling(f"{days}D", on="as_of", closed=closed)[col]
        out = getattr(r, how)()
        return pd.Series(out.to_numpy(), index=df.index)

    for r in rules:
        if r.kind == "enters_band":
            c = df["band"] == r.band
        elif r.kind == "drop":
            c = (rolled("score", r.within_days, "max", "left") - df["score"]) >= r.points
        elif r.kind == "threshold":
            col = f"sub_{r.metric}" if r.metric else r.column
            c = {"<": df[col] < r.value, "<=": df[col] <= r.value, ">": df[col] > r.value, ">=": df[col] >= r.value}[
                r.op
            ]
        elif r.kind == "trend":
            d = r.over_days
            df["__n"] = df[r.column].notna().astype(float)
            df["__v"] = df[r.column].fillna(0.0)
            g = df.groupby("account_id", sort=False)
            s1, s2 = rolled("__v", d, "sum", "right"), rolled("__v", 2 * d, "sum", "right")
            n1, n2 = rolled("__n", d, "sum", "right"), rolled("__n", 2 * d, "sum", "right")
            prev = (s2 - s1) / (n2 - n1)
            change = (s1 / n1) / prev - 1
            c = (prev > 0) & (change <= r.change)
        elif r.kind == "flag":
            c = df[r.column].astype(bool)
        elif r.kind == "event":
            c = df[r.column] == r.equals
        else:
            c = pd.concat([cond[p] for p in r.rules], axis=1).all(axis=1)
        cond[r.name] = c.fillna(False).astype(bool)

    firings = []
    accounts = df["account_id"].to_numpy()
    days = (df["as_of"] - pd.Timestamp("1970-01-01")).dt.days.to_numpy()
    for r in rules:
        held = cond[r.name].to_numpy()
        cool = r.cooldown_days
        prev_acc, prev, last_new = None, False, None
        for i in range(len(df)):  # the obvious walk: one row at a time
            if accounts[i] != prev_acc:
                prev_acc, prev, last_new = accounts[i], False, None
            if held[i] and not prev and (last_new is None or days[i] - last_new >= cool):
                firings.append((accounts[i], days[i], r.name))
                last_new = days[i]
            prev = held[i]
    fired = pd.DataFrame(firings, columns=["account_id", "day", "rule"])
    ev = events.to_pandas()
    ev["eday"] = (pd.to_datetime(ev["date"]) - pd.Timestamp("1970-01-01")).dt.days
    ev = ev.groupby("account_id", as_index=False)["eday"].min()
    last, first = days.max(), days.min()
    m = fired.merge(ev, on="account_id", how="left")
    obs = m[m["day"] + horizon_days <= last]
    hit = (obs["eday"] > obs["day"]) & (obs["eday"] <= obs["day"] + horizon_days)
    precision = hit.groupby(obs["rule"]).mean()
    elig = ev[(ev["eday"] >= first + horizon_days) & (ev["eday"] <= last)]
    j = elig.merge(fired, on="account_id")
    j = j[(j["day"] < j["eday"]) & (j["day"] >= j["eday"] - horizon_days)]
    # one lead time per churner and rule: from the first firing in the horizon before the churn
    first_alert = j.groupby(["account_id", "rule"], as_index=False).agg(day=("day", "min"), eday=("eday", "first"))
    lead = (first_alert["eday"] - first_alert["day"]).groupby(first_alert["rule"]).median()
    return fired, precision, lead


def bench_alerts_and_backtest() -> list[Result]:
    from healthscore.analysis.alerts import alerts, backtest_alerts
    from healthscore.spec.model import load_model

    rows = int(os.environ.get("HS_BENCH_ALERT_ROWS", "300000"))
    scores, events = _history(rows)
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(textwrap.dedent(HEAD) + RULES.format(common=COMMON))
        model = load_model(path)

    t0 = time.perf_counter()
    run = alerts(scores, model)  # the weekly run: replays the whole history, reports the last week
    bt = backtest_alerts(scores, events, model)
    ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    fired, precision, lead = _pandas(scores, events, model.alerts)
    baseline = time.perf_counter() - t0

    table = bt.to_frame()
    ours_fired = int(table.filter(pl.col("rule") == "all rules")["alerts"].item())
    per_rule = dict(zip(table["rule"], table["alerts"]))
    same = ours_fired == len(fired) and all(per_rule[r] == n for r, n in fired.groupby("rule").size().items())
    prec = dict(zip(table["rule"], table["precision"]))
    same_precision = all(abs(prec[r] - p) < 1e-12 for r, p in precision.items())
    medians = dict(zip(table["rule"], table["lead_days_median"]))
    same_lead = all(abs(medians[r] - m) < 1e-12 for r, m in lead.items())
    ratio = baseline / ours
    per_million = ours / (scores.height / 1e6)
    return [
        Result(
            "alerts.alerts+backtest",
            f"{scores.height:,} account-weeks x {len(model.alerts)} rules vs pandas",
            ours,
            baseline,
            ratio,
            ">= 10x, same firings",
            ok=same and same_precision and same_lead and ratio >= 10,
            detail={
                "rows": scores.height,
                "firings": ours_fired,
                "alerts_last_week": run.alerts.height,
                "same_firings": same,
                "same_precision": same_precision,
                "same_lead_time": same_lead,
                "seconds_per_million_rows": per_million,
            },
        )
    ]


if __name__ == "__main__":
    for r in bench_alerts_and_backtest():
        print(
            r.measure,
            f"ours {r.ours:.2f}s baseline {r.baseline:.2f}s ratio {r.ratio:.1f}x ok={r.ok}",
            f"{r.detail['seconds_per_million_rows']:.2f} s per million account-weeks",
            r.detail,
        )
