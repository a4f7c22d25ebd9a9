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
The pool itself is in hf_pool.py; `decode="static"` (hf_static.py) keeps its rows in a
fixed-shape cache whose decode step a CUDA graph replays, for GPUs.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch

from aries.backends.base import Generation, Sampling
from aries.backends.hf_decode import (
    restore_linears,
    use_grouped_decode_attention,
    use_grouped_sdpa_attention,
    use_packed_linears,
)
from aries.backends.hf_pool import RowPool
from aries.core.views import Message, prompt_token_ids, render_prompt

Decode = Literal["dynamic", "static"]


class HFBackend:
    """Generation with a transformers causal LM (any local folder, hub id or `embedded`).

    `decode` (`generation.backend_options: {decode: static}`): 'dynamic', the default, keeps
    the KV cache as wide as the pool's rows need (best on a CPU); 'static' gives each row a
    fixed-shape cache slot and, on CUDA, replays the decode step as a CUDA graph (a GPU is
    launch-bound otherwise). Both give the same greedy tokens.

    On an x86 CPU the linear layers run from oneDNN-packed weights (hf_decode.PackedLinear):
    always in bfloat16, where the outputs are bit-identical; in float32 only with
    `packed_float32: true` (1.5-2x the decode tokens/s, bench/cpu_engines.py), because there
    the logits move in the last bits, which can move a sampled run's records, and the project's
    recorded results were made without it.
    """

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
        decode: Decode = "dynamic",
        packed_float32: bool = False,
    ):
        from aries.core.models import ModelSettings, load_causal_lm, load_tokenizer

        self.model_spec = model
        settings = ModelSettings(model, trust_remote_code, chat_template, dtype)
        self._start(
            load_causal_lm(settings, device=device),
            load_tokenizer(settings),
            batch_size,
            decode,
            packed_float32,
        )

    @classmethod
    def from_loaded(
        cls,
        model,
        tokenizer,
        *,
        batch_size: int = 16,
        decode: Decode = "dynamic",
        packed_float32: bool = False,
    ) -> HFBackend:
        """A backend around a model already in memory: benchmarks of random-weight shapes
        (an 8B model takes minutes to save and load again)."""
        backend = cls.__new__(cls)
        backend.model_spec = getattr(model, "name_or_path", "") or "a model in memory"
        backend._start(model, tokenizer, batch_size, decode, packed_float32)
        return backend

    def _start(
        self, model, tokenizer, batch_size: int, decode: Decode, packed_float32: bool
    ) -> None:
        if decode not in ("dynamic", "static"):
            from aries import AriesError

            raise AriesError(
                f"generation.backend_options.decode: {decode!r} is not 'dynamic' or 'static'"
            )
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.prefill_tokens = 2048
        """Padded tokens per prefill forward pass (rows x longest prompt) [design]."""
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop_ids = _stop_token_ids(self.model, self.tokenizer)
        self.decode = decode
        self.slot_decoder = None
        """The static path's cache and captured graph, kept between calls (hf_static.py)."""
        self.attention = model.config._attn_implementation
        """The model's attention as it came: close() restores it (a loaded model is shared)."""
        # Both decode paths attend alike on a CPU; on a GPU the static path's graph attends with
        # grouped SDPA (no repeated key/value heads), the default path keeps sdpa.
        use_grouped_decode_attention(self.model)
        if decode == "static":
            use_grouped_sdpa_attention(self.model)
        self.packed = use_packed_linears(self.model, batch_size, float32=packed_float32)
        """The linear layers given pre-packed weights on a CPU: close() restores them."""

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
        if self.decode == "static":
            from aries.backends.hf_static import StaticRowPool

            return StaticRowPool(self, encoded, seeds, sampling).run()
        return RowPool(self, encoded, seeds, sampling).run()

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

        if self.model.config._attn_implementation != self.attention:
            self.model.set_attn_implementation(self.attention)
        restore_linears(self.packed)
        self.packed = []
        del self.model
        self.slot_decoder = None
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
