//! One error type for everything a user can get wrong.
//!
//! Every variant carries what is needed to act on it: the file, layer and head of a bad
//! config entry, the expected and actual shape of a tensor, the model a config was made for.

use std::path::PathBuf;

/// Where in a pattern config a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigLocation {
    /// The file the config came from (`<memory>` when parsed from a string).
    pub file: PathBuf,
    /// Layer index, when the problem is inside a layer.
    pub layer: Option<usize>,
    /// Query-head index, when the problem is inside a head entry.
    pub head: Option<usize>,
}

impl std::fmt::Display for ConfigLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(layer) = self.layer {
            write!(f, ", layer {layer}")?;
        }
        if let Some(head) = self.head {
            write!(f, ", head {head}")?;
        }
        Ok(())
    }
}

/// Errors of minference-rs.
#[derive(Debug, thiserror::Error)]
pub enum MinferenceError {
    /// A tensor has the wrong rank-4 shape for the operation.
    #[error("{what} has shape {got:?}, expected {expected}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        got: Vec<usize>,
        /// A description of the shape that was expected.
        expected: String,
    },
    /// A tensor has a zero-sized dimension.
    #[error("{what} is empty (shape {shape:?}); attention needs at least one query, one key and head_dim >= 1")]
    Empty {
        /// Which argument.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Query heads are not a multiple of key/value heads (grouped-query attention).
    #[error("{q_heads} query heads cannot be grouped over {kv_heads} key/value heads: the query-head count must be a multiple of the KV-head count")]
    Grouping {
        /// Query heads.
        q_heads: usize,
        /// Key/value heads.
        kv_heads: usize,
    },
    /// Queries would sit past the last key, so the causal mask is ill-defined.
    #[error("queries at positions {query_offset}..{} need keys up to position {}, but only {n_keys} keys were given; lower the query offset or pass the whole key cache", query_offset + n_queries, query_offset + n_queries - 1)]
    QueryPastKeys {
        /// Absolute position of the first query.
        query_offset: usize,
        /// Number of queries.
        n_queries: usize,
        /// Number of keys.
        n_keys: usize,
    },
    /// More keys than the index addresses (a tile's jump word holds gaps below 2²⁶ keys).
    #[error("{n_keys} keys: one attention call takes at most {max} keys (67M); pre-fill in shorter calls")]
    TooManyKeys {
        /// Keys given.
        n_keys: usize,
        /// The most one call takes.
        max: usize,
    },
    /// The number of per-head patterns does not match the tensor's heads.
    #[error("{patterns} head patterns were given for {heads} query heads")]
    PatternCount {
        /// Patterns given.
        patterns: usize,
        /// Query heads of the tensor.
        heads: usize,
    },
    /// A pattern parameter is out of range.
    #[error("invalid {pattern} pattern: {reason}")]
    InvalidPattern {
        /// Pattern name.
        pattern: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A config file could not be read.
    #[error("cannot read pattern config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid JSON of either supported format.
    #[error("{location}: {reason}")]
    Config {
        /// Where.
        location: ConfigLocation,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A config was made for a model of another shape.
    #[error("{location}: this config is for a model with {config_layers} layers x {config_heads} heads, but the model has {model_layers} layers x {model_heads} heads; search a config for this model (`minference search`) or pass the right file")]
    ModelMismatch {
        /// The file.
        location: ConfigLocation,
        /// Layers in the config.
        config_layers: usize,
        /// Heads per layer in the config.
        config_heads: usize,
        /// Layers of the model.
        model_layers: usize,
        /// Query heads of the model.
        model_heads: usize,
    },
    /// The backend or device cannot run the requested kernel configuration.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, MinferenceError>;
