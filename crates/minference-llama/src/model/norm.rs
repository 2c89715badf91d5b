//! RMSNorm, computed in f32 whatever the model's float type.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

/// `x / rms(x) · weight` over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    weight: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// A norm with the given per-channel weight.
    pub fn new(weight: Tensor<B, 1>, eps: f64) -> Self {
        Self {
            weight: weight.cast(FloatDType::F32),
            eps,
        }
    }

    /// Normalises `x` (`[batch, rows, hidden]`); the result has `x`'s dtype.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype: FloatDType = x.dtype().into();
        let x = x.cast(FloatDType::F32);
        let rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt();
        let hidden = self.weight.dims()[0];
        (x / rms * self.weight.clone().reshape([1, 1, hidden])).cast(dtype)
    }
}
