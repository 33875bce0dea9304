//! Event ids unique across the fleet without coordination per event, and
//! exact in every language's JSON: below 2^53, where JavaScript's numbers
//! stop being integers.
//!
//! An id is `millis since 2025-01-01 (41 bits, until 2094) | node ordinal
//! (10 bits) | sequence (2 bits)`: positive, below 2^53, growing with time
//! on each node, and unique as long as no two nodes share an ordinal (the
//! control plane assigns them). 53 bits cannot hold a millisecond clock, a
//! fleet of 1 024 nodes and a wide sequence at once; what gives is the
//! sequence. More than 4 ids in one millisecond borrow from the next, so a
//! node taking more than 4 000 calls a second runs its stamps ahead of the
//! clock (ids stay unique and increasing) and catches up when load drops.
//!
//! Running ahead is why a node with a cache directory *reserves* stamps on
//! disk before handing them out (`reserved`, a minute of stamps at a
//! time, fsynced): a node restarted after running ahead starts past every
//! id it issued, never from the clock into ids it already gave out (a
//! duplicate id would be absorbed by the control plane as a redelivery,
//! losing the event). At the clock's pace that is one small synced write
//! a minute, made on tokio's blocking pool once half the reservation is
//! used: a caller waits for the disk only when stamps outran the
//! extension (or it failed), where every caller used to wait for it, on a
//! runtime worker, once a minute.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache;

/// 2025-01-01T00:00:00Z in Unix milliseconds.
const EPOCH_MS: u64 = 1_735_689_600_000;
const SEQUENCE_BITS: u32 = 2;
const ORDINAL_BITS: u32 = 10;
const MILLIS_BITS: u32 = 41;
/// The largest id any layout of ours may produce: 2^53 − 1.
pub const MAX_EVENT_ID: i64 = (1 << 53) - 1;
/// Stamps (`millis << SEQUENCE_BITS | sequence`) end here, in 2094.
const STAMP_END: u64 = 1 << (MILLIS_BITS + SEQUENCE_BITS);
/// How far ahead of the stamps handed out a reservation reaches: a
/// minute at the clock's pace.
const RESERVE_AHEAD: u64 = 60_000 << SEQUENCE_BITS;
/// Stamps left in the reservation at which it is extended in the
/// background: half of it.
const EXTEND_WITH_LEFT: u64 = RESERVE_AHEAD / 2;
const RESERVATION_FILE: &str = "event-id-reservation";

/// Mints event ids for one node.
#[derive(Debug)]
pub struct EventIds {
    /// The node's ordinal, or -1 before the control plane assigned one.
    ordinal: AtomicI64,
    /// The last stamp handed out.
    last: AtomicU64,
    reservation: Arc<Reservation>,
}

/// The stamps reserved on disk, shared with an extension running on the
/// blocking pool.
#[derive(Debug)]
struct Reservation {
    /// Stamps below this are reserved (`u64::MAX` without a directory:
    /// nothing to reserve).
    reserved: AtomicU64,
    /// An extension ahead of the reservation's end is under way.
    extending: AtomicBool,
    /// The directory holding the reservation; the lock orders extensions.
    dir: Mutex<Option<PathBuf>>,
}

impl Default for EventIds {
    fn default() -> Self {
        EventIds {
            ordinal: AtomicI64::new(-1),
            last: AtomicU64::new(0),
            reservation: Arc::new(Reservation {
                reserved: AtomicU64::new(u64::MAX),
                extending: AtomicBool::new(false),
                dir: Mutex::new(None),
            }),
        }
    }
}

impl EventIds {
    /// Ids that reserve their stamps in `dir`, starting past the
    /// reservation an earlier run of this node left there.
    pub fn reserving_in(dir: PathBuf) -> EventIds {
        let ids = EventIds::default();
        let previous = std::fs::read_to_string(dir.join(RESERVATION_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0);
        ids.last.store(previous, Ordering::Relaxed);
        ids.reservation.reserved.store(0, Ordering::Relaxed);
        *ids.reservation.dir.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(dir);
        ids
    }

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

    /// The next id; `None` until the node has an ordinal, when a
    /// reservation cannot be written, or past 2094.
    pub fn next(&self) -> Option<i64> {
        let ordinal = self.ordinal()?;
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
        let reservation = &self.reservation;
        let reserved = reservation.reserved.load(Ordering::Acquire);
        if stamp >= reserved {
            // Every caller whose stamp is not yet covered waits here, so no
            // id leaves unreserved.
            reservation.extend(stamp, 0)?;
            // The disk took a reservation again: a background extension
            // that failed may be tried anew.
            reservation.extending.store(false, Ordering::Release);
        } else if reserved - stamp <= EXTEND_WITH_LEFT && !reservation.extending.swap(true, Ordering::AcqRel) {
            reservation.extend_in_background(stamp);
        }
        compose(stamp, ordinal)
    }
}

impl Reservation {
    /// Reserves on disk the stamps from `stamp` to a minute past it,
    /// unless more than `left` past `stamp` are reserved already.
    fn extend(&self, stamp: u64, left: u64) -> Option<()> {
        let dir = self.dir.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if stamp + left < self.reserved.load(Ordering::Acquire) {
            return Some(());
        }
        let dir = dir.as_ref()?;
        let until = stamp + RESERVE_AHEAD;
        match cache::write_atomically(dir, RESERVATION_FILE, until.to_string().as_bytes()) {
            Ok(()) => {
                self.reserved.store(until, Ordering::Release);
                Some(())
            }
            Err(err) => {
                tracing::error!(error = %err, "could not reserve event ids on disk; refusing calls until it can");
                None
            }
        }
    }

    /// Extends the reservation on the blocking pool (outside a runtime,
    /// callers extend it when they reach its end). A failure is logged and
    /// not tried again in the background, where every later call would
    /// start another attempt: the callers that reach the end try again,
    /// waiting, and a success of theirs lets the background try anew.
    fn extend_in_background(self: &Arc<Self>, stamp: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.extending.store(false, Ordering::Release);
            return;
        };
        let reservation = self.clone();
        runtime.spawn_blocking(move || {
            if reservation.extend(stamp, EXTEND_WITH_LEFT).is_some() {
                reservation.extending.store(false, Ordering::Release);
            }
        });
    }
}

/// The id of `stamp` on node `ordinal`; `None` once the stamps run out.
fn compose(stamp: u64, ordinal: i64) -> Option<i64> {
    if stamp >= STAMP_END || !(0..1 << ORDINAL_BITS).contains(&ordinal) {
        return None;
    }
    let millis = stamp >> SEQUENCE_BITS;
    let sequence = stamp & ((1 << SEQUENCE_BITS) - 1);
    Some(((millis << (ORDINAL_BITS + SEQUENCE_BITS)) | ((ordinal as u64) << SEQUENCE_BITS) | sequence) as i64)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn ordinal_of(id: i64) -> i64 {
        (id >> SEQUENCE_BITS) & ((1 << ORDINAL_BITS) - 1)
    }

    proptest! {
        /// Whatever the clock, the ordinal and the load, an id is positive
        /// and at most 2^53 − 1, and it keeps its stamp and ordinal apart.
        #[test]
        fn ids_never_exceed_two_to_the_53(stamp in any::<u64>(), ordinal in -5i64..1100) {
            match compose(stamp, ordinal) {
                Some(id) => {
                    prop_assert!(id > 0 || (stamp == 0 && ordinal == 0));
                    prop_assert!(id <= MAX_EVENT_ID);
                    prop_assert_eq!(ordinal_of(id), ordinal);
                    prop_assert_eq!(((id as u64) >> (ORDINAL_BITS + SEQUENCE_BITS)) << SEQUENCE_BITS
                        | (id as u64 & 3), stamp);
                }
                None => prop_assert!(stamp >= STAMP_END || !(0..1024).contains(&ordinal)),
            }
        }

        /// Later stamps give larger ids on one node.
        #[test]
        fn ids_grow_with_their_stamps(a in 0..STAMP_END, b in 0..STAMP_END, ordinal in 0i64..1024) {
            prop_assume!(a < b);
            prop_assert!(compose(a, ordinal).unwrap() < compose(b, ordinal).unwrap());
        }
    }

    #[test]
    fn ids_grow_are_unique_and_carry_the_ordinal() {
        let ids = EventIds::default();
        assert_eq!(ids.next(), None, "no ids before an ordinal is assigned");
        ids.set_ordinal(517);
        let minted: Vec<i64> = (0..10_000).map(|_| ids.next().unwrap()).collect();
        assert!(minted.windows(2).all(|w| w[0] < w[1]));
        assert!(minted.iter().all(|id| *id > 0 && *id <= MAX_EVENT_ID && ordinal_of(*id) == 517));
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

    /// A node that ran ahead of the clock (a burst far above 4 ids a
    /// millisecond) and restarts carries on past every id it issued.
    #[test]
    fn a_restarted_node_starts_past_every_id_it_issued() {
        let dir = tempfile::tempdir().unwrap();
        let first = EventIds::reserving_in(dir.path().to_owned());
        first.set_ordinal(9);
        // Far more than the clock's pace: the stamps run ahead of it.
        let issued: Vec<i64> = (0..400_000).map(|_| first.next().unwrap()).collect();
        let highest = *issued.last().unwrap();
        drop(first);
        let second = EventIds::reserving_in(dir.path().to_owned());
        second.set_ordinal(9);
        let next = second.next().unwrap();
        assert!(next > highest, "{next} must follow {highest}");
    }

    /// Once half the reservation is used, it is extended on the blocking
    /// pool: no caller reaches its end and waits for the disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_reservation_is_extended_before_callers_reach_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let reserved = || std::fs::read_to_string(dir.path().join(RESERVATION_FILE)).unwrap().parse::<u64>().unwrap();
        let ids = EventIds::reserving_in(dir.path().to_owned());
        ids.set_ordinal(9);
        ids.next().unwrap();
        let first = reserved();
        // Faster than the clock: the stamps run ahead of it, to just past
        // half the reservation.
        for _ in 0..=RESERVE_AHEAD - EXTEND_WITH_LEFT {
            ids.next().unwrap();
        }
        let started = std::time::Instant::now();
        while reserved() == first {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "the reservation was not extended");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // No caller reached the end, so none extended it: the background did.
        assert!(ids.last.load(Ordering::Relaxed) < first);
        assert!(reserved() >= first + EXTEND_WITH_LEFT);
    }

    /// An extension that fails leaves the reservation's end where it was:
    /// the calls that reach it try again, waiting, and are refused while
    /// the disk refuses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_a_reservation_that_cannot_be_extended_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("ids");
        std::fs::create_dir(&kept).unwrap();
        let ids = EventIds::reserving_in(kept.clone());
        ids.set_ordinal(2);
        ids.next().unwrap();
        // A file where the directory was: no reservation can be written.
        std::fs::remove_dir_all(&kept).unwrap();
        std::fs::write(&kept, b"").unwrap();
        let handed = (0..2 * RESERVE_AHEAD).take_while(|_| ids.next().is_some()).count() as u64;
        assert!(handed < RESERVE_AHEAD, "{handed} ids handed out past what was reserved");
        assert_eq!(ids.next(), None, "still refused");
    }

    #[test]
    fn ids_are_refused_when_the_reservation_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("file-not-dir");
        std::fs::write(&blocked, b"").unwrap();
        let ids = EventIds::reserving_in(blocked);
        ids.set_ordinal(1);
        assert_eq!(ids.next(), None, "an id the node could reissue after a restart is never handed out");
    }
}
