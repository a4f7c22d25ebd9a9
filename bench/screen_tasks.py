"""Screen reasoning-gym tasks for the efficacy benchmark's second task (issue 10).

A useful second task leaves the model room to learn and something to learn from: a direct
accuracy of 20-60 %, and answers that no single value dominates. The second criterion is the
lesson of `gcd` (results/efficacy-gcd.md): 22.5 % of its answers are 1, and both trained models
learnt to answer 1 to every problem. For each task this prints the greedy direct accuracy with a
95 % bootstrap interval, the share of the commonest gold answer and of the model's commonest
answer, and how often the model writes no answer at all.

    python bench/screen_tasks.py [--model embedded] [--size 100] [--seed 5000] [--tasks SPEC ...]

The screening seed is neither pool of bench/efficacy.yaml (3000, 7000) nor a training seed, so
screening looks at no problem the benchmark reports. Chains go to
runs/screen/<model>-<max new tokens>/seed-<seed>/ (rerunning resumes them; another model or
budget gets its own folder, so no answer is reused across them).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from timing import Record, add_json_flag

# Easy settings of tasks a 135M model might solve; each is `reasoning-gym:<task>?<options>`.
CANDIDATES = [
    "chain_sum?min_terms=3&max_terms=3&min_digits=1&max_digits=1",
    "simple_equations?min_terms=2&max_terms=2&max_value=20",
    "lcm?max_value=12",
    "leg_counting?min_animals=1&max_animals=2&max_instances=3",
    "letter_counting?min_words=3&max_words=5",
    "spell_backward?min_word_len=3&max_word_len=5",
    "word_sequence_reversal?min_words=3&max_words=4",
    "word_sorting?min_words=3&max_words=4&max_word_length=6",
    "number_sorting?min_numbers=3&max_numbers=4&max_decimals=0&min_value=0&max_value=99",
    "number_filtering?min_numbers=3&max_numbers=5&max_decimals=0&min_value=0&max_value=99",
    "family_relationships",
]


def slug(text: str) -> str:
    """`text` as one file name (task options, model folders)."""
    return re.sub(r"[^\w=.-]+", "_", text).strip("_")


def model_answer(text: str) -> str:
    """What the verifier reads: the text after `Answer:`, else the last number, else ''."""
    from aries.rewards.verifiers import final_answer, last_number, normalise

    return normalise(final_answer(text) or last_number(text) or "")


def screen(backend, spec: str, args: argparse.Namespace) -> dict:
    """Greedy direct answers to `args.size` problems of one task, verified and summarised."""
    from aries.backends import Sampling
    from aries.core.jsonl import read_jsonl
    from aries.evaluation import metrics
    from aries.evaluation.evaluate import evaluate
    from aries.method.sources import PromptSource, load_prompts
    from aries.rewards import make_reward_source

    source = PromptSource.parse(f"reasoning-gym:{spec}")
    source.size, source.seed = args.size, args.seed
    prompts = load_prompts(source)
    out = args.out / (slug(spec) + ".json")
    result = evaluate(
        backend,
        prompts,
        rounds=0,
        sampling=Sampling(args.max_new_tokens, 0.0, 1.0, 0),
        out_path=out,
        verifier=make_reward_source("verifier"),
        benchmark=source.name,
        model=args.model,
        progress=False,
    )
    correct = np.array([p["scores"][0] >= 1.0 for p in result["per_prompt"]])
    low, high = metrics.bootstrap_ci(correct)
    chains = {r["id"]: r for r in read_jsonl(out.with_name(out.stem + ".chains.jsonl"))}
    answers = [model_answer(chains[p["id"]]["chain"][0]["text"]) for p in result["per_prompt"]]
    gold = [str(p["answer"]).strip().casefold() for p in prompts]
    return {
        "task": spec,
        "n": len(correct),
        "accuracy": 100 * correct.mean(),
        "ci95": [100 * low, 100 * high],
        "top_gold": _top_share(gold),
        "top_model": _top_share(answers),
        "no_answer": 100 * sum(not a for a in answers) / len(answers),
        "seconds": result["seconds"],
    }


def _top_share(values: list[str]) -> tuple[str, float]:
    value, count = Counter(values).most_common(1)[0]
    return value, 100 * count / len(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="model to screen with")
    parser.add_argument("--size", type=int, default=100, help="problems per task")
    parser.add_argument("--seed", type=int, default=5000, help="seed of the screening problems")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="as the benchmark's eval")
    parser.add_argument("--tasks", nargs="+", default=CANDIDATES, help="<task>?<options> specs")
    add_json_flag(parser, "screen_tasks")
    args = parser.parse_args()
    record = Record("screen_tasks")
    args.out = (
        Path("runs/screen") / f"{slug(args.model)}-{args.max_new_tokens}" / f"seed-{args.seed}"
    )

    from aries.backends import make_backend

    backend = make_backend("hf", args.model)
    rows = []
    try:
        for spec in args.tasks:
            rows.append(screen(backend, spec, args))
            row = rows[-1]
            print(f"[screen] {spec}: {row['accuracy']:.1f} % in {row['seconds']:.0f} s", flush=True)
    finally:
        backend.close()

    print(
        "\n| task | n | direct accuracy [95 % CI] | commonest gold answer | "
        "model's commonest answer | no answer |\n|---|---|---|---|---|---|"
    )
    for row in rows:
        (gold, gold_share), (said, said_share) = row["top_gold"], row["top_model"]
        print(
            f"| `{row['task']}` | {row['n']} | {row['accuracy']:.1f} "
            f"[{row['ci95'][0]:.1f}, {row['ci95'][1]:.1f}] | {gold!r} {gold_share:.0f} % | "
            f"{said!r} {said_share:.0f} % | {row['no_answer']:.0f} % |"
        )
    record.write({"model": args.model, "seed": args.seed, "tasks": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
