//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// MInference-style dynamic sparse attention for long-context pre-filling.
#[derive(Parser, Debug)]
#[command(name = "minference", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pre-fill a prompt (sparse per a pattern config) and generate a continuation.
    Generate(GenerateArgs),
    /// Search each layer's and head's pattern on a calibration prompt (kernel-aware).
    Search(SearchArgs),
    /// Run synthetic long-context tasks dense and sparse, side by side.
    Eval(EvalArgs),
}

/// Where the model runs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Burn's NdArray backend (exact reference attention).
    Cpu,
    /// wgpu on Vulkan (software Vulkan, lavapipe, when there is no GPU).
    Vulkan,
    /// CUDA in bf16 (build with `--features cuda`).
    Cuda,
}

/// Float type of weights and activations.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit floats (the CPU and Vulkan devices run only this).
    F32,
    /// bfloat16 (CUDA's default).
    Bf16,
    /// IEEE half precision.
    F16,
}

/// Device and precision, shared by every command that runs a model.
#[derive(Args, Debug, Clone, Copy)]
pub struct Target {
    /// Where to run.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Float type on CUDA (default bf16); the CPU and Vulkan run f32.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
}

/// Model and pattern options shared by the commands that run a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A `.gguf` file or a Hugging Face directory (config.json, *.safetensors,
    /// tokenizer.json). Default: SmolLM2-135M-Instruct from weights/ (fetched on first use).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Per-head pattern config (MInference's JSON or ours). Default: the searched config
    /// shipped for the default model in weights/patterns/, if any.
    #[arg(long, conflicts_with = "dense")]
    pub patterns: Option<PathBuf>,
    /// Dense attention everywhere (the baseline).
    #[arg(long)]
    pub dense: bool,
    /// Prompts shorter than this many tokens pre-fill dense (0: always sparse). Default: the
    /// measured crossover of the device (1024 on the CPU, 16384 on GPUs).
    #[arg(long)]
    pub min_sparse_len: Option<usize>,
    /// Where to run, in which float type.
    #[command(flatten)]
    pub target: Target,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The prompt (or use --file).
    #[arg(required_unless_present = "file")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(long, conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// A question appended after the file's text (long-document QA).
    #[arg(long, requires = "file")]
    pub question: Option<String>,
    /// Feed the prompt as is, without the model's chat template.
    #[arg(long)]
    pub raw: bool,
    /// System message for the chat template.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus (top-p) mass when sampling.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Random seed when sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Calibration prompt: a generated task (needle, kv-retrieval, passkey, multikey,
    /// vartrack) or a text file.
    #[arg(long, default_value = "needle")]
    pub calib: String,
    /// Calibration length in tokens.
    #[arg(long, default_value_t = 4096)]
    pub len: usize,
    /// Where to write the config (our format); MInference's JSON goes next to it
    /// (`.minference.json`) and the pattern map too (`.png`).
    #[arg(long)]
    pub out: PathBuf,
    /// Most tiles a head may compute, as a fraction of dense.
    #[arg(long, default_value_t = 0.3)]
    pub budget: f64,
    /// Heads whose best candidate keeps less attention mass than this run dense.
    #[arg(long, default_value_t = 0.9)]
    pub min_recall: f64,
    /// Seed of the generated calibration prompt.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to run, in which float type.
    #[command(flatten)]
    pub target: Target,
    /// A `.gguf` file or a Hugging Face directory (default: SmolLM2 from weights/).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Tasks, comma-separated: needle, passkey, multikey, vartrack, kv-retrieval.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "needle,passkey,multikey,vartrack"
    )]
    pub tasks: Vec<String>,
    /// Prompt lengths in tokens.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048,4096,8000")]
    pub lengths: Vec<usize>,
    /// Fact depths for the needle task (others use the middle).
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    pub depths: Vec<f64>,
    /// Settings to compare: dense, searched (the default or --patterns config),
    /// vs-default (MInference's VS(1000, 6096) everywhere), a-shape (sink 64, local 1024).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "dense,searched,vs-default,a-shape"
    )]
    pub settings: Vec<String>,
    /// Pattern config for the `searched` setting (default: weights/patterns/).
    #[arg(long)]
    pub patterns: Option<PathBuf>,
    /// Tokens to generate per answer.
    #[arg(long, default_value_t = 12)]
    pub max_tokens: usize,
    /// Seed of the generated prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the table (markdown, with this command) here, and the needle heat-map next to it
    /// (`.png`, when the needle task runs).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to run, in which float type.
    #[command(flatten)]
    pub target: Target,
    /// A `.gguf` file or a Hugging Face directory (default: SmolLM2 from weights/).
    #[arg(long)]
    pub model: Option<PathBuf>,
}
