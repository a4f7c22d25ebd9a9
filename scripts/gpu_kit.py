"""The GPU kit: everything a bare, offline CUDA machine needs to run aries' GPU checks, carried
in parts small enough for a transfer limit, then one command there that prints one table.

    # on a connected machine (with the project checked out):
    python scripts/gpu_kit.py prepare --out kit [--image-packages FILE] [--python 3.12]
    # carry kit/transfer-1 ... kit/transfer-N to the GPU machine, into one folder DIR, then:
    python DIR/gpu_kit.py run DIR

`prepare` writes wheels for what the image lacks (scripts/gpu_kit_image.txt lists the common
CUDA image; `--image-packages` takes the GPU machine's own `pip list`), the embedded model's
GGUF, the project and the kit's own scripts, split into parts of at most `--part-mib` MiB
(default 60), grouped into transfers of at most `--transfer-mib` (default 64), with a
manifest.json saying which part goes in which transfer and every part's and file's sha256.
`run` joins and verifies the parts (a corrupt or missing part stops it, naming the part),
installs the wheels with `pip --no-index` into a folder of its own, and runs the checks
(gpu_kit_run.py) with HF_HUB_OFFLINE=1: nothing there touches a network.
`--dry` (both commands) is the CPU mode CI runs: a tiny model instead of the GGUF, no
downloads (the running environment stands for the image), tiny settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpu_kit_parts import KitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="write the kit (on a connected machine)")
    prepare.add_argument("--out", required=True, type=Path, help="the kit folder to write")
    prepare.add_argument(
        "--image-packages",
        type=Path,
        default=None,
        help="the GPU image's `pip list` or `pip freeze` (default: scripts/gpu_kit_image.txt)",
    )
    prepare.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    prepare.add_argument("--platform", default="manylinux_2_28_x86_64", help="its wheel platform")
    prepare.add_argument("--part-mib", type=float, default=60.0, help="largest part, MiB")
    prepare.add_argument("--transfer-mib", type=float, default=64.0, help="largest transfer, MiB")
    prepare.add_argument("--dry", action="store_true", help="CPU dry mode: see --model-dir")
    prepare.add_argument(
        "--model-dir", type=Path, default=None, help="dry mode: a small model folder to carry"
    )
    run = commands.add_parser("run", help="join, verify, install and run the checks (offline)")
    run.add_argument("kit", type=Path, help="the folder the transfers were unpacked into")
    run.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp)")
    run.add_argument("--dry", action="store_true", help="CPU dry mode: tiny settings")
    run.add_argument(
        "--steps",
        default="generation,dpo,smoke,runs",
        help="comma-separated subset of generation, dpo (throughput), smoke, runs",
    )
    run.add_argument("--budget-s", type=float, default=570.0, help="wall-clock budget, seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            from gpu_kit_prepare import prepare_kit

            prepare_kit(args)
        else:
            from gpu_kit_run import run_kit

            print(run_kit(args))
    except KitError as error:
        print(f"gpu_kit: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
