//! The submission CSV is byte for byte what pandas' to_csv(index=True) writes,
//! for awkward values too. Fixtures from scripts/fixtures/make_parity_fixtures.py.

use std::path::Path;

use pipe_submit::submission_csv;

#[test]
fn same_bytes_as_pandas() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pandas");
    let cases: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 4);
    for (name, case) in cases {
        let ids = case["ids"].as_array().unwrap();
        let categories = case["categories"].as_array().unwrap();
        let ours = submission_csv(ids, categories, "Id", "Category", true);
        let pandas = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
        assert_eq!(ours, pandas, "case {name}");
    }
}

#[test]
fn without_the_index_column() {
    let csv = submission_csv(&[1.into()], &["a".into()], "Id", "Category", false);
    assert_eq!(csv, "Id,Category\n1,a\n");
}
