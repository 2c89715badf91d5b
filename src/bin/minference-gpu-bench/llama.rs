//! Time to first token of a random-weight Llama-3.1-8B-shaped model.

use burn::tensor::backend::Backend;
use minference::Pattern;
use std::time::Instant;

use crate::{Cuda, Device};

/// Time to first token of a random-weight Llama-3.1-8B-shaped model (bf16): dense, every head
/// on Block-Sparse top-100, and every head on Vertical-Slash (1000, 6096) (MInference's default
/// head), one pre-fill each after a warm-up pre-fill of every setting (kernel compilation and
/// matmul autotuning are not timed).
///
/// `chunk_rows` lists the row chunks of the row-wise parts to time (the model's default when
/// empty): each chunk size is warmed up and timed on its own, since the matmul shapes change
/// with it (and, built with `autotune`, Burn tunes each new shape).
pub(crate) fn llama_e2e(device: &Device, sizes: &[usize], chunk_rows: &[usize]) -> Vec<String> {
    use minference::llama::{KvCache, Llama, LlamaConfig, Logits, PrefillOptions};
    type B = Cuda<half::bf16>;
    let longest = sizes.iter().copied().max().unwrap_or(0);
    let config = LlamaConfig::llama3_8b(longest.max(8192));
    let shape = config.pattern_shape();
    let layers = config.layers;
    let vocab = config.vocab as u64;
    let start = Instant::now();
    let model = Llama::<B>::random(config, device).expect("model");
    <B as Backend>::sync(device).unwrap();
    println!(
        "llama3-8b-shaped (random bf16 weights) built in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let uniform = |pattern| {
        PrefillOptions::sparse(minference::PatternConfig::uniform(pattern, shape).unwrap())
    };
    let chunk_rows = if chunk_rows.is_empty() {
        vec![PrefillOptions::default().chunk_rows]
    } else {
        chunk_rows.to_vec()
    };
    let settings = [
        ("dense", PrefillOptions::dense()),
        (
            "block_sparse(top_k=100)",
            uniform(Pattern::BlockSparse { top_k: 100 }),
        ),
        (
            "vertical_slash(1000, 6096)",
            uniform(Pattern::VerticalSlash {
                vertical: 1000,
                slash: 6096,
            }),
        ),
    ];
    // A fixed pseudo-random prompt (the time depends on the length only).
    let prompt = |n: usize| -> Vec<u32> {
        (0..n as u64)
            .map(|i| ((i * 2_654_435_761 + 12_345) % vocab) as u32)
            .collect()
    };
    let prefill = |tokens: &[u32], options: &PrefillOptions| {
        let mut cache = KvCache::new(layers);
        let start = Instant::now();
        let out = model
            .forward(tokens, &mut cache, options, Logits::Last, &mut |_, _| {})
            .expect("forward");
        let _ = out.logits.into_data();
        let density = out.density.iter().sum::<f64>() / out.density.len() as f64;
        (start.elapsed().as_secs_f64() * 1e3, density)
    };
    // The warm-up must run every kernel the timed pre-fills run. Block-Sparse top-100 keeps
    // over 90 % of the pairs at 8K tokens (63 % at 16K), where the dense switch runs the
    // index-free kernel instead, so a shorter warm-up leaves the indexed kernel's compilation
    // (seconds of NVRTC) inside the first timed sparse pre-fill.
    const WARM_TOKENS: usize = 16384;
    let warm = prompt(WARM_TOKENS);
    let mut rows = Vec::new();
    for &chunk in &chunk_rows {
        let with_chunk = |options: &PrefillOptions| PrefillOptions {
            chunk_rows: chunk,
            ..options.clone()
        };
        // The warm-up's own time shows what the first pre-fill of a process pays: NVRTC
        // compilation and, where Burn's autotune cache (under `target/`) is cold, autotuning.
        for (name, options) in &settings {
            let (ms, density) = prefill(&warm, &with_chunk(options));
            println!(
                "warm-up at {WARM_TOKENS} tokens, chunks of {chunk} rows, {name}: {ms:.0} ms, mean density {:.1}%",
                density * 100.0
            );
        }
        for &n in sizes {
            let tokens = prompt(n);
            let mut dense_ms = 0.0;
            for (name, options) in &settings {
                let (ms, density) = prefill(&tokens, &with_chunk(options));
                if *name == "dense" {
                    dense_ms = ms;
                }
                let line = format!(
                    "llama3-8b e2e n={n:>7} chunk={chunk:>6} {name:<28} time to first token {ms:>10.1} ms  mean density {:>5.1}%  dense/this {:.2}x",
                    density * 100.0,
                    dense_ms / ms
                );
                println!("{line}");
                rows.push(line);
            }
        }
    }
    rows
}
