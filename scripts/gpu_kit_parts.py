"""The GPU kit's parts: splitting files into parts with their sha256, the manifest that says
which part goes in which transfer, and joining and verifying them again (scripts/gpu_kit.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

MIB = 2**20
MANIFEST = "manifest.json"
KIT_SCRIPTS = ("gpu_kit.py", "gpu_kit_parts.py", "gpu_kit_run.py")
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


def pack(
    staging: Path, out: Path, part_bytes: int, transfer_bytes: int, target: dict | None = None
) -> dict:
    """Split every file of `staging` into parts under `out/parts`, group them (and the kit's
    scripts and manifest, first) into transfers, and write the manifest (with `target`: what
    the wheels are for and which they are). Returns it."""
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
        "target": target or {},
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


def find_manifest(kit: Path) -> Path:
    """The manifest in `kit` itself or in the transfer folder it arrived in (kit/transfer-1)."""
    for path in [kit / MANIFEST, *sorted(kit.glob(f"transfer-*/{MANIFEST}"))]:
        if path.is_file():
            return path
    raise KitError(f"{kit}: no {MANIFEST} in it or in its transfer-N folders: carry transfer 1")


def read_manifest(kit: Path) -> dict:
    path = find_manifest(kit)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise KitError(f"{path}: not valid JSON (line {error.lineno}): carry it again") from None
    if manifest.get("kit") != 1:
        raise KitError(f"{path}: not a manifest of this kit's format (kit: 1)")
    return manifest


def join(kit: Path, out: Path) -> dict[str, Path]:
    """Verify every part against the manifest and join each file into `out`, verified again
    whole. Parts may sit in `kit`, `kit/parts` or any `kit/transfer-N`."""
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
    folders = [kit, kit / "parts", kit / f"transfer-{part['transfer']}"]
    for folder in folders + sorted(kit.glob("transfer-*")):  # a transfer carried under another N
        if (folder / part["name"]).is_file():
            return folder / part["name"]
    raise KitError(f"{kit}: part {part['name']} is missing: carry transfer {part['transfer']}")
