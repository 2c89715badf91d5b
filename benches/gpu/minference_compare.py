#!/usr/bin/env python3
"""MInference's own kernels on the exact inputs our GPU bench timed (issue 7's same-input row).

`minference-gpu-bench --dump-inputs DIR` writes the Q, K and V of each sweep size as
`DIR/{kind}-{n}-{q,k,v}.npy` (f32 holding bf16 values; Q `[1, 32, n, 128]`, K/V `[1, 8, n, 128]`).
This script loads them as bf16 and times, in one process and on one card, with CUDA events:

- `cudnn`: PyTorch SDPA on cuDNN, causal dense (the ratios' denominator);
- `mi-bs`: MInference's `block_sparse_attention(q, k, v, 100)` (pooled estimate + Triton kernel),
  all heads in one call, and `mi-bs-per-head`, one head at a time as MInference's pre-fill
  forward (`minference_prefill_forward`) calls it;
- `mi-vs`: Vertical-Slash (1000, 6096) as MInference's pre-fill runs it, one head at a time:
  the estimate from the last 64 queries (re-written here from `minference_prefill_kernel`:
  softmax of their logits, column sums, diagonal sums, the first 30 columns and the nearest 100
  diagonals forced in, top-k), then MInference's `vertical_slash_sparse_attention` (its CUDA
  index conversion and Triton kernel); `mi-vs-all-heads` the same with every head in one call.

MInference is not on the GPU machine and cannot be fetched there: download its sdist here
(`pip download` cannot, its metadata step imports torch) and carry it:

    curl -sLO https://files.pythonhosted.org/packages/a6/b6/b248d1792f7630d6b62eebefc7f6791befa1dbee4cd3948aa192ff9bbada/minference-0.1.6.0.tar.gz

On the GPU machine, with the sdist unpacked at SRC:

    python3 minference_compare.py SRC DIR SIZES KINDS   # e.g. /tmp/minference-0.1.6.0 /tmp/in 131072 structured,random

The CUDA extension (`minference.cuda`, the index conversion) is built in place on first use
(`setup.py build_ext --inplace`, sm_90). Only `minference.ops` is imported, not the package:
its `__init__` pulls in transformers and other model code the kernels do not need. Prints one
JSON object per line: impl, n, kind, ms (and once per input the share of causal pairs
MInference's Vertical-Slash kernel computes, `tile_density`).
"""
import importlib
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F


def load_minference(src: str):
    """MInference's kernel modules from an unpacked sdist, building its CUDA extension once."""
    package_dir = os.path.join(src, "minference")
    if not any(f.startswith("cuda") and f.endswith(".so") for f in os.listdir(package_dir)):
        env = dict(os.environ, MINFERENCE_FORCE_BUILD="TRUE", TORCH_CUDA_ARCH_LIST="9.0")
        subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"],
            cwd=src,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    # A bare package object: its submodules import, its `__init__` does not run.
    package = types.ModuleType("minference")
    package.__path__ = [package_dir]
    sys.modules["minference"] = package
    bs = importlib.import_module("minference.ops.block_sparse_flash_attention")
    vs = importlib.import_module("minference.ops.pit_sparse_flash_attention_v2")
    return bs.block_sparse_attention, vs.vertical_slash_sparse_attention, vs.convert_vertical_slash_indexes


def vs_tile_density(convert, q, k) -> float:
    """The share of the causal pairs MInference's Vertical-Slash kernel computes: its 64×64
    tiles and 64-row column chunks (as its kernel walks them) over `heads · n(n+1)/2`."""
    heads, n = q.shape[1], q.shape[2]
    columns, diagonals = vs_estimate(q, k, 1000, 6096)
    columns = columns.to(torch.int32).reshape(1, heads, -1).sort(dim=-1).values
    diagonals = diagonals.to(torch.int32).reshape(1, heads, -1).sort(dim=-1, descending=True).values
    seqlens = torch.tensor([n], dtype=torch.int32, device=q.device)
    block_count, _, column_count, _ = convert(seqlens, columns, diagonals, n, 64, 64)
    computed = block_count.double().sum() * 64 * 64 + column_count.double().sum() * 64
    return float(computed / (heads * n * (n + 1) / 2))


def diagonal_sums(p: torch.Tensor) -> torch.Tensor:
    """`out[..., t]`: the sum of `p[..., i, j]` over `j − i = t − (m − 1)` (t = the key of the
    last row), for `t < n`. Rows are skewed by reading the right-padded, row-flipped matrix with
    a row length one shorter than its own."""
    m, n = p.shape[-2:]
    flat = F.pad(p.flip(-2), (0, m)).flatten(-2)[..., : m * (n + m - 1)]
    return flat.reshape(*p.shape[:-2], m, n + m - 1).sum(-2)[..., :n]


def check_diagonal_sums():
    """`diagonal_sums` against a direct sum on a small random matrix."""
    p = torch.rand(2, 3, 5, 9, dtype=torch.float64)
    m, n = 5, 9
    expected = torch.zeros(2, 3, n, dtype=torch.float64)
    for t in range(n):
        for i in range(m):
            j = t - (m - 1) + i
            if 0 <= j < n:
                expected[..., t] += p[..., i, j]
    assert torch.allclose(diagonal_sums(p), expected), "diagonal_sums is wrong"


def vs_estimate(q, k, vertical, slash):
    """Column and diagonal choices from the last 64 queries (MInference's pre-fill estimate)."""
    n, d = q.shape[-2], q.shape[-1]
    vertical, slash = min(n, max(vertical, 30)), min(n, max(slash, 50))
    last = min(64, n)
    logits = torch.einsum("bhmk,bhnk->bhmn", q[:, :, -last:, :], k) / math.sqrt(d)
    causal = torch.ones(last, last, dtype=torch.bool, device=q.device).tril()
    logits[..., -last:] = logits[..., -last:].masked_fill(~causal, -torch.inf)
    p = torch.softmax(logits, dim=-1, dtype=torch.float32)
    columns = p.sum(-2, keepdim=True)
    columns[..., :30] = torch.inf
    diagonals = diagonal_sums(p)
    diagonals[..., -100:] = torch.inf
    return (
        torch.topk(columns, vertical, -1).indices,
        (n - 1) - torch.topk(diagonals, slash, -1).indices,
    )


def timed(f, reps: int) -> float:
    """Median milliseconds of `reps` calls after one warm-up."""
    f()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        f()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> int:
    src, inputs = sys.argv[1], sys.argv[2]
    sizes = [int(x) for x in sys.argv[3].split(",")]
    kinds = sys.argv[4].split(",")
    check_diagonal_sums()
    block_sparse_attention, vertical_slash_sparse_attention, convert = load_minference(src)
    for n in sizes:
        for kind in kinds:
            load = lambda t: torch.from_numpy(np.load(f"{inputs}/{kind}-{n}-{t}.npy")).to(
                "cuda", torch.bfloat16
            )
            q, k, v = load("q"), load("k"), load("v")
            heads = q.shape[1]
            # MInference's kernels take one K/V head per query head (the pre-fill forward
            # repeats them first); the copy is outside the timed region.
            k = k.repeat_interleave(heads // k.shape[1], dim=1).contiguous()
            v = v.repeat_interleave(heads // v.shape[1], dim=1).contiguous()
            reps = 3 if n >= 131072 else 10
            per_head = lambda f: lambda: [
                f(q[:, h : h + 1], k[:, h : h + 1], v[:, h : h + 1]) for h in range(heads)
            ]
            vs = lambda q, k, v: vertical_slash_sparse_attention(q, k, v, *vs_estimate(q, k, 1000, 6096))
            runs = {
                "cudnn": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                "mi-bs": lambda: block_sparse_attention(q, k, v, 100),
                "mi-bs-per-head": per_head(lambda q, k, v: block_sparse_attention(q, k, v, 100)),
                "mi-vs": per_head(vs),
                "mi-vs-all-heads": lambda: vs(q, k, v),
            }
            density = vs_tile_density(convert, q, k)
            print(json.dumps({"impl": "mi-vs", "n": n, "kind": kind, "tile_density": round(density, 5)}), flush=True)
            for name, f in runs.items():
                try:
                    if name == "cudnn":
                        from torch.nn.attention import SDPBackend, sdpa_kernel

                        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                            ms = timed(f, reps)
                    else:
                        ms = timed(f, reps)
                    print(json.dumps({"impl": name, "n": n, "kind": kind, "ms": round(ms, 3)}), flush=True)
                except Exception as e:  # noqa: BLE001 - report and go on
                    print(json.dumps({"impl": name, "n": n, "kind": kind, "error": str(e)[:300]}), flush=True)
                torch.cuda.empty_cache()
            del q, k, v
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
