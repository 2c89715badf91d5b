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
