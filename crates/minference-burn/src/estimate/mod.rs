//! Run-time estimation of each dynamic pattern's index, written with Burn tensor ops.
//!
//! The heavy part (scores over all keys) runs on the backend; the small per-head selections
//! (top-k with forced entries) run on the host over `O(n)` scores per head, with a fixed
//! tie-break (higher score first, then lower index) so every backend picks the same keys.

pub mod block_sparse;
pub mod vertical_slash;

/// Indices `0..scores.len()` ordered best first: higher score, then lower index; NaN last.
pub(crate) fn ranked(scores: &[f32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    let key = |i: u32| {
        let s = scores[i as usize];
        if s.is_nan() {
            f32::NEG_INFINITY
        } else {
            s
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order
}

/// `forced` (in order, deduplicated) then the best of the rest by `scores`, `budget` in all;
/// only indices for which `eligible` holds are taken.
pub(crate) fn pick(
    scores: &[f32],
    forced: impl IntoIterator<Item = u32>,
    budget: usize,
    eligible: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut taken = vec![false; scores.len()];
    let mut out = Vec::with_capacity(budget);
    for i in forced.into_iter().chain(ranked(scores)) {
        if out.len() == budget {
            break;
        }
        if (i as usize) < scores.len() && !taken[i as usize] && eligible(i) {
            taken[i as usize] = true;
            out.push(i);
        }
    }
    out
}
