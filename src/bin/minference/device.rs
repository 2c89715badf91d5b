//! Loads the model on the device the user chose and runs a command generic over the backend.

use crate::args::{DeviceKind, Precision, Target};
use crate::progress;
use minference::llama::{ensure_default_model, load, Loaded};
use minference::SparseAttentionBackend;
use std::path::PathBuf;

/// A command that runs on a loaded model.
pub trait WithModel {
    /// Runs on backend `B` with the model loaded on `device`; `path` is the model's file.
    fn run<B: SparseAttentionBackend>(
        self,
        loaded: Loaded<B>,
        path: PathBuf,
        device: B::Device,
    ) -> Result<(), String>;
}

/// Where the model comes from: a path, or the default model (fetched on first use).
pub struct ModelSource {
    /// `--model`, if given.
    pub model: Option<PathBuf>,
    /// `--tokenizer`, if given.
    pub tokenizer: Option<PathBuf>,
}

fn on<B: SparseAttentionBackend, J: WithModel>(
    source: ModelSource,
    device: B::Device,
    job: J,
) -> Result<(), String> {
    let path = match source.model {
        Some(p) => p,
        None => ensure_default_model().map_err(|e| e.to_string())?,
    };
    let loaded = load::<B>(
        &path,
        source.tokenizer.as_deref(),
        &device,
        &mut progress::layers("loading"),
    )
    .map_err(|e| e.to_string())?;
    job.run(loaded, path, device)
}

/// Loads the model on the target device in its precision and runs `job`, or says how to get
/// that device.
pub fn dispatch<J: WithModel>(target: Target, source: ModelSource, job: J) -> Result<(), String> {
    let precision = target.precision;
    let f32_only = |device: &str| match precision {
        None | Some(Precision::F32) => Ok(()),
        Some(p) => Err(format!(
            "--precision {} is for CUDA; the {device} device runs f32 (drop --precision)",
            clap::ValueEnum::to_possible_value(&p)
                .map_or_else(String::new, |v| v.get_name().into())
        )),
    };
    match target.device {
        #[cfg(feature = "ndarray")]
        DeviceKind::Cpu => {
            f32_only("CPU")?;
            on::<minference::backend::Cpu, J>(source, Default::default(), job)
        }
        #[cfg(not(feature = "ndarray"))]
        DeviceKind::Cpu => Err("this binary was built without the `ndarray` feature".into()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Vulkan => {
            f32_only("Vulkan")?;
            on::<minference::backend::Vulkan, J>(source, Default::default(), job)
        }
        #[cfg(not(feature = "wgpu"))]
        DeviceKind::Vulkan => Err("this binary was built without the `vulkan` feature".into()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => match precision.unwrap_or(Precision::Bf16) {
            Precision::Bf16 => {
                on::<minference::backend::Cuda<half::bf16>, J>(source, Default::default(), job)
            }
            Precision::F16 => {
                on::<minference::backend::Cuda<half::f16>, J>(source, Default::default(), job)
            }
            Precision::F32 => on::<minference::backend::Cuda<f32>, J>(source, Default::default(), job),
        },
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(
            "this binary was built without CUDA; rebuild with `cargo run --release --features cuda -- …`"
                .into(),
        ),
    }
}
