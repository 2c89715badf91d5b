//! # minference-llama
//!
//! Llama-family models for minference-rs. So far: [`gguf`], a checked reader of GGUF files
//! (header, metadata, tensor table), the format the default SmolLM2 weights come in.

pub mod gguf;
