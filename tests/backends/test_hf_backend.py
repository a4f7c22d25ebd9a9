"""The `hf` generation backend (aries/backends/hf*.py) on tiny random Llamas with a real tokenizer.

The conftest tiny model ties its embeddings, so greedy decoding just repeats the last prompt token
(whitespace after the chat template). `chatty_model_path` unties them and uses a larger init, so
answers are varied text; `stopping_model_path` makes it emit EOS at a known step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aries.backends import Sampling, make_backend
from aries.backends.hf import HFBackend
from aries.backends.hf_decode import use_packed_linears
from aries.backends.hf_pool import RowPool, RowSampler

QUESTIONS = [
    "What is 2 + 2?",
    "Tell me a long story about a dragon who lived in a mountain and ate gold every morning.",
    "Hi",
    "Explain photosynthesis in detail, please.",
    "x y z",
    "Why is the sky blue?",
    "Hi",
]
STOP_PROMPT = "Say something short."
STOP_STEP = 3  # the stopping model emits EOS as its 4th token for STOP_PROMPT


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="session")
def stopping_model_path(tmp_path_factory, chatty_model_path) -> Path:
    """The chatty model with the output rows of EOS and of the token it greedily writes at
    STOP_STEP for STOP_PROMPT swapped: it now writes EOS exactly there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chatty_model_path)
    model = AutoModelForCausalLM.from_pretrained(chatty_model_path)
    text = tokenizer.apply_chat_template(
        chat(STOP_PROMPT), tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():  # an explicit mask: the prompt contains <|im_end|>, the pad token
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=STOP_STEP + 1,
            do_sample=False,
            eos_token_id=None,
        )
    target = out[0, ids.shape[1] + STOP_STEP].item()
    assert target not in out[0, ids.shape[1] : ids.shape[1] + STOP_STEP].tolist()
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        weight = model.lm_head.weight
        weight[[eos, target]] = weight[[target, eos]].clone()
    folder = tmp_path_factory.mktemp("stopping")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backend(chatty_model_path) -> HFBackend:
    return HFBackend(str(chatty_model_path), batch_size=3, device="cpu")


def test_make_backend_and_unknown_backend(chatty_model_path):
    from aries import AriesError

    backend = make_backend("hf", str(chatty_model_path), batch_size=2, device="cpu")
    assert backend.name == "hf" and backend.batch_size == 2
    assert backend.context_length == 1024
    with pytest.raises(AriesError, match="unknown generation backend 'nope'"):
        make_backend("nope", str(chatty_model_path))


def test_bf16_backend_generates_close_to_fp32(chatty_model_path, backend):
    """dtype 'bfloat16' (what 'fast' picks on a CPU with bf16 instructions) loads bf16 weights
    and, greedy, mostly keeps fp32's first tokens."""
    import torch

    bf16 = HFBackend(str(chatty_model_path), batch_size=3, device="cpu", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16
    sampling = Sampling(max_new_tokens=4)
    conversations = [chat(q) for q in QUESTIONS]
    fp32_texts = [g.text for g in backend.generate(conversations, sampling)]
    bf16_texts = [g.text for g in bf16.generate(conversations, sampling)]
    assert all(text.strip() for text in bf16_texts)
    same_start = sum(a[:3] == b[:3] for a, b in zip(fp32_texts, bf16_texts, strict=True))
    assert same_start >= len(QUESTIONS) // 2
    bf16.close()


def test_render_uses_the_chat_template_and_counts_tokens(backend):
    text = backend.render(chat("Why?"))
    assert "<|im_start|>user\nWhy?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    tokens = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert backend.count_prompt_tokens(chat("Why?")) == len(tokens)
    assert tokens[0] == backend.tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_batched_greedy_equals_one_at_a_time_in_input_order(backend):
    sampling = Sampling(max_new_tokens=8)
    conversations = [chat(q) for q in QUESTIONS]
    batched = backend.generate(conversations, sampling)
    single = [backend.generate([c], sampling)[0] for c in conversations]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.text.strip() for g in batched)  # varied text, not just whitespace
    # prompts are reordered by length internally; results come back in input order
    assert [g.prompt_tokens for g in batched] == [
        backend.count_prompt_tokens(c) for c in conversations
    ]
    assert len({g.text for g in batched}) == len(set(QUESTIONS))
    assert batched[2].text == batched[6].text  # the same prompt twice: same greedy answer


def test_prefill_buckets_and_pool_refills_keep_results_and_order(chatty_model_path):
    """Tiny prefill buckets (one prompt each) and a pool of 2 rows that refills as rows finish:
    the same greedy text, in input order, as one prompt at a time."""
    backend = HFBackend(str(chatty_model_path), batch_size=2, device="cpu")
    backend.prefill_tokens = 1
    sampling = Sampling(max_new_tokens=6)
    conversations = [chat(q) for q in QUESTIONS]
    chunks = list(backend._prefill_chunks([[0] * n for n in (9, 9, 5, 3)], [0, 1, 2, 3]))
    assert chunks == [[0], [1], [2], [3]]
    single = [backend.generate([c], sampling)[0] for c in conversations]
    assert backend.generate(conversations, sampling) == single
    backend.prefill_tokens = 10_000
    assert list(backend._prefill_chunks([[0] * 9] * 5, [4, 3, 2, 1, 0])) == [[4, 3], [2, 1], [0]]
    backend.batch_size = 8  # a prompt shorter than 7/8 of its chunk's longest starts a new one
    lengths = [[0] * n for n in (16, 14, 13, 8)]
    assert list(backend._prefill_chunks(lengths, [0, 1, 2, 3])) == [[0, 1], [2], [3]]


def test_the_chat_templates_system_prompt_is_prefilled_once(backend):
    """Every prompt starts with the template's system turn: its cache is computed once (one row)
    and the batched greedy text still equals one prompt at a time (checked above)."""
    encoded = [backend._encode(chat(q)) for q in QUESTIONS]
    pool = RowPool(backend, encoded, [0] * len(encoded), Sampling())
    prefix = pool._shared_prefix(encoded)
    assert prefix is not None and len(prefix) == backend.model.config.num_hidden_layers
    keys, _ = prefix[0]
    assert keys.shape[0] == 1 and 8 <= keys.shape[2] < min(len(e) for e in encoded)
    assert encoded[0][: keys.shape[2]] == encoded[1][: keys.shape[2]]
    assert pool._shared_prefix(encoded[:1]) is None


def test_samples_of_one_prompt_share_one_prefill_and_match_separate_prefills(chatty_model_path):
    """N copies of a prompt are prefilled once and the cache copied to N rows (batch 8); with
    batch 1 every copy is prefilled on its own. Greedy and sampled texts are the same."""
    shared = HFBackend(str(chatty_model_path), batch_size=8, device="cpu")
    separate = HFBackend(str(chatty_model_path), batch_size=1, device="cpu")
    conversations = [chat("Hi")] * 4 + [chat("x y z")] * 3
    greedy = Sampling(max_new_tokens=8)
    results = shared.generate(conversations, greedy)
    assert [g.text for g in results] == [g.text for g in separate.generate(conversations, greedy)]
    assert [g.text for g in results[:4]] == [separate.generate([chat("Hi")], greedy)[0].text] * 4
    sampled = Sampling(max_new_tokens=8, temperature=1.0, seed=3)
    results = shared.generate(conversations, sampled)
    assert results == separate.generate(conversations, sampled)
    assert len({g.text for g in results[:4]}) == 4  # each copy draws its own sample


def test_length_finish_and_token_counts(backend):
    for max_new_tokens in (1, 7):
        results = backend.generate([chat(q) for q in QUESTIONS[:4]], Sampling(max_new_tokens))
        for generation in results:
            assert generation.finish_reason == "length"
            assert generation.completion_tokens == max_new_tokens
            assert generation.prompt_tokens > 5


def test_stop_at_eos(stopping_model_path):
    backend = HFBackend(str(stopping_model_path), batch_size=8, device="cpu")
    conversations = [chat(q) for q in QUESTIONS[:3]] + [chat(STOP_PROMPT)]
    results = backend.generate(conversations, Sampling(max_new_tokens=10))
    stopped = results[-1]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens == STOP_STEP + 1  # the EOS token counts
    assert "<|im_end|>" not in stopped.text
    alone = backend.generate([chat(STOP_PROMPT)], Sampling(max_new_tokens=10))[0]
    assert alone == stopped
    # a pool of 2 rows, longest prompt first: the stopped row leaves after its EOS and the
    # queued third prompt takes its slot while the other row is still decoding
    backend.batch_size = 2
    trio = [chat(STOP_PROMPT), chat("x y z"), chat("Hi")]
    one_at_a_time = [backend.generate([c], Sampling(max_new_tokens=10))[0] for c in trio]
    assert backend.generate(trio, Sampling(max_new_tokens=10)) == one_at_a_time
    assert one_at_a_time[0] == stopped
    # rows that did not stop ran to the limit while the stopped row was padded
    for generation in results[:-1]:
        if generation.finish_reason == "length":
            assert generation.completion_tokens == 10
        else:
            assert generation.completion_tokens < 10
    # a limit that cuts before the EOS is a 'length' finish
    short = backend.generate([chat(STOP_PROMPT)], Sampling(max_new_tokens=STOP_STEP))[0]
    assert (short.finish_reason, short.completion_tokens) == ("length", STOP_STEP)


def test_sampling_is_reproducible_per_seed_and_independent_of_batch(backend):
    conversations = [chat(q) for q in QUESTIONS]
    sampling = Sampling(max_new_tokens=10, temperature=1.0, seed=7)
    first = backend.generate(conversations, sampling)
    assert backend.generate(conversations, sampling) == first
    # the same prompt gets the same sample in another batch, alone or in another order
    alone = [backend.generate([c], sampling)[0] for c in conversations]
    assert [g.text for g in alone[:6]] == [g.text for g in first[:6]]
    reordered = backend.generate(conversations[::-1], sampling)[::-1]
    unique = [0, 1, 3, 4, 5]
    assert [reordered[i].text for i in unique] == [first[i].text for i in unique]
    # "Hi" appears twice (indexes 2 and 6): the first copy in call order draws the first sample
    assert (reordered[2].text, reordered[6].text) == (first[6].text, first[2].text)
    assert first[2].text != first[6].text
    other_seed = backend.generate(conversations, Sampling(10, temperature=1.0, seed=8))
    assert all(a.text != b.text for a, b in zip(first, other_seed))
    greedy = backend.generate(conversations, Sampling(max_new_tokens=10))
    assert all(a.text != b.text for a, b in zip(first, greedy))


def test_repeated_prompts_get_different_samples(backend):
    sampling = Sampling(max_new_tokens=8, temperature=1.0, seed=0)
    samples = backend.generate([chat("Hi")] * 4, sampling)
    assert len({g.text for g in samples}) == 4
    # the k-th copy of a prompt draws the same sample whatever else is in the call
    mixed = backend.generate([chat("x y z"), chat("Hi"), chat("Hi")], sampling)
    assert [g.text for g in mixed[1:]] == [g.text for g in samples[:2]]


def test_row_sampler_matches_the_distribution_and_top_p():
    import torch

    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 4000
    scores = probabilities.log().repeat(rows, 1)

    def sample(sampler: RowSampler) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(seed) for seed in range(rows)]
        return sampler(scores.clone(), generators)

    frequencies = torch.bincount(sample(RowSampler(1.0, 1.0)), minlength=4) / rows
    assert torch.allclose(frequencies, probabilities, atol=0.03)
    frequencies = torch.bincount(sample(RowSampler(1.0, 0.7)), minlength=4) / rows
    assert frequencies[2:].sum() == 0  # 0.5 + 0.3 >= 0.7: the tail is cut
    assert torch.allclose(frequencies[:2], torch.tensor([0.625, 0.375]), atol=0.03)
    assert (sample(RowSampler(0.05, 1.0)) == 0).float().mean() > 0.99


def test_close_releases_the_model(chatty_model_path):
    backend = HFBackend(str(chatty_model_path), device="cpu")
    backend.close()
    assert not hasattr(backend, "model")


def test_next_token_logprobs_match_one_unpadded_forward_pass(backend):
    import torch

    from aries import AriesError

    conversations = [chat(q) for q in QUESTIONS]  # batch_size 3: padded, reordered batches
    batched = backend.next_token_logprobs(conversations, "[[", ["A", "B", "C"])
    tokenizer = backend.tokenizer
    for conversation, got in zip(conversations, batched, strict=True):
        ids = backend._encode(conversation) + tokenizer.encode("[[", add_special_tokens=False)
        with torch.no_grad():
            logits = backend.model(torch.tensor([ids])).logits[0, -1]
        expected = torch.log_softmax(logits, dim=-1)
        for candidate in "ABC":
            token = tokenizer.encode("[[" + candidate, add_special_tokens=False)[-1]
            assert got[candidate] == pytest.approx(expected[token].item(), abs=1e-4)
    assert batched[2] == pytest.approx(batched[6])  # same prompt, same distribution
    # "Score: " ends in a space token that merges with a letter: not one token after it.
    with pytest.raises(AriesError, match="'A' is not one token after 'Score: '"):
        backend.next_token_logprobs(conversations[:1], "Score: ", ["A"])


def test_static_decode_equals_the_default_path_token_for_token(chatty_model_path, backend):
    """decode: static (fixed cache slots; a CUDA graph on CUDA, eager here) writes the default
    path's greedy tokens, with slots freed and refilled (batch 2, 7 prompts, an EOS), identical
    prompts sharing a prefill, and the decoder kept between calls while its capacity fits."""
    from aries import AriesError

    static = HFBackend(str(chatty_model_path), batch_size=3, device="cpu", decode="static")
    conversations = [chat(q) for q in QUESTIONS]
    for max_new_tokens in (1, 9):
        sampling = Sampling(max_new_tokens=max_new_tokens)
        assert static.generate(conversations, sampling) == backend.generate(conversations, sampling)
    decoder = static.slot_decoder
    assert decoder.slots == 3 and decoder.capacity % 256 == 0 and decoder.graph is None
    static.batch_size = 2
    sampled = Sampling(max_new_tokens=6, temperature=1.0, seed=5)
    assert static.generate(conversations, sampled) == backend.generate(conversations, sampled)
    assert static.slot_decoder is not decoder and static.slot_decoder.slots == 2
    kept = static.slot_decoder
    static.generate(conversations[:2], Sampling(max_new_tokens=3))
    assert static.slot_decoder is kept  # same slots, enough capacity: no new decoder
    assert static.generate([], Sampling()) == []
    static.close()
    assert static.slot_decoder is None
    with pytest.raises(AriesError, match="decode: 'graph' is not 'dynamic' or 'static'"):
        HFBackend(str(chatty_model_path), device="cpu", decode="graph")


def test_packed_linears_decode_the_plain_tokens_and_follow_weight_updates(chatty_model_path):
    """On a CPU every bfloat16 nn.Linear runs from oneDNN-packed weights (hf_decode.PackedLinear),
    float32 ones only with packed_float32: the same greedy tokens as torch's own linear, float32
    and bfloat16, with a pool that refills;
    close() gives the modules their own forward back; a weight changed in place (a training
    step) is repacked, and with gradients on, the module's own forward runs."""
    import torch

    from aries.backends.hf_decode import PackedLinear, restore_linears

    conversations = [chat(q) for q in QUESTIONS]
    sampling = Sampling(max_new_tokens=9)
    plain = HFBackend(str(chatty_model_path), batch_size=3, device="cpu", dtype="float32")
    assert plain.packed == []  # float32 stays on torch's linear unless asked
    plain.close()
    for dtype in ("float32", "bfloat16"):
        backend = HFBackend(
            str(chatty_model_path), batch_size=3, device="cpu", dtype=dtype, packed_float32=True
        )
        modules = backend.packed
        assert modules and all(isinstance(m.forward, PackedLinear) for m in modules)
        packed = backend.generate(conversations, sampling)
        restore_linears(modules)
        assert backend.generate(conversations, sampling) == packed
        backend.packed = use_packed_linears(backend.model, 3, float32=True)
        module = backend.packed[0]
        inputs = torch.randn(2, module.in_features, dtype=module.weight.dtype)
        with torch.no_grad():
            module.weight.mul_(2)
            expected = torch.nn.functional.linear(inputs, module.weight)
            assert torch.allclose(module(inputs), expected, rtol=1e-2, atol=1e-3)
        assert module(inputs.requires_grad_()).requires_grad  # training: the plain forward
        backend.close()
        assert all("forward" not in vars(m) for m in modules)


def test_grouped_sdpa_attention_repeats_no_heads_and_decodes_the_same_tokens(
    chatty_model_path, backend, monkeypatch
):
    """The static path's GPU attention (grouped SDPA: the query heads of a key/value head stacked
    in place of the one query token, no repeated cache heads) equals transformers' sdpa with its
    repeated heads, and the static path attending with it writes the default path's tokens."""
    from types import SimpleNamespace

    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    from aries.backends import hf_decode
    from aries.backends.hf_decode import grouped_sdpa_attention, use_grouped_sdpa_attention
    from aries.core.models import load_causal_lm

    shapes = []  # (query, key) of every SDPA call of the grouped path

    def sdpa(query, key, value, **kwargs):
        shapes.append((tuple(query.shape), tuple(key.shape)))
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, **kwargs)

    monkeypatch.setattr(hf_decode, "scaled_dot_product_attention", sdpa)

    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=1, is_causal=True, training=False)
    query, key, value = (
        torch.randn(3, 8, 1, 16),
        torch.randn(3, 2, 10, 16),
        torch.randn(3, 2, 10, 16),
    )
    mask = torch.ones(3, 1, 1, 10, dtype=torch.bool)
    mask[0, ..., :4] = False  # a left-padded row
    mask[2, ..., 7:] = False  # a slot's columns past its length
    expected, _ = sdpa_attention_forward(
        module, query, repeat_kv(key, 4), repeat_kv(value, 4), mask, scaling=0.3
    )
    got, _ = grouped_sdpa_attention(module, query, key, value, mask, scaling=0.3)
    assert got.shape == expected.shape == (3, 1, 8, 16)
    assert torch.allclose(got, expected, atol=1e-5) and shapes == [((3, 2, 4, 16), (3, 2, 10, 16))]
    shapes.clear()
    model = load_causal_lm(str(chatty_model_path), dtype="float32", device="cpu")
    use_grouped_sdpa_attention(model)  # what a GPU's static path does (2 kv heads for 4 heads)
    assert model.config._attn_implementation == "aries_grouped_sdpa"
    static = HFBackend.from_loaded(model, backend.tokenizer, batch_size=3, decode="static")
    conversations = [chat(q) for q in QUESTIONS]
    sampling = Sampling(max_new_tokens=9)
    assert static.generate(conversations, sampling) == backend.generate(conversations, sampling)
    # every decode step of both layers: 2 kv heads x a group of 2 query heads, cache unrepeated
    assert len(shapes) > 2 * 8 and {(q[1:3], k[1]) for q, k in shapes} == {((2, 2), 2)}


def test_static_decode_stops_at_eos_and_refills_the_freed_slot(stopping_model_path):
    dynamic = HFBackend(str(stopping_model_path), batch_size=2, device="cpu")
    static = HFBackend(str(stopping_model_path), batch_size=2, device="cpu", decode="static")
    trio = [chat(STOP_PROMPT), chat("x y z"), chat("Hi")]
    sampling = Sampling(max_new_tokens=10)
    results = static.generate(trio, sampling)
    assert results[0].finish_reason == "stop" and results[0].completion_tokens == STOP_STEP + 1
    assert results == dynamic.generate(trio, sampling)


@pytest.mark.slow
def test_static_decode_equals_the_default_path_on_the_embedded_model(embedded_path):
    """The real 135M model, 48 greedy tokens for 6 prompts in a pool of 4 (slots refilled)."""
    conversations = [chat(q) for q in QUESTIONS[:6]]
    sampling = Sampling(max_new_tokens=48)
    dynamic = HFBackend(str(embedded_path), batch_size=4, device="cpu", dtype="float32")
    expected = dynamic.generate(conversations, sampling)
    dynamic.close()
    static = HFBackend(
        str(embedded_path), batch_size=4, device="cpu", dtype="float32", decode="static"
    )
    assert static.generate(conversations, sampling) == expected
    assert len({g.text for g in expected}) == 6  # real, varied answers
