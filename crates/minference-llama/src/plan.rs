//! How a pre-fill runs: which patterns, from what length, in what chunks.

use minference_burn::PatternConfig;

/// Default length below which every layer runs dense.
///
/// Sparse attention only pays once estimating the index costs less than the attention it
/// skips. On the H100 sweep (benches/RESULTS.md) the shortest length measured, 16K, already
/// favours sparse patterns; below one 64-token block there is nothing to skip at all. 1024
/// tokens (16 query blocks) keeps short chats exact while long prompts go sparse; pass another
/// value with `--min-sparse-len` (0 = always sparse).
pub const DEFAULT_MIN_SPARSE_LEN: usize = 1024;

/// Default rows per chunk of the row-wise parts of a layer (norms, projections, feed-forward).
pub const DEFAULT_CHUNK_ROWS: usize = 2048;

/// Options of a pre-fill.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefillOptions {
    /// Per-layer, per-head patterns; `None` runs every layer dense.
    pub patterns: Option<PatternConfig>,
    /// Prompts shorter than this run dense whatever the patterns say.
    pub min_sparse_len: usize,
    /// Rows per chunk of the row-wise parts of a layer; bounds activation memory at
    /// `chunk_rows × intermediate` whatever the prompt length.
    pub chunk_rows: usize,
}

impl Default for PrefillOptions {
    fn default() -> Self {
        Self {
            patterns: None,
            min_sparse_len: DEFAULT_MIN_SPARSE_LEN,
            chunk_rows: DEFAULT_CHUNK_ROWS,
        }
    }
}

impl PrefillOptions {
    /// Dense attention everywhere.
    pub fn dense() -> Self {
        Self::default()
    }

    /// The given patterns, sparse from any length.
    pub fn sparse(patterns: PatternConfig) -> Self {
        Self {
            patterns: Some(patterns),
            min_sparse_len: 0,
            ..Self::default()
        }
    }
}
