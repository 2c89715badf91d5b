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

/// One layer mixing every pattern, its whole index built on the device, against the host
/// conversion of the same estimates: Vertical-Slash from the device's own scores (so exactly the
/// same picks, tiles and columns), A-shape and dense exactly, Block-Sparse against the host
/// selection from Burn-ops block scores up to rounding ties (same count, forced blocks in, and
/// the host scores of the two pick sets equal to 1e-5 of their size); the pairs counted on the
/// device equal the host count of the index read back.
#[test]
fn device_index_equals_host_conversion() {
    use minference::estimate::block_sparse;
    let device = Default::default();
    let mixes: [&[Pattern]; 3] = [
        &[
            // More diagonals than the 100 forced nearest ones, so that the chosen ones spread
            // into separate ranges and tiles jump between them (at 4096 keys).
            Pattern::VerticalSlash {
                vertical: 40,
                slash: 300,
            },
            // More than the (up to three) forced blocks, so that the rows are chosen by score.
            Pattern::BlockSparse { top_k: 12 },
            Pattern::AShape {
                sink: 5,
                local: 100,
            },
        ],
        &[
            Pattern::Dense,
            Pattern::VerticalSlash {
                vertical: 1000,
                slash: 6096,
            },
            Pattern::BlockSparse { top_k: 1 },
            Pattern::AShape { sink: 70, local: 1 },
        ],
        &[
            Pattern::BlockSparse { top_k: 16 },
            Pattern::VerticalSlash {
                vertical: 30,
                slash: 50,
            },
        ],
    ];
    let mut jumped = 0;
    for (i, case) in CASES.iter().enumerate() {
        let spec = spec(case);
        let mix = mixes[i % mixes.len()];
        let patterns =
            LayerPatterns::new((0..spec.heads).map(|h| mix[h % mix.len()]).collect()).unwrap();
        let (q, k, _) = generate(&spec).tensors::<B>(&device);
        let g = Geometry::new(spec.n_queries, spec.n_keys, spec.query_offset).unwrap();
        let scale = 1.0 / (spec.head_dim as f64).sqrt();
        let scores = cube::vertical_slash_scores(prim(&q), prim(&k), &g, scale).unwrap();
        let want = build_index_with(
            &q,
            &k,
            &patterns,
            &g,
            scale,
            Estimates {
                vertical_slash: Some(scores),
            },
        );
        let handles = cube::device_index(prim(&q), prim(&k), &patterns, &g, scale).unwrap();
        let density = cube::device_density(&prim(&q), &prim(&k), &handles, &g, scale).unwrap();
        let got = cube::download_index(&prim(&q).client, handles, g, spec.batch, spec.heads);
        // Pairs counted on the device equal the host count over the same index, exactly.
        assert_eq!(density, got.density(), "{case:?}: device density");
        let block_scores = block_sparse::scores(&q, &k, &g, scale);
        for b in 0..spec.batch {
            for h in 0..spec.heads {
                let bh = b * spec.heads + h;
                for m in 0..g.query_blocks() {
                    let at = format!("{case:?} {}: head {bh} block {m}", patterns.heads()[h]);
                    assert_eq!(got.columns(b, h, m), want.columns(b, h, m), "{at}");
                    assert_eq!(got.jumps(b, h, m), want.jumps(b, h, m), "{at}: jumps");
                    jumped += got.jumps(b, h, m).iter().filter(|&&j| j != 0).count();
                    let (got, want) = (got.tiles(b, h, m), want.tiles(b, h, m));
                    if !matches!(patterns.heads()[h], Pattern::BlockSparse { .. }) || got == want {
                        assert_eq!(got, want, "{at}");
                        continue;
                    }
                    assert_same_picks(got, want, block_scores.row(bh, m), &g, m, &at);
                }
            }
        }
    }
    // Vertical-Slash tiles that take keys across two ranges were compared.
    assert!(jumped > 0, "no tile jumped: the cases do not reach packing");
}

/// Block-Sparse picks of query block `m` against the host's: the same count, sorted, the forced
/// blocks in, and the host scores (`row`) of the two pick sets equal to 1e-5 of their size
/// (rounding may break a near-tie the other way).
fn assert_same_picks(got: &[u32], want: &[u32], row: &[f32], g: &Geometry, m: usize, at: &str) {
    assert_eq!(got.len(), want.len(), "{at}");
    assert!(got.is_sorted(), "{at}: unsorted picks {got:?}");
    for f in minference::estimate::block_sparse::forced_blocks(g, m) {
        assert!(got.contains(&(f * 64)), "{at}: {f} missing in {got:?}");
    }
    let total = |t: &[u32]| -> f64 { t.iter().map(|&x| row[x as usize / 64] as f64).sum() };
    let (a, w) = (total(got), total(want));
    assert!(
        (a - w).abs() <= 1e-5 * (a.abs() + w.abs() + 1.0),
        "{at}: {got:?} vs {want:?}"
    );
}

/// Block-Sparse rows past one launch of the device's scoring and selection (512 query blocks
/// a launch, in chunks of 64): 523 query blocks, not a multiple of 64 positions, with GQA and
/// three budgets, picked as the host picks from Burn-ops block scores.
#[test]
fn device_block_sparse_rows_past_one_launch_equal_the_host_selection() {
    use minference::estimate::block_sparse;
    let device = Default::default();
    let spec = spec(&(1, 4, 2, 33_450, 33_450, None, 16, InputKind::Structured));
    let patterns = LayerPatterns::new(
        [30, 7, 30, 100]
            .map(|top_k| Pattern::BlockSparse { top_k })
            .to_vec(),
    )
    .unwrap();
    let (q, k, _) = generate(&spec).tensors::<B>(&device);
    let g = Geometry::new(spec.n_queries, spec.n_keys, None).unwrap();
    let scale = 0.25;
    let want = build_index(&q, &k, &patterns, &g, scale);
    let handles = cube::device_index(prim(&q), prim(&k), &patterns, &g, scale).unwrap();
    let got = cube::download_index(&prim(&q).client, handles, g, spec.batch, spec.heads);
    let block_scores = block_sparse::scores(&q, &k, &g, scale);
    assert!(g.query_blocks() > 512);
    for h in 0..spec.heads {
        for m in 0..g.query_blocks() {
            let at = format!("head {h} block {m}");
            assert_eq!(got.columns(0, h, m), &[] as &[u32], "{at}");
            let (got, want) = (got.tiles(0, h, m), want.tiles(0, h, m));
            if got != want {
                assert_same_picks(got, want, block_scores.row(h, m), &g, m, &at);
            }
        }
    }
}

/// The sparse flash kernel fed by the device index equals the reference attention under the
/// index read back from the device (the output poisoned before the launch).
#[test]
fn attention_over_the_device_index_equals_the_reference() {
    let device = Default::default();
    let spec = spec(&(1, 4, 2, 300, 300, None, 32, InputKind::Structured));
    let (q, k, v) = generate(&spec).tensors::<B>(&device);
    let g = Geometry::new(spec.n_queries, spec.n_keys, None).unwrap();
    let scale = 1.0 / (spec.head_dim as f64).sqrt();
    let patterns = LayerPatterns::new(vec![
        Pattern::VerticalSlash {
            vertical: 30,
            slash: 50,
        },
        Pattern::BlockSparse { top_k: 2 },
        Pattern::AShape { sink: 4, local: 64 },
        Pattern::Dense,
    ])
    .unwrap();
    let handles = cube::device_index(prim(&q), prim(&k), &patterns, &g, scale).unwrap();
    let index = cube::download_index(&prim(&q).client, handles.clone(), g, 1, 4);
    let got = cube::attention_with_handles(
        prim(&q),
        prim(&k),
        prim(&v),
        &g,
        &handles,
        scale,
        None,
        true,
    )
    .unwrap();
    let got = Tensor::<B, 4>::from_primitive(burn::tensor::TensorPrimitive::Float(got));
    let want = minference::reference::attention_with_index(&q, &k, &v, &index, scale);
    let diff = (got - want).abs().max().into_scalar();
    assert!(diff < 1e-5, "max difference {diff}");
}

/// Inputs that do not match the geometry are refused before anything is launched.
#[test]
fn device_index_refuses_a_wrong_geometry() {
    let device = Default::default();
    let spec = spec(&(1, 2, 1, 65, 65, None, 16, InputKind::Random));
    let (q, k, _) = generate(&spec).tensors::<B>(&device);
    let wrong = Geometry::new(64, 64, None).unwrap();
    let patterns = LayerPatterns::uniform(Pattern::BlockSparse { top_k: 2 }, 2).unwrap();
    assert!(cube::device_index(prim(&q), prim(&k), &patterns, &wrong, 0.25).is_err());
}
