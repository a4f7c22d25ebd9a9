"""The SFT stage (docs/specification.md Eq. 4) through TRL's SFTTrainer, from the command line."""

import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from aries.cli import main
from aries.core.testing import completion_logps
from aries.core.views import DEFAULT_REFINE_INSTRUCTION
from aries.method.pairs import sft_examples


def sft_args(model, data, out, *options: str) -> list[str]:
    """`aries sft` command-line arguments."""
    return ["sft", "--model", str(model), "--data", str(data), "--out", str(out), *options]


def test_sft_raises_chosen_likelihood_in_both_views(tmp_path, tiny_model_path):
    rows = [
        {
            "id": str(i),
            "prompt": f"What is {i} + 2?",
            "chosen": f"Answer: {i + 2}",
            "rejected": f"Answer: {i}",
        }
        for i in range(4)
    ]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = ["--learning-rate", "1e-3", "--epochs", "3", "--batch-size", "4"]
    assert main(sft_args(tiny_model_path, data, tmp_path / "sft", *options)) == 0
    examples = [
        {**e, "chosen": e["completion"], "rejected": e["completion"]}
        for e in sft_examples(rows, instruction=DEFAULT_REFINE_INSTRUCTION)
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    before = completion_logps(
        AutoModelForCausalLM.from_pretrained(tiny_model_path), tokenizer, examples
    )["chosen"]
    after = completion_logps(
        AutoModelForCausalLM.from_pretrained(tmp_path / "sft"), tokenizer, examples
    )["chosen"]
    for view in ("direct", "refine"):
        index = [i for i, e in enumerate(examples) if e["view"] == view]
        assert sum(after[i] - before[i] for i in index) / len(index) > 1.0, view


def test_sft_data_without_rejected_is_a_clear_error(tmp_path, tiny_model_path, capsys):
    data = tmp_path / "prefs.jsonl"
    data.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello"}) + "\n")
    assert main(sft_args(tiny_model_path, data, tmp_path / "sft")) == 2
    assert "rejected" in capsys.readouterr().err
    assert not (tmp_path / "sft").exists()
