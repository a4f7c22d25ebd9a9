"""LLM judge: a local model scores responses (Self-Rewarding style) or compares them pairwise.

Pointwise: the additive 5-point rubric of Yuan et al. 2024, "Self-Rewarding Language Models"
(arXiv 2401.10020, Fig. 2); the judge ends with "Score: <points>", parsed into 0..5.
Pairwise: the responses of one prompt are compared in every ordered pair, so each pair is judged
in both orders and position bias cancels (Zheng et al. 2023, "Judging LLM-as-a-Judge", arXiv
2306.05685, prompt and `[[A]]`/`[[B]]`/`[[C]]` verdict format); a response's score is its win
rate over the verdicts that parsed (tie = half a win).
Unparseable judgements are counted (`unparsed`) and give None, never a zero.

Verdicts are read in one of two ways. `text`: the judge writes its justification and verdict,
which are parsed. `logprob`: the judge's answer is prefilled with "Score: " or "[[" and the
verdict is read from the next token's probabilities in one forward pass, as G-Eval weights scores
by their probabilities (Liu et al. 2023, arXiv 2303.16634): the pointwise score is the expected
points, the pairwise verdict a probability over A / B / tie. Every call then gives a verdict, so
even a small model that never writes a well-formed one can judge, and no decoding is paid for.
Every judge call is kept in `transcripts` (question, responses, output, verdict) for inspection.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from aries import AriesError
from aries.backends import ENGINES, Backend, Sampling
from aries.core.config import Options, Range
from aries.rewards import REWARDS, RewardType, ScoreItem

POINTWISE_TEMPLATE = """Review the user's question and the corresponding response using the \
additive 5-point scoring system described below. Points are accumulated based on the \
satisfaction of each criterion:
- Add 1 point if the response is relevant and provides some information related to the user's \
inquiry, even if it is incomplete or contains some irrelevant content.
- Add another point if the response addresses a substantial portion of the user's question, but \
does not completely resolve the query or provide a direct answer.
- Award a third point if the response answers the basic elements of the user's question in a \
useful way, regardless of whether it seems to have been written by an AI Assistant or if it has \
elements typically found in blogs or search results.
- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, \
addressing the user's question directly and comprehensively, and is well-organized and helpful, \
even if there is slight room for improvement in clarity, conciseness or focus.
- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI \
Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a \
high-quality, engaging, and insightful answer.

User: {prompt}
{reference}<response>{response}</response>

After examining the user's instruction and the response:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Score: <total points>"

Remember to assess from the AI Assistant perspective. To evaluate the response in alignment \
with this additive scoring model, we'll systematically attribute points based on the outlined \
criteria."""

PAIRWISE_TEMPLATE = """Please act as an impartial judge and evaluate the quality of the responses \
provided by two AI assistants to the user question displayed below. Choose the assistant that \
follows the user's instructions and answers the user's question better, considering helpfulness, \
relevance, accuracy, depth and level of detail. Do not let the order of the responses, their \
length or the assistants' names influence your evaluation. Be as objective as possible. After a \
short explanation, output your final verdict by strictly following this format: "[[A]]" if \
assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.

[User Question]
{prompt}
{reference}
[The Start of Assistant A's Answer]
{response_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{response_b}
[The End of Assistant B's Answer]"""


@dataclass
class JudgeConfig(Options):
    """An LLM judge run through a generation backend."""

    section = "reward"

    model: str = field(
        default="embedded",
        metadata={
            "help": "Judge model (folder, hub id, 'embedded'). In a run's `reward:`, leave it out "
            "to judge with the current policy π_t (Self-Rewarding, Yuan et al. 2024, "
            "arXiv 2401.10020)."
        },
    )
    mode: Literal["pointwise", "pairwise"] = field(
        default="pointwise",
        metadata={
            "help": "'pointwise': additive 5-point rubric (Yuan et al. 2024, arXiv 2401.10020); "
            "'pairwise': every ordered pair of a prompt's responses, both orders (Zheng et al. "
            "2023, arXiv 2306.05685); score = win rate."
        },
    )
    backend: str = field(
        default="hf", metadata={"choices": ENGINES, "help": "Generation backend for the judge."}
    )
    batch_size: int = field(
        default=8, metadata={"range": Range(ge=1), "help": "Judge prompts per generation batch."}
    )
    max_new_tokens: int = field(
        default=256,
        metadata={"range": Range(ge=1), "help": "Room for the justification and the verdict."},
    )
    device: str | None = field(default=None, metadata={"help": "cuda/cpu; default: cuda if any."})
    dtype: str = field(default="auto", metadata={"help": "auto = fp32 on CPU, bf16 on GPU."})
    use_reference: bool = field(
        default=True,
        metadata={"help": "Show the prompt's reference answer to the judge when there is one."},
    )
    verdict: Literal["text", "logprob"] = field(
        default="text",
        metadata={
            "help": "'text': parse the verdict the judge writes; 'logprob': read it from the "
            "probabilities of the verdict tokens after a prefilled 'Score: ' or '[[' (G-Eval, "
            "Liu et al. 2023, arXiv 2303.16634), one forward pass and always a verdict; hf "
            "backend only."
        },
    )


_SCORE = re.compile(
    r"score[*_\s]*(?:[:=]|is|of)?[*_\s]*(\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+))?", re.I
)
_FRACTION = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+)", re.I)
_BRACKETED = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")


def parse_pointwise(text: str, max_score: float = 5.0) -> float | None:
    """The last stated score in 0..max_score, or None.

    Understands "Score: 4", "**Score**: 4", "score of 4", "Score: 4/5", "4 out of 5", "[[4]]";
    a score out of another total ("8/10") is rescaled to max_score. Out-of-range values: None.
    """
    for pattern in (_SCORE, _FRACTION, _BRACKETED):
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        value = float(matches[-1].group(1))
        total = matches[-1].group(2) if pattern.groups > 1 else None
        if total is not None and float(total) > 0:
            value = value * max_score / float(total)
        return value if 0 <= value <= max_score else None
    return None


_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_VERDICT_WORDS = re.compile(
    r"(?:verdict|winner|better)[*_\s]*(?:is|:)?[*_\s]*(?:assistant|response)?\s*([AB]|tie)\b"
    r"|(?:assistant|response)\s+([AB])\s+is\s+better",
    re.I,
)


def parse_pairwise(text: str) -> str | None:
    """'A', 'B' or 'tie' from the last verdict ("[[A]]", "Winner: B", "Assistant A is better")."""
    verdicts = _VERDICT.findall(text)
    if verdicts:
        return {"A": "A", "B": "B", "C": "tie"}[verdicts[-1]]
    words = _VERDICT_WORDS.findall(text)
    if words:
        verdict = next(group for group in words[-1] if group)
        return "tie" if verdict.lower() == "tie" else verdict.upper()
    return None


POINTS = [str(points) for points in range(6)]
"""The pointwise rubric's possible scores, as the tokens a `logprob` verdict reads."""


class Judge:
    """`judge`: an LLM scores responses; see the module docstring for both modes."""

    def __init__(self, config: JudgeConfig, backend: Backend | None = None):
        """`backend`: reuse an already loaded model (e.g. the policy) instead of loading one."""
        self.config = config
        suffix = ":logprob" if config.verdict == "logprob" else ""
        self.name = f"judge:{config.mode}{suffix}:{config.model}"
        self.sampling = Sampling(max_new_tokens=config.max_new_tokens, temperature=0.0)
        self._owns_backend = backend is None
        if backend is None:
            from aries.backends import backend_options, make_backend
            from aries.core.models import ModelSettings

            settings = ModelSettings(config.model, dtype=config.dtype)
            options = backend_options(
                config.backend, settings, batch_size=config.batch_size, device=config.device
            )
            backend = make_backend(config.backend, config.model, **options)
        if config.verdict == "logprob" and not hasattr(backend, "next_token_logprobs"):
            raise AriesError(
                f"judge verdict 'logprob' reads token probabilities, which the {backend.name!r} "
                "backend does not expose: use backend 'hf' or verdict 'text'"
            )
        self.backend = backend
        self.judged = 0
        self.unparsed = 0
        """Judge calls made and verdicts that did not parse, over this source's lifetime."""
        self.order_checks = 0
        self.order_agreements = 0
        """Pairwise: response pairs judged in both orders, and those whose two verdicts name the
        same winner (MT-Bench's consistency, Zheng et al. 2023): position bias made visible."""
        self.transcripts: list[dict] = []
        """Every judge call: the question, the response(s), the raw output and the verdict."""

    def close(self) -> None:
        """Free the judge model's memory (a borrowed backend, e.g. the policy, stays open)."""
        if self._owns_backend:
            self.backend.close()

    def _reference(self, item: ScoreItem, label: str) -> str:
        if self.config.use_reference and item.reference is not None:
            return f"{label}{item.reference}\n"
        return ""

    def _ask(self, prompts: list[str], prefix: str, candidates: list[str]) -> list[str | dict]:
        """The judge's raw outputs: generated text, or (logprob) the candidates' probabilities
        after `prefix`, renormalised over the candidates."""
        import math

        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        self.judged += len(prompts)
        if self.config.verdict == "text":
            return [g.text for g in self.backend.generate(conversations, self.sampling)]
        outputs: list[str | dict] = []
        for logprobs in self.backend.next_token_logprobs(conversations, prefix, candidates):
            top = max(logprobs.values())
            weights = {c: math.exp(lp - top) for c, lp in logprobs.items()}
            total = sum(weights.values())
            outputs.append({c: w / total for c, w in weights.items()})
        return outputs

    def score(self, items: list[ScoreItem]) -> list[float | None]:
        if self.config.mode == "pointwise":
            return self._pointwise(items)
        return self._pairwise(items)

    def _pointwise(self, items: list[ScoreItem]) -> list[float | None]:
        prompts = [
            POINTWISE_TEMPLATE.format(
                prompt=item.prompt,
                response=item.response,
                reference=self._reference(item, "Reference answer: "),
            )
            for item in items
        ]
        scores = []
        for item, output in zip(items, self._ask(prompts, "Score: ", POINTS), strict=True):
            if isinstance(output, dict):  # expected points under the verdict distribution
                score = sum(int(points) * p for points, p in output.items())
            else:
                score = parse_pointwise(output)
            scores.append(score)
            self.transcripts.append(
                {
                    "question": item.prompt,
                    "response": item.response,
                    "output": output,
                    "score": score,
                }
            )
        self.unparsed += scores.count(None)
        return scores

    def _pairwise(self, items: list[ScoreItem]) -> list[float | None]:
        """Items of one prompt (same record id and prompt) are compared with each other.

        n responses cost n(n-1) judge calls; a prompt with a single response gets None.
        """
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[(item.record.get("id"), item.prompt)].append(index)
        pairs = [(a, b) for group in groups.values() for a in group for b in group if a != b]
        prompts = [
            PAIRWISE_TEMPLATE.format(
                prompt=items[a].prompt,
                response_a=items[a].response,
                response_b=items[b].response,
                reference=self._reference(items[a], "\n[Reference Answer]\n"),
            )
            for a, b in pairs
        ]
        wins: list[float] = [0.0] * len(items)
        counted: list[int] = [0] * len(items)
        outputs = self._ask(prompts, "[[", ["A", "B", "C"])
        shares: dict[tuple[int, int], float | None] = {}
        for (a, b), output in zip(pairs, outputs, strict=True):
            if isinstance(output, dict):  # A's expected share: its win probability + half a tie
                share_a: float | None = output["A"] + output["C"] / 2
            else:
                verdict = parse_pairwise(output)
                share_a = None if verdict is None else {"A": 1.0, "B": 0.0, "tie": 0.5}[verdict]
            self.transcripts.append(
                {
                    "question": items[a].prompt,
                    "response_a": items[a].response,
                    "response_b": items[b].response,
                    "output": output,
                    "share_a": share_a,
                }
            )
            shares[(a, b)] = share_a
            if share_a is None:
                self.unparsed += 1
                continue
            wins[a] += share_a
            wins[b] += 1.0 - share_a
            counted[a] += 1
            counted[b] += 1
        for (a, b), share in shares.items():
            reverse = shares[(b, a)]
            if a < b and share is not None and reverse is not None:
                self.order_checks += 1
                # agreement: a's share is on the same side of 1/2 in both orders
                self.order_agreements += _side(share) == _side(1.0 - reverse)
        return [w / n if n else None for w, n in zip(wins, counted)]


def _side(share: float) -> int:
    """+1 if the first response wins, -1 if it loses, 0 for an even verdict."""
    return (share > 0.5) - (share < 0.5)


REWARDS["judge"] = RewardType(JudgeConfig, Judge)
