//! The index checks: the device's Vertical-Slash scores and whole device index against the
//! host's.

use burn::tensor::Tensor;
use minference::cube;
use minference::synthetic::{generate, InputKind, SyntheticSpec};
use minference::{Geometry, LayerPatterns, Pattern};

use crate::compare::{max_err, to_cpu};
use crate::{Cuda, Device};

/// The device's Vertical-Slash scores against the Burn-ops estimate on the same (bf16) inputs.
pub(crate) fn score_checks(device: &Device) -> (Vec<String>, bool) {
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
            // More diagonals than the 100 forced nearest ones: the chosen ones spread into
            // separate ranges, so that tiles jump between them (90, as until session 17, made
            // one range and no jumps).
            Pattern::VerticalSlash {
                vertical: 40,
                slash: 300,
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
        let (mut index_ok, mut worst, mut jumped) = (true, 0f64, 0usize);
        for bh in 0..2 * heads {
            let (b, h) = (bh / heads, bh % heads);
            for m in 0..g.query_blocks() {
                let (got_tiles, want_tiles) = (device_index.tiles(b, h, m), host.tiles(b, h, m));
                index_ok &= device_index.columns(b, h, m) == host.columns(b, h, m);
                index_ok &= device_index.jumps(b, h, m) == host.jumps(b, h, m);
                jumped += host.jumps(b, h, m).iter().filter(|&&j| j != 0).count();
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
            "device index (vs/bs/a-shape/dense) h{heads}/{kv_heads} n{n_q}/{n_k} d{d}: bs score-sum gap {worst:.1e}, forced blocks kept, {jumped} jumping tiles {}",
            if index_ok { "ok" } else { "FAIL" }
        );
        println!("{line}");
        rows.push(line);
    }
    (rows, ok)
}
