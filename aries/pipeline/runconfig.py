"""The run configuration: one YAML file, one dataclass per section (`aries run --config`).

Each stage's own settings live next to its code (`SelectionConfig` in select.py, `PairsConfig` in
pairs.py, `TrainConfig` / `SFTConfig` in train.py); this module holds the sections that belong to
the run as a whole and `resolve_config`, which applies what each method's declaration implies
(aries.pipeline.methods).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.backends import ENGINES, check_chat_template_backend
from aries.core.config import (
    Options,
    Range,
    apply_overrides,
    from_dict,
    load_yaml,
    located_error,
)
from aries.core.integrations import check_hub, report_targets
from aries.core.models import ModelSettings
from aries.core.views import DEFAULT_REFINE_INSTRUCTION, chat_template_text
from aries.method.pairs import PairsConfig
from aries.method.select import SelectionConfig
from aries.method.teacher import TeacherConfig
from aries.pipeline.methods import METHODS, method_help
from aries.rewards import RewardSpec
from aries.training.config import SFTConfig, TrainConfig


@dataclass
class PromptsConfig(Options):
    """Training prompts (`prompts:`): fresh ones every iteration."""

    section = "prompts"

    sources: list[Any] = field(
        default_factory=lambda: [
            {"name": "reasoning-gym:basic_arithmetic", "seed": 1, "max_terms": 2}
        ],
        metadata={
            "help": "Prompt sources (see aries.method.sources): names or {name, seed, weight, ...} "
            "maps; "
            "weight (default 1) is a source's share of each iteration's prompts."
        },
    )
    per_iteration: int = field(
        default=64,
        metadata={
            "range": Range(ge=1),
            "help": "Prompts per iteration, split across sources in proportion to their weights "
            "(largest remainders get the leftover prompts, so the counts add up exactly; "
            "aries.method.sources.mixture_counts); iteration t takes each source's t-th slice, "
            "so no "
            "prompt is used twice.",
        },
    )
    exclude: list[Any] = field(
        default_factory=list,
        metadata={
            "help": "Prompt sources never trained on besides eval.sources (e.g. a validation "
            "pool kept apart from the held-out one; docs/efficacy-protocol.md): matching prompts "
            "are dropped."
        },
    )


@dataclass
class GenerationConfig(Options):
    """Collection settings (`generation:`)."""

    section = "generation"

    backend: str = field(default="hf", metadata={"choices": ENGINES, "help": "hf, vllm or openai."})
    backend_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Extra backend constructor options (e.g. base_urls for openai)."},
    )
    batch_size: int = field(
        default=16, metadata={"range": Range(ge=1), "help": "Prompts per generate call (hf)."}
    )
    rounds: int = field(
        default=2, metadata={"range": Range(ge=0), "help": "Refinement rounds K after the answer."}
    )
    samples: int = field(
        default=0,
        metadata={
            "range": Range(ge=0),
            "help": "Extra independent direct samples N per prompt (Iterative DPO's "
            "candidates; Xiong et al. 2023, arXiv 2312.11456).",
        },
    )
    max_new_tokens: int = field(
        default=256, metadata={"range": Range(ge=1), "help": "Tokens per response."}
    )
    temperature: float = field(
        default=0.7, metadata={"range": Range(ge=0), "help": "Sampling temperature; 0 = greedy."}
    )
    answer_temperature: float | None = field(
        default=None,
        metadata={
            "range": Range(ge=0),
            "help": "Temperature of each chain's first answer y^0 only (None: `temperature`). "
            "0 = greedy, the answer the model gives at inference (evaluation decodes greedily), "
            "so refine pairs hold the mistakes the refiner will be shown rather than sampling "
            "noise [design; on-policy first attempts as in SCoRe, arXiv 2409.12917]. "
            "Refinements and extra samples keep `temperature`.",
        },
    )
    top_p: float = field(
        default=0.95, metadata={"range": Range(gt=0, le=1), "help": "Nucleus sampling mass."}
    )
    instruction: str = field(
        default=DEFAULT_REFINE_INSTRUCTION, metadata={"help": "The refinement instruction z."}
    )
    chunk_size: int = field(
        default=64,
        metadata={
            "range": Range(ge=1),
            "help": "Prompts written to chains.jsonl at a time (resume unit).",
        },
    )


@dataclass
class EvalConfig(Options):
    """Held-out evaluation after every iteration (`eval:`)."""

    section = "eval"

    enabled: bool = field(default=True, metadata={"help": "Evaluate each iteration's model."})
    baseline: bool = field(default=True, metadata={"help": "Also evaluate the initial model."})
    final_only: bool = field(
        default=False,
        metadata={
            "help": "Evaluate only the last iteration's model (and the initial one): one "
            "held-out pass per run instead of one per iteration, when only the end result counts."
        },
    )
    sources: list[Any] = field(
        default_factory=lambda: [
            {"name": "reasoning-gym:basic_arithmetic", "seed": 1000, "max_terms": 2}
        ],
        metadata={"help": "Held-out prompt sources; never used for training (checked)."},
    )
    size: int = field(
        default=48, metadata={"range": Range(ge=1), "help": "Held-out prompts per source."}
    )
    rounds: int = field(
        default=2, metadata={"range": Range(ge=0), "help": "Refinement rounds evaluated."}
    )
    max_new_tokens: int = field(
        default=256, metadata={"range": Range(ge=1), "help": "Tokens per response."}
    )
    verifier: RewardSpec = field(
        default_factory=lambda: RewardSpec({"type": "verifier"}, "eval.verifier"),
        metadata={"help": "Reward source deciding correctness (accuracy per round)."},
    )


@dataclass
class RunConfig(Options):
    """One ARIES run (the YAML file given to `aries run --config`)."""

    name: str = field(default="demo", metadata={"help": "Run name; the folder under output_dir."})
    output_dir: str = field(default="runs", metadata={"help": "Where run folders are created."})
    method: str = field(
        default="aries",
        metadata={"choices": METHODS, "help": method_help},  # aries.pipeline.methods
    )
    model: str = field(
        default="embedded",
        metadata={
            "help": "The initial policy π_0: 'embedded' (SmolLM2-135M-Instruct, offline), a "
            "local model folder, a .gguf file, a PEFT adapter folder or a hub id."
        },
    )
    iterations: int = field(
        default=3, metadata={"range": Range(ge=0), "help": "ARIES iterations T."}
    )
    seed: int = field(
        default=0,
        metadata={"range": Range(ge=0), "help": "Seed for sampling, mixing and training."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Let model repositories run their own code."}
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "System message opening every conversation the policy sees: collection, "
            "both views' training pairs, SFT examples and evaluation (aries.core.views). Serve and "
            "evaluate the trained model with the same: aries serve/eval --system-prompt."
        },
    )
    chat_template: str | None = field(
        default=None,
        metadata={
            "help": "Chat template instead of the model's own: a Jinja template, a file holding "
            "one, or 'plain' (Question: / Answer: text, as for base models). Used for generation "
            "and training, and saved with each trained model's tokenizer, so aries serve and "
            "aries eval of that folder use it too. generation.backend openai: only with servers "
            "it starts, {chat_template} in their serve_command."
        },
    )
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    reward: RewardSpec = field(
        default_factory=lambda: RewardSpec({"type": "verifier"}),
        metadata={"help": "Reward source for selection (see aries.rewards.make_reward_source)."},
    )
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def model_settings(self, path: str | None = None) -> ModelSettings:
        """How the run loads a model: `path` (default π_0, `model`), any iteration's policy, its
        reference or the teacher, with the run's trust_remote_code and chat template."""
        return ModelSettings(path or self.model, self.trust_remote_code, self.chat_template)


def resolve_config(data: dict[str, Any]) -> RunConfig:
    """Validate a config mapping and apply what its method implies (its declaration's
    `resolve`: iterative-dpo, for instance, collects no refinement rounds, picks among the direct
    samples and trains the direct view only). The resolved config states this explicitly.
    """
    config = from_dict(RunConfig, _moved_view_weights(data))
    METHODS[config.method].resolve(config)
    from aries.training.losses import check_loss_settings

    check_loss_settings(config.train, config.selection.strategy)
    report_targets(config.train.report_to)
    if config.chat_template is not None:
        serve_command = config.generation.backend_options.get("serve_command")
        check_chat_template_backend(config.generation.backend, serve_command)
        if config.teacher.model is not None:  # the teacher's backend gets the template too
            teacher = config.teacher
            try:
                check_chat_template_backend(
                    teacher.backend, teacher.backend_options.get("serve_command")
                )
            except AriesError as error:
                raise AriesError(f"teacher.backend: {error}") from None
        chat_template_text(config.chat_template)  # a missing template file fails here
    check_hub(config.train.push_to_hub, config.train.hub_model_id)
    _check_prompt_sources(config)
    if config.sft.enabled and not config.sft.dataset:
        raise AriesError("sft.enabled needs sft.dataset (prompt/chosen/rejected records)")
    warm = [m.name for m in METHODS.values() if "warm_start" in _stages(m.plan.per_iteration)]
    if config.sft.warm_start and (config.sft.enabled or config.method not in warm):
        raise AriesError(
            f"sft.warm_start is for method {' or '.join(warm)} without sft.enabled (one SFT stage)"
        )
    return config


def _check_prompt_sources(config: RunConfig) -> None:
    """Every prompt source's fields and task options, and the mixture's weights, fail at config
    load, not at the first stage that reads them."""
    from aries.method.sources import PromptSource, mixture_counts

    for where, specs in (
        ("prompts.sources", config.prompts.sources),
        ("prompts.exclude", config.prompts.exclude),
        ("eval.sources", config.eval.sources),
    ):
        parsed = [PromptSource.parse(s, f"{where}[{i}]") for i, s in enumerate(specs)]
        if where == "prompts.sources":
            try:
                mixture_counts([s.weight for s in parsed], config.prompts.per_iteration)
            except AriesError as error:
                raise AriesError(f"prompts.sources: {error}") from None


def _stages(steps) -> list[str]:
    return [step.name for step in steps]


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a run YAML file, apply `key=value` overrides, validate; an error names the file
    and the line of the key it is about (`located_error`)."""
    data = load_yaml(path)
    try:
        return resolve_config(apply_overrides(data, list(overrides)))
    except AriesError as error:
        raise AriesError(located_error(path, str(error), list(overrides))) from None


def _moved_view_weights(data: dict[str, Any]) -> dict[str, Any]:
    """Config files from before the `pairs:` section set the view weights under `train:`."""
    train = data.get("train")
    moved = [
        k for k in ("w_direct", "w_refine", "w_keep") if isinstance(train, dict) and k in train
    ]
    if not moved:
        return data
    pairs = dict(data.get("pairs") or {})
    train = dict(train)
    for key in moved:
        if key in pairs:
            raise AriesError(f"train.{key} and pairs.{key} both set: keep pairs.{key} only")
        pairs[key] = train.pop(key)
    warnings.warn(
        f"{', '.join('train.' + k for k in moved)} moved to the pairs: section "
        f"({', '.join('pairs.' + k for k in moved)}); the old keys still load for now",
        FutureWarning,
        stacklevel=3,
    )
    return {**data, "train": train, "pairs": pairs}
