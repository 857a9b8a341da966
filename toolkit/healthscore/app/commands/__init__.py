"""Subcommands of the ``healthscore`` command line that live in their own modules."""
