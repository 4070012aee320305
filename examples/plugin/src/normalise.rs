//! The `normalise_text` stage: one text column of a frame made uniform
//! before it is tokenized — typographic quotes and dashes made plain,
//! invisible characters dropped, runs of whitespace made one space.

use pipe::core::{Artifacts, InvalidSetting, Port, PortOf, Stage, StageContext, StageError};
use pipe::polars::prelude::*;
use pipe::serde::{Deserialize, Serialize};
use pipe::stage;
use pipe::vectorize::Frame;

/// The stage's config: its YAML keys, with their defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(crate = "pipe::serde", deny_unknown_fields, default)]
pub struct NormaliseText {
    /// The column to normalise; the others pass through.
    pub column: String,
    pub lowercase: bool,
}

impl Default for NormaliseText {
    fn default() -> Self {
        NormaliseText {
            column: "Text".into(),
            lowercase: false,
        }
    }
}

impl NormaliseText {
    const RECORDS: PortOf<Frame> = PortOf::new("records", "records with a text column");
    const RECORDS_OUT: PortOf<Frame> =
        PortOf::new("records", "the same records, that column normalised");

    fn normalise(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for ch in text.chars() {
            let ch = match ch {
                '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2032}' => '\'',
                '\u{201C}' | '\u{201D}' | '\u{201F}' | '\u{2033}' => '"',
                '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
                '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{AD}' => continue,
                c if c.is_whitespace() => ' ',
                c => c,
            };
            if ch == ' ' && (out.is_empty() || out.ends_with(' ')) {
                continue;
            }
            if self.lowercase {
                out.extend(ch.to_lowercase());
            } else {
                out.push(ch);
            }
        }
        out.truncate(out.trim_end().len());
        out
    }
}

#[stage(
    kind = "normalise_text",
    summary = "one text column made uniform: plain quotes and dashes, no invisible characters, single spaces"
)]
impl Stage for NormaliseText {
    fn inputs(&self) -> Vec<Port> {
        vec![Self::RECORDS.port()]
    }
    fn outputs(&self) -> Vec<Port> {
        vec![Self::RECORDS_OUT.port()]
    }
    fn code_version(&self) -> u32 {
        1
    }
    fn depends_on_env(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.column.is_empty() {
            return Err(InvalidSetting::new("column", "must name a column"));
        }
        Ok(())
    }
    fn run(&self, inputs: &Artifacts, ctx: &StageContext) -> Result<Artifacts, StageError> {
        let Frame(frame) = inputs.read(&Self::RECORDS)?;
        let texts = frame
            .column(&self.column)
            .and_then(|c| c.str())
            .map_err(|e| StageError::invalid(format!("column `{}`: {e}", self.column)))?;
        let normalised: StringChunked =
            texts.iter().map(|t| t.map(|t| self.normalise(t))).collect();
        let changed = texts
            .iter()
            .zip(normalised.iter())
            .filter(|(before, after)| before != after)
            .count();
        let mut frame = frame.clone();
        frame
            .with_column(
                normalised
                    .with_name(self.column.as_str().into())
                    .into_column(),
            )
            .map_err(|e| StageError::invalid(e.to_string()))?;
        ctx.info(format!("{changed} of {} texts changed", frame.height()));
        let mut out = Artifacts::new();
        out.put(&Self::RECORDS_OUT, Frame(frame));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::NormaliseText;

    #[test]
    fn quotes_dashes_and_spaces_are_made_plain() {
        let stage = NormaliseText::default();
        assert_eq!(
            stage.normalise("  \u{201C}ash\u{201D} \u{2014} a\u{200B}tree\t\n of\u{00A0}wood  "),
            "\"ash\" - atree of wood"
        );
        let lower = NormaliseText {
            lowercase: true,
            ..NormaliseText::default()
        };
        assert_eq!(lower.normalise("Élan ‘Vital’"), "élan 'vital'");
    }
}
