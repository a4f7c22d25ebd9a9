"""Render the speed table of docs/results.md from the bench records in results/bench/*.json.

Every bench script writes its figures there (`bench/timing.py`); this script turns them into the
table between the `<!-- bench-table -->` markers of docs/results.md, so no figure is copied by
hand (a test checks the page is what this renders). Standard library only.

    python scripts/readme_tables.py            # rewrite the table in docs/results.md
    python scripts/readme_tables.py --check    # exit 1 if docs/results.md's table is not current
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aries.core.jsonl import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "results" / "bench"
PAGE = ROOT / "docs" / "results.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def rate(value: float) -> str:
    """A rate as the bench recorded it (to 0.1), without trailing zeros."""
    return f"{round(value, 1):g}"


def met(ok: bool) -> str:
    return "met" if ok else "missed"


def joined(values: dict[str, float] | list[float], unit: str) -> str:
    items = values.values() if isinstance(values, dict) else values
    return " / ".join(rate(v) for v in items) + f" {unit}"


def generation(r: dict[str, Any]) -> tuple[str, str, str]:
    peer = f", (p) {r['peer']} when installed" if "peer" in r else ""
    what = (
        "generation: (a) one prompt at a time with `model.generate`, (b) the `hf` backend, "
        f"{r['prompts']} mixed MT-Bench prompts × {r['new_tokens']} tokens{peer}, "
        "(c) compute bound"
    )
    sizes = " / ".join(r["batched_tok_s"])
    parts = [
        f"(a) {rate(r['single_tok_s'])} tok/s",
        f"(b) {joined(r['batched_tok_s'], 'tok/s')} at batch {sizes}: "
        f"**{r['batched_over_single']:.1f} × (a)**",
        f"prefill {r['prefill_s']} s = {r['prefill_share_pct']} % of (b)",
    ]
    target = f"(b) ≥ 8 × (a): {met(r['batched_over_single'] >= 8)}"
    if "peer" in r:
        parts.append(
            f"(p) {joined(r['peer_tok_s'], 'tok/s')}: **(b)/(p) = {r['batched_over_peer']:.2f} ×**"
        )
        target += f"; ≥ 1.0 × (p): {met(r['batched_over_peer'] >= 1.0)}"
    share = r["batched_share_of_bound_pct"]
    parts.append(f"(c) {rate(r['bound_tok_s'])} tok/s, (b) is {share} % of it")
    return what, "; ".join(parts), target


def train_dpo(r: dict[str, Any]) -> tuple[str, str, str]:
    what = (
        "preference training: the aries train stage (prefix-shared pairs, "
        "`train.prefix_sharing`, arXiv 2410.20305) vs TRL `DPOTrainer` defaults, "
        f"{r['examples']} both-view pairs ({r['tokens']:,} tokens), batch {r['batch_size']}, "
        f"one epoch, same first-step loss ({r['first_loss']:.4f})"
    )
    trainers = [
        f"{name.split(' ', 2)[1]} {rate(t['tok_s'])} tok/s, {t['s_per_step']} s/step, "
        f"{t['peak_rss_gib']:.2f} GiB peak RSS"
        for name, t in r["trainers"].items()
    ]
    result = "; ".join(trainers)
    if "speedup" in r:
        result += f": **(b)/(a) = {r['speedup']:.2f} ×**"
        return what, result, f"≥ 1.5 ×: {met(r['speedup'] >= 1.5)}"
    return what, result, "—"


def scoring(r: dict[str, Any]) -> tuple[str, str, str]:
    (one, single), (size, batched) = r["responses_per_s"].items()
    what = f"reward-model scoring, MiniLM encoder + head, {r['responses']} responses"
    result = (
        f"batch {one}: {rate(single)} responses/s; length-sorted batch {size}: "
        f"{rate(batched)} responses/s ({r['speedup']} ×; same scores to "
        f"{r['max_score_difference']:.0e}".replace("e-0", "e-")
        + ")"
    )
    return what, result, "—"


def load_test(r: dict[str, Any]) -> tuple[str, str, str]:
    levels = r["levels"]
    concurrency = " / ".join(str(level["concurrency"]) for level in levels)
    throughput = " / ".join(f"{level['req_s']:.2f}" for level in levels)
    latency = " / ".join(f"{level['p50']:.1f}" for level in levels)
    result = f"concurrency {concurrency}: {throughput} requests/s, p50 {latency} s"
    return f"`aries serve` load test (loopback), {r['requests']} requests a level", result, "—"


def cpu_engines(r: dict[str, Any]) -> tuple[str, str, str]:
    what = (
        "the CPU engines: the `hf` backend vs vLLM's CPU engine in-process, "
        f"{r['rows'][0]['prompts']} easy-arithmetic prompts × at most {r['new_tokens']} tokens, "
        "greedy, embedded model"
    )
    ratios = [row["hf"]["tok_s"] / row["vllm"]["tok_s"] for row in r["rows"]]
    parts = [
        f"{row['dtype']} batch {row['batch_size']}: hf {rate(row['hf']['tok_s'])} / vLLM "
        f"{rate(row['vllm']['tok_s'])} tok/s = **{ratio:.2f} ×** ({row['equal']} / "
        f"{row['prompts']} equal outputs)"
        for row, ratio in zip(r["rows"], ratios, strict=True)
    ]
    worst = min(ratios)
    return what, "; ".join(parts), f"hf ≥ 1.0 × vLLM at every shape: {met(worst >= 1.0)}"


ROWS: dict[str, Callable[[dict[str, Any]], tuple[str, str, str]]] = {
    "generation": generation,
    "cpu_engines": cpu_engines,
    "train_dpo": train_dpo,
    "scoring": scoring,
    "load_test": load_test,
}
"""The table's rows, in order: a bench's record name and how its figures read."""


def when(record: dict[str, Any]) -> str:
    """Date, provenance, machine and load average of a record."""
    load = record["load_average"]
    if isinstance(load, dict):
        load = f"{load['start'][0]}–{load['end'][0]}"
    return (
        f"{record['date']}, {record['source']}; {record['machine']['cpus']} CPUs, "
        f"load average {load}"
    )


def render(records: Path = RECORDS) -> str:
    lines = [
        START,
        "| benchmark | command | result | target | measured |",
        "|---|---|---|---|---|",
    ]
    for bench, row in ROWS.items():
        path = records / f"{bench}.json"
        record = json.loads(path.read_text())
        what, result, target = row(record["results"])
        command = f"`{record['command']}`"
        if "prepare" in record:
            command += f" (inputs from `{record['prepare']}`)"
        if "note" in record:
            result += f" ({record['note']})"
        lines.append(f"| {what} | {command} | {result} | {target} | {when(record)} |")
    return "\n".join([*lines, END])


def replaced(page: str, table: str) -> str:
    if page.count(START) != 1 or page.count(END) != 1:
        raise SystemExit(f"{PAGE}: needs one {START} and one {END} line")
    before, rest = page.split(START)
    return before + table + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)
    page = PAGE.read_text()
    current = replaced(page, render())
    if args.check:
        if current != page:
            print("docs/results.md's speed table is stale: run python scripts/readme_tables.py")
            return 1
        return 0
    atomic_write_text(PAGE, current, "the docs page")  # a kill leaves the old page
    return 0


if __name__ == "__main__":
    sys.exit(main())
