//! The Python objects the notebook unpickles, read from VM values: a
//! vocabulary `dict[str, int]` and a fitted scikit-learn `LabelEncoder`.

use pipe_data::{LabelSet, Vocabulary};

use crate::numpy::{array_from_value, scalar_int, Elements};
use crate::pickle::Value;

pub const PAD: &str = "<PAD>";
pub const UNK: &str = "<UNK>";

/// The most bytes a vocabulary's tokens may hold together. A pickle can name
/// one large string a million times through its memo for the price of a few
/// bytes each; copying it into a million tokens would not be so cheap.
pub const MAX_VOCABULARY_BYTES: usize = 64 << 20;

/// A vocabulary from a dict (or `OrderedDict`/`defaultdict`) of token → id.
/// Ids must be unique and within `0..len`, `'<PAD>'` must be present.
pub fn vocabulary(value: &Value) -> Result<Vocabulary, String> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Dict(d) => d.borrow().clone(),
        Value::Object(o) if o.borrow().module == "collections" => o.borrow().items.clone(),
        other => return Err(format!("expected a dict of token → id, found a {}", describe(other))),
    };
    if pairs.is_empty() {
        return Err("the vocabulary is empty".into());
    }
    let n = pairs.len();
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut total_bytes = 0usize;
    for (key, id) in &pairs {
        let token = key.as_str().ok_or_else(|| format!("vocabulary key {key:?} is a {}, not a string", describe(key)))?;
        total_bytes += token.len();
        if total_bytes > MAX_VOCABULARY_BYTES {
            return Err(format!("the tokens hold more than {MAX_VOCABULARY_BYTES} bytes together (a hostile or corrupt file)"));
        }
        let id = int_value(id).map_err(|m| format!("token {token:?}: {m}"))?;
        if id < 0 || id as usize >= n {
            return Err(format!("token {token:?} has id {id}, outside 0..{n}: the embedding has len(vocabulary) = {n} rows"));
        }
        if let Some(other) = &tokens[id as usize] {
            return Err(format!("id {id} is given to both {other:?} and {token:?}"));
        }
        tokens[id as usize] = Some(token.to_string());
    }
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.expect("n unique ids in 0..n fill every slot")).collect();
    let mut distinct = std::collections::HashSet::with_capacity(n);
    if let Some(twice) = tokens.iter().find(|t| !distinct.insert(t.as_str())) {
        return Err(format!("token {twice:?} is a key twice (a dict holds each key once)"));
    }
    let pad_id = tokens.iter().position(|t| t == PAD).ok_or_else(|| format!("the vocabulary has no {PAD:?} token"))? as i64;
    let unk_id = tokens.iter().position(|t| t == UNK).map(|i| i as i64);
    Ok(Vocabulary { tokens, pad_id, unk_id })
}

fn int_value(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(_) => Err("id is a bool, not an integer".into()),
        Value::Float(x) => Err(format!("id is the float {x}, not an integer")),
        Value::BigInt(_) => Err("id does not fit in 64 bits".into()),
        other => scalar_int(other).unwrap_or_else(|| Err(format!("id is a {}, not an integer", describe(other)))),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Object(o) => format!("{}.{}", o.borrow().module, o.borrow().name),
        other => other.type_name().to_string(),
    }
}

/// The class names of a fitted `LabelEncoder` (`classes_`): strings or integers.
pub fn label_encoder(value: &Value) -> Result<LabelSet, String> {
    let obj = value.as_object().ok_or_else(|| format!("expected a LabelEncoder, found a {}", describe(value)))?;
    if obj.name != "LabelEncoder" {
        return Err(format!("expected a LabelEncoder, found {}.{}", obj.module, obj.name));
    }
    let Some(Value::Dict(state)) = &obj.state else {
        return Err("the LabelEncoder has no state: was it fitted?".into());
    };
    let classes = state
        .borrow()
        .iter()
        .find(|(k, _)| k.as_str() == Some("classes_"))
        .map(|(_, v)| v.clone())
        .ok_or("the LabelEncoder has no classes_: was it fitted?")?;
    let array = array_from_value(&classes).map_err(|m| format!("classes_: {m}"))?;
    if array.shape.len() != 1 {
        return Err(format!("classes_ has shape {:?}, expected 1-D", array.shape));
    }
    let set = match array.elements {
        Elements::Strings(v) => LabelSet::Strings(v),
        Elements::Ints(v) => LabelSet::Integers(v),
        Elements::Objects(items) => {
            if let Some(strings) = items.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>() {
                LabelSet::Strings(strings)
            } else if let Some(ints) = items.iter().map(Value::as_int).collect::<Option<Vec<_>>>() {
                LabelSet::Integers(ints)
            } else {
                return Err("classes_ mixes types; expected all strings or all integers".into());
            }
        }
        Elements::Floats(_) => return Err("classes_ holds floats; pipe supports string or integer classes".into()),
    };
    if set.is_empty() {
        return Err("classes_ is empty".into());
    }
    let names: Vec<String> = (0..set.len()).filter_map(|i| set.name(i)).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != names.len() {
        return Err("classes_ has duplicate classes".into());
    }
    Ok(set)
}
