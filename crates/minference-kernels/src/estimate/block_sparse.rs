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
//! scores the visible key blocks into shared memory and keeps the top ones with
//! [`super::select::emit_top`], writing them straight into the unified index
//! ([`crate::index`]): nothing goes back to the host.

use super::select::{cube_sum, emit_top, order_key, scratch_words, FORCED, SELECT_UNITS};
use crate::sparse_flash::{IndexHandles, Problem};
use crate::{words, KernelError};
use cubecl::prelude::*;

/// Fewest key blocks a [`select`] kernel is compiled for (4 KiB of scores): rows up to 64K keys
/// share one compiled kernel.
const MIN_CAPACITY: usize = 1024;

/// Most key blocks [`select`] can hold on this device: the largest power of two whose scores
/// (4 bytes each) fit the device's shared memory next to the selection's own scratch
/// ([`scratch_words`]) and the pooled query (up to 256 floats). H100/H200: 32768 blocks (2M
/// keys); 32 KiB of shared memory: 4096 (256K).
pub fn max_key_blocks<R: Runtime>(client: &ComputeClient<R>) -> usize {
    blocks_in(client.properties().hardware.max_shared_memory_size)
}

/// Shared memory [`select`] uses besides its scores: the selection's scratch (its forced count
/// and [`emit_top`] share it) and the pooled query at the largest head dimension.
const SCRATCH_BYTES: usize = scratch_words(SELECT_UNITS) * 4 + 256 * 4;

/// [`max_key_blocks`] for `shared` bytes of shared memory.
fn blocks_in(shared: usize) -> usize {
    let fit = shared.saturating_sub(SCRATCH_BYTES) / 4;
    if fit == 0 {
        0
    } else {
        1 << fit.ilog2()
    }
}

/// The capacity a row of `key_blocks` blocks is selected with: the next power of two, at least
/// [`MIN_CAPACITY`] (few compiled variants; shared memory grows with the rows).
fn capacity_for(key_blocks: usize) -> usize {
    key_blocks.next_power_of_two().max(MIN_CAPACITY)
}

/// Cube `(block, h, b)`, unit `c`: the mean of rows `64·block ..` (at most `len`) of column `c`,
/// into `pooled[bh, block, c]`, or `pooled[bh, c, block]` when `transposed` (pooled keys: the
/// units of [`select`] then read consecutive blocks of one column, coalesced).
#[cube(launch_unchecked)]
pub fn pool<F: Float>(
    x: &Tensor<F>,
    pooled: &mut Array<f32>,
    len: u32,
    #[comptime] transposed: bool,
) {
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
    let bh = b * heads + h;
    let at = if comptime!(transposed) {
        (bh * d + c) * blocks + block
    } else {
        (bh * blocks + block) * d + c
    };
    pooled[at] = sum / (end - start) as f32;
}

/// Cube `(m, h, b)`: the chosen key blocks of query block `m` as tile starts (`64·block`) into
/// the unified index's `block_offset[slot · max_blocks ..]`, their count into `block_count`, and
/// no single columns. `top_k[h]` is head `h`'s budget; 0 skips the head (another pattern's).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn select(
    pooled_q: &Array<f32>,
    pooled_k: &Array<f32>,
    top_k: &Array<u32>,
    block_count: &mut Array<u32>,
    block_offset: &mut Array<u32>,
    column_count: &mut Array<u32>,
    key_blocks: u32,
    n_queries: u32,
    query_offset: u32,
    group: u32,
    kv_heads: u32,
    max_blocks: u32,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] capacity: usize,
) {
    let tid = UNIT_POS_X as usize;
    let m = CUBE_POS_X as usize;
    let query_blocks = CUBE_COUNT_X as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let wanted = top_k[h];
    if wanted > 0u32 {
        let slot = (b * heads + h) * query_blocks + m;
        let kv = b * kv_heads as usize + h / group as usize;
        let key_blocks = key_blocks as usize;
        let first = query_offset as usize + m * 64usize;
        let last =
            query_offset as usize + usize::min(m * 64usize + 64usize, n_queries as usize) - 1;
        let first_diag = first / 64usize;
        let last_diag = last / 64usize;
        let visible = usize::min(last_diag + 1, key_blocks);

        let mut keys = SharedMemory::<u32>::new(capacity);
        let mut scratch = SharedMemory::<u32>::new(comptime!(scratch_words(SELECT_UNITS)));
        // The pooled query, read by every unit for every key block: once into shared memory.
        let mut q_shared = SharedMemory::<f32>::new(head_dim);
        for c in range_stepped(tid, head_dim, SELECT_UNITS) {
            q_shared[c] = pooled_q[slot * head_dim + c];
        }
        sync_cube();
        let mut forced_count = 0u32;
        for j in range_stepped(tid, visible, SELECT_UNITS) {
            let forced = (j >= first_diag && j <= last_diag) || j + 1 == first_diag || j == 0;
            let mut key = FORCED.runtime();
            if forced {
                forced_count += 1u32;
            } else {
                // Keys pooled transposed: consecutive units read consecutive blocks. Unrolled so
                // that the loads (L2 traffic: the whole row of pooled keys per cube) are in flight
                // together; the sum keeps its order, so the scores stay bit-identical.
                let k_base = kv * head_dim * key_blocks + j;
                let mut dot = 0.0f32;
                #[unroll]
                for c in 0..head_dim {
                    dot += q_shared[c] * pooled_k[k_base + c * key_blocks];
                }
                key = order_key(dot * scale);
            }
            keys[j] = key;
        }
        let forced_total = cube_sum(forced_count, &mut scratch, SELECT_UNITS);
        let budget = u32::min(u32::max(wanted, forced_total), visible as u32);
        emit_top(
            &keys.to_slice(),
            visible,
            budget,
            block_offset,
            slot * max_blocks as usize,
            64u32,
            &mut scratch,
            SELECT_UNITS,
        );
        if tid == 0usize {
            block_count[slot] = budget;
            column_count[slot] = 0u32;
        }
    }
}

/// Width of the `block_offset` rows for a budget of `top_k`: no row keeps more (at most four
/// blocks are forced), nor more than there are key blocks.
pub fn max_blocks(top_k: usize, key_blocks: usize) -> usize {
    top_k.max(4).min(key_blocks).max(1)
}

/// Pools Q and K and writes the Block-Sparse heads' rows of `index` (heads with `top_k[h] > 0`)
/// in three launches, scoring with `p.scale`; `q`/`k` as in [`crate::sparse_flash::launch`].
pub(crate) fn select_blocks<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    p: &Problem,
    top_k: &[u32],
    index: &IndexHandles,
) -> Result<(), KernelError> {
    let most = max_key_blocks(client);
    if p.key_blocks() > most {
        return Err(KernelError::Index(format!(
            "{} key blocks: this device's Block-Sparse selection holds at most {most} ({} keys)",
            p.key_blocks(),
            most * 64
        )));
    }
    let (qb, kb) = (p.query_blocks(), p.key_blocks());
    let rows = p.batch * p.heads * qb;
    let pooled_q = client.empty(rows * p.head_dim * 4);
    let pooled_k = client.empty(p.batch * p.kv_heads * kb * p.head_dim * 4);
    let top_k_handle = client.create_from_slice(u32::as_bytes(top_k));
    unsafe {
        pool::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(qb as u32, p.heads as u32, p.batch as u32),
            CubeDim::new_1d(p.head_dim as u32),
            q.into_tensor_arg(),
            words(&pooled_q, rows * p.head_dim)?,
            p.n_queries as u32,
            false,
        );
        pool::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(kb as u32, p.kv_heads as u32, p.batch as u32),
            CubeDim::new_1d(p.head_dim as u32),
            k.into_tensor_arg(),
            words(&pooled_k, p.batch * p.kv_heads * kb * p.head_dim)?,
            p.n_keys as u32,
            true,
        );
        select::launch_unchecked::<R>(
            client,
            CubeCount::Static(qb as u32, p.heads as u32, p.batch as u32),
            CubeDim::new_1d(SELECT_UNITS as u32),
            words(&pooled_q, rows * p.head_dim)?,
            words(&pooled_k, p.batch * p.kv_heads * kb * p.head_dim)?,
            words(&top_k_handle, top_k.len())?,
            words(&index.block_count, rows)?,
            words(&index.block_offset, rows * index.max_blocks)?,
            words(&index.column_count, rows)?,
            kb as u32,
            p.n_queries as u32,
            p.query_offset as u32,
            (p.heads / p.kv_heads) as u32,
            p.kv_heads as u32,
            index.max_blocks as u32,
            p.scale,
            p.head_dim,
            capacity_for(kb),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_covers_the_row_within_shared_memory() {
        // H100/H200 (227 KiB opt-in), a 32 KiB device, and none.
        assert_eq!(blocks_in(232_448), 32_768);
        assert_eq!(blocks_in(32 * 1024), 4096);
        assert_eq!(blocks_in(1024), 0);
        for key_blocks in [1, 63, 1024, 1025, 4688, 32_768] {
            let capacity = capacity_for(key_blocks);
            assert!(capacity >= key_blocks && capacity.is_power_of_two());
            assert!(capacity == MIN_CAPACITY || capacity < 2 * key_blocks);
        }
        // What select uses of shared memory at a capacity the device reports it can hold.
        let used = |capacity: usize| capacity * 4 + SCRATCH_BYTES;
        assert!(used(blocks_in(232_448)) <= 232_448);
        assert!(used(blocks_in(32 * 1024)) <= 32 * 1024);
    }
}
