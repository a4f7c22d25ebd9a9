# The two commands of the README. Both set up .venv on first use (scripts/setup.sh).
.PHONY: demo test lint setup

setup:
	./scripts/setup.sh dev

demo:
	./scripts/setup.sh
	HF_HUB_OFFLINE=1 .venv/bin/aries run --config configs/demo.yaml

test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q --durations=10

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
