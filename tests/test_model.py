"""Score model files: loading, validation messages, hashing, saving with comments kept, fitting."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import healthscore as hs
import polars as pl
import pytest
from healthscore.spec.model import Band, Category, Metric, ModelError, ScoreModel

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_MODEL = ROOT / "data" / "model.toml"
TEMPLATES = sorted((ROOT / "templates" / "models").glob("*.toml"))

BASE = """\
# a small model used by the validation tests
[model]
name = "health"
version = "1.0.0"
min_coverage = 0.5

[categories.usage]
weight = 2  # usage matters most

[categories.support]
weight = 1

[[metrics]]
name = "logins"
column = "login_days"
category = "usage"
method = "thresholds"
weight = 1
[metrics.params]
points = [[0, 0], [5, 100]]

[[metrics]]
name = "csat"
column = "csat"
category = "support"
method = "thresholds"
weight = 1
[metrics.params]
points = [[1, 0], [5, 100]]
"""


def write(tmp_path: Path, text: str, name: str = "model.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ModelError) as info:
        hs.load_model(write(tmp_path, text))
    return str(info.value)


# ---------------------------------------------------------------- loading
def test_sample_model_follows_the_contract():
    model = hs.load_model(SAMPLE_MODEL)
    assert model.name == "health"
    assert isinstance(model.metrics[0], Metric)
    assert set(model.categories) == {
        "usage",
        "support",
        "sentiment",
        "relationship",
        "commercial",
        "outcomes",
        "engagement",
    }
    assert [b.name for b in model.bands] == ["red", "yellow", "green"]
    assert model.min_coverage == 0.6
    assert len(model.hash) == 12 and int(model.hash, 16) >= 0
    assert [v.name for v in model.variants] == ["digital"]
    api = model.metric("api_calls")
    assert (api.method, api.params["center"], api.direction) == ("log_z", 6.1, "higher_is_better")
    assert model.metric("high_sev_tickets").direction == "lower_is_better"
    models = hs.load_models(SAMPLE_MODEL)
    assert list(models) == ["health", "expansion"]
    assert hs.load_model(SAMPLE_MODEL, name="expansion").bands[-1].name == "high"


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_templates_load(path: Path):
    models = hs.load_models(path)
    assert models
    for model in models.values():
        assert model.metrics and model.bands[0].lower == 0 and model.bands[-1].upper == 100


def test_four_starter_templates_exist():
    assert {p.stem for p in TEMPLATES} >= {"general_saas", "high_touch", "digital", "onboarding"}


def test_default_bands_when_left_out(tmp_path):
    model = hs.load_model(write(tmp_path, BASE))
    assert [(b.name, b.lower, b.upper) for b in model.bands] == [("red", 0, 40), ("yellow", 40, 70), ("green", 70, 100)]
    assert model.bands[0].colour == "#A6192E"


def test_band_of_edges():
    model = hs.load_model(SAMPLE_MODEL)
    frame = pl.DataFrame({"s": [0.0, 39.999, 40.0, 69.9, 70.0, 100.0, None]})
    assert frame.select(model.band_of("s").alias("b"))["b"].to_list() == [
        "red",
        "red",
        "yellow",
        "yellow",
        "green",
        "green",
        None,
    ]


def test_in_band_agrees_with_band_of():
    model = hs.load_model(SAMPLE_MODEL)
    values = [0.0, 39.999, 40.0, 69.9, 70.0, 100.0, 120.0, -5.0, float("nan"), None]
    frame = pl.DataFrame({"s": values}, schema={"s": pl.Float64})
    for band in [*(b.name for b in model.bands), "purple"]:
        got = frame.select(model.in_band("s", band).alias("x"))["x"].to_list()
        want = frame.select((model.band_of("s") == band).alias("x"))["x"].to_list()
        assert got == want, band


def test_load_model_unknown_name(tmp_path):
    with pytest.raises(ModelError, match=r"model.toml: no model called 'churn'"):
        hs.load_model(SAMPLE_MODEL, name="churn")


# ---------------------------------------------------------------- validation: one file per error
@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "weight = 1\n[metrics.params]\npoints = [[0, 0], [5, 100]]",
            "weight = -1\n[metrics.params]\npoints = [[0, 0], [5, 100]]",
            r"model.toml: metrics\[1\] \(logins\).weight: -1 is negative",
        ),
        ("weight = 2  # usage matters most", "weight = -2", r"model.toml: categories.usage.weight: -2 is negative"),
        (
            "points = [[0, 0], [5, 100]]",
            "points = [[5, 0], [0, 100]]",
            r"model.toml: metrics\[1\] \(logins\).params: 'points' raw values must be strictly increasing",
        ),
        (
            'method = "thresholds"\nweight = 1\n[metrics.params]\npoints = [[0, 0], [5, 100]]',
            'method = "tresholds"\nweight = 1\n[metrics.params]\npoints = [[0, 0], [5, 100]]',
            r"model.toml: metrics\[1\] \(logins\).method: unknown method 'tresholds'",
        ),
        (
            "points = [[1, 0], [5, 100]]",
            "pointz = [[1, 0], [5, 100]]",
            r"model.toml: metrics\[2\] \(csat\).params: missing parameter 'points'",
        ),
        (
            "points = [[1, 0], [5, 100]]",
            "points = [[1, 0], [5, 100]]\nslope = 2",
            r"model.toml: metrics\[2\] \(csat\).params: unknown parameter 'slope'",
        ),
        (
            'category = "support"',
            'category = "suport"',
            r"model.toml: metrics\[2\] \(csat\).category: unknown category 'suport'",
        ),
        (
            'name = "csat"',
            'name = "logins"',
            r"model.toml: metrics\[2\] \(logins\).name: duplicate metric name 'logins'",
        ),
        ("min_coverage = 0.5", "min_coverage = 60", r"model.toml: model.min_coverage: 60 must be between 0 and 1"),
        (
            'column = "csat"',
            'column = "csat"\ndirection = "up"',
            r"model.toml: metrics\[2\] \(csat\).direction: 'up' must be one of",
        ),
        (
            'column = "csat"',
            'column = "csat"\nna_policy = "zero"',
            r"model.toml: metrics\[2\] \(csat\).na_policy: 'zero' must be \"exclude\" or \"score:<0..100>\"",
        ),
        ('column = "csat"', 'column = "csat"\nwieght = 3', r"model.toml: metrics\[2\] \(csat\).wieght: unknown key"),
        (
            "weight = 1\n[metrics.params]\npoints = [[1, 0]",
            'weight = "heavy"\n[metrics.params]\npoints = [[1, 0]',
            r"model.toml: metrics\[2\] \(csat\).weight: expected a number, got 'heavy'",
        ),
    ],
)
def test_each_validation_error_names_file_and_key(tmp_path, old, new, expected):
    assert BASE.count(old) == 1, old
    message = error_of(tmp_path, BASE.replace(old, new))
    assert re.search(expected, message), message


def test_all_zero_weights(tmp_path):
    text = BASE.replace("weight = 1\n", "weight = 0\n")
    message = error_of(tmp_path, text)
    assert "model.toml: metrics: all metric weights are zero" in message
    text = BASE.replace("weight = 2  # usage matters most", "weight = 0").replace(
        "[categories.support]\nweight = 1", "[categories.support]\nweight = 0"
    )
    assert "model.toml: categories: all category weights are zero" in error_of(tmp_path, text)


BANDS = """
[[bands]]
name = "red"
lower = 0
upper = {red_upper}

[[bands]]
name = "green"
lower = {green_lower}
upper = {green_upper}
"""


@pytest.mark.parametrize(
    "red_upper, green_lower, green_upper, expected",
    [
        (50, 40, 100, "model.toml: bands[2] (green).lower: green (starts 40) overlaps red (ends 50)"),
        (40, 50, 100, "model.toml: bands[2] (green).lower: gap between red (ends 40) and green (starts 50)"),
        (50, 50, 90, "model.toml: bands[2] (green).upper: bands must end at 100, not 90"),
    ],
)
def test_band_errors(tmp_path, red_upper, green_lower, green_upper, expected):
    text = BASE + BANDS.format(red_upper=red_upper, green_lower=green_lower, green_upper=green_upper)
    assert expected in error_of(tmp_path, text)


def test_band_must_start_at_zero(tmp_path):
    text = BASE + BANDS.format(red_upper=50, green_lower=50, green_upper=100).replace("lower = 0", "lower = 10")
    assert "model.toml: bands[1] (red).lower: bands must start at 0, not 10" in error_of(tmp_path, text)


def test_not_toml(tmp_path):
    assert error_of(tmp_path, "[model\nname = 1").startswith("model.toml: not valid TOML")


def test_errors_in_a_multi_definition_file_name_the_definition(tmp_path):
    text = (
        (ROOT / "data" / "model.toml")
        .read_text()
        .replace(
            "[models.expansion.categories.commercial]\nweight = 20",
            "[models.expansion.categories.commercial]\nweight = -20",
        )
    )
    message = error_of(tmp_path, text)
    assert "model.toml: models.expansion.categories.commercial.weight: -20 is negative" in message


VARIANT = """
[[variants]]
name = "smb"
filter = {{ segment = "smb" }}
{extra}
"""


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("weights = { logn = 2 }", "model.toml: variants[1] (smb).weights.logn: unknown metric 'logn'"),
        ('disabled = ["nps"]', "model.toml: variants[1] (smb).disabled: unknown metric 'nps'"),
        ("categories = { usge = 1 }", "model.toml: variants[1] (smb).categories.usge: unknown category 'usge'"),
        (
            "params = { logins = { points = [[5, 0], [1, 100]] } }",
            "model.toml: variants[1] (smb).params.logins: 'points' raw values must be strictly increasing",
        ),
        ("weights = { logins = -1 }", "model.toml: variants[1] (smb).weights.logins: -1 is negative"),
    ],
)
def test_variant_errors(tmp_path, extra, expected):
    assert expected in error_of(tmp_path, BASE + VARIANT.format(extra=extra))


def test_unknown_columns_and_variant_attributes(tmp_path):
    model = hs.load_model(write(tmp_path, BASE + VARIANT.format(extra="")))
    with pytest.raises(ModelError) as info:
        model.check_columns(["account_id", "as_of", "login_days"])
    message = str(info.value)
    assert "model.toml: metrics[2] (csat).column: column 'csat' is not in the data" in message
    assert "model.toml: variants[1] (smb).filter.segment: attribute 'segment' is not in the data" in message
    assert "metrics[1]" not in message
    model.check_columns(["login_days", "csat", "segment"])  # all there: no error


def test_variant_filter_on_a_metric_column_is_an_error(tmp_path):
    text = BASE + VARIANT.format(extra="").replace('segment = "smb"', "csat = 5")
    assert "variants[1] (smb).filter.csat: 'csat' is a metric column" in error_of(tmp_path, text)


def test_all_problems_reported_at_once(tmp_path):
    text = BASE.replace('category = "support"', 'category = "suport"').replace("min_coverage = 0.5", "min_coverage = 2")
    message = error_of(tmp_path, text)
    assert "min_coverage" in message and "suport" in message


# ---------------------------------------------------------------- hash
def test_hash_ignores_comments_layout_and_number_spelling(tmp_path):
    original = hs.load_model(write(tmp_path, BASE, "a.toml"))
    edited = BASE.replace("# a small model", "# another comment entirely\n\n# on the model").replace(
        "weight = 2  # usage matters most", "weight   =   2.0"
    )
    assert hs.load_model(write(tmp_path, edited, "b.toml")).hash == original.hash
    descr = BASE.replace('version = "1.0.0"', 'version = "2.0.0"\ndescription = "words only"')
    assert hs.load_model(write(tmp_path, descr, "c.toml")).hash == original.hash


def test_hash_changes_with_what_changes_a_score(tmp_path):
    original = hs.load_model(write(tmp_path, BASE, "a.toml"))
    heavier = BASE.replace("weight = 2  # usage matters most", "weight = 3  # usage matters most")
    assert hs.load_model(write(tmp_path, heavier, "b.toml")).hash != original.hash
    assert original.with_weights(metrics={"csat": 2}).hash != original.hash
    assert original.with_params("logins", {"points": [[0, 0], [4, 100]]}).hash != original.hash
    assert original.with_min_coverage(0.7).hash != original.hash


# ---------------------------------------------------------------- new models
def test_with_methods_return_new_validated_models(tmp_path):
    model = hs.load_model(write(tmp_path, BASE))
    heavier = model.with_weights(metrics={"logins": 4}, categories={"support": 3})
    assert heavier.metric("logins").weight == 4.0 and heavier.categories["support"].weight == 3.0
    assert model.metric("logins").weight == 1.0  # the original is untouched
    with pytest.raises(ModelError, match="unknown"):
        model.with_weights(metrics={"nope": 1})
    with pytest.raises(ModelError, match="negative"):
        model.with_weights(metrics={"logins": -1})
    bands = model.with_bands([{"name": "low", "lower": 0, "upper": 50}, Band("high", 50, 100)])
    assert [b.name for b in bands.bands] == ["low", "high"]
    with pytest.raises(ModelError, match="gap"):
        model.with_bands([Band("low", 0, 40), Band("high", 50, 100)])
    assert model.with_params("logins", {"points": [[0, 0], [3, 100]]}).metric("logins").params["points"] == [
        [0, 0],
        [3, 100],
    ]
    with pytest.raises(ModelError, match="strictly increasing"):
        model.with_params("logins", {"points": [[3, 0], [0, 100]]})
    assert model.bump_version().version == "1.0.1"
    assert ScoreModel("m", "v7", model.metrics, model.categories, model.bands).bump_version().version == "v8"


# ---------------------------------------------------------------- save
def test_save_keeps_comments_and_changes_only_the_weight(tmp_path):
    path = tmp_path / "general_saas.toml"
    shutil.copy(ROOT / "templates" / "models" / "general_saas.toml", path)
    before = path.read_text().splitlines()
    model = hs.load_model(path)
    model.with_weights(metrics={"login_days": 5}).save()
    after = path.read_text().splitlines()
    assert len(after) == len(before)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert changed == [("weight = 2", "weight = 5")]
    assert [ln for ln in after if ln.lstrip().startswith("#")] == [ln for ln in before if ln.lstrip().startswith("#")]
    assert hs.load_model(path).metric("login_days").weight == 5


def test_probability_map_is_frozen_into_the_file_without_changing_the_hash(tmp_path):
    from healthscore.analysis.evaluation import ProbabilityMap

    path = tmp_path / "general_saas.toml"
    shutil.copy(ROOT / "templates" / "models" / "general_saas.toml", path)
    before = path.read_text()
    model = hs.load_model(path)
    pmap = ProbabilityMap(method="isotonic").fit([10, 20, 50, 50, 80, 90], [1, 1, 0, 1, 0, 0])
    frozen = model.with_probability_map(pmap)
    assert frozen.hash == model.hash  # a probability reads a score, it never changes one
    frozen.save(tmp_path / "frozen.toml")
    text = (tmp_path / "frozen.toml").read_text()
    assert text.startswith(before.rstrip("\n"))  # the original file, comments and all, then the new table
    again = hs.load_model(tmp_path / "frozen.toml")
    assert again.probability == pmap.to_dict()
    assert ProbabilityMap.from_dict(again.probability).predict([15, 85]).tolist() == pmap.predict([15, 85]).tolist()
    again.with_probability_map(None).save()
    assert hs.load_model(tmp_path / "frozen.toml").probability is None
    (tmp_path / "bad.toml").write_text("probability = 3\n" + before)  # a top-level key, not a table
    with pytest.raises(ModelError, match=r"bad.toml: probability: expected a \[probability\] table"):
        hs.load_model(tmp_path / "bad.toml")


def test_save_round_trips_bands_params_version(tmp_path):
    path = write(tmp_path, BASE)
    model = hs.load_model(path)
    new = (
        model.with_bands([Band("low", 0, 30, "#A6192E", "bad"), Band("mid", 30, 60), Band("high", 60, 100)])
        .with_params("csat", {"points": [[1, 0], [3, 50], [5, 100]]})
        .bump_version()
    )
    new.save()
    text = path.read_text()
    assert "# a small model used by the validation tests" in text and "# usage matters most" in text
    again = hs.load_model(path)
    assert again.hash == new.hash and again.version == "1.0.1"
    assert [b.name for b in again.bands] == ["low", "mid", "high"]
    assert again.bands[0].meaning == "bad"


def test_save_one_definition_leaves_the_other_alone(tmp_path):
    path = tmp_path / "model.toml"
    shutil.copy(SAMPLE_MODEL, path)
    models = hs.load_models(path)
    models["expansion"].with_weights(categories={"usage": 70}).save()
    models["health"].with_weights(metrics={"nps": 2}).save()  # edits the file as it is now
    again = hs.load_models(path)
    assert again["expansion"].categories["usage"].weight == 70
    assert again["health"].metric("nps").weight == 2
    assert again["health"].metric("csat").weight == 1
    assert "# Digital (low-touch) accounts have no CSM assessment" in path.read_text()


def test_save_a_model_built_in_code(tmp_path):
    model = ScoreModel(
        "built",
        "1",
        [Metric("logins", "login_days", "usage", params={"points": [[0, 0], [5, 100]]})],
        {"usage": Category("usage", 1.0)},
        [Band("low", 0, 50), Band("high", 50, 100)],
    )
    with pytest.raises(ModelError, match="pass save"):
        model.save()
    path = model.save(tmp_path / "built.toml")
    again = hs.load_model(path)
    assert again.hash == model.hash and again.metric("logins").params == {"points": [[0, 0], [5, 100]]}


def test_save_variants_round_trip(tmp_path):
    path = tmp_path / "general.toml"
    shutil.copy(ROOT / "templates" / "models" / "general_saas.toml", path)
    model = hs.load_model(path)
    model.save(tmp_path / "copy.toml")
    assert hs.load_model(tmp_path / "copy.toml").hash == model.hash
    assert (tmp_path / "copy.toml").read_text() == path.read_text()  # nothing changed, nothing rewritten


# ---------------------------------------------------------------- fitted calibrations
def test_fit_calibration_freezes_parameters(tmp_path):
    snaps = hs.make_portfolio(n_accounts=200, n_weeks=12, seed=3).snapshots
    path = tmp_path / "digital.toml"
    shutil.copy(ROOT / "templates" / "models" / "digital.toml", path)
    model = hs.load_model(path)
    with pytest.raises(ModelError, match=r"metrics\[3\] \(active_users\).params: method percentile learns quantiles"):
        hs.score(snaps, model)
    fitted = hs.fit_calibration(model, snaps)
    quantiles = fitted.metric("active_users").params["quantiles"]
    assert len(quantiles) == 21 and quantiles == sorted(quantiles)
    assert quantiles[10] == pytest.approx(snaps["active_users"].drop_nulls().median())
    assert fitted.metric("api_calls").params["clip"] == 2.5 and fitted.metric("api_calls").params["scale"] > 0
    fitted.save()
    again = hs.load_model(path)
    assert again.hash == fitted.hash
    assert "# Starter score model: digital" in path.read_text()
    scores = hs.score(snaps, again)
    # frozen: scoring a different population does not move the sub-scores of the same rows
    first = snaps.filter(pl.col("account_id").is_in(snaps["account_id"].unique().sort().head(20).implode()))
    assert (
        hs.score(first, again)
        .select("sub_active_users")
        .equals(
            scores.filter(pl.col("account_id").is_in(first["account_id"].unique().implode())).select("sub_active_users")
        )
    )


def test_fit_monotone_bins_needs_an_outcome():
    snaps = hs.make_portfolio(n_accounts=200, n_weeks=12, seed=3).snapshots
    model = hs.load_model(ROOT / "templates" / "models" / "high_touch.toml", name="churn_index")
    with pytest.raises(ModelError, match="fitted against an outcome"):
        hs.fit_calibration(model, snaps)
    outcome = snaps["seat_utilization"].fill_null(0.5) < 0.3  # a stand-in outcome tied to the metric
    fitted = hs.fit_calibration(model, snaps, outcome=outcome)
    params = fitted.metric("seat_utilization").params
    assert params["edges"] == sorted(params["edges"])
    assert params["scores"] == sorted(params["scores"])  # higher is better: never lower for higher bins
    assert hs.score(snaps, fitted)["score"].drop_nulls().len() > 0
