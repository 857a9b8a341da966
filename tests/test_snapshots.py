"""Reading and validating snapshots and events: every check on crafted bad files, every format."""

from __future__ import annotations

import datetime as dt
import sqlite3

import duckdb
import polars as pl
import pytest
from healthscore.app import cli
from healthscore.io.snapshots import (
    ValidationError,
    read_events,
    read_snapshots,
    validate_snapshots,
)

TODAY = dt.date(2026, 11, 23)
D = dt.date(2026, 11, 2)


def good_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A2", "A1", "A1", "A2"],
            "as_of": [D, D, D + dt.timedelta(days=7), D + dt.timedelta(days=7)],
            "segment": ["smb", "enterprise", "enterprise", "smb"],
            "login_days": [3.0, None, 5.0, 0.0],
            "arr": [1200.0, 90000.0, 90000.0, 1200.0],
        }
    )


def problems_of(source, **kw) -> dict[str, list]:
    with pytest.raises(ValidationError) as info:
        read_snapshots(source, today=TODAY, **kw)
    out: dict[str, list] = {}
    for p in info.value.problems:
        out.setdefault(p.check, []).append(p)
    return out


def write(path, text: str):
    path.write_text(text.strip() + "\n")
    return path


# ------------------------------------------------------------------ clean input, every format
@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx", "duckdb", "sqlite"])
def test_clean_input_round_trips_in_every_format(tmp_path, fmt):
    frame = good_frame()
    path = tmp_path / f"snap.{fmt}"
    if fmt == "csv":
        frame.write_csv(path)
    elif fmt == "parquet":
        frame.write_parquet(path)
    elif fmt == "xlsx":
        frame.write_excel(path)
    elif fmt == "duckdb":
        with duckdb.connect(str(path)) as con:
            con.register("f", frame.to_arrow())
            con.execute("create table snapshots as select * from f")
    else:
        con = sqlite3.connect(path)
        con.execute("create table snapshots (account_id text, as_of text, segment text, login_days real, arr real)")
        con.executemany(
            "insert into snapshots values (?,?,?,?,?)",
            [(r[0], r[1].isoformat(), r[2], r[3], r[4]) for r in frame.iter_rows()],
        )
        con.commit()
        con.close()
    got = read_snapshots(path, today=TODAY)
    assert got.columns == frame.columns
    assert got.schema["as_of"] == pl.Date
    assert got.schema["login_days"].is_numeric()
    expected = frame.sort("account_id", "as_of")
    assert got.select("account_id", "as_of").rows() == expected.select("account_id", "as_of").rows()
    assert got["login_days"].to_list() == expected["login_days"].to_list()  # null stays null, never zero


def test_sqlite_uri_and_query(tmp_path):
    path = tmp_path / "crm.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table weekly (account_id text, as_of text, logins real)")
    con.execute("insert into weekly values ('A1', '2026-11-02', 4), ('A2', '2026-11-02', 1)")
    con.commit()
    con.close()
    got = read_snapshots(f"sqlite:///{path}", table="weekly", today=TODAY)
    assert got["logins"].to_list() == [4.0, 1.0]
    got = read_snapshots(path, query="select * from weekly where logins > 2", today=TODAY)
    assert got["account_id"].to_list() == ["A1"]


def test_database_with_several_tables_needs_a_name(tmp_path):
    path = tmp_path / "many.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create table a (account_id text, as_of date)")
        con.execute("create table b (account_id text, as_of date)")
    found = problems_of(path)
    assert "table" in found
    assert "a, b" in found["table"][0].message


# ------------------------------------------------------------------ each check on a crafted CSV
def test_missing_required_column_suggests_the_close_name(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,asof,logins\nA1,2026-11-02,3")
    found = problems_of(path)
    (p,) = found["missing_column"]
    assert p.column == "as_of"
    assert "Did you mean 'asof'" in p.fix


def test_empty_input(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,as_of,logins")
    assert "empty" in problems_of(path)


def test_unparseable_dates_name_the_line_and_value(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,as_of\nA1,2026-11-02\nA2,02/11/2026\nA3,yesterday")
    (p,) = problems_of(path)["unparseable_date"]
    assert p.column == "as_of"
    assert p.rows == (3, 4)  # CSV lines: the header is line 1
    assert p.examples == ("'02/11/2026'", "'yesterday'")


def test_text_in_numeric_column_is_reported_not_nulled(tmp_path):
    rows = "\n".join(f"A{i},2026-11-02,{i}" for i in range(8))
    path = write(tmp_path / "s.csv", f"account_id,as_of,logins\n{rows}\nA9,2026-11-02,n/a")
    (p,) = problems_of(path)["not_numeric"]
    assert (p.column, p.rows, p.examples) == ("logins", (10,), ("'n/a'",))


def test_duplicate_keys(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,as_of,x\nA1,2026-11-02,1\nA2,2026-11-02,1\nA1,2026-11-02,2")
    (p,) = problems_of(path)["duplicate_key"]
    assert p.rows == (2, 4)
    assert "'A1'" in p.message


def test_negative_values_where_impossible(tmp_path):
    path = write(
        tmp_path / "s.csv",
        "account_id,as_of,login_days,tickets_count,balance\nA1,2026-11-02,-1,2,-50\nA2,2026-11-02,2,-3,10",
    )
    found = problems_of(path)["negative"]
    assert {p.column for p in found} == {"login_days", "tickets_count"}  # a balance may be negative
    found = problems_of(path, nonnegative=["balance"])["negative"]
    assert [p.column for p in found] == ["balance"]


def test_infinities_and_nan(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,as_of,x,y\nA1,2026-11-02,inf,1\nA2,2026-11-02,2,NaN")
    found = problems_of(path)["not_finite"]
    assert [(p.column, p.rows) for p in found] == [("x", (2,)), ("y", (3,))]


def test_future_dates(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,as_of\nA1,2026-11-02\nA1,2027-01-04")
    (p,) = problems_of(path)["future_date"]
    assert p.rows == (3,)
    assert p.examples == ("2027-01-04",)


def test_missing_account_id(tmp_path):
    path = write(tmp_path / "s.csv", "account_id,as_of\nA1,2026-11-02\n,2026-11-02")
    (p,) = problems_of(path)["null_key"]
    assert (p.column, p.rows) == ("account_id", (3,))


def test_all_problems_reported_together_with_the_file_name(tmp_path):
    path = write(
        tmp_path / "bad.csv", "account_id,as_of,login_days\nA1,2026-11-02,-1\nA1,2026-11-02,inf\nA2,2099-01-05,1"
    )
    with pytest.raises(ValidationError) as info:
        read_snapshots(path, today=TODAY)
    text = str(info.value)
    assert text.startswith(f"{path}: 4 problems")
    for fragment in ["share an (account_id, as_of) pair", "after today", "infinite", "negative"]:
        assert fragment in text


# ------------------------------------------------------------------ the same checks on Parquet
def test_parquet_problems_use_row_numbers(tmp_path):
    frame = pl.DataFrame(
        {
            "account_id": ["A1", "A1", "A2", None],
            "as_of": [D, D, dt.date(2030, 1, 7), D],
            "login_days": [1.0, float("inf"), -2.0, 1.0],
        }
    )
    path = tmp_path / "s.parquet"
    frame.write_parquet(path)
    found = problems_of(path)
    assert found["duplicate_key"][0].rows == (1, 2)
    assert found["future_date"][0].rows == (3,)
    assert found["not_finite"][0].rows == (2,)
    assert found["negative"][0].rows == (3,)
    assert found["null_key"][0].rows == (4,)
    with pytest.raises(ValidationError) as info:
        read_snapshots(path, today=TODAY)
    assert "row 3" in str(info.value)


def test_parquet_with_text_dates_is_parsed_or_reported(tmp_path):
    path = tmp_path / "s.parquet"
    pl.DataFrame({"account_id": ["A1", "A2"], "as_of": ["2026-11-02", "2026-11-31"]}).write_parquet(path)
    (p,) = problems_of(path)["unparseable_date"]
    assert p.examples == ("'2026-11-31'",)


def test_datetime_as_of_becomes_a_date():
    frame = pl.DataFrame({"account_id": ["A1"], "as_of": [dt.datetime(2026, 11, 2)]})
    assert read_snapshots(frame, today=TODAY).schema["as_of"] == pl.Date


def test_validate_snapshots_is_pure_and_empty_when_clean():
    assert validate_snapshots(good_frame(), today=TODAY) == []


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_snapshots(tmp_path / "nope.csv")
    path = write(tmp_path / "s.json", "{}")
    assert "format" in problems_of(path)


# ------------------------------------------------------------------ events
def test_read_events_and_its_errors(tmp_path):
    path = write(
        tmp_path / "e.csv",
        "account_id,date,event,details\nA1,2026-03-02,churned,price\nA2,2026-04-06,expanded,+5 seats",
    )
    events = read_events(path)
    assert events.schema["date"] == pl.Date
    assert events["event"].to_list() == ["churned", "expanded"]
    bad = write(tmp_path / "b.csv", "account_id,when,event\nA1,2026-03-02,churned")
    with pytest.raises(ValidationError, match="'date': required column is missing"):
        read_events(bad)
    bad = write(tmp_path / "c.csv", "account_id,date,event\nA1,March 2,churned\nA2,2026-03-02,")
    with pytest.raises(ValidationError) as info:
        read_events(bad)
    assert [p.check for p in info.value.problems] == ["unparseable_date"]


# ------------------------------------------------------------------ command line
def test_validate_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.parquet"
    good_frame().write_parquet(good)
    assert cli.main(["validate", str(good)]) == 0
    assert "4 snapshots of 2 accounts" in capsys.readouterr().out

    bad = write(tmp_path / "bad.csv", "account_id,as_of,login_days\nA1,2026-11-02,-1")
    assert cli.main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.csv: 1 problem" in err and "login_days" in err and "line 2" in err

    assert cli.main(["validate", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err

    events = write(tmp_path / "e.csv", "account_id,date,event\nA1,2026-03-02,churned")
    assert cli.main(["validate", "--events", str(events)]) == 0
    assert "1 events of 1 accounts" in capsys.readouterr().out
