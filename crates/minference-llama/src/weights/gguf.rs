//! Weights from a GGUF file, renamed and re-laid-out to match Hugging Face's.

use super::{check_shape, WeightSource};
use crate::error::{LlamaError, Result};
use crate::gguf::Gguf;

/// A GGUF file as a [`WeightSource`].
///
/// llama.cpp's converter interleaves the two rotary halves of every Q and K head (it applies
/// RoPE to adjacent pairs, Hugging Face to the two halves of a head); this source undoes that
/// permutation, so one RoPE serves both formats.
pub struct GgufWeights<'a> {
    gguf: &'a Gguf,
    heads: usize,
    kv_heads: usize,
}

impl<'a> GgufWeights<'a> {
    /// Weights of `gguf`, whose attention has `heads` query and `kv_heads` key/value heads.
    pub fn new(gguf: &'a Gguf, heads: usize, kv_heads: usize) -> Self {
        Self {
            gguf,
            heads,
            kv_heads,
        }
    }
}

/// The GGUF name of a Hugging Face tensor name, and which head count permutes its rows.
fn gguf_name(name: &str) -> Option<(String, Rotary)> {
    let fixed = match name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return Some((fixed.to_string(), Rotary::No));
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (short, rotary) = match suffix {
        "self_attn.q_proj.weight" => ("attn_q", Rotary::Query),
        "self_attn.k_proj.weight" => ("attn_k", Rotary::Key),
        "self_attn.v_proj.weight" => ("attn_v", Rotary::No),
        "self_attn.o_proj.weight" => ("attn_output", Rotary::No),
        "mlp.gate_proj.weight" => ("ffn_gate", Rotary::No),
        "mlp.up_proj.weight" => ("ffn_up", Rotary::No),
        "mlp.down_proj.weight" => ("ffn_down", Rotary::No),
        "input_layernorm.weight" => ("attn_norm", Rotary::No),
        "post_attention_layernorm.weight" => ("ffn_norm", Rotary::No),
        _ => return None,
    };
    Some((format!("blk.{layer}.{short}.weight"), rotary))
}

#[derive(Clone, Copy)]
enum Rotary {
    No,
    Query,
    Key,
}

impl WeightSource for GgufWeights<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (file_name, rotary) = gguf_name(name).ok_or_else(|| LlamaError::MissingTensor {
            name: name.into(),
            looked_for: "(no GGUF equivalent)".into(),
        })?;
        let info = self
            .gguf
            .tensor(&file_name)
            .ok_or_else(|| LlamaError::MissingTensor {
                name: name.into(),
                looked_for: file_name.clone(),
            })?;
        // GGUF lists dimensions innermost first.
        let got: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        check_shape(name, &got, shape)?;
        let values = self.gguf.dequantize(info)?;
        Ok(match rotary {
            Rotary::No => values,
            Rotary::Query => unpermute_rows(&values, self.heads, shape[1]),
            Rotary::Key => unpermute_rows(&values, self.kv_heads, shape[1]),
        })
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|(n, _)| self.gguf.tensor(&n).is_some())
    }
}

/// Undoes llama.cpp's rotary permutation of a `[heads · d, cols]` projection: its row
/// `h·d + 2i + half` holds Hugging Face's row `h·d + half·d/2 + i`.
fn unpermute_rows(values: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = values.len() / cols;
    let d = rows / heads;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for half in 0..2 {
                let from = h * d + 2 * i + half;
                let to = h * d + half * (d / 2) + i;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_interleaving() {
        // One head of width 4: HF rows [a0, a1, b0, b1] are stored as [a0, b0, a1, b1].
        let stored = [10.0, 20.0, 11.0, 21.0];
        assert_eq!(unpermute_rows(&stored, 1, 1), vec![10.0, 11.0, 20.0, 21.0]);
        // Two heads, two columns: each head is permuted on its own.
        let stored: Vec<f32> = (0..16).map(|x| x as f32).collect();
        let out = unpermute_rows(&stored, 2, 2);
        assert_eq!(&out[..8], &[0.0, 1.0, 4.0, 5.0, 2.0, 3.0, 6.0, 7.0]);
        assert_eq!(&out[8..], &[8.0, 9.0, 12.0, 13.0, 10.0, 11.0, 14.0, 15.0]);
    }

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.12.mlp.down_proj.weight").unwrap().0,
            "blk.12.ffn_down.weight"
        );
        assert!(gguf_name("model.layers.x.mlp.down_proj.weight").is_none());
        assert!(gguf_name("unknown").is_none());
    }
}
