//! # minference-llama
//!
//! Llama-family models for minference-rs, in Burn, with per-layer, per-head sparse pre-fill.
//!
//! - [`gguf`] and [`weights`]: checked GGUF reading and dequantization, Hugging Face
//!   safetensors, both exposed under Hugging Face tensor names;
//! - [`LlamaConfig`]: hyper-parameters from GGUF metadata or `config.json`;
//! - [`Tokenizer`]: the `tokenizers` crate, from `tokenizer.json` or rebuilt from GGUF, with
//!   the model's chat template;
//! - [`Llama`]: RMSNorm, RoPE (Llama 3 scaling), grouped-query attention through
//!   [`minference_burn::sparse_attention`], SwiGLU, KV cache, chunked pre-fill;
//! - [`generate()`]: sparse pre-fill then dense decoding, greedy or top-p sampling.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod loader;
pub mod model;
pub mod plan;
pub mod sampling;
pub mod tokenizer;
pub mod weights;

pub use config::{LlamaConfig, RopeScaling};
pub use error::{LlamaError, Result};
pub use generate::{generate, generate_after, GenerateOptions, Generation};
pub use loader::{default_model_path, ensure_default_model, load, Loaded};
pub use model::{KvCache, Llama, Logits};
pub use plan::PrefillOptions;
pub use sampling::{Sampler, Sampling};
pub use tokenizer::Tokenizer;
