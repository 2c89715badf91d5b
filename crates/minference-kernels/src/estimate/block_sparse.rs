//! Block-Sparse selection on the device: mean-pooled 64-token blocks of Q and K, block scores,
//! and each query block's top-k key blocks, for every head of a layer at once.
//!
//! Semantics (the host estimator's, `minference_burn::estimate::block_sparse`): query blocks are
//! the call's 64-row blocks, key blocks are aligned at position 0; a key block is visible when
//! its first key is at or before the block's last query; the diagonal key blocks, the block
//! before them and block 0 are always kept; the rest are ranked by score, ties by lower index;
//! `max(top_k, forced)` blocks are kept (fewer when fewer are visible), in ascending order.
//!
//! [`pool()`] averages blocks in fp32. A pair of launches covers up to 512 query blocks
//! (`launch_rows`): [`block_scores()`] scores them against every key block, a tile of 64 × 64
//! blocks a cube (each pooled key read once for a chunk of 64 query blocks), and [`select()`]
//! gives one cube to each (head, query block) of the launch: it reads its row's scores into
//! shared memory and keeps the top ones with [`super::select::emit_top()`], writing them straight
//! into the unified index ([`crate::index`]): nothing goes back to the host.

use super::select::{cube_sum, emit_top, order_key, scratch_words, FORCED, SELECT_UNITS};
use crate::sparse_flash::{IndexHandles, Problem};
use crate::{words, KernelError};
use cubecl::prelude::*;

/// Fewest key blocks a [`select()`] kernel is compiled for (4 KiB of scores): rows up to 64K keys
/// share one compiled kernel.
const MIN_CAPACITY: usize = 1024;

/// Most key blocks [`select()`] can hold on this device: the largest power of two whose scores
/// (4 bytes each) fit the device's shared memory next to the selection's own scratch
/// ([`scratch_words`]). H100/H200: 32768 blocks (2M keys); 32 KiB of shared memory: 4096
/// (256K).
pub fn max_key_blocks<R: Runtime>(client: &ComputeClient<R>) -> usize {
    blocks_in(client.properties().hardware.max_shared_memory_size)
}

/// Shared memory [`select()`] uses besides its scores: the selection's scratch (its forced count
/// and [`emit_top`] share it).
const SCRATCH_BYTES: usize = scratch_words(SELECT_UNITS) * 4;

/// Units of a [`select()`] cube for rows of up to `capacity` key blocks: one per 64 blocks, from
/// 64 (two planes) to [`SELECT_UNITS`]. Each round of the selection counts a unit's keys and
/// then sums the counts over the cube, and in a cube of 256 units the sums (every unit reads
/// 48 partial counts) cost as much as the keys of a short row. H100, Block-Sparse top-100
/// index, same call, two runs each, 256 → 128 → 64 → 32 units: 4.6–4.7 → 3.9 → 3.7 → 3.7 ms at
/// 128K (2048 key blocks), 12.2–12.3 → 10.6 → 10.5 → 10.5 at 256K (4096). Longer rows keep
/// more units: their shared memory (64 KiB at 1M) leaves an SM three cubes, which need the
/// planes.
fn select_units(capacity: usize) -> usize {
    (capacity / 64).clamp(64, SELECT_UNITS)
}

/// Query blocks a pair of [`block_scores()`] and [`select()`] launches covers for `bh` heads of
/// `key_blocks`: [`LAUNCH_ROWS`] or fewer, whole chunks ([`CHUNK`]) within [`SCORE_BYTES`], at
/// least one chunk, at most `query_blocks`.
fn launch_rows(bh: usize, query_blocks: usize, key_blocks: usize) -> usize {
    let fit = SCORE_BYTES / (4 * bh * key_blocks).max(1) / CHUNK * CHUNK;
    fit.clamp(CHUNK, LAUNCH_ROWS).min(query_blocks).max(1)
}

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
/// units of [`select()`] then read consecutive blocks of one column, coalesced).
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

/// Query blocks one [`block_scores()`] cube scores.
pub const CHUNK: usize = 64;
/// Most query blocks one pair of [`block_scores()`] and [`select()`] launches covers (32K query
/// positions), and the most bytes of scores it may hold: 256 MiB, 512 rows of 32 heads at 256K
/// keys (a 1M row of 32 heads holds 128). The buffer holds one launch's rows.
///
/// Why: one launch pair a chunk of 32 query blocks made 128 launches of 1024 small cubes each at
/// 128K, and the selection's cubes (64 units) filled a quarter of the device.
const LAUNCH_ROWS: usize = 512;
/// See [`LAUNCH_ROWS`].
const SCORE_BYTES: usize = 256 << 20;
/// Key blocks one [`block_scores()`] cube scores.
const SCORE_COLUMNS: usize = 64;
/// The slice of the head dimension a [`block_scores()`] step stages in shared memory.
const SCORE_DEPTH: usize = 16;
// A [`block_scores`] cube's 16 × 16 units cover four query blocks by four key blocks each.
const _: () = assert!(CHUNK == 4 * 16 && SCORE_COLUMNS == 4 * 16);

/// Cube `(t, c, bh)`, 256 units: the scores `pooled_q[m] · pooled_k[j]` (unscaled) of chunk
/// `c` of the launch's query blocks `first_block .. first_block + launch_len` (the query blocks
/// `first_block + 64c ..`, at most [`CHUNK`]) against key blocks `64t .. 64t + 64` of head `bh`,
/// into `scores[bh, m − first_block, j]`. Each unit computes four query blocks × four key
/// blocks, summing over the head dimension in order with one multiply-add a step, as the single
/// dot product did: the scores are the same. Tiles wholly past the chunk's last visible key
/// block are skipped ([`select()`] reads only visible ones), as are heads with `top_k[h] = 0`.
///
/// Why: scoring inside [`select()`] made every (head, query block) cube read the head's whole
/// row of pooled keys — L2-bound (H100, 256K, Nsight Compute: 87 % of L2 throughput, 16.4 ms
/// of the 17.4-ms index); here each pooled key is read once for a chunk of query blocks. Index
/// time (H200, Block-Sparse top-100, same call, two runs each): 14.9 → 11.8–11.9 ms at 256K,
/// 4.8 → 4.6 at 128K. Four by four a unit (was two by four): sixteen multiply-adds for eight
/// shared-memory reads (was eight for six, two of them conflicting), where the reads bound it
/// (H100, 128K: 15 TFLOP/s of fp32 in the last launch). Tried and not kept: eight by eight
/// in 64-unit cubes (64 multiply-adds for sixteen reads, Q rows padded against conflicts) took
/// 1.47 ms for the four launches at 128K against 0.84 (H100, Nsight Compute, same call).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn block_scores(
    pooled_q: &Array<f32>,
    pooled_k: &Array<f32>,
    top_k: &Array<u32>,
    scores: &mut Array<f32>,
    first_block: u32,
    launch_len: u32,
    query_blocks: u32,
    key_blocks: u32,
    n_queries: u32,
    query_offset: u32,
    heads: u32,
    group: u32,
    kv_heads: u32,
    #[comptime] head_dim: usize,
) {
    let tid = UNIT_POS_X as usize;
    let tx = tid % 16usize;
    let ty = tid / 16usize;
    let j0 = CUBE_POS_X as usize * SCORE_COLUMNS;
    let bh = CUBE_POS_Z as usize;
    let h = bh % heads as usize;
    let b = bh / heads as usize;
    let launch_len = launch_len as usize;
    // This cube's chunk: rows `row0 .. row0 + chunk_len` of the launch.
    let row0 = CUBE_POS_Y as usize * CHUNK;
    let chunk_len = usize::min(CHUNK, launch_len - row0);
    let key_blocks = key_blocks as usize;
    let first_block = first_block as usize + row0;
    // The chunk's last query block sees key blocks up to `last_visible`.
    let last_row = query_offset as usize
        + usize::min((first_block + chunk_len) * 64usize, n_queries as usize)
        - 1usize;
    let last_visible = last_row / 64usize;
    if top_k[h] > 0u32 && j0 <= last_visible {
        let kv = b * kv_heads as usize + h / group as usize;
        let q_base = (bh * query_blocks as usize + first_block) * head_dim;
        let k_base = kv * head_dim * key_blocks;
        let mut q_tile = SharedMemory::<f32>::new(comptime!(CHUNK * SCORE_DEPTH));
        let mut k_tile = SharedMemory::<f32>::new(comptime!(SCORE_DEPTH * SCORE_COLUMNS));
        let mut acc = Array::<f32>::new(16usize);
        #[unroll]
        for i in 0..16usize {
            acc[i] = 0.0f32;
        }
        #[unroll]
        for step in 0..comptime!(head_dim.div_ceil(SCORE_DEPTH)) {
            let c0 = step * SCORE_DEPTH;
            // Slices past the head dimension stage zeros: `acc + 0·0` is `acc`.
            #[unroll]
            for i in 0..comptime!(CHUNK * SCORE_DEPTH / 256usize) {
                let e = tid + i * 256usize;
                let r = e / SCORE_DEPTH;
                let c = c0 + e % SCORE_DEPTH;
                let mut x = 0.0f32;
                if r < chunk_len && c < head_dim {
                    x = pooled_q[q_base + r * head_dim + c];
                }
                q_tile[e] = x;
            }
            #[unroll]
            for i in 0..comptime!(SCORE_DEPTH * SCORE_COLUMNS / 256usize) {
                let e = tid + i * 256usize;
                let c = c0 + e / SCORE_COLUMNS;
                let j = j0 + e % SCORE_COLUMNS;
                let mut x = 0.0f32;
                if j < key_blocks && c < head_dim {
                    x = pooled_k[k_base + c * key_blocks + j];
                }
                k_tile[e] = x;
            }
            sync_cube();
            // Unit (tx, ty) owns query blocks `ty + 16r` and key blocks `tx + 16x`: a plane reads
            // two broadcast words of Q and sixteen consecutive words of K, without bank conflicts.
            #[unroll]
            for cc in 0..SCORE_DEPTH {
                let mut a = Array::<f32>::new(4usize);
                let mut k = Array::<f32>::new(4usize);
                #[unroll]
                for i in 0..4usize {
                    a[i] = q_tile[(ty + 16usize * i) * SCORE_DEPTH + cc];
                    k[i] = k_tile[cc * SCORE_COLUMNS + tx + 16usize * i];
                }
                #[unroll]
                for r in 0..4usize {
                    #[unroll]
                    for x in 0..4usize {
                        acc[4usize * r + x] += a[r] * k[x];
                    }
                }
            }
            sync_cube();
        }
        #[unroll]
        for r in 0..4usize {
            let row = ty + 16usize * r;
            if row < chunk_len {
                #[unroll]
                for x in 0..4usize {
                    let j = j0 + tx + 16usize * x;
                    if j < key_blocks {
                        scores[(bh * launch_len + row0 + row) * key_blocks + j] =
                            acc[4usize * r + x];
                    }
                }
            }
        }
    }
}

/// Cube `(i, h, b)`: the chosen key blocks of query block `m = first_block + i` (of the
/// launch's rows [`block_scores()`] scored into `scores`) as tile starts (`64·block`) into the
/// unified index's `block_offset[slot · max_blocks ..]` (of consecutive keys: their jump words
/// 0), their count into `block_count`, and no single columns. `top_k[h]` is head `h`'s budget;
/// 0 skips the head (another pattern's).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn select(
    scores: &Array<f32>,
    top_k: &Array<u32>,
    block_count: &mut Array<u32>,
    block_offset: &mut Array<u32>,
    block_jump: &mut Array<u32>,
    column_count: &mut Array<u32>,
    first_block: u32,
    query_blocks: u32,
    key_blocks: u32,
    n_queries: u32,
    query_offset: u32,
    max_blocks: u32,
    scale: f32,
    #[comptime] capacity: usize,
    #[comptime] units: usize,
) {
    let tid = UNIT_POS_X as usize;
    let local = CUBE_POS_X as usize;
    let chunk = CUBE_COUNT_X as usize;
    let m = first_block as usize + local;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let wanted = top_k[h];
    if wanted > 0u32 {
        let bh = b * heads + h;
        let slot = bh * query_blocks as usize + m;
        let key_blocks = key_blocks as usize;
        let first = query_offset as usize + m * 64usize;
        let last =
            query_offset as usize + usize::min(m * 64usize + 64usize, n_queries as usize) - 1;
        let first_diag = first / 64usize;
        let last_diag = last / 64usize;
        let visible = usize::min(last_diag + 1, key_blocks);
        let row = (bh * chunk + local) * key_blocks;

        let mut keys = SharedMemory::<u32>::new(capacity);
        let mut scratch = SharedMemory::<u32>::new(comptime!(scratch_words(units)));
        let mut forced_count = 0u32;
        for j in range_stepped(tid, visible, units) {
            let forced = (j >= first_diag && j <= last_diag) || j + 1 == first_diag || j == 0;
            let mut key = FORCED.runtime();
            if forced {
                forced_count += 1u32;
            } else {
                key = order_key(scores[row + j] * scale);
            }
            keys[j] = key;
        }
        let forced_total = cube_sum(forced_count, &mut scratch, units);
        let budget = u32::min(u32::max(wanted, forced_total), visible as u32);
        emit_top(
            &keys.to_slice(),
            visible,
            budget,
            block_offset,
            slot * max_blocks as usize,
            64u32,
            &mut scratch,
            units,
            true,
        );
        for j in range_stepped(tid, budget as usize, units) {
            block_jump[slot * max_blocks as usize + j] = 0u32;
        }
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
/// (two pooling launches, then scores and selection per [`launch_rows`] query blocks),
/// scoring with `p.scale`; `q`/`k` as in [`crate::sparse_flash::launch`].
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
    }
    // Scores and selection [`launch_rows`] query blocks at a time, so that the score buffer
    // stays within [`SCORE_BYTES`].
    let bh = p.batch * p.heads;
    let step = launch_rows(bh, qb, kb);
    let scores = client.empty(bh * step * kb * 4);
    let capacity = capacity_for(kb);
    let units = select_units(capacity);
    for first in (0..qb).step_by(step) {
        let len = step.min(qb - first);
        unsafe {
            block_scores::launch_unchecked::<R>(
                client,
                CubeCount::Static(
                    kb.div_ceil(SCORE_COLUMNS) as u32,
                    len.div_ceil(CHUNK) as u32,
                    bh as u32,
                ),
                CubeDim::new_1d(256),
                words(&pooled_q, rows * p.head_dim)?,
                words(&pooled_k, p.batch * p.kv_heads * kb * p.head_dim)?,
                words(&top_k_handle, top_k.len())?,
                words(&scores, bh * len * kb)?,
                first as u32,
                len as u32,
                qb as u32,
                kb as u32,
                p.n_queries as u32,
                p.query_offset as u32,
                p.heads as u32,
                (p.heads / p.kv_heads) as u32,
                p.kv_heads as u32,
                p.head_dim,
            );
            select::launch_unchecked::<R>(
                client,
                CubeCount::Static(len as u32, p.heads as u32, p.batch as u32),
                CubeDim::new_1d(units as u32),
                words(&scores, bh * len * kb)?,
                words(&top_k_handle, top_k.len())?,
                words(&index.block_count, rows)?,
                words(&index.block_offset, rows * index.max_blocks)?,
                words(&index.block_jump, rows * index.max_blocks)?,
                words(&index.column_count, rows)?,
                first as u32,
                qb as u32,
                kb as u32,
                p.n_queries as u32,
                p.query_offset as u32,
                index.max_blocks as u32,
                p.scale,
                capacity,
                units,
            );
        }
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

    #[test]
    fn launches_cover_whole_chunks_within_the_score_budget() {
        // 32 heads: 128K keys in four launches, 256K in eight, 1M (16 384 blocks) in 128-row ones.
        assert_eq!(launch_rows(32, 2048, 2048), LAUNCH_ROWS);
        assert_eq!(launch_rows(32, 4096, 4096), 512);
        assert_eq!(launch_rows(32, 16_384, 16_384), 128);
        // Short calls take one launch; a huge row still gets one chunk.
        assert_eq!(launch_rows(2, 1, 1), 1);
        assert_eq!(launch_rows(2, 64, 64), 64);
        assert_eq!(launch_rows(1024, 40_000, 32_768), CHUNK);
        for (bh, qb, kb) in [(32, 2048, 2048), (8, 600, 9000), (64, 20_000, 20_000)] {
            let rows = launch_rows(bh, qb, kb);
            assert!(rows.is_multiple_of(CHUNK) || rows == qb);
            assert!(rows == CHUNK || 4 * bh * rows * kb <= SCORE_BYTES);
        }
    }

    #[test]
    fn select_units_grow_with_the_row_within_the_scratch() {
        // Up to 256K keys (4096 blocks): two planes; 1M keys: the full cube.
        assert_eq!(select_units(capacity_for(2048)), 64);
        assert_eq!(select_units(capacity_for(4096)), 64);
        assert_eq!(select_units(capacity_for(8192)), 128);
        assert_eq!(select_units(capacity_for(16_384)), 256);
        for capacity in [MIN_CAPACITY, 2048, 4096, 8192, 16_384, 32_768] {
            let units = select_units(capacity);
            // The sums' two levels of sixteen, and SCRATCH_BYTES' bound.
            assert!(units.is_multiple_of(16) && units <= SELECT_UNITS);
        }
    }
}
