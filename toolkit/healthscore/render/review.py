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
    "band_outcomes_table",
    "appendix",
    "glossary",
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


def band_outcomes_table(review: CohortReview) -> str:
    """Where the period's churn came from: one row per band at the start of the period."""
    bo = review.band_outcomes
    if bo is None:
        return ""
    frame = bo.select(
        band=pl.col("band"),
        accounts=pl.col("accounts"),
        **{
            "share of accounts": pl.col("accounts_share"),
            "share of ARR": pl.col("arr_share"),
            "churned": pl.col("churned"),
            "share of the churned": pl.col("churned_share"),
            "share of the ARR lost": pl.col("arr_lost_share"),
            "churn rate in the band": pl.col("churn_rate"),
        },
    )
    pct = {c: "percent" for c in frame.columns if c.startswith(("share", "churn rate"))}
    caption = f"Bands as of {review.date_from}, the start of the period; churn " + (
        "after it (the observation window)." if review.single_date else f"from then to {review.date_to}."
    )
    return f'<p class="muted">{escape(caption)}</p>' + table(frame, formats=pct, css="hs-table headline")


def executive_summary(review: CohortReview) -> str:
    """The first screen, in plain words: where churn came from by band (the honest headline, with
    its table), the book now, movements, whether cohorts differ, and data-quality findings. No test
    names and no column names: the statistics are in the appendix, metrics appear by their labels."""
    parts = ['<section class="summary" id="summary"><h2>Executive summary</h2>']
    for key, lead, sentences in review.first_screen():
        if key == "differences":
            parts.append(f"<p><strong>{escape(lead)}</strong> {escape(APPENDIX_POINTER)}</p>")
            parts.append("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in sentences) + "</ul>" if sentences else "")
        elif key == "data_quality":
            parts.append(
                '<div class="note finding"><p><strong>'
                + escape(lead)
                + "</strong> "
                + escape(" ".join(sentences))
                + "</p></div>"
            )
        else:
            parts.append(f"<p><strong>{escape(lead)}</strong> {escape(' '.join(sentences))}</p>")
            if key == "headline":
                parts.append(band_outcomes_table(review))
    return "".join(parts) + "</section>"


APPENDIX_POINTER = "The tests behind this, with what each one asks, are in the appendix."


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


# what each test asks, and how to read each effect size, in one plain line each
GLOSSARY: dict[str, str] = {
    "Kruskal-Wallis": "do the score distributions differ between cohorts more than chance would explain?",
    "chi-square": "is the mix (of bands, or of accounts that churned and stayed) different between cohorts "
    "more than chance would explain?",
    "Mann-Whitney U": "does one cohort tend to score higher than another, beyond chance?",
    "two-proportion z": "do two cohorts churn (or expand) at rates further apart than chance would explain?",
    "Fisher's exact": "the same question as the two-proportion test, answered exactly when counts are small.",
    "p-value": "how often a gap at least this large would turn up by chance alone if the cohorts did not "
    "differ; small means chance is an unlikely explanation.",
    "adjusted p-value": "the p-value raised to allow for running many tests at once (Holm's method), so a few "
    "lucky results do not pass for findings; significant means below 0.05 after this.",
    "epsilon-squared": "the share of the spread in scores that cohort membership accounts for (0 none, 1 all).",
    "Cramér's V": "how strongly the mix depends on the cohort (0 not at all, 1 completely).",
    "Cliff's delta": "how often an account of the first cohort scores above one of the second, minus the "
    "reverse (from -1 to 1; 0 means no tendency).",
    "risk difference": "the first cohort's rate minus the second's.",
    "95% interval (Wilson)": "the range the true rate most likely lies in; wide for small cohorts.",
}
TOPICS = {"score": "health score", "band_mix": "band mix", "churned": "churn rate", "expanded": "expansion rate"}
MEASURES = {
    "epsilon_squared": "epsilon-squared",
    "cramers_v": "Cramér's V",
    "cliffs_delta": "Cliff's delta",
    "risk_difference": "risk difference",
}


def glossary(entries: dict[str, str] = GLOSSARY) -> str:
    """Terms with a one-line plain gloss each, as a definition list made of paragraphs."""
    return (
        '<ul class="glossary">'
        + "".join(f"<li><strong>{escape(term)}</strong>: {escape(text)}</li>" for term, text in entries.items())
        + "</ul>"
    )


def significance_table(review: CohortReview, kind: str = "omnibus") -> str:
    """The tests of ``kind`` with raw and adjusted p-values and effect sizes (pairwise: significant only)."""
    t = review.comparison.tests.filter(pl.col("kind") == kind)
    if kind == "pairwise":
        t = t.filter(pl.col("significant"))
    frame = t.select(
        what=pl.col("metric").replace(TOPICS),
        test=pl.col("test"),
        **({"between": pl.format("{} vs {}", pl.col("group_a"), pl.col("group_b"))} if kind == "pairwise" else {}),
        p=pl.col("p_value"),
        adjusted=pl.col("p_adjusted"),
        effect=pl.format("{} {}", pl.col("effect_measure").replace(MEASURES), pl.col("effect_size").round(2)),
        significant=pl.when(pl.col("significant")).then(pl.lit("yes")).otherwise(pl.lit("no")),
    )
    return table(frame, formats={"p": "p_value", "adjusted": "p_value"})


def appendix(review: CohortReview) -> str:
    """The statistics behind the first screen, on a page of their own: what each test asks, the
    findings with their test names and effect sizes, and the tables."""
    cmp = review.comparison
    return (
        '<section class="appendix" id="appendix"><h2>Appendix: statistical tests</h2>'
        + "<p>What each test asks and how to read the figures:</p>"
        + glossary()
        + describe(cmp.describe(), "The findings with their tests")
        + f"<h3>Tests across all {escape(cmp.dimension.replace('_', ' '))} cohorts</h3>"
        + significance_table(review)
        + "<h3>Significant differences between pairs of cohorts</h3>"
        + f"<p>After correction for multiple tests ({escape(cmp.correction)}).</p>"
        + significance_table(review, "pairwise")
        + (describe(review.csm.describe()[:-1], "Handovers: the findings with their tests") if review.csm else "")
        + "</section>"
    )


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
    """The portfolio per CSM, alphabetical; accounts with no CSM in the data are left out (the count
    is stated above the table, and the first screen reports it as a data-quality finding)."""
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
    left_out = (
        f"{review.csm.unassigned:,} accounts with no CSM in the data are left out of this table."
        if review.csm.unassigned
        else ""
    )
    return (f"<p>{escape(left_out)}</p>" if left_out else "") + table(
        frame,
        formats={
            "ARR": "money",
            f"ARR in {worst}": "money",
            f"in {worst}": "percent",
            "accounts with a handover": "percent",
        },
    )


COHORTS_INTRO = "<h2>Cohorts</h2><p>One row per cohort; small cohorts are flagged, not hidden.</p>"
MOVEMENT_INTRO = "<h2>Movement</h2><p>Biggest movers and the metrics behind their change (points of score):</p>"


def review_sections(review: CohortReview) -> list[str]:
    """The text and tables of the review in reading order (charts are added by the notebook): the
    plain first screen, the detail, then the statistical appendix."""
    parts = [heading(review), executive_summary(review), COHORTS_INTRO + cohort_table(review)]
    if review.movement_note:
        parts.append("<h2>Movement</h2>" + paragraph(review.movement_note))
    else:
        parts.append(MOVEMENT_INTRO + movers_table(review))
    if review.csm is not None:
        parts.append("<h2>CSM portfolios and handovers</h2>" + describe(review.csm.plain()) + csm_table(review))
    parts.append(appendix(review))
    return parts
