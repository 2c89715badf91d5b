//! For each pattern: density and error against dense attention on structured synthetic input.
//!
//! ```text
//! cargo run --release --example patterns            # CPU (NdArray)
//! cargo run --release --example patterns -- vulkan  # Vulkan (lavapipe without a GPU)
//! ```

use minference::reference::{build_index, dense_attention};
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{sparse_attention, AttentionOptions, Geometry, LayerPatterns, Pattern};
use std::time::Instant;

fn run<B: minference::SparseAttentionBackend>(
    device: &B::Device,
    name: &str,
) -> Result<(), minference::MinferenceError> {
    let (n, heads, kv_heads, d) = (4096, 4, 1, 64);
    println!("backend: {name}; n = {n}, {heads} query heads / {kv_heads} KV head, head_dim {d}\n");
    println!(
        "{:<34} {:>8} {:>12} {:>12} {:>9}",
        "pattern", "input", "density", "rel. error", "ms"
    );
    for kind in [InputKind::Structured, InputKind::Random] {
        let spec = SyntheticSpec {
            batch: 1,
            heads,
            kv_heads,
            n_queries: n,
            n_keys: n,
            query_offset: None,
            head_dim: d,
            kind,
            seed: 42,
        };
        let (q, k, v) = generate(&spec).tensors::<B>(device);
        let geometry = Geometry::new(n, n, None)?;
        let scale = 1.0 / (d as f64).sqrt();
        let dense = dense_attention(&q, &k, &v, &geometry, scale);
        let patterns = [
            Pattern::Dense,
            Pattern::AShape {
                sink: 64,
                local: 512,
            },
            Pattern::VerticalSlash {
                vertical: 256,
                slash: 512,
            },
            Pattern::VerticalSlash {
                vertical: 1000,
                slash: 6096,
            },
            Pattern::BlockSparse { top_k: 8 },
            Pattern::BlockSparse { top_k: 100 },
        ];
        for pattern in patterns {
            let layer = LayerPatterns::uniform(pattern, heads)?;
            let start = Instant::now();
            let out = sparse_attention(
                q.clone(),
                k.clone(),
                v.clone(),
                &layer,
                &AttentionOptions::default(),
            )?;
            let diff = (out - dense.clone())
                .powi_scalar(2)
                .sum()
                .into_scalar()
                .to_string()
                .parse::<f64>()
                .unwrap_or(f64::NAN);
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let norm = dense
                .clone()
                .powi_scalar(2)
                .sum()
                .into_scalar()
                .to_string()
                .parse::<f64>()
                .unwrap_or(f64::NAN);
            let density = build_index(&q, &k, &layer, &geometry, scale).density();
            println!(
                "{:<34} {:>8} {:>11.1}% {:>12.2e} {:>9.0}",
                pattern.to_string(),
                format!("{kind:?}").to_lowercase(),
                density * 100.0,
                (diff / norm).sqrt(),
                ms
            );
        }
    }
    Ok(())
}

fn main() -> Result<(), minference::MinferenceError> {
    match std::env::args().nth(1).as_deref() {
        #[cfg(feature = "vulkan")]
        Some("vulkan") => run::<minference::backend::Vulkan>(&Default::default(), "vulkan"),
        #[cfg(feature = "ndarray")]
        None | Some("cpu") => run::<minference::backend::Cpu>(&Default::default(), "cpu (ndarray)"),
        Some(other) => {
            eprintln!("unknown device {other:?}; use `cpu` or `vulkan`");
            std::process::exit(2)
        }
        #[allow(unreachable_patterns)]
        None => Ok(()),
    }
}
