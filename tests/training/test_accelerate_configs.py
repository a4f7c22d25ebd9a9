"""The shipped accelerate configs load with accelerate's own loader and name only real options."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser

CONFIGS = Path(__file__).resolve().parents[2] / "accelerate"
EXPECTED = {
    "ddp.yaml": ("MULTI_GPU", None),
    "deepspeed_zero2.yaml": ("DEEPSPEED", 2),
    "deepspeed_zero3.yaml": ("DEEPSPEED", 3),
    "fsdp2.yaml": ("FSDP", None),
}


def launch_options() -> set[str]:
    return {action.dest for action in launch_command_parser()._actions}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_for_one_node_of_eight_gpus(name):
    config = load_config_from_file(str(CONFIGS / name))  # rejects unknown top-level keys
    distributed_type, zero_stage = EXPECTED[name]
    assert config.distributed_type == distributed_type
    assert (config.num_machines, config.num_processes) == (1, 8)
    assert config.mixed_precision == "bf16"
    if zero_stage is not None:
        assert config.deepspeed_config["zero_stage"] == zero_stage
    if distributed_type == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
    # `accelerate launch` turns these sections into its own options: every key must be one.
    section = {**(config.deepspeed_config or {}), **(config.fsdp_config or {})}
    assert set(section) <= launch_options()


def test_every_shipped_config_is_tested():
    assert {path.name for path in CONFIGS.glob("*.yaml")} == set(EXPECTED)
