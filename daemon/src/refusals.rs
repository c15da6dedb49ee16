//! How many refusal records one cause writes: the first few in a minute one by one, the rest
//! counted and written as one summary record once that minute is over.
//!
//! A local user looping on a refused call (a role they are not eligible for, `sudo` without a
//! grant) would otherwise add a row, a synchronous commit and a syslog line per attempt: enough
//! to fill a disk, bury the log and keep pimd busy while sudo's access checks wait behind it.
//! The calls are still refused, every one; only their records are summarised. A refusal that
//! changes state (a wrong TOTP code counted towards lockout) is not a "refusal record" here:
//! it is recorded with its change, always.

use std::collections::{BTreeMap, HashMap};

/// Records one cause writes one by one per window.
pub const RECORDS_PER_WINDOW: u32 = 20;
/// The window, in seconds, from a cause's first refusal.
pub const WINDOW_SECS: i64 = 60;

/// Who a refusal is charged to: the person who made the call, or, for the PAM check (asked by
/// root), the user it was about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cause {
    pub actor: String,
    pub user: String,
}

/// Refusals of one cause that were counted, not recorded one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    pub cause: Cause,
    pub count: u32,
    /// How many of each action (the audit record's action names: a fixed, small set), so that
    /// the summary still says what was tried.
    pub actions: BTreeMap<String, u32>,
    pub first: i64,
    pub last: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Write this refusal's record, after the summary of the cause's previous window if it
    /// left refusals unrecorded.
    Record { previous: Option<Unrecorded> },
    /// Only count it: the cause has used its records for this window.
    Count,
}

#[derive(Default)]
pub struct RefusalLimiter {
    windows: HashMap<Cause, Window>,
}

struct Window {
    started: i64,
    recorded: u32,
    unrecorded: Option<Unrecorded>,
}

impl Window {
    /// A window opened by a refusal that is recorded.
    fn opening(now: i64) -> Window {
        Window {
            started: now,
            recorded: 1,
            unrecorded: None,
        }
    }

    fn is_over(&self, now: i64) -> bool {
        now >= self.started + WINDOW_SECS
    }
}

impl RefusalLimiter {
    /// Whether the refusal of `action` charged to `cause` at `now` gets its own record.
    pub fn admit(&mut self, cause: &Cause, action: &str, now: i64) -> Admission {
        let Some(window) = self.windows.get_mut(cause) else {
            self.windows.insert(cause.clone(), Window::opening(now));
            return Admission::Record { previous: None };
        };
        if window.is_over(now) {
            let previous = std::mem::replace(window, Window::opening(now)).unrecorded;
            return Admission::Record { previous };
        }
        if window.recorded < RECORDS_PER_WINDOW {
            window.recorded += 1;
            return Admission::Record { previous: None };
        }
        let unrecorded = window.unrecorded.get_or_insert_with(|| Unrecorded {
            cause: cause.clone(),
            count: 0,
            actions: BTreeMap::new(),
            first: now,
            last: now,
        });
        unrecorded.count += 1;
        *unrecorded.actions.entry(action.to_string()).or_default() += 1;
        unrecorded.last = now;
        Admission::Count
    }

    /// Forgets the windows that are over and hands back what they left unrecorded.
    pub fn take_ended(&mut self, now: i64) -> Vec<Unrecorded> {
        let ended: Vec<Cause> = self
            .windows
            .iter()
            .filter(|(_, w)| w.is_over(now))
            .map(|(cause, _)| cause.clone())
            .collect();
        let mut out: Vec<Unrecorded> = ended
            .iter()
            .filter_map(|cause| self.windows.remove(cause)?.unrecorded)
            .collect();
        out.sort_by_key(|u| u.first);
        out
    }

    /// Everything left unrecorded, windows over or not (pimd is stopping).
    pub fn take_all(&mut self) -> Vec<Unrecorded> {
        let mut out: Vec<Unrecorded> = self
            .windows
            .drain()
            .filter_map(|(_, w)| w.unrecorded)
            .collect();
        out.sort_by_key(|u| u.first);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(actor: &str, user: &str) -> Cause {
        Cause {
            actor: actor.into(),
            user: user.into(),
        }
    }

    fn admit_n(limiter: &mut RefusalLimiter, cause: &Cause, n: u32, now: i64) -> (u32, u32) {
        let (mut recorded, mut counted) = (0, 0);
        for _ in 0..n {
            match limiter.admit(cause, "activate", now) {
                Admission::Record { .. } => recorded += 1,
                Admission::Count => counted += 1,
            }
        }
        (recorded, counted)
    }

    #[test]
    fn given_a_burst_then_the_first_records_are_written_and_the_rest_counted() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        assert_eq!(admit_n(&mut limiter, &mallory, 50, 1000), (20, 30));
        assert!(limiter.take_ended(1000 + WINDOW_SECS - 1).is_empty());
        assert_eq!(
            limiter.take_ended(1000 + WINDOW_SECS),
            [Unrecorded {
                cause: mallory.clone(),
                count: 30,
                actions: BTreeMap::from([("activate".to_string(), 30)]),
                first: 1000,
                last: 1000
            }]
        );
        // The window is gone with its summary: a new one starts from scratch.
        assert_eq!(admit_n(&mut limiter, &mallory, 20, 2000), (20, 0));
        assert!(limiter.take_ended(3000).is_empty());
    }

    #[test]
    fn given_a_refusal_after_the_window_then_it_carries_the_previous_summary() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, RECORDS_PER_WINDOW, 1000);
        assert_eq!(limiter.admit(&mallory, "approve", 1010), Admission::Count);
        assert_eq!(limiter.admit(&mallory, "activate", 1015), Admission::Count);
        assert_eq!(limiter.admit(&mallory, "approve", 1020), Admission::Count);
        assert_eq!(
            limiter.admit(&mallory, "activate", 1000 + WINDOW_SECS),
            Admission::Record {
                previous: Some(Unrecorded {
                    cause: mallory.clone(),
                    count: 3,
                    actions: BTreeMap::from([
                        ("activate".to_string(), 1),
                        ("approve".to_string(), 2)
                    ]),
                    first: 1010,
                    last: 1020
                })
            }
        );
        // Handed over once: nothing is left for the sweep.
        assert!(limiter.take_ended(5000).is_empty());
    }

    #[test]
    fn given_several_causes_then_each_has_its_own_allowance() {
        let mut limiter = RefusalLimiter::default();
        let (mallory, pam_alice, pam_bob) = (
            cause("mallory", ""),
            cause("pam", "alice"),
            cause("pam", "bob"),
        );
        assert_eq!(admit_n(&mut limiter, &mallory, 25, 1000), (20, 5));
        assert_eq!(admit_n(&mut limiter, &pam_alice, 21, 1001), (20, 1));
        assert_eq!(admit_n(&mut limiter, &pam_bob, 20, 1002), (20, 0));
        let ended = limiter.take_ended(2000);
        let counts: Vec<(&Cause, u32)> = ended.iter().map(|u| (&u.cause, u.count)).collect();
        assert_eq!(counts, [(&mallory, 5), (&pam_alice, 1)]);
    }

    #[test]
    fn given_stop_then_every_open_window_hands_over_its_count() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, 23, 1000);
        admit_n(&mut limiter, &cause("eve", ""), 3, 1000);
        let all = limiter.take_all();
        assert_eq!(all.len(), 1);
        assert_eq!((&all[0].cause, all[0].count), (&mallory, 3));
        assert!(limiter.take_all().is_empty());
    }

    #[test]
    fn given_a_clock_that_went_back_then_the_window_still_holds() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, RECORDS_PER_WINDOW, 1000);
        assert_eq!(limiter.admit(&mallory, "activate", 900), Admission::Count);
    }
}
