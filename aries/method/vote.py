"""Inference-time pick over a refinement chain: the last round (the paper's) or a vote [design].

The paper returns the last refinement. A refiner that still sometimes breaks right answers can
instead return the answer most rounds agree on, in the spirit of self-consistency (Wang et al.
2022, arXiv 2203.11171), which votes over independent samples; here the voters are the answer and
its refinements. Evaluation reports the vote as its own row, never in place of the last round.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from aries.rewards.verifiers import final_answer, last_number

Pick = Literal["last", "vote"]


def answer_key(text: str) -> str | None:
    """The final answer a response commits to ('Answer: ...', else its last number), or None."""
    answer = final_answer(text) or last_number(text)
    return " ".join(answer.split()).casefold() if answer else None


def vote_round(texts: list[str]) -> int:
    """Index of the response a majority vote over the chain's final answers picks.

    Ties between answers go to the one the chain reached last (the refiner's latest word); the
    latest response holding the winning answer is returned. Without any answer: the last round.
    """
    keys = [answer_key(text) for text in texts]
    counts = Counter(key for key in keys if key is not None)
    if not counts:
        return len(texts) - 1
    latest = {key: index for index, key in enumerate(keys) if key is not None}
    winner = max(counts, key=lambda key: (counts[key], latest[key]))
    return latest[winner]


def pick_round(texts: list[str], pick: Pick = "last") -> int:
    """The index `pick` selects among a chain's response texts."""
    return vote_round(texts) if pick == "vote" else len(texts) - 1
