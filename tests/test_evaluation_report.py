"""The evaluation report reads verdict first: which model to use and how sure, then what the alarm
bands catch, then the AUC tables; PR-AUC and calibration error come after the plain figures and a
glossary closes the page. Books with a known answer come from tests/test_verdicts.py."""

from __future__ import annotations

import re

import pytest
from healthscore.render import evaluation as report

from tests.test_verdicts import _evaluate, book  # noqa: F401  (book is a fixture)


@pytest.fixture(scope="module")
def clear_vs_blurred(book):  # noqa: F811
    return _evaluate(book, {"clear": book["clear"], "blurred": book["blurred"]})


@pytest.fixture(scope="module")
def page(clear_vs_blurred, tmp_path_factory):
    return clear_vs_blurred.to_html(tmp_path_factory.mktemp("ev") / "evaluation.html")


def test_a_clearly_better_model_is_recommended_with_its_interval(clear_vs_blurred):
    ev = clear_vs_blurred
    c = ev.comparisons.row(0, named=True)
    assert ev.recommendation() == (
        f"Use clear: it ranks churners measurably better than blurred (AUC difference {c['auc_difference']:+.3f}, "
        f"95% paired interval {c['auc_difference_lower']:+.3f} to {c['auc_difference_upper']:+.3f} against blurred)."
    )


def test_identical_models_get_no_measurable_difference(book):  # noqa: F811
    ev = _evaluate(book, {"the clear score": book["clear"], "its exact copy": book["clear"]})
    text = ev.recommendation()
    assert text.startswith("No measurable difference between the clear score and its exact copy (AUC difference")
    assert "either will do" in text and "Use " not in text
    assert text in report.verdict_html(ev).replace("&#x27;", "'")


def test_a_reversed_model_is_never_recommended(book):  # noqa: F811
    ev = _evaluate(book, {"upside down": book["reversed"]})
    assert ev.recommendation().startswith("Do not use upside down: it ranks churners worse than chance (AUC 0.")
    verdict = report.verdict_html(ev)
    assert "warning: upside down has AUC" in verdict and 'class="note finding"' in verdict
    both = _evaluate(book, {"clear": book["clear"], "upside down": book["reversed"]})
    assert both.recommendation().startswith("Use clear: it ranks churners measurably better than upside down")
    single = _evaluate(book, {"clear": book["clear"]})
    r = single.table.row(0, named=True)
    assert single.recommendation() == (
        "Use clear: it ranks churners above the other accounts more often than chance "
        f"(AUC {r['auc']:.3f}, 95% interval {r['auc_lower']:.3f} to {r['auc_upper']:.3f})."
    )


def test_report_order_verdict_then_catch_then_auc_then_technical_then_glossary(page):
    at = {
        "verdict": page.index('<section class="verdict"'),
        "catch": page.index("<h2>What the bands catch</h2>"),
        "auc": page.index("<h2>Head to head</h2>"),
        "more": page.index("<h2>Further measures</h2>"),
        "glossary": page.index('<section class="glossary"'),
    }
    assert list(at.values()) == sorted(at.values()), at
    assert page.index("Use clear: it ranks churners measurably better") < at["catch"]
    head_to_head = page[at["auc"] : page.index("</table>", at["auc"])]
    assert "AUC" in head_to_head and "PR-AUC" not in head_to_head and "ECE" not in head_to_head
    assert page.index("PR-AUC") > at["more"] and page.index("ECE") > at["more"]  # after the plain figures


def test_catch_figures_are_the_tables_own_numbers(clear_vs_blurred, page):
    catch = page[page.index("<h2>What the bands catch</h2>") : page.index("<h2>Head to head</h2>")]
    for r in clear_vs_blurred.table.iter_rows(named=True):
        red, both = f"{r['alarm_recall']:.0%}", f"{r['alarm_watch_recall']:.0%}"
        assert f"With {r['model']}, red catches {red} of churners while flagging" in catch
        assert re.search(rf"<td>{r['model']}</td><td>red</td><td class=\"num\">{red}</td>", catch)
        assert re.search(rf"<td>{r['model']}</td><td>red plus yellow</td><td class=\"num\">{both}</td>", catch)


def test_glossary_closes_the_report_in_one_sentence_per_term(page):
    glossary = page[page.index('<section class="glossary"') :]
    for term in ("AUC", "top-decile lift", "calibration", "PR-AUC", "Brier", "ECE"):
        item = re.search(rf"<li><strong>{re.escape(term)}</strong>: ([^<]+)</li>", glossary)
        assert item, term
        assert item.group(1).count(". ") == 0 and item.group(1).endswith("."), term  # one sentence
