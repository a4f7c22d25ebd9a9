"""`gpu_kit.py run`: on the GPU machine, offline, a few steps per call within a wall-clock
budget. Joins and verifies the parts and installs the wheels with `pip --no-index` into
KIT/work once (a later call reuses them), then runs the steps asked for, each in its own
session with HF_HUB_OFFLINE=1, every process of it killed at its time limit:

- install: the install alone, with an import check (torch sees the GPU): the cheap first call;
- generation, dpo (scripts/gpu_kit_bench.py): throughput at the real 135M model and
  random-weight 1.7B and 8B shapes, each size and decode path guarded on its own;
- smoke (bench/gpu_smoke.sh): generation, DPO, LoRA, DDP and aries' train stage against TRL,
  each of its steps given a fifth of the share;
- runs: one-iteration `aries run`s of configs/arithmetic-recipe.yaml and of iterative DPO per
  seed, in parallel, at small settings (64 prompts, 1 epoch), with held-out accuracy per round.

Every row is printed and appended to WORK/table.md as it is made, so a call cut off at any
point has returned the rows before it; one failure is one FAILED row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from gpu_kit_parts import KitError, join, read_manifest, write_atomic

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
GPU_RUN = [
    "prompts.per_iteration=64",
    "generation.batch_size=128",
    "train.epochs=1",
    "train.gradient_accumulation_steps=4",
    "eval.size=64",
]
"""The recipe cut to fit a call's share on one GPU: 64 prompts x 2 samples x 2 rounds and 64
held-out x 2 rounds of 48 tokens (about 20k tokens per run, under a minute at the 400-600
tokens/s per process measured on an H200), one epoch."""


STEPS = ("install", "generation", "dpo", "smoke", "runs")
"""What `run --steps` chooses from (install is done whenever a step needs it)."""
SHARES = {"generation": 0.2, "dpo": 0.1, "smoke": 0.3, "runs": 0.4}
"""Each step's share of what is left of the budget when it starts, among the steps asked for."""
RESERVE_S = 5.0
"""Budget kept back for killing the last step's processes and writing its row."""
MIN_STEP_S = 10.0
"""A step with less time than this is not started: its row says so (dry mode: 1 s)."""


class Table:
    """The rows `run` makes: each printed and appended to `path` (markdown) as it is made."""

    def __init__(self, path: Path, title: str) -> None:
        self.path = path
        self.rows: list[tuple[str, str, str]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write(f"\n{title}\n\n| check | result | detail |\n|---|---|---|\n")

    def _write(self, text: str) -> None:
        print(text, end="", flush=True)
        with open(self.path, "a") as handle:
            handle.write(text)

    def add(self, check: str, result: str, detail: str = "") -> None:
        row = tuple(text.replace("|", "/").replace("\n", " ") for text in (check, result, detail))
        self.rows.append(row)
        self._write("| " + " | ".join(row) + " |\n")


def units(steps: list[str]) -> list[tuple[str, list[str], float]]:
    """The steps asked for as they run: (name, parts, share); generation and dpo are one
    process (the throughput bench) with both their shares."""
    throughput = [step for step in ("generation", "dpo") if step in steps]
    ran = [("throughput", throughput, sum(SHARES[s] for s in throughput))] if throughput else []
    return ran + [(step, [step], SHARES[step]) for step in ("smoke", "runs") if step in steps]


def unit_limit(planned: list[tuple[str, list[str], float]], index: int, left: float) -> float:
    """Seconds for the `index`-th unit out of `left`: its share among itself and the later ones
    (an earlier unit that ends early leaves its time to the later ones)."""
    return left * planned[index][2] / sum(share for _, _, share in planned[index:])


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


def install(kit: Path, manifest: dict, work: Path, table: Table) -> tuple[Path, Path, Path, bool]:
    """Join and verify the parts, unpack the project and install the wheels (no index, no
    dependencies: the kit holds exactly what the image lacks) into work/site, once per kit:
    a later call with the same manifest reuses them. (project, site, model, installed now)."""
    kit_id = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    marker, site, project = work / "installed.json", work / "site", work / "project"
    installed = json.loads(marker.read_text()) if marker.is_file() else {}
    if installed.get("kit") == kit_id:
        table.add("install", "reused", f"{site}, installed by an earlier call")
        return project, site, Path(installed["model"]), False
    started = time.monotonic()
    joined = join(kit, work / "joined")
    parts = sum(len(entry["parts"]) for entry in manifest["files"])
    table.add(
        "parts",
        f"{parts} parts, {len(manifest['transfers'])} transfers",
        f"sha256 of every part and file verified; largest part {manifest['part_bytes']} bytes",
    )
    for name in ("project.tar.gz", "wheels.tar", "model.tar"):
        if name in joined:
            with tarfile.open(joined[name]) as tar:
                tar.extractall(work, filter="data")
    wheels = sorted((work / "wheels").glob("*.whl"))
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
        f"pip install --no-index --no-deps --target {site}; joined and installed in "
        f"{time.monotonic() - started:.0f} s",
    )
    model = work / "model"  # the carried tiny model of the dry mode
    if "model.gguf" in joined:
        model = convert_gguf(joined["model.gguf"], offline_env(work, project, site), table)
    for name in joined:  # the parts' copies: the unpacked files are what the steps use
        (work / "joined" / name).unlink()
    write_atomic(marker, json.dumps({"kit": kit_id, "model": str(model)}) + "\n")
    return project, site, model, True


def convert_gguf(gguf: Path, env: dict, table: Table) -> Path:
    """The embedded GGUF converted into the kit's aries cache, where `model: embedded` (and
    model_folder) finds it."""
    code = (
        "import sys; from pathlib import Path; from aries.core import models; "
        "target = models.cache_dir() / models.EMBEDDED_FOLDER; "
        "models.convert_gguf(Path(sys.argv[1]), target); print(target)"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, str(gguf)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise KitError(f"converting the embedded GGUF failed: {done.stderr.strip()[-400:]}")
    table.add(
        "model", "SmolLM2-135M-Instruct", f"GGUF converted, {time.monotonic() - started:.0f} s"
    )
    return Path(done.stdout.strip().splitlines()[-1])


IMPORT_CHECK = """
import importlib, torch
names = ["transformers", "trl", "peft", "datasets", "accelerate", "aries", "aries.cli"]
for name in names:
    importlib.import_module(name)
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"torch {torch.__version__}, {gpu}; imported " + ", ".join(names))
"""


def import_check(project: Path, env: dict, dry: bool, table: Table) -> None:
    """What every step imports, imported from the kit's site: torch must see the GPU."""
    command = [sys.executable, "-c", IMPORT_CHECK]
    status, output, seconds, _ = call(command, project, env, 120, project.parent / "imports.log")
    last = output.strip().splitlines()[-1:] or [""]
    if status != 0 or (not dry and "no GPU" in last[0]):
        table.add("imports", f"FAILED (exit {status})", _tail(output))
    else:
        table.add("imports", "ok", f"{last[0]} ({seconds:.0f} s)")


def call(
    command: list[str],
    cwd: Path,
    env: dict,
    limit: float,
    log: Path,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, str, float, int]:
    """Run a step in a session of its own, its output to `log` and each line to `on_line` as
    it comes; at `limit` seconds every process of the session is killed (grandchildren too).
    (exit status, 124 when killed; output; seconds; session id)."""
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out, open(log, "rb") as reader:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        pending, lines = b"", []

        def read() -> None:
            nonlocal pending
            pending += reader.read()
            *complete, pending = pending.split(b"\n")
            for line in complete:
                lines.append(line.decode(errors="replace"))
                if on_line:
                    on_line(lines[-1])

        status = None
        while status is None:
            try:
                status = process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if time.monotonic() - started > limit:
                    kill_group(process)
                    status = 124
            read()
        read()
    if pending:
        lines.append(pending.decode(errors="replace"))
    return status, "\n".join(lines), time.monotonic() - started, process.pid


def session_members(session: int) -> list[int]:
    """The live processes of `session` (from /proc): a step's processes wherever they went,
    in its own process group or another (GNU timeout moves its child into a group of its own)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while read
        if int(fields[3]) == session and fields[0] != "Z":  # state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


def kill_group(process: subprocess.Popen) -> None:
    """SIGTERM to every process of the step's session, SIGKILL 5 s later to what is left: no
    grandchild keeps the GPU while the next step starts."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_members(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            process.poll()  # reaps the leader
            if not session_members(process.pid):
                return
            time.sleep(0.1)


def killed(status: int, seconds: float, limit: float, group: int) -> str:
    if status == 124:
        return f"killed at its {limit:.0f} s limit (session {group})"
    return f"exit {status} after {seconds:.0f} s"


def throughput(project: Path, model: Path, env: dict, dry: bool, limit: float, table, parts):
    command = [sys.executable, "scripts/gpu_kit_bench.py", "--model", str(model)]
    command += ["--parts", ",".join(parts)] + (["--dry"] if dry else [])

    def row(line: str) -> None:
        if line.startswith('{"check"'):
            fields = json.loads(line)
            table.add(fields["check"], fields["result"], fields["detail"])

    log = project.parent / "throughput.log"
    status, output, seconds, group = call(command, project, env, limit, log, row)
    if status != 0:
        table.add("throughput", f"FAILED ({killed(status, seconds, limit, group)})", _tail(output))


def smoke(project: Path, model: Path, env: dict, dry: bool, limit: float, table: Table):
    """bench/gpu_smoke.sh: one row per step as it ends, each step given a fifth of `limit`."""
    command = ["bash", "bench/gpu_smoke.sh", "--model", str(model)] + (["--cpu"] if dry else [])
    env = {**env, "GPU_SMOKE_STEP_S": str(max(int((limit - 15) / 5), 5))}
    rows = SmokeRows(table)
    log = project.parent / "smoke.log"
    status, output, seconds, group = call(command, project, env, limit, log, rows.feed)
    rows.close()
    if status != 0:
        table.add("smoke", f"FAILED ({killed(status, seconds, limit, group)})", _tail(output))


class SmokeRows:
    """gpu_smoke.sh's output, fed line by line: one row per `--- step` (its figures and time,
    or why skipped), added when the step's last line has come."""

    def __init__(self, table: Table) -> None:
        self.table, self.step, self.figures, self.seconds = table, None, [], ""

    def feed(self, line: str) -> None:
        if line.startswith("--- "):
            self.close()
            self.step = line[4:]
            if ": skipped" in self.step:
                name, why = self.step.split(": skipped", 1)
                self.table.add(f"smoke {name}", "skipped", why.strip(" ()"))
                self.step = None
        elif self.step is None:
            return
        elif any(k in line for k in ("tokens/s", "FAILED", "equal across", "agree", "speed-up")):
            self.figures.append(re.sub(r"^[\w ]+: ", "", line.strip()))
        elif re.fullmatch(rf"{re.escape(self.step)}: \d+ s", line.strip()):
            self.seconds = line.strip()
            self.close()

    def close(self) -> None:
        if self.step:
            figures = "; ".join(self.figures) or "no figure"
            self.table.add(f"smoke {self.step}", figures, self.seconds)
        self.step, self.figures, self.seconds = None, [], ""


def smoke_rows(output: str, table: Table) -> None:
    """One row per `--- step` of gpu_smoke.sh's output."""
    rows = SmokeRows(table)
    for line in output.splitlines():
        rows.feed(line)
    rows.close()


def runs(project: Path, model: Path, work: Path, site: Path, env: dict, args, limit, table):
    """A one-iteration run of the recipe and of iterative DPO per seed, all at once, each in a
    session of its own; a row per run as it ends."""
    base = ["iterations=1", f"model={model}", f"output_dir={work / 'runs'}"]
    base += DRY_RUN if args.dry else GPU_RUN
    processes = {}
    for seed in args.seeds.split(","):
        for method, extra in (("recipe", []), ("idpo", IDPO)):
            name = f"{method}-s{seed}"
            sets = [*base, *extra, f"seed={seed}", f"name={name}"]
            command = [sys.executable, "-m", "aries.cli", "run", "--quiet"]
            command += ["--config", "configs/arithmetic-recipe.yaml"]
            command += [arg for item in sets for arg in ("--set", item)]
            log = open(work / f"{name}.log", "w")  # noqa: SIM115 (closed below)
            process = subprocess.Popen(
                command, cwd=project, env=env, stdout=log, stderr=log, start_new_session=True
            )
            processes[name] = (process, log)
    started = time.monotonic()
    sys.path[:0] = [str(project), str(site)]
    waiting = dict(processes)
    while waiting:
        for name, (process, log) in list(waiting.items()):
            status = process.poll()
            if status is None and time.monotonic() - started > limit:
                kill_group(process)
                status = 124
            if status is None:
                continue
            del waiting[name]
            log.close()
            seconds = time.monotonic() - started
            if status == 0:
                summary = run_summary(work / "runs" / name)
                table.add(f"aries run {name}", "done", f"{seconds:.0f} s: {summary}")
            else:
                text = (work / f"{name}.log").read_text()
                result = f"FAILED ({killed(status, seconds, limit, process.pid)})"
                table.add(f"aries run {name}", result, _tail(text))
        time.sleep(0.5)


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


def run_kit(args) -> None:
    started = time.monotonic()
    steps = [step for step in args.steps.split(",") if step]
    unknown = set(steps) - set(STEPS)
    if unknown or not steps:
        raise KitError(f"--steps: unknown {', '.join(sorted(unknown))}; choose from {STEPS}")
    kit = args.kit.resolve()
    manifest = read_manifest(kit)
    work = (args.work or kit / "work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    title = (
        f"## aries GPU kit: --steps {args.steps} ({'CPU dry mode, ' if args.dry else ''}"
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}, budget {args.budget_s:.0f} s, work {work})"
    )
    table = Table(work / "table.md", title)
    project, site, model, fresh = install(kit, manifest, work, table)
    env = offline_env(work, project, site)
    if fresh or "install" in steps:
        import_check(project, env, args.dry, table)
    planned = units(steps)
    minimum = 1.0 if args.dry else MIN_STEP_S
    for index, (unit, parts, _) in enumerate(planned):
        left = args.budget_s - RESERVE_S - (time.monotonic() - started)
        limit = unit_limit(planned, index, left)
        if limit < minimum:
            table.add(unit, "not run", f"{left:.0f} s of the budget left: call run again")
        elif unit == "throughput":
            throughput(project, model, env, args.dry, limit, table, parts)
        elif unit == "smoke":
            smoke(project, model, env, args.dry, limit, table)
        else:
            runs(project, model, work, site, env, args, limit, table)
    table.add("call", "done", f"{time.monotonic() - started:.0f} s; table in {table.path}")
