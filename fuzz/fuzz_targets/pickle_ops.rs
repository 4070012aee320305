//! Structure-aware pickles: a sequence of well-formed opcodes (each with
//! valid arguments, globals from the loader's allow-list and from outside
//! it, memo indices near the ones in use), so the VM's deep paths (memo
//! sharing, nesting, BUILD and REDUCE of allowed classes, the numpy and
//! LabelEncoder interpreters) are reached, which random bytes rarely get
//! past the first opcode to. Errors are fine; panics, hangs and memory
//! blow-ups are bugs.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pipe_notebook::{joblib, sklearn};

/// Globals worth naming: the allow-list, look-alikes, and a refused one.
const GLOBALS: &[(&str, &str)] = &[
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("sklearn.preprocessing._label", "LabelEncoder"),
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "int"),
    ("os", "system"),
];

/// Strings the interpreters look for, so dict keys and dtypes match.
const WORDS: &[&str] = &[
    "classes_",
    "_sklearn_version",
    "<i8",
    "<i4",
    "<U5",
    "|O",
    "O8",
    "latin1",
    "shape",
    "dtype",
    "order",
    "C",
    "allow_mmap",
    "subclass",
    "numpy_array_alignment_bytes",
    "b",
    "<pad>",
    "<unk>",
    "the",
    "",
];

#[derive(Arbitrary, Debug)]
enum Op {
    Mark,
    Pop,
    PopMark,
    Dup,
    None,
    True,
    False,
    Int(i32),
    SmallInt(u8),
    Long(Vec<u8>),
    Float(f64),
    Word(u8),
    Text(String),
    Bytes(Vec<u8>),
    EmptyList,
    EmptyDict,
    EmptyTuple,
    EmptySet,
    List,
    Dict,
    Tuple,
    Tuple1,
    Tuple2,
    Tuple3,
    Append,
    Appends,
    SetItem,
    SetItems,
    AddItems,
    FrozenSet,
    Global(u8),
    StackGlobal(u8),
    Reduce,
    Build,
    NewObj,
    Memoize,
    Put(u8),
    Get(u8),
    LongGet(u32),
    /// The same run of operations again (shared structure, deep nesting).
    Repeat(u8, u16),
}

/// Writes `ops` as pickle bytes. `budget` bounds the ops visited, so that
/// nested repeats of nothing cannot make the generator itself the slow part.
fn encode(ops: &[Op], out: &mut Vec<u8>, depth: u8, budget: &mut usize) {
    for op in ops {
        if out.len() > 1 << 20 || *budget == 0 {
            return;
        }
        *budget -= 1;
        match op {
            Op::Mark => out.push(b'('),
            Op::Pop => out.push(b'0'),
            Op::PopMark => out.push(b'1'),
            Op::Dup => out.push(b'2'),
            Op::None => out.push(b'N'),
            Op::True => out.push(0x88),
            Op::False => out.push(0x89),
            Op::Int(i) => {
                out.push(b'J');
                out.extend(i.to_le_bytes());
            }
            Op::SmallInt(i) => out.extend([b'K', *i]),
            Op::Long(bytes) => {
                let bytes = &bytes[..bytes.len().min(255)];
                out.extend([0x8a, bytes.len() as u8]);
                out.extend(bytes);
            }
            Op::Float(f) => {
                out.push(b'G');
                out.extend(f.to_be_bytes());
            }
            Op::Word(i) => short_unicode(out, WORDS[*i as usize % WORDS.len()]),
            Op::Text(s) => {
                let s = &s.as_bytes()[..s.len().min(255)];
                out.push(0x8c);
                out.push(s.len() as u8);
                out.extend(s);
            }
            Op::Bytes(b) => {
                let b = &b[..b.len().min(255)];
                out.extend([b'C', b.len() as u8]);
                out.extend(b);
            }
            Op::EmptyList => out.push(b']'),
            Op::EmptyDict => out.push(b'}'),
            Op::EmptyTuple => out.push(b')'),
            Op::EmptySet => out.push(0x8f),
            Op::List => out.push(b'l'),
            Op::Dict => out.push(b'd'),
            Op::Tuple => out.push(b't'),
            Op::Tuple1 => out.push(0x85),
            Op::Tuple2 => out.push(0x86),
            Op::Tuple3 => out.push(0x87),
            Op::Append => out.push(b'a'),
            Op::Appends => out.push(b'e'),
            Op::SetItem => out.push(b's'),
            Op::SetItems => out.push(b'u'),
            Op::AddItems => out.push(0x90),
            Op::FrozenSet => out.push(0x91),
            Op::Global(i) => {
                let (module, name) = GLOBALS[*i as usize % GLOBALS.len()];
                out.push(b'c');
                out.extend(format!("{module}\n{name}\n").bytes());
            }
            Op::StackGlobal(i) => {
                let (module, name) = GLOBALS[*i as usize % GLOBALS.len()];
                short_unicode(out, module);
                short_unicode(out, name);
                out.push(0x93);
            }
            Op::Reduce => out.push(b'R'),
            Op::Build => out.push(b'b'),
            Op::NewObj => out.push(0x81),
            Op::Memoize => out.push(0x94),
            Op::Put(i) => out.extend([b'q', *i % 8]),
            Op::Get(i) => out.extend([b'h', *i % 8]),
            Op::LongGet(i) => {
                out.push(b'j');
                out.extend(i.to_le_bytes());
            }
            Op::Repeat(count, len) => {
                // Repeats the ops before this one (at most 16 of them), up to 3 levels deep.
                if depth < 3 {
                    let here = ops.iter().position(|o| std::ptr::eq(o, op)).unwrap_or(0);
                    let from = here.saturating_sub(*count as usize % 16 + 1);
                    for _ in 0..(*len % 512) {
                        if from == here || *budget == 0 {
                            break;
                        }
                        *budget -= 1;
                        encode(&ops[from..here], out, depth + 1, budget);
                    }
                }
            }
        }
    }
}

fn short_unicode(out: &mut Vec<u8>, s: &str) {
    out.extend([0x8c, s.len() as u8]);
    out.extend(s.as_bytes());
}

fuzz_target!(|ops: Vec<Op>| {
    let mut bytes = vec![0x80, 4];
    encode(&ops, &mut bytes, 0, &mut 1_000_000);
    bytes.push(b'.');
    // `PICKLE_OPS_DUMP=file cargo fuzz run pickle_ops ARTIFACT` writes the
    // pickle a finding generated, to run through `pipe` itself.
    if let Some(path) = std::env::var_os("PICKLE_OPS_DUMP") {
        let _ = std::fs::write(path, &bytes);
    }
    if let Ok(value) = joblib::load_bytes(Path::new("fuzz.pkl"), &bytes) {
        let _ = sklearn::vocabulary(&value);
        let _ = sklearn::label_encoder(&value);
    }
});
