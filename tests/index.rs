//! The unified index: every conversion's mask checked against a brute-force mask built
//! directly from the pattern's definition, cell by cell, on random geometries.

use minference::estimate::{block_sparse, vertical_slash};
use minference::index::{
    a_shape_block, block_sparse_block, cover, dense_block, diagonal_ranges, vertical_slash_block,
    vertical_slash_windows,
};
use minference::{BlockSelection, Geometry, SparseIndex, BLOCK};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random geometries, including n smaller than a block, partial blocks and query offsets.
fn geometries(rng: &mut StdRng) -> Vec<Geometry> {
    let mut out: Vec<Geometry> = [
        (1, 1, 0),
        (63, 63, 0),
        (64, 64, 0),
        (65, 65, 0),
        (1000, 1000, 0),
        (4096, 4096, 0),
        (65, 300, 100),
        (130, 500, 370),
        (1, 777, 776),
    ]
    .iter()
    .map(|&(q, k, o)| Geometry::new(q, k, Some(o)).unwrap())
    .collect();
    for _ in 0..20 {
        let n_k = rng.random_range(1..1500);
        let n_q = rng.random_range(1..=n_k);
        let offset = rng.random_range(0..=n_k - n_q);
        out.push(Geometry::new(n_q, n_k, Some(offset)).unwrap());
    }
    out
}

fn one_head(geometry: Geometry, f: impl Fn(usize) -> BlockSelection) -> SparseIndex {
    let selections: Vec<BlockSelection> = (0..geometry.query_blocks()).map(f).collect();
    let index = SparseIndex::pack(geometry, 1, 1, &selections);
    index.check_invariants().unwrap();
    index
}

fn sample(rng: &mut StdRng, below: usize, count: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..count)
        .map(|_| rng.random_range(0..below) as u32)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn vertical_slash_mask_matches_brute_force() {
    let mut rng = StdRng::seed_from_u64(1);
    for g in geometries(&mut rng) {
        let diag_count = g.last_position() + 1;
        let (nc, nd) = (rng.random_range(1..40), rng.random_range(1..60));
        let columns = sample(&mut rng, g.n_keys, nc);
        let diagonals = sample(&mut rng, diag_count, nd);
        let index = one_head(g, |m| vertical_slash_block(&g, m, &columns, &diagonals));
        let mask = index.mask_rows(0, 0, 0..g.n_queries);
        for r in 0..g.n_queries {
            let m = r / BLOCK;
            let pos = g.query_offset + r;
            let end = g.block_positions(m).end;
            // Each diagonal's 64-wide window: the tiles cover their union exactly.
            let windows: Vec<(usize, usize)> = std::iter::once(0)
                .chain(diagonals.iter().map(|&o| o as usize))
                .filter(|&o| o < end)
                .map(|o| {
                    let e = (end - o).max(BLOCK);
                    (e - BLOCK, e)
                })
                .collect();
            for j in 0..g.n_keys {
                let causal = j <= pos;
                let in_window = windows.iter().any(|&(a, b)| (a..b).contains(&j));
                let is_column = columns.contains(&(j as u32));
                let got = mask[r * g.n_keys + j];
                assert_eq!(
                    got,
                    causal && (in_window || is_column),
                    "{g:?} row {r} key {j}: attended {got}, window {in_window}, column {is_column}"
                );
                // Every chosen diagonal and column is really attended.
                if causal && (is_column || diagonals.contains(&((pos - j) as u32)) || pos == j) {
                    assert!(got, "{g:?} row {r} key {j}: chosen diagonal/column missing");
                }
            }
        }
    }
}

/// Vertical-Slash's tiles hold the windows' union less its lowest `union mod 64` keys, which
/// are gathered: whole tiles, no key computed twice, and some tiles whose keys jump a gap.
#[test]
fn vertical_slash_tiles_pack_the_windows_union() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut jumped = 0;
    for g in geometries(&mut rng) {
        let diagonals = sample(&mut rng, g.last_position() + 1, 80);
        let columns = sample(&mut rng, g.n_keys, 30);
        for m in 0..g.query_blocks() {
            let s = vertical_slash_block(&g, m, &columns, &diagonals);
            let mut union = vec![false; g.n_keys.max(BLOCK)];
            for (a, b) in vertical_slash_windows(&g, m, &diagonals) {
                union[a..b].iter_mut().for_each(|x| *x = true);
            }
            let size = union.iter().filter(|&&x| x).count();
            assert_eq!(s.tiles.len(), size / BLOCK, "{g:?} block {m}");
            let from_union = s.columns.iter().filter(|&&c| union[c as usize]).count();
            assert_eq!(from_union, size % BLOCK, "{g:?} block {m}");
            jumped += s.jumps.iter().filter(|&&j| j != 0).count();
        }
    }
    assert!(
        jumped > 0,
        "no tile jumped: the test does not reach packing"
    );
}

/// `diagonal_ranges` is the brute-force set of keys `p − o` over the rows' positions `p` and
/// the diagonals `o ≤ p` (with `o = 0`), merged into sorted disjoint ranges; on a 64-row block
/// it lies inside the tiles' windows.
#[test]
fn diagonal_ranges_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(5);
    for g in geometries(&mut rng) {
        let diagonals = sample(&mut rng, g.last_position() + 1, 40);
        for height in [64, 32, 16, 1] {
            let first = g.query_offset;
            for start in (first..=g.last_position()).step_by(height) {
                let rows = start..(start + height).min(g.last_position() + 1);
                let mut want = vec![false; g.n_keys];
                for p in rows.clone() {
                    for o in diagonals.iter().map(|&o| o as usize).chain([0]) {
                        if o <= p {
                            want[p - o] = true;
                        }
                    }
                }
                let ranges = diagonal_ranges(rows.clone(), &diagonals);
                let mut got = vec![false; g.n_keys];
                for (i, &(a, b)) in ranges.iter().enumerate() {
                    assert!(a < b, "{g:?} rows {rows:?}: empty range");
                    if i > 0 {
                        assert!(
                            ranges[i - 1].1 < a,
                            "{g:?} rows {rows:?}: ranges not disjoint"
                        );
                    }
                    got[a..b].iter_mut().for_each(|x| *x = true);
                }
                assert_eq!(got, want, "{g:?} rows {rows:?}");
            }
        }
        for m in 0..g.query_blocks() {
            let windows = vertical_slash_windows(&g, m, &diagonals);
            let inside = |k: usize| windows.iter().any(|&(a, b)| a <= k && k < b);
            for (a, b) in diagonal_ranges(g.block_positions(m), &diagonals) {
                assert!((a..b).all(inside), "{g:?} block {m}");
            }
        }
    }
}

#[test]
fn block_sparse_mask_matches_brute_force() {
    let mut rng = StdRng::seed_from_u64(2);
    for g in geometries(&mut rng) {
        let picks: Vec<Vec<u32>> = (0..g.query_blocks())
            .map(|_| sample(&mut rng, g.key_blocks(), 5))
            .collect();
        let index = one_head(g, |m| block_sparse_block(&picks[m]));
        let mask = index.mask_rows(0, 0, 0..g.n_queries);
        for r in 0..g.n_queries {
            let pos = g.query_offset + r;
            for j in 0..g.n_keys {
                let want = j <= pos && picks[r / BLOCK].contains(&((j / BLOCK) as u32));
                assert_eq!(mask[r * g.n_keys + j], want, "{g:?} row {r} key {j}");
            }
        }
    }
}

#[test]
fn a_shape_and_dense_masks_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(3);
    for g in geometries(&mut rng) {
        let (sink, local) = (rng.random_range(0..100), rng.random_range(1..300));
        let a_shape =
            one_head(g, |m| a_shape_block(&g, m, sink, local)).mask_rows(0, 0, 0..g.n_queries);
        let dense = one_head(g, |m| dense_block(&g, m)).mask_rows(0, 0, 0..g.n_queries);
        for r in 0..g.n_queries {
            let pos = g.query_offset + r;
            // A-shape at block granularity: the band starts `local − 1` before the block's first query.
            let band_start = (g.block_positions(r / BLOCK).start + 1).saturating_sub(local);
            for j in 0..g.n_keys {
                let causal = j <= pos;
                assert_eq!(
                    a_shape[r * g.n_keys + j],
                    causal && (j < sink || j >= band_start),
                    "{g:?} a-shape({sink}, {local}) row {r} key {j}"
                );
                assert_eq!(
                    dense[r * g.n_keys + j],
                    causal,
                    "{g:?} dense row {r} key {j}"
                );
            }
            // The exact token-level A-shape is always inside the block-level one.
            assert!(pos + 1 - local.min(pos + 1) >= band_start);
        }
    }
}

#[test]
fn cover_is_disjoint_and_complete() {
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..200 {
        let mut intervals: Vec<(usize, usize)> = (0..rng.random_range(1..10))
            .map(|_| {
                let a = rng.random_range(0..1000);
                (a, a + rng.random_range(1..200))
            })
            .collect();
        intervals.sort_unstable();
        let tiles = cover(&intervals);
        assert!(
            tiles.windows(2).all(|w| w[1] >= w[0] + BLOCK as u32),
            "overlap in {tiles:?}"
        );
        for &(a, b) in &intervals {
            for j in a..b {
                assert!(
                    tiles
                        .iter()
                        .any(|&t| (t as usize..t as usize + BLOCK).contains(&j)),
                    "{j} of {a}..{b} uncovered"
                );
            }
        }
    }
}

#[test]
fn vertical_slash_selection_forces_and_budgets() {
    let vertical: Vec<f32> = (0..500)
        .map(|i| if i == 321 { 5.0 } else { 0.01 * (i % 7) as f32 })
        .collect();
    let slash: Vec<f32> = (0..500).map(|o| if o == 250 { 9.0 } else { 0.0 }).collect();
    let g = Geometry::new(500, 500, None).unwrap();
    let (v, s) = vertical_slash::clamp_budgets(10, 10, &g);
    assert_eq!((v, s), (30, 50), "budgets clamp up to the minimums");
    let (columns, diagonals) = vertical_slash::select(&vertical, &slash, 40, 120);
    assert_eq!(columns.len(), 40);
    assert_eq!(diagonals.len(), 120);
    assert!(
        (0..30).all(|c| columns.contains(&c)),
        "first 30 columns forced"
    );
    assert!(
        (0..100).all(|o| diagonals.contains(&o)),
        "100 nearest diagonals forced"
    );
    assert!(
        columns.contains(&321) && diagonals.contains(&250),
        "best scores picked"
    );
    // Ties break towards lower indices, so every backend picks the same keys.
    assert!(
        columns.contains(&90) && !columns.contains(&97),
        "{columns:?}"
    );
    let big = Geometry::new(100, 100, None).unwrap();
    assert_eq!(
        vertical_slash::clamp_budgets(1000, 6096, &big),
        (100, 100),
        "budgets clamp down to n"
    );
}

#[test]
fn block_selection_keeps_forced_and_causal_blocks() {
    let g = Geometry::new(200, 1000, Some(700)).unwrap();
    // Query block 1: rows 64..128 at positions 764..828 → diagonal key blocks 11 and 12.
    let mut row = vec![0.0f32; g.key_blocks()];
    row[5] = 3.0;
    row[15] = 100.0; // in the future: never picked
    let picks = block_sparse::select(&row, &g, 1, 5);
    assert_eq!(picks, vec![0, 5, 10, 11, 12]);
    let picks = block_sparse::select(&row, &g, 1, 2);
    assert_eq!(
        picks,
        vec![0, 10, 11, 12],
        "forced blocks exceed a small budget"
    );
}
