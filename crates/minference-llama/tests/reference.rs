//! SmolLM2-135M against Hugging Face transformers (`weights/hf_reference.py` wrote the
//! fixture): the same token ids for fixed strings, the same logits at every position of fixed
//! prompts, the same greedy continuation.
//!
//! The weights are fetched on first use (`weights/fetch.sh`); without network these tests fail
//! with the fetch command rather than skipping.

use burn::backend::NdArray;
use minference_llama::{
    ensure_default_model, generate, load, GenerateOptions, KvCache, Loaded, Logits, PrefillOptions,
    Sampling,
};
use serde_json::Value;
use std::sync::OnceLock;

type B = NdArray<f32>;

/// Largest |ours − HF| allowed on a logit. Both decode the same Q4_1 blocks to f32 and run f32
/// arithmetic, so they differ only in summation order: 4e-5 measured on logits of ~10–20
/// (the fixture rounds to 1e-5).
const LOGIT_TOLERANCE: f32 = 5e-4;

fn fixture() -> Value {
    let text = include_str!("fixtures/smollm2_reference.json");
    serde_json::from_str(text).unwrap()
}

fn model() -> &'static Loaded<B> {
    static MODEL: OnceLock<Loaded<B>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = ensure_default_model().unwrap();
        load::<B>(&path, None, &Default::default(), &mut |_, _| {}).unwrap()
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn token_ids_match_transformers() {
    let f = fixture();
    let tok = &model().tokenizer;
    for s in f["strings"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&s["ids"]), "{text:?}");
        assert_eq!(tok.decode(&ids(&s["ids"]), false).unwrap(), text);
    }
    for s in f["digit_strings"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&s["hf_ids"]), "{text:?}");
    }
}

#[test]
fn logits_match_transformers_at_every_position() {
    let f = fixture();
    let model = &model().model;
    let vocab = model.config().vocab;
    for p in f["prompts"].as_array().unwrap() {
        let prompt = ids(&p["ids"]);
        let mut cache = KvCache::new(model.config().layers);
        let out = model
            .forward(
                &prompt,
                &mut cache,
                &PrefillOptions::dense(),
                Logits::All,
                &mut |_, _| {},
            )
            .unwrap();
        let logits: Vec<f32> = out.logits.into_data().to_vec().unwrap();
        assert_eq!(logits.len(), prompt.len() * vocab);
        let mut worst = 0f32;
        for (pos, (top_ids, top_logits)) in p["top_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(p["top_logits"].as_array().unwrap())
            .enumerate()
        {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            let top_ids = ids(top_ids);
            for (&id, want) in top_ids.iter().zip(top_logits.as_array().unwrap()) {
                let want = want.as_f64().unwrap() as f32;
                worst = worst.max((row[id as usize] - want).abs());
            }
            assert_eq!(
                minference_llama::sampling::argmax(row),
                top_ids[0],
                "top-1 differs at position {pos} of {:?}",
                p["text"]
            );
        }
        eprintln!("max |ours - HF| logit difference: {worst:e}");
        assert!(
            worst <= LOGIT_TOLERANCE,
            "max logit difference {worst} > {LOGIT_TOLERANCE} on {:?}",
            p["text"]
        );
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    let f = fixture();
    let g = &f["greedy"];
    let loaded = model();
    let new = ids(&g["new_ids"]);
    let options = GenerateOptions {
        max_tokens: new.len(),
        sampling: Sampling::Greedy,
        stop_on_eos: true,
        prefill: PrefillOptions::dense(),
    };
    let out = generate(
        &loaded.model,
        &ids(&g["ids"]),
        &options,
        &mut |_| {},
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(out.tokens, new);
    assert_eq!(
        loaded.tokenizer.decode(&out.tokens, false).unwrap(),
        g["new_text"].as_str().unwrap()
    );
}

#[test]
fn row_chunks_do_not_change_the_logits() {
    // The row-wise parts run a chunk of rows at a time (`chunk_rows`); chunks of 5 rows, which
    // split the prompt unevenly, must give the logits of one chunk at every position (the
    // default of 8192 rows never splits the fixture's prompts).
    let model = &model().model;
    let prompt = ids(&fixture()["prompts"][1]["ids"]);
    assert!(
        prompt.len() > 10 && !prompt.len().is_multiple_of(5),
        "{} tokens",
        prompt.len()
    );
    let run = |chunk_rows: usize| -> Vec<f32> {
        let options = PrefillOptions {
            chunk_rows,
            ..PrefillOptions::dense()
        };
        let mut cache = KvCache::new(model.config().layers);
        model
            .forward(&prompt, &mut cache, &options, Logits::All, &mut |_, _| {})
            .unwrap()
            .logits
            .into_data()
            .to_vec()
            .unwrap()
    };
    let (whole, chunked) = (run(prompt.len()), run(5));
    assert_eq!(whole.len(), chunked.len());
    let worst = whole
        .iter()
        .zip(&chunked)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "chunks of 5 rows differ by {worst}");
}

#[test]
fn incremental_decoding_equals_one_pass() {
    // Logits of the last token computed through the cache equal those of a single pass.
    let model = &model().model;
    let prompt = ids(&fixture()["prompts"][1]["ids"]);
    let (head, last) = prompt.split_at(prompt.len() - 1);
    let dense = PrefillOptions::dense();
    let mut cache = KvCache::new(model.config().layers);
    model
        .forward(head, &mut cache, &dense, Logits::Last, &mut |_, _| {})
        .unwrap();
    let step: Vec<f32> = model
        .forward(last, &mut cache, &dense, Logits::Last, &mut |_, _| {})
        .unwrap()
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let mut fresh = KvCache::new(model.config().layers);
    let whole: Vec<f32> = model
        .forward(&prompt, &mut fresh, &dense, Logits::Last, &mut |_, _| {})
        .unwrap()
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let worst = step
        .iter()
        .zip(&whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-3, "cache path differs by {worst}");
}
