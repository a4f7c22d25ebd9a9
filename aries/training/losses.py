"""Preference losses beyond TRL's DPO loss types: SimPO, INPO and SPPO with soft win rates.

    simpo  -log σ(β/|y_w| log π(y_w|x) - β/|y_l| log π(y_l|x) - γ)         (arXiv 2405.14734, Eq. 6)
    inpo   (h - 1/(2η))²,  h = log π(y_w)/π(y_l) - (τ/η) log π_0(y_w)/π_0(y_l)
                               - ((η-τ)/η) log π_t(y_w)/π_t(y_l)      (arXiv 2407.00617), η = β
    sppo   (Δ_w - (P̂_w - ½)/β)² + (Δ_l - (P̂_l - ½)/β)²,  Δ = log π(y)/π_t(y)  (arXiv 2405.00675)

TRL 1.16's DPOTrainer has none of them (its `sppo_hard` is SPPO with P̂_w = 1, P̂_l = 0; SimPO is
only in the experimental CPOTrainer, a separate trainer without our prefix sharing), so
`PreferenceTrainer` (preference_trainer.py) adds them to DPOTrainer: the batches, the reference
precomputation and the forward stay TRL's (or prefix_dpo.py's), only the loss is computed here.
TRL's own loss types run TRL's `_compute_loss` unchanged. The per-pair values a loss reads besides
the policy's log-probs (reference log-probs, log-probs under π_t, win rates) travel as dataset
columns.

This module imports neither TRL nor torch at load: a config's loss settings are checked here when
it is loaded, and that should not cost the trainer's import (seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aries import AriesError
from aries.core.registry import Registry

if TYPE_CHECKING:
    import torch

WIN_RATES = ("chosen_win_rate", "rejected_win_rate")
PREVIOUS_LOGPS = ("previous_chosen_logps", "previous_rejected_logps")
REF_LOGPS = ("ref_chosen_logps", "ref_rejected_logps")
PAIR_VALUES = REF_LOGPS + PREVIOUS_LOGPS + WIN_RATES
"""Per-pair numbers that the collators carry into the batch, next to the token ids."""


def simpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_tokens: torch.Tensor,
    rejected_tokens: torch.Tensor,
    beta: float,
    gamma: float,
) -> torch.Tensor:
    """SimPO (arXiv 2405.14734, Eq. 6): reference-free, length-normalised, target margin γ."""
    from torch.nn.functional import logsigmoid

    margin = beta * chosen_logps / chosen_tokens - beta * rejected_logps / rejected_tokens
    return -logsigmoid(margin - gamma)


def inpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    previous_chosen_logps: torch.Tensor,
    previous_rejected_logps: torch.Tensor,
    eta: float,
    tau: float,
) -> torch.Tensor:
    """INPO (arXiv 2407.00617): the online-mirror-descent step towards the Nash policy as a
    squared loss; π_ref = π_0 (KL strength τ), π_t the previous policy, step 1/η."""
    h = (
        (chosen_logps - rejected_logps)
        - tau / eta * (ref_chosen_logps - ref_rejected_logps)
        - (eta - tau) / eta * (previous_chosen_logps - previous_rejected_logps)
    )
    return (h - 1 / (2 * eta)) ** 2


def sppo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    chosen_win_rates: torch.Tensor,
    rejected_win_rates: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """SPPO (arXiv 2405.00675, Eq. 4.7 on a pair): each log-ratio against π_t regresses on its
    response's estimated win rate P̂(y ≻ π_t) - ½, scaled by 1/β (the paper's η)."""
    return (chosen_logratios - (chosen_win_rates - 0.5) / beta) ** 2 + (
        rejected_logratios - (rejected_win_rates - 0.5) / beta
    ) ** 2


def _simpo_batch(trainer, inputs, chosen, rejected, tokens):
    chosen_tokens, rejected_tokens = tokens.clamp(min=1).chunk(2)
    beta = trainer.beta
    loss = simpo_loss(chosen, rejected, chosen_tokens, rejected_tokens, beta, trainer.simpo_gamma)
    return loss, (beta * chosen / chosen_tokens, beta * rejected / rejected_tokens)


def _inpo_batch(trainer, inputs, chosen, rejected, tokens):
    references = [inputs[key].to(chosen.dtype) for key in REF_LOGPS]
    previous = [inputs[key].to(chosen.dtype) for key in PREVIOUS_LOGPS]
    loss = inpo_loss(chosen, rejected, *references, *previous, trainer.beta, trainer.inpo_tau)
    return loss, (chosen - previous[0], rejected - previous[1])


def _sppo_batch(trainer, inputs, chosen, rejected, tokens):
    if WIN_RATES[0] not in inputs:
        raise AriesError("loss sppo needs the pairs' win rates (selection reward or verifier)")
    ref_chosen, ref_rejected = (inputs[key].to(chosen.dtype) for key in REF_LOGPS)
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    win_rates = [inputs[key].to(chosen.dtype) for key in WIN_RATES]
    loss = sppo_loss(chosen_ratio, rejected_ratio, *win_rates, trainer.beta)
    return loss, (trainer.beta * chosen_ratio, trainer.beta * rejected_ratio)


BatchLoss = Callable[..., "tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]"]


@dataclass(frozen=True)
class LossSpec:
    """An aries loss: how it reads a batch, and what it needs besides the policy's log-probs."""

    paper: str
    reference: Literal["none", "train.reference", "initial"]
    """π_ref: none (reference-free), the configured train.reference, or always π_0."""
    batch_loss: BatchLoss
    """(trainer, batch, chosen log-probs, rejected log-probs, token counts) -> (per-pair loss,
    the implicit rewards of chosen and rejected)."""
    previous_logps: bool = False
    """Also log-probs under π_t, the policy the iteration starts from (precomputed)."""
    win_rates: bool = False
    """Reads the pairs' `chosen_win_rate` / `rejected_win_rate` (from selection)."""


ARIES_LOSSES: Registry[LossSpec] = Registry("aries loss")
ARIES_LOSSES["simpo"] = LossSpec("SimPO, Meng et al. 2024, arXiv 2405.14734", "none", _simpo_batch)
ARIES_LOSSES["inpo"] = LossSpec(
    "INPO, Zhang et al. 2024, arXiv 2407.00617", "initial", _inpo_batch, previous_logps=True
)
ARIES_LOSSES["sppo"] = LossSpec(
    "SPPO, Wu et al. 2024, arXiv 2405.00675", "train.reference", _sppo_batch, win_rates=True
)
"""The losses aries adds to TRL's DPO loss types, by `train.loss_type` name."""


TRL_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
"""The loss types of TRL 1.16's DPOTrainer, in its order: declared here so that a config load
imports no trainer (tests/training/test_losses.py checks them against the installed TRL)."""


def loss_names(loss_type: str | Sequence[str]) -> tuple[str, ...]:
    """The loss names of `train.loss_type` ("sigmoid,sft") or of `DPOConfig.loss_type` (a list):
    the one place where the setting is parsed."""
    names = loss_type.split(",") if isinstance(loss_type, str) else loss_type
    return tuple(name.strip() for name in names)


def aries_loss(loss_type: str | Sequence[str]) -> str | None:
    """The aries loss named by a loss type (as `loss_names` reads it), or None for TRL's."""
    names = loss_names(loss_type)
    return names[0] if len(names) == 1 and names[0] in ARIES_LOSSES else None


def check_loss_type(loss_type: str) -> None:
    """Fail at config load, not after collection, on a loss type neither TRL nor aries knows."""
    names = loss_names(loss_type)
    for name in names:
        if name in ARIES_LOSSES:
            if len(names) > 1:
                raise AriesError(f"train.loss_type {name!r} cannot be combined with other losses")
        elif name not in TRL_LOSS_TYPES:
            raise AriesError(
                f"train.loss_type {name!r} is not a loss type of the installed TRL nor of aries; "
                f"choose from {', '.join(TRL_LOSS_TYPES + tuple(ARIES_LOSSES))} "
                "(comma-separate TRL's)"
            )


def reference_kind(loss_type: str, reference: str) -> str:
    """π_ref of a training: 'none', 'previous' (π_t) or 'initial' (π_0)."""
    name = aries_loss(loss_type)
    kind = ARIES_LOSSES[name].reference if name else "train.reference"
    return reference if kind == "train.reference" else kind


def check_loss_settings(train: Any, strategy: str) -> None:
    """Config-time checks of `train:` (a TrainConfig) for its loss; `strategy` is selection's."""
    check_loss_type(train.loss_type)
    name = aries_loss(train.loss_type)
    if name is None:
        return
    if not train.precompute_ref_log_probs:
        raise AriesError(f"train.loss_type {name} needs train.precompute_ref_log_probs: true")
    if name == "inpo" and train.reference != "initial":
        raise AriesError(
            "train.loss_type inpo regularises towards π_0 and steps from π_t (arXiv 2407.00617): "
            "set train.reference: initial"
        )
    if name == "inpo" and not 0 <= train.inpo_tau <= train.beta:
        raise AriesError(f"INPO needs 0 <= train.inpo_tau <= train.beta (η), not {train.inpo_tau}")
    if name == "sppo" and strategy == "rule":
        raise AriesError(
            "train.loss_type sppo needs win rates: selection.strategy reward or verifier"
        )


def loss_columns(dataset, loss_type: str, where: Any):
    """The pair dataset with the per-pair columns its loss reads (win rates for SPPO only)."""
    spec = ARIES_LOSSES.get(aries_loss(loss_type) or "")
    present = [key for key in WIN_RATES if key in dataset.column_names]
    if spec is None or not spec.win_rates:
        return dataset.remove_columns(present)
    if len(present) < 2 or any(v is None for key in WIN_RATES for v in dataset[key]):
        raise AriesError(
            f"{where}: loss sppo needs chosen_win_rate / rejected_win_rate in every pair "
            "(selection strategy reward or verifier writes them)"
        )
    return dataset


def pair_values(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The batch tensors of the per-pair values present in the examples."""
    import torch

    return {
        key: torch.tensor([example[key] for example in examples], dtype=torch.float32)
        for key in PAIR_VALUES
        if key in examples[0]
    }
