"""Shared fixtures: a tiny randomly initialised Llama with the embedded model's real tokenizer.

The tiny model exercises every code path in seconds; the tokenizer is real so chat templates,
special tokens and padding behave exactly as with the embedded model.
"""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
VENDORED_TOKENIZER = Path(__file__).parent / "data" / "smollm2-tokenizer"


def pytest_sessionstart(session):
    """Import the heavy libraries once and move their objects out of the garbage collector's
    view: aries collects garbage after every stage (aries.core.memory), and in one long test process
    each collection would otherwise walk every object torch, transformers and TRL made at import
    (about 0.25 s a call, minutes over the suite)."""
    import gc

    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401
    from trl import DPOTrainer, SFTTrainer  # noqa: F401

    gc.collect()
    gc.freeze()


SHARED_RUNS = {
    "launched_runs": ("test_launcher.py", "test_distributed.py"),
    "tiny_cli_run": ("test_console.py", "test_loop.py", "test_disk_full.py"),
}
"""The session fixtures below that several test files read, and those files: under pytest-xdist
(`make test`: -n 2) each group runs in one worker, so that each fixture is made once."""
_GROUP_OF = {file: name for name, files in SHARED_RUNS.items() for file in files}

LONG_FILES = ("test_prefix_dpo.py", "test_gpu_kit.py", "test_methods.py", "test_self_rewarding.py")
"""The files of the default suite that take longest after the SHARED_RUNS groups (20-50 s each on
two cores): handed out right after the groups, so that neither worker ends the suite alone on one
of them while the other has finished."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Files as units of work (a module fixture is made once), the files of each SHARED_RUNS
    group as one unit, in collection order (workers put the groups and LONG_FILES first)."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
            return _GROUP_OF.get(file, file)

    config.option.loadscopereorder = False
    return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """In an xdist worker: the SHARED_RUNS groups first, then the LONG_FILES (see
    pytest_xdist_make_scheduler): the longest units first, the short ones fill in at the end."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {file: i for i, files in enumerate(SHARED_RUNS.values()) for file in files}
        rank.update({file: len(SHARED_RUNS) + i for i, file in enumerate(LONG_FILES)})
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _freeze_what_survives_a_test():
    """After each test, collect its garbage and freeze what is left (session fixtures, caches):
    otherwise every `gc.collect()` aries makes after a stage walks all that earlier tests left
    behind, and a test late in the suite runs several times slower than alone."""
    import gc

    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def embedded_path() -> Path:
    """The converted embedded model folder (converted once per cache, ~30 s): slow tests only."""
    from aries.core.models import embedded_model_path

    return embedded_model_path()


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer, vendored in tests/data (as the GGUF conversion writes
    it), so fast tests need neither the 135M model nor its conversion."""
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    for file in VENDORED_TOKENIZER.iterdir():
        if file.suffix == ".gz":
            (folder / file.stem).write_bytes(gzip.decompress(file.read_bytes()))
        else:
            shutil.copy(file, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tokenizer_path) -> Path:
    """A 2-layer, 64-wide Llama saved as a normal HF folder, with SmolLM2's tokenizer."""
    from aries.core.testing import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer_path)


@pytest.fixture(scope="session")
def chatty_model_path(tmp_path_factory, tiny_model_path) -> Path:
    """The tiny model untied and with a larger init: it writes varied (random) text."""
    from aries.core.testing import save_tiny_llama

    return save_tiny_llama(
        tmp_path_factory.mktemp("chatty"), tiny_model_path, tied=False, initializer_range=0.2
    )


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
LAUNCH_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _two_nodes_launcher(folder: Path) -> str:
    """A launcher script: two torchrun agents of one process each, meeting at a c10d endpoint,
    as two machines would (`--nnodes 2`); it fails when either agent fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = [*TORCHRUN, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d"]
    agent += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "aries-test"]
    script = folder / "two_nodes.sh"
    script.write_text(
        f'#!/bin/sh\n{shlex.join(agent)} "$@" &\nfirst=$!\n{shlex.join(agent)} "$@"\n'
        "second=$?\nwait $first\nfirst=$?\n[ $first -eq 0 ] && [ $second -eq 0 ]\n"
    )
    script.chmod(0o755)
    return str(script)


@pytest.fixture(scope="session")
def launched_runs(tmp_path_factory, tiny_model_path) -> dict:
    """The same two iterations of a tiny run (12 prompts, 2 pairs a process a step) trained by
    two ranks twice: "launched" by one `aries run` with `train.launcher` torchrun --nproc_per_node
    2, "manual" by the three-commands-per-iteration procedure, its `aries train` started by two
    one-process torchrun "nodes"; and "single": iteration 0 by one process at the same global
    batch (4). "outputs": the console of each manual `aries train`. Shared by
    tests/e2e/test_launcher.py and tests/e2e/test_distributed.py: each launch costs two
    interpreters that import the trainer (seconds each on a CPU)."""
    from aries.core.testing import tiny_run_config
    from aries.pipeline.loop import run
    from aries.pipeline.runconfig import resolve_config

    tmp = tmp_path_factory.mktemp("launched")

    def config(name: str, batch_size: int, iterations: int = 2) -> dict:
        data = tiny_run_config(tiny_model_path, tmp / name, prompts=12)
        data["train"].update(batch_size=batch_size, save_steps=2, learning_rate=1e-2)
        data["iterations"] = iterations
        return data

    with pytest.MonkeyPatch.context() as patch:
        for key, value in LAUNCH_ENV.items():
            patch.setenv(key, value)
        launched = config("launched", batch_size=2)
        launched["train"]["launcher"] = shlex.join(
            [*TORCHRUN, "--standalone", "--nproc_per_node", "2"]
        )
        launched = resolve_config(launched)
        run(launched, progress=False)

        manual = resolve_config(config("manual", batch_size=2))
        nodes = _two_nodes_launcher(tmp)
        outputs = []
        for t in range(2):
            run(manual, stop_before="train", progress=False)
            command = [nodes, "-m", "aries.cli", "train", str(manual.run_dir)]
            command += ["--iteration", str(t)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            outputs.append(done.stdout)
        run(manual, progress=False)

        single = resolve_config(config("single", batch_size=4, iterations=1))
        run(single, progress=False)
    return {"launched": launched, "manual": manual, "single": single, "outputs": outputs}


@pytest.fixture(scope="session")
def tiny_cli_run(tmp_path_factory, tiny_model_path) -> tuple[Path, str]:
    """One finished `aries run` of `aries.core.testing.tiny_run_config`, started in a subprocess as
    a person starts it: its run folder (RUNS/tiny) and its console (stdout, then stderr). The
    reference of every test that stops such a run (kill, full disk) and resumes it."""
    import yaml

    from aries.core.testing import tiny_run_config

    root = tmp_path_factory.mktemp("tiny-cli-run")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_run_config(tiny_model_path, root / "runs")))
    project = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-m", "aries.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": project, "HF_HUB_OFFLINE": "1"},
        timeout=600,
        check=True,
    )
    return root / "runs" / "tiny", done.stdout + done.stderr
