"""Reward models: any Hugging Face `AutoModelForSequenceClassification` (Skywork-Reward, ...).

Input format. With a chat template (decoder reward models), the pair is rendered as the
conversation `[user: prompt] [assistant: response]` through the reward model's own template,
exactly as it was trained. Without one (encoders such as BERT/MiniLM), prompt and response are
encoded as the tokenizer's text pair (`[CLS] prompt [SEP] response [SEP]`).

Truncation. The prompt is never cut: when the pair exceeds `max_length` tokens, the response is
truncated from the right (the chat template's closing tokens are kept after it). A prompt that
alone leaves no room for the response cannot be scored: None.

Batching. Items are sorted by length, padded per batch (on the tokenizer's padding side, with
explicit position ids so left padding does not shift positions) and scores are put back in input
order: a batch gives the same scores as one-at-a-time scoring, within float tolerance.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from aries import AriesError
from aries.core.config import FieldError, Options, Range
from aries.rewards import REWARDS, RewardType, ScoreItem


@dataclass
class RewardModelConfig(Options):
    """A sequence-classification reward model (local folder or hub id)."""

    section = "reward"

    model: str = field(default="", metadata={"help": "Reward model folder or hub id."})
    batch_size: int = field(
        default=8, metadata={"range": Range(ge=1), "help": "Pairs per forward pass."}
    )
    max_length: int = field(
        default=2048,
        metadata={
            "range": Range(ge=2),
            "help": "Token limit per pair; the response is cut from the right to fit.",
        },
    )
    device: str | None = field(default=None, metadata={"help": "cuda/cpu; default: cuda if any."})
    dtype: str = field(
        default="auto", metadata={"help": "auto = float32 on CPU, bfloat16 on a GPU that has it."}
    )
    label_index: int = field(
        default=0,
        metadata={
            "range": Range(ge=0),
            "help": "Which output logit is the reward (multi-output heads).",
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the model repository's own code (only if trusted)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model:
            raise FieldError(
                self.section, "model", ": reward-model needs a model (folder or hub id)"
            )


class RewardModel:
    """`reward-model`: the classifier's `label_index` logit is the reward."""

    def __init__(self, config: RewardModelConfig):
        import torch
        from transformers import AutoModelForSequenceClassification

        from aries.core.models import (
            ModelSettings,
            default_device,
            load_tokenizer,
            resolve_dtype,
            resolve_model,
        )

        self.config = config
        self.name = f"reward-model:{config.model}"
        self.device = config.device or default_device()
        path = resolve_model(config.model)
        self.tokenizer = load_tokenizer(ModelSettings(path, config.trust_remote_code))
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                dtype=resolve_dtype(config.dtype, self.device),
                use_safetensors=True,
                trust_remote_code=config.trust_remote_code,
            )
        except (OSError, ValueError) as error:
            message = str(error).splitlines()[0]
            raise AriesError(f"{config.model}: cannot load reward model ({message})") from None
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if config.label_index >= model.config.num_labels:
            raise AriesError(
                f"{config.model}: label_index {config.label_index} but the head has "
                f"{model.config.num_labels} output(s)"
            )
        self.model = model.to(self.device).eval()
        self._wants_positions = "position_ids" in inspect.signature(model.forward).parameters
        self._torch = torch

    def encode(self, item: ScoreItem) -> dict[str, list[int]] | None:
        """Token ids of one pair under the truncation rule (module docstring); None if no room."""
        tokenizer, limit = self.tokenizer, self.config.max_length
        if not tokenizer.chat_template:
            prompt_ids = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
            if len(prompt_ids) + tokenizer.num_special_tokens_to_add(pair=True) >= limit:
                return None
            encoded = tokenizer(
                item.prompt, item.response, truncation="only_second", max_length=limit
            )
            return {key: list(value) for key, value in encoded.items()}
        conversation = [
            {"role": "user", "content": item.prompt},
            {"role": "assistant", "content": item.response},
        ]
        text = tokenizer.apply_chat_template(conversation, tokenize=False)
        ids = self._ids(text)
        if len(ids) > limit:
            ids = self._truncate_response(text, item.response)
        return None if ids is None else {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def _ids(self, text: str) -> list[int]:
        # The chat template writes its own special tokens (BOS included).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _truncate_response(self, text: str, response: str) -> list[int] | None:
        """prefix + response cut from the right + the template's closing tokens, within limit."""
        start = text.rfind(response) if response.strip() else -1
        if start < 0 and response.strip():
            response = response.strip()  # templates that trim message content
            start = text.rfind(response)
        if start < 0:  # empty response or a template that rewrites content
            return None
        head, tail = self._ids(text[:start]), self._ids(text[start + len(response) :])
        room = self.config.max_length - len(head) - len(tail)
        if room <= 0:
            return None
        return head + self._ids(response)[:room] + tail

    def score(self, items: list[ScoreItem]) -> list[float | None]:
        encoded = [self.encode(item) for item in items]
        order = sorted(
            (i for i, e in enumerate(encoded) if e is not None),
            key=lambda i: len(encoded[i]["input_ids"]),
        )
        scores: list[float | None] = [None] * len(items)
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            for index, value in zip(batch, self._forward([encoded[i] for i in batch])):
                scores[index] = value
        return scores

    def _forward(self, batch: list[dict[str, list[int]]]) -> list[float]:
        torch = self._torch
        inputs = self.tokenizer.pad(batch, return_tensors="pt")
        if self._wants_positions:
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        return logits[:, self.config.label_index].float().tolist()

    def close(self) -> None:
        """Free the model's memory before the next stage loads its own."""
        import gc

        del self.model
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


REWARDS["reward-model"] = RewardType(RewardModelConfig, RewardModel)
