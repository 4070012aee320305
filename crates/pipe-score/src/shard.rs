//! Which rows one process scores: shard `i` of `n` takes the `i`-th of `n`
//! near-equal, contiguous ranges of the input's rows, counted across its
//! files in order. No coordinator: every process computes the same split
//! from the same file list, and shard `i`'s rows come before shard `i+1`'s.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shard `index` of `count` (`--shard 0/4` .. `--shard 3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// All rows in one process.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// This shard's rows out of `total`, as global row numbers.
    pub fn rows(&self, total: u64) -> Range<u64> {
        let bound = |i: usize| (total as u128 * i as u128 / self.count as u128) as u64;
        bound(self.index)..bound(self.index + 1)
    }

    /// The file stem of this shard's output: `part-00001-of-00004`.
    pub fn part_name(&self) -> String {
        format!("part-{:05}-of-{:05}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A `--shard` value that is not `i/n` with `0 <= i < n`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a shard: write `i/n` with 0 <= i < n, for example `0/4`")]
pub struct NotAShard(pub String);

impl FromStr for Shard {
    type Err = NotAShard;
    fn from_str(text: &str) -> Result<Shard, NotAShard> {
        let bad = || NotAShard(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Rows `rows` of file `file` (row numbers within that file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub file: usize,
    pub rows: Range<u64>,
}

/// The pieces of each file that `shard` reads, in file order, given each
/// file's row count.
pub fn pieces(file_rows: &[u64], shard: Shard) -> Vec<Piece> {
    let wanted = shard.rows(file_rows.iter().sum());
    let mut out = Vec::new();
    let mut first_row = 0u64;
    for (file, &rows) in file_rows.iter().enumerate() {
        let file_range = first_row..first_row + rows;
        let start = wanted.start.max(file_range.start);
        let end = wanted.end.min(file_range.end);
        if start < end {
            out.push(Piece {
                file,
                rows: start - first_row..end - first_row,
            });
        }
        first_row += rows;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse_what_is_not_one() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "1/0", "1", "a/b", "-1/2", ""] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert_eq!(err, NotAShard(bad.to_string()));
            assert!(err.to_string().contains("i/n"), "{bad}: {err}");
        }
        assert_eq!(
            Shard {
                index: 2,
                count: 16
            }
            .part_name(),
            "part-00002-of-00016"
        );
    }

    #[test]
    fn shards_cover_every_row_once_in_order() {
        let files = [7u64, 0, 1, 13, 2];
        for count in 1..=30 {
            let mut seen = Vec::new();
            for index in 0..count {
                for piece in pieces(&files, Shard { index, count }) {
                    assert!(
                        piece.rows.end <= files[piece.file],
                        "{piece:?} inside its file"
                    );
                    seen.extend(piece.rows.map(|r| (piece.file, r)));
                }
            }
            let all: Vec<(usize, u64)> = files
                .iter()
                .enumerate()
                .flat_map(|(f, &n)| (0..n).map(move |r| (f, r)))
                .collect();
            assert_eq!(seen, all, "{count} shards");
        }
    }

    #[test]
    fn shards_are_balanced_to_one_row() {
        for count in 1..=9 {
            let sizes: Vec<u64> = (0..count)
                .map(|i| Shard { index: i, count }.rows(100).count() as u64)
                .collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn a_shard_may_span_files_and_split_one() {
        assert_eq!(
            pieces(&[4, 4], Shard { index: 0, count: 3 }),
            vec![Piece {
                file: 0,
                rows: 0..2
            }]
        );
        assert_eq!(
            pieces(&[4, 4], Shard { index: 1, count: 3 }),
            vec![
                Piece {
                    file: 0,
                    rows: 2..4
                },
                Piece {
                    file: 1,
                    rows: 0..1
                }
            ]
        );
        assert_eq!(pieces(&[0, 0], Shard { index: 0, count: 2 }), vec![]);
    }
}
