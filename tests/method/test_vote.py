"""The inference-time vote over a chain's final answers, against hand-worked chains."""

from __future__ import annotations

from aries.method.vote import answer_key, pick_round, vote_round


def test_answer_key_reads_the_marker_then_the_last_number():
    assert answer_key("so 12 + 3 = 15.\nAnswer: **15**") == "15"
    assert answer_key("The answer is 1,000 apples") == "1000"
    assert answer_key("I do not know") is None


def test_vote_takes_the_majority_and_the_latest_response_holding_it():
    chain = ["Answer: 15", "Answer: 14", "It is 15."]
    assert vote_round(chain) == 2  # 15 twice; the later response holding it
    assert vote_round(["Answer: 15", "Answer: 14", "Answer: 14"]) == 2
    assert vote_round(["Answer: 15", "Answer: 15", "Answer: 14"]) == 1


def test_vote_ties_go_to_the_answer_reached_last_and_no_answer_means_last():
    assert vote_round(["Answer: 15", "Answer: 14"]) == 1
    assert vote_round(["Answer: 7", "no idea", "Answer: 9", "Answer: 7"]) == 3
    assert vote_round(["hmm", "well"]) == 1
    assert vote_round(["Answer: 3", "no idea"]) == 0  # the only answer given


def test_pick_round_last_is_the_papers_rule():
    chain = ["Answer: 15", "Answer: 15", "Answer: 14"]
    assert pick_round(chain) == 2 and pick_round(chain, "vote") == 1
