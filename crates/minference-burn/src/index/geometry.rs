//! Where a chunk of queries sits among the keys.

use crate::error::{MinferenceError, Result};
use crate::pattern::BLOCK;
use std::ops::Range;

/// Keys one call takes: tiles' jump words hold gaps up to this
/// ([`minference_kernels::index::jump::MAX_GAP`]).
pub const MAX_KEYS: usize = minference_kernels::index::jump::MAX_GAP;

/// Query and key lengths of one attention call.
///
/// Queries are the rows `0..n_queries` of the query tensor, at absolute positions
/// `query_offset..query_offset + n_queries`; keys sit at positions `0..n_keys`. A query at
/// position `p` sees the keys `0..=p` (causal). Pre-filling a prompt in chunks passes the whole
/// key cache with the chunk's offset; a single pass has `n_queries == n_keys`, offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Queries in this call.
    pub n_queries: usize,
    /// Keys (and values) visible to this call.
    pub n_keys: usize,
    /// Absolute position of the first query.
    pub query_offset: usize,
}

impl Geometry {
    /// Checks the lengths (at most [`MAX_KEYS`] keys); `query_offset` defaults to
    /// `n_keys - n_queries` (queries are the last positions, as when pre-filling a chunk after a
    /// cache).
    pub fn new(n_queries: usize, n_keys: usize, query_offset: Option<usize>) -> Result<Self> {
        let query_offset = query_offset.unwrap_or(n_keys.saturating_sub(n_queries));
        if n_queries == 0 || n_keys == 0 || query_offset + n_queries > n_keys {
            return Err(MinferenceError::QueryPastKeys {
                query_offset,
                n_queries: n_queries.max(1),
                n_keys,
            });
        }
        if n_keys > MAX_KEYS {
            return Err(MinferenceError::TooManyKeys {
                n_keys,
                max: MAX_KEYS,
            });
        }
        Ok(Self {
            n_queries,
            n_keys,
            query_offset,
        })
    }

    /// Number of 64-row query blocks (the last may be partial).
    pub fn query_blocks(&self) -> usize {
        self.n_queries.div_ceil(BLOCK)
    }

    /// Number of 64-key blocks, aligned at absolute position 0 (the last may be partial).
    pub fn key_blocks(&self) -> usize {
        self.n_keys.div_ceil(BLOCK)
    }

    /// Rows of the query tensor in block `m`.
    pub fn block_rows(&self, m: usize) -> Range<usize> {
        let start = m * BLOCK;
        start..(start + BLOCK).min(self.n_queries)
    }

    /// Absolute positions of the queries of block `m`.
    pub fn block_positions(&self, m: usize) -> Range<usize> {
        let rows = self.block_rows(m);
        rows.start + self.query_offset..rows.end + self.query_offset
    }

    /// Absolute position of the last query; diagonals `0..=last_position()` exist.
    pub fn last_position(&self) -> usize {
        self.query_offset + self.n_queries - 1
    }

    /// Number of (query, key) pairs the causal mask allows: the work of dense attention.
    pub fn causal_pairs(&self) -> u64 {
        (0..self.n_queries)
            .map(|r| (self.query_offset + r + 1).min(self.n_keys) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_keys_than_a_jump_word_addresses_are_refused() {
        assert!(Geometry::new(1, MAX_KEYS, None).is_ok());
        match Geometry::new(1, MAX_KEYS + 1, None) {
            Err(MinferenceError::TooManyKeys { n_keys, max }) => {
                assert_eq!((n_keys, max), (MAX_KEYS + 1, MAX_KEYS))
            }
            other => panic!("expected TooManyKeys, got {other:?}"),
        }
    }
}
