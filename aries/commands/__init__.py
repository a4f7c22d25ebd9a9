"""One module per `aries` subcommand; see `aries/cli.py`.

Imports `aries.core`, `aries.backends`, `aries.rewards`, `aries.method`, `aries.training`,
`aries.evaluation`, `aries.serving` and `aries.pipeline`: the top, with `aries.sweep` beside it.
"""
