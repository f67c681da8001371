"""`python -m open_clanker` runs the CLI."""

from open_clanker.cli.main import run

run()
