"""Benchmarks for `aries eval`: public formats (GSM8K, MATH) with their gold answers extracted,
reasoning-gym task names, and a fixed baseline's answers to compare against.

Everything else is a prompt source (aries.method.sources): a benchmark spec is a source spec
with a few
shorthands, so evaluation reads prompts exactly as training does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aries import AriesError
from aries.core.jsonl import read_jsonl
from aries.method.sources import PromptSource, load_prompts

GSM8K_SUFFIX = "\nEnd your response with 'Answer: <number>'."
MATH_SUFFIX = "\nPut your final answer within \\boxed{}."


def gsm8k_gold(solution: str) -> str:
    """GSM8K's gold answer is the number after `####` (thousands separators removed)."""
    if "####" not in solution:
        raise AriesError(f"GSM8K answer without '#### <number>': {solution[:80]!r}")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def last_boxed(solution: str) -> str:
    """The content of the last `\\boxed{...}` in a MATH solution (braces balanced)."""
    start = solution.rfind("\\boxed{")
    if start < 0:
        raise AriesError(f"MATH solution without \\boxed{{}}: {solution[:80]!r}")
    depth, begin = 0, start + len("\\boxed{")
    for position in range(begin - 1, len(solution)):
        depth += {"{": 1, "}": -1}.get(solution[position], 0)
        if depth == 0:
            return solution[begin:position]
    raise AriesError(f"MATH solution with an unbalanced \\boxed{{: {solution[:80]!r}")


def _public_format(kind: str, location: str, size: int | None) -> list[dict[str, Any]]:
    """GSM8K (`question`, `answer` '... #### 42') or MATH (`problem`, `solution` with \\boxed{})
    from a local file or a hub id (test split), with the gold answer extracted."""
    prompt_field, answer_field, suffix, gold = {
        "gsm8k": ("question", "answer", GSM8K_SUFFIX, gsm8k_gold),
        "math": ("problem", "solution", MATH_SUFFIX, last_boxed),
    }[kind]
    source = PromptSource(
        name=location,
        size=size,
        suffix=suffix,
        split="test",
        fields={"prompt": prompt_field, "answer": answer_field},
    )
    records = load_prompts(source)
    for record in records:
        if "answer" not in record:
            raise AriesError(f"{location}: record {record['id']} has no {answer_field!r}")
        record["metadata"] = {**record.get("metadata", {}), "solution": record["answer"]}
        record["answer"] = gold(record["answer"])
        record["source"] = f"{kind}:{location}"
    return records


def load_benchmark(spec: str, *, size: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Prompt records of a benchmark spec.

    - a reasoning-gym task name (`gsm_symbolic`) is shorthand for `reasoning-gym:gsm_symbolic`;
    - `gsm8k:<file or hub id>` and `math:<file or hub id>` read the public formats;
    - anything else is an `aries.method.sources` spec (`reasoning-gym:<task>?...`, `mt-bench`,
      a file).
    `size` and `seed` apply unless the spec sets them itself.
    """
    kind, _, location = spec.partition(":")
    if location and kind in ("gsm8k", "math"):
        return _public_format(kind, location, size)
    if ":" not in spec and "?" not in spec and _is_reasoning_gym_task(spec):
        spec = f"reasoning-gym:{spec}"
    source = PromptSource.parse(spec)
    if "size=" not in spec:
        source.size = size or source.size
    if "seed=" not in spec:
        source.seed = seed
    return load_prompts(source)


def _is_reasoning_gym_task(name: str) -> bool:
    from reasoning_gym.factory import DATASETS

    return name in DATASETS


def load_baseline(path: str | Path, round_index: int = 0) -> dict[str, str]:
    """A fixed baseline's answers by prompt id, from its chains file (default: the direct one)."""
    return {r["id"]: r["chain"][round_index]["text"] for r in read_jsonl(path)}
