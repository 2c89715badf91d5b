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
/// `--min-sparse-len` (0 = always sparse). GPUs: [`DEFAULT_MIN_SPARSE_LEN_GPU`].
pub const DEFAULT_MIN_SPARSE_LEN: usize = 1024;

/// Default crossover on GPUs (CUDA, wgpu).
///
/// Measured on an H100 with SmolLM2-135M in bf16 (`benches/results/h100-2026-11-25-llama-eval.log`):
/// the searched config pre-filled slower than dense at every length the model takes (4K:
/// 0.3–1.0 s vs 0.1–0.2 s; 8K: 0.7–1.6 s vs 0.4 s), because the index is still estimated on the
/// host while dense attention on the GPU is cheap at these lengths. With the index built on the
/// device (H200, `benches/RESULTS.md`), Block-Sparse top-100 is 1.39× faster than the
/// index-free dense kernel at 16K and 2.47× at 32K, but 0.86× at 8K (attention alone); a whole
/// Llama-3-8B-shaped pre-fill with it is 1.22× faster than dense at 32K and 1.58× at 64K with
/// Burn's autotune (1.07× at 32K without). So GPUs go sparse from 16384.
pub const DEFAULT_MIN_SPARSE_LEN_GPU: usize = 16384;

/// Default rows per chunk of the row-wise parts of a layer (norms, projections, feed-forward).
///
/// Measured on a Llama-3-8B-shaped pre-fill of 32K tokens (H200): with Burn's one fixed matmul
/// configuration (the default build) chunks of 8192 rows took 6.57 s, 2048 rows 10.82 s and
/// 16384 rows 6.71 s — the products fill the GPU from ~8K rows; with Burn's autotune (the
/// `autotune` feature) 2048, 8192 and 16384 were within 2 % (3.92, 3.85, 3.84 s). At 8192 rows
/// the largest activation of that model is 8192 × 28672 (gate and up) × 2 bytes = 470 MB.
pub const DEFAULT_CHUNK_ROWS: usize = 8192;

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
