//! Any bytes through the joblib/pickle loader and the vocabulary and
//! LabelEncoder interpreters: errors are fine, panics, hangs and huge
//! allocations are bugs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipe_notebook::{joblib, sklearn};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = joblib::load_bytes(Path::new("fuzz.pkl"), data) {
        let _ = sklearn::vocabulary(&value);
        let _ = sklearn::label_encoder(&value);
    }
});
