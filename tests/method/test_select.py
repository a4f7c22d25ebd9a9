"""Selection strategies: every drop reason and the edge cases of docs/specification.md stage 2."""

from __future__ import annotations

import math

import pytest

from aries import AriesError
from aries.method.select import DROP_REASONS, SelectionConfig, select_pairs
from aries.method.strategies import repetition


def _chain(pid, texts, samples=(), finish=None, answer="4"):
    finish = finish or ["stop"] * len(texts)
    return {
        "id": pid,
        "prompt": f"question {pid}",
        "answer": answer,
        "source": "file",
        "chain": [
            {"round": i, "text": t, "finish_reason": f, "prompt_tokens": 5, "completion_tokens": 3}
            for i, (t, f) in enumerate(zip(texts, finish))
        ],
        "samples": [
            {"sample": i, "text": t, "finish_reason": "stop", "prompt_tokens": 5}
            for i, t in enumerate(samples)
        ],
    }


def _scores(pid, chain, samples=()):
    return {"id": pid, "source": "test", "chain_scores": chain, "sample_scores": list(samples)}


def _select(chains, scores=None, **config):
    return select_pairs(chains, scores, SelectionConfig(**config))


def test_reward_picks_max_and_min_across_chain_and_samples():
    chains = [_chain("a", ["r0", "r1", "r2"], samples=["s0", "s1"])]
    scores = [_scores("a", [0.2, 0.9, 0.5], [-1.0, 0.3])]
    pairs, drops = _select(chains, scores)
    assert drops == {}
    pair = pairs[0]
    assert (pair["chosen"], pair["rejected"]) == ("r1", "s0")
    assert (pair["chosen_from"], pair["rejected_from"]) == ("round:1", "sample:0")
    assert (pair["chosen_score"], pair["rejected_score"]) == (0.9, -1.0)
    assert pair["answer"] == "4" and pair["source"] == "file" and pair["prompt"] == "question a"


def test_candidates_restrict_to_chain_or_samples():
    chains = [_chain("a", ["r0", "r1"], samples=["s0", "s1"])]
    scores = [_scores("a", [0.5, 0.9], [0.1, 0.7])]
    chain_pair = _select(chains, scores, candidates="chain").pairs[0]
    assert (chain_pair["chosen_from"], chain_pair["rejected_from"]) == ("round:1", "round:0")
    sample_pair = _select(chains, scores, candidates="samples").pairs[0]
    assert (sample_pair["chosen_from"], sample_pair["rejected_from"]) == ("sample:1", "sample:0")


def test_reward_drops_ties_margin_missing_and_single():
    chains = [
        _chain("tied", ["x", "y", "z"]),
        _chain("close", ["x", "y"]),
        _chain("nan", ["x", "y", "z"]),
        _chain("one", ["only"]),
        _chain("same", ["Same  text", "same text"]),
        _chain("ok", ["x", "y"]),
    ]
    scores = [
        _scores("tied", [1.0, 1.0, 1.0]),
        _scores("close", [0.50, 0.55]),
        _scores("nan", [float("nan"), None, 3.0]),
        _scores("one", [5.0]),
        _scores("same", [0.0, 1.0]),
        _scores("ok", [0.0, 1.0]),
    ]
    pairs, drops = _select(chains, scores, margin=0.1)
    assert [p["id"] for p in pairs] == ["ok"]
    assert drops == {
        "all_tied": 1,
        "below_margin": 1,
        "too_few_scored": 1,
        "single_response": 1,
        "identical": 1,
    }
    assert set(drops) <= set(DROP_REASONS)
    assert sum(drops.values()) + len(pairs) == len(chains)


def test_nan_scores_are_skipped_not_chosen():
    chains = [_chain("a", ["r0", "r1", "r2"])]
    pair = _select(chains, [_scores("a", [0.1, math.nan, 0.4])]).pairs[0]
    assert (pair["chosen"], pair["rejected"]) == ("r2", "r0")


def test_rule_last_over_first_and_each_drop_reason():
    good_first = "The answer is 5 because two plus two is five."
    good_last = "Two plus two is four, so the answer is 4."
    loop = "I am not sure. " * 30
    chains = [
        _chain("ok", [good_first, "middle", good_last]),
        _chain("one", [good_first]),
        _chain("empty", [good_first, "   "]),
        _chain("cut", [good_first, good_last], finish=["stop", "length"]),
        _chain("loop", [good_first, loop]),
        _chain("same", [good_last, "  " + good_last.upper()]),
        _chain("long", ["4", good_last]),
    ]
    pairs, drops = _select(chains, None, strategy="rule")
    assert [p["id"] for p in pairs] == ["ok"]
    assert (pairs[0]["chosen_from"], pairs[0]["rejected_from"]) == ("round:2", "round:0")
    assert pairs[0]["chosen_score"] is None
    assert drops == {
        "single_response": 1,
        "empty_response": 1,
        "truncated": 1,
        "degenerate_repetition": 1,
        "identical": 1,
        "length_ratio": 1,
    }
    loose = _select(chains[-1:], None, strategy="rule", max_length_ratio=1000)
    assert len(loose.pairs) == 1


def test_verifier_correctness_first_with_length_or_reward_tie_break():
    long_right = "Let me think step by step about it. Answer: 4"
    chains = [
        _chain("a", ["Answer: 4", long_right, "Answer: 5"], samples=["Answer: 3 is what I say"]),
        _chain("right", ["Answer: 4", "4"]),
        _chain("wrong", ["Answer: 1", "2"]),
    ]
    scores = [
        _scores("a", [1.0, 1.0, 0.0], [0.0]),
        _scores("right", [1.0, 1.0]),
        _scores("wrong", [0.0, 0.0]),
    ]
    pairs, drops = _select(chains, scores, strategy="verifier")
    assert drops == {"all_correct": 1, "all_incorrect": 1}
    assert (pairs[0]["chosen"], pairs[0]["rejected_from"]) == ("Answer: 4", "sample:0")
    tie = [_scores("a", [0.1, 0.9, 0.2], [0.3])]
    by_reward = select_pairs(
        chains[:1], scores[:1], SelectionConfig(strategy="verifier", tie_break="reward"), tie
    ).pairs[0]
    assert (by_reward["chosen_from"], by_reward["rejected_from"]) == ("round:1", "round:2")


def test_configuration_and_file_mismatch_errors():
    with pytest.raises(AriesError, match="strategy"):
        SelectionConfig(strategy="best")
    with pytest.raises(AriesError, match="samples"):
        SelectionConfig(strategy="rule", candidates="samples")
    with pytest.raises(AriesError, match="needs scores"):
        select_pairs([_chain("a", ["x", "y"])], None, SelectionConfig())
    with pytest.raises(AriesError, match="2 scores for 3 responses"):
        _select([_chain("a", ["x", "y", "z"])], [_scores("a", [1.0, 0.0])])
    with pytest.raises(AriesError, match="tie-break scores"):
        select_pairs([], [], SelectionConfig(strategy="verifier", tie_break="reward"))


def test_repetition_measure():
    assert repetition("the cat sat on the mat and then went home to sleep") == 0.0
    assert repetition("go go go go go go go go go go go go") > 0.8
    assert repetition("too short") == 0.0


def test_pairs_per_prompt_adds_distinct_pairs_best_against_worst_first():
    chains = [_chain("a", ["w1", "r1", "r2"], samples=["w2", "w1 "])]
    scores = [_scores("a", [0.0, 1.0, 1.0], [0.0, 0.0])]
    one = _select(chains, scores, strategy="verifier").pairs
    many = _select(chains, scores, strategy="verifier", pairs_per_prompt=10).pairs
    assert [(p["chosen"], p["rejected"]) for p in one] == [("r1", "w1")]
    assert many[0] == one[0]  # the strategy's own pair first, unchanged
    # 2 right x 2 distinct wrong texts ("w1 " normalises to "w1"): 4 pairs, ids kept unique
    assert [(p["chosen"], p["rejected"]) for p in many] == [
        ("r1", "w1"),
        ("r1", "w2"),
        ("r2", "w1"),
        ("r2", "w2"),
    ]
    assert [p["id"] for p in many] == ["a", "a/1", "a/2", "a/3"]
    capped = _select(chains, scores, strategy="verifier", pairs_per_prompt=2).pairs
    assert len(capped) == 2


def test_reward_pairs_per_prompt_keep_the_margin_and_order():
    chains = [_chain("a", ["x", "y", "z"])]
    scores = [_scores("a", [0.9, 0.5, 0.1])]
    pairs = _select(chains, scores, pairs_per_prompt=5, margin=0.3).pairs
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("x", "z"), ("x", "y"), ("y", "z")]
    with pytest.raises(AriesError):
        SelectionConfig(pairs_per_prompt=0)


def test_on_policy_refine_pairs_come_from_the_chains_own_steps():
    # round 0 wrong -> round 1 still wrong -> round 2 right; a right sample
    chains = [_chain("a", ["w0", "w1", "r2"], samples=["r-sample"])]
    scores = [_scores("a", [0.0, 0.0, 1.0], [1.0])]
    pairs = _select(chains, scores, strategy="verifier", on_policy_refine=True).pairs
    main, *steps = pairs
    assert "view" not in main
    assert [(p["view"], p["previous"], p["chosen"], p["rejected"]) for p in steps] == [
        ("refine", "w0", "r2", "w1"),  # still wrong: the best right response over y^1
        ("refine", "w1", "r2", "w1"),  # fixed: y^2 over y^1 repeated
    ]
    assert [p["id"] for p in steps] == ["a/round:0", "a/round:1"]
    # a right answer broken by its refinement gives a keep pair
    broken = [_chain("b", ["r0", "w1"])]
    (_, keep) = _select(
        broken, [_scores("b", [1.0, 0.0])], strategy="verifier", on_policy_refine=True
    ).pairs
    assert (keep["view"], keep["previous"], keep["chosen"], keep["rejected"]) == (
        "keep",
        "r0",
        "r0",
        "w1",
    )
    with pytest.raises(AriesError, match="verifier"):
        SelectionConfig(strategy="reward", on_policy_refine=True)
