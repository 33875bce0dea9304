//! Event ids unique across the fleet without coordination per event.
//!
//! An id is `millis since 2025-01-01 (41 bits) | node ordinal (10 bits) |
//! sequence (12 bits)`: positive in an int64, growing with time on each
//! node, and unique as long as no two nodes share an ordinal (the control
//! plane assigns them). More than 4 096 ids in one millisecond borrow from
//! the next millisecond, so ids stay unique and increasing under any load.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2025-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: u64 = 1_735_689_600_000;
const SEQUENCE_BITS: u32 = 12;
const ORDINAL_BITS: u32 = 10;

/// Mints event ids for one node.
#[derive(Debug)]
pub struct EventIds {
    /// The node's ordinal, or -1 before the control plane assigned one.
    ordinal: AtomicI64,
    /// The last `(millis << 12) | sequence` handed out.
    last: AtomicU64,
}

impl Default for EventIds {
    fn default() -> Self {
        EventIds { ordinal: AtomicI64::new(-1), last: AtomicU64::new(0) }
    }
}

impl EventIds {
    /// Sets the ordinal the control plane assigned.
    pub fn set_ordinal(&self, ordinal: i64) {
        if (0..1 << ORDINAL_BITS).contains(&ordinal) {
            self.ordinal.store(ordinal, Ordering::Release);
        }
    }

    /// The assigned ordinal, if any.
    pub fn ordinal(&self) -> Option<i64> {
        let ordinal = self.ordinal.load(Ordering::Acquire);
        (ordinal >= 0).then_some(ordinal)
    }

    /// The next id; `None` until the node has an ordinal.
    pub fn next(&self) -> Option<i64> {
        let ordinal = self.ordinal()? as u64;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let floor = now.saturating_sub(EPOCH_MS) << SEQUENCE_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        let stamp = loop {
            let candidate = floor.max(last + 1);
            match self.last.compare_exchange_weak(last, candidate, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break candidate,
                Err(actual) => last = actual,
            }
        };
        let millis = stamp >> SEQUENCE_BITS;
        let sequence = stamp & ((1 << SEQUENCE_BITS) - 1);
        Some(((millis << (ORDINAL_BITS + SEQUENCE_BITS)) | (ordinal << SEQUENCE_BITS) | sequence) as i64)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_grow_are_unique_and_carry_the_ordinal() {
        let ids = EventIds::default();
        assert_eq!(ids.next(), None, "no ids before an ordinal is assigned");
        ids.set_ordinal(517);
        let minted: Vec<i64> = (0..10_000).map(|_| ids.next().unwrap()).collect();
        assert!(minted.windows(2).all(|w| w[0] < w[1]));
        assert!(minted.iter().all(|id| *id > 0 && (id >> SEQUENCE_BITS) & 0x3ff == 517));
        let other = EventIds::default();
        other.set_ordinal(3);
        let theirs: HashSet<i64> = (0..10_000).map(|_| other.next().unwrap()).collect();
        assert!(minted.iter().all(|id| !theirs.contains(id)), "two nodes never mint the same id");
    }

    #[test]
    fn threads_never_share_an_id() {
        let ids = std::sync::Arc::new(EventIds::default());
        ids.set_ordinal(1);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..5_000).map(|_| ids.next().unwrap()).collect::<Vec<_>>())
            })
            .collect();
        let all: Vec<i64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }
}
