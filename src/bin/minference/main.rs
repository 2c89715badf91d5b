//! `minference`: run Llama-family models with MInference-style sparse pre-fill.
//!
//! ```text
//! minference generate "Why is the sky blue?"                 # SmolLM2 from weights/, CPU
//! minference generate --file report.txt --patterns p.json --device cuda
//! ```

mod args;
mod device;
mod generate;
mod progress;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Generate(a) => generate::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
