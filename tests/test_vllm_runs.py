"""`aries run` on vLLM (vLLM's x86 CPU build, in .venv-vllm: `make test-vllm`; elsewhere these
tests skip): the `vllm` backend across iterations, and managed vLLM servers that nothing outlives,
not a SIGKILLed loop nor a failed stage."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import yaml

from aries.backends import Sampling
from aries.core.testing import tiny_run_config
from aries.pipeline import stages
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config

pytestmark = pytest.mark.vllm

# Eager mode: torch.compile would add about a minute to every engine start on a CPU.
ENGINE = {"dtype": "float32", "max_model_len": 1024, "engine_options": {"enforce_eager": True}}


def write_config(
    tmp_path: Path, model: Path, name: str = "config.yaml", iterations: int = 1, **generation
) -> Path:
    """A tiny run on `model`: 4 prompts, no evaluation, no checkpoints."""
    config = tiny_run_config(model, tmp_path / "runs", prompts=4, chunk_size=4)
    config["iterations"] = iterations
    config["generation"].update(generation)
    config["eval"]["enabled"] = False
    config["train"]["save_steps"] = 1000
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def vllm_children() -> list[str]:
    """The names of this process's live vLLM processes (its engine core and workers)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "VLLM" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.name())
        except psutil.NoSuchProcess:
            pass
    return found


def test_aries_run_on_vllm_closes_the_engine_for_training_and_then_serves_the_trained_model(
    tmp_path, embedded_path, monkeypatch
):
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    from aries.backends.hf import HFBackend
    from aries.backends.vllm import VLLMBackend

    engines, greedy, at_train = [], [], []  # what each engine loads and answers greedily
    real_init, real_generate = VLLMBackend.__init__, VLLMBackend.generate
    real_train = stages.train_into

    def init(self, model, **options):
        engines.append(model)
        real_init(self, model, **options)

    def generate(self, conversations, sampling):
        generations = real_generate(self, conversations, sampling)
        if sampling.temperature == 0:  # each chain's first answer (answer_temperature)
            greedy.append((len(engines), conversations, [g.text for g in generations]))
        return generations

    def train_into(*args, **kwargs):
        at_train.append(vllm_children())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(VLLMBackend, "__init__", init)
    monkeypatch.setattr(VLLMBackend, "generate", generate)
    monkeypatch.setattr(stages, "train_into", train_into)
    options = {"backend": "vllm", "backend_options": ENGINE, "answer_temperature": 0.0}
    config = load_run_config(write_config(tmp_path, embedded_path, iterations=2, **options))
    manifest = run(config, progress=False)

    # Iteration 0 trains (iteration 1 may find every candidate tied, and train nothing).
    assert manifest["iterations"]["0"]["stages"]["train"]["counts"]["steps"] > 0
    assert at_train[0] == []  # no engine core alive while training
    trained = str(Path(config.run_dir) / "iter_0" / "model")
    assert engines == [str(embedded_path), trained]
    conversations = [c for engine, batch, _ in greedy if engine == 2 for c in batch]
    answers = [a for engine, _, batch in greedy if engine == 2 for a in batch]
    assert len(conversations) == 4
    sampling = Sampling(max_new_tokens=8, temperature=0.0)
    policy = HFBackend(trained, dtype="float32")
    from_trained = [g.text for g in policy.generate(conversations, sampling)]
    base = HFBackend(str(embedded_path), dtype="float32")
    from_base = [g.text for g in base.generate(conversations, sampling)]
    # Iteration 1's engine answers as the trained model does (greedy, fp32: a near tie may go
    # the other way), not as the initial one.
    same = sum(a == b for a, b in zip(answers, from_trained))
    assert same >= 3 and same > sum(a == b for a, b in zip(answers, from_base)), (
        answers,
        from_trained,
        from_base,
    )
