//! The reference engine on every backend: full budgets equal dense attention, the estimation
//! scores equal a naive host computation, dense attention equals naive f64 attention, and bad
//! input is refused. Instantiated for NdArray and for Vulkan (lavapipe in CI).

mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use common::{assert_close, host, naive_attention};
use minference::estimate::{block_sparse, vertical_slash};
use minference::reference::{attention_with_index, build_index, dense_attention};
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{
    sparse_attention, AttentionOptions, Geometry, LayerPatterns, MinferenceError, Pattern,
};

/// (batch, heads, kv_heads, n_queries, n_keys, query offset).
type Case = (usize, usize, usize, usize, usize, Option<usize>);

/// The shapes of the grid.
const GRID: &[Case] = &[
    (2, 3, 3, 1, 1, None),
    (2, 3, 1, 63, 63, None),
    (1, 4, 1, 64, 64, None),
    (2, 4, 2, 65, 65, None),
    (1, 3, 1, 1000, 1000, None),
    (1, 4, 1, 200, 1000, None),
    (2, 4, 1, 65, 300, Some(100)),
    (1, 2, 2, 4096, 4096, None),
];

fn draw<B: Backend>(
    device: &B::Device,
    case: Case,
    head_dim: usize,
    kind: InputKind,
    seed: u64,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let (batch, heads, kv_heads, n_queries, n_keys, query_offset) = case;
    generate(&SyntheticSpec {
        batch,
        heads,
        kv_heads,
        n_queries,
        n_keys,
        query_offset,
        head_dim,
        kind,
        seed,
    })
    .tensors::<B>(device)
}

fn full_budget_patterns(heads: usize, n: usize) -> LayerPatterns {
    let cycle = [
        Pattern::VerticalSlash {
            vertical: n,
            slash: n,
        },
        Pattern::BlockSparse {
            top_k: n.div_ceil(64),
        },
        Pattern::AShape { sink: 0, local: n },
        Pattern::Dense,
    ];
    LayerPatterns::new((0..heads).map(|h| cycle[h % cycle.len()]).collect()).unwrap()
}

pub fn full_budget_equals_dense<B: minference::SparseAttentionBackend>(device: &B::Device) {
    for (i, &case) in GRID.iter().enumerate() {
        let (_, heads, _, n_q, n_k, offset) = case;
        for kind in [InputKind::Random, InputKind::Structured] {
            let (q, k, v) = draw::<B>(device, case, 32, kind, 100 + i as u64);
            let options = AttentionOptions {
                query_offset: offset,
                scale: None,
            };
            let geometry = Geometry::new(n_q, n_k, offset).unwrap();
            let scale = 1.0 / (32f64).sqrt();
            let dense = host(&dense_attention(&q, &k, &v, &geometry, scale));
            let patterns = full_budget_patterns(heads, n_k);
            let sparse = host(
                &sparse_attention(q.clone(), k.clone(), v.clone(), &patterns, &options).unwrap(),
            );
            assert_close(
                &sparse,
                &dense,
                &format!("full budget vs dense, case {case:?}, {kind:?}"),
            );
            let index = build_index(&q, &k, &patterns, &geometry, scale);
            index.check_invariants().unwrap();
            assert!(
                (index.density() - 1.0).abs() < 1e-12,
                "full budget density {}",
                index.density()
            );
        }
    }
}

pub fn dense_equals_naive<B: Backend>(device: &B::Device) {
    for (i, &case) in GRID.iter().enumerate().filter(|(_, c)| c.4 <= 1000) {
        let (batch, heads, kv_heads, n_q, n_k, offset) = case;
        let (q, k, v) = draw::<B>(device, case, 16, InputKind::Random, 200 + i as u64);
        let geometry = Geometry::new(n_q, n_k, offset).unwrap();
        let scale = 0.25;
        let ours = host(&dense_attention(&q, &k, &v, &geometry, scale));
        let naive = naive_attention(
            &host(&q),
            &host(&k),
            &host(&v),
            [batch, heads, n_q, 16],
            (kv_heads, n_k),
            scale,
            |_, _, i, j| j <= geometry.query_offset + i,
        );
        assert_close(&ours, &naive, &format!("dense vs naive f64, case {case:?}"));
    }
}

pub fn index_attention_equals_naive<B: Backend>(device: &B::Device) {
    let patterns = LayerPatterns::new(vec![
        Pattern::VerticalSlash {
            vertical: 40,
            slash: 60,
        },
        Pattern::BlockSparse { top_k: 3 },
        Pattern::AShape { sink: 5, local: 70 },
        Pattern::VerticalSlash {
            vertical: 35,
            slash: 50,
        },
    ])
    .unwrap();
    for (i, &case) in [
        (2, 4, 2, 300, 300, None),
        (1, 4, 1, 130, 500, Some(333)),
        (2, 4, 4, 65, 65, None),
    ]
    .iter()
    .enumerate()
    {
        let (batch, heads, kv_heads, n_q, n_k, offset) = case;
        let (q, k, v) = draw::<B>(device, case, 16, InputKind::Structured, 300 + i as u64);
        let geometry = Geometry::new(n_q, n_k, offset).unwrap();
        let scale = 0.25;
        let index = build_index(&q, &k, &patterns, &geometry, scale);
        index.check_invariants().unwrap();
        assert!(
            index.density() < 1.0 || n_k < 128,
            "patterns should be sparse here"
        );
        let ours = host(&attention_with_index(&q, &k, &v, &index, scale));
        let masks: Vec<Vec<bool>> = (0..batch * heads)
            .map(|bh| index.mask_rows(bh / heads, bh % heads, 0..n_q))
            .collect();
        let naive = naive_attention(
            &host(&q),
            &host(&k),
            &host(&v),
            [batch, heads, n_q, 16],
            (kv_heads, n_k),
            scale,
            |b, h, i, j| masks[b * heads + h][i * n_k + j],
        );
        assert_close(
            &ours,
            &naive,
            &format!("sparse reference vs naive f64, case {case:?}"),
        );
    }
}

pub fn vertical_slash_scores_equal_naive<B: Backend>(device: &B::Device) {
    for (i, &case) in [
        (2, 4, 2, 100, 100, None),
        (1, 3, 1, 40, 300, Some(200)),
        (1, 2, 1, 1, 1, None),
    ]
    .iter()
    .enumerate()
    {
        let (batch, heads, kv_heads, n_q, n_k, offset) = case;
        let (q, k, _) = draw::<B>(device, case, 16, InputKind::Random, 400 + i as u64);
        let geometry = Geometry::new(n_q, n_k, offset).unwrap();
        let scale = 0.25;
        let scores = vertical_slash::scores(&q, &k, &geometry, scale);
        let (hq, hk) = (host(&q), host(&k));
        let last = n_q.min(64);
        let group = heads / kv_heads;
        for bh in 0..batch * heads {
            let (b, h) = (bh / heads, bh % heads);
            let mut vertical = vec![0.0f64; n_k];
            let mut slash = vec![0.0f64; geometry.last_position() + 1];
            for r in n_q - last..n_q {
                let pos = geometry.query_offset + r;
                let qi = &hq[((b * heads + h) * n_q + r) * 16..][..16];
                let logits: Vec<f64> = (0..=pos)
                    .map(|j| {
                        qi.iter()
                            .zip(&hk[((b * kv_heads + h / group) * n_k + j) * 16..][..16])
                            .map(|(x, y)| x * y)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                for (j, l) in logits.iter().enumerate() {
                    let p = (l - max).exp() / total;
                    vertical[j] += p;
                    slash[pos - j] += p;
                }
            }
            let ours_v: Vec<f64> = scores.vertical_of(bh).iter().map(|&x| x as f64).collect();
            let ours_s: Vec<f64> = scores.slash_of(bh).iter().map(|&x| x as f64).collect();
            assert_close(
                &ours_v,
                &vertical,
                &format!("vertical scores, case {case:?}, head {bh}"),
            );
            assert_close(
                &ours_s,
                &slash,
                &format!("slash scores, case {case:?}, head {bh}"),
            );
        }
    }
}

pub fn block_scores_equal_naive<B: Backend>(device: &B::Device) {
    let case = (2, 4, 2, 150, 330, None);
    let (batch, heads, kv_heads, n_q, n_k, offset) = case;
    let (q, k, _) = draw::<B>(device, case, 16, InputKind::Random, 500);
    let geometry = Geometry::new(n_q, n_k, offset).unwrap();
    let scores = block_sparse::scores(&q, &k, &geometry, 0.25);
    let (hq, hk) = (host(&q), host(&k));
    let pool = |data: &[f64], base: usize, rows: std::ops::Range<usize>| -> Vec<f64> {
        let count = rows.len() as f64;
        (0..16)
            .map(|c| rows.clone().map(|r| data[(base + r) * 16 + c]).sum::<f64>() / count)
            .collect()
    };
    for bh in 0..batch * heads {
        let (b, h) = (bh / heads, bh % heads);
        for m in 0..geometry.query_blocks() {
            let pq = pool(&hq, (b * heads + h) * n_q, geometry.block_rows(m));
            let expected: Vec<f64> = (0..geometry.key_blocks())
                .map(|kb| {
                    let pk = pool(
                        &hk,
                        (b * kv_heads + h / (heads / kv_heads)) * n_k,
                        kb * 64..((kb + 1) * 64).min(n_k),
                    );
                    pq.iter().zip(&pk).map(|(x, y)| x * y).sum::<f64>() * 0.25
                })
                .collect();
            let ours: Vec<f64> = scores.row(bh, m).iter().map(|&x| x as f64).collect();
            assert_close(
                &ours,
                &expected,
                &format!("block scores, head {bh}, block {m}"),
            );
        }
    }
}

pub fn structured_inputs_are_found<B: Backend>(device: &B::Device) {
    // The planted diagonals and columns must be among Vertical-Slash's picks, with or without
    // the power-law decay; with it, near diagonals must outscore far ones.
    for kind in [InputKind::Structured, InputKind::PowerLaw] {
        let spec = SyntheticSpec {
            batch: 1,
            heads: 4,
            kv_heads: 2,
            n_queries: 2000,
            n_keys: 2000,
            query_offset: None,
            head_dim: 64,
            kind,
            seed: 9,
        };
        let draw = generate(&spec);
        let (q, k, _) = draw.tensors::<B>(device);
        let geometry = Geometry::new(2000, 2000, None).unwrap();
        let scores = vertical_slash::scores(&q, &k, &geometry, 0.125);
        for h in 0..4 {
            let (columns, diagonals) =
                vertical_slash::select(scores.vertical_of(h), scores.slash_of(h), 100, 200);
            for &o in &draw.planted.diagonals[h / 2] {
                assert!(
                    diagonals.iter().any(|&d| (d as i64 - o as i64).abs() <= 2),
                    "{kind:?} head {h}: planted diagonal {o} (of {:?}) not found in {diagonals:?}",
                    draw.planted.diagonals[h / 2]
                );
            }
            for &c in &draw.planted.columns[h / 2] {
                assert!(
                    columns.contains(&(c as u32)),
                    "{kind:?} head {h}: planted column {c} not found"
                );
            }
            if kind == InputKind::PowerLaw {
                // Mean slash score of the diagonals that cross no planted structure: not near a
                // planted diagonal, and not through a sink column in the last 64 rows (rows
                // 1936..2000 cross column `c` on the diagonals `1936 − c ..= 1999 − c`).
                let planted = &draw.planted.diagonals[h / 2];
                let sinks = &draw.planted.columns[h / 2];
                let clean = |o: usize| {
                    planted.iter().all(|&p| p.abs_diff(o) > 2)
                        && sinks
                            .iter()
                            .all(|&c| !(1936 - c.min(1936)..=1999 - c).contains(&o))
                };
                let mean = |range: std::ops::Range<usize>| {
                    let kept: Vec<f32> = range
                        .filter(|&o| clean(o))
                        .map(|o| scores.slash_of(h)[o])
                        .collect();
                    kept.iter().sum::<f32>() / kept.len() as f32
                };
                let (near, far) = (mean(100..300), mean(1000..1900));
                assert!(
                    near > 1.2 * far,
                    "head {h}: no distance decay (near {near:.2e}, far {far:.2e})"
                );
            }
        }
    }
}

pub fn bad_input_is_refused<B: Backend + minference::SparseAttentionBackend>(device: &B::Device) {
    let t =
        |shape: [usize; 4]| Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let four = LayerPatterns::uniform(Pattern::Dense, 4).unwrap();
    let three = LayerPatterns::uniform(Pattern::Dense, 3).unwrap();
    let opts = AttentionOptions::default();
    // The error for Q, K and V of these shapes, under `patterns` and `o`.
    let refused = |[q, k, v]: [[usize; 4]; 3], patterns: &LayerPatterns, o: &AttentionOptions| {
        sparse_attention::<B>(t(q), t(k), t(v), patterns, o).unwrap_err()
    };
    let err = |shapes| refused(shapes, &four, &opts);
    let kv = [1, 2, 10, 8];
    assert!(matches!(
        err([[1, 4, 10, 8], [1, 3, 10, 8], [1, 3, 10, 8]]),
        MinferenceError::Grouping {
            q_heads: 4,
            kv_heads: 3
        }
    ));
    assert!(matches!(
        err([[1, 4, 10, 8], [1, 2, 10, 16], [1, 2, 10, 16]]),
        MinferenceError::Shape { what: "k", .. }
    ));
    assert!(matches!(
        err([[1, 4, 10, 8], [2, 2, 10, 8], [2, 2, 10, 8]]),
        MinferenceError::Shape { what: "k", .. }
    ));
    assert!(matches!(
        err([[1, 4, 10, 8], kv, [1, 2, 11, 8]]),
        MinferenceError::Shape { what: "v", .. }
    ));
    assert!(matches!(
        err([[1, 4, 0, 8], kv, kv]),
        MinferenceError::Empty { what: "q", .. }
    ));
    assert!(matches!(
        err([[1, 4, 10, 8], [1, 2, 0, 8], [1, 2, 0, 8]]),
        MinferenceError::Empty { what: "k", .. }
    ));
    assert!(matches!(
        err([[1, 4, 12, 8], kv, kv]),
        MinferenceError::QueryPastKeys { .. }
    ));
    let offset = AttentionOptions {
        query_offset: Some(5),
        scale: None,
    };
    assert!(matches!(
        refused([[1, 4, 6, 8], kv, kv], &four, &offset),
        MinferenceError::QueryPastKeys {
            query_offset: 5,
            n_queries: 6,
            n_keys: 10
        }
    ));
    assert!(matches!(
        refused([[1, 4, 10, 8], kv, kv], &three, &opts),
        MinferenceError::PatternCount {
            patterns: 3,
            heads: 4
        }
    ));
    // A scale that is not a number, and one so small that a masked score would no longer
    // vanish once scaled (the kernels' mask relies on it).
    for scale in [f64::NAN, 1.0e-30] {
        let bad_scale = AttentionOptions {
            query_offset: None,
            scale: Some(scale),
        };
        assert!(matches!(
            refused([[1, 4, 10, 8], kv, kv], &four, &bad_scale),
            MinferenceError::InvalidPattern { .. }
        ));
    }
}

macro_rules! suite {
    ($backend:ty, $device:expr) => {
        type B = $backend;
        #[test]
        fn full_budget_equals_dense() {
            super::full_budget_equals_dense::<B>(&$device)
        }
        #[test]
        fn dense_equals_naive() {
            super::dense_equals_naive::<B>(&$device)
        }
        #[test]
        fn index_attention_equals_naive() {
            super::index_attention_equals_naive::<B>(&$device)
        }
        #[test]
        fn vertical_slash_scores_equal_naive() {
            super::vertical_slash_scores_equal_naive::<B>(&$device)
        }
        #[test]
        fn block_scores_equal_naive() {
            super::block_scores_equal_naive::<B>(&$device)
        }
        #[test]
        fn structured_inputs_are_found() {
            super::structured_inputs_are_found::<B>(&$device)
        }
        #[test]
        fn bad_input_is_refused() {
            super::bad_input_is_refused::<B>(&$device)
        }
    };
}

#[cfg(feature = "ndarray")]
mod ndarray {
    suite!(minference::backend::Cpu, Default::default());
}

#[cfg(feature = "vulkan")]
mod vulkan {
    suite!(
        minference::backend::Vulkan,
        burn::backend::wgpu::WgpuDevice::default()
    );
}
