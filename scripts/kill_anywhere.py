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
    python scripts/kill_anywhere.py --mode loop --kills 10
        # `aries run --launcher 'torchrun --standalone --nproc_per_node 2'`, the loop process
        # alone SIGKILLed (its launched trainer is left to die with it); the restarts must never
        # run two trainers at once, and no process may be left at the end

Exit status 0 when everything matches. Run it under the shared CPU lock: it is a torch job.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from kill_watch import ITERATION, ORDER, Watcher, aimed_kills, follow, mean

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
TRAINER_PHASES = (
    "training setup",
    "reference log-probs",
    "training steps",
    "checkpoint write",
    "checkpoint rotation",
    "model save",
    "tidy-up after the model save",
)
"""Where a launched trainer runs (loop mode counts the kills that land in it)."""
TRAIN_PLAN = {
    "reference log-probs": 2,
    "training steps": 3,
    "checkpoint write": 4,
    "model save": 3,
}


def tiny_config(output_dir: Path, model: Path, prompts: int) -> dict:
    """One iteration of `prompts` prompts, 1 refinement round + 2 samples, a checkpoint per step."""
    from aries.core.testing import tiny_run_config  # imports nothing heavy at module level

    return tiny_run_config(model, output_dir, prompts=prompts, eval_size=8, chunk_size=4)


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


def leftover_processes(workdir: Path) -> list[str]:
    """Processes still running whose command line names the work folder (orphaned ranks)."""
    import psutil

    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}  # this script's own
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        words = process.info["cmdline"] or []
        if process.pid not in mine and any(str(workdir) in word for word in words):
            found.append(f"{process.pid}: {' '.join(words)[:80]}")
    return found


def _eval_numbers(path: Path) -> dict:
    """eval.json without what differs between two folders or moments (paths, times)."""
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in ("model", "seconds", "created")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("run", "accelerate", "loop"), default="run")
    parser.add_argument(
        "--processes",
        type=int,
        help="accelerate mode: train with this many CPU ranks (torchrun, gloo) when above 1 "
        "(default 1); loop mode: the launcher's ranks (default 2)",
    )
    parser.add_argument("--kills", type=int, default=24, help="planned SIGKILLs (at least)")
    parser.add_argument("--prompts", type=int, default=24, help="training prompts")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--workdir", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--model", help="a model folder (default: the tiny random Llama)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    import yaml

    if args.processes is None:
        args.processes = 2 if args.mode == "loop" else 1
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
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        torchrun += [f"--nproc_per_node={args.processes}"]
        if args.mode == "run":
            return [], run, []
        if args.mode == "loop":
            return [], run + ["--launcher", shlex.join(torchrun)], []
        if args.processes > 1:  # `accelerate launch --cpu` would start one process
            launch = torchrun
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
        print(f"  {phase:32s} {mean(times):8.3f}  (seen {len(times)}x)")

    # 2. the same under kills, restarting the same command after each
    before, main_command, after = commands("killed")
    watcher = Watcher(runs["killed"][1])
    for index, command in enumerate(before):
        if follow(command, logs / f"killed-before-{index}.log", watcher, env, {}) != 0:
            raise SystemExit(f"{' '.join(command)} failed; see {logs}")
    rng = random.Random(args.seed)
    landed: Counter[str] = Counter()
    pending = allocate(TRAIN_PLAN if args.mode == "accelerate" else RUN_PLAN, args.kills)
    attempt, finished = 0, False
    while pending and attempt < 3 * args.kills:
        attempt += 1
        log = logs / f"killed-{attempt:03d}.log"
        phase = aimed_kills(
            main_command, log, watcher, env, pending, durations, rng, tree=args.mode != "loop"
        )
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
    if args.mode == "loop":
        during = sum(landed[phase] for phase in TRAINER_PHASES)
        results.append(("kills in training", during >= 3, f"{during} while the trainer ran"))
        left = leftover_processes(workdir)
        results.append(("leftover processes", not left, ", ".join(left) or "none"))
    if args.processes > 1 and args.mode != "run":  # a world of N ranks, not N worlds of one
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
