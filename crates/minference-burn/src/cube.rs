//! The CubeCL engine: [`SparseAttentionBackend`] for `CubeBackend` (CUDA, wgpu) with the
//! kernels of `minference-kernels`.

use crate::attention::{Measured, SparseAttentionBackend};
use crate::error::{MinferenceError, Result};
use crate::estimate::vertical_slash::VerticalSlashScores;
use crate::index::{Geometry, SparseIndex};
use crate::pattern::{LayerPatterns, Pattern, FORCED_SLASH, FORCED_VERTICAL};
use crate::split::{self, Pass};
use burn::tensor::{DType, Tensor, TensorPrimitive};
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::CubeElement;
use minference_kernels::copy;
use minference_kernels::estimate::block_sparse as bs_kernels;
use minference_kernels::estimate::vertical_slash as vs_kernels;
use minference_kernels::index::{self as index_kernels, Forced, HeadPlan};
use minference_kernels::limits;
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

/// Density above which the register kernel's index-free causal pass is faster than its
/// indexed pass: the ratio of their measured rates per computed tile on the H200
/// (`benches/RESULTS.md`, session 10, bf16, d = 128: 0.90–0.99 from 16K to 256K tokens, the
/// lowest taken; it was ~0.70 before the indexed kernel ran three independent query blocks a
/// cube). The index is already built when the switch is decided, so only the rates count. With
/// 32 query rows a plane (H100, session 13) the ratio was 0.92–1.07 but for one row at 0.83
/// (Block-Sparse, 64K, random, one call): the switch stays.
pub const DENSE_ABOVE: f64 = 0.9;

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
        &index.block_jump,
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
    let [batch, heads, _, _] = q.meta.shape().dims();
    if index.batch != batch || index.heads != heads {
        return Err(MinferenceError::Shape {
            what: "index",
            got: vec![index.batch, index.heads],
            expected: format!("an index built for q {:?}", q.meta.shape()),
        });
    }
    let handles = upload_index(&q.client, index);
    attention_with_handles(q, k, v, &index.geometry, &handles, scale, path, poison)
}

/// [`attention_with_index`] with the index already on the device: from [`upload_index`] or
/// [`device_index`] for the same `q`, `k` and `geometry`.
#[allow(clippy::too_many_arguments)]
pub fn attention_with_handles<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    geometry: &Geometry,
    handles: &IndexHandles,
    scale: f64,
    path: Option<Path>,
    poison: bool,
) -> Result<CubeTensor<R>> {
    let client = q.client.clone();
    if k.dtype != q.dtype || v.dtype != q.dtype {
        return Err(MinferenceError::Unsupported(format!(
            "q, k and v must share a dtype (found {:?}, {:?}, {:?})",
            q.dtype, k.dtype, v.dtype
        )));
    }
    let problem = problem_of(&q, &k, geometry, scale)?;
    let path = path.unwrap_or_else(|| path_for(&client, q.dtype, problem.head_dim));
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
    problem_for(
        q.meta.shape().dims(),
        k.meta.shape().dims(),
        geometry,
        scale,
    )
}

/// [`problem_of`] from the shapes of `q` and `k`.
fn problem_for(q: [usize; 4], k: [usize; 4], geometry: &Geometry, scale: f64) -> Result<Problem> {
    let [batch, heads, n_queries, head_dim] = q;
    let [_, kv_heads, n_keys, _] = k;
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
    causal_attention_on(q, k, v, geometry, scale, Path::Mma)
}

/// [`causal_attention`] on one of the register paths ([`Path::Mma`], the device's choice, or
/// [`Path::MmaGroups`]); `None` also for any other path.
pub fn causal_attention_on<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    v: CubeTensor<R>,
    geometry: &Geometry,
    scale: f64,
    path: Path,
) -> Result<Option<CubeTensor<R>>> {
    if !matches!(path, Path::Mma | Path::MmaGroups) {
        return Ok(None);
    }
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
            sparse_flash::launch::<R, half::f16>(&client, q, k, v, o, None, &problem, path)
        }
        DType::BF16 => {
            sparse_flash::launch::<R, half::bf16>(&client, q, k, v, o, None, &problem, path)
        }
        _ => return Ok(None),
    };
    match result {
        Ok(()) => Ok(Some(out)),
        Err(minference_kernels::KernelError::NoCausalDense) => Ok(None),
        Err(e) => Err(MinferenceError::Unsupported(e.to_string())),
    }
}

/// Each head's [`HeadPlan`]: the pattern with its budgets clamped as the host estimators clamp
/// them.
fn head_plans(patterns: &LayerPatterns, geometry: &Geometry) -> Vec<HeadPlan> {
    patterns
        .heads()
        .iter()
        .map(|p| match *p {
            Pattern::Dense => HeadPlan::Dense,
            Pattern::AShape { sink, local } => HeadPlan::AShape { sink, local },
            Pattern::VerticalSlash { vertical, slash } => {
                let (vertical, slash) =
                    crate::estimate::vertical_slash::clamp_budgets(vertical, slash, geometry);
                HeadPlan::VerticalSlash { vertical, slash }
            }
            Pattern::BlockSparse { top_k } => HeadPlan::BlockSparse { top_k },
        })
        .collect()
}

/// The passes (`split::plan`) that keep every launch of this layer within the kernels' 32-bit
/// offsets (`minference_kernels::limits`): one for any layer up to 2³² elements a buffer. With
/// `indexed` false only the tensors count (the index-free causal kernel).
fn layer_passes(
    q: [usize; 4],
    k: [usize; 4],
    patterns: &LayerPatterns,
    geometry: &Geometry,
    indexed: bool,
) -> Result<Vec<Pass>> {
    let problem = problem_for(q, k, geometry, 1.0)?;
    let plans = head_plans(patterns, geometry);
    let widths = if indexed {
        index_kernels::widths(&plans, &problem)
    } else {
        (1, 1)
    };
    let vertical_slash = indexed
        && plans
            .iter()
            .any(|plan| matches!(plan, HeadPlan::VerticalSlash { .. }));
    split::plan(&problem, |part| {
        limits::check(part, widths, vertical_slash).is_ok()
    })
}

/// Writes a pass's output `part` (`[rows, heads, n, head_dim]`) into the layer's contiguous
/// output at `[rows, heads]`, one contiguous copy per batch row
/// (`minference_kernels::copy`: offsets relative to the part, so outputs past 2³² elements
/// work, where Burn's `slice_assign` indexes the whole output).
fn place_part<R: CubeRuntime>(
    out: CubeTensor<R>,
    part: CubeTensor<R>,
    [rows, heads]: [std::ops::Range<usize>; 2],
) -> Result<CubeTensor<R>> {
    let part = burn_cubecl::kernel::into_contiguous(part);
    let [_, layer_heads, n, head_dim] = out.meta.shape().dims();
    let [part_rows, part_heads, part_n, part_dim] = part.meta.shape().dims();
    if !out.is_contiguous()
        || part.dtype != out.dtype
        || [part_rows, part_heads, part_n, part_dim] != [rows.len(), heads.len(), n, head_dim]
    {
        return Err(MinferenceError::Shape {
            what: "a pass's output",
            got: vec![part_rows, part_heads, part_n, part_dim],
            expected: format!(
                "[{}, {}, {n}, {head_dim}] of {:?} into a contiguous {:?}",
                rows.len(),
                heads.len(),
                out.dtype,
                out.meta.shape()
            ),
        });
    }
    let len = heads.len() * n * head_dim;
    for (i, row) in rows.enumerate() {
        let src = part
            .handle
            .clone()
            .offset_start((i * len * part.dtype.size()) as u64);
        let at = (row * layer_heads + heads.start) * n * head_dim;
        let client = &out.client;
        let copied = match out.dtype {
            DType::F32 => copy::copy_into::<R, f32>(client, &src, &out.handle, at, len),
            DType::F16 => copy::copy_into::<R, half::f16>(client, &src, &out.handle, at, len),
            DType::BF16 => copy::copy_into::<R, half::bf16>(client, &src, &out.handle, at, len),
            other => {
                return Err(MinferenceError::Unsupported(format!(
                    "attention outputs are f32, f16 or bf16, not {other:?}"
                )))
            }
        };
        copied.map_err(|e| MinferenceError::Unsupported(e.to_string()))?;
    }
    Ok(out)
}

/// Places a pass's output in the layer's output for `split::in_passes` on the Cube backends:
/// one contiguous device copy per batch row, with offsets relative to the part, so that it
/// works past 2³² elements (where Burn's `slice_assign` indexes the whole output). `out` must be
/// contiguous (as `Tensor::empty` makes it).
pub fn place<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    out: Tensor<CubeBackend<R, F, I, BT>, 4>,
    part: Tensor<CubeBackend<R, F, I, BT>, 4>,
    at: [std::ops::Range<usize>; 2],
) -> Result<Tensor<CubeBackend<R, F, I, BT>, 4>> {
    let out = place_part(primitive(out), primitive(part), at)?;
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// Whether [`device_index`] can build this layer's index on `client`'s device: the
/// Block-Sparse selection holds a row of key blocks in shared memory
/// (`minference_kernels::estimate::block_sparse::max_key_blocks`: 2M keys on an H100, 256K
/// with 32 KiB); past that the host selects those heads.
pub fn device_index_fits<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    patterns: &LayerPatterns,
    geometry: &Geometry,
) -> bool {
    geometry.key_blocks() <= bs_kernels::max_key_blocks(client)
        || !patterns
            .heads()
            .iter()
            .any(|p| matches!(p, Pattern::BlockSparse { .. }))
}

/// Every head's index estimated and converted on the device
/// (`minference_kernels::index::build`): nothing goes through the host.
pub fn device_index<R: CubeRuntime>(
    q: CubeTensor<R>,
    k: CubeTensor<R>,
    patterns: &LayerPatterns,
    geometry: &Geometry,
    scale: f64,
) -> Result<IndexHandles> {
    let client = q.client.clone();
    let problem = problem_of(&q, &k, geometry, scale)?;
    let plans = head_plans(patterns, geometry);
    let forced = Forced {
        columns: FORCED_VERTICAL,
        diagonals: FORCED_SLASH,
    };
    let dtype = q.dtype;
    let (q, k) = (q.binding(), k.binding());
    match dtype {
        DType::F32 => index_kernels::build::<R, f32>(&client, q, k, &problem, &plans, forced),
        DType::F16 => index_kernels::build::<R, half::f16>(&client, q, k, &problem, &plans, forced),
        DType::BF16 => {
            index_kernels::build::<R, half::bf16>(&client, q, k, &problem, &plans, forced)
        }
        other => {
            return Err(MinferenceError::Unsupported(format!(
                "index estimation takes f32, f16 or bf16 tensors, not {other:?}"
            )))
        }
    }
    .map_err(|e| MinferenceError::Unsupported(e.to_string()))
}

/// The fraction of causal pairs a device index keeps ([`SparseIndex::density`]), counted on
/// the device (`minference_kernels::index::kept_pairs`): nothing but one count per query
/// block is read back.
pub fn device_density<R: CubeRuntime>(
    q: &CubeTensor<R>,
    k: &CubeTensor<R>,
    handles: &IndexHandles,
    geometry: &Geometry,
    scale: f64,
) -> Result<f64> {
    let problem = problem_of(q, k, geometry, scale)?;
    let kept = index_kernels::kept_pairs(&q.client, handles, &problem)
        .map_err(|e| MinferenceError::Unsupported(e.to_string()))?;
    let heads = (problem.batch * problem.heads) as u64;
    Ok(kept as f64 / (geometry.causal_pairs() * heads) as f64)
}

/// A device index read back into a host [`SparseIndex`] (padded as the device built it).
pub fn download_index<R: CubeRuntime>(
    client: &cubecl::client::ComputeClient<R>,
    handles: IndexHandles,
    geometry: Geometry,
    batch: usize,
    heads: usize,
) -> SparseIndex {
    let read = |h| u32::from_bytes(&client.read_one_unchecked(h)).to_vec();
    SparseIndex {
        geometry,
        batch,
        heads,
        max_blocks: handles.max_blocks,
        max_columns: handles.max_columns,
        block_count: read(handles.block_count),
        block_offset: read(handles.block_offset),
        block_jump: read(handles.block_jump),
        column_count: read(handles.column_count),
        column_index: read(handles.column_index),
    }
}

/// Vertical-Slash scores of every head computed by the device kernels
/// (`minference_kernels::estimate`), read back: what the host selection uses past
/// [`device_index_fits`], and what tests compare with the Burn-ops estimate.
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
        match path_for(&R::client(device), F::dtype(), 128) {
            Path::Mma => "cubecl mma register kernel",
            Path::MmaGroups => "cubecl mma register kernel (grouped)",
            Path::TensorCore => "cubecl tensor-core kernel",
            Path::Portable => "cubecl portable kernel",
        }
    }

    /// Where the register kernel runs, its index-free causal pass (271–289 TFLOP/s on the H100,
    /// bf16, d = 128) computes a tile about as fast as the indexed one (0.83–1.07× that rate),
    /// so once the index keeps more than [`DENSE_ABOVE`] of the pairs the exact dense pass
    /// costs no more.
    fn dense_above(device: &Self::Device, head_dim: usize, dtype: DType) -> Option<f64> {
        (path_for(&R::client(device), dtype, head_dim) == Path::Mma).then_some(DENSE_ABOVE)
    }

    fn check_supported(_device: &Self::Device, head_dim: usize, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(MinferenceError::Unsupported(format!(
                "the sparse attention kernels take f32, f16 or bf16 tensors, not {dtype:?}"
            )));
        }
        if !(1..=256).contains(&head_dim) {
            return Err(MinferenceError::Unsupported(
                minference_kernels::KernelError::HeadDim(head_dim).to_string(),
            ));
        }
        Ok(())
    }

    fn causal_attention(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Tensor<Self, 4>> {
        let dense = LayerPatterns::uniform(Pattern::Dense, q.dims()[1])?;
        let index_free = path_for(&R::client(&q.device()), q.dtype(), q.dims()[3]) == Path::Mma;
        let passes = layer_passes(q.dims(), k.dims(), &dense, &geometry, !index_free)?;
        if passes.len() > 1 {
            let run = |q, k, v, _: &LayerPatterns| {
                Ok(Measured {
                    out: Self::causal_attention(q, k, v, geometry, scale)?,
                    density: 1.0,
                    dense: true,
                })
            };
            return Ok(split::in_passes(q, k, v, &dense, &passes, run, place)?.out);
        }
        let (qp, kp, vp) = (
            primitive(q.clone()),
            primitive(k.clone()),
            primitive(v.clone()),
        );
        if let Some(out) = causal_attention(qp, kp, vp, &geometry, scale)? {
            return Ok(Tensor::from_primitive(TensorPrimitive::Float(out)));
        }
        crate::attention::indexed_causal_attention(q, k, v, geometry, scale)
    }

    /// The device index read back (tests and reports); past the device Block-Sparse
    /// selection's reach the host selects, from device Vertical-Slash scores.
    fn build_index(
        q: &Tensor<Self, 4>,
        k: &Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<SparseIndex> {
        let client = R::client(&q.device());
        let [batch, heads, _, _] = q.dims();
        if device_index_fits(&client, patterns, &geometry) {
            let handles = device_index(
                primitive(q.clone()),
                primitive(k.clone()),
                patterns,
                &geometry,
                scale,
            )?;
            return Ok(download_index(&client, handles, geometry, batch, heads));
        }
        let estimates = crate::reference::Estimates {
            vertical_slash: patterns
                .heads()
                .iter()
                .any(|p| matches!(p, Pattern::VerticalSlash { .. }))
                .then(|| {
                    vertical_slash_scores(
                        primitive(q.clone()),
                        primitive(k.clone()),
                        &geometry,
                        scale,
                    )
                })
                .transpose()?,
        };
        Ok(crate::reference::build_index_with(
            q, k, patterns, &geometry, scale, estimates,
        ))
    }

    /// Index built, counted and consumed on the device where it fits ([`device_index_fits`]):
    /// only the per-block pair counts come back.
    fn sparse_attention_measured(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        patterns: &LayerPatterns,
        geometry: Geometry,
        scale: f64,
    ) -> Result<Measured<Self>> {
        let passes = layer_passes(q.dims(), k.dims(), patterns, &geometry, true)?;
        if passes.len() > 1 {
            let run = |q, k, v, patterns: &LayerPatterns| {
                Self::sparse_attention_measured(q, k, v, patterns, geometry, scale)
            };
            return split::in_passes(q, k, v, patterns, &passes, run, place);
        }
        if !device_index_fits(&R::client(&q.device()), patterns, &geometry) {
            return crate::attention::measured_forward(q, k, v, patterns, geometry, scale);
        }
        let (qp, kp) = (primitive(q.clone()), primitive(k.clone()));
        let handles = device_index(qp.clone(), kp.clone(), patterns, &geometry, scale)?;
        let density = device_density(&qp, &kp, &handles, &geometry, scale)?;
        if crate::attention::runs_dense(&q, || density) {
            return Ok(Measured {
                out: Self::causal_attention(q, k, v, geometry, scale)?,
                density,
                dense: true,
            });
        }
        let vp = primitive(v);
        let out = attention_with_handles(qp, kp, vp, &geometry, &handles, scale, None, false)?;
        Ok(Measured {
            out: Tensor::from_primitive(TensorPrimitive::Float(out)),
            density,
            dense: false,
        })
    }

    /// Index built and consumed on the device, where it fits ([`device_index_fits`]).
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
        let passes = layer_passes(q.dims(), k.dims(), patterns, &geometry, true)?;
        if passes.len() > 1 {
            let run = |q, k, v, patterns: &LayerPatterns| {
                Ok(Measured {
                    out: Self::sparse_attention_forward(q, k, v, patterns, geometry, scale)?,
                    // Not measured: only the output is used.
                    density: f64::NAN,
                    dense: false,
                })
            };
            return Ok(split::in_passes(q, k, v, patterns, &passes, run, place)?.out);
        }
        if !device_index_fits(&R::client(&q.device()), patterns, &geometry) {
            return crate::attention::indexed_forward(q, k, v, patterns, geometry, scale);
        }
        let (q, k, v) = (primitive(q), primitive(k), primitive(v));
        let handles = device_index(q.clone(), k.clone(), patterns, &geometry, scale)?;
        let out = attention_with_handles(q, k, v, &geometry, &handles, scale, None, false)?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }

    fn attention_with_index(
        q: Tensor<Self, 4>,
        k: Tensor<Self, 4>,
        v: Tensor<Self, 4>,
        index: &SparseIndex,
        scale: f64,
        poison: bool,
    ) -> Result<Tensor<Self, 4>> {
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
