//! Sparse flash attention on the host: the engine behind the NdArray backend.
//!
//! The same algorithm as the GPU kernel, on the same [`SparseIndex`]: for each (batch, head,
//! 64-query block), stream the block's key tiles and then its gathered columns in chunks of 64,
//! keeping an online softmax (running max, running sum, fp32 accumulator). Products are
//! `matrixmultiply` sgemm calls on 64-wide tiles; blocks run in parallel with rayon. Only the
//! selected tiles are computed, so a sparse pattern is faster than dense on the CPU too (the
//! Burn-ops reference in [`crate::reference`] computes every score and masks).

use crate::index::SparseIndex;
use crate::pattern::BLOCK;
use rayon::prelude::*;

/// Shapes of one call: q `[batch, heads, n_q, d]`, k/v `[batch, kv_heads, n_k, d]`.
#[derive(Debug, Clone, Copy)]
pub struct Shapes {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (query head `h` reads `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Queries.
    pub n_q: usize,
    /// Keys.
    pub n_k: usize,
    /// Head dim.
    pub d: usize,
}

/// `C (m×n) = alpha · A (m×k) · B (k×n) + beta · C`, with explicit row/column strides.
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    // The bounds sgemm will touch, checked here so that the unsafe call cannot read or write
    // outside the slices.
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(m > 0 && k > 0 && n > 0);
    assert!(last(m, k, rsa, csa) < a.len());
    assert!(last(k, n, rsb, csb) < b.len());
    assert!(last(m, n, rsc, 1) < c.len());
    // SAFETY: every index sgemm computes is within the bounds asserted above.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// Online-softmax state of one query block.
struct Block<'a> {
    q: &'a [f32],
    rows: usize,
    d: usize,
    scale: f32,
    max: Vec<f32>,
    sum: Vec<f32>,
    acc: &'a mut [f32],
    scores: Vec<f32>,
}

impl Block<'_> {
    /// Folds `len` keys into the block: `keys`/`values` are `len × d` row-major. With
    /// `causal = Some(p)`, key `j` is the absolute position `p + j` and row `i` sees it only
    /// when it is not after the row's position; `None` lets every row see every key.
    fn fold(&mut self, keys: &[f32], values: &[f32], len: usize, causal: Option<(usize, usize)>) {
        let (rows, d) = (self.rows, self.d);
        let s = &mut self.scores[..rows * len];
        gemm(
            (rows, d, len),
            self.scale,
            self.q,
            (d, 1),
            keys,
            (1, d),
            0.0,
            s,
            len,
        );
        for i in 0..rows {
            let row = &mut s[i * len..(i + 1) * len];
            // Keys past the row's position (only in a tile that reaches the diagonal).
            let visible = match causal {
                Some((key_start, first_row)) => {
                    (first_row + i + 1).saturating_sub(key_start).min(len)
                }
                None => len,
            };
            row[visible..].fill(0.0);
            let row = &mut row[..visible];
            if row.is_empty() {
                continue;
            }
            let top = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let new_max = self.max[i].max(top);
            let correction = (self.max[i] - new_max).exp();
            self.max[i] = new_max;
            let mut total = 0.0;
            for x in row.iter_mut() {
                *x = (*x - new_max).exp();
                total += *x;
            }
            self.sum[i] = self.sum[i] * correction + total;
            if correction != 1.0 {
                self.acc[i * d..(i + 1) * d]
                    .iter_mut()
                    .for_each(|a| *a *= correction);
            }
        }
        gemm(
            (rows, len, d),
            1.0,
            s,
            (len, 1),
            values,
            (d, 1),
            1.0,
            self.acc,
            d,
        );
    }

    fn finish(self) {
        for i in 0..self.rows {
            let inv = if self.sum[i] > 0.0 {
                1.0 / self.sum[i]
            } else {
                0.0
            };
            self.acc[i * self.d..(i + 1) * self.d]
                .iter_mut()
                .for_each(|a| *a *= inv);
        }
    }
}

/// Attention of `q` over `k`/`v` restricted to `index` (row-major f32 buffers of `shapes`);
/// returns the output, shaped like `q`.
pub fn attention_with_index(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shapes: Shapes,
    index: &SparseIndex,
    scale: f32,
) -> Vec<f32> {
    let Shapes {
        batch,
        heads,
        kv_heads,
        n_q,
        n_k,
        d,
    } = shapes;
    assert_eq!(q.len(), batch * heads * n_q * d);
    assert_eq!(k.len(), batch * kv_heads * n_k * d);
    assert_eq!(v.len(), k.len());
    let group = heads / kv_heads;
    let g = index.geometry;
    let mut out = vec![0.0f32; q.len()];
    // One work item per (batch, head, query block), each owning its rows of the output.
    let items: Vec<(usize, usize, &mut [f32])> = out
        .chunks_mut(n_q * d)
        .enumerate()
        .flat_map(|(bh, head)| {
            head.chunks_mut(BLOCK * d)
                .enumerate()
                .map(move |(m, rows)| (bh, m, rows))
        })
        .collect();
    items.into_par_iter().for_each(|(bh, m, acc)| {
        let (b, h) = (bh / heads, bh % heads);
        let kv = (b * kv_heads + h / group) * n_k * d;
        let (keys, values) = (&k[kv..kv + n_k * d], &v[kv..kv + n_k * d]);
        let rows = acc.len() / d;
        let first = g.query_offset + m * BLOCK;
        let mut block = Block {
            q: &q[(bh * n_q + m * BLOCK) * d..][..rows * d],
            rows,
            d,
            scale,
            max: vec![f32::NEG_INFINITY; rows],
            sum: vec![0.0; rows],
            acc,
            scores: vec![0.0; BLOCK * BLOCK],
        };
        let mut gathered_k = vec![0.0; BLOCK * d];
        let mut gathered_v = vec![0.0; BLOCK * d];
        for [run, jumped] in index.tile_runs(b, h, m) {
            if jumped.is_empty() {
                let t = run.start;
                let len = BLOCK.min(n_k - t);
                let span = t * d..(t + len) * d;
                block.fold(&keys[span.clone()], &values[span], len, Some((t, first)));
            } else {
                // A tile whose keys jump lies before the block: every row sees all 64.
                let len = gather(
                    &mut gathered_k,
                    &mut gathered_v,
                    keys,
                    values,
                    d,
                    run.chain(jumped),
                );
                block.fold(&gathered_k[..len * d], &gathered_v[..len * d], len, None);
            }
        }
        // Gathered columns sit before the block (every row may see them), 64 at a time.
        for chunk in index.columns(b, h, m).chunks(BLOCK) {
            let positions = chunk.iter().map(|&c| c as usize);
            let len = gather(&mut gathered_k, &mut gathered_v, keys, values, d, positions);
            block.fold(&gathered_k[..len * d], &gathered_v[..len * d], len, None);
        }
        block.finish();
    });
    out
}

/// Copies the K and V rows of `positions` (at most 64) to the front of `into_k`/`into_v`;
/// returns how many.
fn gather(
    into_k: &mut [f32],
    into_v: &mut [f32],
    keys: &[f32],
    values: &[f32],
    d: usize,
    positions: impl Iterator<Item = usize>,
) -> usize {
    let mut len = 0;
    for c in positions {
        into_k[len * d..(len + 1) * d].copy_from_slice(&keys[c * d..(c + 1) * d]);
        into_v[len * d..(len + 1) * d].copy_from_slice(&values[c * d..(c + 1) * d]);
        len += 1;
    }
    len
}
