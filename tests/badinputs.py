"""A generator of bad (and legitimately different) inputs for every healthscore command.

Each case is built into a folder from a small clean portfolio: nothing is committed as a file.
A case names the files it replaces (``data``, ``events``, ``model``), extra command-line
arguments, and what must happen:

* ``error``: every command that reads the broken input stops with a clear message (exit 1 or 2),
  never a traceback and never exit 0;
* ``warning``: the command may run, but prints ``healthscore: warning:`` naming the problem;
* ``same``: a legitimate variant (other column order, extra columns, CSV instead of Parquet,
  semicolon CSV, ...) that must give exactly the scores of the clean data.

Run ``python -m tests.badinputs DIR`` to write every case into DIR and look at them.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
from healthscore.datasets.portfolio import make_portfolio

N_ACCOUNTS, N_WEEKS, SEED = 30, 30, 5
HORIZON = "28d"
# "today" for these cases: the generated portfolio ends on 2026-11-16
END = dt.date(2026, 11, 16)


@dataclass
class Case:
    """One input to try: what it replaces and what must happen."""

    name: str
    expect: str  # "error" | "warning" | "same"
    build: Callable[[Path, Clean], dict[str, Path]]
    commands: tuple[str, ...] = ("validate", "score", "fit", "evaluate", "calibrate")
    args: dict[str, list[str]] = field(default_factory=dict)  # extra arguments per command ("*" for all)
    full_disk: bool = False  # run with a file size limit (200 bytes), as if the disk were full


@dataclass
class Clean:
    """The clean inputs every case starts from."""

    snapshots: pl.DataFrame
    events: pl.DataFrame
    model_text: str

    def write(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "data": folder / "snapshots.parquet",
            "events": folder / "events.parquet",
            "model": folder / "model.toml",
        }
        self.snapshots.write_parquet(paths["data"])
        self.events.write_parquet(paths["events"])
        paths["model"].write_text(self.model_text, encoding="utf-8")
        return paths


# A small model on the sample portfolio's columns (four metrics keep fit and evaluate fast); the
# hostile-model cases edit its first metric and its usage category.
MODEL = """\
[models.health.model]
name = "health"
version = "1.0.0"
min_coverage = 0.5

[models.health.categories.usage]
weight = 60

[models.health.categories.support]
weight = 40

[[models.health.metrics]]
name = "seat_utilization"
column = "seat_utilization"
category = "usage"
method = "thresholds"
weight = 3
[models.health.metrics.params]
points = [[0.1, 0], [0.3, 40], [0.6, 80], [0.9, 100]]

[[models.health.metrics]]
name = "login_days"
column = "login_days"
category = "usage"
method = "thresholds"
weight = 2
[models.health.metrics.params]
points = [[0, 0], [2, 40], [4, 80], [6, 100]]

[[models.health.metrics]]
name = "api_calls"
column = "api_calls"
category = "usage"
method = "log_z"
weight = 1
[models.health.metrics.params]
center = 6.1
scale = 1.7
clip = 2.5

[[models.health.metrics]]
name = "high_sev_tickets"
column = "high_sev_tickets"
category = "support"
direction = "lower_is_better"
method = "thresholds"
weight = 1
[models.health.metrics.params]
points = [[0, 100], [1, 50], [3, 0]]
"""


def clean() -> Clean:
    book = make_portfolio(n_accounts=N_ACCOUNTS, n_weeks=N_WEEKS, seed=SEED, end=END)
    return Clean(book.snapshots, book.events, MODEL)


# ------------------------------------------------------------------ helpers for building cases
def _csv_text(frame: pl.DataFrame) -> str:
    return frame.write_csv()


def _text(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _with_text_cells(frame: pl.DataFrame, column: str, value: str, share: float = 0.2) -> pl.DataFrame:
    n = frame.height
    every = max(1, round(1 / share))
    cells = [
        value if i % every == 0 else (None if v is None else repr(float(v)))
        for i, v in enumerate(frame[column].to_list())
    ]
    return frame.with_columns(pl.Series(column, cells, dtype=pl.String)) if n else frame


def _data(fn: Callable[[Path, Clean], Path]) -> Callable[[Path, Clean], dict[str, Path]]:
    return lambda folder, c: {"data": fn(folder, c)}


def _events(fn: Callable[[Path, Clean], Path]) -> Callable[[Path, Clean], dict[str, Path]]:
    return lambda folder, c: {"events": fn(folder, c)}


def _model(fn: Callable[[str], str]) -> Callable[[Path, Clean], dict[str, Path]]:
    return lambda folder, c: {"model": _text(folder, "bad_model.toml", fn(c.model_text))}


def _parquet(folder: Path, name: str, frame: pl.DataFrame) -> Path:
    path = folder / name
    frame.write_parquet(path)
    return path


def _sqlite(folder: Path, frame: pl.DataFrame, name: str = "snap.sqlite") -> Path:
    path = folder / name
    con = sqlite3.connect(path)
    frame.to_pandas().to_sql("snapshots", con, index=False)  # pandas writes dates as 'YYYY-MM-DD 00:00:00'
    con.close()
    return path


def _duckdb(folder: Path, frame: pl.DataFrame) -> Path:
    path = folder / "snap.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("f", frame.to_arrow())
        con.execute("create table snapshots as select * from f")
    return path


def _first_metric_line(text: str, key: str, value: str) -> str:
    """Replace the first ``key = ...`` line of the health model's first metric."""
    at = text.index("[[models.health.metrics]]")
    line_start = text.index(f"\n{key} = ", at) + 1
    line_end = text.index("\n", line_start)
    return text[:line_start] + f"{key} = {value}" + text[line_end:]


def _category_weight(text: str, value: str) -> str:
    at = text.index("[models.health.categories.usage]")
    line_start = text.index("\nweight = ", at) + 1
    line_end = text.index("\n", line_start)
    return text[:line_start] + f"weight = {value}" + text[line_end:]


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):  # a run of damaged bytes mid-file
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _xlsx(folder: Path, sheets: dict[str, pl.DataFrame], name: str = "snap.xlsx") -> Path:
    import xlsxwriter  # only to write multi-sheet workbooks

    path = folder / name
    with xlsxwriter.Workbook(path) as wb:
        for sheet, frame in sheets.items():
            frame.write_excel(wb, worksheet=sheet)
    return path


def _subset(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("account_id", "as_of")


# ------------------------------------------------------------------ the cases
def cases() -> list[Case]:
    S = lambda c: c.snapshots  # noqa: E731
    out: list[Case] = []

    def error(name: str, build, **kw) -> None:
        out.append(Case(name, "error", build, **kw))

    def warning(name: str, build, **kw) -> None:
        out.append(Case(name, "warning", build, **kw))

    def same(name: str, build, **kw) -> None:
        out.append(Case(name, "same", build, **kw))

    # --- files that cannot be read
    error("empty_csv_0_bytes", _data(lambda f, c: _text(f, "s.csv", b"")))
    error("empty_parquet_0_bytes", _data(lambda f, c: _text(f, "s.parquet", b"")))
    error("header_only_csv", _data(lambda f, c: _text(f, "s.csv", ",".join(S(c).columns) + "\n")))
    error("truncated_parquet", _data(lambda f, c: _truncate(_parquet(f, "s.parquet", S(c)), 0.6)))
    error("bit_flipped_parquet", _data(lambda f, c: _flip(_parquet(f, "s.parquet", S(c)))))
    error("csv_named_parquet", _data(lambda f, c: _text(f, "s.parquet", _csv_text(S(c)))))
    error(
        "parquet_named_csv",
        _data(lambda f, c: Path(os.replace(_parquet(f, "x.parquet", S(c)), f / "s.csv") or f / "s.csv")),
    )
    error("corrupt_xlsx", _data(lambda f, c: _text(f, "s.xlsx", b"PK\x03\x04" + os.urandom(2000))))
    error("csv_named_xlsx", _data(lambda f, c: _text(f, "s.xlsx", _csv_text(S(c)))))
    error("xlsx_two_sheets", _data(lambda f, c: _xlsx(f, {"notes": S(c).head(3).select("account_id"), "weekly": S(c)})))
    error("garbage_sqlite", _data(lambda f, c: _text(f, "s.sqlite", b"SQLite format 3\x00" + os.urandom(3000))))
    error("text_named_sqlite", _data(lambda f, c: _text(f, "s.sqlite", "hello\n")))
    error("garbage_duckdb", _data(lambda f, c: _text(f, "s.duckdb", os.urandom(8) + b"DUCK" + os.urandom(5000))))
    error("empty_duckdb", _data(lambda f, c: _text(f, "s.duckdb", b"")))
    error("binary_named_csv", _data(lambda f, c: _text(f, "s.csv", os.urandom(3000).replace(b"\n", b"") + b"\x00")))
    error("data_is_a_folder", _data(lambda f, c: (f / "folder").mkdir() or f / "folder"))
    error("no_such_file", _data(lambda f, c: f / "missing.parquet"))
    error("unknown_extension", _data(lambda f, c: _text(f, "s.json", "{}")))

    # --- CSV shape
    def ragged(f: Path, c: Clean) -> Path:
        lines = _csv_text(S(c)).splitlines()
        lines[5] += ",extra"
        lines[9] = lines[9].rsplit(",", 2)[0]
        return _text(f, "s.csv", "\n".join(lines) + "\n")

    error("ragged_rows", _data(ragged))
    error("duplicate_header", _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c)).replace("csat", "login_days", 1))))
    error(
        "semicolon_with_missing_as_of",
        _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c).drop("as_of")).replace(",", ";"))),
    )

    # --- cells
    for value in ("n/a", "30%", "4,5", "TRUE"):
        error(
            f"numeric_text_{value.replace('/', '').replace('%', 'pct').replace(',', 'comma')}",
            _data(lambda f, c, v=value: _text(f, "s.csv", _csv_text(_with_text_cells(S(c), "login_days", v)))),
        )
    error(
        "metric_all_text",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(
                    pl.when(pl.col("login_days") > 2).then(pl.lit("high")).otherwise(pl.lit("low")).alias("login_days")
                ),
            )
        ),
    )
    error(
        "metric_is_a_date",
        _data(lambda f, c: _parquet(f, "s.parquet", S(c).with_columns(pl.col("as_of").alias("login_days")))),
    )
    error(
        "whitespace_ids",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(
                    pl.when(pl.col("as_of") == pl.col("as_of").max())
                    .then(pl.col("account_id") + " ")
                    .otherwise(pl.col("account_id"))
                    .alias("account_id")
                ),
            )
        ),
    )
    error(
        "timezone_aware_as_of",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(
                    (pl.col("as_of").cast(pl.Datetime("us")) + pl.duration(hours=23))
                    .dt.replace_time_zone("UTC")
                    .dt.convert_time_zone("Asia/Tokyo")
                    .alias("as_of")
                ),
            )
        ),
    )
    error(
        "timezone_aware_csv",
        _data(
            lambda f, c: _text(
                f,
                "s.csv",
                _csv_text(S(c).with_columns((pl.col("as_of").cast(pl.String) + "T23:00:00+00:00").alias("as_of"))),
            )
        ),
    )
    error("missing_as_of", _data(lambda f, c: _parquet(f, "s.parquet", S(c).drop("as_of"))))
    error("missing_metric_column", _data(lambda f, c: _parquet(f, "s.parquet", S(c).drop("login_days"))))
    error("duplicate_keys", _data(lambda f, c: _parquet(f, "s.parquet", pl.concat([S(c), S(c).head(3)]))))
    error(
        "unparseable_dates",
        _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c).with_columns(pl.col("as_of").dt.strftime("%d/%m/%Y"))))),
    )
    error(
        "future_dates",
        _data(
            lambda f, c: _parquet(
                f, "s.parquet", S(c).with_columns((pl.col("as_of") + pl.duration(days=3650)).alias("as_of"))
            )
        ),
    )
    error(
        "negative_values",
        _data(lambda f, c: _parquet(f, "s.parquet", S(c).with_columns((-pl.col("login_days")).alias("login_days")))),
    )
    error(
        "infinite_values",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(
                    pl.when(pl.int_range(pl.len()) % 7 == 0).then(float("inf")).otherwise(pl.col("csat")).alias("csat")
                ),
            )
        ),
    )
    error(
        "null_account_ids",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(
                    pl.when(pl.int_range(pl.len()) % 11 == 0)
                    .then(None)
                    .otherwise(pl.col("account_id"))
                    .alias("account_id")
                ),
            )
        ),
    )

    # --- implausible but usable: warnings
    warning(
        "as_of_1900",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                pl.concat(
                    [
                        S(c),
                        S(c)
                        .filter(pl.col("as_of") == pl.col("as_of").min())
                        .with_columns(pl.lit(dt.date(1900, 1, 1)).alias("as_of")),
                    ]
                ),
            )
        ),
    )
    warning(
        "renewal_9999",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(
                    pl.when(pl.int_range(pl.len()) % 5 == 0)
                    .then(dt.date(9999, 12, 31))
                    .otherwise(pl.col("renewal_date"))
                    .alias("renewal_date")
                ),
            )
        ),
    )
    warning(
        "seat_utilization_in_percent",
        _data(lambda f, c: _parquet(f, "s.parquet", S(c).with_columns(pl.col("seat_utilization") * 100))),
    )
    warning(
        "events_unknown_accounts",
        _events(
            lambda f, c: _parquet(
                f,
                "e.parquet",
                pl.concat(
                    [
                        c.events,
                        pl.DataFrame(
                            {
                                "account_id": ["Z99999"],
                                "date": [END - dt.timedelta(days=60)],
                                "event": ["churned"],
                                "details": ["?"],
                            }
                        ),
                    ]
                ),
            )
        ),
        commands=("fit", "evaluate", "calibrate", "validate"),
    )
    warning(
        "events_before_first_snapshot",
        _events(
            lambda f, c: _parquet(
                f,
                "e.parquet",
                pl.concat(
                    [
                        c.events,
                        pl.DataFrame(
                            {
                                "account_id": [c.snapshots["account_id"][0]],
                                "date": [dt.date(2020, 1, 6)],
                                "event": ["expanded"],
                                "details": ["+1"],
                            }
                        ),
                    ]
                ),
            )
        ),
        commands=("fit", "evaluate", "calibrate", "validate"),
    )
    warning(
        "events_double_churn",
        _events(
            lambda f, c: _parquet(
                f,
                "e.parquet",
                pl.concat(
                    [
                        c.events,
                        c.events.filter(pl.col("event") == "churned")
                        .head(1)
                        .with_columns((pl.col("date") + pl.duration(days=14)).alias("date")),
                    ]
                ),
            )
        ),
        commands=("fit", "evaluate", "calibrate", "validate"),
    )
    warning(
        "events_year_2099",
        _events(
            lambda f, c: _parquet(
                f,
                "e.parquet",
                pl.concat(
                    [
                        c.events,
                        c.events.head(1).with_columns(
                            pl.lit(dt.date(2099, 1, 1)).alias("date"), pl.lit("expanded").alias("event")
                        ),
                    ]
                ),
            )
        ),
        commands=("fit", "evaluate", "calibrate", "validate"),
    )

    # --- events that cannot be used
    ev_cmds = ("fit", "evaluate", "validate")
    error("events_empty", _events(lambda f, c: _text(f, "e.csv", b"")), commands=ev_cmds)
    error(
        "events_missing_column",
        _events(lambda f, c: _parquet(f, "e.parquet", c.events.drop("event"))),
        commands=ev_cmds,
    )
    error(
        "events_bad_dates",
        _events(
            lambda f, c: _text(f, "e.csv", _csv_text(c.events.with_columns(pl.col("date").dt.strftime("%m/%d/%Y"))))
        ),
        commands=ev_cmds,
    )
    error(
        "events_truncated_parquet",
        _events(lambda f, c: _truncate(_parquet(f, "e.parquet", c.events), 0.5)),
        commands=ev_cmds,
    )

    # --- hostile models
    m_cmds = ("validate", "score", "fit", "evaluate", "calibrate")
    error("weight_1e308", _model(lambda t: _first_metric_line(t, "weight", "1e308")), commands=m_cmds)
    error("weight_5e_324", _model(lambda t: _first_metric_line(t, "weight", "5e-324")), commands=m_cmds)
    error("weight_inf", _model(lambda t: _first_metric_line(t, "weight", "inf")), commands=m_cmds)
    error("weight_nan", _model(lambda t: _first_metric_line(t, "weight", "nan")), commands=m_cmds)
    error("category_weight_1e308", _model(lambda t: _category_weight(t, "1e308")), commands=m_cmds)
    error("metric_on_as_of", _model(lambda t: _first_metric_line(t, "column", '"as_of"')), commands=m_cmds)
    error("metric_on_text_column", _model(lambda t: _first_metric_line(t, "column", '"segment"')), commands=m_cmds)
    error("metric_on_date_column", _model(lambda t: _first_metric_line(t, "column", '"renewal_date"')), commands=m_cmds)
    error("model_not_toml", _model(lambda t: t[: len(t) // 2] + "\n[[[broken"), commands=m_cmds)
    error("model_empty", _model(lambda t: ""), commands=m_cmds)
    error(
        "model_unknown_column", _model(lambda t: _first_metric_line(t, "column", '"no_such_column"')), commands=m_cmds
    )
    error(
        "model_range_mismatch",
        _model(lambda t: _first_metric_line(t, "weight", '3\nrange = "zero to one"')),
        commands=m_cmds,
    )
    warning(
        "model_states_ratio_data_in_percent",
        lambda f, c: {
            "model": _text(f, "m.toml", _first_metric_line(c.model_text, "weight", '3\nunit = "ratio"')),
            "data": _parquet(f, "s.parquet", S(c).with_columns(pl.col("seat_utilization") * 100)),
        },
        commands=("validate", "score"),
    )

    # --- arguments
    error("until_before_data", lambda f, c: {}, commands=("fit", "calibrate"), args={"*": ["--until", "2001-01-01"]})
    error("until_not_a_date", lambda f, c: {}, commands=("fit", "calibrate"), args={"*": ["--until", "last week"]})
    error("by_unknown_column", lambda f, c: {}, commands=("evaluate",), args={"*": ["--by", "nosuchcol"]})
    error(
        "unknown_timezone", lambda f, c: {}, commands=("validate", "score"), args={"*": ["--timezone", "Mars/Olympus"]}
    )
    error("out_is_input", lambda f, c: {"out": f / "snapshots.parquet"}, commands=("score",))
    error(
        "out_is_model",
        lambda f, c: {"out": f / "model.toml"},
        commands=("fit", "calibrate"),
        args={"*": ["--overwrite"]},
    )
    error("out_names_a_folder", lambda f, c: {"out": (f / "outdir").mkdir() or f / "outdir"}, commands=("score",))
    error(
        "out_under_a_file",
        lambda f, c: {"out": _text(f, "plain.txt", "x") / "out.parquet"},
        commands=("score", "fit", "calibrate"),
    )
    error("out_folder_is_a_file", lambda f, c: {"out": _text(f, "plain.txt", "x")}, commands=("evaluate",))
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root writes into read-only folders anyway

        def read_only(f: Path, c: Clean) -> dict[str, Path]:
            ro = f / "ro"
            ro.mkdir()
            ro.chmod(0o555)
            return {"out": ro / "out.parquet"}

        error("out_read_only_folder", read_only, commands=("score", "fit", "calibrate"))
    error("disk_full", lambda f, c: {}, commands=("score", "fit", "evaluate"), full_disk=True)

    # --- legitimate variants: the same scores
    same("clean_parquet", lambda f, c: {})
    same("csv", _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c)))))
    same("csv_with_bom", _data(lambda f, c: _text(f, "s.csv", b"\xef\xbb\xbf" + _csv_text(S(c)).encode())))
    same("semicolon_csv", _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c)).replace(",", ";"))))
    same("tab_separated_csv", _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c)).replace(",", "\t"))))
    same("crlf_csv", _data(lambda f, c: _text(f, "s.csv", _csv_text(S(c)).replace("\n", "\r\n").encode())))
    same("column_order_reversed", _data(lambda f, c: _parquet(f, "s.parquet", S(c).select(S(c).columns[::-1]))))
    same("rows_shuffled", _data(lambda f, c: _parquet(f, "s.parquet", S(c).sample(fraction=1.0, shuffle=True, seed=1))))
    same(
        "extra_columns",
        _data(
            lambda f, c: _parquet(
                f, "s.parquet", S(c).with_columns(pl.lit("note").alias("comment"), pl.lit(1.5).alias("unused_number"))
            )
        ),
    )
    same("sqlite_pandas_dates", _data(lambda f, c: _sqlite(f, S(c))))
    same("duckdb", _data(lambda f, c: _duckdb(f, S(c))))
    same("xlsx_one_sheet", _data(lambda f, c: _xlsx(f, {"weekly": S(c)})))
    same(
        "xlsx_two_sheets_with_sheet_flag",
        _data(lambda f, c: _xlsx(f, {"notes": S(c).head(3).select("account_id"), "weekly": S(c)})),
        args={"*": ["--sheet", "weekly"]},
    )
    same(
        "timezone_aware_with_flag",
        _data(
            lambda f, c: _parquet(
                f,
                "s.parquet",
                S(c).with_columns(pl.col("as_of").cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("as_of")),
            )
        ),
        args={"*": ["--timezone", "UTC"]},
    )
    same(
        "datetime_midnight_csv",
        _data(
            lambda f, c: _text(
                f, "s.csv", _csv_text(S(c).with_columns((pl.col("as_of").cast(pl.String) + " 00:00:00").alias("as_of")))
            )
        ),
    )
    return out


def write_all(folder: Path) -> list[tuple[Case, dict[str, Path]]]:
    """Write every case into its own subfolder of ``folder``; returns (case, paths) pairs."""
    base = clean()
    built = []
    for case in cases():
        sub = folder / case.name
        paths = base.write(sub)
        paths.update(case.build(sub, base))
        built.append((case, paths))
    return built


# ------------------------------------------------------------------ running the commands
EVENT_CASE_PREFIX = "events_"
# scorecards and review start notebook kernels (a minute each on a busy machine): they run on bad
# inputs, which must be refused before any kernel starts, and on clean inputs with one setting that
# only fails after every input check passed (so the checks are shown to let good data through)
SCORECARD_CASES = (
    "empty_csv_0_bytes",
    "truncated_parquet",
    "numeric_text_na",
    "timezone_aware_as_of",
    "whitespace_ids",
    "metric_is_a_date",
    "weight_1e308",
    "metric_on_as_of",
    "peer_by_unknown",
    "clean_inputs_unknown_accounts",
)
REVIEW_CASES = (
    "empty_csv_0_bytes",
    "csv_named_parquet",
    "numeric_text_30pct",
    "duplicate_keys",
    "weight_inf",
    "metric_on_text_column",
    "events_truncated_parquet",
    "review_by_unknown",
    "review_out_is_input",
    "clean_inputs_bad_horizon",
)
FULL_HISTORY_SAME = ("clean_parquet",)  # fit/evaluate on legit variants


@dataclass
class Outcome:
    case: str
    command: str
    expect: str
    status: int | None
    stdout: str
    stderr: str
    crashed: str | None = None  # the exception that escaped main()
    changed_scores: int = 0
    seconds: float = 0.0

    @property
    def traceback(self) -> bool:
        return self.crashed is not None or "Traceback (most recent call last)" in self.stdout + self.stderr

    @property
    def clean_error(self) -> bool:
        return (
            not self.traceback
            and self.status in (1, 2)
            and "healthscore: error:" in self.stderr + self.stdout
            or self._validation_report()
        )

    def _validation_report(self) -> bool:  # `validate` prints the problem list itself
        return self.command == "validate" and self.status == 1 and not self.traceback and "problem" in self.stderr

    @property
    def warned(self) -> bool:
        return "healthscore: warning:" in self.stderr

    @property
    def verdict(self) -> str:
        if self.traceback:
            return "traceback"
        if self.expect == "error":
            return "clean error" if self.clean_error else ("exit 0 on bad input" if self.status == 0 else "unclear")
        if self.expect == "warning":
            if self.warned:
                return "warned"
            if self.clean_error:
                return "clean error"
            return "exit 0 on bad input" if self.status == 0 else "unclear"
        if self.status != 0:
            return "refused good input"
        return "changed scores" if self.changed_scores else "same result"


def argv(command: str, case: Case, paths: dict[str, Path], work: Path, scores: Path) -> list[str]:
    """The command line of ``command`` on a case's inputs."""
    d, e, m = str(paths["data"]), str(paths["events"]), str(paths["model"])
    out = paths.get("out")
    extra = case.args.get(command, case.args.get("*", []))
    if command == "validate" and os.environ.get("BADINPUTS_BASELINE"):  # a version without validate --model
        return ["validate", e, "--events"] if case.name.startswith(EVENT_CASE_PREFIX) else ["validate", d]
    if command == "validate":
        if case.name.startswith(EVENT_CASE_PREFIX):
            return ["validate", e, "--events", "--snapshots", d, *extra]
        return ["validate", d, "--model", m, *extra]
    if command == "score":
        return ["score", "--model", m, "--data", d, "--out", str(out or work / "scores.parquet"), *extra]
    if command == "fit":
        return [
            "fit",
            "--model",
            m,
            "--data",
            d,
            "--events",
            e,
            "--horizon",
            HORIZON,
            "--out",
            str(out or work / "fitted.toml"),
            *extra,
        ]
    if command == "calibrate":
        return [
            "calibrate",
            "--model",
            m,
            "--data",
            d,
            "--events",
            e,
            "--horizon",
            HORIZON,
            "--out",
            str(out or work / "calibrated.toml"),
            *extra,
        ]
    if command == "evaluate":
        return [
            "evaluate",
            "--model",
            m,
            "--data",
            d,
            "--events",
            e,
            "--horizon",
            HORIZON,
            "--out",
            str(out or work / "evaluation"),
            *extra,
        ]
    if command == "scorecards":
        accounts = [] if "--accounts" in extra else ["--accounts", ACCOUNT]
        return [
            "scorecards",
            "--model",
            m,
            "--scores",
            str(scores),
            "--snapshots",
            d,
            "--workers",
            "1",
            *accounts,
            "--out",
            str(out or work / "cards"),
            *extra,
        ]
    if command == "review":
        return ["review", "--data", d, "--model", m, "--events", e, "--out", str(out or work / "review.html"), *extra]
    raise ValueError(command)


ACCOUNT = "A00001"


def _file_size_limit(nbytes: int):
    """A full disk, in process: files written meanwhile cannot grow past ``nbytes`` (Python ignores SIGXFSZ,
    so a write fails with 'File too large'). Only the soft limit is lowered, so it can be raised back."""
    import contextlib
    import resource

    @contextlib.contextmanager
    def limited():
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    return limited()


def run_one(args: list[str], file_size_limit: int | None = None) -> tuple[int | None, str, str, str | None]:
    """Run the CLI in process; exit status, stdout, stderr and the exception that escaped, if any."""
    import contextlib
    import io
    import traceback

    from healthscore.app.cli import main

    limit = contextlib.nullcontext()
    if file_size_limit is not None:
        limit = _file_size_limit(file_size_limit)

    out, err = io.StringIO(), io.StringIO()
    crash = None
    status: int | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with limit:
                status = main(args)
        except SystemExit as exc:  # argparse
            status = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            crash = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            status = None
    return status, out.getvalue(), err.getvalue(), crash


def _scores_of(path: Path) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    return pl.read_parquet(path).select("account_id", "as_of", "score", "band", "coverage").sort("account_id", "as_of")


def run_all(
    folder: Path,
    commands: tuple[str, ...] = ("validate", "score", "fit", "evaluate", "calibrate"),
    slow: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Outcome]:
    """Build every case under ``folder`` and run the commands on it; returns one outcome per try.

    ``slow`` adds the scorecards and review commands on their subsets of cases.
    """
    from healthscore.app.cli import main

    base = clean()
    ref = base.write(folder / "_reference")
    scores = folder / "_reference" / "scores.parquet"
    with open(os.devnull, "w") as sink:
        import contextlib

        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            assert main(["score", "--model", str(ref["model"]), "--data", str(ref["data"]), "--out", str(scores)]) == 0
    reference = _scores_of(scores)
    extra_cases = [
        Case(
            "peer_by_unknown",
            "error",
            lambda f, c: {},
            commands=("scorecards",),
            args={"*": ["--peer-by", "nosuchcol"]},
        ),
        Case("review_out_is_input", "error", lambda f, c: {"out": f / "events.parquet"}, commands=("review",)),
        Case("review_by_unknown", "error", lambda f, c: {}, commands=("review",), args={"*": ["--by", "nosuchcol"]}),
        Case(
            "clean_inputs_unknown_accounts",
            "error",
            lambda f, c: {},
            commands=("scorecards",),
            args={"*": ["--accounts", "segment=nosuchsegment"]},
        ),
        Case(
            "clean_inputs_bad_horizon",
            "error",
            lambda f, c: {},
            commands=("review",),
            args={"*": ["--horizon", "3 weeks"]},
        ),
    ]
    outcomes: list[Outcome] = []
    for case in [*cases(), *extra_cases]:
        sub = folder / case.name
        paths = base.write(sub)
        paths.update(case.build(sub, base))
        todo = [c for c in case.commands if c in commands]
        # fit and evaluate run in full (seconds each) only where the case is about them
        if case.expect == "same" and case.name not in FULL_HISTORY_SAME:
            todo = [c for c in todo if c not in ("fit", "evaluate")]
        if case.expect == "warning" and not case.name.startswith(EVENT_CASE_PREFIX):
            todo = [c for c in todo if c not in ("fit", "evaluate")]
        if case.expect == "warning" and case.name != "events_double_churn":
            todo = [c for c in todo if c != "evaluate"]
        if slow:
            todo += [
                c
                for c, subset in (("scorecards", SCORECARD_CASES), ("review", REVIEW_CASES))
                if case.name in subset and c not in todo
            ]
        for command in todo:
            work = sub / f"out_{command}"
            args = argv(command, case, paths, work, scores)
            if progress:
                progress(f"{case.name} {command}")
            t0 = time.perf_counter()
            status, so, se, crash = run_one(args, file_size_limit=200 if case.full_disk else None)
            outcome = Outcome(case.name, command, case.expect, status, so, se, crash, seconds=time.perf_counter() - t0)
            if case.expect == "same" and command == "score" and status == 0:
                outcome.changed_scores = changed_rows(reference, _scores_of(work / "scores.parquet"))
            outcomes.append(outcome)
    return outcomes


def changed_rows(reference: pl.DataFrame, got: pl.DataFrame | None) -> int:
    """Score rows that differ (bit for bit, band included) or exist on one side only."""
    if got is None:
        return reference.height
    joined = reference.join(got, on=["account_id", "as_of"], how="full", suffix="_got")
    same = (
        pl.col("account_id").eq_missing(pl.col("account_id_got"))
        & pl.col("as_of").eq_missing(pl.col("as_of_got"))
        & pl.col("score").eq_missing(pl.col("score_got"))
        & pl.col("band").eq_missing(pl.col("band_got"))
    )
    return joined.filter(~same).height


def count_table(outcomes: list[Outcome]) -> str:
    """tries, clean errors, warnings, tracebacks, exit 0 on bad input, refused/changed legit, per command."""
    cols = (
        "tries",
        "clean error",
        "warned",
        "traceback",
        "exit 0 on bad input",
        "unclear",
        "refused good input",
        "changed scores",
    )
    commands = list(dict.fromkeys(o.command for o in outcomes))
    lines = [f"{'command':<11}" + "".join(f"{c:>21}" for c in cols)]
    for command in [*commands, "all"]:
        rows = [o for o in outcomes if command in ("all", o.command)]
        counts = {"tries": len(rows), **{c: sum(o.verdict == c for o in rows) for c in cols[1:]}}
        lines.append(f"{command:<11}" + "".join(f"{counts[c]:>21}" for c in cols))
    return "\n".join(lines)


if __name__ == "__main__":
    for case, paths in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs")):
        print(f"{case.expect:<8} {case.name:<36} " + " ".join(f"{k}={v.name}" for k, v in paths.items()))
