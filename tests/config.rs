//! Pattern configs: MInference's JSON as published, our format, round trips, and every kind of
//! bad file refused with a message that names the file, layer and head.

use minference::config::minference::DEFAULT_PATTERN;
use minference::{ConfigFormat, MinferenceError, ModelShape, Pattern, PatternConfig};

const MODEL: ModelShape = ModelShape {
    layers: 2,
    heads: 3,
};

fn parse(text: &str) -> Result<PatternConfig, MinferenceError> {
    PatternConfig::parse(text, "cfg.json", MODEL)
}

fn reason(err: MinferenceError) -> String {
    err.to_string()
}

#[test]
fn minference_json_loads_as_published() {
    let text = r#"[
        {"0": ["vertical_and_slash", 1000, 6096, 0.98], "2": ["stream_llm", 100, 800, 0.5]},
        {"1": ["block_sparse", 30, 800, 0.7], "0": ["vertical_and_slash", 3500.0, 100, 0.9]}
    ]"#;
    let config = parse(text).unwrap();
    assert_eq!(
        config.layers[0].heads(),
        &[
            Pattern::VerticalSlash {
                vertical: 1000,
                slash: 6096
            },
            DEFAULT_PATTERN,
            Pattern::AShape {
                sink: 100,
                local: 800
            }
        ]
    );
    assert_eq!(
        config.layers[1].heads(),
        &[
            Pattern::VerticalSlash {
                vertical: 3500,
                slash: 100
            },
            Pattern::BlockSparse { top_k: 100 },
            DEFAULT_PATTERN
        ]
    );
    assert_eq!(config.scores[0][0], Some(0.98));
    assert_eq!(config.scores[0][1], None);
}

#[test]
fn round_trips_in_both_formats() {
    let mut config = parse(
        r#"[{"0": ["vertical_and_slash", 1000, 2048, 0.9], "1": ["stream_llm", 0, 512, 0.8]}, {}]"#,
    )
    .unwrap();
    let native =
        PatternConfig::parse(&config.to_json(ConfigFormat::Native), "n.json", MODEL).unwrap();
    assert_eq!(native, config);
    let back =
        PatternConfig::parse(&config.to_json(ConfigFormat::MInference), "m.json", MODEL).unwrap();
    assert_eq!(back.layers, config.layers);
    // Dense and free block budgets exist only in our format.
    config.layers[1] = minference::LayerPatterns::new(vec![
        Pattern::Dense,
        Pattern::BlockSparse { top_k: 7 },
        Pattern::AShape { sink: 4, local: 64 },
    ])
    .unwrap();
    config.model_name = Some("tiny".into());
    let text = config.to_json(ConfigFormat::Native);
    assert_eq!(
        PatternConfig::parse(&text, "n.json", MODEL).unwrap(),
        config
    );
    let dir = std::env::temp_dir().join(format!("minference-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.json");
    config.save(&path, ConfigFormat::Native).unwrap();
    assert_eq!(PatternConfig::load(&path, MODEL).unwrap(), config);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_config_for_another_model_is_refused() {
    let three_layers = r#"[{}, {}, {}]"#;
    let err = parse(three_layers).unwrap_err();
    assert!(
        matches!(
            err,
            MinferenceError::ModelMismatch {
                config_layers: 3,
                model_layers: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(reason(err).contains("cfg.json"));
    let err = parse(r#"[{"5": ["vertical_and_slash", 10, 10, 1]}, {}]"#).unwrap_err();
    let text = reason(err);
    assert!(
        text.contains("cfg.json, layer 0, head 5") && text.contains("3 query heads"),
        "{text}"
    );
    let other = PatternConfig::uniform(
        Pattern::Dense,
        ModelShape {
            layers: 2,
            heads: 4,
        },
    )
    .unwrap();
    let err = parse(&other.to_json(ConfigFormat::Native)).unwrap_err();
    assert!(
        matches!(
            err,
            MinferenceError::ModelMismatch {
                config_heads: 4,
                model_heads: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_entries_name_file_layer_and_head() {
    let cases = [
        (
            r#"[{}, {"1": ["diagonal", 10, 10, 1]}]"#,
            "layer 1, head 1",
            "unknown pattern type \"diagonal\"",
        ),
        (
            r#"[{"0": ["vertical_and_slash", -5, 10, 1]}, {}]"#,
            "layer 0, head 0",
            "vertical_size",
        ),
        (
            r#"[{"0": ["vertical_and_slash", 0, 10, 1]}, {}]"#,
            "layer 0, head 0",
            "positive",
        ),
        (
            r#"[{"0": ["vertical_and_slash", 10.5, 10, 1]}, {}]"#,
            "layer 0, head 0",
            "whole number",
        ),
        (
            r#"[{"0": ["stream_llm", 4, 0, 1]}, {}]"#,
            "layer 0, head 0",
            "slash_size",
        ),
        (
            r#"[{"0": ["vertical_and_slash", 10]}, {}]"#,
            "layer 0, head 0",
            "expected [type",
        ),
        (
            r#"[{"x": ["vertical_and_slash", 10, 10, 1]}, {}]"#,
            "layer 0",
            "not a head index",
        ),
        (r#"[[], {}]"#, "layer 0", "must be an object"),
        (
            r#"{"format": "minference-rs.patterns", "version": 1, "model": {"layers": 2, "heads": 3}, "layers": [[{"pattern": "dense"}, {"pattern": "wavy"}, {"pattern": "dense"}], [{"pattern": "dense"}, {"pattern": "dense"}, {"pattern": "dense"}]]}"#,
            "layer 0, head 1",
            "unknown pattern \"wavy\"",
        ),
        (
            r#"{"format": "minference-rs.patterns", "version": 1, "model": {"layers": 2, "heads": 3}, "layers": [[{"pattern": "dense"}, {"pattern": "block_sparse", "top_k": 0}, {"pattern": "dense"}], [{"pattern": "dense"}, {"pattern": "dense"}, {"pattern": "dense"}]]}"#,
            "layer 0, head 1",
            "top_k",
        ),
        (
            r#"{"format": "minference-rs.patterns", "version": 9, "model": {"layers": 2, "heads": 3}, "layers": []}"#,
            "cfg.json",
            "version 9",
        ),
        (r#"{"format": "something-else"}"#, "cfg.json", "format"),
        (r#"{"layers": 1}"#, "cfg.json", "neither"),
        ("not json", "cfg.json", "not valid JSON"),
    ];
    for (text, at, what) in cases {
        let message = reason(parse(text).unwrap_err());
        assert!(
            message.contains(at) && message.contains(what),
            "{text}\n→ {message}\n(expected {at:?} and {what:?})"
        );
    }
    let missing = PatternConfig::load("/nonexistent/p.json", MODEL).unwrap_err();
    assert!(matches!(missing, MinferenceError::Io { .. }), "{missing}");
}

#[test]
fn patterns_validate_their_sizes() {
    assert!(Pattern::VerticalSlash {
        vertical: 0,
        slash: 5
    }
    .validate()
    .is_err());
    assert!(Pattern::AShape { sink: 0, local: 0 }.validate().is_err());
    assert!(Pattern::AShape { sink: 0, local: 1 }.validate().is_ok());
    assert!(Pattern::BlockSparse { top_k: 0 }.validate().is_err());
    assert!(minference::LayerPatterns::new(vec![
        Pattern::Dense,
        Pattern::BlockSparse { top_k: 0 }
    ])
    .is_err());
}
