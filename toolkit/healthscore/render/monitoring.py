"""The monitoring report: one static HTML page saying whether the score model still holds.

The verdict comes first, in words ("refit recommended: ..."), then the period table, the AUC and
PSI charts (inline SVG drawn offline) and the detailed tables. Every string from the data or the
model is escaped; the page runs no script and fetches nothing.

>>> _table([{"metric": "a<b", "psi": 0.12345}], {"metric": ("metric", "s"), "psi": ("PSI", ".3f")})
'<table class="metrics"><thead><tr><th>metric</th><th class="num">PSI</th></tr></thead><tbody><tr><td>a&lt;b</td><td class="num">0.123</td></tr></tbody></table>'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import nbformat
import polars as pl

from healthscore.analysis.monitoring import PSI_DRIFT, PSI_WATCH, SCORE, Monitoring
from healthscore.render.html import escape, table
from healthscore.render.reports import export_html
from healthscore.spec.outcomes import horizon_words

__all__ = ["monitoring_report"]


_e = escape


def _table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, tuple[str, str]]) -> str:
    """Rows as an HTML table through the one renderer: ``columns`` maps a key to (heading, format)."""
    keys = list(columns)
    frame = (
        pl.DataFrame([{k: r.get(k) for k in keys} for r in rows], infer_schema_length=None)
        if rows
        else pl.DataFrame(schema={k: pl.String for k in keys})
    )
    return table(
        frame,
        columns=keys,
        headings={k: h for k, (h, _) in columns.items()},
        formats={k: f for k, (_, f) in columns.items() if f != "s"},
        css="metrics",
    )


_PERIODS = {
    "period": ("period", "s"),
    "rows": ("snapshots", ",d"),
    "status": ("status", "s"),
    "score_psi": ("score PSI", ".3f"),
    "max_metric": ("metric that moved most", "s"),
    "max_metric_psi": ("its PSI", ".3f"),
    "events": ("events", ",d"),
    "auc": ("AUC", ".3f"),
    "auc_lower": ("AUC low", ".3f"),
    "auc_upper": ("AUC high", ".3f"),
}
_CALIBRATION = {
    "period": ("period", "s"),
    "labelled_rows": ("labelled", ",d"),
    "mean_predicted": ("predicted", ".1%"),
    "observed": ("observed", ".1%"),
    "observed_lower": ("observed low", ".1%"),
    "observed_upper": ("observed high", ".1%"),
    "ece": ("ECE", ".4f"),
}


def _pivot(drift: pl.DataFrame, value: str) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per variable (the score first), one column per period."""
    periods = sorted(drift["period"].unique().to_list())
    names = drift["variable"].unique(maintain_order=True).to_list()
    order = [SCORE, *sorted(n for n in names if n != SCORE)] if SCORE in names else sorted(names)
    cells = {(r["variable"], r["period"]): r[value] for r in drift.iter_rows(named=True)}
    rows = [{"variable": n, **{p: cells.get((n, p)) for p in periods}} for n in order]
    return rows, periods


def monitoring_report(mon: Monitoring, path: str | os.PathLike[str] | None = None, *, title: str | None = None) -> str:
    """Build the report of ``mon`` and return its HTML; written atomically when ``path`` is given."""
    # vl-convert draws the charts offline as SVG: only needed when a report is built
    import vl_convert

    title = title or f"Model monitoring: {mon.model_name} {mon.model_version}"
    nb = nbformat.v4.new_notebook()

    def show(markup: str) -> None:
        cell = nbformat.v4.new_code_cell("")
        cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": markup})]
        nb.cells.append(cell)

    def chart(c: Any) -> None:
        # SVG rendered here, offline, so the page carries no script and fetches nothing
        cell = nbformat.v4.new_code_cell("")
        cell.outputs = [
            nbformat.v4.new_output("display_data", data={"image/svg+xml": vl_convert.vegalite_to_svg(c.to_dict())})
        ]
        nb.cells.append(cell)

    ref = mon.reference
    refit, watch = mon.reasons("refit"), mon.reasons("watch")
    show(f"<h1>{_e(title)}</h1>")
    verdict = mon.verdict
    if refit:
        why = "".join(f"<li>{_e(t)}</li>" for t in refit)
        show(
            f'<section class="verdict"><p><b>Refit recommended.</b> The model no longer sees the customers it '
            f"was fitted on, or no longer ranks them as well:</p><ul>{why}</ul></section>"
        )
    elif watch:
        show(
            '<section class="verdict"><p><b>Watch; no refit needed yet.</b> Some signals moved, not enough '
            "to call it drift:</p><ul>" + "".join(f"<li>{_e(t)}</li>" for t in watch) + "</ul></section>"
        )
    else:
        show(f'<section class="verdict"><p><b>Stable.</b> {_e(mon.headline().removeprefix("stable: "))}.</p></section>')
    if refit and watch:
        show("<p>Also worth watching:</p><ul>" + "".join(f"<li>{_e(t)}</li>" for t in watch) + "</ul>")
    auc_text = (
        f" The score's AUC there was {ref['auc']:.3f} ({ref['auc_lower']:.3f} to {ref['auc_upper']:.3f})."
        if all(k in ref for k in ("auc", "auc_lower", "auc_upper"))
        else ""
    )
    show(
        f"<p>Model <b>{_e(mon.model_name)}</b> {_e(mon.model_version)} (hash {_e(mon.model_hash)}), "
        f"{_e(mon.outcome)} within {_e(horizon_words(mon.horizon))}. Reference period "
        f"{_e(ref['first_as_of'])} to {_e(ref['last_as_of'])} ({int(ref['rows']):,} snapshots).{_e(auc_text)}</p>"
        f'<p class="muted">How to read it: the population stability index (PSI) compares each period\'s '
        f"distribution of a metric, and of the score, with the reference (decile bins plus a bin for N/A). Below "
        f"{PSI_WATCH:g} nothing moved that matters, {PSI_WATCH:g} to {PSI_DRIFT:g} is worth watching, above "
        f"{PSI_DRIFT:g} the population has changed and the weights were learned on another one. A period whose "
        f"AUC interval lies wholly below the reference interval ranks churners worse than the model did when it "
        f"was fitted. Periods with fewer than {mon.min_rows:,} snapshots are shown but not judged.</p>"
    )
    show("<h2>Period by period</h2>" + _table(mon.to_frame().to_dicts(), _PERIODS))
    charts = mon.charts()
    if mon.performance["auc"].is_not_nan().any():
        show(
            "<h2>Does the score still rank?</h2><p>AUC of each period with its 95% interval, clustered by "
            "account; the grey band is the reference interval. The last periods have no AUC until their outcome "
            "window has passed.</p>"
        )
        chart(charts["auc"])
    show("<h2>Has the population moved?</h2>")
    chart(charts["psi"])
    rows, periods = _pivot(mon.drift, "psi")
    show(
        "<h3>PSI per metric and period</h3>"
        + _table(rows, {"variable": ("metric", "s"), **{p: (p, ".3f") for p in periods}})
    )
    na = mon.drift.filter((pl.col("ref_na_share") > 0) | (pl.col("na_share") > 0))
    if na.height:
        rows, periods = _pivot(na, "na_share")
        refs = dict(zip(na["variable"].to_list(), na["ref_na_share"].to_list()))
        rows = [{**r, "reference": refs.get(r["variable"])} for r in rows]
        show(
            "<h3>Share not measured (N/A)</h3><p>A metric whose N/A share grows has stopped being collected "
            "for some accounts; the score then leans on the others.</p>"
            + _table(
                rows,
                {"variable": ("metric", "s"), "reference": ("reference", ".1%"), **{p: (p, ".1%") for p in periods}},
            )
        )
    cal = mon.performance.filter(pl.col("ece").is_not_nan())
    if cal.height:
        show(
            "<h2>Do the stated probabilities come true?</h2><p>The model's probability map read on each "
            "period's labelled snapshots: predicted against observed rate (95% Wilson interval) and the "
            "expected calibration error.</p>" + _table(cal.to_dicts(), _CALIBRATION)
        )
    if mon.notes:
        show("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in mon.notes) + "</ul>")
    show(
        f'<p class="muted">Verdict: {_e(verdict)}. AUC intervals: DeLong with placement values summed per '
        f"account. Generated by healthscore; model hash {_e(mon.model_hash)}.</p>"
    )
    return export_html(nb, path, title=title)
