"""Managed servers: start an OpenAI-compatible server process, wait until it answers, stop it.

The `openai` backend's *managed* mode (`serve_command=...`) runs its servers through
`ManagedServer`, so that the loop can give the GPU to the trainer between collections.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aries import AriesError


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
    spawned. Its output goes to a log file whose tail is shown if it fails to start.
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

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def launch(self) -> None:
        """Start the process without waiting (so several servers can load in parallel)."""
        with open(self.log_path, "wb") as log:
            try:
                self.process = subprocess.Popen(
                    self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            except OSError as error:
                raise AriesError(
                    f"cannot start server {shlex.join(self.command)}: {error}"
                ) from None

    def wait_ready(self) -> None:
        """Poll `/v1/models` until it answers 200; fail clearly if the process dies or stalls."""
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise AriesError(
                    f"server {shlex.join(self.command)} exited with code {code} before answering; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
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
        SIGKILL the group's stragglers (vLLM's engine core can outlive its server by a moment)."""
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
