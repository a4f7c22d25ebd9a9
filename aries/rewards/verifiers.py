"""Verifiers: rewards for checkable answers (reasoning-gym tasks, free-form math, exact strings).

Model text is only ever matched with regular expressions and parsed by math-verify's LaTeX /
expression parser (sympy-based, no `eval`). Parsing time is bounded twice: only the final answer
(or the tail of the response) reaches the parser, and math-verify's own timeout applies when we
run on the main thread (its timeout uses SIGALRM, which only works there; off the main thread the
short, bounded input is the guard).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from typing import Literal

from aries import AriesError
from aries.core.config import FieldError, Options, Range
from aries.rewards import REWARDS, RewardSource, RewardType, ScoreItem

REASONING_GYM_PREFIX = "reasoning-gym:"


@dataclass
class VerifierConfig(Options):
    """Automatic verifier: reasoning-gym's scorer for reasoning-gym records, math-verify else."""

    section = "reward"

    answer_marker: str = field(
        default="Answer:",
        metadata={"help": "The final answer is the text after the last occurrence of this marker."},
    )
    timeout_s: int = field(
        default=5,
        metadata={
            "range": Range(ge=1),
            "help": "math-verify parse/verify time limit per answer (main thread only).",
        },
    )
    max_chars: int = field(
        default=1000,
        metadata={
            "range": Range(ge=1),
            "help": "Only the last max_chars characters of a response reach the parser.",
        },
    )
    last_number_fallback: bool = field(
        default=True,
        metadata={
            "help": "reasoning-gym: without the marker, take the last number in the response "
            "(the GSM8K convention, Cobbe et al. 2021, arXiv 2110.14168), so accuracy measures "
            "the answer rather than compliance with the answer format."
        },
    )


@dataclass
class ExactMatchConfig(Options):
    """Exact match of the final answer with the reference, after light normalisation."""

    section = "reward"

    answer_marker: str = field(
        default="Answer:",
        metadata={"help": "Final answer = text after the last marker; whole response if absent."},
    )
    case_sensitive: bool = field(default=False, metadata={"help": "Compare case-sensitively."})


@dataclass
class RegexConfig(Options):
    """Regex verifier for custom data: extract-and-compare, or a pure format check."""

    section = "reward"

    pattern: str = field(
        default="",
        metadata={
            "help": "Python regular expression. mode 'extract': the last match's first group (or "
            "whole match) is the answer, compared with the reference; mode 'match': 1.0 when the "
            "pattern occurs in the response (format rewards, no reference needed)."
        },
    )
    mode: Literal["extract", "match"] = field(
        default="extract", metadata={"help": "'extract' or 'match'."}
    )
    case_sensitive: bool = field(default=False, metadata={"help": "Compare case-sensitively."})
    max_chars: int = field(
        default=4000,
        metadata={
            "range": Range(ge=1),
            "help": "Only the last max_chars characters are searched (bounds regex time).",
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.pattern:
            raise FieldError(self.section, "pattern", ": the regex reward needs a pattern")
        try:
            re.compile(self.pattern)
        except re.error as error:
            raise FieldError(
                self.section, "pattern", f": bad pattern {self.pattern!r} ({error})"
            ) from None


_DECORATION = re.compile(r"^[\s*_`$]+|[\s*_`$.]+$")
"""Markdown emphasis, code ticks, `$` and spaces around an answer, and a trailing period."""


def final_answer(text: str, marker: str = "Answer:") -> str | None:
    """The first non-empty line after the last `marker` (case-insensitive), markdown stripped.

    "**Answer:** 1,000." → "1000": emphasis, `$`, backticks and a trailing period go, and digit
    groups lose their thousands separators. None when the marker is missing or nothing follows.
    """
    position = text.lower().rfind(marker.lower())
    if position < 0:
        return None
    for line in text[position + len(marker) :].splitlines():
        answer = _DECORATION.sub("", line)
        if answer:
            if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", answer):
                answer = answer.replace(",", "")
            return answer
    return None


def normalise(text: str, case_sensitive: bool = False) -> str:
    """Collapse whitespace and strip surrounding punctuation-like decoration."""
    text = _DECORATION.sub("", " ".join(text.split()))
    return text if case_sensitive else text.casefold()


def reasoning_gym_task(record: dict) -> str | None:
    """The reasoning-gym task a chains record came from (`source: reasoning-gym:<task>`)."""
    source = str(record.get("source", ""))
    if source.startswith(REASONING_GYM_PREFIX):
        return source[len(REASONING_GYM_PREFIX) :]
    return None


@functools.cache
def _reasoning_gym_scorer(task: str):
    import reasoning_gym

    try:
        return reasoning_gym.get_score_answer_fn(task)
    except ValueError:
        raise AriesError(f"unknown reasoning-gym task {task!r}") from None


def last_number(text: str) -> str | None:
    """The last integer or decimal in `text` (thousands separators removed)."""
    numbers = re.findall(r"[-+]?\d[\d,]*(?:\.\d+)?", text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def score_reasoning_gym(
    task: str, item: ScoreItem, marker: str = "Answer:", last_number_fallback: bool = False
) -> float | None:
    """reasoning-gym's own scorer on the final answer (0.0 when there is none).

    The entry is rebuilt from the record, `{"question", "answer", "metadata"}`, as the scorer
    expects. A scorer that raises is reported as None (could not score), not as a wrong answer.
    """
    record = item.record
    answer = record.get("answer", item.reference)
    if answer is None:
        return None
    entry = {
        "question": record.get("question", item.prompt),
        "answer": answer,
        "metadata": record.get("metadata", {}),
    }
    try:
        answer = final_answer(item.response, marker)
        if answer is None and last_number_fallback:
            answer = last_number(item.response)
        return float(_reasoning_gym_scorer(task)(answer, entry))
    except AriesError:
        raise
    except Exception:  # noqa: BLE001 - third-party scorers raise anything on odd input
        return None


def _parse_timeout(timeout_s: int) -> int | None:
    """math-verify's SIGALRM timeout only works on the main thread; elsewhere none is used."""
    return timeout_s if threading.current_thread() is threading.main_thread() else None


def math_equal(response: str, reference: str, config: VerifierConfig) -> float | None:
    """math-verify: 1.0 when the response's final answer equals the reference mathematically.

    `1,000` = `1000`, `\\frac{1}{2}` = `0.5`, `\\boxed{..}` and "The answer is" are understood.
    The text from the last answer marker on (or the response's tail) is parsed; GSM8K-style
    references ("... #### 18") are cut to what follows `####`. None when the reference itself
    does not parse; an unparseable response is simply wrong (0.0).
    """
    from math_verify import parse, verify

    timeout = _parse_timeout(config.timeout_s)
    if "####" in reference:
        reference = reference.rsplit("####", 1)[1]
    gold = parse(reference.strip()[-config.max_chars :], parsing_timeout=timeout)
    if not gold:
        return None
    position = response.lower().rfind(config.answer_marker.lower())
    text = response[position:] if position >= 0 else response
    predicted = parse(text[-config.max_chars :], parsing_timeout=timeout)
    if not predicted:
        return 0.0
    return 1.0 if verify(gold, predicted, timeout_seconds=timeout) else 0.0


class Verifier(RewardSource):
    """`verifier`: reasoning-gym scorer for `reasoning-gym:<task>` records, math-verify otherwise.

    Items without a reference answer (and not from reasoning-gym) cannot be verified: None.
    """

    name = "verifier"

    def __init__(self, config: VerifierConfig | None = None):
        self.config = config or VerifierConfig()

    def score(self, items: list[ScoreItem]) -> list[float | None]:
        return [self._score_one(item) for item in items]

    def _score_one(self, item: ScoreItem) -> float | None:
        task = reasoning_gym_task(item.record)
        if task is not None:
            return score_reasoning_gym(
                task, item, self.config.answer_marker, self.config.last_number_fallback
            )
        if item.reference is None:
            return None
        return math_equal(item.response, item.reference, self.config)


class ExactMatch(RewardSource):
    """`exact-match`: normalised final answer == normalised reference (1.0 / 0.0)."""

    name = "exact-match"

    def __init__(self, config: ExactMatchConfig | None = None):
        self.config = config or ExactMatchConfig()

    def score(self, items: list[ScoreItem]) -> list[float | None]:
        return [self._score_one(item) for item in items]

    def _score_one(self, item: ScoreItem) -> float | None:
        if item.reference is None:
            return None
        answer = final_answer(item.response, self.config.answer_marker)
        if answer is None:
            answer = item.response
        same = normalise(answer, self.config.case_sensitive) == normalise(
            item.reference, self.config.case_sensitive
        )
        return float(same)


class RegexVerifier(RewardSource):
    """`regex`: see `RegexConfig` for the two modes."""

    def __init__(self, config: RegexConfig):
        self.config = config
        self.pattern = re.compile(config.pattern, 0 if config.case_sensitive else re.IGNORECASE)
        self.name = f"regex:{config.mode}:{config.pattern}"

    def score(self, items: list[ScoreItem]) -> list[float | None]:
        return [self._score_one(item) for item in items]

    def _score_one(self, item: ScoreItem) -> float | None:
        text = item.response[-self.config.max_chars :]
        matches = list(self.pattern.finditer(text))
        if self.config.mode == "match":
            return float(bool(matches))
        if item.reference is None:
            return None
        if not matches:
            return 0.0
        last = matches[-1]
        answer = last.group(1) if self.pattern.groups else last.group(0)
        same = normalise(answer or "", self.config.case_sensitive) == normalise(
            item.reference, self.config.case_sensitive
        )
        return float(same)


REWARDS["verifier"] = RewardType(VerifierConfig, Verifier)
REWARDS["exact-match"] = RewardType(ExactMatchConfig, ExactMatch)
REWARDS["regex"] = RewardType(RegexConfig, RegexVerifier)
