//! Where a model's weights come from: a GGUF file or Hugging Face safetensors.
//!
//! Both sources answer the same question — "the f32 values of the tensor Hugging Face calls
//! `name`, row-major, with this shape" — so the model is built the same way from either.
//! Shapes are given outermost first (`[out_features, in_features]` for a projection).

mod gguf;
mod safetensors;

pub use self::gguf::GgufWeights;
pub use self::safetensors::SafetensorsWeights;

use crate::error::{LlamaError, Result};

/// A source of dequantized weights under their Hugging Face names.
pub trait WeightSource {
    /// The values of tensor `name`, which must have `shape` (outermost first).
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;

    /// True when the source holds `name` (used for optional tensors such as `lm_head.weight`).
    fn contains(&self, name: &str) -> bool;
}

/// The shape check every source applies.
pub(crate) fn check_shape(name: &str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(LlamaError::TensorShape {
            name: name.to_string(),
            got: got.to_vec(),
            expected: expected.to_vec(),
        })
    }
}
