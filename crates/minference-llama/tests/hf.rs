//! Hugging Face inputs: `config.json` (Llama 3.1 with its RoPE scaling, refusals), safetensors
//! (F32/F16/BF16 decoding, shape and truncation errors), and a tiny random model loaded from a
//! safetensors file and run.

use burn::backend::NdArray;
use minference_llama::weights::{SafetensorsWeights, WeightSource};
use minference_llama::{
    KvCache, Llama, LlamaConfig, LlamaError, Logits, PrefillOptions, RopeScaling,
};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;

const LLAMA31_8B: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama",
  "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
  "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "max_position_embeddings": 131072,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]
}"#;

#[test]
fn llama31_config_reads() {
    let c = LlamaConfig::parse_hf_json(LLAMA31_8B, "config.json").unwrap();
    assert_eq!(
        (c.layers, c.heads, c.kv_heads, c.head_dim),
        (32, 32, 8, 128)
    );
    assert_eq!(c.eos, vec![128001, 128008, 128009]);
    assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    // Llama 3.1 scaling: the highest frequencies are kept, the lowest divided by 8.
    let inv = minference_llama::model::inverse_frequencies(&c);
    assert_eq!(inv[0], 1.0);
    let plain = 500000f64.powf(-126.0 / 128.0);
    assert!((inv[63] - plain / 8.0).abs() < 1e-15);
}

#[test]
fn unsupported_configs_are_refused() {
    let qwen = LLAMA31_8B.replace("\"model_type\": \"llama\"", "\"model_type\": \"qwen2\"");
    assert!(matches!(
        LlamaConfig::parse_hf_json(&qwen, "config.json"),
        Err(LlamaError::Architecture(a)) if a == "qwen2"
    ));
    let bias = LLAMA31_8B.replace(
        "\"tie_word_embeddings\"",
        "\"attention_bias\": true, \"tie_word_embeddings\"",
    );
    assert!(LlamaConfig::parse_hf_json(&bias, "config.json").is_err());
    let bad_heads = LLAMA31_8B.replace("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 7");
    let e = LlamaConfig::parse_hf_json(&bad_heads, "config.json").unwrap_err();
    assert!(e.to_string().contains("not a multiple"), "{e}");
    assert!(LlamaConfig::parse_hf_json("{", "config.json").is_err());
}

fn bytes_of(values: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => unreachable!(),
    }
}

fn file(tensors: &[(&str, Vec<usize>, Vec<f32>, Dtype)]) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v, d)| (n.to_string(), s.clone(), *d, bytes_of(v, *d)))
        .collect();
    let views: HashMap<String, TensorView> = data
        .iter()
        .map(|(n, s, d, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn safetensors_decode_and_errors() {
    let values = vec![0.5, -1.25, 3.0, 0.0, 2.5, -0.75];
    let bytes = file(&[
        ("a", vec![2, 3], values.clone(), Dtype::F32),
        ("b", vec![6], values.clone(), Dtype::F16),
        ("c", vec![3, 2], values.clone(), Dtype::BF16),
    ]);
    let w = SafetensorsWeights::from_bytes("mem.safetensors", bytes.clone()).unwrap();
    assert_eq!(w.tensor("a", &[2, 3]).unwrap(), values);
    assert_eq!(w.tensor("b", &[6]).unwrap(), values); // exact in f16
    assert_eq!(w.tensor("c", &[3, 2]).unwrap(), values); // exact in bf16
    assert!(matches!(
        w.tensor("a", &[3, 2]),
        Err(LlamaError::TensorShape { .. })
    ));
    assert!(matches!(
        w.tensor("zz", &[1]),
        Err(LlamaError::MissingTensor { .. })
    ));
    assert!(w.contains("a") && !w.contains("zz"));
    let truncated = bytes[..bytes.len() - 5].to_vec();
    assert!(matches!(
        SafetensorsWeights::from_bytes("cut.safetensors", truncated),
        Err(LlamaError::Safetensors { .. })
    ));
}

/// A 2-layer random model written as Hugging Face safetensors loads and runs; incremental
/// decoding through the cache matches one pass.
#[test]
fn tiny_model_from_safetensors_runs() {
    let config = LlamaConfig::parse_hf_json(
        r#"{"model_type": "llama", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, "tie_word_embeddings": true}"#,
        "tiny",
    )
    .unwrap();
    let mut seed = 1u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
            })
            .collect()
    };
    let mut tensors = vec![
        ("model.embed_tokens.weight".to_string(), vec![50, 32]),
        ("model.norm.weight".to_string(), vec![32]),
    ];
    for l in 0..2 {
        for (name, shape) in [
            ("self_attn.q_proj", vec![32, 32]),
            ("self_attn.k_proj", vec![16, 32]),
            ("self_attn.v_proj", vec![16, 32]),
            ("self_attn.o_proj", vec![32, 32]),
            ("mlp.gate_proj", vec![48, 32]),
            ("mlp.up_proj", vec![48, 32]),
            ("mlp.down_proj", vec![32, 48]),
            ("input_layernorm", vec![32]),
            ("post_attention_layernorm", vec![32]),
        ] {
            tensors.push((format!("model.layers.{l}.{name}.weight"), shape));
        }
    }
    let specs: Vec<(&str, Vec<usize>, Vec<f32>, Dtype)> = tensors
        .iter()
        .map(|(n, s)| {
            (
                n.as_str(),
                s.clone(),
                random(s.iter().product()),
                Dtype::BF16,
            )
        })
        .collect();
    let weights = SafetensorsWeights::from_bytes("tiny.safetensors", file(&specs)).unwrap();
    let model =
        Llama::<NdArray>::load(config, &weights, &Default::default(), &mut |_, _| {}).unwrap();
    let tokens: Vec<u32> = (0..40).map(|i| (i * 7 % 50) as u32).collect();
    let dense = PrefillOptions::dense();
    let mut cache = KvCache::new(2);
    let all: Vec<f32> = model
        .forward(&tokens, &mut cache, &dense, Logits::All, &mut |_, _| {})
        .unwrap()
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(all.len(), 40 * 50);
    assert!(all.iter().all(|x| x.is_finite()));
    let mut cache = KvCache::new(2);
    model
        .forward(
            &tokens[..39],
            &mut cache,
            &dense,
            Logits::Last,
            &mut |_, _| {},
        )
        .unwrap();
    let last: Vec<f32> = model
        .forward(
            &tokens[39..],
            &mut cache,
            &dense,
            Logits::Last,
            &mut |_, _| {},
        )
        .unwrap()
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let worst = last
        .iter()
        .zip(&all[39 * 50..])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "{worst}");
    // A weight of the wrong shape is named.
    let mut bad = specs.clone();
    bad[1].1 = vec![31];
    bad[1].2 = random(31);
    let weights = SafetensorsWeights::from_bytes("bad.safetensors", file(&bad)).unwrap();
    let config = model.config().clone();
    let e =
        Llama::<NdArray>::load(config, &weights, &Default::default(), &mut |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("model.norm.weight"), "{e}");
}
