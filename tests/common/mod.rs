//! Helpers shared by the integration tests: comparisons and naive host references.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use minference::index::jump;
use minference::synthetic::{InputKind, SyntheticSpec};
use minference::{BlockSelection, Geometry, LayerPatterns, Pattern, SparseIndex};

/// Host copy of a tensor as f64.
pub fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f64> {
    t.to_data().iter::<f32>().map(f64::from).collect()
}

/// Relative Frobenius error ‖a − b‖ / ‖b‖, and the largest absolute difference.
pub fn errors(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "compared tensors differ in size");
    if let Some(i) = a.iter().position(|x| !x.is_finite()) {
        // Report instead of panicking so that the caller's message names the case.
        return (f64::INFINITY, a[i]);
    }
    let mut num = 0.0;
    let mut den = 0.0;
    let mut max = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        num += (x - y) * (x - y);
        den += y * y;
        max = max.max((x - y).abs());
    }
    ((num / den.max(f64::MIN_POSITIVE)).sqrt(), max)
}

/// Asserts `a ≈ b` to f32 precision (DESIGN §8: relative error ≤ 1e-5).
pub fn assert_close(a: &[f64], b: &[f64], what: &str) {
    let (rel, max) = errors(a, b);
    assert!(
        rel <= 1e-5 && max <= 1e-4,
        "{what}: relative error {rel:.3e}, max abs error {max:.3e}"
    );
}

/// Naive f64 attention on the host under `mask(b, h, row, key)`; q `[B,H,nq,d]`, k/v
/// `[B,Hkv,nk,d]` given as `(Hkv, nk)`, query head `h` reading KV head `h / (H / Hkv)`.
pub fn naive_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    qd: [usize; 4],
    (kv_heads, n_k): (usize, usize),
    scale: f64,
    mask: impl Fn(usize, usize, usize, usize) -> bool,
) -> Vec<f64> {
    let [batch, heads, n_q, d] = qd;
    let group = heads / kv_heads;
    let mut out = vec![0.0; batch * heads * n_q * d];
    for b in 0..batch {
        for h in 0..heads {
            let g = h / group;
            for i in 0..n_q {
                let qi = &q[((b * heads + h) * n_q + i) * d..][..d];
                let logits: Vec<Option<f64>> = (0..n_k)
                    .map(|j| {
                        mask(b, h, i, j).then(|| {
                            let kj = &k[((b * kv_heads + g) * n_k + j) * d..][..d];
                            qi.iter().zip(kj).map(|(x, y)| x * y).sum::<f64>() * scale
                        })
                    })
                    .collect();
                let max = logits
                    .iter()
                    .flatten()
                    .cloned()
                    .fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = logits
                    .iter()
                    .map(|l| l.map_or(0.0, |l| (l - max).exp()))
                    .collect();
                let total: f64 = weights.iter().sum();
                let o = &mut out[((b * heads + h) * n_q + i) * d..][..d];
                for (j, w) in weights.iter().enumerate() {
                    if *w > 0.0 {
                        let vj = &v[((b * kv_heads + g) * n_k + j) * d..][..d];
                        o.iter_mut().zip(vj).for_each(|(o, x)| *o += w / total * x);
                    }
                }
            }
        }
    }
    out
}

/// (batch, heads, kv_heads, n_queries, n_keys, query offset, head_dim)
pub type Case = (usize, usize, usize, usize, usize, Option<usize>, usize);

/// One pattern of each kind per head, cycling (full budgets included); the longest case stays
/// sparse.
pub fn patterns(heads: usize, n: usize) -> LayerPatterns {
    let cycle = [
        Pattern::VerticalSlash {
            vertical: 64,
            slash: 128,
        },
        Pattern::BlockSparse { top_k: 4 },
        Pattern::AShape {
            sink: 16,
            local: 200,
        },
        Pattern::Dense,
        Pattern::VerticalSlash {
            vertical: n,
            slash: n,
        },
    ];
    let first = if n >= 8192 { 1 } else { 0 }; // keep the longest case sparse
    LayerPatterns::new(
        (0..heads)
            .map(|h| cycle[(h + first) % cycle.len()])
            .collect(),
    )
    .unwrap()
}

/// A hand-made index with every edge an engine must handle: a tile running past the keys, 70
/// gathered columns (two chunks, the second partial), blocks with a single tile, tiles whose
/// keys jump (one around gathered columns), a query offset.
/// Returns the inputs' spec, the index and the softmax scale.
pub fn edge_case() -> (SyntheticSpec, SparseIndex, f64) {
    let (n_q, n_k, offset) = (130, 400, 270);
    let spec = SyntheticSpec {
        batch: 1,
        heads: 2,
        kv_heads: 1,
        n_queries: n_q,
        n_keys: n_k,
        query_offset: Some(offset),
        head_dim: 32,
        kind: InputKind::Random,
        seed: 5,
    };
    let g = Geometry::new(n_q, n_k, Some(offset)).unwrap();
    let block = |tiles: Vec<u32>, jumps: Vec<u32>, columns: Vec<u32>| BlockSelection {
        tiles,
        jumps,
        columns,
    };
    let blocks = [
        block(vec![336], vec![], (0..140).step_by(2).collect()),
        // Keys 100..120 and 170..214, then two tiles of consecutive keys.
        block(
            vec![100, 334, 398],
            vec![jump::encode(20, 50), 0, 0],
            vec![3],
        ),
        block(vec![390], vec![], vec![]),
        block(vec![270], vec![], vec![]),
        block(vec![334], vec![], vec![]),
        // Keys 10..60 and 63..77 around the gathered 60..63 (a jump of 3 keys).
        block(
            vec![10, 398],
            vec![jump::encode(50, 3), 0],
            vec![0, 1, 2, 60, 61, 62],
        ),
    ];
    let index = SparseIndex::pack(g, 1, 2, &blocks);
    index.check_invariants().unwrap();
    (spec, index, 0.125)
}

/// An engine under test: attention of q/k/v under an index with a scale, as host values.
pub type Engine<'a, B> =
    dyn Fn(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, &SparseIndex, f64) -> Vec<f64> + 'a;

/// Checks `engine` against the Burn-ops reference on every case of `grid`, random and
/// structured inputs, with the [`patterns`] cycle (seeds `seed_base + case`).
pub fn check_grid<B: minference::SparseAttentionBackend>(
    grid: &[Case],
    seed_base: u64,
    what: &str,
    engine: &Engine<'_, B>,
) {
    use minference::reference::{attention_with_index, build_index};
    let device = Default::default();
    for (i, &(batch, heads, kv_heads, n_q, n_k, offset, d)) in grid.iter().enumerate() {
        for kind in [InputKind::Random, InputKind::Structured] {
            let spec = SyntheticSpec {
                batch,
                heads,
                kv_heads,
                n_queries: n_q,
                n_keys: n_k,
                query_offset: offset,
                head_dim: d,
                kind,
                seed: seed_base + i as u64,
            };
            let (q, k, v) = minference::synthetic::generate(&spec).tensors::<B>(&device);
            let geometry = Geometry::new(n_q, n_k, offset).unwrap();
            let scale = 1.0 / (d as f64).sqrt();
            let index = build_index(&q, &k, &patterns(heads, n_k), &geometry, scale);
            let expected = host(&attention_with_index(&q, &k, &v, &index, scale));
            let got = engine(q, k, v, &index, scale);
            assert_close(
                &got,
                &expected,
                &format!("{what} vs reference, case {:?}, {kind:?}", grid[i]),
            );
        }
    }
}

/// Checks `engine` against the reference on the hand-made [`edge_case`] index.
pub fn check_edge_case<B: minference::SparseAttentionBackend>(what: &str, engine: &Engine<'_, B>) {
    let (spec, index, scale) = edge_case();
    let (q, k, v) = minference::synthetic::generate(&spec).tensors::<B>(&Default::default());
    let expected = host(&minference::reference::attention_with_index(
        &q, &k, &v, &index, scale,
    ));
    assert_close(&engine(q, k, v, &index, scale), &expected, what);
}
