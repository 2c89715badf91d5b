//! Per-query-block conversions into the unified index, one unit per (head, query block).
//!
//! Each kernel writes the rows of the heads whose parameters are non-zero and leaves the others
//! to the kernel of their pattern, so one layer's heads can mix patterns in one index. The
//! rules are those of the host conversions (`minference_burn::index`), step for step.

use super::jump::SPLIT_BITS;
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
    block_jump: &mut Array<u32>,
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
            block_jump[row + count] = 0u32;
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
/// from the largest `o` (then `o = 0`, always kept) the windows come in ascending order and
/// merge into ranges. A first walk sums the union; the second cuts it as one stream: its lowest
/// `union mod 64` keys are gathered, the rest become 64-key tiles, one taking the end of a range
/// and the start of the next where it must ([`super::jump`]). Chosen columns before the block
/// outside every range are gathered in the same walk, in order.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn vertical_slash(
    chosen: &Array<u32>,
    budgets: &Array<u32>,
    block_count: &mut Array<u32>,
    block_offset: &mut Array<u32>,
    block_jump: &mut Array<u32>,
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
        let gather_row = slot * max_columns as usize;

        // Walk 1: the union's size. Window `i` is diagonal `diagonals − 1 − i`'s, the last `o = 0`.
        let mut union = 0usize;
        let mut reach = 0usize;
        for i in 0..diagonals + 1usize {
            let mut o = 0usize;
            if i < diagonals {
                o = chosen[diagonal_row + diagonals - 1usize - i] as usize;
            }
            if o < end {
                let e = usize::max(end - o, 64usize);
                if e > reach {
                    union += e - usize::max(e - 64usize, reach);
                    reach = e;
                }
            }
        }
        let rest = union % 64usize;

        // Walk 2: a range `[low, high)` (the `merged`-th) closes when a window starts past it,
        // or after the last window (`i = diagonals + 1`, no window).
        let mut low = 0usize;
        let mut high = 0usize;
        let mut merged: usize = 0usize;
        let mut count = 0usize;
        let mut gathered = 0usize;
        let mut next_column = 0usize;
        // A tile begun at the end of a range: its start and the keys it holds (0: none).
        let mut open_start = 0usize;
        let mut open_held = 0usize;
        for i in 0..diagonals + 2usize {
            let mut o = end;
            if i < diagonals {
                o = chosen[diagonal_row + diagonals - 1usize - i] as usize;
            } else if i == diagonals {
                o = 0usize;
            }
            let window = o < end;
            let mut e = 64usize;
            if window {
                e = usize::max(end - o, 64usize);
            }
            let closes =
                merged > 0usize && (i == diagonals + 1usize || (window && e - 64usize > high));
            if closes {
                // Columns before the range are gathered (if before the block), those in it not.
                let mut walking = true;
                while walking && next_column < columns {
                    let c = chosen[column_row + next_column] as usize;
                    if c < low {
                        if c < start {
                            column_index[gather_row + gathered] = c as u32;
                            gathered += 1usize;
                        }
                        next_column += 1usize;
                    } else if c < high {
                        next_column += 1usize;
                    } else {
                        walking = false;
                    }
                }
                let mut at = low;
                if merged == 1usize {
                    for c in low..low + rest {
                        column_index[gather_row + gathered] = c as u32;
                        gathered += 1usize;
                    }
                    at += rest;
                }
                if open_held > 0usize {
                    // Every range after the first holds a whole window: the tile's rest fits.
                    block_offset[row + count] = open_start as u32;
                    block_jump[row + count] = (open_held
                        | ((at - open_start - open_held) << comptime!(SPLIT_BITS as usize)))
                        as u32;
                    count += 1usize;
                    at += 64usize - open_held;
                    open_held = 0usize;
                }
                while at + 64usize <= high {
                    block_offset[row + count] = at as u32;
                    block_jump[row + count] = 0u32;
                    count += 1usize;
                    at += 64usize;
                }
                if at < high {
                    open_start = at;
                    open_held = high - at;
                }
            }
            if window {
                if merged > 0usize && e - 64usize <= high {
                    high = usize::max(high, e);
                } else {
                    low = e - 64usize;
                    high = e;
                    merged += 1usize;
                }
            }
        }
        block_count[slot] = count as u32;
        // Columns past the last range that are before the block (none in practice: the last
        // range ends at the block's end).
        while next_column < columns {
            let c = chosen[column_row + next_column] as usize;
            if c < start {
                column_index[gather_row + gathered] = c as u32;
                gathered += 1usize;
            }
            next_column += 1usize;
        }
        column_count[slot] = gathered as u32;
    }
}
