//! numpy arrays: dtypes, C/Fortran order, and the pickled forms of an
//! ndarray (`_reconstruct` + state, `_frombuffer`, joblib's wrapper data).

use crate::pickle::{Object, Value};

/// Why bytes or pickled values are not a numpy array this crate reads.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArrayError {
    #[error("unsupported dtype `{0}`")]
    UnsupportedDtype(String),
    #[error("shape {0:?} overflows")]
    ShapeOverflows(Vec<usize>),
    #[error("shape {shape:?} of the zero-width dtype {dtype} has {elements} elements, more than the {MAX_ZERO_WIDTH_ELEMENTS} allowed without data")]
    TooManyEmptyElements {
        shape: Vec<usize>,
        dtype: String,
        elements: usize,
    },
    #[error("array data is {have} bytes, shape {shape:?} of {dtype} needs {need}")]
    DataSize {
        have: usize,
        shape: Vec<usize>,
        dtype: String,
        need: usize,
    },
    #[error("invalid code point {0:#x} in a unicode array")]
    CodePoint(u32),
    #[error("uint64 value {0} does not fit in int64")]
    Uint64TooLarge(u64),
    #[error("object arrays have no raw data")]
    ObjectWithRawData,
    #[error("object array has {items} items for shape {shape:?}")]
    ObjectItems { items: usize, shape: Vec<usize> },
    #[error("ndarray state has {0} fields, expected 5")]
    StateFields(usize),
    #[error("bad array dimension {0}")]
    Dimension(String),
    #[error("_codecs.encode with encoding `{0}`")]
    Encoding(String),
    #[error("non-latin1 character")]
    NonLatin1,
    #[error("a numpy {0} scalar where an integer belongs")]
    NotAnInteger(String),
    /// A pickled value of the wrong type where an array's part belongs.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        expected: &'static str,
        found: String,
    },
    /// A pickled array, dtype or scalar that lacks a part (named in the text).
    #[error("{0}")]
    Incomplete(&'static str),
}

/// A numpy dtype this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    Int {
        bytes: usize,
        signed: bool,
        big_endian: bool,
    },
    Float {
        bytes: usize,
        big_endian: bool,
    },
    Bool,
    /// Fixed-width unicode, `chars` UTF-32 code units.
    Unicode {
        chars: usize,
        big_endian: bool,
    },
    Object,
}

impl DType {
    /// Parses a numpy type string such as `<i8`, `|u1`, `<U18`, `|O`.
    pub fn parse(descr: &str) -> Result<DType, ArrayError> {
        let (order, rest) = match descr.chars().next() {
            Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
            _ => ('=', descr),
        };
        let big_endian = order == '>';
        let (kind, size) = rest.split_at(
            rest.find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len()),
        );
        let size: usize = if size.is_empty() {
            0
        } else {
            size.parse()
                .map_err(|_| ArrayError::UnsupportedDtype(descr.to_string()))?
        };
        match (kind, size) {
            ("i", 1 | 2 | 4 | 8) => Ok(DType::Int {
                bytes: size,
                signed: true,
                big_endian,
            }),
            ("u", 1 | 2 | 4 | 8) => Ok(DType::Int {
                bytes: size,
                signed: false,
                big_endian,
            }),
            ("f", 2 | 4 | 8) => Ok(DType::Float {
                bytes: size,
                big_endian,
            }),
            ("b", 1) | ("?", _) => Ok(DType::Bool),
            ("U", n) => Ok(DType::Unicode {
                chars: n,
                big_endian,
            }),
            ("O", _) => Ok(DType::Object),
            _ => Err(ArrayError::UnsupportedDtype(descr.to_string())),
        }
    }

    /// Bytes per element (object arrays have no raw bytes).
    pub fn itemsize(&self) -> usize {
        match *self {
            DType::Int { bytes, .. } | DType::Float { bytes, .. } => bytes,
            DType::Bool => 1,
            DType::Unicode { chars, .. } => chars * 4,
            DType::Object => 0,
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            DType::Int { bytes, signed, .. } => {
                format!("{}int{}", if signed { "" } else { "u" }, bytes * 8)
            }
            DType::Float { bytes, .. } => format!("float{}", bytes * 8),
            DType::Bool => "bool".into(),
            DType::Unicode { chars, .. } => format!("<U{chars}"),
            DType::Object => "object".into(),
        }
    }
}

/// Array elements, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Strings(Vec<String>),
    Objects(Vec<Value>),
}

/// The most elements an array of a zero-width dtype may claim.
pub const MAX_ZERO_WIDTH_ELEMENTS: usize = 1 << 20;

/// A decoded array, always in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub elements: Elements,
    /// Whether the source was stored in Fortran order (already reordered).
    pub was_fortran: bool,
}

impl NdArray {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes `prod(shape) * itemsize` raw bytes.
    pub fn from_raw(
        dtype: DType,
        shape: Vec<usize>,
        fortran: bool,
        raw: &[u8],
    ) -> Result<NdArray, ArrayError> {
        let n = element_count(&shape)?;
        // A zero-width dtype (`<U0`) has no data to bound its element count:
        // four billion empty strings from a 100-byte file would be 96 GB.
        if dtype.itemsize() == 0 && n > MAX_ZERO_WIDTH_ELEMENTS {
            return Err(ArrayError::TooManyEmptyElements {
                shape,
                dtype: dtype.describe(),
                elements: n,
            });
        }
        let need = n
            .checked_mul(dtype.itemsize())
            .ok_or_else(|| ArrayError::ShapeOverflows(shape.clone()))?;
        if raw.len() != need {
            return Err(ArrayError::DataSize {
                have: raw.len(),
                shape,
                dtype: dtype.describe(),
                need,
            });
        }
        let elements = match dtype {
            DType::Int {
                bytes,
                signed,
                big_endian,
            } => {
                let mut out = Vec::with_capacity(n);
                for chunk in raw.chunks_exact(bytes) {
                    out.push(read_int(chunk, signed, big_endian)?);
                }
                Elements::Ints(out)
            }
            DType::Bool => Elements::Ints(raw.iter().map(|&b| (b != 0) as i64).collect()),
            DType::Float { bytes, big_endian } => Elements::Floats(
                raw.chunks_exact(bytes)
                    .map(|c| {
                        let mut b = c.to_vec();
                        if big_endian {
                            b.reverse();
                        }
                        match bytes {
                            8 => f64::from_le_bytes(b.try_into().expect("8")),
                            4 => f32::from_le_bytes(b.try_into().expect("4")) as f64,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ),
            DType::Unicode { chars, big_endian } => {
                let mut out = Vec::with_capacity(n);
                for chunk in raw.chunks_exact((chars * 4).max(1)).take(n) {
                    let mut s = String::new();
                    for unit in chunk.chunks_exact(4) {
                        let arr: [u8; 4] = unit.try_into().expect("4");
                        let code = if big_endian {
                            u32::from_be_bytes(arr)
                        } else {
                            u32::from_le_bytes(arr)
                        };
                        if code == 0 {
                            break; // numpy pads shorter strings with NULs
                        }
                        s.push(char::from_u32(code).ok_or(ArrayError::CodePoint(code))?);
                    }
                    out.push(s);
                }
                if chars == 0 {
                    out = vec![String::new(); n];
                }
                Elements::Strings(out)
            }
            DType::Object => return Err(ArrayError::ObjectWithRawData),
        };
        let mut array = NdArray {
            shape,
            dtype,
            elements,
            was_fortran: fortran,
        };
        if fortran {
            array.fortran_to_c();
        }
        Ok(array)
    }

    fn fortran_to_c(&mut self) {
        if self.shape.len() < 2 {
            return;
        }
        let order = fortran_permutation(&self.shape);
        fn permute<T: Clone>(v: &[T], order: &[usize]) -> Vec<T> {
            order.iter().map(|&i| v[i].clone()).collect()
        }
        self.elements = match &self.elements {
            Elements::Ints(v) => Elements::Ints(permute(v, &order)),
            Elements::Floats(v) => Elements::Floats(permute(v, &order)),
            Elements::Strings(v) => Elements::Strings(permute(v, &order)),
            Elements::Objects(v) => Elements::Objects(permute(v, &order)),
        };
    }
}

/// For each C-order position, the index of that element in Fortran-order data.
fn fortran_permutation(shape: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut f_strides = vec![1usize; shape.len()];
    for d in 1..shape.len() {
        f_strides[d] = f_strides[d - 1] * shape[d - 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(index.iter().zip(&f_strides).map(|(i, s)| i * s).sum());
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

pub fn element_count(shape: &[usize]) -> Result<usize, ArrayError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ArrayError::ShapeOverflows(shape.to_vec()))
}

fn read_int(chunk: &[u8], signed: bool, big_endian: bool) -> Result<i64, ArrayError> {
    let mut b = [0u8; 8];
    let n = chunk.len();
    if big_endian {
        for (i, byte) in chunk.iter().rev().enumerate() {
            b[i] = *byte;
        }
    } else {
        b[..n].copy_from_slice(chunk);
    }
    if signed && n < 8 && b[n - 1] & 0x80 != 0 {
        for byte in b.iter_mut().skip(n) {
            *byte = 0xff;
        }
    }
    let v = i64::from_le_bytes(b);
    if !signed && n == 8 && v < 0 {
        return Err(ArrayError::Uint64TooLarge(v as u64));
    }
    Ok(v)
}

/// A dtype from its pickled form: `numpy.dtype('U18', False, True)` with the
/// byte order in its BUILD state.
pub fn dtype_from_value(v: &Value) -> Result<DType, ArrayError> {
    let unexpected = |found: String| ArrayError::Unexpected {
        expected: "a numpy dtype",
        found,
    };
    let obj = v
        .as_object()
        .ok_or_else(|| unexpected(v.type_name().to_string()))?;
    if obj.name != "dtype" {
        return Err(unexpected(format!("{}.{}", obj.module, obj.name)));
    }
    let code = obj
        .args
        .first()
        .and_then(Value::as_str)
        .ok_or(ArrayError::Incomplete("numpy dtype without a type code"))?
        .to_string();
    let order = obj
        .state
        .as_ref()
        .and_then(Value::as_seq)
        .and_then(|s| s.get(1).and_then(|o| o.as_str().map(str::to_string)))
        .unwrap_or_else(|| "|".into());
    let mut dtype = DType::parse(&format!("{order}{code}"))?;
    // Unicode dtypes carry their element size in the state (bytes, 4 per char).
    if let (DType::Unicode { big_endian, .. }, Some(elsize)) = (
        dtype,
        obj.state
            .as_ref()
            .and_then(Value::as_seq)
            .and_then(|s| s.get(5).and_then(Value::as_int)),
    ) {
        if elsize >= 0 && code == "U" {
            dtype = DType::Unicode {
                chars: elsize as usize / 4,
                big_endian,
            };
        }
    }
    Ok(dtype)
}

fn shape_from_value(v: &Value) -> Result<Vec<usize>, ArrayError> {
    let items = v.as_seq().ok_or_else(|| ArrayError::Unexpected {
        expected: "an array shape tuple",
        found: v.type_name().to_string(),
    })?;
    items
        .iter()
        .map(|d| {
            d.as_int()
                .filter(|&x| x >= 0)
                .map(|x| x as usize)
                .ok_or_else(|| ArrayError::Dimension(format!("{d:?}")))
        })
        .collect()
}

/// Bytes of a pickled buffer: `bytes`, or protocol 2's `_codecs.encode(str, 'latin1')`.
pub fn bytes_from_value(v: &Value) -> Result<Vec<u8>, ArrayError> {
    let unexpected = |found: String| ArrayError::Unexpected {
        expected: "bytes",
        found,
    };
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::Object(o) => {
            let o = o.borrow();
            if o.is("_codecs", "encode") {
                let text = o
                    .args
                    .first()
                    .and_then(Value::as_str)
                    .ok_or(ArrayError::Incomplete("_codecs.encode without a string"))?;
                let encoding = o.args.get(1).and_then(Value::as_str).unwrap_or("utf-8");
                if encoding != "latin1" && encoding != "latin-1" {
                    return Err(ArrayError::Encoding(encoding.to_string()));
                }
                text.chars()
                    .map(|c| u8::try_from(c as u32).map_err(|_| ArrayError::NonLatin1))
                    .collect()
            } else {
                Err(unexpected(format!("{}.{}", o.module, o.name)))
            }
        }
        other => Err(unexpected(other.type_name().to_string())),
    }
}

/// An array from any of its pickled forms.
pub fn array_from_value(v: &Value) -> Result<NdArray, ArrayError> {
    let unexpected = |found: String| ArrayError::Unexpected {
        expected: "a numpy array",
        found,
    };
    if let Value::Ext(ext) = v {
        return ext
            .downcast_ref::<NdArray>()
            .cloned()
            .ok_or_else(|| unexpected("an unknown extension value".into()));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| unexpected(v.type_name().to_string()))?;
    if obj.name == "_reconstruct" {
        reconstruct(&obj)
    } else if obj.name == "_frombuffer" {
        let raw = bytes_from_value(
            obj.args
                .first()
                .ok_or(ArrayError::Incomplete("_frombuffer without data"))?,
        )?;
        let dtype = dtype_from_value(
            obj.args
                .get(1)
                .ok_or(ArrayError::Incomplete("_frombuffer without dtype"))?,
        )?;
        let shape = shape_from_value(
            obj.args
                .get(2)
                .ok_or(ArrayError::Incomplete("_frombuffer without shape"))?,
        )?;
        let fortran = obj.args.get(3).and_then(Value::as_str) == Some("F");
        NdArray::from_raw(dtype, shape, fortran, &raw)
    } else {
        Err(unexpected(format!("{}.{}", obj.module, obj.name)))
    }
}

fn reconstruct(obj: &Object) -> Result<NdArray, ArrayError> {
    let state = obj
        .state
        .as_ref()
        .and_then(Value::as_seq)
        .ok_or(ArrayError::Incomplete("ndarray without state"))?;
    // (version, shape, dtype, is_fortran, data)
    if state.len() != 5 {
        return Err(ArrayError::StateFields(state.len()));
    }
    let shape = shape_from_value(&state[1])?;
    let dtype = dtype_from_value(&state[2])?;
    let fortran = matches!(state[3], Value::Bool(true)) || state[3].as_int() == Some(1);
    if dtype == DType::Object {
        let items = state[4]
            .as_seq()
            .ok_or(ArrayError::Incomplete("object array data is not a list"))?;
        if items.len() != element_count(&shape)? {
            return Err(ArrayError::ObjectItems {
                items: items.len(),
                shape,
            });
        }
        let mut array = NdArray {
            shape,
            dtype,
            elements: Elements::Objects(items),
            was_fortran: fortran,
        };
        if fortran {
            array.fortran_to_c();
        }
        return Ok(array);
    }
    let raw = bytes_from_value(&state[4])?;
    NdArray::from_raw(dtype, shape, fortran, &raw)
}

/// An integer from a pickled numpy scalar (`numpy.core.multiarray.scalar(dtype, bytes)`).
pub fn scalar_int(v: &Value) -> Option<Result<i64, ArrayError>> {
    let obj = v.as_object()?;
    if obj.name != "scalar" {
        return None;
    }
    Some((|| {
        let dtype = dtype_from_value(
            obj.args
                .first()
                .ok_or(ArrayError::Incomplete("scalar without dtype"))?,
        )?;
        let raw = bytes_from_value(
            obj.args
                .get(1)
                .ok_or(ArrayError::Incomplete("scalar without data"))?,
        )?;
        match NdArray::from_raw(dtype, vec![], false, &raw)?.elements {
            Elements::Ints(v) => Ok(v[0]),
            _ => Err(ArrayError::NotAnInteger(dtype.describe())),
        }
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_parse() {
        assert_eq!(
            DType::parse("<i8").unwrap(),
            DType::Int {
                bytes: 8,
                signed: true,
                big_endian: false
            }
        );
        assert_eq!(
            DType::parse(">u2").unwrap(),
            DType::Int {
                bytes: 2,
                signed: false,
                big_endian: true
            }
        );
        assert_eq!(
            DType::parse("<U18").unwrap(),
            DType::Unicode {
                chars: 18,
                big_endian: false
            }
        );
        assert_eq!(DType::parse("|O").unwrap(), DType::Object);
        assert!(DType::parse("<c16").is_err());
    }

    #[test]
    fn fortran_data_is_reordered_to_c() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major as 1 4 2 5 3 6 (int32)
        let raw: Vec<u8> = [1i32, 4, 2, 5, 3, 6]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let a = NdArray::from_raw(DType::parse("<i4").unwrap(), vec![2, 3], true, &raw).unwrap();
        assert_eq!(a.elements, Elements::Ints(vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn negative_and_big_endian_ints() {
        let raw = (-5i16).to_be_bytes();
        let a = NdArray::from_raw(DType::parse(">i2").unwrap(), vec![1], false, &raw).unwrap();
        assert_eq!(a.elements, Elements::Ints(vec![-5]));
    }
}
