"""Decoding pieces of the `hf` backend: an in-place KV cache layer and grouped decode attention
(CPU), and grouped SDPA attention (the static path on a GPU), each of which removes a copy of the
whole KV cache per layer and step, the main cost of decoding many rows [design]; and linear layers
from pre-packed weights (CPU), the main cost of decoding a small batch."""

from __future__ import annotations

import platform

import torch
from torch.nn.functional import pad, scaled_dot_product_attention

from aries.core.compat import check_private_api

check_private_api("transformers")  # before the names below are imported

from transformers import AttentionInterface  # noqa: E402
from transformers.cache_utils import DynamicLayer  # noqa: E402
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask  # noqa: E402


class GrowingLayer(DynamicLayer):
    """A KV cache layer with room for the tokens still to come: a step writes its keys and values
    in place, where transformers' DynamicLayer concatenates (copying the whole cache every step,
    a main cost of decoding many rows of a small model on a CPU)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int):
        super().__init__()
        rows, heads, length, dim = keys.shape
        self.key_buffer = keys.new_empty(rows, heads, max(room, length), dim)
        self.value_buffer = values.new_empty(rows, heads, max(room, length), dim)
        self.key_buffer[:, :, :length] = keys
        self.value_buffer[:, :, :length] = values
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._view(length)

    def _view(self, length: int) -> None:
        self.keys = self.key_buffer[:, :, :length]
        self.values = self.value_buffer[:, :, :length]

    def update(self, key_states, value_states, *args, **kwargs):
        start, end = self.keys.shape[2], self.keys.shape[2] + key_states.shape[2]
        if end > self.key_buffer.shape[2]:  # more steps than reserved: grow by half
            extra = max(end, self.key_buffer.shape[2] * 3 // 2) - self.key_buffer.shape[2]
            self.key_buffer = pad(self.key_buffer, (0, 0, 0, extra))
            self.value_buffer = pad(self.value_buffer, (0, 0, 0, extra))
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        self._view(end)
        return self.keys, self.values


GROUPED_DECODE_ATTENTION = "aries_grouped_decode"


def grouped_decode_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention for one new token per row without copying the KV cache.

    transformers' sdpa path repeats every key/value head for its query heads when a padding mask
    is present (a copy of the whole cache per layer and step). Here the query heads that share a
    key/value head are stacked: (rows, kv heads, group, dim) @ (rows, kv heads, dim, length).
    Prefill (several query tokens) goes to the sdpa path unchanged.
    """

    if query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    scaling = kwargs.get("scaling") or dim**-0.5
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, float("-inf"))
        else:
            scores = scores + attention_mask
    probabilities = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(probabilities, value)  # rows, kv heads, group, dim
    return output.reshape(rows, heads, 1, dim).transpose(1, 2), None


def use_grouped_decode_attention(model) -> None:
    """Decode with `grouped_decode_attention` on CPUs where the model uses sdpa [design]."""
    if model.device.type != "cpu" or model.config._attn_implementation != "sdpa":
        return
    AttentionInterface.register(GROUPED_DECODE_ATTENTION, grouped_decode_attention)
    AttentionMaskInterface.register(GROUPED_DECODE_ATTENTION, sdpa_mask)
    model.set_attn_implementation(GROUPED_DECODE_ATTENTION)


GROUPED_SDPA_ATTENTION = "aries_grouped_sdpa"


def grouped_sdpa_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA for one new token per row over a grouped-query cache, without repeating its heads.

    With a mask, transformers' sdpa path repeats each key/value head for its query heads (a copy
    of the whole cache per layer and step; the static path always passes a mask). One query
    token per row lets the query heads of a key/value head stand in SDPA's query-length place:
    queries (rows, kv heads, group, dim) against keys (rows, kv heads, length, dim), the mask
    (rows, 1, 1, length) broadcast over the group. Prefill goes to the sdpa path unchanged.
    """
    rows, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if length != 1 or kv_heads == heads or attention_mask is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim)
    output = scaled_dot_product_attention(
        grouped, key, value, attn_mask=attention_mask, scale=kwargs.get("scaling")
    )  # rows, kv heads, group, dim
    return output.reshape(rows, heads, 1, dim).transpose(1, 2), None


def use_grouped_sdpa_attention(model) -> None:
    """The static path on a GPU: grouped SDPA where the model uses sdpa with grouped-query
    heads (e.g. Llama-3.1-8B's 32 query heads over 8 key/value heads) [design]."""
    config = model.config
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    if config._attn_implementation != "sdpa" or kv_heads == config.num_attention_heads:
        return
    AttentionInterface.register(GROUPED_SDPA_ATTENTION, grouped_sdpa_attention)
    AttentionMaskInterface.register(GROUPED_SDPA_ATTENTION, sdpa_mask)
    model.set_attn_implementation(GROUPED_SDPA_ATTENTION)


class PackedLinear:
    """An `nn.Linear`'s forward computed by oneDNN from a copy of its weight packed once into the
    layout oneDNN's matmul wants, as vLLM's CPU engine does.

    Why: torch's CPU `linear` runs MKL's sgemm (float32) or oneDNN (bfloat16) on the weight as
    stored, re-laying it out every call, and a decode step of a few rows is mostly such calls.
    Measured on a 2-core AVX512-BF16 CPU, embedded model, 64 prompts: 1.5-2 x the tokens/s in
    float32, 1.1-1.2 x in bfloat16 (bench/cpu_engines.py). oneDNN computes each
    row alone (a row's output does not depend on the batch it is in; MKL's does), so outputs in
    bfloat16 are bit-identical to torch's and float32 ones differ in the last bits only.
    The packed copy is stale once the weight changes: a training step or a new tensor repacks
    it, and with gradients on, the module's own forward runs."""

    def __init__(self, module: torch.nn.Linear, rows: int):
        self.module, self.rows = module, rows
        self._pack()

    def _pack(self) -> None:
        self.weight = self.module.weight
        self.version = self.weight._version
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), self.rows)

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        module = self.module
        if torch.is_grad_enabled():
            return torch.nn.functional.linear(input, module.weight, module.bias)
        if module.weight is not self.weight or module.weight._version != self.version:
            self._pack()
        return torch.ops.mkldnn._linear_pointwise(input, self.packed, module.bias, "none", [], "")


def use_packed_linears(model, rows: int, *, float32: bool = False) -> list[torch.nn.Linear]:
    """Give every plain bfloat16 (and with `float32`, float32) `nn.Linear` of a model on an x86
    CPU a `PackedLinear` forward, packed for `rows` rows a call (the pool's size); the modules
    changed, for `restore_linears`. Costs a second copy of those weights in memory [design]."""
    dtypes = (torch.bfloat16, torch.float32) if float32 else (torch.bfloat16,)
    if (
        model.device.type != "cpu"
        or platform.machine().lower() not in ("x86_64", "amd64")
        or not torch.backends.mkldnn.is_available()
    ):
        return []
    changed = []
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype in dtypes:
            module.forward = PackedLinear(module, rows)
            changed.append(module)
    return changed


def restore_linears(modules: list[torch.nn.Linear]) -> None:
    """Undo `use_packed_linears`: the modules' own forward again, the packed copies freed."""
    for module in modules:
        del module.forward
