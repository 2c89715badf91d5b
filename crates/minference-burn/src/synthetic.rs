//! Synthetic Q/K/V with the structure real attention heads show, so that sparse patterns have
//! something to find in tests and benchmarks.
//!
//! [`InputKind::Structured`] plants, per KV head, three components that RoPE turns into the
//! shapes MInference exploits:
//! - a *local* direction shared by queries and keys, rotated by position: its score depends on
//!   `position − key` and peaks at 0 (local decay, the A-shape's band);
//! - *slash* codes: a random unit vector per position `c(p)` (nearly orthogonal to the others);
//!   queries carry `c(position)` and keys `c(key + o)`, so the score peaks exactly at offset `o`
//!   (diagonals) — RoPE alone has too few fast-rotating pairs to make peaks that sharp;
//! - a *sink* direction that a few keys (the first ones and some random "heavy hitters") carry
//!   and every query asks for (vertical columns).
//!
//! [`InputKind::PowerLaw`] is the same with the local direction spread evenly over every RoPE
//! pair at Llama-3's base (500 000): each pair adds `cos(Δθ_i)`, about 1 while `Δθ_i < 1` and
//! about 0 on average after, so the local logit falls like `log Δ` across the whole context and
//! attention decays as a power law of the distance, as in long-context Llama heads (the
//! nearest diagonals then lead the slash scores, rather than only the first hundred).
//!
//! [`InputKind::Random`] is plain N(0, 1): no structure, the worst case for sparse attention.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Query positions whose slash codes are drawn at once (a few MiB at d = 128).
const CODE_CHUNK: usize = 4096;

/// Which inputs to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// Independent N(0, 1) entries.
    Random,
    /// Planted sinks, diagonals and local decay (see the module docs).
    Structured,
    /// [`InputKind::Structured`] with a power-law distance decay over the whole context.
    PowerLaw,
}

/// Shapes and seed of a synthetic draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Queries.
    pub n_queries: usize,
    /// Keys; queries sit at the last `n_queries` positions unless `query_offset` says otherwise.
    pub n_keys: usize,
    /// Absolute position of the first query (defaults to `n_keys − n_queries`).
    pub query_offset: Option<usize>,
    /// Head dimension (even).
    pub head_dim: usize,
    /// Structure.
    pub kind: InputKind,
    /// RNG seed: the same spec gives the same tensors on every platform.
    pub seed: u64,
}

/// What a structured draw planted, per KV head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planted {
    /// Offsets of the planted diagonals.
    pub diagonals: Vec<Vec<usize>>,
    /// Key positions that carry the sink direction.
    pub columns: Vec<Vec<usize>>,
}

/// Host tensors of a draw, row-major `[batch, heads, n, head_dim]`.
#[derive(Debug, Clone)]
pub struct SyntheticQkv {
    /// Queries.
    pub q: TensorData,
    /// Keys.
    pub k: TensorData,
    /// Values.
    pub v: TensorData,
    /// The planted structure (empty for random inputs).
    pub planted: Planted,
}

impl SyntheticQkv {
    /// Moves the draw to a device.
    pub fn tensors<B: Backend>(
        &self,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        (
            Tensor::from_data(self.q.clone(), device),
            Tensor::from_data(self.k.clone(), device),
            Tensor::from_data(self.v.clone(), device),
        )
    }
}

fn normal(rng: &mut StdRng) -> f32 {
    // Box–Muller: two uniforms give one standard normal.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// A random unit vector on the first `support` coordinates (RoPE's fastest-rotating pairs).
fn unit(rng: &mut StdRng, d: usize, support: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..d)
        .map(|i| if i < support { normal(rng) } else { 0.0 })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// The position code of a slash family: a unit vector drawn from `(family, position)` alone.
fn code(family: u64, position: usize, d: usize) -> Vec<f32> {
    let mut rng =
        StdRng::seed_from_u64(family ^ (position as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    unit(&mut rng, d, d)
}

/// Adds `weight · RoPE(position)(dir)` to `out` (pairs `(2i, 2i+1)`, frequencies `thetas`).
fn add_rotated(out: &mut [f32], dir: &[f32], position: usize, weight: f32, thetas: &[f64]) {
    for (i, &theta) in thetas.iter().enumerate() {
        let (sin, cos) = ((position as f64) * theta).sin_cos();
        let (x, y) = (dir[2 * i] as f64, dir[2 * i + 1] as f64);
        out[2 * i] += weight * (x * cos - y * sin) as f32;
        out[2 * i + 1] += weight * (x * sin + y * cos) as f32;
    }
}

/// Draws Q, K and V for `spec`.
pub fn generate(spec: &SyntheticSpec) -> SyntheticQkv {
    let SyntheticSpec {
        batch,
        heads,
        kv_heads,
        n_queries,
        n_keys,
        head_dim: d,
        kind,
        seed,
        ..
    } = *spec;
    assert!(
        kv_heads > 0 && heads % kv_heads == 0,
        "heads must be a multiple of kv_heads"
    );
    assert!(d % 2 == 0, "head_dim must be even for RoPE");
    let offset = spec
        .query_offset
        .unwrap_or(n_keys.saturating_sub(n_queries));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut q = vec![0f32; batch * heads * n_queries * d];
    let mut k = vec![0f32; batch * kv_heads * n_keys * d];
    let v: Vec<f32> = (0..batch * kv_heads * n_keys * d)
        .map(|_| normal(&mut rng))
        .collect();
    let mut planted = Planted::default();
    if kind == InputKind::Random {
        q.iter_mut()
            .chain(k.iter_mut())
            .for_each(|x| *x = normal(&mut rng));
        return pack(spec, q, k, v, planted);
    }
    // Weights chosen so that each planted peak adds a few units to the softmax logits.
    let amplitude = |logit: f32| (logit * (d as f32).sqrt()).sqrt();
    let base = if kind == InputKind::PowerLaw {
        500_000f64
    } else {
        10_000f64
    };
    let thetas: Vec<f64> = (0..d / 2)
        .map(|i| base.powf(-2.0 * i as f64 / d as f64))
        .collect();
    // The power-law local direction: equal weight on every pair.
    let even = |rng: &mut StdRng| -> Vec<f32> {
        let norm = (d as f32 / 2.0).sqrt();
        (0..d / 2)
            .flat_map(|_| {
                let angle = std::f32::consts::TAU * rng.random::<f32>();
                [angle.cos() / norm, angle.sin() / norm]
            })
            .collect()
    };
    let (local, slash, sink) = (amplitude(3.0), amplitude(4.0), amplitude(6.0));
    let noise = 0.5;
    let group = heads / kv_heads;
    for b in 0..batch {
        for g in 0..kv_heads {
            let a = if kind == InputKind::PowerLaw {
                even(&mut rng)
            } else {
                unit(&mut rng, d, d)
            };
            let s = unit(&mut rng, d, d);
            let slashes: Vec<(u64, usize)> = (0..3)
                .map(|_| (rng.random::<u64>(), rng.random_range(1..n_keys.max(2))))
                .collect();
            let mut columns: Vec<usize> = (0..4.min(n_keys)).collect();
            columns.extend((0..4).map(|_| rng.random_range(0..n_keys)));
            columns.sort_unstable();
            columns.dedup();
            // The noise is drawn in order, from the one stream; the planted components depend
            // on the position alone and are added in parallel, in the same order per entry.
            let keys = &mut k[(b * kv_heads + g) * n_keys * d..][..n_keys * d];
            keys.iter_mut().for_each(|x| *x = noise * normal(&mut rng));
            keys.par_chunks_mut(d).enumerate().for_each(|(j, row)| {
                add_rotated(row, &a, j, local, &thetas);
                for &(family, o) in &slashes {
                    row.iter_mut()
                        .zip(code(family, j + o, d))
                        .for_each(|(x, c)| *x += slash * c);
                }
                if columns.binary_search(&j).is_ok() {
                    row.iter_mut().zip(&s).for_each(|(x, si)| *x += sink * si);
                }
            });
            // The group's query heads are adjacent: one slice, head after head.
            let queries =
                &mut q[(b * heads + g * group) * n_queries * d..][..group * n_queries * d];
            queries
                .iter_mut()
                .for_each(|x| *x = noise * normal(&mut rng));
            // Each position's slash codes are drawn once for all the group's heads.
            for first in (0..n_queries).step_by(CODE_CHUNK) {
                let len = CODE_CHUNK.min(n_queries - first);
                let codes: Vec<Vec<f32>> = (first..first + len)
                    .into_par_iter()
                    .flat_map_iter(|i| {
                        slashes
                            .iter()
                            .map(move |&(family, _)| code(family, offset + i, d))
                    })
                    .collect();
                for head in queries.chunks_mut(n_queries * d) {
                    head[first * d..(first + len) * d]
                        .par_chunks_mut(d)
                        .zip(codes.par_chunks(slashes.len()))
                        .enumerate()
                        .for_each(|(r, (row, row_codes))| {
                            add_rotated(row, &a, offset + first + r, local, &thetas);
                            for c in row_codes {
                                row.iter_mut().zip(c).for_each(|(x, c)| *x += slash * c);
                            }
                            row.iter_mut().zip(&s).for_each(|(x, si)| *x += sink * si);
                        });
                }
            }
            if b == 0 {
                planted
                    .diagonals
                    .push(slashes.iter().map(|&(_, o)| o).collect());
                planted.columns.push(columns);
            }
        }
    }
    pack(spec, q, k, v, planted)
}

fn pack(
    spec: &SyntheticSpec,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    planted: Planted,
) -> SyntheticQkv {
    let kv_shape = [spec.batch, spec.kv_heads, spec.n_keys, spec.head_dim];
    SyntheticQkv {
        q: TensorData::new(q, [spec.batch, spec.heads, spec.n_queries, spec.head_dim]),
        k: TensorData::new(k, kv_shape),
        v: TensorData::new(v, kv_shape),
        planted,
    }
}
