//! The search on heads whose right pattern is known: planted synthetic attention.
//!
//! Three KV heads of 2048 tokens, each with one planted shape:
//! - head 0, *local*: scores depend only on the distance to the query and fall off over a few
//!   hundred tokens, plus a sink on the first key — an A-shape head;
//! - head 1, *vertical-slash*: every query looks at a few fixed key columns and at the key a
//!   fixed distance (700) back — columns and a diagonal, far from the local window;
//! - head 2, *blocks*: each 64-query block looks at one earlier 64-key block chosen at random —
//!   a pattern no set of global columns or diagonals covers.
//!
//! The search must pick A-shape, Vertical-Slash and Block-Sparse for them, with high recall,
//! and the config it writes must load back for a model of that shape in both formats.

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use minference_burn::{ConfigFormat, LayerPatterns, ModelShape, Pattern, PatternConfig};
use minference_search::search::{choose, measure_layer};
use minference_search::SearchOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type B = NdArray<f32>;

const N: usize = 2048;
const D: usize = 64;

/// A unit-norm random vector.
fn code(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..D).map(|_| rng.random::<f32>() - 0.5).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

/// q and k rows (`[N, D]` each) of one planted head.
fn planted(kind: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
    let mut q = vec![0.0; N * D];
    let mut k = vec![0.0; N * D];
    let sink = code(rng);
    match kind {
        0 => {
            // Local: low-frequency rotations make q_i·k_j a smooth function of i − j.
            for p in 0..N {
                for f in 0..D / 2 {
                    let w = 0.008 * (f as f32 + 1.0) / (D / 2) as f32;
                    let (s, c) = (p as f32 * w).sin_cos();
                    q[p * D + 2 * f] = 0.25 * c;
                    q[p * D + 2 * f + 1] = 0.25 * s;
                    k[p * D + 2 * f] = c;
                    k[p * D + 2 * f + 1] = s;
                }
            }
            axpy(&mut k[..D], 3.0, &sink);
            for p in 0..N {
                axpy(&mut q[p * D..(p + 1) * D], 2.0, &sink);
            }
        }
        1 => {
            // Vertical-Slash: sink columns every query asks for, and the key 300 back.
            let codes: Vec<Vec<f32>> = (0..N).map(|_| code(rng)).collect();
            for p in 0..N {
                axpy(&mut q[p * D..(p + 1) * D], 12.0, &sink);
                if p >= 700 {
                    axpy(&mut q[p * D..(p + 1) * D], 14.0, &codes[p - 700]);
                }
                axpy(&mut k[p * D..(p + 1) * D], 1.0, &codes[p]);
            }
            for c in [0, 5, 17, 900, 1500] {
                axpy(&mut k[c * D..(c + 1) * D], 1.0, &sink);
            }
        }
        _ => {
            // Blocks: query block m asks for one earlier key block's code.
            let blocks = N / 64;
            let block_codes: Vec<Vec<f32>> = (0..blocks).map(|_| code(rng)).collect();
            for (b, c) in block_codes.iter().enumerate() {
                for p in b * 64..(b + 1) * 64 {
                    axpy(&mut k[p * D..(p + 1) * D], 1.0, c);
                }
            }
            for m in 0..blocks {
                let target = if m == 0 { 0 } else { rng.random_range(0..m) };
                for p in m * 64..(m + 1) * 64 {
                    axpy(&mut q[p * D..(p + 1) * D], 16.0, &block_codes[target]);
                }
            }
        }
    }
    (q, k)
}

#[test]
fn search_recovers_planted_patterns() {
    let mut rng = StdRng::seed_from_u64(11);
    let (mut q, mut k) = (Vec::new(), Vec::new());
    for kind in 0..3 {
        let (qh, kh) = planted(kind, &mut rng);
        q.extend(qh);
        k.extend(kh);
    }
    let device = Default::default();
    let q = Tensor::<B, 4>::from_data(TensorData::new(q, [1, 3, N, D]), &device);
    let k = Tensor::<B, 4>::from_data(TensorData::new(k, [1, 3, N, D]), &device);
    let options = SearchOptions {
        candidates: vec![
            Pattern::AShape {
                sink: 64,
                local: 512,
            },
            Pattern::VerticalSlash {
                vertical: 64,
                slash: 128,
            },
            Pattern::BlockSparse { top_k: 4 },
        ],
        budget: 0.65,
        min_recall: 0.8,
    };
    let measured = measure_layer::<B>(&q, &k, &options, 1.0).unwrap();
    let chosen: Vec<_> = measured.iter().map(|m| choose(m, &options)).collect();
    for (h, want) in ["a_shape", "vertical_slash", "block_sparse"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            chosen[h].pattern.name(),
            *want,
            "head {h}: chose {:?} from {:?}",
            chosen[h],
            measured[h]
        );
        assert!(chosen[h].recall > 0.9, "head {h}: {:?}", chosen[h]);
        assert!(chosen[h].cost <= options.budget);
    }
    // The wrong shapes really are worse on each head (the choice is not a tie-break).
    for (h, wrong) in [(0, 2), (1, 0), (2, 1)] {
        assert!(
            measured[h][wrong].recall < chosen[h].recall - 0.03,
            "{:?}",
            measured[h]
        );
    }

    let config = PatternConfig {
        model_name: Some("planted".into()),
        layers: vec![LayerPatterns::new(chosen.iter().map(|m| m.pattern).collect()).unwrap()],
        scores: vec![chosen.iter().map(|m| Some(m.recall)).collect()],
    };
    let shape = ModelShape {
        layers: 1,
        heads: 3,
    };
    for format in [ConfigFormat::Native, ConfigFormat::MInference] {
        let text = config.to_json(format);
        let back = PatternConfig::parse(&text, "search-output", shape).unwrap();
        if format == ConfigFormat::Native {
            assert_eq!(back.layers, config.layers);
        } else {
            // MInference's JSON keeps the kind and VS/A-shape sizes; its block-sparse entries
            // load as top-100 (its kernel ignores the size), so only the kinds are compared.
            let kinds = |c: &PatternConfig| -> Vec<&str> {
                c.layers[0].heads().iter().map(Pattern::name).collect()
            };
            assert_eq!(kinds(&back), kinds(&config));
        }
        let wrong = ModelShape {
            layers: 2,
            heads: 3,
        };
        assert!(PatternConfig::parse(&text, "search-output", wrong).is_err());
    }
}

#[test]
fn heads_under_the_recall_floor_stay_dense() {
    let options = SearchOptions {
        candidates: vec![],
        budget: 0.3,
        min_recall: 0.95,
    };
    let measured = [
        minference_search::Measured {
            pattern: Pattern::BlockSparse { top_k: 4 },
            recall: 0.9,
            cost: 0.2,
        },
        minference_search::Measured {
            pattern: Pattern::BlockSparse { top_k: 64 },
            recall: 0.99,
            cost: 0.6,
        },
    ];
    assert_eq!(choose(&measured, &options).pattern, Pattern::Dense);
    let relaxed = SearchOptions {
        min_recall: 0.5,
        ..options
    };
    assert_eq!(
        choose(&measured, &relaxed).pattern,
        Pattern::BlockSparse { top_k: 4 }
    );
}
