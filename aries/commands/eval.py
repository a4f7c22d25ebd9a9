"""`aries eval`: a metric for the direct answer and every refinement round, with intervals."""

from __future__ import annotations

import argparse

from aries.commands.refine import (
    add_model_arguments,
    add_sampling_arguments,
    backend_from_args,
    sampling_from_args,
)
from aries.core.flags import add_flags, from_flags
from aries.pipeline.runconfig import EvalConfig, GenerationConfig
from aries.rewards.judge import JudgeConfig
from aries.rewards.reward_model import RewardModelConfig

JUDGE_FLAGS = {
    "model": "--judge",
    "mode": "--judge-mode",
    "verdict": "--judge-verdict",
    "max_new_tokens": "--judge-max-new-tokens",
}
"""The judge settings `aries eval --judge MODEL` takes (pairwise by default: answer against
reference in both orders)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model or a run's iteration, per refinement round",
        description="Answer and refine K rounds on a benchmark, then score every round: accuracy "
        "with a verifier for checkable sets, or win rate (raw and length-controlled) against "
        "reference or baseline answers with a reward model or LLM judge. Writes eval.json and "
        "the chains beside it, and prints a table. --seed also picks the problems of generated "
        "benchmarks (reasoning-gym).",
    )
    parser.add_argument(
        "--run", default=None, help="a run directory: evaluate its iteration's model (not --model)"
    )
    parser.add_argument(
        "--iteration",
        type=int,
        default=None,
        help="with --run: which iteration's trained model (default: the latest one)",
    )
    parser.add_argument(
        "--benchmark",
        required=True,
        help="a reasoning-gym task name (gsm_symbolic), 'reasoning-gym:<task>?...', "
        "'gsm8k:<file|hub id>', 'math:<file|hub id>', 'mt-bench', or a prompt file with "
        "'answer' fields",
    )
    add_flags(parser, EvalConfig, ["rounds"])
    parser.add_argument("--size", type=int, default=None, help="evaluate at most N prompts")
    add_flags(parser, RewardModelConfig, {"model": "--reward-model"}, defaults={"model": None})
    add_flags(parser, JudgeConfig, JUDGE_FLAGS, defaults={"model": None, "mode": "pairwise"})
    parser.add_argument(
        "--tie-margin",
        type=float,
        default=0.0,
        help="ties: reward differences up to this, or pairwise win shares within this of 1/2 "
        "(default: 0, exact ties only)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        help="chains.jsonl of a fixed baseline: win rate against its direct answers instead of "
        "the benchmark's reference answers",
    )
    add_flags(parser, GenerationConfig, ["instruction"])
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% intervals"
    )
    parser.add_argument(
        "--out", default="eval.json", help="output file (default: eval.json; chains beside it)"
    )
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    parser.set_defaults(func=run)


def run_model(run_dir: str, iteration: int | None) -> str:
    """The trained model folder of a run's iteration (latest with a model by default)."""
    from aries.pipeline.rundir import RunDir

    run = RunDir(run_dir)
    return str(run.latest_model() if iteration is None else run.trained_model(iteration))


def make_scorer(args: argparse.Namespace, backend, model: str):
    """(verifier, judge): exactly one is set, from --reward-model / --judge or the default."""
    from aries import AriesError
    from aries.rewards import make_reward_source
    from aries.rewards.judge import Judge
    from aries.rewards.pairwise import PairwiseJudge, RewardJudge

    if args.reward_model and args.judge:
        raise AriesError("give --reward-model or --judge, not both")
    if not (args.reward_model or args.judge):
        return make_reward_source("verifier"), None
    if args.reward_model:
        source = make_reward_source({"type": "reward-model", "model": args.reward_model})
    else:
        settings = from_flags(args, JudgeConfig, JUDGE_FLAGS)
        # A model judging itself (Self-Rewarding style) reuses the loaded policy.
        source = Judge(settings, backend=backend if args.judge == model else None)
        if settings.mode == "pairwise":
            return None, PairwiseJudge(source, tie_margin=args.tie_margin)
    return None, RewardJudge(source, tie_margin=args.tie_margin)


def run(args: argparse.Namespace) -> int:
    from aries.evaluation.benchmarks import load_baseline, load_benchmark
    from aries.evaluation.evaltable import format_table
    from aries.evaluation.evaluate import evaluate

    rounds = from_flags(args, EvalConfig, ["rounds"]).rounds
    instruction = from_flags(args, GenerationConfig, ["instruction"]).instruction
    model = run_model(args.run, args.iteration) if args.run else args.model
    prompts = load_benchmark(args.benchmark, size=args.size, seed=args.seed)
    baseline = load_baseline(args.baseline) if args.baseline else None
    backend = backend_from_args(args, model)
    verifier, judge = make_scorer(args, backend, model)
    result = evaluate(
        backend,
        prompts,
        rounds=rounds,
        sampling=sampling_from_args(args),
        out_path=args.out,
        verifier=verifier,
        judge=judge,
        baseline=baseline,
        instruction=instruction,
        system_prompt=args.system_prompt,
        benchmark=args.benchmark,
        model=model,
        n_resamples=args.bootstrap,
    )
    backend.close()
    print(format_table(result))
    print(f"wrote {args.out}")
    return 0
