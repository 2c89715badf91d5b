//! The exact reference: attention under the mask an index implies, with Burn tensor ops.
//!
//! Runs on any backend. Scores are computed in fp32, a chunk of query rows at a time, so memory
//! stays at `batch × heads × 256 × n_keys` whatever the length.

use crate::estimate::{block_sparse, vertical_slash};
use crate::index::{
    a_shape_block, block_sparse_block, dense_block, vertical_slash_block, BlockSelection, Geometry,
    SparseIndex,
};
use crate::pattern::{LayerPatterns, Pattern};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Tensor, TensorData};
use std::ops::Range;

/// Query rows per reference chunk (a multiple of the block size).
const CHUNK_ROWS: usize = 256;

/// Estimates and converts the index of every head: the reference index builder.
pub fn build_index<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    patterns: &LayerPatterns,
    geometry: &Geometry,
    scale: f64,
) -> SparseIndex {
    build_index_with(q, k, patterns, geometry, scale, Estimates::default())
}

/// Estimates a backend computed with its own kernels; whatever is missing is computed by
/// [`build_index_with`] with Burn ops.
#[derive(Debug, Clone, Default)]
pub struct Estimates {
    /// Vertical-Slash scores of every head.
    pub vertical_slash: Option<vertical_slash::VerticalSlashScores>,
}

/// [`build_index`] with the estimates in `estimates` used as they are.
pub fn build_index_with<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    patterns: &LayerPatterns,
    geometry: &Geometry,
    scale: f64,
    estimates: Estimates,
) -> SparseIndex {
    let [batch, heads, _, _] = q.dims();
    let needs = |f: &dyn Fn(&Pattern) -> bool| patterns.heads().iter().any(f);
    let vs = estimates.vertical_slash.or_else(|| {
        needs(&|p| matches!(p, Pattern::VerticalSlash { .. }))
            .then(|| vertical_slash::scores(q, k, geometry, scale))
    });
    let bs = needs(&|p| matches!(p, Pattern::BlockSparse { .. }))
        .then(|| block_sparse::scores(q, k, geometry, scale));
    let blocks = geometry.query_blocks();
    // One head's selections; heads are independent, so they are spread over the host's cores.
    let head = |bh: usize| -> Vec<BlockSelection> {
        match patterns.heads()[bh % heads] {
            Pattern::Dense => (0..blocks).map(|m| dense_block(geometry, m)).collect(),
            Pattern::AShape { sink, local } => (0..blocks)
                .map(|m| a_shape_block(geometry, m, sink, local))
                .collect(),
            Pattern::VerticalSlash { vertical, slash } => {
                let scores = vs.as_ref().expect("computed when a head needs it");
                let (v, s) = vertical_slash::clamp_budgets(vertical, slash, geometry);
                let (columns, diagonals) =
                    vertical_slash::select(scores.vertical_of(bh), scores.slash_of(bh), v, s);
                (0..blocks)
                    .map(|m| vertical_slash_block(geometry, m, &columns, &diagonals))
                    .collect()
            }
            Pattern::BlockSparse { top_k } => {
                let scores = bs.as_ref().expect("computed when a head needs it");
                (0..blocks)
                    .map(|m| {
                        block_sparse_block(&block_sparse::select(
                            scores.row(bh, m),
                            geometry,
                            m,
                            top_k,
                        ))
                    })
                    .collect()
            }
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(batch * heads);
    let per_worker = (batch * heads).div_ceil(workers);
    let mut per_head: Vec<Vec<BlockSelection>> = vec![Vec::new(); batch * heads];
    std::thread::scope(|scope| {
        for (w, chunk) in per_head.chunks_mut(per_worker).enumerate() {
            let head = &head;
            let first = w * per_worker;
            scope.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    *slot = head(first + i);
                }
            });
        }
    });
    let selections: Vec<BlockSelection> = per_head.into_iter().flatten().collect();
    SparseIndex::pack(*geometry, batch, heads, &selections)
}

/// Attention restricted to the mask `index` implies (what the sparse kernel computes).
pub fn attention_with_index<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    index: &SparseIndex,
    scale: f64,
) -> Tensor<B, 4> {
    masked_attention(q, k, v, scale, |rows| index.mask(rows))
}

/// Dense causal attention, with the mask built straight from positions (independent of any
/// index): the ground truth every pattern is compared with.
pub fn dense_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    geometry: &Geometry,
    scale: f64,
) -> Tensor<B, 4> {
    let [batch, heads, _, _] = q.dims();
    let n_k = geometry.n_keys;
    masked_attention(q, k, v, scale, |rows| {
        let one: Vec<bool> = rows
            .flat_map(|r| (0..n_k).map(move |j| j <= geometry.query_offset + r))
            .collect();
        one.repeat(batch * heads)
    })
}

/// Causal-or-sparse attention with an explicit mask: `mask(rows)` returns the row-major
/// `[batch, heads, rows, n_keys]` mask (true = attend) of those query rows.
fn masked_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    scale: f64,
    mask: impl Fn(Range<usize>) -> Vec<bool>,
) -> Tensor<B, 4> {
    let [batch, heads, n_q, d] = q.dims();
    let [_, kv_heads, n_k, _] = k.dims();
    let group = heads / kv_heads;
    let device = q.device();
    let out_dtype: FloatDType = q.dtype().into();
    let k_t = k.clone().cast(FloatDType::F32).swap_dims(2, 3);
    let v32 = v.clone().cast(FloatDType::F32);
    let mut chunks = Vec::with_capacity(n_q.div_ceil(CHUNK_ROWS));
    for start in (0..n_q).step_by(CHUNK_ROWS) {
        let rows = start..(start + CHUNK_ROWS).min(n_q);
        let len = rows.len();
        let keep = Tensor::<B, 4, Bool>::from_data(
            TensorData::new(mask(rows), [batch, heads, len, n_k]),
            &device,
        );
        let logits = q
            .clone()
            .narrow(2, start, len)
            .cast(FloatDType::F32)
            .reshape([batch, kv_heads, group * len, d])
            .matmul(k_t.clone())
            .reshape([batch, heads, len, n_k])
            .mul_scalar(scale)
            .mask_fill(keep.bool_not(), f32::NEG_INFINITY);
        let p = softmax(logits, 3).reshape([batch, kv_heads, group * len, n_k]);
        chunks.push(p.matmul(v32.clone()).reshape([batch, heads, len, d]));
    }
    Tensor::cat(chunks, 2).cast(out_dtype)
}

/// The whole reference pipeline: estimate, convert, attend.
pub fn sparse_attention<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    patterns: &LayerPatterns,
    geometry: &Geometry,
    scale: f64,
) -> Tensor<B, 4> {
    if patterns.all_dense() {
        return dense_attention(q, k, v, geometry, scale);
    }
    let index = build_index(q, k, patterns, geometry, scale);
    attention_with_index(q, k, v, &index, scale)
}
