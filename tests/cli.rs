//! The `minference` binary end to end: a generation on the default model, and the messages a
//! user gets for a missing model, a config for another model and an unknown task.

#![cfg(feature = "ndarray")]

use std::process::Command;

fn minference(args: &[&str]) -> (bool, String, String) {
    minference::llama::ensure_default_model().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_minference"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generate_answers_and_reports() {
    let (ok, stdout, stderr) = minference(&[
        "generate",
        "What is the capital of France?",
        "--max-tokens",
        "8",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Paris"), "{stdout}");
    for line in [
        "prompt:",
        "pre-fill:",
        "density:",
        "decode:",
        "attention engine: cpu sparse tiles",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in {stderr}");
    }
}

#[test]
fn bad_input_gets_a_message_and_a_failure_status() {
    let (ok, _, stderr) = minference(&["generate", "hi", "--model", "/nonexistent/model.gguf"]);
    assert!(
        !ok && stderr.contains("model file /nonexistent/model.gguf not found"),
        "{stderr}"
    );

    let dir = std::env::temp_dir().join(format!("minference-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("llama8b.json");
    let layer: String = (0..32)
        .map(|h| format!("\"{h}\": [\"vertical_and_slash\", 1000, 6096, 0.9]"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!("[{}]", vec![format!("{{{layer}}}"); 32].join(", "));
    std::fs::write(&other, config).unwrap();
    let (ok, _, stderr) = minference(&["generate", "hi", "--patterns", other.to_str().unwrap()]);
    assert!(!ok && stderr.contains("for another model"), "{stderr}");

    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(minference::llama::default_model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..1 << 20]).unwrap();
    let (ok, _, stderr) = minference(&["generate", "hi", "--model", truncated.to_str().unwrap()]);
    assert!(!ok && stderr.contains("truncated"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();

    let (ok, _, stderr) = minference(&["generate", "hi", "--precision", "bf16"]);
    assert!(
        !ok && stderr.contains("--precision bf16 is for CUDA; the CPU device runs f32"),
        "{stderr}"
    );

    let (ok, _, stderr) = minference(&["eval", "--tasks", "sudoku"]);
    assert!(
        !ok && stderr.contains("unknown task \"sudoku\""),
        "{stderr}"
    );
}
