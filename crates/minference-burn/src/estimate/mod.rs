//! Run-time estimation of each dynamic pattern's index, written with Burn tensor ops.
//!
//! The heavy part (scores over all keys) runs on the backend; the small per-head selections
//! (top-k with forced entries) run on the host over `O(n)` scores per head, with a fixed
//! tie-break (higher score first, then lower index) so every backend picks the same keys.
//! This is the reference (and the NdArray path); the CubeCL backends (CUDA, wgpu) build the same
//! index on the device with `minference_kernels::index`, which follows these rules step for step.

pub mod block_sparse;
pub mod vertical_slash;

/// Score of index `i` for ranking: NaN ranks last.
fn key(scores: &[f32], i: u32) -> f32 {
    let s = scores[i as usize];
    if s.is_nan() {
        f32::NEG_INFINITY
    } else {
        s
    }
}

/// Best first: higher score, then lower index (a total order, so every backend agrees).
fn better(scores: &[f32], a: u32, b: u32) -> std::cmp::Ordering {
    key(scores, b).total_cmp(&key(scores, a)).then(a.cmp(&b))
}

/// `forced` (in order, deduplicated) then the best of the rest by `scores`, `budget` in all;
/// only indices for which `eligible` holds are taken. Linear time plus `O(budget log budget)`.
pub(crate) fn pick(
    scores: &[f32],
    forced: impl IntoIterator<Item = u32>,
    budget: usize,
    eligible: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut taken = vec![false; scores.len()];
    let mut out = Vec::with_capacity(budget);
    for i in forced {
        if out.len() == budget {
            return out;
        }
        if (i as usize) < scores.len() && !taken[i as usize] && eligible(i) {
            taken[i as usize] = true;
            out.push(i);
        }
    }
    let mut rest: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| !taken[i as usize] && eligible(i))
        .collect();
    let need = (budget - out.len()).min(rest.len());
    if need == 0 {
        return out;
    }
    if need < rest.len() {
        rest.select_nth_unstable_by(need - 1, |&a, &b| better(scores, a, b));
        rest.truncate(need);
    }
    rest.sort_unstable_by(|&a, &b| better(scores, a, b));
    out.extend(rest);
    out
}
