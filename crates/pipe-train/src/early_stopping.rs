//! Early stopping: end training after `patience` validated epochs without
//! improvement.

/// Counts validated epochs since the monitored score last improved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyStopping {
    /// `None`: never stop early.
    patience: Option<usize>,
    since_best: usize,
}

impl EarlyStopping {
    pub fn new(patience: Option<usize>) -> EarlyStopping {
        EarlyStopping {
            patience,
            since_best: 0,
        }
    }

    /// Records a validated epoch; returns whether training should stop now.
    pub fn should_stop(&mut self, improved: bool) -> bool {
        if improved {
            self.since_best = 0;
            return false;
        }
        self.since_best += 1;
        self.patience.is_some_and(|p| self.since_best >= p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_patience_epochs_without_improvement() {
        let mut stopping = EarlyStopping::new(Some(2));
        assert!(!stopping.should_stop(true));
        assert!(!stopping.should_stop(false));
        assert!(stopping.should_stop(false));
    }

    #[test]
    fn an_improvement_resets_the_count() {
        let mut stopping = EarlyStopping::new(Some(2));
        let stops: Vec<bool> = [true, false, true, false, false]
            .into_iter()
            .map(|i| stopping.should_stop(i))
            .collect();
        assert_eq!(stops, [false, false, false, false, true]);
    }

    #[test]
    fn without_patience_never_stops() {
        let mut stopping = EarlyStopping::new(None);
        assert!((0..100).all(|_| !stopping.should_stop(false)));
    }
}
