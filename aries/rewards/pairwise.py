"""Reward sources as pairwise judges: is a response better than a reference answer?

Win-rate evaluation (aries.evaluation.evaluate) compares every response with a reference
(the benchmark's
reference answer, or a fixed baseline's). `PairJudge` is that comparison; `RewardJudge` turns any
pointwise reward source into one (the higher reward wins), `PairwiseJudge` uses an LLM judge's
pairwise mode (aries.rewards.judge) on each (response, reference) pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aries.rewards import RewardSource, ScoreItem
from aries.rewards.judge import Judge


@dataclass
class Comparison:
    """One judged pair: is `response` better than `reference` for `prompt`?"""

    prompt: str
    response: str
    reference: str
    record: dict[str, Any]


class PairJudge(Protocol):
    """Pairwise verdicts: 1 response better, 0.5 tie, 0 reference better, None no verdict."""

    name: str

    def compare(self, items: list[Comparison]) -> list[float | None]: ...

    llm_judge: Judge | None
    """The LLM judge behind the verdicts, for its raw outputs and counters (None: reward model)."""


def _verdict(share: float | None, tie_margin: float) -> float | None:
    """1 win, 0.5 tie, 0 loss from the response's share (reward difference or win share)."""
    if share is None:
        return None
    if abs(share) <= tie_margin:
        return 0.5
    return 1.0 if share > 0 else 0.0


class RewardJudge:
    """A pointwise reward source used as a pairwise judge: the higher reward wins.

    Rewards closer than `tie_margin` count as a tie. Reference rewards are computed once per
    prompt and reused for every round.
    """

    def __init__(self, source: RewardSource, tie_margin: float = 0.0):
        self.source = source
        self.name = source.name
        self.tie_margin = tie_margin
        self.llm_judge = source if isinstance(source, Judge) else None
        self._reference_scores: dict[tuple[str, str], float | None] = {}

    def compare(self, items: list[Comparison]) -> list[float | None]:
        missing = list({(c.prompt, c.reference) for c in items} - set(self._reference_scores))
        scores = self.source.score(
            [ScoreItem(prompt, reference, None, {}) for prompt, reference in missing]
        )
        self._reference_scores.update(zip(missing, scores, strict=True))
        responses = self.source.score(
            [ScoreItem(c.prompt, c.response, c.reference, c.record) for c in items]
        )
        verdicts: list[float | None] = []
        for item, reward in zip(items, responses, strict=True):
            reference = self._reference_scores[(item.prompt, item.reference)]
            margin = None if reward is None or reference is None else reward - reference
            verdicts.append(_verdict(margin, self.tie_margin))
        return verdicts


class PairwiseJudge:
    """An LLM judge's pairwise mode (`aries.rewards.judge`, both orders) used on (response,
    reference) pairs: each comparison is its own group of two, so the judge sees only that pair.

    The judge's score for the response is its share of the two verdicts; above one half is a
    win, below a loss, exactly one half (split or tied verdicts) a tie, as in MT-Bench's
    two-order pairwise grading (Zheng et al. 2023, arXiv 2306.05685). Shares within
    `tie_margin` of one half also tie: a `logprob` judge gives probabilities, never exactly 1/2.
    """

    def __init__(self, source: RewardSource, tie_margin: float = 0.0):
        self.source = source
        self.name = source.name
        self.tie_margin = tie_margin
        self.llm_judge = source if isinstance(source, Judge) else None

    def compare(self, items: list[Comparison]) -> list[float | None]:
        scored = []
        for index, item in enumerate(items):
            group = {"id": f"comparison-{index}"}
            scored += [
                ScoreItem(item.prompt, item.response, None, group),
                ScoreItem(item.prompt, item.reference, None, group),
            ]
        shares = self.source.score(scored)[::2]
        return [_verdict(None if s is None else s - 0.5, self.tie_margin) for s in shares]
