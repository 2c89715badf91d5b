//! `minference search`.

use crate::args::SearchArgs;
use crate::device::{dispatch, ModelSource, WithModel};
use crate::progress;
use minference::{ConfigFormat, SparseAttentionBackend};
use minference_llama::Loaded;
use minference_search::plot::pattern_map;
use minference_search::{search, SearchOptions, TaskBuilder, TaskKind};
use std::path::PathBuf;

struct Search(SearchArgs);

impl WithModel for Search {
    fn run<B: SparseAttentionBackend>(
        self,
        loaded: Loaded<B>,
        _path: PathBuf,
        _device: B::Device,
    ) -> Result<(), String> {
        let args = self.0;
        let text = match TaskKind::parse(&args.calib) {
            Some(kind) => TaskBuilder::new(&loaded.tokenizer)
                .build(kind, args.len, 0.5, args.seed)
                .prompt,
            None => std::fs::read_to_string(&args.calib).map_err(|e| {
                format!(
                    "--calib {}: neither a task (needle, kv-retrieval, passkey, multikey, vartrack) nor a readable file: {e}",
                    args.calib
                )
            })?,
        };
        let mut tokens = loaded.tokenizer.encode(&text).map_err(|e| e.to_string())?;
        tokens.truncate(args.len.min(loaded.model.config().context));
        let options = SearchOptions {
            budget: args.budget,
            min_recall: args.min_recall,
            ..SearchOptions::default_grid()
        };
        eprintln!(
            "searching {} candidates per head on {} tokens of {:?} ({} layers x {} heads), budget {:.0} % of dense tiles",
            options.candidates.len(),
            tokens.len(),
            args.calib,
            loaded.model.config().layers,
            loaded.model.config().heads,
            options.budget * 100.0
        );
        let mut report = search(
            &loaded.model,
            &tokens,
            &options,
            &mut progress::layers("search"),
        )
        .map_err(|e| e.to_string())?;
        report.config.model_name = Some(loaded.name.clone());
        report
            .config
            .save(&args.out, ConfigFormat::Native)
            .map_err(|e| e.to_string())?;
        let minference_json = args.out.with_extension("minference.json");
        report
            .config
            .save(&minference_json, ConfigFormat::MInference)
            .map_err(|e| e.to_string())?;
        let png = args.out.with_extension("png");
        let title = format!(
            "{}: searched patterns ({} tokens of {}, budget {:.0} %)",
            loaded.name,
            report.tokens,
            args.calib,
            options.budget * 100.0
        );
        pattern_map(&report.chosen, &title, &png).map_err(|e| format!("{}: {e}", png.display()))?;
        let mut counts = std::collections::BTreeMap::new();
        let (mut recall, mut cost, mut heads) = (0.0, 0.0, 0.0);
        for m in report.chosen.iter().flatten() {
            *counts.entry(m.pattern.name()).or_insert(0) += 1;
            recall += m.recall;
            cost += m.cost;
            heads += 1.0;
        }
        eprintln!(
            "chosen: {counts:?}; mean recall {:.3}, mean cost {:.3} of dense tiles",
            recall / heads,
            cost / heads
        );
        eprintln!(
            "wrote {}, {} and {}",
            args.out.display(),
            minference_json.display(),
            png.display()
        );
        Ok(())
    }
}

/// Runs `minference search`.
pub fn run(args: SearchArgs) -> Result<(), String> {
    let source = ModelSource {
        model: args.model.clone(),
        tokenizer: None,
    };
    dispatch(args.target, source, Search(args))
}
