"""A method is one declaration (aries.pipeline.methods): the toy method below, added in this file
only, is a choice of `method:` and of `--stop-before`, in the help and in `--check`'s plan, and
runs."""

import dataclasses

import pytest

from aries import AriesError
from aries.cli import build_parser
from aries.core.config import help_text
from aries.pipeline import stages
from aries.pipeline.loop import run
from aries.pipeline.methods import METHODS, Method, Plan, Step
from aries.pipeline.plan import describe_plan
from aries.pipeline.runconfig import RunConfig, resolve_config


def count(run_dir, config, t, session):
    """The toy's own stage: how many prompts iteration t drew."""
    return {"counted": len(run_dir.read_prompts(t))}


def one_iteration(config):
    if config.iterations != 1:
        raise AriesError("method toy runs iterations 1")


TOY = Method(
    "toy",
    "toy (draws prompts and counts them; a test's method)",
    Plan((), (Step("prompts", stages.prompts), Step("count", count))),
    resolve=one_iteration,
    describe={"count": "counts the prompts drawn"},
)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", TOY)


def test_a_declared_method_is_a_choice_in_the_help_plan_and_stop_before(toy, tmp_path):
    data = {"method": "toy", "iterations": 1, "output_dir": str(tmp_path)}
    config = resolve_config({**data, "eval": {"enabled": False}})
    plan = describe_plan(config)
    assert "method toy" in plan and "    count: counts the prompts drawn" in plan
    with pytest.raises(AriesError, match="method toy runs iterations 1"):
        resolve_config({"method": "toy", "iterations": 2})
    method_field = next(f for f in dataclasses.fields(RunConfig) if f.name == "method")
    assert TOY.summary in help_text(method_field)
    args = build_parser().parse_args(["run", "--config", "c.yaml", "--stop-before", "count"])
    assert args.stop_before == "count"
    config.prompts.per_iteration = 3
    manifest = run(config, progress=False)
    assert manifest["iterations"]["0"]["stages"]["count"]["counts"] == {"counted": 3}


def test_an_undeclared_method_is_refused_naming_the_declared_ones():
    with pytest.raises(
        AriesError, match=r"^method must be one of 'aries', .*'temporal-self-rewarding', not"
    ):
        resolve_config({"method": "toy"})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--config", "c.yaml", "--stop-before", "count"])
