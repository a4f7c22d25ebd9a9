"""A larger held-out check of finished runs: the initial model and every iteration's model.

The loop evaluates on `eval.size` held-out prompts (80 in the arithmetic configs), where a 95 %
interval spans about ±11 points. This script draws a bigger fresh set from the same held-out
sources with another seed, removes every problem that any of the runs trained on, and evaluates
each model on it with the loop's own settings (verifier, rounds, instruction, greedy decoding).
It prints accuracy per refinement round with bootstrap intervals, and the paired difference
between each model's last refinement round and the initial model's direct answer (the quantity
of the project's bar).

    python bench/heldout.py RUN [RUN ...] [--size 400] [--seed 2000]

All runs must share the initial model and held-out sources (e.g. an ARIES run and the iterative
DPO run of the same config). Results go to RUN/heldout-<seed>/ (rerunning resumes them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from timing import Record, add_json_flag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--size", type=int, default=400, help="problems drawn per source")
    parser.add_argument("--seed", type=int, default=2000, help="seed of the fresh problems")
    add_json_flag(parser, "heldout")
    args = parser.parse_args()
    record = Record("heldout")

    from aries.evaluation import metrics
    from aries.pipeline.runconfig import load_run_config
    from aries.pipeline.rundir import RunDir
    from aries.pipeline.stages import eval_settings
    from aries.sweep.heldout import evaluate_model, fresh_prompts, heldout_folder

    runs = [RunDir(run) for run in args.runs]
    config = load_run_config(runs[0].config)
    prompts, dropped = fresh_prompts(config, runs, args.size, args.seed)
    print(f"{len(prompts)} fresh held-out problems ({dropped} dropped: trained on or repeated)")
    models = [("initial", config.model, runs[0])]
    for run in runs:
        for t in run.iterations():
            if run.model(t).is_dir():
                models.append((f"{run.root.name} {run.iteration(t).name}", str(run.model(t)), run))
    correct = {}
    for label, model, run in models:
        out = heldout_folder(run, args.seed) / f"{label.split()[-1]}.json"
        result = evaluate_model(
            model, prompts, out_path=out, progress=False, **eval_settings(config)
        )
        correct[label] = np.array([[s >= 1.0 for s in p["scores"]] for p in result["per_prompt"]])

    base = correct["initial"][:, 0]
    figures: dict[str, dict] = {}
    print(f"\n{'model':>28}  " + "  ".join(f"{'round ' + str(k):>22}" for k in range(3)))
    for label, table in correct.items():
        cells = []
        for k in range(table.shape[1]):
            low, high = metrics.bootstrap_ci(table[:, k])
            cells.append(f"{100 * table[:, k].mean():5.1f}% [{100 * low:4.1f}, {100 * high:4.1f}]")
            figures.setdefault(label, {"accuracy_per_round": []})["accuracy_per_round"].append(
                [round(100 * table[:, k].mean(), 1), round(100 * low, 1), round(100 * high, 1)]
            )
        print(f"{label:>28}  " + "  ".join(f"{c:>22}" for c in cells))
    print("\nlast refinement round minus the initial model's direct answer (paired bootstrap):")
    for label, table in correct.items():
        if label == "initial":
            continue
        gain = table[:, -1].astype(float) - base
        low, high = metrics.bootstrap_ci(gain)
        moves = [
            metrics.transitions(table[:, k - 1], table[:, k]) for k in range(1, table.shape[1])
        ]
        rounds = ", ".join(f"+{m['wrong_to_right']}/-{m['right_to_wrong']}" for m in moves)
        figures[label]["gain_vs_initial"] = [
            round(100 * gain.mean(), 1),
            round(100 * low, 1),
            round(100 * high, 1),
        ]
        print(
            f"{label:>28}  {100 * gain.mean():+5.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"
            f"   per round fixed/broken: {rounds}"
        )
    record.write({"problems": len(prompts), "dropped": dropped, "models": figures}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
