"""Prefix-shared DPO batches (arXiv 2410.20305) compute what TRL's DPOTrainer computes.

Same both-view pairs of mixed lengths, same policy and reference: the per-example log-probabilities,
the first-step loss and every parameter gradient must agree with TRL's own trainer. In float64 the
two layouts agree to RTOL_FP64 (the algorithm is exact; TRL's LM-head kernel keeps float32
statistics); in float32 to RTOL (the layouts sum the same terms in a different order, and the
chatty reference's large activations amplify rounding, so the loss types run in float64).
"""

from __future__ import annotations

import pytest

RTOL, ATOL = 1e-4, 1e-6
RTOL_FP64 = 1e-6


def _pairs():
    import datasets

    from aries.core.views import DEFAULT_REFINE_INSTRUCTION
    from aries.method.pairs import build_pairs

    selections = [
        {
            "id": str(i),
            "prompt": f"What is {i} + {3 * i}?" + " Explain." * (i % 3),
            "chosen": f"{i} + {3 * i} = {4 * i}." + " Check: yes." * i + f"\nAnswer: {4 * i}",
            "rejected": "I think" + " it is" * (5 - i) + f" {4 * i + 1}",
        }
        for i in range(5)
    ]
    rows = build_pairs(selections, instruction=DEFAULT_REFINE_INSTRUCTION)
    assert {row["view"] for row in rows} == {"direct", "refine"}
    return datasets.Dataset.from_list(rows).remove_columns(["id", "view"])


def _trainer(cls, policy, reference, tmp_path, dtype="float32", **overrides):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    torch.manual_seed(0)
    peft_config = overrides.pop("peft_config", None)
    args = DPOConfig(
        output_dir=str(tmp_path / cls.__name__),
        per_device_train_batch_size=len(_pairs()),
        max_length=overrides.pop("max_length", 512),
        report_to="none",
        use_cpu=True,
        bf16=False,  # TRL's default is bf16 autocast, on the CPU too; aries trains fp32 there
        **overrides,
    )
    return cls(
        model=AutoModelForCausalLM.from_pretrained(policy, dtype=dtype),
        ref_model=None
        if reference is None
        else AutoModelForCausalLM.from_pretrained(reference, dtype=dtype),
        args=args,
        train_dataset=_pairs(),
        processing_class=AutoTokenizer.from_pretrained(policy),
        peft_config=peft_config,
    )


def _first_step(trainer):
    """Per-example (chosen, rejected) log-probs, loss and gradients on the whole dataset."""
    import torch

    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    with torch.no_grad():
        logps = trainer.compute_ref_log_probs(trainer.model, batch)
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return torch.cat(logps), loss.detach(), grads, batch


def _assert_match(expected, actual, rtol: float, atol: float):
    import torch

    (e_logps, e_loss, e_grads, _), (a_logps, a_loss, a_grads, _) = expected, actual
    torch.testing.assert_close(a_logps, e_logps, rtol=rtol, atol=atol)
    torch.testing.assert_close(a_loss, e_loss, rtol=rtol, atol=atol)
    assert a_grads.keys() == e_grads.keys() and e_grads
    for name in e_grads:  # relative to the gradient's norm: TRL's head kernel keeps float32 sums
        error = float(
            (a_grads[name] - e_grads[name]).norm() / e_grads[name].norm().clamp(min=1e-12)
        )
        assert error < 10 * rtol, (name, error)


# The default run keeps sigmoid alone and one sum of the other kinds of input (squared
# log-ratios, length-normalised, + NLL): a wrong term would change the sum. Each on its own, and
# hinge, sppo_hard and apo_zero (functions of the two log-ratios, like sigmoid), under -m slow.
EACH_ALONE = pytest.mark.slow


@pytest.mark.parametrize(
    "loss_type",
    [
        "sigmoid",
        "ipo,sigmoid_norm,sft",
        *(
            pytest.param(name, marks=EACH_ALONE)
            for name in ("ipo", "sigmoid_norm", "sigmoid,sft", "hinge", "sppo_hard", "apo_zero")
        ),
    ],
)
def test_matches_trl(tmp_path, tiny_model_path, chatty_model_path, loss_type):
    from trl import DPOTrainer

    from aries.training.prefix_dpo import PrefixSharedDPOTrainer

    kwargs = {
        "loss_type": loss_type.split(","),
        "max_length": 110,
        "dtype": "float64",
    }  # truncates some refine pairs
    trl = _first_step(_trainer(DPOTrainer, tiny_model_path, chatty_model_path, tmp_path, **kwargs))
    ours = _first_step(
        _trainer(PrefixSharedDPOTrainer, tiny_model_path, chatty_model_path, tmp_path, **kwargs)
    )
    assert abs(float(trl[1]) - 0.6931) > 1e-3 or loss_type != "sigmoid"  # a real reference gap
    _assert_match(trl, ours, rtol=RTOL_FP64, atol=1e-9)
    # the shared layout holds each prompt once, and TRL's token count is kept
    assert ours[3]["prefix_shared_input_ids"].numel() < trl[3]["input_ids"].numel()
    assert ours[3]["attention_mask"].sum() == trl[3]["attention_mask"].sum()


def test_matches_trl_with_lora_and_precomputed_reference(tmp_path, tiny_model_path):
    import torch
    from peft import LoraConfig
    from trl import DPOTrainer

    from aries.training.prefix_dpo import PrefixSharedDPOTrainer

    def trainer(cls):
        lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
        made = _trainer(
            cls, tiny_model_path, None, tmp_path, peft_config=lora, precompute_ref_log_probs=True
        )
        for name, parameter in made.model.named_parameters():  # a policy away from the reference
            if "lora_B" in name:
                torch.nn.init.normal_(
                    parameter, std=0.5, generator=torch.Generator().manual_seed(1)
                )
        return made

    trl, ours = trainer(DPOTrainer), trainer(PrefixSharedDPOTrainer)
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        torch.testing.assert_close(
            torch.tensor(ours.train_dataset[key]),
            torch.tensor(trl.train_dataset[key]),
            rtol=RTOL,
            atol=ATOL,
        )
    expected, actual = _first_step(trl), _first_step(ours)
    assert abs(float(expected[1]) - 0.6931) > 1e-3
    assert all("lora" in name for name in actual[2])
    _assert_match(expected, actual, rtol=RTOL, atol=ATOL)


def test_shared_attention_keeps_branches_apart():
    import torch

    from aries.training.prefix_dpo import predicting_positions, shared_attention

    lengths = torch.tensor([[2, 2, 3], [3, 1, 1]])  # prompt, chosen, rejected
    mask, positions = shared_attention(lengths, width=7)
    assert positions.tolist() == [[0, 1, 2, 3, 2, 3, 4], [0, 1, 2, 3, 3, 5, 6]]
    first_rejected = mask[0, 0, 4]
    assert first_rejected.tolist() == [True, True, False, False, True, False, False]
    # padding keys are hidden; a padding query sees the real tokens and itself (no empty row)
    assert mask[1, 0, 5:].tolist() == [[True] * 6 + [False], [True] * 5 + [False, True]]
    # chosen rows then rejected rows; rejected token 0 is predicted from the last prompt token
    assert predicting_positions(lengths, 7, 3).tolist() == [
        [1, 2, 3],
        [9, 10, 11],
        [1, 4, 5],
        [9, 11, 12],
    ]


def test_sharded_head_engines_are_recognised_from_the_launchers_environment(tmp_path):
    """Prefix sharing reads lm_head.weight whole: off under FSDP and ZeRO-3 (env as
    `accelerate launch` sets it from accelerate/fsdp2.yaml and deepspeed_zero*.yaml)."""
    from aries.training.train import sharded_head_engine

    assert sharded_head_engine({}) is None
    assert sharded_head_engine({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}) == "FSDP2"
    zero = {"ACCELERATE_USE_DEEPSPEED": "true"}
    assert sharded_head_engine({**zero, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}) == (
        "DeepSpeed ZeRO-3"
    )
    assert sharded_head_engine({**zero, "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}) is None
    config = tmp_path / "ds.json"
    config.write_text('{"zero_optimization": {"stage": 3}}')
    assert sharded_head_engine({**zero, "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(config)}) == (
        "DeepSpeed ZeRO-3"
    )
