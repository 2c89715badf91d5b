//! Top-k selection inside one cube, shared by every estimator that picks on the device.
//!
//! Scores become order-preserving `u32` keys ([`order_key`]: larger float, larger key; NaN
//! lowest), with the entries a pattern always keeps marked [`FORCED`] (above any score). The
//! `budget`-th largest key is found by a 32-step bisection on the key bits, each step one count
//! summed over the cube in shared memory, so no plane operation is needed and lavapipe runs it.
//! Keys above the threshold are all taken and ties at it in index order, which is the host's
//! rule (higher score first, then lower index). The chosen indices are written in ascending
//! order through a prefix sum over units that each own a contiguous run.
//!
//! [`vertical_slash_keys`] and [`top_rows`] apply this to the Vertical-Slash scores (one row of
//! column scores and one of diagonal scores per head); Block-Sparse keys live in shared memory
//! and call [`emit_top`] from its own kernel.

use cubecl::prelude::*;

/// Units of a Block-Sparse selecting cube (one per query block: many small rows).
pub const SELECT_UNITS: usize = 256;
/// Units of a Vertical-Slash selecting cube (one per head and kind: few rows of `n` entries).
pub const ROW_UNITS: usize = 512;

/// The key of an entry that is always kept (above the key of any score).
pub const FORCED: u32 = 0xFFFF_FFFF;

/// The order-preserving key of a score, below [`FORCED`] even for `+∞`.
#[cube]
// `x == x` is the NaN test (false only for NaN) in kernel code.
#[allow(clippy::eq_op)]
pub fn order_key(x: f32) -> u32 {
    let bits = u32::reinterpret(x);
    let mut key = 0u32;
    if x == x {
        if bits >= 0x8000_0000u32 {
            key = !bits;
        } else {
            key = bits | 0x8000_0000u32;
        }
    }
    u32::min(key, FORCED - 1u32)
}

/// Sums `value` over the cube's `units` units through `scratch` (one slot per unit); every unit
/// gets the total.
#[cube]
pub fn cube_sum(value: u32, scratch: &mut SharedMemory<u32>, #[comptime] units: usize) -> u32 {
    let tid = UNIT_POS_X as usize;
    scratch[tid] = value;
    sync_cube();
    #[unroll]
    for level in 0..comptime!(units.ilog2() as usize) {
        let stride = comptime!(units / 2) >> level;
        if tid < stride {
            scratch[tid] += scratch[tid + stride];
        }
        sync_cube();
    }
    let total = scratch[0usize];
    sync_cube();
    total
}

/// Chooses the `budget` largest of `keys[0..len]` (ties by lower index, `budget ≤ len`) and
/// writes `step · index` for each, ascending, to `out[base..base + budget]`. Called by all
/// `units` units of the cube (a power of two).
#[cube]
pub fn emit_top(
    keys: &Slice<u32>,
    len: usize,
    budget: u32,
    out: &mut Array<u32>,
    base: usize,
    step: u32,
    #[comptime] units: usize,
) {
    let tid = UNIT_POS_X as usize;
    let mut scratch = SharedMemory::<u32>::new(units);

    // The budget-th largest key: the largest `t` with at least `budget` keys ≥ t.
    let mut threshold = 0u32;
    for bit in 0..32u32 {
        let candidate = threshold | (1u32 << (31u32 - bit));
        let mut count = 0u32;
        for j in range_stepped(tid, len, units) {
            if keys[j] >= candidate {
                count += 1u32;
            }
        }
        if cube_sum(count, &mut scratch, units) >= budget {
            threshold = candidate;
        }
    }

    // Each unit owns a contiguous run of entries so that the output stays sorted.
    let run = len.div_ceil(units);
    let start = usize::min(tid * run, len);
    let end = usize::min(start + run, len);
    let mut above = 0u32;
    let mut ties = 0u32;
    for j in start..end {
        if keys[j] > threshold {
            above += 1u32;
        } else if keys[j] == threshold {
            ties += 1u32;
        }
    }
    let ties_wanted = budget - cube_sum(above, &mut scratch, units);
    // Exclusive prefix sums of (above, ties) over the units, by one unit.
    let mut prefix = SharedMemory::<u32>::new(comptime!(2usize * units));
    prefix[2usize * tid] = above;
    prefix[2usize * tid + 1usize] = ties;
    sync_cube();
    if tid == 0usize {
        let mut run_above = 0u32;
        let mut run_ties = 0u32;
        for u in 0..units {
            let a = prefix[2usize * u];
            let t = prefix[2usize * u + 1usize];
            prefix[2usize * u] = run_above;
            prefix[2usize * u + 1usize] = run_ties;
            run_above += a;
            run_ties += t;
        }
    }
    sync_cube();
    let mut tie_rank = prefix[2usize * tid + 1usize];
    let mut at = prefix[2usize * tid] + u32::min(tie_rank, ties_wanted);
    for j in start..end {
        let key = keys[j];
        let mut take = key > threshold;
        if key == threshold {
            take = tie_rank < ties_wanted;
            tie_rank += 1u32;
        }
        if take {
            out[base + at as usize] = j as u32 * step;
            at += 1u32;
        }
    }
}

/// Unit per entry of `keys = [batch · heads, n_keys + diagonals]`: the keys of each head's
/// column scores then its diagonal scores, the first `forced_vertical` columns and
/// `forced_slash` diagonals marked [`FORCED`].
#[cube(launch_unchecked)]
pub fn vertical_slash_keys(
    vertical: &Array<f32>,
    slash: &Array<f32>,
    keys: &mut Array<u32>,
    n_keys: u32,
    diagonals: u32,
    forced_vertical: u32,
    forced_slash: u32,
) {
    let at = ABSOLUTE_POS;
    let row = (n_keys + diagonals) as usize;
    if at < keys.len() {
        let bh = at / row;
        let j = at % row;
        let n_keys = n_keys as usize;
        let mut key = FORCED.runtime();
        if j < n_keys {
            if j >= forced_vertical as usize {
                key = order_key(vertical[bh * n_keys + j]);
            }
        } else {
            let o = j - n_keys;
            if o >= forced_slash as usize {
                key = order_key(slash[bh * diagonals as usize + o]);
            }
        }
        keys[at] = key;
    }
}

/// Cube `(which, h, b)`: head `h`'s chosen columns (`which = 0`) or diagonals (`which = 1`),
/// ascending, into `chosen[((b · heads + h) · 2 + which) · width ..]`. `budgets[2h + which]` is
/// the head's budget (clamped to the row by the caller); 0 skips the head.
#[cube(launch_unchecked)]
pub fn top_rows(
    keys: &Array<u32>,
    budgets: &Array<u32>,
    chosen: &mut Array<u32>,
    n_keys: u32,
    diagonals: u32,
    width: u32,
) {
    let which = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let budget = budgets[2usize * h + which];
    if budget > 0u32 {
        let bh = b * heads + h;
        let row = (n_keys + diagonals) as usize;
        let mut start = bh * row;
        let mut len = n_keys as usize;
        if which == 1usize {
            start += n_keys as usize;
            len = diagonals as usize;
        }
        emit_top(
            &keys.slice(start, start + len),
            len,
            budget,
            chosen,
            (bh * 2usize + which) * width as usize,
            1u32,
            ROW_UNITS,
        );
    }
}
