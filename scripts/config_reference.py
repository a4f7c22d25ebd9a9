"""Print the run configuration reference (Markdown) from the config dataclasses' declarations:
help text, default, and the allowed values (a number's `Range`, a choice's values).

python scripts/config_reference.py > /tmp/reference.md   # pasted into README.md
"""

import dataclasses
import typing

from aries.pipeline.runconfig import RunConfig
from aries.rewards import REWARD_TYPES, _builders


def allowed(hint, field) -> str:
    """The values a field accepts, as the validation pass checks them."""
    if typing.get_origin(hint) is typing.Literal:
        return ", ".join(f"`{choice}`" for choice in typing.get_args(hint))
    if "range" in field.metadata:
        return str(field.metadata["range"])
    return ""


def rows(cls, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else None
        )
        if dataclasses.is_dataclass(default):
            yield from rows(type(default), f"{prefix}{field.name}.")
            continue
        text = field.metadata.get("help", "")
        shown = repr(default) if len(repr(default)) < 40 else "see configs/demo.yaml"
        values = allowed(hints[field.name], field)
        yield f"| `{prefix}{field.name}` | `{shown}` | {values} | {text} |"


HEADER = "| key | default | allowed | meaning |\n|---|---|---|---|"
print(HEADER)
print("\n".join(rows(RunConfig)))
print("\nReward sources (`reward:` and `eval.verifier:`): `type` and the settings of that type.\n")
print(HEADER)
for kind in REWARD_TYPES:
    print("\n".join(rows(_builders()[kind][0], f"reward[{kind}].")))
