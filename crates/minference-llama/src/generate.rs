//! The generation loop: one (sparse) pre-fill, then dense decoding over the KV cache.

use crate::error::{LlamaError, Result};
use crate::model::{KvCache, Llama, Logits};
use crate::plan::PrefillOptions;
use crate::sampling::{Sampler, Sampling};
use burn::tensor::Tensor;
use minference_burn::SparseAttentionBackend;
use std::time::{Duration, Instant};

/// Options of [`generate`].
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most new tokens to produce.
    pub max_tokens: usize,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// Stop at the model's end-of-sequence token.
    pub stop_on_eos: bool,
    /// How the prompt is pre-filled.
    pub prefill: PrefillOptions,
}

/// What [`generate`] did.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// The new tokens (the EOS that stopped generation is not included).
    pub tokens: Vec<u32>,
    /// True when generation stopped at an end-of-sequence token.
    pub stopped_on_eos: bool,
    /// Time of the pre-fill, logits of the last position included.
    pub prefill_time: Duration,
    /// Time of the decoding steps.
    pub decode_time: Duration,
    /// Density of each layer during the pre-fill.
    pub density: Vec<f64>,
    /// Which layers ran sparse during the pre-fill.
    pub sparse: Vec<bool>,
}

impl Generation {
    /// Decoding speed (new tokens per second), 0 when nothing was decoded.
    pub fn tokens_per_second(&self) -> f64 {
        let s = self.decode_time.as_secs_f64();
        if self.tokens.len() > 1 && s > 0.0 {
            (self.tokens.len() - 1) as f64 / s
        } else {
            0.0
        }
    }
}

fn host<B: SparseAttentionBackend>(logits: Tensor<B, 2>) -> Vec<f32> {
    logits
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("converted to f32")
}

/// Pre-fills `prompt`, then decodes up to `options.max_tokens` tokens, calling `on_token`
/// with each as it is chosen and `progress` after each pre-fill layer.
pub fn generate<B: SparseAttentionBackend>(
    model: &Llama<B>,
    prompt: &[u32],
    options: &GenerateOptions,
    on_token: &mut dyn FnMut(u32),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Generation> {
    let mut cache = KvCache::new(model.config().layers);
    generate_after(model, &mut cache, prompt, options, on_token, progress)
}

/// [`generate`] after what `cache` already holds (a document pre-filled once, then several
/// questions about it, each from a clone of the cache). `prompt` is pre-filled at positions
/// `cache.len()..`; the cache grows with the prompt and the new tokens.
pub fn generate_after<B: SparseAttentionBackend>(
    model: &Llama<B>,
    cache: &mut KvCache<B>,
    prompt: &[u32],
    options: &GenerateOptions,
    on_token: &mut dyn FnMut(u32),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Generation> {
    let context = model.config().context;
    if cache.len() + prompt.len() + options.max_tokens > context {
        return Err(LlamaError::ContextOverflow {
            tokens: cache.len() + prompt.len(),
            new_tokens: options.max_tokens,
            context,
        });
    }
    let mut sampler = Sampler::new(options.sampling)?;
    let started = Instant::now();
    let forward = model.forward(prompt, cache, &options.prefill, Logits::Last, progress)?;
    let mut logits = host(forward.logits);
    let prefill_time = started.elapsed();
    let started = Instant::now();
    let mut tokens = Vec::new();
    let mut stopped_on_eos = false;
    let dense = PrefillOptions::dense();
    while tokens.len() < options.max_tokens {
        let next = sampler.sample(&logits);
        if options.stop_on_eos && model.config().eos.contains(&next) {
            stopped_on_eos = true;
            break;
        }
        tokens.push(next);
        on_token(next);
        if tokens.len() == options.max_tokens {
            break;
        }
        let step = model.forward(&[next], cache, &dense, Logits::Last, &mut |_, _| {})?;
        logits = host(step.logits);
    }
    Ok(Generation {
        prompt_tokens: prompt.len(),
        tokens,
        stopped_on_eos,
        prefill_time,
        decode_time: started.elapsed(),
        density: forward.density,
        sparse: forward.sparse,
    })
}
