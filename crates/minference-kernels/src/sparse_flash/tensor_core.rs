//! The tensor-core sparse flash kernel: `cmma` 16×16×16 products, fp32 softmax in shared memory.
//!
//! One cube of four 32-wide planes computes one 64-row query block; plane `w` owns rows
//! `16w..16w+16`. Per work item (a 64-key tile, or a chunk of 64 gathered columns):
//! 1. the item's K and V rows are staged in shared memory (input precision);
//! 2. each plane computes its `S = Q·Kᵀ` (16×64) with `cmma` and stores it in fp32;
//! 3. one lane per row applies the mask, updates the running max and sum, writes `P` in input
//!    precision and rescales its output row (kept in fp32 in shared memory);
//! 4. each plane adds `P·V` to its output rows with `cmma`, accumulating in fp32.

use super::MASKED;
use crate::index::jump::key as tile_key;
use cubecl::prelude::*;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn sparse_flash_tensor_core<F: Float>(
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
    #[comptime] head_dim: usize,
) {
    let m = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let blocks = CUBE_COUNT_X as usize;
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let tid = plane * 32usize + lane;
    let n_queries = n_queries as usize;
    let n_keys = n_keys as usize;
    let kv_head = h / group as usize;
    let index_slot = (b * heads + h) * blocks + m;
    let q_base = b * q.stride(0usize) + h * q.stride(1usize);
    let k_base = b * k.stride(0usize) + kv_head * k.stride(1usize);
    let v_base = b * v.stride(0usize) + kv_head * v.stride(1usize);

    let mut q_s = SharedMemory::<F>::new(64usize * head_dim);
    let mut k_s = SharedMemory::<F>::new(64usize * head_dim);
    let mut v_s = SharedMemory::<F>::new(64usize * head_dim);
    let mut s_s = SharedMemory::<f32>::new(64usize * 64usize);
    let mut p_s = SharedMemory::<F>::new(64usize * 64usize);
    let mut o_s = SharedMemory::<f32>::new(64usize * head_dim);
    let mut row_max = SharedMemory::<f32>::new(64usize);
    let mut row_sum = SharedMemory::<f32>::new(64usize);
    let mut keys = SharedMemory::<u32>::new(64usize);

    for e in range_stepped(tid, 64usize * head_dim, 128usize) {
        let r = e / head_dim;
        let c = e % head_dim;
        let row = m * 64usize + r;
        let mut x = F::from_int(0);
        if row < n_queries {
            x = q[q_base + row * q.stride(2usize) + c * q.stride(3usize)];
        }
        q_s[e] = x;
        o_s[e] = 0.0f32;
    }
    if tid < 64usize {
        row_max[tid] = MASKED;
        row_sum[tid] = 0.0f32;
    }
    sync_cube();

    let tiles = block_count[index_slot] as usize;
    let columns = column_count[index_slot] as usize;
    let items = tiles + columns.div_ceil(64usize);
    for item in 0..items {
        // 1. keys of this item, then K and V rows
        if tid < 64usize {
            let mut key = n_keys;
            if item < tiles {
                let at = index_slot * max_blocks as usize + item;
                key = tile_key(block_offset[at] as usize, block_jump[at], tid);
            } else {
                let c = (item - tiles) * 64usize + tid;
                if c < columns {
                    key = column_index[index_slot * max_columns as usize + c] as usize;
                }
            }
            keys[tid] = key as u32;
        }
        sync_cube();
        for e in range_stepped(tid, 64usize * head_dim, 128usize) {
            let key = keys[e / head_dim] as usize;
            let c = e % head_dim;
            let mut kx = F::from_int(0);
            let mut vx = F::from_int(0);
            if key < n_keys {
                kx = k[k_base + key * k.stride(2usize) + c * k.stride(3usize)];
                vx = v[v_base + key * v.stride(2usize) + c * v.stride(3usize)];
            }
            k_s[e] = kx;
            v_s[e] = vx;
        }
        sync_cube();

        // 2. S = Q·Kᵀ for this plane's 16 rows
        #[unroll]
        for nb in 0..4usize {
            let acc = cmma::Matrix::<f32>::from_value(
                cmma::MatrixIdent::Accumulator,
                16usize,
                16usize,
                16usize,
                cmma::MatrixLayout::Undefined,
                0.0f32,
            );
            #[unroll]
            for kk in 0..comptime!(head_dim / 16usize) {
                let a_start = plane * 16usize * head_dim + kk * 16usize;
                let b_start = nb * 16usize * head_dim + kk * 16usize;
                let a = cmma::Matrix::<F>::from_slice(
                    cmma::MatrixIdent::A,
                    16usize,
                    16usize,
                    16usize,
                    cmma::MatrixLayout::RowMajor,
                    &q_s.slice(a_start, a_start + 15usize * head_dim + 16usize),
                    head_dim as u32,
                );
                let bm = cmma::Matrix::<F>::from_slice(
                    cmma::MatrixIdent::B,
                    16usize,
                    16usize,
                    16usize,
                    cmma::MatrixLayout::ColMajor,
                    &k_s.slice(b_start, b_start + 15usize * head_dim + 16usize),
                    head_dim as u32,
                );
                cmma::execute::<F, F, f32, f32>(&a, &bm, &acc, &acc);
            }
            let s_start = plane * 16usize * 64usize + nb * 16usize;
            cmma::store(
                &mut s_s.slice_mut(s_start, s_start + 15usize * 64usize + 16usize),
                &acc,
                64u32,
                cmma::MatrixLayout::RowMajor,
            );
        }
        sync_cube();

        // 3. masked online softmax, one lane per row
        if lane < 16usize {
            let r = plane * 16usize + lane;
            let position = query_offset as usize + m * 64usize + r;
            let old_max = row_max[r];
            let mut new_max = old_max;
            for c in 0..64usize {
                let key = keys[c] as usize;
                if key < n_keys && key <= position {
                    new_max = f32::max(new_max, s_s[r * 64usize + c] * scale);
                }
            }
            let mut sum = 0.0f32;
            let mut correction = 1.0f32;
            if new_max > MASKED {
                correction = f32::exp(old_max - new_max);
            }
            for c in 0..64usize {
                let key = keys[c] as usize;
                let mut p = 0.0f32;
                if key < n_keys && key <= position {
                    p = f32::exp(s_s[r * 64usize + c] * scale - new_max);
                }
                sum += p;
                p_s[r * 64usize + c] = F::cast_from(p);
            }
            row_max[r] = new_max;
            row_sum[r] = row_sum[r] * correction + sum;
            for c in 0..head_dim {
                o_s[r * head_dim + c] *= correction;
            }
        }
        sync_cube();

        // 4. O += P·V for this plane's 16 rows
        #[unroll]
        for nb in 0..comptime!(head_dim / 16usize) {
            let o_start = plane * 16usize * head_dim + nb * 16usize;
            let acc = cmma::Matrix::<f32>::from_value(
                cmma::MatrixIdent::Accumulator,
                16usize,
                16usize,
                16usize,
                cmma::MatrixLayout::Undefined,
                0.0f32,
            );
            cmma::load_with_layout(
                &acc,
                &o_s.slice(o_start, o_start + 15usize * head_dim + 16usize),
                head_dim as u32,
                cmma::MatrixLayout::RowMajor,
            );
            #[unroll]
            for kk in 0..4usize {
                let a_start = plane * 16usize * 64usize + kk * 16usize;
                let b_start = kk * 16usize * head_dim + nb * 16usize;
                let a = cmma::Matrix::<F>::from_slice(
                    cmma::MatrixIdent::A,
                    16usize,
                    16usize,
                    16usize,
                    cmma::MatrixLayout::RowMajor,
                    &p_s.slice(a_start, a_start + 15usize * 64usize + 16usize),
                    64u32,
                );
                let bm = cmma::Matrix::<F>::from_slice(
                    cmma::MatrixIdent::B,
                    16usize,
                    16usize,
                    16usize,
                    cmma::MatrixLayout::RowMajor,
                    &v_s.slice(b_start, b_start + 15usize * head_dim + 16usize),
                    head_dim as u32,
                );
                cmma::execute::<F, F, f32, f32>(&a, &bm, &acc, &acc);
            }
            cmma::store(
                &mut o_s.slice_mut(o_start, o_start + 15usize * head_dim + 16usize),
                &acc,
                head_dim as u32,
                cmma::MatrixLayout::RowMajor,
            );
        }
        sync_cube();
    }

    for e in range_stepped(tid, 64usize * head_dim, 128usize) {
        let r = e / head_dim;
        let row = m * 64usize + r;
        if row < n_queries {
            let c = e % head_dim;
            out[b * out.stride(0usize)
                + h * out.stride(1usize)
                + row * out.stride(2usize)
                + c * out.stride(3usize)] = F::cast_from(o_s[e] / row_sum[r]);
        }
    }
}
