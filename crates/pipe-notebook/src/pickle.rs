//! A pickle virtual machine that only builds data: it never imports or calls
//! anything. Globals are checked against an allowlist and kept as names;
//! `REDUCE`/`NEWOBJ`/`BUILD` produce [`Object`] values for a later layer
//! (`numpy.rs`, `joblib.rs`, `sklearn.rs`) to interpret.
//!
//! Protocols 2 to 5 (the binary opcodes). Every length is checked against the
//! bytes left before anything is allocated.
//!
//! Hostile input is bounded in time and memory: strings and bytes are shared,
//! never copied, when the memo or `DUP` repeats them; every walk of a value
//! visits each container once and uses a heap stack, not recursion; the
//! number of values a stream may create ([`MAX_VALUES`]) and the nesting
//! depth of the result ([`MAX_DEPTH`]) are limited; and whatever the VM holds
//! when it stops is torn down iteratively, so a million nested tuples cannot
//! overflow the thread's stack when they are dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// A value on the pickle stack.
#[derive(Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 (LONG1/LONG4), little-endian two's complement.
    BigInt(Rc<[u8]>),
    Float(f64),
    /// Shared, so that a memo `GET` or `DUP` of a large string costs nothing.
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Set(Rc<RefCell<Vec<Value>>>),
    Global(Rc<(String, String)>),
    Object(Rc<RefCell<Object>>),
    /// A value made by a [`Hooks`] implementation (joblib's array data).
    Ext(Rc<dyn std::any::Any>),
}

/// The result of `REDUCE` or `NEWOBJ`, with what later opcodes added to it.
#[derive(Clone, Debug)]
pub struct Object {
    pub module: String,
    pub name: String,
    pub args: Vec<Value>,
    /// Set by `BUILD`.
    pub state: Option<Value>,
    /// Added by `SETITEM(S)` on an object (an `OrderedDict`, a `defaultdict`).
    pub items: Vec<(Value, Value)>,
    /// Added by `APPEND(S)` on an object.
    pub list_items: Vec<Value>,
}

impl Object {
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Object(_) => "object",
            Value::Ext(_) => "array data",
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_ref()),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    /// Items of a tuple or list.
    pub fn as_seq(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<std::cell::Ref<'_, Object>> {
        match self {
            Value::Object(o) => Some(o.borrow()),
            _ => None,
        }
    }
}

/// Shallow on purpose: values can share structure, and printing a deep or
/// widely shared one in full could take exponential time.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => write!(f, "None"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::BigInt(b) => write!(f, "int({} bytes)", b.len()),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) if s.chars().count() > 80 => {
                write!(f, "{:?}…", s.chars().take(80).collect::<String>())
            }
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "bytes[{}]", b.len()),
            Value::Tuple(t) => write!(f, "tuple[{}]", t.len()),
            Value::List(l) => write!(f, "list[{}]", l.borrow().len()),
            Value::Dict(d) => write!(f, "dict[{}]", d.borrow().len()),
            Value::Set(s) => write!(f, "set[{}]", s.borrow().len()),
            Value::Global(g) => write!(f, "{}.{}", g.0, g.1),
            Value::Object(o) => write!(f, "{}.{}(…)", o.borrow().module, o.borrow().name),
            Value::Ext(_) => write!(f, "<array data>"),
        }
    }
}

/// The most values one stream may create (each about 24 bytes, so about
/// 500 MB at worst). The notebook's vocabulary of 30k tokens makes ~60k.
pub const MAX_VALUES: usize = 20_000_000;

/// The deepest nesting a loaded value may have. The notebook's files nest
/// five levels at most; deeper values are refused rather than walked.
pub const MAX_DEPTH: usize = 1_000;

/// Scalars compare by value, containers by identity (no deep walk).
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::BigInt(a), Value::BigInt(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Tuple(a), Value::Tuple(b)) => Rc::ptr_eq(a, b),
            (Value::List(a), Value::List(b)) => Rc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Rc::ptr_eq(a, b),
            (Value::Set(a), Value::Set(b)) => Rc::ptr_eq(a, b),
            (Value::Global(a), Value::Global(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => Rc::ptr_eq(a, b),
            (Value::Ext(a), Value::Ext(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Value {
    /// Address of the mutable container behind this value, if it is one.
    fn container_ptr(&self) -> Option<*const ()> {
        match self {
            Value::List(l) => Some(Rc::as_ptr(l) as *const ()),
            Value::Dict(d) => Some(Rc::as_ptr(d) as *const ()),
            Value::Set(s) => Some(Rc::as_ptr(s) as *const ()),
            Value::Object(o) => Some(Rc::as_ptr(o) as *const ()),
            _ => None,
        }
    }

    /// Address of any shared node behind this value (containers and tuples),
    /// so a walk can visit each once: tuples may share halves, and a chain of
    /// 60 of them has 2^60 paths but only 60 nodes.
    fn node_ptr(&self) -> Option<*const ()> {
        match self {
            Value::Tuple(t) => Some(Rc::as_ptr(t) as *const ()),
            other => other.container_ptr(),
        }
    }

    /// The values directly inside this one.
    fn for_each_child(&self, mut f: impl FnMut(&Value)) {
        match self {
            Value::Tuple(t) => t.iter().for_each(f),
            Value::List(l) | Value::Set(l) => l.borrow().iter().for_each(f),
            Value::Dict(d) => d.borrow().iter().for_each(|(k, v)| {
                f(k);
                f(v)
            }),
            Value::Object(o) => {
                let o = o.borrow();
                o.args.iter().for_each(&mut f);
                o.state.iter().for_each(&mut f);
                o.items.iter().for_each(|(k, v)| {
                    f(k);
                    f(v)
                });
                o.list_items.iter().for_each(f);
            }
            _ => {}
        }
    }
}

/// Whether `target` is reachable from any of `roots`. Visits each node once
/// and keeps its own stack, so neither sharing nor depth costs more than the
/// number of nodes.
fn reaches<'v>(roots: impl IntoIterator<Item = &'v Value>, target: *const ()) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<Value> = roots.into_iter().cloned().collect();
    while let Some(v) = todo.pop() {
        if v.container_ptr() == Some(target) {
            return true;
        }
        if let Some(p) = v.node_ptr() {
            if !seen.insert(p) {
                continue;
            }
        }
        v.for_each_child(|c| {
            if c.node_ptr().is_some() {
                todo.push(c.clone())
            }
        });
    }
    false
}

/// The nesting depth of `value` (a scalar is 0), computed without recursion,
/// each shared node once. Stops early, returning `None`, past `limit`.
fn depth_within(value: &Value, limit: usize) -> Option<usize> {
    let mut depth: HashMap<*const (), usize> = HashMap::new();
    // (node, whether its children were pushed already)
    let mut todo: Vec<(Value, bool)> = vec![(value.clone(), false)];
    let mut on_path = 0usize;
    while let Some((v, expanded)) = todo.pop() {
        let Some(p) = v.node_ptr() else { continue };
        if expanded {
            on_path -= 1;
            let mut d = 0;
            v.for_each_child(|c| {
                d = d.max(
                    c.node_ptr()
                        .and_then(|q| depth.get(&q).copied())
                        .unwrap_or(0),
                )
            });
            depth.insert(p, d + 1);
            continue;
        }
        if depth.contains_key(&p) {
            continue;
        }
        on_path += 1;
        if on_path > limit {
            return None;
        }
        todo.push((v.clone(), true));
        v.for_each_child(|c| {
            if c.node_ptr().is_some_and(|q| !depth.contains_key(&q)) {
                todo.push((c.clone(), false))
            }
        });
    }
    Some(
        value
            .node_ptr()
            .and_then(|p| depth.get(&p).copied())
            .unwrap_or(0),
    )
}

/// Drops `values` without recursion: a uniquely owned container gives its
/// children to the work list before it goes, so dropping it recurses no deeper
/// than one level. Shared nodes are only released (another owner remains).
fn dismantle(values: impl IntoIterator<Item = Value>) {
    let mut todo: Vec<Value> = values.into_iter().collect();
    while let Some(v) = todo.pop() {
        match v {
            Value::Tuple(t) => {
                if let Ok(items) = Rc::try_unwrap(t) {
                    todo.extend(items);
                }
            }
            Value::List(l) | Value::Set(l) => {
                if let Ok(items) = Rc::try_unwrap(l) {
                    todo.extend(items.into_inner());
                }
            }
            Value::Dict(d) => {
                if let Ok(items) = Rc::try_unwrap(d) {
                    todo.extend(items.into_inner().into_iter().flat_map(|(k, v)| [k, v]));
                }
            }
            Value::Object(o) => {
                if let Ok(o) = Rc::try_unwrap(o) {
                    let o = o.into_inner();
                    todo.extend(o.args);
                    todo.extend(o.state);
                    todo.extend(o.items.into_iter().flat_map(|(k, v)| [k, v]));
                    todo.extend(o.list_items);
                }
            }
            _ => {}
        }
    }
}

/// Refuses to put `items` into `container` when one of them leads back to it:
/// a recursive structure would be a reference cycle (leaked memory, and
/// endless walks for anything that reads it).
fn check_acyclic<'v>(
    container: &Value,
    items: impl IntoIterator<Item = &'v Value>,
    at: usize,
) -> Result<(), PickleError> {
    let Some(target) = container.container_ptr() else {
        return Ok(());
    };
    if reaches(items, target) {
        return Err(PickleError {
            offset: at,
            kind: PickleErrorKind::Malformed(
                "a container that holds itself (recursive structures are not supported)".into(),
            ),
        });
    }
    Ok(())
}

/// What went wrong, and at which byte of the stream.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("byte {offset}: {kind}")]
pub struct PickleError {
    pub offset: usize,
    pub kind: PickleErrorKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleErrorKind {
    #[error(
        "the file ends inside {what}: {need} more bytes expected, {have} left (truncated file?)"
    )]
    Truncated {
        what: String,
        need: usize,
        have: usize,
    },
    #[error("unknown or unsupported opcode 0x{0:02x} ({1})")]
    UnknownOpcode(u8, &'static str),
    #[error("refusing to load global `{module}.{name}`: only numpy arrays, scikit-learn's LabelEncoder and plain containers are allowed")]
    ForbiddenGlobal { module: String, name: String },
    #[error("{op} needs {need} values on the stack (malformed pickle)")]
    StackUnderflow { op: &'static str, need: usize },
    #[error("{op} without a MARK (malformed pickle)")]
    NoMark { op: &'static str },
    #[error("memo index {0} was never stored (malformed pickle)")]
    BadMemo(u64),
    #[error("{0}")]
    Malformed(String),
    /// A numpy array inside the stream that does not decode.
    #[error(transparent)]
    Array(#[from] crate::numpy::ArrayError),
    #[error(
        "{what} claims {len} bytes but only {left} remain in the file (corrupt or hostile size)"
    )]
    TooLarge {
        what: &'static str,
        len: u64,
        left: usize,
    },
    #[error("the stream ended without a STOP opcode (truncated file?)")]
    NoStop,
    #[error("unsupported pickle protocol {0} (2 to 5 are supported)")]
    Protocol(u8),
    #[error("the value nests deeper than {MAX_DEPTH} levels (a hostile or corrupt file; the notebook's files nest a few levels)")]
    TooDeep,
    #[error("the stream creates more than {MAX_VALUES} values (a hostile or corrupt file)")]
    TooManyValues,
}

/// Extension points for formats that put raw data between opcodes (joblib).
pub trait Hooks {
    /// Called after `BUILD` finished an object. May read bytes that follow
    /// from `stream` and return a replacement for the object on the stack.
    fn after_build(
        &mut self,
        object: &Object,
        stream: &mut Stream<'_>,
    ) -> Result<Option<Value>, PickleError>;
}

/// No hooks: plain pickle.
pub struct NoHooks;

impl Hooks for NoHooks {
    fn after_build(
        &mut self,
        _: &Object,
        _: &mut Stream<'_>,
    ) -> Result<Option<Value>, PickleError> {
        Ok(None)
    }
}

/// A cursor over the pickle bytes that checks every read.
pub struct Stream<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Stream<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Stream { data, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn error(&self, kind: PickleErrorKind) -> PickleError {
        PickleError {
            offset: self.pos,
            kind,
        }
    }
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], PickleError> {
        if n > self.remaining() {
            return Err(self.error(PickleErrorKind::Truncated {
                what: what.to_string(),
                need: n,
                have: self.remaining(),
            }));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }
    pub fn byte(&mut self, what: &str) -> Result<u8, PickleError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }
    fn u16(&mut self, what: &str) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    /// Checks a claimed length against the bytes left before allocating for it.
    pub fn sized(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], PickleError> {
        if len > self.remaining() as u64 {
            return Err(self.error(PickleErrorKind::TooLarge {
                what,
                len,
                left: self.remaining(),
            }));
        }
        self.take(len as usize, what)
    }
    fn line(&mut self, what: &str) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| {
            self.error(PickleErrorKind::Truncated {
                what: what.to_string(),
                need: 1,
                have: 0,
            })
        })?;
        let text = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.error(PickleErrorKind::Malformed(format!("{what} is not UTF-8"))))?;
        self.pos += end + 1;
        Ok(text)
    }
}

/// Which globals a load may name.
pub type Allowlist = fn(&str, &str) -> bool;

/// Runs the VM from the stream's position to its `STOP`; returns the top value.
/// The stream is left just after `STOP`, so a caller can continue (joblib's
/// nested pickles) or check for trailing bytes.
pub fn load(
    stream: &mut Stream<'_>,
    allow: Allowlist,
    hooks: &mut dyn Hooks,
) -> Result<Value, PickleError> {
    let mut vm = Vm {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        created: 0,
    };
    loop {
        if stream.remaining() == 0 {
            return Err(stream.error(PickleErrorKind::NoStop));
        }
        let at = stream.pos();
        let op = stream.byte("an opcode")?;
        if op == op::STOP {
            let value = vm.pop(stream, "STOP")?;
            if depth_within(&value, MAX_DEPTH).is_none() {
                dismantle([value]);
                return Err(PickleError {
                    offset: at,
                    kind: PickleErrorKind::TooDeep,
                });
            }
            return Ok(value);
        }
        vm.step(op, at, stream, allow, hooks)?;
        vm.created += 1;
        if vm.created > MAX_VALUES {
            return Err(PickleError {
                offset: at,
                kind: PickleErrorKind::TooManyValues,
            });
        }
    }
}

/// Opcode bytes, each declared once (names as in CPython's `pickletools`).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINUNICODE: u8 = b'X';
    pub const BINFLOAT: u8 = b'G';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const REDUCE: u8 = b'R';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// Names of opcodes this VM refuses, for the error message.
fn refused_name(op: u8) -> &'static str {
    match op {
        b'I' => "INT (protocol 0)",
        b'L' => "LONG (protocol 0)",
        b'F' => "FLOAT (protocol 0)",
        b'S' => "STRING (protocol 0)",
        b'V' => "UNICODE (protocol 0)",
        b'p' => "PUT (protocol 0)",
        b'g' => "GET (protocol 0)",
        b'i' => "INST (protocol 0)",
        b'o' => "OBJ (protocol 1)",
        b'P' | b'Q' => "PERSID (persistent ids)",
        op::NEXT_BUFFER | op::READONLY_BUFFER => {
            "out-of-band buffer (protocol 5 with buffer_callback)"
        }
        0x82..=0x84 => "EXT (copyreg extension registry)",
        _ => "not a pickle opcode",
    }
}

struct Vm {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    /// Opcodes run so far: each creates at most one value.
    created: usize,
}

impl Drop for Vm {
    fn drop(&mut self) {
        dismantle(
            std::mem::take(&mut self.stack)
                .into_iter()
                .chain(std::mem::take(&mut self.memo).into_values()),
        );
    }
}

impl Vm {
    fn pop(&mut self, s: &Stream<'_>, op: &'static str) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(s.error(PickleErrorKind::StackUnderflow { op, need: 1 }));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&mut self, s: &Stream<'_>, op: &'static str) -> Result<&mut Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(s.error(PickleErrorKind::StackUnderflow { op, need: 1 }));
        }
        Ok(self.stack.last_mut().expect("checked"))
    }

    fn pop_mark(&mut self, s: &Stream<'_>, op: &'static str) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| s.error(PickleErrorKind::NoMark { op }))?;
        Ok(self.stack.split_off(mark))
    }

    fn pop_n(
        &mut self,
        s: &Stream<'_>,
        op: &'static str,
        n: usize,
    ) -> Result<Vec<Value>, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(s.error(PickleErrorKind::StackUnderflow { op, need: n }));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn get(&self, s: &Stream<'_>, index: u64) -> Result<Value, PickleError> {
        self.memo
            .get(&index)
            .cloned()
            .ok_or_else(|| s.error(PickleErrorKind::BadMemo(index)))
    }

    fn global(
        &self,
        s: &Stream<'_>,
        at: usize,
        module: &str,
        name: &str,
        allow: Allowlist,
    ) -> Result<Value, PickleError> {
        if !allow(module, name) {
            return Err(PickleError {
                offset: at,
                kind: PickleErrorKind::ForbiddenGlobal {
                    module: module.to_string(),
                    name: name.to_string(),
                },
            });
        }
        let _ = s;
        Ok(Value::Global(Rc::new((
            module.to_string(),
            name.to_string(),
        ))))
    }

    fn step(
        &mut self,
        op: u8,
        at: usize,
        s: &mut Stream<'_>,
        allow: Allowlist,
        hooks: &mut dyn Hooks,
    ) -> Result<(), PickleError> {
        let malformed = |msg: String| PickleError {
            offset: at,
            kind: PickleErrorKind::Malformed(msg),
        };
        match op {
            op::PROTO => {
                let version = s.byte("PROTO")?;
                if !(2..=5).contains(&version) {
                    return Err(PickleError {
                        offset: at,
                        kind: PickleErrorKind::Protocol(version),
                    });
                }
            }
            op::FRAME => {
                let len = s.u64("FRAME")?;
                if len > s.remaining() as u64 {
                    return Err(s.error(PickleErrorKind::TooLarge {
                        what: "a FRAME",
                        len,
                        left: s.remaining(),
                    }));
                }
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                self.pop(s, "POP")?;
            }
            op::POP_MARK => {
                self.pop_mark(s, "POP_MARK")?;
            }
            op::DUP => {
                let v = self.top(s, "DUP")?.clone();
                self.stack.push(v);
            }
            op::NONE => self.stack.push(Value::None),
            op::NEWTRUE => self.stack.push(Value::Bool(true)),
            op::NEWFALSE => self.stack.push(Value::Bool(false)),
            op::BININT => {
                let v = i32::from_le_bytes(s.take(4, "BININT")?.try_into().expect("4"));
                self.stack.push(Value::Int(v as i64));
            }
            op::BININT1 => {
                let v = s.byte("BININT1")?;
                self.stack.push(Value::Int(v as i64));
            }
            op::BININT2 => {
                let v = s.u16("BININT2")?;
                self.stack.push(Value::Int(v as i64));
            }
            op::LONG1 | op::LONG4 => {
                let n = if op == op::LONG1 {
                    s.byte("LONG1")? as u64
                } else {
                    s.u32("LONG4")? as u64
                };
                let bytes = s.sized(n, "a LONG")?;
                self.stack.push(long_value(bytes));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(s.take(8, "BINFLOAT")?.try_into().expect("8"));
                self.stack.push(Value::Float(v));
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let n = match op {
                    op::SHORT_BINUNICODE => s.byte("SHORT_BINUNICODE")? as u64,
                    op::BINUNICODE => s.u32("BINUNICODE")? as u64,
                    _ => s.u64("BINUNICODE8")?,
                };
                let bytes = s.sized(n, "a unicode string")?;
                // Python writes lone surrogates with surrogatepass; keep what is valid.
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| malformed("string is not valid UTF-8".into()))?;
                self.stack.push(Value::Str(text.into()));
            }
            op::SHORT_BINBYTES
            | op::BINBYTES
            | op::BINBYTES8
            | op::BYTEARRAY8
            | op::SHORT_BINSTRING
            | op::BINSTRING => {
                let n = match op {
                    op::SHORT_BINBYTES | op::SHORT_BINSTRING => s.byte("SHORT_BINBYTES")? as u64,
                    op::BINBYTES | op::BINSTRING => s.u32("BINBYTES")? as u64,
                    _ => s.u64("BINBYTES8")?,
                };
                let bytes = s.sized(n, "a bytes object")?;
                self.stack.push(Value::Bytes(bytes.into()));
            }
            op::EMPTY_TUPLE => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (op - op::TUPLE1 + 1) as usize;
                let items = self.pop_n(s, "TUPLE1/2/3", n)?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            op::TUPLE => {
                let items = self.pop_mark(s, "TUPLE")?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            op::EMPTY_LIST => self
                .stack
                .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
            op::LIST => {
                let items = self.pop_mark(s, "LIST")?;
                self.stack.push(Value::List(Rc::new(RefCell::new(items))));
            }
            op::EMPTY_DICT => self
                .stack
                .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            op::DICT => {
                let items = self.pop_mark(s, "DICT")?;
                let pairs = pairs(items).map_err(|kind| PickleError { offset: at, kind })?;
                self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
            }
            op::EMPTY_SET => self
                .stack
                .push(Value::Set(Rc::new(RefCell::new(Vec::new())))),
            op::FROZENSET => {
                let items = self.pop_mark(s, "FROZENSET")?;
                self.stack.push(Value::Set(Rc::new(RefCell::new(items))));
            }
            op::APPEND | op::APPENDS => {
                let items = if op == op::APPEND {
                    vec![self.pop(s, "APPEND")?]
                } else {
                    self.pop_mark(s, "APPENDS")?
                };
                check_acyclic(self.top(s, "APPEND")?, &items, at)?;
                match self.top(s, "APPEND")? {
                    Value::List(l) => l.borrow_mut().extend(items),
                    Value::Object(o) => o.borrow_mut().list_items.extend(items),
                    other => return Err(malformed(format!("APPEND to a {}", other.type_name()))),
                }
            }
            op::ADDITEMS => {
                let items = self.pop_mark(s, "ADDITEMS")?;
                check_acyclic(self.top(s, "ADDITEMS")?, &items, at)?;
                match self.top(s, "ADDITEMS")? {
                    Value::Set(set) => set.borrow_mut().extend(items),
                    other => return Err(malformed(format!("ADDITEMS to a {}", other.type_name()))),
                }
            }
            op::SETITEM | op::SETITEMS => {
                let items = if op == op::SETITEM {
                    self.pop_n(s, "SETITEM", 2)?
                } else {
                    self.pop_mark(s, "SETITEMS")?
                };
                let new = pairs(items).map_err(|kind| PickleError { offset: at, kind })?;
                check_acyclic(
                    self.top(s, "SETITEM")?,
                    new.iter().flat_map(|(k, v)| [k, v]),
                    at,
                )?;
                match self.top(s, "SETITEM")? {
                    Value::Dict(d) => d.borrow_mut().extend(new),
                    Value::Object(o) => o.borrow_mut().items.extend(new),
                    other => return Err(malformed(format!("SETITEM on a {}", other.type_name()))),
                }
            }
            op::BINPUT => {
                let i = s.byte("BINPUT")? as u64;
                let v = self.top(s, "BINPUT")?.clone();
                self.memo.insert(i, v);
            }
            op::LONG_BINPUT => {
                let i = s.u32("LONG_BINPUT")? as u64;
                let v = self.top(s, "LONG_BINPUT")?.clone();
                self.memo.insert(i, v);
            }
            op::MEMOIZE => {
                let v = self.top(s, "MEMOIZE")?.clone();
                self.memo.insert(self.memo.len() as u64, v);
            }
            op::BINGET => {
                let i = s.byte("BINGET")? as u64;
                let v = self.get(s, i)?;
                self.stack.push(v);
            }
            op::LONG_BINGET => {
                let i = s.u32("LONG_BINGET")? as u64;
                let v = self.get(s, i)?;
                self.stack.push(v);
            }
            op::GLOBAL => {
                let module = s.line("GLOBAL module")?.to_string();
                let name = s.line("GLOBAL name")?.to_string();
                let v = self.global(s, at, &module, &name, allow)?;
                self.stack.push(v);
            }
            op::STACK_GLOBAL => {
                let mut both = self.pop_n(s, "STACK_GLOBAL", 2)?;
                let (Value::Str(name), Value::Str(module)) =
                    (both.pop().expect("2"), both.pop().expect("2"))
                else {
                    return Err(malformed("STACK_GLOBAL needs two strings".into()));
                };
                let v = self.global(s, at, &module, &name, allow)?;
                self.stack.push(v);
            }
            op::REDUCE | op::NEWOBJ | op::NEWOBJ_EX => {
                let name = match op {
                    op::REDUCE => "REDUCE",
                    op::NEWOBJ => "NEWOBJ",
                    _ => "NEWOBJ_EX",
                };
                let n = if op == op::NEWOBJ_EX { 3 } else { 2 };
                let mut items = self.pop_n(s, name, n)?;
                if op == op::NEWOBJ_EX {
                    items.pop(); // kwargs: no allowed class takes any
                }
                let args = items.pop().expect("n >= 2");
                let callable = items.pop().expect("n >= 2");
                let Value::Global(g) = callable else {
                    return Err(malformed(format!(
                        "{name} on a {}, not a class",
                        callable.type_name()
                    )));
                };
                let Value::Tuple(args) = args else {
                    return Err(malformed(format!(
                        "{name} arguments are a {}, not a tuple",
                        args.type_name()
                    )));
                };
                self.stack.push(Value::Object(Rc::new(RefCell::new(Object {
                    module: g.0.clone(),
                    name: g.1.clone(),
                    args: args.as_ref().clone(),
                    state: None,
                    items: Vec::new(),
                    list_items: Vec::new(),
                }))));
            }
            op::BUILD => {
                let state = self.pop(s, "BUILD")?;
                let target = self.top(s, "BUILD")?.clone();
                let Value::Object(obj) = &target else {
                    return Err(malformed(format!("BUILD on a {}", target.type_name())));
                };
                check_acyclic(&target, [&state], at)?;
                obj.borrow_mut().state = Some(state);
                let snapshot = obj.borrow().clone();
                if let Some(replacement) = hooks.after_build(&snapshot, s)? {
                    *self.top(s, "BUILD")? = replacement;
                }
            }
            other => {
                return Err(PickleError {
                    offset: at,
                    kind: PickleErrorKind::UnknownOpcode(other, refused_name(other)),
                })
            }
        }
        Ok(())
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleErrorKind> {
    if !items.len().is_multiple_of(2) {
        return Err(PickleErrorKind::Malformed(
            "odd number of items for a dict".into(),
        ));
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn long_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let negative = bytes[bytes.len() - 1] & 0x80 != 0;
        let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
        buf[..bytes.len()].copy_from_slice(bytes);
        return Value::Int(i64::from_le_bytes(buf));
    }
    Value::BigInt(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow_all(_: &str, _: &str) -> bool {
        true
    }

    fn run(bytes: &[u8]) -> Result<Value, PickleError> {
        load(&mut Stream::new(bytes), allow_all, &mut NoHooks)
    }

    // Byte strings below are what CPython's pickle writes (checked with pickletools).

    #[test]
    fn dict_of_str_to_int_protocol_4() {
        // pickle.dumps({'<PAD>': 0, 'a': 300, 'b': -2}, protocol=4)
        let bytes = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x05<PAD>\x94K\x00\x8c\x01a\x94M,\x01\x8c\x01b\x94J\xfe\xff\xff\xffu.";
        let Value::Dict(d) = run(bytes).unwrap() else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].0.as_str(), Some("<PAD>"));
        assert_eq!(d[1].1.as_int(), Some(300));
        assert_eq!(d[2].1.as_int(), Some(-2));
    }

    #[test]
    fn protocol_2_with_binput_binget_and_long1() {
        // pickle.dumps([2**40, 'x', 'x', 1.5], protocol=2) with the 'x' shared through the memo
        let bytes = b"\x80\x02]q\x00(\x8a\x06\x00\x00\x00\x00\x00\x01X\x01\x00\x00\x00xq\x01h\x01G?\xf8\x00\x00\x00\x00\x00\x00e.";
        let Value::List(l) = run(bytes).unwrap() else {
            panic!("not a list")
        };
        let l = l.borrow();
        assert_eq!(l[0].as_int(), Some(1 << 40));
        assert_eq!(l[1].as_str(), Some("x"));
        assert_eq!(l[2].as_str(), Some("x"));
        assert!(matches!(l[3], Value::Float(x) if x == 1.5));
    }

    #[test]
    fn forbidden_global_is_refused_by_name_with_its_offset() {
        // pickle.dumps(os.system) -> c posix\nsystem
        let bytes = b"\x80\x02cposix\nsystem\nq\x00.";
        let err = load(&mut Stream::new(bytes), |_, _| false, &mut NoHooks).unwrap_err();
        assert_eq!(err.offset, 2);
        assert!(err.to_string().contains("posix.system"), "{err}");
    }

    #[test]
    fn truncation_and_size_bombs_are_caught_before_allocating() {
        let err = run(b"\x80\x04\x8c\x05ab").unwrap_err();
        assert!(
            matches!(err.kind, PickleErrorKind::TooLarge { .. }),
            "{err}"
        );
        let err = run(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f").unwrap_err();
        assert!(
            matches!(err.kind, PickleErrorKind::TooLarge { len, .. } if len == i64::MAX as u64),
            "{err}"
        );
        let err = run(b"\x80\x04K").unwrap_err();
        assert!(
            matches!(err.kind, PickleErrorKind::Truncated { .. }),
            "{err}"
        );
        let err = run(b"\x80\x04K\x01").unwrap_err();
        assert_eq!(err.kind, PickleErrorKind::NoStop);
    }

    #[test]
    fn unknown_opcodes_and_protocols_are_named() {
        let err = run(b"\x80\x04\xff.").unwrap_err();
        assert!(matches!(err.kind, PickleErrorKind::UnknownOpcode(0xff, _)));
        assert_eq!(err.offset, 2);
        let err = run(b"\x80\x09N.").unwrap_err();
        assert_eq!(err.kind, PickleErrorKind::Protocol(9));
        let err = run(b"\x80\x02I1\n.").unwrap_err();
        assert!(err.to_string().contains("INT (protocol 0)"), "{err}");
    }

    #[test]
    fn recursive_structures_are_refused() {
        // l = []; l.append(l): pickle.dumps(l, protocol=2)
        let err = run(b"\x80\x02]q\x00h\x00a.").unwrap_err();
        assert!(err.to_string().contains("holds itself"), "{err}");
        // d = {}; d['k'] = [d]
        let err = run(b"\x80\x04}\x94\x8c\x01k\x94]\x94h\x00as.").unwrap_err();
        assert!(err.to_string().contains("holds itself"), "{err}");
    }

    #[test]
    fn stack_underflow_is_an_error_not_a_panic() {
        for bytes in [
            &b"\x80\x04u."[..],
            b"\x80\x04t.",
            b"\x80\x04\x85.",
            b"\x80\x04R.",
            b"\x80\x04b.",
            b"\x80\x04h\x05.",
        ] {
            assert!(run(bytes).is_err(), "{bytes:?}");
        }
    }
}
