"""The ARIES loop (METHOD.md stages 0-4): collect → score → select → pairs → train → evaluate.

Every stage reads files from the run directory and writes files there; the manifest records which
stages are done. A killed run restarted with the same command skips finished stages, completes a
partly written chains file without duplicates, and resumes training from its last checkpoint.

    runs/<name>/config.yaml            resolved configuration (every default written out)
    runs/<name>/manifest.json          per iteration and stage: status, counts, timings, memory
    runs/<name>/eval_base.json         the initial model on the held-out prompts
    runs/<name>/iter_<t>/prompts.jsonl, chains.jsonl, scores.jsonl, selections.jsonl,
                         pairs/, model/, eval.json
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from aries import AriesError
from aries.backends import Sampling
from aries.config import config_hash, from_dict, to_dict
from aries.jsonl import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from aries.select import SelectionConfig
from aries.train import SFTConfig, TrainConfig
from aries.views import DEFAULT_REFINE_INSTRUCTION

METHODS = ("aries", "iterative-dpo", "self-refine")


@dataclass
class PromptsConfig:
    """Training prompts (`prompts:`): fresh ones every iteration."""

    sources: list[Any] = field(
        default_factory=lambda: [
            {"name": "reasoning-gym:basic_arithmetic", "seed": 1, "max_terms": 2}
        ],
        metadata={"help": "Prompt sources (see aries.sources): names or {name, seed, ...} maps."},
    )
    per_iteration: int = field(
        default=64,
        metadata={
            "help": "Prompts per iteration, split evenly across sources; iteration t "
            "takes the t-th slice, so no prompt is used twice."
        },
    )


@dataclass
class GenerationConfig:
    """Collection settings (`generation:`)."""

    backend: str = field(default="hf", metadata={"help": "hf, vllm or openai."})
    backend_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra backend constructor options (e.g. base_urls for openai)."},
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call (hf)."})
    rounds: int = field(default=2, metadata={"help": "Refinement rounds K after the answer."})
    samples: int = field(
        default=0,
        metadata={
            "help": "Extra independent direct samples N per prompt (Iterative DPO's "
            "candidates; Xiong et al. 2023, arXiv 2312.11456)."
        },
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Tokens per response."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    instruction: str = field(
        default=DEFAULT_REFINE_INSTRUCTION, metadata={"help": "The refinement instruction z."}
    )
    chunk_size: int = field(
        default=64, metadata={"help": "Prompts written to chains.jsonl at a time (resume unit)."}
    )


@dataclass
class EvalConfig:
    """Held-out evaluation after every iteration (`eval:`)."""

    enabled: bool = field(default=True, metadata={"help": "Evaluate each iteration's model."})
    baseline: bool = field(default=True, metadata={"help": "Also evaluate the initial model."})
    sources: list[Any] = field(
        default_factory=lambda: [
            {"name": "reasoning-gym:basic_arithmetic", "seed": 1000, "max_terms": 2}
        ],
        metadata={"help": "Held-out prompt sources; never used for training (checked)."},
    )
    size: int = field(default=48, metadata={"help": "Held-out prompts per source."})
    rounds: int = field(default=2, metadata={"help": "Refinement rounds evaluated."})
    max_new_tokens: int = field(default=256, metadata={"help": "Tokens per response."})
    verifier: dict[str, Any] = field(
        default_factory=lambda: {"type": "verifier"},
        metadata={"help": "Reward source deciding correctness (accuracy per round)."},
    )


@dataclass
class RunConfig:
    """One ARIES run (the YAML file given to `aries run --config`)."""

    name: str = field(default="demo", metadata={"help": "Run name; the folder under output_dir."})
    output_dir: str = field(default="runs", metadata={"help": "Where run folders are created."})
    method: Literal["aries", "iterative-dpo", "self-refine"] = field(
        default="aries",
        metadata={
            "help": "aries (chains, both views; arXiv 2502.05605), iterative-dpo (N "
            "samples, direct view; arXiv 2312.11456) or self-refine (no training; Madaan "
            "et al. 2023, arXiv 2303.17651)."
        },
    )
    model: str = field(default="embedded", metadata={"help": "Initial policy π_0."})
    iterations: int = field(default=3, metadata={"help": "ARIES iterations T."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, mixing and training."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Let model repositories run their own code."}
    )
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    reward: dict[str, Any] = field(
        default_factory=lambda: {"type": "verifier"},
        metadata={"help": "Reward source for selection (see aries.rewards.make_reward_source)."},
    )
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def resolve_config(data: dict[str, Any]) -> RunConfig:
    """Validate a config mapping and apply what each method implies.

    iterative-dpo collects no refinement rounds, picks among the direct samples and trains the
    direct view only; self-refine trains nothing. The resolved config states this explicitly.
    """
    config = from_dict(RunConfig, data)
    if config.method == "iterative-dpo":
        if config.generation.samples < 1:
            raise AriesError("method iterative-dpo needs generation.samples >= 1")
        config.generation = replace(config.generation, rounds=0)
        config.selection = replace(config.selection, candidates="samples")
        config.train = replace(config.train, w_refine=0.0, w_keep=0.0, w_direct=1.0)
    if config.iterations < 0 or config.generation.rounds < 0:
        raise AriesError("iterations and generation.rounds must be >= 0")
    return config


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a run YAML file, apply `key=value` overrides, validate."""
    from aries.config import apply_overrides, load_yaml

    return resolve_config(apply_overrides(load_yaml(path), list(overrides)))


class Manifest:
    """manifest.json: the run's record of what is done, with counts, timings and memory."""

    def __init__(self, path: Path, digest: str):
        self.path = path
        self.data = {"config_hash": digest, "iterations": {}, "baseline": {"stages": {}}}
        if path.exists():
            import json

            self.data = json.loads(path.read_text())

    def stages(self, iteration: int | None) -> dict[str, Any]:
        if iteration is None:
            return self.data["baseline"]["stages"]
        return self.data["iterations"].setdefault(str(iteration), {"stages": {}})["stages"]

    def is_done(self, iteration: int | None, stage: str) -> bool:
        return self.stages(iteration).get(stage, {}).get("status") == "done"

    @contextlib.contextmanager
    def stage(self, iteration: int | None, name: str):
        """Run a stage: mark it running, time it, store its counts and mark it done."""
        entry = self.stages(iteration).setdefault(name, {})
        entry.update(status="running", attempts=entry.get("attempts", 0) + 1)
        self.save()
        started = time.time()
        counts: dict[str, Any] = {}
        yield counts
        entry.update(
            status="done",
            seconds=round(time.time() - started, 1),
            counts=counts,
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        )
        self.save()

    def save(self) -> None:
        # Under `accelerate launch` every rank runs the stage; only rank 0 records it.
        if int(os.environ.get("RANK", "0")) == 0:
            atomic_write_json(self.path, self.data)


class Loop:
    """Drives one run; each `stage_*` method is one box of the loop diagram."""

    def __init__(self, config: RunConfig, *, progress: bool = True):
        self.config = config
        self.dir = config.run_dir
        self.progress = progress
        self.manifest = Manifest(self.dir / "manifest.json", config_hash(config))
        self._backend = None
        self._backend_model: str | None = None

    # -- helpers ---------------------------------------------------------------------------

    def iter_dir(self, t: int) -> Path:
        return self.dir / f"iter_{t}"

    def policy(self, t: int) -> str:
        """π_t: the initial model (after SFT, if any) for t = 0, else iteration t-1's output."""
        if t == 0:
            sft_model = self.dir / "sft" / "model"
            return str(sft_model) if self.config.sft.enabled else self.config.model
        return str(self.iter_dir(t - 1) / "model")

    def backend(self, model: str):
        """One generation backend at a time, reused while the model stays the same."""
        if self._backend_model != model:
            self.release_backend()
            from aries.backends import make_backend

            options = dict(self.config.generation.backend_options)
            if self.config.generation.backend == "hf":
                options.setdefault("batch_size", self.config.generation.batch_size)
                options.setdefault("trust_remote_code", self.config.trust_remote_code)
            self._backend = make_backend(self.config.generation.backend, model, **options)
            self._backend_model = model
        return self._backend

    def release_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
        self._backend, self._backend_model = None, None

    def log(self, message: str) -> None:
        if self.progress:
            print(f"[aries] {message}", flush=True)

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop_before: str | None = None) -> dict[str, Any]:
        """Run every stage not yet done; with `stop_before`, stop when the next stage to run
        is that one (e.g. 'train', to run it under `accelerate launch` with `aries train`)."""
        config = self.config
        if config.sft.enabled and not self.manifest.is_done(None, "sft"):
            self.stage_sft()
        if config.eval.enabled and config.eval.baseline and not self.manifest.is_done(None, "eval"):
            self.stage_eval(None)
        if config.method != "self-refine":
            for t in range(config.iterations):
                for name in ("prompts", "collect", "score", "select", "pairs", "train", "eval"):
                    if name == "eval" and not config.eval.enabled:
                        continue
                    if not self.manifest.is_done(t, name):
                        if name == stop_before:
                            self.release_backend()
                            return self.manifest.data
                        self.log(f"iteration {t}: {name}")
                        getattr(self, f"stage_{name}")(t)
        self.release_backend()
        return self.manifest.data

    @functools.cached_property
    def heldout(self) -> list[dict[str, Any]]:
        """The held-out evaluation prompts (never trained on: see stage_prompts, stage_eval)."""
        from aries.sources import PromptSource, load_prompts

        if not self.config.eval.enabled:
            return []
        heldout = []
        for spec in self.config.eval.sources:
            source = PromptSource.parse(spec)
            source.size = self.config.eval.size
            heldout += load_prompts(source)
        return heldout

    def stage_sft(self) -> None:
        from aries.train import train_sft

        config = self.config
        if not config.sft.dataset:
            raise AriesError("sft.enabled needs sft.dataset (prompt/chosen/rejected records)")
        with self.manifest.stage(None, "sft") as counts:
            examples = self.dir / "sft" / "examples"
            count = sft_dataset(
                config.sft.dataset, config.model, examples, config.generation.instruction
            )
            metrics = train_sft(
                config.model,
                examples,
                self.dir / "sft" / "model",
                config.sft,
                seed=config.seed,
                log_dir=self.dir / "logs" / "sft",
                trust_remote_code=config.trust_remote_code,
            )
            counts.update(examples=count, **_numbers(metrics))

    def stage_prompts(self, t: int) -> None:
        from aries.sources import PromptSource, load_prompts

        config = self.config
        with self.manifest.stage(t, "prompts") as counts:
            share = max(1, config.prompts.per_iteration // len(config.prompts.sources))
            prompts = []
            for spec in config.prompts.sources:
                source = PromptSource.parse(spec)
                source.offset, source.size = source.offset + t * share, share
                prompts += load_prompts(source)
            heldout_texts = {" ".join(p["prompt"].split()) for p in self.heldout}
            kept = [p for p in prompts if " ".join(p["prompt"].split()) not in heldout_texts]
            atomic_write_jsonl(self.iter_dir(t) / "prompts.jsonl", kept)
            counts.update(prompts=len(kept), dropped_heldout_overlap=len(prompts) - len(kept))

    def stage_collect(self, t: int) -> None:
        from aries.collect import run_chains, split_by_context

        gen = self.config.generation
        prompts = read_jsonl(self.iter_dir(t) / "prompts.jsonl")
        with self.manifest.stage(t, "collect") as counts:
            backend = self.backend(self.policy(t))
            fitting, too_long = split_by_context(
                backend,
                prompts,
                rounds=gen.rounds,
                max_new_tokens=gen.max_new_tokens,
                instruction=gen.instruction,
            )
            sampling = Sampling(
                gen.max_new_tokens, gen.temperature, gen.top_p, self.config.seed + t
            )
            chains = run_chains(
                backend,
                fitting,
                rounds=gen.rounds,
                sampling=sampling,
                instruction=gen.instruction,
                n_samples=gen.samples,
                out_path=self.iter_dir(t) / "chains.jsonl",
                chunk_size=gen.chunk_size,
                progress=self.progress,
            )
            responses = [s for c in chains for s in c["chain"] + c.get("samples", [])]
            counts.update(
                prompts_in=len(prompts),
                chains=len(chains),
                dropped_too_long=len(too_long),
                responses=len(responses),
                truncated=sum(r["finish_reason"] == "length" for r in responses),
                completion_tokens=sum(r["completion_tokens"] for r in responses),
            )

    def stage_score(self, t: int) -> None:
        from aries.rewards import make_reward_source
        from aries.score import score_file

        with self.manifest.stage(t, "score") as counts:
            if self.config.reward.get("type") == "judge" and "model" not in self.config.reward:
                self.release_backend()  # a self-judging policy loads itself below
            source = make_reward_source(self.config.reward)
            stats = score_file(
                self.iter_dir(t) / "chains.jsonl", source, self.iter_dir(t) / "scores.jsonl"
            )
            counts.update({k: v for k, v in stats.items() if k != "source"}, source=stats["source"])

    def stage_select(self, t: int) -> None:
        from aries.select import select_pairs

        with self.manifest.stage(t, "select") as counts:
            chains = read_jsonl(self.iter_dir(t) / "chains.jsonl")
            scores = read_jsonl(self.iter_dir(t) / "scores.jsonl")
            selection = select_pairs(chains, scores, self.config.selection)
            atomic_write_jsonl(self.iter_dir(t) / "selections.jsonl", selection.pairs)
            counts.update(
                prompts_in=len(chains),
                kept=len(selection.pairs),
                dropped=sum(selection.drop_counts.values()),
                drop_counts=selection.drop_counts,
            )
            self.log(
                f"iteration {t}: kept {len(selection.pairs)}/{len(chains)} prompts, "
                f"dropped {selection.drop_counts}"
            )

    def stage_pairs(self, t: int) -> None:
        from aries.pairs import build_pairs, save_dataset

        config = self.config
        with self.manifest.stage(t, "pairs") as counts:
            selections = read_jsonl(self.iter_dir(t) / "selections.jsonl")
            examples = build_pairs(
                selections,
                instruction=config.generation.instruction,
                w_direct=config.train.w_direct,
                w_refine=config.train.w_refine,
                w_keep=config.train.w_keep,
                seed=config.seed + t,
            )
            if examples:
                chat = self._has_chat_template(self.policy(t))
                save_dataset(examples, self.iter_dir(t) / "pairs", chat=chat)
            counts.update(
                pairs=len(examples),
                direct=sum(e["view"] == "direct" for e in examples),
                refine=sum(e["view"] == "refine" for e in examples),
                keep=sum(e["view"] == "keep" for e in examples),
            )

    def stage_train(self, t: int) -> None:
        from aries.train import train_preference

        config = self.config
        pairs = self.iter_dir(t) / "pairs"
        with self.manifest.stage(t, "train") as counts:
            self.release_backend()  # hand the memory to the trainer
            from aries.models import resolve_model

            if not pairs.is_dir():
                # No pair survived selection: the policy carries over unchanged.
                model = self.iter_dir(t) / "model"
                shutil.copytree(resolve_model(self.policy(t)), model, dirs_exist_ok=True)
                counts.update(steps=0, skipped="no pairs")
                return

            reference = None
            if config.train.reference == "initial" and t > 0:
                reference = resolve_model(self.policy(0))
            metrics = train_preference(
                resolve_model(self.policy(t)),
                pairs,
                self.iter_dir(t) / "model",
                config.train,
                seed=config.seed + t,
                reference=reference,
                log_dir=self.dir / "logs" / f"iter_{t}",
                trust_remote_code=config.trust_remote_code,
            )
            counts.update(_numbers(metrics))

    def stage_eval(self, t: int | None) -> None:
        from aries.evaluate import check_held_out, evaluate, format_table
        from aries.rewards import make_reward_source

        config = self.config
        model = self.policy(0) if t is None else self.policy(t + 1)
        out = self.dir / "eval_base.json" if t is None else self.iter_dir(t) / "eval.json"
        with self.manifest.stage(t, "eval") as counts:
            if t is not None:  # every prompt trained on so far, not only this iteration's
                trained = [
                    p for i in range(t + 1) for p in read_jsonl(self.iter_dir(i) / "prompts.jsonl")
                ]
                check_held_out(self.heldout, trained)
            result = evaluate(
                self.backend(model),
                self.heldout,
                rounds=config.eval.rounds,
                sampling=Sampling(config.eval.max_new_tokens, 0.0, 1.0, config.seed),
                out_path=out,
                verifier=make_reward_source(config.eval.verifier),
                instruction=config.generation.instruction,
                benchmark="held-out",
                model=model,
                seed=config.seed,
                progress=self.progress,
            )
            counts.update(
                metric=result["metric"],
                n=result["n_prompts"],
                per_round=[round(r["metric"], 4) for r in result["per_round"]],
            )
            self.log(
                ("initial model" if t is None else f"after iteration {t}")
                + "\n"
                + format_table(result)
            )

    def _has_chat_template(self, model: str) -> bool:
        return has_chat_template(model, trust_remote_code=self.config.trust_remote_code)


def has_chat_template(model: str, *, trust_remote_code: bool = False) -> bool:
    """Whether pairs for `model` use the conversational format or the plain-text template."""
    from aries.models import load_tokenizer

    return bool(load_tokenizer(model, trust_remote_code=trust_remote_code).chat_template)


def sft_dataset(
    path: str, model: str, out_dir: str | Path, instruction: str = DEFAULT_REFINE_INSTRUCTION
) -> int:
    """Write METHOD.md Eq. 4's both-view SFT examples from a prompt/chosen/rejected file."""
    from aries.pairs import save_dataset, sft_examples
    from aries.sources import PromptSource, load_prompts

    rows = load_prompts(PromptSource(name=path))
    selections = [{"id": r["id"], "prompt": r["prompt"], **_chosen_rejected(r, path)} for r in rows]
    examples = sft_examples(selections, instruction=instruction)
    save_dataset(examples, out_dir, chat=has_chat_template(model))
    return len(examples)


def _chosen_rejected(row: dict[str, Any], where: str) -> dict[str, str]:
    """The chosen / rejected texts of a preference-data row (kept in its metadata by sources)."""
    fields = row.get("metadata", {})
    missing = [k for k in ("chosen", "rejected") if not isinstance(fields.get(k), str)]
    if missing:
        raise AriesError(f"{where}: record {row['id']!r} has no text field {' / '.join(missing)}")
    return {k: fields[k] for k in ("chosen", "rejected")}


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in metrics.items() if isinstance(v, int | float)}


def prepare_run_dir(config: RunConfig, *, overwrite: bool = False) -> None:
    """Create the run folder and save the resolved config; refuse a folder of another config."""
    run_dir = config.run_dir
    saved = run_dir / "config.yaml"
    text = yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
    if saved.exists() and saved.read_text() != text:
        if not overwrite:
            raise AriesError(
                f"{run_dir} holds a run with a different configuration; use another name, "
                "or --overwrite to delete it and start again"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, text)


def run(
    config: RunConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop_before: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) all iterations of `config`; returns the manifest."""
    prepare_run_dir(config, overwrite=overwrite)
    return Loop(config, progress=progress).run(stop_before=stop_before)
