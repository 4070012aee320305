//! CSV fields as Python's csv module writes them (pandas' `to_csv` uses it).

/// A field with QUOTE_MINIMAL quoting: quoted when it holds the delimiter, a
/// quote or a line break, quotes doubled.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
