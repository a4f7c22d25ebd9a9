"""Managed vLLM server start-up vs adapter swap: what one server per LoRA run saves.

A full-weight policy restarts its servers every iteration; a LoRA policy keeps them
(aries.backends.lora.LoraServers) and loads each iteration's adapter under a new name, unloading
the previous one. This measures both on the embedded model: seconds from launch until the
server answers (plain, and with --enable-lora), and seconds per swap (the stacked adapter
written, loaded, the old one unloaded), then a greedy request on the new adapter, twice (the
first also pays for whatever vLLM loads on first use).
Needs vLLM (.venv-vllm on a CPU); run it alone on the machine:

    VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 PYTHONPATH=. .venv-vllm/bin/python \\
        bench/lora_swap.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from aries.backends.lora import LoraServers
from aries.backends.servers import ManagedServer
from aries.core.models import embedded_model_path
from aries.core.testing import save_lora_iteration

SERVE = (
    "{python} -m vllm.entrypoints.openai.api_server --model {model} --port {port} --host {host} "
    "--dtype float32 --max-model-len 1024 --enforce-eager"
)


def ask(servers: LoraServers, name: str) -> None:
    body = {
        "model": name,
        "messages": [{"role": "user", "content": "What is 2 + 3?"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    url = f"{servers.servers[0].base_url}/chat/completions"
    httpx.post(url, json=body, timeout=600).raise_for_status()


def summary(label: str, seconds: list[float]) -> str:
    runs = ", ".join(f"{s:.2f}" for s in seconds)
    return f"{label:<32} median {statistics.median(seconds):7.2f} s   ({runs})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="start-ups of each kind")
    parser.add_argument("--swaps", type=int, default=6, help="adapter swaps")
    args = parser.parse_args()
    base = embedded_model_path()
    folder = Path(tempfile.mkdtemp(prefix="aries-bench-lora-"))
    first = save_lora_iteration(base, folder / "iter_0", seed=1)
    policies = [first, save_lora_iteration(first, folder / "iter_1", seed=2)]

    plain = []
    for _ in range(args.repeats):
        server = ManagedServer(str(base), command_template=SERVE)
        start = time.perf_counter()
        server.start()
        plain.append(time.perf_counter() - start)
        server.stop()
    with_lora, swaps, requests, again = [], [], [], []
    for repeat in range(args.repeats):
        servers = LoraServers(SERVE, rank=16)
        try:
            start = time.perf_counter()
            servers.serve(str(base))
            with_lora.append(time.perf_counter() - start)
            for i in range(args.swaps if repeat == 0 else 0):
                start = time.perf_counter()
                name = servers.serve(str(policies[i % 2]))
                swaps.append(time.perf_counter() - start)
                for times in (requests, again):  # the second: the adapter is warm
                    start = time.perf_counter()
                    ask(servers, name)
                    times.append(time.perf_counter() - start)
        finally:
            servers.close()
    print(f"vLLM managed server on {base.name} (fp32, eager), {time.strftime('%Y-%m-%d')}")
    print(summary("start-up, plain", plain))
    print(summary("start-up, --enable-lora", with_lora))
    print(summary("swap (load new, unload old)", swaps))
    print(summary("first request after a swap", requests))
    print(summary("the same request again", again))
    cache = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    python = os.path.relpath(sys.executable)
    env = f"VLLM_CPU_KVCACHE_SPACE={cache} " if cache else ""
    print(f"command: {env}HF_HUB_OFFLINE=1 PYTHONPATH=. " + shlex.join([python, *sys.argv]))


if __name__ == "__main__":
    main()
