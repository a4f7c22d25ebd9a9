"""The efficacy sweep (`aries.sweep`, `bench/efficacy.py`): reports recomputed from the committed
evidence, resume without starting a process, equal budgets, paired statistics; the sweep end to
end on the tiny model under `-m slow`."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from aries import AriesError
from aries.backends import Sampling
from aries.core.jsonl import atomic_write_jsonl
from aries.core.testing import TINY_ARITHMETIC, tiny_run_config
from aries.evaluation.metrics import bootstrap_ci
from aries.method.sources import load_prompts, prompt_key
from aries.pipeline.runconfig import resolve_config
from aries.pipeline.rundir import RunDir
from aries.rewards.verifiers import Verifier
from aries.sweep import cli
from aries.sweep.heldout import evaluate_model, fresh_prompts, heldout_folder
from aries.sweep.report import share
from aries.sweep.spec import check_budgets, load_spec, run_config
from aries.sweep.stats import rewrite_rates, seeds_problems_ci

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "results" / "efficacy-runs"


@pytest.fixture
def checkout(tmp_path, monkeypatch, capsys):
    """A folder that looks like the repository to the sweep (bench/, configs/ and the committed
    evidence linked in, results/ empty), the working directory; returns a call of the sweep's
    main() in this process giving (exit code, stdout, stderr)."""
    for name in ("bench", "configs"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "efficacy-runs").symlink_to(EVIDENCE)
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def published_command(report: str) -> list[str]:
    """The arguments a committed report was made with (its JSON file records the command)."""
    command = json.loads((ROOT / "results" / f"{report}.json").read_text())["command"]
    return command.split()[2:]


@pytest.mark.parametrize("report", ["efficacy-x4-sft-vs-sft", "efficacy-validation-r0"])
def test_published_reports_recompute_byte_for_byte_from_the_evidence(checkout, tmp_path, report):
    code, _, err = checkout(*published_command(report), "--report-only", "--runs", str(EVIDENCE))
    assert code == 0, err[-3000:]
    for suffix in (".md", ".json"):
        recomputed = (tmp_path / "results" / report).with_suffix(suffix).read_bytes()
        assert recomputed == (ROOT / "results" / report).with_suffix(suffix).read_bytes()
    assert not list(EVIDENCE.glob("*.md")), "the evidence folder holds run files only"


def copy_runs(task: str, pool: str, names: list[str], target: Path) -> None:
    """The committed evidence of `names` as run directories under `target`, their configs'
    output_dir pointing there (the sweep's run folders, models left out)."""
    for name in names:
        shutil.copytree(EVIDENCE / task / pool / name, target / task / pool / name)
    for config in (target / task / pool).rglob("config.yaml"):
        data = yaml.safe_load(config.read_text())
        data["output_dir"] = str(target / task / pool)
        config.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def test_finished_runs_resume_without_a_process_and_archive_their_evidence(checkout, tmp_path):
    runs = tmp_path / "runs"
    copy_runs("gcd", "heldout", ["initial", "iterative-sft", "aries-sft-only"], runs)
    (tmp_path / "results" / "efficacy-runs").unlink()  # archive into an empty folder
    args = [*published_command("efficacy-gcd-sft-vs-sft"), "--runs", str(runs)]
    code, out, err = checkout(*args)
    assert code == 0, err[-3000:]
    assert out.count("finished already") == 7  # no process started for a finished run
    assert "evidence of 7 runs" in out
    text = (tmp_path / "results" / "efficacy-gcd-sft-vs-sft.md").read_text()
    assert text == (ROOT / "results" / "efficacy-gcd-sft-vs-sft.md").read_text()
    assert (runs / "heldout-efficacy-gcd-sft-vs-sft.md").read_text() == text
    archived = tmp_path / "results" / "efficacy-runs" / "gcd" / "heldout"
    original = EVIDENCE / "gcd" / "heldout" / "aries-sft-only" / "seed2" / "iter_1" / "eval.json"
    assert (archived / "aries-sft-only" / "seed2" / "iter_1" / "eval.json").read_bytes() == (
        original.read_bytes()
    )

    # another baseline: the pairs turn round
    code, _, err = checkout(*args, "--report-only", "--baseline", "aries-sft-only")
    assert code == 0, err[-3000:]
    swapped = json.loads((tmp_path / "results" / "efficacy-gcd-sft-vs-sft.json").read_text())
    assert swapped["baseline"] == "aries-sft-only"
    by_name = {v["name"]: v["iterations"][-1] for v in swapped["variants"]}
    assert by_name["aries-sft-only"]["gain_vs_baseline"] is None
    assert "baseline_round" in by_name["iterative-sft"]["gain_vs_baseline"]
    code, _, err = checkout(*args, "--report-only", "--baseline", "nope")
    assert code == 2 and "baseline 'nope' is not a variant name" in err

    # a run in progress (its last eval not done yet) is neither reported nor archived
    shutil.rmtree(tmp_path / "results" / "efficacy-runs")
    seed1 = runs / "gcd" / "heldout" / "iterative-sft" / "seed1"
    manifest = json.loads((seed1 / "manifest.json").read_text())
    manifest["iterations"]["1"]["stages"]["eval"]["status"] = "running"
    (seed1 / "manifest.json").write_text(json.dumps(manifest))
    (seed1 / "iter_1" / "eval.json").unlink()
    code, _, err = checkout(*args, "--report-only", "--report", "in-progress")
    assert code == 0, err[-3000:]
    report = json.loads((tmp_path / "results" / "in-progress.json").read_text())
    by_name = {v["name"]: v["iterations"] for v in report["variants"]}
    assert by_name["iterative-sft"] == []  # no iteration with every seed evaluated
    assert [row["iteration"] for row in by_name["aries-sft-only"]] == [2]
    assert (archived / "iterative-sft" / "seed0").is_dir()
    assert not (archived / "iterative-sft" / "seed1").exists()


def test_the_bench_entry_point_runs_the_sweep(checkout, tmp_path, monkeypatch):
    report = "efficacy-validation-onpolicy-1pair"
    args = [*published_command(report), "--report-only", "--runs", str(EVIDENCE)]
    monkeypatch.setattr(sys, "argv", ["bench/efficacy.py", *args])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(ROOT / "bench" / "efficacy.py"), run_name="__main__")
    assert exit.value.code == 0
    assert (tmp_path / "results" / f"{report}.md").read_text() == (
        (ROOT / "results" / f"{report}.md").read_text()
    )


def write_spec(tmp_path: Path, model: Path, aries_sets: list[str]) -> Path:
    config = tiny_run_config(model, "unused")  # the sweep sets name, output_dir and eval pools
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


def test_efficacy_bench_refuses_unequal_budgets(tmp_path, tiny_model_path, checkout):
    spec = write_spec(tmp_path, tiny_model_path, ["generation.samples=3"])
    code, _, err = checkout(str(spec), "--pool", "validation", "--report-only")
    assert code == 2
    assert "different numbers of responses per prompt" in err
    assert not (tmp_path / "runs").exists()


def test_temporal_self_rewarding_budget_counts_its_three_collections(tmp_path, tiny_model_path):
    """π_t's, π_0's (from t = 1 on) and the future model's responses all count: with answer +
    1 sample and 2 iterations that is 2 + 2 at t = 0 and 2 + 2 + 2 at t = 1: 5 per iteration."""
    spec = write_spec(tmp_path, tiny_model_path, ["generation.samples=1", "iterations=2"])
    data = yaml.safe_load(spec.read_text())
    data["variants"][1]["method"] = "temporal-self-rewarding"
    data["variants"][0]["set"] = ["generation.samples=4", "iterations=2"]
    spec.write_text(yaml.safe_dump(data))
    loaded = load_spec(spec)
    assert check_budgets(loaded, loaded.tasks[0]) == 5

    data["variants"][1]["set"] = ["generation.samples=1", "iterations=3"]  # 2 * 8/3 responses
    spec.write_text(yaml.safe_dump(data))
    loaded = load_spec(spec)
    with pytest.raises(AriesError, match="'aries': 5.33"):
        check_budgets(loaded, loaded.tasks[0])


def test_task_overrides_scale_every_variant_alike(tmp_path, tiny_model_path):
    """A task's `set` (e.g. more prompts per iteration) reaches the initial model's run and every
    variant's, under the variant's own overrides; training prompts exclude the other pool."""
    spec = write_spec(tmp_path, tiny_model_path, ["prompts.per_iteration=5"])
    data = yaml.safe_load(spec.read_text())
    data["tasks"][0]["set"] = ["prompts.per_iteration=7", "generation.max_new_tokens=9"]
    spec.write_text(yaml.safe_dump(data))
    loaded = load_spec(spec)
    task = loaded.tasks[0]
    idpo, aries = loaded.variants
    configs = [run_config(loaded, task, "validation", v, 0) for v in (None, idpo, aries)]
    assert [c["prompts"]["per_iteration"] for c in configs] == [7, 7, 5]
    assert {c["generation"]["max_new_tokens"] for c in configs} == {9}
    assert {s["seed"] for c in configs for s in c["eval"]["sources"]} == {11}
    assert {s["seed"] for c in configs for s in c["prompts"]["exclude"]} == {12}


def test_rewrite_rates_split_finding_from_fixing():
    """Two seeds, three problems, one refinement round: the counts of eval.json's rewrites over
    the previous round's right and wrong answers, and the wrong->right among rewritten wrong."""
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


def test_seeds_problems_ci_covers_the_mean_and_widens_with_seed_spread():
    rng = np.random.default_rng(1)
    agreeing = rng.normal(0.1, 0.5, size=(3, 400))
    low, high = seeds_problems_ci(agreeing)
    assert low < agreeing.mean() < high
    # the same problems, but one training seed far off: the interval must widen
    spread = agreeing + np.array([[0.0], [0.0], [1.0]])
    low2, high2 = seeds_problems_ci(spread)
    assert high2 - low2 > 2 * (high - low)
    # one seed: the problems alone decide, as in bootstrap_ci
    one = agreeing[:1]
    assert seeds_problems_ci(one) == pytest.approx(bootstrap_ci(one[0]), abs=0.02)
    with pytest.raises(ValueError):
        seeds_problems_ci(np.zeros(5))


def test_heldout_check_drops_trained_problems_and_evaluates_a_model_spec(tiny_model_path, tmp_path):
    """bench/heldout.py's parts: fresh problems minus those a run trained on, each model (a spec
    loaded with the hf backend) evaluated into the run's heldout-<seed> folder."""
    config = resolve_config(tiny_run_config(tiny_model_path, tmp_path))
    run = RunDir(tmp_path / "run")
    drawn = load_prompts({**TINY_ARITHMETIC, "seed": 7, "size": 4})
    atomic_write_jsonl(run.prompts(0), drawn[:2])  # the run trained on two of them
    prompts, dropped = fresh_prompts(config, [run], size=4, seed=7)
    assert dropped == 2
    assert {prompt_key(p) for p in prompts} == {prompt_key(p) for p in drawn[2:]}
    out = heldout_folder(run, 7) / "initial.json"
    result = evaluate_model(
        str(tiny_model_path),
        prompts,
        rounds=0,
        sampling=Sampling(max_new_tokens=3),
        out_path=out,
        verifier=Verifier(),
        n_resamples=20,
        progress=False,
    )
    assert result["model"] == str(tiny_model_path) and out.is_file()
    assert len(result["per_round"]) == 1 and result["per_round"][0]["n"] == 2


@pytest.mark.slow
def test_every_published_report_recomputes_from_the_evidence(checkout, tmp_path):
    """All of them, as the fast test does two. `efficacy-validation` is the exception: its first
    screen ran before the sweep archived evidence (results/README.md)."""
    reports = sorted(p.stem for p in (ROOT / "results").glob("efficacy*.json"))
    reports.append("methods-efficacy")
    reports.remove("efficacy-validation")
    for report in reports:
        args = [*published_command(report), "--report-only", "--runs", str(EVIDENCE)]
        code, _, err = checkout(*args)
        assert code == 0, err[-3000:]
        for suffix in (".md", ".json"):
            recomputed = (tmp_path / "results" / report).with_suffix(suffix).read_bytes()
            assert recomputed == (ROOT / "results" / report).with_suffix(suffix).read_bytes()


@pytest.mark.slow
def test_efficacy_bench_end_to_end_runs_every_seed_and_pairs_the_numbers(
    tmp_path, tiny_model_path, checkout
):
    """The sweep as a user runs it (its own process), training the tiny model: 5 runs."""
    spec = write_spec(tmp_path, tiny_model_path, [])
    (tmp_path / "results" / "efficacy-runs").unlink()  # archive here, not into the committed one
    command = [sys.executable, str(ROOT / "bench" / "efficacy.py"), str(spec)]
    done = subprocess.run(
        [*command, "--pool", "validation", "--quiet"], cwd=tmp_path, capture_output=True, text=True
    )
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
    assert "| aries | 1 | 1 |" in (tmp_path / "runs" / "validation.md").read_text()  # rewrites
    published = tmp_path / "results" / "efficacy-validation.json"
    assert json.loads(published.read_text()) == result
    assert not (tmp_path / "results" / "efficacy.json").exists()  # the held-out report is apart

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

    # a named report leaves the main ones as they are and archives the evidence of its runs only
    archived = tmp_path / "results" / "efficacy-runs" / "arith" / "validation"
    assert (archived / "aries" / "seed1" / "iter_0" / "eval.json").is_file()
    shutil.rmtree(tmp_path / "results" / "efficacy-runs")
    flags = "--pool validation --report-only --variants idpo --report some-methods".split()
    code, _, err = checkout(str(spec), *flags)
    assert code == 0, err[-3000:]
    assert sorted(p.name for p in archived.iterdir()) == ["idpo", "initial"]
    assert not list(archived.rglob("*.safetensors"))
    some = json.loads((tmp_path / "results" / "some-methods.json").read_text())
    assert [v["name"] for v in some["variants"]] == ["idpo"]
    assert "--report some-methods" in some["command"]
    assert json.loads(published.read_text()) == result
