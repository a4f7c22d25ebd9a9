"""The selection strategies (docs/specification.md stage 2) as functions of one prompt's candidates.

Each strategy ranks the candidates into (chosen, rejected) pairs, best against worst first, or
returns the reason the prompt is dropped (one of `aries.method.select.DROP_REASONS`); they take
the `SelectionConfig` and are registered in `RANKINGS` by the name `selection.strategy` uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aries.core.registry import Registry


@dataclass
class Candidate:
    """One response that may become y_w or y_l."""

    label: str  # "round:2" or "sample:1"
    text: str
    finish_reason: str
    score: float | None
    tie_score: float | None = None


Pair = tuple[Candidate, Candidate]
Strategy = Callable[[list[Candidate], Any], "list[Pair] | str"]
RANKINGS: Registry[Strategy] = Registry("selection strategy")
"""`selection.strategy` name -> the function ranking a prompt's candidates into pairs."""


def best_against_worst(better: list[Candidate], worse: list[Candidate]) -> list[Pair]:
    """Every (better[i], worse[j]) pair, ordered so that the best-against-worst pair comes first
    and each next one moves the least away from the extremes (rank sum i + j), a new rejected
    response before a new chosen one: more of the model's mistakes get pushed down."""
    order = sorted(
        ((i, j) for i in range(len(better)) for j in range(len(worse))),
        key=lambda ij: (ij[0] + ij[1], ij[0]),
    )
    return [(better[i], worse[j]) for i, j in order if better[i] is not worse[j]]


@RANKINGS.register("reward")
def reward(candidates: list[Candidate], config) -> list[Pair] | str:
    """ARIES' Reward Model Scoring (arXiv 2502.05605): highest against lowest score."""
    scored = [c for c in candidates if c.score is not None]
    if len(scored) < 2:
        return "too_few_scored"
    better = sorted(scored, key=lambda c: -c.score)  # stable: first of equal maxima first
    worse = sorted(scored, key=lambda c: c.score)
    if better[0].score == worse[0].score:
        return "all_tied"
    if better[0].score - worse[0].score < config.margin:
        return "below_margin"
    return [
        (c, r)
        for c, r in best_against_worst(better, worse)
        if c.score > r.score and c.score - r.score >= config.margin
    ]


@RANKINGS.register("verifier")
def verifier(candidates: list[Candidate], config) -> list[Pair] | str:
    """Correctness first (Iterative RPO, arXiv 2404.19733): right against wrong."""
    scored = [c for c in candidates if c.score is not None]
    if len(scored) < 2:
        return "too_few_scored"
    correct = [c for c in scored if c.score >= config.correct_threshold]
    wrong = [c for c in scored if c.score < config.correct_threshold]
    if not wrong:
        return "all_correct"
    if not correct:
        return "all_incorrect"
    key = preference(config.tie_break)
    better = sorted(correct, key=key, reverse=True)
    return best_against_worst(better, sorted(wrong, key=key))


def preference(tie_break: str) -> Callable[[Candidate], tuple[float, float]]:
    """verifier: the order among responses (score, then the tie-break)."""

    def key(c: Candidate) -> tuple[float, float]:
        if tie_break == "reward":
            return (c.score, -math.inf if c.tie_score is None else c.tie_score)
        return (c.score, -len(c.text.strip()))

    return key


@RANKINGS.register("rule")
def rule(candidates: list[Candidate], config) -> list[Pair] | str:
    """ARIES' Rule-Based Selection (arXiv 2502.05605): the last round against the first."""
    chain = [c for c in candidates if c.label.startswith("round:")]
    if len(chain) < 2:
        return "single_response"
    first, last = chain[0], chain[-1]
    pair = (first, last)
    if any(not c.text.strip() for c in pair):
        return "empty_response"
    if any(c.finish_reason == "length" for c in pair):
        return "truncated"
    if any(repetition(c.text, config.repetition_ngram) > config.max_repetition for c in pair):
        return "degenerate_repetition"
    short, long = sorted(len(c.text.strip()) for c in pair)
    if long / short > config.max_length_ratio:
        return "length_ratio"
    return [(last, first)]


def repetition(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier one: ~0 for prose, near 1 for a loop."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def normalised(text: str) -> str:
    """Case- and whitespace-insensitive form used to call two responses identical."""
    return " ".join(text.split()).casefold()
