"""Static HTML reports: per-account scorecards and the export shared by every report.

A report is an executed notebook turned into one self-contained HTML file through the template in
``templates/report``: outputs only (no code, no prompts, no widget state, no scripts), charts as
inline SVG, print-friendly CSS.

Scorecards come in three layers: ``scorecard_data`` builds one account's content as tidy frames
(a :class:`Scorecard`), ``scorecard_sections`` renders it as escaped HTML fragments (the notebook
``notebooks/scorecard.ipynb`` displays them), and ``render_scorecards`` runs that notebook for many
accounts in warm kernels and writes the pages, an index and a manifest.

>>> import nbformat
>>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")])
>>> html = export_html(nb, None, title="Demo")
>>> "<h1" in html and "Hello" in html and "<script" not in html
True
"""
from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import html as _html
import math
import os
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import polars as pl

from healthscore import resources
from healthscore.io import files

TEMPLATES = resources.folder("templates")
TEMPLATE_NAME = "report"

_VEGALITE = re.compile(r"^application/vnd\.vegalite\.v\d+(\.\d+)*\+json$")
_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL)

_exporter: Any = None


def _html_exporter() -> Any:
    """One HTMLExporter per process: building it loads the Jinja templates (tens of ms)."""
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter

        if not (TEMPLATES / TEMPLATE_NAME / "index.html.j2").is_file():
            raise FileNotFoundError(
                f"report template missing: {TEMPLATES / TEMPLATE_NAME}/index.html.j2; "
                "healthscore must run from a source checkout (pip install -e .)")
        _exporter = HTMLExporter(
            template_name=TEMPLATE_NAME, extra_template_basedirs=[str(TEMPLATES)],
            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
            anchor_link_text="")  # no pilcrow after every heading in a printed report
    return _exporter


def _static_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` fit for a static page: no widget state, vega-lite charts as inline SVG,
    no ``<script>`` in HTML outputs (a static report must work with no network and run nothing)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            data.pop("application/vnd.jupyter.widget-view+json", None)
            data.pop("application/javascript", None)
            spec_type = next((k for k in data if _VEGALITE.match(k)), None)
            if spec_type is not None:
                if "image/svg+xml" not in data:
                    import vl_convert

                    data["image/svg+xml"] = vl_convert.vegalite_to_svg(data[spec_type])
                data.pop("text/html", None)  # the live-chart HTML loads scripts from the network
                del data[spec_type]
            if "text/html" in data:
                html = data["text/html"]
                html = "".join(html) if isinstance(html, list) else html
                data["text/html"] = _SCRIPT.sub("", html)
    return nb


def export_html(nb: nbformat.NotebookNode, path: str | os.PathLike[str] | None, *, title: str) -> str:
    """Render an executed notebook as a static, self-contained HTML report and return the HTML.

    Only outputs and markdown reach the page. When ``path`` is given the file is written
    atomically. ``title`` is escaped, so it may hold any text.

    >>> import nbformat, tempfile, pathlib
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.html"
    >>> html = export_html(nb, out, title="<b>x</b>")
    >>> out.is_file(), "1 + 1" in html, "&lt;b&gt;x&lt;/b&gt;" in html
    (True, False, True)
    """
    body, _ = _html_exporter().from_notebook_node(_static_outputs(nb), resources={"report_title": title})
    if path is not None:
        files.write_text(path, body)
    return body


# ===================================================================== scorecards: content
# Everything below builds one account's scorecard from the score frame. Each function sees only
# this account's rows plus aggregated cohort figures, so nothing about another account can reach
# a chart spec or the page.


TREND_WEEKS = 26
CHANGE_SNAPSHOTS = 4          # "since last month" on weekly snapshots
MIN_COHORT = 5                # fewer peers than this and percentiles would point at individuals
NOT_APPLICABLE = "not applicable"
NA_COLOUR = "#8c959f"


@dataclass
class Scorecard:
    """The content of one account's scorecard as tidy frames; ``scorecard_sections`` renders it.

    Frames: ``trend`` (as_of, score, band), ``categories`` (category, label, score, band, colour),
    ``metrics`` (metric, label, value as shown, category, raw, sub_score, description, status, colour),
    ``changes`` (metric, label, points), ``peers`` (measure, label, percentile, cohort_median) or
    None when the cohort is too small, ``actions`` (metric, label, action).
    """

    account_id: str
    company_name: str
    as_of: dt.date
    score: float | None
    band: str | None
    band_colour: str
    band_meaning: str
    coverage: float | None
    null_reason: str | None
    previous_score: float | None
    previous_as_of: dt.date | None
    trend: pl.DataFrame
    categories: pl.DataFrame
    metrics: pl.DataFrame
    changes: pl.DataFrame
    peers: pl.DataFrame | None
    peer_cohort: str | None
    peer_size: int
    actions: pl.DataFrame
    model_name: str
    model_version: str
    model_hash: str
    variant: str | None
    bands: list[tuple[str, float, float, str, str]]
    internal: dict[str, Any] | None = field(default=None)

    def summary(self) -> str:
        """A few readable lines: who, when, score and band, what pulls it down."""
        score = "no score" if self.score is None else f"{self.score:.0f}/100 ({self.band})"
        lines = [f"{self.company_name} ({self.account_id}) on {self.as_of}: {score}"]
        reds = self.actions["label"].to_list()
        if reds:
            lines.append("red metrics: " + ", ".join(reds))
        if self.peers is not None:
            lines.append(f"peer cohort {self.peer_cohort}: {self.peer_size} accounts")
        lines.append(f"model {self.model_name} v{self.model_version} ({self.model_hash})")
        return "\n".join(lines)


def _read_table(path: str | os.PathLike[str]) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file; pass the scores written by 'healthscore score'")
    if p.suffix.lower() in {".parquet", ".pq"}:
        return pl.read_parquet(p)
    if p.suffix.lower() == ".csv":
        return pl.read_csv(p, try_parse_dates=True, infer_schema_length=10_000)
    raise ValueError(f"{p}: cannot read '{p.suffix}' files; use .parquet or .csv")


@functools.lru_cache(maxsize=4)
def _cached_table(path: str, mtime_ns: int, size: int) -> pl.DataFrame:
    return _read_table(path)


def load_scores(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read a score frame (Parquet or CSV); cached per file version, so a warm kernel that renders
    many accounts reads it once."""
    st = Path(path).stat() if Path(path).is_file() else None
    if st is None:
        return _read_table(path)  # raises the clear error
    return _cached_table(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _cached_model(path: str, mtime_ns: int) -> Any:
    from healthscore.spec.model import load_model
    return load_model(path)


def load_scorecard_model(path: str | os.PathLike[str]) -> Any:
    """``hs.load_model`` cached per file version (see ``load_scores``)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such model file")
    return _cached_model(str(p.resolve()), p.stat().st_mtime_ns)


def peer_figures(scores: pl.DataFrame, by: str = "segment") -> pl.DataFrame:
    """Each account's percentile within its peer cohort (same ``by`` value, same date), per measure.

    Returns account_id, as_of, cohort, measure (``score`` or ``cat_<name>``), percentile (0..100:
    share of the other peers with a lower value, ties counted half), cohort_size, cohort_median.
    Only aggregates of the cohort: safe to hand to one account's report.

    >>> f = pl.DataFrame({"account_id": list("abcde"), "as_of": [dt.date(2025, 1, 6)] * 5,
    ...                   "segment": ["smb"] * 5, "score": [10.0, 20, 30, 40, 50]})
    >>> peer_figures(f).sort("account_id")["percentile"].to_list()
    [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    if by not in scores.columns:
        raise ValueError(f"scores have no column {by!r} to form peer cohorts; choose one of "
                         f"{[c for c in scores.columns if scores[c].dtype == pl.String][:8]}")
    measures = ["score"] + sorted(c for c in scores.columns if c.startswith("cat_"))
    long = (scores.select("account_id", "as_of", pl.col(by).cast(pl.String).alias("cohort"), *measures)
            .unpivot(index=["account_id", "as_of", "cohort"], on=measures, variable_name="measure")
            .drop_nulls("value"))
    grp = ["as_of", "cohort", "measure"]
    n = pl.len().over(grp)
    return (long.with_columns(
                percentile=pl.when(n > 1)
                .then((pl.col("value").rank("average").over(grp) - 1) / (n - 1) * 100)
                .otherwise(None),
                cohort_size=n.cast(pl.Int64),
                cohort_median=pl.col("value").median().over(grp))
            .drop("value")
            .sort("account_id", "as_of", "measure"))


def _band_table(model: Any) -> list[tuple[str, float, float, str, str]]:
    return [(b.name, float(b.lower), float(b.upper), b.colour or _band_colour(b.name), b.meaning or "")
            for b in sorted(model.bands, key=lambda b: b.lower)]


def _band_colour(name: str | None) -> str:
    from healthscore.viz.charts import band_colour
    return NA_COLOUR if name is None else band_colour(name)


def _label(obj: Any, fallback: str) -> str:
    return (getattr(obj, "label", None) or fallback.replace("_", " ")).strip()


def scorecard_data(scores: pl.DataFrame, model: Any, account_id: str, *, as_of: dt.date | str | None = None,
                   variant: str | None = None, internal: bool = False,
                   cohort: pl.DataFrame | None = None, peer_by: str = "segment",
                   probabilities: Any = None,
                   snapshots: pl.DataFrame | None = None) -> Scorecard:
    """Build one account's :class:`Scorecard` from a score frame (``hs.score`` output) and its model.

    ``as_of`` defaults to the account's latest snapshot; ``cohort`` is a ``peer_figures`` frame
    (computed from ``scores`` when None). Raw metric values come from the score frame when it
    carries the metric columns, else from ``snapshots``. ``probabilities`` (internal only) is a
    fitted ``evaluation.ProbabilityMap`` that reads the score as a probability of the outcome.
    Raises ``ValueError`` naming the account when it has no rows.

    >>> # see tests/test_scorecards.py for complete examples on a sample portfolio
    """
    account_id = str(account_id)
    rows = scores.filter(pl.col("account_id") == account_id)
    if variant not in (None, "", "default") and "variant" in rows.columns:
        rows = rows.filter(pl.col("variant") == variant)
    if rows.is_empty():
        raise ValueError(f"account {account_id!r} has no rows in the scores"
                         + (f" for variant {variant!r}" if variant not in (None, "", "default") else "")
                         + "; check the account id (see the account_id column of the scores file)")
    rows = rows.sort("as_of")
    if as_of is not None:
        as_of = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
        rows = rows.filter(pl.col("as_of") <= as_of)
        if rows.is_empty():
            raise ValueError(f"account {account_id!r} has no snapshot on or before {as_of}")
    cur = rows.row(-1, named=True)
    bands = _band_table(model)
    band_info = {b[0]: b for b in bands}

    # trend: this account's last 26 weeks only
    start = cur["as_of"] - dt.timedelta(weeks=TREND_WEEKS)
    trend = rows.filter(pl.col("as_of") > start).select("as_of", "score", "band")

    # categories (in model order)
    cats = []
    for name, cat in model.categories.items():
        col = f"cat_{name}"
        if col in rows.columns:
            cats.append({"category": name, "label": _label(cat, name), "score": cur[col]})
    categories = pl.DataFrame(cats, schema={"category": pl.String, "label": pl.String, "score": pl.Float64})
    categories = categories.with_columns(band=model.band_of(pl.col("score")))

    # metrics: raw value (from the scores or the snapshots), sub-score, status
    raw_row = dict(cur)
    if snapshots is not None:
        snap = snapshots.filter((pl.col("account_id") == account_id) & (pl.col("as_of") == cur["as_of"]))
        if snap.height:
            raw_row = snap.row(0, named=True) | {k: v for k, v in cur.items() if k not in snap.columns}
    mrows = []
    for m in model.metrics:
        col = f"sub_{m.name}"
        raw = raw_row.get(m.column)
        raw = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
        mrows.append({"metric": m.name, "label": _label(m, m.name), "value": _value_text(raw, m.method),
                      "category": _label(model.categories.get(m.category), m.category)
                      if m.category in model.categories else m.category,
                      "raw": raw,
                      "sub_score": cur.get(col), "description": m.description or "",
                      "action": m.action or ""})
    metrics = pl.DataFrame(mrows, schema={"metric": pl.String, "label": pl.String, "value": pl.String,
                                          "category": pl.String,
                                          "raw": pl.Float64, "sub_score": pl.Float64,
                                          "description": pl.String, "action": pl.String})
    metrics = metrics.with_columns(status=model.band_of(pl.col("sub_score")).fill_null(NOT_APPLICABLE))
    colours = {name: colour for name, _, _, colour, _ in bands} | {NOT_APPLICABLE: NA_COLOUR}
    metrics = metrics.with_columns(colour=pl.col("status").replace_strict(colours, default=NA_COLOUR))
    categories = categories.with_columns(
        colour=pl.col("band").replace_strict(colours, default=NA_COLOUR).fill_null(NA_COLOUR))

    # what changed: drivers of the score change summed over the last few snapshots
    recent = rows.tail(CHANGE_SNAPSHOTS)
    prev_rows = rows.head(max(rows.height - CHANGE_SNAPSHOTS, 0))
    previous = prev_rows.row(-1, named=True) if prev_rows.height else None
    drv = [f"drvchg_{m.name}" for m in model.metrics if f"drvchg_{m.name}" in rows.columns]
    labels = dict(zip(metrics["metric"], metrics["label"]))
    changes = (recent.select(pl.col(drv).fill_null(0).sum())
               .unpivot(variable_name="metric", value_name="points")
               .with_columns(pl.col("metric").str.strip_prefix("drvchg_"))
               .with_columns(label=pl.col("metric").replace_strict(labels, default=None))
               .filter(pl.col("points").abs() >= 0.05)
               .sort(pl.col("points").abs(), "metric", descending=[True, False])
               .select("metric", "label", "points")) if (drv and previous is not None) else \
        pl.DataFrame(schema={"metric": pl.String, "label": pl.String, "points": pl.Float64})

    # peers: anonymised percentiles, only for a cohort of MIN_COHORT or more
    peers, peer_cohort, peer_size = None, None, 0
    if peer_by in rows.columns:
        figs = cohort if cohort is not None else peer_figures(scores, by=peer_by)
        mine = figs.filter((pl.col("account_id") == account_id) & (pl.col("as_of") == cur["as_of"]))
        size_row = mine.filter(pl.col("measure") == "score")
        peer_cohort = cur[peer_by]
        peer_size = int(size_row["cohort_size"][0]) if size_row.height else 0
        if peer_size >= MIN_COHORT:
            cat_labels = {f"cat_{n}": _label(c, n) for n, c in model.categories.items()}
            order = {m: i for i, m in enumerate(["score", *cat_labels])}  # overall first, then model order
            peers = (mine.filter(pl.col("cohort_size") >= MIN_COHORT)
                     .with_columns(label=pl.col("measure").replace_strict(
                         {"score": "Overall score"} | cat_labels, default=None),
                         order=pl.col("measure").replace_strict(order, default=len(order)))
                     .drop_nulls("label")
                     .sort("order")
                     .select("measure", "label", "percentile", "cohort_median"))

    reds = {b[0] for b in bands[:1]}  # the lowest band is the one that asks for action
    actions = (metrics.filter(pl.col("status").is_in(list(reds)) & (pl.col("action") != ""))
               .select("metric", "label", "action"))

    internal_fields = None
    if internal:
        internal_fields = {k: cur.get(k) for k in ("csm", "arr", "renewal_date", "segment", "lifecycle_stage")
                           if k in rows.columns}
        if probabilities is not None and cur.get("score") is not None:
            outcome = getattr(probabilities, "outcome", "churned").replace("churned", "churn")
            key = f"{outcome} probability ({getattr(probabilities, 'horizon', '')})"
            internal_fields[key] = float(probabilities.predict([cur["score"]])[0])

    band = cur.get("band")
    return Scorecard(
        account_id=account_id, company_name=str(cur.get("company_name") or account_id),
        as_of=cur["as_of"], score=cur.get("score"), band=band,
        band_colour=band_info[band][3] if band in band_info else _band_colour(band),
        band_meaning=band_info[band][4] if band in band_info else "",
        coverage=cur.get("coverage"), null_reason=cur.get("null_reason"),
        previous_score=previous.get("score") if previous else None,
        previous_as_of=previous["as_of"] if previous else None,
        trend=trend, categories=categories, metrics=metrics.drop("action"), changes=changes, peers=peers,
        peer_cohort=peer_cohort, peer_size=peer_size, actions=actions,
        model_name=str(cur.get("model_name") or model.name), model_version=str(cur.get("model_version") or model.version),
        model_hash=str(cur.get("model_hash") or model.hash), variant=cur.get("variant"),
        bands=bands, internal=internal_fields)


# ===================================================================== scorecards: rendering
def trend_chart(card: Scorecard, *, width: int = 700, height: int = 220) -> Any:
    """The score over the last 26 weeks on the band areas, each band named beside its colour.

    Built from this account's trend rows and the model's bands only."""
    import altair as alt

    from healthscore.viz.charts import band_scale

    names = [b[0] for b in card.bands]
    band_rows = pl.DataFrame({"band": names, "lower": [b[1] for b in card.bands],
                              "upper": [b[2] for b in card.bands]}).with_columns(
        mid=(pl.col("lower") + pl.col("upper")) / 2)
    scale = band_scale(names, [b[3] for b in card.bands])
    y = alt.Y("lower:Q", title="score", scale=alt.Scale(domain=[0, 100], nice=False))
    areas = alt.Chart(band_rows).mark_rect(opacity=0.14).encode(
        y=y, y2="upper:Q", color=alt.Color("band:N", scale=scale, legend=None))
    # band names sit right of the plot, beside their colour, clear of the line's last point
    names_layer = alt.Chart(band_rows).mark_text(align="left", dx=8, fontSize=11, fontWeight=600).encode(
        x=alt.value(width), y=alt.Y("mid:Q"), text="band:N", color=alt.Color("band:N", scale=scale, legend=None))
    data = card.trend.select("as_of", "score").drop_nulls("score")
    x = alt.X("as_of:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0, tickCount=6))
    line = alt.Chart(data).mark_line(color="#1f2328", strokeWidth=2.2).encode(
        x=x, y=alt.Y("score:Q", scale=alt.Scale(domain=[0, 100])))
    dots = alt.Chart(data.tail(1)).mark_point(filled=True, size=70, color="#1f2328").encode(x=x, y="score:Q")
    last = alt.Chart(data.tail(1)).mark_text(align="right", dx=-8, dy=-12, fontSize=12, fontWeight=700).encode(
        x=x, y="score:Q", text=alt.Text("score:Q", format=".0f"))
    return (alt.layer(areas, names_layer, line, dots, last)
            .properties(width=width, height=height)
            .configure_view(stroke=None))


def chart_svg(chart: Any) -> str:
    """An altair chart as inline SVG (no scripts, no network; the data stays out of the page)."""
    import vl_convert

    return vl_convert.vegalite_to_svg(chart.to_dict(validate=False))  # schema validation costs ~0.3 s


def _e(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return _html.escape("" if value is None else str(value), quote=True)


def _num(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _value_text(x: float | None, method: str = "") -> str:
    """A raw metric value as the report shows it: yes/no for booleans, few decimals otherwise."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if method == "boolean":
        return "yes" if x else "no"
    if abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.2f}"


def _badge(name: str | None, colour: str, css: str = "band") -> str:
    label = NOT_APPLICABLE if name is None else name
    cls = f"{css} status-na" if name in (None, NOT_APPLICABLE) else css
    return (f'<span class="{cls}"><span class="swatch" style="background:{_e(colour)}"></span>'
            f"{_e(label)}</span>")


def _date(d: dt.date | None) -> str:
    return "" if d is None else f"{d.day} {d:%B %Y}"


def _header_html(card: Scorecard) -> str:
    if card.score is None:
        score = (f'<div class="hs-score"><span class="value">–</span><div>No score this week: too few '
                 f'measures were available for a fair score.<div class="muted">{_e(card.null_reason or "")}'
                 f'</div></div></div>')
    else:
        score = (f'<div class="hs-score"><span class="value" data-role="score">{_num(card.score)}</span>'
                 f'<div><span class="of">out of 100</span><br>'
                 f'{_badge(card.band, card.band_colour, "band large")}</div></div>')
    meaning = (f'<p class="note">What {_e(card.band)} means: {_e(card.band_meaning)}</p>'
               if card.band_meaning and card.score is not None else "")
    return (f'<header class="hs-head"><div><h1>{_e(card.company_name)}</h1>'
            f'<p class="subtitle">Customer health scorecard · {_e(_date(card.as_of))}</p></div>{score}</header>'
            f"{meaning}")


def _trend_html(card: Scorecard) -> str:
    n = card.trend["score"].drop_nulls().len()
    if n < 2:
        return ("<h2>Trend over the last 26 weeks</h2>"
                "<p class=\"muted\">Not enough history yet to draw a trend.</p>")
    return (f'<h2>Trend over the last 26 weeks</h2><figure class="chart" aria-label="score trend">'
            f"{chart_svg(trend_chart(card))}</figure>")


def _categories_html(card: Scorecard) -> str:
    cells = []
    for r in card.categories.iter_rows(named=True):
        width = 0 if r["score"] is None else max(0.0, min(100.0, r["score"]))
        cells.append(f'<div class="cat"><div class="name">{_e(r["label"])}</div>'
                     f'<div class="value">{_num(r["score"])}</div>'
                     f'<div class="bar"><span style="width:{width:.0f}%;background:{_e(r["colour"])}"></span></div>'
                     f'{_badge(r["band"], r["colour"])}</div>')
    return "<h2>Scores by area</h2><div class=\"cats\">" + "".join(cells) + "</div>"


def _metrics_html(card: Scorecard) -> str:
    body = []
    for r in card.metrics.iter_rows(named=True):
        body.append(f'<tr><td>{_e(r["label"])}<div class="muted">{_e(r["description"])}</div></td>'
                    f'<td>{_e(r["category"])}</td><td class="num">{_e(r["value"])}</td>'
                    f'<td class="num">{_num(r["sub_score"])}</td>'
                    f'<td>{_badge(None if r["status"] == NOT_APPLICABLE else r["status"], r["colour"])}</td></tr>')
    return ("<h2>What the score is made of</h2><table><thead><tr><th>Measure</th><th>Area</th>"
            '<th class="num">Value</th><th class="num">Score</th><th>Status</th></tr></thead><tbody>'
            + "".join(body) + "</tbody></table>")


def _changes_html(card: Scorecard) -> str:
    if card.previous_score is None or card.score is None:
        return ("<h2>What changed since last month</h2>"
                "<p class=\"muted\">No score a month ago to compare with.</p>")
    delta = card.score - card.previous_score
    if abs(delta) < 0.5:
        head = f"Your score stayed about the same ({_num(card.previous_score)} → {_num(card.score)})"
    else:
        head = (f"Your score went {'up' if delta > 0 else 'down'} {_num(abs(delta))} points "
                f"({_num(card.previous_score)} → {_num(card.score)})")
    head += f" since {_e(_date(card.previous_as_of))}."
    items = []
    for r in card.changes.filter(pl.col("points").abs() >= 0.5).head(5).iter_rows(named=True):
        verb = "raised" if r["points"] > 0 else "lowered"
        pts = abs(r["points"])
        items.append(f"<li><strong>{_e(r['label'])}</strong> {verb} the score by {pts:.1f} "
                     f"point{'s' if round(pts, 1) != 1 else ''}.</li>")
    detail = "<ul>" + "".join(items) + "</ul>" if items else "<p>No single measure moved it by half a point or more.</p>"
    return f"<h2>What changed since last month</h2><p>{head}</p>{detail}"


def _peers_html(card: Scorecard) -> str:
    title = "<h2>How you compare with similar accounts</h2>"
    if card.peers is None:
        return title + ("<p class=\"muted\">Too few similar accounts to compare fairly "
                        f"(a comparison needs at least {MIN_COHORT}).</p>")
    rows = "".join(f'<tr><td>{_e(r["label"])}</td><td class="num">{_num(r["percentile"])}%</td>'
                   f'<td class="num">{_num(r["cohort_median"])}</td></tr>'
                   for r in card.peers.iter_rows(named=True))
    return (title + f"<p>Compared with {card.peer_size} similar accounts, anonymised: the percentage of "
            "them you are ahead of, and their typical (median) score.</p>"
            '<table><thead><tr><th>Area</th><th class="num">Ahead of</th><th class="num">Typical score</th>'
            "</tr></thead><tbody>" + rows + "</tbody></table>")


def _actions_html(card: Scorecard) -> str:
    title = "<h2>Recommended next steps</h2>"
    if card.actions.is_empty():
        return title + "<p>No measure is in the red band: keep doing what works.</p>"
    items = "".join(f"<li><strong>{_e(r['label'])}</strong>: {_e(r['action'])}</li>"
                    for r in card.actions.iter_rows(named=True))
    return title + f"<ul>{items}</ul>"


def _internal_html(card: Scorecard) -> str:
    if not card.internal:
        return ""
    names = {"csm": "CSM", "arr": "ARR", "renewal_date": "Renewal date", "segment": "Segment",
             "lifecycle_stage": "Lifecycle stage"}
    rows = []
    for key, value in card.internal.items():
        if key == "arr" and value is not None:
            value = f"{value:,.0f}"
        elif key.endswith(")") and "probability" in key and value is not None:
            value = f"{value:.0%}"
        rows.append(f"<tr><th>{_e(names.get(key, key[:1].upper() + key[1:]))}</th><td>{_e(value if value is not None else '–')}</td></tr>")
    return ('<section class="internal"><h2>Internal only: do not share</h2><table>'
            + "".join(rows) + "</table></section>")


def _footer_html(card: Scorecard) -> str:
    variant = f" · variant {_e(card.variant)}" if card.variant not in (None, "default") else ""
    coverage = f" · data coverage {card.coverage:.0%}" if card.coverage is not None else ""
    return (f'<footer class="hs-foot">Health model {_e(card.model_name)} version {_e(card.model_version)} '
            f"(#{_e(card.model_hash)}){variant} · data as of {_e(card.as_of.isoformat())}{coverage}.</footer>")


def scorecard_sections(card: Scorecard) -> list[str]:
    """The scorecard as a list of escaped HTML fragments, in reading order (the notebook displays
    each one; the trend chart is inline SVG)."""
    parts = [_header_html(card), _trend_html(card), _categories_html(card), _metrics_html(card),
             _changes_html(card), _peers_html(card), _actions_html(card), _internal_html(card),
             _footer_html(card)]
    return [p for p in parts if p]


@functools.lru_cache(maxsize=4)
def _cached_peers(path: str, mtime_ns: int, size: int, by: str) -> pl.DataFrame:
    return peer_figures(_cached_table(path, mtime_ns, size), by=by)


@functools.lru_cache(maxsize=4)
def _cached_probability_map(path: str) -> Any:
    from healthscore.analysis.evaluation import ProbabilityMap
    return ProbabilityMap.load(path)


def scorecard(account_id: str, *, scores: str | os.PathLike[str], model: str | os.PathLike[str],
              as_of: str | dt.date | None = None, variant: str | None = None, internal: bool = False,
              cohort: str | os.PathLike[str] | None = None, peer_by: str = "segment",
              probabilities: str | os.PathLike[str] | None = None,
              snapshots: str | os.PathLike[str] | None = None) -> Scorecard:
    """``scorecard_data`` from file paths, as the scorecard notebook calls it.

    Files are read once per kernel and reused for the next account (a warm kernel renders many).
    ``cohort`` is an optional ``peer_figures`` file; without it peers are computed from the scores.
    ``snapshots`` (optional) supplies the raw metric values when the scores do not carry them.
    """
    frame = load_scores(scores)
    st = Path(scores).stat()
    figures = (load_scores(cohort) if cohort else
               _cached_peers(str(Path(scores).resolve()), st.st_mtime_ns, st.st_size, peer_by)
               if peer_by in frame.columns else None)
    probs = _cached_probability_map(str(Path(probabilities).resolve())) if (internal and probabilities) else None
    score_model = load_scorecard_model(model)
    if internal and probs is None and getattr(score_model, "probability", None):
        from healthscore.analysis.evaluation import ProbabilityMap  # a map frozen into the model file
        probs = ProbabilityMap.from_dict(score_model.probability)
    raw = load_scores(snapshots) if snapshots else None
    return scorecard_data(frame, score_model, account_id, as_of=as_of, variant=variant,
                          internal=internal, cohort=figures, peer_by=peer_by, probabilities=probs,
                          snapshots=raw)


# ===================================================================== scorecards: batch
NOTEBOOK = resources.notebook("scorecard")
MANIFEST_COLUMNS = {
    "account_id": pl.String, "company_name": pl.String, "status": pl.String, "file": pl.String,
    "model_hash": pl.String, "data_hash": pl.String, "notebook_hash": pl.String, "as_of": pl.String,
    "seconds": pl.Float64, "error": pl.String,
}
_DONE = ("rendered", "unchanged")
_PROTO = "@@healthscore "  # marks protocol lines in a worker's output
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(account_id: str) -> str:
    """A file name for an account id that cannot leave its folder or collide with another id.

    >>> safe_name("ACME-001")
    'ACME-001'
    >>> safe_name("../x")            # path characters are replaced and a short hash keeps it unique
    'x-d6b96a97'
    """
    base = _SAFE.sub("_", account_id).strip("._")[:80] or "account"
    if base == account_id:
        return base
    return f"{base}-{hashlib.sha256(account_id.encode()).hexdigest()[:8]}"


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def _select_accounts(scores: pl.DataFrame, accounts: str | list[str]) -> list[str]:
    """``all``, ``column=value`` (e.g. ``segment=smb``), a comma-separated string or a list of ids."""
    if isinstance(accounts, str):
        spec = accounts.strip()
        if spec == "all":
            return scores["account_id"].unique().sort().to_list()
        if "=" in spec:
            col, value = (s.strip() for s in spec.split("=", 1))
            if col not in scores.columns:
                raise ValueError(f"--accounts {spec!r}: the scores have no column {col!r}")
            ids = (scores.filter(pl.col(col).cast(pl.String) == value)["account_id"].unique().sort().to_list())
            if not ids:
                raise ValueError(f"--accounts {spec!r}: no account has {col} = {value!r}")
            return ids
        accounts = [a.strip() for a in spec.split(",") if a.strip()]
    return list(dict.fromkeys(str(a) for a in accounts))


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:  # the process is gone or psutil is missing: no figure rather than a crash
        return None


class WarmKernel:
    """One long-lived kernel that runs a parameterised notebook again and again.

    Parameters are injected the way papermill does (``parameterize_notebook``); the user's
    variables are deleted before each run so nothing of the previous account survives, while
    imported modules and file caches stay warm. No input/output history is kept, so memory stays
    flat however many accounts one kernel renders.
    """

    # cheaper than %reset (which runs a full garbage collection: ~0.5 s with altair loaded)
    _CLEAR = ("_ip = get_ipython()\n"
              "for _k in [k for k in _ip.user_ns if not k.startswith('_') and k not in _ip.user_ns_hidden]:\n"
              "    del _ip.user_ns[_k]")

    # run once per kernel: the imports and the chart engine's start-up (~1 s) are paid before the
    # first account, while the parent is still preparing
    _WARM_UP = ("import altair, vl_convert\n"
                "from healthscore import reports\n"
                "vl_convert.vegalite_to_svg({'mark': 'point', 'data': {'values': [{'x': 1}]},\n"
                "                            'encoding': {'x': {'field': 'x', 'type': 'quantitative'}}})")

    def __init__(self, notebook: str | os.PathLike[str] = NOTEBOOK, *, timeout: int = 300,
                 cwd: str | os.PathLike[str] | None = None, warm_up: bool = True,
                 while_starting: Any = None) -> None:
        """``while_starting`` (a callable) runs while the kernel process boots."""
        from nbclient import NotebookClient
        from papermill.iorw import load_notebook_node

        self.template = load_notebook_node(str(notebook))  # adds the metadata papermill relies on
        kernel = self.template.metadata.get("kernelspec", {}).get("name", "python3")
        self.client = NotebookClient(nbformat.v4.new_notebook(), timeout=timeout, kernel_name=kernel,
                                     resources={"metadata": {"path": str(cwd or os.getcwd())}},
                                     extra_arguments=["--HistoryManager.enabled=False"])
        self._warm_up = warm_up
        self._start(while_starting)

    def _start(self, while_starting: Any = None) -> None:
        self.client.km = self.client.create_kernel_manager()
        self.client.start_new_kernel()  # launches the process
        if while_starting is not None:
            while_starting()
        self.client.start_new_kernel_client()  # waits until the kernel answers
        if self._warm_up:
            cell = nbformat.v4.new_code_cell(self._WARM_UP)
            self.client.nb = nbformat.v4.new_notebook(cells=[cell])
            self.client.execute_cell(cell, 0, store_history=False)

    @property
    def kernel_pid(self) -> int | None:
        prov = getattr(self.client.km, "provisioner", None)
        return getattr(prov, "pid", None) or getattr(getattr(prov, "process", None), "pid", None)

    def run(self, parameters: dict[str, Any]) -> nbformat.NotebookNode:
        """Execute the notebook with ``parameters``; returns the executed notebook.

        Raises nbclient's ``CellExecutionError`` when a cell fails; the kernel is restarted when it
        died or timed out, so the next run starts clean."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError
        from papermill.parameterize import parameterize_notebook

        nb = parameterize_notebook(copy.deepcopy(self.template), parameters)
        reset = nbformat.v4.new_code_cell(self._CLEAR)
        reset.metadata["tags"] = ["remove-cell"]
        nb.cells.insert(0, reset)
        self.client.nb = nb
        self.client.reset_execution_trackers()
        try:
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    self.client.execute_cell(cell, index, store_history=False)
        except (DeadKernelError, CellTimeoutError):
            self.restart()
            raise
        del nb.cells[0]
        return nb

    def restart(self) -> None:
        self.close()
        self._start()

    def close(self) -> None:
        try:
            self.client._cleanup_kernel()  # stops the channels and shuts the kernel down
        except Exception:  # shutting down a dead kernel must not hide the real error
            pass


def _render_one(kernel: WarmKernel, task: dict[str, Any]) -> dict[str, Any]:
    """Run and export one account; never raises (the error goes into the manifest row)."""
    from nbclient.exceptions import CellExecutionError

    t0 = time.perf_counter()
    row = {"account_id": task["account_id"], "status": "rendered", "file": task["file"], "error": None}
    try:
        nb = kernel.run(task["parameters"])
        export_html(nb, Path(task["out_dir"]) / task["file"], title=task["title"])
    except CellExecutionError as exc:
        row.update(status="failed", error=f"{exc.ename}: {exc.evalue}".strip())
    except Exception as exc:  # one account's failure must not sink the batch
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".strip())
    row["seconds"] = time.perf_counter() - t0
    return row


def _worker_main() -> None:
    """Entry point of a worker process (``python -c``): one warm kernel; tasks arrive as JSON lines
    on stdin, results leave as JSON lines on the original stdout (stray prints go to stderr)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    notebook, timeout, cwd = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def send(msg: dict[str, Any]) -> None:
        proto.write(_PROTO + json.dumps(msg, default=str) + "\n")

    kernel = None
    try:
        kernel = WarmKernel(notebook, timeout=timeout, cwd=cwd, while_starting=_html_exporter)
        send({"kind": "ready"})
        for line in sys.stdin:
            row = _render_one(kernel, json.loads(line))
            row["worker_rss_mb"] = _rss_mb(os.getpid())
            row["kernel_rss_mb"] = _rss_mb(kernel.kernel_pid)
            send({"kind": "done", "row": row})
    except BaseException as exc:  # tell the parent why this worker stopped
        send({"kind": "dead", "error": f"{type(exc).__name__}: {exc}"})
    finally:
        if kernel is not None:
            kernel.close()


class _Worker:
    """The parent's handle on one worker process; a thread turns its output into events."""

    def __init__(self, wid: int, notebook: str, timeout: int, log: Path, events: Any) -> None:
        import subprocess
        import threading

        self.wid, self.task = wid, None
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from healthscore.render.reports import _worker_main; _worker_main()",
             notebook, str(timeout), os.getcwd()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events: Any) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_PROTO):
                events.put((self, json.loads(line[len(_PROTO):])))
        events.put((self, {"kind": "eof"}))

    def send(self, task: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.task = task
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()

    def no_more_tasks(self) -> None:
        """Close stdin: the worker finishes its loop and shuts its kernel down."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def close(self) -> None:
        try:
            self.no_more_tasks()
            self.proc.wait(timeout=30)
        except Exception:  # a stuck worker is killed rather than waited for
            self.proc.kill()
        self._log.close()


@dataclass
class ScorecardRun:
    """What ``render_scorecards`` did: the manifest (one row per account), where, and the memory of
    the workers after each report (``memory``: report, worker, worker_rss_mb, kernel_rss_mb)."""

    out_dir: Path
    manifest: pl.DataFrame
    memory: pl.DataFrame
    seconds: float

    @property
    def failed(self) -> pl.DataFrame:
        return self.manifest.filter(pl.col("status") == "failed")

    @property
    def ok(self) -> bool:
        return self.failed.is_empty()

    def summary(self) -> str:
        counts = dict(self.manifest.group_by("status").len().iter_rows())
        parts = [f"{counts.get(s, 0)} {s}" for s in ("rendered", "unchanged", "failed")]
        lines = [f"scorecards in {self.out_dir}: " + ", ".join(parts) + f" in {self.seconds:.1f} s",
                 f"open {self.out_dir / 'index.html'}"]
        for r in self.failed.head(10).iter_rows(named=True):
            lines.append(f"  failed {r['account_id']}: {r['error']}")
        return "\n".join(lines)


def _prepare_inputs(scores: pl.DataFrame | str | os.PathLike[str], model: Any,
                    inputs: Path) -> tuple[Path, Any, Path]:
    """Paths the notebook can read: frames and model objects are written beside the reports."""
    from healthscore.spec.model import load_model

    if isinstance(scores, pl.DataFrame):
        scores_path = inputs / "scores.parquet"
        files.write_parquet(scores, scores_path)
    else:
        scores_path = Path(scores)
        if not scores_path.is_file():
            raise FileNotFoundError(f"{scores_path}: no such scores file; write one with 'healthscore score'")
    if isinstance(model, (str, os.PathLike)):
        model_path = Path(model)
        model = load_model(model_path)
    else:
        model_path = inputs / "model.toml"
        model.save(model_path)
    return scores_path.resolve(), model, model_path.resolve()


def _read_manifest(path: Path) -> pl.DataFrame:
    if not path.is_file():
        return pl.DataFrame(schema=MANIFEST_COLUMNS)
    try:
        old = pl.read_csv(path, schema_overrides=MANIFEST_COLUMNS, infer_schema=False)
        return old.select([pl.col(c).cast(t) if c in old.columns else pl.lit(None, t).alias(c)
                           for c, t in MANIFEST_COLUMNS.items()])
    except Exception:  # an unreadable manifest only costs a full re-render
        return pl.DataFrame(schema=MANIFEST_COLUMNS)


def _index_html(manifest: pl.DataFrame, latest: pl.DataFrame, title: str) -> str:
    rows = []
    table = manifest.join(latest, on="account_id", how="left").sort("company_name", "account_id", nulls_last=True)
    for r in table.iter_rows(named=True):
        from urllib.parse import quote
        name = r["company_name"] or r["account_id"]
        link = (f'<a href="{_e(quote(r["file"]))}">{_e(name)}</a>' if r["status"] in _DONE else _e(name))
        status = r["status"] if r["status"] != "failed" else f"failed: {r['error']}"
        rows.append(f'<tr><td>{link}</td><td>{_e(r["account_id"])}</td><td class="num">{_num(r["score"])}</td>'
                    f'<td>{_badge(r["band"], _band_colour(r["band"])) if r["band"] else "–"}</td>'
                    f"<td>{_e(status)}</td></tr>")
    body = (f"<h1>{_e(title)}</h1><p class=\"muted\">{manifest.height} accounts · internal list, "
            "share each scorecard on its own.</p><table><thead><tr><th>Account</th><th>ID</th>"
            '<th class="num">Score</th><th>Band</th><th>Report</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "", outputs=[nbformat.v4.new_output("display_data", data={"text/html": body})])])
    return export_html(nb, None, title=title)


def render_scorecards(scores: pl.DataFrame | str | os.PathLike[str], model: Any,
                      accounts: str | list[str] = "all", out_dir: str | os.PathLike[str] = "build/scorecards",
                      *, internal: bool = False, workers: int = 2, as_of: str | dt.date | None = None,
                      variant: str | None = None, peer_by: str = "segment",
                      probabilities: str | os.PathLike[str] | None = None,
                      snapshots: pl.DataFrame | str | os.PathLike[str] | None = None,
                      notebook: str | os.PathLike[str] = NOTEBOOK, timeout: int = 300,
                      progress: bool = True, force: bool = False) -> ScorecardRun:
    """Render one static HTML scorecard per account with the scorecard notebook.

    Each of ``workers`` processes keeps one kernel warm and runs the notebook for account after
    account (parameters injected as papermill does), then exports the HTML in process. Writes
    ``out_dir/<account>.html``, ``out_dir/index.html`` and ``out_dir/manifest.csv`` (account_id,
    company_name, status, file, model_hash, data_hash, notebook_hash, as_of, seconds, error).
    ``snapshots`` (optional) supplies raw metric values for the metric table when the scores do not
    carry them. Accounts already rendered from the same model, data and notebook (and report
    settings) are skipped unless ``force``.
    A failing account is recorded as ``failed`` and the others still complete.

    >>> run = render_scorecards("scores.parquet", "model.toml", "segment=smb", "build/cards")  # doctest: +SKIP
    >>> print(run.summary())  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores_path, model_obj, model_path = _prepare_inputs(scores, model, out / ".inputs")
    snapshots_path = None
    if isinstance(snapshots, pl.DataFrame):
        snapshots_path = (out / ".inputs" / "snapshots.parquet").resolve()
        files.write_parquet(snapshots, snapshots_path)
    elif snapshots is not None:
        snapshots_path = Path(snapshots).resolve()
        if not snapshots_path.is_file():
            raise FileNotFoundError(f"{snapshots}: no such snapshots file")
    frame = load_scores(scores_path)
    ids = _select_accounts(frame, accounts)
    as_of_s = None if as_of is None else str(as_of)

    # peers once for the whole batch (aggregates only), instead of once per kernel; written below,
    # once the workers are starting
    cohort_path = (out / ".inputs" / f"peers-{peer_by}.parquet").resolve() if peer_by in frame.columns else None

    template_bytes = b"".join(p.read_bytes() for p in sorted((TEMPLATES / TEMPLATE_NAME).iterdir()) if p.is_file())
    settings = repr((internal, as_of_s, variant, peer_by, str(probabilities))).encode()
    model_hash = str(model_obj.hash)
    data_hash = _sha(scores_path.read_bytes(), Path(probabilities).read_bytes() if probabilities else b"",
                     snapshots_path.read_bytes() if snapshots_path else b"")
    # the notebook, the template, this module's code and the report settings: any change re-renders
    notebook_hash = _sha(Path(notebook).read_bytes(), template_bytes, Path(__file__).read_bytes(), settings)

    latest = (frame.filter(pl.col("account_id").is_in(ids))
              .filter(pl.col("as_of") <= dt.date.fromisoformat(as_of_s)) if as_of_s else
              frame.filter(pl.col("account_id").is_in(ids)))
    latest = (latest.sort("account_id", "as_of").group_by("account_id").last()
              .select("account_id", *[c for c in ("company_name", "score", "band") if c in frame.columns]))
    for c in ("company_name", "score", "band"):
        if c not in latest.columns:
            latest = latest.with_columns(pl.lit(None, pl.Float64 if c == "score" else pl.String).alias(c))
    names = dict(zip(latest["account_id"], latest["company_name"]))

    manifest_path = out / "manifest.csv"
    previous = {r["account_id"]: r for r in _read_manifest(manifest_path).iter_rows(named=True)}
    rows: dict[str, dict[str, Any]] = {}
    tasks = []
    for aid in ids:
        file = safe_name(aid) + ".html"
        stamp = {"model_hash": model_hash, "data_hash": data_hash, "notebook_hash": notebook_hash}
        base = {"account_id": aid, "company_name": names.get(aid), "file": file, "as_of": as_of_s,
                "error": None, **stamp}
        old = previous.get(aid)
        if (not force and old is not None and old["status"] in _DONE and (out / file).is_file()
                and all(old[k] == v for k, v in stamp.items()) and old["as_of"] == as_of_s):
            rows[aid] = {**base, "status": "unchanged", "seconds": 0.0}
            continue
        rows[aid] = {**base, "status": "pending", "seconds": None}
        params = {"account_id": aid, "as_of": as_of_s, "scores": str(scores_path), "model": str(model_path),
                  "variant": variant, "internal": internal, "cohort": str(cohort_path) if cohort_path else None,
                  "peer_by": peer_by, "probabilities": str(Path(probabilities).resolve()) if probabilities else None,
                  "snapshots": str(snapshots_path) if snapshots_path else None}
        tasks.append({"index": len(tasks), "account_id": aid, "file": file, "out_dir": str(out),
                      "title": f"{names.get(aid) or aid}: health scorecard", "parameters": params})

    def write_manifest() -> pl.DataFrame:
        m = pl.DataFrame([rows[a] for a in ids], schema=MANIFEST_COLUMNS)
        files.write_csv(m, manifest_path)
        return m

    memory: list[dict[str, Any]] = []
    if tasks:
        import queue

        events: queue.Queue = queue.Queue()
        n_workers = max(1, min(int(workers), len(tasks)))
        pool = [_Worker(w, str(Path(notebook).resolve()), timeout, out / ".inputs" / f"worker-{w}.log", events)
                for w in range(n_workers)]
        todo = list(reversed(tasks))
        live, remaining = n_workers, len(tasks)
        bar = tqdm(total=len(tasks), desc="scorecards", unit="report", disable=not progress)

        def finish(account_id: str, **fields: Any) -> None:
            nonlocal remaining
            rows[account_id].update(fields)
            remaining -= 1
            bar.update()
            write_manifest()

        try:
            if cohort_path is not None:  # written before any task is sent: tasks go out on "ready"
                files.write_parquet(peer_figures(frame, by=peer_by), cohort_path)
            while remaining and live:
                worker, msg = events.get()
                if msg["kind"] == "done":
                    row = msg["row"]
                    worker.task = None
                    memory.append({"report": len(memory) + 1, "worker": worker.wid,
                                   "worker_rss_mb": row.get("worker_rss_mb"),
                                   "kernel_rss_mb": row.get("kernel_rss_mb")})
                    finish(row["account_id"], status=row["status"], seconds=row["seconds"], error=row["error"])
                if msg["kind"] in ("ready", "done"):
                    if todo:
                        worker.send(todo.pop())
                    else:
                        worker.no_more_tasks()
                elif msg["kind"] in ("dead", "eof"):
                    live -= msg["kind"] == "eof"
                    if worker.task is not None:  # the account it was rendering goes down with it
                        finish(worker.task["account_id"], status="failed", seconds=None,
                               error=msg.get("error") or "worker process stopped")
                        worker.task = None
        finally:
            bar.close()
            for w in pool:
                w.close()
        for r in rows.values():
            if r["status"] == "pending":
                r.update(status="failed", error="not rendered: no worker could start a kernel "
                                                f"(see {out / '.inputs'}/worker-*.log)")
    manifest = write_manifest()
    files.write_text(out / "index.html", _index_html(manifest, latest, "Customer health scorecards"))
    return ScorecardRun(out_dir=out, manifest=manifest,
                        memory=pl.DataFrame(memory, schema={"report": pl.Int64, "worker": pl.Int64,
                                                            "worker_rss_mb": pl.Float64,
                                                            "kernel_rss_mb": pl.Float64}),
                        seconds=time.perf_counter() - t_start)


# ===================================================================== cohort review
REVIEW_NOTEBOOK = resources.notebook("cohort_review")


def render_review(data: str | os.PathLike[str] | pl.DataFrame, out: str | os.PathLike[str], *,
                  events: str | os.PathLike[str] | pl.DataFrame | None = None,
                  model: str | os.PathLike[str] | None = None, by: str = "segment",
                  date_from: str | None = None, date_to: str | None = None, horizon: str = "90d",
                  timeout: int = 900) -> Path:
    """Run ``notebooks/cohort_review.ipynb`` with papermill and write the leadership cohort review
    as one static HTML file with no code: executive summary first, then the detail.

    ``data`` holds snapshots (scored with ``model``) or a score frame; frames are passed through
    a temporary Parquet file. Returns the path written.

    >>> render_review("data/snapshots.parquet", "review.html", events="data/events.parquet",
    ...               model="data/model.toml", by="segment")  # doctest: +SKIP
    """
    import tempfile

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryDirectory(prefix="hs-review-") as tmp:
        def _path(value: Any, name: str) -> str | None:
            if value is None:
                return None
            if isinstance(value, pl.DataFrame):
                target = Path(tmp) / f"{name}.parquet"
                value.write_parquet(target)
                return str(target)
            if not Path(value).exists():
                raise FileNotFoundError(f"{value}: no such file (the {name} for the cohort review)")
            return str(Path(value).resolve())

        params = {"data": _path(data, "data"), "events": _path(events, "events"), "model": _path(model, "model"),
                  "by": by, "date_from": None if date_from is None else str(date_from),
                  "date_to": None if date_to is None else str(date_to), "horizon": horizon}
        try:
            nb = pm.execute_notebook(str(REVIEW_NOTEBOOK), str(Path(tmp) / "review.ipynb"), parameters=params,
                                     kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                                     cwd=str(REVIEW_NOTEBOOK.parent),
                                     # a local kernel on loopback: its start-up warning about TCP is noise
                                     extra_arguments=["--IPKernelApp.log_level=ERROR"])
        except PapermillExecutionError as exc:
            # the notebook's error names the file, column or setting; show it without the traceback
            raise ValueError(f"the cohort review could not be built: {exc.ename}: {exc.evalue}") from None
    export_html(nbformat.from_dict(nb), out, title="Cohort review by " + " x ".join(
        b.strip().replace("_", " ") for b in by.split(",")))
    return Path(out)


def one_per_band(scores: pl.DataFrame, bands: tuple[str, ...] = ("green", "yellow", "red")) -> list[str]:
    """One account per band at the latest date (the middle one by score within its band), e.g. to
    show what each band's scorecard looks like.

    >>> f = pl.DataFrame({"account_id": list("abcd"), "as_of": [dt.date(2026, 1, 5)] * 4,
    ...                   "score": [90.0, 50.0, 10.0, 80.0], "band": ["green", "yellow", "red", "green"]})
    >>> one_per_band(f)
    ['a', 'b', 'c']
    """
    latest = scores.filter(pl.col("as_of") == pl.col("as_of").max()).drop_nulls("score")
    picked = []
    for band in bands:
        rows = latest.filter(pl.col("band") == band).sort("score", "account_id")
        if rows.height:
            picked.append(rows["account_id"][rows.height // 2])
    return picked
