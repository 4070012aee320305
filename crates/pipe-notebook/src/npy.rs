//! `.npy` files as `np.save` writes them: versions 1 to 3, any integer dtype,
//! C or Fortran order. The header is parsed by `ndarray-npy`; the data is read
//! and checked here, so every error names the byte where it applies.

use std::io::Cursor;
use std::path::Path;

use ndarray_npy::npy::header::Header;

use crate::error::LoadError;
use crate::joblib::{sniff, Container};
use crate::numpy::{DType, Elements, NdArray};

/// Parses a whole `.npy` file.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<NdArray, LoadError> {
    let err = |offset: u64, problem: String, hint: &str| {
        LoadError::new(path, Some(offset), problem, hint)
    };
    match sniff(bytes) {
        Container::Npy => {}
        Container::Empty => {
            return Err(err(
                0,
                "the file is empty".into(),
                "re-create it with np.save",
            ))
        }
        Container::Pickle => {
            return Err(err(
                0,
                "this is a pickle, not a .npy file".into(),
                "arrays must be saved with np.save",
            ))
        }
        Container::Zip => {
            return Err(err(
                0,
                "this is a zip archive (an .npz?), not a .npy file".into(),
                "save each array with np.save",
            ))
        }
        _ => {
            return Err(err(
                0,
                "not a .npy file: the magic string \\x93NUMPY is missing".into(),
                "save the array with np.save",
            ))
        }
    }
    // ndarray-npy allocates whatever header length the file claims before
    // reading it (a 42-byte file could ask for 4 GB): check it here first.
    let (len_at, len_size) = match bytes.get(6) {
        Some(1) => (8usize, 2usize),
        Some(2 | 3) => (8, 4),
        Some(v) => {
            return Err(err(
                6,
                format!(".npy format version {v} is not supported (1 to 3 are)"),
                "",
            ))
        }
        None => {
            return Err(err(
                bytes.len() as u64,
                "truncated in the magic string".into(),
                "re-create it with np.save",
            ))
        }
    };
    let Some(len_bytes) = bytes.get(len_at..len_at + len_size) else {
        return Err(err(
            bytes.len() as u64,
            "truncated before the header length".into(),
            "re-create it with np.save",
        ));
    };
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | b as u64);
    let header_end = (len_at + len_size) as u64 + header_len;
    if header_end > bytes.len() as u64 {
        return Err(err(
            len_at as u64,
            format!(
                "the header claims {header_len} bytes but the file has {} in all",
                bytes.len()
            ),
            "the file is truncated or corrupt",
        ));
    }
    // ndarray-npy's header parser (a PEG grammar) backtracks exponentially
    // in nesting: 128 bytes of unclosed `{{(` took seconds. A numpy header
    // nests four levels at most (dict, structured dtype list, field tuple,
    // subarray shape); refuse anything deeper or unbalanced before it.
    let header_start = len_at + len_size;
    check_header_nesting(&bytes[header_start..header_end as usize]).map_err(|e| {
        err(
            header_start as u64,
            e.to_string(),
            "the file was not written by numpy",
        )
    })?;
    let mut cursor = Cursor::new(bytes);
    let header = Header::from_reader(&mut cursor).map_err(|e| {
        err(
            6,
            format!("unreadable .npy header: {e}"),
            "the file is truncated or not written by numpy",
        )
    })?;
    let data_start = cursor.position();
    let descr = match &header.type_descriptor {
        py_literal::Value::String(s) => s.clone(),
        other => {
            return Err(err(
                8,
                format!("structured dtype {other} is not supported"),
                "save a plain integer array",
            ))
        }
    };
    let dtype = DType::parse(&descr).map_err(|e| err(8, e.to_string(), ""))?;
    if dtype == DType::Object {
        return Err(err(
            8,
            "object arrays in .npy files hold pickles; pipe does not load them".into(),
            "save an integer array",
        ));
    }
    // Token ids and labels are integers: refuse any other dtype before its
    // data is decoded (a zero-width `<U0` array of four billion elements
    // has no data to check its size against).
    if !matches!(dtype, DType::Int { .. } | DType::Bool) {
        return Err(err(
            8,
            format!("dtype {} is not an integer array", dtype.describe()),
            "token ids and labels must be saved as int32 or int64",
        ));
    }
    let count =
        crate::numpy::element_count(&header.shape).map_err(|e| err(8, e.to_string(), ""))?;
    let need = (count as u64)
        .checked_mul(dtype.itemsize() as u64)
        .ok_or_else(|| err(8, "array size overflows".into(), ""))?;
    let have = bytes.len() as u64 - data_start;
    if have < need {
        return Err(err(
            bytes.len() as u64,
            format!(
                "truncated: shape {:?} of {} needs {need} data bytes, the file has {have}",
                header.shape,
                dtype.describe()
            ),
            "re-create it with np.save",
        ));
    }
    if have > need {
        return Err(err(
            data_start + need,
            format!("{} trailing bytes after the array data", have - need),
            "the file is corrupt",
        ));
    }
    NdArray::from_raw(
        dtype,
        header.shape.clone(),
        header.layout.is_fortran(),
        &bytes[data_start as usize..],
    )
    .map_err(|e| err(data_start, e.to_string(), ""))
}

/// The deepest a `.npy` header's brackets go: the dict, a structured
/// dtype's list, a field's tuple, a subarray's shape.
const MAX_HEADER_NESTING: usize = 4;

/// Checks that the header's brackets (outside string literals) balance and
/// nest at most [`MAX_HEADER_NESTING`] deep.
fn check_header_nesting(header: &[u8]) -> Result<(), HeaderError> {
    let mut open: Vec<u8> = Vec::new();
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for &b in header {
        if let Some(q) = quote {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                _ if b == q => quote = None,
                _ => {}
            }
            continue;
        }
        match b {
            b'\'' | b'"' => quote = Some(b),
            b'{' | b'(' | b'[' => {
                open.push(b);
                if open.len() > MAX_HEADER_NESTING {
                    return Err(HeaderError::TooDeep);
                }
            }
            b'}' | b')' | b']' => {
                let expected = match b {
                    b'}' => b'{',
                    b')' => b'(',
                    _ => b'[',
                };
                if open.pop() != Some(expected) {
                    return Err(HeaderError::Unmatched(b as char));
                }
            }
            _ => {}
        }
    }
    if quote.is_some() || !open.is_empty() {
        return Err(HeaderError::Unclosed);
    }
    Ok(())
}

/// Why a `.npy` header is refused before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum HeaderError {
    #[error("the header nests brackets deeper than {MAX_HEADER_NESTING} levels")]
    TooDeep,
    #[error("the header's brackets do not match (unexpected `{0}`)")]
    Unmatched(char),
    #[error("the header ends inside a string or an open bracket")]
    Unclosed,
}

/// An integer array: floats and strings where token ids or labels belong are errors.
pub fn int_array(path: &Path, array: NdArray) -> Result<(Vec<usize>, Vec<i64>), LoadError> {
    match array.elements {
        Elements::Ints(v) => Ok((array.shape, v)),
        _ => Err(LoadError::new(
            path,
            None,
            format!(
                "dtype is {}, an integer array was expected",
                array.dtype.describe()
            ),
            "token ids and labels must be saved as int32 or int64",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{check_header_nesting, HeaderError};

    #[test]
    fn numpy_headers_pass_and_deep_or_unbalanced_ones_do_not() {
        let plain = b"{'descr': '<i8', 'fortran_order': False, 'shape': (3, 4), }";
        assert_eq!(check_header_nesting(plain), Ok(()));
        let structured = b"{'descr': [('a', '<i4', (2, 3)), ('b', '|S3')], 'fortran_order': False, 'shape': (2,), }";
        assert_eq!(check_header_nesting(structured), Ok(()));
        assert_eq!(
            check_header_nesting(b"{'descr': '({[', 'shape': (1,)}"),
            Ok(()),
            "brackets in strings do not count"
        );
        assert_eq!(
            check_header_nesting(b"{'a': ((((1,),),),)}"),
            Err(HeaderError::TooDeep)
        );
        assert_eq!(
            check_header_nesting(b"{'a': (1,]}"),
            Err(HeaderError::Unmatched(']'))
        );
        assert_eq!(
            check_header_nesting(b"{'a': (1,"),
            Err(HeaderError::Unclosed)
        );
        assert_eq!(
            check_header_nesting(b"{'a': 'b}"),
            Err(HeaderError::Unclosed)
        );
    }
}
