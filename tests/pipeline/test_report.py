"""Report on a tiny synthetic run directory: files exist, PNGs decode, HTML is self-contained,
and it renders in a real headless Chromium (where `chromium` or Chrome is on PATH; Debian's
`chromium` package; skipped otherwise)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import matplotlib.image
import pytest

from aries.cli import main
from aries.core.jsonl import atomic_write_json, atomic_write_jsonl


def _eval(metrics: list[float]) -> dict:
    rows = []
    for k, value in enumerate(metrics):
        row = {
            "round": k,
            "n": 10,
            "metric": value,
            "ci95": [max(0.0, value - 0.1), min(1.0, value + 0.1)],
            "correct": round(10 * value),
            "mean_tokens": 50.0 + k,
            "mean_chars": 200.0,
            "truncated": 0,
        }
        if k:
            row["transitions"] = {"wrong_to_right": 2, "right_to_wrong": 1}
        rows.append(row)
    return {"metric": "accuracy", "benchmark": "gsm_symbolic", "scorer": "verifier",
            "per_round": rows}  # fmt: skip


def _chain(id: str) -> dict:
    texts = ["<script>alert(1)</script> 2+2 = 5", "2 + 2 = 4 | Answer: 4", "Answer: 4"]
    return {"id": id, "prompt": "What is 2 + 2?", "chain": [{"round": k, "text": text}
            for k, text in enumerate(texts)]}  # fmt: skip


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "demo"
    atomic_write_json(run / "eval_base.json", _eval([0.3, 0.2, 0.2]))
    atomic_write_json(run / "iter_0" / "eval.json", _eval([0.4, 0.45, 0.5]))
    atomic_write_json(run / "iter_1" / "eval.json", _eval([0.5, 0.6, 0.7]))
    atomic_write_jsonl(
        run / "iter_0" / "selections.jsonl",
        [{"id": str(i), "chosen_score": 1.0, "rejected_score": 0.0} for i in range(5)],
    )
    atomic_write_jsonl(
        run / "iter_1" / "scores.jsonl",
        [{"id": str(i), "chain_scores": [0.0, 1.0, None]} for i in range(4)],
    )
    atomic_write_jsonl(run / "iter_1" / "chains.jsonl", [_chain(str(i)) for i in range(4)])
    history = [
        {"step": s, "loss": 0.7 - 0.1 * s, "rewards/margins": 0.1 * s, "rewards/chosen": 0.05 * s,
         "rewards/rejected": -0.05 * s} for s in range(1, 4)
    ]  # fmt: skip
    atomic_write_json(run / "iter_0" / "model" / "log_history.json", history)
    atomic_write_json(
        run / "iter_1" / "model.checkpoints" / "checkpoint-2" / "trainer_state.json",
        {"log_history": history[:2]},
    )
    stage = {"status": "done", "seconds": 12.5, "peak_rss_mb": 900}
    atomic_write_json(
        run / "manifest.json",
        {
            "config_hash": "abc123",
            "baseline": {"stages": {"eval": {**stage, "seconds": 30.0}}},
            "iterations": {
                "0": {
                    "stages": {
                        "collect": stage,
                        "select": {**stage, "counts": {"kept": 7, "drop_counts": {
                            "all_correct": 3, "all_incorrect": 6}}},
                        "train": {**stage, "seconds": 100.0},
                    }
                },
                "1": {"stages": {"collect": stage}},
            },
        },
    )  # fmt: skip
    return run


def test_full_report(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    markdown = (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert pngs == ["metric_by_round.png", "rewards.png", "selection.png", "stages.png",
                    "training.png"]  # fmt: skip
    for name in pngs:
        image = matplotlib.image.imread(run_dir / "plots" / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert f"plots/{name}" in markdown
    assert page.count("src='data:image/png;base64,") == len(pngs)
    assert not re.search(r"(src|href)\s*=\s*['\"]?https?://", page)
    assert "not available" not in markdown
    # the central table: base and both iterations, every round
    assert "| iter 1 | 2 | 10 | 70.0% | [60.0, 80.0] |" in markdown
    assert "| base | 0 | 10 | 30.0% |" in markdown
    assert "| iter 0 | 7 | 3 | 6 |" in markdown  # kept, all_correct, all_incorrect
    assert "| base | eval | done | 30 | 900 |" in markdown
    assert "chosen vs rejected" in markdown and "round 1" in markdown
    assert "abc123" in markdown and "<b>accuracy</b>" in page


def test_empty_run_degrades_gracefully(tmp_path):
    run = tmp_path / "empty"
    (run / "iter_0").mkdir(parents=True)
    assert main(["report", str(run)]) == 0
    markdown = (run / "report.md").read_text()
    assert markdown.count("not available") == 7  # six sections and the manifest
    assert not list(run.rglob("*.png"))
    assert "<h2>Training curves</h2>" in (run / "report.html").read_text()


def test_report_of_missing_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_training_curves_from_tensorboard_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from aries.pipeline.report import load_training
    from aries.pipeline.rundir import RunDir

    writer = SummaryWriter(log_dir=str(tmp_path / "logs" / "iter_0"))
    for step in (1, 2):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("train/rewards/margins", 0.5 * step, step)
        writer.add_scalar("train/learning_rate", 1e-5, step)
    writer.close()
    curves = load_training(RunDir(tmp_path), 0)
    assert curves["loss"] == [(1, 1.0), (2, 0.5)]
    assert curves["rewards/margins"] == [(1, 0.5), (2, 1.0)]
    assert "learning_rate" not in curves


def test_each_stage_records_its_own_memory_peak(tmp_path, capsys):
    """A stage after a memory-hungry one reports its own peak, and a child's memory counts."""
    import subprocess
    import sys

    from aries.pipeline.runconfig import RunConfig
    from aries.pipeline.rundir import Manifest, RunDir

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    manifest = Manifest(run, RunConfig())
    with manifest.stage(0, "hungry"):
        block = b"\x01" * (300 * 2**20)  # written, so resident
        del block
    with manifest.stage(0, "light"):
        pass
    with manifest.stage(0, "child"):
        grow = "b = b'\\x01' * (200 * 2**20); import time; time.sleep(1.0)"
        subprocess.run([sys.executable, "-c", grow], check=True)
    stages = manifest.stages(0)
    growth = {k: v["peak_rss_mb"] - v["start_rss_mb"] for k, v in stages.items()}
    assert growth["hungry"] >= 290
    assert growth["light"] < 50
    assert stages["light"]["peak_rss_mb"] < stages["hungry"]["peak_rss_mb"] - 200
    assert growth["child"] >= 150  # sampled over the process tree
    assert main(["status", str(run.root)]) == 0
    light = stages["light"]
    line = f"light ✓ 0s {light['peak_rss_mb']} MB (+{growth['light']})"
    assert line in capsys.readouterr().out


def test_example_chains_of_iteration_0(tmp_path):
    run = tmp_path / "run"
    atomic_write_jsonl(run / "iter_0" / "chains.jsonl", [_chain("a"), _chain("b")])
    atomic_write_jsonl(
        run / "iter_0" / "scores.jsonl",
        [{"id": "a", "chain_scores": [1.0, 1.0, 1.0]}, {"id": "b", "chain_scores": [0, 1, 0]}],
    )
    pair = {"id": "a", "prompt": "What is 2 + 2?", "chosen": "Answer: 4", "rejected": "<b>5</b>",
            "chosen_score": 1.0, "rejected_score": 0.0, "chosen_from": "round:1",
            "rejected_from": "round:0"}  # fmt: skip
    atomic_write_jsonl(run / "iter_0" / "selections.jsonl", [pair])
    assert main(["report", str(run)]) == 0
    markdown = (run / "report.md").read_text()
    page = (run / "report.html").read_text()
    assert "1 iteration folder(s) (iter_0)" in markdown
    assert "## Example chain: wrong → right\n\nIteration 0, `b`: the reward rose" in markdown
    assert "## Example chain: right → wrong\n\nIteration 0, `b`: the reward fell" in markdown
    assert "## Example kept pair\n\nIteration 0, `a`: chosen from round:1, rejected" in markdown
    assert "| round 1 | 2 + 2 = 4 \\| Answer: 4 | 1 |" in markdown
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>5</b>" not in page and "&lt;b&gt;5&lt;/b&gt;" in page


BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
WIDTH = 1280

CHECK = """
<script>
window.errors = [];
window.addEventListener("error", e => window.errors.push(String(e.message || e.target.src)), true);
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({alt: i.alt, natural: i.naturalWidth,
                                                 shown: i.getBoundingClientRect().width}));
  const tables = [...document.querySelectorAll("table")].map(
      t => Math.ceil(t.getBoundingClientRect().right));
  const out = document.createElement("pre");
  out.id = "aries-check";
  out.textContent = JSON.stringify({errors: window.errors, images, tables,
                                    viewport: document.documentElement.clientWidth});
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.skipif(BROWSER is None, reason="no chromium/google-chrome on PATH (apt: chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("<head>", "<head>" + CHECK, 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WIDTH},900"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run(
        [BROWSER, *flags, "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    found = re.search(r'<pre id="aries-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert len(result["images"]) == 5
    for image in result["images"]:
        assert image["natural"] > 0 and image["shown"] >= 300, image
    assert result["tables"] and max(result["tables"]) <= result["viewport"], result
