//! Layers run in passes over batch rows and KV heads (`minference::split`): what the Cube
//! backends do past the kernels' 32-bit offsets, checked here on small layers with the passes
//! forced, against the same layer in one pass.

#![cfg(feature = "vulkan")]

mod common;

use common::{assert_close, host};
use minference::backend::Vulkan;
use minference::cube::place;
use minference::split::{in_passes, slice_assign, Pass};
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Measured, Pattern, SparseAttentionBackend};

type B = Vulkan;

/// Batch 2, 8 query heads over 2 KV heads, 130 queries at offset 170 over 300 keys (neither a
/// multiple of 64), every pattern kind.
fn layer() -> (SyntheticSpec, LayerPatterns, Geometry, f64) {
    let spec = SyntheticSpec {
        batch: 2,
        heads: 8,
        kv_heads: 2,
        n_queries: 130,
        n_keys: 300,
        query_offset: None,
        head_dim: 32,
        kind: InputKind::Structured,
        seed: 21,
    };
    let patterns = LayerPatterns::new(vec![
        Pattern::VerticalSlash {
            vertical: 40,
            slash: 60,
        },
        Pattern::BlockSparse { top_k: 2 },
        Pattern::AShape { sink: 4, local: 64 },
        Pattern::Dense,
        Pattern::BlockSparse { top_k: 1 },
        Pattern::VerticalSlash {
            vertical: 8,
            slash: 16,
        },
        Pattern::Dense,
        Pattern::AShape {
            sink: 1,
            local: 100,
        },
    ])
    .unwrap();
    (spec, patterns, Geometry::new(130, 300, None).unwrap(), 0.2)
}

/// One pass per (batch row, KV head): the finest split.
fn finest() -> Vec<Pass> {
    (0..2)
        .flat_map(|row| {
            (0..2).map(move |kv| Pass {
                batch: row..row + 1,
                kv_heads: kv..kv + 1,
            })
        })
        .collect()
}

#[test]
fn measured_in_passes_equals_one_pass() {
    let device = Default::default();
    let (spec, patterns, g, scale) = layer();
    let (q, k, v) = generate(&spec).tensors::<B>(&device);
    let whole =
        B::sparse_attention_measured(q.clone(), k.clone(), v.clone(), &patterns, g, scale).unwrap();
    let run = |q, k, v, patterns: &LayerPatterns| {
        B::sparse_attention_measured(q, k, v, patterns, g, scale)
    };
    // The Cube backends' own placement (device copies), as they run large layers.
    let parts = in_passes(q, k, v, &patterns, &finest(), run, place).unwrap();
    assert!(
        (parts.density - whole.density).abs() < 1e-12,
        "density {} in passes, {} whole",
        parts.density,
        whole.density
    );
    assert_eq!(parts.dense, whole.dense);
    assert_close(&host(&parts.out), &host(&whole.out), "measured in passes");
}

#[test]
fn causal_and_forward_in_passes_equal_one_pass() {
    let device = Default::default();
    let (spec, patterns, g, scale) = layer();
    let (q, k, v) = generate(&spec).tensors::<B>(&device);
    // Two passes with two rows each over one KV head: the batch kept whole.
    let by_head = [
        Pass {
            batch: 0..2,
            kv_heads: 0..1,
        },
        Pass {
            batch: 0..2,
            kv_heads: 1..2,
        },
    ];
    let forward = |q, k, v, patterns: &LayerPatterns| {
        Ok(Measured {
            out: B::sparse_attention_forward(q, k, v, patterns, g, scale)?,
            density: 0.0,
            dense: false,
        })
    };
    let whole =
        B::sparse_attention_forward(q.clone(), k.clone(), v.clone(), &patterns, g, scale).unwrap();
    let parts = in_passes(
        q.clone(),
        k.clone(),
        v.clone(),
        &patterns,
        &by_head,
        forward,
        place,
    )
    .unwrap();
    assert_close(&host(&parts.out), &host(&whole), "forward in passes");

    let causal = |q, k, v, _: &LayerPatterns| {
        Ok(Measured {
            out: B::causal_attention(q, k, v, g, scale)?,
            density: 1.0,
            dense: true,
        })
    };
    let whole = B::causal_attention(q.clone(), k.clone(), v.clone(), g, scale).unwrap();
    // Burn's own placement, which any backend has.
    let parts = in_passes(q, k, v, &patterns, &finest(), causal, slice_assign).unwrap();
    assert_close(&host(&parts.out), &host(&whole), "causal in passes");
}

#[test]
fn passes_that_miss_heads_are_an_error() {
    let device = Default::default();
    let (spec, patterns, g, scale) = layer();
    let (q, k, v) = generate(&spec).tensors::<B>(&device);
    let first_row_only = &finest()[..2];
    let run = |q, k, v, patterns: &LayerPatterns| {
        B::sparse_attention_measured(q, k, v, patterns, g, scale)
    };
    let result = in_passes(q, k, v, &patterns, first_row_only, run, place);
    let Err(err) = result else {
        panic!("half the layer is not the layer");
    };
    assert!(
        err.to_string().contains("cover 2 of the layer's 4"),
        "{err}"
    );
}
