"""The `hf` backend: transformers `generate`, batched across prompts.

Speed on a CPU comes from batching: prompts are sorted by length so a batch wastes little on
padding, padded on the left so every row's next token sits in the last column, and decoded with
the KV cache. Sampling is reproducible per prompt: each row draws its own Gumbel noise from a
generator seeded by the base seed and that row's prompt (and its repeat index), so a prompt gets
the same sample whatever batch it lands in, and a resumed run regenerates exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

import hashlib

from aries.backends.base import Generation, Sampling
from aries.views import Message, prompt_token_ids, render_prompt


class HFBackend:
    """Generation with a transformers causal LM (any local folder, hub id or `embedded`)."""

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ):
        from aries.models import load_causal_lm, load_tokenizer

        self.model_spec = model
        self.batch_size = batch_size
        self.model = load_causal_lm(
            model, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        self.tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop_ids = _stop_token_ids(self.model, self.tokenizer)

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def render(self, conversation: list[Message]) -> str:
        """The exact prompt text the model sees."""
        return render_prompt(self.tokenizer, conversation)

    def _encode(self, conversation: list[Message]) -> list[int]:
        return prompt_token_ids(self.tokenizer, conversation)

    def count_prompt_tokens(self, conversation: list[Message]) -> int:
        return len(self._encode(conversation))

    def _length_batches(self, encoded: list[list[int]]):
        """Indices of `encoded` in batches of similar length (longest first): little padding."""
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _left_pad(self, prompts: list[list[int]]):
        """(input_ids, attention_mask) tensors, padded on the left so rows end together."""
        import torch

        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        return input_ids, attention_mask

    def generate(self, conversations: list[list[Message]], sampling: Sampling) -> list[Generation]:
        encoded = [self._encode(conversation) for conversation in conversations]
        # Identical prompts (n samples of one question) get distinct seeds by their repeat index.
        repeats: dict[tuple[int, ...], int] = {}
        seeds = []
        for prompt in encoded:
            key = tuple(prompt)
            seeds.append(_row_seed(sampling.seed, prompt, repeats.get(key, 0)))
            repeats[key] = repeats.get(key, 0) + 1
        results: list[Generation | None] = [None] * len(encoded)
        for batch in self._length_batches(encoded):
            generations = self._generate_batch(
                [encoded[i] for i in batch], [seeds[i] for i in batch], sampling
            )
            for index, generation in zip(batch, generations):
                results[index] = generation
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, prompts: list[list[int]], seeds: list[int], sampling: Sampling
    ) -> list[Generation]:
        import torch

        input_ids, attention_mask = self._left_pad(prompts)
        width = input_ids.shape[1]
        pad = self.tokenizer.pad_token_id
        # Sampling runs inside a logits processor with one generator per row; generate itself
        # then only takes the argmax, so the draw of a row never depends on its batch neighbours.
        processors = []
        if sampling.temperature > 0:
            processors.append(
                _RowSampler(seeds, sampling.temperature, sampling.top_p, self.model.device)
            )
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention_mask.to(self.model.device),
                max_new_tokens=sampling.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                logits_processor=processors,
                eos_token_id=self.stop_ids,
                pad_token_id=pad,
                use_cache=True,
            )
        generations = []
        for prompt, row in zip(prompts, output[:, width:].tolist()):
            stop_at = next((i for i, token in enumerate(row) if token in self.stop_ids), None)
            completion = row if stop_at is None else row[: stop_at + 1]
            generations.append(
                Generation(
                    text=self.tokenizer.decode(completion, skip_special_tokens=True).strip(),
                    finish_reason="length" if stop_at is None else "stop",
                    prompt_tokens=len(prompt),
                    completion_tokens=len(completion),
                )
            )
        return generations

    def next_token_logprobs(
        self, conversations: list[list[Message]], prefix: str, candidates: list[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each candidate as the next token once the assistant's turn begins
        with `prefix` (e.g. "[[" then "A"/"B"/"C"): one forward pass per batch, no decoding.

        Used by judges that read a verdict from token probabilities instead of parsing text.
        Every candidate must be exactly one token after `prefix` for this tokenizer.
        """
        import torch

        from aries import AriesError

        prefix_ids = self.tokenizer.encode(prefix, add_special_tokens=False)
        candidate_ids = []
        for candidate in candidates:
            ids = self.tokenizer.encode(prefix + candidate, add_special_tokens=False)
            if len(ids) != len(prefix_ids) + 1 or ids[: len(prefix_ids)] != prefix_ids:
                raise AriesError(
                    f"{self.model_spec}: {candidate!r} is not one token after {prefix!r} for "
                    "this tokenizer, so its probability cannot be read from one forward pass"
                )
            candidate_ids.append(ids[-1])
        encoded = [self._encode(c) + prefix_ids for c in conversations]
        results: list[dict[str, float]] = [{} for _ in encoded]
        for batch in self._length_batches(encoded):
            input_ids, mask = self._left_pad([encoded[i] for i in batch])
            # Positions count real tokens only, as in generate, so padding changes nothing.
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            device = self.model.device
            with torch.inference_mode():
                # logits_to_keep=1: only the last position goes through the LM head.
                logits = self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    logits_to_keep=1,
                ).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1)[:, candidate_ids].tolist()
            for index, row in zip(batch, logprobs):
                results[index] = dict(zip(candidates, row, strict=True))
        return results

    def close(self) -> None:
        import gc

        import torch

        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _stop_token_ids(model, tokenizer) -> list[int]:
    """EOS ids from the generation config (chat models often list several) and the tokenizer."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _row_seed(seed: int, prompt: list[int], repeat: int) -> int:
    """A seed that depends only on the base seed, one prompt and its repeat index."""
    digest = hashlib.sha256(repr((seed, prompt, repeat)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class _RowSampler:
    """A logits processor that samples each row with its own generator (Gumbel-max trick).

    After temperature and top-p it adds Gumbel noise to the log-probabilities and leaves only the
    winning token finite, so greedy decoding then picks a sample from softmax(logits / T) within
    the nucleus. Each row's noise comes from its own generator, one vector per step. (Gumbel-max
    rather than inverse-CDF sampling: a cumulative sum over the vocabulary moves with rounding
    noise that differs between batch shapes, the argmax of well-separated noisy scores does not.)
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        import torch
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids, scores):
        import torch

        for warper in self.warpers:
            scores = warper(input_ids, scores)
        noise = torch.empty(scores.shape, dtype=torch.float32, device=scores.device)
        for row, generator in zip(noise, self.generators):
            row.uniform_(generator=generator)
        noise.log_().neg_().log_().neg_()  # Gumbel(0, 1), in place
        choice = (torch.log_softmax(scores.float(), dim=-1) + noise).argmax(dim=-1, keepdim=True)
        picked = torch.full_like(scores, float("-inf"))
        return picked.scatter_(1, choice, 0.0)
