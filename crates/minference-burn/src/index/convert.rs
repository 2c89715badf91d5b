//! Conversion of each pattern's choices into [`BlockSelection`]s.

use super::{BlockSelection, Geometry};
use crate::pattern::BLOCK;
use minference_kernels::index::jump;

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
        ..Default::default()
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

/// The keys Vertical-Slash's `diagonals` (ascending offsets `o = position − key`; `o = 0` is
/// added) cross for the query positions `rows`, as sorted disjoint ranges: diagonal `o` crosses
/// `[rows.start − o, rows.end − o)` (from key 0 on), one key a row.
///
/// For a 64-row block these are the windows the tiles cover (without
/// [`vertical_slash_windows`]' widening of a window cut short by key 0 to 64 keys); for shorter
/// spans of rows they are what a kernel attending per span would need (`examples/window_packing.rs`
/// and `examples/plane_windows.rs` compare the heights).
pub fn diagonal_ranges(rows: std::ops::Range<usize>, diagonals: &[u32]) -> Vec<(usize, usize)> {
    debug_assert!(diagonals.is_sorted(), "diagonals are ascending");
    // From the largest offset the windows come in ascending order of start.
    let windows: Vec<(usize, usize)> = diagonals
        .iter()
        .rev()
        .map(|&o| o as usize)
        .chain([0])
        .filter(|&o| o < rows.end)
        .map(|o| (rows.start.saturating_sub(o), rows.end - o))
        .collect();
    merged(&windows)
}

/// The `columns` before key `before` that no range of `ranges` (sorted, disjoint, as
/// [`diagonal_ranges`] gives them) holds: the single columns gathered beside the ranges' keys.
pub fn columns_outside<'a>(
    ranges: &'a [(usize, usize)],
    columns: &'a [u32],
    before: usize,
) -> impl Iterator<Item = usize> + 'a {
    let outside = |c: usize| {
        let after = ranges.partition_point(|&(start, _)| start <= c);
        after == 0 || c >= ranges[after - 1].1
    };
    columns
        .iter()
        .map(|&c| c as usize)
        .filter(move |&c| c < before && outside(c))
}

/// Merges windows sorted by start into disjoint ranges (touching ones join).
fn merged(windows: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
    for &(start, end) in windows {
        match ranges.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

/// Vertical-Slash: the chosen key `columns` and diagonals (offsets `o = position − key`).
///
/// The diagonals' windows ([`vertical_slash_windows`]) merge into disjoint ranges, whose keys
/// are cut as one ascending stream: its lowest `union mod 64` keys become gathered columns,
/// the rest 64-key tiles, a tile taking the end of one range and the start of the next where
/// it must ([`minference_kernels::index::jump`]). So the tiles compute the windows' union and
/// nothing else. The last 64 keys, `[p_end − 64, p_end)`, are the window of the diagonal
/// `o = 0` (always among them): one tile of consecutive keys holds every key at or after the
/// block's first query, and every other tile and gathered key lies before it. The columns
/// before the block outside the union are gathered as well.
pub fn vertical_slash_block(
    geometry: &Geometry,
    m: usize,
    columns: &[u32],
    diagonals: &[u32],
) -> BlockSelection {
    let positions = geometry.block_positions(m);
    let ranges = merged(&vertical_slash_windows(geometry, m, diagonals));
    let union: usize = ranges.iter().map(|(start, end)| end - start).sum();
    let rest = union % BLOCK;
    let (mut tiles, mut jumps) = (Vec::new(), Vec::new());
    let mut gathered: Vec<usize> = Vec::new();
    // A tile begun at the end of a range: its start and the keys it holds.
    let mut open: Option<(usize, usize)> = None;
    for (i, &(start, end)) in ranges.iter().enumerate() {
        let mut at = start;
        if i == 0 {
            gathered.extend(start..start + rest);
            at += rest;
        }
        if let Some((first, held)) = open.take() {
            // Every range after the first holds a whole window: the tile's rest fits.
            tiles.push(first as u32);
            jumps.push(jump::encode(held, at - (first + held)));
            at += BLOCK - held;
        }
        while at + BLOCK <= end {
            tiles.push(at as u32);
            jumps.push(0);
            at += BLOCK;
        }
        if at < end {
            open = Some((at, end - at));
        }
    }
    debug_assert!(open.is_none(), "the union less its rest is whole tiles");
    gathered.extend(columns_outside(&ranges, columns, positions.start));
    gathered.sort_unstable();
    gathered.dedup();
    BlockSelection {
        tiles,
        jumps,
        columns: gathered.into_iter().map(|c| c as u32).collect(),
    }
}

/// Block-Sparse: the chosen 64-aligned key blocks.
pub fn block_sparse_block(key_blocks: &[u32]) -> BlockSelection {
    let mut tiles: Vec<u32> = key_blocks.iter().map(|&b| b * BLOCK as u32).collect();
    tiles.sort_unstable();
    tiles.dedup();
    BlockSelection {
        tiles,
        ..Default::default()
    }
}

/// A-shape: the first `sink` keys plus the keys `[p_start + 1 − local, p_end)` of the block,
/// rounded out to whole tiles.
pub fn a_shape_block(geometry: &Geometry, m: usize, sink: usize, local: usize) -> BlockSelection {
    let positions = geometry.block_positions(m);
    let band_start = (positions.start + 1).saturating_sub(local);
    let tiles = cover(&[(band_start, positions.end)]);
    let columns = leftover_columns(0..sink.min(geometry.n_keys), &tiles, positions.start);
    BlockSelection {
        tiles,
        jumps: Vec::new(),
        columns,
    }
}
