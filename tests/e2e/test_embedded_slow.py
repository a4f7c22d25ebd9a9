"""Slow tests on the real embedded model (SmolLM2-135M-Instruct): `pytest -m slow`."""

from __future__ import annotations

import pytest

from aries.backends import Sampling
from aries.backends.hf import HFBackend
from aries.cli import main

pytestmark = pytest.mark.slow


def test_refine_two_rounds_prints_three_answers_and_the_pick(embedded_path, capsys):
    assert main(["refine", "--rounds", "2", "--max-new-tokens", "48", "What is 17 * 23?"]) == 0
    out = capsys.readouterr().out
    *blocks, pick = out.split("── ")[1:]
    assert len(blocks) == 3
    titles = [block.splitlines()[0] for block in blocks]
    assert [t.split(" (")[0] for t in titles] == ["answer", "refinement 1", "refinement 2"]
    for block in blocks:
        assert "\n".join(block.splitlines()[1:]).strip()  # a non-empty answer
    assert pick.strip() == "final answer (last): round 2"


def test_embedded_model_stops_at_eos_and_batches_like_single(embedded_path):
    backend = HFBackend("embedded", batch_size=4, device="cpu")
    conversations = [
        [{"role": "user", "content": "Reply with the single word: yes"}],
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    ]
    sampling = Sampling(max_new_tokens=48)  # the first reply ends with EOS as its 32nd token
    batched = backend.generate(conversations, sampling)
    single = [backend.generate([c], sampling)[0] for c in conversations]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.finish_reason == "stop" and g.completion_tokens < 48 for g in batched)
    assert "paris" in batched[1].text.lower()


def test_convert_real_gguf_into_aries_cache(tmp_path, monkeypatch):
    from aries.core.models import EMBEDDED_FOLDER, embedded_model_path

    monkeypatch.setenv("ARIES_CACHE", str(tmp_path))
    folder = embedded_model_path()
    assert folder == tmp_path / EMBEDDED_FOLDER
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()
    assert not list(tmp_path.glob("*.tmp*"))  # the temporary folder was renamed into place
    backend = HFBackend(str(folder), device="cpu")
    answer = backend.generate(
        [[{"role": "user", "content": "What is the capital of France?"}]], Sampling(16)
    )[0]
    assert "Paris" in answer.text
