"""Generation speed on this machine: one prompt at a time versus the batched `hf` backend.

    (a) plain `model.generate`, one prompt at a time, greedy;
    (b) the `hf` backend (`aries.backends.hf`), all prompts at once, at several batch sizes;
    (p) a peer engine, CTranslate2 in float32 (only when `ctranslate2` is installed; the model is
        converted once with its transformers converter into the aries cache folder), greedy, at
        the same batch sizes;
    (c) the compute bound: measured fp32 matmul FLOP/s / (2 x parameter count) tokens/s.

Every answer runs to exactly `--new-tokens` tokens (EOS is replaced by a token id the model can
never produce in (a) and (b); (p) is held to the length by min_length), so all count the same
tokens. Prompts: the first `--prompts` MT-Bench questions (offline, 37 to 392 tokens for 64).
Targets (issue 11): best (b) >= 8 x (a), and best (b) >= 1.0 x best (p).

    python bench/generation.py [--model embedded] [--prompts 32] [--new-tokens 128]
        [--batch-sizes 16,32] [--single 4] [--no-peer]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from timing import Record, add_json_flag, measure


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of `torch.mm` on size x size matrices (2 n^3 FLOPs per product)."""
    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    timing, _ = measure(lambda: torch.mm(a, b), repeat=repeats, warmup=1)
    return 2 * size**3 / min(timing.seconds)


def ctranslate2_speeds(
    model: str, tokenizer, prompts: list[list[int]], new: int, batch_sizes: list[int]
) -> dict[int, float]:
    """(p): greedy CTranslate2 float32 tokens/s per batch size, or {} when it is not installed."""
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        print("(p) CTranslate2 not installed (pip install ctranslate2): peer skipped")
        return {}
    import torch

    from aries.core.models import EMBEDDED, cache_dir, embedded_model_path

    source = embedded_model_path() if model == EMBEDDED else Path(model)
    if not source.is_dir():
        print(f"(p) {model} is not a local model folder: CTranslate2 peer skipped")
        return {}
    target = cache_dir() / "ctranslate2" / f"{source.name}-float32"
    if not (target / "model.bin").is_file():
        TransformersConverter(str(source)).convert(str(target), quantization="float32", force=True)
    generator = ctranslate2.Generator(
        str(target), device="cpu", compute_type="float32", intra_threads=torch.get_num_threads()
    )
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in prompts]
    generator.generate_batch(tokens[:2], max_length=2, include_prompt_in_result=False)  # warm-up
    speeds = {}
    for batch_size in batch_sizes:
        timing, results = measure(
            lambda batch_size=batch_size: generator.generate_batch(
                tokens,
                max_batch_size=batch_size,
                min_length=new,
                max_length=new,
                include_prompt_in_result=False,
                sampling_topk=1,
            )
        )
        elapsed = timing.median
        produced = sum(len(r.sequences_ids[0]) for r in results)
        assert produced == new * len(prompts), produced
        speeds[batch_size] = produced / elapsed
        print(
            f"(p) CTranslate2 {ctranslate2.__version__} float32, batch size {batch_size:3d}: "
            f"{speeds[batch_size]:7.1f} tokens/s ({len(prompts)} prompts x {new} tokens, "
            f"{elapsed:.1f} s)"
        )
    return speeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=32, help="prompts for (b) (default 32)")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens per answer")
    parser.add_argument("--batch-sizes", default="16,32", help="batch sizes for (b)")
    parser.add_argument("--single", type=int, default=4, help="prompts timed for (a) (default 4)")
    parser.add_argument("--no-peer", action="store_true", help="skip CTranslate2 even if installed")
    add_json_flag(parser, "generation")
    args = parser.parse_args(argv)
    record = Record("generation", argv)

    import torch

    from aries.backends import Sampling
    from aries.backends.hf import HFBackend
    from aries.method.sources import load_prompts

    backend = HFBackend(args.model, batch_size=max(int(b) for b in args.batch_sizes.split(",")))
    model, tokenizer = backend.model, backend.tokenizer
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"model: {args.model}, {parameters / 1e6:.1f} M parameters, "
        f"attention {model.config._attn_implementation}, dtype {model.dtype}, {model.device}"
    )

    # No early stop anywhere: an EOS id outside the vocabulary is never generated.
    never = [model.config.vocab_size + 7]
    backend.stop_ids = never
    conversations = [
        [{"role": "user", "content": record["prompt"]}]
        for record in load_prompts({"name": "mt-bench", "size": args.prompts})
    ]
    new = args.new_tokens

    # (a) one prompt at a time, plain generate with transformers' own attention
    backend_attention = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    encoded = [backend._encode(c) for c in conversations[: args.single]]
    model.generate(torch.tensor([encoded[0][:8]]), max_new_tokens=2, do_sample=False)  # warm-up

    def one_at_a_time() -> int:
        tokens = 0
        for ids in encoded:
            with torch.inference_mode():
                output = model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=new,
                    do_sample=False,
                    eos_token_id=never,
                    pad_token_id=tokenizer.pad_token_id,
                )
            tokens += output.shape[1] - len(ids)
        return tokens

    cpu = time.process_time()
    timing, tokens = measure(one_at_a_time)
    single = tokens / timing.median
    single_cpu = tokens / (time.process_time() - cpu)
    assert tokens == new * len(encoded), tokens
    print(
        f"(a) one at a time, plain generate (sdpa): {single:7.1f} tokens/s "
        f"({len(encoded)} prompts x {new} tokens; {single_cpu:.1f} tokens per CPU-second)"
    )

    model.set_attn_implementation(backend_attention)

    # (b) the hf backend, batched
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    backend.generate(conversations[:2], Sampling(max_new_tokens=2))  # warm-up
    batched = {}
    for batch_size in batch_sizes:
        backend.batch_size = batch_size
        cpu = time.process_time()
        timing, results = measure(
            lambda: backend.generate(conversations, Sampling(max_new_tokens=new))
        )
        elapsed, cpu = timing.median, time.process_time() - cpu
        produced = sum(r.completion_tokens for r in results)
        assert produced == new * len(conversations), produced
        batched[batch_size] = produced / elapsed
        print(
            f"(b) hf backend, batch size {batch_size:3d}:  {batched[batch_size]:7.1f} tokens/s "
            f"({len(conversations)} prompts x {new} tokens, {elapsed:.1f} s; "
            f"{produced / cpu:.1f} tokens per CPU-second)"
        )

    # Prefill's share of (b): the most that reusing prompt caches (across refinement rounds, the
    # question prefix) could save; N samples of one prompt already share one prefill.
    backend.batch_size = max(batched, key=batched.get)
    prefill = measure(lambda: backend.generate(conversations, Sampling(max_new_tokens=1)))[0].median
    whole = new * len(conversations) / batched[backend.batch_size]
    print(
        f"    prefill of the {len(conversations)} prompts (1 new token each, batch "
        f"{backend.batch_size}): {prefill:.1f} s = {100 * prefill / whole:.0f} % of (b)'s time"
    )

    # (p) CTranslate2, float32, the same prompts and batch sizes
    peer = {}
    if not args.no_peer:
        peer = ctranslate2_speeds(
            args.model, tokenizer, [backend._encode(c) for c in conversations], new, batch_sizes
        )

    # (c) the compute bound
    flops = matmul_flops()
    bound = flops / (2 * parameters)
    print(
        f"(c) compute bound: {flops / 1e9:.1f} GFLOP/s fp32 matmul / (2 x {parameters / 1e6:.1f} M)"
        f" = {bound:7.1f} tokens/s"
    )

    best_size = max(batched, key=batched.get)
    best = batched[best_size]
    ratio = best / single
    print(
        f"(b)/(a) = {ratio:.1f} x at batch size {best_size} (target >= 8: "
        f"{'met' if ratio >= 8 else 'missed'}); (b) reaches {100 * best / bound:.0f} % of (c)"
    )
    if peer:
        peer_size = max(peer, key=peer.get)
        versus = best / peer[peer_size]
        print(
            f"(b)/(p) = {versus:.2f} x (hf at batch {best_size} vs CTranslate2 float32 at batch "
            f"{peer_size}; target >= 1.0: {'met' if versus >= 1.0 else 'missed'})"
        )
    results = {
        "prompts": len(conversations),
        "new_tokens": new,
        "single_tok_s": round(single, 1),
        "batched_tok_s": {str(b): round(rate, 1) for b, rate in batched.items()},
        "batched_over_single": round(ratio, 2),
        "prefill_s": round(prefill, 1),
        "prefill_share_pct": round(100 * prefill / whole),
        "bound_tok_s": round(bound),
        "batched_share_of_bound_pct": round(100 * best / bound),
    }
    if peer:
        results.update(
            peer=f"CTranslate2 {ctranslate2_version()} float32",
            peer_tok_s={str(b): round(rate, 1) for b, rate in peer.items()},
            batched_over_peer=round(versus, 2),
        )
    record.write(results, args.json)
    return 0


def ctranslate2_version() -> str:
    import ctranslate2

    return ctranslate2.__version__


if __name__ == "__main__":
    sys.exit(main())
