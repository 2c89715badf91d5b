//! Needle in a haystack with its heat-map: the same generated prompts pre-filled dense and with
//! the searched per-head patterns, the needle's retrieval drawn as depth × length.
//!
//! ```text
//! cargo run --release --example needle                              # CPU, 1K-2K tokens
//! cargo run --release --example needle -- --lengths 1024,4096,8000  # longer (slow on a CPU)
//! cargo run --release --features cuda --example needle -- --device cuda --lengths 1024,4096,8000
//! ```
//! Writes `needle.png` (or `--out FILE`).

use minference::llama::{ensure_default_model, load, PrefillOptions};
use minference::{PatternConfig, SparseAttentionBackend};
use minference_search::eval::{markdown_table, run_task, Setting};
use minference_search::plot::needle_heatmap;
use minference_search::{TaskBuilder, TaskKind};

fn run<B: SparseAttentionBackend>(
    device: B::Device,
    lengths: &[usize],
    out: &str,
) -> Result<(), String> {
    let path = ensure_default_model().map_err(|e| e.to_string())?;
    let loaded = load::<B>(&path, None, &device, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let patterns = PatternConfig::load(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/weights/patterns/SmolLM2-135M-Instruct.json"
        ),
        loaded.model.config().pattern_shape(),
    )
    .map_err(|e| e.to_string())?;
    let settings = [
        Setting {
            name: "dense".into(),
            prefill: PrefillOptions::dense(),
        },
        Setting {
            name: "searched".into(),
            prefill: PrefillOptions::sparse(patterns),
        },
    ];
    let builder = TaskBuilder::new(&loaded.tokenizer);
    let mut outcomes = Vec::new();
    for &length in lengths {
        for (i, depth) in [0.0, 0.25, 0.5, 0.75, 1.0].into_iter().enumerate() {
            let task = builder.build(TaskKind::Needle, length, depth, i as u64);
            for s in &settings {
                let o = run_task(&loaded.model, &loaded.tokenizer, &task, length, s, 12)
                    .map_err(|e| e.to_string())?;
                println!(
                    "{length:>5} depth {depth:.2} {:>8}: {} {:?}",
                    s.name,
                    if o.correct { "ok  " } else { "MISS" },
                    o.output.trim()
                );
                outcomes.push(o);
            }
        }
    }
    let names: Vec<String> = settings.iter().map(|s| s.name.clone()).collect();
    println!("\n{}", markdown_table(&outcomes, &names));
    needle_heatmap(&outcomes, &names, std::path::Path::new(out)).map_err(|e| e.to_string())?;
    println!("wrote {out}");
    Ok(())
}

#[derive(clap::Parser)]
struct Args {
    /// Prompt lengths in tokens, separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048")]
    lengths: Vec<usize>,
    /// Where the heat-map PNG goes.
    #[arg(long, default_value = "needle.png")]
    out: String,
    /// cpu, vulkan or (with --features cuda) cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() {
    let Args {
        lengths,
        out,
        device,
    } = <Args as clap::Parser>::parse();
    let result = match device.as_str() {
        "cpu" => run::<minference::backend::Cpu>(Default::default(), &lengths, &out),
        "vulkan" => run::<minference::backend::Vulkan>(Default::default(), &lengths, &out),
        #[cfg(feature = "cuda")]
        "cuda" => run::<minference::backend::Cuda<half::bf16>>(Default::default(), &lengths, &out),
        other => Err(format!(
            "unknown device {other:?}: cpu, vulkan or (with --features cuda) cuda"
        )),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
