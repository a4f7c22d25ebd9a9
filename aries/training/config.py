"""Training settings (`train:` and `sft:` in a run config), beside the trainer they configure.

The fields keep aries' short names; a field that is a `DPOConfig` (`SFTConfig`: TRL's
`SFTConfig`) setting names it in its metadata
(`"trl": "num_train_epochs"`), and `aries.training.train.dpo_arguments` passes those through as
they are, so no DPOConfig setting is restated by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aries.core.config import Options, Range


@dataclass
class TrainConfig(Options):
    """Preference training settings (`train:` in a run config)."""

    section = "train"

    loss_type: str = field(
        default="sigmoid",
        metadata={
            "help": "TRL DPO loss type(s), comma-separated: sigmoid (DPO, Rafailov et al. 2023, "
            "arXiv 2305.18290), ipo (Azar et al. 2023, arXiv 2310.12036), hinge (SLiC, Zhao et al. "
            "2023, arXiv 2305.10425), robust (Chowdhury et al. 2024, arXiv 2403.00409), "
            "sppo_hard (Wu et al. 2024, arXiv 2405.00675), nca_pair (Chen et al. 2024, arXiv "
            "2402.05369), apo_zero/apo_down (D'Oosterlinck et al. 2024, arXiv 2408.06266), ...; "
            "or one of aries' (aries/training/losses.py): simpo (reference-free, "
            "length-normalised; Meng "
            "et al. 2024, arXiv 2405.14734), inpo (reference π_0 and the previous policy π_t; "
            "Zhang et al. 2024, arXiv 2407.00617), sppo (soft win rates from selection; Wu et "
            "al. 2024, arXiv 2405.00675)."
        },
    )
    beta: float = field(
        default=0.1,
        metadata={
            "trl": "beta",
            "range": Range(gt=0),
            "help": "KL strength β of the DPO-family loss; SimPO's reward scale β (arXiv "
            "2405.14734: 2-10); INPO's η (arXiv 2407.00617); SPPO's 1/η (arXiv 2405.00675).",
        },
    )
    simpo_gamma: float = field(
        default=0.0,
        metadata={
            "range": Range(ge=0),
            "help": "SimPO's target reward margin γ (Meng et al. 2024, arXiv 2405.14734; "
            "published γ/β = 0.3-0.8). loss_type simpo only.",
        },
    )
    inpo_tau: float = field(
        default=0.0,
        metadata={
            "range": Range(ge=0),
            "help": "INPO's KL strength τ towards π_0, 0 <= τ <= η = beta (Zhang et al. 2024, "
            "arXiv 2407.00617). loss_type inpo only.",
        },
    )
    reference: Literal["previous", "initial"] = field(
        default="previous",
        metadata={"help": "Reference policy: 'previous' = π_t (ARIES default) or 'initial' = π_0."},
    )
    momentum: float = field(
        default=0.0,
        metadata={
            "range": Range(ge=0),
            "help": "Accelerated preference optimisation (APO; He et al. 2024, arXiv 2410.06293, "
            "Algorithm 1's Nesterov extrapolation π_{t+1} ∝ π̂_{t+1}(π̂_{t+1}/π̂_t)^α, made on the "
            "weights): the next policy is θ̂_{t+1} + α(θ̂_{t+1} − θ̂_t), θ̂ being the trained "
            "weights before extrapolation (kept in iter_<t>/model_before_momentum). α >= 0; "
            "0 = off.",
        },
    )
    learning_rate: float = field(
        default=5e-6,
        metadata={
            "trl": "learning_rate",
            "range": Range(ge=0),
            "help": "Peak learning rate (AdamW).",
        },
    )
    epochs: float = field(
        default=1.0,
        metadata={
            "trl": "num_train_epochs",
            "range": Range(gt=0),
            "help": "Passes over each iteration's pairs.",
        },
    )
    max_steps: int = field(
        default=-1,
        metadata={
            "trl": "max_steps",
            "range": Range(ge=-1),
            "help": "Stop after this many steps (-1: epochs).",
        },
    )
    batch_size: int = field(
        default=8,
        metadata={
            "trl": "per_device_train_batch_size",
            "range": Range(ge=1),
            "help": "Pairs per device per step.",
        },
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "trl": "gradient_accumulation_steps",
            "range": Range(ge=1),
            "help": "Steps per update.",
        },
    )
    warmup_ratio: float = field(
        default=0.1,
        metadata={
            "trl": "warmup_steps",
            "range": Range(ge=0, le=1),
            "help": "Linear warm-up as a fraction of all steps.",
        },
    )
    lr_scheduler_type: str = field(
        default="linear", metadata={"trl": "lr_scheduler_type", "help": "transformers scheduler."}
    )
    weight_decay: float = field(
        default=0.0,
        metadata={"trl": "weight_decay", "range": Range(ge=0), "help": "AdamW weight decay."},
    )
    max_length: int = field(
        default=512,
        metadata={
            "trl": "max_length",
            "range": Range(ge=1),
            "help": "Tokens per prompt+completion; longer ones are cut from the end. A refine "
            "pair's prompt holds x, the previous answer y and the instruction z, so about "
            "prompt + instruction + 2 x generation.max_new_tokens keeps every answer whole. "
            "`aries run` (and --check) refuses a value that cannot hold the longest prompt it "
            "trains on (the longest of each source, refine view with an empty y; the direct view "
            "where only that one is trained) plus one answer token.",
        },
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={
            "trl": "precompute_ref_log_probs",
            "help": "Compute reference log-probs once before training (saves the reference forward "
            "every step and the reference copy in memory).",
        },
    )
    length_grouped_batches: bool = field(
        default=True,
        metadata={
            "help": "Batch pairs of similar length (the long refine-view prompts together) in a "
            "seeded random batch order: far less padding than random batches. Grouped by the "
            "global update (batch x accumulation x processes), so any process count trains the "
            "same updates."
        },
    )
    prefix_sharing: bool = field(
        default=True,
        metadata={
            "help": "One sequence per pair: the prompt once, chosen and rejected as two branches "
            "under one attention mask, only completion tokens through the LM head (Wang et al. "
            "2024, arXiv 2410.20305). Same log-probs and loss as TRL's layout; needs sdpa or "
            "eager attention and keep_start truncation. Switched off, with a notice, under FSDP "
            "and DeepSpeed ZeRO-3 (the LM head weight is sharded there)."
        },
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Trade compute for activation memory (large models)."}
    )
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto", metadata={"help": "auto = bf16 on a GPU that has it, fp32 elsewhere."}
    )
    lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter through PEFT."})
    lora_r: int = field(
        default=16,
        metadata={"range": Range(ge=1), "help": "LoRA rank (Hu et al. 2021, 2106.09685)."},
    )
    lora_alpha: int = field(default=32, metadata={"range": Range(ge=1), "help": "LoRA scaling α."})
    lora_dropout: float = field(
        default=0.05, metadata={"range": Range(ge=0, lt=1), "help": "LoRA dropout."}
    )
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "PEFT target modules ('all-linear' or a,b,c)."}
    )
    save_steps: int = field(
        default=20,
        metadata={
            "trl": "save_steps",
            "range": Range(ge=1),
            "help": "Checkpoint every N steps so a killed run resumes there.",
        },
    )
    logging_steps: int = field(
        default=1,
        metadata={
            "trl": "logging_steps",
            "range": Range(ge=1),
            "help": "Log metrics every N steps.",
        },
    )
    report_to: str = field(
        default="tensorboard",
        metadata={
            "help": "Where TRL reports training metrics (transformers' report_to integrations): "
            "tensorboard (the run's logs/, read by aries report), wandb, trackio, mlflow, ..., "
            "comma-separated, or none. The SFT stage reports to the same."
        },
    )
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Upload each iteration's model folder (merged weights, adapter/ for LoRA, "
            "tokenizer) to the Hub repository hub_model_id, one commit per iteration."
        },
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repository for push_to_hub, e.g. your-name/aries-run."}
    )
    launcher: str | None = field(
        default=None,
        metadata={
            "execution": True,
            "help": "Command prefix that runs every training stage of `aries run` in processes of "
            "its own, as `<launcher> -m aries.cli train RUN ...`, e.g. `torchrun --nproc_per_node "
            "8`, `accelerate launch --config_file accelerate/deepspeed_zero2.yaml`, or `srun "
            "...` for several machines; None: train in the loop's process. How to run, not what: "
            "not saved in config.yaml, so it may change between restarts.",
        },
    )


@dataclass
class SFTConfig(Options):
    """The optional SFT stage (`sft:` in a run config): Eq. 4 of docs/specification.md on both
    views."""

    section = "sft"

    enabled: bool = field(default=False, metadata={"help": "Run SFT before the first iteration."})
    warm_start: bool = field(
        default=False,
        metadata={
            "help": "SFT on iteration 0's own selected pairs instead of an external dataset "
            "(docs/specification.md Eq. 4: x -> y_w and (x, y_l, z) -> y_w; the paper's stage 0 "
            "built from "
            "the first collection [design]) before iteration 0's preference training, which "
            "then starts from the SFT model. Method aries only."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Preference data with prompt/chosen/rejected (file or folder)."},
    )
    learning_rate: float = field(
        default=1e-5,
        metadata={"trl": "learning_rate", "range": Range(ge=0), "help": "Peak learning rate."},
    )
    epochs: float = field(
        default=1.0,
        metadata={"trl": "num_train_epochs", "range": Range(gt=0), "help": "Passes over the data."},
    )
    batch_size: int = field(
        default=8,
        metadata={
            "trl": "per_device_train_batch_size",
            "range": Range(ge=1),
            "help": "Examples per device per step.",
        },
    )
    max_length: int = field(
        default=512,
        metadata={"trl": "max_length", "range": Range(ge=1), "help": "Tokens per example."},
    )
    save_steps: int = field(
        default=20,
        metadata={
            "trl": "save_steps",
            "execution": True,
            "range": Range(ge=1),
            "help": "Checkpoint every N steps so a killed SFT stage resumes there. How to run, "
            "not what: not saved in config.yaml.",
        },
    )
    logging_steps: int = field(
        default=1,
        metadata={
            "trl": "logging_steps",
            "execution": True,
            "range": Range(ge=1),
            "help": "Log metrics every N steps. How to run, not what: not saved in config.yaml.",
        },
    )
