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
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rayon::prelude::*;

/// Query positions whose slash codes are drawn at once (a few MiB at d = 128).
const CODE_CHUNK: usize = 4096;
/// Noise entries one task of [`fill_normals`] draws.
const NOISE_CHUNK: usize = 1 << 16;

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

/// One standard normal from exactly two 32-bit words of `rng` (Box–Muller: two uniforms, each
/// one word), which is what lets [`fill_normals`] seek.
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `out[i] = scale · normal` for the next `out.len()` normals of `rng`'s stream, drawn in
/// parallel: each task seeks a copy of the generator to its first entry's word (two words an
/// entry), and `rng` ends where drawing them in order would leave it, so the values are those
/// of the sequential loop (the bench's 1M-token structured draw has 3·2³⁰ of them: ~21 ns each
/// in order on one core).
fn fill_normals(rng: &mut ChaCha12Rng, out: &mut [f32], scale: f32) {
    let start = rng.get_word_pos();
    out.par_chunks_mut(NOISE_CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut rng = rng.clone();
            rng.set_word_pos(start + 2 * (c * NOISE_CHUNK) as u128);
            chunk.iter_mut().for_each(|x| *x = scale * normal(&mut rng));
        });
    rng.set_word_pos(start + 2 * out.len() as u128);
}

/// A random unit vector on the first `support` coordinates (RoPE's fastest-rotating pairs).
fn unit(rng: &mut impl Rng, d: usize, support: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..d)
        .map(|i| if i < support { normal(rng) } else { 0.0 })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

/// The position code of a slash family: a unit vector drawn from `(family, position)` alone.
fn code(family: u64, position: usize, d: usize) -> Vec<f32> {
    let mut rng =
        ChaCha12Rng::seed_from_u64(family ^ (position as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
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
    // `StdRng`'s generator, named so that `fill_normals` can seek in its stream.
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut q = vec![0f32; batch * heads * n_queries * d];
    let mut k = vec![0f32; batch * kv_heads * n_keys * d];
    let mut v = vec![0f32; batch * kv_heads * n_keys * d];
    fill_normals(&mut rng, &mut v, 1.0);
    let mut planted = Planted::default();
    if kind == InputKind::Random {
        fill_normals(&mut rng, &mut q, 1.0);
        fill_normals(&mut rng, &mut k, 1.0);
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
    let even = |rng: &mut ChaCha12Rng| -> Vec<f32> {
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
            // The noise comes from the one stream, in order ([`fill_normals`]); the planted
            // components depend on the position alone and are added in parallel, in the same
            // order per entry.
            let keys = &mut k[(b * kv_heads + g) * n_keys * d..][..n_keys * d];
            fill_normals(&mut rng, keys, noise);
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
            fill_normals(&mut rng, queries, noise);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_noise_is_the_sequential_stream() {
        // Past two tasks, a partial last one, after draws of other sizes (a u64, a range).
        let len = 2 * NOISE_CHUNK + 1234;
        let mut sequential = ChaCha12Rng::seed_from_u64(5);
        let mut parallel = sequential.clone();
        for rng in [&mut sequential, &mut parallel] {
            let _: u64 = rng.random();
            let _ = rng.random_range(1..1000usize);
        }
        let want: Vec<f32> = (0..len).map(|_| 0.5 * normal(&mut sequential)).collect();
        let mut got = vec![0f32; len];
        fill_normals(&mut parallel, &mut got, 0.5);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // Both generators go on from the same word.
        assert_eq!(parallel.random::<u32>(), sequential.random::<u32>());
    }
}
