//! Runs a function generic over the backend on the device the user chose.

use crate::args::DeviceKind;
use minference::SparseAttentionBackend;

/// A computation to run on one backend.
pub trait OnBackend {
    /// What the computation returns.
    type Output;
    /// Runs on backend `B`, device `device`.
    fn run<B: SparseAttentionBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on `kind`, or says how to get that device.
pub fn dispatch<J: OnBackend<Output = Result<(), String>>>(
    kind: DeviceKind,
    job: J,
) -> Result<(), String> {
    match kind {
        #[cfg(feature = "ndarray")]
        DeviceKind::Cpu => job.run::<minference::backend::Cpu>(Default::default()),
        #[cfg(not(feature = "ndarray"))]
        DeviceKind::Cpu => Err("this binary was built without the `ndarray` feature".into()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Vulkan => job.run::<minference::backend::Vulkan>(Default::default()),
        #[cfg(not(feature = "wgpu"))]
        DeviceKind::Vulkan => Err("this binary was built without the `vulkan` feature".into()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => job.run::<minference::backend::Cuda<half::bf16>>(Default::default()),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(
            "this binary was built without CUDA; rebuild with `cargo run --release --features cuda -- …`"
                .into(),
        ),
    }
}
