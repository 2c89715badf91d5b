//! The timed sweep: per-layer times of the dense and sparse kernels on synthetic inputs, with
//! TFLOP/s on computed tiles, optionally dumping the inputs for other implementations.

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use minference::cube;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern};
use minference_kernels::sparse_flash::Path;
use std::time::Instant;

use crate::compare::host;
use crate::{Cuda, Device};

/// One timed row of the sweep, as `--json` writes it.
pub(crate) struct Record {
    pub(crate) pattern: String,
    pub(crate) n: usize,
    pub(crate) input: &'static str,
    pub(crate) ms: f64,
    pub(crate) tflops: f64,
    pub(crate) density: f64,
    pub(crate) index_ms: f64,
}

/// Median wall-clock milliseconds of `repeats` runs of `f` after one warm-up, the device
/// synchronised after each.
pub(crate) fn time_ms(device: &Device, repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    <Cuda<half::bf16> as Backend>::sync(device).unwrap();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        f();
        <Cuda<half::bf16> as Backend>::sync(device).unwrap();
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Writes `t` as a little-endian f32 `.npy` file (format version 1.0).
pub(crate) fn write_npy<B: Backend>(
    t: &Tensor<B, 4>,
    path: &std::path::Path,
) -> std::io::Result<()> {
    use std::io::Write;
    let shape = t.dims();
    let values: Vec<f32> = host(t);
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}",
        shape[0], shape[1], shape[2], shape[3]
    );
    // Magic (6) + version (2) + length (2) + header + newline: a multiple of 64 bytes.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(b"\x93NUMPY\x01\x00")?;
    file.write_all(&(header.len() as u16).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    for x in values {
        file.write_all(&x.to_le_bytes())?;
    }
    file.flush()
}

/// Times each `selected` pattern (`free`, `dense`, `bs`, `vs`) at each size on each input kind
/// (bf16, 32/8 heads, d = 128; the attention and the device index timed apart), printing a row
/// each; `groups` runs the grouped register kernel where the device's choice would run, and
/// `dump` writes each draw as `.npy`.
pub(crate) fn sweep(
    device: &Device,
    sizes: &[usize],
    kinds: &[InputKind],
    selected: &[String],
    dump: Option<&std::path::Path>,
    groups: bool,
) -> Vec<Record> {
    // `--mma-groups`: the grouped register kernel where the device's choice would run.
    let register = if groups { Path::MmaGroups } else { Path::Mma };
    let tag = if groups { " [groups]" } else { "" };
    type B = Cuda<half::bf16>;
    let (heads, kv_heads, d) = (32, 8, 128);
    let scale = 1.0 / (d as f64).sqrt();
    let mut records = Vec::new();
    for &n in sizes {
        for &kind in kinds {
            let input = match kind {
                InputKind::Random => "random",
                InputKind::Structured => "structured",
                InputKind::PowerLaw => "powerlaw",
            };
            // Burn's generator seeded per size and kind: each draw (the random input, the
            // structured input's noise) is the same in every run and every device call, so rows
            // from different calls time the same Q/K/V (and the same index density).
            let kind_seed = match kind {
                InputKind::Random => 1,
                InputKind::Structured => 2,
                InputKind::PowerLaw => 3,
            };
            B::seed(device, (n as u64) << 2 | kind_seed);
            let (q, k, v) = if kind == InputKind::Random {
                let r = |h| {
                    Tensor::<B, 4>::random([1, h, n, d], Distribution::Normal(0.0, 1.0), device)
                };
                (r(heads), r(kv_heads), r(kv_heads))
            } else {
                // Structure per KV head, shared by its query group, plus fresh noise per query head.
                let spec = SyntheticSpec {
                    batch: 1,
                    heads: kv_heads,
                    kv_heads,
                    n_queries: n,
                    n_keys: n,
                    query_offset: None,
                    head_dim: d,
                    kind,
                    seed: 3,
                };
                let (q8, k, v) = generate(&spec).tensors::<B>(device);
                let q = q8
                    .reshape([1, kv_heads, 1, n, d])
                    .repeat_dim(2, heads / kv_heads)
                    .reshape([1, heads, n, d]);
                let noise = Tensor::<B, 4>::random(
                    [1, heads, n, d],
                    Distribution::Normal(0.0, 0.3),
                    device,
                );
                (q + noise, k, v)
            };
            let bf16 = |t: Tensor<B, 4>| t.cast(burn::tensor::FloatDType::BF16);
            let (q, k, v) = (bf16(q), bf16(k), bf16(v));
            assert_eq!(q.dtype(), burn::tensor::DType::BF16);
            if let Some(dir) = dump {
                std::fs::create_dir_all(dir).expect("create --dump-inputs DIR");
                for (name, t) in [("q", &q), ("k", &k), ("v", &v)] {
                    let path = dir.join(format!("{input}-{n}-{name}.npy"));
                    write_npy(t, &path).expect("write --dump-inputs file");
                    println!("wrote {}", path.display());
                }
            }
            let g = Geometry::new(n, n, None).unwrap();
            let wanted = |name: &str| selected.iter().any(|p| p == name);
            // One timed run past 512K tokens (seconds each), after the warm-up run.
            let repeats = match n {
                n if n >= 524288 => 1,
                n if n >= 131072 => 3,
                _ => 5,
            };
            if wanted("free") {
                // Causal dense with no index at all (what dense layers of the model run).
                let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
                let ms = time_ms(device, repeats, || {
                    cube::causal_attention_on(prim(&q), prim(&k), prim(&v), &g, scale, register)
                        .unwrap()
                        .expect("the mma path runs here");
                });
                let flops = 4.0 * heads as f64 * d as f64 * (n as f64) * (n as f64 + 64.0) / 2.0;
                let record = Record {
                    pattern: format!("dense (causal, no index){tag}"),
                    n,
                    input,
                    ms,
                    tflops: flops / ms / 1e9,
                    density: 1.0,
                    index_ms: 0.0,
                };
                println!(
                    "{:>7} {:<11} {:<32} {:>10.2} ms {:>7.1} TFLOP/s",
                    n, input, record.pattern, ms, record.tflops
                );
                records.push(record);
            }
            for (name, pattern, path) in [
                ("dense", Pattern::Dense, None),
                ("dense", Pattern::Dense, Some(Path::TensorCore)),
                ("bs", Pattern::BlockSparse { top_k: 100 }, None),
                (
                    "vs",
                    Pattern::VerticalSlash {
                        vertical: 1000,
                        slash: 6096,
                    },
                    None,
                ),
            ] {
                if !wanted(name) {
                    continue;
                }
                // The shared-memory `cmma` path is timed once, at the smallest size if that is at
                // most 32K (17 s a launch at 128K), for the ratio.
                if path.is_some() && (n != sizes[0] || n > 32768) {
                    continue;
                }
                let patterns = LayerPatterns::uniform(pattern, heads).unwrap();
                let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
                // The whole index on the device: estimation, top-k and conversion.
                let mut handles = None;
                let index_ms = time_ms(device, repeats, || {
                    handles =
                        Some(cube::device_index(prim(&q), prim(&k), &patterns, &g, scale).unwrap());
                });
                let handles = handles.expect("timed at least once");
                let index = cube::download_index(&prim(&q).client, handles.clone(), g, 1, heads);
                let ms = time_ms(device, repeats, || {
                    cube::attention_with_handles(
                        prim(&q),
                        prim(&k),
                        prim(&v),
                        &g,
                        &handles,
                        scale,
                        path.or(groups.then_some(register)),
                        false,
                    )
                    .unwrap();
                });
                let flops = index.computed_tiles() as f64 * 64.0 * 64.0 * d as f64 * 4.0;
                let label = match path {
                    Some(Path::TensorCore) => format!("{pattern} [cmma path]"),
                    _ => format!("{pattern}{tag}"),
                };
                let record = Record {
                    pattern: label,
                    n,
                    input,
                    ms,
                    tflops: flops / ms / 1e9,
                    density: index.density(),
                    index_ms,
                };
                println!("{:>7} {:<11} {:<32} {:>10.2} ms {:>7.1} TFLOP/s  density {:>5.1}%  (index {:.1} ms)", n, input, record.pattern, ms, record.tflops, record.density * 100.0, index_ms);
                records.push(record);
            }
        }
    }
    records
}
