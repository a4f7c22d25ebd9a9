"""`aries refine`: answer, then refine K rounds, for one question or a prompt source."""

from __future__ import annotations

import argparse
import sys

from aries.core.flags import add_flags, from_flags
from aries.pipeline.runconfig import GenerationConfig, RunConfig

CHAIN_FLAGS = ["rounds", "instruction", "samples"]
"""The chain options of `aries refine` (GenerationConfig fields, with their defaults)."""


MODEL_FLAGS = ["model", "trust_remote_code", "system_prompt", "chat_template"]
"""Run-config options of every command that loads a generation model (RunConfig fields)."""
ENGINE_FLAGS = ["backend", "batch_size"]
SAMPLING_FLAGS = ["max_new_tokens", "temperature", "top_p"]
"""Generation options (GenerationConfig fields) with the defaults of a single command."""


def add_model_arguments(parser: argparse.ArgumentParser, model: str | None = "embedded") -> None:
    """Options every command that loads a generation model shares (`model`: the default)."""
    defaults = {"model": model, "trust_remote_code": False}
    add_flags(parser, RunConfig, MODEL_FLAGS, defaults=defaults)
    add_flags(parser, GenerationConfig, ENGINE_FLAGS, defaults={"backend": "hf", "batch_size": 16})
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="auto (bf16 on GPU, fp32 on CPU), fast (also bf16 on a CPU with bf16 "
        "instructions), float32, bfloat16, float16",
    )


def backend_options_from_args(args: argparse.Namespace) -> dict:
    """The add_model_arguments options that the chosen `--backend` takes, their ranges checked."""
    from aries.backends import backend_options
    from aries.core.models import ModelSettings

    engine = from_flags(args, GenerationConfig, ENGINE_FLAGS)
    settings = ModelSettings(args.model, args.trust_remote_code, args.chat_template, args.dtype)
    return backend_options(
        engine.backend, settings, batch_size=engine.batch_size, device=args.device
    )


def backend_from_args(args: argparse.Namespace, model: str | None = None):
    """The generation backend the add_model_arguments options describe (`model` overrides)."""
    from aries.backends import make_backend

    return make_backend(args.backend, model or args.model, **backend_options_from_args(args))


def sampling_from_args(args: argparse.Namespace):
    """The `Sampling` the add_sampling_arguments options describe, their ranges checked."""
    from aries.backends import Sampling

    checked = from_flags(args, GenerationConfig, SAMPLING_FLAGS)
    seed = from_flags(args, RunConfig, ["seed"]).seed
    return Sampling(checked.max_new_tokens, checked.temperature, checked.top_p, seed)


def add_sampling_arguments(parser: argparse.ArgumentParser, *, temperature: float = 0.0) -> None:
    defaults = {"max_new_tokens": 256, "temperature": temperature, "top_p": 1.0}
    add_flags(parser, GenerationConfig, SAMPLING_FLAGS, defaults=defaults)
    add_flags(parser, RunConfig, ["seed"], defaults={"seed": 0})


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="answer and self-refine (one question, a prompt file or a built-in source)",
        description="Answer each prompt, then refine the answer K rounds (the self-refinement "
        "setting of ARIES, arXiv 2502.05605). One question prints every round; a prompt source "
        "writes chains.jsonl, resuming from the records already there.",
    )
    parser.add_argument("question", nargs="?", help="a single question (prints each round)")
    parser.add_argument(
        "--prompts",
        action="append",
        metavar="SOURCE",
        help="prompt source: a .jsonl/.json/.csv/.parquet file, a datasets folder or hub id, "
        "'reasoning-gym:<task>?size=N&seed=S&...', 'mt-bench' or 'sharegpt?size=N' (repeatable)",
    )
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="ROLE=NAME",
        help="map a file field: prompt=NAME, id=NAME or answer=NAME (repeatable)",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="take at most this many prompts per source"
    )
    add_flags(parser, GenerationConfig, CHAIN_FLAGS)
    parser.add_argument(
        "--pick",
        choices=("last", "vote"),
        default="last",
        help="the final answer: 'last' refinement round (default, the paper's) or 'vote' over the "
        "chain's final answers [design]; written as picked_round into each chain record",
    )
    parser.add_argument(
        "--out",
        default="chains.jsonl",
        help="output JSONL for prompt sources (default: chains.jsonl)",
    )
    parser.add_argument(
        "--too-long",
        choices=("skip", "error"),
        default="skip",
        help="prompts whose chain cannot fit the model's context: skip with a counted "
        "warning (default) or stop with an error",
    )
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    parser.set_defaults(func=run)


def parse_field_map(items: list[str]) -> dict[str, str]:
    from aries import AriesError

    mapping = {}
    for item in items:
        role, eq, name = item.partition("=")
        if not eq or role not in ("prompt", "id", "answer") or not name:
            raise AriesError(f"--field {item!r}: expected prompt=NAME, id=NAME or answer=NAME")
        mapping[role] = name
    return mapping


def run(args: argparse.Namespace) -> int:
    from aries import AriesError
    from aries.core.jsonl import atomic_write_jsonl
    from aries.method.collect import Chains, run_chains, split_by_context
    from aries.method.sources import PromptSource, load_prompts
    from aries.method.vote import pick_round

    if bool(args.question) == bool(args.prompts):
        raise AriesError("give either a question or --prompts SOURCE (not both)")
    chain = from_flags(args, GenerationConfig, CHAIN_FLAGS)
    if args.question:
        prompts = [{"id": "question", "prompt": args.question}]
    else:
        fields = parse_field_map(args.field)
        prompts = []
        for spec in args.prompts:
            source = PromptSource.parse(spec)
            source.fields = fields or source.fields
            source.size = args.size or source.size
            prompts += load_prompts(source)
    settings = Chains(
        chain.rounds,
        sampling_from_args(args),
        chain.instruction,
        args.system_prompt,
        chain.samples,
    )
    backend = backend_from_args(args)
    prompts, too_long = split_by_context(backend, prompts, settings)
    if too_long:
        ids = ", ".join(p["id"] for p in too_long[:5])
        message = f"{len(too_long)} prompt(s) do not fit the model's context ({ids}...)"
        if args.too_long == "error" or not prompts:
            raise AriesError(message)
        print(f"aries refine: warning: skipped {message}", file=sys.stderr)
    out = None if args.question else args.out
    records = run_chains(backend, prompts, settings, out_path=out, progress=not args.question)
    picks = [pick_round([step["text"] for step in r["chain"]], args.pick) for r in records]
    if args.question:
        for step in records[0]["chain"]:
            title = "answer" if step["round"] == 0 else f"refinement {step['round']}"
            print(f"── {title} ({step['completion_tokens']} tokens, {step['finish_reason']})")
            print(step["text"])
        print(f"── final answer ({args.pick}): round {picks[0]}")
    else:
        records = [{**r, "picked_round": k} for r, k in zip(records, picks, strict=True)]
        atomic_write_jsonl(out, records)
        print(f"wrote {len(records)} chains ({chain.rounds} refinement rounds) to {out}")
    return 0
