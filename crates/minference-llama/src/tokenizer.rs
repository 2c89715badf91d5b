//! Text ⇄ token ids with the `tokenizers` crate, from a `tokenizer.json` or rebuilt from the
//! GGUF metadata, plus the model's chat template.

use crate::error::{LlamaError, Result};
use crate::gguf::{Gguf, Value};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

/// Llama 3's pre-tokenizer split (llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF's token type of control tokens (`<|im_start|>`, `<|endoftext|>`).
const CONTROL: u64 = 3;
/// GGUF's token type of user-defined added tokens.
const USER_DEFINED: u64 = 4;

/// A model's tokenizer and chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos: Option<String>,
    eos: Option<String>,
    add_bos: Option<u32>,
}

fn err(e: impl std::fmt::Display) -> LlamaError {
    LlamaError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Reads a Hugging Face `tokenizer.json` (and, next to it, `tokenizer_config.json` for the
    /// chat template when present).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let config = path.with_file_name("tokenizer_config.json");
        let config: Option<serde_json::Value> = std::fs::read_to_string(config)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let field = |k: &str| {
            config
                .as_ref()
                .and_then(|c| c.get(k))
                .and_then(|v| v.as_str().map(str::to_string))
        };
        Ok(Self {
            inner,
            chat_template: field("chat_template"),
            bos: field("bos_token"),
            eos: field("eos_token"),
            add_bos: None,
        })
    }

    /// Rebuilds the tokenizer from GGUF metadata: byte-level BPE from `tokenizer.ggml.tokens`
    /// and `.merges`, the pre-tokenizer `tokenizer.ggml.pre` names, control tokens kept whole.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let model = gguf
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .unwrap_or("(missing)");
        if model != "gpt2" {
            return Err(err(format!(
                "the GGUF's tokenizer is {model:?}; only byte-level BPE (\"gpt2\") is rebuilt from GGUF metadata — pass the model's tokenizer.json instead"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            match gguf.get(key) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| err(format!("{key} holds a non-string")))
                    })
                    .collect(),
                _ => Err(err(format!("the GGUF has no {key} array"))),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => Err(err(format!("merge {m:?} is not two tokens"))),
            })
            .collect::<Result<_>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre = gguf.get("tokenizer.ggml.pre").and_then(Value::as_str);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let types: Vec<u64> = match gguf.get("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_u64).collect(),
            _ => vec![],
        };
        let added = |kind: u64, special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, &t)| t == kind)
                .map(|(tok, _)| AddedToken::from(tok.clone(), special).normalized(false))
                .collect()
        };
        inner
            .add_special_tokens(added(CONTROL, true))
            .map_err(err)?;
        inner.add_tokens(added(USER_DEFINED, false)).map_err(err)?;
        let token = |key: &str| {
            gguf.get(key)
                .and_then(Value::as_u64)
                .and_then(|id| tokens.get(id as usize).cloned())
        };
        let add_bos = gguf
            .get("tokenizer.ggml.add_bos_token")
            .is_some_and(|v| *v == Value::Bool(true));
        Ok(Self {
            inner,
            chat_template: gguf
                .get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
            add_bos: add_bos
                .then(|| gguf.get("tokenizer.ggml.bos_token_id"))
                .flatten()
                .and_then(Value::as_u64)
                .map(|id| id as u32),
        })
    }

    /// Token ids of `text` (special tokens such as `<|im_start|>` are recognised), with the
    /// model's BOS in front when its metadata asks for one.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(err)?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        ids.extend(self.add_bos);
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Text of `ids` (special tokens kept when `skip_special` is false).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(err)
    }

    /// Size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// True when the model ships a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The prompt text for one user message (and an optional system message) under the
    /// model's own chat template, ending where the assistant's answer starts.
    pub fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| err("this model has no chat template; run without --chat"))?;
        let mut env = minijinja::Environment::new();
        env.add_template("chat", template)
            .map_err(|e| err(format!("chat template: {e}")))?;
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(minijinja::context! { role => "system", content => system });
        }
        messages.push(minijinja::context! { role => "user", content => user });
        env.get_template("chat")
            .and_then(|t| {
                t.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => self.bos.as_deref().unwrap_or(""),
                    eos_token => self.eos.as_deref().unwrap_or(""),
                })
            })
            .map_err(|e| err(format!("chat template: {e}")))
    }
}

/// The pre-tokenizer llama.cpp's `tokenizer.ggml.pre` names (the split the merges were
/// learned on). An unknown name is an error rather than a guess: a wrong split gives ids the
/// model was never trained on.
fn pre_tokenizer(pre: Option<&str>) -> Result<PreTokenizerWrapper> {
    let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
    Ok(match pre {
        None | Some("default" | "gpt2" | "gpt-2") => byte_level(true).into(),
        // SmolLM's tokenizer splits every digit, then applies GPT-2's split.
        Some("smollm") => {
            Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into()
        }
        Some("llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx" | "falcon3") => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(err)?;
            Sequence::new(vec![split.into(), byte_level(false).into()]).into()
        }
        Some(other) => {
            return Err(err(format!(
                "GGUF pre-tokenizer {other:?} is not known here (default, gpt2, smollm, llama-bpe are); pass the model's tokenizer.json with --tokenizer"
            )))
        }
    })
}
