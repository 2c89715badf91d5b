//! Which Burn backends implement [`SparseAttentionBackend`]: NdArray (the host tile engine of
//! [`crate::cpu`], index estimation by the reference), and the
//! Fusion-wrapped backends (what `burn::backend::Cuda`/`Wgpu` are with Burn's default
//! features), which hand the op to their inner backend as one custom operation. `CubeBackend`
//! is in [`crate::cube`].

use crate::attention::{Measured, SparseAttentionBackend};
use crate::error::Result;
use crate::index::{Geometry, SparseIndex};
use crate::pattern::LayerPatterns;
use burn::tensor::{Tensor, TensorMetadata, TensorPrimitive};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, NoOp};
use burn_ir::{
    CustomOpIr, HandleContainer, InitOperationIr, OperationIr, OperationOutput, TensorIr,
};
use std::marker::PhantomData;

/// What a [`SparseAttentionOp`] asks of the inner backend.
#[derive(Debug, Clone)]
enum Work {
    /// [`SparseAttentionBackend::attention_with_index`] with a host index.
    Index(SparseIndex),
    /// [`SparseAttentionBackend::causal_attention`].
    Causal,
    /// [`SparseAttentionBackend::sparse_attention_forward`]: the index is built inside the op,
    /// on the inner backend's device.
    Patterns(LayerPatterns),
}

/// The sparse attention of one layer as a fusion operation: runs the inner backend's op.
#[derive(Debug)]
struct SparseAttentionOp<B> {
    desc: CustomOpIr,
    work: Work,
    geometry: Geometry,
    scale: f64,
    poison: bool,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + SparseAttentionBackend> Operation<B::FusionRuntime>
    for SparseAttentionOp<B>
{
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        let ([q, k, v], [out]) = self.desc.as_fixed();
        let tensor = |ir: &TensorIr, handles: &mut HandleContainer<_>| {
            Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(
                handles.get_float_tensor::<B>(ir),
            ))
        };
        let (q, k, v) = (tensor(q, handles), tensor(k, handles), tensor(v, handles));
        // Shapes, index and kernel support were checked before the op was registered (see
        // `SparseAttentionBackend::check_supported`), so the inner op can only fail on a device
        // fault, which a fusion stream has no way to report but panicking.
        let (geometry, scale) = (self.geometry, self.scale);
        let result = match &self.work {
            Work::Index(index) => B::attention_with_index(q, k, v, index, scale, self.poison),
            Work::Causal => B::causal_attention(q, k, v, geometry, scale),
            Work::Patterns(patterns) => {
                B::sparse_attention_forward(q, k, v, patterns, geometry, scale)
            }
        }
        .expect("sparse attention kernel failed inside a fusion stream");
        handles.register_float_tensor::<B>(&out.id, result.into_primitive().tensor());
    }
}

impl<B: FusionBackend + SparseAttentionBackend> SparseAttentionBackend for Fusion<B> {
    fn engine(device: &Self::Device) -> &'static str {
        B::engine(device)
    }

    /// The inner backend estimates (its scoring kernels run on the resolved tensors).
    fn build_index(
        q: &Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<SparseIndex> {
        B::build_index(&resolve(q), &resolve(k), patterns, geometry, scale)
    }

    /// The inner backend's measured pass on the resolved tensors, its output registered back
    /// into the stream. The density decides the pass and is returned, so this layer cannot stay
    /// lazy; resolving keeps the index on the device (the default would build it on the host).
    fn sparse_attention_measured(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Measured<Self>> {
        let client = q.clone().into_primitive().tensor().client.clone();
        let inner = B::sparse_attention_measured(
            resolve(&q),
            resolve(&k),
            resolve(&v),
            patterns,
            geometry,
            scale,
        )?;
        let out = inner.out.into_primitive().tensor();
        let (shape, dtype) = (out.shape(), out.dtype());
        let handle = B::float_tensor_handle(out);
        let desc = InitOperationIr::create(shape, dtype, || client.register_tensor_handle(handle));
        let out = client
            .register(
                OperationStreams::default(),
                OperationIr::Init(desc),
                NoOp::<B>::new(),
            )
            .output();
        Ok(Measured {
            out: Tensor::from_primitive(TensorPrimitive::Float(out)),
            density: inner.density,
            dense: inner.dense,
        })
    }

    fn attention_with_index(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        index: &SparseIndex,
        scale: f64,
        poison: bool,
    ) -> Result<Tensor<Self, 4>> {
        let geometry = index.geometry;
        Ok(register_attention::<B>(
            q,
            k,
            v,
            Work::Index(index.clone()),
            geometry,
            scale,
            poison,
        ))
    }

    fn causal_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Tensor<Self, 4>> {
        Ok(register_attention::<B>(
            q,
            k,
            v,
            Work::Causal,
            geometry,
            scale,
            false,
        ))
    }

    /// One custom op for the whole layer: the inner backend estimates, converts and attends.
    fn sparse_attention_forward(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Tensor<Self, 4>> {
        Ok(register_attention::<B>(
            q,
            k,
            v,
            Work::Patterns(patterns.clone()),
            geometry,
            scale,
            false,
        ))
    }

    fn check_supported(
        device: &Self::Device,
        head_dim: usize,
        dtype: burn::tensor::DType,
    ) -> Result<()> {
        B::check_supported(device, head_dim, dtype)
    }
}

/// The inner backend's tensor behind `t`, once the operations queued for it have run.
fn resolve<B: FusionBackend>(t: &Tensor<Fusion<B>, 4>) -> Tensor<B, 4> {
    let t = t.clone().into_primitive().tensor();
    let client = t.client.clone();
    Tensor::from_primitive(TensorPrimitive::Float(client.resolve_tensor_float::<B>(t)))
}

/// Registers the attention as one custom operation of the fusion stream.
fn register_attention<B: FusionBackend + SparseAttentionBackend>(
    q: Tensor<Fusion<B>, 4>,
    k: Tensor<Fusion<B>, 4>,
    v: Tensor<Fusion<B>, 4>,
    work: Work,
    geometry: Geometry,
    scale: f64,
    poison: bool,
) -> Tensor<Fusion<B>, 4> {
    let (q, k, v) = (
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
    );
    let client = q.client.clone();
    let streams = OperationStreams::with_inputs([&q, &k, &v]);
    let out = TensorIr::uninit(client.create_empty_handle(), q.shape.clone(), q.dtype);
    let desc = CustomOpIr::new(
        "minference_sparse_attention",
        &[q.into_ir(), k.into_ir(), v.into_ir()],
        &[out],
    );
    let op = SparseAttentionOp::<B> {
        desc: desc.clone(),
        work,
        geometry,
        scale,
        poison,
        backend: PhantomData,
    };
    let out = client
        .register(streams, OperationIr::Custom(desc), op)
        .output();
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[cfg(feature = "ndarray")]
impl<E, I, Q> SparseAttentionBackend for burn_ndarray::NdArray<E, I, Q>
where
    E: burn_ndarray::FloatNdArrayElement,
    I: burn_ndarray::IntNdArrayElement,
    Q: burn_ndarray::QuantElement,
    burn_ndarray::NdArrayTensor: From<burn_ndarray::SharedArray<E>>,
    burn_ndarray::NdArrayTensor: From<burn_ndarray::SharedArray<I>>,
{
    fn engine(_device: &Self::Device) -> &'static str {
        "cpu sparse tiles"
    }

    /// The host tile engine ([`crate::cpu`]): computes only the index's tiles and columns.
    fn attention_with_index(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        index: &SparseIndex,
        scale: f64,
        _poison: bool,
    ) -> Result<Tensor<Self, 4>> {
        let [batch, heads, n_q, d] = q.dims();
        let [_, kv_heads, n_k, _] = k.dims();
        let device = q.device();
        let shapes = crate::cpu::Shapes {
            batch,
            heads,
            kv_heads,
            n_q,
            n_k,
            d,
        };
        let (q, k, v) = (HostF32::of(q), HostF32::of(k), HostF32::of(v));
        let out = crate::cpu::attention_with_index(
            &q.slice(),
            &k.slice(),
            &v.slice(),
            shapes,
            index,
            scale as f32,
        );
        Ok(Tensor::from_data(
            burn::tensor::TensorData::new(out, [batch, heads, n_q, d]).convert::<E>(),
            &device,
        ))
    }
}

/// An NdArray tensor's values as f32 on the host, borrowed when the tensor already is a
/// contiguous f32 array (the common case: `into_data` would copy element by element when the
/// array is shared, as a KV cache is).
#[cfg(feature = "ndarray")]
enum HostF32 {
    /// An `NdArrayTensor::F32`.
    Storage(burn_ndarray::NdArrayTensor),
    Owned(Vec<f32>),
}

#[cfg(feature = "ndarray")]
impl HostF32 {
    fn of<B: burn::tensor::backend::Backend<FloatTensorPrimitive = burn_ndarray::NdArrayTensor>>(
        t: Tensor<B, 4>,
    ) -> Self {
        match t.into_primitive().tensor() {
            t @ burn_ndarray::NdArrayTensor::F32(_) => HostF32::Storage(t),
            other => HostF32::Owned(
                Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(other))
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("converted to f32"),
            ),
        }
    }

    fn slice(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            HostF32::Storage(burn_ndarray::NdArrayTensor::F32(storage)) => {
                let view = storage.view();
                match view.to_slice() {
                    Some(slice) => std::borrow::Cow::Borrowed(slice),
                    None => std::borrow::Cow::Owned(view.iter().copied().collect()),
                }
            }
            HostF32::Owned(values) => std::borrow::Cow::Borrowed(values),
            HostF32::Storage(_) => unreachable!("only F32 tensors are stored"),
        }
    }
}
