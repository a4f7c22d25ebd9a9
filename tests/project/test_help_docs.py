"""Help texts that lead somewhere: `aries --help` and every subcommand's `--help` end with the
address of the documentation page that explains it, and that page and its anchor exist."""

import argparse
import subprocess
import sys
from pathlib import Path

import yaml
from test_docs import _anchors

from aries.cli import COMMAND_PAGES, build_parser
from aries.core.docs import DOCS_URL

ROOT = Path(__file__).resolve().parents[2]


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_docs_address_is_the_sites():
    assert yaml.safe_load((ROOT / "mkdocs.yml").read_text())["site_url"] == DOCS_URL


def test_every_help_ends_with_its_docs_page():
    top = subprocess.run(
        [sys.executable, "-m", "aries.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert top.rstrip().endswith(f"documentation: {DOCS_URL}")
    commands = _subcommands()
    assert set(commands) == set(COMMAND_PAGES)
    for name, parser in commands.items():
        last = parser.format_help().rstrip().splitlines()[-1].split()[-1]
        assert last == COMMAND_PAGES[name], name  # one unbroken line, whatever the width
        page, _, anchor = last.removeprefix(DOCS_URL).partition("#")
        path = ROOT / "docs" / f"{page.strip('/')}.md"
        assert path.exists(), f"aries {name}: {path} missing"
        assert not anchor or anchor in _anchors(path), f"aries {name}: no #{anchor} in {path}"
