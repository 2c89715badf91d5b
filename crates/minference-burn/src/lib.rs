//! # minference-burn
//!
//! MInference-style dynamic sparse attention as a Burn backend extension.
//!
//! - [`Pattern`] / [`LayerPatterns`] / [`config::PatternConfig`]: what each head attends to,
//!   loaded from MInference's published JSON or our own versioned format;
//! - [`sparse_attention`]: the one op a model calls, on `[batch, heads, seq, head_dim]` tensors,
//!   grouped-query attention without copying K/V, causal, with an optional query offset;
//! - [`estimate`] and [`index`]: the run-time index estimation and the unified sparse index;
//! - [`mod@reference`]: the exact reference every kernel is checked against;
//! - [`cpu`]: the host tile engine (NdArray), which computes only the selected tiles;
//! - [`split`]: layers past the kernels' 32-bit offsets, run in passes over batch rows and heads;
//! - [`synthetic`]: structured Q/K/V for tests and benchmarks.

#![warn(missing_docs)]

mod attention;
mod backends;
pub mod config;
pub mod cpu;
pub mod cube;
mod error;
pub mod estimate;
pub mod index;
mod pattern;
pub mod reference;
pub mod split;
pub mod synthetic;

pub use attention::{
    attention_or_dense, check_inputs, sparse_attention, AttentionOptions, Measured,
    SparseAttentionBackend,
};
pub use config::{ConfigFormat, ModelShape, PatternConfig};
pub use error::{ConfigLocation, MinferenceError, Result};
pub use index::{BlockSelection, Geometry, SparseIndex};
pub use pattern::{LayerPatterns, Pattern, BLOCK, LAST_Q};
