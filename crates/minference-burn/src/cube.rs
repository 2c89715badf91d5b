//! The CubeCL engine: [`SparseAttentionBackend`] for `CubeBackend` (CUDA, wgpu) with the
//! kernels of `minference-kernels`.

use crate::attention::SparseAttentionBackend;
use crate::error::{MinferenceError, Result};
use crate::estimate::block_sparse::BlockPicks;
use crate::estimate::vertical_slash::VerticalSlashScores;
use crate::index::{Geometry, SparseIndex};
use crate::pattern::LayerPatterns;
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::CubeElement;
use minference_kernels::estimate::block_sparse as bs_kernels;
use minference_kernels::estimate::vertical_slash as vs_kernels;
use minference_kernels::sparse_flash::{self, IndexHandles, Path, Problem};

/// Which kernel path runs for `dtype` on `client`'s device.
fn path_for<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    dtype: DType,
    head_dim: usize,
) -> Path {
    match dtype {
        DType::F16 => sparse_flash::best_path::<R, half::f16>(client, head_dim),
        DType::BF16 => sparse_flash::best_path::<R, half::bf16>(client, head_dim),
        _ => Path::Portable,
    }
}

/// Whether this runtime runs the kernels by default.
///
/// On wgpu the portable kernel returns wrong rows on Mesa's lavapipe once a query block's work
/// passes roughly 30K key·dim products with `head_dim ≥ 40`, while the same kernel passes every
/// check on CUDA (H100). Until that is understood, wgpu runs the reference engine by default
/// and says so in [`SparseAttentionBackend::engine`]; [`attention_with_index`] still launches the
/// kernel when called directly (the lavapipe tests do, on the shapes where it is right).
pub fn kernels_by_default<R: CubeRuntime>(client: &cubecl::client::ComputeClient<R>) -> bool {
    !R::name(client).contains("wgpu")
}

/// A fresh contiguous `[batch, heads, n, head_dim]` output, optionally filled with NaN so that
/// an element the kernel fails to write shows up.
fn output<R: CubeRuntime>(like: &CubeTensor<R>, poison: bool) -> CubeTensor<R> {
    let shape = like.meta.shape().clone();
    let client = like.client.clone();
    let count = shape.num_elements();
    let handle = match (poison, like.dtype) {
        (false, dtype) => client.empty(count * dtype.size()),
        (true, DType::F16) => {
            client.create_from_slice(half::f16::as_bytes(&vec![half::f16::NAN; count]))
        }
        (true, DType::BF16) => {
            client.create_from_slice(half::bf16::as_bytes(&vec![half::bf16::NAN; count]))
        }
        (true, _) => client.create_from_slice(f32::as_bytes(&vec![f32::NAN; count])),
    };
    CubeTensor::new_contiguous(client, like.device.clone(), shape, handle, like.dtype)
}

/// The index on `client`'s device, for callers that launch several times with one index
/// (benchmarks: the upload is then paid once).
pub fn upload_index<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    index: &SparseIndex,
) -> IndexHandles {
    IndexHandles::upload(
        client,
        &index.block_count,
        &index.block_offset,
        &index.column_count,
        &index.column_index,
        index.max_blocks,
        index.max_columns,
    )
}

/// Runs the sparse flash kernel on device tensors; `path` defaults to the fastest this device
/// offers for the dtype.
pub fn attention_with_index<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    index: &SparseIndex,
    scale: f64,
    path: Option<Path>,
    poison: bool,
) -> Result<CubeTensor<R>> {
    let handles = upload_index(&q.client, index);
    attention_with_handles(q, k, v, index, &handles, scale, path, poison)
}

/// [`attention_with_index`] with the index already on the device (`handles` from
/// [`upload_index`] of the same `index`, which still supplies the geometry checked here).
#[allow(clippy::too_many_arguments)]
pub fn attention_with_handles<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    index: &SparseIndex,
    handles: &IndexHandles,
    scale: f64,
    path: Option<Path>,
    poison: bool,
) -> Result<CubeTensor<R>> {
    let client = q.client.clone();
    let [batch, heads, n_queries, head_dim] = q.meta.shape().dims();
    let kv_heads = k.meta.shape().dims::<4>()[1];
    let g = index.geometry;
    if index.batch != batch
        || index.heads != heads
        || g.n_queries != n_queries
        || g.n_keys != k.meta.shape().dims::<4>()[2]
    {
        return Err(MinferenceError::Shape {
            what: "index",
            got: vec![index.batch, index.heads, g.n_queries, g.n_keys],
            expected: format!(
                "an index built for q {:?} and k {:?}",
                q.meta.shape(),
                k.meta.shape()
            ),
        });
    }
    if k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(MinferenceError::Unsupported(format!(
            "q, k and v must share a dtype (found {:?}, {:?}, {:?})",
            q.dtype, k.dtype, v.dtype
        )));
    }
    let problem = Problem {
        batch,
        heads,
        kv_heads,
        n_queries,
        n_keys: g.n_keys,
        query_offset: g.query_offset,
        head_dim,
        scale: scale as f32,
    };
    let path = path.unwrap_or_else(|| path_for(&client, q.dtype, head_dim));
    let out = output(&q, poison);
    let q_dtype = q.dtype;
    let (q, k, v, o) = (q.binding(), k.binding(), v.binding(), out.clone().binding());
    let result = match q_dtype {
        DType::F32 => {
            sparse_flash::launch::<R, f32>(&client, q, k, v, o, Some(handles), &problem, path)
        }
        DType::F16 => {
            sparse_flash::launch::<R, half::f16>(&client, q, k, v, o, Some(handles), &problem, path)
        }
        DType::BF16 => sparse_flash::launch::<R, half::bf16>(
            &client,
            q,
            k,
            v,
            o,
            Some(handles),
            &problem,
            path,
        ),
        other => {
            return Err(MinferenceError::Unsupported(format!(
                "sparse attention kernels take f32, f16 or bf16 tensors, not {other:?}"
            )))
        }
    };
    result.map_err(|e| MinferenceError::Unsupported(e.to_string()))?;
    Ok(out)
}

/// The kernels' [`Problem`] for `q`/`k` on `geometry`, checked against the geometry.
fn problem_of<R: CubeRuntime>(
    q: &CubeTensor<R>,
    k: &CubeTensor<R>,
    geometry: &Geometry,
    scale: f64,
) -> Result<Problem> {
    let [batch, heads, n_queries, head_dim] = q.meta.shape().dims();
    let [_, kv_heads, n_keys, _] = k.meta.shape().dims::<4>();
    if n_queries != geometry.n_queries || n_keys != geometry.n_keys {
        return Err(MinferenceError::Shape {
            what: "q/k",
            got: vec![n_queries, n_keys],
            expected: format!("the geometry's {geometry:?}"),
        });
    }
    Ok(Problem {
        batch,
        heads,
        kv_heads,
        n_queries,
        n_keys,
        query_offset: geometry.query_offset,
        head_dim,
        scale: scale as f32,
    })
}

/// Causal dense attention with the register kernel and no index, or `None` where that kernel
/// cannot run (device, dtype, head dimension or layout): the caller then builds a dense index.
pub fn causal_attention<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    geometry: &Geometry,
    scale: f64,
) -> Result<Option<CubeTensor<R>>> {
    let client = q.client.clone();
    let problem = problem_of(&q, &k, geometry, scale)?;
    if path_for(&client, q.dtype, problem.head_dim) != Path::Mma
        || k.dtype != q.dtype
        || v.dtype != q.dtype
    {
        return Ok(None);
    }
    let out = output(&q, false);
    let dtype = q.dtype;
    let (q, k, v, o) = (q.binding(), k.binding(), v.binding(), out.clone().binding());
    let result = match dtype {
        DType::F16 => {
            sparse_flash::launch::<R, half::f16>(&client, q, k, v, o, None, &problem, Path::Mma)
        }
        DType::BF16 => {
            sparse_flash::launch::<R, half::bf16>(&client, q, k, v, o, None, &problem, Path::Mma)
        }
        _ => return Ok(None),
    };
    match result {
        Ok(()) => Ok(Some(out)),
        Err(minference_kernels::KernelError::NoCausalDense) => Ok(None),
        Err(e) => Err(MinferenceError::Unsupported(e.to_string())),
    }
}

/// Block-Sparse picks of every head computed by the device kernels
/// (`minference_kernels::estimate::block_sparse`): only the chosen blocks are read back. `None`
/// past the kernel's reach (more than 4096 key blocks), where the host estimate runs instead.
pub fn block_sparse_picks<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    geometry: &Geometry,
    top_k: usize,
    scale: f64,
) -> Result<Option<BlockPicks>> {
    let client = q.client.clone();
    let problem = problem_of(&q, &k, geometry, scale)?;
    if problem.key_blocks() > bs_kernels::MAX_KEY_BLOCKS {
        return Ok(None);
    }
    let dtype = q.dtype;
    let (qb, kb) = (q.binding(), k.binding());
    let handles = match dtype {
        DType::F32 => bs_kernels::select_blocks::<R, f32>(&client, qb, kb, &problem, top_k),
        DType::F16 => bs_kernels::select_blocks::<R, half::f16>(&client, qb, kb, &problem, top_k),
        DType::BF16 => bs_kernels::select_blocks::<R, half::bf16>(&client, qb, kb, &problem, top_k),
        other => {
            return Err(MinferenceError::Unsupported(format!(
                "index estimation takes f32, f16 or bf16 tensors, not {other:?}"
            )))
        }
    }
    .map_err(|e| MinferenceError::Unsupported(e.to_string()))?;
    let read = |h| u32::from_bytes(&client.read_one_unchecked(h)).to_vec();
    Ok(Some(BlockPicks {
        query_blocks: problem.query_blocks(),
        max_blocks: handles.max_blocks,
        count: read(handles.block_count),
        tiles: read(handles.block_offset),
    }))
}

/// Vertical-Slash scores of every head computed by the device kernels
/// (`minference_kernels::estimate`), read back for the host's top-k and conversion.
pub fn vertical_slash_scores<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    geometry: &Geometry,
    scale: f64,
) -> Result<VerticalSlashScores> {
    let client = q.client.clone();
    let problem = problem_of(&q, &k, geometry, scale)?;
    let dtype = q.dtype;
    let (qb, kb) = (q.binding(), k.binding());
    let handles = match dtype {
        DType::F32 => vs_kernels::scores::<R, f32>(&client, qb, kb, &problem),
        DType::F16 => vs_kernels::scores::<R, half::f16>(&client, qb, kb, &problem),
        DType::BF16 => vs_kernels::scores::<R, half::bf16>(&client, qb, kb, &problem),
        other => {
            return Err(MinferenceError::Unsupported(format!(
                "index estimation takes f32, f16 or bf16 tensors, not {other:?}"
            )))
        }
    }
    .map_err(|e| MinferenceError::Unsupported(e.to_string()))?;
    let read = |h| f32::from_bytes(&client.read_one_unchecked(h)).to_vec();
    Ok(VerticalSlashScores {
        vertical: read(handles.vertical),
        slash: read(handles.slash),
        n_keys: problem.n_keys,
        diagonals: problem.diagonals(),
    })
}

fn primitive<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    t: Tensor<CubeBackend<R, F, I, BT>, 4>,
) -> CubeTensor<R> {
    t.into_primitive().tensor()
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> SparseAttentionBackend
    for CubeBackend<R, F, I, BT>
{
    fn engine(device: &Self::Device) -> &'static str {
        let client = R::client(device);
        if !kernels_by_default(&client) {
            return "reference (CubeCL kernels are off by default on wgpu, see README: Known issues)";
        }
        match path_for(&client, F::dtype(), 128) {
            Path::Mma => "cubecl mma register kernel",
            Path::TensorCore => "cubecl tensor-core kernel",
            Path::Portable => "cubecl portable kernel",
        }
    }

    fn causal_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Tensor<Self, 4>> {
        if kernels_by_default(&R::client(&q.device())) {
            let (qp, kp, vp) = (
                primitive(q.clone()),
                primitive(k.clone()),
                primitive(v.clone()),
            );
            if let Some(out) = causal_attention(qp, kp, vp, &geometry, scale)? {
                return Ok(Tensor::from_primitive(TensorPrimitive::Float(out)));
            }
        }
        crate::attention::indexed_causal_attention(q, k, v, geometry, scale)
    }

    fn build_index(
        q: &Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<SparseIndex> {
        if !kernels_by_default(&R::client(&q.device())) {
            return Ok(crate::reference::build_index(
                q, k, patterns, &geometry, scale,
            ));
        }
        let mut estimates = crate::reference::Estimates {
            vertical_slash: patterns
                .heads()
                .iter()
                .any(|p| matches!(p, crate::Pattern::VerticalSlash { .. }))
                .then(|| {
                    vertical_slash_scores(
                        primitive(q.clone()),
                        primitive(k.clone()),
                        &geometry,
                        scale,
                    )
                })
                .transpose()?,
            ..Default::default()
        };
        // One device selection per distinct budget; past the kernel's reach (> 256K keys) the
        // host estimate runs for those heads.
        let budgets: std::collections::BTreeSet<usize> = patterns
            .heads()
            .iter()
            .filter_map(|p| match *p {
                crate::Pattern::BlockSparse { top_k } => Some(top_k),
                _ => None,
            })
            .collect();
        for top_k in budgets {
            let picks = block_sparse_picks(
                primitive(q.clone()),
                primitive(k.clone()),
                &geometry,
                top_k,
                scale,
            )?;
            if let Some(picks) = picks {
                estimates.block_sparse.insert(top_k, picks);
            }
        }
        Ok(crate::reference::build_index_with(
            q, k, patterns, &geometry, scale, estimates,
        ))
    }

    fn attention_with_index(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        index: &SparseIndex,
        scale: f64,
        poison: bool,
    ) -> Result<Tensor<Self, 4>> {
        if !kernels_by_default(&R::client(&q.device())) {
            return Ok(crate::reference::attention_with_index(
                &q, &k, &v, index, scale,
            ));
        }
        let out = attention_with_index(
            primitive(q),
            primitive(k),
            primitive(v),
            index,
            scale,
            None,
            poison,
        )?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}
