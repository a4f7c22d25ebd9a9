"""The loop: the run configuration and the references `--check` resolves, the run folder, the
stages of each method's plan and the order they run in, resume, status, and the report of a
finished run.

The top of the library: imports every other package, and nothing but `aries.commands` imports it.
"""
