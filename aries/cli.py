"""The `aries` command: a thin shell over library functions.

Each subcommand lives in `aries/commands/<name>.py` and exposes `register(subparsers)`, which adds
its parser and sets `func` to a handler taking the parsed arguments. Handlers import heavy
libraries (torch, transformers) lazily so that `aries --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import textwrap

from aries import AriesError, __version__, commands
from aries.core.docs import DOCS_URL, page
from aries.core.jsonl import disk_full_message, out_of_space
from aries.core.memory import return_large_allocations_promptly

COMMAND_PAGES: dict[str, str] = {
    "run": page("concepts", "the-loop"),
    "status": page("concepts", "the-run-directory"),
    "report": page("concepts", "the-run-directory"),
    "train": page("scaling", "training-on-several-gpus"),
    "sft": page("specification", "stage-0-sft-paper-eq-4"),
    "refine": page("getting-started", "using-it"),
    "score": page("your-own-model", "4-the-reward-a-reward-model-a-verifier-or-a-judge"),
    "select": page("concepts", "selection"),
    "eval": page("your-own-model", "7-evaluate-aries-eval"),
    "export": page(
        "your-own-model", "8-publish-aries-export-into-alpacaeval-2-arena-hard-and-mt-bench"
    ),
    "serve": page("scaling", "aries-serve-self-refinement-as-a-service"),
}
"""The docs page each subcommand's --help ends with (a test checks every anchor exists)."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that it never breaks a word at a hyphen: the documentation
    address at the end of every --help stays one line that a terminal can open."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.fill(
            text,
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aries",
        formatter_class=HelpFormatter,
        description="ARIES: iterative preference training that teaches a model to refine itself.",
        epilog=f"documentation: {DOCS_URL}",
    )
    parser.add_argument("--version", action="version", version=f"aries {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"aries.commands.{module.name}").register(subparsers)
    for name, sub in subparsers.choices.items():
        docs = f"documentation: {COMMAND_PAGES.get(name, DOCS_URL)}"  # a test asks for each
        sub.epilog = f"{sub.epilog}\n\n{docs}" if sub.epilog else docs
        sub.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return_large_allocations_promptly()
    try:
        return args.func(args) or 0
    except AriesError as error:
        print(f"aries {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"aries {args.command}: interrupted; rerun the same command to resume", file=sys.stderr
        )
        return 130
    except BrokenPipeError:  # `aries ... | head`: the reader left; no traceback (Python docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:  # a full disk where no `writing` block names what was written
        if not out_of_space(error):
            raise
        where = getattr(error, "filename", None) or os.getcwd()
        print(
            f"aries {args.command}: error: {disk_full_message(error, where, 'files')}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
