//! # minference-kernels
//!
//! The GPU kernels of minference-rs, written once in CubeCL and generic over
//! [`cubecl::Runtime`] (CUDA, wgpu/Vulkan). No Burn types here: the Burn extension lives in
//! `minference-burn`, which hands these launchers its tensors' buffers.
//!
//! - [`sparse_flash`]: one flash-attention forward kernel over the unified sparse index
//!   (64-key tiles with a causal mask inside, whose keys may jump a gap once, + gathered single
//!   columns), online softmax
//!   with fp32 statistics and accumulators, grouped-query heads read in place. Three paths: a
//!   portable one (any device, any float), a tensor-core one (`cmma`, f16/bf16) and a
//!   register-resident one (manual `mma`, softmax in registers, f16/bf16; 32 query rows a
//!   plane where shared memory holds four of its cubes, 16 rows and grouped query blocks
//!   elsewhere).
//! - [`estimate`]: the index estimates computed on the device (Vertical-Slash scores, top-k
//!   selections, Block-Sparse pooling).
//! - [`index`]: the whole unified index of a layer built on the device from per-head plans.
//! - [`limits`]: what one launch can address (32-bit offsets), checked before every launch;
//!   [`copy`] assembles the output of a layer run in passes.

pub mod copy;
pub mod estimate;
pub mod index;
pub mod limits;
pub mod sparse_flash;

/// Rows of a query block and keys of a tile.
pub const BLOCK: usize = 64;

/// `len` 32-bit words of `handle` as a kernel array argument, refused when the buffer holds
/// fewer: every array a launcher binds goes through here, so that the length a kernel sees
/// never exceeds its buffer (the index arrays come from callers).
pub(crate) fn words<R: cubecl::Runtime>(
    handle: &cubecl::server::Handle,
    len: usize,
) -> Result<cubecl::prelude::ArrayArg<R>, KernelError> {
    let needed = len as u64 * 4;
    if handle.size() < needed {
        return Err(KernelError::Index(format!(
            "an array holds {} bytes, {needed} needed",
            handle.size()
        )));
    }
    // SAFETY: the buffer holds `len` words (checked above).
    Ok(unsafe { cubecl::prelude::ArrayArg::from_raw_parts(handle.clone(), len) })
}

/// Errors the launchers report instead of faulting the device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    /// The head dimension is outside what the kernel is built for.
    #[error(
        "head dimension {0} is not supported (1..=256; multiples of 16 for the tensor-core path)"
    )]
    HeadDim(usize),
    /// The tensor-core path was requested where the device or dtype cannot run it.
    #[error("the tensor-core path needs f16/bf16 inputs on a device with 16x16x16 cmma support")]
    NoTensorCores,
    /// Causal dense attention without an index was asked of a path or a layout that needs one.
    #[error("index-free causal attention needs the mma path and inputs with a contiguous head dimension")]
    NoCausalDense,
    /// The softmax scale is outside [`sparse_flash::SCALE_RANGE`]: the register kernel takes
    /// each row's max over the unscaled logits, which only a positive scale leaves in place,
    /// and relies on a masked score staying far below every real one once scaled.
    #[error(
        "softmax scale must be a number in [{low:e}, {high:e}] (attention uses 1/sqrt(head_dim)), found {0}",
        low = sparse_flash::SCALE_RANGE.start(),
        high = sparse_flash::SCALE_RANGE.end()
    )]
    Scale(String),
    /// Index arrays and problem disagree.
    #[error("index does not match the problem: {0}")]
    Index(String),
    /// A buffer of the launch passes what 32-bit offsets address ([`limits`]).
    #[error("{what} span {elements} elements, past the 2^32 one launch addresses: run the layer in passes over batch rows and KV heads (minference::split; the Burn backends do this themselves)")]
    TooLarge {
        /// Which buffer.
        what: &'static str,
        /// Its elements.
        elements: usize,
    },
    /// The device did not answer a read.
    #[error("the device failed to return a result: {0}")]
    Device(String),
}
