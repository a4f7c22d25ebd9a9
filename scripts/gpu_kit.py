"""The GPU kit: everything a bare, offline CUDA machine needs to run aries' GPU checks, carried
in parts small enough for a transfer limit, then `run` there, a few steps per call, each step's
rows printed (and written to KIT/work/table.md) as they are made. docs/gpu-kit.md has the calls.

    # on a connected machine, with the project's environment (.venv/bin/python):
    python scripts/gpu_kit.py prepare            # writes gpu-kit/ (git ignores it)
    # carry gpu-kit/transfer-1 ... transfer-N to the GPU machine, into one folder KIT, then:
    python scripts/gpu_kit.py run KIT --steps install
    python scripts/gpu_kit.py run KIT --steps generation,dpo
    python scripts/gpu_kit.py run KIT --steps smoke,runs

`prepare` writes wheels for what the image lacks (scripts/gpu_kit_image.txt lists the common
CUDA image; `--image-packages` takes the GPU machine's own `pip list`), the embedded model's
GGUF, the project and the kit's own scripts, split into parts of at most `--part-mib` MiB
(default 55: a part and the project's working tree fit one 64 MiB transfer), grouped into
transfers of at most `--transfer-mib`, with a manifest.json saying which part goes in which
transfer and every part's and file's sha256. `run` finds the manifest in KIT or any
KIT/transfer-N, joins and verifies the parts (a corrupt or missing part stops it, naming the
part), installs the wheels with `pip --no-index` into KIT/work once, and runs the steps asked
for with HF_HUB_OFFLINE=1 within `--budget-s`: nothing there touches a network.
`--dry` (both commands) is the CPU mode CI runs: a tiny model instead of the GGUF, no
downloads (the running environment stands for the image), tiny settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpu_kit_parts import KitError

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "gpu-kit"
"""Where `prepare` writes by default: inside the checkout, ignored by git (.gitignore), so a
transfer tool that carries the working tree does not carry the kit with every call."""


def check_prepare_environment() -> None:
    """prepare reads the project's installed requirements: it needs the project's environment,
    not a bare interpreter (which has neither `packaging` nor aries-llm)."""
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.distribution("aries-llm")
        ready = importlib.util.find_spec("packaging") is not None
    except importlib.metadata.PackageNotFoundError:
        ready = False
    if not ready:
        raise KitError(
            f"prepare needs the project's environment (aries-llm and packaging installed), not "
            f"{sys.executable}: run it as .venv/bin/python scripts/gpu_kit.py prepare (after "
            f"scripts/setup.sh); the target Python is --python, not the one running prepare"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="write the kit (on a connected machine)")
    prepare.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="the kit folder to write (default gpu-kit/)"
    )
    prepare.add_argument(
        "--image-packages",
        type=Path,
        default=None,
        help="the GPU image's `pip list` or `pip freeze` (default: scripts/gpu_kit_image.txt)",
    )
    prepare.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    prepare.add_argument(
        "--platform",
        default="manylinux_2_28_x86_64",
        help="its newest wheel platform (older manylinux tags its glibc accepts are added)",
    )
    prepare.add_argument(
        "--build-python",
        default=None,
        help="an interpreter of --python's version to build wheels PyPI lacks (default: "
        "pythonX.Y on PATH)",
    )
    prepare.add_argument("--part-mib", type=float, default=55.0, help="largest part, MiB")
    prepare.add_argument("--transfer-mib", type=float, default=56.0, help="largest transfer, MiB")
    prepare.add_argument("--dry", action="store_true", help="CPU dry mode: see --model-dir")
    prepare.add_argument(
        "--model-dir", type=Path, default=None, help="dry mode: a small model folder to carry"
    )
    run = commands.add_parser("run", help="join, verify, install and run the checks (offline)")
    run.add_argument("kit", type=Path, help="the folder the transfer-N folders arrived in")
    run.add_argument(
        "--work", type=Path, default=None, help="install and output folder (default KIT/work)"
    )
    run.add_argument("--dry", action="store_true", help="CPU dry mode: tiny settings")
    run.add_argument(
        "--steps",
        default="install,generation,dpo,smoke,runs",
        help="comma-separated: install (and the import check) alone, or any of generation, "
        "dpo (throughput), smoke, runs (install is done once per work folder, then reused)",
    )
    run.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="wall-clock budget of this call, seconds (240: three calls and the machine's start "
        "fit 15 minutes)",
    )
    run.add_argument(
        "--seeds", default="0", help="runs: comma-separated seeds (two runs, recipe and DPO, each)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            check_prepare_environment()
            from gpu_kit_prepare import prepare_kit

            prepare_kit(args)
        else:
            from gpu_kit_run import run_kit

            run_kit(args)
    except KitError as error:
        print(f"gpu_kit: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
