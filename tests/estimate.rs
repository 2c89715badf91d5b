//! The device's Vertical-Slash scoring kernels against the Burn-ops estimate, on Vulkan
//! (lavapipe in CI): the same column and diagonal sums, and so the same index. On CUDA the
//! kernels are checked the same way by `minference-gpu-bench`.

#![cfg(feature = "vulkan")]

use burn::tensor::Tensor;
use minference::estimate::vertical_slash;
use minference::reference::{build_index, build_index_with, Estimates};
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{cube, Geometry, LayerPatterns, Pattern};

type B = minference::backend::Vulkan;

/// (batch, heads, kv_heads, n_queries, n_keys, query offset, head_dim, input)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    Option<usize>,
    usize,
    InputKind,
);

const CASES: &[Case] = &[
    (1, 2, 1, 1, 1, None, 16, InputKind::Random),
    (2, 3, 1, 63, 63, None, 32, InputKind::Random),
    (1, 4, 2, 65, 65, None, 64, InputKind::Structured),
    (2, 4, 4, 65, 300, Some(100), 16, InputKind::Random),
    (1, 4, 1, 100, 1000, None, 128, InputKind::Structured),
    (1, 3, 3, 1000, 1000, None, 48, InputKind::Random),
    (1, 2, 1, 4096, 4096, None, 64, InputKind::Structured),
];

fn spec(case: &Case) -> SyntheticSpec {
    let &(batch, heads, kv_heads, n_queries, n_keys, query_offset, head_dim, kind) = case;
    SyntheticSpec {
        batch,
        heads,
        kv_heads,
        n_queries,
        n_keys,
        query_offset,
        head_dim,
        kind,
        seed: 11,
    }
}

fn prim(t: &Tensor<B, 4>) -> burn_cubecl::tensor::CubeTensor<burn::backend::wgpu::WgpuRuntime> {
    t.clone().into_primitive().tensor()
}

/// Largest absolute difference, relative to the largest reference score (scores sum
/// probabilities over ≤ 64 rows, so they lie in [0, 64]).
fn max_rel_diff(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let top = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30) as f64;
    got.iter()
        .zip(want)
        .map(|(a, b)| {
            if a.is_finite() {
                (a - b).abs() as f64
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
        / top
}

#[test]
fn device_scores_equal_burn_ops_scores() {
    let device = Default::default();
    for case in CASES {
        let spec = spec(case);
        let (q, k, _) = generate(&spec).tensors::<B>(&device);
        let g = Geometry::new(spec.n_queries, spec.n_keys, spec.query_offset).unwrap();
        let scale = 1.0 / (spec.head_dim as f64).sqrt();
        let want = vertical_slash::scores(&q, &k, &g, scale);
        let got = cube::vertical_slash_scores(prim(&q), prim(&k), &g, scale).unwrap();
        assert_eq!(
            (got.n_keys, got.diagonals),
            (want.n_keys, want.diagonals),
            "{case:?}"
        );
        let v = max_rel_diff(&got.vertical, &want.vertical);
        let s = max_rel_diff(&got.slash, &want.slash);
        assert!(
            v < 1e-5 && s < 1e-5,
            "{case:?}: vertical {v:.2e}, slash {s:.2e}"
        );
        // Every row's probabilities sum to 1, so each head's vertical scores sum to its rows.
        let rows = spec.n_queries.min(64) as f32;
        for bh in 0..spec.batch * spec.heads {
            let total: f32 = got.vertical_of(bh).iter().sum();
            assert!(
                (total - rows).abs() < 1e-3 * rows,
                "{case:?}: head {bh} sums to {total}"
            );
        }
    }
}

/// With the device's scores the index is the one the Burn-ops estimate gives (structured input:
/// the picks are clear-cut, so rounding cannot reorder them).
#[test]
fn device_scores_give_the_same_index() {
    let device = Default::default();
    let spec = spec(&(1, 4, 2, 2000, 2000, None, 64, InputKind::Structured));
    let (q, k, _) = generate(&spec).tensors::<B>(&device);
    let g = Geometry::new(spec.n_queries, spec.n_keys, None).unwrap();
    let scale = 0.125;
    let patterns = LayerPatterns::uniform(
        Pattern::VerticalSlash {
            vertical: 64,
            slash: 128,
        },
        spec.heads,
    )
    .unwrap();
    let scores = cube::vertical_slash_scores(prim(&q), prim(&k), &g, scale).unwrap();
    let estimates = Estimates {
        vertical_slash: Some(scores),
        ..Default::default()
    };
    let ours = build_index_with(&q, &k, &patterns, &g, scale, estimates);
    let reference = build_index(&q, &k, &patterns, &g, scale);
    assert_eq!(ours, reference);
}

/// Shapes that do not fit are refused with an error, not launched.
#[test]
fn device_scores_refuse_a_wrong_geometry() {
    let device = Default::default();
    let spec = spec(&(1, 2, 1, 65, 65, None, 16, InputKind::Random));
    let (q, k, _) = generate(&spec).tensors::<B>(&device);
    let wrong = Geometry::new(64, 64, None).unwrap();
    assert!(cube::vertical_slash_scores(prim(&q), prim(&k), &wrong, 0.25).is_err());
}

/// The device's Block-Sparse picks against the host selection from Burn-ops block scores: the
/// same number of blocks per query block, the forced blocks always in, and the same picks up to
/// rounding ties (the host scores of the two pick sets agree to 1e-5 of their size).
#[test]
fn device_block_sparse_picks_equal_host_selection() {
    use minference::estimate::block_sparse;
    let device = Default::default();
    for (case, top_k) in [
        (&CASES[0], 3),
        (&CASES[1], 1),
        (&CASES[2], 2),
        (&CASES[3], 3),
        (&CASES[4], 4),
        (&CASES[5], 5),
        (&CASES[6], 16),
        (&CASES[6], 100),
    ] {
        let spec = spec(case);
        let (q, k, _) = generate(&spec).tensors::<B>(&device);
        let g = Geometry::new(spec.n_queries, spec.n_keys, spec.query_offset).unwrap();
        let scale = 1.0 / (spec.head_dim as f64).sqrt();
        let scores = block_sparse::scores(&q, &k, &g, scale);
        let picks = cube::block_sparse_picks(prim(&q), prim(&k), &g, top_k, scale)
            .unwrap()
            .expect("within the kernel's reach");
        for bh in 0..spec.batch * spec.heads {
            for m in 0..g.query_blocks() {
                let row = scores.row(bh, m);
                let want: Vec<u32> = block_sparse::select(row, &g, m, top_k)
                    .iter()
                    .map(|b| b * 64)
                    .collect();
                let got = picks.row(bh, m);
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{case:?} top {top_k}: head {bh} block {m}"
                );
                assert!(got.is_sorted(), "{case:?}: unsorted picks {got:?}");
                if got != want.as_slice() {
                    let forced = |tiles: &[u32]| {
                        let positions = g.block_positions(m);
                        let (first, last) = (positions.start / 64, (positions.end - 1) / 64);
                        (first..=last)
                            .chain(first.checked_sub(1))
                            .chain([0])
                            .all(|b| tiles.contains(&(b as u32 * 64)))
                    };
                    assert!(forced(got), "{case:?}: forced blocks missing from {got:?}");
                    let total = |tiles: &[u32]| -> f64 {
                        tiles.iter().map(|&t| row[t as usize / 64] as f64).sum()
                    };
                    let (a, b) = (total(got), total(&want));
                    assert!(
                        (a - b).abs() <= 1e-5 * (a.abs() + b.abs() + 1.0),
                        "{case:?} top {top_k}: head {bh} block {m}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }
}
