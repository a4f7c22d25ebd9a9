"""SPPO's soft win-rate estimates (Wu et al. 2024, arXiv 2405.00675, Algorithm 1).

P̂(y ≻ π_t | x) = (1/K) Σ_k P(y ≻ y_k | x) over the K responses y_k that π_t sampled for x (y
itself included: a tie, ½), with the pairwise preference P from whatever scored the responses:
- `bradley-terry` (a reward model or a pointwise judge): σ(s - s_k);
- `correctness` (a verifier, selection strategy 'verifier'): 1 right over wrong, 0 the reverse,
  ½ when both are right or both wrong;
- `pairwise` (an LLM judge in pairwise mode): its score already is y's win rate over the
  prompt's other responses (both orders judged), so P̂ = (s (K-1) + ½) / K.
Selection writes P̂ of the chosen and the rejected response into every pair; loss `sppo` reads
them (aries/training/losses.py).
"""

from __future__ import annotations

import math
from typing import Literal

Estimator = Literal["bradley-terry", "correctness", "pairwise"]


def estimator(source: str | None, strategy: str) -> Estimator:
    """How the scores of `source` (scores.jsonl's source name) give pairwise preferences."""
    if source and source.startswith("judge:pairwise"):
        return "pairwise"
    return "correctness" if strategy == "verifier" else "bradley-terry"


def win_rates(scores: list[float], kind: Estimator, correct_threshold: float = 1.0) -> list[float]:
    """P̂(y_i ≻ π_t) for each of a prompt's K scored responses."""
    k = len(scores)
    if kind == "pairwise":
        return [(s * (k - 1) + 0.5) / k for s in scores]
    if kind == "correctness":
        right = [s >= correct_threshold for s in scores]
        prefer = [[0.5 + 0.5 * (a - b) for b in right] for a in right]
    else:
        prefer = [[1 / (1 + math.exp(b - a)) for b in scores] for a in scores]
    return [sum(row) / k for row in prefer]
