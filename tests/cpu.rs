//! The host tile engine (NdArray's `attention_with_index`, `minference::cpu`) against the
//! Burn-ops reference, which computes every score and masks: random and structured inputs,
//! n ∈ {1, 63, 64, 65, 1000, 4096, 8192}, GQA groups 1/2/3/4, batch 2, query offsets, head dims
//! 16…128, and a hand-made index with every edge case.

#![cfg(feature = "ndarray")]

mod common;

use burn::tensor::Tensor;
use common::{assert_close, host, patterns, Case};
use minference::reference::{attention_with_index, build_index};
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, SparseAttentionBackend, SparseIndex};

type B = minference::backend::Cpu;

const GRID: &[Case] = &[
    (2, 3, 3, 1, 1, None, 32),
    (2, 3, 1, 63, 63, None, 64),
    (1, 4, 1, 64, 64, None, 16),
    (2, 4, 2, 65, 65, None, 128),
    (1, 3, 1, 1000, 1000, None, 64),
    (2, 4, 1, 65, 300, Some(100), 64),
    (1, 4, 4, 200, 1000, None, 48),
    (1, 3, 1, 4096, 4096, None, 64),
    (1, 2, 1, 8192, 8192, None, 128),
    (1, 2, 1, 1, 777, None, 64),
];

fn engine(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    index: &SparseIndex,
    scale: f64,
) -> Vec<f64> {
    host(&B::attention_with_index(q, k, v, index, scale, true).unwrap())
}

#[test]
fn cpu_engine_equals_reference() {
    common::check_grid::<B>(GRID, 2000, "cpu engine", &engine);
}

#[test]
fn cpu_engine_handles_edge_indices() {
    common::check_edge_case::<B>("cpu engine, hand-made index", &engine);
}

/// A non-contiguous input (a transposed view) is read in logical order, not memory order.
#[test]
fn cpu_engine_reads_strided_inputs() {
    let spec = SyntheticSpec {
        batch: 1,
        heads: 2,
        kv_heads: 2,
        n_queries: 100,
        n_keys: 100,
        query_offset: None,
        head_dim: 32,
        kind: InputKind::Random,
        seed: 9,
    };
    let device = Default::default();
    let (q, k, v) = generate(&spec).tensors::<B>(&device);
    // [1, n, heads, d] in memory, viewed as [1, heads, n, d].
    let seq_major =
        burn::tensor::Tensor::<B, 4>::from_data(q.clone().swap_dims(1, 2).into_data(), &device);
    let strided = seq_major.swap_dims(1, 2);
    let g = Geometry::new(100, 100, None).unwrap();
    let index = build_index(&q, &k, &patterns(2, 100), &g, 0.2);
    let expected = host(&attention_with_index(&q, &k, &v, &index, 0.2));
    let got = host(&B::attention_with_index(strided, k, v, &index, 0.2, false).unwrap());
    assert_close(&got, &expected, "strided q");
}
