//! Vertical-Slash scores on the device, for every head of a layer at once.
//!
//! MInference's estimate: `p = softmax(q_last · Kᵀ · scale)` in fp32 over the last `last ≤ 64`
//! queries (causal), then column sums of `p` (vertical scores) and sums along each diagonal
//! `o = position − key` (slash scores). The `last × n_keys` probabilities are never stored:
//!
//! 1. [`row_partials`]: per (head, chunk of keys, row) the max and exp-sum of the logits;
//! 2. [`row_totals`]: per (head, row) the merged max and sum, i.e. the softmax denominator;
//! 3. [`columns`]: one unit per key sums its column over the rows;
//! 4. [`diagonals`]: one unit per diagonal sums it over the rows.
//!
//! Each unit recomputes the `last` logits it needs (`last · head_dim` products): the scores
//! cost three passes of `last · n · head_dim` products per head, about `3 · 64 / n` of the
//! attention they steer. Scalar fp32 arithmetic, no plane operations and no shared memory, so
//! the same kernels run on every CubeCL device (lavapipe included).

use crate::sparse_flash::{Problem, MASKED};
use crate::KernelError;
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Keys per unit of [`row_partials`].
pub const KEY_CHUNK: usize = 256;

/// Loads query row `row` of head `(b, h)`, times `scale`, into registers.
#[cube]
fn load_query<F: Float>(
    q: &Tensor<F>,
    b: usize,
    h: usize,
    row: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) -> Array<f32> {
    let mut x = Array::<f32>::new(head_dim);
    let base = b * q.stride(0) + h * q.stride(1) + row * q.stride(2);
    for c in 0..head_dim {
        x[c] = f32::cast_from(q[base + c * q.stride(3)]) * scale;
    }
    x
}

/// `scale · q[q_base + ·] · k[k_base + key, ·]`, both read from global memory (the query row is
/// the same for every unit of a plane: one broadcast load).
#[cube]
fn dot_query_key<F: Float>(
    q: &Tensor<F>,
    q_base: usize,
    k: &Tensor<F>,
    k_base: usize,
    key: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) -> f32 {
    let base = k_base + key * k.stride(2);
    let mut acc = 0.0f32;
    for c in 0..head_dim {
        acc +=
            f32::cast_from(q[q_base + c * q.stride(3)]) * f32::cast_from(k[base + c * k.stride(3)]);
    }
    acc * scale
}

/// `x · k[b, kv_head, key, :]`.
#[cube]
fn dot_key<F: Float>(
    x: &Array<f32>,
    k: &Tensor<F>,
    k_base: usize,
    key: usize,
    #[comptime] head_dim: usize,
) -> f32 {
    let base = k_base + key * k.stride(2);
    let mut acc = 0.0f32;
    for c in 0..head_dim {
        acc += x[c] * f32::cast_from(k[base + c * k.stride(3)]);
    }
    acc
}

/// Unit `r` of cube `(chunk, h, b)`: max and `Σ exp(logit − max)` of row `r` over the chunk's
/// visible keys, written to `[b, h, chunk, r]` (`MASKED`, 0 when none is visible).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn row_partials<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    partial_max: &mut Array<f32>,
    partial_sum: &mut Array<f32>,
    n_queries: u32,
    n_keys: u32,
    first_position: u32,
    group: u32,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let r = UNIT_POS_X as usize;
    let last = CUBE_DIM_X as usize;
    let chunk = CUBE_POS_X as usize;
    let chunks = CUBE_COUNT_X as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let row = n_queries as usize - last + r;
    let position = first_position as usize + r;
    let x = load_query::<F>(q, b, h, row, scale, head_dim);
    let k_base = b * k.stride(0) + (h / group as usize) * k.stride(1);
    let start = chunk * KEY_CHUNK;
    let end = usize::min(usize::min(start + KEY_CHUNK, n_keys as usize), position + 1);
    let mut max = MASKED.runtime();
    let mut sum = 0.0f32.runtime();
    for key in start..end {
        let logit = dot_key::<F>(&x, k, k_base, key, head_dim);
        if logit > max {
            sum = sum * f32::exp(max - logit) + 1.0f32;
            max = logit;
        } else {
            sum += f32::exp(logit - max);
        }
    }
    let at = ((b * heads + h) * chunks + chunk) * last + r;
    partial_max[at] = max;
    partial_sum[at] = sum;
}

/// Unit `r` of cube `bh`: merges the row's partials into its max and softmax denominator.
#[cube(launch_unchecked)]
pub fn row_totals(
    partial_max: &Array<f32>,
    partial_sum: &Array<f32>,
    row_max: &mut Array<f32>,
    row_sum: &mut Array<f32>,
    chunks: u32,
) {
    let r = UNIT_POS_X as usize;
    let last = CUBE_DIM_X as usize;
    let bh = CUBE_POS_X as usize;
    let chunks = chunks as usize;
    let mut max = MASKED.runtime();
    for c in 0..chunks {
        max = f32::max(max, partial_max[(bh * chunks + c) * last + r]);
    }
    let mut sum = 0.0f32.runtime();
    for c in 0..chunks {
        let at = (bh * chunks + c) * last + r;
        if partial_sum[at] > 0.0f32 {
            sum += partial_sum[at] * f32::exp(partial_max[at] - max);
        }
    }
    row_max[bh * last + r] = max;
    row_sum[bh * last + r] = sum;
}

/// Unit per key: `vertical[b, h, key] = Σ_r p[r, key]` over the rows that see the key.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn columns<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    row_max: &Array<f32>,
    row_sum: &Array<f32>,
    vertical: &mut Array<f32>,
    n_queries: u32,
    n_keys: u32,
    first_position: u32,
    last: u32,
    group: u32,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let key = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let bh = b * heads + h;
    let n_keys = n_keys as usize;
    let last = last as usize;
    if key < n_keys {
        let k_base = b * k.stride(0) + (h / group as usize) * k.stride(1);
        let mut total = 0.0f32;
        for r in 0..last {
            if key <= first_position as usize + r {
                let q_base = b * q.stride(0)
                    + h * q.stride(1)
                    + (n_queries as usize - last + r) * q.stride(2);
                let logit = dot_query_key::<F>(q, q_base, k, k_base, key, scale, head_dim);
                total += f32::exp(logit - row_max[bh * last + r]) / row_sum[bh * last + r];
            }
        }
        vertical[bh * n_keys + key] = total;
    }
}

/// Unit per diagonal `o`: `slash[b, h, o] = Σ_r p[r, position_r − o]` over the rows that reach
/// it (`o ≤ position_r`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn diagonals<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    row_max: &Array<f32>,
    row_sum: &Array<f32>,
    slash: &mut Array<f32>,
    n_queries: u32,
    n_diagonals: u32,
    first_position: u32,
    last: u32,
    group: u32,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let o = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let bh = b * heads + h;
    let n_diagonals = n_diagonals as usize;
    let last = last as usize;
    if o < n_diagonals {
        let k_base = b * k.stride(0) + (h / group as usize) * k.stride(1);
        let mut total = 0.0f32;
        for r in 0..last {
            let position = first_position as usize + r;
            if o <= position {
                let q_base = b * q.stride(0)
                    + h * q.stride(1)
                    + (n_queries as usize - last + r) * q.stride(2);
                let logit = dot_query_key::<F>(q, q_base, k, k_base, position - o, scale, head_dim);
                total += f32::exp(logit - row_max[bh * last + r]) / row_sum[bh * last + r];
            }
        }
        slash[bh * n_diagonals + o] = total;
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

/// Launches the four score kernels for all heads (the last `min(64, n_queries)` queries, softmax
/// scale `p.scale`); `q`/`k` as in [`crate::sparse_flash::launch`].
pub fn scores<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    p: &Problem,
) -> Result<ScoreHandles, KernelError> {
    p.check()?;
    let scale = p.scale;
    let last = p.n_queries.min(64);
    let bh = p.batch * p.heads;
    let chunks = p.n_keys.div_ceil(KEY_CHUNK);
    let first_position = (p.diagonals() - last) as u32;
    let group = (p.heads / p.kv_heads) as u32;
    let empty = |len: usize| client.empty(len * 4);
    let (partial_max, partial_sum) = (empty(bh * chunks * last), empty(bh * chunks * last));
    let (row_max, row_sum) = (empty(bh * last), empty(bh * last));
    let vertical = empty(bh * p.n_keys);
    let slash = empty(bh * p.diagonals());
    let arr = |h: &Handle, len: usize| unsafe { ArrayArg::from_raw_parts(h.clone(), len) };
    let units = 128u32;
    unsafe {
        row_partials::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(chunks as u32, p.heads as u32, p.batch as u32),
            CubeDim::new_1d(last as u32),
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            arr(&partial_max, bh * chunks * last),
            arr(&partial_sum, bh * chunks * last),
            p.n_queries as u32,
            p.n_keys as u32,
            first_position,
            group,
            scale,
            p.head_dim,
        );
        row_totals::launch_unchecked::<R>(
            client,
            CubeCount::Static(bh as u32, 1, 1),
            CubeDim::new_1d(last as u32),
            arr(&partial_max, bh * chunks * last),
            arr(&partial_sum, bh * chunks * last),
            arr(&row_max, bh * last),
            arr(&row_sum, bh * last),
            chunks as u32,
        );
        columns::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(
                p.n_keys.div_ceil(units as usize) as u32,
                p.heads as u32,
                p.batch as u32,
            ),
            CubeDim::new_1d(units),
            q.clone().into_tensor_arg(),
            k.clone().into_tensor_arg(),
            arr(&row_max, bh * last),
            arr(&row_sum, bh * last),
            arr(&vertical, bh * p.n_keys),
            p.n_queries as u32,
            p.n_keys as u32,
            first_position,
            last as u32,
            group,
            scale,
            p.head_dim,
        );
        diagonals::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(
                p.diagonals().div_ceil(units as usize) as u32,
                p.heads as u32,
                p.batch as u32,
            ),
            CubeDim::new_1d(units),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            arr(&row_max, bh * last),
            arr(&row_sum, bh * last),
            arr(&slash, bh * p.diagonals()),
            p.n_queries as u32,
            p.diagonals() as u32,
            first_position,
            last as u32,
            group,
            scale,
            p.head_dim,
        );
    }
    Ok(ScoreHandles { vertical, slash })
}
