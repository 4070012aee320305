//! Files written by `joblib.dump`: whole-stream compression, and numpy
//! arrays stored as a `NumpyArrayWrapper` followed by their raw bytes (or, for
//! object arrays, by a complete nested pickle).

use std::io::Read;
use std::rc::Rc;

use crate::error::LoadError;
use crate::numpy::{dtype_from_value, element_count, ArrayError, DType, NdArray};
use crate::pickle::{self, Object, PickleError, PickleErrorKind, Stream, Value};

/// Decompressed streams larger than this are refused (a zip bomb guard),
/// checked while inflating: a bomb stops here, not when memory runs out. A
/// vocabulary of a million tokens pickles to about 20 MB; the limit holds
/// three times that.
pub const MAX_DECOMPRESSED: u64 = 64 << 20;

/// The globals a joblib file may name. Anything else is refused by name.
pub fn allowed(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("joblib.numpy_pickle", "NumpyArrayWrapper")
            | ("numpy", "ndarray")
            | ("numpy", "dtype")
            | ("numpy.core.multiarray", "_reconstruct")
            | ("numpy._core.multiarray", "_reconstruct")
            | ("numpy.core.multiarray", "scalar")
            | ("numpy._core.multiarray", "scalar")
            | ("numpy.core.numeric", "_frombuffer")
            | ("numpy._core.numeric", "_frombuffer")
            | ("_codecs", "encode")
            | ("sklearn.preprocessing._label", "LabelEncoder")
            | ("sklearn.preprocessing.label", "LabelEncoder")
            | ("collections", "OrderedDict")
            | ("collections", "defaultdict")
            | ("builtins", "int")
    )
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Pickle,
    Zlib,
    Gzip,
    Bz2,
    Xz,
    Lzma,
    Lz4,
    /// joblib < 0.10 ('ZF' header, arrays in companion files).
    OldJoblib,
    Npy,
    Zip,
    Empty,
    Unknown,
}

pub fn sniff(bytes: &[u8]) -> Container {
    match bytes {
        [] => Container::Empty,
        [0x80, ..] => Container::Pickle,
        [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => Container::Zlib,
        [0x1f, 0x8b, ..] => Container::Gzip,
        [b'B', b'Z', b'h', ..] => Container::Bz2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Container::Xz,
        [0x5d, 0x00, 0x00, ..] => Container::Lzma,
        [0x04, 0x22, 0x4d, 0x18, ..] => Container::Lz4,
        [b'Z', b'F', ..] => Container::OldJoblib,
        [0x93, b'N', b'U', b'M', b'P', b'Y', ..] => Container::Npy,
        [b'P', b'K', 0x03, 0x04, ..] => Container::Zip,
        _ => Container::Unknown,
    }
}

/// Reads a joblib (or plain pickle) file into a value, refusing anything not
/// on the allowlist. `path` is only used in errors.
pub fn load_bytes(path: &std::path::Path, bytes: &[u8]) -> Result<Value, LoadError> {
    let err = |offset: Option<u64>, problem: String, hint: &str| {
        LoadError::new(path, offset, problem, hint)
    };
    let decompressed;
    let data: &[u8] = match sniff(bytes) {
        Container::Pickle => bytes,
        Container::Zlib | Container::Gzip => {
            let mut out = Vec::new();
            let limited: Box<dyn Read> = if sniff(bytes) == Container::Zlib {
                Box::new(flate2::read::ZlibDecoder::new(bytes).take(MAX_DECOMPRESSED + 1))
            } else {
                Box::new(flate2::read::GzDecoder::new(bytes).take(MAX_DECOMPRESSED + 1))
            };
            let mut limited = limited;
            limited.read_to_end(&mut out).map_err(|e| {
                err(
                    None,
                    format!("the compressed stream is corrupt or truncated: {e}"),
                    "re-create the file with joblib.dump",
                )
            })?;
            if out.len() as u64 > MAX_DECOMPRESSED {
                return Err(err(
                    None,
                    format!(
                        "decompresses to more than {} MiB, the limit for a pickle",
                        MAX_DECOMPRESSED >> 20
                    ),
                    "refusing a likely decompression bomb",
                ));
            }
            decompressed = out;
            &decompressed
        }
        c @ (Container::Bz2 | Container::Xz | Container::Lzma | Container::Lz4) => {
            let name = format!("{c:?}").to_lowercase();
            return Err(err(
                Some(0),
                format!("compressed with {name}, which pipe does not read"),
                "re-save with joblib.dump(obj, path, compress=3) (zlib) or compress=0",
            ));
        }
        Container::OldJoblib => {
            return Err(err(
                Some(0),
                "written by joblib < 0.10 (a 'ZF' file with arrays in companion files)".into(),
                "load it with that joblib and re-save with a current joblib",
            ))
        }
        Container::Npy => {
            return Err(err(
                Some(0),
                "this is a .npy file, not a pickle".into(),
                "list it among the .npy inputs instead",
            ))
        }
        Container::Zip => {
            return Err(err(
                Some(0),
                "this is a zip archive (an .npz?), not a pickle".into(),
                "save each array with np.save, or the object with joblib.dump",
            ))
        }
        Container::Empty => {
            return Err(err(
                Some(0),
                "the file is empty".into(),
                "re-create it with joblib.dump",
            ))
        }
        Container::Unknown => {
            return Err(err(
                Some(0),
                format!(
                    "not a pickle: starts with byte 0x{:02x}, a pickle starts with 0x80",
                    bytes[0]
                ),
                "expected a file written by joblib.dump or pickle.dump (protocol 2 or later)",
            ))
        }
    };
    let mut stream = Stream::new(data);
    let value =
        pickle::load(&mut stream, allowed, &mut JoblibHooks).map_err(|e| from_pickle(path, e))?;
    if stream.remaining() > 0 {
        return Err(err(
            Some(stream.pos() as u64),
            format!(
                "{} trailing bytes after the pickle's STOP",
                stream.remaining()
            ),
            "the file holds more than one object or is corrupt",
        ));
    }
    Ok(value)
}

pub(crate) fn from_pickle(path: &std::path::Path, e: PickleError) -> LoadError {
    let hint = match e.kind {
        PickleErrorKind::Truncated { .. }
        | PickleErrorKind::NoStop
        | PickleErrorKind::TooLarge { .. } => {
            "the file is truncated or corrupt; re-create it with joblib.dump"
        }
        PickleErrorKind::ForbiddenGlobal { .. } => {
            "pipe never runs code from a pickle; save plain data (dict, LabelEncoder, arrays)"
        }
        _ => "",
    };
    LoadError::new(path, Some(e.offset as u64), e.kind.to_string(), hint)
}

/// Reads the array bytes joblib writes right after a `NumpyArrayWrapper`'s BUILD.
struct JoblibHooks;

impl pickle::Hooks for JoblibHooks {
    fn after_build(
        &mut self,
        object: &Object,
        stream: &mut Stream<'_>,
    ) -> Result<Option<Value>, PickleError> {
        if !object.is("joblib.numpy_pickle", "NumpyArrayWrapper") {
            return Ok(None);
        }
        let bad = |s: &Stream<'_>, msg: String| s.error(PickleErrorKind::Malformed(msg));
        let bad_array = |s: &Stream<'_>, e: ArrayError| s.error(PickleErrorKind::Array(e));
        let Some(Value::Dict(state)) = &object.state else {
            return Err(bad(stream, "NumpyArrayWrapper without a state dict".into()));
        };
        let field = |name: &str| {
            state
                .borrow()
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(_, v)| v.clone())
        };
        let dtype = dtype_from_value(
            &field("dtype").ok_or_else(|| bad(stream, "NumpyArrayWrapper without dtype".into()))?,
        )
        .map_err(|e| bad_array(stream, e))?;
        let shape: Vec<usize> = field("shape")
            .and_then(|s| s.as_seq())
            .ok_or_else(|| bad(stream, "NumpyArrayWrapper without shape".into()))?
            .iter()
            .map(|d| d.as_int().filter(|&x| x >= 0).map(|x| x as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                bad(
                    stream,
                    "NumpyArrayWrapper shape is not a tuple of ints".into(),
                )
            })?;
        let fortran = field("order")
            .and_then(|o| o.as_str().map(|s| s == "F"))
            .unwrap_or(false);

        if dtype == DType::Object {
            // A complete pickle of the array follows, with its own memo and STOP.
            let inner = pickle::load(stream, allowed, &mut pickle::NoHooks)?;
            let array = crate::numpy::array_from_value(&inner)
                .map_err(|m| bad(stream, format!("nested object array: {m}")))?;
            if array.shape != shape {
                return Err(bad(
                    stream,
                    format!(
                        "nested array has shape {:?}, the wrapper says {shape:?}",
                        array.shape
                    ),
                ));
            }
            return Ok(Some(Value::Ext(Rc::new(array))));
        }
        if field("numpy_array_alignment_bytes").is_some() {
            let start = stream.pos();
            let padding = stream.byte("the array's alignment padding")? as usize;
            if !(1..=16).contains(&padding) {
                return Err(PickleError {
                    offset: start,
                    kind: PickleErrorKind::Malformed(format!(
                        "alignment padding length {padding}, expected 1 to 16"
                    )),
                });
            }
            let pad = stream.take(padding, "the array's alignment padding")?;
            if pad.iter().any(|&b| b != 0xff) {
                return Err(PickleError {
                    offset: start + 1,
                    kind: PickleErrorKind::Malformed("alignment padding bytes are not 0xFF".into()),
                });
            }
        }
        let count = element_count(&shape).map_err(|e| bad_array(stream, e))?;
        let len = (count as u64)
            .checked_mul(dtype.itemsize() as u64)
            .ok_or_else(|| bad_array(stream, ArrayError::ShapeOverflows(shape.clone())))?;
        let raw = stream.sized(len, "the array's raw data")?;
        let array =
            NdArray::from_raw(dtype, shape, fortran, raw).map_err(|e| bad_array(stream, e))?;
        Ok(Some(Value::Ext(Rc::new(array))))
    }
}
