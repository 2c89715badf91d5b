//! GPU check-and-time binary (build here with `--features cuda`, run on the GPU machine):
//!
//! 1. correctness: every kernel path against the fp32 reference under the same index, in f32
//!    (relative error ≤ 1e-5) and in f16/bf16 (max error ≤ 2× that of a naive attention computed
//!    in the same low precision — FlashAttention's rule), outputs poisoned before each launch;
//! 2. a sweep of per-layer times (bf16, 32 query / 8 KV heads, d = 128) for our dense kernel,
//!    Block-Sparse top-100 and Vertical-Slash (1000, 6096), with TFLOP/s on computed tiles.
//!
//! ```text
//! minference-gpu-bench [--sizes 16384,32768|none]
//!                      [--skip-checks|--index-checks-only|--mma-checks-only]
//!                      [--json FILE]
//!                      [--llama 32768,131072 [--chunk-rows 2048,8192]] [--dump-inputs DIR]
//!                      [--matmul 2048,8192] [--burn-checks]
//!                      [--inputs structured,powerlaw,random] [--patterns free,dense,bs,vs]
//!                      [--mma-groups] [--large-check]
//! ```
//!
//! `--index-checks-only` runs only the device estimation and index checks, not the kernel ones;
//! `--mma-checks-only` only the register kernels' checks (both: the device's choice and the
//! grouped one; indexed and index-free). Either skips the sweep unless `--sizes` names sizes.
//! `--mma-groups` sweeps the grouped register kernel (`Path::MmaGroups`) where the device's
//! choice would run, for comparisons in one binary.
//! `--patterns` picks the sweep's rows: `free` our index-free dense kernel, `dense` the indexed
//! kernel on a dense index, `bs` Block-Sparse top-100, `vs` Vertical-Slash (1000, 6096).
//! `--large-check` runs a layer past the kernels' 32-bit offsets (64/8 heads, 768K tokens) in
//! passes and checks it against its heads run alone.
//! `--llama` also times the pre-fill of a random-weight Llama-3.1-8B-shaped model (time to
//! first token; dense, Block-Sparse and Vertical-Slash everywhere), for each row chunk of its
//! row-wise parts that `--chunk-rows` lists. `--matmul ROWS` times Burn's matmul on a
//! Llama-3-8B layer's projection shapes for each row count. `--burn-checks` compares Burn's own
//! GPU matmul and softmax (autotuned per shape) with the host's on the same values. `--dump-inputs DIR` writes
//! the exact Q, K and V each sweep size timed (bf16 values, stored as f32 `.npy`,
//! `[1, heads, n, 128]`) as `DIR/{structured,powerlaw,random}-{n}-{q,k,v}.npy`, so that another
//! implementation (MInference's kernels) can be timed on the same inputs.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Distribution, Element, Tensor, TensorData};
use minference::cube;
use minference::reference::build_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern, SparseAttentionBackend, SparseIndex};
use minference_kernels::sparse_flash::Path;
use std::time::Instant;

type Cuda<F> = minference::backend::Cuda<F>;
type Cpu = minference::backend::Cpu;

/// (batch, heads, kv_heads, n_queries, n_keys, query offset, head_dim)
type Case = (usize, usize, usize, usize, usize, Option<usize>, usize);
type Device = burn::backend::cuda::CudaDevice;

fn host<B: Backend>(t: &Tensor<B, 4>) -> Vec<f32> {
    t.to_data().iter::<f32>().collect()
}

/// The same values on the host backend (NdArray, f32): the references that do not depend on
/// which kernels Burn picked on the GPU.
fn to_cpu<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Tensor<Cpu, D> {
    Tensor::from_data(t.to_data().convert::<f32>(), &Default::default())
}

fn max_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_finite() {
                (x - y).abs() as f64
            } else {
                f64::INFINITY
            }
        })
        .fold(0.0, f64::max)
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let d = *x as f64 - *y as f64;
        num += if d.is_finite() { d * d } else { f64::INFINITY };
        den += (*y as f64) * (*y as f64);
    }
    (num / den).sqrt()
}

/// Exact reference on the host in f64 under the index's mask (heads spread over the cores).
fn host_reference(
    draw: &minference::synthetic::SyntheticQkv,
    spec: &SyntheticSpec,
    index: &SparseIndex,
    scale: f64,
) -> Vec<f32> {
    let q: Vec<f64> = draw.q.iter::<f32>().map(f64::from).collect();
    let k: Vec<f64> = draw.k.iter::<f32>().map(f64::from).collect();
    let v: Vec<f64> = draw.v.iter::<f32>().map(f64::from).collect();
    let (b_n, h_n, hkv, n_q, n_k, d) = (
        spec.batch,
        spec.heads,
        spec.kv_heads,
        spec.n_queries,
        spec.n_keys,
        spec.head_dim,
    );
    let mut out = vec![0f32; b_n * h_n * n_q * d];
    std::thread::scope(|scope| {
        for (bh, o) in out.chunks_mut(n_q * d).enumerate() {
            let (q, k, v) = (&q, &k, &v);
            scope.spawn(move || {
                let (b, h) = (bh / h_n, bh % h_n);
                let g = h / (h_n / hkv);
                let mask = index.mask_rows(b, h, 0..n_q);
                let kb = (b * hkv + g) * n_k * d;
                for i in 0..n_q {
                    let qi = &q[(bh * n_q + i) * d..][..d];
                    let logits: Vec<f64> = (0..n_k)
                        .map(|j| {
                            if mask[i * n_k + j] {
                                qi.iter()
                                    .zip(&k[kb + j * d..][..d])
                                    .map(|(x, y)| x * y)
                                    .sum::<f64>()
                                    * scale
                            } else {
                                f64::NEG_INFINITY
                            }
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
                    let total: f64 = w.iter().sum();
                    for c in 0..d {
                        o[i * d + c] = ((0..n_k)
                            .filter(|&j| w[j] > 0.0)
                            .map(|j| w[j] * v[kb + j * d + c])
                            .sum::<f64>()
                            / total) as f32;
                    }
                }
            });
        }
    });
    out
}

/// Naive masked attention computed in `B`'s float type throughout (no fp32 upcast).
fn naive<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    v: &Tensor<B, 4>,
    index: &SparseIndex,
    scale: f64,
) -> Tensor<B, 4> {
    let [b, h, n_q, d] = q.dims();
    let [_, hkv, n_k, _] = k.dims();
    let mask = index.mask(0..n_q);
    let keep =
        Tensor::<B, 4, Bool>::from_data(TensorData::new(mask, [b, h, n_q, n_k]), &q.device());
    let s = q
        .clone()
        .reshape([b, hkv, (h / hkv) * n_q, d])
        .matmul(k.clone().swap_dims(2, 3))
        .reshape([b, h, n_q, n_k])
        .mul_scalar(scale);
    let p = softmax(s.mask_fill(keep.bool_not(), f32::NEG_INFINITY), 3).reshape([
        b,
        hkv,
        (h / hkv) * n_q,
        n_k,
    ]);
    p.matmul(v.clone()).reshape([b, h, n_q, d])
}

/// What a check runs: a path with the case's index, or a register path's index-free causal pass.
#[derive(Clone, Copy)]
enum Run {
    Indexed(Path),
    Causal(Path),
}

/// One correctness case for float type `F` on `path`.
#[allow(clippy::too_many_arguments)]
fn check_case<F: burn_cubecl::FloatElement + Element>(
    device: &Device,
    spec: &SyntheticSpec,
    patterns: &LayerPatterns,
    path: Run,
    label: &str,
    rows: &mut Vec<String>,
    ok: &mut bool,
) {
    let draw = generate(spec);
    let (q, k, _) = draw.tensors::<Cuda<f32>>(device);
    let g = Geometry::new(spec.n_queries, spec.n_keys, spec.query_offset).unwrap();
    let scale = 1.0 / (spec.head_dim as f64).sqrt();
    let index = build_index(&q, &k, patterns, &g, scale);
    let expected = host_reference(&draw, spec, &index, scale);
    let to = |t: &TensorData| {
        Tensor::<Cuda<F>, 4>::from_data(t.clone(), device)
            .cast(burn::tensor::FloatDType::from(F::dtype()))
    };
    let (ql, kl, vl) = (to(&draw.q), to(&draw.k), to(&draw.v));
    assert_eq!(ql.dtype(), F::dtype(), "inputs in the checked precision");
    let prim = |t: Tensor<Cuda<F>, 4>| t.into_primitive().tensor();
    let (qp, kp, vp) = (prim(ql.clone()), prim(kl.clone()), prim(vl.clone()));
    // `Causal(path)`: the index-free causal kernel of a register path (the case's patterns are
    // all dense).
    let result = match path {
        Run::Indexed(path) => {
            cube::attention_with_index(qp, kp, vp, &index, scale, Some(path), true)
        }
        Run::Causal(path) => {
            cube::causal_attention_on(qp, kp, vp, &g, scale, path).and_then(|out| {
                out.ok_or_else(|| {
                    minference::MinferenceError::Unsupported("no index-free causal path".into())
                })
            })
        }
    };
    let line = match result {
        Err(e) => {
            *ok = false;
            format!("{label:<44} ERROR {e}")
        }
        Ok(t) => {
            let got = host(&Tensor::<Cuda<F>, 4>::from_primitive(
                burn::tensor::TensorPrimitive::Float(t),
            ));
            let ours = max_err(&got, &expected);
            if F::dtype() == burn::tensor::DType::F32 {
                let rel = rel_err(&got, &expected);
                let pass = rel <= 1e-5;
                *ok &= pass;
                format!(
                    "{label:<44} rel {rel:.2e} (≤ 1e-5) max {ours:.2e} {}",
                    if pass { "ok" } else { "FAIL" }
                )
            } else {
                let naive_err = max_err(&host(&naive(&ql, &kl, &vl, &index, scale)), &expected);
                let pass = ours <= 2.0 * naive_err + 1e-6;
                *ok &= pass;
                format!(
                    "{label:<44} max {ours:.2e} vs naive {naive_err:.2e} (≤ 2×) {}",
                    if pass { "ok" } else { "FAIL" }
                )
            }
        }
    };
    println!("{line}");
    rows.push(line);
}

/// The kernel checks; `mma_only` keeps those of the register kernel (indexed and index-free).
fn checks(device: &Device, mma_only: bool) -> (Vec<String>, bool) {
    let mut rows = Vec::new();
    let mut ok = true;
    let grid: &[Case] = &[
        (2, 3, 3, 1, 1, None, 64),
        (2, 3, 1, 63, 63, None, 64),
        (2, 4, 2, 65, 65, None, 128),
        (1, 4, 1, 1000, 1000, None, 128),
        (2, 4, 1, 65, 300, Some(100), 64),
        (1, 4, 2, 4096, 4096, None, 128),
        (1, 4, 4, 700, 2000, None, 96),
    ];
    let cycle = [
        Pattern::VerticalSlash {
            vertical: 64,
            slash: 128,
        },
        Pattern::BlockSparse { top_k: 4 },
        Pattern::AShape {
            sink: 16,
            local: 200,
        },
        Pattern::Dense,
    ];
    for &(batch, heads, kv_heads, n_q, n_k, offset, d) in grid {
        for kind in [InputKind::Random, InputKind::Structured] {
            let spec = SyntheticSpec {
                batch,
                heads,
                kv_heads,
                n_queries: n_q,
                n_keys: n_k,
                query_offset: offset,
                head_dim: d,
                kind,
                seed: 77,
            };
            let patterns = LayerPatterns::new((0..heads).map(|h| cycle[h % 4]).collect()).unwrap();
            let shape = format!(
                "b{batch} h{heads}/{kv_heads} n{n_q}/{n_k} d{d} {}",
                if kind == InputKind::Random {
                    "rand"
                } else {
                    "struct"
                }
            );
            if !mma_only {
                check_case::<f32>(
                    device,
                    &spec,
                    &patterns,
                    Run::Indexed(Path::Portable),
                    &format!("f32  portable {shape}"),
                    &mut rows,
                    &mut ok,
                );
            }
            for (name, path) in [
                ("portable", Path::Portable),
                ("tensor-core", Path::TensorCore),
                ("mma", Path::Mma),
                ("mma-groups", Path::MmaGroups),
            ] {
                let register = matches!(path, Path::Mma | Path::MmaGroups);
                if (path != Path::Portable && d % 16 != 0) || (mma_only && !register) {
                    continue;
                }
                check_halves(
                    device,
                    &spec,
                    &patterns,
                    Run::Indexed(path),
                    &format!("{name} {shape}"),
                    &mut rows,
                    &mut ok,
                );
            }
        }
    }
    // The index-free causal kernel, on the grid's shapes its path takes.
    for &(batch, heads, kv_heads, n_q, n_k, offset, d) in grid {
        if d % 16 != 0 {
            continue;
        }
        let spec = SyntheticSpec {
            batch,
            heads,
            kv_heads,
            n_queries: n_q,
            n_keys: n_k,
            query_offset: offset,
            head_dim: d,
            kind: InputKind::Random,
            seed: 78,
        };
        let dense = LayerPatterns::uniform(Pattern::Dense, heads).unwrap();
        let shape = format!("b{batch} h{heads}/{kv_heads} n{n_q}/{n_k} d{d}");
        for (name, path) in [("", Path::Mma), (" groups", Path::MmaGroups)] {
            check_halves(
                device,
                &spec,
                &dense,
                Run::Causal(path),
                &format!("causal{name} (no index) {shape}"),
                &mut rows,
                &mut ok,
            );
        }
    }
    (rows, ok)
}

/// [`check_case`] in bf16 and then f16, labelled `bf16 {what}` and `f16  {what}`.
fn check_halves(
    device: &Device,
    spec: &SyntheticSpec,
    patterns: &LayerPatterns,
    run: Run,
    what: &str,
    rows: &mut Vec<String>,
    ok: &mut bool,
) {
    check_case::<half::bf16>(
        device,
        spec,
        patterns,
        run,
        &format!("bf16 {what}"),
        rows,
        ok,
    );
    check_case::<half::f16>(
        device,
        spec,
        patterns,
        run,
        &format!("f16  {what}"),
        rows,
        ok,
    );
}

/// `sparse_attention` on `B` with the draw cast to bf16.
fn run_bf16<B: minference::SparseAttentionBackend>(
    draw: &minference::synthetic::SyntheticQkv,
    patterns: &LayerPatterns,
    device: &B::Device,
) -> Vec<f32> {
    let t = |d: &TensorData| {
        Tensor::<B, 4>::from_data(d.clone().convert::<half::bf16>(), device)
            .cast(burn::tensor::FloatDType::BF16)
    };
    host(
        &minference::sparse_attention(
            t(&draw.q),
            t(&draw.k),
            t(&draw.v),
            patterns,
            &Default::default(),
        )
        .unwrap(),
    )
}

/// The fused backend (Burn's default `Cuda`) must run the kernels through its custom op and
/// agree with the plain backend bit for bit (same kernel, same inputs).
fn fused_check(device: &Device) -> (String, bool) {
    type Plain = Cuda<half::bf16>;
    type Fused = minference::backend::CudaFusion<half::bf16>;
    let spec = SyntheticSpec {
        batch: 1,
        heads: 8,
        kv_heads: 2,
        n_queries: 1000,
        n_keys: 1000,
        query_offset: None,
        head_dim: 128,
        kind: InputKind::Structured,
        seed: 5,
    };
    let draw = generate(&spec);
    let patterns = LayerPatterns::uniform(
        Pattern::VerticalSlash {
            vertical: 64,
            slash: 128,
        },
        8,
    )
    .unwrap();
    let plain = run_bf16::<Plain>(&draw, &patterns, device);
    let fused = run_bf16::<Fused>(&draw, &patterns, device);
    let err = max_err(&fused, &plain);
    let ok = err == 0.0;
    (
        format!(
            "fused (CudaFusion<bf16>) vs plain: max diff {err:.2e}, engine {} {}",
            <Fused as minference::SparseAttentionBackend>::engine(device),
            if ok { "ok" } else { "FAIL" }
        ),
        ok,
    )
}

/// The automatic switch to dense (`attention_or_dense`): a near-dense index runs the
/// index-free kernel and matches the indexed pass over the same (all-pairs) index; a sparse
/// index stays sparse.
fn dense_switch_check(device: &Device) -> (String, bool) {
    type B = Cuda<half::bf16>;
    let spec = SyntheticSpec {
        batch: 1,
        heads: 8,
        kv_heads: 2,
        n_queries: 2000,
        n_keys: 2000,
        query_offset: None,
        head_dim: 128,
        kind: InputKind::Structured,
        seed: 9,
    };
    let draw = generate(&spec);
    let t = |d: &TensorData| {
        Tensor::<B, 4>::from_data(d.clone().convert::<half::bf16>(), device)
            .cast(burn::tensor::FloatDType::BF16)
    };
    let geometry = Geometry::new(2000, 2000, None).unwrap();
    let scale = 1.0 / 128f64.sqrt();
    let run = |pattern: Pattern| {
        let patterns = LayerPatterns::uniform(pattern, 8).unwrap();
        let (q, k, v) = (t(&draw.q), t(&draw.k), t(&draw.v));
        let index = B::build_index(&q, &k, &patterns, geometry, scale).unwrap();
        let indexed = host(
            &B::attention_with_index(q.clone(), k.clone(), v.clone(), &index, scale, false)
                .unwrap(),
        );
        let (out, dense) = minference::attention_or_dense(q, k, v, &index, scale).unwrap();
        (index.density(), dense, max_err(&host(&out), &indexed))
    };
    let (full_density, full_dense, full_err) = run(Pattern::VerticalSlash {
        vertical: 2000,
        slash: 2000,
    });
    let (sparse_density, sparse_dense, sparse_err) = run(Pattern::BlockSparse { top_k: 4 });
    let ok = full_dense && full_err <= 1e-2 && !sparse_dense && sparse_err == 0.0;
    (
        format!(
            "dense switch: density {full_density:.2} ran dense={full_dense} (max diff {full_err:.2e} vs indexed), density {sparse_density:.2} ran dense={sparse_dense} {}",
            if ok { "ok" } else { "FAIL" }
        ),
        ok,
    )
}

/// The device's Vertical-Slash scores against the Burn-ops estimate on the same (bf16) inputs.
fn score_checks(device: &Device) -> (Vec<String>, bool) {
    type B = Cuda<half::bf16>;
    let mut rows = Vec::new();
    let mut ok = true;
    for &(heads, kv_heads, n_q, n_k, offset, d) in &[
        (4usize, 2usize, 1usize, 1usize, None, 64usize),
        (4, 1, 65, 300, Some(100), 128),
        (8, 2, 4096, 4096, None, 128),
        (4, 4, 1000, 1000, None, 96),
        // 4688 key blocks: past the 4096 one select kernel used to hold (256K keys).
        (2, 1, 640, 300_000, Some(300_000 - 640), 64),
        // 523 query blocks: Block-Sparse rows past the 512 one pair of index launches covers.
        (4, 2, 33_450, 33_450, None, 64),
    ] {
        let spec = SyntheticSpec {
            batch: 2,
            heads,
            kv_heads,
            n_queries: n_q,
            n_keys: n_k,
            query_offset: offset,
            head_dim: d,
            kind: InputKind::Structured,
            seed: 9,
        };
        let (q, k, _) = generate(&spec).tensors::<B>(device);
        let bf16 = |t: Tensor<B, 4>| t.cast(burn::tensor::FloatDType::BF16);
        let (q, k) = (bf16(q), bf16(k));
        let g = Geometry::new(n_q, n_k, offset).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        // The reference estimate twice: with Burn's ops on this GPU, and on the host (NdArray)
        // from the same bf16 values. The host one does not depend on which kernels Burn's
        // autotune picked on the GPU, so a disagreement says which side is wrong.
        let want = minference::estimate::vertical_slash::scores(&q, &k, &g, scale);
        let host =
            minference::estimate::vertical_slash::scores(&to_cpu(&q), &to_cpu(&k), &g, scale);
        let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
        let got = cube::vertical_slash_scores(prim(&q), prim(&k), &g, scale).unwrap();
        let rel = |a: &[f32], b: &[f32]| {
            let top = b.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
            max_err(a, b) / top.max(1e-30)
        };
        let (v, sl) = (
            rel(&got.vertical, &host.vertical),
            rel(&got.slash, &host.slash),
        );
        let (burn_v, burn_sl) = (
            rel(&want.vertical, &host.vertical),
            rel(&want.slash, &host.slash),
        );
        let pass = v <= 1e-3 && sl <= 1e-3 && burn_v <= 1e-3 && burn_sl <= 1e-3;
        ok &= pass;
        let line = format!(
            "vs scores h{heads}/{kv_heads} n{n_q}/{n_k} d{d}: ours vs host vertical {v:.1e} slash {sl:.1e}, Burn on the GPU vs host {burn_v:.1e} {burn_sl:.1e} (≤ 1e-3 of max) {}",
            if pass { "ok" } else { "FAIL" }
        );
        println!("{line}");
        rows.push(line);

        // The whole device index (a layer mixing every pattern) against the host conversion of
        // the same estimates: Vertical-Slash from the device's scores (exactly the same picks),
        // Block-Sparse from host block scores (the same picks up to rounding ties, so compared
        // by the host score the picks sum to).
        use minference::estimate::block_sparse;
        let mixed = [
            Pattern::VerticalSlash {
                vertical: 40,
                slash: 90,
            },
            Pattern::BlockSparse { top_k: 3 },
            Pattern::AShape {
                sink: 5,
                local: 100,
            },
            Pattern::Dense,
        ];
        let patterns =
            LayerPatterns::new((0..heads).map(|h| mixed[h % mixed.len()]).collect()).unwrap();
        let handles = cube::device_index(prim(&q), prim(&k), &patterns, &g, scale).unwrap();
        let client = prim(&q).client;
        let device_index = cube::download_index(&client, handles, g, 2, heads);
        let host = minference::reference::build_index_with(
            &q,
            &k,
            &patterns,
            &g,
            scale,
            minference::reference::Estimates {
                vertical_slash: Some(got),
            },
        );
        let block_scores = block_sparse::scores(&q, &k, &g, scale);
        let (mut index_ok, mut worst) = (true, 0f64);
        for bh in 0..2 * heads {
            let (b, h) = (bh / heads, bh % heads);
            for m in 0..g.query_blocks() {
                let (got_tiles, want_tiles) = (device_index.tiles(b, h, m), host.tiles(b, h, m));
                index_ok &= device_index.columns(b, h, m) == host.columns(b, h, m);
                if matches!(patterns.heads()[h], Pattern::BlockSparse { .. }) {
                    let row = block_scores.row(bh, m);
                    let total =
                        |t: &[u32]| -> f64 { t.iter().map(|&x| row[x as usize / 64] as f64).sum() };
                    let (a, w) = (total(got_tiles), total(want_tiles));
                    let rel = (a - w).abs() / (a.abs() + w.abs() + 1.0);
                    worst = worst.max(rel);
                    let forced = block_sparse::forced_blocks(&g, m);
                    index_ok &= got_tiles.len() == want_tiles.len()
                        && got_tiles.is_sorted()
                        && forced.iter().all(|f| got_tiles.contains(&(f * 64)))
                        && rel <= 1e-5;
                } else {
                    index_ok &= got_tiles == want_tiles;
                }
            }
        }
        ok &= index_ok;
        let line = format!(
            "device index (vs/bs/a-shape/dense) h{heads}/{kv_heads} n{n_q}/{n_k} d{d}: bs score-sum gap {worst:.1e}, forced blocks kept {}",
            if index_ok { "ok" } else { "FAIL" }
        );
        println!("{line}");
        rows.push(line);
    }
    (rows, ok)
}

struct Record {
    pattern: String,
    n: usize,
    input: &'static str,
    ms: f64,
    tflops: f64,
    density: f64,
    index_ms: f64,
}

fn time_ms(device: &Device, repeats: usize, mut f: impl FnMut()) -> f64 {
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
fn write_npy<B: Backend>(t: &Tensor<B, 4>, path: &std::path::Path) -> std::io::Result<()> {
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

fn sweep(
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

/// A layer past the kernels' 32-bit offsets runs in passes (`minference::split`): Llama-3-70B's
/// 64 query / 8 KV heads at 786 432 tokens (6.4 · 10⁹ query elements; a length whose divisors
/// Burn's 64-bit slice kernels launch with, for building the inputs). The whole layer's
/// device index must refuse with a typed error; the measured pass (split by the backend) must
/// give sampled heads, the last one included (whose offsets would have wrapped), exactly what
/// they give run alone.
fn large_layer_check(device: &Device) -> (String, bool) {
    type B = Cuda<half::bf16>;
    let (heads, kv_heads, n, d) = (64, 8, 786_432, 128);
    let group = heads / kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    // Burn's random fill takes at most 2³² elements a call: draw 8 heads at a time.
    let random = |h: usize| {
        let parts = (0..h.div_ceil(8))
            .map(|_| {
                Tensor::<B, 4>::random([1, 8.min(h), n, d], Distribution::Normal(0.0, 1.0), device)
                    .cast(burn::tensor::FloatDType::BF16)
            })
            .collect();
        Tensor::cat(parts, 1)
    };
    let (q, k, v) = (random(heads), random(kv_heads), random(kv_heads));
    let cycle = [
        Pattern::BlockSparse { top_k: 100 },
        Pattern::VerticalSlash {
            vertical: 100,
            slash: 200,
        },
        Pattern::AShape {
            sink: 64,
            local: 4096,
        },
    ];
    let patterns = LayerPatterns::new((0..heads).map(|h| cycle[h % 3]).collect()).unwrap();
    let g = Geometry::new(n, n, None).unwrap();
    let prim = |t: &Tensor<B, 4>| t.clone().into_primitive().tensor();
    let refused = match cube::device_index(prim(&q), prim(&k), &patterns, &g, scale) {
        Ok(_) => "built (no refusal)".to_string(),
        Err(e) => e.to_string(),
    };
    let refused_ok = refused.contains("2^32");
    let start = Instant::now();
    let whole =
        B::sparse_attention_measured(q.clone(), k.clone(), v.clone(), &patterns, g, scale).unwrap();
    B::sync(device).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut worst = 0.0f64;
    for h in [0, 29, heads - 1] {
        let kv = h / group;
        let alone = B::sparse_attention_measured(
            q.clone().slice([0..1, h..h + 1]),
            k.clone().slice([0..1, kv..kv + 1]),
            v.clone().slice([0..1, kv..kv + 1]),
            &patterns.range(h..h + 1),
            g,
            scale,
        )
        .unwrap();
        let split = whole.out.clone().slice([0..1, h..h + 1]);
        worst = worst.max(max_err(&host(&split), &host(&alone.out)));
    }
    let ok = refused_ok && worst <= 1e-3;
    (
        format!(
            "large layer (64/8 heads, {n} tokens, passes): whole-layer index refused ({}); split run {ms:.0} ms, density {:.3}; heads 0, 29, 63 vs alone: max diff {worst:.1e} {}",
            refused.chars().take(90).collect::<String>(),
            whole.density,
            if ok { "ok" } else { "FAIL" }
        ),
        ok,
    )
}

/// Time to first token of a random-weight Llama-3.1-8B-shaped model (bf16): dense, every head
/// on Block-Sparse top-100, and every head on Vertical-Slash (1000, 6096) (MInference's default
/// head), one pre-fill each after a warm-up pre-fill of every setting (kernel compilation and
/// matmul autotuning are not timed).
///
/// `chunk_rows` lists the row chunks of the row-wise parts to time (the model's default when
/// empty): each chunk size is warmed up and timed on its own, since the matmul shapes change
/// with it (and, built with `autotune`, Burn tunes each new shape).
fn llama_e2e(device: &Device, sizes: &[usize], chunk_rows: &[usize]) -> Vec<String> {
    use minference::llama::{KvCache, Llama, LlamaConfig, Logits, PrefillOptions};
    type B = Cuda<half::bf16>;
    let longest = sizes.iter().copied().max().unwrap_or(0);
    let config = LlamaConfig::llama3_8b(longest.max(8192));
    let shape = config.pattern_shape();
    let layers = config.layers;
    let vocab = config.vocab as u64;
    let start = Instant::now();
    let model = Llama::<B>::random(config, device).expect("model");
    <B as Backend>::sync(device).unwrap();
    println!(
        "llama3-8b-shaped (random bf16 weights) built in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let uniform = |pattern| {
        PrefillOptions::sparse(minference::PatternConfig::uniform(pattern, shape).unwrap())
    };
    let chunk_rows = if chunk_rows.is_empty() {
        vec![PrefillOptions::default().chunk_rows]
    } else {
        chunk_rows.to_vec()
    };
    let settings = [
        ("dense", PrefillOptions::dense()),
        (
            "block_sparse(top_k=100)",
            uniform(Pattern::BlockSparse { top_k: 100 }),
        ),
        (
            "vertical_slash(1000, 6096)",
            uniform(Pattern::VerticalSlash {
                vertical: 1000,
                slash: 6096,
            }),
        ),
    ];
    // A fixed pseudo-random prompt (the time depends on the length only).
    let prompt = |n: usize| -> Vec<u32> {
        (0..n as u64)
            .map(|i| ((i * 2_654_435_761 + 12_345) % vocab) as u32)
            .collect()
    };
    let prefill = |tokens: &[u32], options: &PrefillOptions| {
        let mut cache = KvCache::new(layers);
        let start = Instant::now();
        let out = model
            .forward(tokens, &mut cache, options, Logits::Last, &mut |_, _| {})
            .expect("forward");
        let _ = out.logits.into_data();
        let density = out.density.iter().sum::<f64>() / out.density.len() as f64;
        (start.elapsed().as_secs_f64() * 1e3, density)
    };
    // The warm-up must run every kernel the timed pre-fills run. Block-Sparse top-100 keeps
    // over 90 % of the pairs at 8K tokens (63 % at 16K), where the dense switch runs the
    // index-free kernel instead, so a shorter warm-up leaves the indexed kernel's compilation
    // (seconds of NVRTC) inside the first timed sparse pre-fill.
    const WARM_TOKENS: usize = 16384;
    let warm = prompt(WARM_TOKENS);
    let mut rows = Vec::new();
    for &chunk in &chunk_rows {
        let with_chunk = |options: &PrefillOptions| PrefillOptions {
            chunk_rows: chunk,
            ..options.clone()
        };
        // The warm-up's own time shows what the first pre-fill of a process pays: NVRTC
        // compilation and, where Burn's autotune cache (under `target/`) is cold, autotuning.
        for (name, options) in &settings {
            let (ms, density) = prefill(&warm, &with_chunk(options));
            println!(
                "warm-up at {WARM_TOKENS} tokens, chunks of {chunk} rows, {name}: {ms:.0} ms, mean density {:.1}%",
                density * 100.0
            );
        }
        for &n in sizes {
            let tokens = prompt(n);
            let mut dense_ms = 0.0;
            for (name, options) in &settings {
                let (ms, density) = prefill(&tokens, &with_chunk(options));
                if *name == "dense" {
                    dense_ms = ms;
                }
                let line = format!(
                    "llama3-8b e2e n={n:>7} chunk={chunk:>6} {name:<28} time to first token {ms:>10.1} ms  mean density {:>5.1}%  dense/this {:.2}x",
                    density * 100.0,
                    dense_ms / ms
                );
                println!("{line}");
                rows.push(line);
            }
        }
    }
    rows
}

/// Burn's own GPU ops that the references and the Llama use, against the host (NdArray) on the
/// same values: batched matmul in f32 and bf16 on the shapes of the references and of the
/// models' projections, and a softmax. Burn's autotune picks these kernels per shape, so a wrong
/// candidate would show here first.
fn burn_checks(device: &Device) -> (Vec<String>, bool) {
    type B = Cuda<half::bf16>;
    let mut rows = Vec::new();
    let mut ok = true;
    let mut report = |what: String, err: f64, bound: f64| {
        let pass = err <= bound;
        ok &= pass;
        let line = format!(
            "burn {what}: max error {err:.1e} of max (≤ {bound:.0e}) {}",
            if pass { "ok" } else { "FAIL" }
        );
        println!("{line}");
        rows.push(line);
    };
    // The references' products (last queries against the keys), then SmolLM2's fused Q/K/V,
    // fused gate/up and down projections, and Llama-3-8B's (fewer rows: the host multiplies too).
    let shapes = [
        (8usize, 64usize, 96usize, 1000usize),
        (8, 64, 128, 4096),
        (8, 64, 64, 300),
        (1, 1000, 96, 1000),
        (1, 2048, 576, 960),
        (1, 2048, 576, 3072),
        (1, 2048, 1536, 576),
        (1, 256, 4096, 6144),
        (1, 256, 4096, 28672),
        (1, 256, 14336, 4096),
    ];
    for (b, m, k, n) in shapes {
        let x = Tensor::<B, 3>::random([b, m, k], Distribution::Normal(0.0, 1.0), device);
        let y = Tensor::<B, 3>::random([b, k, n], Distribution::Normal(0.0, 1.0), device);
        let want: Vec<f32> = to_cpu(&x)
            .matmul(to_cpu(&y))
            .into_data()
            .iter::<f32>()
            .collect();
        let top = want.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        for (dtype, bound) in [
            (burn::tensor::FloatDType::F32, 1e-3),
            (burn::tensor::FloatDType::BF16, 2e-2),
        ] {
            let got: Vec<f32> = x
                .clone()
                .cast(dtype)
                .matmul(y.clone().cast(dtype))
                .cast(burn::tensor::FloatDType::F32)
                .into_data()
                .iter::<f32>()
                .collect();
            report(
                format!("matmul {dtype:?} [{b}, {m}, {k}] x [{b}, {k}, {n}]"),
                max_err(&got, &want) / top,
                bound,
            );
        }
    }
    for (r, n) in [(512usize, 1000usize), (64, 4096), (64, 300)] {
        let x = Tensor::<B, 2>::random([r, n], Distribution::Normal(0.0, 3.0), device)
            .cast(burn::tensor::FloatDType::F32);
        let want: Vec<f32> = softmax(to_cpu(&x), 1).into_data().iter::<f32>().collect();
        let got: Vec<f32> = softmax(x, 1).into_data().iter::<f32>().collect();
        report(
            format!("softmax f32 [{r}, {n}]"),
            max_err(&got, &want),
            1e-5,
        );
    }
    (rows, ok)
}

/// Burn's matmul (bf16, the backend the Llama runs on) on the shapes of a Llama-3-8B layer's
/// projections, `[rows, k] · [k, n]`, for each row count: ms and TFLOP/s, with an 8192³
/// product as the yardstick.
fn matmul_rates(device: &Device, row_counts: &[usize]) {
    type B = Cuda<half::bf16>;
    let time = |m: usize, k: usize, n: usize| {
        let a = Tensor::<B, 2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
        let b = Tensor::<B, 2>::random([k, n], Distribution::Normal(0.0, 1.0), device);
        // Launches are asynchronous: each product is reduced to a scalar that is read back, so
        // the time ends when the product is done. It includes that sum (one pass over the
        // output) and the read-back (tens of µs, most visible on the smallest products). The
        // best of the repetitions after a warm-up (compilation and, with `autotune`, tuning).
        let once = || {
            let start = Instant::now();
            let _ = a.clone().matmul(b.clone()).sum().into_data();
            start.elapsed().as_secs_f64() * 1e3
        };
        for _ in 0..3 {
            once();
        }
        let ms = (0..10).map(|_| once()).fold(f64::INFINITY, f64::min);
        let tflops = 2.0 * (m * k * n) as f64 / (ms * 1e-3) / 1e12;
        println!("matmul [{m:>6}, {k:>5}] x [{k:>5}, {n:>6}] {ms:>9.3} ms {tflops:>7.1} TFLOP/s");
    };
    time(8192, 8192, 8192);
    // q/o, k/v, q+k+v fused, gate/up, gate+up fused, down.
    let shapes = [
        (4096, 4096),
        (4096, 1024),
        (4096, 6144),
        (4096, 14336),
        (4096, 28672),
        (14336, 4096),
    ];
    for &m in row_counts {
        for &(k, n) in &shapes {
            time(m, k, n);
        }
    }
}

/// Checks minference-rs's GPU kernels against the host reference, then times them against
/// dense attention (bf16, 32/8 heads, d = 128).
#[derive(clap::Parser)]
struct Args {
    /// Sweep sizes in tokens, separated by commas, or `none` (default: 16K-256K, or none with a
    /// checks-only flag).
    #[arg(long, value_parser = parse_sizes)]
    sizes: Option<Sizes>,
    /// Skip the correctness checks.
    #[arg(long)]
    skip_checks: bool,
    /// Only the device estimation and index checks.
    #[arg(long)]
    index_checks_only: bool,
    /// Only the register kernels' checks.
    #[arg(long)]
    mma_checks_only: bool,
    /// Write the checks and the sweep's records here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Also time the Llama-3.1-8B-shaped pre-fill at these lengths.
    #[arg(long, value_delimiter = ',')]
    llama: Vec<usize>,
    /// Row chunks of the pre-fill's row-wise parts (with --llama).
    #[arg(long, value_delimiter = ',')]
    chunk_rows: Vec<usize>,
    /// Write the sweep's exact Q, K and V here as `.npy`.
    #[arg(long)]
    dump_inputs: Option<std::path::PathBuf>,
    /// Time Burn's matmul on a Llama-3-8B layer's shapes for these row counts.
    #[arg(long, value_delimiter = ',')]
    matmul: Vec<usize>,
    /// Compare Burn's own GPU matmul and softmax with the host's.
    #[arg(long)]
    burn_checks: bool,
    /// The sweep's inputs.
    #[arg(long, value_delimiter = ',', default_value = "structured,powerlaw,random",
          value_parser = ["structured", "powerlaw", "random"])]
    inputs: Vec<String>,
    /// The sweep's rows.
    #[arg(long, value_delimiter = ',', default_value = "free,dense,bs,vs",
          value_parser = ["free", "dense", "bs", "vs"])]
    patterns: Vec<String>,
    /// Sweep the grouped register kernel where the device's choice would run.
    #[arg(long)]
    mma_groups: bool,
    /// Run a layer past the kernels' 32-bit offsets in passes.
    #[arg(long)]
    large_check: bool,
}

/// `--sizes`: a list of token counts, or `none`.
#[derive(Clone)]
enum Sizes {
    None,
    List(Vec<usize>),
}

fn parse_sizes(s: &str) -> Result<Sizes, String> {
    if s == "none" {
        return Ok(Sizes::None);
    }
    s.split(',')
        .map(|x| {
            x.parse()
                .map_err(|_| format!("{x:?} is not a number of tokens"))
        })
        .collect::<Result<_, _>>()
        .map(Sizes::List)
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    // "Only" means only: a checks-only run sweeps nothing unless sizes are named.
    let checks_only = args.mma_checks_only || args.index_checks_only;
    let (run_sweep, sizes) = match &args.sizes {
        Some(Sizes::None) => (false, Vec::new()),
        Some(Sizes::List(sizes)) => (true, sizes.clone()),
        None => (!checks_only, vec![16384, 32768, 65536, 131072, 262144]),
    };
    let device = Device::default();
    println!(
        "engine: {}",
        <Cuda<half::bf16> as minference::SparseAttentionBackend>::engine(&device)
    );
    let mut ok = true;
    let mut check_rows = Vec::new();
    if args.mma_checks_only {
        let (rows, pass) = checks(&device, true);
        ok = pass;
        check_rows = rows;
        println!("mma checks: {}", if ok { "all passed" } else { "FAILURES" });
    } else if args.index_checks_only {
        // The device estimation and index against the host's, without the kernel checks.
        let (rows, scores_ok) = score_checks(&device);
        ok = scores_ok;
        check_rows = rows;
        println!(
            "index checks: {}",
            if ok { "all passed" } else { "FAILURES" }
        );
    } else if !args.skip_checks {
        let (mut rows, pass) = checks(&device, false);
        let (line, fused_ok) = fused_check(&device);
        println!("{line}");
        rows.push(line);
        let (score_rows, scores_ok) = score_checks(&device);
        rows.extend(score_rows);
        let (line, switch_ok) = dense_switch_check(&device);
        println!("{line}");
        rows.push(line);
        ok = pass && fused_ok && scores_ok && switch_ok;
        check_rows = rows;
        println!("checks: {}", if ok { "all passed" } else { "FAILURES" });
    }
    if args.large_check {
        let (line, large_ok) = large_layer_check(&device);
        println!("{line}");
        check_rows.push(line);
        ok &= large_ok;
    }
    if args.burn_checks {
        let (rows, pass) = burn_checks(&device);
        println!(
            "burn checks: {}",
            if pass { "all passed" } else { "FAILURES" }
        );
        check_rows.extend(rows);
        ok &= pass;
    }
    if !args.matmul.is_empty() {
        matmul_rates(&device, &args.matmul);
    }
    if !args.llama.is_empty() {
        llama_e2e(&device, &args.llama, &args.chunk_rows);
    }
    let records = if !run_sweep {
        Vec::new()
    } else {
        let kinds: Vec<InputKind> = args
            .inputs
            .iter()
            .map(|k| match k.as_str() {
                "structured" => InputKind::Structured,
                "powerlaw" => InputKind::PowerLaw,
                _ => InputKind::Random,
            })
            .collect();
        sweep(
            &device,
            &sizes,
            &kinds,
            &args.patterns,
            args.dump_inputs.as_deref(),
            args.mma_groups,
        )
    };
    if let Some(path) = &args.json {
        let json: Vec<String> = records
            .iter()
            .map(|r| format!("{{\"pattern\": \"{}\", \"n\": {}, \"input\": \"{}\", \"ms\": {:.4}, \"tflops\": {:.2}, \"density\": {:.5}, \"index_ms\": {:.2}}}", r.pattern, r.n, r.input, r.ms, r.tflops, r.density, r.index_ms))
            .collect();
        let checks_json: Vec<String> = check_rows.iter().map(|r| format!("{:?}", r)).collect();
        std::fs::write(
            path,
            format!(
                "{{\"checks_passed\": {ok}, \"checks\": [{}], \"records\": [{}]}}\n",
                checks_json.join(", "),
                json.join(",\n")
            ),
        )
        .expect("write json");
    }
    if !ok {
        std::process::exit(1);
    }
}
