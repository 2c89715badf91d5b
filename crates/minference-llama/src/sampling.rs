//! Choosing the next token from logits: greedy, or temperature + nucleus (top-p) with a seed.

use crate::error::{LlamaError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token (ties go to the lowest id), deterministic.
    Greedy,
    /// A draw from the softmax of `logits / temperature`, restricted to the smallest set of
    /// most likely tokens whose probability reaches `top_p`; reproducible for a given seed.
    TopP {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Nucleus mass in (0, 1].
        top_p: f32,
        /// Random seed.
        seed: u64,
    },
}

/// A stateful sampler (its random stream advances with each draw).
#[derive(Debug, Clone)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler, after checking the options.
    pub fn new(sampling: Sampling) -> Result<Self> {
        let seed = match sampling {
            Sampling::Greedy => 0,
            Sampling::TopP {
                temperature,
                top_p,
                seed,
            } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(LlamaError::Sampling(format!(
                        "temperature must be > 0, found {temperature} (use greedy decoding for 0)"
                    )));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(LlamaError::Sampling(format!(
                        "top-p must be in (0, 1], found {top_p}"
                    )));
                }
                seed
            }
        };
        Ok(Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// The next token given the last position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self.sampling {
            Sampling::Greedy => argmax(logits),
            Sampling::TopP {
                temperature, top_p, ..
            } => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<(u32, f64)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, (((l - max) / temperature) as f64).exp()))
                    .collect();
                let total: f64 = probs.iter().map(|p| p.1).sum();
                // Most likely first; equal probabilities by id, so the order is total.
                probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let mut kept = 0;
                let mut mass = 0.0;
                for p in &probs {
                    kept += 1;
                    mass += p.1 / total;
                    if mass >= top_p as f64 {
                        break;
                    }
                }
                let nucleus = &probs[..kept];
                let nucleus_mass: f64 = nucleus.iter().map(|p| p.1).sum();
                let mut draw = self.rng.random::<f64>() * nucleus_mass;
                for &(id, p) in nucleus {
                    if draw < p {
                        return id;
                    }
                    draw -= p;
                }
                nucleus[kept - 1].0
            }
        }
    }
}

/// Index of the largest value; the first one on ties; NaN never wins.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn tiny_top_p_is_greedy_and_seeds_reproduce() {
        let logits = [0.1, 2.0, 1.9, -3.0];
        let mut s = Sampler::new(Sampling::TopP {
            temperature: 1.0,
            top_p: 1e-6,
            seed: 1,
        })
        .unwrap();
        assert!((0..20).all(|_| s.sample(&logits) == 1));
        let draws = |seed| {
            let mut s = Sampler::new(Sampling::TopP {
                temperature: 1.0,
                top_p: 1.0,
                seed,
            })
            .unwrap();
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        let d = draws(7);
        // Both likely tokens appear; the nucleus of 1.0 still rarely picks the tail.
        assert!(d.contains(&1) && d.contains(&2));
    }

    #[test]
    fn bad_options_are_refused() {
        for (t, p) in [(0.0, 0.9), (f32::NAN, 0.9), (1.0, 0.0), (1.0, 1.5)] {
            let r = Sampler::new(Sampling::TopP {
                temperature: t,
                top_p: p,
                seed: 0,
            });
            assert!(matches!(r, Err(LlamaError::Sampling(_))), "{t} {p}");
        }
    }
}
