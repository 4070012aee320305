//! Any bytes through the .npy reader.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipe_notebook::npy;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = npy::parse(Path::new("fuzz.npy"), data) {
        let _ = npy::int_array(Path::new("fuzz.npy"), array);
    }
});
