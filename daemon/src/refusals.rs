//! How many refusal records one cause writes: the first few in a minute one by one, the rest
//! counted and written as summary records once that minute is over.
//!
//! A local user looping on a refused call (a role they are not eligible for, `sudo` without a
//! grant) would otherwise add a row, a synchronous commit and a syslog line per attempt: enough
//! to fill a disk, bury the log and keep pimd busy while sudo's access checks wait behind it.
//! The calls are still refused, every one; only their records are summarised, by whom the
//! refusals were about and by action, so that a flood hides neither what was tried nor, from
//! the person it was tried against, that it was. A refusal that changes state (a wrong TOTP
//! code counted towards lockout) is not a "refusal record" here: it is recorded with its
//! change, always.

use std::collections::{BTreeMap, HashMap};

/// Records one cause writes one by one per window.
pub const RECORDS_PER_WINDOW: u32 = 20;
/// The window, in seconds, from a cause's first refusal.
pub const WINDOW_SECS: i64 = 60;
/// Other people one cause's summary names one by one; the rest are counted together under
/// [`OTHERS`] (names come from the caller's arguments, so their number must be bounded).
pub const MAX_NAMED: usize = 16;
/// The `about` of refusals about people beyond [`MAX_NAMED`]; not a valid user name.
pub const OTHERS: &str = "*";

/// Who a refusal is charged to: the person who made the call, or, for the PAM check (asked by
/// root), the user it was about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Cause {
    pub actor: String,
    pub user: String,
    /// For events: their kind and role, each pair with an allowance of its own, so that a
    /// flood of one role's events (activate, deactivate, activate...) never drops another
    /// role's, nor another kind's. Empty for refusals.
    pub kind: String,
    pub role: String,
}

impl Cause {
    /// Whom the cause's own refusals are about: the user checked, or else the actor.
    pub fn subject(&self) -> &str {
        if self.user.is_empty() {
            &self.actor
        } else {
            &self.user
        }
    }
}

/// Refusals of one cause that were counted, not recorded one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    pub cause: Cause,
    /// Counts by whom the refusal was about ("" for no one but the cause itself, [`OTHERS`])
    /// and then by action (the audit record's action names: a small, fixed set).
    pub counts: BTreeMap<String, BTreeMap<String, u32>>,
    pub first: i64,
    pub last: i64,
}

impl Unrecorded {
    fn empty(cause: &Cause, now: i64) -> Unrecorded {
        Unrecorded {
            cause: cause.clone(),
            counts: BTreeMap::new(),
            first: now,
            last: now,
        }
    }

    fn add(&mut self, about: &str, action: &str, n: u32, at: i64) {
        let named = self.counts.keys().filter(|k| !k.is_empty()).count();
        let about = if about.is_empty() || self.counts.contains_key(about) || named < MAX_NAMED {
            about
        } else {
            OTHERS
        };
        let n_action = self
            .counts
            .entry(about.to_string())
            .or_default()
            .entry(action.to_string())
            .or_default();
        *n_action = n_action.saturating_add(n);
        self.first = self.first.min(at);
        self.last = self.last.max(at);
    }

    fn merge(&mut self, other: Unrecorded) {
        for (about, actions) in other.counts {
            for (action, n) in actions {
                self.add(&about, &action, n, other.first);
            }
        }
        self.last = self.last.max(other.last);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Write this refusal's record, after the summary of the cause's previous window if it
    /// left refusals unrecorded.
    Record { previous: Option<Unrecorded> },
    /// Only count it: the cause has used its records for this window. `first` for the first
    /// one counted in the window.
    Count { first: bool },
}

/// Also what limits the events one person's calls send to watchers and `notify_command`
/// (with an allowance of its own): the same windows, counts and summaries.
pub struct RefusalLimiter {
    /// Records one cause writes one by one per window.
    allowance: u32,
    windows: HashMap<Cause, Window>,
    /// pimd is stopping and has written what was counted: record everything from now on.
    closed: bool,
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

    /// Over once its minute has passed, or when the clock went back before its start (a
    /// window must not hold a cause's records back for longer than a minute).
    fn is_over(&self, now: i64) -> bool {
        now >= self.started + WINDOW_SECS || now < self.started
    }
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        RefusalLimiter::allowing(RECORDS_PER_WINDOW)
    }
}

impl RefusalLimiter {
    /// A limiter letting each cause have `allowance` records one by one per window.
    pub fn allowing(allowance: u32) -> RefusalLimiter {
        RefusalLimiter {
            allowance,
            windows: HashMap::new(),
            closed: false,
        }
    }

    /// Whether the refusal of `action` charged to `cause` at `now`, about `about` ("" for no
    /// one but the cause itself), gets its own record.
    pub fn admit(&mut self, cause: &Cause, action: &str, about: &str, now: i64) -> Admission {
        if self.closed {
            return Admission::Record { previous: None };
        }
        let Some(window) = self.windows.get_mut(cause) else {
            self.windows.insert(cause.clone(), Window::opening(now));
            return Admission::Record { previous: None };
        };
        if window.is_over(now) {
            let previous = std::mem::replace(window, Window::opening(now)).unrecorded;
            return Admission::Record { previous };
        }
        if window.recorded < self.allowance {
            window.recorded += 1;
            return Admission::Record { previous: None };
        }
        let first = window.unrecorded.is_none();
        window
            .unrecorded
            .get_or_insert_with(|| Unrecorded::empty(cause, now))
            .add(about, action, 1, now);
        Admission::Count { first }
    }

    /// Counts `n` refusals of `action` charged to `cause` at `now` that get no record one by
    /// one whatever the allowance (they were turned away before any work, such as a lock, that
    /// recording takes): they appear in the cause's summary.
    pub fn count(&mut self, cause: &Cause, action: &str, n: u32, now: i64) {
        let window = self.windows.entry(cause.clone()).or_insert(Window {
            started: now,
            recorded: 0,
            unrecorded: None,
        });
        window
            .unrecorded
            .get_or_insert_with(|| Unrecorded::empty(cause, now))
            .add("", action, n, now);
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

    /// Everything left unrecorded, windows over or not, and from now on every refusal is
    /// recorded (pimd is stopping: nothing counted later could be written).
    pub fn close(&mut self) -> Vec<Unrecorded> {
        self.closed = true;
        let mut out: Vec<Unrecorded> = self
            .windows
            .drain()
            .filter_map(|(_, w)| w.unrecorded)
            .collect();
        out.sort_by_key(|u| u.first);
        out
    }

    /// Takes back counts whose summary could not be written (e.g. the disk is full), so that
    /// a later sweep or refusal writes them instead of losing them.
    pub fn restore(&mut self, unrecorded: Unrecorded) {
        match self.windows.get_mut(&unrecorded.cause) {
            Some(window) => match &mut window.unrecorded {
                Some(kept) => kept.merge(unrecorded),
                None => window.unrecorded = Some(unrecorded),
            },
            None => {
                // A window that is already over: the next sweep hands it back again.
                let cause = unrecorded.cause.clone();
                let window = Window {
                    started: unrecorded.last - WINDOW_SECS,
                    recorded: self.allowance,
                    unrecorded: Some(unrecorded),
                };
                self.windows.insert(cause, window);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(actor: &str, user: &str) -> Cause {
        Cause {
            actor: actor.into(),
            user: user.into(),
            ..Cause::default()
        }
    }

    fn admit_n(limiter: &mut RefusalLimiter, cause: &Cause, n: u32, now: i64) -> (u32, u32) {
        let (mut recorded, mut counted) = (0, 0);
        for _ in 0..n {
            match limiter.admit(cause, "activate", "", now) {
                Admission::Record { .. } => recorded += 1,
                Admission::Count { .. } => counted += 1,
            }
        }
        (recorded, counted)
    }

    impl Unrecorded {
        fn total(&self) -> u32 {
            self.counts.values().flat_map(BTreeMap::values).sum()
        }
    }

    fn counts(entries: &[(&str, &[(&str, u32)])]) -> BTreeMap<String, BTreeMap<String, u32>> {
        entries
            .iter()
            .map(|(about, actions)| {
                let actions = actions.iter().map(|(a, n)| (a.to_string(), *n)).collect();
                (about.to_string(), actions)
            })
            .collect()
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
                counts: counts(&[("", &[("activate", 30)])]),
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
        assert_eq!(
            limiter.admit(&mallory, "approve", "alice", 1010),
            Admission::Count { first: true }
        );
        assert_eq!(
            limiter.admit(&mallory, "activate", "", 1015),
            Admission::Count { first: false }
        );
        assert_eq!(
            limiter.admit(&mallory, "approve", "alice", 1020),
            Admission::Count { first: false }
        );
        let Admission::Record {
            previous: Some(previous),
        } = limiter.admit(&mallory, "activate", "", 1000 + WINDOW_SECS)
        else {
            panic!("the refusal after the window is recorded with the summary");
        };
        assert_eq!(
            previous.counts,
            counts(&[("", &[("activate", 1)]), ("alice", &[("approve", 2)])])
        );
        assert_eq!(
            (previous.first, previous.last, previous.total()),
            (1010, 1020, 3)
        );
        // Handed over once: nothing is left for the sweep.
        assert!(limiter.take_ended(5000).is_empty());
    }

    #[test]
    fn given_refusals_about_many_people_then_the_first_are_named_and_the_rest_counted_together() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, RECORDS_PER_WINDOW, 1000);
        for n in 0..MAX_NAMED + 5 {
            limiter.admit(&mallory, "admin-revoke", &format!("user{n}"), 1001);
        }
        limiter.admit(&mallory, "admin-revoke", "user0", 1002);
        let [summary] = &limiter.take_ended(2000)[..] else {
            panic!("one summary");
        };
        assert_eq!(summary.counts.len(), MAX_NAMED + 1);
        assert_eq!(summary.counts["user0"]["admin-revoke"], 2);
        assert_eq!(summary.counts[OTHERS]["admin-revoke"], 5);
        assert_eq!(summary.total(), (MAX_NAMED + 6) as u32);
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
        let totals: Vec<(&Cause, u32)> = ended.iter().map(|u| (&u.cause, u.total())).collect();
        assert_eq!(totals, [(&mallory, 5), (&pam_alice, 1)]);
    }

    #[test]
    fn given_close_then_open_windows_hand_over_and_everything_later_is_recorded() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, 23, 1000);
        admit_n(&mut limiter, &cause("eve", ""), 3, 1000);
        let all = limiter.close();
        assert_eq!(all.len(), 1);
        assert_eq!((&all[0].cause, all[0].total()), (&mallory, 3));
        assert_eq!(admit_n(&mut limiter, &mallory, 30, 1001), (30, 0));
        assert!(limiter.close().is_empty());
    }

    #[test]
    fn given_a_summary_that_could_not_be_written_then_restore_keeps_it_for_later() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, 25, 1000);
        let taken = limiter.take_ended(1000 + WINDOW_SECS);
        assert_eq!(taken.len(), 1);
        limiter.restore(taken[0].clone());
        // The next sweep hands it back.
        assert_eq!(limiter.take_ended(1000 + WINDOW_SECS + 1), taken);

        // Restored into a window that is still open: merged with what it counts since.
        limiter.restore(taken[0].clone());
        assert!(matches!(
            limiter.admit(&mallory, "activate", "", 2000),
            Admission::Record { previous: Some(p) } if p.total() == 5
        ));
        admit_n(&mut limiter, &mallory, 21, 2001);
        limiter.restore(taken[0].clone());
        let [merged] = &limiter.take_ended(3000)[..] else {
            panic!("one summary");
        };
        assert_eq!(merged.total(), 2 + 5);
        assert_eq!((merged.first, merged.last), (1000, 2001));
    }

    #[test]
    fn given_refusals_counted_without_records_then_they_are_in_the_summary_and_take_no_record() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        limiter.count(&mallory, "calls-in-progress", 7, 1000);
        assert_eq!(admit_n(&mut limiter, &mallory, 20, 1001), (20, 0));
        limiter.count(&mallory, "calls-in-progress", 3, 1002);
        let [summary] = &limiter.take_ended(1000 + WINDOW_SECS)[..] else {
            panic!("one summary");
        };
        assert_eq!(
            summary.counts,
            counts(&[("", &[("calls-in-progress", 10)])])
        );
        assert_eq!((summary.first, summary.last), (1000, 1002));
    }

    #[test]
    fn given_another_allowance_then_it_is_the_number_recorded_one_by_one() {
        let mut limiter = RefusalLimiter::allowing(3);
        assert_eq!(admit_n(&mut limiter, &cause("bob", ""), 10, 1000), (3, 7));
    }

    #[test]
    fn given_a_clock_that_went_back_then_the_window_starts_again() {
        let mut limiter = RefusalLimiter::default();
        let mallory = cause("mallory", "");
        admit_n(&mut limiter, &mallory, RECORDS_PER_WINDOW + 2, 1000);
        assert!(matches!(
            limiter.admit(&mallory, "activate", "", 900),
            Admission::Record { previous: Some(p) } if p.total() == 2
        ));
    }
}
