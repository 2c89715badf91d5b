//! Block-Sparse selection on the device: mean-pooled 64-token blocks of Q and K, block scores,
//! and each query block's top-k key blocks, for every head of a layer at once.
//!
//! Semantics (the host estimator's, `minference_burn::estimate::block_sparse`): query blocks are
//! the call's 64-row blocks, key blocks are aligned at position 0; a key block is visible when
//! its first key is at or before the block's last query; the diagonal key blocks, the block
//! before them and block 0 are always kept; the rest are ranked by score, ties by lower index;
//! `max(top_k, forced)` blocks are kept (fewer when fewer are visible), in ascending order.
//!
//! [`pool`] averages blocks in fp32. [`select`] gives one cube to each (head, query block): it
//! scores the visible key blocks into shared memory, finds the k-th largest score by a 32-step
//! bisection on the scores' order-preserving bit patterns (each step one count, summed in shared
//! memory: no plane operations, so lavapipe runs it), then writes the chosen blocks in index
//! order with a prefix sum. Only the chosen blocks leave the device.

use crate::sparse_flash::Problem;
use crate::KernelError;
use cubecl::prelude::*;
use cubecl::server::Handle;

/// Units of a [`select`] cube.
pub const SELECT_UNITS: usize = 256;
/// Most key blocks [`select`] holds in shared memory (16 KiB of scores): 256K keys.
pub const MAX_KEY_BLOCKS: usize = 4096;

/// Cube `(block, h, b)`, unit `c`: the mean of rows `64·block ..` (at most `len`) of column `c`.
#[cube(launch_unchecked)]
pub fn pool<F: Float>(x: &Tensor<F>, pooled: &mut Array<f32>, len: u32) {
    let c = UNIT_POS_X as usize;
    let d = CUBE_DIM_X as usize;
    let block = CUBE_POS_X as usize;
    let blocks = CUBE_COUNT_X as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let start = block * 64usize;
    let end = usize::min(start + 64usize, len as usize);
    let base = b * x.stride(0) + h * x.stride(1) + c * x.stride(3);
    let mut sum = 0.0f32;
    for r in start..end {
        sum += f32::cast_from(x[base + r * x.stride(2)]);
    }
    pooled[((b * heads + h) * blocks + block) * d + c] = sum / (end - start) as f32;
}

/// The order-preserving key of a score: larger float, larger key; NaN lowest.
#[cube]
// `x == x` is the NaN test (false only for NaN) in kernel code.
#[allow(clippy::eq_op)]
fn order_key(x: f32) -> u32 {
    let bits = u32::reinterpret(x);
    let mut key = 0u32;
    if x == x {
        if bits >= 0x8000_0000u32 {
            key = !bits;
        } else {
            key = bits | 0x8000_0000u32;
        }
    }
    key
}

/// Sums `value` over the cube's units through `scratch` (one slot per unit); every unit gets
/// the total.
#[cube]
fn cube_sum(value: u32, scratch: &mut SharedMemory<u32>, #[comptime] units: usize) -> u32 {
    let tid = UNIT_POS_X as usize;
    scratch[tid] = value;
    sync_cube();
    #[unroll]
    for level in 0..comptime!(units.ilog2() as usize) {
        let stride = comptime!(units / 2) >> level;
        if tid < stride {
            scratch[tid] += scratch[tid + stride];
        }
        sync_cube();
    }
    let total = scratch[0usize];
    sync_cube();
    total
}

/// Cube `(m, h, b)`: the chosen key blocks of query block `m`, as tile starts (`64·block`), into
/// `block_offset[slot · max_blocks ..]`, and their count into `block_count[slot]`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn select(
    pooled_q: &Array<f32>,
    pooled_k: &Array<f32>,
    block_count: &mut Array<u32>,
    block_offset: &mut Array<u32>,
    key_blocks: u32,
    n_queries: u32,
    query_offset: u32,
    group: u32,
    kv_heads: u32,
    top_k: u32,
    max_blocks: u32,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let tid = UNIT_POS_X as usize;
    let m = CUBE_POS_X as usize;
    let query_blocks = CUBE_COUNT_X as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let slot = (b * heads + h) * query_blocks + m;
    let kv = b * kv_heads as usize + h / group as usize;
    let key_blocks = key_blocks as usize;
    let first = query_offset as usize + m * 64usize;
    let last = query_offset as usize + usize::min(m * 64usize + 64usize, n_queries as usize) - 1;
    let first_diag = first / 64usize;
    let last_diag = last / 64usize;
    let visible = usize::min(last_diag + 1, key_blocks);

    let mut keys = SharedMemory::<u32>::new(MAX_KEY_BLOCKS);
    let mut scratch = SharedMemory::<u32>::new(SELECT_UNITS);
    let q_base = slot * head_dim;
    for j in range_stepped(tid, visible, SELECT_UNITS) {
        let forced = (j >= first_diag && j <= last_diag) || j + 1 == first_diag || j == 0;
        let mut key = 0xFFFF_FFFFu32;
        if !forced {
            let k_base = (kv * key_blocks + j) * head_dim;
            let mut dot = 0.0f32;
            for c in 0..head_dim {
                dot += pooled_q[q_base + c] * pooled_k[k_base + c];
            }
            // Below the forced entries' key even for the largest finite score.
            key = u32::min(order_key(dot * scale), 0xFFFF_FFFEu32);
        }
        keys[j] = key;
    }
    sync_cube();

    let mut forced_count = 0u32;
    for j in range_stepped(tid, visible, SELECT_UNITS) {
        if keys[j] == 0xFFFF_FFFFu32 {
            forced_count += 1u32;
        }
    }
    let forced_total = cube_sum(forced_count, &mut scratch, SELECT_UNITS);
    let budget = u32::min(u32::max(top_k, forced_total), visible as u32);

    // The budget-th largest key: the largest `t` with at least `budget` keys ≥ t.
    let mut threshold = 0u32;
    for bit in 0..32u32 {
        let candidate = threshold | (1u32 << (31u32 - bit));
        let mut count = 0u32;
        for j in range_stepped(tid, visible, SELECT_UNITS) {
            if keys[j] >= candidate {
                count += 1u32;
            }
        }
        if cube_sum(count, &mut scratch, SELECT_UNITS) >= budget {
            threshold = candidate;
        }
    }

    // Keys above the threshold are all taken; ties at it in index order until the budget.
    // Each unit owns a contiguous run of key blocks so the output stays sorted.
    let run = visible.div_ceil(SELECT_UNITS);
    let start = usize::min(tid * run, visible);
    let end = usize::min(start + run, visible);
    let mut above = 0u32;
    let mut ties = 0u32;
    for j in start..end {
        if keys[j] > threshold {
            above += 1u32;
        } else if keys[j] == threshold {
            ties += 1u32;
        }
    }
    let above_total = cube_sum(above, &mut scratch, SELECT_UNITS);
    let ties_wanted = budget - above_total;
    // Exclusive prefix sums of (above, ties) over units, by one unit (256 entries).
    let mut prefix = SharedMemory::<u32>::new(comptime!(2usize * SELECT_UNITS));
    prefix[2usize * tid] = above;
    prefix[2usize * tid + 1usize] = ties;
    sync_cube();
    if tid == 0usize {
        let mut run_above = 0u32;
        let mut run_ties = 0u32;
        for u in 0..SELECT_UNITS {
            let a = prefix[2usize * u];
            let t = prefix[2usize * u + 1usize];
            prefix[2usize * u] = run_above;
            prefix[2usize * u + 1usize] = run_ties;
            run_above += a;
            run_ties += t;
        }
    }
    sync_cube();
    let mut tie_rank = prefix[2usize * tid + 1usize];
    // Output position: chosen blocks before this run = above-before + ties-before (capped).
    let mut at = prefix[2usize * tid] + u32::min(tie_rank, ties_wanted);
    for j in start..end {
        let key = keys[j];
        let mut take = key > threshold;
        if key == threshold {
            take = tie_rank < ties_wanted;
            tie_rank += 1u32;
        }
        if take {
            block_offset[slot * max_blocks as usize + at as usize] = (j * 64usize) as u32;
            at += 1u32;
        }
    }
    if tid == 0usize {
        block_count[slot] = budget;
    }
}

/// Width of the `block_offset` rows for a budget of `top_k`: no row keeps more (at most four
/// blocks are forced), nor more than there are key blocks.
pub fn max_blocks(top_k: usize, key_blocks: usize) -> usize {
    top_k.max(4).min(key_blocks).max(1)
}

/// Device buffers of [`select_blocks`]: `[batch, heads, query_blocks]` counts and
/// `[.., max_blocks]` tile starts, `u32`.
#[derive(Debug, Clone)]
pub struct SelectHandles {
    /// Chosen blocks per query block.
    pub block_count: Handle,
    /// Their tile starts, ascending, padded to `max_blocks`.
    pub block_offset: Handle,
    /// Row width of `block_offset`.
    pub max_blocks: usize,
}

/// Pools Q and K and selects every query block's `top_k` key blocks (plus the forced ones),
/// for all heads in three launches, scoring with `p.scale`; `q`/`k` as in
/// [`crate::sparse_flash::launch`].
pub fn select_blocks<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    p: &Problem,
    top_k: usize,
) -> Result<SelectHandles, KernelError> {
    p.check()?;
    if p.key_blocks() > MAX_KEY_BLOCKS {
        return Err(KernelError::Index(format!(
            "{} key blocks: the device selection holds at most {MAX_KEY_BLOCKS} (256K keys)",
            p.key_blocks()
        )));
    }
    let (qb, kb) = (p.query_blocks(), p.key_blocks());
    let width = max_blocks(top_k, kb);
    let rows = p.batch * p.heads * qb;
    let pooled_q = client.empty(rows * p.head_dim * 4);
    let pooled_k = client.empty(p.batch * p.kv_heads * kb * p.head_dim * 4);
    let block_count = client.empty(rows * 4);
    let block_offset = client.empty(rows * width * 4);
    let arr = |h: &Handle, len: usize| unsafe { ArrayArg::from_raw_parts(h.clone(), len) };
    unsafe {
        pool::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(qb as u32, p.heads as u32, p.batch as u32),
            CubeDim::new_1d(p.head_dim as u32),
            q.into_tensor_arg(),
            arr(&pooled_q, rows * p.head_dim),
            p.n_queries as u32,
        );
        pool::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(kb as u32, p.kv_heads as u32, p.batch as u32),
            CubeDim::new_1d(p.head_dim as u32),
            k.into_tensor_arg(),
            arr(&pooled_k, p.batch * p.kv_heads * kb * p.head_dim),
            p.n_keys as u32,
        );
        select::launch_unchecked::<R>(
            client,
            CubeCount::Static(qb as u32, p.heads as u32, p.batch as u32),
            CubeDim::new_1d(SELECT_UNITS as u32),
            arr(&pooled_q, rows * p.head_dim),
            arr(&pooled_k, p.batch * p.kv_heads * kb * p.head_dim),
            arr(&block_count, rows),
            arr(&block_offset, rows * width),
            kb as u32,
            p.n_queries as u32,
            p.query_offset as u32,
            (p.heads / p.kv_heads) as u32,
            p.kv_heads as u32,
            top_k as u32,
            width as u32,
            p.scale,
            p.head_dim,
        );
    }
    Ok(SelectHandles {
        block_count,
        block_offset,
        max_blocks: width,
    })
}
