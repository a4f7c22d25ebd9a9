"""Running the sweep's run directories and archiving what its reports are computed from.

Each (task, pool, variant, seed) is an ordinary run directory, run through the CLI as a user
would, so an interrupted sweep resumes with the same command. The evidence of a report (each
run's config, manifest and per-problem outcomes, no models) is copied to `results/efficacy-runs/`,
from which `--report-only --runs results/efficacy-runs` recomputes every number.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from aries.core.jsonl import atomic_write_bytes, atomic_write_text
from aries.pipeline.loop import pending_steps
from aries.pipeline.runconfig import RunConfig, load_run_config, resolve_config
from aries.pipeline.rundir import Manifest, RunDir, holds

REPORTS = Path("results")
"""Where the published reports go, relative to the folder the sweep runs from."""
EVIDENCE = REPORTS / "efficacy-runs"


def finished(config: RunConfig) -> bool:
    """Whether `config`'s run folder holds this configuration with every stage done, i.e. a
    resume would do nothing (the sweep then starts no process for it)."""
    run_dir = RunDir(config.run_dir)
    if not run_dir.manifest.exists() or not holds(run_dir, config):
        return False
    return next(pending_steps(config, Manifest(run_dir, config)), None) is None


def ensure_run(data: dict[str, Any], quiet: bool) -> None:
    """Run (or resume) one run directory through the CLI, as a user would; a finished one is
    left alone without starting a process."""
    path = Path(data["output_dir"]) / f"{data['name']}.config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    if finished(resolve_config(data)):
        print(f"[efficacy] finished already: {path}", flush=True)
        return
    command = [sys.executable, "-m", "aries.cli", "run", "--config", str(path)]
    print(f"[efficacy] {' '.join(command)}", flush=True)
    started = time.time()
    subprocess.run(command + (["--quiet"] if quiet else []), check=True)
    print(f"[efficacy] done in {time.time() - started:.0f} s", flush=True)


def reported_runs(
    output_dir: Path, tasks: list[str], pool: str, chosen: list[str], seeds: list[int]
) -> list[Path]:
    """The run directories a report reads: each task's initial model and its (variant, seed)s."""
    runs = []
    for task in tasks:
        root = output_dir / task / pool
        runs.append(root / "initial")
        runs += [root / variant / f"seed{seed}" for variant in chosen for seed in seeds]
    return runs


def archive_evidence(runs: list[Path], root: Path, target: Path) -> int:
    """Copy what a report is computed from (config, manifest, eval files: per-problem outcomes)
    of `runs` to the same place under `target` as under `root`; returns the runs copied. Only
    finished runs: one still in progress is not evidence yet (the report skips it too)."""
    copied = 0
    for folder in runs:
        run = RunDir(folder)
        if not run.config.is_file() or not finished(load_run_config(run.config)):
            continue
        evals = [run.eval(t) for t in [None, *run.iterations()]]
        for source in [run.manifest, run.config, *evals]:
            if source.is_file():
                destination = target / source.relative_to(root)
                atomic_write_bytes(destination, source.read_bytes())
        copied += 1
    return copied
