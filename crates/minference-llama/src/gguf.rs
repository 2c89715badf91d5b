//! A checked reader of GGUF files (llama.cpp's single-file model format, versions 2 and 3).
//!
//! Tensors decode to f32 with [`Gguf::dequantize`].
//!
//! Layout: magic `GGUF`, version (u32), tensor count (u64), metadata count (u64), the metadata
//! key/value pairs, the tensor infos (name, dims, type, offset), then the tensor data, aligned to
//! `general.alignment` (32 by default). Every count, length, offset and size is checked against
//! the file before it is used, so a truncated or corrupted file gives a [`GgufError`] that says
//! what is wrong, never a panic or an allocation the size of a garbage number.

use std::collections::BTreeMap;
use std::path::Path;

/// What can be wrong with a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a GGUF file.
    #[error("not a GGUF file: the first four bytes are {found:?}, expected \"GGUF\"")]
    Magic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A GGUF version this reader does not know.
    #[error("GGUF version {0} is not supported (versions 2 and 3 are)")]
    Version(u32),
    /// The file ends before something it announces.
    #[error("the file is truncated: {what} needs bytes {start}..{end}, but the file has {len}; download it again (weights/fetch.sh checks the sha256)")]
    Truncated {
        /// What was being read.
        what: String,
        /// First byte needed.
        start: u64,
        /// One past the last byte needed.
        end: u64,
        /// File length.
        len: u64,
    },
    /// A value is out of range or malformed.
    #[error("malformed GGUF: {0}")]
    Malformed(String),
    /// A tensor type the reader parses but cannot decode to floats yet.
    #[error("tensor {name}: decoding {ggml_type:?} is not implemented yet (F32, F16, BF16, Q8_0, Q4_0 and Q4_1 are); convert the model to one of those")]
    NotDecoded {
        /// Tensor name.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
    },
    /// A tensor type this reader cannot interpret.
    #[error("tensor {name}: GGML type {ggml_type} is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)")]
    UnsupportedType {
        /// Tensor name.
        name: String,
        /// The GGML type id.
        ggml_type: u32,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, GgufError>;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integers (u8..u64).
    U64(u64),
    /// Signed integers (i8..i64).
    I64(i64),
    /// Floats (f32, f64).
    F64(f64),
    /// Booleans.
    Bool(bool),
    /// Strings.
    String(String),
    /// Arrays.
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// GGML tensor types this reader knows, with their block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    BF16,
    /// Blocks of 32: f16 scale + 32 × i8.
    Q8_0,
    /// Blocks of 32: f16 scale + 16 bytes of 4-bit values.
    Q4_0,
    /// Blocks of 32: f16 scale, f16 min + 16 bytes of 4-bit values.
    Q4_1,
    /// Super-blocks of 256 (k-quant, 4-bit).
    Q4K,
    /// Super-blocks of 256 (k-quant, 6-bit).
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    pub fn block(&self) -> (u64, u64) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q8_0 => (32, 34),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }
}

/// One tensor of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (GGML order).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata and tensor table (the data stays in `bytes`).
#[derive(Debug, Clone)]
pub struct Gguf {
    /// Format version.
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensors, in file order.
    pub tensors: Vec<TensorInfo>,
    /// The whole file.
    pub bytes: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: u64,
}

impl Reader<'_> {
    fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        let len = self.bytes.len() as u64;
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= len)
            .ok_or_else(|| GgufError::Truncated {
                what: what.to_string(),
                start: self.at,
                end: self.at.saturating_add(n),
                len,
            })?;
        let slice = &self.bytes[self.at as usize..end as usize];
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| GgufError::Malformed(format!("{what} is not UTF-8")))
    }
    /// A count that must fit in what is left of the file, `min_size` bytes an item at least.
    fn count(&mut self, what: &str, min_size: u64) -> Result<u64> {
        let n = self.u64(what)?;
        let left = self.bytes.len() as u64 - self.at;
        if n.saturating_mul(min_size) > left {
            return Err(GgufError::Malformed(format!(
                "{what} is {n}, more than the {left} bytes left in the file can hold"
            )));
        }
        Ok(n)
    }
    fn value(&mut self, kind: u32, key: &str, depth: u32) -> Result<Value> {
        Ok(match kind {
            0 => Value::U64(self.u8(key)? as u64),
            1 => Value::I64(self.u8(key)? as i8 as i64),
            2 => Value::U64(u16::from_le_bytes(self.take(2, key)?.try_into().expect("2")) as u64),
            3 => Value::I64(i16::from_le_bytes(self.take(2, key)?.try_into().expect("2")) as i64),
            4 => Value::U64(self.u32(key)? as u64),
            5 => Value::I64(self.u32(key)? as i32 as i64),
            6 => Value::F64(f32::from_bits(self.u32(key)?) as f64),
            7 => Value::Bool(match self.u8(key)? {
                0 => false,
                1 => true,
                b => return Err(GgufError::Malformed(format!("{key}: boolean byte {b}"))),
            }),
            8 => Value::String(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(GgufError::Malformed(format!(
                        "{key}: arrays nested too deeply"
                    )));
                }
                let item = self.u32(key)?;
                let n = self.count(&format!("{key} (array length)"), 1)?;
                let mut items = Vec::with_capacity(n.min(1 << 20) as usize);
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            other => {
                return Err(GgufError::Malformed(format!(
                    "{key}: unknown metadata type {other}"
                )))
            }
        })
    }
}

impl Gguf {
    /// Reads and checks a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parses and checks GGUF bytes.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        let magic: [u8; 4] = r.take(4, "the magic number")?.try_into().expect("4 bytes");
        if &magic != b"GGUF" {
            return Err(GgufError::Magic { found: magic });
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version(version));
        }
        let tensor_count = r.count("the tensor count", 24)?;
        let kv_count = r.count("the metadata count", 12)?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key {i}"))?;
            let kind = r.u32(&key)?;
            let value = r.value(kind, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = r.string(&format!("tensor {i}'s name"))?;
            let n_dims = r.u32(&name)?;
            if n_dims == 0 || n_dims > 4 {
                return Err(GgufError::Malformed(format!(
                    "tensor {name} has {n_dims} dimensions (1 to 4 expected)"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&name))
                .collect::<Result<Vec<u64>>>()?;
            let type_id = r.u32(&name)?;
            let offset = r.u64(&name)?;
            raw.push((name, dims, type_id, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                GgufError::Malformed(format!("general.alignment {v:?} is not a power of two"))
            })?,
        };
        let data_start = r.at.div_ceil(alignment) * alignment;
        let len = bytes.len() as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, type_id, offset) in raw {
            let ggml_type =
                GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedType {
                    name: name.clone(),
                    ggml_type: type_id,
                })?;
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    GgufError::Malformed(format!("tensor {name}: dimensions {dims:?} overflow"))
                })?;
            let (per_block, block_bytes) = ggml_type.block();
            if elements % per_block != 0 {
                return Err(GgufError::Malformed(format!("tensor {name}: {elements} elements is not a whole number of {ggml_type:?} blocks of {per_block}")));
            }
            let size = elements / per_block * block_bytes;
            if offset % alignment != 0 {
                return Err(GgufError::Malformed(format!(
                    "tensor {name}: offset {offset} is not aligned to {alignment}"
                )));
            }
            let start = data_start.checked_add(offset).ok_or_else(|| {
                GgufError::Malformed(format!("tensor {name}: offset {offset} overflows"))
            })?;
            let end = start.saturating_add(size);
            if end > len {
                return Err(GgufError::Truncated {
                    what: format!("tensor {name}"),
                    start,
                    end,
                    len,
                });
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset: start,
                size,
            });
        }
        Ok(Self {
            version,
            metadata,
            tensors,
            bytes,
        })
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads a little-endian f16 at `at`.
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

impl Gguf {
    /// The raw bytes of a tensor (checked to lie inside the file when parsed).
    pub fn tensor_bytes(&self, tensor: &TensorInfo) -> &[u8] {
        &self.bytes[tensor.offset as usize..(tensor.offset + tensor.size) as usize]
    }

    /// A tensor's values as f32, in GGML order (innermost dimension first).
    ///
    /// F32, F16, BF16 and the 32-element block quantisations Q8_0, Q4_0 and Q4_1 are decoded;
    /// the k-quants parse but do not decode yet, and say so.
    pub fn dequantize(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(tensor);
        let n = tensor.elements() as usize;
        let mut out = Vec::with_capacity(n);
        match tensor.ggml_type {
            GgmlType::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            GgmlType::F16 => out.extend((0..n).map(|i| f16_at(bytes, 2 * i))),
            GgmlType::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            GgmlType::Q8_0 => {
                for block in bytes.chunks_exact(34) {
                    let d = f16_at(block, 0);
                    out.extend(block[2..].iter().map(|&q| d * (q as i8) as f32));
                }
            }
            GgmlType::Q4_0 => {
                for block in bytes.chunks_exact(18) {
                    let d = f16_at(block, 0);
                    let qs = &block[2..];
                    out.extend(qs.iter().map(|&q| d * ((q & 0x0F) as f32 - 8.0)));
                    out.extend(qs.iter().map(|&q| d * ((q >> 4) as f32 - 8.0)));
                }
            }
            GgmlType::Q4_1 => {
                for block in bytes.chunks_exact(20) {
                    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
                    let qs = &block[4..];
                    out.extend(qs.iter().map(|&q| d * (q & 0x0F) as f32 + m));
                    out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
                }
            }
            GgmlType::Q4K | GgmlType::Q6K => {
                return Err(GgufError::NotDecoded {
                    name: tensor.name.clone(),
                    ggml_type: tensor.ggml_type,
                });
            }
        }
        debug_assert_eq!(out.len(), n);
        Ok(out)
    }
}
