"""The raw layer of a synthetic portfolio: the event log, subscriptions and CRM change log that the
portfolio's snapshots could have been built from, with the metric spec that builds them.

:func:`raw_layer` turns a portfolio's tables (snapshots and outcome events) into raw tables such
that :func:`healthscore.core.build.build_snapshots` with the accompanying spec gives back the
snapshot columns listed in :data:`RAW_METRICS` exactly, and
:func:`healthscore.core.build.build_outcomes` gives back the ``churned``, ``expanded`` and
``contracted`` events with their dates.

* **events** (``account_id, time, event, value, user_id``): one ``session`` per active user and
  week (``active_users`` = distinct users of ``session`` in 7 days), ``login`` on ``login_days``
  distinct days, a weekly ``api_calls`` meter reading (value = calls in the 7 days; none without
  an integration, so the metric stays null there), ``ticket_opened`` (value 1 for a severity-1/2
  ticket, else 0), ``csat_response`` and ``nps_response`` (value = the answer). Every event of a
  snapshot week lies in that week's window, the calendar days ``(as_of - 7, as_of]``; in an
  account's first week some may fall a few days before the contract start (a trial).
* **subscriptions** (``account_id, start, end, mrr, seats``): one row per contract year, split
  where seats change; ``end`` is the first day without it (the churn date), empty while running.
* **crm** (``account_id, changed_at`` and CRM fields): a change log, one row when an account first
  appears and one whenever a field changes; read point in time by ``field`` metrics.

The 30-day signals of the portfolio (key feature adoption, email CTR, community posts, training
completions) are drawn afresh each week, so no event log has those trailing 30-day counts (a value
falling to 0 one week after rising from 0 cannot be realised), and goal progress and seat
deployment are not events; they stay in the weekly export (the snapshots).

>>> from healthscore.datasets.portfolio import make_portfolio
>>> raw = make_portfolio(n_accounts=20, n_weeks=4, seed=1).raw
>>> raw.events.columns
['account_id', 'time', 'event', 'value', 'user_id']
>>> raw.subscriptions.columns
['account_id', 'start', 'end', 'mrr', 'seats']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from healthscore.io import files

__all__ = ["RawLayer", "raw_layer", "RAW_METRICS", "EVENT_METRICS", "RAW_FILES", "compare_built"]

# built column -> (snapshot column, how they compare): "exact" (counts and stored values, floats to
# 1e-9), "round4" (the snapshot stores the ratio rounded to 4 decimals), "x12" (MRR against ARR)
RAW_METRICS: dict[str, tuple[str, str]] = {
    **{
        m: (m, "exact")
        for m in (
            "active_users",
            "login_days",
            "api_calls",
            "tickets_opened",
            "high_sev_tickets",
            "csat",
            "nps",
            "seats_purchased",
        )
    },
    "seat_utilization": ("seat_utilization", "round4"),
    "mrr": ("arr", "x12"),
    **{
        m: (m, "exact")
        for m in (
            "csm",
            "csm_assessment",
            "exec_sponsor_engaged",
            "champion_left",
            "days_invoice_overdue",
            "segment",
            "touch_model",
            "industry",
            "region",
        )
    },
}
EVENT_METRICS = ("active_users", "login_days", "api_calls", "tickets_opened", "high_sev_tickets", "csat", "nps")
# the CRM change log's fields (all of them read with point-in-time field metrics)
CRM_FIELDS = (
    "company_name",
    "segment",
    "touch_model",
    "industry",
    "region",
    "csm",
    "csm_assessment",
    "exec_sponsor_engaged",
    "champion_left",
    "days_invoice_overdue",
)
RAW_FILES = ("events.parquet", "subscriptions.parquet", "crm.parquet", "spec.toml")
_DAY = 86_400  # seconds


@dataclass(frozen=True)
class RawLayer:
    """Raw tables of a portfolio and the metric spec (TOML text) that builds its snapshots from them."""

    events: pl.DataFrame
    subscriptions: pl.DataFrame
    crm: pl.DataFrame
    spec_toml: str

    def __repr__(self) -> str:
        return (
            f"RawLayer({self.events.height:,} events, {self.subscriptions.height:,} subscriptions, "
            f"{self.crm.height:,} CRM rows)"
        )

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``events.parquet``, ``subscriptions.parquet``, ``crm.parquet`` and ``spec.toml`` into
        ``folder`` (atomically, each); returns the path of the spec, ready for ``healthscore build``."""
        folder = Path(folder)
        for name, frame in zip(RAW_FILES, (self.events, self.subscriptions, self.crm), strict=False):
            files.write_parquet(frame, folder / name)
        files.write_text(folder / "spec.toml", self.spec_toml)
        return folder / "spec.toml"


# ----------------------------------------------------------------------------- generation
def raw_layer(snapshots: pl.DataFrame, events: pl.DataFrame, *, seed: int = 0) -> RawLayer:
    """The raw layer behind ``snapshots`` and outcome ``events`` of a portfolio; the same inputs and
    seed always give the same tables."""
    snaps = snapshots.sort("account_id", "as_of")
    rng = np.random.default_rng([seed, 0x7261])  # its own stream: the portfolio's draws are untouched
    first, last = snaps["as_of"].min(), snaps["as_of"].max()
    assert isinstance(first, date) and isinstance(last, date)
    return RawLayer(
        events=_events(snaps, rng),
        subscriptions=_subscriptions(snaps, events, last),
        crm=_crm(snaps),
        spec_toml=_spec_toml(first, last),
    )


def _ints(snaps: pl.DataFrame, name: str) -> np.ndarray:
    return snaps[name].fill_null(0).cast(pl.Int64).to_numpy()


def _events(snaps: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = snaps.height
    as_of = snaps["as_of"].cast(pl.Int32).to_numpy().astype(np.int64)  # days since 1970-01-01
    active = _ints(snaps, "active_users")
    pool = np.maximum(_ints(snaps, "seats_purchased"), active)  # the account's users that week
    pool = np.maximum(pool, 1)
    offset = rng.integers(0, pool)  # which of its users are the active ones: a rotating block

    def expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, k-th event of that row) for ``counts[row]`` events per row."""
        row = np.repeat(np.arange(n), counts)
        k = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)
        return row, k

    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    # session: one per active user in the 7-day window
    row, k = expand(active)
    parts.append(("session", row, as_of[row] - rng.integers(0, 7, row.size), None, (offset[row] + k) % pool[row] + 1))
    # login: on login_days distinct days of the window, by one of the week's active users
    days = np.argsort(rng.random((n, 7)), axis=1)
    row, k = expand(_ints(snaps, "login_days"))
    who = np.where(
        active[row] > 0,
        (offset[row] + rng.integers(0, np.maximum(active[row], 1))) % pool[row],
        rng.integers(0, pool[row]),
    )
    parts.append(("login", row, as_of[row] - days[row, k], None, who + 1))
    # api_calls: a weekly meter reading on the snapshot day, only for accounts with an integration
    calls = snaps["api_calls"].to_numpy()
    row = np.flatnonzero(~np.isnan(calls))
    parts.append(("api_calls", row, as_of[row], calls[row], None))
    # ticket_opened: value 1 marks a severity-1/2 ticket (the first high_sev_tickets of the week)
    row, k = expand(_ints(snaps, "tickets_opened"))
    high = (k < _ints(snaps, "high_sev_tickets")[row]).astype(np.float64)
    parts.append(
        ("ticket_opened", row, as_of[row] - rng.integers(0, 7, row.size), high, rng.integers(0, pool[row]) + 1)
    )
    # survey answers: one per week where the snapshot has one
    for event, column in (("csat_response", "csat"), ("nps_response", "nps")):
        answer = snaps[column].to_numpy()
        row = np.flatnonzero(~np.isnan(answer))
        parts.append(
            (event, row, as_of[row] - rng.integers(0, 7, row.size), answer[row], rng.integers(0, pool[row]) + 1)
        )

    frames = []
    for code, (_event, row, day, value, user) in enumerate(parts):
        seconds = day * _DAY + rng.integers(7 * 3600, 20 * 3600, row.size)  # office hours
        frames.append(
            pl.DataFrame(
                {
                    "__row": row,
                    "__us": seconds * 1_000_000,
                    "__part": np.full(row.size, code, dtype=np.int64),
                    "value": value if value is not None else np.full(row.size, np.nan),
                    "__user": user if user is not None else np.zeros(row.size, dtype=np.int64),
                }
            )
        )
    # a log reads in time order; ties keep the generation order (a stable sort), so it is deterministic
    log = pl.concat(frames).sort("__us", maintain_order=True)
    return pl.DataFrame(
        [
            snaps["account_id"].gather(log["__row"]),
            log["__us"].cast(pl.Datetime("us")).alias("time"),
            pl.Series("event", [p[0] for p in parts], dtype=pl.String).gather(log["__part"]),
            log["value"].fill_nan(None),
            log.select(
                pl.when(pl.col("__user") > 0)
                .then(pl.lit("u") + pl.col("__user").cast(pl.String).str.zfill(4))
                .alias("user_id")
            ).to_series(),
        ]
    )


def _subscriptions(snaps: pl.DataFrame, events: pl.DataFrame, last: date) -> pl.DataFrame:
    """Contract years split at seat changes; the state at each boundary comes from the snapshots
    (or, for a change after an account's last snapshot, from the change's seat count)."""
    firsts = (
        snaps.group_by("account_id")
        .agg(pl.all().sort_by("as_of").first())
        .select("account_id", pl.col("contract_start").alias("date"), pl.col("seats_purchased").alias("seats"), "arr")
    )
    lasts = snaps.group_by("account_id").agg(pl.col("as_of", "seats_purchased", "arr").sort_by("as_of").last())
    changes = (
        events.filter(pl.col("event").is_in(["expanded", "contracted"]))
        .with_columns(pl.col("details").str.extract(r"([+-]\d+)").cast(pl.Int64).alias("delta"))
        .select("account_id", "date", "delta")
        .sort("date")
    )
    # the state just after a change: the next snapshot's seats and ARR when there is one
    after = changes.join_asof(
        snaps.select("account_id", pl.col("as_of").alias("date"), "seats_purchased", "arr").sort("date"),
        on="date",
        by="account_id",
        strategy="forward",
        check_sortedness=False,
    )
    tail = after.filter(pl.col("seats_purchased").is_null()).join(lasts, on="account_id")
    if tail.height:  # a change after the account's last snapshot: seats move by the change, ARR per seat kept
        seats = tail["seats_purchased_right"].to_numpy().astype(np.float64)
        new = seats + tail["delta"].to_numpy()
        arr = np.round(tail["arr_right"].to_numpy() / seats * new, 0)
        tail = tail.select("account_id", "date", pl.Series("seats", new.astype(np.int64)), pl.Series("arr", arr))
    else:
        tail = pl.DataFrame(schema={"account_id": pl.String, "date": pl.Date, "seats": pl.Int64, "arr": pl.Float64})
    states = pl.concat(
        [
            firsts.select("account_id", "date", pl.col("seats").cast(pl.Int64), pl.col("arr").cast(pl.Float64)),
            after.filter(pl.col("seats_purchased").is_not_null()).select(
                "account_id",
                "date",
                pl.col("seats_purchased").cast(pl.Int64).alias("seats"),
                pl.col("arr").cast(pl.Float64),
            ),
            tail.select("account_id", "date", pl.col("seats").cast(pl.Int64), pl.col("arr").cast(pl.Float64)),
        ]
    ).sort("date")
    churn = events.filter(pl.col("event") == "churned").select("account_id", pl.col("date").alias("churn"))
    # contract anniversaries up to the churn (or the last snapshot) start a new row each
    terms = (
        firsts.select("account_id", pl.col("date").alias("start"))
        .join(churn, on="account_id", how="left")
        .with_columns(
            pl.date_ranges(
                "start", pl.coalesce(pl.col("churn") - pl.duration(days=1), pl.lit(last)), interval="1y"
            ).alias("date")
        )
        .explode("date")
        .select("account_id", "date")
    )
    bounds = pl.concat([terms, changes.select("account_id", "date")]).unique().sort("date")
    rows = (
        bounds.join_asof(states, on="date", by="account_id", strategy="backward", check_sortedness=False)
        .join(churn, on="account_id", how="left")
        .sort("account_id", "date")
    )
    nxt = pl.col("date").shift(-1).over("account_id", order_by="date")
    return rows.select(
        "account_id",
        pl.col("date").alias("start"),
        pl.coalesce(nxt, pl.col("churn")).alias("end"),
        (pl.col("arr") / 12.0).alias("mrr"),
        pl.col("seats"),
    ).sort("account_id", "start")


def _crm(snaps: pl.DataFrame) -> pl.DataFrame:
    """CRM change log: an account's first week, then every week in which a field changed."""
    changed = pl.lit(False)
    for c in CRM_FIELDS:
        changed = changed | pl.col(c).ne_missing(pl.col(c).shift(1).over("account_id", order_by="as_of"))
    first = pl.col("as_of") == pl.col("as_of").min().over("account_id")
    return (
        snaps.filter(first | changed)
        .select("account_id", pl.col("as_of").alias("changed_at"), *CRM_FIELDS)
        .sort("account_id", "changed_at")
    )


def _spec_toml(first: date, last: date) -> str:
    metrics = [
        (
            "active_users",
            'event = "session"\nagg = "distinct_users"\nwindow = "7d"',
            "distinct users with a session in the 7 days up to the snapshot",
        ),
        ("login_days", 'event = "login"\nagg = "active_days"\nwindow = "7d"', "days with a login"),
        (
            "api_calls",
            'event = "api_calls"\nagg = "last"\nwindow = "7d"',
            "the weekly meter reading; empty (null) without an integration",
        ),
        ("tickets_opened", 'event = "ticket_opened"\nagg = "count"\nwindow = "7d"', "tickets opened"),
        (
            "high_sev_tickets",
            'event = "ticket_opened"\nagg = "sum"\nwindow = "7d"',
            "the value of ticket_opened is 1 for a severity-1/2 ticket",
        ),
        ("csat", 'event = "csat_response"\nagg = "mean"\nwindow = "7d"', "mean CSAT answer; null without one"),
        ("nps", 'event = "nps_response"\nagg = "last"\nwindow = "7d"', "latest NPS answer in the week"),
        ("seats_purchased", 'subscription = "seats"', "seats of the running subscription"),
        ("mrr", 'subscription = "mrr"', "monthly recurring revenue (ARR / 12)"),
        ("seat_utilization", 'per = "seat"\nof = "active_users"', "active users per seat purchased"),
    ] + [(c, f'field = "{c}"', "CRM field, as of the snapshot") for c in CRM_FIELDS if c != "company_name"]
    body = "\n".join(f'[[metrics]]\nname = "{name}"\n{how}\ndescription = "{text}"\n' for name, how, text in metrics)
    return f"""# Metric spec of the sample's raw layer: `healthscore build --spec spec.toml --out snapshots.parquet`
# rebuilds the event-derived, subscription and CRM columns of the sample's weekly snapshots.

[source]
events = "events.parquet"
subscriptions = "subscriptions.parquet"
accounts = "crm.parquet"

[grid]
every = "1w"
start = "{first.isoformat()}"
end = "{last.isoformat()}"

{body}
[outcomes.churned]
adverse = true
terminal = true
from = "subscriptions"
gap = "0d"
description = "the subscription ended and no renewal followed"

[outcomes.expanded]
adverse = false
from = "mrr"
threshold = 0.01
description = "MRR rose by more than 1 % at a change of subscription"

[outcomes.contracted]
adverse = true
from = "mrr"
threshold = -0.01
description = "MRR fell by more than 1 %"
"""


# ----------------------------------------------------------------------------- checking
def compare_built(built: pl.DataFrame, snapshots: pl.DataFrame) -> pl.DataFrame:
    """Per metric of :data:`RAW_METRICS`: rows compared, rows that differ (a null on one side only, or
    more than 1e-9 apart) and the largest absolute difference between built snapshots and the
    portfolio's (``missing_rows`` counts keys found on one side only).

    >>> s = pl.DataFrame({"account_id": ["a"], "as_of": [date(2025, 1, 6)], "active_users": [3.0]})
    >>> compare_built(s.with_columns(pl.col("active_users").cast(pl.Int64)), s)["differ"].to_list()
    [0]
    """
    keys = ["account_id", "as_of"]
    names = [m for m, (c, _) in RAW_METRICS.items() if m in built.columns and c in snapshots.columns]
    left = built.select(*keys, *[pl.col(m).alias(f"{m}__b") for m in names])
    right = snapshots.select(*keys, *{RAW_METRICS[m][0] for m in names})
    joined = left.join(right, on=keys, how="inner")
    n_missing = built.join(snapshots, on=keys, how="anti").height + snapshots.join(built, on=keys, how="anti").height
    rows = []
    for m in names:
        column, rule = RAW_METRICS[m]
        a, b = pl.col(f"{m}__b"), pl.col(column)
        if snapshots.schema[column].is_numeric():
            a = a.cast(pl.Float64)
            if rule == "round4":
                a = a.round(4)
            elif rule == "x12":
                a = a * 12.0
            diff = (a - b.cast(pl.Float64)).abs()
            bad = (a.is_null() != b.is_null()) | (diff > 1e-9).fill_null(False)
            worst = joined.select(diff.max()).item()
        else:
            bad = a.cast(pl.String).ne_missing(b.cast(pl.String))
            worst = None
        rows.append(
            {
                "metric": m,
                "compared": joined.height,
                "differ": int(joined.select(bad.sum()).item()),
                "max_abs_diff": float(worst) if worst is not None else 0.0,
                "missing_rows": n_missing,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "metric": pl.String,
            "compared": pl.Int64,
            "differ": pl.Int64,
            "max_abs_diff": pl.Float64,
            "missing_rows": pl.Int64,
        },
    )
