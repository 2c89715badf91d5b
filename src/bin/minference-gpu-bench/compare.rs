//! Host copies of device tensors and the error measures the checks report.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::Cpu;

/// `t`'s values on the host, as f32 (row-major).
pub(crate) fn host<B: Backend>(t: &Tensor<B, 4>) -> Vec<f32> {
    t.to_data().iter::<f32>().collect()
}

/// The same values on the host backend (NdArray, f32): the references that do not depend on
/// which kernels Burn picked on the GPU.
pub(crate) fn to_cpu<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Tensor<Cpu, D> {
    Tensor::from_data(t.to_data().convert::<f32>(), &Default::default())
}

/// The largest absolute difference; infinite where `a` is not finite (an unwritten, NaN-poisoned
/// output fails).
pub(crate) fn max_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_finite() {
                (x - y).abs() as f64
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

/// The relative error `‖a − b‖₂ / ‖b‖₂`; infinite where `a − b` is not finite.
pub(crate) fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let d = *x as f64 - *y as f64;
        num += if d.is_finite() { d * d } else { f64::INFINITY };
        den += (*y as f64) * (*y as f64);
    }
    (num / den).sqrt()
}
