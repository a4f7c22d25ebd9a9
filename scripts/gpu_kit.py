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
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

MIB = 2**20
MANIFEST = "manifest.json"
KIT_SCRIPTS = ("gpu_kit.py", "gpu_kit_run.py")
"""The kit's own files, carried whole in the first transfer: `run` needs them to start."""


class KitError(Exception):
    """A kit that cannot be made or used: one line saying what and where."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def split(path: Path, out: Path, part_bytes: int) -> list[dict]:
    """Cut `path` into `out/<name>.partNNN` files of at most `part_bytes`; their entries."""
    parts = []
    with open(path, "rb") as handle:
        while block := handle.read(part_bytes):
            part = out / f"{path.name}.part{len(parts):03d}"
            part.write_bytes(block)
            parts.append(
                {
                    "name": part.name,
                    "bytes": len(block),
                    "sha256": hashlib.sha256(block).hexdigest(),
                }
            )
    return parts


def pack(staging: Path, out: Path, part_bytes: int, transfer_bytes: int) -> dict:
    """Split every file of `staging` into parts under `out/parts`, group them (and the kit's
    scripts and manifest, first) into transfers, and write the manifest. Returns it."""
    if part_bytes > transfer_bytes:
        raise KitError(f"parts of {part_bytes} bytes cannot fit transfers of {transfer_bytes}")
    (out / "parts").mkdir(parents=True, exist_ok=True)
    files = []
    for path in sorted(p for p in staging.iterdir() if p.is_file()):
        entry = {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256(path)}
        entry["parts"] = split(path, out / "parts", part_bytes)
        files.append(entry)
    here = Path(__file__).parent
    scripts = [{"name": name, "sha256": sha256(here / name)} for name in KIT_SCRIPTS]
    first = sum((here / name).stat().st_size for name in KIT_SCRIPTS) + 64 * 1024  # + manifest
    transfers: list[list[str]] = [[]]
    room = transfer_bytes - first
    for part in (part for entry in files for part in entry["parts"]):
        if part["bytes"] > room:
            transfers.append([])
            room = transfer_bytes
        transfers[-1].append(part["name"])
        room -= part["bytes"]
    for number, names in enumerate(transfers, start=1):
        for name in names:
            next(p for f in files for p in f["parts"] if p["name"] == name)["transfer"] = number
    manifest = {
        "kit": 1,
        "part_bytes": part_bytes,
        "transfer_bytes": transfer_bytes,
        "scripts": scripts,
        "files": files,
        "transfers": [
            {"number": n, "parts": names, "bytes": sum(_part(files, x)["bytes"] for x in names)}
            for n, names in enumerate(transfers, start=1)
        ],
    }
    _lay_out_transfers(out, manifest, here)
    return manifest


def _part(files: list[dict], name: str) -> dict:
    return next(p for f in files for p in f["parts"] if p["name"] == name)


def _lay_out_transfers(out: Path, manifest: dict, scripts_dir: Path) -> None:
    """`out/transfer-N/` holds what the N-th transfer carries (hard links to the parts, so the
    kit takes its size once); transfer 1 also carries the scripts and the manifest. Everything
    unpacks into one folder on the GPU machine."""
    for transfer in manifest["transfers"]:
        folder = out / f"transfer-{transfer['number']}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for name in transfer["parts"]:
            os.link(out / "parts" / name, folder / name)
    first = out / "transfer-1"
    for script in manifest["scripts"]:
        shutil.copy2(scripts_dir / script["name"], first / script["name"])
    write_atomic(first / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def read_manifest(kit: Path) -> dict:
    path = kit / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise KitError(f"{path}: no manifest: carry transfer 1 into {kit}") from None
    except json.JSONDecodeError as error:
        raise KitError(f"{path}: not valid JSON (line {error.lineno}): carry it again") from None
    if manifest.get("kit") != 1:
        raise KitError(f"{path}: not a manifest of this kit's format (kit: 1)")
    return manifest


def join(kit: Path, out: Path) -> dict[str, Path]:
    """Verify every part against the manifest and join each file into `out`, verified again
    whole. Parts may sit in `kit` or in `kit/transfer-N` or `kit/parts`."""
    manifest = read_manifest(kit)
    joined = {}
    out.mkdir(parents=True, exist_ok=True)
    for entry in manifest["files"]:
        target = out / entry["name"]
        with open(target, "wb") as handle:
            for part in entry["parts"]:
                path = _find_part(kit, part)
                data = path.read_bytes()
                if len(data) != part["bytes"] or hashlib.sha256(data).hexdigest() != part["sha256"]:
                    raise KitError(
                        f"{path}: part of {entry['name']} is corrupt (size or sha256 differs from "
                        f"{MANIFEST}): carry transfer {part['transfer']} again"
                    )
                handle.write(data)
        if sha256(target) != entry["sha256"]:
            raise KitError(f"{target}: joined file's sha256 differs from {MANIFEST}")
        joined[entry["name"]] = target
    return joined


def _find_part(kit: Path, part: dict) -> Path:
    for folder in (kit, kit / "parts", kit / f"transfer-{part['transfer']}"):
        if (folder / part["name"]).is_file():
            return folder / part["name"]
    raise KitError(f"{kit}: part {part['name']} is missing: carry transfer {part['transfer']}")


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
    # Through the module `gpu_kit`, so the scripts beside it share one KitError.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_kit import main as kit_main

    sys.exit(kit_main())
