//! The references the kernel checks compare against: exact f64 attention on the host under
//! the index's mask, and a naive attention in the low-precision type itself.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor, TensorData};
use minference::synthetic::SyntheticSpec;
use minference::SparseIndex;

/// Exact reference on the host in f64 under the index's mask (heads spread over the cores).
pub(crate) fn host_reference(
    draw: &minference::synthetic::SyntheticQkv,
    spec: &SyntheticSpec,
    index: &SparseIndex,
    scale: f64,
) -> Vec<f32> {
    let q: Vec<f64> = draw.q.iter::<f32>().map(f64::from).collect();
    let k: Vec<f64> = draw.k.iter::<f32>().map(f64::from).collect();
    let v: Vec<f64> = draw.v.iter::<f32>().map(f64::from).collect();
    let (b_n, h_n, hkv, n_q, n_k, d) = (
        spec.batch,
        spec.heads,
        spec.kv_heads,
        spec.n_queries,
        spec.n_keys,
        spec.head_dim,
    );
    let mut out = vec![0f32; b_n * h_n * n_q * d];
    std::thread::scope(|scope| {
        for (bh, o) in out.chunks_mut(n_q * d).enumerate() {
            let (q, k, v) = (&q, &k, &v);
            scope.spawn(move || {
                let (b, h) = (bh / h_n, bh % h_n);
                let g = h / (h_n / hkv);
                let mask = index.mask_rows(b, h, 0..n_q);
                let kb = (b * hkv + g) * n_k * d;
                for i in 0..n_q {
                    let qi = &q[(bh * n_q + i) * d..][..d];
                    let logits: Vec<f64> = (0..n_k)
                        .map(|j| {
                            if mask[i * n_k + j] {
                                qi.iter()
                                    .zip(&k[kb + j * d..][..d])
                                    .map(|(x, y)| x * y)
                                    .sum::<f64>()
                                    * scale
                            } else {
                                f64::NEG_INFINITY
                            }
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let total: f64 = w.iter().sum();
                    for c in 0..d {
                        o[i * d + c] = ((0..n_k)
                            .filter(|&j| w[j] > 0.0)
                            .map(|j| w[j] * v[kb + j * d + c])
                            .sum::<f64>()
                            / total) as f32;
                    }
                }
            });
        }
    });
    out
}

/// Naive masked attention computed in `B`'s float type throughout (no fp32 upcast).
pub(crate) fn naive<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    index: &SparseIndex,
    scale: f64,
) -> Tensor<B, 4> {
    let [b, h, n_q, d] = q.dims();
    let [_, hkv, n_k, _] = k.dims();
    let mask = index.mask(0..n_q);
    let keep =
        Tensor::<B, 4, Bool>::from_data(TensorData::new(mask, [b, h, n_q, n_k]), &q.device());
    let s = q
        .clone()
        .reshape([b, hkv, (h / hkv) * n_q, d])
        .matmul(k.clone().swap_dims(2, 3))
        .reshape([b, h, n_q, n_k])
        .mul_scalar(scale);
    let p = softmax(s.mask_fill(keep.bool_not(), f32::NEG_INFINITY), 3).reshape([
        b,
        hkv,
        (h / hkv) * n_q,
        n_k,
    ]);
    p.matmul(v.clone()).reshape([b, h, n_q, d])
}
