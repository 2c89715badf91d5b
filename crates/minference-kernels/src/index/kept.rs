//! The (query, key) pairs an index keeps, counted on the device.
//!
//! A caller that reports a layer's density, or decides from it to run the layer densely, needs
//! one number per layer; reading the padded index back for it (hundreds of MB for a long
//! Vertical-Slash layer) cost more than the attention it measured. Here one unit per query
//! block sums its tiles in closed form and its gathered columns, and only those sums come back.

use crate::sparse_flash::{IndexHandles, Problem};
use crate::{limits, words, KernelError, BLOCK};
use cubecl::prelude::*;

/// Causal pairs of the 64-key tile at `t` for the rows at positions `first..last`: row `p` sees
/// the tile's keys up to `min(p, n_keys − 1)`.
#[cube]
fn tile_pairs(t: u32, first: u32, last: u32, n_keys: u32) -> u32 {
    let end = u32::min(t + 64u32, n_keys);
    let mut pairs = 0u32;
    if end > t {
        // Rows `p ∈ [max(first, t), min(last, end − 1))` see `p + 1 − t` keys.
        let a = u32::max(first, t);
        let z = u32::min(last, end - 1u32);
        if a < z {
            pairs += (a + 1u32 - t + z - t) * (z - a) / 2u32;
        }
        // Rows `p ≥ end − 1` see `end − t` keys.
        let c = u32::max(first, end - 1u32);
        if c < last {
            pairs += (last - c) * (end - t);
        }
    }
    pairs
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn count_kept(
    block_count: &Array<u32>,
    block_offset: &Array<u32>,
    column_count: &Array<u32>,
    kept: &mut Array<u32>,
    n_queries: u32,
    n_keys: u32,
    query_offset: u32,
    max_blocks: u32,
    blocks: u32,
    slots: u32,
) {
    let slot = ABSOLUTE_POS as u32;
    if slot < slots {
        let m = slot % blocks;
        let first = query_offset + m * 64u32;
        let last = query_offset + u32::min(m * 64u32 + 64u32, n_queries);
        let mut pairs = column_count[slot as usize] * (last - first);
        let row = (slot * max_blocks) as usize;
        for i in 0..block_count[slot as usize] as usize {
            pairs += tile_pairs(block_offset[row + i], first, last, n_keys);
        }
        kept[slot as usize] = pairs;
    }
}

/// Pairs `index` keeps over all (batch, head, query block) of `p`, the numerator of the
/// density. Reads back four bytes per query block.
pub fn kept_pairs<R: Runtime>(
    client: &ComputeClient<R>,
    index: &IndexHandles,
    p: &Problem,
) -> Result<u64, KernelError> {
    p.check()?;
    let blocks = p.query_blocks();
    let slots = p.batch * p.heads * blocks;
    // A block's pairs are below 64 · n_keys; the per-block sums are 32-bit.
    limits::check_len("a query block's pairs", BLOCK * p.n_keys)?;
    limits::check_len("index rows", slots * index.max_blocks)?;
    let kept = client.empty(slots * 4);
    let units = 256u32;
    // SAFETY: every array is bound with its length; the kernel reads `block_offset` below each
    // block's count, which `max_blocks` bounds.
    unsafe {
        count_kept::launch_unchecked::<R>(
            client,
            CubeCount::Static((slots as u32).div_ceil(units), 1, 1),
            CubeDim::new_1d(units),
            words(&index.block_count, slots)?,
            words(&index.block_offset, (slots * index.max_blocks).max(1))?,
            words(&index.column_count, slots)?,
            words(&kept, slots)?,
            p.n_queries as u32,
            p.n_keys as u32,
            p.query_offset as u32,
            index.max_blocks as u32,
            blocks as u32,
            slots as u32,
        );
    }
    let bytes = client
        .read_one(kept)
        .map_err(|e| KernelError::Device(format!("{e:?}")))?;
    Ok(u32::from_bytes(&bytes).iter().map(|&k| u64::from(k)).sum())
}
