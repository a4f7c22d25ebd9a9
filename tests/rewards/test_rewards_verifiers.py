"""Verifiers on tricky answers, with the real reasoning-gym scorers and real math-verify."""

from __future__ import annotations

import threading

import pytest
import reasoning_gym

from aries import AriesError
from aries.rewards import ScoreItem, is_missing, make_reward_source
from aries.rewards.verifiers import final_answer


def _gym_item(task: str, response: str, seed: int = 3) -> ScoreItem:
    entry = reasoning_gym.create_dataset(task, size=1, seed=seed)[0]
    record = {
        "id": "p0",
        "prompt": entry["question"] + "\nEnd with 'Answer: <number>'.",
        "question": entry["question"],
        "answer": entry["answer"],
        "metadata": entry["metadata"],
        "source": f"reasoning-gym:{task}",
    }
    return ScoreItem(record["prompt"], response.format(a=entry["answer"]), entry["answer"], record)


def test_reasoning_gym_scores_the_text_after_the_last_answer_marker():
    verifier = make_reward_source({"type": "verifier", "last_number_fallback": False})
    scores = verifier.score(
        [
            _gym_item("basic_arithmetic", "Answer: 0\nwait, recompute.\n**Answer:** {a}.\nDone"),
            _gym_item("basic_arithmetic", "Answer: {a}\nNo, Answer: 12345"),
            _gym_item("basic_arithmetic", "I think it is {a}"),  # no marker: no answer
            _gym_item("gsm_symbolic", "Reasoning...\nAnswer: {a}"),
        ]
    )
    assert scores == [1.0, 0.0, 0.0, 1.0]


def test_unknown_reasoning_gym_task_is_a_user_error():
    item = _gym_item("basic_arithmetic", "Answer: {a}")
    item.record["source"] = "reasoning-gym:no_such_task"
    with pytest.raises(AriesError, match="no_such_task"):
        make_reward_source("verifier").score([item])


@pytest.mark.parametrize(
    ("response", "reference", "expected"),
    [
        ("The total is 1,000 apples.\nAnswer: 1,000", "1000", 1.0),
        ("Answer: 0.5", r"\frac{1}{2}", 1.0),
        (r"So the result is $\frac{1}{2}$.", "0.5", 1.0),
        ("Answer: 42. I hope this helps! See you in 3 days.", "42", 1.0),
        (r"First 7, then \boxed{12}.", "12", 1.0),
        ("Natalia sold 48 clips.\nAnswer: 72", "She sold 48/2 = 24.\n#### 72", 1.0),
        ("Answer: 41", "42", 0.0),
        ("no numbers here", "42", 0.0),
        ("Answer: 42", "not math at all ???", None),
    ],
)
def test_math_verify_free_form(response, reference, expected):
    assert make_reward_source("verifier").score([ScoreItem("q", response, reference)]) == [expected]


def test_math_verify_works_off_the_main_thread():
    results = []
    verifier = make_reward_source("verifier")
    thread = threading.Thread(
        target=lambda: results.extend(verifier.score([ScoreItem("q", "Answer: 1,000", "1000")]))
    )
    thread.start()
    thread.join()
    assert results == [1.0]


def test_no_reference_cannot_be_verified():
    for kind in ("verifier", "exact-match"):
        assert make_reward_source(kind).score([ScoreItem("q", "Answer: 3")]) == [None]


def test_exact_match_normalises_case_space_and_decoration():
    source = make_reward_source({"type": "exact-match"})
    items = [
        ScoreItem("q", "Thinking...\n**Answer:**  Paris.", "paris"),
        ScoreItem("q", "  New   York ", "new york"),
        ScoreItem("q", "Answer: Lyon", "Paris"),
    ]
    assert source.score(items) == [1.0, 1.0, 0.0]
    strict = make_reward_source({"type": "exact-match", "case_sensitive": True})
    assert strict.score(items[:1]) == [0.0]


def test_regex_extract_and_match_modes():
    extract = make_reward_source({"type": "regex", "pattern": r"<answer>(.*?)</answer>"})
    items = [
        ScoreItem("q", "<answer>7</answer> no, <answer>8</answer>", "8"),
        ScoreItem("q", "<answer>7</answer>", "8"),
        ScoreItem("q", "8", "8"),
        ScoreItem("q", "<answer>8</answer>"),
    ]
    assert extract.score(items) == [1.0, 0.0, 0.0, None]
    fmt = make_reward_source({"type": "regex", "pattern": r"<answer>.+</answer>", "mode": "match"})
    assert fmt.score(items) == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(AriesError, match="bad pattern"):
        make_reward_source({"type": "regex", "pattern": "("})
    with pytest.raises(AriesError, match="unknown reward type"):
        make_reward_source("length")


def test_final_answer_and_missing_scores():
    assert final_answer("x\nANSWER: -1,234.5 dollars") == "-1,234.5 dollars"
    assert final_answer("Answer: **-1,234**.") == "-1234"
    assert final_answer("Answer:\n\n  7") == "7"
    assert final_answer("Answer:   ") is None
    assert [is_missing(s) for s in (None, float("nan"), 0.0, 1)] == [True, True, False, False]


def test_reasoning_gym_last_number_fallback_only_without_marker():
    from aries.rewards import ScoreItem, make_reward_source

    record = {
        "source": "reasoning-gym:basic_arithmetic",
        "question": "Calculate 17 * 23.",
        "answer": "391",
        "metadata": {},
    }
    lenient = make_reward_source("verifier")
    strict = make_reward_source({"type": "verifier", "last_number_fallback": False})

    def score(source, text):
        return source.score([ScoreItem("q", text, "391", record)])[0]

    assert score(lenient, "17 * 23 = 391.") == 1.0
    assert score(strict, "17 * 23 = 391.") == 0.0
    assert score(lenient, "17 * 23 = 381.") == 0.0
    assert score(lenient, "Answer: 381 (not 391)") < 1.0  # the marker wins over the fallback
