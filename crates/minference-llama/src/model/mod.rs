//! The Llama-family model in Burn: embedding, layers, final norm, output projection.

mod cache;
mod layer;
mod norm;
mod rope;

pub use cache::KvCache;
pub use layer::Layer;
pub use norm::RmsNorm;
pub use rope::{inverse_frequencies, Rope};

use crate::config::LlamaConfig;
use crate::error::{LlamaError, Result};
use crate::plan::PrefillOptions;
use crate::weights::WeightSource;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use minference_burn::{
    check_inputs, sparse_attention, AttentionOptions, LayerPatterns, Pattern,
    SparseAttentionBackend,
};

/// Called with each layer's index, queries and whole keys during a forward pass.
pub type LayerObserver<'a, B> = dyn FnMut(usize, &Tensor<B, 4>, &Tensor<B, 4>) + 'a;

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position's (what generation needs).
    Last,
    /// Every position's (for evaluation against a reference).
    All,
}

/// What a forward pass returns.
#[derive(Debug)]
pub struct Forward<B: SparseAttentionBackend> {
    /// Logits, `[rows, vocab]` in f32 precision of the backend.
    pub logits: Tensor<B, 2>,
    /// Fraction of causal (query, key) pairs each layer attended (1.0 for dense layers).
    pub density: Vec<f64>,
    /// True for layers that ran a sparse pattern (false for dense layers, and for sparse ones
    /// whose index kept so much that the backend ran them densely, see
    /// [`SparseAttentionBackend::dense_above`]).
    pub sparse: Vec<bool>,
}

/// A Llama-family decoder with per-layer, per-head sparse pre-fill.
#[derive(Debug, Clone)]
pub struct Llama<B: SparseAttentionBackend> {
    config: LlamaConfig,
    embed: Tensor<B, 2>,
    layers: Vec<Layer<B>>,
    norm: RmsNorm<B>,
    head: Tensor<B, 2>,
    rope: Rope<B>,
    dense: LayerPatterns,
}

fn tensor<B: SparseAttentionBackend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(
        TensorData::new(values, shape).convert::<B::FloatElem>(),
        device,
    )
}

/// Transposes a row-major `[rows, cols]` matrix (projections are stored `[in, out]`).
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

impl<B: SparseAttentionBackend> Llama<B> {
    /// Builds the model from `source`, checking every tensor's shape against `config`.
    pub fn load(
        config: LlamaConfig,
        source: &dyn WeightSource,
        device: &B::Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self> {
        config.validate("model config")?;
        let c = &config;
        let (h, q_out, kv_out) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let linear = |name: &str, out: usize, inp: usize| -> Result<Tensor<B, 2>> {
            let w = source.tensor(name, &[out, inp])?;
            Ok(tensor(transpose(&w, out, inp), [inp, out], device))
        };
        let norm = |name: &str| -> Result<RmsNorm<B>> {
            Ok(RmsNorm::new(
                tensor(source.tensor(name, &[h])?, [h], device),
                c.rms_eps,
            ))
        };
        let embed_values = source.tensor("model.embed_tokens.weight", &[c.vocab, h])?;
        let head = if source.contains("lm_head.weight") && !c.tied_embeddings {
            linear("lm_head.weight", c.vocab, h)?
        } else {
            tensor(transpose(&embed_values, c.vocab, h), [h, c.vocab], device)
        };
        let embed = tensor(embed_values, [c.vocab, h], device);
        let mut layers = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let p = |s: &str| format!("model.layers.{l}.{s}.weight");
            layers.push(Layer {
                attn_norm: norm(&p("input_layernorm"))?,
                wqkv: Tensor::cat(
                    vec![
                        linear(&p("self_attn.q_proj"), q_out, h)?,
                        linear(&p("self_attn.k_proj"), kv_out, h)?,
                        linear(&p("self_attn.v_proj"), kv_out, h)?,
                    ],
                    1,
                ),
                wo: linear(&p("self_attn.o_proj"), h, q_out)?,
                mlp_norm: norm(&p("post_attention_layernorm"))?,
                w_gate_up: Tensor::cat(
                    vec![
                        linear(&p("mlp.gate_proj"), c.intermediate, h)?,
                        linear(&p("mlp.up_proj"), c.intermediate, h)?,
                    ],
                    1,
                ),
                w_down: linear(&p("mlp.down_proj"), h, c.intermediate)?,
                heads: c.heads,
                kv_heads: c.kv_heads,
                head_dim: c.head_dim,
            });
            progress(l + 1, c.layers);
        }
        Ok(Self {
            norm: norm("model.norm.weight")?,
            rope: Rope::new(c, device),
            dense: LayerPatterns::uniform(Pattern::Dense, c.heads)?,
            embed,
            layers,
            head,
            config,
        })
    }

    /// A model of `config`'s shape with random weights drawn on the device (matrices
    /// N(0, 0.02), unit norms): for timing models whose weights are not at hand, since the
    /// time to first token depends on the shapes only.
    pub fn random(config: LlamaConfig, device: &B::Device) -> Result<Self> {
        config.validate("model config")?;
        let c = &config;
        let (h, q_out, kv_out) = (c.hidden, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let normal = |shape: [usize; 2]| {
            Tensor::<B, 2>::random(shape, Distribution::Normal(0.0, 0.02), device)
        };
        let unit = || RmsNorm::new(Tensor::ones([h], device), c.rms_eps);
        let layers = (0..c.layers)
            .map(|_| Layer {
                attn_norm: unit(),
                wqkv: normal([h, q_out + 2 * kv_out]),
                wo: normal([q_out, h]),
                mlp_norm: unit(),
                w_gate_up: normal([h, 2 * c.intermediate]),
                w_down: normal([c.intermediate, h]),
                heads: c.heads,
                kv_heads: c.kv_heads,
                head_dim: c.head_dim,
            })
            .collect();
        Ok(Self {
            norm: unit(),
            rope: Rope::new(c, device),
            dense: LayerPatterns::uniform(Pattern::Dense, c.heads)?,
            embed: normal([c.vocab, h]),
            layers,
            head: normal([h, c.vocab]),
            config,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> B::Device {
        self.embed.device()
    }

    /// Runs `tokens` through the model after what `cache` holds, appending their keys and
    /// values to it. Layers use the patterns of `options` when the pass is a pre-fill of at
    /// least `options.min_sparse_len` tokens, dense attention otherwise. `progress` is called
    /// after each layer with (layers done, layers).
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache<B>,
        options: &PrefillOptions,
        logits: Logits,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Forward<B>> {
        self.forward_observed(tokens, cache, options, logits, progress, &mut |_, _, _| {})
    }

    /// [`Self::forward`], also handing each layer's queries (`[1, heads, n, d]`, after RoPE)
    /// and whole keys (`[1, kv_heads, cache + n, d]`) to `observer` before its attention: what
    /// the offline pattern search measures.
    pub fn forward_observed(
        &self,
        tokens: &[u32],
        cache: &mut KvCache<B>,
        options: &PrefillOptions,
        logits: Logits,
        progress: &mut dyn FnMut(usize, usize),
        observer: &mut LayerObserver<'_, B>,
    ) -> Result<Forward<B>> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(LlamaError::TokenOutOfRange { id, vocab: c.vocab });
        }
        let start = cache.len();
        let n = tokens.len();
        if start + n > c.context {
            return Err(LlamaError::ContextOverflow {
                tokens: start + n,
                new_tokens: 0,
                context: c.context,
            });
        }
        if let Some(patterns) = &options.patterns {
            patterns.check_model(std::path::Path::new("pattern config"), c.pattern_shape())?;
        }
        let device = self.device();
        let ids = Tensor::<B, 1, Int>::from_data(
            TensorData::new(tokens.iter().map(|&t| t as i64).collect(), [n])
                .convert::<B::IntElem>(),
            &device,
        );
        let mut h = self.embed.clone().select(0, ids).reshape([1, n, c.hidden]);
        let chunk = options.chunk_rows.max(1);
        let chunks: Vec<(usize, usize)> = (0..n)
            .step_by(chunk)
            .map(|s| (s, chunk.min(n - s)))
            .collect();
        let sparse_pass = n >= options.min_sparse_len.max(2);
        let (mut density, mut sparse) = (Vec::new(), Vec::new());
        for (l, layer) in self.layers.iter().enumerate() {
            // Row-wise projections a chunk at a time; attention over the whole pass.
            let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
            for &(s, len) in &chunks {
                let (q, k, v) = layer.project(h.clone().narrow(1, s, len), start + s, &self.rope);
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            let (k, v) = cache.append(l, Tensor::cat(ks, 2), Tensor::cat(vs, 2));
            let q = Tensor::cat(qs, 2);
            observer(l, &q, &k);
            let patterns = match (&options.patterns, sparse_pass) {
                (Some(config), true) => config.layer(l).filter(|p| !p.all_dense()),
                _ => None,
            };
            let attention_options = AttentionOptions {
                query_offset: Some(start),
                scale: None,
            };
            let attention = match patterns {
                Some(patterns) => {
                    let geometry = check_inputs(&q, &k, &v, patterns, &attention_options)?;
                    let scale = 1.0 / (c.head_dim as f64).sqrt();
                    let measured =
                        B::sparse_attention_measured(q, k, v, patterns, geometry, scale)?;
                    density.push(if measured.dense {
                        1.0
                    } else {
                        measured.density
                    });
                    sparse.push(!measured.dense);
                    measured.out
                }
                None => {
                    density.push(1.0);
                    sparse.push(false);
                    sparse_attention(q, k, v, &self.dense, &attention_options)?
                }
            };
            let mut rows = Vec::with_capacity(chunks.len());
            for &(s, len) in &chunks {
                rows.push(layer.finish(
                    h.clone().narrow(1, s, len),
                    attention.clone().narrow(2, s, len),
                ));
            }
            h = Tensor::cat(rows, 1);
            progress(l + 1, c.layers);
        }
        cache.advance(n);
        let h = match logits {
            Logits::Last => h.narrow(1, n - 1, 1),
            Logits::All => h,
        };
        let rows = h.dims()[1];
        let mut out = Vec::new();
        for s in (0..rows).step_by(chunk) {
            let len = chunk.min(rows - s);
            let x = self.norm.forward(h.clone().narrow(1, s, len));
            out.push(x.reshape([len, c.hidden]).matmul(self.head.clone()));
        }
        Ok(Forward {
            logits: Tensor::cat(out, 0),
            density,
            sparse,
        })
    }
}
