"""Shared fixtures: a tiny randomly initialised Llama with the embedded model's real tokenizer.

The tiny model exercises every code path in seconds; the tokenizer is real so chat templates,
special tokens and padding behave exactly as with the embedded model.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
VENDORED_TOKENIZER = Path(__file__).parent / "data" / "smollm2-tokenizer"


def pytest_sessionstart(session):
    """Import the heavy libraries once and move their objects out of the garbage collector's
    view: aries collects garbage after every stage (aries.core.memory), and in one long test process
    each collection would otherwise walk every object torch, transformers and TRL made at import
    (about 0.25 s a call, minutes over the suite)."""
    import gc

    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401
    from trl import DPOTrainer, SFTTrainer  # noqa: F401

    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _freeze_what_survives_a_test():
    """After each test, collect its garbage and freeze what is left (session fixtures, caches):
    otherwise every `gc.collect()` aries makes after a stage walks all that earlier tests left
    behind, and a test late in the suite runs several times slower than alone."""
    import gc

    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    """The converted embedded model folder (converted once per cache, ~30 s): slow tests only."""
    from aries.core.models import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer, vendored in tests/data (as the GGUF conversion writes
    it), so fast tests need neither the 135M model nor its conversion."""
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    for file in VENDORED_TOKENIZER.iterdir():
        if file.suffix == ".gz":
            (folder / file.stem).write_bytes(gzip.decompress(file.read_bytes()))
        else:
            shutil.copy(file, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tokenizer_path) -> Path:
    """A 2-layer, 64-wide Llama saved as a normal HF folder, with SmolLM2's tokenizer."""
    from aries.core.testing import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer_path)


@pytest.fixture(scope="session")
def chatty_model_path(tmp_path_factory, tiny_model_path) -> Path:
    """The tiny model untied and with a larger init: it writes varied (random) text."""
    from aries.core.testing import save_tiny_llama

    return save_tiny_llama(
        tmp_path_factory.mktemp("chatty"), tiny_model_path, tied=False, initializer_range=0.2
    )
