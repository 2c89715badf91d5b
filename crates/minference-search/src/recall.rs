//! How much of a head's dense attention an index keeps, measured tile by tile.
//!
//! Dense causal probabilities are computed a chunk of query rows at a time (never an n×n
//! matrix), turned into per-row prefix sums, and each index's tiles and columns are summed from
//! them in O(1) per tile: the recall of an index is the mean, over query rows, of the attention
//! mass its mask keeps.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Tensor, TensorData};
use minference_burn::{Geometry, SparseIndex, BLOCK};

/// Query rows per chunk of dense probabilities (a multiple of the block size).
const CHUNK_ROWS: usize = 256;

/// Per-row prefix sums of one chunk of dense probabilities, `[heads, rows, n_keys + 1]`.
pub struct ChunkPrefix {
    /// First query row of the chunk.
    pub first_row: usize,
    /// Rows in the chunk.
    pub rows: usize,
    n_keys: usize,
    prefix: Vec<f64>,
}

impl ChunkPrefix {
    /// Attention mass of head `h`, chunk row `i` (query row `first_row + i`), on keys
    /// `start..end` (`start ≤ end ≤ n_keys`).
    pub fn mass(&self, h: usize, i: usize, start: usize, end: usize) -> f64 {
        let row = &self.prefix[(h * self.rows + i) * (self.n_keys + 1)..];
        row[end] - row[start]
    }

    /// Sum over this chunk's rows of the mass `index` keeps for head `h` (batch 0).
    pub fn kept(&self, index: &SparseIndex, h: usize) -> f64 {
        let g = index.geometry;
        let mut kept = 0.0;
        for i in 0..self.rows {
            let r = self.first_row + i;
            let m = r / BLOCK;
            let position = g.query_offset + r;
            for run in index.tile_runs(0, h, m).flatten() {
                let end = run.end.min(g.n_keys).min(position + 1);
                if end > run.start {
                    kept += self.mass(h, i, run.start, end);
                }
            }
            for &c in index.columns(0, h, m) {
                kept += self.mass(h, i, c as usize, c as usize + 1);
            }
        }
        kept
    }
}

/// Calls `visit` with the prefix sums of every chunk of rows of the dense causal attention of
/// `q` (`[1, heads, n_q, d]`) over `k` (`[1, kv_heads, n_k, d]`).
pub fn for_each_chunk<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    geometry: &Geometry,
    scale: f64,
    mut visit: impl FnMut(&ChunkPrefix),
) {
    let [_, heads, n_q, d] = q.dims();
    let [_, kv_heads, n_k, _] = k.dims();
    let group = heads / kv_heads;
    let device = q.device();
    let k_t = k.clone().cast(FloatDType::F32).swap_dims(2, 3);
    for first_row in (0..n_q).step_by(CHUNK_ROWS) {
        let rows = CHUNK_ROWS.min(n_q - first_row);
        let causal: Vec<bool> = (0..rows)
            .flat_map(|i| (0..n_k).map(move |j| j <= geometry.query_offset + first_row + i))
            .collect();
        let keep =
            Tensor::<B, 3, Bool>::from_data(TensorData::new(causal, [1, rows, n_k]), &device)
                .unsqueeze::<4>()
                .expand([1, heads, rows, n_k]);
        let logits = q
            .clone()
            .narrow(2, first_row, rows)
            .cast(FloatDType::F32)
            .reshape([1, kv_heads, group * rows, d])
            .matmul(k_t.clone())
            .reshape([1, heads, rows, n_k])
            .mul_scalar(scale)
            .mask_fill(keep.bool_not(), f32::NEG_INFINITY);
        let p: Vec<f32> = softmax(logits, 3)
            .into_data()
            .convert::<f32>()
            .into_vec()
            .expect("f32");
        let mut prefix = Vec::with_capacity(heads * rows * (n_k + 1));
        for row in p.chunks_exact(n_k) {
            let mut acc = 0.0f64;
            prefix.push(0.0);
            for &x in row {
                acc += x as f64;
                prefix.push(acc);
            }
        }
        visit(&ChunkPrefix {
            first_row,
            rows,
            n_keys: n_k,
            prefix,
        });
    }
}

/// 64×64 tile-equivalents the kernel computes for head `h` (batch 0) under `index`.
pub fn head_cost(index: &SparseIndex, h: usize) -> u64 {
    (0..index.geometry.query_blocks())
        .map(|m| {
            index.tiles(0, h, m).len() as u64 + index.columns(0, h, m).len().div_ceil(BLOCK) as u64
        })
        .sum()
}

/// Tiles dense causal attention computes for one head.
pub fn dense_cost(geometry: &Geometry) -> u64 {
    (0..geometry.query_blocks())
        .map(|m| {
            let last = geometry.block_positions(m).end - 1;
            (last + 1).div_ceil(BLOCK) as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;
    use minference_burn::index::dense_block;

    #[test]
    fn dense_index_keeps_all_mass_and_costs_the_dense_tiles() {
        let device = Default::default();
        let n = 300;
        let q =
            Tensor::<NdArray, 4>::random([1, 2, n, 16], Distribution::Normal(0.0, 1.0), &device);
        let k =
            Tensor::<NdArray, 4>::random([1, 1, n, 16], Distribution::Normal(0.0, 1.0), &device);
        let g = Geometry::new(n, n, None).unwrap();
        let blocks: Vec<_> = (0..2)
            .flat_map(|_| (0..g.query_blocks()).map(|m| dense_block(&g, m)))
            .collect();
        let index = SparseIndex::pack(g, 1, 2, &blocks);
        let mut kept = [0.0; 2];
        for_each_chunk(&q, &k, &g, 0.25, |chunk| {
            for (h, kept) in kept.iter_mut().enumerate() {
                *kept += chunk.kept(&index, h);
            }
        });
        for kept in kept {
            assert!((kept / n as f64 - 1.0).abs() < 1e-5, "{kept}");
        }
        assert_eq!(head_cost(&index, 0), dense_cost(&g));
    }
}
