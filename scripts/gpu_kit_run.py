"""`gpu_kit.py run`: on the GPU machine, offline. Joins and verifies the parts, installs the
wheels into a folder of its own with `pip --no-index`, and runs three checks within a wall-clock
budget, each in its own processes with HF_HUB_OFFLINE=1, then prints one markdown table:

- throughput (scripts/gpu_kit_bench.py): generation and a DPO step at the real 135M model and
  random-weight 1.7B and 8B shapes, each decode path, with peak memory and share of the bound;
- smoke (bench/gpu_smoke.sh): generation, DPO, LoRA, DDP and aries' train stage against TRL;
- runs: one-iteration `aries run`s of configs/arithmetic-recipe.yaml and of iterative DPO, two
  seeds each, in parallel, with their held-out accuracy per round.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from gpu_kit_parts import KitError, join, read_manifest

IDPO = [
    "method=iterative-dpo",
    "generation.samples=4",
    "train.loss_type=sigmoid",
    "generation.answer_temperature=null",
    "selection.on_policy_refine=false",
]
"""Iterative DPO against the recipe, as configs/arithmetic-recipe.yaml's header compares it."""
DRY_RUN = [
    "prompts.per_iteration=4",
    "generation.batch_size=8",
    "generation.max_new_tokens=8",
    "generation.rounds=1",
    "train.gradient_accumulation_steps=1",
    "train.epochs=1",
    "eval.size=2",
    "eval.rounds=1",
    "eval.max_new_tokens=8",
]
"""Tiny settings of the dry mode's runs: seconds per stage on the tiny model."""


STEPS = ("generation", "dpo", "smoke", "runs")
"""What `run --steps` chooses from: throughput of generation and of a DPO step
(scripts/gpu_kit_bench.py), bench/gpu_smoke.sh, and the parallel one-iteration runs."""


class Table:
    """The rows of the one table `run` prints: check, result, detail."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, check: str, result: str, detail: str = "") -> None:
        self.rows.append((check, result, detail.replace("|", "/").replace("\n", " ")))

    def markdown(self, title: str) -> str:
        lines = [title, "", "| check | result | detail |", "|---|---|---|"]
        lines += [f"| {c} | {r} | {d} |" for c, r, d in self.rows]
        return "\n".join(lines)


def offline_env(work: Path, project: Path, site: Path) -> dict[str, str]:
    """The environment every check runs in: the kit's packages first, no hub, no index."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(project), str(site)]),
        PATH=os.pathsep.join([str(site / "bin"), env.get("PATH", "")]),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PIP_NO_INDEX="1",
        ARIES_CACHE=str(work / "cache"),
        PYTHON=sys.executable,
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def install(joined: dict[str, Path], work: Path, table: Table) -> tuple[Path, Path]:
    """Unpack the project and the wheels; install the wheels (no index, no dependencies: the
    kit holds exactly what the image lacks) into work/site. (project folder, site folder)."""
    for name in ("project.tar.gz", "wheels.tar"):
        with tarfile.open(joined[name]) as tar:
            tar.extractall(work, filter="data")
    wheels = sorted((work / "wheels").glob("*.whl"))
    site = work / "site"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile"]
        + ["--disable-pip-version-check", "--target", str(site), *map(str, wheels)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        check=False,
    )
    if done.returncode != 0:
        raise KitError(f"pip install --no-index failed: {done.stderr.strip()[-400:]}")
    table.add(
        "install",
        f"{len(wheels)} wheels",
        f"pip install --no-index --no-deps --target {site}, {time.monotonic() - started:.0f} s",
    )
    return work / "project", site


def model_folder(joined: dict[str, Path], work: Path, env: dict, table: Table) -> Path:
    """The model the checks use: the carried tiny model (dry mode), else the embedded GGUF
    converted into the kit's aries cache, where `model: embedded` finds it."""
    if "model.tar" in joined:
        with tarfile.open(joined["model.tar"]) as tar:
            tar.extractall(work, filter="data")
        return work / "model"
    code = (
        "import sys; from pathlib import Path; from aries.core import models; "
        "target = models.cache_dir() / models.EMBEDDED_FOLDER; "
        "models.convert_gguf(Path(sys.argv[1]), target); print(target)"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, str(joined["model.gguf"])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise KitError(f"converting the embedded GGUF failed: {done.stderr.strip()[-400:]}")
    table.add(
        "model", "SmolLM2-135M-Instruct", f"GGUF converted, {time.monotonic() - started:.0f} s"
    )
    return Path(done.stdout.strip().splitlines()[-1])


def call(command: list[str], cwd: Path, env: dict, limit: float) -> tuple[int, str, float]:
    """(exit status, output, seconds) of a check; 124 when it ran past `limit` seconds."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=max(limit, 1),
            check=False,
        )
        return done.returncode, done.stdout + done.stderr, time.monotonic() - started
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if expired.stdout else ""
        return 124, output, time.monotonic() - started


def throughput(project: Path, model: Path, env: dict, dry: bool, limit: float, table, parts):
    command = [sys.executable, "scripts/gpu_kit_bench.py", "--model", str(model)]
    command += ["--parts", ",".join(parts)] + (["--dry"] if dry else [])
    status, output, seconds = call(command, project, env, limit)
    for line in output.splitlines():
        if line.startswith('{"check"'):
            row = json.loads(line)
            table.add(row["check"], row["result"], row["detail"])
    if status != 0:
        table.add("throughput", f"FAILED (exit {status}, {seconds:.0f} s)", _tail(output))


def smoke(project: Path, model: Path, env: dict, dry: bool, limit: float, table: Table):
    """bench/gpu_smoke.sh: one row per step, its tokens/s lines, or why it failed/skipped."""
    command = ["bash", "bench/gpu_smoke.sh", "--model", str(model)] + (["--cpu"] if dry else [])
    status, output, seconds = call(command, project, env, limit)
    smoke_rows(output, table)
    if status != 0:
        table.add("smoke", f"exit {status} after {seconds:.0f} s", _tail(output))


def smoke_rows(output: str, table: Table) -> None:
    """One row per `--- step` of gpu_smoke.sh's output: its figures and time, or why skipped."""
    step, figures, seconds_line = None, [], ""
    for line in output.splitlines() + ["--- end"]:
        if line.startswith("--- "):
            if step and step != "end" and ": skipped" not in step:
                table.add(f"smoke {step}", "; ".join(figures) or "no figure", seconds_line)
            step, figures, seconds_line = line[4:], [], ""
            if ": skipped" in step:
                name, why = step.split(": skipped", 1)
                table.add(f"smoke {name}", "skipped", why.strip(" ()"))
        elif "tokens/s" in line or "FAILED" in line or "equal across" in line or "speed-up" in line:
            figures.append(re.sub(r"^[\w ]+: ", "", line.strip()))
        elif step and re.fullmatch(rf"{re.escape(step)}: \d+ s", line.strip()):
            seconds_line = line.strip()


def runs(project: Path, model: Path, work: Path, site: Path, env: dict, dry, limit, table):
    """Four one-iteration runs at once (recipe and iterative DPO, seeds 0 and 1)."""
    base = ["iterations=1", f"model={model}", f"output_dir={work / 'runs'}"]
    base += DRY_RUN if dry else ["generation.batch_size=128"]
    processes = {}
    for method, extra in (("recipe", []), ("idpo", IDPO)):
        for seed in (0, 1):
            name = f"{method}-s{seed}"
            sets = [*base, *extra, f"seed={seed}", f"name={name}"]
            command = [sys.executable, "-m", "aries.cli", "run", "--quiet"]
            command += ["--config", "configs/arithmetic-recipe.yaml"]
            command += [arg for item in sets for arg in ("--set", item)]
            log = open(work / f"{name}.log", "w")  # noqa: SIM115 (closed below)
            processes[name] = (
                subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=log),
                log,
            )
    deadline = time.monotonic() + limit
    sys.path[:0] = [str(project), str(site)]
    for name, (process, log) in processes.items():
        try:
            status = process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            status = 124
        log.close()
        if status == 0:
            table.add(f"aries run {name}", "done", run_summary(work / "runs" / name))
        else:
            log_text = (work / f"{name}.log").read_text()
            table.add(f"aries run {name}", f"FAILED (exit {status})", _tail(log_text))


def run_summary(root: Path) -> str:
    """A finished run's last iteration: its stage times, pairs, held-out accuracy per round."""
    from aries.evaluation.evaltable import round_cells
    from aries.pipeline.rundir import RunDir

    run = RunDir(root)
    iterations = (run.read_manifest() or {"iterations": {}})["iterations"]
    stages = iterations[max(iterations, key=int)]["stages"] if iterations else {}
    times = ", ".join(
        f"{stage} {entry['seconds']:.0f} s"
        for stage, entry in stages.items()
        if entry.get("seconds", 0) >= 0.5
    )
    pairs = stages.get("pairs", {}).get("counts", {}).get("pairs")
    held_out = [
        f"{label}: " + " / ".join(round_cells(label, row)["metric"] for row in result["per_round"])
        for label, result in run.evals()
    ]
    return f"{times}; {pairs} pairs; held-out accuracy, answer / refinements: " + "; ".join(
        held_out
    )


def _tail(output: str, lines: int = 3) -> str:
    return " ⏎ ".join(output.strip().splitlines()[-lines:])


def run_kit(args) -> str:
    started = time.monotonic()
    steps = args.steps.split(",")
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise KitError(f"--steps: unknown {', '.join(sorted(unknown))}; choose from {STEPS}")
    kit = args.kit.resolve()
    manifest = read_manifest(kit)
    work = (args.work or Path(tempfile.mkdtemp(prefix="aries-gpu-kit-"))).resolve()
    table = Table()
    joined = join(kit, work / "joined")
    parts = sum(len(entry["parts"]) for entry in manifest["files"])
    table.add(
        "parts",
        f"{parts} parts, {len(manifest['transfers'])} transfers",
        f"sha256 of every part and file verified; largest part {manifest['part_bytes']} bytes",
    )
    project, site = install(joined, work, table)
    env = offline_env(work, project, site)
    model = model_folder(joined, work, env, table)
    # Throughput first: it is what the decode path is judged on; then the smoke, then the runs.
    checks = [("throughput", [s for s in ("generation", "dpo") if s in steps])]
    checks += [(step, []) for step in ("smoke", "runs") if step in steps]
    checks = [(step, parts) for step, parts in checks if step != "throughput" or parts]
    shares = {"throughput": 0.30, "smoke": 0.30, "runs": 0.40}
    for index, (step, parts) in enumerate(checks):
        left = args.budget_s - (time.monotonic() - started)
        limit = left * shares[step] / sum(shares[s] for s, _ in checks[index:])
        if step == "throughput":
            throughput(project, model, env, args.dry, limit, table, parts)
        elif step == "smoke":
            smoke(project, model, env, args.dry, limit, table)
        else:
            runs(project, model, work, site, env, args.dry, limit, table)
    for step in STEPS:
        if step not in steps:
            table.add(step, "not run", f"--steps {args.steps}")
    title = (
        f"aries GPU kit ({'CPU dry mode, ' if args.dry else ''}{time.strftime('%Y-%m-%d')}, "
        f"{time.monotonic() - started:.0f} s in all; work folder {work})"
    )
    return table.markdown(title)
