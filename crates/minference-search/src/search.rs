//! The offline, kernel-aware per-head pattern search.
//!
//! For every layer and head, on a calibration prompt: build each candidate's index the way it
//! is built at run time (estimated from this input), measure the attention mass it keeps
//! (recall, against dense attention computed tile by tile) and what the kernel would pay for it
//! (64×64 tiles computed). Candidates are compared at equal cost: among those within the tile
//! budget, the one with the highest recall wins (ties: the cheaper). A head whose best recall
//! stays under `min_recall` runs dense.

use crate::recall::{dense_cost, for_each_chunk, head_cost};
use burn::tensor::Tensor;
use minference_burn::{
    Geometry, LayerPatterns, MinferenceError, Pattern, PatternConfig, SparseAttentionBackend,
};
use minference_llama::{KvCache, Llama, LlamaError, Logits, PrefillOptions};

/// Options of [`search`].
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Candidate patterns tried on every head.
    pub candidates: Vec<Pattern>,
    /// Most tiles a head may compute, as a fraction of dense causal attention's.
    pub budget: f64,
    /// Heads whose best candidate keeps less than this mass run dense.
    pub min_recall: f64,
}

impl SearchOptions {
    /// The default grid for calibration lengths of a few thousand tokens: A-shape with four
    /// windows, Vertical-Slash on a 3×3 grid of budgets, Block-Sparse with four top-k; 30 % of
    /// dense tiles; heads under 90 % recall stay dense.
    pub fn default_grid() -> Self {
        let mut candidates = vec![
            Pattern::AShape {
                sink: 64,
                local: 256,
            },
            Pattern::AShape {
                sink: 64,
                local: 512,
            },
            Pattern::AShape {
                sink: 64,
                local: 1024,
            },
            Pattern::AShape {
                sink: 128,
                local: 2048,
            },
        ];
        for vertical in [100, 300, 1000] {
            for slash in [100, 300, 1000] {
                candidates.push(Pattern::VerticalSlash { vertical, slash });
            }
        }
        for top_k in [4, 8, 16, 32] {
            candidates.push(Pattern::BlockSparse { top_k });
        }
        Self {
            candidates,
            budget: 0.3,
            min_recall: 0.9,
        }
    }
}

/// One candidate measured on one head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The candidate.
    pub pattern: Pattern,
    /// Mean attention mass kept per query row, in [0, 1].
    pub recall: f64,
    /// Tiles computed, as a fraction of dense.
    pub cost: f64,
}

/// What the search found.
#[derive(Debug, Clone)]
pub struct SearchReport {
    /// The chosen patterns, with each head's recall as its score.
    pub config: PatternConfig,
    /// Per layer, per head: the choice.
    pub chosen: Vec<Vec<Measured>>,
    /// Per layer, per head: every candidate measured.
    pub measured: Vec<Vec<Vec<Measured>>>,
    /// Calibration length in tokens.
    pub tokens: usize,
}

/// Picks one head's pattern from its measured candidates.
pub fn choose(measured: &[Measured], options: &SearchOptions) -> Measured {
    let dense = Measured {
        pattern: Pattern::Dense,
        recall: 1.0,
        cost: 1.0,
    };
    measured
        .iter()
        .filter(|m| m.cost <= options.budget)
        .max_by(|a, b| {
            a.recall
                .total_cmp(&b.recall)
                .then(b.cost.total_cmp(&a.cost))
        })
        .copied()
        .filter(|m| m.recall >= options.min_recall)
        .unwrap_or(dense)
}

/// Measures every candidate of `options` on every head of one layer: `q` is
/// `[1, heads, n, d]` and `k` `[1, kv_heads, n, d]` (one pre-fill, after RoPE). Returns, per
/// head, one [`Measured`] per candidate.
pub fn measure_layer<B: SparseAttentionBackend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    options: &SearchOptions,
    scale: f64,
) -> Result<Vec<Vec<Measured>>, MinferenceError> {
    let [_, heads, n, _] = q.dims();
    let geometry = Geometry::new(n, k.dims()[2], None)?;
    let dense = dense_cost(&geometry) as f64;
    let mut indexes = Vec::with_capacity(options.candidates.len());
    for &c in &options.candidates {
        let patterns = LayerPatterns::uniform(c, heads)?;
        indexes.push(B::build_index(q, k, &patterns, geometry, scale)?);
    }
    let mut kept = vec![vec![0.0f64; heads]; indexes.len()];
    for_each_chunk(q, k, &geometry, scale, |chunk| {
        for (c, index) in indexes.iter().enumerate() {
            for (h, kept) in kept[c].iter_mut().enumerate() {
                *kept += chunk.kept(index, h);
            }
        }
    });
    Ok((0..heads)
        .map(|h| {
            indexes
                .iter()
                .zip(&options.candidates)
                .zip(&kept)
                .map(|((index, &pattern), kept)| Measured {
                    pattern,
                    recall: kept[h] / n as f64,
                    cost: head_cost(index, h) as f64 / dense,
                })
                .collect()
        })
        .collect())
}

/// Measures every candidate on every head of every layer while `tokens` pre-fill densely.
pub fn search<B: SparseAttentionBackend>(
    model: &Llama<B>,
    tokens: &[u32],
    options: &SearchOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SearchReport, LlamaError> {
    let config = model.config();
    let scale = 1.0 / (config.head_dim as f64).sqrt();
    let mut measured: Vec<Vec<Vec<Measured>>> = Vec::with_capacity(config.layers);
    let mut failure = None;
    let mut observe = |_layer: usize, q: &Tensor<B, 4>, k: &Tensor<B, 4>| {
        if failure.is_none() {
            match measure_layer::<B>(q, k, options, scale) {
                Ok(layer) => measured.push(layer),
                Err(e) => failure = Some(e),
            }
        }
    };
    let mut cache = KvCache::new(config.layers);
    model.forward_observed(
        tokens,
        &mut cache,
        &PrefillOptions::dense(),
        Logits::Last,
        progress,
        &mut observe,
    )?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let chosen: Vec<Vec<Measured>> = measured
        .iter()
        .map(|layer| layer.iter().map(|head| choose(head, options)).collect())
        .collect();
    let layers = chosen
        .iter()
        .map(|layer| LayerPatterns::new(layer.iter().map(|m| m.pattern).collect()))
        .collect::<Result<Vec<_>, _>>()?;
    let config = PatternConfig {
        model_name: None,
        layers,
        scores: chosen
            .iter()
            .map(|layer| layer.iter().map(|m| Some(m.recall)).collect())
            .collect(),
    };
    Ok(SearchReport {
        config,
        chosen,
        measured,
        tokens: tokens.len(),
    })
}
