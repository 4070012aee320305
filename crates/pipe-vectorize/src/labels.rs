//! scikit-learn's `LabelEncoder`: class names ↔ ids.

use std::collections::HashMap;

use pipe_data::LabelSet;

/// Sorted distinct class names (scikit-learn's `classes_`), and their ids.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelEncoder {
    pub classes: LabelSet,
    index: HashMap<String, i64>,
}

impl LabelEncoder {
    /// `LabelEncoder().fit(labels)`: classes sorted by code point, as numpy sorts strings.
    pub fn fit<S: AsRef<str>>(labels: &[S]) -> LabelEncoder {
        let mut classes: Vec<String> = labels.iter().map(|l| l.as_ref().to_string()).collect();
        classes.sort_unstable();
        classes.dedup();
        Self::from_classes(LabelSet::Strings(classes))
    }

    /// `fit` for integer labels: classes sorted numerically, kept as integers.
    pub fn fit_integers(labels: &[i64]) -> LabelEncoder {
        let mut classes = labels.to_vec();
        classes.sort_unstable();
        classes.dedup();
        Self::from_classes(LabelSet::Integers(classes))
    }

    pub fn from_classes(classes: LabelSet) -> LabelEncoder {
        let index = (0..classes.len())
            .filter_map(|i| Some((classes.name(i)?, i as i64)))
            .collect();
        LabelEncoder { classes, index }
    }

    /// The id of a class name, if it is one of the classes.
    pub fn id(&self, label: &str) -> Option<i64> {
        self.index.get(label).copied()
    }

    /// `transform`: ids for labels; the first unknown label is the error.
    pub fn transform<S: AsRef<str>>(&self, labels: &[S]) -> Result<Vec<i64>, (usize, String)> {
        labels
            .iter()
            .enumerate()
            .map(|(row, l)| {
                self.id(l.as_ref())
                    .ok_or_else(|| (row, l.as_ref().to_string()))
            })
            .collect()
    }
}
