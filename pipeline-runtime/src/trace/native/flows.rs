//! The flow arrows whose submission is in a dump: one look-up per event slice while a dump is
//! written, over a window of hundreds of thousands of events. Flow ids are handed out in order,
//! so the window's ids fall in a narrow range: a bit per id in that range answers in one memory
//! read that stays in cache, where a hash set missed the cache on most look-ups (it took ~40 %
//! of the dump's reading time, `perf record` on `cargo bench --bench flight_dump`).

use std::collections::HashSet;

/// Ranges wider than this many ids (a bitmap over 8 MiB) fall back to a hash set.
const MAX_BITMAP_IDS: u64 = 1 << 26;

/// A set of flow ids, exact either way.
pub(super) enum FlowSet {
    /// Bit `id - first` is set for each id in the set.
    Bitmap { first: u64, bits: Vec<u64> },
    /// For ids spread too widely for a bitmap.
    Hashed(HashSet<u64>),
}

impl FlowSet {
    /// The set of `ids`.
    pub(super) fn of(ids: Vec<u64>) -> Self {
        let (Some(&first), Some(&last)) = (ids.iter().min(), ids.iter().max()) else {
            return FlowSet::Bitmap { first: 0, bits: Vec::new() };
        };
        if last - first >= MAX_BITMAP_IDS {
            return FlowSet::Hashed(ids.into_iter().collect());
        }
        let mut bits = vec![0u64; ((last - first) / 64 + 1) as usize];
        for id in ids {
            let offset = id - first;
            bits[(offset / 64) as usize] |= 1 << (offset % 64);
        }
        FlowSet::Bitmap { first, bits }
    }

    /// Whether `id` is in the set.
    #[inline]
    pub(super) fn contains(&self, id: u64) -> bool {
        match self {
            FlowSet::Bitmap { first, bits } => id.checked_sub(*first).is_some_and(|offset| {
                bits.get((offset / 64) as usize).is_some_and(|word| word >> (offset % 64) & 1 == 1)
            }),
            FlowSet::Hashed(ids) => ids.contains(&id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_the_ids_it_was_made_of() {
        let ids = vec![1_000, 1_001, 1_063, 1_064, 1_200];
        let set = FlowSet::of(ids.clone());
        assert!(matches!(set, FlowSet::Bitmap { .. }));
        for id in 990..1_210 {
            assert_eq!(set.contains(id), ids.contains(&id), "{id}");
        }
        assert!(!set.contains(0) && !set.contains(u64::MAX));
        let spread = FlowSet::of(vec![5, 5 + MAX_BITMAP_IDS]);
        assert!(matches!(spread, FlowSet::Hashed(_)));
        assert!(spread.contains(5) && spread.contains(5 + MAX_BITMAP_IDS) && !spread.contains(6));
        assert!(!FlowSet::of(Vec::new()).contains(0));
    }
}
