//! Sparse attention in your own Burn model: one call on plain `[batch, heads, seq, head_dim]`
//! tensors, one pattern per query head.
//!
//! ```text
//! cargo run --release --example own_model                 # CPU (NdArray)
//! cargo run --release --example own_model -- vulkan       # Vulkan (lavapipe without a GPU)
//! cargo run --release --features cuda --example own_model -- cuda
//! ```

use burn::prelude::ToElement;
use burn::tensor::{Distribution, Tensor};
use minference::reference::dense_attention;
use minference::{
    sparse_attention, AttentionOptions, Geometry, LayerPatterns, MinferenceError, Pattern,
    SparseAttentionBackend,
};

/// A toy grouped-query attention layer: 8 query heads sharing 2 KV heads.
struct Attention<B: SparseAttentionBackend> {
    wq: Tensor<B, 2>,
    wk: Tensor<B, 2>,
    wv: Tensor<B, 2>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl<B: SparseAttentionBackend> Attention<B> {
    fn new(hidden: usize, heads: usize, kv_heads: usize, device: &B::Device) -> Self {
        let head_dim = hidden / heads;
        let init =
            |out: usize| Tensor::random([hidden, out], Distribution::Normal(0.0, 0.05), device);
        Self {
            wq: init(heads * head_dim),
            wk: init(kv_heads * head_dim),
            wv: init(kv_heads * head_dim),
            heads,
            kv_heads,
            head_dim,
        }
    }

    /// Splits `x` (`[batch, seq, hidden]`) into q, k, v of shape `[batch, heads, seq, head_dim]`.
    fn qkv(&self, x: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [b, n, _] = x.dims();
        let split = |w: &Tensor<B, 2>, h: usize| {
            x.clone()
                .matmul(w.clone().unsqueeze())
                .reshape([b, n, h, self.head_dim])
                .swap_dims(1, 2)
        };
        (
            split(&self.wq, self.heads),
            split(&self.wk, self.kv_heads),
            split(&self.wv, self.kv_heads),
        )
    }

    /// The layer's attention with one pattern per query head.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        patterns: &LayerPatterns,
    ) -> Result<Tensor<B, 4>, MinferenceError> {
        let (q, k, v) = self.qkv(x);
        sparse_attention(q, k, v, patterns, &AttentionOptions::default())
    }
}

fn run<B: SparseAttentionBackend>(device: B::Device) -> Result<(), MinferenceError> {
    let (n, hidden) = (2048, 512);
    let layer = Attention::<B>::new(hidden, 8, 2, &device);
    let x = Tensor::<B, 3>::random([1, n, hidden], Distribution::Normal(0.0, 1.0), &device);
    // Two heads of each pattern: what a searched config would give a real model.
    let patterns = LayerPatterns::new(vec![
        Pattern::Dense,
        Pattern::Dense,
        Pattern::AShape {
            sink: 64,
            local: 512,
        },
        Pattern::AShape {
            sink: 64,
            local: 256,
        },
        Pattern::VerticalSlash {
            vertical: 256,
            slash: 512,
        },
        Pattern::VerticalSlash {
            vertical: 100,
            slash: 200,
        },
        Pattern::BlockSparse { top_k: 8 },
        Pattern::BlockSparse { top_k: 4 },
    ])?;
    let out = layer.forward(x.clone(), &patterns)?;
    let (q, k, v) = layer.qkv(x);
    let index = B::build_index(&q, &k, &patterns, Geometry::new(n, n, None)?, 1.0 / 8.0)?;
    let dense = dense_attention(&q, &k, &v, &index.geometry, 1.0 / 8.0);
    println!(
        "engine: {}; n = {n}, 8 query heads / 2 KV heads",
        B::engine(&device)
    );
    for (h, p) in patterns.heads().iter().enumerate() {
        let o = out.clone().narrow(1, h, 1);
        let d = dense.clone().narrow(1, h, 1);
        let err = (o - d.clone())
            .powi_scalar(2)
            .sum()
            .into_scalar()
            .to_f64()
            .sqrt()
            / d.powi_scalar(2).sum().into_scalar().to_f64().sqrt();
        println!(
            "head {h}: {:<32} density {:.3}  relative error vs dense {:.2e}",
            p.to_string(),
            index.head_density(0, h),
            err
        );
    }
    Ok(())
}

fn main() -> Result<(), MinferenceError> {
    match std::env::args().nth(1).as_deref() {
        None | Some("cpu") => run::<minference::backend::Cpu>(Default::default()),
        Some("vulkan") => run::<minference::backend::Vulkan>(Default::default()),
        #[cfg(feature = "cuda")]
        Some("cuda") => run::<minference::backend::Cuda<half::bf16>>(Default::default()),
        Some(other) => {
            eprintln!("unknown device {other:?}: cpu, vulkan or (with --features cuda) cuda");
            std::process::exit(2);
        }
    }
}
