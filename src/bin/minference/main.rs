//! `minference`: run Llama-family models with MInference-style sparse pre-fill.
//!
//! ```text
//! minference generate "Why is the sky blue?"                 # SmolLM2 from weights/, CPU
//! minference generate --file report.txt --patterns p.json --device cuda
//! minference search --calib needle --len 4096 --out weights/patterns/model.json
//! minference eval --tasks needle --lengths 1024,4096
//! ```

mod args;
mod device;
mod eval;
mod generate;
mod progress;
mod search;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Generate(a) => generate::run(a),
        args::Command::Search(a) => search::run(a),
        args::Command::Eval(a) => eval::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
