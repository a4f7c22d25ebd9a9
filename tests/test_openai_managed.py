"""`ManagedServer`: start, health wait, clear failures with the server's log, and stop."""

from __future__ import annotations

import time

import pytest

from aries import AriesError
from aries.backends.openai import ManagedServer


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
