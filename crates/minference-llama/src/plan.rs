//! How a pre-fill runs: which patterns, from what length, in what chunks.

use minference_burn::PatternConfig;

/// Default length below which every layer runs dense.
///
/// Sparse attention only pays once estimating the index costs less than the attention it
/// skips. Measured on the CPU (NdArray, 2 cores) with SmolLM2-135M and its shipped config
/// (`benches/accuracy/needle.md`, pre-fill seconds dense vs searched): about even at 1K tokens
/// (3.5 vs 3.4), ahead from 2K (8.0 vs 7.7) and 4K (17.3 vs 16.3), the gap growing with the
/// length as attention's share of the pre-fill grows. Below 1024 tokens (16 query blocks)
/// there is little to skip, so short chats stay exact. Pass another value with
/// `--min-sparse-len` (0 = always sparse). The GPU crossover is not measured yet.
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
