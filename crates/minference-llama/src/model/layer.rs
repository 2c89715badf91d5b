//! One transformer layer: pre-norm grouped-query attention and a SwiGLU feed-forward.
//!
//! The layer is split where the model needs to interleave it with the attention op: the
//! row-wise parts ([`Layer::project`], [`Layer::finish`]) run on chunks of rows, the attention
//! between them sees every query of the layer at once (so Vertical-Slash estimates its index
//! from the prompt's true last queries, as MInference does).

use super::norm::RmsNorm;
use super::rope::Rope;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Weights of one layer; projections are stored `[in, out]` so rows multiply directly.
///
/// The projections that read the same rows are stored side by side and run as one product:
/// Q, K and V (`wqkv`, columns `[q | k | v]`), and the feed-forward's gate and up halves
/// (`w_gate_up`, `[gate | up]`). One wide matmul fills the GPU better than three or two narrow
/// ones (K and V are only `kv_heads · head_dim` wide), and each row is read once.
#[derive(Debug, Clone)]
pub struct Layer<B: Backend> {
    pub(crate) attn_norm: RmsNorm<B>,
    pub(crate) wqkv: Tensor<B, 2>,
    pub(crate) wo: Tensor<B, 2>,
    pub(crate) mlp_norm: RmsNorm<B>,
    pub(crate) w_gate_up: Tensor<B, 2>,
    pub(crate) w_down: Tensor<B, 2>,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

/// `x · w` for `x` of `[1, rows, in]` and `w` of `[in, out]`.
fn linear<B: Backend>(x: Tensor<B, 3>, w: &Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, rows, _] = x.dims();
    let out = w.dims()[1];
    x.reshape([b * rows, w.dims()[0]])
        .matmul(w.clone())
        .reshape([b, rows, out])
}

impl<B: Backend> Layer<B> {
    /// Queries, keys and values of `x` (`[1, rows, hidden]`, at positions `start..`), after
    /// RoPE, as `[1, heads, rows, head_dim]` and `[1, kv_heads, rows, head_dim]`.
    pub fn project(
        &self,
        x: Tensor<B, 3>,
        start: usize,
        rope: &Rope<B>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [b, rows, _] = x.dims();
        let x = self.attn_norm.forward(x);
        let split = |t: Tensor<B, 3>, heads: usize| {
            t.reshape([b, rows, heads, self.head_dim]).swap_dims(1, 2)
        };
        let (q_width, kv_width) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
        let qkv = linear(x, &self.wqkv);
        let q = split(qkv.clone().narrow(2, 0, q_width), self.heads);
        let k = split(qkv.clone().narrow(2, q_width, kv_width), self.kv_heads);
        let v = split(qkv.narrow(2, q_width + kv_width, kv_width), self.kv_heads);
        (rope.apply(q, start), rope.apply(k, start), v)
    }

    /// Adds the attention output (`[1, heads, rows, head_dim]`) and the feed-forward to the
    /// residual rows `h` (`[1, rows, hidden]`).
    pub fn finish(&self, h: Tensor<B, 3>, attention: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, heads, rows, d] = attention.dims();
        let attention = attention.swap_dims(1, 2).reshape([b, rows, heads * d]);
        let h = h + linear(attention, &self.wo);
        let x = self.mlp_norm.forward(h.clone());
        let intermediate = self.w_down.dims()[0];
        let gate_up = linear(x, &self.w_gate_up);
        let gate = silu(gate_up.clone().narrow(2, 0, intermediate));
        let up = gate_up.narrow(2, intermediate, intermediate);
        h + linear(gate * up, &self.w_down)
    }
}
