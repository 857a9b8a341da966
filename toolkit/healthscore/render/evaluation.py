"""The backtest report of an :class:`~healthscore.analysis.evaluation.Evaluation` as HTML: its
tables through the one renderer (:func:`healthscore.render.html.table`) with the one formatter
set, its charts from :mod:`healthscore.viz.evaluation` as inline SVG, exported with the shared
report template (no script, nothing loaded from anywhere)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import nbformat
import polars as pl
import vl_convert

from healthscore.analysis.evaluation import Evaluation, event_noun
from healthscore.render.html import escape
from healthscore.render.html import table as html_table
from healthscore.render.reports import export_html
from healthscore.spec.outcomes import horizon_words
from healthscore.viz import evaluation as ev_charts

__all__ = ["table", "repr_html", "report_html", "verdict_html", "catch_html", "glossary_html", "GLOSSARY"]

_TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    # column -> (heading, format)
    "model": ("model", "s"),
    "segment": ("segment", "s"),
    "rows": ("rows", ",d"),
    "accounts": ("accounts", ",d"),
    "events": ("events", ",d"),
    "event_rate": ("event rate", ".1%"),
    "scored": ("scored", ".0%"),
    "auc": ("AUC", ".3f"),
    "auc_lower": ("AUC low", ".3f"),
    "auc_upper": ("AUC high", ".3f"),
    "pr_auc": ("PR-AUC", ".3f"),
    "lift_top10": ("top-decile lift", ".2f"),
    "capture_top10": ("captured", ".0%"),
    "brier": ("Brier", ".4f"),
    "ece": ("ECE", ".4f"),
    "alarm_band": ("alarm band", "s"),
    "alarm_precision": ("alarm precision", ".0%"),
    "alarm_recall": ("alarm recall", ".0%"),
    "false_alarms": ("false alarms", ",d"),
    "misses": ("misses", ",d"),
    "precision_cutoff": ("cut-off @ target", ".1f"),
    "precision_cutoff_recall": ("recall @ target", ".0%"),
    "capacity_k": ("capacity", ",d"),
    "capacity_cutoff": ("capacity cut-off", ".1f"),
    "capacity_precision": ("capacity precision", ".0%"),
    "capacity_recall": ("capacity recall", ".0%"),
    "band": ("band", "s"),
    "count": ("rows", ",d"),
    "rate": ("rate", ".1%"),
    "rate_lower": ("low", ".1%"),
    "rate_upper": ("high", ".1%"),
    "alarm_flagged": ("flagged", ",d"),
    "precision_target": ("precision target", ".0%"),
}


def table(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A backtest frame as an HTML table with readable headings and formats.

    >>> table(pl.DataFrame({"model": ["a<b"], "auc": [0.71234]}))
    '<table class="metrics"><thead><tr><th>model</th><th class="num">AUC</th></tr></thead><tbody><tr><td>a&lt;b</td><td class="num">0.712</td></tr></tbody></table>'
    """
    cols = [c for c in (columns or frame.columns) if c in frame.columns]
    specs = {c: _TABLE_COLUMNS.get(c, (c, "s" if frame.schema[c] == pl.String else ".3g")) for c in cols}
    return html_table(
        frame,
        columns=cols,
        headings={c: h for c, (h, _) in specs.items()},
        formats={c: f for c, (_, f) in specs.items() if f != "s"},
        css="metrics",
    )


_KEY_COLUMNS = [
    "model",
    "rows",
    "events",
    "event_rate",
    "auc",
    "auc_lower",
    "auc_upper",
    "lift_top10",
    "capture_top10",
]
# the technical figures come after the plain ones
_MORE_COLUMNS = ["model", "pr_auc", "brier", "ece", "scored"]
_CALIBRATION_COLUMNS = _MORE_COLUMNS
_ALARM_COLUMNS = ["model", "alarm_band", "alarm_flagged", "alarm_precision", "alarm_recall", "false_alarms", "misses"]
_CUTOFF_COLUMNS = [
    "model",
    "precision_target",
    "precision_cutoff",
    "precision_cutoff_recall",
    "capacity_k",
    "capacity_cutoff",
    "capacity_precision",
    "capacity_recall",
]
_SEGMENT_COLUMNS = [
    "model",
    "segment",
    "rows",
    "events",
    "event_rate",
    "auc",
    "auc_lower",
    "auc_upper",
    "lift_top10",
    "alarm_precision",
    "alarm_recall",
]


# one plain sentence per term the report uses
GLOSSARY: dict[str, str] = {
    "AUC": "the chance that the score puts an account that went on to have the event ahead of one that did "
    "not, as the likelier of the two; 0.5 is a coin toss, 1.0 a perfect ranking.",
    "paired interval": "the range the true AUC difference between two models most likely lies in, measured "
    "on the same accounts; a difference counts only when the interval leaves out zero.",
    "top-decile lift": "how many times more often the event happens among the tenth of accounts the score "
    "marks as likeliest to have it than across the whole book.",
    "captured": "the share of all events that fall among the tenth of accounts the score marks as likeliest "
    "to have the event.",
    "alarm precision and recall": "of the accounts the alarm band flags, the share that had the event "
    "(precision); of the accounts that had the event, the share the band flagged (recall).",
    "calibration": "whether a score read as a probability comes true: of accounts given 20%, about 20 in "
    "100 should have the event.",
    "PR-AUC": "the average precision across every cut-off, which rewards finding the few accounts with the "
    "event without flagging many others; compare it with the event rate, what a random score gets.",
    "Brier": "the mean squared gap between the stated probability and what happened (0 is perfect, lower is better).",
    "ECE": "expected calibration error: the average gap between stated and observed rates across probability "
    "bins (0 is perfect).",
    "Wilson interval": "the range a band's true event rate most likely lies in; wide when the band is small.",
}


def verdict_html(ev: Evaluation) -> str:
    """The verdict first: which model to use and how sure, the head-to-head sentences behind it,
    and any warning (an AUC below 0.5, a model that saw the holdout)."""
    parts = [
        f'<section class="verdict" id="verdict"><h2>Verdict</h2><p><strong>{escape(ev.recommendation())}</strong></p>'
    ]
    if ev.table.height > 2:  # with two models the verdict already gives their interval
        parts.append("<ul>" + "".join(f"<li>{escape(v)}</li>" for v in ev.verdicts) + "</ul>")
    notes = [f"warning: {w}" for w in ev.warnings] + [
        f"overlap: {name} saw the holdout ({how})" for name, how in ev.overlaps.items()
    ]
    parts += [f'<div class="note finding"><p>{escape(n)}</p></div>' for n in notes]
    return "".join(parts) + "</section>"


def catch_html(ev: Evaluation, *, with_table: bool = True) -> str:
    """What the alarm band, and the alarm band with the next one, catch: the share of the holdout's
    events inside them and the share of accounts they flag, in a sentence and (``with_table``) a small
    table."""
    noun = event_noun(ev.outcome)
    rows: list[dict[str, Any]] = []
    for r in ev.table.iter_rows(named=True):
        if r.get("alarm_band") is None or r.get("alarm_recall") is None:
            continue
        rows.append(
            {
                "model": r["model"],
                "bands": r["alarm_band"],
                "caught": r["alarm_recall"],
                "flagged": r.get("alarm_share"),
            }
        )
        if r.get("watch_band") is not None:
            rows.append(
                {
                    "model": r["model"],
                    "bands": f"{r['alarm_band']} plus {r['watch_band']}",
                    "caught": r.get("alarm_watch_recall"),
                    "flagged": r.get("alarm_watch_share"),
                }
            )
    if not rows:
        return ""
    frame = pl.DataFrame(
        rows, schema={"model": pl.String, "bands": pl.String, "caught": pl.Float64, "flagged": pl.Float64}
    )
    if ev.table.height == 1:
        frame = frame.drop("model")
    lead = f"<h2>What the bands catch</h2><p>{escape(' '.join(ev.catch_lines(named=ev.table.height > 1)))}</p>"
    if not with_table:
        return lead
    return (
        lead
        + html_table(
            frame,
            headings={"caught": f"share of {noun} caught", "flagged": "share of snapshots flagged"},
            formats={"caught": "percent", "flagged": "percent"},
            css="metrics",
        )
        + '<p class="muted">Shares over every account snapshot of the holdout: the share flagged is the part '
        "of the book a CS team would be working on a typical date.</p>"
    )


def glossary_html() -> str:
    """The glossary at the end of the report: one plain sentence per term."""
    return (
        '<section class="glossary" id="glossary"><h2>Glossary</h2><ul class="glossary">'
        + "".join(f"<li><strong>{escape(k)}</strong>: {escape(v)}</li>" for k, v in GLOSSARY.items())
        + "</ul></section>"
    )


def repr_html(ev: Evaluation) -> str:
    """What a notebook shows for an evaluation: the verdict, what the bands catch, then the tables."""
    head = (
        f"<p><b>Backtest: {escape(ev.outcome)} within {escape(horizon_words(ev.horizon))}</b>, split at "
        f"{escape(ev.split)}: test {ev.test_rows:,} snapshots ({ev.test_events:,} with the event), "
        f"train {ev.train_rows:,}.</p>"
    )
    return (
        verdict_html(ev)
        + catch_html(ev, with_table=False)
        + head
        + table(ev.table, _KEY_COLUMNS)
        + table(ev.table, _ALARM_COLUMNS)
    )


def report_html(ev: Evaluation, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
    """The backtest report: a notebook of outputs rendered with the shared report template (charts as
    inline SVG, tables through the one renderer, prose sanitised); written atomically to ``path``."""
    title = title or f"Backtest: {ev.outcome} within {horizon_words(ev.horizon)}"
    nb = nbformat.v4.new_notebook()

    def md(text: str) -> None:
        nb.cells.append(nbformat.v4.new_markdown_cell(text))

    def show(data: dict[str, str]) -> None:
        cell = nbformat.v4.new_code_cell("")
        cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
        nb.cells.append(cell)

    def chart(c: Any) -> None:
        # SVG rendered here, offline, so the page carries no script and fetches nothing
        show({"image/svg+xml": vl_convert.vegalite_to_svg(c.to_dict())})

    charts = ev_charts.charts(ev)
    show({"text/html": f"<h1>{escape(title)}</h1>"})
    show({"text/html": verdict_html(ev)})
    catch = catch_html(ev)
    if catch:
        show({"text/html": catch})
    md(
        f"Every model scored on the same holdout: snapshots from {ev.test_dates[0]} to "
        f"{ev.test_dates[1]} ({ev.test_rows:,} rows, {ev.test_events:,} with the event). The backtest itself "
        f"fits only the score-to-probability maps, on earlier snapshots ({ev.train_dates[0]} to "
        f"{ev.train_dates[1]}, {ev.train_rows:,} rows) whose {horizon_words(ev.horizon)} outcome window closes "
        f"by the split date {ev.split}. A model fitted elsewhere is only fairly compared when it was fitted on "
        "those weeks too, never on the holdout."
    )
    show({"text/html": "<h2>Head to head</h2>" + table(ev.table, _KEY_COLUMNS)})
    chart(charts["comparison"])
    md(
        "## Ranking: ROC and gains\n\nThe further a curve bows towards the top left, the better the score "
        "ranks accounts that go on to have the event above those that do not."
    )
    chart(charts["roc"])
    chart(charts["lift"])
    md(
        f"## Bands\n\nThe {ev.outcome} rate of each band on the holdout, with 95% Wilson intervals. Bands "
        "should separate clearly; a band whose interval overlaps its neighbour adds little."
    )
    chart(charts["bands"])
    show({"text/html": table(ev.bands, ["model", "band", "count", "events", "rate", "rate_lower", "rate_upper"])})
    md(
        "### Alarms and cut-offs\n\nFalse alarms are flagged accounts without the event, misses are events outside "
        "the alarm band. The precision cut-off flags as many accounts as possible while keeping precision at the "
        "target; the capacity cut-off fits the weekly number of accounts a CS team can work."
    )
    show({"text/html": table(ev.table, _ALARM_COLUMNS)})
    show({"text/html": table(ev.table, _CUTOFF_COLUMNS)})
    if ev.reliability.height:
        md(
            "## Calibration\n\nEach score is read as a probability through a map fitted on the training rows. "
            "Points on the diagonal mean the stated probabilities come true on the holdout."
        )
        chart(charts["reliability"])
        show(
            {
                "text/html": "<ul>"
                + "".join(
                    f"<li><strong>{escape(name)}</strong>: {escape(pm.explain(30))}; {escape(pm.explain(70))}</li>"
                    for name, pm in ev.probability_maps.items()
                )
                + "</ul>"
            }
        )
    show(
        {
            "text/html": "<h2>Further measures</h2><p>PR-AUC, the Brier score and the calibration error (ECE), "
            "with the share of rows each model scored; each is explained in the glossary.</p>"
            + table(ev.table, _MORE_COLUMNS)
        }
    )
    md(
        f"## Score trajectories\n\nMean score over the weeks before the {ev.outcome} event, against accounts "
        "without it lined up on the last week of the data. An early, clear gap is what gives a CSM time to act."
    )
    chart(charts["trajectories"])
    if ev.by is not None:
        show({"text/html": f"<h2>By {escape(ev.by)}</h2>"})
        seg = ev.segments.rename({ev.by: "segment"}) if ev.by != "segment" else ev.segments
        show({"text/html": table(seg, _SEGMENT_COLUMNS)})
    show(
        {
            "text/html": '<p class="muted">AUC intervals: DeLong, with placement values summed per account '
            "(clustered), since weekly snapshots of one account are not independent. Generated by "
            "healthscore; model hashes: "
            + escape(", ".join(f"{r['model']} {r['model_hash']}" for r in ev.table.iter_rows(named=True)))
            + ".</p>"
        }
    )
    show({"text/html": glossary_html()})
    return export_html(nb, path, title=title)
