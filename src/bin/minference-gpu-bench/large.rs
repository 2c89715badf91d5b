//! A layer past the kernels' 32-bit offsets, run in passes and checked head by head.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use minference::cube;
use minference::{Geometry, LayerPatterns, Pattern, SparseAttentionBackend};
use std::time::Instant;

use crate::compare::{host, max_err};
use crate::{Cuda, Device};

/// A layer past the kernels' 32-bit offsets runs in passes (`minference::split`): Llama-3-70B's
/// 64 query / 8 KV heads at 786 432 tokens (6.4 · 10⁹ query elements; a length whose divisors
/// Burn's 64-bit slice kernels launch with, for building the inputs). The whole layer's
/// device index must refuse with a typed error; the measured pass (split by the backend) must
/// give sampled heads, the last one included (whose offsets would have wrapped), exactly what
/// they give run alone.
pub(crate) fn large_layer_check(device: &Device) -> (String, bool) {
    type B = Cuda<half::bf16>;
    let (heads, kv_heads, n, d) = (64, 8, 786_432, 128);
    let group = heads / kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    // Burn's random fill takes at most 2³² elements a call: draw 8 heads at a time.
    let random = |h: usize| {
        let parts = (0..h.div_ceil(8))
            .map(|_| {
                Tensor::<B, 4>::random([1, 8.min(h), n, d], Distribution::Normal(0.0, 1.0), device)
                    .cast(burn::tensor::FloatDType::BF16)
            })
            .collect();
        Tensor::cat(parts, 1)
    };
    let (q, k, v) = (random(heads), random(kv_heads), random(kv_heads));
    let cycle = [
        Pattern::BlockSparse { top_k: 100 },
        Pattern::VerticalSlash {
            vertical: 100,
            slash: 200,
        },
        Pattern::AShape {
            sink: 64,
            local: 4096,
        },
    ];
    let patterns = LayerPatterns::new((0..heads).map(|h| cycle[h % 3]).collect()).unwrap();
    let g = Geometry::new(n, n, None).unwrap();
    let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
    let refused = match cube::device_index(prim(&q), prim(&k), &patterns, &g, scale) {
        Ok(_) => "built (no refusal)".to_string(),
        Err(e) => e.to_string(),
    };
    let refused_ok = refused.contains("2^32");
    let start = Instant::now();
    let whole =
        B::sparse_attention_measured(q.clone(), k.clone(), v.clone(), &patterns, g, scale).unwrap();
    B::sync(device).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut worst = 0.0f64;
    for h in [0, 29, heads - 1] {
        let kv = h / group;
        let alone = B::sparse_attention_measured(
            q.clone().slice([0..1, h..h + 1]),
            k.clone().slice([0..1, kv..kv + 1]),
            v.clone().slice([0..1, kv..kv + 1]),
            &patterns.range(h..h + 1),
            g,
            scale,
        )
        .unwrap();
        let split = whole.out.clone().slice([0..1, h..h + 1]);
        worst = worst.max(max_err(&host(&split), &host(&alone.out)));
    }
    let ok = refused_ok && worst <= 1e-3;
    (
        format!(
            "large layer (64/8 heads, {n} tokens, passes): whole-layer index refused ({}); split run {ms:.0} ms, density {:.3}; heads 0, 29, 63 vs alone: max diff {worst:.1e} {}",
            refused.chars().take(90).collect::<String>(),
            whole.density,
            if ok { "ok" } else { "FAIL" }
        ),
        ok,
    )
}
