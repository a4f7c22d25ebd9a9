"""The `hf` backend's GPU decode path (`decode: static`): a fixed-shape KV cache, one slot per
pool row, whose decode step is captured once as a CUDA graph and replayed every token.

Why: on a GPU the default path is launch-bound. A decode step of a 135M model is a few hundred
small kernels, each microseconds of launch for less work, so the GPU waits on Python. A CUDA
graph replays all of them with one launch, but only for fixed shapes and addresses, hence:
- every row owns one slot of a cache sized for the whole call (longest prompt + max_new_tokens)
  and writes its key/value at its own column, its length: rows of any length decode together
  without left-padding, and a row that stops frees its slot without moving the others;
- the attention mask is computed inside the step from the slots' lengths;
- the step runs for every slot, idle ones too (their logits are ignored, their writes land in
  their own slot, which the next row admitted there overwrites).
Prefill stays eager (bucketed; long sequences are compute-bound already) and its cache is copied
into the new rows' slots. Off a GPU the same path runs without a graph, which is how the tests
show its greedy tokens equal the default path's. Off by default until a GPU run has shown it
equal and faster (docs/scaling.md, the GPU kit).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from aries.backends.hf_decode import DynamicLayer  # imported there after the private-API check
from aries.backends.hf_pool import RowPool, cache_kwarg

CAPACITY_STEP = 256
"""Cache columns are rounded up to a multiple of this, so calls of similar lengths reuse one
captured graph instead of capturing a new one [design]."""


class SlotLayer(DynamicLayer):
    """One layer's fixed-shape cache: (slots, kv heads, capacity, head dim); a decode step
    writes each slot's new key/value at that slot's own column and attends over all columns
    (the mask hides the columns past each slot's length)."""

    def __init__(self, keys: torch.Tensor, lengths: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.lengths = keys, torch.zeros_like(keys), lengths
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True

    def update(self, key_states, value_states, *args, **kwargs):
        rows, heads, _, dim = key_states.shape
        column = self.lengths.view(rows, 1, 1, 1).expand(rows, heads, 1, dim)
        self.keys.scatter_(2, column, key_states)  # scatter: no host sync, graph-capturable
        self.values.scatter_(2, column, value_states)
        return self.keys, self.values


class SlotDecoder:
    """The fixed-shape state of the static path: the cache of `slots` rows x `capacity` columns,
    each slot's length, the step's input tokens and output logits. `step()` decodes one token
    for every slot: a CUDA graph replay on CUDA, the same forward pass run eagerly elsewhere."""

    def __init__(self, model, slots: int, capacity: int):
        from aries import AriesError

        config = model.config
        if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or []):
            raise AriesError(
                f"decode: static supports full-attention models only; {config.model_type} has "
                f"layer types {sorted(set(config.layer_types))}: use the default decode"
            )
        device, heads = model.device, config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        self.model, self.slots, self.capacity = model, slots, capacity
        self.cache_kwarg = cache_kwarg(model)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.tokens = torch.zeros(slots, 1, dtype=torch.long, device=device)
        self.columns = torch.arange(capacity, device=device)
        self.cache = DynamicCache()
        shape = (slots, kv_heads, capacity, head_dim)
        self.cache.layers = [
            SlotLayer(torch.zeros(shape, dtype=model.dtype, device=device), self.lengths)
            for _ in range(config.num_hidden_layers)
        ]
        self.graph = None
        self.logits = torch.zeros(0)
        if device.type == "cuda":
            self._capture()

    def _forward(self) -> torch.Tensor:
        mask = (self.columns <= self.lengths[:, None])[:, None, None, :]  # slots, 1, 1, capacity
        output = self.model(
            input_ids=self.tokens,
            attention_mask=mask,
            position_ids=self.lengths[:, None],
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kwarg: self.cache},
        )
        # An idle slot keeps stepping: clamping keeps its writes inside its own row.
        self.lengths.add_(1).clamp_(max=self.capacity - 1)
        return output.logits[:, -1, :].float()

    def _capture(self) -> None:
        """Record one decode step as a CUDA graph (after warm-up steps on a side stream, as
        torch.cuda.graphs asks: lazy initialisation must not happen during capture)."""
        side = torch.cuda.Stream(device=self.lengths.device)
        side.wait_stream(torch.cuda.current_stream(self.lengths.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._forward()
        torch.cuda.current_stream(self.lengths.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._forward()
        self.lengths.zero_()

    def step(self) -> None:
        """Decode `tokens` at every slot's length; `logits` holds the next-token scores."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self.logits = self._forward()

    def load(self, slots: torch.Tensor, layers: list[tuple], mask: torch.Tensor) -> None:
        """Copy prefilled rows into `slots`: each row's real columns (the mask's ones; the
        prefill left-pads and may leave a hole after a shared prefix) moved to its slot's
        first columns, in order. Rotary positions are already in the keys, so moving columns
        changes nothing the attention sees."""
        order = torch.argsort((mask == 0).int(), dim=1, stable=True)  # real columns first
        width = mask.shape[1]
        for layer, (keys, values) in zip(self.cache.layers, layers, strict=True):
            index = order[:, None, :, None].expand_as(keys)
            layer.keys[slots, :, :width] = keys.gather(2, index)
            layer.values[slots, :, :width] = values.gather(2, index)
        self.lengths[slots] = mask.sum(dim=1)


def slot_decoder(backend, encoded: list[list[int]], max_new_tokens: int) -> SlotDecoder:
    """The backend's decoder for a call, reused while its capacity suffices (a new capture
    costs a few decode steps and a second cache's memory, so the old one is dropped first)."""
    needed = max((len(prompt) for prompt in encoded), default=0) + max_new_tokens
    capacity = -(-needed // CAPACITY_STEP) * CAPACITY_STEP
    decoder = backend.slot_decoder
    if decoder is None or decoder.capacity < capacity or decoder.slots != backend.batch_size:
        backend.slot_decoder = None
        del decoder
        with torch.inference_mode():
            backend.slot_decoder = SlotDecoder(backend.model, backend.batch_size, capacity)
    return backend.slot_decoder


class StaticRowPool(RowPool):
    """The row pool of `decode: static`: the same queue, prefill, sampling and retirement as
    `RowPool`, with rows in the fixed slots of a `SlotDecoder` instead of a cache that is
    re-cut as rows join and leave."""

    def __init__(self, backend, encoded: list[list[int]], seeds: list[int], sampling):
        super().__init__(backend, encoded, seeds, sampling)
        self.decoder = slot_decoder(backend, encoded, sampling.max_new_tokens)
        self.slots: list[int] = []  # the decoder slot of each row, parallel to self.rows
        self.free_slots = list(range(self.decoder.slots))[::-1]

    def _index(self, values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=self.model.device)

    def _admit(self, free: int) -> None:
        for layers, mask, logits, rows in self._prefilled(free):
            slots = [self.free_slots.pop() for _ in rows]
            self.decoder.load(self._index(slots), layers, mask)
            self.logits = logits if not self.rows else torch.cat([self.logits, logits])
            self.slots += slots
            self._add_rows(rows)

    def _decode(self, chosen: torch.Tensor) -> None:
        index = self._index(self.slots)
        self.decoder.tokens[index, 0] = chosen
        self.decoder.step()
        self.logits = self.decoder.logits[index]

    def _keep(self, kept: list[int]) -> None:
        kept_set = set(kept)
        self.free_slots += [slot for i, slot in enumerate(self.slots) if i not in kept_set]
        self.slots = [self.slots[i] for i in kept]
        self._keep_rows(kept)
        self.logits = self.logits[self._index(kept)] if kept else None
