"""One error family: every problem healthscore reports to a user derives from :class:`HealthscoreError`.

The message names what is wrong (file, column, row, setting) and how to fix it, so the command
line prints it as it is, without a traceback.

>>> from healthscore.errors import HealthscoreError
>>> from healthscore.spec.model import ModelError
>>> issubclass(ModelError, HealthscoreError)
True
"""

from __future__ import annotations

__all__ = ["DataWarning", "HealthscoreError", "UsageError"]


class HealthscoreError(Exception):
    """Base of every error healthscore raises for a problem in the user's data, model or settings."""


class UsageError(HealthscoreError):
    """A setting or argument that cannot work together with the others (exit status 2 on the CLI)."""


class DataWarning(UserWarning):
    """Something in the data looks wrong but can still be used (implausible dates, a unit that does
    not match the model, events of unknown accounts): issued with :func:`warnings.warn`, printed by the
    command line as ``healthscore: warning: ...``, and shown in notebooks like any warning."""
