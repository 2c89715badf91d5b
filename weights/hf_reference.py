#!/usr/bin/env python3
"""Writes the outside reference the Llama tests compare against.

Loads weights/cache/SmolLM2-135M-Instruct.Q4_1.gguf with Hugging Face transformers (which
dequantizes it through the `gguf` package) on the CPU and records, in
crates/minference-llama/tests/fixtures/smollm2_reference.json:
  - token ids of fixed strings (HF's tokenizer rebuilt from the GGUF);
  - for fixed token-id prompts, the top-8 logits (ids and values) at every position;
  - the greedy continuation of a prompt.

Run once after changing the prompts (needs ~6 GB of pip packages, not needed by CI):
  python3 -m venv /var/cache/hf-venv
  /var/cache/hf-venv/bin/pip install torch transformers gguf accelerate
  /var/cache/hf-venv/bin/python weights/hf_reference.py
"""
import json
import pathlib

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
GGUF_DIR = ROOT / "weights" / "cache"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "crates" / "minference-llama" / "tests" / "fixtures" / "smollm2_reference.json"

STRINGS = [
    "The capital of France is",
    "Hello, world! How are you today?",
    "  leading spaces\nand\ttabs\n\nnew paragraphs",
    "naïve café — “quotes” and emoji 🦀",
    "<|im_start|>user\nWhat is Rust?<|im_end|>\n<|im_start|>assistant\n",
    "fn main() { println!(\"hi\"); }",
]
# Digits are where HF's GGUF tokenizer and the model's own tokenizer (llama.cpp's `smollm`
# pre-tokenizer: one token per digit) part ways; recorded so the test can say so.
DIGIT_STRINGS = ["In 2024 there were 12345 apples."]
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "<|im_start|>user\nWrite a haiku about the ocean.<|im_end|>\n<|im_start|>assistant\n",
]
TOP = 8
GREEDY_PROMPT = "The capital of France is"
GREEDY_TOKENS = 12


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.eval()
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    record = {
        "generated_by": "weights/hf_reference.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": GGUF_FILE,
        "strings": [{"text": s, "ids": enc(s)} for s in STRINGS],
        "digit_strings": [{"text": s, "hf_ids": enc(s)} for s in DIGIT_STRINGS],
        "prompts": [],
    }
    with torch.no_grad():
        for p in PROMPTS:
            ids = enc(p)
            logits = model(torch.tensor([ids])).logits[0].float()
            values, top = logits.topk(TOP, dim=-1)
            record["prompts"].append(
                {
                    "text": p,
                    "ids": ids,
                    "top_ids": top.tolist(),
                    "top_logits": [[round(v, 5) for v in row] for row in values.tolist()],
                }
            )
        ids = enc(GREEDY_PROMPT)
        out = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False)
        new = out[0, len(ids):].tolist()
        record["greedy"] = {"text": GREEDY_PROMPT, "ids": ids, "new_ids": new, "new_text": tok.decode(new)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); greedy: {record['greedy']['new_text']!r}")


if __name__ == "__main__":
    main()
