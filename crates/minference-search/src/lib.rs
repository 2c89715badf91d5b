//! # minference-search
//!
//! MInference's offline step as a tool, and the evaluation that checks sparse pre-fill keeps
//! accuracy:
//! - [`mod@search`]: the kernel-aware per-head pattern search (recall of attention mass at equal
//!   tile cost, measured tile by tile against dense attention);
//! - [`tasks`]: synthetic long-context tasks generated in Rust (needle, pass key, multi-key,
//!   variable tracking);
//! - [`eval`]: the same prompts pre-filled dense and sparse, answers checked;
//! - [`plot`]: the pattern map and the needle heat-map as PNG.

#![warn(missing_docs)]

pub mod eval;
pub mod plot;
pub mod recall;
pub mod search;
pub mod tasks;

pub use search::{search, Measured, SearchOptions, SearchReport};
pub use tasks::{Task, TaskBuilder, TaskKind};
