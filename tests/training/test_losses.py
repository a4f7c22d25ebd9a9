"""The aries losses (SimPO, INPO, SPPO) and SPPO's win rates against values computed by hand."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re

import pytest
import torch

from aries import AriesError
from aries.method.winrates import estimator, win_rates
from aries.training.losses import (
    TRL_LOSS_TYPES,
    check_loss_type,
    inpo_loss,
    simpo_loss,
    sppo_loss,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_simpo_loss_by_hand():
    # pair 1: averages -6/3 = -2 and -12/4 = -3; β = 2: margin 2*(-2) - 2*(-3) = 2, minus γ = 1:
    #         -log σ(1) = log(1 + e^-1) = 0.3132616875
    # pair 2: averages -10/5 = -2 and -4/2 = -2: margin 0, minus γ = -1: log(1 + e) = 1.3132616875
    loss = simpo_loss(t(-6, -10), t(-12, -4), t(3, 5), t(4, 2), beta=2.0, gamma=1.0)
    assert loss.tolist() == pytest.approx([0.3132616875, 1.3132616875], abs=1e-9)


def test_inpo_loss_by_hand():
    # η = 0.5, τ = 0.25: h = log-ratio - 0.5 * ref log-ratio - 0.5 * previous log-ratio, target 1
    # pair 1: log-ratio -3 - -5 = 2, ref 0, previous 1: h = 1.5, (1.5 - 1)^2 = 0.25
    # pair 2: log-ratio 2, ref -2 - -6 = 4, previous 1: h = -0.5, (-0.5 - 1)^2 = 2.25
    loss = inpo_loss(
        t(-3, -3), t(-5, -5), t(-4, -2), t(-4, -6), t(-3.5, -3.5), t(-4.5, -4.5), eta=0.5, tau=0.25
    )
    assert loss.tolist() == pytest.approx([0.25, 2.25])


def test_sppo_loss_by_hand_and_trl_sppo_hard_is_its_hard_case():
    # β = 0.5 (1/β = 2): (0.4 - 2 * 0.25)^2 + (-0.3 - 2 * -0.25)^2 = 0.01 + 0.04 = 0.05
    loss = sppo_loss(t(0.4), t(-0.3), t(0.75), t(0.25), beta=0.5)
    assert loss.item() == pytest.approx(0.05)
    # P̂_w = 1, P̂_l = 0 is TRL's sppo_hard: (Δ_w - 0.5/β)^2 + (Δ_l + 0.5/β)^2 = 0.36 + 0.49
    hard = sppo_loss(t(0.4), t(-0.3), t(1.0), t(0.0), beta=0.5)
    assert hard.item() == pytest.approx((0.4 - 1) ** 2 + (-0.3 + 1) ** 2) == pytest.approx(0.85)


def test_win_rates_by_hand():
    # Bradley-Terry, scores 0, 0, log 3: σ(-log 3) = 1/4, σ(log 3) = 3/4, self = 1/2
    assert win_rates([0.0, 0.0, math.log(3)], "bradley-terry") == pytest.approx(
        [1.25 / 3, 1.25 / 3, 2 / 3]
    )
    # correctness: one right of three: (1/2 + 1 + 1)/3 and (0 + 1/2 + 1/2)/3
    assert win_rates([1.0, 0.0, 0.0], "correctness") == pytest.approx([2.5 / 3, 1 / 3, 1 / 3])
    # a pairwise judge's win rates over the 2 others, K = 3: (s * 2 + 1/2) / 3
    assert win_rates([1.0, 0.25, 0.5], "pairwise") == pytest.approx([2.5 / 3, 1 / 3, 0.5])
    assert estimator("judge:pairwise:embedded", "reward") == "pairwise"
    assert estimator("verifier", "verifier") == "correctness"
    assert estimator("reward-model:x", "reward") == "bradley-terry"


def test_selection_writes_win_rates_into_pairs():
    from aries.method.select import SelectionConfig, select_pairs

    chain = {
        "id": "p",
        "prompt": "2+2?",
        "chain": [{"round": 0, "text": "4", "finish_reason": "stop"}],
        "samples": [
            {"sample": 0, "text": "5", "finish_reason": "stop"},
            {"sample": 1, "text": "four", "finish_reason": "stop"},
        ],
    }
    scores = {"id": "p", "source": "verifier", "chain_scores": [1.0], "sample_scores": [0.0, 1.0]}
    config = SelectionConfig(strategy="verifier", candidates="samples")
    (pair,) = select_pairs([chain], [scores], config).pairs
    # two right of three: right (1/2 + 1/2 + 1)/3 = 2/3, wrong (0 + 0 + 1/2)/3 = 1/6
    assert pair["chosen_win_rate"] == pytest.approx(2 / 3)
    assert pair["rejected_win_rate"] == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    ("loss_type", "message"),
    [("simpo,sigmoid", "cannot be combined"), ("simpoo", "not a loss type")],
)
def test_bad_loss_types_fail_with_the_choices(loss_type, message):
    with pytest.raises(AriesError, match=message):
        check_loss_type(loss_type)


def test_the_declared_trl_loss_types_are_the_installed_trl_s():
    """losses.py declares TRL's loss types, so that a config load imports no trainer: they are the
    ones the installed DPOTrainer computes, in the order its DPOConfig lists them."""
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    computed = re.findall(r'loss_type == "(\w+)"', inspect.getsource(DPOTrainer._compute_loss))
    help_text = next(
        f.metadata["help"] for f in dataclasses.fields(DPOConfig) if f.name == "loss_type"
    )
    listed = re.findall(r"`'(\w+)'`", help_text)
    assert TRL_LOSS_TYPES == tuple(computed) == tuple(listed)
