"""A scorecard as escaped HTML fragments, in reading order; ``scorecard()`` builds one from files
as the scorecard notebook calls it. Every value is formatted by :mod:`healthscore.render.formats`
and escaped by :mod:`healthscore.render.html`; colours reach CSS only through ``html.colour``."""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any

import polars as pl

from healthscore.analysis.evaluation import ProbabilityMap
from healthscore.analysis.scorecard import (
    NOT_APPLICABLE,
    Scorecard,
    _cached_table,
    load_scorecard_model,
    load_scores,
    peer_figures,
    sample_scores,
    scorecard_data,
)
from healthscore.render import formats as fmt
from healthscore.render.html import badge, colour, escape
from healthscore.viz.scorecard import chart_svg, trend_chart

_e = escape


def _badge(name: str | None, swatch: str, css: str = "band") -> str:
    return badge(name, swatch, css, missing=NOT_APPLICABLE)


def _field_value(value: Any, kind: str) -> str:
    if kind == "percent_range" and isinstance(value, tuple) and len(value) == 2:
        return f"{fmt.percent(value[0], 0)} to {fmt.percent(value[1], 0)}"
    if fmt.missing(value) or value == "":
        return fmt.MISSING
    if kind in ("money", "percent", "count", "days", "number", "date"):
        try:
            return fmt.FORMATTERS[kind](value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _header_html(card: Scorecard) -> str:
    if card.score is None:
        reason = f'<div class="muted">{_e(card.null_reason)}</div>' if card.null_reason else ""
        score = (
            f'<div class="hs-score"><span class="value">–</span><div>No score this week: too few '
            f"measures were available for a fair score.{reason}</div></div>"
        )
    else:
        score = (
            f'<div class="hs-score"><span class="value" data-role="score">{_e(fmt.points(card.score))}</span>'
            f'<div><span class="of">out of 100</span><br>'
            f"{_badge(card.band, card.band_colour, 'band large')}</div></div>"
        )
    meaning = (
        f'<p class="note">What {_e(card.band)} means: {_e(card.band_meaning)}</p>'
        if card.band_meaning and card.score is not None
        else ""
    )
    return (
        f'<header class="hs-head"><div><h1>{_e(card.company_name)}</h1>'
        f'<p class="subtitle">Customer health scorecard · {_e(fmt.date(card.as_of))}</p></div>{score}</header>'
        f"{meaning}"
    )


def _trend_html(card: Scorecard) -> str:
    n = card.trend["score"].drop_nulls().len()
    if n < 2:
        return '<h2>Trend over the last 26 weeks</h2><p class="muted">Not enough history yet to draw a trend.</p>'
    return (
        f'<h2>Trend over the last 26 weeks</h2><figure class="chart" aria-label="score trend">'
        f"{chart_svg(trend_chart(card))}</figure>"
    )


def _categories_html(card: Scorecard) -> str:
    if card.categories.is_empty():
        return ""
    cells = []
    for r in card.categories.iter_rows(named=True):
        width = 0 if r["score"] is None else max(0.0, min(100.0, r["score"]))
        cells.append(
            f'<div class="cat"><div class="name">{_e(r["label"])}</div>'
            f'<div class="value">{_e(fmt.points(r["score"]))}</div>'
            f'<div class="bar"><span style="width:{width:.0f}%;background:{colour(r["colour"])}"></span></div>'
            f"{_badge(r['band'], r['colour'])}</div>"
        )
    return '<h2>Scores by area</h2><div class="cats">' + "".join(cells) + "</div>"


def _metrics_html(card: Scorecard) -> str:
    if card.metrics.is_empty():
        return ""
    body = []
    for r in card.metrics.iter_rows(named=True):
        body.append(
            f'<tr><td>{_e(r["label"])}<div class="muted">{_e(r["description"])}</div></td>'
            f'<td data-label="Area">{_e(r["category"])}</td>'
            f'<td class="num" data-label="Value">{_e(r["level"] if r.get("level") is not None else fmt.metric_value(r["raw"], r["method"], r.get("unit") or ""))}</td>'
            f'<td class="num" data-label="Score">{_e(fmt.points(r["sub_score"]))}</td>'
            f"<td>{_badge(None if r['status'] == NOT_APPLICABLE else r['status'], r['colour'])}</td></tr>"
        )
    return (
        '<h2>What the score is made of</h2><table class="stack"><thead><tr><th>Measure</th><th>Area</th>'
        '<th class="num">Value</th><th class="num">Score</th><th>Status</th></tr></thead><tbody>'
        + "".join(body)
        + "</tbody></table>"
    )


def _changes_html(card: Scorecard) -> str:
    if card.previous_score is None or card.score is None:
        return '<h2>What changed since last month</h2><p class="muted">No score a month ago to compare with.</p>'
    delta = card.score - card.previous_score
    was, now = fmt.points(card.previous_score), fmt.points(card.score)
    if abs(delta) < 0.5:
        head = f"Your score stayed about the same ({was} → {now})"
    else:
        head = f"Your score went {'up' if delta > 0 else 'down'} {fmt.points_phrase(abs(delta))} ({was} → {now})"
    head += f" since {fmt.date(card.previous_as_of)}."
    items = []
    for r in card.changes.filter(pl.col("points").abs() >= 0.5).head(5).iter_rows(named=True):
        verb = "raised" if r["points"] > 0 else "lowered"
        items.append(
            f"<li><strong>{_e(r['label'])}</strong> {verb} the score by "
            f"{_e(fmt.points_phrase(abs(r['points']), 1))}.</li>"
        )
    detail = (
        "<ul>" + "".join(items) + "</ul>" if items else "<p>No single measure moved it by half a point or more.</p>"
    )
    return f"<h2>What changed since last month</h2><p>{_e(head)}</p>{detail}"


BOTTOM_PERCENTILE = 25.0  # an account in the bottom quarter of its cohort is not shown a comparison


def _peers_html(card: Scorecard) -> str:
    """Typical scores of similar accounts, as plain figures; nothing when the cohort is too small
    or when this account is in the bottom quarter of it (a comparison there only shames)."""
    if card.peers is None:
        return ""
    overall = card.peers.filter(pl.col("measure") == "score")
    if overall.height and (overall["percentile"][0] is None or overall["percentile"][0] < BOTTOM_PERCENTILE):
        return ""
    lines = []
    for r in card.peers.iter_rows(named=True):
        what = "" if r["measure"] == "score" else f" on {r['label'].lower()}"
        lines.append(f"<li>Accounts like yours typically score {_e(fmt.points(r['cohort_median']))}{_e(what)}.</li>")
    return (
        "<h2>How similar accounts score</h2>"
        f"<p>From {_e(fmt.count(card.peer_size))} similar accounts, anonymised:</p><ul>" + "".join(lines) + "</ul>"
    )


def _actions_html(card: Scorecard) -> str:
    title = "<h2>Recommended next steps</h2>"
    if card.actions.is_empty():
        return title + "<p>No measure is in the red band: keep doing what works.</p>"
    items = "".join(
        f"<li><strong>{_e(r['label'])}</strong> (up to {_e(fmt.points_phrase(r['points']))}): {_e(r['action'])}"
        f" <span class='owner'>Who: {_e(r['owner'])}.</span></li>"
        for r in card.actions.iter_rows(named=True)
    )
    return title + f"<p>The steps that would raise your score the most, first:</p><ol>{items}</ol>"


def _fields_html(card: Scorecard) -> str:
    if not card.fields:
        return ""
    rows = "".join(
        f"<tr><th>{_e(label)}</th><td>{_e(_field_value(value, kind))}</td></tr>" for label, value, kind in card.fields
    )
    return f"<h2>Your account</h2><table>{rows}</table>"


def _internal_html(card: Scorecard) -> str:
    if card.internal_fields is None:
        return ""
    rows = "".join(
        f"<tr><th>{_e(label)}</th><td>{_e(_field_value(value, kind))}</td></tr>"
        for label, value, kind in card.internal_fields
    )
    return (
        '<section class="internal"><h2>Internal only: do not share</h2><table>'
        + rows
        + "</table>"
        + _alerts_html(card)
        + _overrides_html(card)
        + "</section>"
    )


def _alert_status(row: dict[str, Any]) -> str:
    if row["status"] == "resolved":
        return f"resolved {fmt.date(row['resolved_on'], style='short')}" if row["resolved_on"] else "resolved"
    return "open"


def _alerts_html(card: Scorecard) -> str:
    """The alerts fired for this account (internal view only), newest first."""
    title = "<h3>Alert history</h3>"
    if card.alert_history is None:
        return title + f'<p class="muted">{_e(card.alert_note or "No alert history for this account.")}</p>'
    if card.alert_history.is_empty():
        return title + f'<p class="muted">{_e(card.alert_note or "No alert has fired for this account.")}</p>'
    body = "".join(
        f'<tr data-alert="{_e(r["rule"])}"><td data-label="Fired">{_e(fmt.date(r["fired_at"], style="short"))}</td>'
        f'<td data-label="Rule">{_e(r["rule"])}</td><td data-label="Severity">{_e(r["severity"])}</td>'
        f'<td data-label="Owner">{_e(r["owner"])}</td><td data-label="Action">{_e(r["action"])}</td>'
        f'<td data-label="Status">{_e(_alert_status(r))}</td></tr>'
        for r in card.alert_history.iter_rows(named=True)
    )
    return (
        title + '<table class="stack alerts"><thead><tr><th>Fired</th><th>Rule</th><th>Severity</th><th>Owner</th>'
        "<th>Action</th><th>Status</th></tr></thead><tbody>" + body + "</tbody></table>"
    )


def _overrides_html(card: Scorecard) -> str:
    """Manual overrides applied to this account's score (internal view only)."""
    if card.overrides is None or card.overrides.is_empty():
        return ""
    body = []
    for r in card.overrides.iter_rows(named=True):
        since = fmt.date(r["from_date"], style="short")
        until = fmt.date(r["to_date"], style="short")
        when = since if since == until else f"{since} to {until}"
        body.append(
            f'<tr><td data-label="Applied">{_e(when)}</td><td data-label="What">{_e(r["target"])}</td>'
            f'<td class="num" data-label="Set to">{_e(fmt.points(r["value"]))}</td>'
            f'<td class="num" data-label="Computed score">{_e(fmt.points(r["computed_score"]))}</td>'
            f'<td data-label="Reason">{_e(r["reason"])}</td><td data-label="By">{_e(r["author"])}</td></tr>'
        )
    return (
        '<h3>Score overrides</h3><table class="stack"><thead><tr><th>Applied</th><th>What</th>'
        '<th class="num">Set to</th><th class="num">Computed score</th><th>Reason</th><th>By</th></tr></thead>'
        "<tbody>" + "".join(body) + "</tbody></table>"
    )


def _footer_html(card: Scorecard) -> str:
    coverage = f" · data coverage {_e(fmt.percent(card.coverage, 0))}" if card.coverage is not None else ""
    if card.audience != "internal":
        return (
            f'<footer class="hs-foot">Report {_e(card.report_id)} · data as of '
            f"{_e(fmt.date(card.as_of, style='iso'))}{coverage}.</footer>"
        )
    variant = f" · variant {_e(card.variant)}" if card.variant not in (None, "default") else ""
    return (
        f'<footer class="hs-foot">Health model {_e(card.model_name)} version {_e(card.model_version)} '
        f"(#{_e(card.model_hash)}){variant} · report {_e(card.report_id)} · data as of "
        f"{_e(fmt.date(card.as_of, style='iso'))}{coverage}.</footer>"
    )


def scorecard_sections(card: Scorecard) -> list[str]:
    """The scorecard as a list of escaped HTML fragments, in reading order (the notebook displays
    each one; the trend chart is inline SVG)."""
    parts = [
        _header_html(card),
        _trend_html(card),
        _categories_html(card),
        _metrics_html(card),
        _changes_html(card),
        _peers_html(card),
        _actions_html(card),
        _fields_html(card),
        _internal_html(card),
        _footer_html(card),
    ]
    return [p for p in parts if p]


@functools.lru_cache(maxsize=4)
def _cached_peers(path: str, mtime_ns: int, size: int, by: str) -> pl.DataFrame:
    return peer_figures(_cached_table(path, mtime_ns, size), by=by)


def _sample_peers(model: str, by: str) -> pl.DataFrame | None:
    frame = sample_scores(model)
    return peer_figures(frame, by=by) if by in frame.columns else None


@functools.lru_cache(maxsize=4)
def _cached_probability_map(path: str) -> Any:
    return ProbabilityMap.load(path)


def scorecard(
    account_id: str,
    *,
    scores: str | os.PathLike[str] | None,
    model: str | os.PathLike[str],
    as_of: str | dt.date | None = None,
    variant: str | None = None,
    internal: bool = False,
    cohort: str | os.PathLike[str] | None = None,
    peer_by: str = "segment",
    probabilities: str | os.PathLike[str] | None = None,
    snapshots: str | os.PathLike[str] | None = None,
) -> Scorecard:
    """``scorecard_data`` from file paths, as the scorecard notebook calls it.

    Files are read once per kernel and reused for the next account (a warm kernel renders many).
    ``cohort`` is an optional ``peer_figures`` file; without it peers are computed from the scores.
    ``snapshots`` (optional) supplies the raw metric values when the scores do not carry them.
    ``scores=None`` scores the bundled sample with ``model`` (the notebook as opened).
    """
    if scores is None:
        frame = sample_scores(model)
        figures = load_scores(cohort) if cohort else _sample_peers(str(Path(model).resolve()), peer_by)
    else:
        frame = load_scores(scores)
        st = Path(scores).stat()
        figures = (
            load_scores(cohort)
            if cohort
            else _cached_peers(str(Path(scores).resolve()), st.st_mtime_ns, st.st_size, peer_by)
            if peer_by in frame.columns
            else None
        )
    probs = _cached_probability_map(str(Path(probabilities).resolve())) if (internal and probabilities) else None
    score_model = load_scorecard_model(model)
    if internal and probs is None and getattr(score_model, "probability", None):
        probs = ProbabilityMap.from_dict(score_model.probability)
    raw = load_scores(snapshots) if snapshots else None
    return scorecard_data(
        frame,
        score_model,
        account_id,
        as_of=as_of,
        variant=variant,
        internal=internal,
        cohort=figures,
        peer_by=peer_by,
        probabilities=probs,
        snapshots=raw,
    )
