#!/usr/bin/env bash
# Builds the CUDA bench binary here (no CUDA needed: NVRTC is loaded at run time on the GPU
# machine) and stages it in .device/, which the device call carries.
set -euo pipefail
cd "$(dirname "$0")/../.."
# `benches/gpu/build.sh autotune` adds Burn's autotune (what the Llama end-to-end rows of
# RESULTS.md since session 11 ran with); the kernel checks run without it.
features=cuda
[ "${1:-}" = autotune ] && features=cuda,autotune
cargo build --release --features "$features" --bin minference-gpu-bench
mkdir -p .device
cp "${CARGO_TARGET_DIR:-target}/release/minference-gpu-bench" .device/
strip .device/minference-gpu-bench 2>/dev/null || true
ls -la .device/
