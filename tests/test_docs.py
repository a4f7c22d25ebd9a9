"""The README's configuration reference is generated from the config dataclasses: keep in sync."""

import subprocess
import sys
from pathlib import Path


def test_readme_config_reference_is_current():
    table = subprocess.run(
        [sys.executable, "scripts/config_reference.py"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert table in Path("README.md").read_text(), "rerun scripts/config_reference.py"
