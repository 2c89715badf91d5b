//! The one entry point users call, and the backend trait behind it.

use crate::error::{MinferenceError, Result};
use crate::index::{Geometry, SparseIndex};
use crate::pattern::LayerPatterns;
use crate::reference;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// Options of [`sparse_attention`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttentionOptions {
    /// Absolute position of the first query; `None` puts the queries at the last positions
    /// (`n_keys − n_queries`), as when pre-filling a chunk after a cache.
    pub query_offset: Option<usize>,
    /// Softmax scale; `None` means `1/√head_dim`.
    pub scale: Option<f64>,
}

/// A layer's attention with what it cost: see
/// [`SparseAttentionBackend::sparse_attention_measured`].
#[derive(Debug)]
pub struct Measured<B: Backend> {
    /// `[batch, heads, n_queries, head_dim]`.
    pub out: Tensor<B, 4>,
    /// Fraction of the causal (query, key) pairs the index keeps ([`SparseIndex::density`]).
    pub density: f64,
    /// True when the layer ran densely because the index kept too much to pay.
    pub dense: bool,
}

/// A backend that can run sparse attention.
///
/// The provided methods are the exact reference (Burn tensor ops, any backend); backends with
/// kernels override them. Inputs reach them already validated by [`sparse_attention`].
pub trait SparseAttentionBackend: Backend {
    /// What computes the attention on this backend, for reports (`"reference"` or a kernel).
    fn engine(_device: &Self::Device) -> &'static str {
        "reference"
    }

    /// Refuses, before anything is launched, inputs this backend's kernels cannot take (so that
    /// a fused backend never meets the error inside its stream, where it could only panic).
    fn check_supported(_device: &Self::Device, _head_dim: usize, _dtype: DType) -> Result<()> {
        Ok(())
    }

    /// The [`SparseIndex::density`] from which this backend computes a layer densely instead:
    /// exact attention, cheaper there than the sparse kernel on the tiles the index keeps.
    /// `None` where dense is never the cheaper one (the default, and the reference's case).
    fn dense_above(_device: &Self::Device, _head_dim: usize, _dtype: DType) -> Option<f64> {
        None
    }

    /// Estimates and converts every head's index.
    fn build_index(
        q: &Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<SparseIndex> {
        Ok(reference::build_index(q, k, patterns, &geometry, scale))
    }

    /// Attention restricted to `index`. `poison` asks kernels to fill the output with NaN
    /// before launching, so that a row they fail to write shows up in tests.
    fn attention_with_index(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        index: &SparseIndex,
        scale: f64,
        poison: bool,
    ) -> Result<Tensor<Self, 4>> {
        let _ = poison;
        Ok(reference::attention_with_index(&q, &k, &v, index, scale))
    }

    /// Causal dense attention (every head [`crate::Pattern::Dense`]). Backends with an
    /// index-free dense kernel override this; the default builds the dense index.
    fn causal_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Tensor<Self, 4>> {
        indexed_causal_attention(q, k, v, geometry, scale)
    }

    /// [`Self::sparse_attention_forward`] that also says what it computed (for a model's
    /// report): the index's density and whether the layer ran densely instead
    /// ([`Self::dense_above`]). The default builds the index on the host
    /// ([`Self::build_index`]); backends with a device index count its pairs there.
    fn sparse_attention_measured(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Measured<Self>> {
        measured_forward(q, k, v, patterns, geometry, scale)
    }

    /// Causal attention of `q` over `k`/`v` under each head's pattern.
    fn sparse_attention_forward(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Tensor<Self, 4>> {
        if patterns.all_dense() {
            return Self::causal_attention(q, k, v, geometry, scale);
        }
        indexed_forward(q, k, v, patterns, geometry, scale)
    }
}

/// [`SparseAttentionBackend::build_index`] then [`SparseAttentionBackend::attention_with_index`]:
/// the default forward, and the fallback of backends whose own forward cannot take a layer.
pub fn indexed_forward<B: SparseAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    patterns: &LayerPatterns,
    geometry: Geometry,
    scale: f64,
) -> Result<Tensor<B, 4>> {
    let index = B::build_index(&q, &k, patterns, geometry, scale)?;
    Ok(attention_or_dense(q, k, v, &index, scale)?.0)
}

/// [`SparseAttentionBackend::build_index`] then [`attention_or_dense`], with the index's
/// density: the default measured forward, and the fallback of backends whose own cannot take a
/// layer.
pub fn measured_forward<B: SparseAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    patterns: &LayerPatterns,
    geometry: Geometry,
    scale: f64,
) -> Result<Measured<B>> {
    let index = B::build_index(&q, &k, patterns, geometry, scale)?;
    let density = index.density();
    let dense = runs_dense(&q, || density);
    Ok(Measured {
        out: dense_or_indexed(q, k, v, &index, dense, scale)?,
        density,
        dense,
    })
}

/// Whether `B` computes a layer whose index keeps `density()` of the pairs densely instead
/// ([`SparseAttentionBackend::dense_above`] for `q`'s device, head dim and dtype). The density
/// is asked for only where the backend may switch (a host index's is an `O(tiles)` walk).
pub(crate) fn runs_dense<B: SparseAttentionBackend>(
    q: &Tensor<B, 4>,
    density: impl FnOnce() -> f64,
) -> bool {
    let head_dim = q.dims()[3];
    B::dense_above(&q.device(), head_dim, q.dtype()).is_some_and(|above| density() > above)
}

/// Attention over `index`, or exact causal dense attention where the index keeps more than
/// [`SparseAttentionBackend::dense_above`] of the pairs (a sparse pass would be slower there);
/// the flag says which ran. `index` must have been built for these tensors.
pub fn attention_or_dense<B: SparseAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    index: &SparseIndex,
    scale: f64,
) -> Result<(Tensor<B, 4>, bool)> {
    let dense = runs_dense(&q, || index.density());
    Ok((dense_or_indexed(q, k, v, index, dense, scale)?, dense))
}

/// Causal dense attention if `dense`, else attention over `index`.
fn dense_or_indexed<B: SparseAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    index: &SparseIndex,
    dense: bool,
    scale: f64,
) -> Result<Tensor<B, 4>> {
    if dense {
        B::causal_attention(q, k, v, index.geometry, scale)
    } else {
        B::attention_with_index(q, k, v, index, scale, false)
    }
}

/// Causal dense attention through a dense index: the default
/// [`SparseAttentionBackend::causal_attention`], and the fallback of backends whose index-free
/// kernel cannot take the inputs.
pub fn indexed_causal_attention<B: SparseAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    geometry: Geometry,
    scale: f64,
) -> Result<Tensor<B, 4>> {
    let patterns = LayerPatterns::uniform(crate::Pattern::Dense, q.dims()[1])?;
    let index = B::build_index(&q, &k, &patterns, geometry, scale)?;
    B::attention_with_index(q, k, v, &index, scale, false)
}

/// Checks shapes and returns the call's geometry.
///
/// `q` is `[batch, heads, n_queries, head_dim]`; `k` and `v` are `[batch, kv_heads, n_keys,
/// head_dim]` with `heads` a multiple of `kv_heads` (grouped-query attention: query head `h`
/// reads KV head `h / (heads / kv_heads)`).
pub fn check_inputs<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    patterns: &LayerPatterns,
    options: &AttentionOptions,
) -> Result<Geometry> {
    let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
    for (what, dims) in [("q", qd), ("k", kd), ("v", vd)] {
        if dims.contains(&0) {
            return Err(MinferenceError::Empty {
                what,
                shape: dims.to_vec(),
            });
        }
    }
    let [batch, heads, n_q, d] = qd;
    let [kb, kv_heads, n_k, kdim] = kd;
    if kb != batch || kdim != d {
        return Err(MinferenceError::Shape {
            what: "k",
            got: kd.to_vec(),
            expected: format!("[{batch}, kv_heads, n_keys, {d}] (batch and head_dim of q)"),
        });
    }
    if vd != kd {
        return Err(MinferenceError::Shape {
            what: "v",
            got: vd.to_vec(),
            expected: format!("{kd:?} (the shape of k)"),
        });
    }
    if heads % kv_heads != 0 {
        return Err(MinferenceError::Grouping {
            q_heads: heads,
            kv_heads,
        });
    }
    for (what, t) in [("k", k.dtype()), ("v", v.dtype())] {
        if t != q.dtype() {
            return Err(MinferenceError::Shape {
                what,
                got: vec![],
                expected: format!("dtype {:?} like q, found {t:?}", q.dtype()),
            });
        }
    }
    if patterns.len() != heads {
        return Err(MinferenceError::PatternCount {
            patterns: patterns.len(),
            heads,
        });
    }
    if let Some(scale) = options.scale {
        let range = minference_kernels::sparse_flash::SCALE_RANGE;
        if !(f64::from(*range.start())..=f64::from(*range.end())).contains(&scale) {
            return Err(MinferenceError::InvalidPattern {
                pattern: "attention",
                reason: minference_kernels::KernelError::Scale(scale.to_string()).to_string(),
            });
        }
    }
    Geometry::new(n_q, n_k, options.query_offset)
}

/// Causal sparse attention of `q` over `k`/`v`, each query head under its pattern.
///
/// Shapes as in [`check_inputs`]; the result has the shape and dtype of `q`.
///
// The example runs on NdArray, whose backend impl needs the `ndarray` feature.
#[cfg_attr(feature = "ndarray", doc = "```")]
#[cfg_attr(not(feature = "ndarray"), doc = "```ignore")]
/// use burn::backend::NdArray;
/// use burn::tensor::{Distribution, Tensor};
/// use minference_burn::{sparse_attention, AttentionOptions, LayerPatterns, Pattern};
///
/// let device = Default::default();
/// let q = Tensor::<NdArray, 4>::random([1, 4, 300, 32], Distribution::Normal(0.0, 1.0), &device);
/// let k = Tensor::<NdArray, 4>::random([1, 2, 300, 32], Distribution::Normal(0.0, 1.0), &device);
/// let v = k.clone();
/// let patterns = LayerPatterns::new(vec![
///     Pattern::Dense,
///     Pattern::AShape { sink: 4, local: 64 },
///     Pattern::VerticalSlash { vertical: 30, slash: 64 },
///     Pattern::BlockSparse { top_k: 2 },
/// ])?;
/// let out = sparse_attention(q, k, v, &patterns, &AttentionOptions::default())?;
/// assert_eq!(out.dims(), [1, 4, 300, 32]);
/// # Ok::<(), minference_burn::MinferenceError>(())
/// ```
pub fn sparse_attention<B: SparseAttentionBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    patterns: &LayerPatterns,
    options: &AttentionOptions,
) -> Result<Tensor<B, 4>> {
    let geometry = check_inputs(&q, &k, &v, patterns, options)?;
    B::check_supported(&q.device(), q.dims()[3], q.dtype())?;
    let scale = options.scale.unwrap_or(1.0 / (q.dims()[3] as f64).sqrt());
    B::sparse_attention_forward(q, k, v, patterns, geometry, scale)
}
