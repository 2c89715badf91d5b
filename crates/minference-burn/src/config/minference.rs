//! MInference's published per-head JSON, read and written exactly as MInference does.
//!
//! ```json
//! [ {"0": ["vertical_and_slash", 1000, 6096, 0.98], "1": ["stream_llm", 100, 800, 0.91]},  ... ]
//! ```
//! - `vertical_and_slash, v, s` → [`Pattern::VerticalSlash`];
//! - `stream_llm, v, s` → [`Pattern::AShape`] with `sink = v`, `local = s`;
//! - `block_sparse, _, _` → [`Pattern::BlockSparse`] with `top_k = 100`: MInference's
//!   `block_sparse_kernel` ignores both sizes and always keeps 100 blocks;
//! - a head missing from a layer's object runs `vertical_and_slash, 1000, 6096`, MInference's
//!   default.

use super::{config_error, positive_size, ModelShape, PatternConfig};
use crate::error::Result;
use crate::pattern::{LayerPatterns, Pattern};
use std::path::Path;

/// The pattern MInference uses for a head its config does not list.
pub const DEFAULT_PATTERN: Pattern = Pattern::VerticalSlash {
    vertical: 1000,
    slash: 6096,
};

/// Blocks MInference's block-sparse kernel keeps, whatever the config says.
pub const BLOCK_SPARSE_TOP_K: usize = 100;

pub(super) fn from_value(
    value: &serde_json::Value,
    origin: &Path,
    model: ModelShape,
) -> Result<PatternConfig> {
    let layers_json = value.as_array().expect("detected as an array");
    let mut layers = Vec::with_capacity(layers_json.len());
    let mut scores = Vec::with_capacity(layers_json.len());
    for (layer, entry) in layers_json.iter().enumerate() {
        let object = entry.as_object().ok_or_else(|| {
            config_error(origin, Some(layer), None, format!("a layer must be an object of head index → [type, vertical_size, slash_size, score], found {entry}"))
        })?;
        let mut heads = vec![DEFAULT_PATTERN; model.heads];
        let mut layer_scores = vec![None; model.heads];
        for (key, spec) in object {
            let head: usize = key.parse().map_err(|_| {
                config_error(
                    origin,
                    Some(layer),
                    None,
                    format!("head key {key:?} is not a head index (expected \"0\", \"1\", ...)"),
                )
            })?;
            if head >= model.heads {
                return Err(config_error(origin, Some(layer), Some(head), format!("head {head} does not exist: the model has {} query heads; this config is probably for another model", model.heads)));
            }
            let (pattern, score) = parse_head(spec, origin, layer, head)?;
            heads[head] = pattern;
            layer_scores[head] = score;
        }
        layers.push(LayerPatterns::new(heads)?);
        scores.push(layer_scores);
    }
    Ok(PatternConfig {
        model_name: None,
        layers,
        scores,
    })
}

fn parse_head(
    spec: &serde_json::Value,
    origin: &Path,
    layer: usize,
    head: usize,
) -> Result<(Pattern, Option<f64>)> {
    let err = |reason: String| config_error(origin, Some(layer), Some(head), reason);
    let items = spec.as_array().filter(|a| a.len() >= 3).ok_or_else(|| {
        err(format!(
            "expected [type, vertical_size, slash_size, score], found {spec}"
        ))
    })?;
    let kind = items[0]
        .as_str()
        .ok_or_else(|| err(format!("pattern type must be a string, found {}", items[0])))?;
    let size = |i: usize, what: &str, zero: bool| {
        positive_size(items.get(i), what, origin, layer, head, zero)
    };
    let pattern = match kind {
        "vertical_and_slash" => Pattern::VerticalSlash {
            vertical: size(1, "vertical_size", false)?,
            slash: size(2, "slash_size", false)?,
        },
        "stream_llm" => Pattern::AShape {
            sink: size(1, "vertical_size (sink tokens)", true)?,
            local: size(2, "slash_size (local window)", false)?,
        },
        "block_sparse" => Pattern::BlockSparse {
            top_k: BLOCK_SPARSE_TOP_K,
        },
        other => {
            return Err(err(format!(
                "unknown pattern type {other:?}; MInference configs use \"vertical_and_slash\", \"stream_llm\" or \"block_sparse\""
            )))
        }
    };
    let score = items.get(3).and_then(serde_json::Value::as_f64);
    Ok((pattern, score))
}

pub(super) fn to_string(config: &PatternConfig) -> String {
    let layers: Vec<serde_json::Value> = config
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let mut object = serde_json::Map::new();
            for (h, pattern) in layer.heads().iter().enumerate() {
                let score = config
                    .scores
                    .get(l)
                    .and_then(|s| s.get(h).copied().flatten())
                    .unwrap_or(1.0);
                let (kind, a, b) = match *pattern {
                    Pattern::VerticalSlash { vertical, slash } => {
                        ("vertical_and_slash", vertical, slash)
                    }
                    Pattern::AShape { sink, local } => ("stream_llm", sink, local),
                    Pattern::BlockSparse { top_k } => ("block_sparse", top_k, top_k),
                    // MInference has no dense type: the widest budget it knows is the same.
                    Pattern::Dense => ("vertical_and_slash", u32::MAX as usize, u32::MAX as usize),
                };
                object.insert(h.to_string(), serde_json::json!([kind, a, b, score]));
            }
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::to_string_pretty(&layers).expect("serialisable")
}
