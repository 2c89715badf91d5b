//! Code the examples share (a module, not an example: Cargo builds only `examples/*.rs` and
//! `examples/*/main.rs` as examples).

use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use minference::llama::{ensure_default_model, load, KvCache, Loaded, Logits, PrefillOptions};
use std::path::Path;

type B = minference::backend::Cpu;

/// MInference's default Vertical-Slash budget (columns, diagonals) and the length it is usually
/// quoted at.
pub const BUDGET: (usize, usize, usize) = (1000, 6096, 131_072);

/// [`BUDGET`] scaled to `n` tokens: the same fractions of the keys and the diagonals.
pub fn scaled_budget(n: usize) -> (usize, usize) {
    (
        (BUDGET.0 * n).div_ceil(BUDGET.2),
        (BUDGET.1 * n).div_ceil(BUDGET.2),
    )
}

/// SmolLM2-135M on the CPU (fetched on first use, saying so) and the ids of the first `tokens`
/// tokens of `file` (default: [`default_document`]); refused, with the length to ask for, when
/// the document is shorter.
pub fn smollm2_prompt(tokens: usize, file: Option<&str>) -> Result<(Loaded<B>, Vec<u32>), String> {
    let device = Default::default();
    let path = ensure_default_model().map_err(|e| e.to_string())?;
    let loaded = load::<B>(&path, None, &device, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let text = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?,
        None => default_document()?,
    };
    let mut ids = loaded.tokenizer.encode(&text).map_err(|e| e.to_string())?;
    if tokens == 0 || ids.len() < tokens {
        return Err(format!(
            "the document has {} tokens; pass --tokens between 1 and {}, or a longer --file",
            ids.len(),
            ids.len()
        ));
    }
    ids.truncate(tokens);
    Ok((loaded, ids))
}

/// The book's chapters and the benchmark results, in order: ~35K tokens of real prose and
/// tables.
pub fn default_document() -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("book/src"))
        .map_err(|e| format!("book/src: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files.push(root.join("benches/RESULTS.md"));
    let mut text = String::new();
    for f in files {
        text += &std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        text.push('\n');
    }
    Ok(text)
}

/// The line that says what a run pre-fills: the model, the tokens, the document and the scaled
/// Vertical-Slash budget.
pub fn prompt_line(n: usize, file: Option<&str>, (vertical, slash): (usize, usize)) -> String {
    format!(
        "SmolLM2-135M, {n} tokens of {}; Vertical-Slash ({vertical}, {slash}) = ({}, {}) at {} \
         tokens, scaled",
        file.unwrap_or("the book and benches/RESULTS.md"),
        BUDGET.0,
        BUDGET.1,
        BUDGET.2
    )
}

/// Pre-fills `ids` densely, with a progress bar over the layers, and hands `observe` each
/// layer's rotated Q `[1, heads, n, d]` and K `[1, kv_heads, n, d]` in order.
pub fn for_each_layer(
    loaded: &Loaded<B>,
    ids: &[u32],
    mut observe: impl FnMut(&Tensor<B, 4>, &Tensor<B, 4>),
) -> Result<(), String> {
    let layers = loaded.model.config().layers;
    let bar = ProgressBar::new(layers as u64).with_style(
        ProgressStyle::with_template("pre-fill {bar:30} layer {pos}/{len} {elapsed}")
            .map_err(|e| e.to_string())?,
    );
    loaded
        .model
        .forward_observed(
            ids,
            &mut KvCache::new(layers),
            &PrefillOptions::dense(),
            Logits::Last,
            &mut |done, _| bar.set_position(done as u64),
            &mut |_, q, k| observe(q, k),
        )
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    Ok(())
}
