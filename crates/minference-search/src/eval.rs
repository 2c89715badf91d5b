//! Runs tasks under several pre-fill settings and tabulates the answers.

use crate::tasks::{Task, TaskKind};
use minference_burn::SparseAttentionBackend;
use minference_llama::{
    generate, GenerateOptions, Llama, LlamaError, PrefillOptions, Sampling, Tokenizer,
};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A named way to pre-fill (dense, a searched config, a uniform pattern…).
#[derive(Debug, Clone)]
pub struct Setting {
    /// Column name in reports.
    pub name: String,
    /// The pre-fill options.
    pub prefill: PrefillOptions,
}

/// One task run under one setting.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The task kind.
    pub kind: TaskKind,
    /// Prompt length in tokens.
    pub tokens: usize,
    /// The length asked for (the prompt fits under it).
    pub length: usize,
    /// Depth of the fact.
    pub depth: f64,
    /// The setting's name.
    pub setting: String,
    /// True when the continuation holds every answer.
    pub correct: bool,
    /// The continuation.
    pub output: String,
    /// Pre-fill time in seconds.
    pub prefill_seconds: f64,
    /// Mean density over layers.
    pub density: f64,
}

/// Greedy-decodes up to `max_tokens` after `task`'s prompt under `setting`.
pub fn run_task<B: SparseAttentionBackend>(
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    task: &Task,
    length: usize,
    setting: &Setting,
    max_tokens: usize,
) -> Result<Outcome, LlamaError> {
    let prompt = tokenizer.encode(&task.prompt)?;
    let options = GenerateOptions {
        max_tokens,
        sampling: Sampling::Greedy,
        stop_on_eos: true,
        prefill: setting.prefill.clone(),
    };
    let g = generate(model, &prompt, &options, &mut |_| {}, &mut |_, _| {})?;
    let output = tokenizer.decode(&g.tokens, true)?;
    Ok(Outcome {
        kind: task.kind,
        tokens: prompt.len(),
        length,
        depth: task.depth,
        setting: setting.name.clone(),
        correct: task.is_correct(&output),
        output,
        prefill_seconds: g.prefill_time.as_secs_f64(),
        density: g.density.iter().sum::<f64>() / g.density.len().max(1) as f64,
    })
}

/// One table cell: (correct, total, sum of densities).
type Cell = (usize, usize, f64);

/// A markdown table: one row per (task, length), one accuracy column per setting (with the
/// mean density in brackets), then the mean accuracy of each setting.
pub fn markdown_table(outcomes: &[Outcome], settings: &[String]) -> String {
    let mut cells: BTreeMap<(TaskKind, usize), BTreeMap<&str, Cell>> = BTreeMap::new();
    for o in outcomes {
        let cell = cells
            .entry((o.kind, o.length))
            .or_default()
            .entry(o.setting.as_str())
            .or_default();
        cell.0 += o.correct as usize;
        cell.1 += 1;
        cell.2 += o.density;
    }
    let mut out = String::new();
    let _ = writeln!(out, "| task | length | {} |", settings.join(" | "));
    let _ = writeln!(out, "| --- | ---: |{}", " ---: |".repeat(settings.len()));
    for ((kind, length), row) in &cells {
        let _ = write!(out, "| {} | {} |", kind.name(), length);
        for s in settings {
            match row.get(s.as_str()) {
                Some(&(c, t, d)) => {
                    let _ = write!(out, " {}/{} ({:.2}) |", c, t, d / t as f64);
                }
                None => out.push_str(" – |"),
            }
        }
        out.push('\n');
    }
    let _ = write!(out, "| **all** | |");
    for s in settings {
        let (c, t) = outcomes
            .iter()
            .filter(|o| &o.setting == s)
            .fold((0, 0), |(c, t), o| (c + o.correct as usize, t + 1));
        let _ = write!(out, " **{:.1} %** |", 100.0 * c as f64 / t.max(1) as f64);
    }
    out.push('\n');
    out
}
