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

mod burn_ops;
mod checks;
mod compare;
mod index_checks;
mod large;
mod llama;
mod reference;
mod sweep;

use minference::synthetic::InputKind;

use burn_ops::{burn_checks, matmul_rates};
use checks::{checks, dense_switch_check, fused_check};
use index_checks::score_checks;
use large::large_layer_check;
use llama::llama_e2e;
use sweep::sweep;

type Cuda<F> = minference::backend::Cuda<F>;
type Cpu = minference::backend::Cpu;

/// (batch, heads, kv_heads, n_queries, n_keys, query offset, head_dim)
type Case = (usize, usize, usize, usize, usize, Option<usize>, usize);
type Device = burn::backend::cuda::CudaDevice;

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
