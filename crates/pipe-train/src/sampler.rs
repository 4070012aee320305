//! Batch order: shuffled each epoch, optionally bucketed by length; and the
//! stratified validation split. Host-side and seeded, so a run is repeatable
//! and needs no device round trip to plan its batches.

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

/// One epoch's batches: row indices, and the longest real length in each.
pub fn plan_epoch(rows: &[usize], lengths: &[i64], batch_size: usize, bucketing: bool, rng: &mut Rng) -> Vec<(Vec<i64>, i64)> {
    let mut order = rows.to_vec();
    rng.shuffle(&mut order);
    let mut batches: Vec<Vec<usize>> = if bucketing {
        // Sort within large shuffled windows, cut into batches, then shuffle the
        // batch order: batches of similar lengths, still a fresh mix each epoch.
        let window = batch_size * 50;
        let mut out = Vec::new();
        for chunk in order.chunks_mut(window) {
            chunk.sort_by_key(|&i| lengths[i]);
            out.extend(chunk.chunks(batch_size).map(<[usize]>::to_vec));
        }
        rng.shuffle(&mut out);
        out
    } else {
        order.chunks(batch_size).map(<[usize]>::to_vec).collect()
    };
    batches
        .drain(..)
        .map(|b| {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            (b.into_iter().map(|i| i as i64).collect(), longest)
        })
        .collect()
}

/// Splits row indices into (train, validation), stratified by label: each
/// class contributes round(fraction × its count) rows to validation, keeping
/// at least one training row per class.
pub fn stratified_split(labels: &[i64], fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    if fraction <= 0.0 {
        return ((0..labels.len()).collect(), Vec::new());
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut rows in by_class {
        rng.shuffle(&mut rows);
        let take = ((rows.len() as f64 * fraction).round() as usize).min(rows.len().saturating_sub(1));
        val.extend_from_slice(&rows[..take]);
        train.extend_from_slice(&rows[take..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_per_epoch() {
        let lengths: Vec<i64> = (0..103).map(|i| (i * 7 % 13) as i64).collect();
        let rows: Vec<usize> = (0..103).collect();
        for bucketing in [false, true] {
            let plan = plan_epoch(&rows, &lengths, 10, bucketing, &mut Rng::new(1));
            let mut seen: Vec<i64> = plan.iter().flat_map(|(b, _)| b.clone()).collect();
            seen.sort();
            assert_eq!(seen, (0..103).collect::<Vec<i64>>());
            for (b, longest) in &plan {
                assert_eq!(*longest, b.iter().map(|&i| lengths[i as usize]).max().unwrap());
            }
        }
    }

    #[test]
    fn bucketing_groups_similar_lengths() {
        let lengths: Vec<i64> = (0..1000).map(|i| (i * 37 % 64) as i64).collect();
        let rows: Vec<usize> = (0..1000).collect();
        let spread = |plan: &[(Vec<i64>, i64)]| -> i64 {
            plan.iter()
                .map(|(b, _)| {
                    let l: Vec<i64> = b.iter().map(|&i| lengths[i as usize]).collect();
                    l.iter().max().unwrap() - l.iter().min().unwrap()
                })
                .sum()
        };
        let plain = plan_epoch(&rows, &lengths, 32, false, &mut Rng::new(2));
        let bucketed = plan_epoch(&rows, &lengths, 32, true, &mut Rng::new(2));
        assert!(spread(&bucketed) * 5 < spread(&plain), "{} vs {}", spread(&bucketed), spread(&plain));
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let labels: Vec<i64> = (0..1000).map(|i| if i % 10 == 0 { 1 } else { 0 }).collect();
        let (train, val) = stratified_split(&labels, 0.2, &mut Rng::new(3));
        assert_eq!(train.len() + val.len(), 1000);
        assert_eq!(val.iter().filter(|&&i| labels[i] == 1).count(), 20);
        assert_eq!(val.iter().filter(|&&i| labels[i] == 0).count(), 180);
        assert_eq!(stratified_split(&labels, 0.2, &mut Rng::new(3)).1, val);
    }
}
