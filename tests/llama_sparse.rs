//! Sparse pre-fill of SmolLM2-135M against dense pre-fill of the same model (DESIGN §8):
//! full budgets give dense logits; the shipped searched patterns keep ≥ 99 % top-1 agreement on
//! a ~4K-token prompt; a needle in a 6K-token haystack is found both ways; bad input is refused.
//!
//! The weights are fetched on first use (`weights/fetch.sh`).

#![cfg(feature = "ndarray")]

use minference::backend::Cpu;
use minference::llama::{
    ensure_default_model, generate, load, GenerateOptions, KvCache, LlamaError, Loaded, Logits,
    PrefillOptions, Sampling,
};
use minference::{LayerPatterns, MinferenceError, ModelShape, Pattern, PatternConfig};
use minference_search::{TaskBuilder, TaskKind};
use std::sync::OnceLock;

fn model() -> &'static Loaded<Cpu> {
    static MODEL: OnceLock<Loaded<Cpu>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_default_model().unwrap();
        load::<Cpu>(&path, None, &Default::default(), &mut |_, _| {}).unwrap()
    })
}

fn searched() -> PatternConfig {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/patterns/SmolLM2-135M-Instruct.json"
    );
    PatternConfig::load(path, model().model.config().pattern_shape()).unwrap()
}

fn logits(tokens: &[u32], options: &PrefillOptions) -> Vec<f32> {
    let m = &model().model;
    let mut cache = KvCache::new(m.config().layers);
    m.forward(tokens, &mut cache, options, Logits::All, &mut |_, _| {})
        .unwrap()
        .logits
        .into_data()
        .to_vec()
        .unwrap()
}

fn prompt(kind: TaskKind, length: usize, depth: f64) -> (Vec<u32>, minference_search::Task) {
    let loaded = model();
    let task = TaskBuilder::new(&loaded.tokenizer).build(kind, length, depth, 3);
    (loaded.tokenizer.encode(&task.prompt).unwrap(), task)
}

#[test]
fn full_budget_patterns_give_dense_logits() {
    let (tokens, _) = prompt(TaskKind::Passkey, 700, 0.5);
    let n = tokens.len();
    let c = model().model.config();
    let cycle = [
        Pattern::VerticalSlash {
            vertical: n,
            slash: n,
        },
        Pattern::BlockSparse {
            top_k: n.div_ceil(64),
        },
        Pattern::AShape { sink: n, local: n },
    ];
    let layer = LayerPatterns::new((0..c.heads).map(|h| cycle[h % 3]).collect()).unwrap();
    let config = PatternConfig {
        model_name: None,
        layers: vec![layer; c.layers],
        scores: vec![vec![None; c.heads]; c.layers],
    };
    let dense = logits(&tokens, &PrefillOptions::dense());
    let sparse = logits(&tokens, &PrefillOptions::sparse(config));
    let worst = dense
        .iter()
        .zip(&sparse)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-3,
        "full-budget sparse logits differ from dense by {worst}"
    );
}

#[test]
fn searched_patterns_keep_top1_agreement_on_4k_tokens() {
    let (tokens, _) = prompt(TaskKind::MultiKey, 4096, 0.3);
    assert!(tokens.len() > 3900, "{}", tokens.len());
    let vocab = model().model.config().vocab;
    let dense = logits(&tokens, &PrefillOptions::dense());
    let sparse = logits(&tokens, &PrefillOptions::sparse(searched()));
    let argmax = |row: &[f32]| minference::llama::sampling::argmax(row);
    let agree = dense
        .chunks_exact(vocab)
        .zip(sparse.chunks_exact(vocab))
        .filter(|(d, s)| argmax(d) == argmax(s))
        .count();
    let rate = agree as f64 / tokens.len() as f64;
    eprintln!(
        "top-1 agreement over {} positions: {:.4}",
        tokens.len(),
        rate
    );
    assert!(rate >= 0.99, "top-1 agreement {rate:.4} < 0.99");
}

#[test]
fn needle_in_6k_haystack_is_found_dense_and_sparse() {
    let (tokens, task) = prompt(TaskKind::Needle, 6144, 0.4);
    let loaded = model();
    for (name, prefill) in [
        ("dense", PrefillOptions::dense()),
        ("searched", PrefillOptions::sparse(searched())),
    ] {
        let options = GenerateOptions {
            max_tokens: 10,
            sampling: Sampling::Greedy,
            stop_on_eos: true,
            prefill,
        };
        let g = generate(
            &loaded.model,
            &tokens,
            &options,
            &mut |_| {},
            &mut |_, _| {},
        )
        .unwrap();
        let text = loaded.tokenizer.decode(&g.tokens, true).unwrap();
        assert!(
            task.is_correct(&text),
            "{name}: {text:?}, expected {:?}",
            task.answers
        );
        if name == "searched" {
            assert!(g.sparse.iter().any(|&s| s), "no layer ran sparse");
        }
    }
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    let m = &model().model;
    let c = m.config();
    let mut cache = KvCache::new(c.layers);
    let dense = PrefillOptions::dense();
    let run = |tokens: &[u32], options: &PrefillOptions, cache: &mut KvCache<Cpu>| {
        m.forward(tokens, cache, options, Logits::Last, &mut |_, _| {})
            .map(|_| ())
    };
    assert!(matches!(
        run(&[], &dense, &mut cache),
        Err(LlamaError::EmptyPrompt)
    ));
    assert!(matches!(
        run(&[c.vocab as u32], &dense, &mut cache),
        Err(LlamaError::TokenOutOfRange { .. })
    ));
    let too_long = vec![1u32; c.context + 1];
    let e = run(&too_long, &dense, &mut cache).unwrap_err();
    assert!(matches!(e, LlamaError::ContextOverflow { .. }));
    assert!(e.to_string().contains("context is 8192"), "{e}");
    // A config for another model (Llama-3-8B's 32 × 32) is refused, naming both shapes.
    let other = PatternConfig::uniform(
        Pattern::Dense,
        ModelShape {
            layers: 32,
            heads: 32,
        },
    )
    .unwrap();
    let e = run(&[1, 2, 3], &PrefillOptions::sparse(other), &mut cache).unwrap_err();
    assert!(
        matches!(
            e,
            LlamaError::Attention(MinferenceError::ModelMismatch { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("30 layers x 9 heads"), "{e}");
    // Generation checks the context before running anything.
    let options = GenerateOptions {
        max_tokens: 100,
        sampling: Sampling::Greedy,
        stop_on_eos: true,
        prefill: dense,
    };
    let long = vec![1u32; c.context - 50];
    let e = generate(m, &long, &options, &mut |_| {}, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(
            e,
            LlamaError::ContextOverflow {
                new_tokens: 100,
                ..
            }
        ),
        "{e}"
    );
    // Sampling options out of range.
    let options = GenerateOptions {
        sampling: Sampling::TopP {
            temperature: -1.0,
            top_p: 0.9,
            seed: 0,
        },
        max_tokens: 1,
        ..options
    };
    assert!(matches!(
        generate(m, &[1, 2], &options, &mut |_| {}, &mut |_, _| {}),
        Err(LlamaError::Sampling(_))
    ));
}
