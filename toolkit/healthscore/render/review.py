"""The leadership cohort review as HTML: its heading, executive summary and tables, each through
the one renderer (:mod:`healthscore.render.html`) and the one formatter set
(:mod:`healthscore.render.formats`). Company, CSM, cohort and band names are data: they are
escaped in tables and pass the sanitiser in prose, so a name can never run or load anything.

>>> import datetime as dt, polars as pl
>>> from healthscore.analysis.cohorts import cohort_review
>>> scores = pl.DataFrame({"account_id": [f"a{i}" for i in range(6)] * 2,
...     "as_of": [dt.date(2026, 1, 5)] * 6 + [dt.date(2026, 1, 12)] * 6,
...     "company_name": ["<script>x</script>"] + [f"C{i}" for i in range(1, 6)] + ["<script>x</script>"]
...                      + [f"C{i}" for i in range(1, 6)],
...     "segment": ["smb", "smb", "smb", "ent", "ent", "ent"] * 2, "arr": [1e4] * 12,
...     "score": [80.0, 30, 60, 70, 80, 90, 20.0, 30, 60, 70, 80, 90],
...     "band": ["green", "red", "yellow", "green", "green", "green", "red", "red", "yellow", "green",
...              "green", "green"]})
>>> page = "".join(review_sections(cohort_review(scores, by="segment")))
>>> "<script" in page, "&lt;script&gt;" in page
(False, True)
"""

from __future__ import annotations

from typing import Any

import polars as pl

from healthscore.analysis.cohorts import CohortReview
from healthscore.render import formats as fmt
from healthscore.render.html import escape, markdown, table

__all__ = [
    "heading",
    "executive_summary",
    "cohort_table",
    "significance_table",
    "movers_table",
    "csm_table",
    "describe",
    "review_sections",
]


def heading(review: CohortReview) -> str:
    """The title block (Markdown from the review, sanitised)."""
    return markdown(review.heading())


def executive_summary(review: CohortReview) -> str:
    """The executive summary section: portfolio health, ARR at risk, movements, differences."""
    return "<h2>Executive summary</h2>" + markdown(review.executive_summary())


def paragraph(text: str) -> str:
    """One paragraph of plain words (escaped)."""
    return f"<p>{escape(text)}</p>"


def describe(lines: list[str], title: str = "") -> str:
    """Findings (plain sentences that may carry names) as a list under an optional heading."""
    head = f"<h3>{escape(title)}</h3>" if title else ""
    return (
        head
        + "<ul>"
        + "".join(f"<li>{markdown(s).removeprefix('<p>').removesuffix('</p>')}</li>" for s in lines)
        + "</ul>"
    )


def _rate(prefix: str) -> pl.Expr:
    return pl.struct(pl.col(f"{prefix}_rate"), pl.col(f"{prefix}_lower"), pl.col(f"{prefix}_upper")).map_elements(
        lambda r: (
            f"{fmt.percent(r[f'{prefix}_rate'])} ({fmt.percent(r[f'{prefix}_lower'])} to "
            f"{fmt.percent(r[f'{prefix}_upper'])})"
        ),
        return_dtype=pl.String,
    )


def cohort_table(review: CohortReview) -> str:
    """One row per cohort: size, ARR, score, worst-band share, outcome rates with 95% intervals."""
    s = review.comparison.cohorts
    worst = review.portfolio["worst_band"]
    cols: dict[str, Any] = {
        "cohort": pl.col("cohort"),
        "accounts": pl.col("accounts"),
        "ARR": pl.col("arr"),
        "median score": pl.col("score_median"),
        "quartiles": pl.struct("score_q1", "score_q3").map_elements(
            lambda r: f"{fmt.points(r['score_q1'])} to {fmt.points(r['score_q3'])}", return_dtype=pl.String
        ),
    }
    formats: dict[str, Any] = {"ARR": "money", "median score": "points"}
    if f"share_{worst}" in s.columns:
        cols[f"in {worst}"] = pl.col(f"share_{worst}")
        formats[f"in {worst}"] = "percent"
    for prefix in ("churn", "expansion"):
        if f"{prefix}_rate" in s.columns:
            cols[f"{prefix} per {review.comparison.horizon} (95% CI)"] = _rate(prefix)
    cols["small cohort"] = pl.when(pl.col("small")).then(pl.lit("yes")).otherwise(pl.lit(""))
    return table(s.select(**cols), formats=formats)


def significance_table(review: CohortReview, kind: str = "omnibus") -> str:
    """The tests of ``kind`` with raw and adjusted p-values and effect sizes (pairwise: significant only)."""
    t = review.comparison.tests.filter(pl.col("kind") == kind)
    if kind == "pairwise":
        t = t.filter(pl.col("significant"))
    frame = t.select(
        what=pl.col("metric").str.replace_all("_", " "),
        test=pl.col("test"),
        **({"between": pl.format("{} vs {}", pl.col("group_a"), pl.col("group_b"))} if kind == "pairwise" else {}),
        p=pl.col("p_value"),
        adjusted=pl.col("p_adjusted"),
        effect=pl.format("{} {}", pl.col("effect_measure").str.replace_all("_", " "), pl.col("effect_size").round(2)),
        significant=pl.when(pl.col("significant")).then(pl.lit("yes")).otherwise(pl.lit("no")),
    )
    return table(frame, formats={"p": "p_value", "adjusted": "p_value"})


def movers_table(review: CohortReview) -> str:
    """The biggest movers with the metrics behind their change (points of score)."""
    m = review.movers
    name = pl.col("company_name") if "company_name" in m.columns else pl.col("account_id")
    frame = m.select(
        account=name,
        **({"segment": pl.col("segment")} if "segment" in m.columns else {}),
        change=pl.col("change"),
        band=pl.format("{} → {}", pl.col("band_start"), pl.col("band_end")),
        **({"drivers": pl.col("drivers")} if "drivers" in m.columns else {}),
    )
    return table(frame, formats={"change": lambda x: fmt.points(x, 1, signed=True)})


def csm_table(review: CohortReview) -> str:
    """The portfolio per CSM, alphabetical."""
    if review.csm is None:
        return "<p>No CSM column in the data.</p>"
    worst = review.portfolio["worst_band"]
    c = review.csm.portfolio
    frame = c.select(
        CSM=pl.col("csm"),
        accounts=pl.col("accounts"),
        ARR=pl.col("arr"),
        **{
            f"in {worst}": pl.col("share_red"),
            f"ARR in {worst}": pl.col("arr_red"),
            "accounts with a handover": pl.col("with_handover"),
        },
    )
    return table(
        frame,
        formats={
            "ARR": "money",
            f"ARR in {worst}": "money",
            f"in {worst}": "percent",
            "accounts with a handover": "percent",
        },
    )


def review_sections(review: CohortReview) -> list[str]:
    """The text and tables of the review in reading order (charts are added by the notebook)."""
    parts = [
        heading(review),
        executive_summary(review),
        "<h2>Cohorts</h2><p>One row per cohort; small cohorts are flagged, not hidden.</p>",
        cohort_table(review),
        describe(review.comparison.describe(), "Are the differences real?"),
        significance_table(review),
        "<p>Significant pairwise differences (after correction for multiple tests):</p>",
        significance_table(review, "pairwise"),
        "<h2>Movement</h2><p>Biggest movers and the metrics behind their change (points of score):</p>",
        movers_table(review),
    ]
    if review.csm is not None:
        parts += ["<h2>CSM portfolios and handovers</h2>", describe(review.csm.describe()), csm_table(review)]
    return parts
