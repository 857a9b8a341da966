"""The customer scorecard carries customer-audience content only: scanned for every internal label,
description, action and field value of the bundled sample model, and for the account's alert
history (the rules fired and the actions they ask of the team), it has zero hits."""

from __future__ import annotations

import html

import healthscore as hs
import polars as pl
import pytest
from healthscore import resources
from healthscore.analysis import scorecard as cards
from healthscore.render import formats as fmt
from healthscore.render import scorecard as card_html


@pytest.fixture(scope="module")
def sample():
    model = hs.load_model(resources.sample_dir() / "model.toml", name="health")
    book = hs.make_portfolio(n_accounts=80, n_weeks=30, seed=5)
    scores = hs.score(book.snapshots, model)
    latest = scores.filter(pl.col("as_of") == pl.col("as_of").max()).sort("account_id")
    picked = set(batch_pick(latest))
    return model, book.snapshots, scores, sorted(picked)


def batch_pick(latest: pl.DataFrame) -> list[str]:
    """One account per band, one of the digital variant, one without a score, one with a red metric."""
    out = []
    for band in ("red", "yellow", "green"):
        rows = latest.filter(pl.col("band") == band)
        out += rows["account_id"].head(2).to_list()
    out += latest.filter(pl.col("variant") == "digital")["account_id"].head(2).to_list()
    out += latest.filter(pl.col("score").is_null())["account_id"].head(1).to_list()
    return out


def _internal_terms(model, row: dict) -> tuple[list[str], list[str]]:
    """(phrases that must not appear anywhere, values that must not appear as a whole cell)."""
    phrases, cells = [], []
    for m in model.metrics:
        if m.audience != "customer":
            phrases += [m.label, m.description, m.action]
        elif m.action_audience != "customer" and m.action:
            phrases.append(m.action)  # the CSM's playbook for a customer metric
    phrases += [c.label for c in model.categories.values() if c.audience != "customer"]
    phrases += [model.hash, "Health model", "Internal only", "probability"]
    for f in model.fields:
        if f.audience != "customer":
            cells.append(f.label)
            value = row.get(f.column)
            if value not in (None, ""):
                cells.append(str(value))
                if f.format == "money":
                    phrases += [fmt.money(value), f"{value:,.0f}"]
    if row.get("variant") not in (None, "default"):
        phrases.append(f"variant {row['variant']}")
        cells.append(row["variant"])
    return [p for p in phrases if p], [c for c in cells if c]


def test_the_sample_model_marks_its_internal_signals(sample):
    model = sample[0]
    internal = {m.name for m in model.metrics if m.audience == "internal"}
    assert {"champion_left", "csm_assessment", "nps", "days_invoice_overdue"} <= internal
    assert all(m.customer_action for m in model.metrics if m.audience == "customer" and m.action)


def test_customer_scorecard_has_no_internal_content(sample):
    model, snaps, scores, accounts = sample
    latest = scores.filter(pl.col("account_id").is_in(accounts) & (pl.col("as_of") == pl.col("as_of").max()))
    assert len(accounts) >= 5 and {"red", "green"} <= set(latest["band"].drop_nulls())
    assert "digital" in set(latest["variant"])
    checked, alerted = 0, 0
    for account in accounts:
        card = cards.scorecard_data(scores, model, account, snapshots=snaps)
        page = "".join(card_html.scorecard_sections(card))
        text = html.unescape(page)
        row = scores.filter(pl.col("account_id") == account).sort("as_of").row(-1, named=True)
        phrases, cells = _internal_terms(model, row)
        assert phrases and cells
        # the account's alert history: its heading, each rule fired and the action asked of the team
        internal_card = cards.scorecard_data(scores, model, account, snapshots=snaps, internal=True)
        fired = internal_card.alert_history
        assert fired is not None and card.alert_history is None
        alert_terms = ["Alert history", *fired["rule"].unique().to_list(), *fired["action"].unique().to_list()]
        hits = [p for p in phrases + alert_terms if p in text] + [c for c in cells if f">{html.escape(c)}<" in page]
        hits += [f"data-alert={r}" for r in fired["rule"].unique() if f'data-alert="{r}"' in page]
        assert hits == [], (account, hits)
        assert f"Report {card.report_id}" in text
        # the internal version of the same card shows them: the scan would have found a leak
        inside_page = "".join(card_html.scorecard_sections(internal_card))
        inside = html.unescape(inside_page)
        assert model.hash in inside and "Internal only" in inside
        assert any(m.label in inside for m in model.metrics if m.audience == "internal")
        assert all(t in inside for t in alert_terms), account
        assert inside_page.count("<tr data-alert=") == fired.height
        alerted += fired.height > 0
        checked += 1
    assert checked == len(accounts)
    assert alerted >= 3  # most picked accounts had alerts to hide: the alert part of the scan is not empty
