//! Block-Sparse index estimation: mean-pooled 64-token blocks of Q and K.
//!
//! Query blocks are the 64-row blocks of the call; key blocks are aligned at absolute position
//! 0. A key block is visible to a query block when its first key is at or before the block's
//! last query. Always kept (mean pooling washes out sink tokens): the key blocks that contain
//! the block's queries (its diagonal), the block before them, and block 0.

use super::pick;
use crate::index::Geometry;
use crate::pattern::BLOCK;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};

/// Block scores of every (batch, head): `[batch * heads, query_blocks, key_blocks]`.
#[derive(Debug, Clone)]
pub struct BlockScores {
    /// Scaled dot products of the pooled blocks.
    pub scores: Vec<f32>,
    /// Query blocks.
    pub query_blocks: usize,
    /// Key blocks.
    pub key_blocks: usize,
}

impl BlockScores {
    /// Scores of query block `m` of flat head `bh`.
    pub fn row(&self, bh: usize, m: usize) -> &[f32] {
        &self.scores[(bh * self.query_blocks + m) * self.key_blocks..][..self.key_blocks]
    }
}

/// Mean over 64-row blocks of dim 2 (rows `0..len`, the last block partial).
fn pool<B: Backend>(x: Tensor<B, 4>, len: usize) -> Tensor<B, 4> {
    let [b, h, n, d] = x.dims();
    let blocks = len.div_ceil(BLOCK);
    let device = x.device();
    let x = x.narrow(2, 0, len.min(n)).cast(FloatDType::F32);
    let padded = if blocks * BLOCK > len {
        let pad =
            Tensor::<B, 4>::zeros([b, h, blocks * BLOCK - len, d], &device).cast(FloatDType::F32);
        Tensor::cat(vec![x, pad], 2)
    } else {
        x
    };
    let counts: Vec<f32> = (0..blocks)
        .map(|m| ((m + 1) * BLOCK).min(len).saturating_sub(m * BLOCK) as f32)
        .collect();
    let counts = Tensor::<B, 4>::from_data(TensorData::new(counts, [1, 1, blocks, 1]), &device)
        .cast(FloatDType::F32);
    padded
        .reshape([b, h, blocks, BLOCK, d])
        .sum_dim(3)
        .reshape([b, h, blocks, d])
        .div(counts)
}

/// Scores every (query block, key block) pair for all heads.
pub fn scores<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    geometry: &Geometry,
    scale: f64,
) -> BlockScores {
    let [batch, heads, n_q, d] = q.dims();
    let kv_heads = k.dims()[1];
    let group = heads / kv_heads;
    let qb = geometry.query_blocks();
    let kb = geometry.key_blocks();
    let pooled_q = pool(q.clone(), n_q).reshape([batch, kv_heads, group * qb, d]);
    let pooled_k = pool(k.clone(), geometry.n_keys);
    let scores = pooled_q
        .matmul(pooled_k.swap_dims(2, 3))
        .reshape([batch, heads, qb, kb])
        .mul_scalar(scale);
    BlockScores {
        scores: scores.into_data().iter::<f32>().collect(),
        query_blocks: qb,
        key_blocks: kb,
    }
}

/// Key blocks query block `m` always keeps (MInference's rule): the diagonal blocks its
/// positions reach, the block before them and the first block; ascending, distinct.
pub fn forced_blocks(geometry: &Geometry, m: usize) -> Vec<u32> {
    let positions = geometry.block_positions(m);
    let first_diag = (positions.start / BLOCK) as u32;
    let last_diag = ((positions.end - 1) / BLOCK) as u32;
    let mut forced: Vec<u32> = (first_diag..=last_diag).collect();
    forced.extend(first_diag.checked_sub(1));
    forced.push(0);
    forced.sort_unstable();
    forced.dedup();
    forced
}

/// Key blocks for query block `m`: the forced ones ([`forced_blocks`]), then the best visible
/// ones, `top_k` in all (more when the forced ones alone exceed it).
pub fn select(row: &[f32], geometry: &Geometry, m: usize, top_k: usize) -> Vec<u32> {
    let last_diag = ((geometry.block_positions(m).end - 1) / BLOCK) as u32;
    let visible = |b: u32| b <= last_diag;
    let forced = forced_blocks(geometry, m);
    let budget = top_k.max(forced.len());
    let mut blocks = pick(row, forced, budget, visible);
    blocks.sort_unstable();
    blocks
}
