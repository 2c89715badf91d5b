//! Vertical-Slash scores on the device, for every head of a layer at once.
//!
//! MInference's estimate: `p = softmax(q_last · Kᵀ · scale)` in fp32 over the last `last ≤ 64`
//! queries (causal), then column sums of `p` (vertical scores) and sums along each diagonal
//! `o = position − key` (slash scores). Three launches:
//!
//! 1. [`logits()`]: the `last × n_keys` scaled logits of every head, a 64×64 tile per cube
//!    through shared memory (each unit a 4×4 register block), stored in fp32;
//! 2. [`row_stats()`]: per (head, row) the max and the softmax denominator over the visible keys,
//!    one cube per row reducing in shared memory;
//! 3. [`sums()`]: one unit per key sums its column's probabilities over the rows, and those of
//!    one diagonal whose entries lie next to the column's.
//!
//! The logits are computed once (`last · n · head_dim` products per head, about `64 / n` of the
//! attention they steer) and read twice, coalesced: `4 · 64 · n` bytes per head (1 GiB for a
//! 32-head layer at 128K). Scalar fp32 arithmetic and no plane operations, so the same kernels
//! run on every CubeCL device (lavapipe included).
//!
//! Why not one launch: a row's softmax needs all its logits before any sum, and CubeCL has no
//! grid-wide barrier. A launch split by rows instead (cubes of 8 or 16 of the last rows, each
//! sweeping all the keys twice) needs none, but leaves a 32-head layer 128–256 cubes; on the
//! H100 it took 15.4 ms at 128K where these launches took 8.6 (then 7.1 of them the logits,
//! since cut to 3.7 by `KEY_STRIDE`).

use crate::sparse_flash::{Problem, MASKED};
use crate::{limits, words, KernelError};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Keys (and rows) of a [`logits()`] tile.
const TILE: usize = 64;
/// Head-dimension slice staged in shared memory at a time by [`logits()`].
const SLICE: usize = 16;
/// Units of a [`logits()`] or [`row_stats()`] cube.
const UNITS: usize = 256;
/// A staged key's words in [`logits()`]'s shared memory: the slice plus one. A plane's units
/// read sixteen keys (`u % 16`, two units each) at one dimension: at a stride of 16 words those
/// fell in two banks (an 8-way conflict on every key read), at 17 they fall in sixteen.
const KEY_STRIDE: usize = SLICE + 1;

/// Cube `(chunk, h, b)`: `logits[b, h, r, key] = scale · q[row_r] · k[key]` for the last `last`
/// query rows and the chunk's 64 keys. Unit `u` owns rows `u/16 + 16i` and keys `u%16 + 16j`
/// (`i, j < 4`): a plane's query reads are two broadcast words, its key reads sixteen words in
/// sixteen banks (`KEY_STRIDE`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn logits<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    logits: &mut Array<f32>,
    n_queries: u32,
    n_keys: u32,
    last: u32,
    group: u32,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let tid = UNIT_POS_X as usize;
    let chunk = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let n_keys = n_keys as usize;
    let last = last as usize;
    let first_row = n_queries as usize - last;
    let q_base = b * q.stride(0) + h * q.stride(1);
    let k_base = b * k.stride(0) + (h / group as usize) * k.stride(1);
    let key0 = chunk * TILE;

    let mut qs = SharedMemory::<f32>::new(comptime!(TILE * SLICE));
    let mut ks = SharedMemory::<f32>::new(comptime!(TILE * KEY_STRIDE));
    let mut acc = Array::<f32>::new(16usize);
    #[unroll]
    for i in 0..16usize {
        acc[i] = 0.0f32;
    }
    let row0 = tid / 16usize;
    let col0 = tid % 16usize;
    for c0 in range_stepped(0usize, head_dim, SLICE) {
        // Stage a 64 × SLICE slice of the query rows and of the keys (zeros past the ends).
        for e in range_stepped(tid, comptime!(TILE * SLICE), UNITS) {
            let r = e / SLICE;
            let c = c0 + e % SLICE;
            let mut qv = 0.0f32;
            let mut kv = 0.0f32;
            if r < last && c < head_dim {
                qv = f32::cast_from(q[q_base + (first_row + r) * q.stride(2) + c * q.stride(3)]);
            }
            if key0 + r < n_keys && c < head_dim {
                kv = f32::cast_from(k[k_base + (key0 + r) * k.stride(2) + c * k.stride(3)]);
            }
            qs[e] = qv;
            ks[r * KEY_STRIDE + e % SLICE] = kv;
        }
        sync_cube();
        for c in 0..SLICE {
            let mut qr = Array::<f32>::new(4usize);
            let mut kr = Array::<f32>::new(4usize);
            #[unroll]
            for i in 0..4usize {
                qr[i] = qs[(row0 + 16usize * i) * SLICE + c];
                kr[i] = ks[(col0 + 16usize * i) * KEY_STRIDE + c];
            }
            #[unroll]
            for i in 0..4usize {
                #[unroll]
                for j in 0..4usize {
                    acc[4usize * i + j] += qr[i] * kr[j];
                }
            }
        }
        sync_cube();
    }
    let bh = b * heads + h;
    #[unroll]
    for i in 0..4usize {
        let r = row0 + 16usize * i;
        #[unroll]
        for j in 0..4usize {
            let key = key0 + col0 + 16usize * j;
            if r < last && key < n_keys {
                logits[(bh * last + r) * n_keys + key] = acc[4usize * i + j] * scale;
            }
        }
    }
}

/// Cube `(r, bh)`: the max and `Σ exp(logit − max)` of row `r` over the keys it sees
/// (`key ≤ first_position + r`), into `row_max`/`row_sum[bh · last + r]`.
#[cube(launch_unchecked)]
pub fn row_stats(
    logits: &Array<f32>,
    row_max: &mut Array<f32>,
    row_sum: &mut Array<f32>,
    n_keys: u32,
    first_position: u32,
) {
    let tid = UNIT_POS_X as usize;
    let r = CUBE_POS_X as usize;
    let last = CUBE_COUNT_X as usize;
    let bh = CUBE_POS_Y as usize;
    let n_keys = n_keys as usize;
    let visible = usize::min(n_keys, first_position as usize + r + 1usize);
    let base = (bh * last + r) * n_keys;
    let mut max = MASKED.runtime();
    let mut sum = 0.0f32.runtime();
    for key in range_stepped(tid, visible, UNITS) {
        let x = logits[base + key];
        if x > max {
            sum = sum * f32::exp(max - x) + 1.0f32;
            max = x;
        } else {
            sum += f32::exp(x - max);
        }
    }
    // Merge the units' (max, sum) pairs by halves.
    let mut maxes = SharedMemory::<f32>::new(UNITS);
    let mut sums = SharedMemory::<f32>::new(UNITS);
    maxes[tid] = max;
    sums[tid] = sum;
    sync_cube();
    #[unroll]
    for level in 0..comptime!(UNITS.ilog2() as usize) {
        let stride = comptime!(UNITS / 2) >> level;
        if tid < stride {
            let (m0, s0) = (maxes[tid], sums[tid]);
            let (m1, s1) = (maxes[tid + stride], sums[tid + stride]);
            let m = f32::max(m0, m1);
            let mut s = 0.0f32;
            if s0 > 0.0f32 {
                s += s0 * f32::exp(m0 - m);
            }
            if s1 > 0.0f32 {
                s += s1 * f32::exp(m1 - m);
            }
            maxes[tid] = m;
            sums[tid] = s;
        }
        sync_cube();
    }
    if tid == 0usize {
        row_max[bh * last + r] = maxes[0usize];
        row_sum[bh * last + r] = sums[0usize];
    }
}

/// `p[r, key]` of head `bh`: the stored logit through its row's softmax statistics.
#[cube]
#[allow(clippy::too_many_arguments)]
fn probability(
    logits: &Array<f32>,
    row_max: &Array<f32>,
    row_sum: &Array<f32>,
    bh: usize,
    last: usize,
    r: usize,
    n_keys: usize,
    key: usize,
) -> f32 {
    let row = bh * last + r;
    f32::exp(logits[row * n_keys + key] - row_max[row]) / row_sum[row]
}

/// Unit `j` of head `bh`: `vertical[bh, j] = Σ_r p[r, j]` over the rows that see key `j`, and
/// `slash[bh, o] = Σ_r p[r, position_r − o]` for the diagonal `o = diagonals − 1 − j` over the
/// rows that reach it (`o ≤ position_r`). That diagonal's probabilities lie in the columns
/// `j + r + 1 − last`, next to column `j`'s, so the two sums share the logits' cache lines. One
/// launch instead of two, but not faster: 1.20 ms at 128K on the H100 against 0.60 + 0.61 for
/// separate column and diagonal launches (so the shared reads were not what bound them; not
/// profiled further).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn sums(
    logits: &Array<f32>,
    row_max: &Array<f32>,
    row_sum: &Array<f32>,
    vertical: &mut Array<f32>,
    slash: &mut Array<f32>,
    n_keys: u32,
    diagonals: u32,
    first_position: u32,
    last: u32,
) {
    let j = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let bh = CUBE_POS_Y as usize;
    let n_keys = n_keys as usize;
    let diagonals = diagonals as usize;
    let first_position = first_position as usize;
    let last = last as usize;
    if j < n_keys {
        let mut total = 0.0f32;
        for r in 0..last {
            if j <= first_position + r {
                total += probability(logits, row_max, row_sum, bh, last, r, n_keys, j);
            }
        }
        vertical[bh * n_keys + j] = total;
    }
    if j < diagonals {
        let o = diagonals - 1 - j;
        let mut total = 0.0f32;
        for r in 0..last {
            let position = first_position + r;
            if o <= position {
                total += probability(logits, row_max, row_sum, bh, last, r, n_keys, position - o);
            }
        }
        slash[bh * diagonals + o] = total;
    }
}

/// Device buffers of [`scores`]: `[batch, heads, n_keys]` vertical and `[batch, heads,
/// diagonals]` slash scores, f32.
#[derive(Debug, Clone)]
pub struct ScoreHandles {
    /// Column sums.
    pub vertical: Handle,
    /// Diagonal sums.
    pub slash: Handle,
}

/// Launches the three score kernels for all heads (the last `min(64, n_queries)` queries, softmax
/// scale `p.scale`); `q`/`k` as in [`crate::sparse_flash::launch`].
pub fn scores<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    p: &Problem,
) -> Result<ScoreHandles, KernelError> {
    p.check()?;
    let last = p.n_queries.min(TILE);
    let bh = p.batch * p.heads;
    let first_position = (p.diagonals() - last) as u32;
    let group = (p.heads / p.kv_heads) as u32;
    limits::check_len("last-query logits", bh * last * p.n_keys)?;
    limits::check_len(
        "column and diagonal scores",
        bh * (p.n_keys + p.diagonals()),
    )?;
    let empty = |len: usize| client.empty(len * 4);
    let logit_buffer = empty(bh * last * p.n_keys);
    let (row_max, row_sum) = (empty(bh * last), empty(bh * last));
    let vertical = empty(bh * p.n_keys);
    let slash = empty(bh * p.diagonals());
    let units = 128u32;
    let logit_len = bh * last * p.n_keys;
    unsafe {
        logits::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(
                p.n_keys.div_ceil(TILE) as u32,
                p.heads as u32,
                p.batch as u32,
            ),
            CubeDim::new_1d(UNITS as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            words(&logit_buffer, logit_len)?,
            p.n_queries as u32,
            p.n_keys as u32,
            last as u32,
            group,
            p.scale,
            p.head_dim,
        );
        row_stats::launch_unchecked::<R>(
            client,
            CubeCount::Static(last as u32, bh as u32, 1),
            CubeDim::new_1d(UNITS as u32),
            words(&logit_buffer, logit_len)?,
            words(&row_max, bh * last)?,
            words(&row_sum, bh * last)?,
            p.n_keys as u32,
            first_position,
        );
        sums::launch_unchecked::<R>(
            client,
            // Diagonals never outnumber keys (`Problem::check`: positions end within the keys).
            CubeCount::Static(p.n_keys.div_ceil(units as usize) as u32, bh as u32, 1),
            CubeDim::new_1d(units),
            words(&logit_buffer, logit_len)?,
            words(&row_max, bh * last)?,
            words(&row_sum, bh * last)?,
            words(&vertical, bh * p.n_keys)?,
            words(&slash, bh * p.diagonals())?,
            p.n_keys as u32,
            p.diagonals() as u32,
            first_position,
            last as u32,
        );
    }
    Ok(ScoreHandles { vertical, slash })
}
