"""The CPU engines side by side: aries' `hf` backend against vLLM's CPU engine (in-process).

The same prompts (the demo's easy arithmetic, reasoning-gym basic_arithmetic, seed 1), greedy,
at most `--new-tokens` tokens each (an answer may stop early: both engines stop at the model's
EOS), on the embedded model, for each dtype (bfloat16 only where the CPU computes it: AVX512-BF16
or AMX) and batch size: tokens/s of each engine, and how many greedy outputs agree, so a speed-up
that changes outputs shows. vLLM's batch size is its `max_num_seqs`.

Each engine runs in its own subprocess, one after the other (never both at once): `hf` in this
Python (.venv), vLLM in `--vllm-python` (.venv-vllm, vLLM's x86 CPU build; its KV cache is sized
by VLLM_CPU_KVCACHE_SPACE, 1 GiB unless set). A worker loads its engine, warms it up on two
prompts, then times one `generate` of all prompts; engine start-up is reported, not timed in.

    python bench/cpu_engines.py [--prompts 64] [--new-tokens 128] [--batch-sizes 16,64]
        [--dtypes float32,bfloat16] [--engines hf,vllm] [--vllm-python .venv-vllm/bin/python]
        [--hf-option decode=static] [--hf-option packed_float32=true]

Writes results/bench/cpu_engines.json and results/bench/cpu_engines.md (`--json` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import Record, add_json_flag

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = {
    "name": "reasoning-gym:basic_arithmetic",
    "seed": 1,
    "min_terms": 2,
    "max_terms": 2,
    "min_digits": 1,
    "max_digits": 2,
    "operators": ["+", "-", "*"],
    "allow_parentheses": False,
    "allow_negation": False,
    "suffix": "\nExplain each step, then end with 'Answer: <answer>'.",
}
"""configs/demo.yaml's prompt source, asking for the working too: answers of tens of tokens, so
decoding, not prefill, takes most of the time."""


def cpu_flags() -> dict[str, bool]:
    """The CPU features the engines' bf16 and fp32 kernels use."""
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")
    return {flag: flag in flags for flag in wanted}


def worker(args: argparse.Namespace) -> int:
    """One engine, one dtype, one batch size: load, warm up, time one generate; write JSON."""
    import torch

    from aries.backends import Sampling, make_backend
    from aries.core.models import resolve_model

    conversations = json.loads(Path(args.input).read_text())
    start = time.perf_counter()
    if args.worker == "hf":
        import yaml

        options = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.hf_option)}
        backend = make_backend(
            "hf", "embedded", dtype=args.dtype, batch_size=args.batch_size, **options
        )
    else:
        engine = {"max_num_seqs": args.batch_size}
        if args.vllm_eager:
            engine["enforce_eager"] = True
        backend = make_backend(
            "vllm",
            resolve_model("embedded"),
            dtype=args.dtype,
            max_model_len=1024,
            engine_options=engine,
        )
    loaded = time.perf_counter() - start
    greedy = Sampling(max_new_tokens=args.new_tokens, temperature=0.0)
    backend.generate(conversations[:2], Sampling(max_new_tokens=8, temperature=0.0))  # warm-up
    start = time.perf_counter()
    generations = backend.generate(conversations, greedy)
    seconds = time.perf_counter() - start
    backend.close()
    tokens = sum(g.completion_tokens for g in generations)
    Path(args.output).write_text(
        json.dumps(
            {
                "load_s": round(loaded, 1),
                "seconds": round(seconds, 2),
                "tokens": tokens,
                "tok_s": round(tokens / seconds, 1),
                "threads": torch.get_num_threads(),
                "texts": [g.text for g in generations],
            }
        )
    )
    return 0


def run_worker(python: str, engine: str, dtype: str, batch: int, paths, args) -> dict:
    """One worker subprocess (its stderr passes through; a failure stops the bench)."""
    inputs, output = paths
    command = [
        python,
        __file__,
        "--worker",
        engine,
        "--dtype",
        dtype,
        "--batch-size",
        str(batch),
        "--new-tokens",
        str(args.new_tokens),
        "--input",
        str(inputs),
        "--output",
        str(output),
        *[f"--hf-option={option}" for option in args.hf_option],
        *(["--vllm-eager"] if args.vllm_eager else []),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{engine} {dtype} batch {batch}: worker exited {done.returncode}")
    return json.loads(Path(output).read_text())


def table(rows: list[dict]) -> str:
    lines = [
        "| dtype | batch | aries `hf` tok/s | vLLM CPU tok/s | hf / vLLM | equal greedy outputs |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        hf, vllm = row.get("hf"), row.get("vllm")
        ratio = f"{hf['tok_s'] / vllm['tok_s']:.2f}" if hf and vllm else "—"
        equal = f"{row['equal']} / {row['prompts']}" if "equal" in row else "—"
        lines.append(
            f"| {row['dtype']} | {row['batch_size']} | {hf['tok_s'] if hf else '—'} | "
            f"{vllm['tok_s'] if vllm else '—'} | {ratio} | {equal} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128, help="most tokens per answer")
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="bfloat16 needs native bf16")
    parser.add_argument("--engines", default="hf,vllm")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--vllm-eager", action="store_true", help="vLLM without torch.compile")
    parser.add_argument(
        "--hf-option", action="append", default=[], help="KEY=VALUE for the hf backend"
    )
    parser.add_argument("--worker", choices=["hf", "vllm"], help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    add_json_flag(parser, "cpu_engines")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    record = Record("cpu_engines", argv)
    from aries.core.jsonl import atomic_write_text
    from aries.core.models import native_bf16
    from aries.method.sources import load_prompts

    flags = cpu_flags()
    print("CPU flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()))
    dtypes = [d for d in args.dtypes.split(",") if d != "bfloat16" or native_bf16("cpu")]
    if dtypes != args.dtypes.split(","):
        print("bfloat16 skipped: this CPU has neither AVX512-BF16 nor AMX")
    pythons = {"hf": sys.executable, "vllm": args.vllm_python}
    engines = args.engines.split(",")
    conversations = [
        [{"role": "user", "content": prompt["prompt"]}]
        for prompt in load_prompts({**PROMPTS, "size": args.prompts})
    ]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        inputs = Path(scratch) / "prompts.json"
        inputs.write_text(json.dumps(conversations))
        for dtype in dtypes:
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                row: dict = {"dtype": dtype, "batch_size": batch, "prompts": len(conversations)}
                for engine in engines:
                    output = Path(scratch) / f"{engine}.json"
                    result = run_worker(
                        pythons[engine], engine, dtype, batch, (inputs, output), args
                    )
                    row[engine] = result
                    print(
                        f"{engine:4s} {dtype:8s} batch {batch:3d}: {result['tok_s']:7.1f} tok/s "
                        f"({result['tokens']} tokens in {result['seconds']:.1f} s; start-up "
                        f"{result['load_s']:.0f} s; {result['threads']} threads)",
                        flush=True,
                    )
                if "hf" in row and "vllm" in row:
                    pairs = zip(row["hf"]["texts"], row["vllm"]["texts"], strict=True)
                    row["equal"] = sum(a == b for a, b in pairs)
                    print(
                        f"     hf / vLLM = {row['hf']['tok_s'] / row['vllm']['tok_s']:.2f}; "
                        f"equal greedy outputs {row['equal']} / {len(conversations)}"
                    )
                rows.append(row)
    markdown = table(rows)
    print(markdown)
    for row in rows:  # the texts were for the comparison; the record keeps the figures
        for engine in engines:
            row[engine].pop("texts", None)
    record.data["machine"]["cpu_flags"] = flags
    path = record.write(
        {"prompt_source": PROMPTS, "new_tokens": args.new_tokens, "rows": rows}, args.json
    )
    header = (
        f"# CPU engines: aries `hf` vs vLLM\n\n`{record.data['command']}`, {record.data['date']}, "
        f"{record.data['machine']['cpus']} CPUs ({record.data['machine']['cpu']}), load average "
        f"{record.data['load_average']['start']} → {record.data['load_average']['end']}\n\n"
    )
    atomic_write_text(path.with_suffix(".md"), header + markdown + "\n", "the bench table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
