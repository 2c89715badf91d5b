//! Code the examples share (a module, not an example: Cargo builds only `examples/*.rs` and
//! `examples/*/main.rs` as examples).

use std::path::Path;

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
