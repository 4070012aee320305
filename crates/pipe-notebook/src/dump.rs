//! Writes the notebook's artifacts the way its Python upstream does, so the
//! notebook (or any `joblib.load`) reads what `pipe` produced: `.npy` arrays,
//! the vocabulary dict and a fitted scikit-learn `LabelEncoder` in joblib's
//! pickle format, with arrays stored raw after a `NumpyArrayWrapper` exactly
//! as `joblib.dump` lays them out (16-byte aligned).
//!
//! Every file is written to a temporary name and renamed into place, so a
//! crash never leaves a half-written artifact under the real name.

use std::path::Path;

use pipe_core::fsutil::atomic_write;
use pipe_data::{IntArray, LabelSet, Vocabulary};

/// The scikit-learn version recorded in a written `LabelEncoder`. A reader
/// with another version warns (`InconsistentVersionWarning`) and loads it: the
/// encoder's state is one array, unchanged across versions.
pub const SKLEARN_VERSION: &str = "1.9.1";

const JOBLIB_ALIGNMENT: usize = 16;

/// Writes `array` as a `.npy` file (int64, C order), like `np.save`.
pub fn write_npy(path: &Path, array: &IntArray) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(array.0.len() * 8 + 128);
    let standard = array.0.as_standard_layout();
    ndarray_npy::WriteNpyExt::write_npy(&standard.view(), &mut bytes)
        .map_err(std::io::Error::other)?;
    atomic_write(path, &bytes)
}

/// Writes `joblib.dump(stoi)` for the vocabulary's token → id dict, ids in
/// vocabulary order (the order Python's dict would keep).
pub fn write_vocabulary(path: &Path, vocab: &Vocabulary) -> std::io::Result<()> {
    atomic_write(path, &vocabulary_pickle(vocab))
}

/// Writes `joblib.dump(label_encoder)` for a fitted `LabelEncoder` whose
/// `classes_` are `labels`.
pub fn write_label_encoder(path: &Path, labels: &LabelSet) -> std::io::Result<()> {
    atomic_write(path, &label_encoder_pickle(labels))
}

pub fn vocabulary_pickle(vocab: &Vocabulary) -> Vec<u8> {
    let mut p = Pickler::new();
    p.op(EMPTY_DICT);
    for chunk in vocab.tokens.chunks(1000).enumerate() {
        let (c, tokens) = chunk;
        p.op(MARK);
        for (i, token) in tokens.iter().enumerate() {
            p.string(token);
            p.int((c * 1000 + i) as i64);
        }
        p.op(SETITEMS);
    }
    p.finish()
}

pub fn label_encoder_pickle(labels: &LabelSet) -> Vec<u8> {
    let mut p = Pickler::new();
    p.global("sklearn.preprocessing._label", "LabelEncoder");
    p.op(EMPTY_TUPLE);
    p.op(NEWOBJ);
    p.op(EMPTY_DICT);
    p.op(MARK);
    p.string("classes_");
    match labels {
        LabelSet::Strings(names) => {
            // numpy's `<U{n}` stores n UCS-4 code points per item, zero-filled.
            let width = names
                .iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut data = Vec::with_capacity(names.len() * width * 4);
            for name in names {
                let mut n = 0;
                for ch in name.chars() {
                    data.extend_from_slice(&(ch as u32).to_le_bytes());
                    n += 1;
                }
                data.resize(data.len() + (width - n) * 4, 0);
            }
            p.joblib_array(
                names.len(),
                &format!("U{width}"),
                (width * 4) as i64,
                4,
                8,
                &data,
            );
        }
        LabelSet::Integers(values) => {
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            p.joblib_array(values.len(), "i8", -1, -1, 0, &data);
        }
    }
    p.string("_sklearn_version");
    p.string(SKLEARN_VERSION);
    p.op(SETITEMS);
    p.op(BUILD);
    p.finish()
}

const MARK: u8 = b'(';
const STOP: u8 = b'.';
const EMPTY_DICT: u8 = b'}';
const EMPTY_TUPLE: u8 = b')';
const SETITEMS: u8 = b'u';
const BUILD: u8 = b'b';
const REDUCE: u8 = b'R';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE3: u8 = 0x87;
const NEWOBJ: u8 = 0x81;
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const NONE: u8 = b'N';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const LONG1: u8 = 0x8a;
const BINUNICODE: u8 = b'X';
const SHORT_BINUNICODE: u8 = 0x8c;
const STACK_GLOBAL: u8 = 0x93;

/// A protocol-4 pickle emitter without memo or frames (both optional for readers).
struct Pickler {
    out: Vec<u8>,
}

impl Pickler {
    fn new() -> Self {
        Pickler { out: vec![0x80, 4] }
    }

    fn op(&mut self, op: u8) {
        self.out.push(op);
    }

    fn string(&mut self, s: &str) {
        if s.len() < 256 {
            self.out.push(SHORT_BINUNICODE);
            self.out.push(s.len() as u8);
        } else {
            self.out.push(BINUNICODE);
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend_from_slice(&[BININT1, v as u8]);
        } else if i32::try_from(v).is_ok() {
            self.out.push(BININT);
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.out.extend_from_slice(&[LONG1, 8]);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.string(module);
        self.string(name);
        self.op(STACK_GLOBAL);
    }

    /// A 1-d array the way joblib stores it: a `NumpyArrayWrapper` whose BUILD
    /// is followed by a padding-length byte, 0xFF padding to a 16-byte
    /// boundary, then the raw little-endian data.
    fn joblib_array(
        &mut self,
        len: usize,
        dtype: &str,
        elsize: i64,
        alignment: i64,
        flags: i64,
        data: &[u8],
    ) {
        self.global("joblib.numpy_pickle", "NumpyArrayWrapper");
        self.op(EMPTY_TUPLE);
        self.op(NEWOBJ);
        self.op(EMPTY_DICT);
        self.op(MARK);
        self.string("subclass");
        self.global("numpy", "ndarray");
        self.string("shape");
        self.int(len as i64);
        self.op(TUPLE1);
        self.string("order");
        self.string("C");
        self.string("dtype");
        // numpy.dtype(name, False, True) then its state tuple, as numpy pickles a dtype.
        self.global("numpy", "dtype");
        self.string(dtype);
        self.op(NEWFALSE);
        self.op(NEWTRUE);
        self.op(TUPLE3);
        self.op(REDUCE);
        self.op(MARK);
        self.int(3);
        self.string("<");
        self.op(NONE);
        self.op(NONE);
        self.op(NONE);
        self.int(elsize);
        self.int(alignment);
        self.int(flags);
        self.op(TUPLE);
        self.op(BUILD);
        self.string("allow_mmap");
        self.op(NEWTRUE);
        self.string("numpy_array_alignment_bytes");
        self.int(JOBLIB_ALIGNMENT as i64);
        self.op(SETITEMS);
        self.op(BUILD);
        let after_padding_byte = self.out.len() + 1;
        let padding = JOBLIB_ALIGNMENT - after_padding_byte % JOBLIB_ALIGNMENT;
        self.out.push(padding as u8);
        self.out.resize(self.out.len() + padding, 0xFF);
        self.out.extend_from_slice(data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.op(STOP);
        self.out
    }
}
