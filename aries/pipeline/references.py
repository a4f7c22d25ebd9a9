"""`aries run --check`: resolve every reference of a run config without loading any weights.

A run that names a missing model folder, a hub model that was never downloaded, a misspelt
reasoning-gym task or a prompt file that is not there would fail minutes or hours in, at the stage
that first reads it. Here each is looked up on disk (and in the local Hugging Face cache, offline)
before anything runs, and a failure is one line naming the config key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.pipeline.runconfig import RunConfig
from aries.rewards import RewardSpec


def check_references(config: RunConfig) -> None:
    """Every model, prompt source, dataset and template the run will read exists."""
    check_model(config.model, "model")
    if config.teacher.model is not None and config.teacher.backend != "openai":
        check_model(config.teacher.model, "teacher.model")
    for where, spec in (("reward", config.reward), ("eval.verifier", config.eval.verifier)):
        if where == "eval.verifier" and not config.eval.enabled:
            continue
        check_reward_models(spec, where)
    for where, specs in (
        ("prompts.sources", config.prompts.sources),
        ("prompts.exclude", config.prompts.exclude),
        ("eval.sources", config.eval.sources if config.eval.enabled else []),
    ):
        for index, spec in enumerate(specs):
            check_prompt_source(spec, f"{where}[{index}]")
    if config.sft.enabled and not Path(config.sft.dataset).expanduser().exists():
        raise AriesError(f"sft.dataset: {config.sft.dataset} does not exist")


def check_reward_models(spec: RewardSpec, where: str) -> None:
    """The model a reward-model or judge reward reads (a judge without one judges with π_t)."""
    if spec.kind == "reward-model" or (
        spec.kind == "judge" and spec.sets("model") and spec.settings.backend != "openai"
    ):
        check_model(spec.settings.model, f"{where}.model")


def check_model(spec: str, key: str) -> None:
    """A model reference resolves: the embedded model's package, a GGUF file, a folder with a
    config and safetensors weights (or a LoRA adapter), or a hub id in the local cache."""
    from aries.core.models import (
        EMBEDDED,
        EMBEDDED_FOLDER,
        cache_dir,
        embedded_gguf_path,
        resolve_model,
    )

    try:
        if spec == EMBEDDED:
            if not (cache_dir() / EMBEDDED_FOLDER / "config.json").is_file():
                embedded_gguf_path()
            return
        path = Path(spec).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise AriesError(f"{spec}: GGUF file not found")
            return
        if resolve_model(spec) == spec and not path.exists() and not hub_cached(spec, "model"):
            raise AriesError(
                f"{spec}: not a local folder, and not in the Hugging Face cache (download it "
                f"first: hf download {spec})"
            )
    except AriesError as error:
        raise AriesError(f"{key}: {error}") from None


def check_prompt_source(spec: Any, key: str) -> None:
    """A prompt source parses (its fields and task options) and exists: a reasoning-gym task
    (generated once), a packaged source, a file or folder (its first record read), or a cached
    hub id."""
    from aries.method.sources import FILE_SUFFIXES, PromptSource, load_prompts

    source = PromptSource.parse(spec, key)  # its errors name the field already
    try:
        path = Path(source.name).expanduser()
        if (
            not path.exists()
            and path.suffix not in FILE_SUFFIXES
            and source.name.count("/") == 1
            and source.name not in ("mt-bench", "sharegpt")
        ):
            if not hub_cached(source.name, "dataset"):
                raise AriesError(
                    f"{source.name}: not a local file, and the hub dataset is not in the local "
                    "cache (load it once online first)"
                )
            return
        load_prompts(replace(source, size=1))
    except (AriesError, TypeError) as error:
        raise AriesError(f"{key}: {error}") from None


def hub_cached(repo_id: str, repo_type: str) -> bool:
    """Whether a hub repository is in the local cache (a model with its config.json; a dataset
    in the hub cache or in the datasets library's own), looked up without the network."""
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    if repo_type == "model":
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    import datasets

    if (Path(datasets.config.HF_DATASETS_CACHE) / repo_id.replace("/", "___")).is_dir():
        return True
    try:
        snapshot_download(repo_id, repo_type="dataset", local_files_only=True)
    except Exception:  # huggingface_hub's LocalEntryNotFoundError and its relatives
        return False
    return True
