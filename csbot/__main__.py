"""``python -m csbot``: the same as the ``csbot`` console script."""

from csbot.cli import cli

cli()
