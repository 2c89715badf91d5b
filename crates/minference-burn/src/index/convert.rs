//! Conversion of each pattern's choices into [`BlockSelection`]s.

use super::{BlockSelection, Geometry};
use crate::pattern::BLOCK;

/// Covers sorted `[start, end)` intervals with disjoint 64-wide tiles.
///
/// Each interval is tiled from its start; the last tile of an interval may run past its end
/// (by at most 63 keys) and then counts towards the next interval, so tiles never overlap and
/// no key is attended twice.
pub fn cover(intervals: &[(usize, usize)]) -> Vec<u32> {
    let mut tiles = Vec::new();
    let mut cursor = 0usize;
    for &(start, end) in intervals {
        let mut at = start.max(cursor);
        while at < end {
            tiles.push(at as u32);
            at += BLOCK;
        }
        cursor = cursor.max(at);
    }
    tiles
}

/// Sorts intervals by start (what [`cover`] expects).
fn sorted(mut intervals: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    intervals.sort_unstable();
    intervals
}

/// Single columns that a block needs besides its tiles: sorted, before the block's first query,
/// outside every tile (`tiles` sorted and disjoint, as [`cover`] makes them), deduplicated.
/// A binary search per column: a Vertical-Slash block at 128K has ~1000 columns and ~1000 tiles.
fn leftover_columns(
    columns: impl IntoIterator<Item = usize>,
    tiles: &[u32],
    first_position: usize,
) -> Vec<u32> {
    debug_assert!(tiles.is_sorted());
    let covered = |c: usize| {
        let after = tiles.partition_point(|&t| t as usize <= c);
        after > 0 && c < tiles[after - 1] as usize + BLOCK
    };
    let mut out: Vec<u32> = columns
        .into_iter()
        .filter(|&c| c < first_position)
        .filter(|&c| !covered(c))
        .map(|c| c as u32)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every causal key of block `m`.
pub fn dense_block(geometry: &Geometry, m: usize) -> BlockSelection {
    let positions = geometry.block_positions(m);
    BlockSelection {
        tiles: cover(&[(0, positions.end.min(geometry.n_keys))]),
        columns: Vec::new(),
    }
}

/// The 64-wide key windows Vertical-Slash's `diagonals` (offsets `o = position − key`) need in
/// block `m`, sorted by start.
///
/// Diagonal `o` becomes the window of keys `[e − 64, e)` with `e = max(p_end − o, 64)`, `p_end`
/// the block's end position: exactly the keys diagonal `o` crosses in a full block. The diagonal
/// `o = 0` is always included, so every query sees itself.
pub fn vertical_slash_windows(
    geometry: &Geometry,
    m: usize,
    diagonals: &[u32],
) -> Vec<(usize, usize)> {
    let positions = geometry.block_positions(m);
    // Larger offsets give earlier windows: walking the diagonals from the largest keeps the
    // windows sorted (`diagonals` is sorted ascending; anything else is sorted here).
    let window = |o: u32| {
        let end = (positions.end - o as usize).max(BLOCK);
        (end - BLOCK, end)
    };
    let windows: Vec<(usize, usize)> = diagonals
        .iter()
        .rev()
        .copied()
        .chain(std::iter::once(0))
        .filter(|&o| (o as usize) < positions.end)
        .map(window)
        .collect();
    if windows.is_sorted() {
        windows
    } else {
        sorted(windows)
    }
}

/// Vertical-Slash: the chosen key `columns` and diagonals (offsets `o = position − key`).
///
/// The diagonals' windows ([`vertical_slash_windows`]) merge into disjoint tiles ([`cover`]);
/// since the diagonal `o = 0` is among them, the columns at or after the block's first query are
/// inside a tile; columns not covered become single columns.
pub fn vertical_slash_block(
    geometry: &Geometry,
    m: usize,
    columns: &[u32],
    diagonals: &[u32],
) -> BlockSelection {
    let positions = geometry.block_positions(m);
    let tiles = cover(&vertical_slash_windows(geometry, m, diagonals));
    let columns = leftover_columns(columns.iter().map(|&c| c as usize), &tiles, positions.start);
    BlockSelection { tiles, columns }
}

/// Block-Sparse: the chosen 64-aligned key blocks.
pub fn block_sparse_block(key_blocks: &[u32]) -> BlockSelection {
    let mut tiles: Vec<u32> = key_blocks.iter().map(|&b| b * BLOCK as u32).collect();
    tiles.sort_unstable();
    tiles.dedup();
    BlockSelection {
        tiles,
        columns: Vec::new(),
    }
}

/// A-shape: the first `sink` keys plus the keys `[p_start + 1 − local, p_end)` of the block,
/// rounded out to whole tiles.
pub fn a_shape_block(geometry: &Geometry, m: usize, sink: usize, local: usize) -> BlockSelection {
    let positions = geometry.block_positions(m);
    let band_start = (positions.start + 1).saturating_sub(local);
    let tiles = cover(&[(band_start, positions.end)]);
    let columns = leftover_columns(0..sink.min(geometry.n_keys), &tiles, positions.start);
    BlockSelection { tiles, columns }
}
