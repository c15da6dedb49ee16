//! How many calls one user may make a minute, per kind of call.
//!
//! A call that succeeds writes audit rows and syslog lines, may run gpasswd and tells watchers
//! and `notify_command`: looped as fast as a local user can (enrolment restarted, request and
//! cancel, activate and deactivate), it fills the disk, buries the log and floods approvers.
//! Each kind of writing call gets `[daemon] calls_per_minute` a minute per user; beyond that
//! the call is refused (and the refusal audited, within the allowance of
//! [`crate::refusals`]). Calls that only read (status, the audit...) write nothing but each
//! holds the manager, which expiry and every other call wait for: they get an allowance of
//! their own, [`READS_PER_CALL_ALLOWANCE`] times as large. root is never limited: the PAM
//! check and the administrator's tools must always get through.

use std::collections::HashMap;

/// The window, in seconds, from a user's first call of a kind.
pub const WINDOW_SECS: i64 = 60;
/// How many times `calls_per_minute` reading calls one user may make a minute: reads are
/// cheaper than writes, and a client may need several for one command (`pim doctor`,
/// `pim activate --wait` asking again).
pub const READS_PER_CALL_ALLOWANCE: u32 = 4;
/// Users with a window kept before the windows that are over are forgotten.
const KEPT_WINDOWS: usize = 1024;

/// Kinds of call, each with its own allowance: a burst of approvals does not use up
/// the approver's own activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// activate, extend, deactivate, cancel.
    Grants,
    /// approve, deny.
    Decisions,
    /// mfa enroll (and a change of device), mfa confirm, mfa recovery-codes.
    Mfa,
    /// The admin calls.
    Admin,
    /// The calls that only read: list roles, status, mfa status, audit, list requests, admin
    /// grants.
    Reads,
}

impl CallKind {
    /// How the refusal names it.
    pub fn describe(self) -> &'static str {
        match self {
            CallKind::Grants => "activate, extend, deactivate and cancel calls",
            CallKind::Decisions => "approve and deny calls",
            CallKind::Mfa => "mfa enroll, confirm and recovery-codes calls",
            CallKind::Admin => "admin calls",
            CallKind::Reads => "reading calls (roles, status, requests, audit, mfa status, grants)",
        }
    }

    /// The calls of this kind one user may make a minute, `calls_per_minute` being the
    /// configured allowance of a writing kind.
    pub fn allowance(self, calls_per_minute: u32) -> u32 {
        match self {
            CallKind::Reads => calls_per_minute.saturating_mul(READS_PER_CALL_ALLOWANCE),
            _ => calls_per_minute,
        }
    }
}

#[derive(Default)]
pub struct CallLimiter {
    windows: HashMap<(u32, CallKind), Window>,
}

struct Window {
    started: i64,
    calls: u32,
}

impl Window {
    /// Over once its minute has passed, or when the clock went back before its start.
    fn is_over(&self, now: i64) -> bool {
        now >= self.started + WINDOW_SECS || now < self.started
    }
}

impl CallLimiter {
    /// Whether `uid` may make one more call of `kind` at `now`, `allowance` being the calls of
    /// a kind one user may make a window; if not, the seconds until it may.
    pub fn admit(&mut self, uid: u32, kind: CallKind, allowance: u32, now: i64) -> Result<(), i64> {
        if uid == 0 {
            return Ok(());
        }
        if self.windows.len() >= KEPT_WINDOWS {
            self.windows.retain(|_, w| !w.is_over(now));
        }
        let window = self.windows.entry((uid, kind)).or_insert(Window {
            started: now,
            calls: 0,
        });
        if window.is_over(now) {
            *window = Window {
                started: now,
                calls: 0,
            };
        }
        if window.calls >= allowance {
            return Err(window.started + WINDOW_SECS - now);
        }
        window.calls += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(limiter: &mut CallLimiter, uid: u32, kind: CallKind, n: u32, now: i64) -> u32 {
        (0..n)
            .filter(|_| limiter.admit(uid, kind, 30, now).is_ok())
            .count() as u32
    }

    #[test]
    fn given_a_loop_of_calls_then_the_allowance_passes_and_the_rest_wait_for_the_window() {
        let mut limiter = CallLimiter::default();
        assert_eq!(admitted(&mut limiter, 1000, CallKind::Mfa, 100, 5000), 30);
        assert_eq!(limiter.admit(1000, CallKind::Mfa, 30, 5010), Err(50));
        assert_eq!(admitted(&mut limiter, 1000, CallKind::Mfa, 100, 5060), 30);
    }

    #[test]
    fn given_other_kinds_and_users_then_each_has_its_own_allowance() {
        let mut limiter = CallLimiter::default();
        assert_eq!(admitted(&mut limiter, 1000, CallKind::Grants, 40, 5000), 30);
        assert_eq!(
            admitted(&mut limiter, 1000, CallKind::Decisions, 40, 5000),
            30
        );
        assert_eq!(admitted(&mut limiter, 1001, CallKind::Grants, 40, 5000), 30);
    }

    #[test]
    fn given_reads_then_their_allowance_is_four_times_the_writes_and_their_own() {
        assert_eq!(CallKind::Reads.allowance(30), 120);
        assert_eq!(CallKind::Grants.allowance(30), 30);
        assert_eq!(CallKind::Reads.allowance(u32::MAX), u32::MAX);
        let mut limiter = CallLimiter::default();
        assert_eq!(admitted(&mut limiter, 1000, CallKind::Grants, 40, 5000), 30);
        let reads = (0..200)
            .filter(|_| limiter.admit(1000, CallKind::Reads, 120, 5000).is_ok())
            .count();
        assert_eq!(reads, 120);
    }

    #[test]
    fn given_root_then_never_limited() {
        let mut limiter = CallLimiter::default();
        assert_eq!(admitted(&mut limiter, 0, CallKind::Admin, 1000, 5000), 1000);
    }

    #[test]
    fn given_a_clock_that_went_back_then_the_window_starts_again() {
        let mut limiter = CallLimiter::default();
        admitted(&mut limiter, 1000, CallKind::Grants, 30, 5000);
        assert_eq!(limiter.admit(1000, CallKind::Grants, 30, 4000), Ok(()));
    }

    #[test]
    fn given_many_users_then_windows_that_are_over_are_forgotten() {
        let mut limiter = CallLimiter::default();
        for uid in 1..=KEPT_WINDOWS as u32 {
            limiter.admit(uid, CallKind::Grants, 30, 5000).unwrap();
        }
        limiter
            .admit(5000, CallKind::Grants, 30, 5000 + WINDOW_SECS)
            .unwrap();
        assert_eq!(limiter.windows.len(), 1);
    }
}
