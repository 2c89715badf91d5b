//! How many pairs a Vertical-Slash index keeps on a real model's heads, against the synthetic
//! inputs the GPU benchmarks time.
//!
//! The speed of Vertical-Slash depends on where its diagonals fall: each chosen diagonal costs
//! a 64-key window per query block, so diagonals that cluster near the main one cover few keys
//! and diagonals spread over the context cover nearly all of them. The synthetic inputs decide
//! that by construction; this example measures it on SmolLM2-135M pre-filling a real document
//! (this repository's book and results by default, or `--file`), with MInference's default
//! budget scaled to the prompt (1000 columns and 6096 diagonals at 128K tokens: the same
//! fractions of the keys and diagonals), and prints beside it:
//! - the same budget on the `structured`, `powerlaw` and `random` synthetic inputs of the
//!   model's shape;
//! - the floor: an A-shape with as many sink keys and local keys as the budget's columns and
//!   diagonals (every diagonal next to the main one, every column at the start).
//!
//! ```text
//! cargo run --release --example slash_structure                  # 8192 tokens, CPU
//! cargo run --release --example slash_structure -- --tokens 4096 --file my.txt
//! ```

mod common;

use common::{for_each_layer, prompt_line, scaled_budget, smollm2_prompt};
use minference::reference::build_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern};

type B = minference::backend::Cpu;

/// Mean, min and max of `values`.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    (mean, min, max)
}

fn run(tokens: usize, file: Option<&str>) -> Result<(), String> {
    let device = Default::default();
    let (loaded, ids) = smollm2_prompt(tokens, file)?;
    let model = &loaded.model;
    let config = model.config();
    let n = tokens;
    let (vertical, slash) = scaled_budget(n);
    let heads = config.heads;
    let scale = 1.0 / (config.head_dim as f64).sqrt();
    let geometry = Geometry::new(n, n, None).map_err(|e| e.to_string())?;
    let vs = LayerPatterns::uniform(Pattern::VerticalSlash { vertical, slash }, heads)
        .map_err(|e| e.to_string())?;
    println!("{}\n", prompt_line(n, file, (vertical, slash)));
    let mut layers: Vec<Vec<f64>> = Vec::new();
    for_each_layer(&loaded, &ids, |q, k| {
        let index = build_index(q, k, &vs, &geometry, scale);
        layers.push((0..heads).map(|h| index.head_density(0, h)).collect());
    })?;
    println!("{:>5} {:>8} {:>8} {:>8}", "layer", "mean", "min", "max");
    for (l, densities) in layers.iter().enumerate() {
        let (mean, min, max) = summary(densities);
        println!(
            "{l:>5} {:>7.1}% {:>7.1}% {:>7.1}%",
            mean * 100.0,
            min * 100.0,
            max * 100.0
        );
    }
    let all: Vec<f64> = layers.concat();
    let (mean, min, max) = summary(&all);
    println!(
        "\n{:<34} {:>7.1}% (heads {:.1}–{:.1} %)",
        "SmolLM2 on the document",
        mean * 100.0,
        min * 100.0,
        max * 100.0
    );
    // The synthetic draws have the model's shape; the A-shape floor does not depend on the
    // input, so it is built on the random one.
    let density = |kind: InputKind, patterns: &LayerPatterns| {
        let spec = SyntheticSpec {
            batch: 1,
            heads,
            kv_heads: config.kv_heads,
            n_queries: n,
            n_keys: n,
            query_offset: None,
            head_dim: config.head_dim,
            kind,
            seed: 11,
        };
        let (q, k, _) = generate(&spec).tensors::<B>(&device);
        build_index(&q, &k, patterns, &geometry, scale).density()
    };
    for (name, kind) in [
        ("synthetic structured", InputKind::Structured),
        ("synthetic powerlaw", InputKind::PowerLaw),
        ("synthetic random", InputKind::Random),
    ] {
        println!("{name:<34} {:>7.1}%", density(kind, &vs) * 100.0);
    }
    let floor = LayerPatterns::uniform(
        Pattern::AShape {
            sink: vertical,
            local: slash,
        },
        heads,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "{:<34} {:>7.1}%",
        format!("floor: A-shape ({vertical}, {slash})"),
        density(InputKind::Random, &floor) * 100.0
    );
    Ok(())
}

/// How many pairs a Vertical-Slash index keeps on a real model's heads (see the module doc).
#[derive(clap::Parser)]
struct Args {
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 8192)]
    tokens: usize,
    /// Text to pre-fill (default: this repository's book and results).
    #[arg(long)]
    file: Option<String>,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    if let Err(e) = run(args.tokens, args.file.as_deref()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
