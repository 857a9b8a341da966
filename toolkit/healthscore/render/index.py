"""The index page of a scorecard folder: an internal list of accounts, riskiest first, that a
reader can sort by any column and filter by typing, offline.

The page is one self-contained HTML file in the look of the other reports. It carries the
report policy (:data:`healthscore.render.html.CSP`) with one change: the inline script
:data:`healthscore.render.html.TABLE_SCRIPT` may run, allowed by its hash (no other script can).
The script only moves the existing rows and sets text; without it the page is the same table in
risk order. Every value from data goes through :func:`healthscore.render.html.escape`.

>>> import datetime as dt, polars as pl
>>> rows = pl.DataFrame({"rank": [1], "account_id": ["A1"], "company_name": ["Acme <Ltd>"],
...     "band": ["red"], "score": [31.0], "score_change": [-6.0], "page": ["A1.html"]})
>>> page = index_page(rows, title="Scorecards", band_order=["red", "yellow", "green"])
>>> "Acme &lt;Ltd&gt;" in page and 'href="A1.html"' in page and ">-6</td>" in page
True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import polars as pl

from healthscore import resources
from healthscore.render import formats as fmt
from healthscore.render.html import TABLE_SCRIPT, badge, colour, csp_meta, escape, script_tag
from healthscore.spec.palette import NA_COLOUR, band_colour

__all__ = ["index_page", "index_csv_frame", "INDEX_CSV_COLUMNS"]

# the columns of index.csv, in order (the page's rows, machine-friendly: ISO dates, raw numbers)
INDEX_CSV_COLUMNS = [
    "rank",
    "account_id",
    "company_name",
    "as_of",
    "band",
    "score",
    "score_change",
    "csm",
    "arr",
    "renewal_date",
    "days_to_renewal",
    "page",
    "pdf",
]

_CSS = """
main.report.index { max-width: 1180px; }
.find { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; margin: .8rem 0 .4rem; }
.find[hidden] { display: none; }
.find input { font: inherit; padding: .3rem .5rem; border: 1px solid var(--muted); border-radius: 4px;
              min-width: 16rem; max-width: 100%; }
table.hs-index th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0;
                           padding: 0; cursor: pointer; text-align: inherit; }
table.hs-index th button:disabled { cursor: default; }
table.hs-index th[aria-sort=ascending]::after { content: " \\2191"; }
table.hs-index th[aria-sort=descending]::after { content: " \\2193"; }
table.hs-index td.fall { color: var(--red); font-weight: 600; }
@media print { .find { display: none; } }
"""

# (heading, kind of sort key, numeric column)
_HEADINGS: list[tuple[str, str, bool]] = [
    ("#", "number", True),
    ("Account", "text", False),
    ("Band", "number", False),
    ("Score", "number", True),
    ("Change", "number", True),
    ("CSM", "text", False),
    ("ARR", "number", True),
    ("Renewal", "number", False),
    ("Scorecard", "", False),
]


def _number(value: Any) -> str:
    """A sort key for a number cell: plain digits, empty when missing."""
    return "" if value is None or fmt.missing(value) else repr(float(value))


def _renewal(date: dt.date | None, days: int | None) -> str:
    if date is None:
        return fmt.MISSING
    text = fmt.date(date, style="short")
    if days is None:
        return text
    if days >= 0:
        return f"{text} (in {fmt.count(days)} {'day' if days == 1 else 'days'})"
    return f"{text} ({fmt.count(-days)} {'day' if days == -1 else 'days'} ago)"


def _pdf_link(pdf: str | None) -> str:
    return f' · <a href="{escape(quote(pdf))}">PDF</a>' if pdf else ""


def _row(r: Mapping[str, Any], ranks: Mapping[str, int], colours: Mapping[str, str]) -> str:
    name = r.get("company_name") or r["account_id"]
    page = r.get("page")
    # page files come from the batch's safe names (letters, digits, . _ -): a relative link only
    link = f'<a href="{escape(quote(page))}">{escape(name)}</a>' if page else escape(name)
    band = r.get("band")
    band_cell = badge(band, colours.get(band) or band_colour(band)) if band else fmt.MISSING
    change = r.get("score_change")
    fall = ' class="num fall"' if change is not None and change <= -0.5 else ' class="num"'
    days = r.get("days_to_renewal")
    cells = [
        f'<td class="num" data-sort="{escape(r.get("rank") or "")}">{escape(r.get("rank") or "")}</td>',
        f'<td data-sort="{escape(name)}">{link}<div class="muted">{escape(r["account_id"])}</div></td>',
        f'<td data-sort="{escape(ranks.get(band, len(ranks)) if band else "")}">{band_cell}</td>',
        f'<td class="num" data-sort="{_number(r.get("score"))}">{escape(fmt.points(r.get("score")))}</td>',
        f'<td{fall} data-sort="{_number(change)}">{escape(fmt.points(change, signed=True))}</td>',
        f"<td>{escape(r.get('csm') or fmt.MISSING)}</td>",
        f'<td class="num" data-sort="{_number(r.get("arr"))}">{escape(fmt.money(r.get("arr")))}</td>',
        f'<td data-sort="{"" if days is None else escape(days)}">{escape(_renewal(r.get("renewal_date"), days))}</td>',
        f'<td><a href="{escape(quote(page))}">open</a>{_pdf_link(r.get("pdf"))}</td>'
        if page
        else '<td class="muted">not rendered</td>',
    ]
    return f'<tr data-account="{escape(r["account_id"])}">' + "".join(cells) + "</tr>"


def _failures(failed: pl.DataFrame | None) -> str:
    if failed is None or failed.is_empty():
        return ""
    items = "".join(
        f"<li><strong>{escape(r.get('company_name') or r['account_id'])}</strong> ({escape(r['account_id'])}): "
        f"{escape(r.get('error') or 'not rendered')}</li>"
        for r in failed.iter_rows(named=True)
    )
    return (
        f"<h2>Not rendered ({fmt.count(failed.height)})</h2>"
        "<p>These accounts have no scorecard page yet. Fix the cause and run the batch again.</p>"
        f"<ul>{items}</ul>"
    )


def index_page(
    rows: pl.DataFrame,
    *,
    title: str,
    band_order: Sequence[str],
    colours: Mapping[str, str] | None = None,
    failed: pl.DataFrame | None = None,
) -> str:
    """The index page as HTML: ``rows`` in the order given (``accounts_by_risk`` order, with a
    ``page`` column naming each account's page and ``pdf`` its printed copy, null when it has
    none); columns it lacks read
    as blank. ``band_order`` runs worst band first (it is the sort key of the band column);
    ``colours`` maps band names to colours; ``failed`` (account_id, company_name, error) lists
    the accounts that could not be rendered, below the table.
    """
    ranks = {name: i for i, name in enumerate(band_order)}
    palette = {k: colour(v, NA_COLOUR) for k, v in (colours or {}).items()}
    present = rows.with_columns(
        [pl.lit(None).alias(c) for c in INDEX_CSV_COLUMNS if c not in rows.columns and c not in ("page", "pdf")]
        + [pl.lit(None, pl.String).alias(c) for c in ("page", "pdf") if c not in rows.columns]
    )
    head = "".join(
        f'<th{" class=num" if num else ""}><button type="button" data-col="{i}" data-kind="{kind}" disabled>'
        f"{escape(text)}</button></th>"
        if kind
        else f"<th>{escape(text)}</th>"
        for i, (text, kind, num) in enumerate(_HEADINGS)
    ).replace(" class=num", ' class="num"')
    body = "".join(_row(r, ranks, palette) for r in present.iter_rows(named=True))
    n = rows.height
    main = (
        f"<h1>{escape(title)}</h1>"
        f'<p class="muted">{fmt.count(n)} {"account" if n == 1 else "accounts"} · internal list, share each '
        "scorecard on its own. Riskiest first: worst band, then the biggest score fall since the previous "
        "score, then the largest ARR, then the soonest renewal.</p>"
        '<div class="find" id="hs-find" hidden><label for="hs-search">Find an account</label>'
        '<input id="hs-search" type="search" autocomplete="off" spellcheck="false" '
        'placeholder="name, ID, CSM or band"><span id="hs-shown" class="muted" role="status"></span></div>'
        f'<table id="hs-accounts" class="hs-index"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        '<p class="muted">Click a column heading to sort by it, again to reverse; # returns to the risk order.</p>'
        + _failures(failed)
    )
    css = (resources.report_templates() / "report.css").read_text(encoding="utf-8")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"{csp_meta(TABLE_SCRIPT)}\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="healthscore">\n'
        f"<title>{escape(title)}</title>\n<style>\n{css}{_CSS}</style>\n</head>\n"
        f'<body>\n<main class="report index">\n{main}\n</main>\n{script_tag(TABLE_SCRIPT)}\n</body>\n</html>\n'
    )


def index_csv_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """The rows of the page as ``index.csv`` holds them: :data:`INDEX_CSV_COLUMNS`, same order.

    >>> index_csv_frame(pl.DataFrame({"account_id": ["a"], "score": [50.0]})).columns[:3]
    ['rank', 'account_id', 'company_name']
    """
    return rows.select(
        [pl.col(c) if c in rows.columns else pl.lit(None, pl.String).alias(c) for c in INDEX_CSV_COLUMNS]
    )
