"""`PreferenceTrainer`: TRL's DPOTrainer that also trains the aries losses of losses.py.

The batches, the reference precomputation and the forward stay TRL's (or prefix_dpo.py's); for an
aries loss only `_compute_loss` differs, and the per-pair values that loss reads (win rates, π_t's
log-probs) are carried from the dataset's columns into the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aries import AriesError
from aries.core.compat import check_private_api
from aries.training.losses import (
    ARIES_LOSSES,
    PAIR_VALUES,
    PREVIOUS_LOGPS,
    REF_LOGPS,
    WIN_RATES,
    aries_loss,
    pair_values,
)

check_private_api("trl")  # before the names below are imported: one line instead of an ImportError

from trl import DPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402


@dataclass
class PairValuesCollator(DataCollatorForPreference):
    """TRL's preference collator that also carries the per-pair values (win rates, π_t's
    log-probs) into the batch."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {**super().torch_call(examples), **pair_values(examples)}


class PreferenceTrainer(DPOTrainer):
    """TRL's DPOTrainer with the aries losses too; `args.loss_type` names one of either."""

    def __init__(self, *args, simpo_gamma: float = 0.0, inpo_tau: float = 0.0, **kwargs):
        self.aries_loss = aries_loss(kwargs["args"].loss_type)
        self.simpo_gamma, self.inpo_tau = simpo_gamma, inpo_tau
        if self.aries_loss and not kwargs["args"].precompute_ref_log_probs:
            # SimPO: TRL then loads no reference copy; INPO, SPPO: the loss reads the columns
            raise AriesError(f"loss {self.aries_loss} needs train.precompute_ref_log_probs: true")
        super().__init__(*args, **kwargs)
        if type(self.data_collator) is DataCollatorForPreference:
            self.data_collator = PairValuesCollator(**asdict(self.data_collator))

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys(self._signature_columns + list(PAIR_VALUES)))

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        """TRL's reference log-probs; none for SimPO; INPO also those of π_t."""
        if self.aries_loss == "simpo":
            return dataset  # reference-free
        with_ref = super()._precompute_ref_logps(dataset, name, batch_size)
        if self.aries_loss != "inpo":
            return with_ref
        from datasets import concatenate_datasets

        if self.ref_model is None:  # π_ref is the policy itself: π_0 = π_t (iteration 0)
            previous = with_ref.select_columns(list(REF_LOGPS))
        else:  # the same precomputation with the policy as the model
            from trl.trainer.utils import hash_module

            saved = self.ref_model, self._precompute_model_hash
            self.ref_model, self._precompute_model_hash = None, hash_module(self.model)
            try:
                previous = super()._precompute_ref_logps(dataset, f"{name} (π_t)", batch_size)
            finally:
                self.ref_model, self._precompute_model_hash = saved
            previous = previous.select_columns(list(REF_LOGPS))
        previous = previous.rename_columns(dict(zip(REF_LOGPS, PREVIOUS_LOGPS)))
        return concatenate_datasets([with_ref, previous], axis=1)

    def compute_ref_log_probs(self, model, inputs):
        model_inputs = {k: v for k, v in inputs.items() if k not in PREVIOUS_LOGPS + WIN_RATES}
        return super().compute_ref_log_probs(model, model_inputs)

    def _compute_loss(self, model, inputs, return_outputs):
        if self.aries_loss is None:
            return super()._compute_loss(model, inputs, return_outputs)
        completion_mask = inputs["completion_mask"]
        token_mask = completion_mask[:, 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        model_inputs = {k: v for k, v in inputs.items() if k not in PAIR_VALUES}
        model_inputs.pop("completion_mask")
        outputs = model(**model_inputs, labels=labels, use_cache=False, fused_lm_head=True)
        logps = outputs.log_probs[:, -token_mask.size(1) :].sum(dim=1)
        chosen, rejected = logps.chunk(2)
        per_pair, rewards = self._aries_loss(inputs, chosen, rejected, token_mask.sum(dim=1))
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        margins = (rewards[0] - rewards[1]).detach()
        self._metrics[mode]["rewards/margins"].append(gather(margins).mean().item())
        self._metrics[mode]["rewards/accuracies"].append(gather(margins > 0).float().mean().item())
        self._metrics[mode]["logps/chosen"].append(gather(chosen.detach()).mean().item())
        self._metrics[mode]["logps/rejected"].append(gather(rejected.detach()).mean().item())
        loss = per_pair.mean()
        return (loss, outputs) if return_outputs else loss

    def _aries_loss(self, inputs, chosen, rejected, tokens):
        """The per-pair loss and the implicit rewards (chosen, rejected) it compares."""
        return ARIES_LOSSES[self.aries_loss].batch_loss(self, inputs, chosen, rejected, tokens)
