//! The sparse attention patterns a head can use.

use crate::error::{MinferenceError, Result};
use serde::{Deserialize, Serialize};

/// Rows of a query block and columns of a key tile: the granularity of every pattern.
pub const BLOCK: usize = 64;

/// Queries used to estimate a Vertical-Slash index (the last `min(LAST_Q, n)` queries).
pub const LAST_Q: usize = 64;

/// Key columns always kept by Vertical-Slash (attention sinks).
pub const FORCED_VERTICAL: usize = 30;

/// Nearest diagonals always kept by Vertical-Slash (local attention).
pub const FORCED_SLASH: usize = 100;

/// Smallest vertical budget Vertical-Slash accepts (larger budgets are clamped to the keys).
pub const MIN_VERTICAL: usize = 30;

/// Smallest slash budget Vertical-Slash accepts.
pub const MIN_SLASH: usize = 50;

/// One head's attention pattern.
///
/// Positions and sizes are in tokens; all patterns are causal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "pattern", rename_all = "snake_case")]
pub enum Pattern {
    /// Every causal key.
    Dense,
    /// "A-shape" (StreamingLLM): the first `sink` keys plus a local band of `local` keys,
    /// at 64-token granularity (a query block sees the band of its first query rounded out to
    /// whole tiles).
    AShape {
        /// Attention-sink tokens at the start of the sequence.
        sink: usize,
        /// Width of the local window.
        local: usize,
    },
    /// "Vertical-Slash": `vertical` key columns and `slash` diagonals, chosen per input from the
    /// attention of the last 64 queries.
    VerticalSlash {
        /// Key columns to keep.
        vertical: usize,
        /// Diagonals (query-key offsets) to keep.
        slash: usize,
    },
    /// "Block-Sparse": for each 64-query block the `top_k` 64-key blocks with the highest
    /// mean-pooled score (plus its diagonal blocks, the block before them and block 0).
    BlockSparse {
        /// Key blocks per query block.
        top_k: usize,
    },
}

impl Pattern {
    /// The short name used in configs and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::Dense => "dense",
            Pattern::AShape { .. } => "a_shape",
            Pattern::VerticalSlash { .. } => "vertical_slash",
            Pattern::BlockSparse { .. } => "block_sparse",
        }
    }

    /// Checks that every size is positive.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| MinferenceError::InvalidPattern {
            pattern: self.name(),
            reason,
        };
        match *self {
            Pattern::Dense => Ok(()),
            Pattern::AShape { local: 0, .. } => {
                Err(bad("the local window must hold at least one token".into()))
            }
            Pattern::AShape { .. } => Ok(()),
            Pattern::VerticalSlash { vertical, slash } if vertical == 0 || slash == 0 => Err(bad(
                format!("vertical ({vertical}) and slash ({slash}) budgets must be positive"),
            )),
            Pattern::VerticalSlash { .. } => Ok(()),
            Pattern::BlockSparse { top_k: 0 } => {
                Err(bad("top_k must be at least one block".into()))
            }
            Pattern::BlockSparse { .. } => Ok(()),
        }
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Dense => write!(f, "dense"),
            Pattern::AShape { sink, local } => write!(f, "a_shape(sink={sink}, local={local})"),
            Pattern::VerticalSlash { vertical, slash } => {
                write!(f, "vertical_slash(v={vertical}, s={slash})")
            }
            Pattern::BlockSparse { top_k } => write!(f, "block_sparse(top_k={top_k})"),
        }
    }
}

/// The patterns of every query head of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPatterns {
    heads: Vec<Pattern>,
}

impl LayerPatterns {
    /// One pattern per query head, validated.
    pub fn new(heads: Vec<Pattern>) -> Result<Self> {
        for p in &heads {
            p.validate()?;
        }
        Ok(Self { heads })
    }

    /// The same pattern for `heads` query heads.
    pub fn uniform(pattern: Pattern, heads: usize) -> Result<Self> {
        Self::new(vec![pattern; heads])
    }

    /// Per-head patterns, indexed by query head.
    pub fn heads(&self) -> &[Pattern] {
        &self.heads
    }

    /// The patterns of query heads `heads` (already validated), for running a layer in parts.
    pub fn range(&self, heads: std::ops::Range<usize>) -> Self {
        Self {
            heads: self.heads[heads].to_vec(),
        }
    }

    /// Number of query heads.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// True when no head is described.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// True when every head is dense.
    pub fn all_dense(&self) -> bool {
        self.heads.iter().all(|p| *p == Pattern::Dense)
    }
}
