#!/usr/bin/env bash
# Builds the CUDA bench binary here (no CUDA needed: NVRTC is loaded at run time on the GPU
# machine) and stages it in .device/, which the device call carries.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --features cuda --bin minference-gpu-bench
mkdir -p .device
cp "${CARGO_TARGET_DIR:-target}/release/minference-gpu-bench" .device/
strip .device/minference-gpu-bench 2>/dev/null || true
ls -la .device/
