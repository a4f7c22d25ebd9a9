"""Held-out evaluation: accuracy per refinement round, public benchmarks, the metrics and their
intervals, and the evaluation table.

Imports `aries.core`, `aries.backends`, `aries.rewards` and `aries.method`.
"""
