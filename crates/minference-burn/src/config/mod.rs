//! Per-layer, per-head pattern configs.
//!
//! Two formats load:
//! - MInference's published JSON ([`minference`]): an array with one object per layer, keyed by
//!   query-head index, each value `[type, vertical_size, slash_size, score]`;
//! - our own versioned format ([`native`]), which also names the model it was made for.
//!
//! Both are validated against the model that will use them: a config for a model with another
//! number of layers or heads is refused with [`MinferenceError::ModelMismatch`].

pub mod minference;
pub mod native;

use crate::error::{ConfigLocation, MinferenceError, Result};
use crate::pattern::{LayerPatterns, Pattern};
use std::path::{Path, PathBuf};

/// The shape of a model as far as patterns are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelShape {
    /// Transformer layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
}

/// The patterns of every layer and head of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternConfig {
    /// Free-form model name recorded by whoever made the config.
    pub model_name: Option<String>,
    /// One entry per layer, each with one pattern per query head.
    pub layers: Vec<LayerPatterns>,
    /// Optional per-head quality score (recall of attention mass), same layout as `layers`.
    pub scores: Vec<Vec<Option<f64>>>,
}

/// Which file format a config is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// MInference's per-head JSON.
    MInference,
    /// minference-rs's versioned format.
    Native,
}

impl PatternConfig {
    /// The same pattern for every head of every layer.
    pub fn uniform(pattern: Pattern, model: ModelShape) -> Result<Self> {
        let layer = LayerPatterns::uniform(pattern, model.heads)?;
        Ok(Self {
            model_name: None,
            layers: vec![layer; model.layers],
            scores: vec![vec![None; model.heads]; model.layers],
        })
    }

    /// The model shape this config describes.
    pub fn shape(&self) -> ModelShape {
        ModelShape {
            layers: self.layers.len(),
            heads: self.layers.first().map_or(0, LayerPatterns::len),
        }
    }

    /// Patterns of one layer.
    pub fn layer(&self, layer: usize) -> Option<&LayerPatterns> {
        self.layers.get(layer)
    }

    /// Reads a config file in either format (detected from its content) for `model`.
    pub fn load(path: impl AsRef<Path>, model: ModelShape) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| MinferenceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, model)
    }

    /// Parses a config in either format; `origin` names it in errors.
    pub fn parse(text: &str, origin: impl AsRef<Path>, model: ModelShape) -> Result<Self> {
        let origin = origin.as_ref().to_path_buf();
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            config_error(
                &origin,
                None,
                None,
                format!("not valid JSON ({e}); expected MInference's per-head JSON or a minference-rs pattern file"),
            )
        })?;
        let config = match detect(&value) {
            Some(ConfigFormat::MInference) => minference::from_value(&value, &origin, model)?,
            Some(ConfigFormat::Native) => native::from_value(&value, &origin)?,
            None => {
                return Err(config_error(
                    &origin,
                    None,
                    None,
                    "neither MInference's per-head JSON (a list of per-layer objects) nor a minference-rs pattern file (an object with \"format\": \"minference-rs.patterns\")".into(),
                ))
            }
        };
        config.check_model(&origin, model)?;
        Ok(config)
    }

    /// Refuses a config whose layers or heads differ from `model`.
    pub fn check_model(&self, origin: &Path, model: ModelShape) -> Result<()> {
        let shape = self.shape();
        let ragged = self.layers.iter().any(|l| l.len() != shape.heads);
        if shape != model || ragged {
            return Err(MinferenceError::ModelMismatch {
                location: location(origin, None, None),
                config_layers: shape.layers,
                config_heads: shape.heads,
                model_layers: model.layers,
                model_heads: model.heads,
            });
        }
        Ok(())
    }

    /// Writes the config in the given format.
    pub fn to_json(&self, format: ConfigFormat) -> String {
        match format {
            ConfigFormat::MInference => minference::to_string(self),
            ConfigFormat::Native => native::to_string(self),
        }
    }

    /// Writes the config to a file in the given format.
    pub fn save(&self, path: impl AsRef<Path>, format: ConfigFormat) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json(format)).map_err(|source| MinferenceError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn detect(value: &serde_json::Value) -> Option<ConfigFormat> {
    match value {
        serde_json::Value::Array(_) => Some(ConfigFormat::MInference),
        serde_json::Value::Object(map) if map.contains_key("format") => Some(ConfigFormat::Native),
        _ => None,
    }
}

pub(crate) fn location(origin: &Path, layer: Option<usize>, head: Option<usize>) -> ConfigLocation {
    ConfigLocation {
        file: PathBuf::from(origin),
        layer,
        head,
    }
}

pub(crate) fn config_error(
    origin: &Path,
    layer: Option<usize>,
    head: Option<usize>,
    reason: String,
) -> MinferenceError {
    MinferenceError::Config {
        location: location(origin, layer, head),
        reason,
    }
}

/// Reads a positive size from a JSON value (integers, or floats with no fraction).
pub(crate) fn positive_size(
    value: Option<&serde_json::Value>,
    what: &str,
    origin: &Path,
    layer: usize,
    head: usize,
    allow_zero: bool,
) -> Result<usize> {
    let err = |reason: String| config_error(origin, Some(layer), Some(head), reason);
    let value = value.ok_or_else(|| err(format!("missing `{what}`")))?;
    let number = value
        .as_f64()
        .ok_or_else(|| err(format!("`{what}` must be a number, found {value}")))?;
    let min = if allow_zero { 0.0 } else { 1.0 };
    if number.fract() != 0.0 || number < min || number > u32::MAX as f64 {
        let bound = if allow_zero {
            "a non-negative"
        } else {
            "a positive"
        };
        return Err(err(format!(
            "`{what}` must be {bound} whole number of tokens, found {value}"
        )));
    }
    Ok(number as usize)
}
