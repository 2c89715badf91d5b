//! Rotary position embedding (Hugging Face's layout: the two halves of a head rotate
//! together), with the long-context frequency scalings Llama models use.

use crate::config::{LlamaConfig, RopeScaling};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor, TensorData};

/// Cosine and sine tables for every position of the context.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
}

/// The inverse frequencies of a head's rotary pairs, after scaling.
pub fn inverse_frequencies(config: &LlamaConfig) -> Vec<f64> {
    let d = config.head_dim;
    (0..d / 2)
        .map(|i| {
            let f = config.rope_theta.powf(-((2 * i) as f64) / d as f64);
            match &config.rope_scaling {
                RopeScaling::None => f,
                RopeScaling::Linear(factor) => f / factor,
                RopeScaling::Factors(factors) => f / factors[i] as f64,
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_context,
                } => {
                    // Long wavelengths are stretched by `factor`, short ones kept, and the band
                    // between is interpolated (Llama 3.1's `rope_type: llama3`).
                    let wavelength = 2.0 * std::f64::consts::PI / f;
                    let low = original_context / low_freq_factor;
                    let high = original_context / high_freq_factor;
                    if wavelength < high {
                        f
                    } else if wavelength > low {
                        f / factor
                    } else {
                        let smooth = (original_context / wavelength - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                }
            }
        })
        .collect()
}

impl<B: Backend> Rope<B> {
    /// Tables for positions `0..config.context`, in f32.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> Self {
        let inv = inverse_frequencies(config);
        let half = inv.len();
        let n = config.context;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in 0..n {
            for &f in &inv {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let table = |v: Vec<f32>| {
            Tensor::<B, 2>::from_data(TensorData::new(v, [n, half]), device).cast(FloatDType::F32)
        };
        Self {
            cos: table(cos),
            sin: table(sin),
        }
    }

    /// Rotates `x` (`[batch, heads, rows, head_dim]`) whose rows sit at positions
    /// `start..start + rows`. The caller keeps `start + rows` within the context.
    pub fn apply(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        let [_, _, rows, d] = x.dims();
        let half = d / 2;
        let dtype: FloatDType = x.dtype().into();
        let cos = self
            .cos
            .clone()
            .narrow(0, start, rows)
            .reshape([1, 1, rows, half]);
        let sin = self
            .sin
            .clone()
            .narrow(0, start, rows)
            .reshape([1, 1, rows, half]);
        let x = x.cast(FloatDType::F32);
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let rotated = Tensor::cat(
            vec![
                x1.clone() * cos.clone() - x2.clone() * sin.clone(),
                x2 * cos + x1 * sin,
            ],
            3,
        );
        rotated.cast(dtype)
    }
}
