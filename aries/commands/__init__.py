"""One module per `aries` subcommand; see `aries/cli.py`."""
