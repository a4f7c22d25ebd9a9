"""What aries uses of TRL and transformers beyond their public API, checked when it is imported.

Prefix sharing swaps DPOTrainer's collator and the model's forward, the aries losses override its
loss, and the CPU decode path plugs into transformers' cache and attention registries. A release
that renames one of these names would otherwise fail with an AttributeError hours into a run,
after collection. `check_private_api()` runs when that code is imported and fails at once with
one line naming what is missing and the versions CI tests (the newest, and the floors pinned in
constraints/floor.txt). Keyword names that differ between supported releases go through
`training_arguments`, decided by what the installed release declares, not by its version number.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from importlib.metadata import version

from aries import AriesError

TESTED = "trl 1.16.x with transformers 5.2.0 to 5.25.0 (CI runs both ends)"

PRIVATE_NAMES = {
    "trl.trainer.dpo_trainer": (
        "DPOTrainer._compute_loss",
        "DPOTrainer._precompute_ref_logps",
        "DPOTrainer.compute_ref_log_probs",
        "DPOTrainer._set_signature_columns_if_needed",
        "DataCollatorForPreference.torch_call",
    ),
    "trl.trainer.utils": (
        "hash_module",
        "_CHUNKED_LOGPROB_CHUNK_SIZE",
        "FusedCausalLMOutput",
        "pad",
    ),
    "trl.kernels": ("ChunkedLogProbFunction.apply",),
    "transformers.cache_utils": ("DynamicLayer",),
    "transformers.integrations.sdpa_attention": ("sdpa_attention_forward",),
    "transformers.masking_utils": ("AttentionMaskInterface", "sdpa_mask"),
    "transformers.integrations.integration_utils": (
        "INTEGRATION_TO_CALLBACK",
        "get_available_reporting_integrations",
    ),
}
"""Module → names aries imports or overrides there."""

TRAINER_ATTRIBUTES = (
    "_metrics",
    "_precompute_model_hash",
    "_is_vision_dataset",
    "aux_loss_enabled",
    "use_weighting",
)
"""Attributes DPOTrainer.__init__ sets that aries reads (checked in the class's source)."""

CHUNKED_LOGPROB_PARAMETERS = (
    "ctx",
    "hidden",
    "weight",
    "bias",
    "targets",
    "temperature",
    "chunk_size",
    "final_logit_softcapping",
    "logit_scale",
    "outputs",
)
"""`ChunkedLogProbFunction.forward`'s parameters, which prefix_dpo.py passes by position."""

FUSED_OUTPUT_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
COLLATOR_FIELDS = ("pad_token_id", "max_length", "truncation_mode", "pad_to_multiple_of")


def _missing_in(module: str, names: tuple[str, ...]) -> list[str]:
    """`names` (dotted attributes) that `module` lacks; the module itself if it cannot import."""
    try:
        found = importlib.import_module(module)
    except ImportError as error:  # a broken install, not a renamed name: say which
        return [f"{module} (import fails: {str(error).splitlines()[0]})"]
    missing = []
    for name in names:
        value = found
        for part in name.split("."):
            value = getattr(value, part, _ABSENT)
        if value is _ABSENT:
            missing.append(f"{module}.{name}")
    return missing


_ABSENT = object()


@functools.cache
def missing_private_names(library: str) -> tuple[str, ...]:
    """The names aries relies on that the installed `library` ('trl' or 'transformers') lacks."""
    missing = [
        name
        for module, names in PRIVATE_NAMES.items()
        if module.split(".")[0] == library
        for name in _missing_in(module, names)
    ]
    if missing or library != "trl":  # the checks below read what is missing here
        return tuple(missing)
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.dpo_trainer import DataCollatorForPreference, DPOTrainer
    from trl.trainer.utils import FusedCausalLMOutput

    source = inspect.getsource(DPOTrainer.__init__)
    missing += [
        f"DPOTrainer.{name} (set in __init__)"
        for name in TRAINER_ATTRIBUTES
        if f"self.{name} =" not in source and f"self.{name}:" not in source
    ]
    parameters = tuple(inspect.signature(ChunkedLogProbFunction.forward).parameters)
    if parameters != CHUNKED_LOGPROB_PARAMETERS:
        missing.append(f"ChunkedLogProbFunction.forward{CHUNKED_LOGPROB_PARAMETERS}")
    output_fields = {f.name for f in dataclasses.fields(FusedCausalLMOutput)}
    missing += [f"FusedCausalLMOutput.{n}" for n in FUSED_OUTPUT_FIELDS if n not in output_fields]
    collator_fields = {f.name for f in dataclasses.fields(DataCollatorForPreference)}
    missing += [
        f"DataCollatorForPreference.{n}" for n in COLLATOR_FIELDS if n not in collator_fields
    ]
    return tuple(missing)


def check_private_api(library: str) -> None:
    """Fail in one line, before any work, when the installed `library` lacks a name we use."""
    missing = missing_private_names(library)
    if missing:
        installed = f"trl {version('trl')}, transformers {version('transformers')}"
        raise AriesError(
            f"aries needs {', '.join(missing)}, which the installed {installed} lack; "
            f"tested: {TESTED}: pip install 'trl>=1.16,<1.17' 'transformers>=5.2,<6'"
        )


def training_arguments(*, activation_checkpointing: bool) -> dict[str, bool]:
    """`TrainingArguments` keywords whose names changed within the supported transformers range.

    transformers renamed `gradient_checkpointing` to `activation_checkpointing` (the old name a
    deprecated alias); TRL's configs declare the old one with default True, so the setting is
    always passed, under the name the installed release reads first.
    """
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    new = "activation_checkpointing" in names
    return {
        "activation_checkpointing" if new else "gradient_checkpointing": activation_checkpointing
    }
