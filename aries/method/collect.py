"""Stage 1, collect: answer, then refine K rounds (docs/specification.md), for many prompts at once.

    y^0 ~ π(. | x)                      direct view
    y^k ~ π(. | x, y^{k-1}, z)          refine view, k = 1..K

The same function serves `aries refine` (inference), the loop's collection stage and evaluation.
Prompts are processed in chunks; inside a chunk all prompts advance round by round, one batched
backend call per round. A chunk's records are appended to `chains.jsonl` only when all its rounds
are done, so a resumed run regenerates whole chunks and never mixes half-chains into the file.
A prompt record may carry `history`, earlier chat turns (MT-Bench's second turn follows its
first): both views then continue that conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aries.backends import Backend, Generation, Sampling
from aries.core.console import progress_bar
from aries.core.jsonl import JsonlAppender, read_jsonl
from aries.core.views import DEFAULT_REFINE_INSTRUCTION, direct_messages, refine_messages


@dataclass(frozen=True)
class Chains:
    """What one refinement chain is, passed whole wherever chains are made or sized: collection,
    evaluation, `aries refine`, `aries serve`, export."""

    rounds: int
    """Refinement rounds K after the answer."""
    sampling: Sampling
    instruction: str = DEFAULT_REFINE_INSTRUCTION
    """The refinement instruction z."""
    system_prompt: str | None = None
    """Opens every conversation (aries.core.views.with_system_prompt)."""
    samples: int = 0
    """Extra independent direct samples per prompt."""
    answer_temperature: float | None = None
    """The temperature of the first answer y^0 only (None: the sampling's)."""


def split_by_context(
    backend: Backend, prompts: list[dict[str, Any]], chains: Chains
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split prompts into those whose longest chain fits the model's context and those that don't.

    The longest prompt of a chain is the refine view: question, a previous answer of up to
    `max_new_tokens`, the instruction; plus room for the new answer. Prompts that cannot fit are
    skipped (and counted by the caller) rather than silently truncated.
    """
    limit = backend.context_length
    if limit is None:
        return prompts, []
    max_new_tokens, system_prompt = chains.sampling.max_new_tokens, chains.system_prompt
    kept, skipped = [], []
    for prompt in prompts:
        if chains.rounds > 0:
            longest = refine_messages(
                prompt["prompt"],
                "",
                chains.instruction,
                _history(prompt),
                system_prompt=system_prompt,
            )
            needed = backend.count_prompt_tokens(longest) + 2 * max_new_tokens
        else:
            direct = direct_messages(
                prompt["prompt"], _history(prompt), system_prompt=system_prompt
            )
            needed = backend.count_prompt_tokens(direct) + max_new_tokens
        (kept if needed <= limit else skipped).append(prompt)
    return kept, skipped


def run_chains(
    backend: Backend,
    prompts: list[dict[str, Any]],
    chains: Chains,
    *,
    out_path: str | Path | None = None,
    chunk_size: int = 64,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Generate a refinement chain (and `chains.samples` extra direct samples) for every prompt.

    With `out_path`, records already in the file are kept and only missing prompts are generated
    (resume); new records are appended chunk by chunk. Returns the records of `prompts`, in order.
    """
    done: dict[str, dict[str, Any]] = {}
    appender = None
    if out_path is not None:
        appender = JsonlAppender(out_path)
        done = {r["id"]: r for r in read_jsonl(out_path, allow_torn_tail=True)}
    pending = [p for p in prompts if p["id"] not in done]
    bar = progress_bar(
        len(pending) * (chains.rounds + 1 + chains.samples),
        desc="generating",
        unit="answer",
        enabled=progress,
    )
    try:
        for start in range(0, len(pending), chunk_size):
            chunk = pending[start : start + chunk_size]
            records = _chains_for_chunk(backend, chunk, chains, bar)
            done.update((r["id"], r) for r in records)
            if appender:
                appender.write(records)
    finally:
        bar.close()
        if appender:
            appender.close()
    return [done[p["id"]] for p in prompts]


def _chains_for_chunk(
    backend: Backend, chunk: list[dict[str, Any]], chains: Chains, bar
) -> list[dict[str, Any]]:
    rounds, sampling, instruction = chains.rounds, chains.sampling, chains.instruction
    system_prompt, n_samples = chains.system_prompt, chains.samples
    answer_temperature = chains.answer_temperature

    def direct(prompt: dict[str, Any]) -> list[dict[str, str]]:
        return direct_messages(prompt["prompt"], _history(prompt), system_prompt=system_prompt)

    def refine(record: dict[str, Any]) -> list[dict[str, str]]:
        previous = record["chain"][-1]["text"]
        history = _history(record)
        return refine_messages(
            record["prompt"], previous, instruction, history, system_prompt=system_prompt
        )

    records = [{**prompt, "chain": []} for prompt in chunk]
    conversations = [direct(p) for p in chunk]
    for round_index in range(rounds + 1):
        # Each round gets its own seed so a refinement is not a replay of the answer's randomness.
        round_sampling = replace(sampling, seed=sampling.seed + 1000 * round_index)
        if round_index == 0 and answer_temperature is not None:
            round_sampling = replace(round_sampling, temperature=answer_temperature)
        for record, generation in zip(records, backend.generate(conversations, round_sampling)):
            record["chain"].append({"round": round_index, **response_fields(generation)})
        bar.update(len(chunk))
        conversations = [refine(r) for r in records]
    if n_samples:
        sample_sampling = replace(sampling, seed=sampling.seed + 1_000_000)
        repeated = [direct(p) for p in chunk for _ in range(n_samples)]
        generations = backend.generate(repeated, sample_sampling)
        for index, record in enumerate(records):
            mine = generations[index * n_samples : (index + 1) * n_samples]
            record["samples"] = [{"sample": i, **response_fields(g)} for i, g in enumerate(mine)]
        bar.update(len(chunk) * n_samples)
    return records


def _history(prompt: dict[str, Any]) -> list[dict[str, str]]:
    """Earlier turns a prompt record may carry (`history`: chat messages), answered as context."""
    return prompt.get("history") or []


def response_fields(generation: Generation) -> dict[str, Any]:
    """What a chains record keeps of one generation (a chain round, a sample, a teacher's)."""
    return {
        "text": generation.text,
        "finish_reason": generation.finish_reason,
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
    }
