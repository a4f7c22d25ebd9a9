"""Kill a tiny ARIES run at random moments in every stage; check it ends as if never killed.

The run is done once uninterrupted, then again in a fresh folder where the same command is
restarted after each of `--kills` SIGKILLs. Kills are aimed: a watcher polls the run folder
(down to every 0.2 ms) and knows which stage is running (the manifest, and an attempt number that
proves this process entered it), whether a training checkpoint is being written or rotated (a
new `checkpoint-<step>/` without its completion marker), whether the trained model is being
saved (a fresh `model.tmp/`) and, from the trainer's progress output, whether reference
log-probabilities or training steps are being computed. Each kill waits for its target phase,
then a random moment in the first half of that phase's length in the uninterrupted run. At the
end the chains, scores, selections, pairs, model weights (max |Δ| <= 1e-5) and evaluations must
equal the uninterrupted run's, and no temporary folder may be left.

    python scripts/kill_anywhere.py --kills 24                 # `aries run`, every stage
    python scripts/kill_anywhere.py --mode accelerate --kills 12
        # `accelerate launch --num_processes 1 --cpu -m aries.cli train RUN --iteration 0`
    python scripts/kill_anywhere.py --mode accelerate --processes 2 --kills 12
        # `torchrun --standalone --nproc_per_node 2 -m aries.cli train RUN --iteration 0`:
        # two gloo ranks (accelerate's launcher starts one process with --cpu)

Exit status 0 when everything matches. Run it under the shared CPU lock: it is a torch job.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from aries.training.checkpoints import CHECKPOINT_COMPLETE  # imports nothing heavy

ITERATION = "0"

# Phases in the order a run goes through them, with the share of the kills aimed at each.
RUN_PLAN = {
    "evaluation (initial model)": 2,
    "collect": 3,
    "score": 2,
    "select": 2,
    "pairs": 2,
    "reference log-probs": 2,
    "training steps": 3,
    "checkpoint write": 4,
    "model save": 3,
    "evaluation": 2,
}
TRAIN_PLAN = {
    "reference log-probs": 2,
    "training steps": 3,
    "checkpoint write": 4,
    "model save": 3,
}
ORDER = {
    "evaluation (initial model)": 0,
    "prompts": 1,
    "collect": 2,
    "score": 3,
    "select": 4,
    "pairs": 5,
    "training setup": 6,
    "reference log-probs": 7,
    "training steps": 8,
    "checkpoint write": 8,  # steps and checkpoint writes alternate
    "checkpoint rotation": 8,
    "model save": 9,
    "tidy-up after the model save": 10,
    "evaluation": 11,
}
"""Where each phase comes in a run: a target behind the current phase can no longer be hit."""
DEFAULT_SECONDS = 0.005  # the length assumed for a phase too short to be seen uninterrupted
SHORTEST = 0.01  # phases shorter than this are killed as soon as they are seen


def tiny_config(output_dir: Path, model: Path, prompts: int) -> dict:
    """One iteration of `prompts` prompts, 1 refinement round + 2 samples, a checkpoint per step."""
    from aries.core.testing import tiny_run_config  # imports nothing heavy at module level

    return tiny_run_config(model, output_dir, prompts=prompts, eval_size=8, chunk_size=4)


class Watcher:
    """Which phase a run process is in, read from its run folder and its output."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.iter_dir = run_dir / f"iter_{ITERATION}"
        self.checkpoints = self.iter_dir / "model.checkpoints"
        self.attempts: dict[tuple[str, str], int] = {}
        self.stale: set[str] = set()
        self.stale_save: int | None = None
        self.progress = ""
        self.tail = ""

    def start(self) -> None:
        """Forget the previous process: stage attempts so far, checkpoints it left unfinished."""
        self.attempts = {key: entry.get("attempts", 0) for key, entry in self._stages().items()}
        self.stale = set(self._unmarked())
        self.stale_save = self._save_identity()
        self.progress = ""
        self.tail = ""

    def _stages(self) -> dict[tuple[str, str], dict]:
        try:
            manifest = json.loads((self.run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}
        stages = {("base", k): v for k, v in manifest["baseline"]["stages"].items()}
        its = manifest["iterations"].get(ITERATION, {}).get("stages", {})
        return stages | {(ITERATION, k): v for k, v in its.items()}

    def _checkpoint_names(self) -> list[str]:
        try:
            names = os.listdir(self.checkpoints)
        except OSError:
            return []
        return [n for n in names if re.fullmatch(r"checkpoint-\d+", n)]

    def _unmarked(self) -> list[str]:
        return [n for n in self._checkpoint_names() if not self._marked(n)]

    def _marked(self, name: str) -> bool:
        return os.path.exists(self.checkpoints / name / CHECKPOINT_COMPLETE)

    def _save_identity(self) -> int | None:
        """When `model.tmp/` last changed: a save left by a killed process keeps its time."""
        try:
            return os.stat(self.iter_dir / "model.tmp").st_ctime_ns
        except OSError:
            return None

    def see_output(self, text: str) -> None:
        """Follow the trainer's progress bars (reference log-probs first, then the steps)."""
        *lines, self.tail = re.split(r"[\r\n]", self.tail + text)
        for line in lines + [self.tail]:
            if "reference log probs" in line:
                self.progress = "reference log-probs"
            elif re.match(r"\s*\d+%\|.*\| \d+/\d+ \[", line) or line.startswith("{'loss'"):
                self.progress = "training steps"  # the trainer's bar has no description

    def phase(self) -> str:
        running = [
            key
            for key, entry in self._stages().items()
            if entry.get("status") == "running"
            and entry.get("attempts", 0) > self.attempts.get(key, 0)
        ]
        if not running:
            return "startup or between stages"
        scope, stage = running[0]
        if scope == "base":
            return "evaluation (initial model)" if stage == "eval" else f"{stage} (initial)"
        if stage == "eval":
            return "evaluation"
        if stage != "train":
            return stage
        self.stale &= set(self._unmarked())  # a stale one deleted on resume is stale no more
        if self._save_identity() not in (None, self.stale_save):
            return "model save"
        if (self.iter_dir / "model").exists():
            return "tidy-up after the model save"
        unmarked = set(self._unmarked()) - self.stale
        if unmarked:
            steps = {int(n.split("-")[1]): n for n in self._checkpoint_names()}
            newest = steps[max(steps)] if steps else None
            return "checkpoint write" if newest in unmarked else "checkpoint rotation"
        return self.progress or "training setup"


class Attempt:
    """One start of the command, its output kept in a log file and shown to the watcher."""

    def __init__(self, command: list[str], log: Path, watcher: Watcher, env: dict):
        watcher.start()
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: accelerate's child dies with it
            env=env,
        )
        self.reader = threading.Thread(target=self._read, args=(watcher,), daemon=True)
        self.reader.start()

    def _read(self, watcher: Watcher) -> None:
        while chunk := self.process.stdout.read1(65536):
            self.log.write(chunk)
            watcher.see_output(chunk.decode("utf-8", "replace"))

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the command and everything it started: torchrun starts each rank in a
        session of its own, which a kill of the launcher's process group would leave running."""
        import psutil  # accelerate's dependency

        try:
            ranks = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            ranks = []
        os.killpg(self.process.pid, signal.SIGKILL)
        for rank in ranks:
            try:
                rank.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(ranks, timeout=30)
        self.wait()

    def wait(self) -> int:
        code = self.process.wait()
        self.reader.join()
        self.log.close()
        return code


def follow(command, log, watcher, env, durations: dict[str, list[float]]) -> int:
    """Run `command` to the end, timing each phase the watcher sees (the uninterrupted run)."""
    attempt = Attempt(command, log, watcher, env)
    phase, since = None, time.monotonic()
    while attempt.running():
        now, current = time.monotonic(), watcher.phase()
        if current != phase:
            if phase is not None:
                durations.setdefault(phase, []).append(now - since)
            phase, since = current, now
        time.sleep(0.002)
    return attempt.wait()


def aimed_kills(command, log, watcher, env, pending: list[str], durations, rng) -> str | None:
    """Start `command`, wait for the first target of `pending` still ahead, kill at a random
    moment in the first half of that phase's uninterrupted length. A phase that recurs (steps,
    checkpoint writes) is hit at its first, second or third occurrence, so kills spread over
    steps. Targets the run has passed are dropped from `pending`.

    Returns the phase the kill landed in, or None when the command ran to its end.
    """
    attempt = Attempt(command, log, watcher, env)
    aimed, skip, entered, previous, length = None, 0, 0, None, DEFAULT_SECONDS
    while attempt.running():
        phase = watcher.phase()
        while pending and ORDER[pending[0]] < ORDER.get(phase, -1):
            print(f"  {pending.pop(0)}: passed before a kill could land in it", flush=True)
        if pending and pending[0] != aimed:
            aimed, entered = pending[0], 0
            skip = rng.randrange(min(3, len(durations.get(aimed, [])) or 1))
            length = _mean(durations.get(aimed)) or DEFAULT_SECONDS
        if phase == aimed and previous != phase:
            entered += 1
        previous = phase
        if phase == aimed and entered > skip:
            # a phase too short to time (selection takes ~2 ms) is hit at first sight
            delay = rng.uniform(0, length / 2) if length >= SHORTEST else 0.0
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and attempt.running():
                time.sleep(0.0002)
            landed = watcher.phase()
            if attempt.running():
                attempt.kill()
                return landed
        time.sleep(0.0002 if length < 0.1 else 0.002)  # short phases need a quick eye
    code = attempt.wait()
    if code != 0:
        raise SystemExit(f"the restarted command failed (exit {code}); see {log}")
    return None


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def allocate(plan: dict[str, int], kills: int) -> list[str]:
    """`kills` targets in pipeline order, shared out in proportion to `plan`, at least 1 each."""
    total = sum(plan.values())
    counts = {phase: max(1, round(kills * share / total)) for phase, share in plan.items()}
    order = sorted(plan, key=lambda p: plan[p], reverse=True)
    index = 0
    while sum(counts.values()) != kills and index < 10 * len(plan):
        phase = order[index % len(order)]
        step = 1 if sum(counts.values()) < kills else -1
        if counts[phase] + step >= 1:
            counts[phase] += step
        index += 1
    return [phase for phase in plan for _ in range(counts[phase])]


def compare(clean: Path, killed: Path) -> list[tuple[str, bool, str]]:
    """Every file a later stage or the user reads, the killed run's against the clean one's."""
    import datasets
    from safetensors.torch import load_file

    results = []
    for name in ("chains.jsonl", "scores.jsonl", "selections.jsonl", "eval.chains.jsonl"):
        a, b = (d / f"iter_{ITERATION}" / name for d in (clean, killed))
        lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
        ordered = lines_a == lines_b
        same = ordered or sorted(lines_a) == sorted(lines_b)
        detail = f"{len(lines_a)} records" + ("" if ordered or not same else ", other order")
        results.append((name, same and (ordered or "chains" in name), detail))
    rows = [
        datasets.load_from_disk(str(d / f"iter_{ITERATION}" / "pairs")).to_list()
        for d in (clean, killed)
    ]
    results.append(("pairs/", rows[0] == rows[1], f"{len(rows[0])} rows"))
    weights = [
        load_file(d / f"iter_{ITERATION}" / "model" / "model.safetensors") for d in (clean, killed)
    ]
    same_keys = weights[0].keys() == weights[1].keys()
    diff = (
        max((float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0]), default=0.0)
        if same_keys
        else float("inf")
    )
    results.append(
        ("model weights", diff <= 1e-5, f"max |Δ| = {diff:.2e} over {len(weights[0])} tensors")
    )
    for name in ("eval_base.json", f"iter_{ITERATION}/eval.json"):
        a, b = (_eval_numbers(d / name) for d in (clean, killed))
        results.append((name, a == b, f"{len(a['per_prompt'])} prompts"))
    leftovers = sorted(
        str(p.relative_to(killed))
        for p in killed.rglob("*")
        if p.name.endswith((".tmp", ".old", ".checkpoints")) and not p.name.startswith(".")
    )
    results.append(("leftover folders", not leftovers, ", ".join(leftovers) or "none"))
    return results


def _eval_numbers(path: Path) -> dict:
    """eval.json without what differs between two folders or moments (paths, times)."""
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in ("model", "seconds", "created")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("run", "accelerate"), default="run")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="accelerate mode: train with this many CPU ranks (torchrun, gloo) when above 1",
    )
    parser.add_argument("--kills", type=int, default=24, help="planned SIGKILLs (at least)")
    parser.add_argument("--prompts", type=int, default=24, help="training prompts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--workdir", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--model", help="a model folder (default: the tiny random Llama)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    import yaml

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="kill-anywhere-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else workdir / "tiny-llama"
    if not args.model and not (model / "config.json").exists():
        from aries.core.models import embedded_model_path
        from aries.core.testing import save_tiny_llama

        save_tiny_llama(model, embedded_model_path())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if args.processes > 1:
        env["OMP_NUM_THREADS"] = "1"  # one thread per rank on a small machine
    runs = {}
    for name in ("clean", "killed"):
        shutil.rmtree(workdir / name, ignore_errors=True)
        (workdir / name).mkdir()
        config = workdir / name / "config.yaml"
        config.write_text(yaml.safe_dump(tiny_config(workdir / name / "runs", model, args.prompts)))
        runs[name] = (config, workdir / name / "runs" / "tiny")

    def aries(*words: str) -> list[str]:
        return [sys.executable, "-m", "aries.cli", *words]

    def commands(name: str) -> tuple[list[str], list[list[str]], list[list[str]]]:
        """(before, killed, after): the commands run uninterrupted, under kills, and after."""
        config, run_dir = runs[name]
        run = aries("run", "--config", str(config))
        if args.mode == "run":
            return [], run, []
        if args.processes > 1:  # `accelerate launch --cpu` would start one process
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            launch += [f"--nproc_per_node={args.processes}"]
        else:
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
            launch += ["--num_machines", "1", "--cpu", "--mixed_precision", "no"]
            launch += ["--dynamo_backend", "no"]
        launch += ["-m", "aries.cli", "train", str(run_dir)]
        return [run + ["--stop-before", "train"]], launch + ["--iteration", ITERATION], [run]

    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()

    # 1. uninterrupted, timing every phase
    before, main_command, after = commands("clean")
    watcher = Watcher(runs["clean"][1])
    durations: dict[str, list[float]] = {}
    for index, command in enumerate(before + [main_command] + after):
        code = follow(command, logs / f"clean-{index}.log", watcher, env, durations)
        if code != 0:
            raise SystemExit(f"the uninterrupted run failed (exit {code}); see {logs}")
    print(f"uninterrupted run: {time.monotonic() - started:.0f} s; phase lengths (s):")
    for phase, times in durations.items():
        print(f"  {phase:32s} {_mean(times):8.3f}  (seen {len(times)}x)")

    # 2. the same under kills, restarting the same command after each
    before, main_command, after = commands("killed")
    watcher = Watcher(runs["killed"][1])
    for index, command in enumerate(before):
        if follow(command, logs / f"killed-before-{index}.log", watcher, env, {}) != 0:
            raise SystemExit(f"{' '.join(command)} failed; see {logs}")
    rng = random.Random(args.seed)
    landed: Counter[str] = Counter()
    pending = allocate(RUN_PLAN if args.mode == "run" else TRAIN_PLAN, args.kills)
    attempt, finished = 0, False
    while pending and attempt < 3 * args.kills:
        attempt += 1
        log = logs / f"killed-{attempt:03d}.log"
        phase = aimed_kills(main_command, log, watcher, env, pending, durations, rng)
        if phase is None:
            finished = True
            break
        landed[phase] += 1
        aimed = pending[0]
        if phase == aimed:
            pending.pop(0)
        print(f"  kill {attempt:2d}: aimed at {aimed}, landed in {phase}", flush=True)
    if not finished:  # the restart that runs to the end
        if follow(main_command, logs / "killed-final.log", watcher, env, {}) != 0:
            raise SystemExit(f"the last restart failed; see {logs / 'killed-final.log'}")
    for index, command in enumerate(after):
        if follow(command, logs / f"killed-after-{index}.log", watcher, env, {}) != 0:
            raise SystemExit(f"{' '.join(command)} failed; see {logs}")

    # 3. the summary
    results = compare(runs["clean"][1], runs["killed"][1])
    if args.processes > 1:  # a world of N ranks, not N independent one-process worlds
        world = f"[aries] train: {args.processes} processes"
        ranks = [world in p.read_text(errors="replace") for p in sorted(logs.glob("clean-*"))]
        results.append(("world size", any(ranks), f"{world!r} in the trainer's output"))
    ok = all(same for _, same, _ in results)
    shown = " ".join(main_command[1:]).replace(str(workdir), "<workdir>")
    print(
        f"\nkill-anywhere ({args.mode}, {args.processes} process(es)): "
        f"{sum(landed.values())} SIGKILLs of `{shown}`, "
        f"restarted after each; {time.monotonic() - started:.0f} s in all"
    )
    order = list(ORDER) + [p for p in landed if p not in ORDER]
    for phase in order:
        if landed[phase]:
            print(f"  {phase:32s} {landed[phase]:3d} kills")
    writes = landed["checkpoint write"] + landed["checkpoint rotation"] + landed["model save"]
    print(f"  {'checkpoint or model writes':32s} {writes:3d} kills")
    skipped = sum(
        "[aries] skipping checkpoint" in p.read_text(errors="replace")
        for p in logs.glob("killed-*")
    )
    print(f"restarts that found and skipped an incomplete checkpoint: {skipped}")
    print("against the uninterrupted run:")
    for name, same, detail in results:
        print(f"  {name:20s} {'equal' if same else 'DIFFERENT'}  ({detail})")
    print("PASS" if ok else "FAIL")
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
