"""The algorithms of one iteration, each a plain function over records: prompt sources, refinement
chains (collect), scoring, selection of preference pairs (and the majority vote and win rates it
uses), the both-view pair datasets, and teacher answers.

Imports `aries.core`, `aries.backends` and `aries.rewards`; knows nothing of run folders or
the loop.
"""
