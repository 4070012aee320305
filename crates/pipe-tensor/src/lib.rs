//! Token-id arrays as torch tensors.
//!
//! Overview:
//! - [`TokenTensors`]: ids `[n, max_len]` int64, per-row lengths (non-pad
//!   tokens), optional labels, and the detected [`PaddingSide`]. An artifact,
//!   stored as safetensors.
//! - [`TokenTensors::from_arrays`]: one copy from an `IntArray` to a tensor.
//! - [`ngrams`]: hashed word bigrams for bag-of-n-grams models.
//! - Stage kinds `to_tensors` and `ngrams` (`src/stages/<kind>.rs`) wrap
//!   them for pipelines.

pub mod ngrams;
mod stages;

pub use stages::{Ngrams, ToTensors};

/// `docs/architecture.md` as doctests of this crate, the one its "Adding a
/// stage kind" example extends: `cargo test` compiles that example, so the
/// guide breaks the build when the API it shows changes.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/architecture.md")]
pub struct ArchitectureGuide;

use std::any::Any;
use std::path::Path;

use pipe_core::{register_artifact, Artifact, ArtifactError, LoadArtifact};
use pipe_data::IntArray;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Where the padding of each row sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingSide {
    /// Tokens first, pads after (`[5, 9, 0, 0]`).
    Post,
    /// Pads first, tokens at the right end (`[0, 0, 5, 9]`).
    Pre,
}

#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("expected a 2-D id matrix, got shape {0:?}")]
    NotMatrix(Vec<usize>),
    #[error("{0} labels for {1} rows")]
    LabelCount(usize, usize),
    #[error("row {row} has padding on both sides of its tokens; rows must be consistently pre- or post-padded")]
    MixedRow { row: usize },
    #[error("rows mix pre-padding (row {pre}) and post-padding (row {post})")]
    MixedSides { pre: usize, post: usize },
    #[error(
        "row {row} is padded on the {found:?} side, but `padding: {expected:?}` was configured"
    )]
    WrongSide {
        row: usize,
        found: PaddingSide,
        expected: PaddingSide,
    },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// One batch of [`TokenTensors::length_sorted_batches`].
#[derive(Debug)]
pub struct Batch {
    /// The batch's rows: their positions in the whole set.
    pub rows: Vec<i64>,
    /// The same positions as a tensor on the data's device.
    pub index: Tensor,
    /// Those rows' ids (cut to the longest row when trimming) and lengths.
    pub ids: Tensor,
    pub lengths: Tensor,
}

/// Token ids with lengths and padding side, ready for a sequence model.
#[derive(Debug)]
pub struct TokenTensors {
    pub ids: Tensor,
    pub lengths: Tensor,
    pub labels: Option<Tensor>,
    pub padding: PaddingSide,
    pub pad_id: i64,
}

impl TokenTensors {
    /// Builds the tensors from an id matrix (one copy) and optional labels,
    /// detecting each row's length and the padding side. `expected` asserts a side.
    pub fn from_arrays(
        x: &IntArray,
        y: Option<&IntArray>,
        pad_id: i64,
        expected: Option<PaddingSide>,
        device: Device,
    ) -> Result<TokenTensors, TensorError> {
        let shape = x.shape().to_vec();
        if shape.len() != 2 {
            return Err(TensorError::NotMatrix(shape));
        }
        let (rows, width) = (shape[0], shape[1]);
        let standard = x.0.as_standard_layout();
        let flat = standard.as_slice().expect("standard layout is contiguous");
        let (lengths, side) = scan_padding(flat, rows, width, pad_id)?;
        let padding = match side {
            Detected::Both => expected.unwrap_or(PaddingSide::Post),
            Detected::Side(found, row) => match expected {
                Some(e) if e != found => {
                    return Err(TensorError::WrongSide {
                        row,
                        found,
                        expected: e,
                    })
                }
                _ => found,
            },
        };
        let ids = Tensor::from_slice(flat)
            .view([rows as i64, width as i64])
            .to_device(device);
        let labels = match y {
            Some(y) => {
                let y_std = y.0.as_standard_layout();
                let ys = y_std.as_slice().expect("contiguous");
                if ys.len() != rows {
                    return Err(TensorError::LabelCount(ys.len(), rows));
                }
                Some(Tensor::from_slice(ys).to_device(device))
            }
            None => None,
        };
        Ok(TokenTensors {
            ids,
            lengths: Tensor::from_slice(&lengths).to_device(device),
            labels,
            padding,
            pad_id,
        })
    }

    pub fn rows(&self) -> i64 {
        self.ids.size()[0]
    }

    pub fn width(&self) -> i64 {
        self.ids.size()[1]
    }

    /// Rows `index` of the ids and lengths, the ids cut to `trim` columns when
    /// given: the right end for pre-padding, the left end for post-padding.
    pub fn select_rows(&self, index: &Tensor, trim: Option<i64>) -> (Tensor, Tensor) {
        let ids = self.ids.index_select(0, index);
        let lengths = self.lengths.index_select(0, index);
        let width = self.width();
        let ids = match trim {
            Some(longest) if longest < width => {
                let keep = longest.max(1);
                match self.padding {
                    PaddingSide::Post => ids.narrow(1, 0, keep),
                    PaddingSide::Pre => ids.narrow(1, width - keep, keep),
                }
            }
            _ => ids,
        };
        (ids, lengths)
    }

    /// `rows` (every row when `None`) in batches of at most `batch_size`,
    /// shortest rows first so that little padding is computed, each batch
    /// cut to its longest row when `trim`. Inference goes through here, in
    /// training (validation passes) and in prediction alike.
    pub fn length_sorted_batches(
        &self,
        rows: Option<&[i64]>,
        batch_size: usize,
        trim: bool,
    ) -> impl Iterator<Item = Batch> + '_ {
        let lengths =
            Vec::<i64>::try_from(&self.lengths.to_device(Device::Cpu)).expect("int64 lengths");
        let mut order: Vec<i64> =
            rows.map_or_else(|| (0..lengths.len() as i64).collect(), <[i64]>::to_vec);
        order.sort_by_key(|&i| lengths[i as usize]);
        let batch_size = batch_size.max(1);
        (0..order.len().div_ceil(batch_size)).map(move |b| {
            let chunk = &order[b * batch_size..((b + 1) * batch_size).min(order.len())];
            let longest = chunk
                .iter()
                .map(|&i| lengths[i as usize])
                .max()
                .unwrap_or(1)
                .max(1);
            let index = Tensor::from_slice(chunk).to_device(self.ids.device());
            let (ids, lengths) = self.select_rows(&index, trim.then_some(longest));
            Batch {
                rows: chunk.to_vec(),
                index,
                ids,
                lengths,
            }
        })
    }

    /// The same tensors on `device` (no copy when already there).
    pub fn to_device(&self, device: Device) -> TokenTensors {
        TokenTensors {
            ids: self.ids.to_device(device),
            lengths: self.lengths.to_device(device),
            labels: self.labels.as_ref().map(|l| l.to_device(device)),
            padding: self.padding,
            pad_id: self.pad_id,
        }
    }
}

enum Detected {
    /// Every row is full or empty: either side fits.
    Both,
    /// The side, and the first row that showed it.
    Side(PaddingSide, usize),
}

/// Per-row count of non-pad tokens, and the padding side all rows agree on.
fn scan_padding(
    flat: &[i64],
    rows: usize,
    width: usize,
    pad: i64,
) -> Result<(Vec<i64>, Detected), TensorError> {
    let mut lengths = Vec::with_capacity(rows);
    let (mut pre_row, mut post_row) = (None, None);
    for r in 0..rows {
        let row = &flat[r * width..(r + 1) * width];
        let first = row.iter().position(|&t| t != pad);
        let last = row.iter().rposition(|&t| t != pad);
        let n = row.iter().filter(|&&t| t != pad).count();
        lengths.push(n as i64);
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        if last + 1 - first != n {
            return Err(TensorError::MixedRow { row: r });
        }
        match (first == 0, last == width - 1) {
            (true, true) => {}
            (true, false) => {
                post_row.get_or_insert(r);
            }
            (false, true) => {
                pre_row.get_or_insert(r);
            }
            (false, false) => return Err(TensorError::MixedRow { row: r }),
        }
    }
    let side = match (pre_row, post_row) {
        (Some(pre), Some(post)) => return Err(TensorError::MixedSides { pre, post }),
        (Some(pre), None) => Detected::Side(PaddingSide::Pre, pre),
        (None, Some(post)) => Detected::Side(PaddingSide::Post, post),
        (None, None) => Detected::Both,
    };
    Ok((lengths, side))
}

#[derive(Serialize, Deserialize)]
struct Meta {
    padding: PaddingSide,
    pad_id: i64,
}

const TENSORS_FILE: &str = "tensors.safetensors";
const META_FILE: &str = "meta.json";

impl Artifact for TokenTensors {
    fn type_name(&self) -> &'static str {
        Self::TYPE_NAME
    }
    fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        let path = dir.join(TENSORS_FILE);
        let cpu = self.to_device(Device::Cpu);
        let mut named: Vec<(&str, &Tensor)> = vec![("ids", &cpu.ids), ("lengths", &cpu.lengths)];
        if let Some(l) = &cpu.labels {
            named.push(("labels", l));
        }
        Tensor::write_safetensors(&named, &path).map_err(|e| ArtifactError::invalid(&path, e))?;
        pipe_core::fsutil::save_json(
            &dir.join(META_FILE),
            &Meta {
                padding: self.padding,
                pad_id: self.pad_id,
            },
        )
    }
    fn summary(&self) -> String {
        format!(
            "ids {:?}, {:?}-padded{}",
            self.ids.size(),
            self.padding,
            if self.labels.is_some() {
                ", labelled"
            } else {
                ""
            }
        )
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl LoadArtifact for TokenTensors {
    const TYPE_NAME: &'static str = "token_tensors";
    fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let path = dir.join(TENSORS_FILE);
        let meta: Meta = pipe_core::fsutil::load_json(&dir.join(META_FILE))?;
        let mut named =
            Tensor::read_safetensors(&path).map_err(|e| ArtifactError::invalid(&path, e))?;
        let mut take = |name: &str| {
            named
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| named.swap_remove(i).1)
        };
        let ids = take("ids").ok_or_else(|| ArtifactError::invalid(&path, "no `ids` tensor"))?;
        let lengths =
            take("lengths").ok_or_else(|| ArtifactError::invalid(&path, "no `lengths` tensor"))?;
        Ok(TokenTensors {
            ids,
            lengths,
            labels: take("labels"),
            padding: meta.padding,
            pad_id: meta.pad_id,
        })
    }
}

register_artifact!(
    TokenTensors,
    "token ids, lengths, optional labels and padding side (safetensors)"
);

/// Padding side for the `to_tensors` stage: detected, or asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingConfig {
    #[default]
    Auto,
    Pre,
    Post,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use tch::Kind;

    fn matrix(rows: &[&[i64]]) -> IntArray {
        let width = rows[0].len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        IntArray(ArrayD::from_shape_vec(IxDyn(&[rows.len(), width]), flat).unwrap())
    }

    #[test]
    fn detects_post_padding_and_lengths() {
        let t = TokenTensors::from_arrays(
            &matrix(&[&[5, 6, 0, 0], &[7, 0, 0, 0], &[1, 2, 3, 4]]),
            None,
            0,
            None,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(t.padding, PaddingSide::Post);
        assert_eq!(Vec::<i64>::try_from(&t.lengths).unwrap(), vec![2, 1, 4]);
        assert_eq!(t.ids.size(), vec![3, 4]);
        assert_eq!(t.ids.kind(), Kind::Int64);
    }

    #[test]
    fn detects_pre_padding() {
        let t = TokenTensors::from_arrays(
            &matrix(&[&[0, 0, 5, 6], &[0, 0, 0, 7]]),
            None,
            0,
            None,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(t.padding, PaddingSide::Pre);
    }

    #[test]
    fn refuses_mixed_padding() {
        let e = TokenTensors::from_arrays(
            &matrix(&[&[0, 0, 5, 6], &[7, 0, 0, 0]]),
            None,
            0,
            None,
            Device::Cpu,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("mix pre-padding (row 0) and post-padding (row 1)"),
            "{e}"
        );
        let e = TokenTensors::from_arrays(&matrix(&[&[0, 5, 6, 0]]), None, 0, None, Device::Cpu)
            .unwrap_err();
        assert!(
            e.to_string().contains("row 0 has padding on both sides"),
            "{e}"
        );
        let e = TokenTensors::from_arrays(
            &matrix(&[&[5, 0]]),
            None,
            0,
            Some(PaddingSide::Pre),
            Device::Cpu,
        )
        .unwrap_err();
        assert!(e.to_string().contains("configured"), "{e}");
    }

    #[test]
    fn round_trips_through_files() {
        let x = matrix(&[&[5, 6, 0], &[7, 0, 0]]);
        let y = IntArray(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1, 0]).unwrap());
        let t = TokenTensors::from_arrays(&x, Some(&y), 0, None, Device::Cpu).unwrap();
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path()).unwrap();
        let back = TokenTensors::load(dir.path()).unwrap();
        assert!(back.ids.equal(&t.ids));
        assert!(back.lengths.equal(&t.lengths));
        assert!(back.labels.unwrap().equal(t.labels.as_ref().unwrap()));
        assert_eq!(back.padding, PaddingSide::Post);
    }
}
