"""Subcommands of the ``healthscore`` command line that live in their own module (``add_<name>(sub)``)."""
