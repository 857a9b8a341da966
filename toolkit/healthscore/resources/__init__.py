"""Files that ship inside the package: starter models, report templates, notebooks, the sample.

Everything is found with :mod:`importlib.resources`, so an installed wheel works from any folder.

>>> from healthscore import resources
>>> resources.sample_model().name
'model.toml'
>>> sorted(p.stem for p in resources.starter_models())[:2]
['digital', 'general_saas']
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["folder", "sample_dir", "sample_model", "starter_models", "starter_model", "notebook", "report_templates"]


def folder(*parts: str) -> Path:
    """The real path of a resource folder or file (the package is installed unzipped)."""
    return Path(str(files(__name__).joinpath(*parts)))


def sample_dir() -> Path:
    """The bundled sample portfolio (snapshots, events, data dictionary and its score model)."""
    return folder("sample")


def sample_model() -> Path:
    """The score model written for the bundled sample."""
    return folder("sample", "model.toml")


def starter_models() -> list[Path]:
    """The starter score models a team copies and adapts, sorted by name."""
    return sorted(folder("templates", "models").glob("*.toml"))


def starter_model(name: str) -> Path:
    """One starter model by file stem, e.g. ``"high_touch"``."""
    return folder("templates", "models", f"{name}.toml")


def notebook(name: str) -> Path:
    """A shipped notebook by file stem, e.g. ``"scorecard"``."""
    return folder("notebooks", f"{name}.ipynb")


def report_templates() -> Path:
    """The folder of the static HTML report template (nbconvert template and stylesheet)."""
    return folder("templates", "report")
