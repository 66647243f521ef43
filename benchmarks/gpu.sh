#!/usr/bin/env bash
# The training-step benchmark at 512 px (64x64 latents) in bf16 on one CUDA GPU, for a lent device.
# Prints seconds per step, samples/s and peak memory per case. Budget: under 5 minutes, most of it
# building the random SD 1.5-sized models (an estimate; not yet run on a GPU). It installs nothing:
# the Python there needs torch, diffusers, transformers, accelerate, safetensors, pydantic, pyyaml,
# typer, rich and opencc-python-reimplemented. Run from the repository root:
#   bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
out="${OUT:-/tmp}"

if ! python3 -c "import sys, torch, diffusers, transformers; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh needs a CUDA GPU and a Python with torch, diffusers and transformers" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/train_step.py --config sd15 --latent 64 --batch 8 --steps 5 --device cuda --dtype bfloat16 \
  --output "$out/gpu-train-step.json"
python3 - "$out/gpu-train-step.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for run in report["runs"]:
    for row in run["rows"]:
        print(f"{row['case']:28s} {row['batch'] / row['step_s']:7.2f} samples/s  "
              f"peak {row['resident_mb'] + row['step_memory_mb']:8.0f} MiB")
PY
