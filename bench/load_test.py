"""Load test for `aries serve`: requests/s and latency percentiles at several concurrency levels.

Loopback only. Without --url it starts `aries serve` over --model itself and stops it afterwards.
Each level sends the same fixed number of greedy chat requests (distinct prompts) from that many
client threads, after one warm-up request; the server merges concurrent requests into batches,
which is what the higher levels measure.

    python bench/load_test.py --model embedded --requests 24 --max-tokens 16
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

import httpx
from timing import Record, add_json_flag, measure

from aries.backends.servers import ManagedServer
from aries.serving.serve import is_loopback


def tiny_model() -> str:
    """A 2-layer, 64-wide random Llama with the embedded tokenizer (the shape of the tests' tiny
    model), saved once under $ARIES_CACHE: it measures the server's own overhead, not the model's.
    """
    from aries.core.models import cache_dir, embedded_model_path
    from aries.core.testing import save_tiny_llama

    folder = cache_dir() / "tiny-llama"
    if not (folder / "config.json").is_file():
        save_tiny_llama(folder, embedded_model_path())
    return str(folder)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run_level(url: str, model: str, concurrency: int, args: argparse.Namespace) -> dict:
    """Send args.requests requests from `concurrency` threads; return throughput and latencies."""
    latencies: list[float] = []
    tokens: list[int] = []
    counter = iter(range(args.requests))
    lock = threading.Lock()
    client = httpx.Client(timeout=600.0)

    def worker() -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            body = {
                "model": model,
                "messages": [{"role": "user", "content": f"What is {index} + {index + 7}?"}],
                "max_tokens": args.max_tokens,
                "temperature": 0,
                "refine_rounds": args.refine_rounds,
            }
            start = time.perf_counter()
            response = client.post(f"{url}/chat/completions", json=body)
            response.raise_for_status()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                tokens.append(response.json()["usage"]["completion_tokens"])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]

    def send_all() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    wall = measure(send_all)[0].median
    client.close()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "req_s": len(latencies) / wall,
        "tok_s": sum(tokens) / wall,
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99),
        "mean_tokens": statistics.mean(tokens),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running aries serve (loopback only)")
    parser.add_argument(
        "--model",
        default="embedded",
        help="model to serve without --url; 'tiny' = a tiny random model (server overhead)",
    )
    parser.add_argument("--requests", type=int, default=24, help="requests per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--refine-rounds", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of the server started here (OMP_NUM_THREADS); on a machine shared "
        "with other busy processes, 1 avoids threads waiting on each other",
    )
    add_json_flag(parser, "load_test")
    args = parser.parse_args(argv)
    record = Record("load_test", argv)

    # `timeout`/kill sends SIGTERM: exit through `finally` so the server we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = None
    if args.url:
        if not is_loopback(urlparse(args.url).hostname or ""):
            parser.error("--url must point at this machine (127.0.0.1, ::1 or localhost)")
        url = args.url.rstrip("/")
    else:
        command = "{python} -m aries.cli serve --model {model} --port {port} --log-level warning"
        if args.threads:
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        model = tiny_model() if args.model == "tiny" else args.model
        server = ManagedServer(model, command_template=command, startup_timeout=300).start()
        url = server.base_url
    try:
        model = httpx.get(f"{url}/models").json()["data"][0]["id"]
        run_level(url, model, 1, argparse.Namespace(**{**vars(args), "requests": 1}))  # warm-up
        print(
            f"server {url} model {model}: {args.requests} requests per level, "
            f"max_tokens {args.max_tokens}, refine_rounds {args.refine_rounds}, greedy; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other processes "
            "share the machine)"
        )
        print(
            f"{'conc':>4} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p90 s':>7} {'p99 s':>7} tokens"
        )
        levels = []
        for concurrency in args.concurrency:
            r = run_level(url, model, concurrency, args)
            levels.append({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})
            print(
                f"{r['concurrency']:>4} {r['req_s']:>7.2f} {r['tok_s']:>7.1f} {r['p50']:>7.2f} "
                f"{r['p90']:>7.2f} {r['p99']:>7.2f} {r['mean_tokens']:>6.1f}  "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        if server:
            server.stop()
    record.write(
        {"requests": args.requests, "max_tokens": args.max_tokens, "levels": levels}, args.json
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
