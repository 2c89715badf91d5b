//! The errors of loading and running a model, each with what to do about it.

use crate::gguf::GgufError;
use std::path::PathBuf;

/// What can go wrong while loading or running a Llama-family model.
#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    /// The GGUF file is unreadable or malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The weights file was not found; says how to get the default weights.
    #[error("model file {path} not found{hint}")]
    MissingModel {
        /// The path looked at.
        path: PathBuf,
        /// How to get it, when it is the default model.
        hint: String,
    },
    /// A hyper-parameter is missing or out of range.
    #[error("{source_name}: {reason}")]
    Config {
        /// The file or metadata the value came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The model's architecture is not a Llama-family one this crate runs.
    #[error("architecture {0:?} is not supported (llama, and models that share its layout: SmolLM2, Llama 2/3, Mistral)")]
    Architecture(String),
    /// A weight the model needs is not in the file.
    #[error("the weights have no tensor {name} (looked for {looked_for}); is this a Llama-family model?")]
    MissingTensor {
        /// The canonical (Hugging Face) name.
        name: String,
        /// The name looked for in the file.
        looked_for: String,
    },
    /// A weight has the wrong shape for the model's hyper-parameters.
    #[error("tensor {name} has shape {got:?}, but the model's hyper-parameters need {expected:?}")]
    TensorShape {
        /// The canonical name.
        name: String,
        /// Its shape (outermost first).
        got: Vec<usize>,
        /// The shape needed (outermost first).
        expected: Vec<usize>,
    },
    /// A safetensors file is malformed or holds a dtype we cannot read.
    #[error("{path}: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt does not fit the model's context.
    #[error("the prompt has {tokens} tokens and {new_tokens} more were asked for, but the model's context is {context} tokens; shorten the prompt or lower --max-tokens")]
    ContextOverflow {
        /// Prompt tokens (including any already in the cache).
        tokens: usize,
        /// Tokens to generate.
        new_tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// The prompt is empty.
    #[error("the prompt is empty: give at least one token")]
    EmptyPrompt,
    /// A token id is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The sparse attention op refused its input (patterns for another model, for example).
    #[error(transparent)]
    Attention(#[from] minference_burn::MinferenceError),
    /// A sampling option is out of range.
    #[error("invalid sampling option: {0}")]
    Sampling(String),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, LlamaError>;
