"""The run directory: the one module that knows where a run keeps what (the contract between
stages, docs/concepts.md).

Every stage reads its inputs from here and writes its outputs here; the loop, `aries report`,
`aries status`, the commands and the benchmarks all ask this module for paths, so the layout is
spelled out once:

    runs/<name>/config.yaml            resolved configuration (every default written out)
    runs/<name>/manifest.json          per iteration and stage: status, counts, timings, memory
    runs/<name>/heldout.jsonl          the held-out evaluation prompts, written once
    runs/<name>/eval_base.json         the initial model on the held-out prompts
    runs/<name>/sft/examples, sft/model   the optional SFT stage
    runs/<name>/iter_<t>/prompts.jsonl, chains.jsonl, scores.jsonl, selections.jsonl,
                         pairs/, model/, eval.json (model_before_momentum/: APO;
                         anchors.jsonl, anchor_scores.jsonl, anchored.jsonl, future/:
                         Temporal Self-Rewarding)
    runs/<name>/logs/<iter_t | sft>/   TensorBoard events
    runs/<name>/report.md, report.html, plots/
    runs/<name>/servers/<port>.json    each managed server while it runs (aries.backends.servers)
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from aries import AriesError
from aries.core.config import config_hash, to_dict
from aries.core.distributed import is_main_process
from aries.core.docs import page
from aries.core.jsonl import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from aries.core.memory import PeakRSS


class RunDir:
    """Paths and readers of one run folder; nothing here creates files except `prepare_run_dir`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------------

    config = property(lambda self: self.root / "config.yaml")
    manifest = property(lambda self: self.root / "manifest.json")
    heldout = property(lambda self: self.root / "heldout.jsonl")
    eval_base = property(lambda self: self.root / "eval_base.json")
    sft_examples = property(lambda self: self.root / "sft" / "examples")
    sft_model = property(lambda self: self.root / "sft" / "model")
    report_markdown = property(lambda self: self.root / "report.md")
    report_html = property(lambda self: self.root / "report.html")
    plots = property(lambda self: self.root / "plots")
    servers = property(lambda self: self.root / "servers")

    def iteration(self, t: int) -> Path:
        return self.root / f"iter_{t}"

    def prompts(self, t: int) -> Path:
        return self.iteration(t) / "prompts.jsonl"

    def chains(self, t: int) -> Path:
        return self.iteration(t) / "chains.jsonl"

    def scores(self, t: int) -> Path:
        return self.iteration(t) / "scores.jsonl"

    def selections(self, t: int) -> Path:
        return self.iteration(t) / "selections.jsonl"

    def pairs(self, t: int) -> Path:
        return self.iteration(t) / "pairs"

    def model(self, t: int) -> Path:
        """π_{t+1}: the model trained in iteration t."""
        return self.iteration(t) / "model"

    def anchors(self, t: int) -> Path:
        """Temporal Self-Rewarding: π_0's responses to iteration t's prompts (t > 0)."""
        return self.iteration(t) / "anchors.jsonl"

    def anchor_scores(self, t: int) -> Path:
        return self.iteration(t) / "anchor_scores.jsonl"

    def anchored(self, t: int) -> Path:
        """Temporal Self-Rewarding: the anchored-rejection pairs, before the future's chosen."""
        return self.iteration(t) / "anchored.jsonl"

    def future(self, t: int) -> Path:
        """Temporal Self-Rewarding: the temporary future model's folder (pairs/, model/,
        chains.jsonl, scores.jsonl)."""
        return self.iteration(t) / "future"

    def future_pairs(self, t: int) -> Path:
        """The future model's training pairs (the anchored ones)."""
        return self.future(t) / "pairs"

    def future_model(self, t: int) -> Path:
        """The temporary future model, trained from π_t on the anchored pairs."""
        return self.future(t) / "model"

    def future_chains(self, t: int) -> Path:
        """The future model's responses to iteration t's prompts."""
        return self.future(t) / "chains.jsonl"

    def future_scores(self, t: int) -> Path:
        return self.future(t) / "scores.jsonl"

    def before_momentum(self, t: int) -> Path:
        """θ̂_{t+1}: iteration t's trained weights before the `train.momentum` extrapolation."""
        return self.iteration(t) / "model_before_momentum"

    def eval(self, t: int | None) -> Path:
        """The evaluation of the model trained in iteration t (None: the initial model)."""
        return self.eval_base if t is None else self.iteration(t) / "eval.json"

    def logs(self, t: int | None) -> Path:
        """TensorBoard logs of iteration t's training (None: the SFT stage)."""
        return self.root / "logs" / ("sft" if t is None else f"iter_{t}")

    def training_history(self, t: int) -> Path:
        """The trainer's log history, saved next to the trained model."""
        return self.model(t) / "log_history.json"

    # -- what is there ----------------------------------------------------------------------

    def iterations(self) -> list[int]:
        """Iteration numbers present as `iter_<t>` folders, in order."""
        found = [p.name.split("_", 1)[1] for p in self.root.glob("iter_*") if p.is_dir()]
        return sorted(int(t) for t in found if t.isdigit())

    def latest_model(self) -> Path:
        """The model of the last iteration that has one."""
        trained = [self.model(t) for t in self.iterations() if self.model(t).is_dir()]
        if not trained:
            raise AriesError(
                f"{self.root}: no iter_*/model folder (is it a run directory? "
                f"{page('concepts', 'the-run-directory')})"
            )
        return trained[-1]

    def trained_model(self, t: int) -> Path:
        if not self.model(t).is_dir():
            raise AriesError(f"{self.model(t)}: no trained model for iteration {t}")
        return self.model(t)

    # -- readers ----------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        return read_json(self.manifest)

    def read_prompts(self, t: int) -> list[dict[str, Any]]:
        return read_jsonl(self.prompts(t))

    def read_chains(self, t: int) -> list[dict[str, Any]]:
        return read_jsonl(self.chains(t))

    def read_scores(self, t: int) -> list[dict[str, Any]]:
        return read_jsonl(self.scores(t))

    def read_selections(self, t: int) -> list[dict[str, Any]]:
        return read_jsonl(self.selections(t))

    def read_eval(self, t: int | None) -> dict[str, Any] | None:
        return read_json(self.eval(t))

    def trained_prompts(self, upto: int | None = None) -> list[dict[str, Any]]:
        """Every prompt of iterations 0..upto (default: all iterations present)."""
        its = self.iterations() if upto is None else range(upto + 1)
        return [p for t in its if self.prompts(t).is_file() for p in self.read_prompts(t)]

    def evals(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, eval.json) for the initial model ('base') and every evaluated iteration."""
        found = [("base", self.read_eval(None))]
        found += [(f"iter {t}", self.read_eval(t)) for t in self.iterations()]
        return [(label, result) for label, result in found if result]

    def read_heldout(self) -> list[dict[str, Any]] | None:
        return read_jsonl(self.heldout) if self.heldout.is_file() else None

    def write_heldout(self, prompts: list[dict[str, Any]]) -> None:
        atomic_write_jsonl(self.heldout, prompts, "the held-out prompts")


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (reports show the gap)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def prepare_run_dir(config: Any, *, overwrite: bool = False) -> RunDir:
    """Create the run folder and save the resolved config; refuse a folder of another config.

    A folder saved by an older version (moved or renamed keys) counts as the same configuration
    when it resolves to the same settings; its config.yaml is then rewritten in today's form.
    """
    run = RunDir(config.run_dir)
    if run.config.exists() and not holds(run, config):
        if not overwrite:
            raise AriesError(
                f"{run.root} holds a run with a different configuration; use another name, "
                "or --overwrite to delete it and start again"
            )
        shutil.rmtree(run.root)
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.config, _config_text(config), "the run config")
    return run


def _config_text(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def holds(run: RunDir, config: Any) -> bool:
    """Whether the run folder's saved config is `config` (or an older spelling of it)."""
    from aries.pipeline.runconfig import load_run_config

    if not run.config.exists():
        return False
    if run.config.read_text() == _config_text(config):
        return True
    try:
        return to_dict(load_run_config(run.config)) == to_dict(config)
    except AriesError:
        return False


class Manifest:
    """manifest.json: the run's record of what is done, with counts, timings and memory."""

    def __init__(self, run: RunDir, config: Any):
        self.path = run.manifest
        self.data = {
            "config_hash": config_hash(config),
            "iterations": {},
            "baseline": {"stages": {}},
        }
        self.reload()

    def reload(self) -> None:
        """Read the file again (a launched stage recorded itself there)."""
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def stages(self, iteration: int | None) -> dict[str, Any]:
        if iteration is None:
            return self.data["baseline"]["stages"]
        return self.data["iterations"].setdefault(str(iteration), {"stages": {}})["stages"]

    def is_done(self, iteration: int | None, stage: str) -> bool:
        return self.stages(iteration).get(stage, {}).get("status") == "done"

    @contextlib.contextmanager
    def stage(
        self, iteration: int | None, name: str, processes: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Run a stage: mark it running, time it, store its counts and its own memory peak (not
        an earlier stage's: `PeakRSS`) and mark it done; a stage run by a launcher also records
        how many processes ran it."""
        entry = self.stages(iteration).setdefault(name, {})
        entry.update(status="running", attempts=entry.get("attempts", 0) + 1)
        self.save()
        started = time.time()
        counts: dict[str, Any] = {}
        with PeakRSS() as memory:
            yield counts
        entry.update(
            status="done",
            seconds=round(time.time() - started, 1),
            counts=counts,
            start_rss_mb=_mb(memory.start_mb),
            peak_rss_mb=_mb(memory.peak_mb),
        )
        if processes is not None:
            entry["processes"] = processes
        self.save()

    def save(self) -> None:
        # Under `accelerate launch` every rank runs the stage; only the main process records it.
        if is_main_process():
            atomic_write_json(self.path, self.data, "the manifest")


def _mb(value: float | None) -> int | None:
    return None if value is None else round(value)
