//! Any file through `pipe score`'s record readers: the first byte picks the
//! format (Parquet, CSV, JSON lines), the rest is the file. Each file is
//! inspected (columns, row count, the Parquet footer and page headers, every
//! CSV and JSON-lines record) and, when accepted, read back in batches of 7
//! rows, as a shard would read it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // libfuzzer-sys's panic hook aborts on every panic, even one the
        // readers catch and turn into an error (polars panics on some input
        // it does not support). A panic that escapes still aborts, at the
        // fuzz target's `extern "C"` boundary, and is reported as a crash.
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
        let dir = std::env::temp_dir().join(format!("pipe-fuzz-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&format, content)) = data.split_first() else {
        return;
    };
    let extension = ["parquet", "csv", "jsonl"][format as usize % 3];
    let path = scratch().join(format!("input.{extension}"));
    std::fs::write(&path, content).expect("write the input");
    let columns = vec!["Text".to_string()];
    let Ok(file) = pipe_records::inspect(&path, &columns) else {
        return;
    };
    let mut rows = 0u64;
    let read = pipe_records::read_batches(&file, 0..file.rows, 7, &columns, &mut |batch| {
        rows += batch.height() as u64;
        Ok(())
    });
    if read.is_ok() {
        assert_eq!(
            rows, file.rows,
            "an accepted file delivers every row it counted"
        );
    }
});
