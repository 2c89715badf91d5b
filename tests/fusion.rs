//! The op inside Burn's operation fusion (Burn's default for `Cuda`/`Wgpu`): registered as one
//! custom operation, ordered with the fused element-wise ops around it.

#![cfg(all(feature = "vulkan", feature = "fusion"))]

mod common;

use common::{assert_close, host};
use minference::backend::{Vulkan, VulkanFusion};
use minference::reference::attention_with_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{
    sparse_attention, AttentionOptions, Geometry, LayerPatterns, Pattern, SparseAttentionBackend,
};

#[test]
fn fused_backend_matches_reference() {
    let device = Default::default();
    let spec = SyntheticSpec {
        batch: 2,
        heads: 4,
        kv_heads: 2,
        n_queries: 130,
        n_keys: 300,
        query_offset: None,
        head_dim: 32,
        kind: InputKind::Structured,
        seed: 11,
    };
    let draw = generate(&spec);
    let patterns = LayerPatterns::new(vec![
        Pattern::VerticalSlash {
            vertical: 40,
            slash: 60,
        },
        Pattern::BlockSparse { top_k: 2 },
        Pattern::AShape { sink: 4, local: 64 },
        Pattern::Dense,
    ])
    .unwrap();
    let g = Geometry::new(130, 300, None).unwrap();
    let scale = 1.0 / (32f64).sqrt();

    // Plain backend: index and expected output.
    let (q, k, v) = draw.tensors::<Vulkan>(&device);
    let index =
        <Vulkan as SparseAttentionBackend>::build_index(&q, &k, &patterns, g, scale).unwrap();
    let expected = host(&(attention_with_index(&q, &k, &v, &index, scale) * 2.0));

    // Fused backend: element-wise ops before and after the custom op must stay in order.
    let (fq, fk, fv) = draw.tensors::<VulkanFusion>(&device);
    let fq = fq * 0.5 + 0.0;
    let fq = fq * 2.0;
    let out = <VulkanFusion as SparseAttentionBackend>::attention_with_index(
        fq.clone(),
        fk.clone(),
        fv.clone(),
        &index,
        scale,
        true,
    )
    .unwrap()
        * 2.0;
    assert_close(&host(&out), &expected, "fused attention_with_index");

    // And the public entry point, end to end, against the plain backend.
    let plain = host(&sparse_attention(q, k, v, &patterns, &AttentionOptions::default()).unwrap());
    let fused =
        host(&sparse_attention(fq, fk, fv, &patterns, &AttentionOptions::default()).unwrap());
    assert_close(&fused, &plain, "fused sparse_attention");
}

/// `sparse_attention_measured` (what the Llama pre-fill calls) through fusion: the inner
/// backend's device index and dense switch, the output back in the stream, in order with the
/// element-wise ops around it.
#[test]
fn fused_measured_matches_plain() {
    let device = Default::default();
    let spec = SyntheticSpec {
        batch: 1,
        heads: 4,
        kv_heads: 2,
        n_queries: 600,
        n_keys: 600,
        query_offset: None,
        head_dim: 32,
        kind: InputKind::Structured,
        seed: 5,
    };
    let draw = generate(&spec);
    let g = Geometry::new(600, 600, None).unwrap();
    let scale = 1.0 / (32f64).sqrt();
    let sparse = LayerPatterns::uniform(Pattern::BlockSparse { top_k: 1 }, 4).unwrap();
    // Sink and window cover every causal pair (where the backend switches to dense above some
    // density, this layer goes there; Vulkan has no switch, so both run it sparse).
    let full = LayerPatterns::uniform(
        Pattern::AShape {
            sink: 64,
            local: 1024,
        },
        4,
    )
    .unwrap();
    for (patterns, kept) in [(&sparse, 0.2..0.9), (&full, 1.0..1.01)] {
        let (q, k, v) = draw.tensors::<Vulkan>(&device);
        let plain = <Vulkan as SparseAttentionBackend>::sparse_attention_measured(
            q, k, v, patterns, g, scale,
        )
        .unwrap();
        let (fq, fk, fv) = draw.tensors::<VulkanFusion>(&device);
        let fused = <VulkanFusion as SparseAttentionBackend>::sparse_attention_measured(
            fq * 2.0 * 0.5,
            fk,
            fv,
            patterns,
            g,
            scale,
        )
        .unwrap();
        assert!(kept.contains(&plain.density), "density {}", plain.density);
        assert_eq!(fused.dense, plain.dense, "fused switch");
        assert_eq!(fused.density, plain.density, "fused density");
        assert_close(
            &host(&(fused.out * 3.0)),
            &host(&(plain.out * 3.0)),
            "fused sparse_attention_measured",
        );
    }
}
