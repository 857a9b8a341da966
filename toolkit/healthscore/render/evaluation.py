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

from healthscore.analysis.evaluation import Evaluation
from healthscore.render.html import escape
from healthscore.render.html import table as html_table
from healthscore.render.reports import export_html
from healthscore.spec.outcomes import horizon_words
from healthscore.viz import evaluation as ev_charts

__all__ = ["table", "repr_html", "report_html"]

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
    "pr_auc",
    "lift_top10",
    "capture_top10",
]
_CALIBRATION_COLUMNS = ["model", "brier", "ece", "scored"]
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


def repr_html(ev: Evaluation) -> str:
    """What a notebook shows for an evaluation: the split and the head-to-head tables."""
    head = (
        f"<p><b>Backtest: {escape(ev.outcome)} within {escape(horizon_words(ev.horizon))}</b>, split at "
        f"{escape(ev.split)}: test {ev.test_rows:,} snapshots ({ev.test_events:,} with the event), "
        f"train {ev.train_rows:,}.</p>"
    )
    return head + table(ev.table, _KEY_COLUMNS) + table(ev.table, _ALARM_COLUMNS)


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
    md(
        f"Every model scored on the same holdout: snapshots from {ev.test_dates[0]} to "
        f"{ev.test_dates[1]} ({ev.test_rows:,} rows, {ev.test_events:,} with the event). The backtest itself "
        f"fits only the score-to-probability maps, on earlier snapshots ({ev.train_dates[0]} to "
        f"{ev.train_dates[1]}, {ev.train_rows:,} rows) whose {horizon_words(ev.horizon)} outcome window closes "
        f"by the split date {ev.split}. A model fitted elsewhere is only fairly compared when it was fitted on "
        "those weeks too, never on the holdout."
    )
    md("## Head to head")
    show({"text/html": table(ev.table, _KEY_COLUMNS)})
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
        show({"text/html": table(ev.table, _CALIBRATION_COLUMNS)})
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
    return export_html(nb, path, title=title)
