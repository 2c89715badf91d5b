//! The CubeCL kernels against the reference on Vulkan (lavapipe in CI). The same kernels in
//! f32/f16/bf16 and both paths are checked on CUDA by `minference-gpu-bench` (benches/gpu).
//! Outputs are poisoned with NaN before each launch, so an unwritten element fails.

#![cfg(feature = "vulkan")]

mod common;

use burn::tensor::Tensor;
use common::{assert_close, host, Case};
use minference::cube;
use minference::reference::attention_with_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{BlockSelection, Geometry, SparseIndex};

type B = minference::backend::Vulkan;

/// Every n of the grid; the larger head dims on long rows too, which Mesa's lavapipe caps (its
/// loop limit splits them over several launches: `minference_kernels::sparse_flash::loop_cap`).
const GRID: &[Case] = &[
    (2, 3, 3, 1, 1, None, 32),
    (2, 3, 1, 63, 63, None, 32),
    (1, 4, 1, 64, 64, None, 16),
    (2, 4, 2, 65, 65, None, 32),
    (1, 3, 1, 1000, 1000, None, 32),
    (2, 4, 1, 65, 300, Some(100), 16),
    (1, 4, 4, 200, 1000, None, 32),
    (1, 2, 1, 4096, 4096, None, 16),
    (1, 1, 1, 8192, 8192, None, 32),
    (2, 3, 1, 65, 65, None, 64),
    (1, 4, 2, 200, 200, None, 128),
    (1, 2, 2, 100, 100, None, 48),
    (1, 4, 1, 4096, 4096, None, 64),
    (2, 4, 2, 65, 4096, Some(4000), 64),
    (1, 2, 1, 8192, 8192, None, 128),
];

fn kernel(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    index: &SparseIndex,
    scale: f64,
) -> Vec<f64> {
    let prim = |t: Tensor<B, 4>| t.into_primitive().tensor();
    let out =
        cube::attention_with_index(prim(q), prim(k), prim(v), index, scale, None, true).unwrap();
    host(&Tensor::<B, 4>::from_primitive(
        burn::tensor::TensorPrimitive::Float(out),
    ))
}

#[test]
fn kernel_equals_reference() {
    common::check_grid::<B>(GRID, 1000, "portable kernel", &kernel);
}

/// The hand-made edge index of [`common::edge_case`].
#[test]
fn kernel_handles_edge_indices() {
    common::check_edge_case::<B>("hand-made index", &kernel);
}

/// One query block over a long row at head_dim 128: 128 tiles, past lavapipe's loop cap in one
/// launch (it returned NaN rows before the launcher split rows at the cap).
#[test]
fn long_rows_within_loop_cap() {
    let device = Default::default();
    let (n_keys, head_dim) = (8192, 128);
    let spec = SyntheticSpec {
        batch: 1,
        heads: 1,
        kv_heads: 1,
        n_queries: 64,
        n_keys,
        query_offset: None,
        head_dim,
        kind: InputKind::Random,
        seed: 1,
    };
    let (q, k, v) = generate(&spec).tensors::<B>(&device);
    let g = Geometry::new(64, n_keys, None).unwrap();
    let index = SparseIndex::pack(
        g,
        1,
        1,
        &[BlockSelection {
            tiles: (0..n_keys as u32 / 64).map(|t| t * 64).collect(),
            ..Default::default()
        }],
    );
    let expected = host(&attention_with_index(&q, &k, &v, &index, 0.1));
    assert_close(
        &kernel(q, k, v, &index, 0.1),
        &expected,
        "128 tiles, head_dim 128",
    );
}
