"""The schema: every option declared once, with its range or choices, and one validation pass that
names the dotted key, the value and what is allowed, whether the value came from YAML or Python."""

import dataclasses
import json
import re
import typing

import pytest

from aries import AriesError
from aries.core.config import Range, choices, help_text, number_type
from aries.pipeline.runconfig import RunConfig, resolve_config
from aries.rewards import REWARDS

REWARD_REQUIRED = {"reward-model": {"model": "some/reward-model"}, "regex": {"pattern": "x"}}
"""Settings a reward type cannot do without, so that a walk reaches its other fields."""


def schema_fields():
    """(label, dotted key, type hint, field, data holding the key's section) for every field of
    the schema: the run config's sections, nested, and every reward type under `reward:` and
    `eval.verifier:` (labelled `key[type]`)."""

    def walk(cls, prefix, base, kind=""):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            key = f"{prefix}{field.name}"
            if dataclasses.is_dataclass(hints[field.name]):
                yield from walk(hints[field.name], f"{key}.", base)
            else:
                yield key + kind, key, hints[field.name], field, base

    yield from walk(RunConfig, "", {})
    for where in ("reward", "eval.verifier"):
        for kind in REWARDS:
            spec = {"type": kind, **REWARD_REQUIRED.get(kind, {})}
            base = with_value({}, where, spec)
            yield from walk(REWARDS[kind].config, f"{where}.", base, f"[{kind}]")


def with_value(base, key, value):
    """A copy of the nested config mapping `base` with dotted `key` set to `value`."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    *parents, leaf = key.split(".")
    target = data
    for parent in parents:
        target[parent] = dict(target.get(parent) or {})
        target = target[parent]
    target[leaf] = value
    return data


def out_of_range(allowed: Range, kind: type):
    """A value just outside `allowed`; infinity where only finiteness is asked."""
    step = 1 if kind is int else 0.5
    if allowed.ge is not None:
        return kind(allowed.ge - step)
    if allowed.gt is not None:
        return kind(allowed.gt)
    if allowed.le is not None:
        return kind(allowed.le + step)
    if allowed.lt is not None:
        return kind(allowed.lt)
    return float("inf")


SCHEMA = {label: entry for label, *entry in schema_fields()}
NUMERIC = [label for label, (_, hint, _, _) in SCHEMA.items() if number_type(hint)]
CHOICES = [label for label, (_, hint, field, _) in SCHEMA.items() if choices(hint, field)]


def test_the_walk_covers_every_section_and_reward_type():
    assert {"train.beta", "generation.top_p", "selection.pairs_per_prompt", "sft.epochs"} <= set(
        NUMERIC
    )
    rewards = {"reward.batch_size[judge]", "reward.batch_size[reward-model]"}
    assert rewards | {"eval.verifier.timeout_s[verifier]"} <= set(NUMERIC)
    assert {"method", "selection.strategy", "eval.verifier.verdict[judge]"} <= set(CHOICES)
    assert len(NUMERIC) > 60


def test_every_numeric_field_declares_its_range_and_every_field_its_help():
    for key, hint, field, _ in SCHEMA.values():
        assert help_text(field), f"{key} has no help text"
        if number_type(hint):
            assert isinstance(field.metadata.get("range"), Range), f"{key} declares no range"


@pytest.mark.parametrize("label", NUMERIC)
def test_every_numeric_field_rejects_an_out_of_range_value_naming_the_key(label):
    key, hint, field, base = SCHEMA[label]
    allowed, kind = field.metadata["range"], number_type(hint)
    value = out_of_range(allowed, kind)
    assert kind is float or value != float("inf"), f"{key}: an int field needs a bound"
    with pytest.raises(AriesError) as error:
        resolve_config(with_value(base, key, value))
    assert str(error.value) == f"{key} must be {allowed}, not {value!r}"


@pytest.mark.parametrize("label", CHOICES)
def test_every_choice_rejects_an_unknown_value_with_the_choices(label):
    key, hint, field, base = SCHEMA[label]
    allowed = "|".join(map(re.escape, map(repr, choices(hint, field))))
    pattern = rf"^{re.escape(key)} must be .*({allowed}).*, not 'nonsense'$"
    with pytest.raises(AriesError, match=pattern):
        resolve_config(with_value(base, key, "nonsense"))


def test_the_reward_section_is_loaded_like_every_other_section():
    judge = {"reward": {"type": "judge", "use_reference": "no"}}
    with pytest.raises(AriesError, match=r"^reward.use_reference: expected bool, got 'no'$"):
        resolve_config(judge)
    with pytest.raises(AriesError, match=r"^eval.verifier.batch_size: expected int, got 2.5$"):
        resolve_config({"eval": {"verifier": {"type": "judge", "batch_size": 2.5}}})
    with pytest.raises(AriesError, match=r"'reward.batchsize'; did you mean reward.batch_size"):
        resolve_config({"reward": {"type": "judge", "batchsize": 2}})
    with pytest.raises(AriesError, match=r"^reward.type: unknown reward type 'juge'"):
        resolve_config({"reward": {"type": "juge"}})
    with pytest.raises(AriesError, match=r"^reward.model: reward-model needs a model"):
        resolve_config({"reward": {"type": "reward-model"}})


def test_a_boolean_is_not_a_number():
    with pytest.raises(AriesError, match=r"^generation.batch_size: expected int, got True$"):
        resolve_config({"generation": {"batch_size": True}})


def test_dataclasses_built_in_python_are_validated_the_same_way():
    from aries.method.select import SelectionConfig
    from aries.rewards.judge import JudgeConfig
    from aries.training.config import TrainConfig

    with pytest.raises(AriesError, match=r"^selection.pairs_per_prompt must be >= 1, not 0$"):
        SelectionConfig(pairs_per_prompt=0)
    with pytest.raises(AriesError, match=r"^train.beta must be > 0, not -0.1$"):
        TrainConfig(beta=-0.1)
    with pytest.raises(AriesError, match=r"^reward.mode must be 'pointwise' or 'pairwise'"):
        JudgeConfig(mode="pairwse")
    assert TrainConfig(epochs=2).epochs == 2.0 and isinstance(TrainConfig(epochs=2).epochs, float)


def test_ranges_read_as_their_bounds():
    assert str(Range(ge=1)) == ">= 1" and str(Range(gt=0, le=1)) == "> 0 and <= 1"
    assert str(Range()) == "a finite number" and float("nan") not in Range()
    assert 0.5 in Range(ge=0, lt=1) and 1 not in Range(ge=0, lt=1)


def _subcommand(name):
    from aries.cli import build_parser

    (subparsers,) = build_parser()._subparsers._group_actions
    return subparsers.choices[name]


def _flag_help(parser, flag):
    action = parser._option_string_actions.get(flag)
    assert action is not None, f"aries {parser.prog}: no flag {flag}"
    return action.help.replace("%%", "%")


def test_every_field_of_the_command_dataclasses_has_its_generated_flag_and_help():
    from aries.commands.eval import JUDGE_FLAGS
    from aries.commands.refine import CHAIN_FLAGS, ENGINE_FLAGS, MODEL_FLAGS, SAMPLING_FLAGS
    from aries.commands.score import REWARD_FLAGS, reward_class
    from aries.commands.train import RUN_FLAGS, SFT_FLAGS
    from aries.core.flags import flag_names
    from aries.method.select import SelectionConfig
    from aries.pipeline.runconfig import EvalConfig, GenerationConfig
    from aries.rewards.judge import JudgeConfig
    from aries.training.config import SFTConfig

    def every(cls, *but):
        return [f.name for f in dataclasses.fields(cls) if f.name not in but]

    # (command, dataclass, its fields the command takes); every field for the first ones
    complete = [("select", SelectionConfig, every(SelectionConfig))]
    complete.append(("sft", SFTConfig, every(SFTConfig, "enabled", "warm_start")))
    complete += [("score", reward_class(kind), flags) for kind, flags in REWARD_FLAGS.items()]
    partial = [
        ("sft", RunConfig, RUN_FLAGS),
        ("refine", GenerationConfig, CHAIN_FLAGS + ENGINE_FLAGS + SAMPLING_FLAGS),
        ("refine", RunConfig, MODEL_FLAGS + ["seed"]),
        ("eval", EvalConfig, ["rounds"]),
        ("eval", JudgeConfig, JUDGE_FLAGS),
        ("serve", GenerationConfig, ["max_new_tokens", *ENGINE_FLAGS]),
        ("export", RunConfig, MODEL_FLAGS),
    ]
    assert set(SFT_FLAGS) == set(every(SFTConfig, "enabled", "warm_start"))
    for command, cls, names in complete + partial:
        parser, fields = _subcommand(command), {f.name: f for f in dataclasses.fields(cls)}
        if (command, cls, names) in complete:
            assert set(flag_names(names)) == set(every(cls)) - {"enabled", "warm_start"}
        for name, flag in flag_names(names).items():
            assert help_text(fields[name]) in _flag_help(parser, flag), (command, flag)
    assert "Allowed: >= 1" in _flag_help(_subcommand("select"), "--pairs-per-prompt")


def test_generated_flags_parse_into_a_validated_dataclass(tmp_path, capsys):
    from aries.cli import main

    chains = tmp_path / "chains.jsonl"
    rounds = [{"round": i, "text": t, "finish_reason": "stop"} for i, t in enumerate("xy")]
    chains.write_text(json.dumps({"id": "a", "prompt": "q", "chain": rounds}) + "\n")
    argv = ["select", str(chains), "--strategy", "rule", "--out", str(tmp_path / "s.jsonl")]
    assert main([*argv, "--repetition-ngram", "3", "--max-length-ratio", "2"]) == 0
    assert main([*argv, "--pairs-per-prompt", "0"]) == 2
    assert "--pairs-per-prompt must be >= 1, not 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--strategy", "rewad"])
