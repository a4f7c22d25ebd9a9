"""Print the run configuration reference (Markdown) from the config dataclasses' help texts.

python scripts/config_reference.py > /tmp/reference.md   # pasted into README.md
"""

import dataclasses

from aries.pipeline.runconfig import RunConfig


def rows(cls, prefix: str = ""):
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
        yield f"| `{prefix}{field.name}` | `{shown}` | {text} |"


print("| key | default | meaning |\n|---|---|---|")
print("\n".join(rows(RunConfig)))
