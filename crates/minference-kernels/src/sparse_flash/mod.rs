//! Sparse flash attention over the unified index.
//!
//! One cube computes one 64-row query block of one (batch, query head): it walks the block's
//! tiles, then its gathered columns in chunks, keeping the running max, sum and output in fp32.
//! Query head `h` reads KV head `h / group`, so grouped-query attention needs no copy of K/V.

mod loop_cap;
mod mma;
mod portable;
mod tensor_core;
mod wide;

pub use loop_cap::loop_cap;

use crate::{limits, words, KernelError, BLOCK};
use cubecl::features::MmaConfig;
use cubecl::ir::{ElemType, FloatKind, StorageType};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// The score of a masked key and the running max before any key: a finite stand-in for −∞
/// (CUDA's NVRTC path cannot spell an infinite literal). `exp(MASKED − m) = 0` for any score
/// `m` attention can produce.
pub(crate) const MASKED: f32 = -1.0e30;

/// The softmax scales the kernels take. The register kernel leaves a masked score at `MASKED`
/// and lets `exp(MASKED·scale − max·scale)` vanish by itself, with no test per score: that
/// needs `MASKED·scale` finite and far below any real scaled score (≤ −10¹⁰ here). Attention
/// scales are `1/√d` (0.06–0.25) or close to it.
pub const SCALE_RANGE: std::ops::RangeInclusive<f32> = 1.0e-20..=1.0e6;

/// Sizes of one attention call (and of the index estimates made for it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Problem {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Queries.
    pub n_queries: usize,
    /// Keys.
    pub n_keys: usize,
    /// Absolute position of the first query.
    pub query_offset: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Softmax scale.
    pub scale: f32,
}

impl Problem {
    /// 64-row query blocks.
    pub fn query_blocks(&self) -> usize {
        self.n_queries.div_ceil(BLOCK)
    }

    /// 64-key blocks aligned at position 0.
    pub fn key_blocks(&self) -> usize {
        self.n_keys.div_ceil(BLOCK)
    }

    /// Diagonals (`position − key`) that exist: the last query's position + 1.
    pub fn diagonals(&self) -> usize {
        self.query_offset + self.n_queries
    }

    /// What every launcher checks before launching: a head dimension the kernels take, whole
    /// query groups, queries that fit before the keys' end, a scale in [`SCALE_RANGE`].
    pub fn check(&self) -> Result<(), KernelError> {
        if self.head_dim == 0 || self.head_dim > 256 {
            return Err(KernelError::HeadDim(self.head_dim));
        }
        if !SCALE_RANGE.contains(&self.scale) {
            return Err(KernelError::Scale(self.scale.to_string()));
        }
        if self.n_queries == 0
            || self.kv_heads == 0
            || !self.heads.is_multiple_of(self.kv_heads)
            || self.query_offset + self.n_queries > self.n_keys
        {
            return Err(KernelError::Index(format!("{self:?}")));
        }
        Ok(())
    }
}

/// The unified index on the device: `[batch, heads, query_blocks]` counts and the padded
/// `[.., max_blocks]` tile starts and jump words ([`crate::index::jump`]) and `[.., max_columns]`
/// column positions, all `u32`.
#[derive(Debug, Clone)]
pub struct IndexHandles {
    /// Tiles per query block.
    pub block_count: Handle,
    /// Tile start columns.
    pub block_offset: Handle,
    /// Each tile's jump word.
    pub block_jump: Handle,
    /// Gathered columns per query block.
    pub column_count: Handle,
    /// Gathered column positions.
    pub column_index: Handle,
    /// Width of `block_offset`'s last dimension.
    pub max_blocks: usize,
    /// Width of `column_index`'s last dimension.
    pub max_columns: usize,
    /// Whether a tile's keys may jump (a Vertical-Slash head's): the register kernels build
    /// their jump handling only then, so that other layers run the code they ran before it
    /// (a test per item cost Block-Sparse top-100 2–3 % at 128K on the H100). It must be true
    /// when any jump word is not 0: [`IndexHandles::upload`] and [`crate::index::build`] set it.
    pub jumps: bool,
}

impl IndexHandles {
    /// Uploads a host index (its five arrays and two widths).
    #[allow(clippy::too_many_arguments)]
    pub fn upload<R: Runtime>(
        client: &ComputeClient<R>,
        block_count: &[u32],
        block_offset: &[u32],
        block_jump: &[u32],
        column_count: &[u32],
        column_index: &[u32],
        max_blocks: usize,
        max_columns: usize,
    ) -> Self {
        let up = |data: &[u32]| client.create_from_slice(u32::as_bytes(data));
        Self {
            block_count: up(block_count),
            block_offset: up(block_offset),
            block_jump: up(block_jump),
            jumps: block_jump.iter().any(|&j| j != 0),
            column_count: up(column_count),
            column_index: up(column_index),
            max_blocks,
            max_columns,
        }
    }
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Scalar fp32 arithmetic from shared memory: any device, any float type.
    Portable,
    /// Cooperative matrix (`cmma` 16×16×16) products with fp32 accumulation, softmax through
    /// shared memory: f16/bf16, head dims that are multiples of 16.
    TensorCore,
    /// Manual `mma.m16n8k16` products with the scores, softmax and output in registers
    /// (FlashAttention-2's structure): f16/bf16, head dims 16..=128 in steps of 16, inputs whose
    /// head dimension is contiguous (16-byte loads), K/V tiles copied with `cp.async`. Where
    /// shared memory holds four of its cubes (H100/H200), 32 query rows a plane (the `wide`
    /// module: each K/V fragment feeds two products); elsewhere [`Path::MmaGroups`]' kernel.
    Mma,
    /// The register kernel with 16 query rows a plane and up to three query blocks a cube
    /// (`mma_groups`), double-buffered K/V tiles: what [`Path::Mma`] runs where the wide
    /// kernel's cubes do not fit four to an SM; named so that tests and benchmarks can run it
    /// anywhere. H100, bf16, d = 128, 128K: 233 TFLOP/s index-free and 222 Block-Sparse, against
    /// the wide kernel's 270–275 and 267–268.
    MmaGroups,
}

/// `elem × elem → f32` products of shape `m×n×16` for one 32-wide plane (both tensor-core
/// kernels' warp layout), taken from `products` (the device's `cmma` or `mma` set).
fn plane_products<R: Runtime>(
    client: &ComputeClient<R>,
    products: impl Fn(&ComputeClient<R>) -> bool,
) -> bool {
    let props = client.properties();
    props.hardware.plane_size_min == 32 && props.hardware.plane_size_max == 32 && products(client)
}

/// The `m×n×16` product of `elem` inputs into f32 accumulators.
fn f32_products(elem: StorageType, m: u32, n: u32) -> MmaConfig {
    MmaConfig {
        a_type: elem,
        b_type: elem,
        cd_type: ElemType::Float(FloatKind::F32).into(),
        m,
        k: 16,
        n,
    }
}

/// True when `client`'s device has 16×16×16 cooperative matrices for `elem` inputs with f32
/// accumulators, and a 32-wide plane (the tensor-core kernel's warp layout).
pub fn tensor_cores_for<R: Runtime>(client: &ComputeClient<R>, elem: StorageType) -> bool {
    plane_products(client, |c| {
        c.features()
            .matmul
            .cmma
            .contains(&f32_products(elem, 16, 16))
    })
}

/// True when `client`'s device has `mma.m16n8k16` for `elem` inputs with f32 accumulators and a
/// 32-wide plane (the register kernel's fragment layout).
pub fn manual_mma_for<R: Runtime>(client: &ComputeClient<R>, elem: StorageType) -> bool {
    plane_products(client, |c| {
        c.features().matmul.mma.contains(&f32_products(elem, 16, 8))
    })
}

fn is_half(elem: StorageType) -> bool {
    matches!(
        elem.elem_type(),
        ElemType::Float(FloatKind::F16 | FloatKind::BF16)
    )
}

/// The fastest path this device offers for `F` at this head dimension, assuming inputs whose
/// head dimension is contiguous ([`launch`] falls back from [`Path::Mma`] to
/// [`Path::TensorCore`] for other layouts).
pub fn best_path<R: Runtime, F: CubePrimitive>(client: &ComputeClient<R>, head_dim: usize) -> Path {
    let elem = F::as_type_native_unchecked().storage_type();
    let half = is_half(elem);
    if half && head_dim.is_multiple_of(16) && head_dim <= 128 && manual_mma_for(client, elem) {
        Path::Mma
    } else if half
        && head_dim.is_multiple_of(16)
        && head_dim <= 256
        && tensor_cores_for(client, elem)
    {
        Path::TensorCore
    } else {
        Path::Portable
    }
}

/// Whether a binding can be read with 16-byte loads of `elem_size`-byte elements: a contiguous
/// last dimension and every other stride and the start a multiple of 16 bytes.
fn wide_loads<R: Runtime>(t: &TensorBinding<R>, elem_size: usize) -> bool {
    let lanes = 16 / elem_size;
    let strides = &t.strides;
    let rank = strides.len();
    rank == 4
        && strides[rank - 1] == 1
        && strides[..rank - 1].iter().all(|s| s.is_multiple_of(lanes))
        && t.handle.offset_start.unwrap_or(0).is_multiple_of(16)
}

/// Query blocks per cube of the register kernel: three where the device's shared memory holds
/// their tiles (H100/H200: 205 of 227 KiB at d = 128), which caps the kernel at 168 registers so
/// that three blocks are resident an SM, each group on its own barriers (see the `mma` module;
/// H200, bf16, d = 128, 128K: Block-Sparse top-100 228 TFLOP/s against 204 with the groups in
/// step; index-free causal dense 237 against 227 with one block a cube).
fn mma_groups<R: Runtime>(client: &ComputeClient<R>, head_dim: usize) -> usize {
    let fit =
        client.properties().hardware.max_shared_memory_size / mma::group_shared_bytes(head_dim);
    fit.clamp(1, mma::MAX_GROUPS)
}

/// Whether [`Path::Mma`] runs the wide kernel: where shared memory holds four of its cubes
/// (eight planes, 256 query rows an SM; H100/H200: 210 of 227 KiB at d = 128), the shape it was
/// measured faster in (session 13, H100, bf16, d = 128: 1.16–1.18× index-free, 1.20–1.22×
/// Block-Sparse top-100 at 128K and 256K). Fewer would leave an SM two to six planes, where the
/// grouped kernel keeps eight to twelve.
fn wide_fits<R: Runtime>(client: &ComputeClient<R>, head_dim: usize) -> bool {
    wide_fits_in(
        client.properties().hardware.max_shared_memory_size,
        head_dim,
    )
}

/// [`wide_fits`] for `shared` bytes of shared memory.
fn wide_fits_in(shared: usize, head_dim: usize) -> bool {
    shared >= 4 * wide::shared_bytes(head_dim)
}

/// Keys per shared-memory chunk of the portable kernel: the largest power of two that keeps the
/// fp32 K and V chunks within 16 KiB (half of the 32 KiB the smallest devices offer).
fn portable_chunk(head_dim: usize) -> usize {
    let fit = (2048 / head_dim).clamp(1, BLOCK);
    1 << fit.ilog2()
}

/// Launches sparse flash attention: `out[b, h, r] = softmax(q·Kᵀ·scale over the index) · V`.
///
/// `index: None` is causal dense attention without an index (every key up to each query's
/// position), which only the register paths ([`Path::Mma`], [`Path::MmaGroups`]) run, on inputs
/// they can load 16 bytes at a time ([`KernelError::NoCausalDense`] otherwise: build a dense
/// index and call again).
/// `q`/`out` are `[batch, heads, n_queries, head_dim]`, `k`/`v` `[batch, kv_heads, n_keys,
/// head_dim]`, any strides (`out` must not alias anything). Every output row is written.
/// [`Path::TensorCore`] needs f16/bf16 and a head dimension that is a multiple of 16; whether
/// the device has tensor cores is the caller's question ([`best_path`]).
#[allow(clippy::too_many_arguments)]
pub fn launch<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    v: TensorBinding<R>,
    out: TensorBinding<R>,
    index: Option<&IndexHandles>,
    problem: &Problem,
    path: Path,
) -> Result<(), KernelError> {
    let p = problem;
    p.check()?;
    // Causal dense attention (`index: None`) needs no index arrays: the register kernel walks
    // its tiles itself. The arguments still need buffers, so a one-element stand-in is bound.
    let stand_in;
    let (index, causal_dense) = match index {
        Some(index) => (index, false),
        None => {
            let one = client.create_from_slice(u32::as_bytes(&[0u32]));
            stand_in = IndexHandles {
                block_count: one.clone(),
                block_offset: one.clone(),
                block_jump: one.clone(),
                column_count: one.clone(),
                column_index: one,
                max_blocks: 0,
                max_columns: 0,
                jumps: false,
            };
            (&stand_in, true)
        }
    };
    let slots = if causal_dense {
        0
    } else {
        p.batch * p.heads * p.query_blocks()
    };
    // Offsets are 32-bit: past them a launch would read another head's data.
    for (what, t) in [("q", &q), ("k", &k), ("v", &v), ("out", &out)] {
        limits::check_len(what, limits::span(&t.shape, &t.strides))?;
    }
    limits::check_len(
        "index rows",
        slots * index.max_blocks.max(index.max_columns),
    )?;
    let count = CubeCount::Static(p.query_blocks() as u32, p.heads as u32, p.batch as u32);
    let group = (p.heads / p.kv_heads) as u32;
    // The kernels take the same arguments; only the kernel, the grid and cube shapes, the
    // portable kernel's resumable-launch arguments and the trailing comptime parameters differ.
    macro_rules! launch_kernel {
        ($kernel:path, $count:expr, $cube_dim:expr, [$($extra:expr),*] $(, $comptime:expr)*) => {
            unsafe {
                $kernel(
                    client,
                    $count,
                    $cube_dim,
                    q.clone().into_tensor_arg(),
                    k.clone().into_tensor_arg(),
                    v.clone().into_tensor_arg(),
                    out.clone().into_tensor_arg(),
                    words(&index.block_count, slots.max(1))?,
                    words(&index.block_offset, (slots * index.max_blocks).max(1))?,
                    words(&index.block_jump, (slots * index.max_blocks).max(1))?,
                    words(&index.column_count, slots.max(1))?,
                    words(&index.column_index, (slots * index.max_columns).max(1))?,
                    p.n_queries as u32,
                    p.n_keys as u32,
                    p.query_offset as u32,
                    group,
                    index.max_blocks as u32,
                    index.max_columns as u32,
                    p.scale,
                    $($extra,)*
                    p.head_dim,
                    $($comptime),*
                )
            }
        };
    }
    if causal_dense && !matches!(path, Path::Mma | Path::MmaGroups) {
        return Err(KernelError::NoCausalDense);
    }
    match path {
        Path::Portable => {
            let chunk = portable_chunk(p.head_dim);
            let items = index.max_blocks + index.max_columns.div_ceil(chunk);
            // Rows split over launches only where the device caps an invocation's loops.
            let per_launch = match loop_cap(client)? {
                Some(cap) => portable::items_per_launch(cap, p.head_dim, chunk),
                None => items.max(1),
            };
            let launches = items.div_ceil(per_launch).max(1);
            let state_len = if launches > 1 {
                slots * BLOCK * (p.head_dim + 2)
            } else {
                1
            };
            limits::check_len("the split rows' state", state_len)?;
            let state = client.empty(state_len * 4);
            for launch in 0..launches {
                let begin = launch * per_launch;
                let finish = launch + 1 == launches;
                let end = if finish { items } else { begin + per_launch };
                launch_kernel!(
                    portable::sparse_flash_portable::launch_unchecked::<F, R>,
                    count.clone(),
                    CubeDim::new_1d(BLOCK as u32),
                    [
                        words(&state, state_len)?,
                        begin as u32,
                        end as u32,
                        u32::from(finish)
                    ],
                    chunk
                );
            }
        }
        Path::TensorCore | Path::Mma | Path::MmaGroups => {
            let elem = F::as_type_native_unchecked().storage_type();
            if !p.head_dim.is_multiple_of(16) {
                return Err(KernelError::HeadDim(p.head_dim));
            }
            if !is_half(elem) {
                return Err(KernelError::NoTensorCores);
            }
            let size = elem.size();
            let registers = matches!(path, Path::Mma | Path::MmaGroups)
                && p.head_dim <= 128
                && [&q, &k, &v, &out].iter().all(|t| wide_loads(t, size));
            if registers && path == Path::Mma && wide_fits(client, p.head_dim) {
                // A GQA group's query heads side by side along x (see the kernel).
                let count = CubeCount::Static(
                    (p.query_blocks() * (p.heads / p.kv_heads)) as u32,
                    p.kv_heads as u32,
                    p.batch as u32,
                );
                launch_kernel!(
                    wide::sparse_flash_wide::launch_unchecked::<F, R>,
                    count,
                    CubeDim::new_2d(32, 2),
                    [],
                    causal_dense,
                    index.jumps
                )
            } else if registers {
                let groups = mma_groups(client, p.head_dim);
                let count = CubeCount::Static(
                    p.query_blocks().div_ceil(groups) as u32,
                    p.heads as u32,
                    p.batch as u32,
                );
                launch_kernel!(
                    mma::sparse_flash_mma::launch_unchecked::<F, R>,
                    count,
                    CubeDim::new_2d(32, 4 * groups as u32),
                    [],
                    causal_dense,
                    index.jumps,
                    groups
                )
            } else if causal_dense {
                return Err(KernelError::NoCausalDense);
            } else {
                launch_kernel!(
                    tensor_core::sparse_flash_tensor_core::launch_unchecked::<F, R>,
                    count.clone(),
                    CubeDim::new_2d(32, 4),
                    []
                )
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(scale: f32) -> Problem {
        Problem {
            batch: 1,
            heads: 4,
            kv_heads: 2,
            n_queries: 100,
            n_keys: 100,
            query_offset: 0,
            head_dim: 64,
            scale,
        }
    }

    #[test]
    fn the_wide_kernel_runs_where_four_cubes_fit() {
        // H100/H200: 227 KiB a cube at most; four wide cubes take 210 KiB at d = 128.
        assert!(wide_fits_in(232_448, 128));
        assert_eq!(4 * wide::shared_bytes(128), 209_920);
        // A100 (163 KiB) and consumer parts (99 KiB) keep the grouped kernel at d = 128.
        assert!(!wide_fits_in(166_912, 128));
        assert!(!wide_fits_in(101_376, 128));
        // Smaller heads take smaller tiles: four fit in 99 KiB up to d = 48.
        assert!(wide_fits_in(101_376, 48));
        assert!(!wide_fits_in(101_376, 64));
    }

    #[test]
    fn check_refuses_a_scale_outside_its_range() {
        for good in [0.125, 1.0e-20, 1.0e6] {
            assert!(problem(good).check().is_ok(), "scale {good}");
        }
        for bad in [0.0, -0.125, 1.0e-21, 2.0e6, f32::NAN, f32::INFINITY] {
            match problem(bad).check() {
                Err(KernelError::Scale(s)) => assert_eq!(s, bad.to_string()),
                other => panic!("scale {bad}: expected a scale error, got {other:?}"),
            }
        }
        // The message names the range from SCALE_RANGE itself (the user API shows it too).
        let message = KernelError::Scale("0".into()).to_string();
        assert!(message.contains("[1e-20, 1e6]"), "{message}");
    }
}
