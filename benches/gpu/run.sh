#!/usr/bin/env bash
# Runs on the GPU machine (device tool): checks + sweep of our kernels, then PyTorch SDPA on the
# same shapes, all in one call so that ratios compare numbers from one card.
#   benches/gpu/build.sh here, then in the device call:  bash benches/gpu/run.sh [SIZES]
set -uo pipefail
sizes="${1:-16384,32768,65536,131072,262144}"
out="${OUT:-/tmp/minference-out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
bin=.device/minference-gpu-bench
"$bin" --sizes "$sizes" --json "$out/ours.json" 2>&1 | tee "$out/ours.log"
echo "bench exit: ${PIPESTATUS[0]}"
python3 benches/gpu/sdpa.py "$sizes" 2>&1 | tee "$out/sdpa.jsonl"
