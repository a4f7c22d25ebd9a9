"""Managed servers: start an OpenAI-compatible server process, wait until it answers, stop it.

The `openai` backend's *managed* mode (`serve_command=...`) runs its servers through
`ManagedServer`, so that the loop can give the GPU to the trainer between collections.

A server must not outlive the run that started it, holding its port and its GPU memory. It runs
under a guard that takes its whole process group down with its parent where Linux allows
(PR_SET_PDEATHSIG, aries.core.processes.guarded), and each one is recorded in
`RUN/servers/<port>.json` (its processes as pid and create time, so that a pid the system has
since given to another process is never signalled): `aries run` stops what a killed run left
before it starts, and a clean stop deletes the record.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from aries import AriesError
from aries.core.jsonl import atomic_write_json
from aries.core.processes import guarded, kill, same_processes, tree

_record_dir: Path | None = None
"""Where servers started now record themselves (`recording`); None: nowhere."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ManagedServer:
    """Start an OpenAI-compatible server process, wait until it answers, stop it afterwards.

    `command_template` may use {model}, {port}, {host}, {python} (this interpreter), {index}
    (the server's number, e.g. `env CUDA_VISIBLE_DEVICES={index} vllm serve {model} --port
    {port}`) and {chat_template} (the file of a `chat_template` setting, for --chat-template).
    The process runs in its own process group so that stopping it also stops the workers it
    spawned, and it is killed with them when the thread that started it ends (start it from
    a thread that outlives it). Its output goes to a log file whose tail is shown if it
    fails to start. `record_dir` (default: the one `recording` set) gets its record.
    """

    def __init__(
        self,
        model: str,
        *,
        command_template: str = "vllm serve {model} --port {port}",
        port: int | None = None,
        host: str = "127.0.0.1",
        index: int = 0,
        startup_timeout: float = 600.0,
        log_path: str | Path | None = None,
        chat_template: str = "",
        record_dir: str | Path | None = None,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.command = shlex.split(
            command_template.format(
                model=model,
                port=self.port,
                host=host,
                python=sys.executable,
                index=index,
                chat_template=chat_template,
            )
        )
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="aries-server-", suffix=".log")
            os.close(handle)
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None
        folder = Path(record_dir) if record_dir is not None else _record_dir
        self.record_path = folder / f"{self.port}.json" if folder is not None else None
        self._recorded: list[list] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def launch(self) -> None:
        """Start the process without waiting (so several servers can load in parallel)."""
        if shutil.which(self.command[0]) is None:
            raise AriesError(
                f"cannot start server {shlex.join(self.command)}: no program {self.command[0]}"
            )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                guarded(self.command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.record()

    def record(self) -> None:
        """Write the server's process tree to its record when it has changed (workers start
        while it loads), so that a later run can stop whatever of it a SIGKILL left."""
        if self.record_path is None or self.process is None:
            return
        processes = [[p.pid, p.create_time()] for p in tree(self.process.pid)]
        if not processes or processes == self._recorded:
            return
        self._recorded = processes
        record = {
            "pid": self.process.pid,
            "port": self.port,
            "command": self.command,
            "started": processes[0][1],
            "log": str(self.log_path),
            "processes": processes,
        }
        atomic_write_json(self.record_path, record, "a managed server's record")

    def wait_ready(self) -> None:
        """Poll `/v1/models` until it answers 200; fail clearly if the process dies or stalls."""
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise AriesError(
                    f"server {shlex.join(self.command)} exited with code {code} before answering; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            self.record()
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    self.record()  # what answered is in the record
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AriesError(
                    f"server {shlex.join(self.command)} did not answer on {self.base_url} within "
                    f"{self.startup_timeout:.0f} s; last lines of {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.25)

    def start(self) -> ManagedServer:
        self.launch()
        self.wait_ready()
        return self

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `grace` seconds; last,
        SIGKILL the group's stragglers (vLLM's engine core can outlive its server by a moment)
        and any recorded process that left the group. Then the record goes."""
        import signal

        if self.process is None:
            return
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        kill(same_processes(self._recorded))
        if self.record_path is not None:
            self.record_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def template_file(chat_template: str) -> str | None:
    """A file holding a Jinja `chat_template` given as text, for the server's command line
    (None: the setting is already a file, or `plain`, which aries serve takes as it is)."""
    from aries.core.views import PLAIN_TEMPLATE, chat_template_text

    if chat_template == PLAIN_TEMPLATE or Path(chat_template).expanduser().is_file():
        return None
    handle, path = tempfile.mkstemp(prefix="aries-chat-template-", suffix=".jinja")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(chat_template_text(chat_template))
    return path


@contextlib.contextmanager
def recording(folder: str | Path) -> Iterator[None]:
    """Record the servers started inside the block in `folder`, after stopping what the records
    there name (`reap`): what a killed run left."""
    global _record_dir
    reap(folder)
    previous, _record_dir = _record_dir, Path(folder)
    try:
        yield
    finally:
        _record_dir = previous


def reap(folder: str | Path) -> list[int]:
    """Stop the processes of the server records in `folder` that still run (checked by pid and
    create time) and delete the records; returns the pids stopped."""
    stopped = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            processes = same_processes([(pid, created) for pid, created in record["processes"]])
        except (OSError, ValueError, KeyError, TypeError):
            processes, record = [], {}
        if processes:
            print(
                f"[aries] stopping server {shlex.join(record['command'])} (port "
                f"{record['port']}, pid {', '.join(str(p.pid) for p in processes)}) left by a "
                f"run that did not stop it",
                file=sys.stderr,
                flush=True,
            )
            kill(processes, grace=5.0)
            stopped += [p.pid for p in processes]
        path.unlink(missing_ok=True)
    return stopped
