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

from aries import AriesError, __version__, commands
from aries.core.jsonl import disk_full_message, out_of_space
from aries.core.memory import return_large_allocations_promptly


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aries",
        description="ARIES: iterative preference training that teaches a model to refine itself.",
    )
    parser.add_argument("--version", action="version", version=f"aries {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"aries.commands.{module.name}").register(subparsers)
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
