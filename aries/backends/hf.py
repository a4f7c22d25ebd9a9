"""The `hf` backend: transformers models, decoded in a pool of rows that refills as rows stop.

Speed on a CPU comes from batching without waste:
- prompts enter the pool longest first, and are prefilled in buckets of similar length (about
  `prefill_tokens` padded tokens per forward pass), so a long prompt never makes short ones
  compute padding; their KV caches are then left-padded to one width and decoded together;
- identical prompts (the N samples of one question) are prefilled once and their cache is copied
  to every row;
- a row leaves the pool the step it stops, and freed slots are refilled from the queue, so one
  long answer never keeps a batch of finished rows computing.
Sampling is reproducible per prompt: each row draws its own Gumbel noise from a generator seeded
by the base seed and that row's prompt (and its repeat index), so a prompt gets the same sample
whatever batch it lands in, and a resumed run regenerates exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import deque

import torch
from torch.nn.functional import pad
from transformers import DynamicCache
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from aries.backends.base import Generation, Sampling
from aries.backends.hf_decode import GrowingLayer, use_grouped_decode_attention
from aries.core.views import Message, prompt_token_ids, render_prompt


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
        chat_template: str | None = None,
    ):
        from aries.core.models import load_causal_lm, load_tokenizer

        self.model_spec = model
        self.batch_size = batch_size
        self.prefill_tokens = 2048
        """Padded tokens per prefill forward pass (rows x longest prompt) [design]."""
        self.model = load_causal_lm(
            model, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        self.tokenizer = load_tokenizer(
            model, trust_remote_code=trust_remote_code, chat_template=chat_template
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop_ids = _stop_token_ids(self.model, self.tokenizer)
        use_grouped_decode_attention(self.model)

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

    def _prefill_chunks(self, encoded: list[list[int]], order: list[int]):
        """Split `order` (indices of `encoded`, longest first) into forward passes of similar
        length: at most `batch_size` rows and `prefill_tokens` padded tokens each, and no prompt
        shorter than 7/8 of its chunk's longest (mixed MT-Bench prompts padded to the longest
        of a chunk otherwise cost 1.7 x their real tokens; with it, 1.04 x) [design]."""
        chunk: list[int] = []
        for index in order:
            width = len(encoded[chunk[0]]) if chunk else 0
            if chunk and (
                len(chunk) == self.batch_size
                or (len(chunk) + 1) * width > self.prefill_tokens
                or 8 * len(encoded[index]) < 7 * width
            ):
                yield chunk
                chunk = []
            chunk.append(index)
        if chunk:
            yield chunk

    def _left_pad(self, prompts: list[list[int]]):
        """(input_ids, attention_mask) tensors, padded on the left so rows end together."""
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
        return _RowPool(self, encoded, seeds, sampling).run()

    def next_token_logprobs(
        self, conversations: list[list[Message]], prefix: str, candidates: list[str]
    ) -> list[dict[str, float]]:
        """Log-probability of each candidate as the next token once the assistant's turn begins
        with `prefix` (e.g. "[[" then "A"/"B"/"C"): one forward pass per batch, no decoding.

        Used by judges that read a verdict from token probabilities instead of parsing text.
        Every candidate must be exactly one token after `prefix` for this tokenizer.
        """

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
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        for batch in self._prefill_chunks(encoded, order):
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


class _RowPool:
    """One `generate` call: at most `batch_size` rows decoded together, refilled as rows stop.

    The pool keeps, per row: the prompt index, the tokens written so far, its noise generator,
    its next position; and for all rows one KV cache and attention mask, left-padded to a common
    width. Rows join longest prompt first (so a pool holds prompts of similar length), leave the
    step they stop, and the queue refills the pool once a quarter of it is free (each refill
    copies the cache once, so refilling every step would cost more than it saves).
    """

    def __init__(self, backend: HFBackend, encoded: list[list[int]], seeds, sampling: Sampling):
        self.backend, self.model = backend, backend.model
        self.encoded, self.seeds, self.sampling = encoded, seeds, sampling
        self.stop_ids = set(backend.stop_ids)
        self.sampler = (
            _RowSampler(sampling.temperature, sampling.top_p) if sampling.temperature > 0 else None
        )
        # transformers 5.x renamed the forward's `past_key_values` to `cache`.
        parameters = inspect.signature(self.model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, prompt in enumerate(encoded):
            groups.setdefault(tuple(prompt), []).append(index)
        self.queue = deque(sorted(groups.values(), key=lambda rows: -len(encoded[rows[0]])))
        self.results: list[Generation | None] = [None] * len(encoded)
        self.rows: list[int] = []
        self.tokens: list[list[int]] = []
        self.generators: list = []
        self.cache = None
        self.mask = torch.zeros(0, 0, dtype=torch.long, device=self.model.device)
        self.positions = torch.zeros(0, dtype=torch.long, device=self.model.device)
        self.logits = None

    def run(self) -> list[Generation]:
        with torch.inference_mode():
            while self.queue or self.rows:
                free = self.backend.batch_size - len(self.rows)
                if self.queue and (not self.rows or free >= max(1, self.backend.batch_size // 4)):
                    self._admit(free)
                self._step()
        return self.results  # type: ignore[return-value]

    def _forward(self, input_ids, mask, positions, cache):
        output = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kwarg: cache},
        )
        return output.logits[:, -1, :].float()

    def _admit(self, free: int) -> None:
        """Prefill queued prompts into `free` slots and join them to the pool."""
        admitted: list[list[int]] = []  # rows, grouped by identical prompt, longest first
        while self.queue and free > 0:
            group = self.queue.popleft()
            if len(group) > free:
                self.queue.appendleft(group[free:])
                group = group[:free]
            admitted.append(group)
            free -= len(group)
        device = self.model.device
        firsts = [group[0] for group in admitted]
        by_first = {group[0]: group for group in admitted}
        prefix = self._shared_prefix([self.encoded[i] for i in firsts])
        parts = []
        for chunk in self.backend._prefill_chunks(self.encoded, firsts):
            cache, mask, logits = self._prefill([self.encoded[i] for i in chunk], prefix)
            # Every row of a group starts from the one prefill of its prompt.
            counts = torch.tensor([len(by_first[i]) for i in chunk], device=device)
            expand = torch.repeat_interleave(torch.arange(len(chunk), device=device), counts)
            layers = [(layer.keys[expand], layer.values[expand]) for layer in cache.layers]
            rows = [row for i in chunk for row in by_first[i]]
            parts.append((layers, mask[expand], logits[expand], rows))
        if self.cache is not None:
            layers = [(layer.keys, layer.values) for layer in self.cache.layers]
            parts.insert(0, (layers, self.mask, self.logits, self.rows))
        self._join(parts)

    def _shared_prefix(self, prompts: list[list[int]]) -> list[tuple] | None:
        """The KV cache (one row per layer) of the tokens every prompt starts with (a chat
        template's system prompt, a shared question), computed once, or None when they share
        fewer than MIN_SHARED_PREFIX tokens."""
        if len(prompts) < 2:
            return None
        shortest = min(len(p) for p in prompts) - 1  # every row keeps a token to prefill
        shared = 0
        while shared < shortest and all(p[shared] == prompts[0][shared] for p in prompts):
            shared += 1
        if shared < MIN_SHARED_PREFIX:
            return None
        device = self.model.device
        ids = torch.tensor([prompts[0][:shared]], device=device)
        cache = DynamicCache()
        positions = torch.arange(shared, device=device)[None]
        self._forward(ids, torch.ones_like(ids), positions, cache)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _prefill(self, prompts: list[list[int]], prefix: list[tuple] | None):
        """(cache, mask, last logits) of `prompts`, after the cache of their shared `prefix`:
        the rest of each prompt, left-padded, follows the prefix (the mask has a hole there)."""
        device = self.model.device
        cache = DynamicCache()
        shared = 0
        if prefix is not None:
            shared = prefix[0][0].shape[2]
            for index, (keys, values) in enumerate(prefix):
                rows = (len(prompts), -1, -1, -1)
                cache.update(keys.expand(*rows), values.expand(*rows), index)
        input_ids, suffix_mask = self.backend._left_pad([p[shared:] for p in prompts])
        positions = shared + (suffix_mask.cumsum(dim=1) - 1).clamp(min=0)
        mask = torch.cat([torch.ones(len(prompts), shared, dtype=torch.long), suffix_mask], dim=1)
        mask = mask.to(device)
        logits = self._forward(input_ids.to(device), mask, positions.to(device), cache)
        return cache, mask, logits

    def _join(self, parts) -> None:
        """One pool from several (layers, mask, logits, rows) parts: caches left-padded to the
        widest part (the padding is masked out), rows concatenated."""
        width = max(mask.shape[1] for _, mask, _, _ in parts)
        cache = DynamicCache()
        for layer in range(len(parts[0][0])):
            keys = [pad(p[0][layer][0], (0, 0, width - p[1].shape[1], 0)) for p in parts]
            values = [pad(p[0][layer][1], (0, 0, width - p[1].shape[1], 0)) for p in parts]
            room = width + self.sampling.max_new_tokens
            cache.layers.append(GrowingLayer(torch.cat(keys), torch.cat(values), room))
        self.cache = cache
        self.mask = torch.cat([pad(mask, (width - mask.shape[1], 0)) for _, mask, _, _ in parts])
        self.positions = self.mask.sum(dim=1)
        self.logits = torch.cat([logits for _, _, logits, _ in parts])
        new_rows = [row for _, _, _, rows in parts[1 if self.rows else 0 :] for row in rows]
        self.tokens += [[] for _ in new_rows]
        device = self.model.device
        self.generators += [
            _row_generator(self.seeds[row], device) if self.sampler else None for row in new_rows
        ]
        self.rows += new_rows

    def _step(self) -> None:
        """Pick every row's next token, retire the rows that stopped, run one decoding step."""
        if self.sampler is None:
            chosen = self.logits.argmax(dim=-1)
        else:
            chosen = self.sampler(self.logits, self.generators)
        keep = []
        for slot, token in enumerate(chosen.tolist()):
            self.tokens[slot].append(token)
            if token in self.stop_ids or len(self.tokens[slot]) >= self.sampling.max_new_tokens:
                self._finish(slot)
            else:
                keep.append(slot)
        if len(keep) < len(self.rows):
            self._keep(keep)
            chosen = chosen[keep]
        if not self.rows:
            return
        ones = torch.ones(len(self.rows), 1, dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        self.logits = self._forward(chosen[:, None], self.mask, self.positions[:, None], self.cache)
        self.positions = self.positions + 1

    def _keep(self, slots: list[int]) -> None:
        """Drop every row not in `slots`, and the cache columns that only those rows used."""
        index = torch.tensor(slots, dtype=torch.long, device=self.mask.device)
        self.rows = [self.rows[s] for s in slots]
        self.tokens = [self.tokens[s] for s in slots]
        self.generators = [self.generators[s] for s in slots]
        if not slots:
            self.cache, self.logits = None, None
            self.mask = self.mask[:0, :0]
            self.positions = self.positions[:0]
            return
        self.mask, self.positions = self.mask[index], self.positions[index]
        self.logits = self.logits[index]
        first = int(self.mask.any(dim=0).int().argmax())  # left-padding every row now has
        self.mask = self.mask[:, first:]
        room = self.mask.shape[1] + self.sampling.max_new_tokens
        for position, layer in enumerate(self.cache.layers):
            keys, values = layer.keys[index, :, first:], layer.values[index, :, first:]
            self.cache.layers[position] = GrowingLayer(keys, values, room)

    def _finish(self, slot: int) -> None:
        row, completion = self.rows[slot], self.tokens[slot]
        stopped = completion[-1] in self.stop_ids
        self.results[row] = Generation(
            text=self.backend.tokenizer.decode(completion, skip_special_tokens=True).strip(),
            finish_reason="stop" if stopped else "length",
            prompt_tokens=len(self.encoded[row]),
            completion_tokens=len(completion),
        )


MIN_SHARED_PREFIX = 8
"""Tokens a prefill chunk's prompts must share before their prefix is computed once [design]."""


def _row_generator(seed: int, device):
    return torch.Generator(device=device).manual_seed(seed)


class _RowSampler:
    """Samples each row with its own generator (Gumbel-max trick).

    After temperature and top-p it adds Gumbel noise to the log-probabilities and takes the
    argmax: a sample from softmax(logits / T) within the nucleus. Each row's noise comes from its
    own generator, one vector per step. (Gumbel-max rather than inverse-CDF sampling: a cumulative
    sum over the vocabulary moves with rounding noise that differs between batch shapes, the
    argmax of well-separated noisy scores does not.)
    """

    def __init__(self, temperature: float, top_p: float):
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, scores, generators):
        """The sampled token id of each row of `scores` (rows x vocabulary)."""
        for warper in self.warpers:
            scores = warper(None, scores)
        noise = torch.empty(scores.shape, dtype=torch.float32, device=scores.device)
        for row, generator in zip(noise, generators, strict=True):
            row.uniform_(generator=generator)
        noise.log_().neg_().log_().neg_()  # Gumbel(0, 1), in place
        return (torch.log_softmax(scores.float(), dim=-1) + noise).argmax(dim=-1)
