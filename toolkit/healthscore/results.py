"""The result protocol every analysis result follows: ``summary()``, ``to_frame()``, ``charts()``.

``summary()`` returns a :class:`Summary`: it prints as plain text in a terminal and shows as the same
text in a notebook (escaped, in a monospace block), so one object serves both places.

>>> s = Summary("AUC 0.74 [0.71, 0.77]")
>>> print(s)
AUC 0.74 [0.71, 0.77]
>>> s._repr_html_()
'<pre class="hs-summary">AUC 0.74 [0.71, 0.77]</pre>'
"""

from __future__ import annotations

import html
from typing import Any, Protocol, runtime_checkable

import polars as pl

__all__ = ["Summary", "Result"]


class Summary(str):
    """Text that prints as itself and renders as an escaped monospace block in a notebook."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        # the only markup the numbers layers produce: escaped text in a <pre> for the notebook
        return f'<pre class="hs-summary">{html.escape(str(self))}</pre>'


@runtime_checkable
class Result(Protocol):
    """What a result object offers: a readable summary and its numbers as a frame."""

    def summary(self) -> Summary: ...

    def to_frame(self) -> pl.DataFrame: ...


def charts_of(result: Any) -> dict[str, Any]:
    """The named charts of a result that has pictures, or an empty dict."""
    make = getattr(result, "charts", None)
    return dict(make()) if callable(make) else {}
