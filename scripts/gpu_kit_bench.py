"""Throughput at three model sizes, for the GPU kit (one JSON row per figure on stdout).

    python scripts/gpu_kit_bench.py --model DIR [--dry] [--parts generation,dpo]

The real 135M model (DIR) and random-weight 1.7B and 8B shapes (configs only; no weights
travel), in bf16 on one GPU:
- generation tokens/s of the hf backend at batch 64 and 256, each decode path (the default and
  `decode: static`), with peak GPU memory and the share of the memory-bandwidth bound (every
  step reads the weights and each row's KV cache once), and how far the paths agree
  (gpu_smoke.decode_agreement): exact greedy equality can hold only on the 135M model in fp32
  (its own row), not in bf16 or on random weights, where the first-step logit difference is
  what tells a healthy path from a broken one;
- one TRL DPO step (LoRA at 8B, which leaves no room for a full copy and optimizer) in tokens/s
  with peak memory and the share of the bf16 FLOP/s bound (8 N FLOPs per token for the policy's
  forward and backward and the reference's forward, 6 N with LoRA; attention not counted).
Each size, decode path and DPO step is guarded on its own: an exception is one FAILED row and
the next one still runs. `--dry` is the CPU mode the kit's tests run: the tiny model and a tiny
random shape.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

SHAPES = {
    "1.7B": dict(  # SmolLM2-1.7B
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=24,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "8B": dict(  # Llama-3.1-8B
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
}
DRY_SHAPE = {
    "tiny-wide": dict(
        SHAPES["1.7B"],
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
}
GPUS = {  # name fragment: (memory bandwidth B/s, dense bf16 FLOP/s), from the vendors' sheets
    "H200": (4.8e12, 989e12),
    "H100 NVL": (3.9e12, 835e12),
    "H100 PCIe": (2.0e12, 756e12),
    "H100": (3.35e12, 989e12),  # SXM (HBM3)
    "A100-SXM4-80GB": (2.04e12, 312e12),
    "A100": (1.94e12, 312e12),
}


def emit(check: str, result: str, detail: str) -> None:
    print(json.dumps({"check": check, "result": result, "detail": detail}), flush=True)


@contextlib.contextmanager
def guarded(check: str):
    """Run one figure's work; an exception becomes its FAILED row (and frees what it held)."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 (any failure is one row; the next figure runs)
        where = traceback.extract_tb(error.__traceback__)[-1]
        emit(
            check,
            f"FAILED ({type(error).__name__})",
            f"{str(error)[:300]} at {Path(where.filename).name}:{where.lineno}",
        )
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def gpu_limits() -> tuple[str, float | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "CPU", None, None
    name = torch.cuda.get_device_name(0)
    for fragment, (bandwidth, flops) in GPUS.items():
        if fragment in name:
            return name, bandwidth, flops
    return name, None, None


def share(measured: float, bound: float | None) -> str:
    return f"{100 * measured / bound:.1f} % of bound" if bound else "bound unknown"


def peak_gib() -> str:
    import torch

    if not torch.cuda.is_available():
        return "peak -"
    return f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def random_model(shape: dict, tokenizer, device: str, dtype):
    """A model of `shape` with random weights, made on the device (no weights travel)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        **shape,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def conversations(count: int) -> list[list[dict]]:
    from train_dpo import arithmetic_selections

    return [[{"role": "user", "content": s["prompt"]}] for s in arithmetic_selections(count)]


def generation(label: str, model, tokenizer, batch: int, new: int, bandwidth) -> None:
    """Both decode paths on the same `batch` prompts: their tokens/s, and how far they agree."""
    import torch
    from gpu_smoke import decode_agreement, first_decode_logits

    from aries.backends.base import Sampling
    from aries.backends.hf import HFBackend

    prompts = conversations(batch)
    texts, logits = {}, {}
    for decode in ("dynamic", "static"):
        with guarded(f"generate {label} batch {batch} {decode}"):
            backend = HFBackend.from_loaded(model, tokenizer, batch_size=batch, decode=decode)
            backend.stop_ids = [model.config.vocab_size + 7]  # never stops: exact token counts
            try:
                # warm-up at the timed call's length (the static path captures its graph here)
                backend.generate(prompts[:2], Sampling(max_new_tokens=new))
                reset_peak()
                start = time.perf_counter()
                results = backend.generate(prompts, Sampling(max_new_tokens=new))
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                texts[decode] = [r.text for r in results]
                logits[decode] = first_decode_logits(backend, prompts)
            finally:
                backend.close()
            tokens = sum(r.completion_tokens for r in results)
            context = sum(r.prompt_tokens for r in results) / len(results) + new / 2
            config = model.config
            head_dim = config.hidden_size // config.num_attention_heads
            kv_bytes = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            step_bytes = weights + batch * context * kv_bytes
            bound = batch * bandwidth / step_bytes if bandwidth else None
            emit(
                f"generate {label} batch {batch} {decode}",
                f"{tokens / seconds:,.0f} tokens/s",
                f"{share(tokens / seconds, bound)}; {peak_gib()}; {batch} prompts x {new} "
                f"tokens in {seconds:.1f} s",
            )
    if len(texts) == 2:
        emit(
            f"generate {label} batch {batch} agreement",
            decode_agreement(texts, logits, tokenizer),
            f"dynamic vs static, {model.dtype}",
        )


def dpo(label: str, model, reference, tokenizer, *, batch: int, lora: bool, flops, cpu: bool):
    from gpu_smoke import dpo_step

    model.train()
    reset_peak()
    result = dpo_step(model, reference, tokenizer, batch=batch, lora=lora, cpu=cpu)
    linear = sum(
        p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n
    )
    if model.config.tie_word_embeddings:
        linear += model.config.vocab_size * model.config.hidden_size  # the head is a matmul
    bound = flops / ((6 if lora else 8) * linear) if flops else None
    emit(
        f"DPO step {label}" + (" LoRA" if lora else ""),
        f"{result['tokens_per_s']:,.0f} tokens/s",
        f"{share(result['tokens_per_s'], bound)}; {peak_gib()}; {batch} pairs, "
        f"{result['tokens']} tokens, {result['seconds']:.2f} s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the real 135M model's folder")
    parser.add_argument("--dry", action="store_true", help="CPU, tiny shapes and batches")
    parser.add_argument(
        "--shapes", default=None, help="which sizes (default 135M,1.7B,8B; dry: tiny,tiny-wide)"
    )
    parser.add_argument("--parts", default="generation,dpo", help="generation, dpo or both")
    args = parser.parse_args(argv)

    import gc

    import torch

    from aries.core.models import load_causal_lm, load_tokenizer

    if args.dry:
        torch.set_num_threads(1)  # tiny matrices: threads only contend (5x slower on 2 busy cores)
    name, bandwidth, flops = gpu_limits()
    device, dtype = ("cpu", torch.float32) if args.dry else ("cuda", torch.bfloat16)
    batches, new, pairs = ((2, 4), 4, 2) if args.dry else ((64, 256), 128, 8)
    emit(
        "device",
        name,
        f"torch {torch.__version__}; bound: {bandwidth or '-'} B/s, {flops or '-'} FLOP/s",
    )
    tokenizer = load_tokenizer(args.model)
    shapes = (args.shapes or ("tiny,tiny-wide" if args.dry else "135M,1.7B,8B")).split(",")

    def load(label: str):
        if label in ("135M", "tiny"):  # the model of --model
            return load_causal_lm(args.model, dtype=str(dtype).split(".")[1], device=device)
        return random_model({**SHAPES, **DRY_SHAPE}[label], tokenizer, device, dtype)

    if "generation" in args.parts and not args.dry and "135M" in shapes:
        with guarded("decode paths agree 135M float32"):  # where exact greedy equality can hold
            fp32 = load_causal_lm(args.model, dtype="float32", device=device)
            generation("135M float32", fp32, tokenizer, batches[0], 64, bandwidth)
            del fp32
    for label in shapes:
        model = None
        with guarded(f"load {label}"):
            model = load(label)
        if model is None:
            continue
        if "generation" in args.parts:
            for batch in batches:
                generation(label, model, tokenizer, batch, new, bandwidth)
        lora = label == "8B"
        if "dpo" in args.parts:
            with guarded(f"DPO step {label}" + (" LoRA" if lora else "")):
                reference = None if lora else load(label)
                dpo(label, model, reference, tokenizer, batch=2 * pairs if label == "135M" else
                    pairs, lora=lora, flops=flops, cpu=args.dry)  # fmt: skip
                del reference
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
