"""Evaluation: benchmark formats, per-round statistics on scripted answers, a tiny model run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aries import AriesError
from aries.backends import Generation, Sampling
from aries.cli import main
from aries.core.jsonl import read_jsonl
from aries.evaluation.benchmarks import last_boxed, load_benchmark
from aries.evaluation.evaltable import format_table
from aries.evaluation.evaluate import check_held_out, evaluate
from aries.rewards.pairwise import Comparison, PairwiseJudge, RewardJudge
from aries.rewards.verifiers import Verifier

DATA = Path(__file__).parents[1] / "data"


class ScriptedBackend:
    """Answers by prompt text and round: round k follows the script's answer k-1, so the answers
    scripted for one prompt must differ."""

    name = "scripted"
    context_length = None

    def __init__(self, script: dict[str, list[str]]):
        self.script = script

    def generate(self, conversations, sampling):
        out = []
        for conversation in conversations:
            answers = self.script[conversation[0]["content"]]
            previous = conversation[1]["content"] if len(conversation) > 1 else None
            text = answers[answers.index(previous) + 1 if previous else 0]
            out.append(Generation(text, "stop", 5, len(text.split())))
        return out

    def count_prompt_tokens(self, conversation):
        return 5

    def close(self):
        pass


def test_public_formats_extract_gold_answers():
    gsm8k = load_benchmark(f"gsm8k:{DATA / 'gsm8k_test.jsonl'}")
    assert [r["answer"] for r in gsm8k] == ["72", "10", "2700"]
    assert gsm8k[0]["prompt"].endswith("'Answer: <number>'.")
    math = load_benchmark(f"math:{DATA / 'math_test.jsonl'}", size=2)
    assert [r["answer"] for r in math] == ["\\frac{3}{4}", "4"]
    assert "\\boxed{" in math[0]["metadata"]["solution"]
    assert last_boxed("x = \\boxed{\\frac{a}{b}} and \\boxed{2^{10}}") == "2^{10}"
    with pytest.raises(AriesError):
        last_boxed("no box")


def test_reasoning_gym_shorthand():
    records = load_benchmark("basic_arithmetic", size=3, seed=4)
    assert len(records) == 3
    assert records[0]["source"] == "reasoning-gym:basic_arithmetic"
    assert records == load_benchmark("reasoning-gym:basic_arithmetic?size=3&seed=4")


def test_held_out_check():
    train = [{"id": "a", "prompt": "What is  2+2?"}]
    check_held_out([{"id": "a", "prompt": "What is 3+3?"}], train)
    with pytest.raises(AriesError, match="disjoint"):
        check_held_out([{"id": "b", "prompt": "What is 2+2?\n"}], train)


def test_accuracy_per_round_and_transitions(tmp_path):
    prompts = load_benchmark(f"gsm8k:{DATA / 'gsm8k_test.jsonl'}")
    script = {  # round 0, 1, 2
        prompts[0]["prompt"]: ["Answer: 72", "So Answer: 72", "Answer: 71"],  # right, right, wrong
        prompts[1]["prompt"]: ["Answer: 9", "Answer: 10", "Answer: 10"],  # wrong, right, right
        prompts[2]["prompt"]: ["Answer: 1", "so Answer: 2,700", "Answer: 2700"],  # w, r, r
    }
    out = tmp_path / "eval.json"
    result = evaluate(
        ScriptedBackend(script),
        prompts,
        rounds=2,
        sampling=Sampling(max_new_tokens=8),
        out_path=out,
        verifier=Verifier(),
        benchmark="gsm8k",
        n_resamples=200,
        progress=False,
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["correct"] for r in result["per_round"]] == [1, 3, 2]
    assert [r["metric"] for r in result["per_round"]] == pytest.approx([1 / 3, 1.0, 2 / 3])
    for row in result["per_round"]:
        assert row["ci95"][0] <= row["metric"] <= row["ci95"][1]
    assert "transitions" not in result["per_round"][0]
    assert result["per_round"][1]["transitions"]["wrong_to_right"] == 2
    assert result["per_round"][2]["transitions"]["right_to_wrong"] == 1
    # round 1 rewrote the right answer (72 -> "So Answer: 72") and both wrong ones; round 2
    # rewrote two right answers and left "Answer: 10" as it was
    assert result["per_round"][1]["rewrites"] == {"of_right": 1, "of_wrong": 2}
    assert result["per_round"][2]["rewrites"] == {"of_right": 2, "of_wrong": 0}
    assert result["first_to_last"] == {
        "wrong_to_right": 2,
        "right_to_wrong": 1,
        "right_to_right": 0,
        "wrong_to_wrong": 0,
    }
    assert result["per_round"][1]["mean_tokens"] == pytest.approx((3 + 2 + 3) / 3)
    # the vote over each chain's final answers: 72 twice, 10 twice, 2700 twice -> all right,
    # while the last round broke the first answer; it is a row of its own
    assert [p["vote_round"] for p in result["per_prompt"]] == [1, 2, 2]
    assert result["vote"]["round"] == "vote" and result["vote"]["correct"] == 3
    assert result["per_round"][-1]["correct"] == 2
    chains = read_jsonl(tmp_path / result["chains_path"])
    assert [len(c["chain"]) for c in chains] == [3, 3, 3]
    table = format_table(result)
    header, *rows = table.splitlines()[1:]
    assert header.split()[-2:] == ["rewrote", "R/W"]
    assert [row.split()[-1] for row in rows] == ["-", "1/2", "2/0", "-"]  # the vote's row last
    with pytest.raises(AriesError, match="another length"):
        evaluate(
            ScriptedBackend(script),
            prompts,
            rounds=1,
            sampling=Sampling(max_new_tokens=8),
            out_path=out,
            verifier=Verifier(),
            progress=False,
        )
    assert "33.3%" in table and "100.0%" in table and "3/3" in table
    assert table.splitlines()[-1].split()[:2] == ["vote", "100.0%"]


class LengthReward:
    """A reward that prefers longer text: the LC win rate must see through it."""

    name = "length"

    def score(self, items):
        return [float(len(item.response)) for item in items]


def test_win_rate_against_references_with_reward_judge(tmp_path):
    prompts = [
        {"id": "q1", "prompt": "p1", "answer": "ref answer"},
        {"id": "q2", "prompt": "p2", "answer": "ref answer"},
        {"id": "q3", "prompt": "p3", "answer": "ref answer"},
        {"id": "q4", "prompt": "p4"},  # no reference: skipped and counted
    ]
    script = {
        "p1": ["short", "a much longer answer here"],
        "p2": ["same lengthh", "a much longer answer here too"],
        "p3": ["tiny", "ref answer"],
    }
    result = evaluate(
        ScriptedBackend({**script, "p4": ["x", "y"]}),
        prompts,
        rounds=1,
        sampling=Sampling(max_new_tokens=8),
        out_path=tmp_path / "eval.json",
        judge=RewardJudge(LengthReward()),
        n_resamples=100,
        progress=False,
    )
    assert result["skipped"]["no_reference"] == 1
    first, second = result["per_round"]
    # round 0: "short"/"tiny" lose to the 10-char reference, "same lengthh" (12) wins.
    assert (first["wins"], first["ties"], first["losses"]) == (1, 0, 2)
    # round 1: two longer answers win, the copy of the reference ties.
    assert (second["wins"], second["ties"], second["losses"]) == (2, 1, 0)
    assert second["metric"] == pytest.approx(2.5 / 3)
    assert second["lc_win_rate"] < second["metric"]
    assert second["transitions"]["wrong_to_right"] == 1
    assert "W/T/L" in format_table(result)


def test_reward_judge_ties_and_missing_scores():
    class Fixed:
        name = "fixed"

        def score(self, items):
            return [{"r": 1.0, "a": 1.05, "b": 2.0, "c": None}[i.response] for i in items]

    judge = RewardJudge(Fixed(), tie_margin=0.1)
    items = [Comparison("p", response, "r", {}) for response in ("a", "b", "c")]
    assert judge.compare(items) == [0.5, 1.0, None]


def test_eval_command_on_tiny_model(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "e" / "eval.json"
    code = main(
        [
            "eval",
            "--model",
            str(tiny_model_path),
            "--benchmark",
            "basic_arithmetic",
            "--size",
            "3",
            "--rounds",
            "1",
            "--max-new-tokens",
            "4",
            "--bootstrap",
            "50",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["schema"] == "aries.eval/1"
    assert result["metric"] == "accuracy" and result["scorer"] == "verifier"
    assert [r["round"] for r in result["per_round"]] == [0, 1]
    assert result["n_prompts"] + sum(result["skipped"].values()) == 3
    assert (out.parent / "eval.chains.jsonl").is_file()
    assert "wrong→right" in capsys.readouterr().out


def test_eval_command_needs_a_model_in_the_run(tmp_path, capsys):
    code = main(["eval", "--run", str(tmp_path), "--benchmark", "gsm_symbolic"])
    assert code == 2
    assert "no iter_*/model" in capsys.readouterr().err


def test_pairwise_judge_sees_each_pair_alone():
    class Shares:
        """Stands in for the pairwise judge: the response's share of its two verdicts."""

        name = "pairwise"

        def score(self, items):
            groups = [item.record["id"] for item in items]
            assert groups[0::2] == groups[1::2] and len(set(groups)) == len(items) // 2
            assert all(item.reference is None for item in items)
            share = {"good": 1.0, "split": 0.5, "mostly": 0.75, "bad": 0.25, "?": None}
            out = []
            for item in items[0::2]:
                value = share[item.response]
                out += [value, None if value is None else 1 - value]
            return out

    items = [Comparison("p", r, "ref", {}) for r in ("good", "split", "mostly", "bad", "?")]
    assert PairwiseJudge(Shares()).compare(items) == [1.0, 0.5, 1.0, 0.0, None]
    # probabilistic shares (logprob verdicts) within the margin of one half are ties
    assert PairwiseJudge(Shares(), tie_margin=0.25).compare(items) == [1.0, 0.5, 0.5, 0.5, None]


def test_eval_command_self_judged_win_rate_on_tiny_model(tiny_model_path, tmp_path, capsys):
    # The random tiny model never writes a verdict: every comparison is unscored, which must be
    # an error that says so, not a win rate computed from nothing.
    args = ["eval", "--model", str(tiny_model_path), "--judge", str(tiny_model_path)]
    args += ["--benchmark", "mt-bench?category=math", "--size", "2", "--rounds", "1"]
    args += [
        "--max-new-tokens",
        "3",
        "--judge-max-new-tokens",
        "3",
        "--out",
        str(tmp_path / "e.json"),
    ]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "scored no prompt" in error and "e.judgements.jsonl" in error
    chains = read_jsonl(tmp_path / "e.chains.jsonl")
    assert [len(c["chain"]) for c in chains] == [2, 2]
    assert all("answer" in c for c in chains)  # GPT-4 references exist for math questions
    # the judge's raw outputs are kept to show why: 2 prompts x 2 rounds x both orders
    judgements = read_jsonl(tmp_path / "e.judgements.jsonl")
    assert len(judgements) == 8 and all(j["share_a"] is None for j in judgements)

    # The same evaluation with logprob verdicts: every comparison gets one, and a table.
    assert main([*args, "--judge-verdict", "logprob"]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["scorer"] == f"judge:pairwise:logprob:{tiny_model_path}"
    assert result["n_prompts"] == 2 and result["skipped"]["unscored"] == 0
    assert [r["wins"] + r["ties"] + r["losses"] for r in result["per_round"]] == [2, 2]
    assert result["judgements_path"] == "e.judgements.jsonl"
    assert result["judge"]["calls"] == 8 and result["judge"]["unparsed"] == 0
    assert result["judge"]["order_checks"] == 4  # (response, reference) pairs, both orders
    judgements = read_jsonl(tmp_path / "e.judgements.jsonl")
    assert len(judgements) == 8 and all(0 < j["share_a"] < 1 for j in judgements)
    assert "LC win rate" in capsys.readouterr().out
