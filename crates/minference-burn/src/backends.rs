//! Which Burn backends implement [`SparseAttentionBackend`].

use crate::attention::SparseAttentionBackend;
use burn_fusion::{Fusion, FusionBackend};

impl<B: FusionBackend + SparseAttentionBackend> SparseAttentionBackend for Fusion<B> {}

#[cfg(feature = "ndarray")]
impl<E, I, Q> SparseAttentionBackend for burn_ndarray::NdArray<E, I, Q>
where
    E: burn_ndarray::FloatNdArrayElement,
    I: burn_ndarray::IntNdArrayElement,
    Q: burn_ndarray::QuantElement,
    burn_ndarray::NdArrayTensor: From<burn_ndarray::SharedArray<E>>,
    burn_ndarray::NdArrayTensor: From<burn_ndarray::SharedArray<I>>,
{
}
