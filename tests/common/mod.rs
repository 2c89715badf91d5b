//! Helpers shared by the integration tests: comparisons and naive host references.
#![allow(dead_code)]

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

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
