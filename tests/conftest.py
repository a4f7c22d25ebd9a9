"""Shared fixtures: a tiny randomly initialised Llama with the embedded model's real tokenizer.

The tiny model exercises every code path in seconds; the tokenizer is real so chat templates,
special tokens and padding behave exactly as with the embedded model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    """The converted embedded model folder (converted once per cache, ~30 s)."""
    from aries.models import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, embedded_path) -> Path:
    """A 2-layer, 64-wide Llama saved as a normal HF folder, with SmolLM2's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
