"""`system_prompt` and `chat_template` (aries/core/views.py) reach collection, training,
evaluation and
serving alike: the text the model is trained on and the text it is asked at inference agree."""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest
from transformers import TrainerCallback

from aries import AriesError
from aries.backends import Sampling
from aries.backends.hf import HFBackend
from aries.core.models import ModelSettings, load_tokenizer
from aries.core.views import (
    DEFAULT_REFINE_INSTRUCTION,
    chat_template_text,
    direct_messages,
    refine_messages,
    with_system_prompt,
)
from aries.evaluation.evaluate import evaluate
from aries.method.collect import Chains, run_chains
from aries.method.pairs import build_pairs, save_dataset
from aries.pipeline.runconfig import resolve_config
from aries.rewards import make_reward_source
from aries.serving.serve import create_app, running
from aries.training.config import TrainConfig
from aries.training.train import train_preference

SYSTEM = "You are a careful calculator."
TEMPLATE = (
    "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<<assistant>>{% endif %}"
)
"""A custom template that leaves no doubt which template rendered a prompt."""
GREEDY = Sampling(max_new_tokens=4, temperature=0.0)


@pytest.fixture(scope="module")
def backend(tiny_model_path):
    return HFBackend(str(tiny_model_path), batch_size=4, chat_template=TEMPLATE)


def test_system_prompt_opens_both_views_unless_the_conversation_has_its_own():
    assert direct_messages("Q", system_prompt=SYSTEM)[0] == {"role": "system", "content": SYSTEM}
    refine = refine_messages("Q", "A", "Fix it.", system_prompt=SYSTEM)
    assert [m["role"] for m in refine] == ["system", "user", "assistant", "user"]
    own = [{"role": "system", "content": "mine"}, {"role": "user", "content": "Q"}]
    assert with_system_prompt(own, SYSTEM) == own
    assert direct_messages("Q") == [{"role": "user", "content": "Q"}]


def test_chat_template_is_text_a_file_or_plain(tmp_path):
    assert chat_template_text(TEMPLATE) == TEMPLATE
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    assert chat_template_text(str(tmp_path / "t.jinja")) == TEMPLATE
    assert chat_template_text("plain") is None
    with pytest.raises(AriesError, match="no such file, and not a Jinja template"):
        chat_template_text(str(tmp_path / "missing.jinja"))


def test_generation_renders_with_the_custom_template(backend, tiny_model_path):
    text = backend.render(direct_messages("What is 2 + 3?", system_prompt=SYSTEM))
    assert text == f"<<system>>{SYSTEM}\n<<user>>What is 2 + 3?\n<<assistant>>"
    plain = HFBackend(str(tiny_model_path), chat_template="plain")
    assert plain.render(direct_messages("Q", system_prompt=SYSTEM)) == (
        f"{SYSTEM}\n\nQuestion: Q\n\nAnswer:"
    )


def _expected_prompt_tokens(backend, record, system_prompt):
    """Prompt length of each round as collection should have asked it."""
    chain = record["chain"]
    conversations = [direct_messages(record["prompt"], system_prompt=system_prompt)] + [
        refine_messages(
            record["prompt"], step["text"], DEFAULT_REFINE_INSTRUCTION, system_prompt=system_prompt
        )
        for step in chain[:-1]
    ]
    return [backend.count_prompt_tokens(c) for c in conversations]


def test_collection_and_evaluation_ask_with_the_system_prompt(backend, tmp_path):
    prompts = [{"id": "a", "prompt": "What is 2 + 3?", "answer": "5"}]
    records = run_chains(backend, prompts, Chains(1, GREEDY, system_prompt=SYSTEM))
    asked = [step["prompt_tokens"] for step in records[0]["chain"]]
    assert asked == _expected_prompt_tokens(backend, records[0], SYSTEM)
    assert asked != _expected_prompt_tokens(backend, records[0], None)
    result = evaluate(
        backend,
        prompts,
        rounds=1,
        sampling=GREEDY,
        out_path=tmp_path / "eval.json",
        verifier=make_reward_source("verifier"),
        system_prompt=SYSTEM,
        progress=False,
    )
    assert result["system_prompt"] == SYSTEM
    chains = [json.loads(line) for line in (tmp_path / "eval.chains.jsonl").open()]
    asked = [step["prompt_tokens"] for step in chains[0]["chain"]]
    assert asked == _expected_prompt_tokens(backend, chains[0], SYSTEM)


def test_training_renders_pairs_with_the_system_prompt_and_template_and_saves_it(
    tiny_model_path, tmp_path, monkeypatch
):
    selections = [{"id": "a", "prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}]
    pairs = build_pairs(selections, instruction="Fix it.", system_prompt=SYSTEM)
    assert all(p["prompt"][0] == {"role": "system", "content": SYSTEM} for p in pairs)
    save_dataset(pairs, tmp_path / "pairs")
    seen = []

    def record_batch(self, args, state, control, **kwargs):
        seen.extend(kwargs["train_dataloader"].dataset)

    monkeypatch.setattr(TrainerCallback, "on_train_begin", record_batch)
    config = TrainConfig(batch_size=2, max_steps=1, max_length=128, report_to="none")
    out = tmp_path / "model"
    policy = ModelSettings(str(tiny_model_path), chat_template=TEMPLATE)
    train_preference(policy, tmp_path / "pairs", out, config)
    tokenizer = load_tokenizer(str(out))
    assert tokenizer.chat_template == TEMPLATE  # serve / eval of the folder use it
    trained = sorted({tokenizer.decode(row["prompt_ids"]) for row in seen})  # every callback
    assert trained == [
        f"<<system>>{SYSTEM}\n<<user>>What is 2 + 3?\n<<assistant>>",
        f"<<system>>{SYSTEM}\n<<user>>What is 2 + 3?\n<<assistant>>6\n<<user>>Fix it.\n"
        "<<assistant>>",
    ]


def test_serve_opens_conversations_with_the_system_prompt(backend):
    app = create_app(backend, model_name="tiny", max_new_tokens=4, system_prompt=SYSTEM)
    question = [{"role": "user", "content": "What is 2 + 3?"}]
    with running(app) as url:
        for rounds in (0, 1):
            body = {"messages": question, "max_tokens": 4, "temperature": 0}
            answer = httpx.post(
                f"{url}/chat/completions", json={**body, "refine_rounds": rounds}, timeout=60
            ).json()
            first = answer["aries_chain"][0] if rounds else answer["usage"]
            asked = with_system_prompt(question, SYSTEM)
            assert first["prompt_tokens"] == backend.count_prompt_tokens(asked)
        own = [{"role": "system", "content": "Answer in French."}, *question]
        answer = httpx.post(f"{url}/chat/completions", json={**body, "messages": own}).json()
        assert answer["usage"]["prompt_tokens"] == backend.count_prompt_tokens(own)


def test_run_config_fields_are_checked_at_load(tmp_path):
    config = resolve_config({"system_prompt": SYSTEM, "chat_template": "plain"})
    assert (config.system_prompt, config.chat_template) == (SYSTEM, "plain")
    with pytest.raises(AriesError, match="no such file"):
        resolve_config({"chat_template": str(tmp_path / "missing.jinja")})
    with pytest.raises(AriesError, match="openai backend needs servers it starts"):
        resolve_config({"chat_template": "plain", "generation": {"backend": "openai"}})
    managed = {"serve_command": "vllm serve {model} --port {port} --chat-template {chat_template}"}
    generation = {"backend": "openai", "backend_options": managed}
    assert resolve_config({"chat_template": "plain", "generation": generation}).chat_template


def test_openai_backend_starts_its_server_with_the_template(backend, tiny_model_path):
    from aries.backends.openai import OpenAIBackend

    command = (
        "{python} -m aries.cli serve --model {model} --port {port} --chat-template {chat_template}"
    )
    remote = OpenAIBackend(
        str(tiny_model_path),
        serve_command=command,
        chat_template=TEMPLATE,
        tokenizer=str(tiny_model_path),
        startup_timeout=120,
    )
    try:
        template_file = remote.servers[0].command[-1]
        assert open(template_file).read() == TEMPLATE
        conversation = direct_messages("What is 2 + 3?", system_prompt=SYSTEM)
        answer = remote.generate([conversation], GREEDY)[0]
        # the server's count of the prompt it rendered, and the local count, both with TEMPLATE
        assert answer.prompt_tokens == backend.count_prompt_tokens(conversation)
        assert remote.count_prompt_tokens(conversation) == answer.prompt_tokens
    finally:
        remote.close()
    assert not pathlib.Path(template_file).exists()


def test_a_run_uses_both_in_every_stage(backend, tiny_model_path, tmp_path):
    import datasets

    from aries.core.testing import tiny_run_config
    from aries.pipeline.loop import run

    settings = tiny_run_config(tiny_model_path, tmp_path / "runs", prompts=2, eval_size=1)
    settings.update(system_prompt=SYSTEM, chat_template=TEMPLATE)
    settings["eval"]["baseline"] = False
    config = resolve_config(settings)
    run(config, progress=False)
    iteration = config.run_dir / "iter_0"
    chains = [json.loads(line) for line in (iteration / "chains.jsonl").open()]
    for record in chains:
        asked = [step["prompt_tokens"] for step in record["chain"]]
        assert asked == _expected_prompt_tokens(backend, record, SYSTEM)
    pairs = datasets.load_from_disk(str(iteration / "pairs"))
    assert all(p[0] == {"role": "system", "content": SYSTEM} for p in pairs["prompt"])
    assert load_tokenizer(str(iteration / "model")).chat_template == TEMPLATE
    assert json.loads((iteration / "eval.json").read_text())["system_prompt"] == SYSTEM
