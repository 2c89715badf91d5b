//! Weights from Hugging Face safetensors files (one file or a sharded set).

use super::{check_shape, WeightSource};
use crate::error::{LlamaError, Result};
use ::safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// One or more `.safetensors` files as a [`WeightSource`].
pub struct SafetensorsWeights {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl SafetensorsWeights {
    /// Reads every `*.safetensors` file of a Hugging Face model directory (or one file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| LlamaError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut paths = if path.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io)? {
                let p = entry.map_err(io)?.path();
                if p.extension().is_some_and(|e| e == "safetensors") {
                    found.push(p);
                }
            }
            found
        } else {
            vec![path.to_path_buf()]
        };
        paths.sort();
        if paths.is_empty() {
            return Err(LlamaError::Safetensors {
                path: path.to_path_buf(),
                reason: "no *.safetensors file in this directory".into(),
            });
        }
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let bytes = std::fs::read(&p).map_err(|source| LlamaError::Io {
                path: p.clone(),
                source,
            })?;
            // Parse once up front so a truncated file fails at load, naming the file.
            SafeTensors::deserialize(&bytes).map_err(|e| LlamaError::Safetensors {
                path: p.clone(),
                reason: e.to_string(),
            })?;
            files.push((p, bytes));
        }
        Ok(Self { files })
    }

    /// Wraps already-read safetensors bytes (`origin` names them in errors).
    pub fn from_bytes(origin: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let origin = origin.into();
        SafeTensors::deserialize(&bytes).map_err(|e| LlamaError::Safetensors {
            path: origin.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            files: vec![(origin, bytes)],
        })
    }
}

impl WeightSource for SafetensorsWeights {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        for (path, bytes) in &self.files {
            let st = SafeTensors::deserialize(bytes).expect("validated in open");
            let Ok(view) = st.tensor(name) else {
                continue;
            };
            check_shape(name, view.shape(), shape)?;
            let data = view.data();
            let values = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(LlamaError::Safetensors {
                        path: path.clone(),
                        reason: format!(
                            "tensor {name} has dtype {other:?}; F32, F16 and BF16 are supported"
                        ),
                    })
                }
            };
            return Ok(values);
        }
        Err(LlamaError::MissingTensor {
            name: name.into(),
            looked_for: name.into(),
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.files.iter().any(|(_, bytes)| {
            SafeTensors::deserialize(bytes).is_ok_and(|st| st.tensor(name).is_ok())
        })
    }
}
