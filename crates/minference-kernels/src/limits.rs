//! What one launch can address: the kernels' offsets are 32-bit.
//!
//! CubeCL kernels index with `u32` unless built for 64-bit addresses, and the register kernel is
//! register-bound (168 a unit with three query blocks a cube), so its offsets stay 32-bit. A
//! layer whose tensors or index pass 2³² elements (32 heads × 1M tokens × d = 128 is exactly
//! 2³²; Llama-3-70B's 64 heads pass it at 512K) runs in several launches instead, each over a
//! batch row and a range of KV heads: `minference::split` in the Burn crate plans and runs them.
//! Every launcher checks its buffers here first, so that an offset past the limit is a
//! [`KernelError::TooLarge`], never a wrapped offset reading another head's data.

use crate::sparse_flash::Problem;
use crate::{KernelError, BLOCK};

/// Elements a 32-bit offset reaches.
pub const MAX_ELEMENTS: usize = 1 << 32;

/// The largest buffers the launches of a layer address, by name, with their element counts:
/// contiguous `[batch, heads, n, head_dim]` tensors, an index padded to `widths`
/// (`(max_blocks, max_columns)`, see [`crate::index::widths`]) and, with Vertical-Slash heads,
/// the estimation's score buffers. Rows count to the next whole query block or tile, as the
/// kernels address them.
pub fn buffers(
    p: &Problem,
    widths: (usize, usize),
    vertical_slash: bool,
) -> Vec<(&'static str, usize)> {
    let padded = |n: usize| n.next_multiple_of(BLOCK);
    let heads = p.batch * p.heads;
    let mut list = vec![
        ("queries", heads * padded(p.n_queries) * p.head_dim),
        ("keys", p.batch * p.kv_heads * padded(p.n_keys) * p.head_dim),
        (
            "index rows",
            heads * p.query_blocks() * widths.0.max(widths.1),
        ),
        ("a query block's pairs", BLOCK * p.n_keys),
    ];
    if vertical_slash {
        list.push((
            "last-query logits",
            heads * p.n_queries.min(BLOCK) * p.n_keys,
        ));
        list.push((
            "column and diagonal scores",
            heads * (p.n_keys + p.diagonals()),
        ));
    }
    list
}

/// [`buffers`] checked against [`MAX_ELEMENTS`].
pub fn check(p: &Problem, widths: (usize, usize), vertical_slash: bool) -> Result<(), KernelError> {
    for (what, elements) in buffers(p, widths, vertical_slash) {
        check_len(what, elements)?;
    }
    Ok(())
}

/// One buffer of `elements` checked against [`MAX_ELEMENTS`].
pub fn check_len(what: &'static str, elements: usize) -> Result<(), KernelError> {
    if elements > MAX_ELEMENTS {
        return Err(KernelError::TooLarge { what, elements });
    }
    Ok(())
}

/// Elements a tensor of `shape` and `strides` spans from its first element, with dimension 2
/// (queries or keys) rounded up to a whole block as the kernels address it.
pub fn span(shape: &[usize], strides: &[usize]) -> usize {
    shape
        .iter()
        .zip(strides)
        .enumerate()
        .map(|(dim, (&len, &stride))| {
            let len = if dim == 2 {
                len.next_multiple_of(BLOCK)
            } else {
                len
            };
            len.saturating_sub(1) * stride
        })
        .sum::<usize>()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(batch: usize, heads: usize, n: usize) -> Problem {
        Problem {
            batch,
            heads,
            kv_heads: heads / 4,
            n_queries: n,
            n_keys: n,
            query_offset: 0,
            head_dim: 128,
            scale: 1.0,
        }
    }

    /// The buffer `check` refuses, if any.
    fn refused(p: &Problem, widths: (usize, usize)) -> Option<&'static str> {
        match check(p, widths, false) {
            Ok(()) => None,
            Err(KernelError::TooLarge { what, .. }) => Some(what),
            Err(other) => panic!("not a size refusal: {other}"),
        }
    }

    #[test]
    fn a_million_tokens_of_32_heads_is_the_edge() {
        let one_m = 1 << 20;
        assert_eq!(refused(&problem(1, 32, one_m), (100, 1)), None);
        assert_eq!(
            refused(&problem(1, 32, one_m + 1), (100, 1)),
            Some("queries")
        );
        assert_eq!(refused(&problem(2, 32, one_m), (100, 1)), Some("queries"));
        // Dense heads pad every row to the key blocks: 32 × 16384² entries.
        assert_eq!(
            refused(&problem(1, 32, one_m), (one_m / 64, 1)),
            Some("index rows")
        );
    }

    #[test]
    fn spans_follow_strides_and_pad_rows() {
        // Contiguous [1, 2, 100, 8]: rows round up to 128.
        assert_eq!(
            span(&[1, 2, 100, 8], &[1600, 800, 8, 1]),
            800 + 127 * 8 + 7 + 1
        );
        // A head slice of a larger tensor spans only its own heads.
        assert_eq!(span(&[1, 1, 64, 8], &[1600, 800, 8, 1]), 63 * 8 + 7 + 1);
    }
}
