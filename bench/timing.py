"""What every bench script shares: timing, the machine, the command, and one JSON record.

`measure` runs warm-up calls, then times repeats (median, min, max seconds). `Record` prints the
command that reproduces a bench and the machine it runs on (CPUs, torch and its threads, load
average at the start), and `Record.write` adds the load average at the end and writes the
figures to `results/bench/<bench>.json` (`--json` elsewhere), from which
`scripts/readme_tables.py` renders the speed table of docs/results.md: no figure is copied by hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench"


@dataclass
class Timing:
    """Wall seconds of each timed repeat."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self) -> dict[str, float | int]:
        return {
            "median_s": round(self.median, 3),
            "min_s": round(min(self.seconds), 3),
            "max_s": round(max(self.seconds), 3),
            "repeats": len(self.seconds),
        }


def measure(function: Callable[[], Any], *, repeat: int = 1, warmup: int = 0) -> tuple[Timing, Any]:
    """Time `repeat` calls of `function` after `warmup` untimed ones; returns the timing and the
    last call's result (for the checks a bench makes on what it timed)."""
    for _ in range(warmup):
        function()
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds), result


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict[str, Any]:
    """The CPU count and kind, Python, and torch's version and threads when it is installed."""
    facts: dict[str, Any] = {"cpus": os.cpu_count(), "cpu": platform.processor() or None}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        facts["cpu"] = names[0].split(":", 1)[1].strip() if names else facts["cpu"]
    facts["python"] = platform.python_version()
    try:
        import torch

        facts.update(torch=torch.__version__, threads=torch.get_num_threads())
    except ImportError:
        pass
    return facts


def add_json_flag(parser: argparse.ArgumentParser, bench: str) -> None:
    """`--json PATH`: where the record goes (default results/bench/<bench>.json)."""
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / f"{bench}.json",
        help=f"where to write the figures (default results/bench/{bench}.json, which the "
        "speed table of docs/results.md is rendered from)",
    )


class Record:
    """One bench run: prints its command and machine at the start, writes its figures at the
    end."""

    def __init__(self, bench: str, argv: list[str] | None = None):
        args = sys.argv[1:] if argv is None else argv
        self.bench = bench
        self.data: dict[str, Any] = {
            "bench": bench,
            "command": "python " + shlex.join([f"bench/{bench}.py", *args]),
            "date": datetime.date.today().isoformat(),
            "source": "measured",
            "machine": machine(),
            "load_average": {"start": load_average()},
        }
        facts, load = self.data["machine"], self.data["load_average"]["start"]
        print(f"command: {self.data['command']}")
        print(
            f"machine: {facts['cpus']} CPUs ({facts['cpu']}), torch {facts.get('torch', '-')}, "
            f"{facts.get('threads', '-')} threads, load average {load}"
        )

    def write(self, results: dict[str, Any], path: Path, note: str | None = None) -> Path:
        """Add the load average at the end and write the record atomically."""
        from aries.core.jsonl import atomic_write_json

        self.data["load_average"]["end"] = load_average()
        self.data["results"] = results
        if note:
            self.data["note"] = note
        atomic_write_json(path, self.data)
        print(f"load average at the end: {self.data['load_average']['end']}; written: {path}")
        return path
