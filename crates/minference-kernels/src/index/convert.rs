//! Per-query-block conversions into the unified index, one unit per (head, query block).
//!
//! Each kernel writes the rows of the heads whose parameters are non-zero and leaves the others
//! to the kernel of their pattern, so one layer's heads can mix patterns in one index. The
//! rules are those of the host conversions (`minference_burn::index`), step for step.

use cubecl::prelude::*;

/// Where query block `m` sits: its first position and one past its last.
#[cube]
fn block_positions(m: usize, n_queries: u32, query_offset: u32) -> (usize, usize) {
    let start = query_offset as usize + m * 64usize;
    let end = query_offset as usize + usize::min(m * 64usize + 64usize, n_queries as usize);
    (start, end)
}

/// Unit `(m, h, b)`: dense and A-shape heads (`band[2h + 1] = local > 0`, `band[2h] = sink`): the
/// tiles `band_start, band_start + 64, … < p_end` with `band_start = max(p_start + 1 − local, 0)`,
/// then the sink columns before the band. Dense is `sink = 0` with a band past position 0.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn band(
    band: &Array<u32>,
    block_count: &mut Array<u32>,
    block_offset: &mut Array<u32>,
    column_count: &mut Array<u32>,
    column_index: &mut Array<u32>,
    n_queries: u32,
    n_keys: u32,
    query_offset: u32,
    max_blocks: u32,
    max_columns: u32,
) {
    let m = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let query_blocks = (n_queries as usize).div_ceil(64usize);
    let local = band[2usize * h + 1usize] as usize;
    if m < query_blocks && local > 0usize {
        let slot = (b * heads + h) * query_blocks + m;
        let (start, end) = block_positions(m, n_queries, query_offset);
        let mut band_start = 0usize;
        if start + 1usize > local {
            band_start = start + 1usize - local;
        }
        let row = slot * max_blocks as usize;
        let mut count = 0usize;
        let mut at = band_start;
        while at < end {
            block_offset[row + count] = at as u32;
            count += 1usize;
            at += 64usize;
        }
        block_count[slot] = count as u32;
        // Sink columns are before the block and outside the band exactly when below its start.
        let sink = usize::min(
            usize::min(band[2usize * h] as usize, n_keys as usize),
            band_start,
        );
        for c in 0..sink {
            column_index[slot * max_columns as usize + c] = c as u32;
        }
        column_count[slot] = sink as u32;
    }
}

/// Unit `(m, h, b)`: Vertical-Slash heads (`budgets[2h + 1] > 0`), from their chosen columns and
/// diagonals (ascending, `chosen` rows of [`crate::estimate::select::top_rows()`]).
///
/// Diagonal `o` crosses the keys `[e − 64, e)` of the block, `e = max(p_end − o, 64)`; walked
/// from the largest `o` (then `o = 0`, always kept) the windows come in ascending order, and each
/// becomes at most one tile, starting where the previous tile ended if they overlap. Columns
/// before the block that no tile covers are gathered (one pass against the sorted tiles).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn vertical_slash(
    chosen: &Array<u32>,
    budgets: &Array<u32>,
    block_count: &mut Array<u32>,
    block_offset: &mut Array<u32>,
    column_count: &mut Array<u32>,
    column_index: &mut Array<u32>,
    n_queries: u32,
    query_offset: u32,
    width: u32,
    max_blocks: u32,
    max_columns: u32,
) {
    let m = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let query_blocks = (n_queries as usize).div_ceil(64usize);
    let columns = budgets[2usize * h] as usize;
    let diagonals = budgets[2usize * h + 1usize] as usize;
    if m < query_blocks && diagonals > 0usize {
        let bh = b * heads + h;
        let slot = bh * query_blocks + m;
        let column_row = bh * 2usize * width as usize;
        let diagonal_row = column_row + width as usize;
        let (start, end) = block_positions(m, n_queries, query_offset);
        let row = slot * max_blocks as usize;

        let mut cursor = 0usize;
        let mut count = 0usize;
        for i in 0..diagonals + 1usize {
            let mut o = 0usize;
            if i < diagonals {
                o = chosen[diagonal_row + diagonals - 1usize - i] as usize;
            }
            if o < end {
                let e = usize::max(end - o, 64usize);
                if e > cursor {
                    let at = usize::max(e - 64usize, cursor);
                    block_offset[row + count] = at as u32;
                    count += 1usize;
                    cursor = at + 64usize;
                }
            }
        }
        block_count[slot] = count as u32;

        let mut tile = 0usize;
        let mut gathered = 0usize;
        for i in 0..columns {
            let c = chosen[column_row + i] as usize;
            if c < start {
                while tile < count && block_offset[row + tile] as usize + 64usize <= c {
                    tile += 1usize;
                }
                let covered = tile < count && block_offset[row + tile] as usize <= c;
                if !covered {
                    column_index[slot * max_columns as usize + gathered] = c as u32;
                    gathered += 1usize;
                }
            }
        }
        column_count[slot] = gathered as u32;
    }
}
