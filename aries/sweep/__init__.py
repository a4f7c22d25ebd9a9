"""The efficacy sweep (`bench/efficacy.py`, docs/efficacy-protocol.md): named variants of one run
config on each task of a spec, several training seeds each, every model evaluated on one shared
problem pool, and paired statistics over (seeds × problems).

Owns the spec and its run configs (`spec`), the equal-budget check (`spec.check_budgets`),
running and archiving runs as evidence (`runs`), the paired statistics (`stats`), the Markdown
report (`report`), the command line (`cli`), and `bench/heldout.py`'s larger fresh held-out
check (`heldout`). Results and evidence live in `results/`, never in the library.

Imports `aries.core`, `aries.backends`, `aries.evaluation`, `aries.method` and `aries.pipeline`:
beside `aries.commands` at the top; nothing in the library imports it (only bench/ and tests/).
"""
