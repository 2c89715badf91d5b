//! The GGUF reader on files built here: a good one parses; every truncation, a wrong magic, an
//! unknown version or type, an offset past the end and absurd counts give typed errors.

use minference_llama::gguf::{GgmlType, Gguf, GgufError, Value};

/// A small GGUF v3 file: three metadata entries, an F32 tensor and a Q4_1 tensor.
struct Builder {
    bytes: Vec<u8>,
}

impl Builder {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend(v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend(v.to_le_bytes());
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.bytes.extend(s.as_bytes());
        self
    }
}

fn file(version: u32, q4_type: u32, q4_offset: u64) -> Vec<u8> {
    let mut b = Builder {
        bytes: b"GGUF".to_vec(),
    };
    b.u32(version).u64(2).u64(3);
    b.string("general.architecture").u32(8).string("llama");
    b.string("llama.block_count").u32(4).u32(30);
    b.string("tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(2)
        .string("a")
        .string("b");
    b.string("token_embd.weight").u32(1).u64(64).u32(0).u64(0);
    b.string("blk.0.attn_q.weight")
        .u32(2)
        .u64(64)
        .u64(2)
        .u32(q4_type)
        .u64(q4_offset);
    while !b.bytes.len().is_multiple_of(32) {
        b.bytes.push(0);
    }
    b.bytes.extend(std::iter::repeat_n(7u8, 256 + 80));
    b.bytes
}

#[test]
fn parses_metadata_and_tensor_table() {
    let gguf = Gguf::parse(file(3, 3, 256)).unwrap();
    assert_eq!(gguf.version, 3);
    assert_eq!(
        gguf.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
    assert_eq!(
        gguf.get("llama.block_count").and_then(Value::as_u64),
        Some(30)
    );
    assert_eq!(
        gguf.get("tokenizer.ggml.tokens"),
        Some(&Value::Array(vec![
            Value::String("a".into()),
            Value::String("b".into())
        ]))
    );
    let q = gguf.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.ggml_type, q.elements(), q.size),
        (GgmlType::Q4_1, 128, 80)
    );
    let e = gguf.tensor("token_embd.weight").unwrap();
    assert_eq!(q.offset, e.offset + 256);
    assert_eq!(e.size, 256);
    assert_eq!(q.offset + q.size, gguf.bytes.len() as u64);
}

#[test]
fn every_truncation_is_a_typed_error() {
    let whole = file(3, 3, 256);
    for cut in 0..whole.len() {
        match Gguf::parse(whole[..cut].to_vec()) {
            Err(GgufError::Truncated { .. } | GgufError::Malformed(_)) => {}
            other => panic!("cut at {cut}: expected a truncation error, got {other:?}"),
        }
    }
}

#[test]
fn bad_files_are_refused_with_a_reason() {
    let mut wrong_magic = file(3, 3, 256);
    wrong_magic[..4].copy_from_slice(b"GGML");
    assert!(
        matches!(Gguf::parse(wrong_magic), Err(GgufError::Magic { found }) if &found == b"GGML")
    );
    assert!(matches!(
        Gguf::parse(file(9, 3, 256)),
        Err(GgufError::Version(9))
    ));
    let unsupported = Gguf::parse(file(3, 99, 256)).unwrap_err();
    assert!(
        matches!(&unsupported, GgufError::UnsupportedType { name, ggml_type: 99 } if name == "blk.0.attn_q.weight"),
        "{unsupported}"
    );
    let past_end = Gguf::parse(file(3, 3, 4096)).unwrap_err();
    assert!(
        matches!(&past_end, GgufError::Truncated { what, .. } if what.contains("blk.0.attn_q.weight")),
        "{past_end}"
    );
    let misaligned = Gguf::parse(file(3, 3, 250)).unwrap_err();
    assert!(
        misaligned.to_string().contains("not aligned"),
        "{misaligned}"
    );
    let mut huge = file(3, 3, 256);
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        matches!(Gguf::parse(huge), Err(GgufError::Malformed(m)) if m.contains("tensor count"))
    );
    assert!(matches!(
        Gguf::open("/nonexistent.gguf"),
        Err(GgufError::Io { .. })
    ));
}

/// A file with one tensor of `type_id`, `elements` long, whose data is `data`.
fn one_tensor(type_id: u32, elements: u64, data: &[u8]) -> Gguf {
    let mut b = Builder {
        bytes: b"GGUF".to_vec(),
    };
    b.u32(3).u64(1).u64(0);
    b.string("t").u32(1).u64(elements).u32(type_id).u64(0);
    while !b.bytes.len().is_multiple_of(32) {
        b.bytes.push(0);
    }
    b.bytes.extend(data);
    Gguf::parse(b.bytes).unwrap()
}

fn decode(type_id: u32, elements: u64, data: &[u8]) -> Vec<f32> {
    let g = one_tensor(type_id, elements, data);
    g.dequantize(&g.tensors[0]).unwrap()
}

fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

#[test]
fn dequantizes_float_and_block_types() {
    let floats = [1.5f32, -2.0, 0.25, 8.0];
    let f32_bytes: Vec<u8> = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(decode(0, 4, &f32_bytes), floats);
    let f16_bytes: Vec<u8> = floats.iter().flat_map(|&x| f16(x)).collect();
    assert_eq!(decode(1, 4, &f16_bytes), floats);
    let bf16_bytes: Vec<u8> = floats
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    assert_eq!(decode(30, 4, &bf16_bytes), floats);

    // Q8_0: scale 0.5, values -16..16.
    let mut q8 = f16(0.5).to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    let expected: Vec<f32> = (0..32).map(|i| 0.5 * (i as f32 - 16.0)).collect();
    assert_eq!(decode(8, 32, &q8), expected);

    // Q4_0: byte j holds element j (low nibble) and element j + 16 (high nibble), offset by 8.
    let mut q4_0 = f16(2.0).to_vec();
    q4_0.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let expected: Vec<f32> = (0..16)
        .map(|j| 2.0 * (j as f32 - 8.0))
        .chain((0..16).map(|j| 2.0 * ((15 - j) as f32 - 8.0)))
        .collect();
    assert_eq!(decode(2, 32, &q4_0), expected);

    // Q4_1: scale and minimum.
    let mut q4_1 = f16(0.25).to_vec();
    q4_1.extend(f16(-1.0));
    q4_1.extend((0..16u8).map(|j| j | (j << 4)));
    let half_block: Vec<f32> = (0..16).map(|j| 0.25 * j as f32 - 1.0).collect();
    assert_eq!(
        decode(3, 32, &q4_1),
        [half_block.clone(), half_block].concat()
    );
}

#[test]
fn k_quants_parse_but_say_they_do_not_decode() {
    let g = one_tensor(12, 256, &[0u8; 144]);
    let err = g.dequantize(&g.tensors[0]).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::NotDecoded {
                ggml_type: GgmlType::Q4K,
                ..
            }
        ),
        "{err}"
    );
}
