"""Score stage: every response of every chain gets a reward from one source.

All responses of all prompts go to the source in one call, so reward models and judges batch
across prompts (and a pairwise judge sees each prompt's responses together). Scores are aligned
with the chains record: chain rounds in order, then samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aries.core.jsonl import atomic_write_jsonl, read_jsonl
from aries.rewards import RewardSource, ScoreItem, is_missing


def response_items(record: dict[str, Any]) -> list[ScoreItem]:
    """The record's responses as score items: chain rounds, then samples."""
    responses = list(record["chain"]) + list(record.get("samples") or [])
    reference = record.get("answer")
    return [
        ScoreItem(
            record["prompt"], r["text"], None if reference is None else str(reference), record
        )
        for r in responses
    ]


def score_chains(chains: list[dict[str, Any]], source: RewardSource) -> list[dict[str, Any]]:
    """One scores record per chains record: `{"id", "source", "chain_scores", "sample_scores"}`.

    A response the source could not score is None (NaN is written as None too).
    """
    items_per_record = [response_items(record) for record in chains]
    flat = [item for items in items_per_record for item in items]
    scores = source.score(flat)
    if len(scores) != len(flat):
        raise RuntimeError(f"{source.name} returned {len(scores)} scores for {len(flat)} responses")
    records, start = [], 0
    for record, items in zip(chains, items_per_record):
        values = [None if is_missing(s) else float(s) for s in scores[start : start + len(items)]]
        start += len(items)
        rounds = len(record["chain"])
        records.append(
            {
                "id": record["id"],
                "source": source.name,
                "chain_scores": values[:rounds],
                "sample_scores": values[rounds:],
            }
        )
    return records


def score_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the manifest and the console: responses, unscored (None), mean score."""
    values = [v for r in records for v in r["chain_scores"] + r["sample_scores"]]
    scored = [v for v in values if v is not None]
    return {
        "source": records[0]["source"] if records else None,
        "prompts": len(records),
        "responses": len(values),
        "unscored": len(values) - len(scored),
        "mean": sum(scored) / len(scored) if scored else None,
    }


def score_file(chains_path: str | Path, source: RewardSource, out: str | Path) -> dict[str, Any]:
    """Score a chains.jsonl file into scores.jsonl (written atomically); returns the stats."""
    records = score_chains(read_jsonl(chains_path), source)
    atomic_write_jsonl(out, records)
    return score_stats(records)
