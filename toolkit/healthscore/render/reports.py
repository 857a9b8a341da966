"""Static HTML reports: the export shared by every report.

A report is an executed notebook turned into one self-contained HTML file through the template in
``templates/report``: outputs only (no code, no prompts, no widget state, no scripts), charts as
inline SVG, print-friendly CSS. Markdown (cells and outputs) goes through the sanitising
:func:`healthscore.render.html.markdown`, and every page carries the Content-Security-Policy
:data:`healthscore.render.html.CSP`: even a script that slipped in could not run or load anything.

>>> import nbformat
>>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello")])
>>> html = export_html(nb, None, title="Demo")
>>> "<h1" in html and "Hello" in html and "<script" not in html and "Content-Security-Policy" in html
True
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import nbformat

from healthscore import resources
from healthscore.io import files
from healthscore.render import html as safe_html

TEMPLATES = resources.folder("templates")
TEMPLATE_NAME = "report"

_VEGALITE = re.compile(r"^application/vnd\.vegalite\.v\d+(\.\d+)*\+json$")
_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL)

_exporter: Any = None


def _html_exporter() -> Any:
    """One HTMLExporter per process: building it loads the Jinja templates (tens of ms)."""
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter  # nbconvert is needed only to export a report

        if not (TEMPLATES / TEMPLATE_NAME / "index.html.j2").is_file():
            raise FileNotFoundError(
                f"report template missing: {TEMPLATES / TEMPLATE_NAME}/index.html.j2; "
                "healthscore must run from a source checkout (pip install -e .)"
            )
        _exporter = HTMLExporter(
            template_name=TEMPLATE_NAME,
            extra_template_basedirs=[str(TEMPLATES)],
            exclude_input=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
            anchor_link_text="",  # no pilcrow after every heading in a printed report
            filters={"safe_markdown": safe_html.markdown},
        )
    return _exporter


def _static_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` fit for a static page: no widget state, vega-lite charts as inline SVG,
    no ``<script>`` in HTML outputs (a static report must work with no network and run nothing)."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("widgets", None)
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            data.pop("application/vnd.jupyter.widget-view+json", None)
            data.pop("application/javascript", None)
            if "text/markdown" in data:  # rendered here, sanitised, so the template shows only HTML
                md = data.pop("text/markdown")
                data["text/html"] = safe_html.markdown("".join(md) if isinstance(md, list) else md)
            spec_type = next((k for k in data if _VEGALITE.match(k)), None)
            if spec_type is not None:
                if "image/svg+xml" not in data:
                    import vl_convert  # the chart renderer is loaded only when an SVG is written

                    data["image/svg+xml"] = vl_convert.vegalite_to_svg(data[spec_type])
                data.pop("text/html", None)  # the live-chart HTML loads scripts from the network
                del data[spec_type]
            if "text/html" in data:
                html = data["text/html"]
                html = "".join(html) if isinstance(html, list) else html
                data["text/html"] = _SCRIPT.sub("", html)
    return nb


def export_html(nb: nbformat.NotebookNode, path: str | os.PathLike[str] | None, *, title: str) -> str:
    """Render an executed notebook as a static, self-contained HTML report and return the HTML.

    Only outputs and markdown reach the page. When ``path`` is given the file is written
    atomically. ``title`` is escaped, so it may hold any text.

    >>> import nbformat, tempfile, pathlib
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.html"
    >>> html = export_html(nb, out, title="<b>x</b>")
    >>> out.is_file(), "1 + 1" in html, "&lt;b&gt;x&lt;/b&gt;" in html
    (True, False, True)
    """
    body, _ = _html_exporter().from_notebook_node(
        _static_outputs(nb), resources={"report_title": title, "csp": safe_html.CSP}
    )
    if not safe_html.has_csp(body):
        raise RuntimeError(
            f"the report template in {TEMPLATES / TEMPLATE_NAME} did not put the "
            "Content-Security-Policy on the page; reinstall healthscore"
        )
    if path is not None:
        files.write_text(path, body)
    return body


# ===================================================================== scorecards: content
# Everything below builds one account's scorecard from the score frame. Each function sees only
# this account's rows plus aggregated cohort figures, so nothing about another account can reach
# a chart spec or the page.
