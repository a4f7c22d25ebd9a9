"""Broken run configs, one class of mistake per row, across every section: `aries run --check`
exits 2 with one line that names the config file (and the key's line where the file sets it)
and the field, and no traceback. Run in-process (`aries.cli.main`), a few seconds in all."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
import yaml

from aries.cli import main
from aries.core.testing import tiny_run_config

DELETE = object()
"""As a value in a row: remove that key."""


def _set(data: dict, key: str, value) -> None:
    """Set dotted `key` (`prompts.sources[0].seed`) in nested `data`."""
    *parents, leaf = re.findall(r"\[\d+\]|[^.\[\]]+", key)
    target = data
    for part in parents:
        target = target[int(part[1:-1])] if part.startswith("[") else target.setdefault(part, {})
    if leaf.startswith("["):
        target[int(leaf[1:-1])] = value
    elif value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value


def _files(tmp: Path) -> dict[str, str]:
    """Prompt files and folders of every broken kind, by name."""
    made = {
        "empty.jsonl": "",
        "blank.jsonl": "\n\n",
        "malformed.jsonl": '{"prompt": "fine"}\n{"prompt": oops}\n',
        "not-object.jsonl": '{"prompt": "fine"}\n["a list"]\n',
        "no-prompt.jsonl": '{"question": "2+2?"}\n',
        "empty-prompt.jsonl": '{"prompt": "   "}\n',
        "prompts.txt": "2+2?\n",
        "list.json": '{"prompt": "not a list"}',
        "good.jsonl": '{"prompt": "2+2?"}\n',
    }
    for name, text in made.items():
        (tmp / name).write_text(text)
    (tmp / "latin1.jsonl").write_bytes('{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    (tmp / "folder").mkdir()
    (tmp / "a-file").write_text("not a folder")
    return {name: str(tmp / name) for name in [*made, "latin1.jsonl", "folder", "a-file"]}


S0 = "prompts.sources[0]"
ROWS = [
    # top level: unknown keys, types, enums, ranges, nulls, lists for scalars
    ("unknown top key", {"nmae": "x"}, r"'nmae'; did you mean name"),
    ("name list", {"name": ["a"]}, r"name: expected str"),
    ("name null", {"name": None}, r"name: expected str, got None"),
    ("name a date", {"name": datetime.date(2026, 1, 2)}, r"name: expected str, got datetime"),
    ("method enum", {"method": "arie"}, r"method must be .*did you mean 'aries'"),
    ("iterations negative", {"iterations": -1}, r"iterations must be >= 0"),
    ("iterations string", {"iterations": "three"}, r"iterations: expected int"),
    ("iterations float", {"iterations": 1.5}, r"iterations: expected int"),
    ("seed negative", {"seed": -2}, r"seed must be >= 0"),
    ("trust_remote_code string", {"trust_remote_code": "yes"}, r"trust_remote_code: expected bool"),
    ("system_prompt list", {"system_prompt": ["a"]}, r"system_prompt: .*\['a'\]"),
    ("chat_template missing file", {"chat_template": "nope.jinja"}, r"chat_template 'nope.jinja'"),
    ("model missing", {"model": "{tmp}/gone"}, r"model: .*gone: model folder not found"),
    ("model a file", {"model": "{a-file}"}, r"model: .*a-file"),
    ("model folder without config", {"model": "{folder}"}, r"model: .*no config.json"),
    ("model null", {"model": None}, r"model: expected str"),
    ("model uncached hub id", {"model": "org/not-cached"}, r"model: org/not-cached: not a local"),
    ("output_dir under a file", {"output_dir": "{a-file}/runs"}, r"output_dir: cannot write"),
    ("output_dir number", {"output_dir": 5}, r"output_dir: expected str"),
    # prompts
    ("prompts a list", {"prompts": []}, r"prompts: expected a mapping"),
    ("prompts unknown key", {"prompts.per_iteratoin": 3}, r"did you mean prompts.per_iteration"),
    ("per_iteration zero", {"prompts.per_iteration": 0}, r"prompts.per_iteration must be >= 1"),
    ("per_iteration string", {"prompts.per_iteration": "many"}, r"prompts.per_iteration: expected"),
    ("sources a scalar", {"prompts.sources": "mt-bench"}, r"prompts.sources: expected a list"),
    ("sources empty", {"prompts.sources": []}, r"prompts.sources: no prompt sources"),
    ("source null", {f"{S0}": None}, rf"{re.escape(S0)}: expected a source name"),
    ("source number", {f"{S0}": 5}, rf"{re.escape(S0)}: expected a source name"),
    ("source without name", {f"{S0}.name": DELETE}, rf"{re.escape(S0)}.name: missing"),
    ("source empty name", {f"{S0}.name": ""}, rf"{re.escape(S0)}.name: empty"),
    ("source unknown task", {f"{S0}.name": "reasoning-gym:basic_arithmetc"}, r"did you mean 'b"),
    (
        "source typo",
        {f"{S0}.sise": 10},
        rf"'{re.escape(S0)}.sise'; did you mean {re.escape(S0)}.size",
    ),
    ("source seed string", {f"{S0}.seed": "1"}, rf"{re.escape(S0)}.seed: expected int, got '1'"),
    ("source size zero", {f"{S0}.size": 0}, rf"{re.escape(S0)}.size must be >= 1"),
    ("source size negative", {f"{S0}.size": -5}, rf"{re.escape(S0)}.size must be >= 1"),
    ("source weight zero", {f"{S0}.weight": 0}, rf"{re.escape(S0)}.weight must be > 0"),
    ("source offset null", {f"{S0}.offset": None}, rf"{re.escape(S0)}.offset: expected int"),
    ("source options list", {f"{S0}.options": [1]}, rf"{re.escape(S0)}.options: expected a map"),
    ("task option type", {f"{S0}.max_terms": "two"}, rf"{re.escape(S0)}.max_terms: expected int"),
    ("task option range", {f"{S0}.min_terms": 0}, rf"{re.escape(S0)}.min_terms: .*positive"),
    ("task option list item", {f"{S0}.operators": ["+", 3]}, rf"{re.escape(S0)}.operators: exp"),
    (
        "task option in options",
        {f"{S0}.options": {"max_term": 2}},
        rf"'{re.escape(S0)}.options.max_term'; did you mean {re.escape(S0)}.options.max_terms",
    ),
    ("mt-bench category", {S0: {"name": "mt-bench", "category": "mathh"}}, r"category must be"),
    ("file task option", {S0: {"name": "{good.jsonl}", "max_terms": 2}}, r"takes no task options"),
    ("fields typo", {S0: {"name": "{good.jsonl}", "fields": {"promt": "q"}}}, r"fields: unknown"),
    (
        "fields value",
        {S0: {"name": "{good.jsonl}", "fields": {"prompt": 3}}},
        r"fields.prompt: exp",
    ),
    ("prompt file missing", {S0: "{tmp}/missing.jsonl"}, r"missing.jsonl: prompt file not found"),
    ("prompt file empty", {S0: "{empty.jsonl}"}, r"empty.jsonl: file is empty"),
    ("prompt file blank", {S0: "{blank.jsonl}"}, r"blank.jsonl: no prompts"),
    ("prompt file malformed", {S0: "{malformed.jsonl}"}, r"malformed.jsonl:2: malformed JSON"),
    ("prompt line not object", {S0: "{not-object.jsonl}"}, r"not-object.jsonl:2: expected a JSON"),
    ("prompt field missing", {S0: "{no-prompt.jsonl}"}, r"no-prompt.jsonl:1: missing prompt field"),
    ("prompt field empty", {S0: "{empty-prompt.jsonl}"}, r"empty-prompt.jsonl:1: field 'prompt'"),
    ("prompt file type", {S0: "{prompts.txt}"}, r"prompts.txt: unsupported prompt file type"),
    ("prompt json not list", {S0: "{list.json}"}, r"list.json: expected a JSON list"),
    ("prompt file latin-1", {S0: "{latin1.jsonl}"}, r"latin1.jsonl: not UTF-8"),
    ("prompt folder", {S0: "{folder}"}, r"folder: not a saved `datasets` folder"),
    ("exclude a scalar", {"prompts.exclude": "x"}, r"prompts.exclude: expected a list"),
    (
        "exclude missing",
        {"prompts.exclude": ["{tmp}/no.jsonl"]},
        r"prompts.exclude\[0\]: .*no.jsonl",
    ),
    # generation
    ("backend enum", {"generation.backend": "vlm"}, r"generation.backend must be"),
    ("rounds negative", {"generation.rounds": -1}, r"generation.rounds must be >= 0"),
    ("temperature negative", {"generation.temperature": -0.5}, r"generation.temperature must be"),
    ("top_p above 1", {"generation.top_p": 1.5}, r"generation.top_p must be > 0 and <= 1"),
    ("top_p list", {"generation.top_p": [0.9]}, r"generation.top_p: .*\[0.9\]"),
    ("max_new_tokens zero", {"generation.max_new_tokens": 0}, r"generation.max_new_tokens must"),
    ("batch_size null", {"generation.batch_size": None}, r"generation.batch_size: expected int"),
    ("instruction null", {"generation.instruction": None}, r"generation.instruction: expected str"),
    ("backend_options list", {"generation.backend_options": [1]}, r"backend_options: expected a"),
    ("generation unknown", {"generation.sample": 2}, r"did you mean generation.samples"),
    ("generation a scalar", {"generation": 3}, r"generation: expected a mapping"),
    # reward
    ("reward a string", {"reward": "verifier"}, r"reward: expected a mapping"),
    ("reward null", {"reward": None}, r"reward: expected a mapping"),
    ("reward type", {"reward": {"type": "juge"}}, r"reward.type: unknown reward type 'juge'"),
    ("reward unknown", {"reward.patern": "x"}, r"'reward.patern'; did you mean reward.pattern"),
    (
        "reward-model missing",
        {"reward": {"type": "reward-model", "model": "{tmp}/rm"}},
        r"reward.model",
    ),
    (
        "judge batch float",
        {"reward": {"type": "judge", "batch_size": 2.5}},
        r"reward.batch_size: exp",
    ),
    # selection and pairs
    ("strategy enum", {"selection.strategy": "rewad"}, r"selection.strategy must be"),
    (
        "pairs_per_prompt zero",
        {"selection.pairs_per_prompt": 0},
        r"selection.pairs_per_prompt must",
    ),
    ("selection unknown", {"selection.margn": 1}, r"did you mean selection.margin"),
    ("w_direct negative", {"pairs.w_direct": -1}, r"pairs.w_direct must be >= 0"),
    ("views both zero", {"pairs": {"w_direct": 0, "w_refine": 0}}, r"pairs.w_refine: w_direct and"),
    # train
    ("beta zero", {"train.beta": 0}, r"train.beta must be > 0"),
    ("beta null", {"train.beta": None}, r"train.beta: expected float, got None"),
    ("beta list", {"train.beta": [0.1]}, r"train.beta: expected float"),
    ("learning_rate string", {"train.learning_rate": "fast"}, r"train.learning_rate: expected"),
    ("loss type", {"train.loss_type": "dpoo"}, r"'dpoo' is not a loss type"),
    ("reference enum", {"train.reference": "latest"}, r"train.reference must be"),
    ("epochs zero", {"train.epochs": 0}, r"train.epochs must be > 0"),
    ("batch_size float", {"train.batch_size": 1.5}, r"train.batch_size: expected int"),
    ("max_length zero", {"train.max_length": 0}, r"train.max_length must be >= 1"),
    ("max_length too short", {"train.max_length": 40}, r"train.max_length: 40 cannot hold .* tok"),
    ("lora string", {"train.lora": "yes"}, r"train.lora: expected bool"),
    ("train unknown", {"train.bta": 0.1}, r"'train.bta'; did you mean train.beta"),
    ("train nested unknown", {"train": {"lora": {"r": 8}}}, r"train.lora: expected bool"),
    # sft, eval, teacher
    ("sft without dataset", {"sft.enabled": True}, r"sft.enabled needs sft.dataset"),
    ("sft dataset missing", {"sft": {"enabled": True, "dataset": "{tmp}/sft"}}, r"sft.dataset: "),
    ("sft epochs negative", {"sft.epochs": -1}, r"sft.epochs must be > 0"),
    ("eval size zero", {"eval.size": 0}, r"eval.size must be >= 1"),
    ("eval enabled string", {"eval.enabled": "no"}, r"eval.enabled: expected bool"),
    ("eval source typo", {"eval.sources[0].sede": 3}, r"'eval.sources\[0\].sede'; did you mean"),
    ("eval verifier type", {"eval.verifier": {"type": "nope"}}, r"eval.verifier.type: unknown"),
    ("teacher backend", {"teacher.backend": "x"}, r"teacher.backend must be"),
    ("teacher model missing", {"teacher.model": "{tmp}/teach"}, r"teacher.model: .*teach"),
    (
        "teacher openai with a chat_template",
        {"teacher": {"model": "a/b", "backend": "openai"}, "chat_template": "plain"},
        r":\d+: teacher.backend: chat_template with the openai backend needs .*serve_command",
    ),
]


@pytest.fixture(scope="module")
def base(tiny_model_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broken")
    return tiny_run_config(tiny_model_path, tmp / "runs"), {"tmp": str(tmp), **_files(tmp)}


def _filled(value, paths: dict[str, str]):
    if isinstance(value, str):
        return re.sub(r"\{([\w.-]+)\}", lambda m: paths.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: _filled(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, paths) for v in value]
    return value


def _one_error_line(path: Path, capsys) -> str:
    assert main(["run", "--config", str(path), "--check"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    line = captured.err.strip()
    assert line.startswith(f"aries run: error: {path}"), line
    return line


@pytest.mark.parametrize(("edit", "message"), [row[1:] for row in ROWS], ids=[r[0] for r in ROWS])
def test_a_broken_config_is_one_line_naming_the_field(edit, message, base, tmp_path, capsys):
    import copy

    data, paths = copy.deepcopy(base[0]), base[1]
    for key, value in edit.items():
        _set(data, key, _filled(value, paths))
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    line = _one_error_line(path, capsys)
    assert re.search(message, line), line
    key = list(edit)[0]
    if key in line:  # a key the file sets: its line is named too
        assert re.match(rf"aries run: error: {re.escape(str(path))}:\d+: ", line), line


def test_the_base_config_is_valid(base, tmp_path, capsys):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(base[0]))
    assert main(["run", "--config", str(path), "--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\ntrain:\n  beta: 0.1\n  beta: 0.2\n",
            r":4: train.beta set twice \(first at line 3\)",
        ),
        ("name: x\ntrain: [beta: 0.1\n", r":\d+: invalid YAML"),
        ("name: x\n  bad indent: 1\n", r":2: invalid YAML"),
        ("", r": config file is empty"),
        ("- a\n- b\n", r": config: expected a mapping, got list"),
        ("just a string\n", r": config: expected a mapping, got str"),
        (b"name: caf\xe9\n", r": not UTF-8 text"),
        (None, r": cannot read config \(Is a directory\)"),
        (..., r": cannot read config \(No such file or directory\)"),
        ("1: x\n", r": unknown config key '1'"),
    ],
    ids=[
        "duplicate key",
        "unclosed list",
        "indentation",
        "empty",
        "a list",
        "a string",
        "latin-1",
        "a directory",
        "missing",
        "a number as a key",
    ],
)
def test_a_broken_config_file_is_one_line_naming_the_file(text, message, tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    if text is None:
        path.mkdir()
    elif isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not ...:
        path.write_text(text)
    line = _one_error_line(path, capsys)
    assert re.search(message, line), line


def test_a_key_set_by_a_flag_names_no_line_of_the_file(base, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base[0]))
    assert main(["run", "--config", str(path), "--check", "--set", "train.beta=0"]) == 2
    assert capsys.readouterr().err.strip() == "aries run: error: train.beta must be > 0, not 0.0"
