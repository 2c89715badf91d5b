//! # minference
//!
//! MInference-style dynamic sparse attention for long-context pre-filling, as a Burn backend
//! extension. This crate is the facade: it re-exports [`minference_burn`] and names the
//! backends the project supports.
//!
//! ```
//! use minference::backend::Cpu;
//! use minference::synthetic::{generate, InputKind, SyntheticSpec};
//! use minference::{sparse_attention, AttentionOptions, LayerPatterns, Pattern};
//!
//! let spec = SyntheticSpec { batch: 1, heads: 2, kv_heads: 1, n_queries: 200, n_keys: 200,
//!     query_offset: None, head_dim: 32, kind: InputKind::Structured, seed: 7 };
//! let (q, k, v) = generate(&spec).tensors::<Cpu>(&Default::default());
//! let patterns = LayerPatterns::uniform(Pattern::VerticalSlash { vertical: 40, slash: 60 }, 2)?;
//! let out = sparse_attention(q, k, v, &patterns, &AttentionOptions::default())?;
//! assert_eq!(out.dims(), [1, 2, 200, 32]);
//! # Ok::<(), minference::MinferenceError>(())
//! ```

pub use minference_burn::*;

/// The backends minference-rs is built and tested on.
pub mod backend {
    /// Exact CPU reference backend.
    #[cfg(feature = "ndarray")]
    pub type Cpu = burn::backend::NdArray<f32>;
    /// Vulkan through wgpu (lavapipe in CI), f32.
    #[cfg(feature = "vulkan")]
    pub type Vulkan = burn::backend::wgpu::Vulkan<f32>;
    /// Any wgpu adapter, f32.
    #[cfg(feature = "wgpu")]
    pub type Wgpu = burn::backend::wgpu::Wgpu<f32>;
    /// CUDA (A100/H100), with the float type of your choice (`f32`, `half::f16`, `half::bf16`).
    #[cfg(feature = "cuda")]
    pub type Cuda<F = f32> = burn::backend::Cuda<F>;
}
