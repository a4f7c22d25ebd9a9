"""One builder of a backend's options (aries.backends.backend_options): the run, the command line
and the LLM judge give each engine the same options for the same model settings."""

from __future__ import annotations

import pytest

from aries import AriesError
from aries.backends import ENGINES, backend_options
from aries.cli import build_parser
from aries.commands.refine import backend_from_args, backend_options_from_args
from aries.core.models import ModelSettings
from aries.pipeline.runconfig import resolve_config
from aries.pipeline.session import run_options

EXPECTED = {
    "hf": {"trust_remote_code": True, "chat_template": "plain", "dtype": "auto", "batch_size": 3},
    "vllm": {"trust_remote_code": True, "chat_template": "plain", "dtype": "auto"},
    "openai": {"trust_remote_code": True},
}
"""What each engine takes of trust_remote_code, chat template 'plain' (not openai: a server it
does not start renders with its own), dtype and batch size 3."""


def cli_args(*flags: str):
    return build_parser().parse_args(["refine", "2+2?", *flags])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_run_and_command_line_build_the_same_options(name):
    assert set(EXPECTED) == set(ENGINES)
    template = ["--chat-template", "plain"] if name != "openai" else []
    args = cli_args("--backend", name, "--batch-size", "3", "--trust-remote-code", *template)
    config = {"trust_remote_code": True, "generation": {"backend": name, "batch_size": 3}}
    if name != "openai":
        config["chat_template"] = "plain"
    run = run_options(resolve_config(config), name, "embedded", {})
    assert run == backend_options_from_args(args) == EXPECTED[name]


def test_config_options_win_and_a_template_needs_a_started_server():
    settings = ModelSettings("embedded", chat_template="plain")
    given = {"dtype": "float32", "batch_size": 8, "trust_remote_code": False}
    built = backend_options("hf", settings, given, batch_size=3, device="cpu")
    assert built == {**given, "chat_template": "plain", "device": "cpu"}
    with pytest.raises(AriesError, match="put {chat_template} in serve_command"):
        backend_options("openai", settings)
    with pytest.raises(AriesError, match="put {chat_template} in serve_command"):
        backend_options_from_args(cli_args("--backend", "openai", "--chat-template", "plain"))
    started = {"serve_command": "vllm serve {model} --chat-template {chat_template}"}
    built = backend_options("openai", settings, started)
    assert built == {**started, "trust_remote_code": False, "chat_template": "plain"}


def test_the_judge_loads_its_model_as_the_command_line_does(tiny_model_path):
    import torch

    from aries.rewards.judge import Judge, JudgeConfig

    model = str(tiny_model_path)
    judge = Judge(JudgeConfig(model=model, batch_size=3, device="cpu", dtype="bfloat16"))
    flags = ["--batch-size", "3", "--device", "cpu", "--dtype", "bfloat16"]
    cli = backend_from_args(cli_args("--model", model, *flags))
    try:
        for backend in (judge.backend, cli):
            assert backend.batch_size == 3
            assert next(backend.model.parameters()).dtype == torch.bfloat16
            assert next(backend.model.parameters()).device.type == "cpu"
    finally:
        judge.close()
        cli.close()
