//! The `vectorize` stage: raw train/test records → the notebook's artifacts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipe_core::fsutil::atomic_write;
use pipe_core::{
    stage, Artifacts, InvalidSetting, LoadArtifact, Optional, Port, PortOf, Stage, StageContext,
    StageError,
};
use pipe_data::{Column, IntArray, LabelSet, Table, Vocabulary};
use serde::{Deserialize, Serialize};

use pipe_notebook::NotebookPorts;

use crate::polars::prelude::DataFrame;
use crate::{
    read_frame, Frame, FrameFormat, LabelEncoder, Side, TextColumns, Vectorizer, VectorizerOptions,
};

/// What to do with test records whose label the training set never had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownLabels {
    /// Leave them out, as the notebook's upstream script does (counted in the log).
    #[default]
    Drop,
    Error,
}

/// Reads raw train and test records (JSON, JSON lines, CSV or Parquet
/// files, or frames from upstream stages), fits the vocabulary and label
/// encoder on the training records, and encodes both sets; `export` also
/// writes the notebook's six files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vectorize {
    /// The training records' file; or wire `inputs: { train_frame: STAGE.PORT }`.
    pub train: Option<PathBuf>,
    /// The test records' file; or wire `inputs: { test_frame: STAGE.PORT }`.
    pub test: Option<PathBuf>,
    pub format: FrameFormat,
    pub text_field: String,
    pub label_field: String,
    pub id_field: String,
    /// Use only the first N training records.
    pub train_rows: Option<usize>,
    /// Use only the first N test records.
    pub test_rows: Option<usize>,
    pub min_freq: usize,
    pub max_vocab: Option<usize>,
    pub max_len: usize,
    pub padding: Side,
    pub truncating: Side,
    pub unknown_test_labels: UnknownLabels,
    /// A directory to write `X_train_seq.npy`, `y_train.npy`, `X_test_seq.npy`,
    /// `vocab_stoi.pkl`, `label_encoder.pkl`, `test_mini.json` (and
    /// `test_labels.json` when the test records are labelled) into.
    pub export: Option<PathBuf>,
}

impl Default for Vectorize {
    fn default() -> Self {
        let options = VectorizerOptions::default();
        Vectorize {
            train: None,
            test: None,
            format: FrameFormat::Auto,
            text_field: "Text".into(),
            label_field: "Category".into(),
            id_field: "Id".into(),
            train_rows: None,
            test_rows: None,
            min_freq: options.min_freq,
            max_vocab: options.max_vocab,
            max_len: options.max_len,
            padding: options.padding,
            truncating: options.truncating,
            unknown_test_labels: UnknownLabels::Drop,
            export: None,
        }
    }
}

impl Vectorize {
    pub fn options(&self) -> VectorizerOptions {
        VectorizerOptions {
            min_freq: self.min_freq,
            max_vocab: self.max_vocab,
            max_len: self.max_len,
            padding: self.padding,
            truncating: self.truncating,
        }
    }

    /// One side's records: the frame wired to `port`, else the configured
    /// file; the returned path names the source in messages.
    fn source(
        &self,
        inputs: &Artifacts,
        port: &PortOf<Frame, Optional>,
        file: Option<&Path>,
    ) -> Result<(DataFrame, PathBuf), StageError> {
        match (inputs.read_optional(port)?, file) {
            (Some(_), Some(file)) => Err(StageError::invalid(format!(
                "both `{}: {}` and the input `{}` are given; keep one",
                port.name.trim_end_matches("_frame"),
                file.display(),
                port.name
            ))),
            (Some(frame), None) => Ok((
                frame.0.clone(),
                PathBuf::from(format!("input `{}`", port.name)),
            )),
            (None, Some(file)) => Ok((
                read_frame(file, self.format).map_err(StageError::other)?,
                file.to_path_buf(),
            )),
            (None, None) => Err(StageError::invalid(format!(
                "no {} records: set `{}: FILE` or wire `inputs: {{ {}: STAGE.OUTPUT }}`",
                port.name.trim_end_matches("_frame"),
                port.name.trim_end_matches("_frame"),
                port.name
            ))),
        }
    }

    fn read(
        &self,
        (frame, path): (DataFrame, PathBuf),
        rows: Option<usize>,
        require_labels: bool,
    ) -> Result<TextColumns, StageError> {
        let path = path.as_path();
        let columns = TextColumns::from_frame(
            &frame,
            path,
            &self.text_field,
            Some(&self.label_field),
            Some(&self.id_field),
        )
        .map_err(StageError::other)?;
        if require_labels && columns.labels.is_none() {
            return Err(StageError::invalid(format!(
                "{}: no label column `{}`; its columns: {}",
                path.display(),
                self.label_field,
                frame
                    .get_column_names()
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let columns = match rows {
            Some(n) => columns.head(n),
            None => columns,
        };
        if columns.is_empty() {
            return Err(StageError::invalid(format!(
                "{}: no records",
                path.display()
            )));
        }
        Ok(columns)
    }

    /// Fits on the training records and encodes both sets.
    pub fn vectorize(
        &self,
        inputs: &Artifacts,
        ctx: Option<&StageContext>,
    ) -> Result<Artifacts, StageError> {
        self.options().validate().map_err(StageError::invalid)?;
        let train_source = self.source(inputs, &Self::TRAIN_FRAME, self.train.as_deref())?;
        let test_source = self.source(inputs, &Self::TEST_FRAME, self.test.as_deref())?;
        let test_path = test_source.1.clone();
        let train = self.read(train_source, self.train_rows, true)?;
        let mut test = self.read(test_source, self.test_rows, false)?;

        let vectorizer = Vectorizer::fit(&train.texts, self.options());
        let train_labels = train.labels.as_deref().expect("required above");
        let encoder = if train.integer_labels {
            let ints: Vec<i64> = train_labels
                .iter()
                .map(|l| l.parse().expect("an integer column"))
                .collect();
            LabelEncoder::fit_integers(&ints)
        } else {
            LabelEncoder::fit(train_labels)
        };
        let y_train = encoder
            .transform(train_labels)
            .expect("fitted on these labels");

        if let Some(labels) = &test.labels {
            let keep: Vec<bool> = labels.iter().map(|l| encoder.id(l).is_some()).collect();
            let unknown = keep.iter().filter(|k| !**k).count();
            if unknown > 0 {
                let first = labels
                    .iter()
                    .find(|l| encoder.id(l).is_none())
                    .expect("counted");
                let message = format!("{}: {unknown} test records have labels the training records lack (first: `{first}`)", test_path.display());
                match self.unknown_test_labels {
                    UnknownLabels::Error => return Err(StageError::invalid(message)),
                    UnknownLabels::Drop => {
                        if let Some(ctx) = ctx {
                            ctx.warn(format!("{message}; left out (`unknown_test_labels: drop`)"));
                        }
                        test = test.filter(&keep);
                    }
                }
            }
        }
        let ids = test.ids.clone().unwrap_or_else(|| {
            if let Some(ctx) = ctx {
                ctx.warn(format!(
                    "{}: no `{}` column; test ids are row numbers",
                    test_path.display(),
                    self.id_field
                ));
            }
            (0..test.len()).map(serde_json::Value::from).collect()
        });

        let x_train = vectorizer.encode(&train.texts);
        let x_test = vectorizer.encode(&test.texts);
        if let Some(ctx) = ctx {
            ctx.info(format!(
                "train {:?}, test {:?}, vocabulary {}, {} classes",
                x_train.shape(),
                x_test.shape(),
                vectorizer.vocab.len(),
                encoder.classes.len()
            ));
        }
        let id_column = |values: Vec<serde_json::Value>| Column {
            name: self.id_field.clone(),
            values,
        };
        let mut out = Artifacts::new();
        if let Some(labels) = &test.labels {
            // Integer classes stay numbers, as in the records (and Python's test_labels.json).
            let truth = labels
                .iter()
                .map(|l| match l.parse::<i64>() {
                    Ok(n) if test.integer_labels => serde_json::Value::from(n),
                    _ => serde_json::Value::from(l.as_str()),
                })
                .collect();
            out.put(
                &NotebookPorts::TEST_LABELS,
                Table {
                    columns: vec![
                        id_column(ids.clone()),
                        Column {
                            name: self.label_field.clone(),
                            values: truth,
                        },
                    ],
                },
            );
        }
        let texts = test
            .texts
            .iter()
            .map(|t| serde_json::Value::from(t.as_str()))
            .collect();
        out.put(&NotebookPorts::X_TRAIN, x_train)
            .put(
                &NotebookPorts::Y_TRAIN,
                IntArray(ndarray::Array1::from(y_train).into_dyn()),
            )
            .put(&NotebookPorts::X_TEST, x_test)
            .put(&NotebookPorts::VOCAB, vectorizer.vocab.clone())
            .put(&NotebookPorts::LABELS, encoder.classes.clone())
            .put(
                &NotebookPorts::TEST_IDS,
                Table {
                    columns: vec![id_column(ids.clone())],
                },
            )
            .put(
                &Self::TEST_RECORDS,
                Table {
                    columns: vec![
                        id_column(ids),
                        Column {
                            name: self.text_field.clone(),
                            values: texts,
                        },
                    ],
                },
            )
            .put(&Self::VECTORIZER, vectorizer);
        Ok(out)
    }
}

impl Vectorize {
    pub const TRAIN_FRAME: PortOf<Frame, Optional> = PortOf::optional(
        "train_frame",
        "the training records, instead of the `train` file",
    );
    pub const TEST_FRAME: PortOf<Frame, Optional> =
        PortOf::optional("test_frame", "the test records, instead of the `test` file");
    pub const TEST_RECORDS: PortOf<Table> = PortOf::new(
        "test_records",
        "id and text of each test record (test_mini.json)",
    );
    pub const VECTORIZER: PortOf<Vectorizer> = PortOf::new(
        "vectorizer",
        "the fitted vocabulary and settings, to encode new texts",
    );
}

#[stage(
    kind = "vectorize",
    summary = "raw text records (JSON/CSV/Parquet) → the notebook's token-id artifacts"
)]
impl Stage for Vectorize {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::TRAIN_FRAME.port(), Self::TEST_FRAME.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        let mut ports = NotebookPorts::ports();
        ports.push(Self::TEST_RECORDS.port());
        ports.push(Self::VECTORIZER.port());
        ports
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn external_files(&self) -> Vec<PathBuf> {
        self.train.iter().chain(&self.test).cloned().collect()
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        self.options().validate()
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        self.vectorize(inputs, Some(ctx))
    }
    fn publish(
        &self,
        outputs: &BTreeMap<String, PathBuf>,
        ctx: &StageContext,
    ) -> Result<(), StageError> {
        let Some(dir) = &self.export else {
            return Ok(());
        };
        export_notebook_files(dir, outputs)?;
        ctx.info(format!(
            "wrote the notebook's artifacts to {}",
            dir.display()
        ));
        Ok(())
    }
}

/// Writes the notebook's files from the stage's stored outputs, each atomically.
fn export_notebook_files(
    dir: &Path,
    outputs: &BTreeMap<String, PathBuf>,
) -> Result<(), StageError> {
    std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| StageError::io(path, e)
    };
    for (port, file) in [
        (NotebookPorts::X_TRAIN.name, "X_train_seq.npy"),
        (NotebookPorts::Y_TRAIN.name, "y_train.npy"),
        (NotebookPorts::X_TEST.name, "X_test_seq.npy"),
    ] {
        let array = IntArray::load(&outputs[port])?;
        let path = dir.join(file);
        pipe_notebook::write_npy(&path, &array).map_err(io(&path))?;
    }
    let path = dir.join("vocab_stoi.pkl");
    pipe_notebook::write_vocabulary(
        &path,
        &Vocabulary::load(&outputs[NotebookPorts::VOCAB.name])?,
    )
    .map_err(io(&path))?;
    let path = dir.join("label_encoder.pkl");
    pipe_notebook::write_label_encoder(
        &path,
        &LabelSet::load(&outputs[NotebookPorts::LABELS.name])?,
    )
    .map_err(io(&path))?;
    let path = dir.join("test_mini.json");
    atomic_write(
        &path,
        python_json_records(&Table::load(&outputs[Vectorize::TEST_RECORDS.name])?).as_bytes(),
    )
    .map_err(io(&path))?;
    if let Some(labels) = outputs.get(NotebookPorts::TEST_LABELS.name) {
        let path = dir.join("test_labels.json");
        atomic_write(&path, python_json_records(&Table::load(labels)?).as_bytes())
            .map_err(io(&path))?;
    }
    Ok(())
}

/// A table as a JSON array of records, byte for byte what Python's
/// `json.dump(records, f)` writes (`", "` and `": "` separators, ASCII only).
pub fn python_json_records(table: &Table) -> String {
    let mut out = String::from("[");
    for row in 0..table.rows() {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('{');
        for (c, column) in table.columns.iter().enumerate() {
            if c > 0 {
                out.push_str(", ");
            }
            python_json_string(&column.name, &mut out);
            out.push_str(": ");
            match &column.values[row] {
                serde_json::Value::String(s) => python_json_string(s, &mut out),
                other => out.push_str(&other.to_string()),
            }
        }
        out.push('}');
    }
    out.push(']');
    out
}

fn python_json_string(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}
