"""Subcommands of the ``healthscore`` command line, one module each, each exposing ``add_<name>(sub)``."""
