//! The register-resident sparse flash kernel: manual `mma.m16n8k16` products, softmax in
//! registers (FlashAttention-2's structure).
//!
//! One cube of four 32-wide planes computes one 64-row query block; plane `w` owns rows
//! `16w..16w+16`. Lane `l` of a plane holds, for every 16×8 accumulator tile, rows `l/4` and
//! `l/4 + 8` and columns `2(l%4)`, `2(l%4)+1` (PTX's fragment layout), so:
//! - `Q`'s A fragments are loaded once and stay in registers;
//! - `S = Q·Kᵀ` for a 64-key item lands in registers; its row max and the exponentials are
//!   computed there, the four lanes sharing a row combining through two xor shuffles;
//! - the fp32 scores of two adjacent 8-key tiles *are* the A fragment of the next product once
//!   rounded to the input type, so `P` never touches shared memory;
//! - `O` stays in fp32 registers, rescaled in place when a row's max grows.
//!
//! Per item only K and V pass through shared memory, staged with 16-byte loads: K as rows of
//! element pairs along the head dimension, V transposed into pairs along the keys, both padded
//! so that each lane of a fragment load hits its own bank.

use super::MASKED;
use cubecl::cmma::MmaDefinition;
use cubecl::prelude::*;

/// Eight input elements: one 16-byte global load.
type Wide<F> = Vector<F, Const<8>>;
/// Two input elements: one 32-bit register of an MMA fragment.
type Pair<F> = Vector<F, Const<2>>;

/// Padding, in pairs, of a K row (`head_dim / 2` pairs) in shared memory.
const K_PAD: usize = 4;
/// Pairs per row of transposed V in shared memory: 32 key pairs + padding.
const V_ROW: usize = 36;

/// The key a row of the current item reads: the tile's `start + r`, or the `r`-th gathered
/// column of the chunk; `n_keys` (no key) past the index's end.
#[cube]
#[allow(clippy::too_many_arguments)]
fn item_key(
    item: usize,
    r: usize,
    tiles: usize,
    tile_start: usize,
    columns: usize,
    column_index: &Array<u32>,
    column_base: usize,
    n_keys: usize,
) -> usize {
    let mut key = n_keys;
    if item < tiles {
        key = tile_start + r;
    } else {
        let c = (item - tiles) * 64usize + r;
        if c < columns {
            key = column_index[column_base + c] as usize;
        }
    }
    key
}

#[cube(
    launch_unchecked,
    fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf
)]
// `arithmetic_overflow`: rustc folds the placeholder values of `CUBE_COUNT_X`/`CUBE_POS_X` in
// the host copy of this function; on the device `CUBE_POS_X < CUBE_COUNT_X`.
#[allow(clippy::too_many_arguments, arithmetic_overflow)]
pub(super) fn sparse_flash_mma<F: Float>(
    q: &Tensor<Wide<F>>,
    k: &Tensor<Wide<F>>,
    v: &Tensor<Wide<F>>,
    out: &mut Tensor<Pair<F>>,
    block_count: &Array<u32>,
    block_offset: &Array<u32>,
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
    // Heavy (late) query blocks first: causal rows grow with the block index.
    let m = (CUBE_COUNT_X - 1 - CUBE_POS_X) as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let blocks = CUBE_COUNT_X as usize;
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let tid = plane * 32usize + lane;
    let g = lane / 4usize;
    let t = lane % 4usize;
    let n_queries = n_queries as usize;
    let n_keys = n_keys as usize;
    let kv_head = h / group as usize;
    let slot = (b * heads + h) * blocks + m;
    let q_base = b * q.stride(0usize) + h * q.stride(1usize);
    let k_base = b * k.stride(0usize) + kv_head * k.stride(1usize);
    let v_base = b * v.stride(0usize) + kv_head * v.stride(1usize);
    let chunks = comptime!(head_dim / 8usize);
    let k_row = comptime!(head_dim / 2usize + K_PAD);
    let def = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);

    let mut ks = SharedMemory::<Pair<F>>::new(comptime!(64usize * (head_dim / 2usize + K_PAD)));
    let mut vs = SharedMemory::<Pair<F>>::new(comptime!(head_dim * V_ROW));
    let mut keys = SharedMemory::<u32>::new(64usize);

    // Q block → shared memory (through K's buffer) → A fragments in registers.
    for u in range_stepped(tid, 64usize * chunks, 128usize) {
        let r = u / chunks;
        let c8 = u % chunks;
        let row = m * 64usize + r;
        let mut x = Wide::<F>::empty().fill(F::from_int(0));
        if row < n_queries {
            x = q[(q_base + row * q.stride(2usize) + c8 * 8usize) / 8usize];
        }
        #[unroll]
        for i in 0..4usize {
            let mut p = Pair::<F>::empty();
            p[0usize] = x[2usize * i];
            p[1usize] = x[2usize * i + 1usize];
            ks[r * k_row + c8 * 4usize + i] = p;
        }
    }
    sync_cube();
    let mut qa = Array::<Pair<F>>::new(comptime!(head_dim / 4usize));
    #[unroll]
    for kk in 0..comptime!(head_dim / 16usize) {
        #[unroll]
        for vv in 0..4usize {
            let row = plane * 16usize + g + 8usize * (vv % 2usize);
            qa[kk * 4usize + vv] = ks[row * k_row + 8usize * kk + t + 4usize * (vv / 2usize)];
        }
    }

    let mut o = Array::<Vector<f32, Const<2>>>::new(comptime!(head_dim / 4usize));
    #[unroll]
    for i in 0..comptime!(head_dim / 4usize) {
        o[i] = Vector::<f32, Const<2>>::empty().fill(0.0f32);
    }
    // Running max (scaled scores) and this lane's share of the running sum, rows g and g + 8.
    let mut row_max = Array::<f32>::new(2usize);
    let mut row_sum = Array::<f32>::new(2usize);
    #[unroll]
    for u in 0..2usize {
        row_max[u] = MASKED;
        row_sum[u] = 0.0f32;
    }
    let first_position = query_offset as usize + m * 64usize + plane * 16usize;

    let tiles = block_count[slot] as usize;
    let columns = column_count[slot] as usize;
    let column_base = slot * max_columns as usize;
    let items = tiles + columns.div_ceil(64usize);
    for item in 0..items {
        let mut tile_start = 0usize;
        if item < tiles {
            tile_start = block_offset[slot * max_blocks as usize + item] as usize;
        }
        // Everyone is done with the previous item's K and V (and Q's staging) before they move.
        sync_cube();
        if tid < 64usize {
            keys[tid] = item_key(
                item,
                tid,
                tiles,
                tile_start,
                columns,
                column_index,
                column_base,
                n_keys,
            ) as u32;
        }
        // K: row r's 8-element chunks, one 16-byte load each.
        for u in range_stepped(tid, 64usize * chunks, 128usize) {
            let r = u / chunks;
            let c8 = u % chunks;
            let key = item_key(
                item,
                r,
                tiles,
                tile_start,
                columns,
                column_index,
                column_base,
                n_keys,
            );
            let mut x = Wide::<F>::empty().fill(F::from_int(0));
            if key < n_keys {
                x = k[(k_base + key * k.stride(2usize) + c8 * 8usize) / 8usize];
            }
            #[unroll]
            for i in 0..4usize {
                let mut p = Pair::<F>::empty();
                p[0usize] = x[2usize * i];
                p[1usize] = x[2usize * i + 1usize];
                ks[r * k_row + c8 * 4usize + i] = p;
            }
        }
        // V: key pair (2p, 2p + 1) of one 8-element chunk, stored transposed as pairs.
        for u in range_stepped(tid, 32usize * chunks, 128usize) {
            let p = u % 32usize;
            let c8 = u / 32usize;
            let key0 = item_key(
                item,
                2usize * p,
                tiles,
                tile_start,
                columns,
                column_index,
                column_base,
                n_keys,
            );
            let key1 = item_key(
                item,
                2usize * p + 1usize,
                tiles,
                tile_start,
                columns,
                column_index,
                column_base,
                n_keys,
            );
            let mut x0 = Wide::<F>::empty().fill(F::from_int(0));
            let mut x1 = Wide::<F>::empty().fill(F::from_int(0));
            if key0 < n_keys {
                x0 = v[(v_base + key0 * v.stride(2usize) + c8 * 8usize) / 8usize];
            }
            if key1 < n_keys {
                x1 = v[(v_base + key1 * v.stride(2usize) + c8 * 8usize) / 8usize];
            }
            #[unroll]
            for i in 0..8usize {
                let mut pair = Pair::<F>::empty();
                pair[0usize] = x0[i];
                pair[1usize] = x1[i];
                vs[(c8 * 8usize + i) * V_ROW + p] = pair;
            }
        }
        sync_cube();

        // S = Q·Kᵀ: eight 16×8 tiles of this plane's rows.
        let mut s = Array::<Vector<f32, Const<2>>>::new(16usize);
        #[unroll]
        for j in 0..8usize {
            let mut acc = Array::<Vector<f32, Const<2>>>::new(2usize);
            acc[0usize] = Vector::<f32, Const<2>>::empty().fill(0.0f32);
            acc[1usize] = Vector::<f32, Const<2>>::empty().fill(0.0f32);
            #[unroll]
            for kk in 0..comptime!(head_dim / 16usize) {
                let mut a = Array::<Pair<F>>::new(4usize);
                #[unroll]
                for vv in 0..4usize {
                    a[vv] = qa[kk * 4usize + vv];
                }
                let mut bm = Array::<Pair<F>>::new(2usize);
                let at = (8usize * j + g) * k_row + 8usize * kk + t;
                bm[0usize] = ks[at];
                bm[1usize] = ks[at + 4usize];
                def.execute_inplace(&a, &bm, &mut acc);
            }
            s[2usize * j] = acc[0usize];
            s[2usize * j + 1usize] = acc[1usize];
        }

        // Mask (only where the item can reach past a row's position or the keys' end).
        let needs_mask =
            item >= tiles || tile_start + 63usize > first_position || tile_start + 64usize > n_keys;
        let mut correction = Array::<f32>::new(2usize);
        #[unroll]
        for u in 0..2usize {
            let position = first_position + g + 8usize * u;
            let mut tile_max = MASKED.runtime();
            #[unroll]
            for j in 0..8usize {
                let mut x = s[2usize * j + u];
                #[unroll]
                for e in 0..2usize {
                    let mut val = x[e] * scale;
                    if needs_mask {
                        let key = keys[8usize * j + 2usize * t + e] as usize;
                        if key >= n_keys || key > position {
                            val = MASKED;
                        }
                    }
                    x[e] = val;
                    tile_max = f32::max(tile_max, val);
                }
                s[2usize * j + u] = x;
            }
            tile_max = f32::max(tile_max, plane_shuffle_xor(tile_max, 1u32));
            tile_max = f32::max(tile_max, plane_shuffle_xor(tile_max, 2u32));
            let new_max = f32::max(row_max[u], tile_max);
            correction[u] = f32::exp(row_max[u] - new_max);
            row_max[u] = new_max;
            let mut sum = 0.0f32;
            #[unroll]
            for j in 0..8usize {
                let mut x = s[2usize * j + u];
                #[unroll]
                for e in 0..2usize {
                    let mut p = 0.0f32;
                    if x[e] > MASKED {
                        p = f32::exp(x[e] - new_max);
                    }
                    x[e] = p;
                    sum += p;
                }
                s[2usize * j + u] = x;
            }
            row_sum[u] = row_sum[u] * correction[u] + sum;
        }
        #[unroll]
        for jd in 0..comptime!(head_dim / 8usize) {
            #[unroll]
            for u in 0..2usize {
                let mut x = o[2usize * jd + u];
                x[0usize] *= correction[u];
                x[1usize] *= correction[u];
                o[2usize * jd + u] = x;
            }
        }

        // O += P·V: P's A fragments straight from the score registers.
        #[unroll]
        for kk in 0..4usize {
            let mut a = Array::<Pair<F>>::new(4usize);
            #[unroll]
            for vv in 0..4usize {
                a[vv] = Pair::<F>::cast_from(s[2usize * (2usize * kk + vv / 2usize) + vv % 2usize]);
            }
            #[unroll]
            for jd in 0..comptime!(head_dim / 8usize) {
                let mut bm = Array::<Pair<F>>::new(2usize);
                let at = (8usize * jd + g) * V_ROW + 8usize * kk + t;
                bm[0usize] = vs[at];
                bm[1usize] = vs[at + 4usize];
                let mut acc = Array::<Vector<f32, Const<2>>>::new(2usize);
                acc[0usize] = o[2usize * jd];
                acc[1usize] = o[2usize * jd + 1usize];
                def.execute_inplace(&a, &bm, &mut acc);
                o[2usize * jd] = acc[0usize];
                o[2usize * jd + 1usize] = acc[1usize];
            }
        }
    }

    // Normalise by the full row sum (the four lanes of a row hold a quarter each) and write.
    #[unroll]
    for u in 0..2usize {
        let mut total = row_sum[u];
        total += plane_shuffle_xor(total, 1u32);
        total += plane_shuffle_xor(total, 2u32);
        let inv = 1.0f32 / total;
        let row = m * 64usize + plane * 16usize + g + 8usize * u;
        if row < n_queries {
            let base = b * out.stride(0usize) + h * out.stride(1usize) + row * out.stride(2usize);
            #[unroll]
            for jd in 0..comptime!(head_dim / 8usize) {
                let mut x = o[2usize * jd + u];
                x[0usize] *= inv;
                x[1usize] *= inv;
                out[(base + 8usize * jd + 2usize * t) / 2usize] = Pair::<F>::cast_from(x);
            }
        }
    }
}
