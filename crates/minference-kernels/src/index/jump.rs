//! Tiles whose 64 keys come in two runs.
//!
//! A Vertical-Slash block's diagonal windows merge into ranges of keys; tiles laid from each
//! range's start would round every range up to 64 keys (9.8 % more tile area than the windows'
//! union at 128K on the structured input, 12.6 % at 1M: `examples/window_packing.rs`). Tiles
//! cut from the union as one stream instead take the end of one range and the start of the
//! next: rows `0..split` hold the keys `start..start + split`, rows `split..64` the keys `gap`
//! further on. Each range is at least one 64-key window long, so a tile spans at most two.
//!
//! A tile's *jump* word says where: `split | gap << SPLIT_BITS`, 0 for a tile of 64 consecutive
//! keys (`split = 0` moves every row by `gap = 0`). The index keeps one word per tile next to
//! its start (`block_jump`), so that every pattern's tiles go through the same loads.

use cubecl::prelude::*;
use std::ops::Range;

/// Bits of the jump word that hold the split row (`0..64`).
pub const SPLIT_BITS: u32 = 6;

/// The largest gap a jump word holds: keys as far apart as this need a larger word, so the
/// Vertical-Slash index takes at most this many keys (67M, far past any model's context).
pub const MAX_GAP: usize = (1 << (32 - SPLIT_BITS)) - 1;

/// The jump word of a tile whose rows from `split` on hold keys `gap` past the consecutive ones.
pub fn encode(split: usize, gap: usize) -> u32 {
    assert!(
        split < 64 && gap <= MAX_GAP,
        "jump of {gap} keys at row {split}"
    );
    (split | gap << SPLIT_BITS) as u32
}

/// The two runs of keys of the tile at `start` with jump word `jump` (the second is empty for a
/// tile of consecutive keys).
pub fn runs(start: usize, jump: u32) -> [Range<usize>; 2] {
    let split = (jump & ((1 << SPLIT_BITS) - 1)) as usize;
    let gap = (jump >> SPLIT_BITS) as usize;
    if gap == 0 {
        [start..start + 64, 0..0]
    } else {
        [start..start + split, start + split + gap..start + 64 + gap]
    }
}

/// The key of row `r` of the tile at `start` with jump word `jump` (what [`runs`] says).
#[cube]
pub fn key(start: usize, jump: u32, r: usize) -> usize {
    let split = (jump & comptime!((1u32 << SPLIT_BITS) - 1)) as usize;
    let mut key = start + r;
    if r >= split {
        key += (jump >> SPLIT_BITS) as usize;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        assert_eq!(runs(100, 0), [100..164, 0..0]);
        assert_eq!(runs(100, encode(10, 7)), [100..110, 117..171]);
        assert_eq!(
            runs(0, encode(63, MAX_GAP)),
            [0..63, 63 + MAX_GAP..64 + MAX_GAP]
        );
    }

    #[test]
    #[should_panic(expected = "jump of")]
    fn a_gap_past_the_word_is_refused() {
        encode(1, MAX_GAP + 1);
    }
}
