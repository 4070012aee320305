//! Seeded, stratified row splits: the validation hold-out the trainer keeps
//! back, and the hold-out or k folds `select` scores candidates on. One
//! generator and one pass over the classes, so every stage that splits rows
//! splits them the same way for the same seed.

/// splitmix64: small, fast and good enough to shuffle indices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Row indices grouped by label (labels are class ids `0..classes`), each
/// class's rows shuffled, classes in id order: what both splits deal from.
fn shuffled_by_class(labels: &[i64], rng: &mut Rng) -> Vec<Vec<usize>> {
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i);
    }
    for rows in &mut by_class {
        rng.shuffle(rows);
    }
    by_class
}

/// Splits row indices into (train, validation), stratified by label: each
/// class contributes round(fraction × its count) rows to validation, keeping
/// at least one training row per class. Both parts sorted.
pub fn stratified_split(labels: &[i64], fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    if fraction <= 0.0 {
        return ((0..labels.len()).collect(), Vec::new());
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for rows in shuffled_by_class(labels, rng) {
        let take =
            ((rows.len() as f64 * fraction).round() as usize).min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

/// Rows dealt into `k` folds class by class, so each fold has each class's
/// share; each fold's rows sorted.
pub fn stratified_folds(labels: &[i64], k: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let mut folds = vec![Vec::new(); k];
    for (next, r) in shuffled_by_class(labels, rng)
        .into_iter()
        .flatten()
        .enumerate()
    {
        folds[next % k].push(r);
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    folds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_seeded() {
        let labels: Vec<i64> = (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect();
        let (train, val) = stratified_split(&labels, 0.2, &mut Rng::new(3));
        assert_eq!(train.len() + val.len(), 1000);
        assert_eq!(val.iter().filter(|&&i| labels[i] == 1).count(), 20);
        assert_eq!(val.iter().filter(|&&i| labels[i] == 0).count(), 180);
        assert_eq!(stratified_split(&labels, 0.2, &mut Rng::new(3)).1, val);
        assert_ne!(
            stratified_split(&labels, 0.2, &mut Rng::new(4)).1,
            val,
            "another seed, another split"
        );
    }

    #[test]
    fn a_split_keeps_a_training_row_of_every_class() {
        let labels = [0, 1, 1, 2, 2, 2];
        let (train, val) = stratified_split(&labels, 0.9, &mut Rng::new(1));
        for class in 0..3 {
            assert!(
                train.iter().any(|&r| labels[r] == class),
                "class {class} kept for training"
            );
        }
        assert_eq!(val.len(), 3, "0 of 1, 1 of 2, 2 of 3");
        assert_eq!(
            stratified_split(&labels, 0.0, &mut Rng::new(1)),
            ((0..6).collect(), vec![])
        );
    }

    #[test]
    fn folds_partition_the_rows_with_each_class_share() {
        let labels: Vec<i64> = (0..90).map(|i| if i < 60 { 0 } else { 1 }).collect();
        let folds = stratified_folds(&labels, 3, &mut Rng::new(7));
        let mut seen: Vec<usize> = folds.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..90).collect::<Vec<_>>());
        for fold in &folds {
            assert!(fold.is_sorted());
            assert_eq!(fold.iter().filter(|&&r| labels[r] == 1).count(), 10);
        }
    }
}
