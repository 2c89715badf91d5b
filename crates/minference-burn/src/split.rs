//! Layers too large for one launch, run in passes over batch rows and KV heads.
//!
//! The kernels' offsets are 32-bit (`minference_kernels::limits`): a launch addresses at most
//! 2³² elements of any buffer. 32 query heads × 1M tokens × d = 128 is exactly that; a batch of
//! two, a longer prompt or Llama-3-70B's 64 heads at 512K pass it, and so does a dense head's
//! padded index at 1M. Heads are independent, so such a layer runs as several passes, each over
//! one batch row and a range of whole KV groups (a KV head with its query heads), on views of
//! the inputs; each pass writes its slice of one output. [`plan`] picks the fewest passes, and
//! the Cube backends call [`in_passes`] by themselves.

use crate::attention::Measured;
use crate::error::{MinferenceError, Result};
use crate::pattern::LayerPatterns;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use minference_kernels::sparse_flash::Problem;
use std::ops::Range;

/// One pass: a range of batch rows and of KV heads, with their query heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Batch rows.
    pub batch: Range<usize>,
    /// KV heads; the pass's query heads are `kv_heads × group`.
    pub kv_heads: Range<usize>,
}

/// The passes a layer of shape `p` needs so that each satisfies `fits`: the whole layer in one
/// when it fits, else one batch row at a time with KV heads spread evenly over the fewest passes
/// that fit. `fits` must hold for a part whenever it holds for a larger one (buffer sizes do).
/// A typed error when not even one KV group of one row fits.
pub fn plan(p: &Problem, fits: impl Fn(&Problem) -> bool) -> Result<Vec<Pass>> {
    if fits(p) {
        return Ok(vec![Pass {
            batch: 0..p.batch,
            kv_heads: 0..p.kv_heads,
        }]);
    }
    let group = p.heads / p.kv_heads;
    let part = |kv_heads: usize| Problem {
        batch: 1,
        heads: kv_heads * group,
        kv_heads,
        ..*p
    };
    let most = (1..=p.kv_heads)
        .rev()
        .find(|&kv| fits(&part(kv)))
        .ok_or_else(|| {
            MinferenceError::Unsupported(format!(
                "one KV group ({group} query heads) of {} queries over {} keys at head dim {} \
                 passes the 2^32 elements a kernel launch addresses; shorten the prompt",
                p.n_queries, p.n_keys, p.head_dim
            ))
        })?;
    let count = p.kv_heads.div_ceil(most);
    let per_pass = p.kv_heads.div_ceil(count);
    Ok((0..p.batch)
        .flat_map(|row| {
            (0..p.kv_heads).step_by(per_pass).map(move |first| Pass {
                batch: row..row + 1,
                kv_heads: first..(first + per_pass).min(p.kv_heads),
            })
        })
        .collect())
}

/// Places a pass's output with Burn's `slice_assign`: any backend, for outputs Burn's kernels
/// can index (the Cube backends place their parts with `minference_kernels::copy` instead, which
/// also works past 2³² elements).
pub fn slice_assign<B: Backend>(
    out: Tensor<B, 4>,
    part: Tensor<B, 4>,
    [rows, heads]: [Range<usize>; 2],
) -> Result<Tensor<B, 4>> {
    Ok(out.slice_assign([rows, heads], part))
}

/// Checks that `passes` cover each (batch row, KV head) of the layer exactly once.
fn check_cover(passes: &[Pass], batch: usize, kv_heads: usize) -> Result<()> {
    let mut seen = vec![false; batch * kv_heads];
    for pass in passes {
        let fits = !pass.batch.is_empty()
            && !pass.kv_heads.is_empty()
            && pass.batch.end <= batch
            && pass.kv_heads.end <= kv_heads;
        if !fits {
            return Err(MinferenceError::Unsupported(format!(
                "pass {pass:?} is empty or outside the layer's {batch} batch rows and {kv_heads} KV heads"
            )));
        }
        for row in pass.batch.clone() {
            for kv in pass.kv_heads.clone() {
                if std::mem::replace(&mut seen[row * kv_heads + kv], true) {
                    return Err(MinferenceError::Unsupported(format!(
                        "passes cover batch row {row}, KV head {kv} twice"
                    )));
                }
            }
        }
    }
    let covered = seen.iter().filter(|&&s| s).count();
    if covered != seen.len() {
        return Err(MinferenceError::Unsupported(format!(
            "passes cover {covered} of the layer's {} (batch row, KV head) pairs",
            seen.len()
        )));
    }
    Ok(())
}

/// Runs `run` on each pass's views of `q`/`k`/`v` with its heads' patterns, and places the
/// passes' outputs into one `[batch, heads, n_queries, head_dim]` tensor:
/// `place(layer output, pass output, [batch rows, query heads])` returns the layer output with
/// the part written ([`slice_assign`] on any backend). The density is the layer's (each pass
/// weighted by its heads: they share the geometry); `dense` holds when every pass ran densely
/// (each pass decides for its own heads). One pass over the whole layer is `run` itself. Passes
/// that do not cover each (batch row, KV head) exactly once are refused before any runs.
pub fn in_passes<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    patterns: &LayerPatterns,
    passes: &[Pass],
    mut run: impl FnMut(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>, &LayerPatterns) -> Result<Measured<B>>,
    mut place: impl FnMut(Tensor<B, 4>, Tensor<B, 4>, [Range<usize>; 2]) -> Result<Tensor<B, 4>>,
) -> Result<Measured<B>> {
    let [batch, heads, _, _] = q.dims();
    let kv_heads = k.dims()[1];
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) || patterns.len() != heads {
        return Err(MinferenceError::Unsupported(format!(
            "{heads} query heads with {} patterns over {kv_heads} KV heads cannot run in passes",
            patterns.len()
        )));
    }
    check_cover(passes, batch, kv_heads)?;
    let group = heads / kv_heads;
    if let [only] = passes {
        if only.batch == (0..batch) && only.kv_heads == (0..kv_heads) {
            return run(q, k, v, patterns);
        }
    }
    let mut out = Tensor::<B, 4>::empty(q.shape(), (&q.device(), q.dtype()));
    let (mut weighted, mut dense) = (0.0, true);
    for pass in passes {
        let rows = pass.batch.clone();
        let kv = pass.kv_heads.clone();
        let query_heads = kv.start * group..kv.end * group;
        let part = run(
            q.clone().slice([rows.clone(), query_heads.clone()]),
            k.clone().slice([rows.clone(), kv.clone()]),
            v.clone().slice([rows.clone(), kv]),
            &patterns.range(query_heads.clone()),
        )?;
        let share = rows.len() * query_heads.len();
        weighted += part.density * share as f64;
        dense &= part.dense;
        out = place(out, part.out, [rows, query_heads])?;
    }
    Ok(Measured {
        out,
        density: weighted / (batch * heads) as f64,
        dense,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(batch: usize, heads: usize, kv_heads: usize) -> Problem {
        Problem {
            batch,
            heads,
            kv_heads,
            n_queries: 1000,
            n_keys: 1000,
            query_offset: 0,
            head_dim: 64,
            scale: 1.0,
        }
    }

    /// Fits while the part's query heads × batch rows stay within `most`.
    fn at_most(most: usize) -> impl Fn(&Problem) -> bool {
        move |p: &Problem| p.batch * p.heads <= most
    }

    #[test]
    fn a_layer_that_fits_is_one_pass() {
        let passes = plan(&problem(2, 32, 8), at_most(64)).unwrap();
        assert_eq!(
            passes,
            vec![Pass {
                batch: 0..2,
                kv_heads: 0..8
            }]
        );
    }

    #[test]
    fn passes_cover_every_row_and_kv_head_evenly() {
        // 20 query heads fit: 5 KV groups of 4 at most, so 8 KV heads go 4 + 4 per row.
        let passes = plan(&problem(2, 32, 8), at_most(20)).unwrap();
        let expect = |row: usize, kv: Range<usize>| Pass {
            batch: row..row + 1,
            kv_heads: kv,
        };
        assert_eq!(
            passes,
            vec![
                expect(0, 0..4),
                expect(0, 4..8),
                expect(1, 0..4),
                expect(1, 4..8)
            ]
        );
        // 3 KV heads, one fits: three single-head passes.
        let passes = plan(&problem(1, 9, 3), at_most(3)).unwrap();
        let kv: Vec<_> = passes.iter().map(|p| p.kv_heads.clone()).collect();
        assert_eq!(kv, vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn a_pass_set_must_cover_the_layer_once() {
        let pass = |rows: Range<usize>, kv: Range<usize>| Pass {
            batch: rows,
            kv_heads: kv,
        };
        assert!(check_cover(&[pass(0..2, 0..1), pass(0..2, 1..2)], 2, 2).is_ok());
        for (passes, says) in [
            (vec![pass(0..1, 0..2)], "cover 2 of the layer's 4"),
            (vec![pass(0..2, 0..2), pass(1..2, 1..2)], "twice"),
            (vec![pass(0..2, 0..3)], "outside"),
            (vec![pass(0..2, 1..1)], "empty"),
        ] {
            let err = check_cover(&passes, 2, 2).unwrap_err().to_string();
            assert!(err.contains(says), "{passes:?}: {err}");
        }
    }

    #[test]
    fn a_group_that_cannot_fit_is_a_typed_error() {
        let err = plan(&problem(1, 32, 8), at_most(3)).unwrap_err();
        assert!(
            matches!(&err, MinferenceError::Unsupported(m) if m.contains("one KV group")),
            "{err}"
        );
    }
}
