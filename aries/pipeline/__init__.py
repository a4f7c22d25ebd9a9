"""The loop: the run configuration and the references `--check` resolves, the run folder, the
stages of each method's plan and the order they run in, resume, status, and the report of a
finished run.

Imports `aries.core`, `aries.backends`, `aries.rewards`, `aries.method`, `aries.training` and
`aries.evaluation`: the top of the library; only `aries.commands` and `aries.sweep` import it.
"""
