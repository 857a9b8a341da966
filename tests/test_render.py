"""The one renderer: escaping and sanitising hold for any string, the formatters write golden
values, colours are validated when a model loads, and audiences survive a save."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import healthscore as hs
import polars as pl
import pytest
from healthscore.render import formats as fmt
from healthscore.render import html as rh
from healthscore.spec.model import ModelError
from hypothesis import given, settings
from hypothesis import strategies as st

# fragments an attacker would try, mixed into arbitrary text by the strategies below
PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "[click](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    '<div style="background:url(https://evil.example/x.png)">x</div>',
    "<style>*{background:url(//e.x/y)}</style>",
    "<iframe src=//evil.example></iframe>",
    "<object data=x>",
    "![i](https://evil.example/i.png)",
    "<a href=//evil.example>p</a>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "\u202etxt.exe",
    "a\u200bb",
    "<ScRiPt >x</sCrIpT >",
    "<<script>script>",
    "javascript&colon;alert(1)",
    "<base href=https://evil.example/>",
    "<form action=https://evil.example><button>x</button></form>",
    "<meta http-equiv=refresh content=0;url=https://evil.example>",
    "<link rel=stylesheet href=//e.x/s.css>",
]
texts = st.lists(st.one_of(st.sampled_from(PAYLOADS), st.text(max_size=40)), max_size=6).map("".join)


class _Markup(HTMLParser):
    """Every element and attribute of a fragment, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    handle_startendtag = handle_starttag


def assert_inert(fragment: str) -> None:
    """No script element, no event handler, no script or external URL, no CSS that loads."""
    low = fragment.lower()
    assert "<script" not in low and "<style" not in low and "<iframe" not in low
    p = _Markup()
    p.feed(fragment)
    p.close()
    assert not {
        "script",
        "style",
        "iframe",
        "object",
        "embed",
        "img",
        "svg",
        "math",
        "base",
        "meta",
        "link",
        "form",
    } & set(p.tags), p.tags
    for tag, name, value in p.attrs:
        assert not name.startswith("on"), (tag, name)
        assert name not in ("style", "src", "srcset", "action", "formaction"), (tag, name)
        if name in ("title", "alt"):  # text, not a URL or CSS
            continue
        v = "".join(value.split()).lower()
        assert "javascript:" not in v and "url(" not in v, (tag, name, value)
        if name == "href":
            assert v.startswith(("#", "http://", "https://")), value
    assert "\u202e" not in fragment


@settings(max_examples=300, deadline=None)
@given(texts)
def test_escape_leaves_no_markup(text):
    out = rh.escape(text)
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert_inert(out)
    assert_inert(f'<td title="{out}">{out}</td>')


@settings(max_examples=300, deadline=None)
@given(texts)
def test_markdown_is_sanitised(text):
    assert_inert(rh.markdown(text))


@settings(max_examples=200, deadline=None)
@given(texts)
def test_sanitize_keeps_only_the_allowlist(text):
    assert_inert(rh.sanitize(text))


@settings(max_examples=100, deadline=None)
@given(st.lists(texts, min_size=1, max_size=4))
def test_table_escapes_every_cell_and_heading(values):
    frame = pl.DataFrame({"name": values, "n": list(range(len(values)))})
    out = rh.table(frame, headings={"name": values[0]})
    assert_inert(out)
    assert out.count("<tr>") == len(values) + 1


@settings(max_examples=200, deadline=None)
@given(texts)
def test_colour_is_hex_or_the_fallback(text):
    c = rh.colour(text)
    assert len(c) == 7 and c[0] == "#" and all(ch in "0123456789abcdefABCDEF" for ch in c[1:])


def test_markdown_keeps_what_prose_needs():
    out = rh.markdown(
        "## Summary\n\n**ARR at risk** is *high*: see [the guide](https://example.org/g) "
        "and [below](#detail).\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    )
    assert "<h2>Summary</h2>" in out and "<strong>ARR at risk</strong>" in out and "<em>high</em>" in out
    assert 'href="https://example.org/g"' in out and 'href="#detail"' in out
    assert out.count("<li>") == 2 and "<table>" in out and "<td>2</td>" in out


def test_csp_forbids_scripts_and_every_load():
    policy = dict(part.strip().split(" ", 1) for part in rh.CSP.split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'none'"
    assert policy["img-src"] == "data:" and policy["style-src"] == "'unsafe-inline'"
    assert rh.has_csp(f"<html><head>{rh.csp_meta()}</head></html>")


def test_table_formats_and_aligns():
    frame = pl.DataFrame({"cohort": ["smb", "<b>ent</b>"], "share": [0.123, None], "arr": [12_300.0, 2.5e6]})
    out = rh.table(frame, formats={"share": "percent", "arr": "money"}, headings={"arr": "ARR"})
    assert out == (
        '<table class="hs-table"><thead><tr><th>cohort</th><th class="num">share</th>'
        '<th class="num">ARR</th></tr></thead><tbody>'
        '<tr><td>smb</td><td class="num">12%</td><td class="num">12.3k</td></tr>'
        '<tr><td>&lt;b&gt;ent&lt;/b&gt;</td><td class="num">–</td><td class="num">2.5M</td></tr>'
        "</tbody></table>"
    )


# ----------------------------------------------------------------------------- formatters
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: fmt.percent(0.5), "50%"),
        (lambda: fmt.percent(0.0449), "4.5%"),
        (lambda: fmt.percent(0.1), "10%"),
        (lambda: fmt.percent(1.0), "100%"),
        (lambda: fmt.percent(0.12345, 2), "12.35%"),
        (lambda: fmt.percent(None), "–"),
        (lambda: fmt.percent(float("nan")), "–"),
        (lambda: fmt.money(0), "0"),
        (lambda: fmt.money(999), "999"),
        (lambda: fmt.money(1000), "1.0k"),
        (lambda: fmt.money(49_950), "50.0k"),
        (lambda: fmt.money(1.25e6), "1.2M"),
        (lambda: fmt.money(7.5e9, "€"), "€7.5bn"),
        (lambda: fmt.days(1), "1 day"),
        (lambda: fmt.days(-1), "-1 day"),
        (lambda: fmt.days(30.6), "31 days"),
        (lambda: fmt.count(1234567), "1,234,567"),
        (lambda: fmt.count(3.0), "3"),
        (lambda: fmt.points(61.5), "62"),
        (lambda: fmt.points(35), "35"),
        (lambda: fmt.points(12.34, 1), "12.3"),
        (lambda: fmt.points(4, 1, signed=True), "+4.0"),
        (lambda: fmt.date(dt.date(2026, 3, 9)), "9 March 2026"),
        (lambda: fmt.date(dt.date(2026, 3, 9), style="short"), "9 Mar 2026"),
        (lambda: fmt.date(dt.date(2026, 3, 9), style="iso"), "2026-03-09"),
        (lambda: fmt.date(None), "–"),
        (lambda: fmt.p_value(0.04), "p=0.04"),
        (lambda: fmt.p_value(0.001), "p=0.001"),
        (lambda: fmt.metric_value(0.0, "boolean"), "no"),
        (lambda: fmt.metric_value(3.14159), "3.14"),
        (lambda: fmt.number(-1234.5, 1), "-1,234.5"),
    ],
)
def test_formatter_golden_values(call, expected):
    assert call() == expected


# ----------------------------------------------------------------------------- the model
BASE = """
[model]
name = "m"
[categories.usage]
weight = 1
audience = "customer"
customer_label = "How you use it"
[categories.team]
weight = 1
[[metrics]]
name = "logins"
column = "login_days"
category = "usage"
method = "thresholds"
params = { points = [[0, 0], [5, 100]] }
label = "Logins"
action = "Call them."
audience = "customer"
customer_label = "Days your team logged in"
customer_action = "Try the weekly digest."
[[metrics]]
name = "mood"
column = "csm_assessment"
category = "team"
method = "thresholds"
params = { points = [[1, 0], [5, 100]] }
label = "CSM assessment"
[report.fields.renewal_date]
label = "Renewal"
audience = "customer"
format = "date"
"""

BANDS = """
[[bands]]
name = "low"
lower = 0
upper = 50
colour = "{colour}"
[[bands]]
name = "high"
lower = 50
upper = 100
colour = "green"
"""


def test_audience_parses_defaults_to_internal_and_survives_a_save(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(BASE)
    model = hs.load_model(path)
    logins, mood = model.metrics
    assert (logins.audience, mood.audience) == ("customer", "internal")  # unstated means internal
    assert model.categories["usage"].audience == "customer" and model.categories["team"].audience == "internal"
    assert logins.customer_text() == ("Days your team logged in", "", "Try the weekly digest.")
    assert [(f.column, f.audience, f.format) for f in model.fields] == [("renewal_date", "customer", "date")]
    plain = tmp_path / "plain.toml"
    plain.write_text(BASE.replace('audience = "customer"\n', "").replace('customer_label = "How you use it"\n', ""))
    assert hs.load_model(plain).hash == model.hash  # the audience is not part of the hash
    model.save(tmp_path / "copy.toml")
    again = hs.load_model(tmp_path / "copy.toml")
    assert again.metrics == model.metrics and again.categories == model.categories and again.fields == model.fields


def test_customer_metric_needs_a_customer_category(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(BASE.replace('name = "mood"', 'name = "mood"\naudience = "customer"'))
    with pytest.raises(
        ModelError, match=r"metrics\[2\] \(mood\)\.audience: a customer metric in the internal category"
    ):
        hs.load_model(path)


def test_unknown_audience_names_the_key(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(
        BASE.replace('audience = "customer"\ncustomer_label = "Days', 'audience = "public"\ncustomer_label = "Days')
    )
    with pytest.raises(ModelError, match=r"metrics\[1\] \(logins\)\.audience: 'public' must be"):
        hs.load_model(path)


@pytest.mark.parametrize(
    "colour",
    [
        "#c00;background-image:url(https://evil.example/x.png)",
        "url(x)",
        "expression(alert(1))",
        "#12345",
        "rgb(1,2,3)",
        "red;",
        "#ggg",
        "#fff\\n",
        "teal",
    ],
)
def test_band_colour_outside_the_palette_is_refused(tmp_path, colour):
    path = tmp_path / "m.toml"
    path.write_text(BASE + BANDS.replace("{colour}", colour))
    with pytest.raises(
        ModelError,
        match=r"m.toml: bands\[1\] \(low\)\.colour: .* is not a colour: write #rgb or "
        r"#rrggbb hex, or one of the names",
    ):
        hs.load_model(path)


@pytest.mark.parametrize(("colour", "css"), [("#c00", "#cc0000"), ("#D55E00", "#D55E00"), ("Blue", "#0072B2")])
def test_band_colour_in_the_palette_loads(tmp_path, colour, css):
    path = tmp_path / "m.toml"
    path.write_text(BASE + BANDS.replace("{colour}", colour))
    assert rh.colour(hs.load_model(path).bands[0].colour) == css


def test_with_bands_checks_colours_too(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(BASE)
    model = hs.load_model(path)
    with pytest.raises(ModelError, match="colour"):
        model.with_bands(
            [{"name": "a", "lower": 0, "upper": 50, "colour": "x;y:url(z)"}, {"name": "b", "lower": 50, "upper": 100}]
        )
