//! Time-driven work: ending what is due (grants, requests, eligibility), memberships no
//! live grant needs, the set-group-ID sweeps after a membership went (setgid.rs), and when
//! there is next something to do.

use super::*;

/// A sweep whose walk failed is tried again after this, doubling with each failure in a row.
const SWEEP_RETRY_SECS: i64 = 60;

/// Files cleared (or failures) one audit record of a sweep lists: every one is listed, in as
/// many records as it takes, each bounded (a listed path is at most about 1 KiB).
const SWEEP_RECORD_ITEMS: usize = 32;

/// After a sweep is done, it is looked at again (see `setgid_sweeps_due`) until this many
/// days after the grant's end.
const SWEEP_RECHECK_DAYS: i64 = 30;

const DAY_SECS: i64 = 86_400;

/// What a round makes of a sweep.
#[derive(Clone, Copy)]
enum SweepState {
    /// Nothing left to look for.
    Done,
    /// A done sweep looked at again, and still nothing.
    Rechecked,
    /// Walked; another walk follows.
    Walked,
    /// Failed; another walk follows after a back-off.
    Failed,
}

/// `items` in groups of [`SWEEP_RECORD_ITEMS`].
fn chunks(items: impl Iterator<Item = String>) -> Vec<Vec<String>> {
    let items: Vec<String> = items.collect();
    items
        .chunks(SWEEP_RECORD_ITEMS)
        .map(<[String]>::to_vec)
        .collect()
}

/// One piece of time-driven work: reconciliation runs every job in [`JOBS`] in turn, and
/// sleeps until the earliest of their next deadlines (or the periodic tick of `startup`,
/// which also catches what has no deadline: memberships a crash left behind, clock jumps).
/// A coming kind of work is one more job and one more entry in the list. (The set-group-ID
/// sweeps below are not one: their walk of the file systems runs outside the manager, on the
/// blocking pool, so that calls and PAM checks never wait for it; `startup`'s sweep loop asks
/// for the due ones after each reconciliation and records what the walk found.)
pub(super) trait Job {
    /// Does what is due at `now`; the first error is returned after trying everything.
    fn run(&self, m: &mut Manager, now: i64) -> Result<(), PimError>;

    /// When this job next has work, if a time is known.
    fn next_deadline(&self, _m: &mut Manager, _now: i64) -> Result<Option<i64>, PimError> {
        Ok(None)
    }
}

/// The jobs, in the order they run: grants end before memberships no live grant needs are
/// taken back; assignments are held to their caps before the notices of their ends go.
const JOBS: &[&dyn Job] = &[
    &RecordUnrecordedRefusals,
    &ExpireGrants,
    &EndLostEligibility,
    &ReleaseOrphanedMemberships,
    &ExpireRequests,
    &chain::PruneAudit,
    &super::alerts::PruneAlerts,
    &CompleteReviews,
    &StartRecurringReviews,
    &super::assignments::HoldAssignmentsToCaps,
    &super::assignments::StartActiveAssignments,
    &super::assignments::AssignmentNotices,
    &EvaluateAlerts,
    // Last: a head it publishes covers what this round wrote.
    &chain::PublishAuditHead,
];

/// Does `f` with every one of `items`, even after one failed; the first error is returned.
fn try_each<T>(
    items: impl IntoIterator<Item = T>,
    mut f: impl FnMut(T) -> Result<(), PimError>,
) -> Result<(), PimError> {
    let mut first_error = None;
    for item in items {
        if let Err(e) = f(item) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Writes the summaries of refusal and event windows that are over.
struct RecordUnrecordedRefusals;

impl Job for RecordUnrecordedRefusals {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        m.record_unrecorded_refusals(false)
    }
}

/// Ends the grants whose time has come.
struct ExpireGrants;

impl Job for ExpireGrants {
    fn run(&self, m: &mut Manager, now: i64) -> Result<(), PimError> {
        let due = m.store.read(|tx| tx.due_grants(now))?;
        try_each(due, |grant| {
            let audit = Audit::new(DAEMON, AuditAction::Expire).about(&grant.user, &grant.role);
            let detail = format!(
                "grant {} ended at {}",
                grant.id,
                describe(grant.ends_at, now)
            );
            m.end_grant(&grant, &audit, "expired", detail)
        })
    }

    fn next_deadline(&self, m: &mut Manager, _now: i64) -> Result<Option<i64>, PimError> {
        Ok(m.store.read(|tx| tx.next_grant_end())?)
    }
}

/// Ends the grants whose user may no longer hold the role (an assignment over, a user out of
/// an eligible group).
struct EndLostEligibility;

impl Job for EndLostEligibility {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        m.end_every_grant_without_eligibility()
    }

    /// The end of an assignment a live grant may depend on.
    fn next_deadline(&self, m: &mut Manager, now: i64) -> Result<Option<i64>, PimError> {
        Ok(m.store.read(|tx| tx.next_assignment_end(now))?)
    }
}

/// Takes back memberships no live grant needs (including those a crash left behind).
struct ReleaseOrphanedMemberships;

impl Job for ReleaseOrphanedMemberships {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        let orphans = m.store.read(|tx| tx.orphaned_memberships())?;
        try_each(orphans, |(user, group)| m.release_membership(&user, &group))
    }
}

/// Ends the requests left undecided past their time.
struct ExpireRequests;

impl Job for ExpireRequests {
    fn run(&self, m: &mut Manager, now: i64) -> Result<(), PimError> {
        let due = m.store.read(|tx| tx.due_requests(now))?;
        try_each(due, |request| m.expire_request(&request))
    }

    fn next_deadline(&self, m: &mut Manager, _now: i64) -> Result<Option<i64>, PimError> {
        Ok(m.store.read(|tx| tx.next_request_expiry())?)
    }
}

/// Applies the decisions and default of the access reviews whose end has come.
struct CompleteReviews;

impl Job for CompleteReviews {
    fn run(&self, m: &mut Manager, now: i64) -> Result<(), PimError> {
        let due: Vec<_> = m
            .store
            .read(|tx| tx.open_reviews())?
            .into_iter()
            .filter(|r| r.ends_at <= now)
            .collect();
        try_each(due, |review| m.complete_review(&review))
    }

    fn next_deadline(&self, m: &mut Manager, _now: i64) -> Result<Option<i64>, PimError> {
        Ok(m.store.read(|tx| tx.next_review_end())?)
    }
}

/// Starts the recurring access reviews that are due (a role's `review_every`).
struct StartRecurringReviews;

impl Job for StartRecurringReviews {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        let config = m.config.clone();
        try_each(config.roles.values(), |role| m.start_recurring_review(role))
    }

    fn next_deadline(&self, m: &mut Manager, _now: i64) -> Result<Option<i64>, PimError> {
        let config = m.config.clone();
        let mut next = None;
        for role in config.roles.values() {
            if let Some(due) = m.next_recurring_review(role)? {
                next = Some(next.map_or(due, |n: i64| n.min(due)));
            }
        }
        Ok(next)
    }
}

/// Evaluates the alerts (see `manager/alerts.rs`) on the store and the last look at the host,
/// after the jobs above have ended what was due; the look itself is made outside the manager
/// (`startup`'s alert loop), like the set-group-ID sweep's walk.
struct EvaluateAlerts;

impl Job for EvaluateAlerts {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        m.evaluate_alerts()
    }
}

impl Manager {
    /// Runs every job of [`JOBS`]: ends what is due, and takes back memberships no live grant
    /// needs. Returns the first error after trying everything.
    pub fn reconcile(&mut self) -> Result<(), PimError> {
        let now = self.now();
        try_each(JOBS, |job| job.run(self, now))
    }

    /// When reconcile next has work: the earliest of its jobs' deadlines.
    pub fn next_deadline(&mut self) -> Result<Option<i64>, PimError> {
        let now = self.now();
        let mut deadlines = Vec::with_capacity(JOBS.len());
        for job in JOBS {
            deadlines.push(job.next_deadline(self, now)?);
        }
        Ok(deadlines.into_iter().flatten().min())
    }

    /// The sweeps to run now: every one not done, except those of users who hold the group
    /// again outside PIM (by hand, as a permanent member, as their primary group: their files
    /// of the group are theirs to keep while they do) and those whose last walk failed, which
    /// wait a back-off (a minute, doubling up to an hour). And the done ones to look at again,
    /// whose grants ended less than [`SWEEP_RECHECK_DAYS`] ago: all of them once after each
    /// start of pimd and whenever one has not been looked at for a day (one walk serves them
    /// all, so they all go with it).
    pub fn setgid_sweeps_due(&mut self) -> Result<Vec<SweepJob>, PimError> {
        let now = self.now();
        let at_start = self.recheck_at_start;
        let since = now - SWEEP_RECHECK_DAYS * DAY_SECS;
        let (pending, rechecks, ids) = self.store.read(|tx| {
            let pending = tx.pending_setgid_sweeps()?;
            let rechecks = tx.setgid_rechecks(since)?;
            let mut ids = std::collections::HashMap::new();
            let pairs = pending
                .iter()
                .map(|p| (&p.user, &p.group))
                .chain(rechecks.iter().map(|r| (&r.user, &r.group)));
            for (user, group) in pairs {
                let found = tx.setgid_ids(user, group)?;
                ids.insert((user.clone(), group.clone()), found);
            }
            Ok::<_, crate::store::StoreError>((pending, rechecks, ids))
        })?;
        self.recheck_at_start = false;
        let recheck_due = at_start
            || rechecks
                .iter()
                .any(|r| r.rechecked_at.is_none_or(|at| now >= at + DAY_SECS));
        let ids_of = |user: &str, group: &str| -> Vec<Target> {
            ids.get(&(user.to_string(), group.to_string()))
                .into_iter()
                .flatten()
                .map(|&(uid, gid)| Target { uid, gid })
                .collect()
        };
        let pending = pending
            .into_iter()
            .filter(|p| {
                let wait = SWEEP_RETRY_SECS << p.failures.saturating_sub(1).min(6);
                p.failures == 0 || p.walked_at.is_none_or(|w| now >= w + wait.min(3600))
            })
            .map(|p| SweepJob {
                ids: ids_of(&p.user, &p.group),
                first: p.walked_at.is_none_or(|w| w < p.ended_through),
                user: p.user,
                group: p.group,
                ended_through: p.ended_through,
                recheck: false,
            });
        let rechecks = rechecks
            .into_iter()
            .filter(|_| recheck_due)
            .map(|r| SweepJob {
                ids: ids_of(&r.user, &r.group),
                user: r.user,
                group: r.group,
                ended_through: r.ended_through,
                first: false,
                recheck: true,
            });
        Ok(pending
            .chain(rechecks)
            // A failed lookup does not hold the sweep back: clearing a bit is the safe side.
            .filter(|j| !matches!(self.accounts.in_group(&j.user, &j.group), Ok(true)))
            .collect())
    }

    /// Records a round of sweeps: the files cleared and the failures (every one, in records
    /// of [`SWEEP_RECORD_ITEMS`]), the mounts not searched, with the sweep's new state, in one
    /// transaction per sweep. A sweep is done after a walk that began with no process of the
    /// user carrying the group and found nothing to clear; a look again at a done sweep that
    /// finds anything makes it not done. Returns true when a walk cleared files and no such
    /// process was left: walking again at once shows whether that made the sweep done (a file
    /// cleared late could have been run meanwhile).
    pub fn record_setgid_sweeps(
        &mut self,
        results: Vec<(SweepJob, Swept)>,
    ) -> Result<bool, PimError> {
        let now = self.now();
        let mut again = false;
        let mut first_error = None;
        for (job, swept) in results {
            let (user, group) = (job.user.as_str(), job.group.as_str());
            let clear = Audit::new(DAEMON, AuditAction::SetgidClear).about(user, "");
            let sweep = Audit::new(DAEMON, AuditAction::SetgidSweep).about(user, "");
            let mut entries = Vec::new();
            let state = match swept {
                Swept::Waiting => continue,
                Swept::Gone => {
                    entries.push(sweep.entry(
                        now,
                        Outcome::Error,
                        format!(
                            "cannot look for files {user} made set-group-ID for group {group}: \
                             no uid and gid were recorded and the user or the group is gone \
                             from this host; pimd gives up (find them with: find / -xdev -perm \
                             -2000 -uid UID -gid GID)"
                        ),
                    ));
                    if job.recheck {
                        SweepState::Rechecked
                    } else {
                        SweepState::Done
                    }
                }
                Swept::Failed(why) => {
                    entries.push(sweep.entry(
                        now,
                        Outcome::Error,
                        format!("{why}; pimd tries again"),
                    ));
                    SweepState::Failed
                }
                Swept::Walked {
                    carried_before,
                    cleared,
                    failures,
                    not_searched,
                } => {
                    let listed = cleared.iter().map(|c| {
                        let bits = if c.mode_before & 0o4000 != 0 {
                            "set-user-ID and set-group-ID"
                        } else {
                            "set-group-ID"
                        };
                        format!(
                            "{} (device {}, inode {}): {bits} cleared, mode {:04o} -> {:04o}",
                            c.path, c.device, c.inode, c.mode_before, c.mode_after
                        )
                    });
                    for chunk in chunks(listed) {
                        entries.push(clear.entry(
                            now,
                            Outcome::Success,
                            format!("group {group}: {}", chunk.join("; ")),
                        ));
                    }
                    let listed = failures.iter().map(|f| format!("{}: {}", f.path, f.error));
                    for chunk in chunks(listed) {
                        entries.push(clear.entry(
                            now,
                            Outcome::Error,
                            format!("group {group}: {}; pimd tries again", chunk.join("; ")),
                        ));
                    }
                    if !not_searched.is_empty() {
                        entries.push(sweep.entry(
                            now,
                            Outcome::Error,
                            format!(
                                "not searched, as pimd never walks these file systems, though \
                                 they allow set-ID bits (mount them nosuid): {}",
                                not_searched.join(", ")
                            ),
                        ));
                    }
                    let clean = cleared.is_empty() && failures.is_empty();
                    again |= !carried_before && !cleared.is_empty() && failures.is_empty();
                    let (text, state) = if job.recheck && clean {
                        (
                            format!(
                                "looked again: no file of {user} is set-group-ID for group \
                                 {group}"
                            ),
                            SweepState::Rechecked,
                        )
                    } else if clean && !carried_before {
                        (
                            format!("no file of {user} is set-group-ID for group {group} any more"),
                            SweepState::Done,
                        )
                    } else if !failures.is_empty() {
                        (
                            format!(
                                "{} file(s) cleared, {} failure(s); pimd tries again",
                                cleared.len(),
                                failures.len()
                            ),
                            SweepState::Failed,
                        )
                    } else if carried_before {
                        (
                            format!(
                                "{} file(s) cleared; a process of {user} still carries group \
                                 {group} and could make more: pimd looks again once none does",
                                cleared.len()
                            ),
                            SweepState::Walked,
                        )
                    } else {
                        (
                            format!(
                                "{} file(s) cleared; pimd looks again to make sure none is left",
                                cleared.len()
                            ),
                            SweepState::Walked,
                        )
                    };
                    let outcome = if failures.is_empty() {
                        Outcome::Success
                    } else {
                        Outcome::Error
                    };
                    entries.push(sweep.entry(now, outcome, text));
                    state
                }
            };
            let result = self.commit(|tx| {
                match state {
                    SweepState::Done => {
                        tx.setgid_sweep_done(user, group, job.ended_through, now)?
                    }
                    SweepState::Rechecked => tx.setgid_sweep_rechecked(user, group, now)?,
                    _ if job.recheck => tx.setgid_sweep_reopened(user, group, now)?,
                    SweepState::Failed => tx.setgid_sweep_walked(user, group, now, true)?,
                    SweepState::Walked => tx.setgid_sweep_walked(user, group, now, false)?,
                }
                for entry in entries {
                    tx.audit(entry)?;
                }
                Ok(())
            });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(again), Err)
    }
}

#[cfg(test)]
mod tests;
