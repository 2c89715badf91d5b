//! The unified sparse index every pattern converts to, and the conversions.
//!
//! Per (batch, query head, 64-row query block) an index holds
//! - `tiles`: start columns of 64-wide key tiles (sorted, disjoint, not necessarily aligned),
//!   attended with the causal mask inside the tile and clipped to the keys; each with a *jump*
//!   word ([`minference_kernels::index::jump`]): 0 for 64 consecutive keys, or where the tile's
//!   keys skip a gap (Vertical-Slash packs its windows' union so; such a tile lies wholly before
//!   the block and needs no mask);
//! - `columns`: single key positions (sorted), all before the block's first query, so they need
//!   no causal mask, and none inside a tile (no key is counted twice).
//!
//! One sparse flash-attention kernel consumes this for every pattern.

mod convert;
mod geometry;
mod mask;

pub use convert::{
    a_shape_block, block_sparse_block, columns_outside, cover, dense_block, diagonal_ranges,
    vertical_slash_block, vertical_slash_windows,
};
pub use geometry::{Geometry, MAX_KEYS};
pub use minference_kernels::index::jump;

use crate::pattern::BLOCK;
use minference_kernels::index::jump::runs;

/// Pairs a tile starting at key `t` gives the queries at `positions`: row `p` sees the keys
/// `[t, min(t + 64, n_keys, p + 1))`, so rows before the tile's last key see a growing prefix
/// (an arithmetic series) and the rows after it the whole clipped tile. A tile whose keys jump
/// lies before the block, inside the keys: every row sees its 64 keys, as this counts.
fn tile_pairs(t: usize, positions: &std::ops::Range<usize>, n_keys: usize) -> u64 {
    let end = (t + BLOCK).min(n_keys);
    if end <= t {
        return 0;
    }
    let (first, last) = (positions.start, positions.end);
    let mut pairs = 0u64;
    // Rows `p ∈ [max(first, t), min(last, end − 1))` see `p + 1 − t` keys.
    let (a, z) = (first.max(t), last.min(end - 1));
    if a < z {
        pairs += ((a + 1 - t + z - t) * (z - a) / 2) as u64;
    }
    // Rows `p ≥ end − 1` see `end − t` keys.
    let c = first.max(end - 1);
    if c < last {
        pairs += ((last - c) * (end - t)) as u64;
    }
    pairs
}

/// What one query block attends to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSelection {
    /// Start columns of 64-wide key tiles.
    pub tiles: Vec<u32>,
    /// Each tile's jump word (empty: every tile's keys are consecutive).
    pub jumps: Vec<u32>,
    /// Single key columns before the block, outside every tile.
    pub columns: Vec<u32>,
}

/// The index of one attention call: `[batch, heads, query_blocks]` selections, packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseIndex {
    /// Lengths and offset of the call.
    pub geometry: Geometry,
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Width of `block_offset`'s last dimension.
    pub max_blocks: usize,
    /// Width of `column_index`'s last dimension.
    pub max_columns: usize,
    /// `[batch, heads, query_blocks]`: tiles used per query block.
    pub block_count: Vec<u32>,
    /// `[batch, heads, query_blocks, max_blocks]`: tile start columns.
    pub block_offset: Vec<u32>,
    /// `[batch, heads, query_blocks, max_blocks]`: each tile's jump word.
    pub block_jump: Vec<u32>,
    /// `[batch, heads, query_blocks]`: single columns used per query block.
    pub column_count: Vec<u32>,
    /// `[batch, heads, query_blocks, max_columns]`: single column positions.
    pub column_index: Vec<u32>,
}

impl SparseIndex {
    /// Packs per-block selections, ordered batch-major then head then query block.
    pub fn pack(
        geometry: Geometry,
        batch: usize,
        heads: usize,
        selections: &[BlockSelection],
    ) -> Self {
        let blocks = geometry.query_blocks();
        assert_eq!(
            selections.len(),
            batch * heads * blocks,
            "one selection per (batch, head, query block)"
        );
        let max_blocks = selections
            .iter()
            .map(|s| s.tiles.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let max_columns = selections
            .iter()
            .map(|s| s.columns.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut index = Self {
            geometry,
            batch,
            heads,
            max_blocks,
            max_columns,
            block_count: Vec::with_capacity(selections.len()),
            block_offset: vec![0; selections.len() * max_blocks],
            block_jump: vec![0; selections.len() * max_blocks],
            column_count: Vec::with_capacity(selections.len()),
            column_index: vec![0; selections.len() * max_columns],
        };
        for (i, s) in selections.iter().enumerate() {
            index.block_count.push(s.tiles.len() as u32);
            index.column_count.push(s.columns.len() as u32);
            index.block_offset[i * max_blocks..][..s.tiles.len()].copy_from_slice(&s.tiles);
            assert!(
                s.jumps.is_empty() || s.jumps.len() == s.tiles.len(),
                "one jump word per tile"
            );
            index.block_jump[i * max_blocks..][..s.jumps.len()].copy_from_slice(&s.jumps);
            index.column_index[i * max_columns..][..s.columns.len()].copy_from_slice(&s.columns);
        }
        index
    }

    fn slot(&self, b: usize, h: usize, m: usize) -> usize {
        (b * self.heads + h) * self.geometry.query_blocks() + m
    }

    /// Tile starts of one query block.
    pub fn tiles(&self, b: usize, h: usize, m: usize) -> &[u32] {
        let i = self.slot(b, h, m);
        &self.block_offset[i * self.max_blocks..][..self.block_count[i] as usize]
    }

    /// Jump words of one query block's tiles.
    pub fn jumps(&self, b: usize, h: usize, m: usize) -> &[u32] {
        let i = self.slot(b, h, m);
        &self.block_jump[i * self.max_blocks..][..self.block_count[i] as usize]
    }

    /// The keys of each tile of one query block, as one or two runs
    /// ([`minference_kernels::index::jump::runs`]), before clipping to the keys or the mask.
    pub fn tile_runs(
        &self,
        b: usize,
        h: usize,
        m: usize,
    ) -> impl Iterator<Item = [std::ops::Range<usize>; 2]> + '_ {
        let (tiles, jumps) = (self.tiles(b, h, m), self.jumps(b, h, m));
        tiles.iter().zip(jumps).map(|(&t, &j)| runs(t as usize, j))
    }

    /// Single columns of one query block.
    pub fn columns(&self, b: usize, h: usize, m: usize) -> &[u32] {
        let i = self.slot(b, h, m);
        &self.column_index[i * self.max_columns..][..self.column_count[i] as usize]
    }

    /// Fraction of the causal (query, key) pairs this index attends, over the whole call.
    pub fn density(&self) -> f64 {
        let mut kept = 0u64;
        for b in 0..self.batch {
            for h in 0..self.heads {
                kept += self.kept_pairs(b, h);
            }
        }
        kept as f64 / (self.geometry.causal_pairs() * (self.batch * self.heads) as u64) as f64
    }

    /// Density of one head (batch element `b`).
    pub fn head_density(&self, b: usize, h: usize) -> f64 {
        self.kept_pairs(b, h) as f64 / self.geometry.causal_pairs() as f64
    }

    /// (query, key) pairs attended by one head: `O(tiles)` (a 128K Vertical-Slash layer has
    /// ~10⁸ tiles; a pass over every row of every tile would be 64× that).
    pub fn kept_pairs(&self, b: usize, h: usize) -> u64 {
        let g = self.geometry;
        let mut kept = 0u64;
        for m in 0..g.query_blocks() {
            let positions = g.block_positions(m);
            for &t in self.tiles(b, h, m) {
                kept += tile_pairs(t as usize, &positions, g.n_keys);
            }
            kept += (self.columns(b, h, m).len() * positions.len()) as u64;
        }
        kept
    }

    /// 64×64 tile-equivalents the kernel computes (a chunk of 64 gathered columns counts as one).
    pub fn computed_tiles(&self) -> u64 {
        let blocks = self.block_count.iter().map(|&c| c as u64).sum::<u64>();
        let chunks = self
            .column_count
            .iter()
            .map(|&c| (c as u64).div_ceil(BLOCK as u64))
            .sum::<u64>();
        blocks + chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form against the row-by-row count, tiles before, across and after the rows.
    #[test]
    fn tile_pairs_equals_counting_rows() {
        for n_keys in [1usize, 63, 64, 65, 200, 1000] {
            for first in [0usize, 1, 30, 64, 100, 500] {
                for len in [1usize, 2, 63, 64] {
                    let positions = first..first + len;
                    for t in (0..n_keys + 70).step_by(7) {
                        let rows: u64 = positions
                            .clone()
                            .map(|p| {
                                let end = (t + BLOCK).min(n_keys).min(p + 1);
                                end.saturating_sub(t) as u64
                            })
                            .sum();
                        assert_eq!(
                            tile_pairs(t, &positions, n_keys),
                            rows,
                            "tile {t}, rows {positions:?}, {n_keys} keys"
                        );
                    }
                }
            }
        }
    }
}
