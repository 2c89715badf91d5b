//! minference-rs's own pattern file: versioned, names its model, and can say `dense`.
//!
//! ```json
//! {
//!   "format": "minference-rs.patterns",
//!   "version": 1,
//!   "model": {"name": "SmolLM2-135M-Instruct", "layers": 30, "heads": 9},
//!   "layers": [[{"pattern": "vertical_slash", "vertical": 1000, "slash": 2048, "score": 0.97},
//!               {"pattern": "a_shape", "sink": 64, "local": 512},
//!               {"pattern": "block_sparse", "top_k": 32},
//!               {"pattern": "dense"}], ...]
//! }
//! ```

use super::{config_error, positive_size, PatternConfig};
use crate::error::Result;
use crate::pattern::{LayerPatterns, Pattern};
use std::path::Path;

/// The value of the `format` field.
pub const FORMAT: &str = "minference-rs.patterns";

/// The newest version this build reads and the one it writes.
pub const VERSION: u64 = 1;

pub(super) fn from_value(value: &serde_json::Value, origin: &Path) -> Result<PatternConfig> {
    let err = |reason: String| config_error(origin, None, None, reason);
    let format = value.get("format").and_then(|f| f.as_str());
    if format != Some(FORMAT) {
        return Err(err(format!(
            "\"format\" must be {FORMAT:?}, found {:?}",
            value.get("format")
        )));
    }
    let version = value
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| err("missing integer \"version\"".into()))?;
    if version == 0 || version > VERSION {
        return Err(err(format!("version {version} is not supported by this build (it reads versions 1..={VERSION}); upgrade minference-rs")));
    }
    let model = value
        .get("model")
        .ok_or_else(|| err("missing \"model\" (its name, layers and heads)".into()))?;
    let declared_layers = positive_size(model.get("layers"), "model.layers", origin, 0, 0, false)?;
    let declared_heads = positive_size(model.get("heads"), "model.heads", origin, 0, 0, false)?;
    let model_name = model
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_owned);

    let layers_json = value
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| {
            err("missing \"layers\": a list with one list of head patterns per layer".into())
        })?;
    if layers_json.len() != declared_layers {
        return Err(err(format!(
            "\"model\" declares {declared_layers} layers but \"layers\" has {}",
            layers_json.len()
        )));
    }
    let mut layers = Vec::with_capacity(layers_json.len());
    let mut scores = Vec::with_capacity(layers_json.len());
    for (layer, heads_json) in layers_json.iter().enumerate() {
        let heads_json = heads_json.as_array().ok_or_else(|| {
            config_error(
                origin,
                Some(layer),
                None,
                "a layer must be a list of head patterns".into(),
            )
        })?;
        if heads_json.len() != declared_heads {
            return Err(config_error(
                origin,
                Some(layer),
                None,
                format!(
                    "\"model\" declares {declared_heads} heads but this layer lists {}",
                    heads_json.len()
                ),
            ));
        }
        let mut heads = Vec::with_capacity(heads_json.len());
        let mut layer_scores = Vec::with_capacity(heads_json.len());
        for (head, entry) in heads_json.iter().enumerate() {
            heads.push(parse_head(entry, origin, layer, head)?);
            layer_scores.push(entry.get("score").and_then(|s| s.as_f64()));
        }
        layers.push(LayerPatterns::new(heads)?);
        scores.push(layer_scores);
    }
    Ok(PatternConfig {
        model_name,
        layers,
        scores,
    })
}

fn parse_head(
    entry: &serde_json::Value,
    origin: &Path,
    layer: usize,
    head: usize,
) -> Result<Pattern> {
    let err = |reason: String| config_error(origin, Some(layer), Some(head), reason);
    let name = entry
        .get("pattern")
        .and_then(|p| p.as_str())
        .ok_or_else(|| err(format!("missing \"pattern\" name in {entry}")))?;
    let size =
        |what: &str, zero: bool| positive_size(entry.get(what), what, origin, layer, head, zero);
    Ok(match name {
        "dense" => Pattern::Dense,
        "a_shape" => Pattern::AShape { sink: size("sink", true)?, local: size("local", false)? },
        "vertical_slash" => Pattern::VerticalSlash { vertical: size("vertical", false)?, slash: size("slash", false)? },
        "block_sparse" => Pattern::BlockSparse { top_k: size("top_k", false)? },
        other => return Err(err(format!("unknown pattern {other:?}; expected one of \"dense\", \"a_shape\", \"vertical_slash\", \"block_sparse\""))),
    })
}

pub(super) fn to_string(config: &PatternConfig) -> String {
    let shape = config.shape();
    let layers: Vec<serde_json::Value> = config
        .layers
        .iter()
        .enumerate()
        .map(|(l, layer)| {
            let heads = layer.heads().iter().enumerate().map(|(h, pattern)| {
                let mut entry = serde_json::to_value(pattern).expect("serialisable");
                if let Some(score) = config
                    .scores
                    .get(l)
                    .and_then(|s| s.get(h).copied().flatten())
                {
                    entry["score"] = serde_json::json!(score);
                }
                entry
            });
            serde_json::Value::Array(heads.collect())
        })
        .collect();
    let document = serde_json::json!({
        "format": FORMAT,
        "version": VERSION,
        "model": {"name": config.model_name, "layers": shape.layers, "heads": shape.heads},
        "layers": layers,
    });
    serde_json::to_string_pretty(&document).expect("serialisable")
}
