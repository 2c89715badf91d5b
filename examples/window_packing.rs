//! What packing Vertical-Slash's diagonal windows into tiles saves, on the synthetic inputs the
//! GPU benchmarks time.
//!
//! For a 64-row query block, a chosen diagonal `o` needs a 64-key window; the windows merge
//! into ranges. MInference's conversion covers each range with 64-key tiles laid from its
//! start, so a range of 65 keys costs 128. The unified index cuts the ranges' keys as one
//! stream instead (`minference::index::vertical_slash_block`): a tile may take the end of one
//! range and the start of the next (its keys *jump*), and the union's lowest `union mod 64` keys
//! are gathered, so the tiles compute the windows' union and no more. This example counts both
//! on the host estimate's choices, as tile area (what a kernel computes, masked entries
//! included) over the causal pairs, and checks its count of the library's tiles against the
//! index that `build_index` makes. It also counts the windows' union for shorter query blocks
//! (32 and 16 rows, a diagonal then crossing 32 or 16 keys of each): what a kernel would compute
//! if each 32- or 16-row plane of a 64-row block skipped the tiles its own rows do not need.
//!
//! ```text
//! cargo run --release --example window_packing                      # 128K tokens, 4 heads
//! cargo run --release --example window_packing -- --tokens 262144 --input powerlaw
//! ```

use indicatif::{ProgressBar, ProgressStyle};
use minference::estimate::vertical_slash::{clamp_budgets, scores, select};
use minference::index::{
    columns_outside, cover, diagonal_ranges, vertical_slash_block, vertical_slash_windows,
};
use minference::reference::build_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern};

type B = minference::backend::Cpu;

/// MInference's default Vertical-Slash budget: columns and diagonals.
const BUDGET: (usize, usize) = (1000, 6096);

/// Keys a query block computes: tiles laid from each range's start, and the library's tiles.
struct Keys {
    ranges: usize,
    packed: usize,
}

/// The keys block `m` computes for `columns` and `diagonals` (both ascending), tiles and
/// gathered columns (in chunks of 64) together: laid from each range's start ([`cover`] of the
/// windows, the columns outside them gathered), and as the library packs them
/// ([`vertical_slash_block`]).
fn block_keys(geometry: &Geometry, m: usize, columns: &[u32], diagonals: &[u32]) -> Keys {
    let packed = vertical_slash_block(geometry, m, columns, diagonals);
    let tiles = cover(&vertical_slash_windows(geometry, m, diagonals));
    let first = geometry.block_positions(m).start;
    let inside = |c: usize| {
        let after = tiles.partition_point(|&t| t as usize <= c);
        after > 0 && c < tiles[after - 1] as usize + 64
    };
    let gathered = columns
        .iter()
        .map(|&c| c as usize)
        .filter(|&c| c < first && !inside(c))
        .count();
    Keys {
        ranges: (tiles.len() + gathered.div_ceil(64)) * 64,
        packed: (packed.tiles.len() + packed.columns.len().div_ceil(64)) * 64,
    }
}

/// Query-block heights compared for the windows' union (the library's blocks are 64 rows).
const HEIGHTS: [usize; 3] = [64, 32, 16];

/// Keys the query rows `rows` need for `diagonals` (ascending) and `columns`: the diagonals'
/// ranges ([`diagonal_ranges`]) and the columns before `rows.start` outside them
/// ([`columns_outside`]). Counted on one
/// rule for every height, so that the heights compare (the 64-row count differs from the
/// library's tiles by their rounding).
fn window_union(rows: std::ops::Range<usize>, columns: &[u32], diagonals: &[u32]) -> usize {
    let ranges = diagonal_ranges(rows.clone(), diagonals);
    let gathered = columns_outside(&ranges, columns, rows.start).count();
    ranges.iter().map(|(start, end)| end - start).sum::<usize>() + gathered
}

fn run(args: &Args) -> Result<(), String> {
    let n = args.tokens;
    let kind = match args.input.as_str() {
        "structured" => InputKind::Structured,
        "powerlaw" => InputKind::PowerLaw,
        "random" => InputKind::Random,
        other => {
            return Err(format!(
                "unknown input {other:?}: structured, powerlaw or random"
            ))
        }
    };
    if n == 0 || args.heads == 0 {
        return Err("--tokens and --heads must be at least 1".into());
    }
    let spec = SyntheticSpec {
        batch: 1,
        heads: args.heads,
        kv_heads: args.heads,
        n_queries: n,
        n_keys: n,
        query_offset: None,
        head_dim: 128,
        kind,
        seed: 3,
    };
    let device = Default::default();
    let (q, k, _) = generate(&spec).tensors::<B>(&device);
    let geometry = Geometry::new(n, n, None).map_err(|e| e.to_string())?;
    let scale = 1.0 / 128f64.sqrt();
    let estimate = scores(&q, &k, &geometry, scale);
    let blocks = n.div_ceil(64);
    let bar = ProgressBar::new((args.heads * blocks) as u64).with_style(
        ProgressStyle::with_template("query blocks {bar:30} {pos}/{len} {elapsed}")
            .map_err(|e| e.to_string())?,
    );
    let (mut causal, mut ranges, mut packed) = (0f64, 0f64, 0f64);
    let mut union = [0f64; HEIGHTS.len()];
    let mut tile_count = 0u64;
    let (vertical, slash) = clamp_budgets(BUDGET.0, BUDGET.1, &geometry);
    for h in 0..args.heads {
        let (columns, diagonals) = select(
            estimate.vertical_of(h),
            estimate.slash_of(h),
            vertical,
            slash,
        );
        for m in 0..blocks {
            let positions = geometry.block_positions(m);
            let rows = positions.len() as f64;
            let keys = block_keys(&geometry, m, &columns, &diagonals);
            causal += (positions.start + positions.end + 1) as f64 / 2.0 * rows;
            ranges += keys.ranges as f64 * rows;
            tile_count += (keys.packed / 64) as u64;
            packed += keys.packed as f64 * rows;
            for (sum, height) in union.iter_mut().zip(HEIGHTS) {
                for part in positions.clone().step_by(height) {
                    let part = part..(part + height).min(positions.end);
                    let keys = window_union(part.clone(), &columns, &diagonals);
                    *sum += (keys * part.len()) as f64;
                }
            }
        }
        bar.inc(blocks as u64);
    }
    bar.finish_and_clear();
    let pattern = Pattern::VerticalSlash {
        vertical: BUDGET.0,
        slash: BUDGET.1,
    };
    let patterns = LayerPatterns::uniform(pattern, args.heads).map_err(|e| e.to_string())?;
    let index = build_index(&q, &k, &patterns, &geometry, scale);
    // The same choices through the library's whole path: the same tiles, or this is wrong.
    if index.computed_tiles() != tile_count {
        return Err(format!(
            "counted {tile_count} tiles, the index computes {}",
            index.computed_tiles()
        ));
    }
    let kept = index.density();
    // Jumping tiles cost the kernels more than tiles of consecutive keys (see RESULTS.md).
    let jumping = index.block_jump.iter().filter(|&&j| j != 0).count();
    println!(
        "{n} tokens, {} input, {} heads, Vertical-Slash {BUDGET:?} (the index keeps {:.1} % of \
         the causal pairs): tiles from each range's start would compute {:.1} % of their count, \
         the packed tiles compute {:.1} % ({:.1} % less; {:.1} % of them jump)",
        args.input,
        args.heads,
        100.0 * kept,
        100.0 * ranges / causal,
        100.0 * packed / causal,
        100.0 * (1.0 - packed / ranges),
        100.0 * jumping as f64 / tile_count as f64
    );
    let shares: Vec<String> = union
        .iter()
        .map(|u| format!("{:.1} %", 100.0 * u / causal))
        .collect();
    println!(
        "the windows' union with the columns outside it, on query blocks of {} rows: {} of the \
         causal pairs",
        HEIGHTS.map(|h| h.to_string()).join(" / "),
        shares.join(" / ")
    );
    Ok(())
}

/// What packing Vertical-Slash's windows saves (see the module doc).
#[derive(clap::Parser)]
struct Args {
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 131_072)]
    tokens: usize,
    /// Heads to draw (each its own planted structure).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Synthetic input: structured, powerlaw or random.
    #[arg(long, default_value = "structured")]
    input: String,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{block_keys, window_union};
    use minference::Geometry;

    #[test]
    fn ranges_of_whole_windows_cost_the_same_either_way() {
        // Block 2 (positions 128..192); diagonals 0 and 65: windows 128..192 and 63..127, one
        // tile each.
        let g = Geometry::new(192, 192, None).unwrap();
        let keys = block_keys(&g, 2, &[], &[0, 65]);
        assert_eq!((keys.ranges, keys.packed), (128, 128));
    }

    #[test]
    fn packed_tiles_take_keys_across_ranges() {
        // Block 16 (positions 1024..1088); diagonals 0/10, 300/310 and 600/610 make three
        // ranges of 74 keys (1014..1088, 714..788, 414..488): two tiles each, or 222 keys in
        // three tiles and a chunk of 30 gathered keys.
        let g = Geometry::new(1088, 1088, None).unwrap();
        let keys = block_keys(&g, 16, &[], &[0, 10, 300, 310, 600, 610]);
        assert_eq!((keys.ranges, keys.packed), (6 * 64, 4 * 64));
    }

    #[test]
    fn shorter_query_blocks_need_narrower_windows() {
        // Rows 128..192, diagonals 0 and 100: windows 128..192 and 28..92 (128 keys); column 5
        // is outside both, column 50 inside. Rows 128..144: windows 128..144 and 28..44, both
        // columns outside them.
        let (columns, diagonals) = ([5, 50], [100]);
        assert_eq!(window_union(128..192, &columns, &diagonals), 129);
        assert_eq!(window_union(128..144, &columns, &diagonals), 34);
        // Overlapping windows count once: diagonals 0 and 10 on rows 128..192 cover 118..192.
        assert_eq!(window_union(128..192, &[], &[0, 10]), 74);
    }

    #[test]
    fn columns_inside_a_window_are_not_gathered_again() {
        // Block 2; diagonal 100's window 28..92 covers column 50; column 5 is gathered (one
        // chunk of 64); diagonal 0 is always in (its window 128..192).
        let g = Geometry::new(192, 192, None).unwrap();
        let keys = block_keys(&g, 2, &[5, 50], &[100]);
        assert_eq!((keys.ranges, keys.packed), (3 * 64, 3 * 64));
    }
}
