//! What Vertical-Slash would keep on a real model's heads if it attended per span of 32 or 16
//! query rows instead of per 64-row block.
//!
//! A chosen diagonal crosses 64 keys of a 64-row query block, and the library's tiles (like
//! MInference's conversion) attend every query of the block to all of them: most of the pairs a
//! Vertical-Slash block computes are the width of its windows, not its diagonals
//! (`examples/window_packing.rs` counts it on synthetic inputs). A kernel whose 32- or 16-row
//! planes each attended only their own rows' windows would compute fewer pairs and keep less of
//! each row's attention. This example measures both on SmolLM2-135M pre-filling a real document
//! (this repository's book and results by default, or `--file`), head by head, with
//! MInference's default budget scaled to the prompt: the share of the causal pairs attended and
//! the recall (the mean over rows of the attention mass kept), for spans of 64, 32 and 16 rows,
//! beside the recall of the library's own index (its 64-row tiles) as a check.
//!
//! ```text
//! cargo run --release --example plane_windows                  # 4096 tokens, CPU, ~6 min
//! cargo run --release --example plane_windows -- --tokens 8192 --file my.txt
//! cargo run --release --example plane_windows -- --budget 0.5   # half the budget
//! ```

mod common;

use common::{for_each_layer, prompt_line, scaled_budget, smollm2_prompt};
use minference::estimate::vertical_slash::{clamp_budgets, scores, select};
use minference::index::{columns_outside, diagonal_ranges};
use minference::reference::build_index;
use minference::{Geometry, LayerPatterns, Pattern};
use minference_search::recall::{for_each_chunk, ChunkPrefix};

/// Query rows a span attends together: the library's blocks, then the register kernels' planes.
const HEIGHTS: [usize; 3] = [64, 32, 16];

/// The keys row `position` attends when its span of `height` rows attends Vertical-Slash's
/// `columns` and `diagonals` together: the diagonals' ranges over the span ([`diagonal_ranges`])
/// and the columns before the span outside them ([`columns_outside`]), cut at the row's own
/// position.
fn attended(
    position: usize,
    height: usize,
    columns: &[u32],
    diagonals: &[u32],
) -> Vec<(usize, usize)> {
    let start = position / height * height;
    let mut keys = diagonal_ranges(start..start + height, diagonals);
    let gathered: Vec<(usize, usize)> = columns_outside(&keys, columns, start)
        .map(|c| (c, c + 1))
        .collect();
    keys.extend(gathered);
    keys.into_iter()
        .filter(|&(a, _)| a <= position)
        .map(|(a, b)| (a, b.min(position + 1)))
        .collect()
}

/// Per head and height: pairs attended and attention mass kept, summed over rows.
#[derive(Default, Clone)]
struct Kept {
    pairs: [f64; HEIGHTS.len()],
    mass: [f64; HEIGHTS.len()],
    library: f64,
}

fn run(tokens: usize, file: Option<&str>, budget: f64) -> Result<(), String> {
    if !(budget > 0.0 && budget <= 1.0) {
        return Err(format!("--budget {budget}: a fraction in (0, 1]"));
    }
    let (loaded, ids) = smollm2_prompt(tokens, file)?;
    let model = &loaded.model;
    let config = model.config();
    let n = tokens;
    let geometry = Geometry::new(n, n, None).map_err(|e| e.to_string())?;
    let (vertical, slash) = scaled_budget(n);
    let shrink = |x: usize| ((x as f64 * budget).ceil() as usize).max(1);
    let (vertical, slash) = clamp_budgets(shrink(vertical), shrink(slash), &geometry);
    let heads = config.heads;
    let scale = 1.0 / (config.head_dim as f64).sqrt();
    let vs = LayerPatterns::uniform(Pattern::VerticalSlash { vertical, slash }, heads)
        .map_err(|e| e.to_string())?;
    let fraction = if budget < 1.0 {
        format!(" and × {budget}")
    } else {
        String::new()
    };
    println!("{}{fraction}", prompt_line(n, file, (vertical, slash)));
    let mut kept: Vec<Kept> = Vec::new();
    for_each_layer(&loaded, &ids, |q, k| {
        let estimate = scores(q, k, &geometry, scale);
        let choices: Vec<_> = (0..heads)
            .map(|h| {
                select(
                    estimate.vertical_of(h),
                    estimate.slash_of(h),
                    vertical,
                    slash,
                )
            })
            .collect();
        let index = build_index(q, k, &vs, &geometry, scale);
        let mut layer = vec![Kept::default(); heads];
        for_each_chunk(q, k, &geometry, scale, |chunk: &ChunkPrefix| {
            for (h, (columns, diagonals)) in choices.iter().enumerate() {
                layer[h].library += chunk.kept(&index, h);
                for i in 0..chunk.rows {
                    let position = chunk.first_row + i;
                    for (x, &height) in HEIGHTS.iter().enumerate() {
                        for (a, b) in attended(position, height, columns, diagonals) {
                            layer[h].pairs[x] += (b - a) as f64;
                            layer[h].mass[x] += chunk.mass(h, i, a, b);
                        }
                    }
                }
            }
        });
        kept.extend(layer);
    })?;
    let causal = (n * (n + 1) / 2) as f64;
    let mean = |f: &dyn Fn(&Kept) -> f64| kept.iter().map(f).sum::<f64>() / kept.len() as f64;
    let min = |f: &dyn Fn(&Kept) -> f64| kept.iter().map(f).fold(f64::INFINITY, f64::min);
    println!(
        "{} heads; per head, mean (lowest):\n{:>22} {:>16} {:>16}",
        kept.len(),
        "rows attending together",
        "pairs attended",
        "recall"
    );
    for (x, height) in HEIGHTS.iter().enumerate() {
        let pairs = |k: &Kept| 100.0 * k.pairs[x] / causal;
        let recall = |k: &Kept| 100.0 * k.mass[x] / n as f64;
        println!(
            "{height:>22} {:>8.1} % ({:>4.1}) {:>8.2} % ({:>5.2})",
            mean(&pairs),
            min(&pairs),
            mean(&recall),
            min(&recall)
        );
    }
    let library = |k: &Kept| 100.0 * k.library / n as f64;
    println!(
        "{:>22} {:>8} {:>8.2} % ({:>5.2})",
        "library's 64-row tiles",
        "",
        mean(&library),
        min(&library)
    );
    Ok(())
}

/// What Vertical-Slash would keep per span of 32 or 16 rows (see the module doc).
#[derive(clap::Parser)]
struct Args {
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 4096)]
    tokens: usize,
    /// Text to pre-fill (default: this repository's book and results).
    #[arg(long)]
    file: Option<String>,
    /// Fraction of the scaled budget to use (both columns and diagonals), to compare the
    /// heights at equal pairs.
    #[arg(long, default_value_t = 1.0)]
    budget: f64,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    if let Err(e) = run(args.tokens, args.file.as_deref(), args.budget) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::attended;

    #[test]
    fn a_row_attends_its_spans_windows_and_the_columns_before_it() {
        // Row 140: diagonal 100 crosses keys 28..92 for rows 128..192 but 28..44 for rows
        // 128..144; diagonal 0 crosses 128..192 or 128..144, both cut at the row: 128..141.
        // Column 5 is gathered either way; column 50 lies inside the 64-row span's window only.
        let (columns, diagonals) = ([5, 50], [100]);
        assert_eq!(
            attended(140, 64, &columns, &diagonals),
            vec![(28, 92), (128, 141), (5, 6)]
        );
        assert_eq!(
            attended(140, 16, &columns, &diagonals),
            vec![(28, 44), (128, 141), (5, 6), (50, 51)]
        );
    }
}
