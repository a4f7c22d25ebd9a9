"""The `hf` backend's decoding loop: a pool of rows that refills as rows stop, and its sampler.

`RowPool` keeps the pool's KV cache as wide as its rows need (the default path, best on a CPU);
`aries.backends.hf_static.StaticRowPool` reuses its prefill and bookkeeping with a fixed-shape
cache whose decode step a CUDA graph can replay.
"""

from __future__ import annotations

import inspect
from collections import deque

import torch
from torch.nn.functional import pad
from transformers import DynamicCache
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from aries.backends.base import Generation, Sampling
from aries.backends.hf_decode import GrowingLayer

MIN_SHARED_PREFIX = 8
"""Tokens a prefill chunk's prompts must share before their prefix is computed once [design]."""


class RowPool:
    """One `generate` call: at most `batch_size` rows decoded together, refilled as rows stop.

    The pool keeps, per row: the prompt index, the tokens written so far, its noise generator,
    its next position; and for all rows one KV cache and attention mask, left-padded to a common
    width. Rows join longest prompt first (so a pool holds prompts of similar length), leave the
    step they stop, and the queue refills the pool once a quarter of it is free (each refill
    copies the cache once, so refilling every step would cost more than it saves).
    """

    def __init__(self, backend, encoded: list[list[int]], seeds: list[int], sampling: Sampling):
        self.backend, self.model = backend, backend.model
        self.encoded, self.seeds, self.sampling = encoded, seeds, sampling
        self.stop_ids = set(backend.stop_ids)
        self.sampler = (
            RowSampler(sampling.temperature, sampling.top_p) if sampling.temperature > 0 else None
        )
        self.cache_kwarg = cache_kwarg(self.model)
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
        parts = self._prefilled(free)
        if self.cache is not None:
            layers = [(layer.keys, layer.values) for layer in self.cache.layers]
            parts.insert(0, (layers, self.mask, self.logits, self.rows))
        self._join(parts)

    def _prefilled(self, free: int) -> list[tuple]:
        """Prefill up to `free` queued rows: one (layers, mask, logits, rows) part per prefill
        chunk, each layer's (keys, values) left-padded like the mask."""
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
        return parts

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
        self._add_rows([row for _, _, _, rows in parts[1 if self.rows else 0 :] for row in rows])

    def _add_rows(self, rows: list[int]) -> None:
        """Start the bookkeeping of newly admitted rows: no tokens yet, their own generator."""
        self.tokens += [[] for _ in rows]
        device = self.model.device
        self.generators += [
            row_generator(self.seeds[row], device) if self.sampler else None for row in rows
        ]
        self.rows += rows

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
        if self.rows:
            self._decode(chosen)

    def _decode(self, chosen: torch.Tensor) -> None:
        """One forward pass of every row's `chosen` token; the next logits."""
        ones = torch.ones(len(self.rows), 1, dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        self.logits = self._forward(chosen[:, None], self.mask, self.positions[:, None], self.cache)
        self.positions = self.positions + 1

    def _keep_rows(self, slots: list[int]) -> None:
        """Drop the bookkeeping (rows, tokens, generators) of every row not in `slots`."""
        self.rows = [self.rows[s] for s in slots]
        self.tokens = [self.tokens[s] for s in slots]
        self.generators = [self.generators[s] for s in slots]

    def _keep(self, slots: list[int]) -> None:
        """Drop every row not in `slots`, and the cache columns that only those rows used."""
        index = torch.tensor(slots, dtype=torch.long, device=self.mask.device)
        self._keep_rows(slots)
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


def cache_kwarg(model) -> str:
    """The forward's name for the KV cache: transformers 5.x renamed `past_key_values` to
    `cache`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def row_generator(seed: int, device):
    return torch.Generator(device=device).manual_seed(seed)


class RowSampler:
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
