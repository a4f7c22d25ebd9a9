"""Pair construction for both views and every method, and the view-weight mixture."""

import datasets
import pytest

from aries import AriesError
from aries.core.views import DEFAULT_REFINE_INSTRUCTION as Z
from aries.core.views import to_plain_text
from aries.method.pairs import build_pairs, save_dataset, sft_examples

SELECTIONS = [
    {
        "id": f"q{i}",
        "prompt": f"What is {i} + {i}?",
        "chosen": f"Answer: {2 * i}",
        "rejected": f"Answer: {2 * i + 1}",
    }
    for i in range(10)
]


def test_both_views_have_the_method_md_shape():
    examples = build_pairs(SELECTIONS[:1], instruction=Z)
    direct, refine = examples
    assert direct["view"] == "direct" and refine["view"] == "refine"
    assert direct["prompt"] == [{"role": "user", "content": "What is 0 + 0?"}]
    # refine view: [user x][assistant y_l][user z] -> y_w over the unchanged y_l
    assert [m["role"] for m in refine["prompt"]] == ["user", "assistant", "user"]
    assert refine["prompt"][1]["content"] == "Answer: 1"
    assert refine["prompt"][2]["content"] == Z
    for example in examples:
        assert example["chosen"] == [{"role": "assistant", "content": "Answer: 0"}]
        assert example["rejected"] == [{"role": "assistant", "content": "Answer: 1"}]
    assert {e["id"] for e in examples} == {"q0:direct", "q0:refine"}


def test_view_weights_are_mixing_proportions():
    examples = build_pairs(SELECTIONS, instruction=Z, w_direct=1.0, w_refine=0.5, seed=3)
    assert sum(e["view"] == "direct" for e in examples) == 10
    assert sum(e["view"] == "refine" for e in examples) == 5
    again = build_pairs(SELECTIONS, instruction=Z, w_direct=1.0, w_refine=0.5, seed=3)
    assert [e["id"] for e in examples] == [e["id"] for e in again]


def test_iterative_dpo_weights_give_the_direct_view_only():
    examples = build_pairs(SELECTIONS, instruction=Z, w_direct=1.0, w_refine=0.0)
    assert {e["view"] for e in examples} == {"direct"}


def test_bad_weights_are_rejected():
    with pytest.raises(AriesError, match="view weights"):
        build_pairs(SELECTIONS, instruction=Z, w_direct=0.0, w_refine=0.0)


def test_sft_examples_follow_eq_4():
    examples = sft_examples(SELECTIONS[:1], instruction=Z)
    assert [e["view"] for e in examples] == ["direct", "refine"]
    assert all(e["completion"][0]["content"] == "Answer: 0" for e in examples)
    assert examples[1]["prompt"][1]["content"] == "Answer: 1"  # (x, y_l, z) -> y_w


def test_plain_text_form_for_models_without_chat_template():
    plain = to_plain_text(build_pairs(SELECTIONS[:1], instruction=Z)[1])
    assert plain["prompt"].startswith("Question: What is 0 + 0?")
    assert "Previous answer: Answer: 1" in plain["prompt"] and plain["prompt"].endswith("Answer:")
    assert plain["chosen"] == " Answer: 0"


def test_saved_dataset_is_trl_preference_format(tmp_path):
    save_dataset(build_pairs(SELECTIONS, instruction=Z), tmp_path / "pairs")
    loaded = datasets.load_from_disk(str(tmp_path / "pairs"))
    assert {"id", "view", "prompt", "chosen", "rejected"} <= set(loaded.column_names)
    assert len(loaded) == 20
    assert not (tmp_path / "pairs.tmp").exists()


def test_optional_keep_view_refines_the_chosen_answer():
    examples = build_pairs(SELECTIONS[:1], instruction=Z, w_keep=1.0)
    keep = [e for e in examples if e["view"] == "keep"]
    assert len(keep) == 1
    assert keep[0]["prompt"][1]["content"] == "Answer: 0"  # the previous answer is y_w
    assert keep[0]["chosen"][0]["content"] == "Answer: 0"
    assert keep[0]["rejected"][0]["content"] == "Answer: 1"
    assert all(e["view"] != "keep" for e in build_pairs(SELECTIONS[:1], instruction=Z))


def test_on_policy_step_records_give_their_own_view_with_the_shown_answer():
    step = {
        "id": "q0/round:0",
        "prompt": "What is 0 + 0?",
        "view": "refine",
        "previous": "Answer: 7",  # the model's own round-0 answer
        "chosen": "Answer: 0",
        "rejected": "Answer: 5",  # its actual (still wrong) refinement
    }
    keep = {**step, "id": "q1/round:0", "view": "keep", "previous": "Answer: 0"}
    examples = build_pairs([SELECTIONS[0], step, keep], instruction=Z, w_keep=1.0)
    by_id = {e["id"]: e for e in examples}
    assert set(by_id) == {
        "q0:direct",
        "q0:refine",
        "q0:keep",
        "q0/round:0:refine",
        "q1/round:0:keep",
    }
    refine = by_id["q0/round:0:refine"]
    assert refine["prompt"][1]["content"] == "Answer: 7"
    assert refine["rejected"][0]["content"] == "Answer: 5"
    assert by_id["q1/round:0:keep"]["prompt"][1]["content"] == "Answer: 0"
    # w_keep 0 (pure ARIES) drops the keep records; SFT (Eq. 4) uses the step's own view
    assert all(e["view"] != "keep" for e in build_pairs([step, keep], instruction=Z))
    assert [e["view"] for e in sft_examples([step], instruction=Z)] == ["refine"]
