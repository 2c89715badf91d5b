//! Top-k selection inside one cube, shared by every estimator that picks on the device.
//!
//! Scores become order-preserving `u32` keys ([`order_key()`]: larger float, larger key; NaN
//! lowest), with the entries a pattern always keeps marked [`FORCED`] (above any score). The
//! `budget`-th largest key is found two key bits a round from the top (at most 16 rounds, each
//! counting the keys at or above three candidate thresholds and summing the counts over the cube
//! in shared memory, two levels of sixteen units; they stop once exactly `budget` keys are at or
//! above the bits found), so no plane operation is needed and lavapipe runs it.
//! Keys above the threshold are all taken and ties at it in index order, which is the host's
//! rule (higher score first, then lower index). The chosen indices are written in ascending
//! order through a prefix sum over units that each own a contiguous run.
//!
//! [`vertical_slash_keys()`] and [`top_rows()`] apply this to the Vertical-Slash scores (one row of
//! column scores and one of diagonal scores per head); Block-Sparse keys live in shared memory
//! and call [`emit_top()`] from its own kernel.

use cubecl::prelude::*;

/// Most units of a Block-Sparse selecting cube (one per query block: many small rows; short
/// rows take fewer, see `block_sparse::select_units`).
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

/// Units whose values one unit adds up in the first level of [`cube_sums()`] and [`emit_top()`]'s
/// prefix sums: two levels of sixteen, so that a sum over 256 or 512 units takes two barriers
/// (and one before its scratch is reused) where a halving tree took nine or ten.
const PART: usize = 16;

/// Candidate thresholds [`emit_top()`] counts in one round: the three nonzero values of the next
/// two key bits.
const CANDIDATES: usize = 3;

/// The shared-memory words the selection of a cube of `units` units needs ([`emit_top()`] and
/// [`cube_sums()`] share one scratch array of this length).
pub const fn scratch_words(units: usize) -> usize {
    CANDIDATES * (units + units / PART)
}

/// Sums each of `values[0..count]` over the cube's `units` units (a multiple of `PART` (16), with
/// `count ≤ PART`) through `scratch` ([`scratch_words`]); every unit gets the totals.
#[cube]
pub fn cube_sums(
    values: &Array<u32>,
    scratch: &mut SharedMemory<u32>,
    #[comptime] count: usize,
    #[comptime] units: usize,
) -> Array<u32> {
    let tid = UNIT_POS_X as usize;
    let parts = comptime!(units / PART);
    let partials = comptime!(count * units);
    #[unroll]
    for c in 0..count {
        scratch[c * units + tid] = values[c];
    }
    sync_cube();
    // Unit `c·parts + p` adds up part `p` of value `c`, strided so that neighbouring units read
    // neighbouring words.
    if tid < comptime!(count * parts) {
        let c = tid / parts;
        let p = tid % parts;
        let mut sum = 0u32;
        #[unroll]
        for i in 0..PART {
            sum += scratch[c * units + i * parts + p];
        }
        scratch[partials + tid] = sum;
    }
    sync_cube();
    // Unrolled, so that a unit's reads of the partials are in flight together.
    let mut totals = Array::<u32>::new(count);
    #[unroll]
    for c in 0..count {
        let mut sum = 0u32;
        #[unroll]
        for p in 0..parts {
            sum += scratch[partials + c * parts + p];
        }
        totals[c] = sum;
    }
    sync_cube();
    totals
}

/// Sums `value` over the cube's `units` units through `scratch` ([`scratch_words`]); every
/// unit gets the total.
#[cube]
pub fn cube_sum(value: u32, scratch: &mut SharedMemory<u32>, #[comptime] units: usize) -> u32 {
    let mut values = Array::<u32>::new(1usize);
    values[0usize] = value;
    let totals = cube_sums(&values, scratch, 1usize, units);
    totals[0usize]
}

/// The counts over the cube of `keys[0..len]` at or above `threshold` with the two bits of
/// round `round` (from the top) set to 1, 2 and 3.
#[cube]
fn count_at_or_above(
    keys: &Slice<u32>,
    len: usize,
    threshold: u32,
    round: u32,
    scratch: &mut SharedMemory<u32>,
    #[comptime] units: usize,
) -> Array<u32> {
    let tid = UNIT_POS_X as usize;
    let shift = 30u32 - 2u32 * round;
    let mut candidates = Array::<u32>::new(CANDIDATES);
    let mut counts = Array::<u32>::new(CANDIDATES);
    #[unroll]
    for d in 0..CANDIDATES {
        candidates[d] = threshold | ((comptime!(d as u32) + 1u32) << shift);
        counts[d] = 0u32;
    }
    for j in range_stepped(tid, len, units) {
        let key = keys[j];
        #[unroll]
        for d in 0..CANDIDATES {
            if key >= candidates[d] {
                counts[d] += 1u32;
            }
        }
    }
    cube_sums(&counts, scratch, CANDIDATES, units)
}

/// The round's two bits of the threshold: the largest candidate whose count still reaches the
/// budget (counts fall as the candidate grows), 0 when none does.
#[cube]
fn next_bits(totals: &Array<u32>, budget: u32) -> u32 {
    let mut digit = 0u32;
    #[unroll]
    for d in 0..CANDIDATES {
        if totals[d] >= budget {
            digit = comptime!(d as u32) + 1u32;
        }
    }
    digit
}

/// Chooses the `budget` largest of `keys[0..len]` (ties by lower index, `budget ≤ len`) and
/// writes `step · index` for each, ascending, to `out[base..base + budget]`. Called by all
/// `units` units of the cube (a multiple of `PART` (16)), with `scratch` of
/// [`scratch_words`]`(units)` words.
///
/// Two key bits a round halve the rounds, and so the cube's barriers, at three comparisons an
/// entry instead of one. With the two-level sums, against one bit a round and a halving tree
/// (H100, bf16, three runs each on structured and random inputs): Block-Sparse top-100 index
/// 5.5–5.7 → 4.7–5.0 ms at 128K and 16.7 → 15.3–15.4 at 256K (its rows hold 8 and 16 entries a
/// unit: the sums dominated); the Vertical-Slash index, whose rows hold 256 and 512 entries a
/// unit, 10.4–10.6 → 10.2–10.5 ms and 22.3–24.9 → 21.4–23.9. Stopping once exact
/// (`stop_early`): the Block-Sparse selection's four launches at 128K 1.25 → 0.74–0.77 ms, its
/// index 2.4–2.5 → 1.9–2.2 ms at 128K and 7.3–7.5 → 6.0–6.2 at 256K (H100, same calls). On the
/// Vertical-Slash rows, whose keys are read from global memory (512 a unit at 256K), the same
/// loop took 3.19 ms against 1.55 (Nsight Compute, same call; why was not found), so
/// [`top_rows()`] keeps the sixteen rounds.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn emit_top(
    keys: &Slice<u32>,
    len: usize,
    budget: u32,
    out: &mut Array<u32>,
    base: usize,
    step: u32,
    scratch: &mut SharedMemory<u32>,
    #[comptime] units: usize,
    #[comptime] stop_early: bool,
) {
    let tid = UNIT_POS_X as usize;

    // The budget-th largest key: the largest `t` with at least `budget` keys ≥ t, two bits a
    // round from the top ([`next_bits`]). With `stop_early`, once exactly `budget` keys are ≥
    // the bits found so far (`exact`), those keys are the choice, ties included, and the rounds
    // stop: a Block-Sparse row's budget-th and next keys differ in a bit near the top (about
    // the ninth of the mantissa), not in the last. Every unit sees the same totals, so all
    // leave the loop together.
    let mut threshold = 0u32;
    let mut exact = false;
    if comptime!(stop_early) {
        let mut at_least = len as u32;
        exact = at_least == budget;
        let mut round = 0u32;
        while round < 16u32 && !exact {
            let totals = count_at_or_above(keys, len, threshold, round, scratch, units);
            let digit = next_bits(&totals, budget);
            if digit > 0u32 {
                at_least = totals[(digit - 1u32) as usize];
            }
            threshold |= digit << (30u32 - 2u32 * round);
            exact = at_least == budget;
            round += 1u32;
        }
    } else {
        for round in 0..16u32 {
            let totals = count_at_or_above(keys, len, threshold, round, scratch, units);
            threshold |= next_bits(&totals, budget) << (30u32 - 2u32 * round);
        }
    }

    // Each unit owns a contiguous run of entries so that the output stays sorted.
    let run = len.div_ceil(units);
    let start = usize::min(tid * run, len);
    let end = usize::min(start + run, len);
    // Taken outright: keys above the threshold, or at it when `exact`; otherwise keys at it
    // are ties, taken in index order.
    let mut above = 0u32;
    let mut ties = 0u32;
    for j in start..end {
        let key = keys[j];
        if key > threshold || (exact && key == threshold) {
            above += 1u32;
        } else if key == threshold {
            ties += 1u32;
        }
    }
    // Exclusive prefix sums of (above, ties) over the units in two levels: unit `p < parts`
    // runs through part `p`'s sixteen units, then every unit adds the parts before its own.
    let parts = comptime!(units / PART);
    let part_totals = comptime!(2usize * units);
    scratch[2usize * tid] = above;
    scratch[2usize * tid + 1usize] = ties;
    sync_cube();
    if tid < parts {
        let mut run_above = 0u32;
        let mut run_ties = 0u32;
        #[unroll]
        for i in 0..PART {
            let u = tid * PART + i;
            let a = scratch[2usize * u];
            let t = scratch[2usize * u + 1usize];
            scratch[2usize * u] = run_above;
            scratch[2usize * u + 1usize] = run_ties;
            run_above += a;
            run_ties += t;
        }
        scratch[part_totals + 2usize * tid] = run_above;
        scratch[part_totals + 2usize * tid + 1usize] = run_ties;
    }
    sync_cube();
    let own_part = tid / PART;
    let mut before_above = 0u32;
    let mut before_ties = 0u32;
    let mut all_above = 0u32;
    #[unroll]
    for p in 0..parts {
        let a = scratch[part_totals + 2usize * p];
        let t = scratch[part_totals + 2usize * p + 1usize];
        all_above += a;
        if p < own_part {
            before_above += a;
            before_ties += t;
        }
    }
    let ties_wanted = budget - all_above;
    let mut tie_rank = scratch[2usize * tid + 1usize] + before_ties;
    let mut at = scratch[2usize * tid] + before_above + u32::min(tie_rank, ties_wanted);
    // Every unit has read its prefix before the scratch is written again (the next row's
    // selection, or the caller's sums).
    sync_cube();
    for j in start..end {
        let key = keys[j];
        let mut take = key > threshold || (exact && key == threshold);
        if !exact && key == threshold {
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
/// the head's budget (clamped to the row by the caller); 0 skips the head. `stop_early` as in
/// [`emit_top()`]: the Vertical-Slash index passes `false` (see there); the test of the
/// selection runs both.
#[cube(launch_unchecked)]
pub fn top_rows(
    keys: &Array<u32>,
    budgets: &Array<u32>,
    chosen: &mut Array<u32>,
    n_keys: u32,
    diagonals: u32,
    width: u32,
    #[comptime] stop_early: bool,
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
        let mut scratch = SharedMemory::<u32>::new(comptime!(scratch_words(ROW_UNITS)));
        emit_top(
            &keys.slice(start, start + len),
            len,
            budget,
            chosen,
            (bh * 2usize + which) * width as usize,
            1u32,
            &mut scratch,
            ROW_UNITS,
            stop_early,
        );
    }
}
