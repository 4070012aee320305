//! The Python objects the notebook unpickles, read from VM values: a
//! vocabulary `dict[str, int]` and a fitted scikit-learn `LabelEncoder`.

use pipe_data::{LabelSet, Vocabulary};

use crate::numpy::{array_from_value, scalar_int, ArrayError, Elements};
use crate::pickle::Value;

/// Why a value is not a vocabulary (`dict[str, int]`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VocabularyError {
    #[error("expected a dict of token → id, found a {0}")]
    NotADict(String),
    #[error("the vocabulary is empty")]
    Empty,
    #[error("vocabulary key {key} is a {kind}, not a string")]
    KeyNotAString { key: String, kind: String },
    #[error("the tokens hold more than {MAX_VOCABULARY_BYTES} bytes together (a hostile or corrupt file)")]
    TooManyBytes,
    #[error("token {token:?}: {problem}")]
    BadId { token: String, problem: IdError },
    #[error(
        "token {token:?} has id {id}, outside 0..{n}: the embedding has len(vocabulary) = {n} rows"
    )]
    IdOutOfRange { token: String, id: i64, n: usize },
    #[error("id {id} is given to both {first:?} and {second:?}")]
    IdTwice {
        id: i64,
        first: String,
        second: String,
    },
    #[error("token {0:?} is a key twice (a dict holds each key once)")]
    KeyTwice(String),
    #[error("the vocabulary has no {PAD:?} token")]
    NoPad,
}

/// Why a token's id is not an integer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdError {
    #[error("id is a bool, not an integer")]
    Bool,
    #[error("id is the float {0}, not an integer")]
    Float(f64),
    #[error("id does not fit in 64 bits")]
    TooBig,
    #[error("id is a {0}, not an integer")]
    NotAnInteger(String),
    #[error(transparent)]
    Scalar(#[from] ArrayError),
}

/// Why a value is not a fitted `LabelEncoder`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelEncoderError {
    #[error("expected a LabelEncoder, found {0}")]
    NotALabelEncoder(String),
    #[error("the LabelEncoder has no state: was it fitted?")]
    NoState,
    #[error("the LabelEncoder has no classes_: was it fitted?")]
    NoClasses,
    #[error("classes_: {0}")]
    ClassesArray(#[source] ArrayError),
    #[error("classes_ has shape {0:?}, expected 1-D")]
    NotOneDimensional(Vec<usize>),
    #[error("classes_ mixes types; expected all strings or all integers")]
    MixedTypes,
    #[error("classes_ holds floats; pipe supports string or integer classes")]
    Floats,
    #[error("classes_ is empty")]
    Empty,
    #[error("classes_ has duplicate classes")]
    Duplicates,
}

pub const PAD: &str = "<PAD>";
pub const UNK: &str = "<UNK>";

/// The most bytes a vocabulary's tokens may hold together. A pickle can name
/// one large string a million times through its memo for the price of a few
/// bytes each; copying it into a million tokens would not be so cheap.
pub const MAX_VOCABULARY_BYTES: usize = 64 << 20;

/// A vocabulary from a dict (or `OrderedDict`/`defaultdict`) of token → id.
/// Ids must be unique and within `0..len`, `'<PAD>'` must be present.
pub fn vocabulary(value: &Value) -> Result<Vocabulary, VocabularyError> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Dict(d) => d.borrow().clone(),
        Value::Object(o) if o.borrow().module == "collections" => o.borrow().items.clone(),
        other => return Err(VocabularyError::NotADict(describe(other))),
    };
    if pairs.is_empty() {
        return Err(VocabularyError::Empty);
    }
    let n = pairs.len();
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut total_bytes = 0usize;
    for (key, id) in &pairs {
        let token = key.as_str().ok_or_else(|| VocabularyError::KeyNotAString {
            key: format!("{key:?}"),
            kind: describe(key),
        })?;
        total_bytes += token.len();
        if total_bytes > MAX_VOCABULARY_BYTES {
            return Err(VocabularyError::TooManyBytes);
        }
        let id = int_value(id).map_err(|problem| VocabularyError::BadId {
            token: token.to_string(),
            problem,
        })?;
        if id < 0 || id as usize >= n {
            return Err(VocabularyError::IdOutOfRange {
                token: token.to_string(),
                id,
                n,
            });
        }
        if let Some(other) = &tokens[id as usize] {
            return Err(VocabularyError::IdTwice {
                id,
                first: other.clone(),
                second: token.to_string(),
            });
        }
        tokens[id as usize] = Some(token.to_string());
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .map(|t| t.expect("n unique ids in 0..n fill every slot"))
        .collect();
    let mut distinct = std::collections::HashSet::with_capacity(n);
    if let Some(twice) = tokens.iter().find(|t| !distinct.insert(t.as_str())) {
        return Err(VocabularyError::KeyTwice(twice.clone()));
    }
    let pad_id = tokens
        .iter()
        .position(|t| t == PAD)
        .ok_or(VocabularyError::NoPad)? as i64;
    let unk_id = tokens.iter().position(|t| t == UNK).map(|i| i as i64);
    Ok(Vocabulary {
        tokens,
        pad_id,
        unk_id,
    })
}

fn int_value(v: &Value) -> Result<i64, IdError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(_) => Err(IdError::Bool),
        Value::Float(x) => Err(IdError::Float(*x)),
        Value::BigInt(_) => Err(IdError::TooBig),
        other => match scalar_int(other) {
            Some(scalar) => Ok(scalar?),
            None => Err(IdError::NotAnInteger(describe(other))),
        },
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Object(o) => format!("{}.{}", o.borrow().module, o.borrow().name),
        other => other.type_name().to_string(),
    }
}

/// The class names of a fitted `LabelEncoder` (`classes_`): strings or integers.
pub fn label_encoder(value: &Value) -> Result<LabelSet, LabelEncoderError> {
    let obj = value
        .as_object()
        .ok_or_else(|| LabelEncoderError::NotALabelEncoder(format!("a {}", describe(value))))?;
    if obj.name != "LabelEncoder" {
        return Err(LabelEncoderError::NotALabelEncoder(format!(
            "{}.{}",
            obj.module, obj.name
        )));
    }
    let Some(Value::Dict(state)) = &obj.state else {
        return Err(LabelEncoderError::NoState);
    };
    let classes = state
        .borrow()
        .iter()
        .find(|(k, _)| k.as_str() == Some("classes_"))
        .map(|(_, v)| v.clone())
        .ok_or(LabelEncoderError::NoClasses)?;
    let array = array_from_value(&classes).map_err(LabelEncoderError::ClassesArray)?;
    if array.shape.len() != 1 {
        return Err(LabelEncoderError::NotOneDimensional(array.shape));
    }
    let set = match array.elements {
        Elements::Strings(v) => LabelSet::Strings(v),
        Elements::Ints(v) => LabelSet::Integers(v),
        Elements::Objects(items) => {
            if let Some(strings) = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
            {
                LabelSet::Strings(strings)
            } else if let Some(ints) = items.iter().map(Value::as_int).collect::<Option<Vec<_>>>() {
                LabelSet::Integers(ints)
            } else {
                return Err(LabelEncoderError::MixedTypes);
            }
        }
        Elements::Floats(_) => return Err(LabelEncoderError::Floats),
    };
    if set.is_empty() {
        return Err(LabelEncoderError::Empty);
    }
    let names: Vec<String> = (0..set.len()).filter_map(|i| set.name(i)).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != names.len() {
        return Err(LabelEncoderError::Duplicates);
    }
    Ok(set)
}
