"""`aries run --check`: validate a run config completely and describe what the run would do.

Nothing is loaded or run: the config is resolved (unknown keys, types, choices and ranges, loss
types against the installed TRL, method constraints), every reference it makes is resolved on disk
and in the local Hugging Face cache (models, prompt sources, datasets), and the plan is printed: the
stages of the method in order, the models, what each iteration collects, selects and trains.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from aries import AriesError
from aries.core.registry import Registry
from aries.pipeline.methods import METHODS
from aries.pipeline.runconfig import RunConfig


def check_config(config: RunConfig) -> None:
    """What resolve_config leaves to the stages: every model, prompt source, dataset and file the
    run will read is resolved, without loading weights (aries.pipeline.references)."""
    from aries.pipeline.references import check_references

    check_references(config)
    check_writable(Path(config.output_dir), "output_dir")
    check_max_length(config)


def check_writable(folder: Path, key: str) -> None:
    """Create `folder` and a file in it, then remove what this made: an output folder that can
    never be written fails now, not after collection has spent its minutes."""
    folder = folder.expanduser().absolute()
    made = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise AriesError(f"{key}: cannot write to {folder} ({error.strerror})") from None
    finally:
        for path in made:  # deepest first
            if path.is_dir():
                path.rmdir()


LONGEST_SAMPLE = 16
"""Prompts per source rendered by `check_max_length`: the longest by characters."""

PROMPTS_READ = 2000
"""At most this many of a source's prompts are read to find its longest."""


def check_max_length(config: RunConfig) -> None:
    """`train.max_length` holds the prompt of every pair the run will train on, or it fails now,
    before collection spends its minutes (`aries run` and `--check` alike).

    A pair's prompt is the refine view `x, y, z` (direct view `x` where the method trains that
    one only); TRL cuts prompt + answer to max_length from the end, so a prompt of max_length
    tokens leaves no answer token to learn from. The rule: the longest prompt the run draws
    (the longest by characters of each source's share, rendered with the policy's tokenizer and
    chat template as training renders it, with an empty previous answer y) plus one answer token
    fits. Only the tokenizer is loaded, never the weights.
    """
    if not config.iterations or not any(
        s.name == "train" for s in METHODS[config.method].plan.per_iteration
    ):
        return
    longest = longest_prompt(config)
    if longest is None:
        return
    tokens, where, view = longest
    if tokens >= config.train.max_length:
        answers = 2 if view == "refine" else 1  # refine: the previous answer and the new one
        raise AriesError(
            f"train.max_length: {config.train.max_length} cannot hold the longest prompt the run "
            f"trains on: {tokens} tokens in the {view} view at {where}; set it to at least "
            f"{tokens + answers * config.generation.max_new_tokens} (the prompt and {answers} "
            "answer(s) of generation.max_new_tokens)"
        )


def longest_prompt(config: RunConfig) -> tuple[int, str, str] | None:
    """(tokens, where it came from, view) of the longest training prompt among each source's
    `LONGEST_SAMPLE` longest by characters, of the prompts the run draws from it."""
    from dataclasses import replace

    from aries.core.models import load_tokenizer
    from aries.core.views import direct_messages, prompt_token_ids, refine_messages
    from aries.method.sources import PromptSource, located_prompts, mixture_counts

    refine = config.pairs.w_refine > 0 or config.pairs.w_keep > 0
    view = "refine" if refine else "direct"

    def messages(prompt: str) -> list[dict[str, str]]:
        system = config.system_prompt
        if refine:
            return refine_messages(prompt, "", config.generation.instruction, system_prompt=system)
        return direct_messages(prompt, system_prompt=system)

    try:
        tokenizer = load_tokenizer(config.model_settings())
    except AriesError as error:
        raise AriesError(f"model: {error}") from None
    sources = [PromptSource.parse(s) for s in config.prompts.sources]
    counts = mixture_counts([s.weight for s in sources], config.prompts.per_iteration)
    longest = None
    for index, (source, count) in enumerate(zip(sources, counts)):
        if not count:
            continue
        drawn = replace(source, size=min(count * config.iterations, PROMPTS_READ))
        try:
            located = located_prompts(drawn)
        except AriesError as error:
            raise AriesError(f"prompts.sources[{index}]: {error}") from None
        located.sort(key=lambda item: len(item[1]["prompt"]), reverse=True)
        for where, record in located[:LONGEST_SAMPLE]:
            tokens = len(prompt_token_ids(tokenizer, messages(record["prompt"])))
            if longest is None or tokens > longest[0]:
                longest = (tokens, f"{where} (prompts.sources[{index}])", view)
    return longest


def describe_plan(config: RunConfig) -> str:
    """The resolved plan, one line per stage that the config asks for."""

    plan = METHODS[config.method].plan
    lines = [
        f"run {config.run_dir}: method {config.method}, {config.iterations} iteration(s), "
        f"seed {config.seed}",
        f"  π_0 (initial policy): {config.model}",
        "  before the first iteration:",
    ]
    lines += [
        f"    {step.name}: {_describe(step.name, config)}"
        for step in plan.once
        if step.when(config, None)
    ]
    if plan.per_iteration and config.iterations:
        lines.append(
            f"  each iteration t = 0..{config.iterations - 1} (π_t: t = 0 the initial "
            "policy, else iteration t-1's model):"
        )
        lines += [
            f"    {step.name}{_when_note(step, config)}: {_describe(step.name, config)}"
            for step in plan.per_iteration
            if any(step.when(config, t) for t in range(config.iterations))
        ]
        lines.append(f"  writes π_(t+1) to {config.run_dir}/iter_<t>/model")
    return "\n".join(lines)


def _when_note(step, config: RunConfig) -> str:
    ran = [t for t in range(config.iterations) if step.when(config, t)]
    return "" if len(ran) == config.iterations else f" (iterations {ran})"


def _describe(name: str, config: RunConfig) -> str:

    own = METHODS[config.method].describe  # the method's own stages first
    if name in own:
        return own[name]
    describe = DESCRIPTIONS.get(name)
    return describe(config) if describe else "(see the stage's docstring)"


DESCRIPTIONS: Registry[Callable[[RunConfig], str]] = Registry("stage description")
"""Stage name -> what that stage will do under a config, one line for `aries run --check`."""


@DESCRIPTIONS.register("sft")
def _sft(config: RunConfig) -> str:
    return f"SFT (docs/specification.md Eq. 4) of {config.model} on {config.sft.dataset}"


@DESCRIPTIONS.register("eval")
def _eval(config: RunConfig) -> str:
    sources = ", ".join(_source_name(s) for s in config.eval.sources)
    return (
        f"{config.eval.size} held-out prompts per source ({sources}), greedy answer + "
        f"{config.eval.rounds} refinement round(s), scored by {config.eval.verifier}"
    )


@DESCRIPTIONS.register("prompts")
def _prompts(config: RunConfig) -> str:
    sources = ", ".join(_source_name(s) for s in config.prompts.sources)
    return f"{config.prompts.per_iteration} fresh prompts from {sources} (held-out removed)"


@DESCRIPTIONS.register("collect")
def _collect(config: RunConfig) -> str:
    gen = config.generation
    return (
        f"π_t writes 1 answer + {gen.rounds} refinement round(s) + {gen.samples} direct "
        f"sample(s) per prompt ({gen.backend} backend, temperature {gen.temperature}, "
        f"{gen.max_new_tokens} tokens)"
    )


@DESCRIPTIONS.register("teacher")
def _teacher(config: RunConfig) -> str:
    teacher = config.teacher
    return (
        f"{teacher.samples} answer(s) per prompt from teacher {teacher.model} "
        f"({teacher.backend} backend) added to the candidates"
    )


@DESCRIPTIONS.register("score")
def _score(config: RunConfig) -> str:
    self_judge = config.reward.kind == "judge" and not config.reward.sets("model")
    judge = "; the judge is π_t itself (Self-Rewarding)" if self_judge else ""
    return f"every response scored by {config.reward}{judge}"


@DESCRIPTIONS.register("select")
def _select(config: RunConfig) -> str:
    sel = config.selection
    margin = f", margin >= {sel.margin}" if sel.strategy == "reward" and sel.margin else ""
    return (
        f"strategy {sel.strategy} among candidates '{sel.candidates}'{margin}, up to "
        f"{sel.pairs_per_prompt} pair(s) per prompt; win rates P̂(y ≻ π_t) recorded"
    )


@DESCRIPTIONS.register("warm_start")
def _warm_start(config: RunConfig) -> str:
    return "SFT on iteration 0's selected pairs (both views), training then starts from it"


@DESCRIPTIONS.register("pairs")
def _pairs(config: RunConfig) -> str:
    weights = config.pairs
    return (
        f"view weights direct {weights.w_direct}, refine {weights.w_refine}, keep {weights.w_keep}"
    )


@DESCRIPTIONS.register("train")
def _train(config: RunConfig) -> str:
    from aries.training.losses import ARIES_LOSSES, aries_loss, reference_kind

    train = config.train
    own = aries_loss(train.loss_type)
    paper = f" ({ARIES_LOSSES[own].paper})" if own else " (TRL DPOTrainer)"
    reference = {
        "none": "none (reference-free)",
        "previous": "π_t",
        "initial": "π_0" + (", and π_t's log-probs" if own == "inpo" else ""),
    }[reference_kind(train.loss_type, train.reference)]
    extra = {"simpo": f", γ {train.simpo_gamma}", "inpo": f", τ {train.inpo_tau}"}
    return (
        f"loss {train.loss_type}{paper}, β {train.beta}{extra.get(own, '')}, reference "
        f"{reference}; lr {train.learning_rate}, {train.epochs} epoch(s), batch "
        f"{train.batch_size} x {train.gradient_accumulation_steps}, prefix sharing "
        f"{'on' if train.prefix_sharing else 'off'}"
    ) + (
        f"; then APO momentum α {train.momentum}: θ_(t+1) = θ̂ + α(θ̂ − θ̂_prev) on the "
        "trained weights (arXiv 2410.06293)"
        if train.momentum
        else ""
    )


def _source_name(spec) -> str:
    return spec.get("name", str(spec)) if isinstance(spec, dict) else str(spec)
