"""The loop's stages (docs/specification.md 0-4), one plain function each:
`stage(run, config, t, session)`.

A stage reads its inputs from the run directory, writes its outputs there and returns the counts
that the manifest records; `t` is the iteration (None: work on the initial model). The
`Session` (aries/pipeline/session.py) holds what consecutive stages share: the loaded generation
backend, the run's LoRA servers and the console.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.backends import Sampling
from aries.core.config import Options
from aries.core.distributed import on_main_process
from aries.core.jsonl import atomic_write_jsonl, replace_folder, writing
from aries.pipeline.runconfig import RunConfig
from aries.pipeline.rundir import RunDir
from aries.pipeline.session import Session


def policy(run: RunDir, config: RunConfig, t: int) -> str:
    """π_t: the initial model (after SFT, if any) for t = 0, else iteration t-1's output."""
    if t == 0:
        return str(run.sft_model) if config.sft.enabled else config.model
    return str(run.model(t - 1))


def training_start(run: RunDir, config: RunConfig, t: int) -> str:
    """The model iteration t's preference training starts from: π_t, or with `sft.warm_start`
    the SFT model of iteration 0's own pairs."""
    if t == 0 and config.sft.warm_start:
        return str(run.sft_model)
    return policy(run, config, t)


def heldout_prompts(run: RunDir, config: RunConfig) -> list[dict[str, Any]]:
    """The held-out evaluation prompts, drawn once and kept in `heldout.jsonl`."""
    from aries.method.sources import PromptSource, load_prompts

    if not config.eval.enabled:
        return []
    saved = run.read_heldout()
    if saved is not None:
        return saved
    heldout = []
    for spec in config.eval.sources:
        source = PromptSource.parse(spec)
        source.size = config.eval.size
        heldout += load_prompts(source)
    run.write_heldout(heldout)
    return heldout


def eval_settings(config: RunConfig) -> dict[str, Any]:
    """How the loop evaluates a model: greedy answer + `eval.rounds` refinements, verified."""
    from aries.rewards import make_reward_source

    return {
        "rounds": config.eval.rounds,
        "sampling": Sampling(config.eval.max_new_tokens, 0.0, 1.0, config.seed),
        "verifier": make_reward_source(config.eval.verifier.settings),
        "instruction": config.generation.instruction,
        "system_prompt": config.system_prompt,
        "seed": config.seed,
    }


def sft(run: RunDir, config: RunConfig, t: None, session: Session) -> dict[str, Any]:
    """Stage 0 (docs/specification.md Eq. 4) on the preference data of `sft.dataset`."""
    from aries.method.pairs import sft_dataset

    dataset, instruction = config.sft.dataset, config.generation.instruction
    count = on_main_process(  # one writer under a launcher
        lambda: sft_dataset(dataset, run.sft_examples, instruction, config.system_prompt)
    )
    return {"examples": count, **_train_sft(run, config, session.progress)}


def warm_start(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """Stage 0 from the first collection (`sft.warm_start`): SFT on iteration t's selections."""
    from aries.method.pairs import save_dataset, sft_examples

    examples = sft_examples(
        run.read_selections(t),
        instruction=config.generation.instruction,
        system_prompt=config.system_prompt,
    )
    if not examples:
        raise AriesError(f"{run.selections(t)}: no selected pair to warm-start from")
    on_main_process(lambda: save_dataset(examples, run.sft_examples))
    session.release()  # hand the memory to the trainer
    return {"examples": len(examples), **_train_sft(run, config, session.progress)}


def _train_sft(run: RunDir, config: RunConfig, progress: bool) -> dict[str, float]:
    """The initial model trained on the run's SFT examples, saved as the run's SFT model."""
    from aries.training.train import train_sft

    metrics = train_sft(
        config.model_settings(),
        run.sft_examples,
        run.sft_model,
        config.sft,
        seed=config.seed,
        log_dir=run.logs(None),
        report_to=config.train.report_to,
        progress=progress,
    )
    return _numbers(metrics)


def prompts(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    """Iteration t's slice of every prompt source (its share of the weighted mixture), minus
    anything held out."""
    from aries.method.sources import PromptSource, load_prompts, mixture_counts, prompt_key

    sources = [PromptSource.parse(spec) for spec in config.prompts.sources]
    counts = mixture_counts([s.weight for s in sources], config.prompts.per_iteration)
    drawn = []
    for source, count in zip(sources, counts):
        if count:
            source.offset, source.size = source.offset + t * count, count
            drawn += load_prompts(source)
    heldout = {prompt_key(p) for p in heldout_prompts(run, config)}
    excluded = {prompt_key(p) for spec in config.prompts.exclude for p in load_prompts(spec)}
    kept = [p for p in drawn if prompt_key(p) not in heldout | excluded]
    atomic_write_jsonl(run.prompts(t), kept)
    return {"prompts": len(kept), "dropped_heldout_overlap": len(drawn) - len(kept)}


def collect(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    return collect_into(run, config, t, session, policy(run, config, t), run.chains(t))


def collect_into(
    run: RunDir, config: RunConfig, t: int, session: Session, model: str, out: Path
) -> dict[str, Any]:
    """`model`'s chains (answer, refinements, samples) for iteration t's prompts, into `out`."""
    from aries.method.collect import Chains, run_chains, split_by_context

    gen = config.generation
    prompts = run.read_prompts(t)
    backend = session.backend(model)
    settings = Chains(
        gen.rounds,
        Sampling(gen.max_new_tokens, gen.temperature, gen.top_p, config.seed + t),
        gen.instruction,
        config.system_prompt,
        gen.samples,
        gen.answer_temperature,
    )
    fitting, too_long = split_by_context(backend, prompts, settings)
    chains = run_chains(
        backend,
        fitting,
        settings,
        out_path=out,
        chunk_size=gen.chunk_size,
        progress=session.progress,
    )
    responses = [s for c in chains for s in c["chain"] + c.get("samples", [])]
    return {
        "prompts_in": len(prompts),
        "chains": len(chains),
        "dropped_too_long": len(too_long),
        "responses": len(responses),
        "truncated": sum(r["finish_reason"] == "length" for r in responses),
        "completion_tokens": sum(r["completion_tokens"] for r in responses),
    }


def reward_settings(run: RunDir, config: RunConfig, t: int) -> Options:
    """Iteration t's reward source settings: a `judge` without a `model` is the current policy
    π_t, the model that wrote the responses (Self-Rewarding, Yuan et al. 2024, arXiv
    2401.10020)."""
    if config.reward.kind == "judge" and not config.reward.sets("model"):
        return replace(config.reward.settings, model=policy(run, config, t))
    return config.reward.settings


def score(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    return score_into(run, config, t, session, run.chains(t), run.scores(t))


def score_into(
    run: RunDir, config: RunConfig, t: int, session: Session, chains: Path, out: Path
) -> dict[str, Any]:
    """Score a chains file with iteration t's reward source into `out`; returns the counts."""
    from aries.method.score import score_file
    from aries.rewards import make_reward_source

    if config.reward.kind == "judge":
        session.release()  # one model in memory at a time
    source = make_reward_source(reward_settings(run, config, t))
    try:
        stats = score_file(chains, source, out)
    finally:
        source.close()
    return {**{k: v for k, v in stats.items() if k != "source"}, "source": stats["source"]}


def select(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    from aries.method.select import select_pairs

    chains = run.read_chains(t)
    selection = select_pairs(chains, run.read_scores(t), config.selection)
    atomic_write_jsonl(run.selections(t), selection.pairs)
    dropped = sum(selection.drop_counts.values())
    session.log(
        f"iteration {t}: kept {len(chains) - dropped}/{len(chains)} prompts "
        f"({len(selection.pairs)} pairs), dropped {selection.drop_counts}"
    )
    return {
        "prompts_in": len(chains),
        "kept": len(chains) - dropped,
        "selected_pairs": len(selection.pairs),
        "dropped": dropped,
        "drop_counts": selection.drop_counts,
    }


def pairs(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    return pairs_into(config, t, run.read_selections(t), run.pairs(t))


def pairs_into(
    config: RunConfig, t: int, selections: list[dict[str, Any]], out: Path
) -> dict[str, Any]:
    """Iteration t's pair dataset (the config's views) from `selections`, saved to `out`."""
    from aries.method.pairs import build_pairs, save_dataset

    examples = build_pairs(
        selections,
        instruction=config.generation.instruction,
        system_prompt=config.system_prompt,
        w_direct=config.pairs.w_direct,
        w_refine=config.pairs.w_refine,
        w_keep=config.pairs.w_keep,
        seed=config.seed + t,
    )
    if examples:  # the future model's pairs are written by its launched trainer
        on_main_process(lambda: save_dataset(examples, out))
    views = ("direct", "refine", "keep")
    return {"pairs": len(examples), **{v: sum(e["view"] == v for e in examples) for v in views}}


def train(run: RunDir, config: RunConfig, t: int, session: Session) -> dict[str, Any]:
    from aries.core.models import resolve_model

    session.release()  # hand the memory to the trainer
    if not run.pairs(t).is_dir():
        # No pair survived selection: the policy carries over unchanged (copied, then renamed
        # into place whole, like a trained model), by one process under a launcher.
        def carry_over() -> None:
            tmp = run.model(t).with_name(run.model(t).name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            with writing(run.model(t), "the carried-over model", partial=tmp):
                shutil.copytree(resolve_model(training_start(run, config, t)), tmp)
                replace_folder(tmp, run.model(t))

        on_main_process(carry_over)
        return {"steps": 0, "skipped": "no pairs"}
    alpha = config.train.momentum
    trained = run.before_momentum(t) if alpha else run.model(t)
    metrics = train_into(run, config, t, run.pairs(t), trained, progress=session.progress)
    if alpha:
        from aries.training.momentum import write_extrapolated

        previous = before_training(run, config, t)
        on_main_process(lambda: write_extrapolated(trained, previous, run.model(t), alpha))
    return metrics


def before_training(run: RunDir, config: RunConfig, t: int) -> str:
    """θ̂_t, the end of the previous optimisation step before any momentum extrapolation: the
    weights iteration 0 starts from, else iteration t-1's trained weights (its policy when it
    had no pairs)."""
    from aries.core.models import resolve_model

    if t == 0:
        return resolve_model(training_start(run, config, 0))
    kept = run.before_momentum(t - 1)
    return str(kept if kept.is_dir() else run.model(t - 1))


def train_into(
    run: RunDir, config: RunConfig, t: int, pairs_dir: Path, out: Path, *, progress: bool = True
) -> dict[str, float]:
    """Iteration t's preference training on `pairs_dir`, from its training start, into `out`."""
    from aries.core.models import resolve_model
    from aries.training.train import train_preference

    reference = None
    if config.train.reference == "initial" and t > 0:
        reference = resolve_model(policy(run, config, 0))
    metrics = train_preference(
        config.model_settings(resolve_model(training_start(run, config, t))),
        pairs_dir,
        out,
        config.train,
        seed=config.seed + t,
        reference=reference,
        log_dir=run.logs(t),
        progress=progress,
    )
    return _numbers(metrics)


def evaluate(run: RunDir, config: RunConfig, t: int | None, session: Session) -> dict[str, Any]:
    """The model trained in iteration t (None: the initial model) on the held-out prompts."""
    from aries.evaluation.evaltable import format_table
    from aries.evaluation.evaluate import check_held_out
    from aries.evaluation.evaluate import evaluate as evaluate_chains

    model = policy(run, config, 0 if t is None else t + 1)
    heldout = heldout_prompts(run, config)
    if t is not None:  # every prompt trained on so far, not only this iteration's
        check_held_out(heldout, run.trained_prompts(upto=t))
    result = evaluate_chains(
        session.backend(model),
        heldout,
        out_path=run.eval(t),
        benchmark="held-out",
        model=model,
        progress=session.progress,
        **eval_settings(config),
    )
    label = "initial model" if t is None else f"after iteration {t}"
    session.log(f"{label}\n{format_table(result)}")
    return {
        "metric": result["metric"],
        "n": result["n_prompts"],
        "per_round": [round(r["metric"], 4) for r in result["per_round"]],
    }


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in metrics.items() if isinstance(v, int | float)}
