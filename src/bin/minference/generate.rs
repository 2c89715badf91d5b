//! `minference generate`.

use crate::args::{DeviceKind, GenerateArgs, ModelArgs};
use crate::device::{dispatch, ModelSource, WithModel};
use crate::progress;
use minference::{PatternConfig, SparseAttentionBackend};
use minference_llama::{
    default_model_path, generate, plan, GenerateOptions, Generation, LlamaConfig, Loaded,
    PrefillOptions, Sampling,
};
use std::io::Write;
use std::path::PathBuf;

/// The searched pattern config shipped for the default model.
pub fn default_patterns_path() -> PathBuf {
    minference_llama::loader::weights_dir().join("patterns/SmolLM2-135M-Instruct.json")
}

/// The pre-fill options the arguments ask for, with a line describing them.
pub fn prefill_options(
    args: &ModelArgs,
    config: &LlamaConfig,
    model: &std::path::Path,
) -> Result<(PrefillOptions, String), String> {
    let min_sparse_len = args.min_sparse_len.unwrap_or(match args.target.device {
        DeviceKind::Cpu => plan::DEFAULT_MIN_SPARSE_LEN,
        DeviceKind::Vulkan | DeviceKind::Cuda => plan::DEFAULT_MIN_SPARSE_LEN_GPU,
    });
    let mut options = PrefillOptions {
        min_sparse_len,
        ..PrefillOptions::default()
    };
    if args.dense {
        return Ok((options, "dense (--dense)".into()));
    }
    let path = match &args.patterns {
        Some(p) => p.clone(),
        None if model == default_model_path() && default_patterns_path().exists() => {
            default_patterns_path()
        }
        None => return Ok((options, "none given: dense (pass --patterns FILE)".into())),
    };
    let patterns = PatternConfig::load(&path, config.pattern_shape()).map_err(|e| e.to_string())?;
    options.patterns = Some(patterns);
    Ok((
        options,
        format!("{} (sparse from {} tokens)", path.display(), min_sparse_len),
    ))
}

struct Generate(GenerateArgs);

impl WithModel for Generate {
    fn run<B: SparseAttentionBackend>(
        self,
        loaded: Loaded<B>,
        model_path: PathBuf,
        device: B::Device,
    ) -> Result<(), String> {
        let args = self.0;
        let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
        let config = model.config();
        let (prefill, patterns_line) = prefill_options(&args.model, config, &model_path)?;
        let text = match (&args.prompt, &args.file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                let body = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
                match &args.question {
                    Some(q) => format!("{body}\n\n{q}"),
                    None => body,
                }
            }
            (None, None) => unreachable!("clap requires a prompt or --file"),
        };
        let text = if args.raw || !tokenizer.has_chat_template() {
            text
        } else {
            tokenizer
                .chat_prompt(&text, args.system.as_deref())
                .map_err(|e| e.to_string())?
        };
        let prompt = tokenizer.encode(&text).map_err(|e| e.to_string())?;
        eprintln!(
            "model: {} ({} layers, {}/{} heads, context {}) on {:?}, attention engine: {}",
            loaded.name,
            config.layers,
            config.heads,
            config.kv_heads,
            config.context,
            args.model.target.device,
            B::engine(&device)
        );
        eprintln!("patterns: {patterns_line}");
        eprintln!("prompt: {} tokens", prompt.len());
        let sampling = if args.temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::TopP {
                temperature: args.temperature,
                top_p: args.top_p,
                seed: args.seed,
            }
        };
        let options = GenerateOptions {
            max_tokens: args.max_tokens,
            sampling,
            stop_on_eos: true,
            prefill,
        };
        let mut shown = String::new();
        let mut produced = Vec::new();
        let mut stdout = std::io::stdout();
        let mut print = |token: u32| {
            produced.push(token);
            // Decode everything so far and print what is new: a character split over two
            // tokens appears once complete.
            if let Ok(all) = tokenizer.decode(&produced, true) {
                if all.len() > shown.len() && !all.ends_with('\u{fffd}') {
                    let _ = write!(stdout, "{}", &all[shown.len()..]);
                    let _ = stdout.flush();
                    shown = all;
                }
            }
        };
        let generation = generate(
            model,
            &prompt,
            &options,
            &mut print,
            &mut progress::layers("pre-fill"),
        )
        .map_err(|e| e.to_string())?;
        println!();
        report(&generation);
        Ok(())
    }
}

fn report(g: &Generation) {
    let prefill = g.prefill_time.as_secs_f64();
    eprintln!(
        "pre-fill: {} tokens in {:.3} s ({:.0} tokens/s)",
        g.prompt_tokens,
        prefill,
        g.prompt_tokens as f64 / prefill.max(1e-9)
    );
    let sparse = g.sparse.iter().filter(|&&s| s).count();
    let mean = g.density.iter().sum::<f64>() / g.density.len().max(1) as f64;
    eprintln!(
        "density: {sparse}/{} layers sparse, mean {:.3} of causal pairs; per layer: {}",
        g.density.len(),
        mean,
        g.density
            .iter()
            .map(|d| format!("{d:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!(
        "decode: {} tokens in {:.3} s ({:.1} tokens/s){}",
        g.tokens.len(),
        g.decode_time.as_secs_f64(),
        g.tokens_per_second(),
        if g.stopped_on_eos {
            ", stopped at end of sequence"
        } else {
            ""
        }
    );
}

/// Runs `minference generate`.
pub fn run(args: GenerateArgs) -> Result<(), String> {
    let source = ModelSource {
        model: args.model.model.clone(),
        tokenizer: args.model.tokenizer.clone(),
    };
    dispatch(args.model.target, source, Generate(args))
}
