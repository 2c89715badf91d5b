"""PyTorch SDPA baselines (cuDNN and FlashAttention-2) for the shapes our GPU bench times.

Run on the GPU machine in the same call as `minference-gpu-bench` so that ratios compare
numbers from one card. Prints one JSON object per line: backend, n, ms, tflops (causal FLOPs).

    python3 sdpa.py [SIZES] [BACKENDS]      # e.g. 131072,262144 cudnn,flash

Past 512K tokens a call takes seconds: those sizes get one warm-up and one timed call (CUDA
events) instead of triton's repeated benchmark.
"""
import json
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import triton.testing

sizes = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [16384, 32768, 65536, 131072, 262144]
wanted = sys.argv[2].split(",") if len(sys.argv) > 2 else ["cudnn", "flash"]


def once(f):
    """Milliseconds of one call of `f` after one warm-up call."""
    f()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    f()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


heads, kv_heads, d = 32, 8, 128
for n in sizes:
    q = torch.randn(1, heads, n, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, kv_heads, n, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, kv_heads, n, d, device="cuda", dtype=torch.bfloat16)
    # GQA: flash and cuDNN take expanded K/V reliably; the copy is outside the timed region.
    ke = k.repeat_interleave(heads // kv_heads, dim=1)
    ve = v.repeat_interleave(heads // kv_heads, dim=1)
    flops = 4 * heads * d * n * n / 2
    for name, backend in [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)]:
        if name not in wanted:
            continue
        try:
            with sdpa_kernel([backend]):
                f = lambda: torch.nn.functional.scaled_dot_product_attention(q, ke, ve, is_causal=True)
                if n >= 524288:
                    ms = once(f)
                else:
                    ms = triton.testing.do_bench(f, warmup=50 if n < 131072 else 200, rep=200 if n < 131072 else 1000, return_mode="median")
            print(json.dumps({"backend": name, "n": n, "ms": ms, "tflops": flops / ms / 1e9}), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(json.dumps({"backend": name, "n": n, "error": str(e)[:200]}), flush=True)
    del q, k, v, ke, ve
    torch.cuda.empty_cache()
