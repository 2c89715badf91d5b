//! Burn's own GPU ops (matmul, softmax) against the host, and Burn's matmul rates.

use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tensor};
use std::time::Instant;

use crate::compare::{max_err, to_cpu};
use crate::{Cuda, Device};

/// Burn's own GPU ops that the references and the Llama use, against the host (NdArray) on the
/// same values: batched matmul in f32 and bf16 on the shapes of the references and of the
/// models' projections, and a softmax. Burn's autotune picks these kernels per shape, so a wrong
/// candidate would show here first.
pub(crate) fn burn_checks(device: &Device) -> (Vec<String>, bool) {
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
pub(crate) fn matmul_rates(device: &Device, row_counts: &[usize]) {
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
