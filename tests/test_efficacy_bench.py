"""bench/efficacy.py end to end on the tiny model: runs, pools kept apart, paired numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from aries import AriesError
from aries.core.testing import TINY_ARITHMETIC, tiny_run_config
from aries.method.sources import load_prompts, prompt_key

ROOT = Path(__file__).resolve().parents[1]


def write_spec(tmp_path: Path, model: Path, aries_sets: list[str]) -> Path:
    config = tiny_run_config(model, "unused")  # the bench sets name, output_dir and eval pools
    config["generation"]["samples"] = 1
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(config))
    spec = {
        "output_dir": str(tmp_path / "runs"),
        "baseline": "idpo",
        "seeds": [0, 1],
        "tasks": [
            {
                "name": "arith",
                "config": str(tmp_path / "task.yaml"),
                "size": 5,
                "pools": {"validation": 11, "heldout": 12},
            }
        ],
        "variants": [
            {"name": "idpo", "method": "iterative-dpo", "set": ["generation.samples=2"]},
            {"name": "aries", "method": "aries", "set": aries_sets},
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "spec.yaml"


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The bench as a user runs it: its own process, from the folder the reports go under."""
    command = [sys.executable, str(ROOT / "bench" / "efficacy.py"), *args]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)


@pytest.fixture
def bench_here(tmp_path, monkeypatch, capsys):
    """The bench's main() in this process (no start-up cost) for the calls that train nothing;
    returns (exit code, stdout, stderr)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    monkeypatch.chdir(tmp_path)
    import efficacy

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["efficacy.py", *args])
        code = efficacy.main()
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def test_efficacy_bench_runs_every_seed_and_pairs_the_numbers(
    tmp_path, tiny_model_path, bench_here
):
    spec = write_spec(tmp_path, tiny_model_path, [])
    done = bench(tmp_path, str(spec), "--pool", "validation", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "runs" / "validation.json").read_text())
    assert [v["name"] for v in result["variants"]] == ["idpo", "aries"]
    for variant in result["variants"]:
        assert variant["seeds"] == [0, 1] and variant["n_heldout"] == 5
        assert variant["responses_per_prompt"] == 3
        (row,) = variant["iterations"]
        assert len(row["accuracy_per_round"]) == 2 and len(row["w2r_per_round"]) == 1
        for key in ("gain_vs_initial", "own_refinement_gain"):
            low, high = row[key]["ci95"]
            assert low <= row[key]["mean"] <= high
        assert row["generated_tokens"] > 0 and row["seconds_per_stage"]["train"] > 0
        (rewrites,) = row["rewrites_per_round"]  # 2 seeds x 5 problems, split by round 0
        assert rewrites["rewrote_right"][1] + rewrites["rewrote_wrong"][1] == 10
        assert rewrites["fixed_of_rewritten_wrong"][1] == rewrites["rewrote_wrong"][0]
    idpo, aries = result["variants"]
    assert idpo["iterations"][0]["gain_vs_baseline"] is None
    assert "baseline_round" in aries["iterations"][0]["gain_vs_baseline"]
    assert "| aries | 1 |" in (tmp_path / "runs" / "validation.md").read_text()
    assert "| aries | 1 | 1 |" in (tmp_path / "runs" / "validation.md").read_text()  # rewrites
    published = (tmp_path / "docs" / "efficacy-validation.json").read_text()
    assert json.loads(published) == result
    assert not (tmp_path / "docs" / "efficacy.json").exists()  # the held-out report is apart

    # training prompts never come from either pool; the pools come from distinct seeds
    pools = {
        seed: {prompt_key(p) for p in load_prompts({**TINY_ARITHMETIC, "seed": seed, "size": 5})}
        for seed in (11, 12)
    }
    assert pools[11] != pools[12]
    runs = [p for p in (tmp_path / "runs" / "arith" / "validation").glob("*/seed*") if p.is_dir()]
    assert len(runs) == 4
    for run in runs:
        trained = {
            prompt_key(json.loads(line))
            for line in (run / "iter_0" / "prompts.jsonl").read_text().splitlines()
        }
        assert trained and not trained & (pools[11] | pools[12])

    # a rerun resumes: nothing left to run, the same numbers
    code, out, _ = bench_here(str(spec), "--pool", "validation", "--quiet")
    assert code == 0
    assert out.count("finished already") == 5  # no process started for a finished run
    assert json.loads((tmp_path / "runs" / "validation.json").read_text()) == result

    # the evidence copied to docs/ (outcomes, manifests, no models) recomputes the same numbers
    evidence = tmp_path / "docs" / "efficacy-runs"
    assert (evidence / "arith" / "validation" / "idpo" / "seed1" / "iter_0" / "eval.json").is_file()
    assert not list(evidence.rglob("*.safetensors"))
    flags = "--pool validation --report-only --runs docs/efficacy-runs --report recomputed".split()
    code, _, err = bench_here(str(spec), *flags)
    assert code == 0, err[-3000:]
    assert (
        json.loads((tmp_path / "docs" / "recomputed.json").read_text())["variants"]
        == (result["variants"])
    )
    assert not list(evidence.glob("validation*")), "the evidence folder holds run files only"

    # another baseline: the pairs turn round (aries is compared with nothing, idpo with aries)
    code, _, err = bench_here(str(spec), *flags, "--baseline", "aries")
    assert code == 0, err[-3000:]
    swapped = json.loads((tmp_path / "docs" / "recomputed.json").read_text())
    assert swapped["baseline"] == "aries" and "--baseline aries" in swapped["command"]
    idpo, aries = swapped["variants"]
    assert aries["iterations"][0]["gain_vs_baseline"] is None
    assert "baseline_round" in idpo["iterations"][0]["gain_vs_baseline"]
    code, _, err = bench_here(str(spec), *flags, "--baseline", "nope")
    assert code == 2 and "baseline 'nope' is not a variant name" in err

    # a named report (e.g. docs/methods-efficacy.md) leaves the main ones as they are and
    # archives the evidence of its own runs only
    shutil.rmtree(evidence)
    flags = "--pool validation --report-only --variants idpo --report some-methods".split()
    code, _, err = bench_here(str(spec), *flags)
    assert code == 0, err[-3000:]
    assert sorted(p.name for p in (evidence / "arith" / "validation").iterdir()) == [
        "idpo",
        "initial",
    ]
    some = json.loads((tmp_path / "docs" / "some-methods.json").read_text())
    assert [v["name"] for v in some["variants"]] == ["idpo"]
    assert "--report some-methods" in some["command"]
    assert (tmp_path / "runs" / "validation-some-methods.md").is_file()
    assert json.loads(published) == json.loads(
        (tmp_path / "docs" / "efficacy-validation.json").read_text()
    )

    # a run in progress (its eval not done yet) is neither reported nor archived as evidence
    shutil.rmtree(evidence)
    seed1 = tmp_path / "runs" / "arith" / "validation" / "idpo" / "seed1"
    data = json.loads((seed1 / "manifest.json").read_text())
    data["iterations"]["0"]["stages"]["eval"]["status"] = "running"
    (seed1 / "manifest.json").write_text(json.dumps(data))
    (seed1 / "iter_0" / "eval.json").unlink()
    code, _, err = bench_here(str(spec), *flags)
    assert code == 0, err[-3000:]
    (idpo,) = json.loads((tmp_path / "docs" / "some-methods.json").read_text())["variants"]
    assert idpo["iterations"] == []  # no iteration with every seed evaluated
    assert (evidence / "arith" / "validation" / "idpo" / "seed0").is_dir()
    assert not (evidence / "arith" / "validation" / "idpo" / "seed1").exists()


def test_efficacy_bench_refuses_unequal_budgets(tmp_path, tiny_model_path, bench_here):
    spec = write_spec(tmp_path, tiny_model_path, ["generation.samples=3"])
    code, _, err = bench_here(str(spec), "--pool", "validation", "--report-only")
    assert code == 2
    assert "different numbers of responses per prompt" in err
    assert not (tmp_path / "runs").exists()


def test_temporal_self_rewarding_budget_counts_its_three_collections(
    tmp_path, tiny_model_path, monkeypatch
):
    """π_t's, π_0's (from t = 1 on) and the future model's responses all count: with answer +
    1 sample and 2 iterations that is 2 + 2 at t = 0 and 2 + 2 + 2 at t = 1: 5 per iteration."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import efficacy

    spec = write_spec(tmp_path, tiny_model_path, ["generation.samples=1", "iterations=2"])
    data = yaml.safe_load(spec.read_text())
    data["variants"][1]["method"] = "temporal-self-rewarding"
    data["variants"][0]["set"] = ["generation.samples=4", "iterations=2"]
    spec.write_text(yaml.safe_dump(data))
    loaded = efficacy.load_spec(spec)
    assert efficacy.check_budgets(loaded, loaded.tasks[0]) == 5

    data["variants"][1]["set"] = ["generation.samples=1", "iterations=3"]  # 2 * 8/3 responses
    spec.write_text(yaml.safe_dump(data))
    loaded = efficacy.load_spec(spec)
    with pytest.raises(AriesError, match="'aries': 5.33"):
        efficacy.check_budgets(loaded, loaded.tasks[0])


def test_task_overrides_scale_every_variant_alike(tmp_path, tiny_model_path, monkeypatch):
    """A task's `set` (e.g. more prompts per iteration) reaches the initial model's run and every
    variant's, under the variant's own overrides."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import efficacy

    spec = write_spec(tmp_path, tiny_model_path, ["prompts.per_iteration=5"])
    data = yaml.safe_load(spec.read_text())
    data["tasks"][0]["set"] = ["prompts.per_iteration=7", "generation.max_new_tokens=9"]
    spec.write_text(yaml.safe_dump(data))
    loaded = efficacy.load_spec(spec)
    task = loaded.tasks[0]
    idpo, aries = loaded.variants
    configs = [efficacy.run_config(loaded, task, "validation", v, 0) for v in (None, idpo, aries)]
    assert [c["prompts"]["per_iteration"] for c in configs] == [7, 7, 5]
    assert {c["generation"]["max_new_tokens"] for c in configs} == {9}


def test_rewrite_rates_split_finding_from_fixing(monkeypatch):
    """Two seeds, three problems, one refinement round: the counts of eval.json's rewrites over
    the previous round's right and wrong answers, and the wrong->right among rewritten wrong."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from efficacy_stats import rewrite_rates, share

    table = np.array([[[1, 1], [0, 1], [0, 0]], [[1, 0], [1, 1], [0, 0]]], dtype=float)
    evals = [
        {"per_round": [{}, {"rewrites": {"of_right": 0, "of_wrong": 2}}]},
        {"per_round": [{}, {"rewrites": {"of_right": 1, "of_wrong": 0}}]},
    ]
    (row,) = rewrite_rates(evals, table)
    assert row == {
        "round": 1,
        "rewrote_right": [1, 3],
        "rewrote_wrong": [2, 3],
        "fixed_of_rewritten_wrong": [1, 2],
    }
    assert share(row["rewrote_wrong"]) == "67 % (2/3)" and share([0, 0]) == "—"
    evals[1]["per_round"][1] = {}  # an evaluation from before rewrites were counted
    assert rewrite_rates(evals, table) is None
