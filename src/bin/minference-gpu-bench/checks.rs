//! The kernel checks: every path against the host reference under the same index, in f32 and
//! f16/bf16, plus the fused backend and the automatic dense switch.

use burn::tensor::{Element, Tensor, TensorData};
use minference::cube;
use minference::reference::build_index;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern, SparseAttentionBackend};
use minference_kernels::sparse_flash::Path;

use crate::compare::{host, max_err, rel_err};
use crate::reference::{host_reference, naive};
use crate::{Case, Cuda, Device};

/// What a check runs: a path with the case's index, or a register path's index-free causal pass.
#[derive(Clone, Copy)]
pub(crate) enum Run {
    Indexed(Path),
    Causal(Path),
}

/// One correctness case for float type `F` on `path`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_case<F: burn_cubecl::FloatElement + Element>(
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
pub(crate) fn checks(device: &Device, mma_only: bool) -> (Vec<String>, bool) {
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
        // 28 diagonals past the 100 forced nearest ones: separate ranges, so tiles that jump
        // (12-519 a case from 700 queries on, counted on the host index in session 17).
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
pub(crate) fn check_halves(
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
pub(crate) fn run_bf16<B: minference::SparseAttentionBackend>(
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
pub(crate) fn fused_check(device: &Device) -> (String, bool) {
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
pub(crate) fn dense_switch_check(device: &Device) -> (String, bool) {
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
