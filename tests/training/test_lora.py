"""LoRA through the loop on the tiny model: each iteration trains an adapter on π_t, writes the
merged weights plus `adapter/`, the next iteration continues from the merged weights, and
`aries serve` / `aries eval` load the result."""

from __future__ import annotations

import json

import httpx
import pytest
from safetensors.torch import load_file

from aries import AriesError
from aries.backends import Sampling
from aries.backends.hf import HFBackend
from aries.backends.lora import lora_policy, max_lora_rank, write_adapter
from aries.cli import main
from aries.core.models import load_causal_lm
from aries.core.testing import TINY_ARITHMETIC, tiny_run_config
from aries.pipeline.loop import run
from aries.pipeline.runconfig import resolve_config
from aries.serving.serve import create_app, running


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_path):
    config = tiny_run_config(tiny_model_path, tmp_path_factory.mktemp("lora") / "runs", prompts=4)
    config["iterations"] = 2
    config["train"].update(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    config["eval"]["enabled"] = False  # `aries eval` below evaluates the last iteration
    config = resolve_config(config)
    manifest = run(config, progress=False)
    return config.run_dir, manifest


def _max_difference(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_each_iteration_saves_merged_weights_and_its_adapter_on_the_previous_policy(
    lora_run, tiny_model_path
):
    run_dir, manifest = lora_run
    for t in ("0", "1"):
        assert manifest["iterations"][t]["stages"]["train"]["counts"]["steps"] > 0
    starts = [tiny_model_path, run_dir / "iter_0" / "model"]
    for t, start in enumerate(starts):
        model = run_dir / f"iter_{t}" / "model"
        assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
        assert (model / "tokenizer.json").is_file()
        adapter = json.loads((model / "adapter" / "adapter_config.json").read_text())
        # iteration 1 trained its adapter on iteration 0's merged weights, not on π_0
        assert adapter["base_model_name_or_path"] == str(start)
        assert (adapter["r"], adapter["lora_alpha"]) == (4, 8)
        merged = load_file(model / "model.safetensors")
        assert _max_difference(merged, load_file(start / "model.safetensors")) > 0
        assert not any("lora" in name for name in merged)  # plain weights, no PEFT layers
        # the merged weights are the start plus this iteration's adapter
        rebuilt = load_causal_lm(str(model / "adapter"), dtype="float32", device="cpu")
        assert _max_difference(merged, rebuilt.state_dict()) < 1e-5


def test_serve_and_eval_load_the_lora_iterations(lora_run, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra (not in the floor environment)")
    run_dir, _ = lora_run
    model = run_dir / "iter_1" / "model"
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    greedy = Sampling(max_new_tokens=6, temperature=0.0)
    expected = HFBackend(str(model), batch_size=2).generate([messages], greedy)[0].text
    for served in (model, model / "adapter"):  # the merged folder, or the adapter on its base
        app = create_app(HFBackend(str(served), batch_size=2), model_name="lora", max_new_tokens=6)
        with running(app) as url:
            body = {"model": "lora", "messages": messages, "temperature": 0, "max_tokens": 6}
            response = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == expected
    task = "reasoning-gym:basic_arithmetic?" + "&".join(
        f"{k}={str(v).lower()}" for k, v in TINY_ARITHMETIC.items() if k != "name"
    )
    out = tmp_path / "eval.json"
    code = main(
        ["eval", "--run", str(run_dir), "--benchmark", task, "--size", "2", "--rounds", "1"]
        + ["--max-new-tokens", "4", "--out", str(out)]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["model"] == str(model)  # --run picks the latest iteration's merged folder
    assert result["n_prompts"] == 2 and len(result["per_round"]) == 2


def test_the_adapters_of_a_run_stack_into_one_on_the_first_model(
    lora_run, tiny_model_path, tmp_path
):
    # What lets vLLM serve every iteration of a LoRA run on one base (aries/backends/lora.py).
    run_dir, _ = lora_run
    model = run_dir / "iter_1" / "model"
    policy = lora_policy(str(model))
    assert policy.base == str(tiny_model_path) and policy.rank == 8
    assert policy.adapters == (run_dir / "iter_0" / "model" / "adapter", model / "adapter")
    stacked = write_adapter(policy, tmp_path / "stacked")
    assert json.loads((stacked / "adapter_config.json").read_text())["r"] == 8
    rebuilt = load_causal_lm(str(stacked), dtype="float32", device="cpu")
    assert _max_difference(load_file(model / "model.safetensors"), rebuilt.state_dict()) < 1e-5
    assert lora_policy(str(tiny_model_path)) is None
    assert [max_lora_rank(r) for r in (1, 8, 9, 512)] == [1, 8, 16, 512]
    with pytest.raises(AriesError, match="beyond vLLM's largest max_lora_rank"):
        max_lora_rank(513)
