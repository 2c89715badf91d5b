//! Long-document QA: a generated annual report with checkable facts, pre-filled once dense and
//! once sparse (the searched per-head patterns), then questions answered from each cache.
//! Prints pre-fill time, density and each answer side by side.
//!
//! ```text
//! cargo run --release --example long_document_qa                      # CPU, ~3.5K tokens
//! cargo run --release --example long_document_qa -- --tokens 7000
//! cargo run --release --features cuda --example long_document_qa -- --device cuda
//! ```

use minference::llama::{
    ensure_default_model, generate_after, load, GenerateOptions, KvCache, Logits, PrefillOptions,
    Sampling,
};
use minference::{PatternConfig, SparseAttentionBackend};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use std::time::Instant;

/// Facts planted in the report: (sentence, question, answer).
const FACTS: &[(&str, &str, &str)] = &[
    (
        "The cooperative elected Marta Okonkwo as its new treasurer in March.",
        "Who was elected treasurer?",
        "Okonkwo",
    ),
    (
        "The northern lighthouse was repainted at a cost of 48,300 crowns.",
        "How much did repainting the northern lighthouse cost?",
        "48,300",
    ),
    (
        "Membership grew to 1,274 households by the end of the year.",
        "How many households were members at the end of the year?",
        "1,274",
    ),
    (
        "The annual festival moved to the harbour town of Vellmar.",
        "Where did the annual festival move to?",
        "Vellmar",
    ),
];

const TOPICS: &[&str] = &[
    "the fishing fleet",
    "the harbour wall",
    "the school boat",
    "the fuel depot",
    "the fog horn",
    "the winter storms",
    "the ferry timetable",
    "the net workshop",
    "the pier lights",
];
const EVENTS: &[&str] = &[
    "was inspected by the regional board and found in good order",
    "needed repairs after the autumn gales",
    "was discussed at length at the quarterly meeting",
    "received a small grant from the county",
    "was used more often than in previous years",
    "caused some delays during the busiest weeks",
];

/// A report of about `tokens` tokens with the facts spread through it.
fn report(tokenizer: &minference::llama::Tokenizer, tokens: usize) -> String {
    let mut rng = StdRng::seed_from_u64(7);
    let mut text = String::from("Annual report of the Northwind Lighthouse Cooperative.\n\n");
    let per_fact = tokens / (FACTS.len() + 1);
    for (sentence, _, _) in FACTS.iter().map(|f| (f.0, (), ())).chain([("", (), ())]) {
        let target = tokenizer.encode(&text).map_or(0, |t| t.len()) + per_fact;
        while tokenizer.encode(&text).map_or(0, |t| t.len()) < target {
            for _ in 0..8 {
                text.push_str(&format!(
                    "This year {} {}. ",
                    TOPICS.choose(&mut rng).expect("non-empty"),
                    EVENTS.choose(&mut rng).expect("non-empty")
                ));
            }
            text.push('\n');
        }
        text.push_str(sentence);
        text.push('\n');
    }
    text
}

fn run<B: SparseAttentionBackend>(device: B::Device, tokens: usize) -> Result<(), String> {
    let path = ensure_default_model().map_err(|e| e.to_string())?;
    let loaded = load::<B>(&path, None, &device, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let patterns_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/patterns/SmolLM2-135M-Instruct.json"
    );
    let patterns = PatternConfig::load(patterns_path, model.config().pattern_shape())
        .map_err(|e| e.to_string())?;
    let document = report(tokenizer, tokens);
    let doc_tokens = tokenizer.encode(&document).map_err(|e| e.to_string())?;
    println!(
        "document: {} tokens; engine: {}\n",
        doc_tokens.len(),
        B::engine(&device)
    );
    let mut caches = Vec::new();
    for (name, prefill) in [
        ("dense", PrefillOptions::dense()),
        ("sparse", PrefillOptions::sparse(patterns)),
    ] {
        let mut cache = KvCache::new(model.config().layers);
        let started = Instant::now();
        let f = model
            .forward(
                &doc_tokens,
                &mut cache,
                &prefill,
                Logits::Last,
                &mut |_, _| {},
            )
            .map_err(|e| e.to_string())?;
        let density = f.density.iter().sum::<f64>() / f.density.len() as f64;
        println!(
            "{name:>6} pre-fill: {:.2} s, mean density {:.3}",
            started.elapsed().as_secs_f64(),
            density
        );
        caches.push((name, cache));
    }
    println!();
    let options = GenerateOptions {
        max_tokens: 12,
        sampling: Sampling::Greedy,
        stop_on_eos: true,
        prefill: PrefillOptions::dense(),
    };
    let mut score = vec![0; caches.len()];
    for (_, question, answer) in FACTS {
        println!("Q: {question} (expected: {answer})");
        let prompt = tokenizer
            .encode(&format!("\nQuestion: {question}\nAnswer:"))
            .map_err(|e| e.to_string())?;
        for (i, (name, cache)) in caches.iter().enumerate() {
            let mut cache = cache.clone();
            let g = generate_after(
                model,
                &mut cache,
                &prompt,
                &options,
                &mut |_| {},
                &mut |_, _| {},
            )
            .map_err(|e| e.to_string())?;
            let text = tokenizer
                .decode(&g.tokens, true)
                .map_err(|e| e.to_string())?;
            let ok = text.contains(answer);
            score[i] += ok as usize;
            println!(
                "  {name:>6}: {} {:?}",
                if ok { "ok  " } else { "MISS" },
                text.trim()
            );
        }
    }
    println!();
    for (i, (name, _)) in caches.iter().enumerate() {
        println!("{name:>6}: {}/{} answers correct", score[i], FACTS.len());
    }
    Ok(())
}

#[derive(clap::Parser)]
struct Args {
    /// Length of the generated report in tokens.
    #[arg(long, default_value_t = 3500)]
    tokens: usize,
    /// cpu, vulkan or (with --features cuda) cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() {
    let Args { tokens, device } = <Args as clap::Parser>::parse();
    let result = match device.as_str() {
        "cpu" => run::<minference::backend::Cpu>(Default::default(), tokens),
        "vulkan" => run::<minference::backend::Vulkan>(Default::default(), tokens),
        #[cfg(feature = "cuda")]
        "cuda" => run::<minference::backend::Cuda<half::bf16>>(Default::default(), tokens),
        other => Err(format!(
            "unknown device {other:?}: cpu, vulkan or (with --features cuda) cuda"
        )),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
