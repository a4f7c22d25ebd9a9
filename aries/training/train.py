"""Stage 3, train: preference training (and the optional SFT stage) through TRL.

Everything numerical is TRL's: `DPOTrainer` with any of its loss types for the both-view pairs
(or an aries loss of losses.py on TRL's batches), `SFTTrainer` for Eq. 4 of docs/specification.md.
This module only decides the settings that matter for ARIES (reference policy, view mixture, LoRA,
checkpoints for resume) and writes the next policy as a normal model folder, atomically, so a
killed run never leaves a half-saved model that the next iteration would trust.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from aries import AriesError
from aries.core.compat import training_arguments
from aries.core.console import watch
from aries.core.integrations import log_to, push_policy, trainer_arguments
from aries.core.jsonl import writing
from aries.core.models import ModelSettings, load_causal_lm, load_tokenizer
from aries.training.checkpoints import (
    checkpoint_folders,
    checkpoint_marker,
    discard,
    last_checkpoint,
    save_policy,
)
from aries.training.config import SFTConfig, TrainConfig


def _precision_flags(precision: str) -> dict[str, bool]:
    import torch

    bf16 = precision == "bf16" or (
        precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    return {"bf16": bf16, "use_cpu": not torch.cuda.is_available()}


def _lora_config(config: TrainConfig):
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets if targets == "all-linear" else targets.split(","),
        task_type="CAUSAL_LM",
    )


def sharded_head_engine(env: dict[str, str]) -> str | None:
    """The engine that shards the LM head weight across ranks under this launch, or None.

    Prefix sharing hands `lm_head.weight` to TRL's chunked log-prob kernel directly; under
    DeepSpeed ZeRO-3 that weight is an empty placeholder outside the engine's own forward, and
    under FSDP a shard (a DTensor). `env` holds what `accelerate launch` sets from its config.
    """
    if env.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true", "yes"):
        return f"FSDP{env.get('FSDP_VERSION', '1')}"
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() not in ("1", "true", "yes"):
        return None
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    config_file = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if stage is None and config_file and Path(config_file).is_file():
        stage = json.loads(Path(config_file).read_text()).get("zero_optimization", {}).get("stage")
    return "DeepSpeed ZeRO-3" if str(stage) == "3" else None


def length_grouped_order(dataset, batch_size: int, seed: int) -> list[int]:
    """Row order in which consecutive `batch_size` rows have similar lengths, batches shuffled.

    Read with a sequential sampler, every batch pads only to its own similar lengths, while the
    seeded shuffle of whole batches keeps the two views and all lengths mixed over an epoch.
    (transformers' group_by_length needs `input_ids`, which TRL builds only inside the trainer.)
    """
    import random

    lengths = [len(json.dumps([row["prompt"], row["chosen"], row["rejected"]])) for row in dataset]
    by_length = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    random.Random(seed).shuffle(batches)
    return [i for batch in batches for i in batch]


def trl_settings(config: TrainConfig | SFTConfig) -> dict[str, Any]:
    """The fields of `config` that are TRL settings (`"trl"` in their metadata), by TRL's names."""
    from dataclasses import fields

    return {
        f.metadata["trl"]: getattr(config, f.name) for f in fields(config) if "trl" in f.metadata
    }


def dpo_arguments(
    config: TrainConfig,
    *,
    checkpoints: Path,
    output_dir: Path,
    log_dir: str | Path | None,
    seed: int,
    trust_remote_code: bool,
) -> dict[str, Any]:
    """The `DPOConfig` keyword arguments of a preference training.

    Every TrainConfig field that is a DPOConfig setting (`"trl"` in its metadata) passes through
    unchanged; the rest are aries' decisions: the parsed loss names, checkpoints for resume,
    length-grouped batches read in order, reporting and Hub settings, seeds and precision.
    """
    from aries.training.losses import loss_names

    return {
        **trl_settings(config),
        "output_dir": str(checkpoints),
        "loss_type": list(loss_names(config.loss_type)),
        "train_sampling_strategy": "sequential" if config.length_grouped_batches else "random",
        **training_arguments(activation_checkpointing=config.gradient_checkpointing),
        "save_strategy": "steps",
        "save_total_limit": 1,
        **trainer_arguments(
            config.report_to,
            output_dir,
            log_dir,
            push_to_hub=config.push_to_hub,
            hub_model_id=config.hub_model_id,
        ),
        "seed": seed,
        "data_seed": seed,
        "trust_remote_code": trust_remote_code,
        **_precision_flags(config.precision),
    }


def train_preference(
    policy: str | ModelSettings,
    pairs_dir: str | Path,
    output_dir: str | Path,
    config: TrainConfig,
    *,
    seed: int = 0,
    reference: str | None = None,
    log_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train π_{t+1} from π_t (`policy`) on a both-view pair dataset; returns the final metrics.

    `reference` is the reference model's path when it is not the policy itself (π_0), loaded
    with the policy's settings. Checkpoints go to `<output_dir>.checkpoints/` and a rerun resumes
    from the last one. The policy's `chat_template` override renders the pairs and is saved with
    its tokenizer (aries.core.views). The console shows one progress line; the trainer's logs go
    to `<log_dir>/train.log`.
    """
    import datasets
    from trl import DPOConfig

    from aries.training.losses import loss_columns, reference_kind
    from aries.training.preference_trainer import PreferenceTrainer

    policy = ModelSettings.of(policy)
    output_dir = Path(output_dir)
    checkpoints = output_dir.with_name(output_dir.name + ".checkpoints")
    dataset = datasets.load_from_disk(str(pairs_dir)).remove_columns(["id", "view"])
    dataset = loss_columns(dataset, config.loss_type, pairs_dir)
    dataset = _for_policy(dataset, policy)
    if len(dataset) == 0:
        raise AriesError(f"{pairs_dir}: no preference pairs to train on")
    args = DPOConfig(
        **dpo_arguments(
            config,
            checkpoints=checkpoints,
            output_dir=output_dir,
            log_dir=log_dir,
            seed=seed,
            trust_remote_code=policy.trust_remote_code,
        )
    )
    update = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if args.world_size > 1 and args.process_index == 0:
        print(f"[aries] train: {args.world_size} processes, {update} pairs per update", flush=True)
    if config.length_grouped_batches:
        # Grouped by the rows of one optimizer update across all ranks, so that every process
        # count trains on the same updates at the same global batch (docs/scaling.md).
        dataset = dataset.select(length_grouped_order(dataset, update, seed))
    model, tokenizer = _load_policy(policy)
    ref_model = None
    if reference is not None and reference_kind(config.loss_type, config.reference) != "none":
        ref_model = load_causal_lm(policy.at(reference), dtype="float32", device="cpu")
    trainer_class = PreferenceTrainer
    engine = sharded_head_engine(os.environ) if config.prefix_sharing else None
    if engine is not None and args.process_index == 0:
        print(
            f"[aries] train.prefix_sharing is off under {engine}: the LM head weight is sharded "
            "across ranks; TRL's own pair layout trains instead (same loss)",
            flush=True,
        )
    if config.prefix_sharing and engine is None:
        from aries.training.prefix_dpo import PrefixSharedDPOTrainer as trainer_class
    trainer = trainer_class(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora_config(config) if config.lora else None,
        simpo_gamma=config.simpo_gamma,
        inpo_tau=config.inpo_tau,
    )
    return _train_and_save(trainer, tokenizer, checkpoints, output_dir, log_dir, progress)


def train_sft(
    policy: str | ModelSettings,
    examples_dir: str | Path,
    output_dir: str | Path,
    config: SFTConfig,
    *,
    seed: int = 0,
    log_dir: str | Path | None = None,
    report_to: str = "tensorboard",
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 0 (docs/specification.md) with TRL's `SFTTrainer` on prompt-completion examples of
    both views."""
    import datasets
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    policy = ModelSettings.of(policy)
    output_dir = Path(output_dir)
    checkpoints = output_dir.with_name(output_dir.name + ".checkpoints")
    dataset = datasets.load_from_disk(str(examples_dir)).remove_columns(["id", "view"])
    dataset = _for_policy(dataset, policy)
    args = TRLSFTConfig(
        **trl_settings(config),
        output_dir=str(checkpoints),
        # TRL's SFT default is on; small models don't need it
        **training_arguments(activation_checkpointing=False),
        save_strategy="steps",
        save_total_limit=1,
        **trainer_arguments(report_to, output_dir, log_dir),
        seed=seed,
        **_precision_flags("auto"),
    )
    model, tokenizer = _load_policy(policy)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return _train_and_save(trainer, tokenizer, checkpoints, output_dir, log_dir, progress)


def _for_policy(dataset, policy: ModelSettings):
    """Stored examples are conversational; plain text for a policy without a chat template."""
    from aries.core.views import for_tokenizer

    return for_tokenizer(dataset, load_tokenizer(policy))


def _load_policy(policy: ModelSettings):
    """The policy in fp32 (the trainer's mixed precision casts) and its tokenizer, padded.

    Loaded on the CPU: the trainer places it (each rank's device, or shards it under DeepSpeed
    and FSDP), instead of every rank first moving a whole copy to the first GPU.
    """
    model = load_causal_lm(policy, dtype="float32", device="cpu")
    tokenizer = load_tokenizer(policy)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _train_and_save(
    trainer,
    tokenizer,
    checkpoints: Path,
    output_dir: Path,
    log_dir: str | Path | None,
    progress: bool,
) -> dict[str, Any]:
    """Train (resuming from the last complete checkpoint), save the policy with its log history,
    tidy up; returns the final metrics and the step count.

    TensorBoard events and the trainer's full logs (`train.log`, one JSON line per log) go to
    `log_dir`; the console gets one progress line (aries.core.console).

    The policy folder is renamed into place only when whole, so if it exists next to the
    checkpoints, the run was killed while removing them: the training is done, not redone.
    """
    log_to(trainer, log_dir)
    log_file = Path(log_dir) / "train.log" if log_dir is not None else None
    watch(trainer, log_file, desc="training", progress=progress)
    history = output_dir / "log_history.json"
    if not (history.is_file() and checkpoints.is_dir()):
        keep, trainer.args.save_total_limit = trainer.args.save_total_limit, None
        trainer.add_callback(checkpoint_marker(trainer.accelerator, checkpoints, keep))
        main = trainer.accelerator.is_main_process
        # a checkpoint the full disk cut short has no completion marker: the rerun skips it
        with writing(checkpoints, "a training checkpoint"):
            trainer.train(resume_from_checkpoint=last_checkpoint(checkpoints, tidy=main))
        save_policy(trainer, tokenizer, output_dir)
    push_policy(trainer, output_dir)  # also when a rerun found the policy saved but not pushed
    if trainer.accelerator.is_main_process:
        for checkpoint in checkpoint_folders(checkpoints) if checkpoints.is_dir() else []:
            discard(checkpoint)
        shutil.rmtree(checkpoints, ignore_errors=True)
    log = json.loads(history.read_text())
    final = dict(log[-1])  # the trainer logs its summary metrics last
    steps = final.pop("step")
    # After a resume that summary covers the last process's steps only: the mean loss over all
    # steps comes from the per-step log (each logged loss is the mean since the previous one).
    losses = [(0, 0.0)] + [(e["step"], e["loss"]) for e in log if "loss" in e and "step" in e]
    if steps and len(losses) > 1:
        spans = zip(losses, losses[1:])
        final["train_loss"] = (
            sum(loss * (step - start) for (start, _), (step, loss) in spans) / steps
        )
    return {"steps": steps, **final}
