"""The steps of bench/gpu_smoke.sh, one per subcommand, each printing one `tokens/s` line.

    python bench/gpu_smoke.py prepare             # dev machine: model shape + tokenizer to carry
    python bench/gpu_smoke.py generate [--cpu] [--decode dynamic,static]
                                                  # hf backend, bf16 on the GPU, per decode path
    python bench/gpu_smoke.py dpo [--cpu] [--lora] # one TRL DPO step on both-view pairs, bf16

The model is `--model` (default: the embedded model if it is available here, else the carried
shape in runs/gpu_smoke/shape: SmolLM2-135M's config and tokenizer with random weights, which
times the same architecture). `--cpu` is the dry mode: tiny settings, fp32, no GPU needed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SHAPE = Path("runs/gpu_smoke/shape")


def model_folder(requested: str | None) -> Path:
    """A local model folder: the one asked for, the embedded model, else the carried shape with
    random weights (written next to it once)."""
    if requested:
        return Path(requested)
    from aries import AriesError
    from aries.core.models import resolve_model

    try:
        return Path(resolve_model("embedded"))
    except AriesError:
        pass
    random_weights = SHAPE.parent / "random"
    if not (random_weights / "config.json").is_file():
        if not (SHAPE / "config.json").is_file():
            sys.exit(
                f"no model: pass --model DIR, or run `python bench/gpu_smoke.py prepare` on a "
                f"machine with the embedded model and carry {SHAPE}"
            )
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SHAPE))
        model.save_pretrained(random_weights, safe_serialization=True)
        AutoTokenizer.from_pretrained(SHAPE).save_pretrained(random_weights)
    return random_weights


def prepare(_args) -> None:
    """Write the embedded model's config, generation config and tokenizer (no weights, ~4 MB)."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from aries.core.models import resolve_model

    source = resolve_model("embedded")
    AutoConfig.from_pretrained(source).save_pretrained(SHAPE)
    GenerationConfig.from_pretrained(source).save_pretrained(SHAPE)
    AutoTokenizer.from_pretrained(source).save_pretrained(SHAPE)
    print(f"wrote {SHAPE}: carry it (run tool: carry=['{SHAPE}'])")


def generate(args) -> None:
    """Generation tokens/s of each decode path in `--decode`, on the same prompts; with two
    paths, how far their greedy outputs agree (`decode_agreement`)."""
    import torch

    from aries.backends.base import Sampling
    from aries.backends.hf import HFBackend
    from aries.method.sources import load_prompts

    prompts, new, batch = (8, 16, 4) if args.cpu else (256, 256, 64)
    conversations = [
        [{"role": "user", "content": record["prompt"]}]
        for record in load_prompts({"name": "mt-bench", "size": prompts})
    ]
    texts, logits = {}, {}
    for decode in args.decode.split(","):
        backend = HFBackend(
            str(model_folder(args.model)),
            batch_size=batch,
            device="cpu" if args.cpu else "cuda",
            dtype="float32" if args.cpu else "bfloat16",
            decode=decode,
        )
        backend.stop_ids = [backend.model.config.vocab_size + 7]  # never stops: exact counts
        # warm-up at the timed call's length: the static path captures its graph for it here
        backend.generate(conversations[:2], Sampling(max_new_tokens=new))
        synchronize = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
        synchronize()
        start = time.perf_counter()
        results = backend.generate(conversations, Sampling(max_new_tokens=new))
        synchronize()
        elapsed = time.perf_counter() - start
        tokens = sum(r.completion_tokens for r in results)
        assert tokens == new * len(conversations), tokens
        texts[decode] = [r.text for r in results]
        logits[decode] = first_decode_logits(backend, conversations[:batch])
        print(
            f"generate: hf backend, decode {decode}, {backend.model.dtype} on "
            f"{backend.model.device}, batch {batch}: {tokens / elapsed:.0f} tokens/s "
            f"({len(conversations)} MT-Bench prompts x {new} tokens, {elapsed:.1f} s)"
        )
        tokenizer = backend.tokenizer
        backend.close()
    if len(texts) == 2:
        print(f"generate: decode paths agree: {decode_agreement(texts, logits, tokenizer)}")


def first_decode_logits(backend, conversations: list) -> torch.Tensor:
    """The logits of the first decode step (after each row's first greedy token) on the
    backend's own decode path, rows in prompt order: the first step the two paths compute
    differently (their prefill is the same code). At most `batch_size` distinct prompts."""
    import torch

    from aries.backends.base import Sampling
    from aries.backends.hf_pool import RowPool
    from aries.backends.hf_static import StaticRowPool

    encoded = [backend._encode(conversation) for conversation in conversations]
    pool_class = StaticRowPool if backend.decode == "static" else RowPool
    pool = pool_class(backend, encoded, [0] * len(encoded), Sampling(max_new_tokens=2))
    with torch.inference_mode():
        pool._admit(backend.batch_size)
        pool._step()
    return pool.logits[torch.tensor(pool.rows).argsort()].float().cpu()


def decode_agreement(texts: dict[str, list[str]], logits: dict, tokenizer) -> str:
    """What can hold between two decode paths: exact equality only where one argmax flip
    cannot happen (fp32, a trained model); elsewhere the mean share of each completion's tokens
    before the first difference, and the largest first-decode-step logit difference, which
    is what a broken path would show (differences of order one, not of the dtype's rounding)."""
    first, second = texts.values()
    same = sum(a == b for a, b in zip(first, second, strict=True))
    shares = []
    for a, b in zip(first, second, strict=True):
        ids_a, ids_b = (tokenizer.encode(t, add_special_tokens=False) for t in (a, b))
        prefix = next(
            (i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b))
        )
        shares.append(prefix / max(len(ids_a), len(ids_b), 1))
    one, two = logits.values()
    difference = (one - two).abs().max().item()
    return (
        f"{same} of {len(first)} greedy outputs equal, mean agreeing prefix "
        f"{100 * sum(shares) / len(shares):.0f} %; first decode step max |logit diff| "
        f"{difference:.2g} (logits up to {one.abs().max().item():.3g})"
    )


def both_view_pairs(tokenizer, count: int):
    """`count` arithmetic pairs (one direct, one refine per selection) as a datasets.Dataset,
    and their training tokens (prompt + chosen and prompt + rejected, as TRL feeds them)."""
    import datasets

    sys.path.insert(0, str(Path(__file__).parent))
    from train_dpo import arithmetic_selections

    from aries.core.views import DEFAULT_REFINE_INSTRUCTION
    from aries.method.pairs import build_pairs

    examples = build_pairs(
        arithmetic_selections(count // 2), instruction=DEFAULT_REFINE_INSTRUCTION
    )
    dataset = datasets.Dataset.from_list(examples).select_columns(["prompt", "chosen", "rejected"])
    assert len(dataset) == count, len(dataset)
    tokens = sum(
        len(tokenizer.apply_chat_template(row["prompt"] + row[key], return_dict=False))
        for row in dataset
        for key in ("chosen", "rejected")
    )
    return dataset, tokens


def dpo_step(model, ref_model, tokenizer, *, batch: int, lora: bool, cpu: bool) -> dict:
    """Time the second of two TRL DPO steps (the first warms up) on `batch` both-view pairs:
    tokens/s, seconds, the first loss, and the trainer's accelerate state."""
    import datasets
    import torch
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    dataset, tokens = both_view_pairs(tokenizer, batch)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DPOTrainer(
            model=model,
            ref_model=None if lora else ref_model,
            args=DPOConfig(
                output_dir=tmp,
                per_device_train_batch_size=batch,
                max_steps=2,  # the first step includes warm-up; the second is timed
                learning_rate=1e-6,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                bf16=not cpu,
                use_cpu=cpu,
            ),
            train_dataset=datasets.concatenate_datasets([dataset, dataset]),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        times = []

        class Timer(TrainerCallback):
            def on_step_begin(self, *_, **__):
                times.append(time.perf_counter())

            def on_step_end(self, *_, **__):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times[-1] = time.perf_counter() - times[-1]

        trainer.add_callback(Timer())
        trainer.train()
    loss = next(e["loss"] for e in trainer.state.log_history if "loss" in e)
    return {
        "tokens": tokens,
        "seconds": times[-1],
        "tokens_per_s": tokens / times[-1],
        "loss": loss,
        "state": trainer.accelerator.state,
    }


def dpo(args) -> None:
    """One TRL DPO step (optionally LoRA through PEFT) on both-view pairs; tokens/s of the step."""
    from aries.core.models import load_causal_lm, load_tokenizer

    batch = 2 if args.cpu else 16
    folder = str(model_folder(args.model))
    dtype = "float32" if args.cpu else "bfloat16"
    result = dpo_step(
        load_causal_lm(folder, dtype=dtype),
        None if args.lora else load_causal_lm(folder, dtype=dtype),
        load_tokenizer(folder),
        batch=batch,
        lora=args.lora,
        cpu=args.cpu,
    )
    state = result["state"]
    kind = ("LoRA " if args.lora else "") + "DPO step"
    print(
        f"{args.label or args.step}: TRL {kind} on both views, {dtype}, "
        f"{state.distributed_type.value}, {state.num_processes} process(es): "
        f"{result['tokens_per_s']:.0f} tokens/s ({batch} pairs, {result['tokens']} tokens, "
        f"{result['seconds']:.2f} s; first loss {result['loss']:.4f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["prepare", "generate", "dpo"])
    parser.add_argument("--cpu", action="store_true", help="dry mode: tiny settings, fp32, CPU")
    parser.add_argument("--lora", action="store_true", help="dpo: train a LoRA adapter (PEFT)")
    parser.add_argument("--model", default=None, help="a local model folder")
    parser.add_argument("--label", default=None, help="name printed before the figure")
    parser.add_argument(
        "--decode", default="dynamic", help="generate: hf decode paths, comma-separated"
    )
    args = parser.parse_args(argv)
    {"prepare": prepare, "generate": generate, "dpo": dpo}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
