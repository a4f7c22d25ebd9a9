"""Helpers for tests and benchmarks of the machinery (not the model): a tiny random Llama, a run
config sized for it, a LoRA iteration's folder, and the summed log-probabilities of preference
examples that the training tests read.

The vocabulary, not the depth, dominates a small model's cost, so a 2-layer, 64-wide Llama with a
real tokenizer exercises every code path (chat templates, padding, TRL training) in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_ARITHMETIC = {
    "name": "reasoning-gym:basic_arithmetic",
    "max_terms": 2,
    "max_digits": 1,
    "allow_parentheses": False,
    "allow_negation": False,
}
"""One-digit, two-term arithmetic: the prompt source of the tiny runs."""


def tiny_run_config(
    model: str | Path,
    output_dir: str | Path,
    *,
    prompts: int = 6,
    eval_size: int = 2,
    chunk_size: int = 2,
) -> dict[str, Any]:
    """One iteration of a run config small enough for seconds per stage on the tiny model:
    `prompts` prompts, 1 refinement round + 2 samples, a checkpoint per training step. Regex
    'match' rewards score the random model's outputs differently, so selection keeps pairs."""
    return {
        "name": "tiny",
        "output_dir": str(output_dir),
        "model": str(model),
        "iterations": 1,
        "seed": 0,
        "prompts": {"sources": [{**TINY_ARITHMETIC, "seed": 1}], "per_iteration": prompts},
        "generation": {
            "batch_size": 8,
            "rounds": 1,
            "samples": 2,
            "max_new_tokens": 8,
            "temperature": 1.0,
            "chunk_size": chunk_size,
        },
        "reward": {"type": "regex", "pattern": "^[A-Z]", "mode": "match", "case_sensitive": True},
        "selection": {"strategy": "reward", "candidates": "all"},
        "train": {
            "batch_size": 2,
            "epochs": 1,
            "learning_rate": 1e-3,
            "max_length": 128,
            "save_steps": 1,
        },
        "eval": {
            "sources": [{**TINY_ARITHMETIC, "seed": 99}],
            "size": eval_size,
            "rounds": 1,
            "max_new_tokens": 8,
        },
    }


def save_tiny_llama(
    folder: str | Path,
    tokenizer_dir: str | Path,
    *,
    max_positions: int = 1024,
    tied: bool = True,
    initializer_range: float = 0.02,
    seed: int = 0,
) -> Path:
    """Save a 2-layer, 64-wide random Llama with the tokenizer of `tokenizer_dir` to `folder`.

    With tied embeddings and the default init it writes mostly whitespace; untied with a larger
    `initializer_range` it writes varied text (for tests of sampling and stopping).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tied,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_lora_iteration(start: str | Path, folder: str | Path, *, seed: int = 0) -> Path:
    """What a `train.lora` iteration saves, without the training: merged weights plus
    `adapter/` on `start`. The adapter is random (PEFT's init_lora_weights=False) with B scaled
    to a tenth, so that the answers change on most prompts and stay text."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(start), dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.mul_(0.1)
    model.save_pretrained(str(Path(folder) / "adapter"))
    model.merge_and_unload().save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(start)).save_pretrained(str(folder))
    return Path(folder)


def completion_logps(model, tokenizer, examples: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Summed log-probabilities of the chosen and rejected completions of preference examples.

    With a policy and a reference, `β (Δchosen - Δrejected)` is DPO's implicit reward margin
    (Rafailov et al. 2023, arXiv 2305.18290): the learning signal `aries report` and the tests
    read. Conversational examples go through the tokenizer's chat template, as in training.
    """
    import torch

    result: dict[str, list[float]] = {"chosen": [], "rejected": []}
    for example in examples:
        prompt_ids = tokenizer.apply_chat_template(
            example["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        for key in result:
            full_ids = tokenizer.apply_chat_template(
                example["prompt"] + example[key], tokenize=True, return_dict=False
            )
            ids = torch.tensor([full_ids], device=model.device)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, :-1].float()
            token_logps = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
            result[key].append(token_logps[len(prompt_ids) - 1 :].sum().item())
    return result
