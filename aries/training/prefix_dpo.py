"""Prefix-shared preference batches for TRL's DPOTrainer (Wang et al. 2024, arXiv 2410.20305).

TRL runs every pair as two sequences, prompt+chosen and prompt+rejected, so the prompt (most of a
refine-view example: question, previous answer, feedback) goes through the model twice. Here each
pair is one sequence, prompt + chosen + rejected: the rejected tokens see the prompt but not the
chosen ones (a 4D attention mask) and their position ids restart at len(prompt), so every token
sees exactly the context and positions it has in TRL's layout. The LM head then scores only the
completion tokens (TRL's fused head scores every position off CUDA).

Only the log-probabilities are computed differently. The collator also emits TRL's batch keys in a
completion-only layout (one row per completion: chosen rows, then rejected rows), and the model's
forward, given the shared sequences, returns TRL's `FusedCausalLMOutput` in that layout; TRL's own
`_compute_loss`, `compute_ref_log_probs` and reference precomputation run unchanged, so every loss
type, the metrics, LoRA and accelerate behave as in TRL (and the aries losses of losses.py, which
read the same forward).
"""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass
from typing import Any

import torch

from aries import AriesError
from aries.core.compat import check_private_api

check_private_api("trl")  # before the names below are imported

from trl.kernels import ChunkedLogProbFunction  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402
from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE, FusedCausalLMOutput, pad  # noqa: E402

from aries.training.losses import pair_values  # noqa: E402
from aries.training.preference_trainer import PreferenceTrainer  # noqa: E402

SHARED_IDS = "prefix_shared_input_ids"
SHARED_LENGTHS = "prefix_shared_lengths"


@dataclass
class PrefixSharedCollator(DataCollatorForPreference):
    """Batches pairs as prompt + chosen + rejected sequences, truncated as TRL's collator does.

    `input_ids`/`completion_mask` are TRL's keys in the completion-only layout: row i holds the
    token before the completion, then the completion, right-padded. `attention_mask` is read by
    TRL only to count tokens, so its first column holds the prompt length: the count matches
    TRL's.
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if self.truncation_mode != "keep_start":
            raise AriesError("prefix sharing needs truncation_mode='keep_start'")
        shared, lengths, completions, prompt_lengths, last_prompt_tokens = [], [], [], [], []
        for example in examples:
            prompt = example["prompt_ids"]
            room = None if self.max_length is None else max(self.max_length - len(prompt), 0)
            prompt = prompt if self.max_length is None else prompt[: self.max_length]
            chosen, rejected = example["chosen_ids"][:room], example["rejected_ids"][:room]
            shared.append(torch.tensor(prompt + chosen + rejected))
            lengths.append([len(prompt), len(chosen), len(rejected)])
            completions.append((chosen, rejected))
            prompt_lengths.append(len(prompt))
            last_prompt_tokens.append(prompt[-1])
        rows = [c for c, _ in completions] + [r for _, r in completions]
        firsts = last_prompt_tokens * 2
        output = {
            SHARED_IDS: pad(
                shared,
                padding_value=self.pad_token_id,
                padding_side="right",
                pad_to_multiple_of=self.pad_to_multiple_of,
            ),
            SHARED_LENGTHS: torch.tensor(lengths),
            "input_ids": pad(
                [torch.tensor([first, *row]) for first, row in zip(firsts, rows)],
                padding_value=self.pad_token_id,
                padding_side="right",
            ),
            "attention_mask": pad(
                [torch.tensor([n, *[1] * len(row)]) for n, row in zip(prompt_lengths * 2, rows)],
                padding_value=0,
                padding_side="right",
            ),
            "completion_mask": pad(
                [torch.tensor([0, *[1] * len(row)]) for row in rows],
                padding_value=0,
                padding_side="right",
            ),
        }
        return {**output, **pair_values(examples)}


def shared_attention(lengths: torch.Tensor, width: int, mask_dtype: torch.dtype | None = None):
    """4D attention mask and position ids of prompt + chosen + rejected rows of `width` tokens.

    Causal, except that rejected tokens do not see the chosen ones; rejected positions restart at
    len(prompt). Padding keys are hidden; a padding query also sees itself (no empty row).
    `mask_dtype` None: a boolean mask (True = attend, for SDPA); else an additive mask (eager).
    """
    index = torch.arange(width, device=lengths.device)
    prompt, chosen, rejected = (lengths[:, i, None] for i in range(3))
    is_chosen = (index >= prompt) & (index < prompt + chosen)
    is_rejected = (index >= prompt + chosen) & (index < prompt + chosen + rejected)
    is_real = index < prompt + chosen + rejected
    allowed = (index[None, :, None] >= index[None, None, :]) & is_real[:, None, :]
    allowed &= ~(is_rejected[:, :, None] & is_chosen[:, None, :])
    allowed |= torch.eye(width, dtype=torch.bool, device=lengths.device)
    position_ids = torch.where(is_rejected, index - chosen, index)
    mask = allowed[:, None]
    if mask_dtype is not None:
        mask = torch.zeros(mask.shape, dtype=mask_dtype, device=mask.device).masked_fill(
            ~mask, torch.finfo(mask_dtype).min
        )
    return mask, position_ids


def predicting_positions(lengths: torch.Tensor, width: int, completion_width: int) -> torch.Tensor:
    """Flat index into the (batch * width) hidden states of the state that predicts each token of
    the completion-only rows (chosen rows, then rejected rows).

    Chosen token j follows position len(prompt) - 1 + j; rejected token 0 follows the last
    prompt token too, rejected token j > 0 follows its own previous token.
    """
    j = torch.arange(completion_width, device=lengths.device)
    prompt, chosen = lengths[:, 0, None], lengths[:, 1, None]
    chosen_source = prompt - 1 + j
    rejected_source = torch.where(j == 0, prompt - 1, prompt + chosen + j - 1)
    row_start = torch.arange(lengths.size(0), device=lengths.device)[:, None] * width
    return torch.cat([chosen_source + row_start, rejected_source + row_start])


def add_prefix_shared_forward(model, outputs: tuple[str, ...]) -> None:
    """Let `model(..., prefix_shared_input_ids=, prefix_shared_lengths=, labels=)` score the
    completion-only rows from shared sequences; without those keys the forward is TRL's.

    `model` is the module TRL gave its fused LM head (PEFT: the base model, so LoRA layers stay
    active or disabled as TRL sets them). `outputs` are the fused head's per-token fields.
    """
    if getattr(model, "_prefix_shared_forward", False):
        return
    config = model.config.get_text_config()
    scaling = [getattr(config, name, None) for name in ("logit_scale", "lm_head_multiplier")]
    if any(value not in (None, 1.0) for value in scaling) or getattr(
        config, "logits_scaling", None
    ):
        raise AriesError("prefix sharing supports models without LM-head logit scaling")
    softcapping = getattr(config, "final_logit_softcapping", None)
    attention = model.config._attn_implementation
    if attention not in ("sdpa", "eager"):
        raise AriesError(
            f"prefix sharing needs a 4D attention mask: attn_implementation sdpa or eager, "
            f"not {attention} (set train.prefix_sharing: false)"
        )
    fused_forward = model.forward

    def forward(self, *args, labels=None, **kwargs):
        if SHARED_IDS not in kwargs:
            return fused_forward(*args, labels=labels, **kwargs)
        shared_ids, lengths = kwargs.pop(SHARED_IDS), kwargs.pop(SHARED_LENGTHS)
        batch, width = shared_ids.shape
        dtype = None if attention == "sdpa" else self.dtype
        mask, position_ids = shared_attention(lengths, width, dtype)
        hidden = self.base_model(
            input_ids=shared_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        targets = labels[:, 1:]
        label_mask = targets != -100
        source = predicting_positions(lengths, width, targets.size(1))[label_mask]
        lm_head = self.get_output_embeddings()
        per_token = ChunkedLogProbFunction.apply(
            hidden.reshape(batch * width, -1)[source].to(lm_head.weight.device),
            lm_head.weight,
            lm_head.bias,
            targets[label_mask].to(lm_head.weight.device),
            1.0,
            _CHUNKED_LOGPROB_CHUNK_SIZE,
            softcapping,
            1.0,
            outputs,
        )
        label_mask = label_mask.to(lm_head.weight.device)
        log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(label_mask.shape).masked_scatter(label_mask, x)
            for x in per_token
        )
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / label_mask.sum().clamp(min=1),
            log_probs=log_probs,
            entropy=entropy,
            log_sum_sq_probs=log_sum_sq_probs,
            mean_logits=mean_logits,
            is_top1=is_top1,
            label_mask=label_mask,
        )

    model.forward = types.MethodType(forward, model)
    model._prefix_shared_forward = True


class PrefixSharedDPOTrainer(PreferenceTrainer):
    """TRL's DPOTrainer (with the aries losses) on prefix-shared batches (arXiv 2410.20305)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._share_prefixes()

    def _share_prefixes(self) -> None:
        """Swap in the collator and the forwards; runs before the reference precomputation."""
        if self._is_vision_dataset or self.aux_loss_enabled:
            raise AriesError("prefix sharing supports text-only, non-MoE models")
        if not isinstance(self.data_collator, PrefixSharedCollator):
            self.data_collator = PrefixSharedCollator(**asdict(self.data_collator))
        outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
        if self.use_weighting:
            outputs += ("log_sum_sq_probs",)
        policy = self.accelerator.unwrap_model(self.model)
        add_prefix_shared_forward(
            policy.get_base_model() if hasattr(policy, "get_base_model") else policy, outputs
        )
        if self.ref_model is not None:
            add_prefix_shared_forward(self.accelerator.unwrap_model(self.ref_model), ("log_probs",))

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        self._share_prefixes()
        return super()._precompute_ref_logps(dataset, name, batch_size)
