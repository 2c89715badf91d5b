//! The dense mask an index implies: what the sparse kernel must compute, element by element.

use super::SparseIndex;
use crate::pattern::BLOCK;
use std::ops::Range;

impl SparseIndex {
    /// Row-major `[rows.len(), n_keys]` mask of head `h` of batch element `b`: true where the
    /// kernel attends. Tiles' runs are clipped to the keys and to the causal limit; single
    /// columns are taken as they are (conversion puts them before the block).
    pub fn mask_rows(&self, b: usize, h: usize, rows: Range<usize>) -> Vec<bool> {
        let n_keys = self.geometry.n_keys;
        let mut mask = vec![false; rows.len() * n_keys];
        for (i, r) in rows.enumerate() {
            let m = r / BLOCK;
            let position = self.geometry.query_offset + r;
            let row = &mut mask[i * n_keys..][..n_keys];
            for run in self.tile_runs(b, h, m).flatten() {
                let end = run.end.min(n_keys).min(position + 1);
                for cell in row.iter_mut().take(end).skip(run.start) {
                    *cell = true;
                }
            }
            for &c in self.columns(b, h, m) {
                row[c as usize] = true;
            }
        }
        mask
    }

    /// Row-major `[batch, heads, rows.len(), n_keys]` mask of every head: [`Self::mask_rows`]
    /// for each (batch, head) in order.
    pub fn mask(&self, rows: Range<usize>) -> Vec<bool> {
        let mut mask =
            Vec::with_capacity(self.batch * self.heads * rows.len() * self.geometry.n_keys);
        for b in 0..self.batch {
            for h in 0..self.heads {
                mask.extend(self.mask_rows(b, h, rows.clone()));
            }
        }
        mask
    }

    /// Checks the invariants the kernel relies on; returns a description of the first broken
    /// one. Tiles sorted and disjoint, a tile whose keys jump wholly before the block, columns
    /// sorted, unique, before the block and outside every tile, everything inside the keys.
    pub fn check_invariants(&self) -> Result<(), String> {
        let g = self.geometry;
        for b in 0..self.batch {
            for h in 0..self.heads {
                for m in 0..g.query_blocks() {
                    let first = g.block_positions(m).start;
                    let runs: Vec<[Range<usize>; 2]> = self.tile_runs(b, h, m).collect();
                    let columns = self.columns(b, h, m);
                    let at = format!("batch {b}, head {h}, block {m}");
                    // A tile's keys run from its first run's start to its last run's end.
                    let span = |r: &[Range<usize>; 2]| {
                        r[0].start..if r[1].is_empty() { r[0].end } else { r[1].end }
                    };
                    if runs.windows(2).any(|w| span(&w[1]).start < span(&w[0]).end) {
                        return Err(format!("{at}: tiles overlap or are unsorted: {runs:?}"));
                    }
                    if runs.iter().any(|r| r[0].start >= g.n_keys) {
                        return Err(format!("{at}: tile past the keys: {runs:?}"));
                    }
                    if let Some(r) = runs
                        .iter()
                        .find(|r| !r[1].is_empty() && (r[0].is_empty() || r[1].end > first))
                    {
                        return Err(format!(
                            "{at}: a tile whose keys jump must lie before the block (first \
                             position {first}) and start with a run: {r:?}"
                        ));
                    }
                    if columns.windows(2).any(|w| w[1] <= w[0]) {
                        return Err(format!("{at}: columns unsorted or repeated"));
                    }
                    for &c in columns {
                        if c as usize >= first {
                            return Err(format!(
                                "{at}: column {c} is not before the block (first position {first})"
                            ));
                        }
                        if runs.iter().flatten().any(|run| run.contains(&(c as usize))) {
                            return Err(format!("{at}: column {c} is inside a tile"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
