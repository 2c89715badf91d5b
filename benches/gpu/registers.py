#!/usr/bin/env python3
"""Registers and spills of the CUDA kernels CubeCL compiled in a run.

CubeCL compiles kernels at run time through NVRTC and reports nothing about register use; a
kernel that spills (local memory) can run at half its speed with no other sign. Run the bench
with `CUBECL_DEBUG_LOG=/tmp/cubecl.log` (CubeCL then logs every kernel's C++ source), then:

    python3 benches/gpu/registers.py /tmp/cubecl.log [NAME_SUBSTRING] [--keep DIR] [--sass]

Each logged kernel whose name contains NAME_SUBSTRING (default `sparse_flash`) is compiled
again with `nvcc` for the same target NVRTC used (sm_90a on Hopper) and `ptxas -v`'s lines
are printed: registers a unit, spill stores/loads, stack frame, shared memory. `--sass` also
disassembles each kernel (`cuobjdump -sass`, kept beside its source as `.sass`) and prints its
instruction count by opcode: where a kernel's issue slots go besides its tensor-core products.
"""

import os
import re
import subprocess
import sys
import tempfile
from collections import Counter


def kernels(log: str):
    """(name, C++ source) of every kernel compilation in a CubeCL log."""
    for block in log.split("[START_KERNEL_COMPILATION]")[1:]:
        block = block.split("[END_KERNEL_COMPILATION]")[0]
        name = re.search(r"^name: (.*)$", block, re.M)
        source = re.search(r"```cpp\n(.*?)\n```", block, re.S)
        if source:
            yield (name.group(1) if name else "?"), source.group(1)


def opcode_summary(sass: str) -> str:
    """`total N: OP count, ...` over the instructions of a `cuobjdump -sass` listing."""
    ops = Counter()
    for line in sass.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m:
            ops[m.group(1).split(".")[0]] += 1
    top = ", ".join(f"{op} {n}" for op, n in ops.most_common(24))
    return f"total {sum(ops.values())}: {top}"


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    keep = None
    if "--keep" in sys.argv:
        keep = sys.argv[sys.argv.index("--keep") + 1]
        args = [a for a in args if a != keep]
    log_path = args[0]
    pattern = args[1] if len(args) > 1 else "sparse_flash"
    arch = os.environ.get("ARCH", "90a")
    log = open(log_path, encoding="utf-8", errors="replace").read()
    seen = set()
    work = keep or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    for i, (name, source) in enumerate(kernels(log)):
        if pattern not in name or source in seen:
            continue
        seen.add(source)
        path = os.path.join(work, f"kernel{i}.cu")
        # NVRTC takes `uint64 *p = barrier_native_handle(..)` (a `uint64_t *`); nvcc does not.
        source = source.replace("uint64 *mbar_ptr", "auto *mbar_ptr")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        cmd = [
            "nvcc",
            f"-gencode=arch=compute_{arch},code=sm_{arch}",
            "-cubin",
            "-o",
            path + ".cubin",
            "--ptxas-options=-v",
            path,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        report = [
            line.strip()
            for line in (done.stdout + done.stderr).splitlines()
            if "registers" in line or "spill" in line or "error" in line
        ]
        print(f"{name[:160]}\n  " + "\n  ".join(report or ["(no ptxas report)"]))
        if "--sass" in sys.argv and done.returncode == 0:
            sass = subprocess.run(
                ["cuobjdump", "-sass", path + ".cubin"], capture_output=True, text=True
            ).stdout
            with open(path + ".sass", "w", encoding="utf-8") as f:
                f.write(sass)
            print("  " + opcode_summary(sass))
    return 0


if __name__ == "__main__":
    sys.exit(main())
