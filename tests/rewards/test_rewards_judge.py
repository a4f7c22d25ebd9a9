"""LLM judge: score parsing, pairwise position-bias cancellation, and a real tiny model."""

from __future__ import annotations

import pytest

from aries.backends import Generation
from aries.rewards import ScoreItem
from aries.rewards.judge import Judge, JudgeConfig, parse_pairwise, parse_pointwise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The response is relevant... Score: 4", 4.0),
        ("**Score**: 3", 3.0),
        ("Score: 4/5", 4.0),
        ("I would give it a score of 2 out of 5.", 2.0),
        ("Overall 8/10.", 4.0),
        ("Points: 1+1. Score: 2\nScore: 5", 5.0),
        ("[[3]]", 3.0),
        ("Score: 7", None),
        ("great answer!!", None),
        ("", None),
    ],
)
def test_parse_pointwise(text, expected):
    assert parse_pointwise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A is clearer. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both fine. [[C]]", "tie"),
        ("**Winner:** B", "B"),
        ("Assistant A is better overall.", "A"),
        ("Final verdict: tie", "tie"),
        ("I cannot decide", None),
    ],
)
def test_parse_pairwise(text, expected):
    assert parse_pairwise(text) == expected


class ScriptedBackend:
    """Answers every judge prompt with a fixed text: a judge with pure position bias."""

    name = "scripted"

    def __init__(self, answer: str):
        self.answer = answer
        self.prompts: list[str] = []

    def generate(self, conversations, sampling):
        self.prompts += [c[-1]["content"] for c in conversations]
        return [Generation(self.answer, "stop", 1, 1) for _ in conversations]


def test_pairwise_both_orders_cancel_position_bias():
    backend = ScriptedBackend("[[A]]")  # always prefers whatever is shown first
    judge = Judge(JudgeConfig(mode="pairwise"), backend=backend)
    record = {"id": "p1"}
    items = [ScoreItem("q", r, None, record) for r in ("one", "two", "three")]
    items.append(ScoreItem("lonely", "only answer", None, {"id": "p2"}))
    assert judge.score(items) == [0.5, 0.5, 0.5, None]
    assert len(backend.prompts) == 6  # 3 responses: every ordered pair once
    assert judge.unparsed == 0
    assert (judge.order_checks, judge.order_agreements) == (3, 0)  # never the same winner


class LongerWinsBackend(ScriptedBackend):
    """A position-consistent judge: the longer response wins whichever side it is on."""

    def generate(self, conversations, sampling):
        verdicts = []
        for conversation in conversations:
            text = conversation[-1]["content"]
            a = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
            b = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
            verdicts.append("[[A]]" if len(a) > len(b) else "[[B]]" if len(b) > len(a) else "x")
        return [Generation(v, "stop", 1, 1) for v in verdicts]


def test_pairwise_order_agreement_counts_consistent_verdicts():
    judge = Judge(JudgeConfig(mode="pairwise"), backend=LongerWinsBackend(""))
    record = {"id": "p"}
    items = [ScoreItem("q", r, None, record) for r in ("a", "bbb", "cc", "dd")]
    assert judge.score(items) == [0.0, 1.0, 0.5, 0.5]
    # 6 unordered pairs; cc/dd never parse (equal length), the other 5 agree in both orders
    assert (judge.order_checks, judge.order_agreements, judge.unparsed) == (5, 5, 2)


def test_pointwise_counts_unparseable_as_none_and_shows_reference():
    backend = ScriptedBackend("Looks fine to me.")
    judge = Judge(JudgeConfig(), backend=backend)
    assert judge.score([ScoreItem("2+2?", "4", "4"), ScoreItem("hi", "hello")]) == [None, None]
    assert judge.unparsed == 2 and judge.judged == 2
    assert "Reference answer: 4" in backend.prompts[0]
    assert "Reference answer" not in backend.prompts[1]
    assert "additive 5-point scoring system" in backend.prompts[0]


def test_real_tiny_model_judge_returns_none_for_garbage(tiny_model_path):
    judge = Judge(JudgeConfig(model=str(tiny_model_path), max_new_tokens=8, batch_size=2))
    scores = judge.score([ScoreItem("What is 2+2?", "4"), ScoreItem("Name a colour", "blue")])
    assert len(scores) == 2
    assert judge.judged == 2
    assert judge.unparsed == scores.count(None)
    assert all(s is None or 0 <= s <= 5 for s in scores)


def test_logprob_verdicts_always_score_and_keep_transcripts(tiny_model_path):
    """A random tiny model never writes a parseable verdict, but its token probabilities give
    one for every call: expected points in 0..5, and pairwise win shares that sum to one."""
    config = JudgeConfig(model=str(tiny_model_path), verdict="logprob", batch_size=2)
    judge = Judge(config)
    assert judge.name == f"judge:pointwise:logprob:{tiny_model_path}"
    points = judge.score([ScoreItem("What is 2+2?", "4", "4"), ScoreItem("Name a colour", "red")])
    assert all(0 <= p <= 5 for p in points) and judge.unparsed == 0
    assert sum(judge.transcripts[0]["output"].values()) == pytest.approx(1.0)
    assert judge.transcripts[0]["score"] == points[0]

    pairwise = Judge(JudgeConfig(**{**config.__dict__, "mode": "pairwise"}), backend=judge.backend)
    record = {"id": "p1"}
    shares = pairwise.score(
        [ScoreItem("q", "one", None, record), ScoreItem("q", "two", None, record)]
    )
    assert sum(shares) == pytest.approx(1.0) and all(0 < s < 1 for s in shares)
    assert [t["response_a"] for t in pairwise.transcripts] == ["one", "two"]  # both orders
    assert set(pairwise.transcripts[0]["output"]) == {"A", "B", "C"}


def test_logprob_verdict_needs_a_backend_with_token_probabilities():
    from aries import AriesError

    with pytest.raises(AriesError, match="'scripted' backend does not expose"):
        Judge(JudgeConfig(verdict="logprob"), backend=ScriptedBackend("[[A]]"))
    with pytest.raises(AriesError, match="verdict must be 'text' or 'logprob'"):
        JudgeConfig(verdict="probs")
