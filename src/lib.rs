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

/// Llama-family models with per-head sparse pre-fill ([`minference_llama`]).
pub use minference_llama as llama;

/// The backends minference-rs is built and tested on.
pub mod backend {
    /// CPU (NdArray): the host tile engine for attention, Burn ops for the rest.
    #[cfg(feature = "ndarray")]
    pub type Cpu = burn::backend::NdArray<f32>;
    /// Vulkan through wgpu (lavapipe in CI), f32, without fusion.
    #[cfg(feature = "wgpu")]
    pub type Vulkan = burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u8>;
    /// The same wrapped in Burn's operation fusion (what `burn::backend::Wgpu` is by default).
    #[cfg(all(feature = "wgpu", feature = "fusion"))]
    pub type VulkanFusion = burn_fusion::Fusion<Vulkan>;
    /// Any wgpu adapter, f32 (an alias of [`Vulkan`]: the adapter is chosen at run time).
    #[cfg(feature = "wgpu")]
    pub type Wgpu = Vulkan;
    /// CUDA (A100/H100), without fusion, with the float type of your choice (`f32`,
    /// `half::f16`, `half::bf16`).
    #[cfg(feature = "cuda")]
    pub type Cuda<F = f32> = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, F, i32, u8>;
    /// CUDA wrapped in Burn's operation fusion (what `burn::backend::Cuda` is by default).
    #[cfg(all(feature = "cuda", feature = "fusion"))]
    pub type CudaFusion<F = f32> = burn_fusion::Fusion<Cuda<F>>;
}
