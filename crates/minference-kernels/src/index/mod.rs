//! The unified index built on the device, for every head of a layer in one go.
//!
//! [`build`] takes each query head's [`HeadPlan`] and writes the padded index the sparse flash
//! kernel reads ([`IndexHandles`]) without a round trip to the host: Vertical-Slash heads get
//! their scores ([`crate::estimate::vertical_slash`]), their top-k columns and diagonals
//! ([`crate::estimate::select`]) and the conversion into tiles and gathered columns
//! ([`convert::vertical_slash()`]); Block-Sparse heads their pooled scores and top-k blocks
//! ([`crate::estimate::block_sparse`]); dense and A-shape heads their band ([`convert::band()`]).
//! Rows are padded to bounds known before launching (see [`widths`]), so nothing is read back.

pub mod convert;
pub mod jump;
mod kept;

pub use kept::kept_pairs;

use crate::estimate::{block_sparse, select, vertical_slash};
use crate::sparse_flash::{IndexHandles, Problem};
use crate::{limits, words, KernelError, BLOCK};
use cubecl::prelude::*;

/// What one query head attends to. Budgets are the ones to use: the caller clamps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadPlan {
    /// Every causal key.
    Dense,
    /// The first `sink` keys plus the band `[p_start + 1 − local, p_end)` of each query block,
    /// rounded out to whole tiles.
    AShape {
        /// Sink keys.
        sink: usize,
        /// Band width (≥ 1).
        local: usize,
    },
    /// `vertical` columns and `slash` diagonals picked from the last queries' attention.
    VerticalSlash {
        /// Columns, `1..=n_keys`.
        vertical: usize,
        /// Diagonals, `1..=diagonals`.
        slash: usize,
    },
    /// The `top_k` best key blocks of each query block plus the forced ones.
    BlockSparse {
        /// Blocks (≥ 1).
        top_k: usize,
    },
}

/// Entries Vertical-Slash always keeps: the first columns (sinks) and nearest diagonals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forced {
    /// Leading columns.
    pub columns: usize,
    /// Leading diagonals (offset 0 first).
    pub diagonals: usize,
}

/// Row widths `(max_blocks, max_columns)` no query block of `plans` can exceed on `p`: tiles
/// are disjoint and start before the last key, so never more than the key blocks.
pub fn widths(plans: &[HeadPlan], p: &Problem) -> (usize, usize) {
    let kb = p.key_blocks();
    let (blocks, columns) = plans
        .iter()
        .map(|plan| match *plan {
            HeadPlan::Dense => (kb, 0),
            HeadPlan::AShape { sink, local } => {
                ((local + 63).div_ceil(64).min(kb), sink.min(p.n_keys))
            }
            // Up to 63 keys of the diagonals' union are gathered besides the columns.
            HeadPlan::VerticalSlash { vertical, slash } => {
                ((slash + 1).min(kb), (vertical + BLOCK - 1).min(p.n_keys))
            }
            HeadPlan::BlockSparse { top_k } => (block_sparse::max_blocks(top_k, kb), 0),
        })
        .fold((0, 0), |(b, c), (pb, pc)| (b.max(pb), c.max(pc)));
    (blocks.max(1), columns.max(1))
}

/// Checks each plan against the problem: budgets the kernels can hold, a plan per head.
fn check(plans: &[HeadPlan], p: &Problem) -> Result<(), KernelError> {
    p.check()?;
    if plans.len() != p.heads {
        return Err(KernelError::Index(format!(
            "{} head plans for {} query heads",
            plans.len(),
            p.heads
        )));
    }
    for plan in plans {
        let ok = match *plan {
            HeadPlan::Dense => true,
            HeadPlan::AShape { local, .. } => local > 0,
            HeadPlan::VerticalSlash { vertical, slash } => {
                (1..=p.n_keys).contains(&vertical) && (1..=p.diagonals()).contains(&slash)
            }
            HeadPlan::BlockSparse { top_k } => top_k > 0,
        };
        if !ok {
            return Err(KernelError::Index(format!(
                "{plan:?} does not fit {} keys and {} diagonals (budgets are clamped by the caller)",
                p.n_keys,
                p.diagonals()
            )));
        }
    }
    Ok(())
}

/// Per-head `u32` parameters, `per_head(plan)` for each head, flattened.
fn per_head<const N: usize>(plans: &[HeadPlan], f: impl Fn(&HeadPlan) -> [usize; N]) -> Vec<u32> {
    plans
        .iter()
        .flat_map(|plan| f(plan).map(|x| x as u32))
        .collect()
}

/// Builds the unified index of `q`/`k` (as in [`crate::sparse_flash::launch`]) for `plans`, one
/// per query head, on the device.
pub fn build<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    p: &Problem,
    plans: &[HeadPlan],
    forced: Forced,
) -> Result<IndexHandles, KernelError> {
    check(plans, p)?;
    let (max_blocks, max_columns) = widths(plans, p);
    let qb = p.query_blocks();
    let rows = p.batch * p.heads * qb;
    let vertical_slash = plans
        .iter()
        .any(|plan| matches!(plan, HeadPlan::VerticalSlash { .. }));
    limits::check(p, (max_blocks, max_columns), vertical_slash)?;
    if vertical_slash && p.n_keys > jump::MAX_GAP {
        return Err(KernelError::Index(format!(
            "{} keys: Vertical-Slash tiles address gaps of at most {} keys",
            p.n_keys,
            jump::MAX_GAP
        )));
    }
    for (what, t) in [("q", &q), ("k", &k)] {
        limits::check_len(what, limits::span(&t.shape, &t.strides))?;
    }
    let index = IndexHandles {
        block_count: client.empty(rows * 4),
        block_offset: client.empty(rows * max_blocks * 4),
        block_jump: client.empty(rows * max_blocks * 4),
        column_count: client.empty(rows * 4),
        column_index: client.empty(rows * max_columns * 4),
        max_blocks,
        max_columns,
        jumps: vertical_slash,
    };
    let upload = |data: &[u32]| client.create_from_slice(u32::as_bytes(data));
    let units = 64u32;
    let per_block = CubeCount::Static(
        qb.div_ceil(units as usize) as u32,
        p.heads as u32,
        p.batch as u32,
    );

    let band = per_head(plans, |plan| match *plan {
        HeadPlan::Dense => [0, p.diagonals() + 1],
        HeadPlan::AShape { sink, local } => [sink.min(p.n_keys), local.min(p.diagonals() + 1)],
        _ => [0, 0],
    });
    if band.iter().any(|&x| x > 0) {
        let band = upload(&band);
        unsafe {
            convert::band::launch_unchecked::<R>(
                client,
                per_block.clone(),
                CubeDim::new_1d(units),
                words(&band, 2 * p.heads)?,
                words(&index.block_count, rows)?,
                words(&index.block_offset, rows * max_blocks)?,
                words(&index.block_jump, rows * max_blocks)?,
                words(&index.column_count, rows)?,
                words(&index.column_index, rows * max_columns)?,
                p.n_queries as u32,
                p.n_keys as u32,
                p.query_offset as u32,
                max_blocks as u32,
                max_columns as u32,
            );
        }
    }

    let budgets = per_head(plans, |plan| match *plan {
        HeadPlan::VerticalSlash { vertical, slash } => [vertical, slash],
        _ => [0, 0],
    });
    if budgets.iter().any(|&x| x > 0) {
        let scores = vertical_slash::scores::<R, F>(client, q.clone(), k.clone(), p)?;
        let bh = p.batch * p.heads;
        let row = p.n_keys + p.diagonals();
        let keys = client.empty(bh * row * 4);
        let width = budgets.iter().copied().max().unwrap_or(1) as usize;
        let chosen = client.empty(bh * 2 * width * 4);
        let budgets = upload(&budgets);
        unsafe {
            select::vertical_slash_keys::launch_unchecked::<R>(
                client,
                // Spread over y and z past 65535 cubes along x (wgpu's per-dimension limit:
                // 32 heads at 256K keys already need 65536).
                cubecl::calculate_cube_count_elemwise(client, bh * row, CubeDim::new_1d(256)),
                CubeDim::new_1d(256),
                words(&scores.vertical, bh * p.n_keys)?,
                words(&scores.slash, bh * p.diagonals())?,
                words(&keys, bh * row)?,
                p.n_keys as u32,
                p.diagonals() as u32,
                forced.columns as u32,
                forced.diagonals as u32,
            );
            select::top_rows::launch_unchecked::<R>(
                client,
                CubeCount::Static(2, p.heads as u32, p.batch as u32),
                CubeDim::new_1d(select::ROW_UNITS as u32),
                words(&keys, bh * row)?,
                words(&budgets, 2 * p.heads)?,
                words(&chosen, bh * 2 * width)?,
                p.n_keys as u32,
                p.diagonals() as u32,
                width as u32,
                false,
            );
            convert::vertical_slash::launch_unchecked::<R>(
                client,
                per_block.clone(),
                CubeDim::new_1d(units),
                words(&chosen, bh * 2 * width)?,
                words(&budgets, 2 * p.heads)?,
                words(&index.block_count, rows)?,
                words(&index.block_offset, rows * max_blocks)?,
                words(&index.block_jump, rows * max_blocks)?,
                words(&index.column_count, rows)?,
                words(&index.column_index, rows * max_columns)?,
                p.n_queries as u32,
                p.query_offset as u32,
                width as u32,
                max_blocks as u32,
                max_columns as u32,
            );
        }
    }

    let top_k = per_head(plans, |plan| match *plan {
        HeadPlan::BlockSparse { top_k } => [top_k],
        _ => [0],
    });
    if top_k.iter().any(|&x| x > 0) {
        block_sparse::select_blocks::<R, F>(client, q, k, p, &top_k, &index)?;
    }
    Ok(index)
}
