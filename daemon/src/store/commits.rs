//! How many commits this process has made, for readers that keep what they read in memory
//! (the access check's snapshot, [`crate::access_snapshot`]) and must know when it is out of
//! date without asking the database.
//!
//! Two counts, as a sequence lock keeps them: of commits begun (before the backend commits)
//! and of commits done (after, whether the commit succeeded or not). While they differ a
//! commit is under way and nothing kept in memory may be trusted; while they agree, what was
//! read at that count, if it is still the count afterwards, is the database as of then. pimd
//! alone writes its database while it runs (one pimd at a time, `/run/pim/pimd.lock`; the
//! README says not to write it by hand meanwhile), so the commits of this process are all of
//! them; the snapshot that relies on this is also read again every few seconds regardless.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

static BEGUN: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// The number of commits so far, when none is under way.
pub fn settled() -> Option<u64> {
    let begun = BEGUN.load(Ordering::SeqCst);
    (DONE.load(Ordering::SeqCst) == begun).then_some(begun)
}

/// Runs `commit` between the two counts, then wakes whoever waits for one. A commit that
/// panics is counted done all the same (it did not commit), so the counts agree again.
pub(super) fn counted<T>(commit: impl FnOnce() -> T) -> T {
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            DONE.fetch_add(1, Ordering::SeqCst);
            nudge();
        }
    }
    BEGUN.fetch_add(1, Ordering::SeqCst);
    let _done = Done;
    commit()
}

/// Wakes whoever waits in [`wait_while`] to look again (a reload changed what they read with).
pub fn nudge() {
    let _held = WAKE.0.lock().unwrap_or_else(PoisonError::into_inner);
    WAKE.1.notify_all();
}

/// Waits while [`settled`] is still `last`, until a [`nudge`] comes, or `timeout` passes.
pub fn wait_while(last: Option<u64>, timeout: Duration) {
    let held = WAKE.0.lock().unwrap_or_else(PoisonError::into_inner);
    if settled() != last {
        return;
    }
    let _held = WAKE
        .1
        .wait_timeout(held, timeout)
        .unwrap_or_else(PoisonError::into_inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_commit_under_way_then_nothing_is_settled_until_it_is_done() {
        let before = DONE.load(Ordering::SeqCst);
        // Other tests commit in parallel, but none can settle the counts while this commit is
        // under way.
        assert_eq!(counted(settled), None);
        assert!(DONE.load(Ordering::SeqCst) > before);
    }

    #[test]
    fn given_a_commit_that_panics_then_it_is_counted_done() {
        let before = DONE.load(Ordering::SeqCst);
        let panicked = std::panic::catch_unwind(|| counted(|| panic!("a commit that panics")));
        assert!(panicked.is_err());
        assert!(DONE.load(Ordering::SeqCst) > before);
        // Counted done: the counts agree again once no other test's commit is under way.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while settled().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the counts never agreed again"
            );
            wait_while(None, Duration::from_millis(100));
        }
    }
}
