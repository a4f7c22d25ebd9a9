"""The two views of one model (docs/specification.md): direct `π(y | x)` and refine
`π(y' | x, y, z)`.

Every stage that builds a prompt (collection, pair construction, evaluation, serving) goes through
these functions, so the model is trained on exactly the conversations it is later asked to refine.
The same holds for the two settings that change those conversations and their text: a system
prompt (`with_system_prompt`, put first in every conversation) and a chat template
(`use_chat_template`, set on the policy's tokenizer wherever one is loaded: generation backends,
TRL's trainers, and so the saved model folder, which carries it to the next iteration).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

Message = dict[str, str]
"""One chat message: {"role": "user" | "assistant" | "system", "content": str}."""

DEFAULT_REFINE_INSTRUCTION = (
    "Review your previous answer. If it contains a mistake, fix it; if it is correct, keep it. "
    "Write your complete, improved answer in the same format."
)
"""The refinement instruction `z`: asks for a complete better answer, not a critique or a diff."""


PLAIN_TEMPLATE = "plain"
"""`chat_template: plain`: ignore the model's chat template and use `render_plain`."""


def with_system_prompt(conversation: list[Message], system_prompt: str | None) -> list[Message]:
    """`[system s]` first, unless there is no system prompt or the conversation has its own."""
    if not system_prompt or (conversation and conversation[0]["role"] == "system"):
        return conversation
    return [{"role": "system", "content": system_prompt}, *conversation]


def direct_messages(
    prompt: str, history: Sequence[Message] = (), *, system_prompt: str | None = None
) -> list[Message]:
    """Direct view: `[user x]`, after the earlier turns of a multi-turn prompt if any."""
    return with_system_prompt([*history, {"role": "user", "content": prompt}], system_prompt)


def refine_messages(
    prompt: str,
    previous: str,
    instruction: str,
    history: Sequence[Message] = (),
    *,
    system_prompt: str | None = None,
) -> list[Message]:
    """Refine view: `[user x] [assistant y] [user z]`, answered by the next assistant turn.

    `history` (earlier turns, e.g. MT-Bench's first turn) comes first and is never refined.
    """
    conversation = [
        *history,
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": previous},
        {"role": "user", "content": instruction},
    ]
    return with_system_prompt(conversation, system_prompt)


def chat_template_text(chat_template: str) -> str | None:
    """The Jinja text of a `chat_template` setting: the template itself (it contains `{%` or
    `{{`), the path of a file holding one (as vLLM's --chat-template), or `plain` (None: the
    plain template)."""
    from aries import AriesError

    if chat_template == PLAIN_TEMPLATE:
        return None
    if "{%" in chat_template or "{{" in chat_template:
        return chat_template
    path = Path(chat_template).expanduser()
    if not path.is_file():
        raise AriesError(
            f"chat_template {chat_template!r}: no such file, and not a Jinja template or 'plain'"
        )
    return path.read_text(encoding="utf-8")


def use_chat_template(tokenizer, chat_template: str | None):
    """Set a `chat_template` override on a tokenizer (None: keep the model's own); returns it."""
    if chat_template is not None:
        tokenizer.chat_template = chat_template_text(chat_template)
    return tokenizer


def render_plain(conversation: list[Message]) -> str:
    """Plain-text template for base models without a chat template.

    `[user x]` becomes `Question: x / Answer:`; `[user x][assistant y][user z]` becomes
    `Question / Previous answer / Instruction / Answer:`, so the refine view reads naturally
    to a model that has never seen chat markup.
    """
    parts = []
    for index, message in enumerate(conversation):
        if message["role"] == "system":
            parts.append(message["content"])
        elif message["role"] == "assistant":
            parts.append(f"Previous answer: {message['content']}")
        elif index == 0 or not any(m["role"] == "user" for m in conversation[:index]):
            parts.append(f"Question: {message['content']}")
        else:
            parts.append(f"Instruction: {message['content']}")
    return "\n\n".join(parts) + "\n\nAnswer:"


def render_prompt(tokenizer, conversation: list[Message]) -> str:
    """The exact prompt text the model sees: its chat template, or the plain template."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True
        )
    return render_plain(conversation)


def prompt_token_ids(tokenizer, conversation: list[Message]) -> list[int]:
    """The prompt the model sees, as token ids: its chat template, else the plain template + BOS.

    A chat template writes the special tokens it wants, so no extra BOS is added to it.
    """
    text = render_prompt(tokenizer, conversation)
    return tokenizer(text, add_special_tokens=not tokenizer.chat_template)["input_ids"]


def to_plain_text(example: dict[str, Any]) -> dict[str, Any]:
    """The same example for a model without a chat template (TRL's standard text format)."""
    plain = {**example, "prompt": render_plain(example["prompt"])}
    for key in ("chosen", "rejected", "completion"):
        if key in example:
            plain[key] = " " + example[key][0]["content"]
    return plain


def for_tokenizer(dataset, tokenizer):
    """The dataset as the trainer needs it: conversational for a model with a chat template,
    else in plain text (older runs may have saved plain text already)."""
    import datasets

    if tokenizer.chat_template or len(dataset) == 0 or isinstance(dataset[0]["prompt"], str):
        return dataset
    return datasets.Dataset.from_list([to_plain_text(row) for row in dataset])
