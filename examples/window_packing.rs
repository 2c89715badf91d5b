//! What Vertical-Slash's 64-key tiles cost beyond its diagonals' windows, on the synthetic
//! inputs the GPU benchmarks time.
//!
//! For a 64-row query block, a chosen diagonal `o` needs the keys `first − o ..= last − o`: a
//! 64-key window. The unified index (as MInference's conversion) merges overlapping windows into
//! ranges and covers each range with whole 64-key tiles, so a range of 65 keys costs 128. Tiles
//! that could take their 64 keys across two ranges (every range is at least one window long, so
//! a tile would span at most two) would cost only the union of the windows, rounded up once per
//! query block. This example measures both on the host estimate's choices, as tile area (what
//! a kernel computes, masked entries included) over the causal pairs, next to the pairs the
//! library's own index keeps (its `density`, the benchmarks' figure). No kernel computes packed
//! tiles yet; this says how much one would save:
//!
//! ```text
//! cargo run --release --example window_packing                      # 128K tokens, 4 heads
//! cargo run --release --example window_packing -- --tokens 262144 --input powerlaw
//! ```

use indicatif::{ProgressBar, ProgressStyle};
use minference::estimate::vertical_slash::{clamp_budgets, scores, select};
use minference::reference::build_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern};

type B = minference::backend::Cpu;

/// MInference's default Vertical-Slash budget: columns and diagonals.
const BUDGET: (usize, usize) = (1000, 6096);

/// Keys a query block computes: in tiles of whole ranges, and in tiles packed across ranges.
#[derive(Default)]
struct Keys {
    tiles: usize,
    packed: usize,
}

/// The keys query block `rows` (first and last position) computes for `diagonals` and
/// `columns` (both ascending): merged diagonal windows in 64-key tiles, then the columns left of
/// the block that no window covers, gathered in chunks of 64.
fn block_keys(first: usize, last: usize, diagonals: &[u32], columns: &[u32]) -> Keys {
    // Windows `[first − o, last − o]` (clipped at key 0), merged where they overlap or touch;
    // diagonals ascending give window starts descending.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &o in diagonals.iter().rev() {
        let o = o as usize;
        if o > last {
            continue;
        }
        let (start, end) = (first.saturating_sub(o), last - o + 1);
        match ranges.last_mut() {
            Some(r) if start <= r.1 => r.1 = r.1.max(end),
            _ => ranges.push((start, end)),
        }
    }
    let covered = |c: usize| {
        let i = ranges.partition_point(|&(_, end)| end <= c);
        i < ranges.len() && ranges[i].0 <= c
    };
    let gathered = columns
        .iter()
        .filter(|&&c| (c as usize) < first && !covered(c as usize))
        .count();
    let chunks = gathered.div_ceil(64) * 64;
    let union: usize = ranges.iter().map(|(a, b)| b - a).sum();
    Keys {
        tiles: ranges
            .iter()
            .map(|(a, b)| (b - a).div_ceil(64) * 64)
            .sum::<usize>()
            + chunks,
        packed: union.div_ceil(64) * 64 + chunks,
    }
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
    let (mut causal, mut tiles, mut packed) = (0f64, 0f64, 0f64);
    let (vertical, slash) = clamp_budgets(BUDGET.0, BUDGET.1, &geometry);
    for h in 0..args.heads {
        let (columns, diagonals) = select(
            estimate.vertical_of(h),
            estimate.slash_of(h),
            vertical,
            slash,
        );
        for m in 0..blocks {
            let (first, last) = (m * 64, (m * 64 + 64).min(n) - 1);
            let rows = (last - first + 1) as f64;
            let keys = block_keys(first, last, &diagonals, &columns);
            causal += (first + last + 2) as f64 / 2.0 * rows;
            tiles += keys.tiles as f64 * rows;
            packed += keys.packed as f64 * rows;
        }
        bar.inc(blocks as u64);
    }
    bar.finish_and_clear();
    let pattern = Pattern::VerticalSlash {
        vertical: BUDGET.0,
        slash: BUDGET.1,
    };
    let patterns = LayerPatterns::uniform(pattern, args.heads).map_err(|e| e.to_string())?;
    let kept = build_index(&q, &k, &patterns, &geometry, scale).density();
    println!(
        "{n} tokens, {} input, {} heads, Vertical-Slash {BUDGET:?} (the index keeps {:.1} % of \
         the causal pairs): tiles of whole ranges compute {:.1} % of their count, tiles packed \
         across ranges {:.1} % ({:.1} % less)",
        args.input,
        args.heads,
        100.0 * kept,
        100.0 * tiles / causal,
        100.0 * packed / causal,
        100.0 * (1.0 - packed / tiles)
    );
    Ok(())
}

/// What Vertical-Slash's whole-range tiles cost beyond its windows (see the module doc).
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
    use super::block_keys;

    #[test]
    fn ranges_of_whole_windows_cost_the_same_either_way() {
        // Rows 128..=191; diagonals 0 and 65: windows 128..=191 and 63..=126, one tile each.
        let keys = block_keys(128, 191, &[0, 65], &[]);
        assert_eq!((keys.tiles, keys.packed), (128, 128));
    }

    #[test]
    fn packed_tiles_take_keys_across_ranges() {
        // Rows 1000..=1063; diagonals 0/10, 300/310 and 600/610 make three ranges of 74 keys
        // (990..=1063, 690..=763, 390..=463): two whole tiles each, or 222 keys in four tiles.
        let keys = block_keys(1000, 1063, &[0, 10, 300, 310, 600, 610], &[]);
        assert_eq!((keys.tiles, keys.packed), (6 * 64, 4 * 64));
    }

    #[test]
    fn columns_inside_a_window_are_not_gathered_again() {
        // Rows 128..=191; diagonal 100's window 28..=91 covers column 50; column 5 is gathered
        // (one chunk of 64).
        let keys = block_keys(128, 191, &[100], &[5, 50]);
        assert_eq!((keys.tiles, keys.packed), (64 + 64, 64 + 64));
    }
}
