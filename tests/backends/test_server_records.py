"""Managed servers leave nothing running: each dies with the process that started it, is recorded
in RUN/servers while it runs, and `aries run` stops what a killed run left. The servers are real
processes: Python's http.server, answering /v1/models from a folder."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from aries import AriesError
from aries.backends.servers import ManagedServer, reap
from aries.core.processes import kill, same_processes
from aries.core.testing import tiny_run_config
from aries.pipeline.loop import run
from aries.pipeline.runconfig import load_run_config

# Starts a managed server recorded in argv[2], prints its port, and sleeps until it is killed.
DRIVER = """
import sys, time
from aries.backends.servers import ManagedServer
server = ManagedServer("m", command_template=sys.argv[1], record_dir=sys.argv[2]).start()
print(server.port, flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path):
    """A failing test still leaves nothing running: its servers (and guards) are killed."""
    yield
    kill([psutil.Process(pid) for pid, _ in serving(tmp_path / "www")])


def serve_command(tmp_path: Path, prefix: str = "") -> str:
    """An http.server whose /v1/models lists one model, as an OpenAI-compatible server does."""
    root = tmp_path / "www"
    (root / "v1").mkdir(parents=True, exist_ok=True)
    (root / "v1" / "models").write_text(json.dumps({"data": [{"id": "m"}]}))
    return f"{prefix}{{python}} -m http.server {{port}} --bind {{host}} --directory {root}"


def start_driver(command: str, records: Path) -> tuple[subprocess.Popen, dict]:
    """The driver process and its server's record, once the server answers."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, command, str(records)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    port = int(driver.stdout.readline())
    return driver, json.loads((records / f"{port}.json").read_text())


def wait_gone(record: dict, timeout: float = 30.0) -> list:
    """The recorded processes still running after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (alive := same_processes(record["processes"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def port_is_free(port: int) -> bool:
    """Nobody listens on `port` (connections closed a moment ago may linger: SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_server_is_recorded_while_it_runs_and_a_clean_stop_deletes_the_record(tmp_path):
    records = tmp_path / "servers"
    server = ManagedServer("m", command_template=serve_command(tmp_path), record_dir=records)
    server.start()
    record = json.loads((records / f"{server.port}.json").read_text())
    created = psutil.Process(server.process.pid).create_time()
    assert record["pid"] == server.process.pid and record["port"] == server.port
    assert record["processes"][0] == [server.process.pid, created]
    assert record["command"] == server.command
    server.stop()
    assert list(records.iterdir()) == []
    assert server.process.poll() is not None and port_is_free(server.port)


def test_a_server_dies_with_its_killed_parent_and_leaves_nothing_to_reap(tmp_path):
    records = tmp_path / "servers"
    driver, record = start_driver(serve_command(tmp_path), records)
    driver.kill()  # SIGKILL: the driver tidies nothing up
    driver.wait()
    assert wait_gone(record) == []
    assert port_is_free(record["port"])
    assert reap(records) == [] and list(records.iterdir()) == []


def test_aries_run_stops_what_a_killed_run_left_and_a_failed_stage_stops_its_server(
    tmp_path, tiny_model_path, capsys
):
    # `setsid` puts the server into a session of its own: the guard that dies with the driver
    # kills its own process group, not the server, which keeps its port, as a server that
    # detaches itself would.
    config = tiny_run_config(tiny_model_path, tmp_path / "runs")
    records = tmp_path / "runs" / config["name"] / "servers"
    driver, left = start_driver(serve_command(tmp_path, "setsid --wait "), records)
    guard, survivor = left["processes"]  # setsid execs the server: no process of its own
    driver.kill()
    driver.wait()
    assert wait_gone({"processes": [guard]}) == []
    assert same_processes([survivor]) and not port_is_free(left["port"])

    # The rerun: an `aries run` whose collection fails (http.server answers POST with 501).
    serve = serve_command(tmp_path)
    config["generation"]["backend"] = "openai"
    config["generation"]["backend_options"] = {"serve_command": serve, "max_retries": 0}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(AriesError, match="HTTP 501"):
        run(load_run_config(path), progress=False)
    assert f"stopping server {shlex.join(left['command'])} (port {left['port']}" in (
        capsys.readouterr().err
    )
    assert port_is_free(left["port"])
    assert serving(tmp_path / "www") == []  # neither the survivor nor the failed run's server
    assert list(records.iterdir()) == []


def serving(root: Path) -> list[tuple[int, str]]:
    """The pids and command lines of the live processes that serve `root` (zombies hold
    nothing)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        if f"--directory {root}" in command and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append((process.pid, command))
    return found
