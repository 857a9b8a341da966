"""The one HTML renderer: every byte of a report page that comes from data goes through here.

* :func:`escape` for any text (names, labels, values) in text or attribute context;
* :func:`table` for every table of a report (one look, one set of formatters);
* :func:`markdown` for prose written in Markdown: rendered with raw HTML escaped, then cleaned
  by ``nh3`` against an allowlist of tags (links only ``http(s)`` or in-page ``#``, no ``style``,
  no ``on*`` attributes);
* :func:`colour` for the only CSS value built from a model (a validated ``#rrggbb``);
* :data:`CSP`, the Content-Security-Policy every exported report carries: no script of any kind,
  nothing loaded from anywhere (images only as ``data:``). One exception, :func:`csp` with
  ``script=``: a page may run one inline script of ours (:data:`TABLE_SCRIPT`, which sorts and
  filters a table), allowed by its SHA-256 hash and nothing else.

>>> escape('<b onclick="x">Acme & Co</b>')
'&lt;b onclick=&quot;x&quot;&gt;Acme &amp; Co&lt;/b&gt;'
>>> markdown("**ok** <script>alert(1)</script> [x](javascript:alert(1))")
'<p><strong>ok</strong> &lt;script&gt;alert(1)&lt;/script&gt; <a href="#harmful-link" rel="noopener noreferrer">x</a></p>'
"""

from __future__ import annotations

import base64
import hashlib
import html as _html
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mistune
import nh3
import polars as pl

from healthscore import resources
from healthscore.render import formats
from healthscore.spec.palette import NA_COLOUR, safe_colour

__all__ = [
    "CSP",
    "TABLE_SCRIPT",
    "csp",
    "csp_meta",
    "script_tag",
    "has_csp",
    "escape",
    "table",
    "markdown",
    "sanitize",
    "colour",
    "tint",
    "badge",
    "BAND_SHAPES",
]

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
    "script-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)

# explicit direction controls (embeddings, overrides, isolates) can make text read differently
# from what it is; letters and joiners stay
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# the one script a page of ours may carry: sorts a table by a clicked header and filters its rows
# by typed text, using text and data-* attributes only (never markup, never a request)
TABLE_SCRIPT = resources.folder("templates", "index", "table.js").read_text(encoding="utf-8")
_OWN_SCRIPTS = (TABLE_SCRIPT,)


def _script_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def csp(script: str | None = None) -> str:
    """The page policy: :data:`CSP`, or with ``script`` the same policy that lets exactly that
    inline script run (allowed by its SHA-256 hash; every other script stays blocked).

    >>> csp() == CSP
    True
    >>> [part for part in csp("x()").split("; ") if part.startswith("script-src")]
    ["script-src 'sha256-D6IGS8VMvCoyaR/l0h9tERrBTATY01CoPS7l6xDv0kI='"]
    """
    if script is None:
        return CSP
    return CSP.replace("script-src 'none'", f"script-src {_script_hash(script)}")


def csp_meta(script: str | None = None) -> str:
    """The ``<meta>`` tag that puts :func:`csp` on a page (first thing in ``<head>``).

    >>> csp_meta().startswith('<meta http-equiv="Content-Security-Policy" content="default-src')
    True
    """
    return f'<meta http-equiv="Content-Security-Policy" content="{_html.escape(csp(script), quote=True)}">'


def script_tag(script: str) -> str:
    """``script`` as an inline ``<script>`` element, byte for byte (its hash must match the policy).

    >>> script_tag("go()")
    '<script>go()</script>'
    """
    if re.search(r"</script", script, re.IGNORECASE):
        raise ValueError("an inline script may not contain '</script'")
    return f"<script>{script}</script>"


_CSP_META = re.compile(r"<meta\b[^>]*>", re.IGNORECASE)


def has_csp(page: str) -> bool:
    """True when ``page`` carries :data:`CSP` in a ``<meta>`` tag inside its ``<head>``, or the
    policy that allows only one of our own scripts (:data:`TABLE_SCRIPT`) by its hash.

    >>> has_csp("<html><head>" + csp_meta() + "</head><body></body></html>"), has_csp("<p>hi</p>")
    (True, False)
    >>> has_csp("<head>" + csp_meta(TABLE_SCRIPT) + "</head>"), has_csp("<head>" + csp_meta("x()") + "</head>")
    (True, False)
    """
    head = page.split("</head>", 1)[0] if "</head>" in page else ""
    allowed = {CSP} | {csp(s) for s in _OWN_SCRIPTS}
    for tag in _CSP_META.findall(head):
        tag = _html.unescape(tag)
        if 'http-equiv="Content-Security-Policy"' in tag and any(f'content="{p}"' in tag for p in allowed):
            return True
    return False


def escape(value: Any) -> str:
    """Any value as HTML text, safe in element and quoted-attribute context; None is empty.

    Direction-override characters and control characters are dropped.

    >>> escape(None), escape(3), escape("a\u202eb'c")
    ('', '3', 'ab&#x27;c')
    """
    text = "" if value is None else str(value)
    return _html.escape(_CONTROL.sub("", _BIDI.sub("", text)), quote=True)


def colour(value: Any, default: str = NA_COLOUR) -> str:
    """A colour for a ``style`` attribute: a validated ``#rrggbb``, else ``default``.

    >>> colour("#c00"), colour("red;background:url(x)")
    ('#cc0000', '#8c959f')
    """
    return safe_colour(value, default)


# a shape beside every band colour, so a band reads without colour at all (worst band first)
BAND_SHAPES: dict[str, str] = {"red": "\u25b2", "yellow": "\u25a0", "green": "\u25cf"}
OTHER_SHAPE = "\u25c6"
NA_SHAPE = "\u25cb"


def tint(value: Any, share: float = 0.86) -> str:
    """A light tint of a colour (``share`` of white mixed in), for backgrounds under dark text.

    >>> tint("#000000", 0.5)
    '#808080'
    """
    hexa = colour(value)
    rgb = [int(hexa[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * share):02x}" for c in rgb)


def badge(name: str | None, swatch: Any, css: str = "band", *, missing: str = "not applicable") -> str:
    """A band name beside its colour and its shape (never the colour alone): dark text on a light
    tint of the band colour, the shape drawn in the band colour.

    >>> badge("red", "#A6192E")  # doctest: +NORMALIZE_WHITESPACE
    '<span class="band" style="background:#f3dfe2;border-color:#A6192E"><span class="swatch"
    aria-hidden="true" style="color:#A6192E">▲</span>red</span>'
    """
    label = missing if name is None else name
    na = name in (None, missing)
    cls = f"{css} status-na" if na else css
    shape = NA_SHAPE if na else BAND_SHAPES.get(str(name).lower(), OTHER_SHAPE)
    return (
        f'<span class="{escape(cls)}" style="background:{tint(swatch)};border-color:{colour(swatch)}">'
        f'<span class="swatch" aria-hidden="true" style="color:{colour(swatch)}">{shape}</span>'
        f"{escape(label)}</span>"
    )


def _default_format(dtype: pl.DataType) -> str | Callable[[Any], str]:
    if dtype.is_integer():
        return "count"
    if dtype.is_float():
        return ".3g"
    if dtype == pl.Date or dtype == pl.Datetime:
        return "date"
    return str


def table(
    frame: pl.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    headings: Mapping[str, str] | None = None,
    css: str = "hs-table",
) -> str:
    """A frame as an HTML table: ``columns`` (default all, in order), ``formats`` per column (a
    formatter name from :mod:`healthscore.render.formats`, a Python format spec or a callable),
    ``headings`` per column (default the column name). Numbers align right; every cell is escaped.

    >>> table(pl.DataFrame({"model": ["a<b"], "auc": [0.71234]}), formats={"auc": ".3f"},
    ...       headings={"auc": "AUC"})
    '<table class="hs-table"><thead><tr><th>model</th><th class="num">AUC</th></tr></thead><tbody><tr><td>a&lt;b</td><td class="num">0.712</td></tr></tbody></table>'
    """
    cols = [c for c in (columns or frame.columns) if c in frame.columns]
    fmts = {c: formats_of(c, frame.schema[c], formats) for c in cols}
    num = {c: frame.schema[c].is_numeric() for c in cols}
    cls = {c: ' class="num"' if num[c] else "" for c in cols}
    head = "".join(f"<th{cls[c]}>{escape((headings or {}).get(c, c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{cls[c]}>{escape(_cell(fmts[c], v))}</td>" for c, v in zip(cols, row)) + "</tr>"
        for row in frame.select(cols).iter_rows()
    )
    return f'<table class="{escape(css)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def formats_of(
    column: str, dtype: pl.DataType, given: Mapping[str, str | Callable[[Any], str]] | None
) -> Callable[[Any], str]:
    spec = (given or {}).get(column) or _default_format(dtype)
    return formats.formatter(spec)


def _cell(fmt: Callable[[Any], str], value: Any) -> str:
    if value is None or formats.missing(value):
        return formats.MISSING
    return fmt(value)


# ------------------------------------------------------------------ Markdown and sanitising
_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "span",
    "div",
    "del",
    "sup",
    "sub",
    "section",
    "figure",
    "figcaption",
    "abbr",
}
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "abbr": {"title"}, "*": {"class", "id"}}
_md = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "href":
        v = value.strip()
        return v if (v.startswith("#") or v.lower().startswith(("http://", "https://"))) else None
    if attr in ("class", "id"):
        return value if re.fullmatch(r"[A-Za-z0-9 _-]{1,80}", value) else None
    return value


def sanitize(fragment: str) -> str:
    """HTML cleaned against the report allowlist: no script, style, iframe, form or SVG; no
    ``style`` or ``on*`` attributes; links only ``http(s)://`` or ``#``; no direction overrides.

    >>> sanitize('<a href="#top" onclick="x()">up</a><img src=x onerror=alert(1)><style>*{}</style>')
    '<a href="#top" rel="noopener noreferrer">up</a>'
    """
    return nh3.clean(
        _BIDI.sub("", fragment),
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https"},
        strip_comments=True,
        link_rel="noopener noreferrer",
    )


def markdown(text: str) -> str:
    """Markdown to safe HTML: raw HTML in the text is shown as text, the result is sanitised.

    >>> markdown("# Review\\n\\n- [docs](https://example.org) <img src=x onerror=alert(1)>")
    '<h1>Review</h1>\\n<ul>\\n<li><a href="https://example.org" rel="noopener noreferrer">docs</a> &lt;img src=x onerror=alert(1)&gt;</li>\\n</ul>'
    """
    return sanitize(str(_md(_BIDI.sub("", text or "")))).strip()
