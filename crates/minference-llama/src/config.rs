//! A model's hyper-parameters, read from GGUF metadata or a Hugging Face `config.json`.

use crate::error::{LlamaError, Result};
use crate::gguf::{Gguf, Value};
use serde::Deserialize;
use std::path::Path;

/// How rotary frequencies are stretched for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Llama 3.1's frequency-dependent scaling (`rope_type: "llama3"`).
    Llama3 {
        /// Overall stretch of low frequencies.
        factor: f64,
        /// Wavelength bound (in units of the original context) of the stretched band.
        low_freq_factor: f64,
        /// Wavelength bound of the unstretched band.
        high_freq_factor: f64,
        /// The context the model was pre-trained with.
        original_context: f64,
    },
    /// Positions divided by a constant (`rope_type: "linear"`).
    Linear(f64),
    /// One divisor per frequency, as GGUF files store Llama 3 scaling (`rope_freqs.weight`).
    Factors(Vec<f32>),
}

/// Hyper-parameters of a Llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE long-context scaling.
    pub rope_scaling: RopeScaling,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Longest sequence the model was trained for.
    pub context: usize,
    /// True when the output projection reuses the token embedding.
    pub tied_embeddings: bool,
    /// Beginning-of-sequence token, if the model has one.
    pub bos: Option<u32>,
    /// Tokens that end generation.
    pub eos: Vec<u32>,
}

impl LlamaConfig {
    /// Llama 3.1 8B's published shape (32 layers, 4096 wide, 32 query / 8 KV heads of 128,
    /// SwiGLU 14336, vocabulary 128256, RoPE base 500000 with Llama 3.1 scaling), with the
    /// context set to `context` tokens: what the end-to-end GPU benchmark runs with random
    /// weights ([`crate::Llama::random`]).
    pub fn llama3_8b(context: usize) -> Self {
        Self {
            vocab: 128_256,
            hidden: 4096,
            intermediate: 14_336,
            layers: 32,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            rope_theta: 500_000.0,
            rope_scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context: 8192.0,
            },
            rms_eps: 1e-5,
            context,
            tied_embeddings: false,
            bos: Some(128_000),
            eos: vec![128_001, 128_009],
        }
    }

    /// Checks the values against each other (head counts, widths), naming `origin` in errors.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |reason: String| {
            Err(LlamaError::Config {
                source_name: origin.to_string(),
                reason,
            })
        };
        for (name, value) in [
            ("vocabulary size", self.vocab),
            ("hidden size", self.hidden),
            ("intermediate size", self.intermediate),
            ("layer count", self.layers),
            ("head count", self.heads),
            ("KV head count", self.kv_heads),
            ("head dim", self.head_dim),
            ("context length", self.context),
        ] {
            if value == 0 || value > 1 << 24 {
                return bad(format!("{name} is {value}, outside 1..=16777216"));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "{} query heads are not a multiple of {} KV heads",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head dim {} is odd; RoPE needs pairs",
                self.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("RoPE base {} must be > 1", self.rope_theta));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(format!("RMSNorm epsilon {} must be > 0", self.rms_eps));
        }
        if let RopeScaling::Factors(f) = &self.rope_scaling {
            if f.len() != self.head_dim / 2 {
                return bad(format!(
                    "rope_freqs has {} factors, the head dim needs {}",
                    f.len(),
                    self.head_dim / 2
                ));
            }
        }
        Ok(())
    }

    /// Reads the hyper-parameters from a GGUF file's metadata (`{arch}.block_count`, …).
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let origin = "GGUF metadata";
        let missing = |key: &str| LlamaError::Config {
            source_name: origin.into(),
            reason: format!("missing or non-numeric key {key}"),
        };
        let arch = gguf
            .get("general.architecture")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("general.architecture"))?
            .to_string();
        if !matches!(arch.as_str(), "llama" | "mistral") {
            return Err(LlamaError::Architecture(arch));
        }
        let get = |key: &str| gguf.get(&format!("{arch}.{key}"));
        let int = |key: &str| -> Result<usize> {
            get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| missing(&format!("{arch}.{key}")))
        };
        let heads = int("attention.head_count")?;
        let hidden = int("embedding_length")?;
        let vocab = match get("vocab_size").and_then(Value::as_u64) {
            Some(v) => v as usize,
            None => match gguf.get("tokenizer.ggml.tokens") {
                Some(Value::Array(tokens)) => tokens.len(),
                _ => return Err(missing(&format!("{arch}.vocab_size"))),
            },
        };
        let head_dim = match get("attention.key_length").and_then(Value::as_u64) {
            Some(d) => d as usize,
            None => hidden / heads.max(1),
        };
        let token = |key: &str| gguf.get(key).and_then(Value::as_u64).map(|v| v as u32);
        let config = Self {
            vocab,
            hidden,
            intermediate: int("feed_forward_length")?,
            layers: int("block_count")?,
            heads,
            kv_heads: int("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rope_theta: get("rope.freq_base")
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            rope_scaling: match (
                get("rope.scaling.type").and_then(Value::as_str),
                get("rope.scaling.factor").and_then(Value::as_f64),
            ) {
                (Some("linear"), Some(f)) => RopeScaling::Linear(f),
                _ => RopeScaling::None,
            },
            rms_eps: get("attention.layer_norm_rms_epsilon")
                .and_then(Value::as_f64)
                .ok_or_else(|| missing(&format!("{arch}.attention.layer_norm_rms_epsilon")))?,
            context: int("context_length")?,
            tied_embeddings: gguf.tensor("output.weight").is_none(),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        let mut config = config;
        if let Some(info) = gguf.tensor("rope_freqs.weight") {
            config.rope_scaling = RopeScaling::Factors(gguf.dequantize(info)?);
        }
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads a Hugging Face `config.json` (`LlamaForCausalLM` and compatible).
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LlamaError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_hf_json(&text, &path.display().to_string())
    }

    /// Parses the text of a Hugging Face `config.json`; `origin` names it in errors.
    pub fn parse_hf_json(text: &str, origin: &str) -> Result<Self> {
        let bad = |reason: String| LlamaError::Config {
            source_name: origin.to_string(),
            reason,
        };
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if let Some(model_type) = &hf.model_type {
            if !matches!(model_type.as_str(), "llama" | "mistral") {
                return Err(LlamaError::Architecture(model_type.clone()));
            }
        }
        if hf.attention_bias == Some(true) {
            return Err(bad(
                "attention biases (attention_bias: true) are not supported".into(),
            ));
        }
        let rope_scaling = match hf.rope_scaling {
            None => RopeScaling::None,
            Some(s) => match s.rope_type.as_deref().or(s.kind.as_deref()) {
                Some("llama3") => RopeScaling::Llama3 {
                    factor: s
                        .factor
                        .ok_or_else(|| bad("rope_scaling.factor missing".into()))?,
                    low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                    original_context: s.original_max_position_embeddings.unwrap_or(8192.0),
                },
                Some("linear") => RopeScaling::Linear(
                    s.factor
                        .ok_or_else(|| bad("rope_scaling.factor missing".into()))?,
                ),
                Some("default") | None => RopeScaling::None,
                Some(other) => {
                    return Err(bad(format!(
                        "rope_scaling type {other:?} is not supported (llama3, linear)"
                    )))
                }
            },
        };
        let config = Self {
            vocab: hf.vocab_size,
            hidden: hf.hidden_size,
            intermediate: hf.intermediate_size,
            layers: hf.num_hidden_layers,
            heads: hf.num_attention_heads,
            kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf
                .head_dim
                .unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rope_theta: hf.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            rms_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            context: hf.max_position_embeddings.unwrap_or(4096),
            tied_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            bos: hf.bos_token_id,
            eos: match hf.eos_token_id {
                None => vec![],
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
            },
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// The pattern-config shape of this model (layers × query heads).
    pub fn pattern_shape(&self) -> minference_burn::ModelShape {
        minference_burn::ModelShape {
            layers: self.layers,
            heads: self.heads,
        }
    }
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRopeScaling>,
    rms_norm_eps: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}
