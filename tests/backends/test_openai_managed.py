"""`ManagedServer`: start, health wait, clear failures with the server's log, and stop."""

from __future__ import annotations

import os
import time

import pytest

from aries import AriesError
from aries.backends.servers import ManagedServer


def test_a_server_that_dies_reports_its_exit_code_and_log_tail():
    command = "{python} -c \"import sys; print('cannot load {model}'); sys.exit(3)\""
    server = ManagedServer("some-model", command_template=command, startup_timeout=30)
    with pytest.raises(AriesError, match=r"exited with code 3(.|\n)*cannot load some-model"):
        server.start()


def test_a_server_that_never_answers_times_out_and_is_stopped():
    command = "{python} -c \"import time; print('loading on port {port}', flush=True); "
    command += 'time.sleep(60)"'
    server = ManagedServer("m", command_template=command, startup_timeout=1.5)
    start = time.monotonic()
    with pytest.raises(AriesError, match=f"did not answer on {server.base_url}.*\n.*loading on"):
        server.start()
    assert time.monotonic() - start < 10
    assert server.process.poll() is not None  # stopped, not left running


def test_a_missing_program_is_a_clear_error():
    server = ManagedServer("m", command_template="no-such-server-binary {model} --port {port}")
    with pytest.raises(AriesError, match="cannot start server no-such-server-binary m --port"):
        server.start()


def test_a_backend_whose_server_fails_stops_the_others(tmp_path):
    from aries.backends.openai import OpenAIBackend

    # Server 1 writes its pid and sleeps; server 0 fails once server 1 is surely running.
    pid_file = tmp_path / "pid1"
    script = (
        f"import os, sys, time; p = '{pid_file}'\n"
        "if {index}: open(p + '.tmp', 'w').write(str(os.getpid())); os.rename(p + '.tmp', p)\n"
        "if {index}: time.sleep(30)\n"
        "while not os.path.exists(p): time.sleep(0.01)\n"
        "sys.exit(4)"
    )
    with pytest.raises(AriesError, match="exited with code 4"):
        OpenAIBackend(
            "org/model",
            serve_command=f'{{python}} -c "{script}"',
            num_servers=2,
            startup_timeout=20,
        )
    sleeper = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(sleeper, 0)
