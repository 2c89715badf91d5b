//! `minference eval`.

use crate::args::EvalArgs;
use crate::device::{dispatch, ModelSource, WithModel};
use crate::generate::default_patterns_path;
use indicatif::{ProgressBar, ProgressStyle};
use minference::{LayerPatterns, Pattern, PatternConfig, SparseAttentionBackend};
use minference_llama::{Loaded, PrefillOptions};
use minference_search::eval::{markdown_table, run_task, Setting};
use minference_search::plot::needle_heatmap;
use minference_search::{TaskBuilder, TaskKind};
use std::path::PathBuf;

struct Eval(EvalArgs);

fn uniform(pattern: Pattern, layers: usize, heads: usize) -> Result<PrefillOptions, String> {
    let layer = LayerPatterns::uniform(pattern, heads).map_err(|e| e.to_string())?;
    Ok(PrefillOptions::sparse(PatternConfig {
        model_name: None,
        layers: vec![layer; layers],
        scores: vec![vec![None; heads]; layers],
    }))
}

impl WithModel for Eval {
    fn run<B: SparseAttentionBackend>(
        self,
        loaded: Loaded<B>,
        _path: PathBuf,
        _device: B::Device,
    ) -> Result<(), String> {
        let args = self.0;
        let config = loaded.model.config();
        let (layers, heads) = (config.layers, config.heads);
        let mut settings = Vec::new();
        for name in &args.settings {
            let prefill = match name.as_str() {
                "dense" => PrefillOptions::dense(),
                "searched" => {
                    let path = args.patterns.clone().unwrap_or_else(default_patterns_path);
                    let patterns = PatternConfig::load(&path, config.pattern_shape())
                        .map_err(|e| e.to_string())?;
                    PrefillOptions::sparse(patterns)
                }
                "vs-default" => uniform(
                    Pattern::VerticalSlash {
                        vertical: 1000,
                        slash: 6096,
                    },
                    layers,
                    heads,
                )?,
                "a-shape" => uniform(
                    Pattern::AShape {
                        sink: 64,
                        local: 1024,
                    },
                    layers,
                    heads,
                )?,
                other => {
                    return Err(format!(
                        "unknown setting {other:?} (dense, searched, vs-default, a-shape)"
                    ))
                }
            };
            settings.push(Setting {
                name: name.clone(),
                prefill,
            });
        }
        let kinds = args
            .tasks
            .iter()
            .map(|t| TaskKind::parse(t).ok_or_else(|| format!("unknown task {t:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let builder = TaskBuilder::new(&loaded.tokenizer);
        let mut jobs = Vec::new();
        for &kind in &kinds {
            let depths = if kind == TaskKind::Needle {
                args.depths.clone()
            } else {
                vec![0.5]
            };
            for &length in &args.lengths {
                for &depth in &depths {
                    jobs.push((kind, length, depth));
                }
            }
        }
        let bar = ProgressBar::new((jobs.len() * settings.len()) as u64);
        bar.set_style(
            ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let mut outcomes = Vec::new();
        for (i, &(kind, length, depth)) in jobs.iter().enumerate() {
            let task = builder.build(kind, length, depth, args.seed + i as u64);
            for setting in &settings {
                bar.set_message(format!(
                    "{} {} {:.2} {}",
                    kind.name(),
                    length,
                    depth,
                    setting.name
                ));
                let o = run_task(
                    &loaded.model,
                    &loaded.tokenizer,
                    &task,
                    length,
                    setting,
                    args.max_tokens,
                )
                .map_err(|e| e.to_string())?;
                bar.suspend(|| {
                    eprintln!(
                        "{:>9} {:>5} tok depth {:.2} {:>10}: {} {:?} ({:.1} s, density {:.2})",
                        kind.name(),
                        o.tokens,
                        depth,
                        setting.name,
                        if o.correct { "ok  " } else { "MISS" },
                        o.output.trim(),
                        o.prefill_seconds,
                        o.density
                    )
                });
                outcomes.push(o);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        let names: Vec<String> = settings.iter().map(|s| s.name.clone()).collect();
        let table = markdown_table(&outcomes, &names);
        println!("{table}");
        if let Some(out) = &args.out {
            let command: Vec<String> = std::env::args().collect();
            let text = format!(
                "# Accuracy: {} on synthetic long-context tasks\n\nCommand: `{}`\n\nEach cell: correct/total (mean density of causal pairs). Greedy decoding of {} tokens; an answer counts when the continuation contains it.\n\n{table}",
                loaded.name,
                command.join(" "),
                args.max_tokens
            );
            std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
            // The heat map plots the needle task's depths; without it there is none to write.
            if kinds.contains(&TaskKind::Needle) {
                let png = out.with_extension("png");
                needle_heatmap(&outcomes, &names, &png)
                    .map_err(|e| format!("{}: {e}", png.display()))?;
                eprintln!("wrote {} and {}", out.display(), png.display());
            } else {
                eprintln!("wrote {}", out.display());
            }
        }
        Ok(())
    }
}

/// Runs `minference eval`.
pub fn run(args: EvalArgs) -> Result<(), String> {
    let source = ModelSource {
        model: args.model.clone(),
        tokenizer: None,
    };
    dispatch(args.target, source, Eval(args))
}
