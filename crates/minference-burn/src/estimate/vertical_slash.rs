//! Vertical-Slash index estimation from the last queries (MInference's rule).
//!
//! `p = softmax(q_last · Kᵀ · scale)` in fp32 over the last `min(64, n)` queries, causal (which
//! only masks inside the final 64×64); column sums of `p` score the verticals, sums along each
//! diagonal `o = position − key` score the slashes. The first 30 columns and the 100 nearest
//! diagonals are always kept; budgets are clamped to `v ∈ [30, n_keys]`, `s ∈ [50, diagonals]`.

use super::pick;
use crate::index::Geometry;
use crate::pattern::{FORCED_SLASH, FORCED_VERTICAL, LAST_Q, MIN_SLASH, MIN_VERTICAL};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Tensor, TensorData};

/// Column and diagonal scores of every (batch, head).
#[derive(Debug, Clone)]
pub struct VerticalSlashScores {
    /// `[batch * heads, n_keys]` column sums of the last queries' attention.
    pub vertical: Vec<f32>,
    /// `[batch * heads, diagonals]`; entry `o` sums the attention at offset `o`.
    pub slash: Vec<f32>,
    /// Keys.
    pub n_keys: usize,
    /// Diagonals: `last_position + 1`.
    pub diagonals: usize,
}

impl VerticalSlashScores {
    /// Vertical scores of flat head `bh = b * heads + h`.
    pub fn vertical_of(&self, bh: usize) -> &[f32] {
        &self.vertical[bh * self.n_keys..][..self.n_keys]
    }

    /// Slash scores of flat head `bh`.
    pub fn slash_of(&self, bh: usize) -> &[f32] {
        &self.slash[bh * self.diagonals..][..self.diagonals]
    }
}

/// Budgets actually used for `(vertical, slash)` on this geometry.
pub fn clamp_budgets(vertical: usize, slash: usize, geometry: &Geometry) -> (usize, usize) {
    let diagonals = geometry.last_position() + 1;
    (
        vertical.max(MIN_VERTICAL).min(geometry.n_keys),
        slash.max(MIN_SLASH).min(diagonals),
    )
}

/// Scores every column and diagonal for all heads; `q` is `[B, H, n_q, d]`, `k` is
/// `[B, H_kv, n_k, d]` (grouped-query heads share their KV head, nothing is copied).
pub fn scores<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    geometry: &Geometry,
    scale: f64,
) -> VerticalSlashScores {
    let [batch, heads, n_q, d] = q.dims();
    let kv_heads = k.dims()[1];
    let group = heads / kv_heads;
    let n_k = geometry.n_keys;
    let last = LAST_Q.min(n_q);
    let device = q.device();
    let first_position = geometry.query_offset + n_q - last;

    let q_last = q.clone().narrow(2, n_q - last, last).cast(FloatDType::F32);
    let k32 = k.clone().cast(FloatDType::F32);
    let logits = q_last
        .reshape([batch, kv_heads, group * last, d])
        .matmul(k32.swap_dims(2, 3))
        .reshape([batch, heads, last, n_k])
        .mul_scalar(scale);

    let hidden: Vec<bool> = (0..last)
        .flat_map(|i| (0..n_k).map(move |j| j > first_position + i))
        .collect();
    let hidden =
        Tensor::<B, 4, Bool>::from_data(TensorData::new(hidden, [1, 1, last, n_k]), &device)
            .expand([batch, heads, last, n_k]);
    let p = softmax(logits.mask_fill(hidden, f32::NEG_INFINITY), 3);

    let vertical = p.clone().sum_dim(2);

    // Diagonal sums: row `i` (position `p`) adds `p[i, p − o]` to diagonal `o`, i.e. its causal
    // prefix read backwards. One row at a time keeps memory at O(heads · n).
    let diagonals = geometry.last_position() + 1;
    let mut slash =
        Tensor::<B, 4>::zeros([batch, heads, 1, diagonals], &device).cast(FloatDType::F32);
    for i in 0..last {
        let visible = first_position + i + 1;
        let row = p.clone().narrow(2, i, 1).narrow(3, 0, visible).flip([3]);
        let row = if visible < diagonals {
            let pad = Tensor::<B, 4>::zeros([batch, heads, 1, diagonals - visible], &device)
                .cast(FloatDType::F32);
            Tensor::cat(vec![row, pad], 3)
        } else {
            row
        };
        slash = slash + row;
    }

    VerticalSlashScores {
        vertical: vertical.into_data().iter::<f32>().collect(),
        slash: slash.into_data().iter::<f32>().collect(),
        n_keys: n_k,
        diagonals,
    }
}

/// Picks `(columns, diagonals)` for one head: forced entries first (nearest first), then the
/// highest scores; budgets as given by [`clamp_budgets`].
pub fn select(
    vertical_scores: &[f32],
    slash_scores: &[f32],
    vertical: usize,
    slash: usize,
) -> (Vec<u32>, Vec<u32>) {
    let forced_v = 0..FORCED_VERTICAL.min(vertical_scores.len()) as u32;
    let forced_s = 0..FORCED_SLASH.min(slash_scores.len()) as u32;
    let mut columns = pick(vertical_scores, forced_v, vertical, |_| true);
    let mut diagonals = pick(slash_scores, forced_s, slash, |_| true);
    columns.sort_unstable();
    diagonals.sort_unstable();
    (columns, diagonals)
}
