//! Vertical-Slash scores on the device, for every head of a layer in one launch.
//!
//! MInference's estimate: `p = softmax(q_last · Kᵀ · scale)` in fp32 over the last `last ≤ 64`
//! queries (causal), then column sums of `p` (vertical scores) and sums along each diagonal
//! `o = position − key` (slash scores).
//!
//! A row's softmax needs every logit of the row before any probability is known, and CubeCL has
//! no grid-wide barrier, so the launch is split by rows rather than by keys: cube
//! `(part, h, b)` owns [`ROWS`] of the last query rows of head `h` and sweeps all the keys
//! twice. The first sweep computes the rows' logits (a `ROWS × KEYS` tile at a time through
//! shared memory, each unit a 4×4 register block), stores them and keeps each row's running
//! max and softmax denominator; the second reads them back and sums the rows' probabilities by
//! column and by diagonal. Nothing crosses cubes, so no fence is needed and the result does not
//! depend on their order.
//!
//! Each cube writes its rows' share of the column and diagonal sums: `parts = ⌈last / ROWS⌉`
//! partial rows per head ([`ScoreHandles`]), which their one reader adds in part order
//! ([`crate::estimate::select::vertical_slash_keys`] on the device, [`ScoreHandles`]' readers on
//! the host, bit-identically). Adding them with float atomics instead would make the last bits
//! of a score, and so the pick at a near-tie, depend on the cubes' timing.
//!
//! The logits are computed once (`last · n · head_dim` products per head, about `64 / n` of the
//! attention they steer), written once and read twice by the cube that wrote them (the second
//! read mostly from cache): `4 · 64 · n` bytes per head written (1 GiB for a 32-head layer at
//! 128K). Scalar fp32 arithmetic and no plane operations, so the same kernel runs on every
//! CubeCL device (lavapipe included).

use crate::sparse_flash::{Problem, MASKED};
use crate::{limits, words, KernelError};
use cubecl::prelude::*;
use cubecl::server::Handle;

/// The last query rows MInference's estimate reads.
const LAST: usize = 64;
/// Query rows of a cube: four parts of the 64 last rows, so that a 32-head layer fills 128
/// cubes of [`UNITS`] (one per SM of an H100) while each cube reads a head's keys only once.
pub const ROWS: usize = 16;
/// Keys of a logit tile.
const KEYS: usize = 256;
/// Head-dimension slice of the keys staged in shared memory at a time.
const SLICE: usize = 16;
/// Units of a cube: `ROWS × KEYS / 16`, a 4×4 block each.
const UNITS: usize = 256;
/// Units sharing a row in the first sweep (one per four keys of a tile).
const ROW_UNITS: usize = KEYS / 4;
/// A shared-memory row of staged keys: `KEYS` plus one, so that the staging writes (a key's
/// dimensions by consecutive units) fall in distinct banks.
const KEY_STRIDE: usize = KEYS + 1;

/// Partial rows of scores per head: one per cube of [`ROWS`] among the last `min(64, n_queries)`.
pub fn score_parts(n_queries: usize) -> usize {
    n_queries.min(LAST).div_ceil(ROWS)
}

/// Cube `(part, h, b)`: rows `part · ROWS ..` of the last `last` query rows of head `h`.
///
/// Writes `logits[b, h, r, key] = scale · q[row_r] · k[key]` for its rows, then
/// `vertical[part, b, h, key] = Σ_r p[r, key]` and `slash[part, b, h, o] = Σ_r p[r, position_r
/// − o]` over its rows `r` that see the key (`key ≤ position_r = first_position + r`).
///
/// In the first sweep unit `u` owns rows `u / 64 + 4i` and keys `u % 64 + 64j` of each tile
/// (`i, j < 4`): its query reads are broadcasts and its key reads consecutive words, so neither
/// conflicts. In the second, unit `u` owns columns `j ≡ u` (mod [`UNITS`]) and the diagonals
/// `o = diagonals − 1 − j`, whose probabilities lie in the columns `j + r + 1 − last`: both sums
/// of a step read the same few cache lines.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn scores_kernel<F: Float>(
    q: &Tensor<F>,
    k: &Tensor<F>,
    logits: &mut Array<f32>,
    vertical: &mut Array<f32>,
    slash: &mut Array<f32>,
    n_queries: u32,
    n_keys: u32,
    diagonals: u32,
    last: u32,
    group: u32,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let tid = UNIT_POS_X as usize;
    let part = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let heads = CUBE_COUNT_Y as usize;
    let b = CUBE_POS_Z as usize;
    let bh = b * heads + h;
    let bh_count = heads * CUBE_COUNT_Z as usize;
    let n_keys = n_keys as usize;
    let diagonals = diagonals as usize;
    let last = last as usize;
    let first_row = n_queries as usize - last;
    let first_position = diagonals - last;
    let row0 = part * ROWS;
    let q_base = b * q.stride(0) + h * q.stride(1);
    let k_base = b * k.stride(0) + (h / group as usize) * k.stride(1);

    let mut qs = SharedMemory::<f32>::new(comptime!(SLICE * ROWS));
    let mut ks = SharedMemory::<f32>::new(comptime!(SLICE * KEY_STRIDE));
    let row_slot = tid / ROW_UNITS;
    let key_slot = tid % ROW_UNITS;

    // First sweep: logits, stored, and each owned row's running max and denominator over the
    // keys it sees.
    let mut row_max = Array::<f32>::new(4usize);
    let mut row_sum = Array::<f32>::new(4usize);
    #[unroll]
    for i in 0..4usize {
        row_max[i] = MASKED.runtime();
        row_sum[i] = 0.0f32;
    }
    let mut acc = Array::<f32>::new(16usize);
    for key0 in range_stepped(0usize, n_keys, KEYS) {
        #[unroll]
        for i in 0..16usize {
            acc[i] = 0.0f32;
        }
        for c0 in range_stepped(0usize, head_dim, SLICE) {
            // Stage a ROWS × SLICE slice of the rows and a KEYS × SLICE slice of the keys,
            // dimension-major (zeros past the ends).
            if tid < comptime!(SLICE * ROWS) {
                let r = tid / SLICE;
                let c = c0 + tid % SLICE;
                let mut v = 0.0f32;
                if row0 + r < last && c < head_dim {
                    let row = first_row + row0 + r;
                    v = f32::cast_from(q[q_base + row * q.stride(2) + c * q.stride(3)]);
                }
                qs[(tid % SLICE) * ROWS + r] = v;
            }
            for e in range_stepped(tid, comptime!(KEYS * SLICE), UNITS) {
                let key = key0 + e / SLICE;
                let c = c0 + e % SLICE;
                let mut v = 0.0f32;
                if key < n_keys && c < head_dim {
                    v = f32::cast_from(k[k_base + key * k.stride(2) + c * k.stride(3)]);
                }
                ks[(e % SLICE) * KEY_STRIDE + e / SLICE] = v;
            }
            sync_cube();
            #[unroll]
            for c in 0..SLICE {
                let mut qr = Array::<f32>::new(4usize);
                let mut kr = Array::<f32>::new(4usize);
                #[unroll]
                for i in 0..4usize {
                    qr[i] = qs[c * ROWS + row_slot + 4usize * i];
                    kr[i] = ks[c * KEY_STRIDE + key_slot + ROW_UNITS * i];
                }
                #[unroll]
                for i in 0..4usize {
                    #[unroll]
                    for j in 0..4usize {
                        acc[4usize * i + j] += qr[i] * kr[j];
                    }
                }
            }
            sync_cube();
        }
        #[unroll]
        for i in 0..4usize {
            let r = row0 + row_slot + 4usize * i;
            #[unroll]
            for j in 0..4usize {
                let key = key0 + key_slot + ROW_UNITS * j;
                let x = acc[4usize * i + j] * scale;
                if r < last && key < n_keys {
                    logits[(bh * last + r) * n_keys + key] = x;
                    if key <= first_position + r {
                        if x > row_max[i] {
                            row_sum[i] = row_sum[i] * f32::exp(row_max[i] - x) + 1.0f32;
                            row_max[i] = x;
                        } else {
                            row_sum[i] += f32::exp(x - row_max[i]);
                        }
                    }
                }
            }
        }
    }

    // Each row's statistics: its ROW_UNITS units' pairs merged in slot order.
    let mut maxes = SharedMemory::<f32>::new(comptime!(ROWS * ROW_UNITS));
    let mut sums = SharedMemory::<f32>::new(comptime!(ROWS * ROW_UNITS));
    #[unroll]
    for i in 0..4usize {
        let r = row_slot + 4usize * i;
        maxes[r * ROW_UNITS + key_slot] = row_max[i];
        sums[r * ROW_UNITS + key_slot] = row_sum[i];
    }
    sync_cube();
    let mut stats_max = SharedMemory::<f32>::new(ROWS);
    let mut stats_scale = SharedMemory::<f32>::new(ROWS);
    if tid < ROWS {
        let mut m = MASKED.runtime();
        let mut s = 0.0f32.runtime();
        for slot in 0..ROW_UNITS {
            let (m1, s1) = (maxes[tid * ROW_UNITS + slot], sums[tid * ROW_UNITS + slot]);
            // Merge the pairs `(max, Σ exp(x − max))`; an empty one (sum 0) adds nothing.
            let merged = f32::max(m, m1);
            let mut total = 0.0f32;
            if s > 0.0f32 {
                total += s * f32::exp(m - merged);
            }
            if s1 > 0.0f32 {
                total += s1 * f32::exp(m1 - merged);
            }
            m = merged;
            s = total;
        }
        let mut inverse = 0.0f32;
        if s > 0.0f32 {
            inverse = 1.0f32 / s;
        }
        stats_max[tid] = m;
        stats_scale[tid] = inverse;
    }
    // The barrier also orders this cube's logit stores before the second sweep's loads.
    sync_storage();
    sync_cube();

    // Second sweep: the rows' share of each column and diagonal sum.
    let rows = usize::min(ROWS, last - row0);
    let span = usize::max(n_keys, diagonals);
    for j in range_stepped(tid, span, UNITS) {
        if j < n_keys {
            let mut total = 0.0f32;
            for r in 0..rows {
                let row = row0 + r;
                if j <= first_position + row {
                    let x = logits[(bh * last + row) * n_keys + j];
                    total += f32::exp(x - stats_max[r]) * stats_scale[r];
                }
            }
            vertical[(part * bh_count + bh) * n_keys + j] = total;
        }
        if j < diagonals {
            let o = diagonals - 1 - j;
            let mut total = 0.0f32;
            for r in 0..rows {
                let row = row0 + r;
                let position = first_position + row;
                if o <= position {
                    let x = logits[(bh * last + row) * n_keys + position - o];
                    total += f32::exp(x - stats_max[r]) * stats_scale[r];
                }
            }
            slash[(part * bh_count + bh) * diagonals + o] = total;
        }
    }
}

/// Device buffers of [`scores`]: `parts` partial rows of scores per head, `[parts, batch, heads,
/// n_keys]` column sums and `[parts, batch, heads, diagonals]` diagonal sums, f32; a head's score
/// is the sum of its parts in part order.
#[derive(Debug, Clone)]
pub struct ScoreHandles {
    /// Column sums by part.
    pub vertical: Handle,
    /// Diagonal sums by part.
    pub slash: Handle,
    /// Partial rows per head ([`score_parts`]).
    pub parts: usize,
}

impl ScoreHandles {
    /// The scores of `values = [parts, batch · heads, row]` (one buffer read back): the parts
    /// added in part order, as the device's reader adds them, so the two agree to the bit.
    pub fn add_parts(values: &[f32], parts: usize) -> Vec<f32> {
        let len = values.len() / parts.max(1);
        let mut total = values[..len].to_vec();
        if len == 0 {
            return total;
        }
        for part in values.chunks_exact(len).skip(1) {
            for (t, x) in total.iter_mut().zip(part) {
                *t += x;
            }
        }
        total
    }
}

/// Launches the score kernel for all heads (the last `min(64, n_queries)` queries, softmax scale
/// `p.scale`); `q`/`k` as in [`crate::sparse_flash::launch`].
pub fn scores<R: Runtime, F: Float + CubeElement>(
    client: &ComputeClient<R>,
    q: TensorBinding<R>,
    k: TensorBinding<R>,
    p: &Problem,
) -> Result<ScoreHandles, KernelError> {
    p.check()?;
    let last = p.n_queries.min(LAST);
    let parts = score_parts(p.n_queries);
    let bh = p.batch * p.heads;
    let group = (p.heads / p.kv_heads) as u32;
    let logit_len = bh * last * p.n_keys;
    let (vertical_len, slash_len) = (parts * bh * p.n_keys, parts * bh * p.diagonals());
    limits::check_len("last-query logits", logit_len)?;
    limits::check_len("column and diagonal scores", vertical_len + slash_len)?;
    let logit_buffer = client.empty(logit_len * 4);
    let vertical = client.empty(vertical_len * 4);
    let slash = client.empty(slash_len * 4);
    unsafe {
        scores_kernel::launch_unchecked::<F, R>(
            client,
            CubeCount::Static(parts as u32, p.heads as u32, p.batch as u32),
            CubeDim::new_1d(UNITS as u32),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            words(&logit_buffer, logit_len)?,
            words(&vertical, vertical_len)?,
            words(&slash, slash_len)?,
            p.n_queries as u32,
            p.n_keys as u32,
            p.diagonals() as u32,
            last as u32,
            group,
            p.scale,
            p.head_dim,
        );
    }
    Ok(ScoreHandles {
        vertical,
        slash,
        parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_last_rows() {
        for (n, parts) in [(1, 1), (16, 1), (17, 2), (63, 4), (64, 4), (1 << 20, 4)] {
            assert_eq!(score_parts(n), parts, "n = {n}");
        }
    }

    #[test]
    fn parts_add_in_order() {
        // [parts = 3, heads = 2, row = 2]. Part order matters in f32: (1e8 + 1) − 1e8 is 0,
        // where 1 + (1e8 − 1e8) would be 1.
        let values = [
            1e8, 1.0, 2.0, 3.0, // part 0
            1.0, 0.5, 0.25, 0.0, // part 1
            -1e8, 0.5, 0.25, 1.0, // part 2
        ];
        assert_eq!(ScoreHandles::add_parts(&values, 3), [0.0, 2.0, 2.5, 4.0]);
        assert_eq!(ScoreHandles::add_parts(&values, 1), values);
        assert!(ScoreHandles::add_parts(&[], 4).is_empty());
    }
}
