//! Batch order: shuffled each epoch, optionally bucketed by length.
//! Host-side and seeded (the generator is [`pipe_data::split::Rng`], shared
//! with the validation split), so a run is repeatable and needs no device
//! round trip to plan its batches.

use pipe_data::split::Rng;

/// One epoch's batches: row indices, and the longest real length in each.
pub fn plan_epoch(
    rows: &[usize],
    lengths: &[i64],
    batch_size: usize,
    bucketing: bool,
    rng: &mut Rng,
) -> Vec<(Vec<i64>, i64)> {
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
                assert_eq!(
                    *longest,
                    b.iter().map(|&i| lengths[i as usize]).max().unwrap()
                );
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
        assert!(
            spread(&bucketed) * 5 < spread(&plain),
            "{} vs {}",
            spread(&bucketed),
            spread(&plain)
        );
    }
}
