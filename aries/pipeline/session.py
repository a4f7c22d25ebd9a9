"""What consecutive stages of a run share: one generation backend at a time (reused while the
model stays the same), a LoRA run's managed servers, and the console.

The run builds a backend's options, for the policy and the teacher alike, with `run_options`
(aries.backends.backend_options with the run's model settings and batch size).
"""

from __future__ import annotations

from typing import Any

from aries.backends import Backend, backend_options, make_backend
from aries.core.memory import return_freed_memory
from aries.pipeline.runconfig import RunConfig


class Session:
    """One generation backend at a time, reused while the model stays the same; progress output.

    For LoRA policies on managed servers it also holds the servers of the whole run
    (aries.backends.lora.LoraServers), which outlive the backends and stop on `close()`.
    """

    def __init__(self, config: RunConfig, *, progress: bool = True):
        self.config = config
        self.progress = progress
        self._backend: Backend | None = None
        self._model: str | None = None
        self.servers = None
        """The run's LoraServers, once a backend needed them."""

    def backend(self, model: str) -> Backend:
        if self._model != model:
            self.release()
            generation = self.config.generation
            options = run_options(
                self.config, generation.backend, model, generation.backend_options
            )
            if (
                generation.backend == "openai"
                and options.get("serve_command")
                and self.config.train.lora
            ):
                options = self._lora_servers(options).backend_options(model, options)
            self._backend = make_backend(generation.backend, model, **options)
            self._model = model
        return self._backend

    def _lora_servers(self, options: dict[str, Any]):
        if self.servers is None:
            from aries.backends.lora import LoraServers

            self.servers = LoraServers(
                options["serve_command"],
                num_servers=options.get("num_servers", 1),
                startup_timeout=options.get("startup_timeout", 600.0),
                chat_template=options.get("chat_template"),
                rank=self.config.iterations * self.config.train.lora_r,
            )
        return self.servers

    def release(self) -> None:
        """Free the backend's memory (before training, or a judge that loads its own model)."""
        if self._backend is not None:
            self._backend.close()
        self._backend, self._model = None, None
        return_freed_memory()

    def close(self) -> None:
        """Release the backend and stop the run's servers (the end of a run, or its failure)."""
        self.release()
        if self.servers is not None:
            self.servers.close()
            self.servers = None

    def log(self, message: str) -> None:
        if self.progress:
            print(f"[aries] {message}", flush=True)


def run_options(
    config: RunConfig, name: str, model: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Backend `name`'s options for `model` in the run (the policy's, the teacher's): the
    config's own `options` first, then the run's model settings and batch size."""
    settings = config.model_settings(model)
    return backend_options(name, settings, options, batch_size=config.generation.batch_size)


def run_backend(config: RunConfig, name: str, model: str, options: dict[str, Any]) -> Backend:
    """A generation backend of the run, built with `run_options`."""
    return make_backend(name, model, **run_options(config, name, model, options))
