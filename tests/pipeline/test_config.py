"""Run configuration: resolved round trip, overrides, and errors that name the key."""

import pytest
import yaml

from aries import AriesError
from aries.core.config import apply_overrides, to_dict
from aries.pipeline.runconfig import RunConfig, load_run_config, resolve_config
from aries.pipeline.rundir import prepare_run_dir


def test_resolved_config_round_trips(tmp_path):
    config = load_run_config("configs/demo.yaml", [f"output_dir={tmp_path}"])
    prepare_run_dir(config)
    saved = yaml.safe_load((config.run_dir / "config.yaml").read_text())
    assert saved["train"]["beta"] == 0.1 and "lora_r" in saved["train"]  # defaults written out
    assert resolve_config(saved) == config


def test_overrides_with_yaml_values():
    data = apply_overrides(
        {"train": {"beta": 0.1}}, ["train.beta=0.05", "iterations=2", "train.lora=true"]
    )
    config = resolve_config(data)
    assert config.train.beta == 0.05 and config.iterations == 2 and config.train.lora is True


def test_unknown_key_gets_a_suggestion():
    with pytest.raises(AriesError, match=r"'train.bta'.*train.beta"):
        resolve_config({"train": {"bta": 0.1}})


def test_wrong_type_names_the_key():
    with pytest.raises(AriesError, match="generation.rounds: expected int"):
        resolve_config({"generation": {"rounds": "two"}})
    with pytest.raises(AriesError, match="train.reference"):
        resolve_config({"train": {"reference": "latest"}})


def test_methods_imply_their_settings():
    iterative = resolve_config({"method": "iterative-dpo", "generation": {"samples": 3}})
    assert iterative.generation.rounds == 0
    assert iterative.selection.candidates == "samples"
    assert iterative.pairs.w_refine == 0.0
    with pytest.raises(AriesError, match="samples >= 1"):
        resolve_config({"method": "iterative-dpo"})


def test_changed_config_is_refused_unless_overwrite(tmp_path):
    config = resolve_config({"output_dir": str(tmp_path), "name": "r"})
    prepare_run_dir(config)
    (config.run_dir / "marker").write_text("x")
    changed = resolve_config({"output_dir": str(tmp_path), "name": "r", "iterations": 5})
    with pytest.raises(AriesError, match="different configuration"):
        prepare_run_dir(changed)
    prepare_run_dir(changed, overwrite=True)
    assert not (config.run_dir / "marker").exists()


def test_shipped_configs_are_valid():
    from pathlib import Path

    for path in Path("configs").glob("*.yaml"):
        assert isinstance(load_run_config(path), RunConfig), path
        assert to_dict(load_run_config(path))["name"]


def test_view_weights_under_train_still_load_with_a_deprecation_message():
    with pytest.warns(FutureWarning, match="train.w_keep moved to the pairs"):
        config = resolve_config({"train": {"w_keep": 1.0, "beta": 0.2}})
    assert config.pairs.w_keep == 1.0 and config.train.beta == 0.2
    with pytest.raises(AriesError, match="both set"):
        resolve_config({"train": {"w_keep": 1.0}, "pairs": {"w_keep": 0.5}})


def test_an_old_run_folder_resumes_under_the_moved_keys(tmp_path):
    old = resolve_config({"output_dir": str(tmp_path), "name": "r", "pairs": {"w_keep": 1.0}})
    prepare_run_dir(old)
    saved = yaml.safe_load((old.run_dir / "config.yaml").read_text())
    saved["train"]["w_keep"] = saved.pop("pairs")["w_keep"]  # as an older version wrote it
    (old.run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.warns(FutureWarning):
        prepare_run_dir(old)
    assert yaml.safe_load((old.run_dir / "config.yaml").read_text())["pairs"]["w_keep"] == 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"selection": {"strategy": "rewad"}}, "'reward', 'rule', 'verifier'.*did you mean"),
        ({"selection": {"tie_break": "short"}}, "'shorter' or 'reward'"),
        ({"generation": {"backend": "vlm"}}, "'hf', 'openai', 'vllm'"),
        ({"reward": {"type": "judge", "mode": "pairwse"}}, "'pointwise' or 'pairwise'"),
        ({"train": {"loss_type": "sigmoid,ipo2"}}, "'ipo2'.*installed TRL.*sigmoid"),
    ],
)
def test_a_typo_in_an_enumerated_option_fails_at_load_with_the_choices(data, message):
    with pytest.raises(AriesError, match=message):
        resolve_config(data)


def test_every_method_has_a_plan_of_stages():
    from aries.pipeline.methods import METHODS

    assert list(METHODS) == [
        "aries",
        "dno",
        "iterative-dpo",
        "self-refine",
        "temporal-self-rewarding",
    ]
    assert [s.name for s in METHODS["aries"].plan.per_iteration][-2:] == ["train", "eval"]


def _model_folder(path, tokenizer=None):
    """A model folder as --check sees it: a config, safetensors weights (never loaded) and the
    tokenizer (loaded, to measure the prompts against train.max_length)."""
    import shutil

    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    for file in tokenizer.iterdir() if tokenizer else ():
        shutil.copy(file, path)
    return str(path)


def _check(data):
    from aries.pipeline.plan import check_config

    check_config(resolve_config(data))


def test_check_resolves_model_folders_and_hub_ids_without_loading(
    tmp_path, monkeypatch, tokenizer_path
):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = _model_folder(tmp_path / "policy", tokenizer_path)
    _check({"model": model})
    for data, message in [
        ({"model": str(tmp_path / "gone")}, r"^model: .*gone: model folder not found$"),
        ({"model": str(tmp_path)}, r"^model: .*: not a model folder \(no config.json\)$"),
        ({"model": "org/uncached"}, r"^model: org/uncached: not a local folder, and not in"),
        ({"model": model, "teacher": {"model": "org/teach"}}, r"^teacher.model: org/teach: "),
        (
            {"model": model, "reward": {"type": "reward-model", "model": str(tmp_path / "rm")}},
            r"^reward.model: .*rm: model folder not found$",
        ),
        (
            {"model": model, "eval": {"verifier": {"type": "judge", "model": "a/b"}}},
            r"^eval.verifier.model: a/b: not a local folder",
        ),
    ]:
        with pytest.raises(AriesError, match=message):
            _check(data)
    (tmp_path / "weightless").mkdir()
    (tmp_path / "weightless" / "config.json").write_text("{}")
    with pytest.raises(AriesError, match=r"^model: .*weightless: no \*.safetensors"):
        _check({"model": str(tmp_path / "weightless")})
    snapshot = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc"
    _model_folder(snapshot, tokenizer_path)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    _check({"model": "org/cached"})  # in the cache: valid offline


def test_check_resolves_prompt_sources_and_datasets(tmp_path, monkeypatch, tokenizer_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = _model_folder(tmp_path / "policy", tokenizer_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "question": "1+1?"}\n')
    gym = {"name": "reasoning-gym:basic_arithmetic", "seed": 5, "max_terms": 2}
    _check(
        {
            "model": model,
            "prompts": {"sources": [gym, {"name": str(prompts), "fields": {"prompt": "question"}}]},
        }
    )
    for data, message in [
        (
            {"prompts": {"sources": [{"name": "reasoning-gym:basic_arithmetc"}]}},
            r"^prompts.sources\[0\].name: reasoning-gym has no task 'basic_arithmetc'; did you "
            "mean "
            "'basic_arithmetic'\\?$",
        ),
        (
            {"eval": {"sources": [{**gym, "max_termz": 3}]}},
            r"^unknown config key 'eval.sources\[0\].max_termz'; did you mean "
            r"eval.sources\[0\].max_terms\?$",
        ),
        (
            {"prompts": {"exclude": [str(tmp_path / "missing.jsonl")]}},
            r"^prompts.exclude\[0\]: .*missing.jsonl: prompt file not found$",
        ),
        (
            {"prompts": {"sources": [str(prompts)]}},
            r"^prompts.sources\[0\]: .*prompts.jsonl:1: missing prompt field 'prompt'",
        ),
        (
            {"prompts": {"sources": ["someone/uncached-dataset"]}},
            r"^prompts.sources\[0\]: someone/uncached-dataset: not a local file, and the hub",
        ),
        (
            {"sft": {"enabled": True, "dataset": str(tmp_path / "sft")}},
            r"^sft.dataset: .*sft does not exist$",
        ),
    ]:
        with pytest.raises(AriesError, match=message):
            _check({"model": model, **data})


def test_train_settings_pass_through_to_dpoconfig_unchanged(tmp_path):
    from dataclasses import fields

    from trl import DPOConfig

    from aries.training.config import TrainConfig
    from aries.training.losses import aries_loss, loss_names
    from aries.training.train import dpo_arguments

    train = TrainConfig(
        loss_type="sigmoid, sft", beta=0.3, epochs=2, batch_size=3, max_steps=7, max_length=99
    )
    built = dpo_arguments(
        train,
        checkpoints=tmp_path / "ck",
        output_dir=tmp_path / "model",
        log_dir=None,
        seed=3,
        trust_remote_code=False,
    )
    args = DPOConfig(**built)
    passed = [f for f in fields(TrainConfig) if "trl" in f.metadata]
    assert {f.metadata["trl"] for f in passed} <= {f.name for f in fields(DPOConfig)}
    assert len(passed) >= 13
    for field in passed:
        assert built[field.metadata["trl"]] == getattr(train, field.name), field.name
    assert args.num_train_epochs == 2.0 and args.per_device_train_batch_size == 3
    assert args.loss_type == ["sigmoid", "sft"] and args.seed == args.data_seed == 3
    assert loss_names(["simpo"]) == loss_names(" simpo") == ("simpo",)
    assert aries_loss(["simpo"]) == "simpo" and aries_loss("sigmoid,sft") is None


def test_check_proves_the_output_dir_writable_and_leaves_no_trace(tmp_path, tiny_model_path):
    from aries.pipeline.plan import check_config

    fresh = tmp_path / "new" / "runs"
    check_config(resolve_config({"model": str(tiny_model_path), "output_dir": str(fresh)}))
    assert list(tmp_path.iterdir()) == []  # made to prove it, then removed again
    (tmp_path / "file").write_text("not a folder")
    never = tmp_path / "file" / "runs"
    with pytest.raises(AriesError, match=rf"^output_dir: cannot write to {never} \("):
        check_config(resolve_config({"model": str(tiny_model_path), "output_dir": str(never)}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
