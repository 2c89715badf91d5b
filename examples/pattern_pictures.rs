//! Draws the three patterns' masks on structured synthetic input (1024 tokens), as the kernel
//! sees them: the pictures of the book's "patterns" chapter.
//!
//! ```text
//! cargo run --release --example pattern_pictures -- book/src/images
//! ```

use minference::reference::build_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern};
use minference_search::plot::index_map;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "book/src/images".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let n = 1024;
    let spec = SyntheticSpec {
        batch: 1,
        heads: 3,
        kv_heads: 1,
        n_queries: n,
        n_keys: n,
        query_offset: None,
        head_dim: 64,
        kind: InputKind::Structured,
        seed: 3,
    };
    let (q, k, _) = generate(&spec).tensors::<minference::backend::Cpu>(&Default::default());
    let patterns = [
        (
            "a_shape",
            Pattern::AShape {
                sink: 64,
                local: 192,
            },
        ),
        (
            "vertical_slash",
            Pattern::VerticalSlash {
                vertical: 60,
                slash: 60,
            },
        ),
        ("block_sparse", Pattern::BlockSparse { top_k: 4 }),
    ];
    let layer = LayerPatterns::new(patterns.iter().map(|p| p.1).collect())?;
    let g = Geometry::new(n, n, None)?;
    let index = build_index(&q, &k, &layer, &g, 0.125);
    for (h, (name, pattern)) in patterns.iter().enumerate() {
        let path = dir.join(format!("{name}.png"));
        let title = format!("{pattern}: density {:.2}", index.head_density(0, h));
        index_map(&index, h, 4, &title, &path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
