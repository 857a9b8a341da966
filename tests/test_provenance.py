"""A fitted model records what it was fitted on, and evaluate will not judge it on weeks it saw."""

from __future__ import annotations

import datetime as dt
import shlex
import warnings

import healthscore as hs
import polars as pl
import pytest
from healthscore.analysis import evaluation as E
from healthscore.app import cli
from healthscore.datasets.portfolio import sample_dir
from healthscore.io.fingerprint import data_hash
from healthscore.spec.palette import band_colour

MODEL = sample_dir() / "model.toml"


@pytest.fixture(scope="module")
def book():
    return hs.make_portfolio(n_accounts=300, n_weeks=52, seed=8)


@pytest.fixture(scope="module")
def cut(book):
    """The first snapshot date at or after 60% of the history: fits stop before it."""
    dates = book.snapshots["as_of"].unique().sort().to_list()
    return dates[int(0.6 * len(dates))]


@pytest.fixture(scope="module")
def fits(book, cut):
    model = hs.load_model(MODEL)
    early = book.snapshots.filter(pl.col("as_of") < cut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "early": hs.fit_weights(early, book.events, model),
            "everything": hs.fit_weights(book.snapshots, book.events, model),
        }


@pytest.fixture(scope="module")
def files(tmp_path_factory, book):
    d = tmp_path_factory.mktemp("provenance")
    book.snapshots.write_parquet(d / "snapshots.parquet")
    book.events.write_parquet(d / "events.parquet")
    return d


# ---------------------------------------------------------------- the [fitted] table
def test_fitted_table_records_the_window_and_round_trips_outside_the_hash(fits, book, cut, tmp_path):
    fit = fits["early"]
    model = fit.suggested_model()
    f = model.fitted
    early = book.snapshots.filter(pl.col("as_of") < cut)
    labelled = hs.label_outcomes(early, book.events, horizon="90d")
    assert f["method"] == "weights" and f["outcome"] == "churned" and f["horizon"] == "90d"
    assert f["first_as_of"] == labelled["as_of"].min() and f["last_as_of"] == labelled["as_of"].max()
    assert f["observed_until"] == early["as_of"].max() < cut  # labels saw events up to the data end
    assert f["rows"] == labelled.height and f["fitted_at"] == dt.date.today()
    assert f["data_hash"] == data_hash(early, ["account_id", "as_of", *model.columns])
    assert model.training_window == (f["first_as_of"], f["observed_until"])
    # not part of the hash: the same definition with or without the record hashes the same
    assert model.hash == model.with_fitted(None).hash
    path = fit.save_suggested(tmp_path / "fitted.toml")
    text = path.read_text()
    assert "[models.health.fitted]" in text and f"observed_until = {f['observed_until']}" in text
    loaded = hs.load_model(path)
    assert loaded.fitted == f and loaded.hash == model.hash
    # saving the loaded model again leaves the file as it is
    loaded.save(tmp_path / "again.toml")
    assert (tmp_path / "again.toml").read_text() == text


def test_data_hash_reads_values_not_order(book):
    s = book.snapshots
    shuffled = s.sample(fraction=1.0, shuffle=True, seed=3).select(list(reversed(s.columns)))
    assert data_hash(s) == data_hash(shuffled)
    changed = s.with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.col("login_days") + 1)
        .otherwise(pl.col("login_days"))
        .alias("login_days")
    )
    assert data_hash(changed) != data_hash(s)
    assert data_hash(s.head(-1)) != data_hash(s)


def test_a_broken_fitted_table_is_named(tmp_path):
    text = MODEL.read_text() + '\n[models.health.fitted]\nmethod = "weights"\nobserved_until = "last week"\n'
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(hs.ModelError, match=r"fitted\.observed_until: 'last week' is not a date"):
        hs.load_model(path)


def test_fit_shapes_records_its_window(book, cut):
    early = book.snapshots.filter(pl.col("as_of") < cut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hs.fit_shapes(early, book.events, hs.load_model(MODEL))
    f = fit.model.fitted
    assert f["method"] == "shapes" and f["observed_until"] == early["as_of"].max()
    assert f["first_as_of"] == early["as_of"].min()


# ---------------------------------------------------------------- evaluate refuses overlap
def test_evaluate_refuses_a_model_that_saw_the_holdout_and_names_both_windows(book, fits):
    hand = hs.load_model(MODEL)
    seen = fits["everything"].suggested_model()
    first, until = seen.training_window
    with pytest.raises(E.EvaluationError) as err:
        E.evaluate(book.snapshots, book.events, {"hand-set": hand, "fitted on all weeks": seen})
    msg = str(err.value)
    labelled = hs.label_outcomes(book.snapshots, book.events, horizon="90d")
    split = E.time_split(labelled, horizon="90d")[2]
    assert "'fitted on all weeks'" in msg and "saw the holdout" in msg
    assert f"from {first} with outcomes seen until {until}" in msg  # the training window
    assert f"holdout is snapshots {split} .." in msg  # the holdout
    assert "--allow-overlap" in msg and f"--until {split}" in msg
    # a model fitted before the holdout passes
    ev = E.evaluate(
        book.snapshots,
        book.events,
        {"hand-set": hand, "fitted": fits["early"].suggested_model()},
        split=fits["early"].fitted["observed_until"] + dt.timedelta(days=1),
    )
    assert ev.overlaps == {}
    assert not str(ev.summary()).startswith("overlap")


def test_allow_overlap_marks_every_chart_and_the_first_summary_line(book, fits):
    seen = fits["everything"].suggested_model()
    ev = E.evaluate(book.snapshots, book.events, {"hand-set": hs.load_model(MODEL), "seen": seen}, allow_overlap=True)
    assert list(ev.overlaps) == ["seen"]
    assert str(ev.summary()).splitlines()[0].startswith("overlap: this model saw the holdout: seen")
    assert E.key_table_text(ev).splitlines()[0].startswith("overlap: this model saw the holdout: seen")
    charts = ev.charts()
    assert set(charts) == {"roc", "reliability", "bands", "lift", "trajectories", "comparison"}
    for name, chart in charts.items():
        top = chart.to_dict()["vconcat"][0]
        assert top["data"]["values"][0]["text"] == "overlap: this model saw the holdout (seen)", name
        assert top["mark"]["color"] == band_colour("red"), name
    clean = E.evaluate(book.snapshots, book.events, hs.load_model(MODEL)).charts()
    assert all("vconcat" not in c.to_dict() for c in clean.values())


# ---------------------------------------------------------------- the command line
def _printed_commands(out: str, name: str) -> list[list[str]]:
    return [shlex.split(line.strip()) for line in out.splitlines() if line.strip().startswith(f"healthscore {name} ")]


@pytest.mark.slow
def test_printed_evaluate_command_runs_as_printed_and_reproduces_the_auc(
    files, book, cut, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    fitted = tmp_path / "fitted.toml"
    assert (
        cli.main(
            [
                "fit",
                "--model",
                str(MODEL),
                "--data",
                str(files / "snapshots.parquet"),
                "--events",
                str(files / "events.parquet"),
                "--until",
                str(cut),
                "--out",
                str(fitted),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    (command,) = _printed_commands(out, "evaluate")
    model = hs.load_model(fitted)
    split = model.fitted["observed_until"] + dt.timedelta(days=1)
    for flag, value in [
        ("--model", str(MODEL)),
        ("--model", str(fitted)),
        ("--outcome", "churned"),
        ("--horizon", "90d"),
        ("--split", str(split)),
        ("--by", "segment"),
        ("--data", str(files / "snapshots.parquet")),
        ("--events", str(files / "events.parquet")),
    ]:
        assert (flag, value) in list(zip(command, command[1:])), flag
    assert cli.main(command[1:]) == 0  # as printed
    printed = capsys.readouterr().out
    table = pl.read_csv(tmp_path / "build" / "evaluation" / "evaluation.csv")
    direct = E.evaluate(book.snapshots, book.events, [hs.load_model(MODEL), model], split=split)
    assert table["auc"].to_list() == pytest.approx(direct.table["auc"].to_list(), abs=1e-12)
    assert direct.comparisons["verdict"][0] in printed
    assert "overlap" not in printed


@pytest.mark.slow
def test_a_fit_on_every_week_prints_how_to_keep_a_holdout(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = [
        "--model",
        str(MODEL),
        "--data",
        str(files / "snapshots.parquet"),
        "--events",
        str(files / "events.parquet"),
    ]
    assert cli.main(["fit", *base, "--out", str(tmp_path / "all.toml")]) == 0
    out = capsys.readouterr().out
    assert "no later weeks are left to test it on" in out
    (fit_cmd,) = _printed_commands(out, "fit")
    (eval_cmd,) = _printed_commands(out, "evaluate")
    assert "--until" in fit_cmd
    assert cli.main(fit_cmd[1:]) == 0
    capsys.readouterr()
    assert cli.main(eval_cmd[1:]) == 0  # the refit model on the weeks after its window: no overlap
    assert "overlap" not in capsys.readouterr().out
    # the model fitted on every week is refused on the default holdout, and marked when allowed
    ev_args = ["evaluate", "--model", str(tmp_path / "all.toml"), *base[2:], "--out", str(tmp_path / "ev")]
    assert cli.main(ev_args) == 2
    assert "saw the holdout" in capsys.readouterr().err
    assert cli.main([*ev_args, "--allow-overlap"]) == 0
    assert capsys.readouterr().out.startswith("overlap: this model saw the holdout")


@pytest.mark.slow
def test_fit_shapes_from_the_command_line(files, cut, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "shapes.toml"
    argv = [
        "fit",
        "--shapes",
        "--model",
        str(MODEL),
        "--data",
        str(files / "snapshots.parquet"),
        "--events",
        str(files / "events.parquet"),
        "--until",
        str(cut),
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Learned shapes for 'churned' within 90d")
    assert "current %" in printed and "fitted %" in printed and f"written {out}" in printed
    model = hs.load_model(out)
    assert model.fitted["method"] == "shapes" and model.reference is not None
    assert any(m.method == "steps" for m in model.metrics)
    (command,) = _printed_commands(printed, "evaluate")
    assert cli.main(command[1:]) == 0
    assert cli.main([*argv, "--overwrite", "--features", "raw"]) == 2
    assert "--shapes learns the curves" in capsys.readouterr().err
