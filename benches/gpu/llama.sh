#!/usr/bin/env bash
# Runs the Llama CLI on the GPU machine (device tool): SmolLM2-135M on CUDA, the same short
# generation in f32, bf16 and f16 (`--precision`), then (unless --generate-only) the needle
# evaluation dense vs the searched config in bf16.
#
# The device call can carry at most 64 MiB, so the release binary (built here with
#   cargo build --release --features cuda --bin minference)
# and the 93 MB GGUF travel in pieces over several calls (split -b 31000000 into .device/…);
# this script reassembles and checks the GGUF before running.
set -uo pipefail
# The CLI links fontconfig (plot text); the GPU machine has none, so the call carries it.
export LD_LIBRARY_PATH=".device/bin/lib:${LD_LIBRARY_PATH:-}"
out="${OUT:-/tmp/minference-out}"
mkdir -p "$out" weights/cache
gguf=weights/cache/SmolLM2-135M-Instruct.Q4_1.gguf
cat .device/m1/gguf.part00 .device/m1/gguf.part01 .device/m2/gguf.part02 .device/bin/gguf.part03 > "$gguf"
echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $gguf" | sha256sum --check || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
bin=.device/bin/minference
patterns=weights/patterns/SmolLM2-135M-Instruct.json
for precision in f32 bf16 f16; do
    echo "== --precision $precision"
    "$bin" generate "What is the capital of France?" --model "$gguf" --device cuda \
        --precision "$precision" --max-tokens 16 2>&1
done | tee "$out/generate.log"
[ "${1:-}" = "--generate-only" ] && exit 0
"$bin" eval --model "$gguf" --patterns "$patterns" --device cuda --tasks needle \
    --lengths 1024,4096,8000 --depths 0,0.5,1 --settings dense,searched \
    --out "$out/needle-cuda.md" 2>&1 | tee "$out/eval.log"
