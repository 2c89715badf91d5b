//! The grouped register kernel ([`super::Path::MmaGroups`]): manual `mma.m16n8k16` products,
//! softmax in registers (FlashAttention-2's structure), 16 query rows a plane. Where shared
//! memory holds four of its cubes, [`super::Path::Mma`] runs the `wide` kernel instead (32 rows
//! a plane, 1.16–1.22× faster on the H100); this one runs elsewhere, and its staging helpers
//! serve both.
//!
//! A group of four 32-wide planes computes one 64-row query block; plane `w` owns rows
//! `16w..16w+16`. Lane `l` of a plane holds, for every 16×8 accumulator tile, rows `l/4` and
//! `l/4 + 8` and columns `2(l%4)`, `2(l%4)+1` (PTX's fragment layout), so:
//! - `Q`'s A fragments are loaded once and stay in registers;
//! - `S = Q·Kᵀ` for a 64-key item lands in registers; its row max and the exponentials are
//!   computed there, the four lanes sharing a row combining through two xor shuffles;
//! - the fp32 scores of two adjacent 8-key tiles *are* the A fragment of the next product once
//!   rounded to the input type, so `P` never touches shared memory;
//! - `O` stays in fp32 registers, rescaled in place when a row's max grows.
//!
//! Per item only K and V pass through shared memory: rows copied with 16-byte `cp.async` into
//! row-major tiles padded by 16 bytes a row (so the eight rows an `ldmatrix` reads hit distinct
//! banks), two buffers with one barrier each, so that the next item's copies are in flight while
//! the current item is computed; tile starts are read an item ahead. Fragments come out with
//! `ldmatrix` (K, Q) and `ldmatrix.trans` (V), four 8×8 matrices per instruction.
//!
//! A cube holds one to three groups ([`MAX_GROUPS`]) on neighbouring query blocks, each walking
//! its own items with its own barriers (the cube synchronises once, after staging Q). Three
//! exist to cap registers: CUDA sizes them by `__launch_bounds__`, which CubeCL writes as the
//! cube's unit count alone, so a 128-unit cube may take up to 255 a unit. Alone in a cube the
//! kernel takes 172–179, leaving two cubes (8 warps) an SM; a 384-unit cube holds it to 168 so
//! that three query blocks (12 warps) are resident at once. Groups that shared the cube's
//! barriers walked in step, as many items as the longest row, and lost more than the third
//! block won (H200, 128K, index-free: 208 against 228 TFLOP/s alone); independent, they gain
//! (Block-Sparse top-100 204 → 228, index-free 228 → 237).

use super::MASKED;
use crate::index::jump::key as tile_key;
use cubecl::cmma::MmaDefinition;
use cubecl::ir::MatrixIdent;
use cubecl::prelude::barrier::{copy_async_checked, Barrier};
use cubecl::prelude::*;

/// Eight input elements: one 16-byte global load.
type Wide<F> = Vector<F, Const<8>>;
/// Two input elements: one 32-bit register of an MMA fragment.
type Pair<F> = Vector<F, Const<2>>;

/// The key of gathered column `c` of a row's column list (`n_keys`, no key, past its end).
#[cube]
pub(super) fn column_key(
    c: usize,
    columns: usize,
    column_index: &Array<u32>,
    column_base: usize,
    n_keys: usize,
) -> usize {
    let mut key = n_keys;
    if c < columns {
        key = column_index[column_base + c] as usize;
    }
    key
}

/// Copies the item's 64 rows of `x` (keys, or the query block as item 0 of one tile) into the
/// padded row-major tile at `tile[at..]`, 16 bytes per copy; missing rows become zeros. With
/// `asynchronous` the copies are `cp.async` issued without waiting: the caller commits them to
/// a barrier and waits on it before reading the tile.
///
/// `base` and `row` (the head's start and the row stride) are in 16-byte words, read from the
/// tensor's metadata once by the caller: each `cp.async` is a volatile asm statement with a
/// memory clobber, after which NVCC reloads anything read from memory, so a stride read here
/// was a global load (and a division) per copy.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_rows<F: Float>(
    x: &Tensor<Wide<F>>,
    base: usize,
    row: usize,
    tile: &mut SharedMemory<Wide<F>>,
    at: usize,
    item: usize,
    tiles: usize,
    tile_start: usize,
    tile_jump: u32,
    columns: usize,
    column_index: &Array<u32>,
    column_base: usize,
    n_keys: usize,
    tid: usize,
    #[comptime] units: usize,
    #[comptime] head_dim: usize,
    #[comptime] asynchronous: bool,
) {
    let slots = comptime!(head_dim / 8usize + 1usize);
    let passes = comptime!(8usize * head_dim / units);
    // `8·head_dim` copies over the group's `units` units: a fixed, unrolled count. Bounded at run
    // time from the unit index, the loop measured 15 % slower in the index-free kernel
    // (H200: 160 against 188 TFLOP/s at 128K). A tile's rows are consecutive keys; a chunk of
    // gathered columns looks each key up; a tile whose keys jump adds the gap from its split row
    // on. The loops keep those choices out of every copy: each is taken once an item, the same
    // way by every unit (a per-copy select of the gap cost the Block-Sparse tiles, which never
    // jump, 4 % of their rate: H100, 128K, 288 against 301 TFLOP/s). Where the index has no
    // jumps, `tile_jump` is a constant 0 ([`tile_jump_of`]) and the jump loop is not built.
    if item < tiles && tile_jump == 0u32 {
        #[unroll]
        for i in 0..passes {
            let r = pass_row(tid, i, units, head_dim);
            let c8 = pass_column(tid, i, units, head_dim);
            copy_row::<F>(
                x,
                base + c8,
                row,
                tile_start + r,
                n_keys,
                tile,
                at + r * slots + c8,
                asynchronous,
            );
        }
    } else if item < tiles {
        #[unroll]
        for i in 0..passes {
            let r = pass_row(tid, i, units, head_dim);
            let c8 = pass_column(tid, i, units, head_dim);
            copy_row::<F>(
                x,
                base + c8,
                row,
                tile_key(tile_start, tile_jump, r),
                n_keys,
                tile,
                at + r * slots + c8,
                asynchronous,
            );
        }
    } else {
        // (`min`: Q's staging passes constants, item 0 of 1 tile, that this branch never takes
        // but CubeCL folds.)
        let first = (item - usize::min(item, tiles)) * 64usize;
        #[unroll]
        for i in 0..passes {
            let r = pass_row(tid, i, units, head_dim);
            let c8 = pass_column(tid, i, units, head_dim);
            let key = column_key(first + r, columns, column_index, column_base, n_keys);
            copy_row::<F>(
                x,
                base + c8,
                row,
                key,
                n_keys,
                tile,
                at + r * slots + c8,
                asynchronous,
            );
        }
    }
}

/// The row unit `tid` copies in pass `i` of [`stage_rows`] (`units` copies of 16 bytes a pass).
///
/// Where a pass covers whole rows (d = 16, 32, 64, 128) a unit keeps its 16-byte column and
/// steps down `units / chunks` rows a pass: written so, the division by `chunks` is the same in
/// every pass and done once, where NVCC cannot see that `(tid + units·i) / chunks` is
/// `tid / chunks + units·i / chunks` (a wrapping `u32` sum) and divides per copy.
#[cube]
fn pass_row(tid: usize, i: usize, #[comptime] units: usize, #[comptime] head_dim: usize) -> usize {
    let chunks = comptime!(head_dim / 8usize);
    let mut r = tid / chunks + i * comptime!(units / chunks);
    if comptime!(!units.is_multiple_of(chunks)) {
        r = (tid + i * units) / chunks;
    }
    r
}

/// The 16-byte column unit `tid` copies in pass `i` of [`stage_rows`] (see [`pass_row`]).
#[cube]
fn pass_column(
    tid: usize,
    i: usize,
    #[comptime] units: usize,
    #[comptime] head_dim: usize,
) -> usize {
    let chunks = comptime!(head_dim / 8usize);
    let mut c8 = tid % chunks;
    if comptime!(!units.is_multiple_of(chunks)) {
        c8 = (tid + i * units) % chunks;
    }
    c8
}

/// One 16-byte copy: word `from + key·row` of `x` into `tile[to]`, zeros where `key` is past
/// the keys' end (`cp.async` with a source size of zero, or a plain store).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn copy_row<F: Float>(
    x: &Tensor<Wide<F>>,
    from: usize,
    row: usize,
    key: usize,
    n_keys: usize,
    tile: &mut SharedMemory<Wide<F>>,
    to: usize,
    #[comptime] asynchronous: bool,
) {
    let present = key < n_keys;
    if comptime!(asynchronous) {
        let mut at = 0usize;
        let mut len = 0usize;
        if present {
            at = from + key * row;
            len = 1usize;
        }
        copy_async_checked(
            &x.slice(at, at + len),
            &mut tile.slice_mut(to, to + 1usize),
            8u32,
        );
    } else {
        let mut w = Wide::<F>::empty().fill(F::from_int(0));
        if present {
            w = x[from + key * row];
        }
        tile[to] = w;
    }
}

/// Stages item `item` (tile start `start`): its K and V rows into the tiles at `at` and, for
/// a chunk of gathered columns, the key position of each row into `keys[key_at..]` (for the
/// mask).
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage_item<F: Float>(
    k: &Tensor<Wide<F>>,
    v: &Tensor<Wide<F>>,
    k_base: usize,
    v_base: usize,
    k_row: usize,
    v_row: usize,
    ks: &mut SharedMemory<Wide<F>>,
    vs: &mut SharedMemory<Wide<F>>,
    at: usize,
    keys: &mut SharedMemory<u32>,
    key_at: usize,
    item: usize,
    tiles: usize,
    start: usize,
    jump: u32,
    columns: usize,
    column_index: &Array<u32>,
    column_base: usize,
    n_keys: usize,
    tid: usize,
    #[comptime] units: usize,
    #[comptime] head_dim: usize,
    #[comptime] asynchronous: bool,
) {
    // Only gathered columns need their key positions in shared memory: a tile's are its start
    // plus the column, which the mask computes.
    if item >= tiles && tid < 64usize {
        let c = (item - tiles) * 64usize + tid;
        keys[key_at + tid] = column_key(c, columns, column_index, column_base, n_keys) as u32;
    }
    stage_rows::<F>(
        k,
        k_base,
        k_row,
        ks,
        at,
        item,
        tiles,
        start,
        jump,
        columns,
        column_index,
        column_base,
        n_keys,
        tid,
        units,
        head_dim,
        asynchronous,
    );
    stage_rows::<F>(
        v,
        v_base,
        v_row,
        vs,
        at,
        item,
        tiles,
        start,
        jump,
        columns,
        column_index,
        column_base,
        n_keys,
        tid,
        units,
        head_dim,
        asynchronous,
    );
}

/// Waits on group `group`'s barrier of the three (each counts its group's 128 units).
#[cube]
// One group: barrier 0, decided at expansion; otherwise the group's own, decided at run time.
#[allow(clippy::if_same_then_else)]
fn group_wait(b0: &Barrier, b1: &Barrier, b2: &Barrier, group: usize, #[comptime] groups: usize) {
    if comptime!(groups == 1usize) {
        b0.arrive_and_wait();
    } else if group == 0usize {
        b0.arrive_and_wait();
    } else if group == 1usize {
        b1.arrive_and_wait();
    } else {
        b2.arrive_and_wait();
    }
}

/// Commits this unit's pending copies to group `group`'s barrier of the three.
#[cube]
// One group: barrier 0, decided at expansion; otherwise the group's own, decided at run time.
#[allow(clippy::if_same_then_else)]
fn group_commit(b0: &Barrier, b1: &Barrier, b2: &Barrier, group: usize, #[comptime] groups: usize) {
    if comptime!(groups == 1usize) {
        b0.commit_copy_async();
    } else if group == 0usize {
        b0.commit_copy_async();
    } else if group == 1usize {
        b1.commit_copy_async();
    } else {
        b2.commit_copy_async();
    }
}

/// The jump word of item `item`: 0 for gathered-column chunks, and without `jumps` (an index
/// with no Vertical-Slash head, or none at all) a constant 0 that removes the load and, once
/// NVRTC folds it, the jump branch of [`stage_rows`].
#[cube]
pub(super) fn tile_jump_of(
    item: usize,
    tiles: usize,
    block_jump: &Array<u32>,
    row: usize,
    #[comptime] jumps: bool,
) -> u32 {
    let mut jump = 0u32;
    // The comptime test removes the load; it cannot join a run-time one.
    #[allow(clippy::collapsible_if)]
    if comptime!(jumps) {
        if item < tiles {
            jump = block_jump[row + item];
        }
    }
    jump
}

/// The start column of item `item` (0 for gathered-column chunks).
#[cube]
pub(super) fn tile_start_of(
    item: usize,
    tiles: usize,
    block_offset: &Array<u32>,
    row: usize,
    #[comptime] causal_dense: bool,
) -> usize {
    let mut start = 0usize;
    if comptime!(causal_dense) {
        start = item * 64usize;
    } else if item < tiles {
        start = block_offset[row + item] as usize;
    }
    start
}

/// Most query blocks one cube takes (see [`sparse_flash_mma`]).
pub(super) const MAX_GROUPS: usize = 3;

/// Shared memory one group of the kernel uses, in bytes: two K and two V tiles and their key
/// positions.
pub(super) fn group_shared_bytes(head_dim: usize) -> usize {
    let tile = 64 * (head_dim / 8 + 1) * 16;
    4 * tile + 2 * 64 * 4
}

#[cube(
    launch_unchecked,
    fast_math = FastMath::ReducedPrecision | FastMath::NotNaN | FastMath::NotInf
)]
#[allow(clippy::too_many_arguments)]
/// Attention of `groups` query blocks per cube (see the module documentation).
pub(super) fn sparse_flash_mma<F: Float>(
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
    #[comptime] groups: usize,
) {
    let lane = UNIT_POS_X as usize;
    let plane = (UNIT_POS_Y % 4u32) as usize;
    // The unit's index within its group: the staging splits copies over the group's units.
    let tid = plane * 32usize + lane;
    let unit_group = (UNIT_POS_Y / 4u32) as usize;
    let g = lane / 4usize;
    let t = lane % 4usize;
    let n_queries = n_queries as usize;
    let n_keys = n_keys as usize;
    let q_blocks = n_queries.div_ceil(64usize);
    // Heavy (late) query blocks first: causal rows grow with the block index. A group past the
    // last block (the grid's last cube) has nothing to do but still meets the cube's setup.
    let linear = CUBE_POS_X as usize * comptime!(groups) + unit_group;
    let active = linear < q_blocks;
    let mut m = 0usize;
    if active {
        m = q_blocks - 1usize - linear;
    }
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let heads = CUBE_COUNT_Y as usize;
    let kv_head = h / group as usize;
    let slot = (b * heads + h) * q_blocks + m;
    // Heads' starts and row strides in 16-byte words (the launcher checked the alignment).
    let q_base = (b * q.stride(0usize) + h * q.stride(1usize)) / 8usize;
    let k_base = (b * k.stride(0usize) + kv_head * k.stride(1usize)) / 8usize;
    let v_base = (b * v.stride(0usize) + kv_head * v.stride(1usize)) / 8usize;
    let q_row = q.stride(2usize) / 8usize;
    let k_row = k.stride(2usize) / 8usize;
    let v_row = v.stride(2usize) / 8usize;
    let slots = comptime!(head_dim / 8usize + 1usize);
    let k_chunks = comptime!(head_dim / 16usize);
    let def = MmaDefinition::<F, F, f32>::new(16usize, 8usize, 16usize);

    // Each group's two K/V tiles and their key positions, side by side in shared memory.
    let tile_len = comptime!(64usize * (head_dim / 8usize + 1usize));
    let buffers = comptime!(2usize);
    let mut ks = SharedMemory::<Wide<F>>::new(comptime!(tile_len * buffers * groups));
    let mut vs = SharedMemory::<Wide<F>>::new(comptime!(tile_len * buffers * groups));
    let mut keys = SharedMemory::<u32>::new(comptime!(64usize * buffers * groups));
    let tiles_at = unit_group * comptime!(tile_len * buffers);
    let keys_at = unit_group * comptime!(64usize * buffers);
    // Per group, one barrier per buffer (a phase completes when the group's 128 units have
    // arrived and their copies into that buffer have landed) and one that frees the buffer
    // about to be refilled. CubeCL has no arrays of barriers: three of each, picked by
    // [`group_wait`] and [`group_commit`]; a group's are initialised by its first unit.
    let copied_a0 = Barrier::shared(128u32, UNIT_POS == 0u32);
    let copied_b0 = Barrier::shared(128u32, UNIT_POS == 0u32);
    let free0 = Barrier::shared(128u32, UNIT_POS == 0u32);
    let copied_a1 = Barrier::shared(128u32, UNIT_POS == 128u32);
    let copied_b1 = Barrier::shared(128u32, UNIT_POS == 128u32);
    let free1 = Barrier::shared(128u32, UNIT_POS == 128u32);
    let copied_a2 = Barrier::shared(128u32, UNIT_POS == 256u32);
    let copied_b2 = Barrier::shared(128u32, UNIT_POS == 256u32);
    let free2 = Barrier::shared(128u32, UNIT_POS == 256u32);

    // Causal dense attention needs no index: 64-aligned tiles up to the block's last position.
    let block_end = usize::min(
        query_offset as usize + usize::min(m * 64usize + 64usize, n_queries),
        n_keys,
    );
    let mut tiles = 0usize;
    let mut columns = 0usize;
    if active {
        if comptime!(causal_dense) {
            tiles = block_end.div_ceil(64usize);
        } else {
            tiles = block_count[slot] as usize;
            columns = column_count[slot] as usize;
        }
    }
    let column_base = slot * max_columns as usize;
    let items = tiles + columns.div_ceil(64usize);

    // Q block → shared memory (the group's second K buffer; rows past n_queries are zeros) →
    // A fragments in registers. An absent group stages no rows.
    let q_at = tiles_at + tile_len;
    let mut q_rows = 0usize;
    if active {
        q_rows = n_queries - m * 64usize;
    }
    stage_rows::<F>(
        q,
        q_base + m * 64usize * q_row,
        q_row,
        &mut ks,
        q_at,
        0usize,
        1usize,
        0usize,
        0u32,
        0usize,
        column_index,
        0usize,
        q_rows,
        tid,
        128usize,
        head_dim,
        false,
    );
    sync_cube();
    // ldmatrix.x4 of a 16×16 A tile: lane l gives row l%8 + 8·((l/8)%2), column half l/16.
    let a_row =
        q_at + (plane * 16usize + lane % 8usize + 8usize * ((lane / 8usize) % 2usize)) * slots;
    let mut qa = Array::<Pair<F>>::new(comptime!(head_dim / 4usize));
    #[unroll]
    for kk in 0..k_chunks {
        let at = a_row + 2usize * kk + lane / 16usize;
        let frag = def.load_matrix::<Wide<F>, Const<2>>(
            &ks.slice(at, at + 1usize),
            MatrixIdent::A,
            4usize,
            false,
        );
        #[unroll]
        for vv in 0..4usize {
            qa[kk * 4usize + vv] = frag[vv];
        }
    }

    let mut o = Array::<Vector<f32, Const<2>>>::new(comptime!(head_dim / 4usize));
    #[unroll]
    for i in 0..comptime!(head_dim / 4usize) {
        o[i] = Vector::<f32, Const<2>>::empty().fill(0.0f32);
    }
    // Running max (raw logits: the launcher checked that the scale is positive) and this lane's
    // share of the running sum, rows g and g + 8.
    let mut row_max = Array::<f32>::new(2usize);
    let mut row_sum = Array::<f32>::new(2usize);
    #[unroll]
    for u in 0..2usize {
        row_max[u] = MASKED;
        row_sum[u] = 0.0f32;
    }
    let first_position = query_offset as usize + m * 64usize + plane * 16usize;

    let row = slot * max_blocks as usize;
    // Tile starts are read one item ahead of their use, so that no copy waits on a global load
    // of the index: `start_next` is the next item's, loaded during the current one.
    let mut start_current = tile_start_of(0usize, tiles, block_offset, row, causal_dense);
    let mut start_next = tile_start_of(1usize, tiles, block_offset, row, causal_dense);
    let mut jump_next = tile_jump_of(1usize, tiles, block_jump, row, jumps);
    // Prologue: item 0's copies into buffer 0 (Q went through buffer 1).
    if items > 0usize {
        stage_item::<F>(
            k,
            v,
            k_base,
            v_base,
            k_row,
            v_row,
            &mut ks,
            &mut vs,
            tiles_at,
            &mut keys,
            keys_at,
            0usize,
            tiles,
            start_current,
            tile_jump_of(0usize, tiles, block_jump, row, jumps),
            columns,
            column_index,
            column_base,
            n_keys,
            tid,
            128usize,
            head_dim,
            true,
        );
        group_commit(&copied_a0, &copied_a1, &copied_a2, unit_group, groups);
    }
    for item in 0..items {
        let tile_start = start_current;
        let start_after = tile_start_of(item + 2usize, tiles, block_offset, row, causal_dense);
        let jump_after = tile_jump_of(item + 2usize, tiles, block_jump, row, jumps);
        let buffer = item % 2usize;
        if item + 1usize < items {
            // Every unit of the group is done with the other buffer (the previous item, or Q)
            // before the next item's copies go there (the group's "free" barrier).
            group_wait(&free0, &free1, &free2, unit_group, groups);
            let other = 1usize - buffer;
            stage_item::<F>(
                k,
                v,
                k_base,
                v_base,
                k_row,
                v_row,
                &mut ks,
                &mut vs,
                tiles_at + other * tile_len,
                &mut keys,
                keys_at + other * 64usize,
                item + 1usize,
                tiles,
                start_next,
                jump_next,
                columns,
                column_index,
                column_base,
                n_keys,
                tid,
                128usize,
                head_dim,
                true,
            );
            if other == 0usize {
                group_commit(&copied_a0, &copied_a1, &copied_a2, unit_group, groups);
            } else {
                group_commit(&copied_b0, &copied_b1, &copied_b2, unit_group, groups);
            }
        }
        if buffer == 0usize {
            group_wait(&copied_a0, &copied_a1, &copied_a2, unit_group, groups);
        } else {
            group_wait(&copied_b0, &copied_b1, &copied_b2, unit_group, groups);
        }
        let k_at = tiles_at + buffer * tile_len;
        let key_at = keys_at + buffer * 64usize;
        start_current = start_next;
        start_next = start_after;
        jump_next = jump_after;

        // S = Q·Kᵀ: eight 16×8 tiles of this plane's rows. ldmatrix.x4 on K rows gives one key
        // tile's B fragments for two 16-wide slices of the head dimension: lane l gives key
        // row l%8, 8-wide column group l/8.
        let mut s = Array::<Vector<f32, Const<2>>>::new(16usize);
        #[unroll]
        for j in 0..8usize {
            let mut acc = Array::<Vector<f32, Const<2>>>::new(2usize);
            acc[0usize] = Vector::<f32, Const<2>>::empty().fill(0.0f32);
            acc[1usize] = Vector::<f32, Const<2>>::empty().fill(0.0f32);
            let key_row = k_at + (8usize * j + lane % 8usize) * slots;
            #[unroll]
            for kp in 0..comptime!(head_dim.div_ceil(32usize)) {
                // Two 16-wide slices per ldmatrix.x4; an odd last slice takes an .x2.
                let pair = comptime!(2usize * kp + 1usize < head_dim / 16usize);
                let count = comptime!(if pair { 4usize } else { 2usize });
                let at = key_row + 4usize * kp + (lane / 8usize) % count;
                let bk = def.load_matrix::<Wide<F>, Const<2>>(
                    &ks.slice(at, at + 1usize),
                    MatrixIdent::B,
                    count,
                    false,
                );
                #[unroll]
                for half in 0..comptime!(count / 2usize) {
                    let kk = 2usize * kp + half;
                    let mut a = Array::<Pair<F>>::new(4usize);
                    #[unroll]
                    for vv in 0..4usize {
                        a[vv] = qa[kk * 4usize + vv];
                    }
                    let mut bm = Array::<Pair<F>>::new(2usize);
                    bm[0usize] = bk[2usize * half];
                    bm[1usize] = bk[2usize * half + 1usize];
                    def.execute_inplace(&a, &bm, &mut acc);
                }
            }
            s[2usize * j] = acc[0usize];
            s[2usize * j + 1usize] = acc[1usize];
        }

        // Mask, only where the item can reach past a row's position or the keys' end, in a
        // pass of its own, so that the items that need none (most) branch past it rather than
        // issue it predicated off. A tile's key is its start plus the column, compared to the
        // row's bound; a gathered column's key was staged in shared memory.
        let needs_mask =
            item >= tiles || tile_start + 63usize > first_position || tile_start + 64usize > n_keys;
        if needs_mask {
            #[unroll]
            for u in 0..2usize {
                let position = first_position + g + 8usize * u;
                if item < tiles {
                    // Keys below `min(position + 1, n_keys)` are visible: columns below `bound`.
                    let bound = i32::cast_from(usize::min(position + 1usize, n_keys))
                        - i32::cast_from(tile_start);
                    #[unroll]
                    for j in 0..8usize {
                        let mut x = s[2usize * j + u];
                        #[unroll]
                        for e in 0..2usize {
                            if i32::cast_from(8usize * j + 2usize * t + e) >= bound {
                                x[e] = MASKED;
                            }
                        }
                        s[2usize * j + u] = x;
                    }
                } else {
                    #[unroll]
                    for j in 0..8usize {
                        let mut x = s[2usize * j + u];
                        #[unroll]
                        for e in 0..2usize {
                            let key = keys[key_at + 8usize * j + 2usize * t + e] as usize;
                            if key >= n_keys || key > position {
                                x[e] = MASKED;
                            }
                        }
                        s[2usize * j + u] = x;
                    }
                }
            }
        }
        let mut correction = Array::<f32>::new(2usize);
        #[unroll]
        for u in 0..2usize {
            // The max runs over the raw logits (the scale is positive), so that each
            // exponential takes one multiply-add, `logit·scale − max·scale`.
            let mut tile_max = MASKED.runtime();
            #[unroll]
            for j in 0..8usize {
                let x = s[2usize * j + u];
                tile_max = f32::max(tile_max, f32::max(x[0usize], x[1usize]));
            }
            tile_max = f32::max(tile_max, plane_shuffle_xor(tile_max, 1u32));
            tile_max = f32::max(tile_max, plane_shuffle_xor(tile_max, 2u32));
            let new_max = f32::max(row_max[u], tile_max);
            correction[u] = f32::exp((row_max[u] - new_max) * scale);
            row_max[u] = new_max;
            // A masked score, `MASKED·scale`, is below −10¹⁰ for every scale the launcher
            // takes, so its exponential is 0 with no test per score; only a row that has seen
            // no key yet (its max still `MASKED`) needs a shift that keeps it there.
            let mut shift = new_max * scale;
            if new_max == MASKED {
                shift = -MASKED;
            }
            let mut sum = 0.0f32;
            #[unroll]
            for j in 0..8usize {
                let mut x = s[2usize * j + u];
                #[unroll]
                for e in 0..2usize {
                    let p = f32::exp(x[e] * scale - shift);
                    x[e] = p;
                    sum += p;
                }
                s[2usize * j + u] = x;
            }
            row_sum[u] = row_sum[u] * correction[u] + sum;
        }
        // Once a row's max has settled, most items leave every max of the plane unchanged:
        // the output's rescale (64 multiplies a unit at d = 128) is then skipped.
        if plane_any(correction[0usize] != 1.0f32 || correction[1usize] != 1.0f32) {
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
        }

        // O += P·V: P's A fragments straight from the score registers; ldmatrix.x4.trans on V
        // rows gives the B fragments of two 8-wide output tiles for one 16-key slice: lane l
        // gives key row 16kk + 8·((l/8)%2) + l%8, column group 2jp + l/16.
        #[unroll]
        for kk in 0..4usize {
            let mut a = Array::<Pair<F>>::new(4usize);
            #[unroll]
            for vv in 0..4usize {
                a[vv] = Pair::<F>::cast_from(s[2usize * (2usize * kk + vv / 2usize) + vv % 2usize]);
            }
            let v_frag_row =
                k_at + (16usize * kk + 8usize * ((lane / 8usize) % 2usize) + lane % 8usize) * slots;
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
                    let mut acc = Array::<Vector<f32, Const<2>>>::new(2usize);
                    acc[0usize] = o[2usize * jd];
                    acc[1usize] = o[2usize * jd + 1usize];
                    def.execute_inplace(&a, &bm, &mut acc);
                    o[2usize * jd] = acc[0usize];
                    o[2usize * jd + 1usize] = acc[1usize];
                }
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
        if active && row < n_queries {
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
