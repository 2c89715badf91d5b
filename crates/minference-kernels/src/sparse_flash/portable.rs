//! The portable sparse flash kernel: one unit per query row, fp32 arithmetic from shared memory.
//!
//! Runs wherever CubeCL runs: no plane operations, about 16 KiB of shared memory.
//!
//! Each 64-unit cube walks its query block's *items* — the 64-key tiles, then the gathered
//! columns in chunks of `chunk` — loading each chunk's keys and values into shared memory once
//! for all 64 rows. A launch may cover only the items `item_begin..item_end` of every block,
//! resuming from and saving to a per-row running state (max, sum, unnormalised output): devices
//! that cap the loop iterations of one shader invocation (see [`super::loop_cap`]) get the rows
//! in several launches, each within the cap.

use super::MASKED;
use crate::index::jump::key;
use cubecl::prelude::*;

/// Running softmax state of one query row, in fp32.
#[derive(CubeType)]
struct RowState {
    q: Array<f32>,
    acc: Array<f32>,
    scores: Array<f32>,
    max: f32,
    sum: f32,
}

/// Shared chunk of keys: positions (`n_keys` for an empty slot) and fp32 K and V rows.
#[derive(CubeType)]
struct KeyChunk {
    keys: SharedMemory<u32>,
    k: SharedMemory<f32>,
    v: SharedMemory<f32>,
}

/// Loads the chunk's K and V rows (`keys` already set and synchronised), then folds the chunk into
/// the row's running softmax.
#[cube]
#[allow(clippy::too_many_arguments)]
fn attend_chunk<F: Float>(
    state: &mut RowState,
    chunk_smem: &mut KeyChunk,
    k: &Tensor<F>,
    v: &Tensor<F>,
    k_base: usize,
    v_base: usize,
    n_keys: usize,
    position: usize,
    valid_row: bool,
    #[comptime] head_dim: usize,
    #[comptime] chunk: usize,
) {
    let lane = UNIT_POS_X as usize;
    for r in 0..comptime!((chunk * head_dim).div_ceil(64)) {
        let e = r * 64 + lane;
        let key = chunk_smem.keys[(e / head_dim) % 64] as usize;
        let c = e % head_dim;
        let mut kx = 0.0f32;
        let mut vx = 0.0f32;
        if key < n_keys {
            kx = f32::cast_from(k[k_base + key * k.stride(2) + c * k.stride(3)]);
            vx = f32::cast_from(v[v_base + key * v.stride(2) + c * v.stride(3)]);
        }
        if e < chunk * head_dim {
            chunk_smem.k[e] = kx;
            chunk_smem.v[e] = vx;
        }
    }
    sync_cube();
    if valid_row {
        let mut chunk_max = MASKED.runtime();
        for i in 0..chunk {
            let key = chunk_smem.keys[i] as usize;
            let mut s = MASKED.runtime();
            if key < n_keys && key <= position {
                let mut dot = 0.0f32;
                for c in 0..head_dim {
                    dot += state.q[c] * chunk_smem.k[i * head_dim + c];
                }
                s = dot;
            }
            state.scores[i] = s;
            chunk_max = f32::max(chunk_max, s);
        }
        if chunk_max > MASKED {
            let new_max = f32::max(state.max, chunk_max);
            let correction = f32::exp(state.max - new_max);
            state.sum *= correction;
            for c in 0..head_dim {
                state.acc[c] *= correction;
            }
            for i in 0..chunk {
                let p = f32::exp(state.scores[i] - new_max);
                state.sum += p;
                for c in 0..head_dim {
                    state.acc[c] += p * chunk_smem.v[i * head_dim + c];
                }
            }
            state.max = new_max;
        }
    }
    sync_cube();
}

/// The state of row `row_slot` (64 per query block): `head_dim` outputs, then max and sum.
#[cube]
fn state_base(row_slot: usize, #[comptime] head_dim: usize) -> usize {
    row_slot * comptime!(head_dim + 2usize)
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn sparse_flash_portable<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    v: &Tensor<F>,
    out: &mut Tensor<F>,
    block_count: &Array<u32>,
    block_offset: &Array<u32>,
    block_jump: &Array<u32>,
    column_count: &Array<u32>,
    column_index: &Array<u32>,
    n_queries: u32,
    n_keys: u32,
    query_offset: u32,
    group: u32,
    max_blocks: u32,
    max_columns: u32,
    scale: f32,
    state_store: &mut Array<f32>,
    item_begin: u32,
    item_end: u32,
    finish: u32,
    #[comptime] head_dim: usize,
    #[comptime] chunk: usize,
) {
    let m = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let blocks = CUBE_COUNT_X as usize;
    let lane = UNIT_POS_X as usize;
    let n_queries = n_queries as usize;
    let n_keys = n_keys as usize;
    let row = m * 64 + lane;
    let valid_row = row < n_queries;
    let position = query_offset as usize + row;
    let kv_head = h / group as usize;
    let index_slot = (b * heads + h) * blocks + m;
    let k_base = b * k.stride(0) + kv_head * k.stride(1);
    let v_base = b * v.stride(0) + kv_head * v.stride(1);
    let saved = state_base(index_slot * 64 + lane, head_dim);
    let resume = item_begin > 0;

    let mut state = RowState {
        q: Array::<f32>::new(head_dim),
        acc: Array::<f32>::new(head_dim),
        scores: Array::<f32>::new(chunk),
        max: MASKED.runtime(),
        sum: 0.0f32.runtime(),
    };
    let q_base = b * q.stride(0) + h * q.stride(1) + row * q.stride(2);
    for c in 0..head_dim {
        let mut x = 0.0f32;
        let mut acc = 0.0f32;
        if valid_row {
            x = f32::cast_from(q[q_base + c * q.stride(3)]) * scale;
            if resume {
                acc = state_store[saved + c];
            }
        }
        state.q[c] = x;
        state.acc[c] = acc;
    }
    if valid_row && resume {
        state.max = state_store[saved + head_dim];
        state.sum = state_store[saved + head_dim + 1];
    }
    let k_smem = SharedMemory::<f32>::new(chunk * head_dim);
    let v_smem = SharedMemory::<f32>::new(chunk * head_dim);
    let keys_smem = SharedMemory::<u32>::new(64usize);
    let mut chunk_smem = KeyChunk {
        keys: keys_smem,
        k: k_smem,
        v: v_smem,
    };

    // Items of this launch: tiles `begin..tile_end`, then column chunks up to `item_end`.
    let begin = item_begin as usize;
    let end = item_end as usize;
    let tiles = block_count[index_slot] as usize;
    let tile_end = usize::min(end, tiles);
    for t in begin..tile_end {
        let start = block_offset[index_slot * max_blocks as usize + t] as usize;
        let jump = block_jump[index_slot * max_blocks as usize + t];
        for sub in 0..comptime!(64 / chunk) {
            // Every lane writes (slots past `chunk` are never read): no divergent branch
            // before the barrier.
            chunk_smem.keys[lane] = key(start, jump, sub * chunk + lane) as u32;
            sync_cube();
            attend_chunk::<F>(
                &mut state,
                &mut chunk_smem,
                k,
                v,
                k_base,
                v_base,
                n_keys,
                position,
                valid_row,
                head_dim,
                chunk,
            );
        }
    }
    let columns = column_count[index_slot] as usize;
    let chunks = columns.div_ceil(chunk);
    let first_chunk = usize::max(begin, tiles) - tiles;
    let end_chunk = usize::min(usize::max(end, tiles) - tiles, chunks);
    for i in first_chunk..end_chunk {
        let c = i * chunk + lane;
        let in_chunk = lane < chunk && c < columns;
        let at = select(in_chunk, index_slot * max_columns as usize + c, 0usize);
        let key = column_index[at] as usize;
        chunk_smem.keys[lane] = select(in_chunk, key, n_keys) as u32;
        sync_cube();
        attend_chunk::<F>(
            &mut state,
            &mut chunk_smem,
            k,
            v,
            k_base,
            v_base,
            n_keys,
            position,
            valid_row,
            head_dim,
            chunk,
        );
    }

    if valid_row {
        if finish != 0u32 {
            let o_base = b * out.stride(0) + h * out.stride(1) + row * out.stride(2);
            let inv = 1.0f32 / state.sum;
            for c in 0..head_dim {
                out[o_base + c * out.stride(3)] = F::cast_from(state.acc[c] * inv);
            }
        } else {
            for c in 0..head_dim {
                state_store[saved + c] = state.acc[c];
            }
            state_store[saved + head_dim] = state.max;
            state_store[saved + head_dim + 1] = state.sum;
        }
    }
}

/// Loop iterations one item can cost a unit (an upper bound, for [`items_per_launch`]): per
/// chunk the staging loop, the score and output loops over the chunk's keys with their loops
/// over the head dimension, and the rescale.
fn iterations_per_item(head_dim: usize, chunk: usize) -> u64 {
    let (d, chunk) = (head_dim as u64, chunk as u64);
    let per_chunk = (chunk * d).div_ceil(64) + 2 * chunk * (d + 1) + d + 1;
    (64 / chunk) * per_chunk + 1
}

/// Items one launch may cover on a device that stops an invocation after `cap` loop iterations
/// (at least one: a 256-wide item costs ~35K, within every cap seen). A quarter of the cap is
/// left for the row set-up and loops the compiler adds.
pub(super) fn items_per_launch(cap: u64, head_dim: usize, chunk: usize) -> usize {
    let fixed = 4 * head_dim as u64 + 64;
    let budget = (cap * 3 / 4).saturating_sub(fixed);
    (budget / iterations_per_item(head_dim, chunk)).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every head dimension the kernel takes fits at least one item, with its row set-up, in
    /// llvmpipe's cap of 65535 iterations, and the split leaves that cap's margin.
    #[test]
    fn items_fit_the_loop_cap() {
        let cap = 65_535u64;
        for head_dim in 1..=256 {
            let chunk = super::super::portable_chunk(head_dim);
            let items = items_per_launch(cap, head_dim, chunk) as u64;
            let used = items * iterations_per_item(head_dim, chunk) + 4 * head_dim as u64 + 64;
            assert!(
                items >= 1 && used <= cap,
                "head_dim {head_dim}: {items} items, {used}"
            );
            if items > 1 {
                assert!(used <= cap * 3 / 4, "head_dim {head_dim}: no margin");
            }
        }
        assert_eq!(items_per_launch(cap, 128, 16), 2);
        assert_eq!(items_per_launch(cap, 32, 64), 11);
    }
}
