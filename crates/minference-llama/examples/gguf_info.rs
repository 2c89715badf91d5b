//! Prints a GGUF file's model metadata and tensor table summary.
//!
//! ```text
//! cargo run -p minference-llama --example gguf_info -- weights/cache/SmolLM2-135M-Instruct.Q4_1.gguf
//! ```

use minference_llama::gguf::{Gguf, Value};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: gguf_info FILE.gguf   (weights/fetch.sh fetches the default model)");
        std::process::exit(2);
    };
    let gguf = match Gguf::open(&path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!(
        "{path}: GGUF v{}, {} metadata entries, {} tensors",
        gguf.version,
        gguf.metadata.len(),
        gguf.tensors.len()
    );
    for (key, value) in &gguf.metadata {
        match value {
            Value::Array(items) => println!("  {key}: [{} items]", items.len()),
            other => println!("  {key}: {other:?}"),
        }
    }
    let mut by_type = std::collections::BTreeMap::new();
    for t in &gguf.tensors {
        *by_type.entry(format!("{:?}", t.ggml_type)).or_insert(0u64) += t.elements();
    }
    println!("  elements by type: {by_type:?}");
    // Decode every tensor: a quick sanity check of the weights (finite, plausible scale).
    let (mut finite, mut total, mut sum_sq) = (0u64, 0u64, 0f64);
    for t in &gguf.tensors {
        match gguf.dequantize(t) {
            Ok(values) => {
                total += values.len() as u64;
                finite += values.iter().filter(|x| x.is_finite()).count() as u64;
                sum_sq += values.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            }
            Err(e) => println!("  {e}"),
        }
    }
    println!(
        "  decoded {total} values, {finite} finite, rms {:.4}",
        (sum_sq / total.max(1) as f64).sqrt()
    );
}
