//! The register kernel with 32 query rows a plane (FlashAttention-2's warp shape): two planes
//! compute one 64-row query block, each on two 16-row tiles, so that every K and V fragment read
//! from shared memory feeds two tensor-core products.
//!
//! The [`super::mma`] kernel keeps `Q`'s fragments in registers and gives each plane 16 rows;
//! with 32 rows the fragments (64 registers) and the output (128) left no room for the scores.
//! Here `Q` stays in shared memory and its fragments are read per 16-wide slice of the head
//! dimension, as FlashAttention-2 does. A cube is one query block (64 units): its `Q`, one K
//! and one V tile take 52 KiB at d = 128, so four cubes (eight planes, 256 rows) share an SM.
//!
//! One K and one V buffer, FlashAttention-2's order: the item's K has landed → its V copies
//! start → `S = Q·Kᵀ`, softmax → its V has landed (every plane is past `Q·Kᵀ`: K's buffer is
//! free) → the next item's K copies start → `O += P·V`. Each wait is on the barrier the copies
//! were committed to, which every unit of the cube also arrives at: it frees the other buffer.

use super::mma::{column_key, stage_rows, tile_jump_of, tile_start_of};
use super::MASKED;
use cubecl::cmma::MmaDefinition;
use cubecl::ir::MatrixIdent;
use cubecl::prelude::barrier::Barrier;
use cubecl::prelude::*;

/// Eight input elements: one 16-byte global load.
type Wide<F> = Vector<F, Const<8>>;
/// Two input elements: one 32-bit register of an MMA fragment.
type Pair<F> = Vector<F, Const<2>>;
/// Two fp32 accumulators of an MMA fragment.
type Acc = Vector<f32, Const<2>>;

/// Units of a cube: two 32-wide planes.
pub(super) const UNITS: usize = 64;

/// Shared memory one cube uses, in bytes: the Q, K and V tiles and the K tile's key positions.
pub(super) fn shared_bytes(head_dim: usize) -> usize {
    let tile = 64 * (head_dim / 8 + 1) * 16;
    3 * tile + 64 * 4
}

#[cube(
    launch_unchecked,
    fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf
)]
#[allow(clippy::too_many_arguments)]
/// Attention of one 64-row query block per cube (see the module documentation).
pub(super) fn sparse_flash_wide<F: Float>(
    q: &Tensor<Wide<F>>,
    k: &Tensor<Wide<F>>,
    v: &Tensor<Wide<F>>,
    out: &mut Tensor<Pair<F>>,
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
    #[comptime] causal_dense: bool,
    #[comptime] jumps: bool,
) {
    let lane = UNIT_POS_X as usize;
    let plane = UNIT_POS_Y as usize;
    let tid = plane * 32usize + lane;
    let g = lane / 4usize;
    let t = lane % 4usize;
    let n_queries = n_queries as usize;
    let n_keys = n_keys as usize;
    let q_blocks = n_queries.div_ceil(64usize);
    // Cube `(x, kv_head, b)`: the query heads of a GQA group side by side (`x % group`), so
    // that the cubes in flight share one K/V head and its tiles are read while in L2; heavy
    // (late) query blocks first, as causal rows grow with the block index.
    let group = group as usize;
    let x = CUBE_POS_X as usize;
    let m = q_blocks - 1usize - x / group;
    let kv_head = CUBE_POS_Y as usize;
    let h = kv_head * group + x % group;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize * group;
    let slot = (b * heads + h) * q_blocks + m;
    let q_base = (b * q.stride(0usize) + h * q.stride(1usize)) / 8usize;
    let k_base = (b * k.stride(0usize) + kv_head * k.stride(1usize)) / 8usize;
    let v_base = (b * v.stride(0usize) + kv_head * v.stride(1usize)) / 8usize;
    let q_row = q.stride(2usize) / 8usize;
    let k_row = k.stride(2usize) / 8usize;
    let v_row = v.stride(2usize) / 8usize;
    let slots = comptime!(head_dim / 8usize + 1usize);
    let k_chunks = comptime!(head_dim / 16usize);
    let d_tiles = comptime!(head_dim / 8usize);
    let def = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);

    let tile_len = comptime!(64usize * (head_dim / 8usize + 1usize));
    let mut qs = SharedMemory::<Wide<F>>::new(tile_len);
    let mut ks = SharedMemory::<Wide<F>>::new(tile_len);
    let mut vs = SharedMemory::<Wide<F>>::new(tile_len);
    let mut keys = SharedMemory::<u32>::new(64usize);
    let k_copied = Barrier::shared(64u32, UNIT_POS == 0u32);
    let v_copied = Barrier::shared(64u32, UNIT_POS == 0u32);

    let block_end = usize::min(
        query_offset as usize + usize::min(m * 64usize + 64usize, n_queries),
        n_keys,
    );
    // Causal dense attention needs no index: 64-aligned tiles up to the block's last position.
    let mut tiles = block_end.div_ceil(64usize);
    let mut columns = 0usize;
    if comptime!(!causal_dense) {
        tiles = block_count[slot] as usize;
        columns = column_count[slot] as usize;
    }
    let column_base = slot * max_columns as usize;
    let items = tiles + columns.div_ceil(64usize);

    stage_rows::<F>(
        q,
        q_base + m * 64usize * q_row,
        q_row,
        &mut qs,
        0usize,
        0usize,
        1usize,
        0usize,
        0u32,
        0usize,
        column_index,
        0usize,
        n_queries - m * 64usize,
        tid,
        UNITS,
        head_dim,
        false,
    );

    let mut o = Array::<Acc>::new(comptime!(4usize * head_dim / 8usize));
    #[unroll]
    for i in 0..comptime!(4usize * head_dim / 8usize) {
        o[i] = Acc::empty().fill(0.0f32);
    }
    // Rows `16·mt + g + 8u` of the plane's 32, index `2·mt + u`.
    let mut row_max = Array::<f32>::new(4usize);
    let mut row_sum = Array::<f32>::new(4usize);
    #[unroll]
    for r in 0..4usize {
        row_max[r] = MASKED;
        row_sum[r] = 0.0f32;
    }
    let first_position = query_offset as usize + m * 64usize + plane * 32usize;
    // ldmatrix.x4 of a 16×16 A tile: lane l gives row l%8 + 8·((l/8)%2), column half l/16.
    let a_row = (plane * 32usize + lane % 8usize + 8usize * ((lane / 8usize) % 2usize)) * slots
        + lane / 16usize;

    let row = slot * max_blocks as usize;
    let mut start_current = tile_start_of(0usize, tiles, block_offset, row, causal_dense);
    let mut start_next = tile_start_of(1usize, tiles, block_offset, row, causal_dense);
    let mut jump_current = tile_jump_of(0usize, tiles, block_jump, row, jumps);
    let mut jump_next = tile_jump_of(1usize, tiles, block_jump, row, jumps);
    if items > 0usize {
        stage_item_k::<F>(
            k,
            k_base,
            k_row,
            &mut ks,
            &mut keys,
            0usize,
            tiles,
            start_current,
            jump_current,
            columns,
            column_index,
            column_base,
            n_keys,
            tid,
            head_dim,
        );
        k_copied.commit_copy_async();
    }
    // Q's plain stores are visible to every plane after this (the first K wait would do it
    // too, but a block with no items never waits).
    sync_cube();
    for item in 0..items {
        let tile_start = start_current;
        let start_after = tile_start_of(item + 2usize, tiles, block_offset, row, causal_dense);
        let jump_after = tile_jump_of(item + 2usize, tiles, block_jump, row, jumps);
        // K has landed; every unit is past the previous item's `P·V`: V's buffer is free.
        k_copied.arrive_and_wait();
        stage_rows::<F>(
            v,
            v_base,
            v_row,
            &mut vs,
            0usize,
            item,
            tiles,
            tile_start,
            jump_current,
            columns,
            column_index,
            column_base,
            n_keys,
            tid,
            UNITS,
            head_dim,
            true,
        );
        v_copied.commit_copy_async();

        // S = Q·Kᵀ, the head dimension outermost: each slice's A fragments (two row tiles) and
        // B fragments (two key tiles an ldmatrix.x4) feed every product they belong to.
        let mut s = Array::<Acc>::new(32usize);
        #[unroll]
        for i in 0..32usize {
            s[i] = Acc::empty().fill(0.0f32);
        }
        #[unroll]
        for kk in 0..k_chunks {
            let mut a0 = Array::<Pair<F>>::new(4usize);
            let mut a1 = Array::<Pair<F>>::new(4usize);
            let at0 = a_row + 2usize * kk;
            let at1 = at0 + 16usize * slots;
            let f0 = def.load_matrix::<Wide<F>, Const<2>>(
                &qs.slice(at0, at0 + 1usize),
                MatrixIdent::A,
                4usize,
                false,
            );
            let f1 = def.load_matrix::<Wide<F>, Const<2>>(
                &qs.slice(at1, at1 + 1usize),
                MatrixIdent::A,
                4usize,
                false,
            );
            #[unroll]
            for vv in 0..4usize {
                a0[vv] = f0[vv];
                a1[vv] = f1[vv];
            }
            #[unroll]
            for jp in 0..4usize {
                // Key tiles 2jp (lanes 0–15) and 2jp + 1 (16–31): row l%8, 8-wide half (l/8)%2.
                let at = (16usize * jp + 8usize * (lane / 16usize) + lane % 8usize) * slots
                    + 2usize * kk
                    + (lane / 8usize) % 2usize;
                let bk = def.load_matrix::<Wide<F>, Const<2>>(
                    &ks.slice(at, at + 1usize),
                    MatrixIdent::B,
                    4usize,
                    false,
                );
                #[unroll]
                for half in 0..2usize {
                    let j = 2usize * jp + half;
                    let mut bm = Array::<Pair<F>>::new(2usize);
                    bm[0usize] = bk[2usize * half];
                    bm[1usize] = bk[2usize * half + 1usize];
                    let mut acc = Array::<Acc>::new(2usize);
                    acc[0usize] = s[2usize * j];
                    acc[1usize] = s[2usize * j + 1usize];
                    def.execute_inplace(&a0, &bm, &mut acc);
                    s[2usize * j] = acc[0usize];
                    s[2usize * j + 1usize] = acc[1usize];
                    acc[0usize] = s[16usize + 2usize * j];
                    acc[1usize] = s[16usize + 2usize * j + 1usize];
                    def.execute_inplace(&a1, &bm, &mut acc);
                    s[16usize + 2usize * j] = acc[0usize];
                    s[16usize + 2usize * j + 1usize] = acc[1usize];
                }
            }
        }

        // Mask where the item can reach past a row's position or the keys' end (see `mma`).
        let needs_mask =
            item >= tiles || tile_start + 63usize > first_position || tile_start + 64usize > n_keys;
        if needs_mask {
            #[unroll]
            for r in 0..4usize {
                let mt = r / 2usize;
                let u = r % 2usize;
                let position = first_position + 16usize * mt + g + 8usize * u;
                if item < tiles {
                    let bound = i32::cast_from(usize::min(position + 1usize, n_keys))
                        - i32::cast_from(tile_start);
                    #[unroll]
                    for j in 0..8usize {
                        let mut x = s[16usize * mt + 2usize * j + u];
                        #[unroll]
                        for e in 0..2usize {
                            if i32::cast_from(8usize * j + 2usize * t + e) >= bound {
                                x[e] = MASKED;
                            }
                        }
                        s[16usize * mt + 2usize * j + u] = x;
                    }
                } else {
                    #[unroll]
                    for j in 0..8usize {
                        let mut x = s[16usize * mt + 2usize * j + u];
                        #[unroll]
                        for e in 0..2usize {
                            let key = keys[8usize * j + 2usize * t + e] as usize;
                            if key >= n_keys || key > position {
                                x[e] = MASKED;
                            }
                        }
                        s[16usize * mt + 2usize * j + u] = x;
                    }
                }
            }
        }
        let mut correction = Array::<f32>::new(4usize);
        #[unroll]
        for r in 0..4usize {
            let mt = r / 2usize;
            let u = r % 2usize;
            let mut tile_max = MASKED.runtime();
            #[unroll]
            for j in 0..8usize {
                let x = s[16usize * mt + 2usize * j + u];
                tile_max = f32::max(tile_max, f32::max(x[0usize], x[1usize]));
            }
            tile_max = f32::max(tile_max, plane_shuffle_xor(tile_max, 1u32));
            tile_max = f32::max(tile_max, plane_shuffle_xor(tile_max, 2u32));
            let new_max = f32::max(row_max[r], tile_max);
            correction[r] = f32::exp((row_max[r] - new_max) * scale);
            row_max[r] = new_max;
            let mut shift = new_max * scale;
            if new_max == MASKED {
                shift = -MASKED;
            }
            let mut sum = 0.0f32;
            #[unroll]
            for j in 0..8usize {
                let mut x = s[16usize * mt + 2usize * j + u];
                #[unroll]
                for e in 0..2usize {
                    let p = f32::exp(x[e] * scale - shift);
                    x[e] = p;
                    sum += p;
                }
                s[16usize * mt + 2usize * j + u] = x;
            }
            row_sum[r] = row_sum[r] * correction[r] + sum;
        }
        if plane_any(
            correction[0usize] != 1.0f32
                || correction[1usize] != 1.0f32
                || correction[2usize] != 1.0f32
                || correction[3usize] != 1.0f32,
        ) {
            #[unroll]
            for mt in 0..2usize {
                #[unroll]
                for jd in 0..d_tiles {
                    #[unroll]
                    for u in 0..2usize {
                        let i = 2usize * d_tiles * mt + 2usize * jd + u;
                        let c = correction[2usize * mt + u];
                        let mut x = o[i];
                        x[0usize] *= c;
                        x[1usize] *= c;
                        o[i] = x;
                    }
                }
            }
        }

        // V has landed; every unit is past `Q·Kᵀ` and the mask: K's buffer and the key
        // positions are free for the next item.
        v_copied.arrive_and_wait();
        start_current = start_next;
        start_next = start_after;
        jump_current = jump_next;
        jump_next = jump_after;
        if item + 1usize < items {
            stage_item_k::<F>(
                k,
                k_base,
                k_row,
                &mut ks,
                &mut keys,
                item + 1usize,
                tiles,
                start_current,
                jump_current,
                columns,
                column_index,
                column_base,
                n_keys,
                tid,
                head_dim,
            );
            k_copied.commit_copy_async();
        }

        // O += P·V: P's A fragments from the score registers (both row tiles); each V fragment
        // pair (ldmatrix.x4.trans) feeds both.
        #[unroll]
        for kk in 0..4usize {
            let mut a0 = Array::<Pair<F>>::new(4usize);
            let mut a1 = Array::<Pair<F>>::new(4usize);
            #[unroll]
            for vv in 0..4usize {
                let at = 2usize * (2usize * kk + vv / 2usize) + vv % 2usize;
                a0[vv] = Pair::<F>::cast_from(s[at]);
                a1[vv] = Pair::<F>::cast_from(s[16usize + at]);
            }
            let v_frag_row =
                (16usize * kk + 8usize * ((lane / 8usize) % 2usize) + lane % 8usize) * slots;
            #[unroll]
            for jp in 0..comptime!(head_dim / 16usize) {
                let at = v_frag_row + 2usize * jp + lane / 16usize;
                let bv = def.load_matrix::<Wide<F>, Const<2>>(
                    &vs.slice(at, at + 1usize),
                    MatrixIdent::B,
                    4usize,
                    true,
                );
                #[unroll]
                for half in 0..2usize {
                    let jd = 2usize * jp + half;
                    let mut bm = Array::<Pair<F>>::new(2usize);
                    bm[0usize] = bv[2usize * half];
                    bm[1usize] = bv[2usize * half + 1usize];
                    let mut acc = Array::<Acc>::new(2usize);
                    acc[0usize] = o[2usize * jd];
                    acc[1usize] = o[2usize * jd + 1usize];
                    def.execute_inplace(&a0, &bm, &mut acc);
                    o[2usize * jd] = acc[0usize];
                    o[2usize * jd + 1usize] = acc[1usize];
                    let i1 = 2usize * d_tiles + 2usize * jd;
                    acc[0usize] = o[i1];
                    acc[1usize] = o[i1 + 1usize];
                    def.execute_inplace(&a1, &bm, &mut acc);
                    o[i1] = acc[0usize];
                    o[i1 + 1usize] = acc[1usize];
                }
            }
        }
    }

    #[unroll]
    for r in 0..4usize {
        let mt = r / 2usize;
        let u = r % 2usize;
        let mut total = row_sum[r];
        total += plane_shuffle_xor(total, 1u32);
        total += plane_shuffle_xor(total, 2u32);
        let inv = 1.0f32 / total;
        let out_row = m * 64usize + plane * 32usize + 16usize * mt + g + 8usize * u;
        if out_row < n_queries {
            let base =
                b * out.stride(0usize) + h * out.stride(1usize) + out_row * out.stride(2usize);
            #[unroll]
            for jd in 0..d_tiles {
                let mut x = o[2usize * d_tiles * mt + 2usize * jd + u];
                x[0usize] *= inv;
                x[1usize] *= inv;
                out[(base + 8usize * jd + 2usize * t) / 2usize] = Pair::<F>::cast_from(x);
            }
        }
    }
}

/// Stages item `item`'s K rows and, for a chunk of gathered columns, their key positions.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage_item_k<F: Float>(
    k: &Tensor<Wide<F>>,
    k_base: usize,
    k_row: usize,
    ks: &mut SharedMemory<Wide<F>>,
    keys: &mut SharedMemory<u32>,
    item: usize,
    tiles: usize,
    start: usize,
    jump: u32,
    columns: usize,
    column_index: &Array<u32>,
    column_base: usize,
    n_keys: usize,
    tid: usize,
    #[comptime] head_dim: usize,
) {
    if item >= tiles {
        let c = (item - tiles) * 64usize + tid;
        keys[tid] = column_key(c, columns, column_index, column_base, n_keys) as u32;
    }
    stage_rows::<F>(
        k,
        k_base,
        k_row,
        ks,
        0usize,
        item,
        tiles,
        start,
        jump,
        columns,
        column_index,
        column_base,
        n_keys,
        tid,
        UNITS,
        head_dim,
        true,
    );
}
