"""Selection (docs/specification.md stage 2): turn each scored chain into preference pairs (one
by default).

A pure function of chains records and their scores, so every rule is easy to test and rerun.
Strategies:
- `reward` (the paper's Reward Model Scoring): y_w = highest score, y_l = lowest among the
  candidates; dropped when all scores tie or the margin is below a threshold.
- `rule` (the paper's Rule-Based Selection): trust the refiner, y_w = last round, y_l = round 0;
  dropped when either is empty, truncated at the token limit or a repetition loop, when they are
  identical after normalisation, or when their length ratio is beyond a bound.
- `verifier` [design]: correctness first (score >= correct_threshold); among the correct the
  preferred one by the tie-break, among the wrong the least preferred.
Every dropped prompt is counted under exactly one reason from `DROP_REASONS`.

Two recipe options [design] add pairs from the same responses: `pairs_per_prompt` (more
(chosen, rejected) combinations per prompt) and `on_policy_refine` (pairs that show the model its
own round-k answer, with its actual refinement as the rejected one; records carrying a `view`
and the `previous` answer, which `aries.method.pairs` turns into that view only).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from aries import AriesError
from aries.core.config import Options, Range
from aries.method.strategies import RANKINGS, Candidate, Pair, normalised, preference
from aries.method.winrates import estimator, win_rates
from aries.rewards import is_missing

Candidates = Literal["chain", "samples", "all"]
TieBreak = Literal["shorter", "reward"]
CANDIDATES = typing.get_args(Candidates)
TIE_BREAKS = typing.get_args(TieBreak)
DROP_REASONS = (
    "single_response",  # fewer than two candidates
    "too_few_scored",  # fewer than two candidates with a usable (not None / NaN) score
    "all_tied",  # reward: every score equal
    "below_margin",  # reward: best - worst < margin
    "all_correct",  # verifier: nothing wrong to reject
    "all_incorrect",  # verifier: nothing right to choose
    "empty_response",  # rule: first or last is empty
    "truncated",  # rule: first or last stopped at the token limit
    "degenerate_repetition",  # rule: first or last is a repetition loop
    "length_ratio",  # rule: longer / shorter beyond max_length_ratio
    "identical",  # chosen and rejected are the same text after normalisation
)


@dataclass
class SelectionConfig(Options):
    """How pairs are chosen; see the module docstring for the strategies."""

    section = "selection"

    strategy: str = field(
        default="reward",
        metadata={
            "choices": RANKINGS,
            "help": "'reward' (max/min, Reward Model Scoring) or 'rule' (last vs first round, "
            "Rule-Based Selection), both from ARIES, Zeng et al. 2025, arXiv 2502.05605; or "
            "'verifier' (correctness first, as in Iterative RPO, Pang et al. 2024, "
            "arXiv 2404.19733).",
        },
    )
    candidates: Candidates = field(
        default="all",
        metadata={
            "help": "Responses competing for a prompt: 'chain' (all refinement rounds), "
            "'samples' (round 0 + the parallel direct samples: Iterative DPO), 'all' (both: "
            "ARIES). The rule strategy always compares the chain's last and first rounds."
        },
    )
    margin: float = field(
        default=0.0,
        metadata={
            "range": Range(ge=0),
            "help": "reward: drop the prompt when best - worst score < margin.",
        },
    )
    max_length_ratio: float = field(
        default=3.0,
        metadata={
            "range": Range(ge=1),
            "help": "rule: drop when the longer of first/last is more than this many times the "
            "shorter (characters); guards against 'refine = make longer'.",
        },
    )
    max_repetition: float = field(
        default=0.5,
        metadata={
            "range": Range(ge=0, le=1),
            "help": "rule: a response whose share of repeated word n-grams exceeds this is a "
            "degenerate repetition loop.",
        },
    )
    repetition_ngram: int = field(
        default=4, metadata={"range": Range(ge=1), "help": "n of those word n-grams."}
    )
    correct_threshold: float = field(
        default=1.0,
        metadata={
            "range": Range(),
            "help": "verifier: a score at or above this counts as correct.",
        },
    )
    tie_break: TieBreak = field(
        default="shorter",
        metadata={
            "help": "verifier: among equally correct responses, 'shorter' prefers the shorter "
            "(and rejects the longer wrong one); 'reward' uses the tie-break scores."
        },
    )
    pairs_per_prompt: int = field(
        default=1,
        metadata={
            "range": Range(ge=1),
            "help": "reward / verifier: up to this many distinct (chosen, rejected) pairs per "
            "prompt, the best-against-worst first, so that fewer responses go to waste [design]. "
            "1 = one pair per prompt, as in ARIES (arXiv 2502.05605) and iterative DPO.",
        },
    )
    on_policy_refine: bool = field(
        default=False,
        metadata={
            "help": "verifier: also turn each refinement step of the chain into a pair whose "
            "prompt holds the model's own round-k answer [design, after the on-policy "
            "correction traces of SCoRe, arXiv 2409.12917, and RISE, arXiv 2407.18219]: a wrong "
            "y^k gives a refine pair (chosen: y^k+1 when it is right, else the best right "
            "response; rejected: y^k+1 when still wrong, else y^k repeated), a right y^k broken "
            "by its refinement a keep pair (chosen y^k, rejected y^k+1; weighted by pairs.w_keep)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.strategy == "rule" and self.candidates == "samples":
            raise AriesError("rule selection compares chain rounds: candidates cannot be 'samples'")
        if self.on_policy_refine and self.strategy != "verifier":
            raise AriesError("selection.on_policy_refine needs the verifier strategy")


class Selection(NamedTuple):
    pairs: list[dict[str, Any]]
    drop_counts: dict[str, int]


def select_pairs(
    chains: list[dict[str, Any]],
    scores: list[dict[str, Any]] | None = None,
    config: SelectionConfig | None = None,
    tie_scores: list[dict[str, Any]] | None = None,
) -> Selection:
    """Pairs for every prompt that yields one, and how many prompts were dropped for what.

    `scores` and `tie_scores` are scores.jsonl records, matched to chains by id (required except
    for the rule strategy); `tie_scores` is needed for the verifier's 'reward' tie-break.
    """
    config = config or SelectionConfig()
    if scores is None and config.strategy != "rule":
        raise AriesError(f"the {config.strategy} strategy needs scores")
    if config.strategy == "verifier" and config.tie_break == "reward" and tie_scores is None:
        raise AriesError("the verifier's 'reward' tie-break needs tie-break scores")
    by_id = _index(scores)
    tie_by_id = _index(tie_scores)
    pairs, drops = [], {}
    for record in chains:
        scores_of, ties_of = by_id.get(record["id"]), tie_by_id.get(record["id"])
        candidates = candidates_of(record, scores_of, ties_of, config.candidates)
        outcome = select_one(candidates, config)
        if isinstance(outcome, str):
            drops[outcome] = drops.get(outcome, 0) + 1
            continue
        start = len(pairs)
        for index, (chosen, rejected) in enumerate(outcome):
            pair = selection_record(record, chosen, rejected, config.strategy)
            pairs.append({**pair, "id": f"{record['id']}/{index}"} if index else pair)
        _add_win_rates(pairs[start:], candidates, scores_of, config)
        if config.on_policy_refine:
            every = candidates_of(record, scores_of, ties_of, "all")
            steps = refinement_steps(record, every, config)
            pairs += _add_win_rates(steps, every, scores_of, config)
    return Selection(pairs, dict(sorted(drops.items())))


def _add_win_rates(
    pairs: list[dict[str, Any]],
    candidates: list[Candidate],
    scores: dict[str, Any] | None,
    config: SelectionConfig,
) -> list[dict[str, Any]]:
    """SPPO's P̂(y ≻ π_t) of each pair's chosen and rejected response among the prompt's scored
    candidates (aries/method/winrates.py), as `chosen_win_rate` / `rejected_win_rate`."""
    scored = [c for c in candidates if c.score is not None]
    kind = estimator((scores or {}).get("source"), config.strategy)
    rates = dict(
        zip(
            (c.label for c in scored),
            win_rates([c.score for c in scored], kind, config.correct_threshold),
        )
    )
    for pair in pairs:
        pair["chosen_win_rate"] = rates.get(pair["chosen_from"])
        pair["rejected_win_rate"] = rates.get(pair["rejected_from"])
    return pairs


def _index(score_records: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): r for r in score_records or []}


def candidates_of(
    record: dict[str, Any],
    scores: dict[str, Any] | None,
    tie_scores: dict[str, Any] | None,
    which: str,
) -> list[Candidate]:
    """The record's responses (chain rounds, then samples) with their scores attached.

    'samples' means round 0 plus the parallel samples: both are direct answers.
    """
    responses = [(f"round:{r['round']}", r) for r in record["chain"]]
    responses += [(f"sample:{s['sample']}", s) for s in record.get("samples") or []]
    values = _aligned(record, scores, len(responses))
    ties = _aligned(record, tie_scores, len(responses))
    candidates = [
        Candidate(label, r["text"], r.get("finish_reason", "stop"), value, tie)
        for (label, r), value, tie in zip(responses, values, ties)
    ]
    chain_length = len(record["chain"])
    if which == "chain":
        return candidates[:chain_length]
    if which == "samples":
        return candidates[:1] + candidates[chain_length:]
    return candidates


def _aligned(record: dict, scores: dict | None, count: int) -> list[float | None]:
    if scores is None:
        return [None] * count
    values = list(scores.get("chain_scores", [])) + list(scores.get("sample_scores") or [])
    if len(values) != count:
        raise AriesError(
            f"prompt {record['id']}: {len(values)} scores for {count} responses "
            "(scores file does not match the chains file)"
        )
    return [None if is_missing(v) else float(v) for v in values]


def select_one(candidates: list[Candidate], config: SelectionConfig) -> list[Pair] | str:
    """Up to `pairs_per_prompt` distinct (chosen, rejected) pairs for one prompt, the first being
    the strategy's own pair (best against worst), or the drop reason."""
    if len(candidates) < 2:
        return "single_response"
    ranked = RANKINGS[config.strategy](candidates, config)
    if isinstance(ranked, str):
        return ranked
    pairs, seen = [], set()
    for chosen, rejected in ranked:
        texts = (normalised(chosen.text), normalised(rejected.text))
        if texts[0] != texts[1] and texts not in seen:
            seen.add(texts)
            pairs.append((chosen, rejected))
        if len(pairs) == config.pairs_per_prompt:
            break
    return pairs or "identical"


def refinement_steps(
    record: dict[str, Any], candidates: list[Candidate], config: SelectionConfig
) -> list[dict[str, Any]]:
    """On-policy refine and keep pairs from the chain's own steps y^k -> y^k+1 (see
    `SelectionConfig.on_policy_refine`): records with a `view` and the `previous` answer shown."""
    scored = [c for c in candidates if c.score is not None]
    chain = [c for c in scored if c.label.startswith("round:")]
    right = [c for c in scored if c.score >= config.correct_threshold]
    best = max(right, key=preference(config.tie_break)) if right else None
    steps, seen = [], set()
    for shown, refined in zip(chain, chain[1:]):
        if shown.score < config.correct_threshold:
            if refined.score >= config.correct_threshold:
                view, chosen, rejected = "refine", refined, shown
            elif best is not None:
                view, chosen, rejected = "refine", best, refined
            else:
                continue
        elif refined.score < config.correct_threshold:
            view, chosen, rejected = "keep", shown, refined
        else:
            continue
        texts = tuple(normalised(c.text) for c in (shown, chosen, rejected))
        if texts[1] == texts[2] or texts in seen:
            continue
        seen.add(texts)
        pair = selection_record(record, chosen, rejected, config.strategy)
        pair.update(id=f"{record['id']}/{shown.label}", view=view, previous=shown.text)
        steps.append(pair)
    return steps


def selection_record(
    record: dict, chosen: Candidate, rejected: Candidate, strategy: str
) -> dict[str, Any]:
    """One selections.jsonl record: the pair, where each side came from, the prompt's answer."""
    pair = {
        "id": record["id"],
        "prompt": record["prompt"],
        "chosen": chosen.text,
        "rejected": rejected.text,
        "chosen_score": chosen.score,
        "rejected_score": rejected.score,
        "chosen_from": chosen.label,
        "rejected_from": rejected.label,
        "strategy": strategy,
    }
    for key in ("answer", "source"):
        if key in record:
            pair[key] = record[key]
    return pair
