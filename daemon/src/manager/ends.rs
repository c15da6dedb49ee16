//! A grant's end for the processes that still carry its group (ending.rs), and the warnings
//! before it: which endings and warnings are due, and their records. The work on processes
//! runs without the manager's lock (startup.rs), between `*_due` and `record_*`.

use super::{Audit, Caller, Manager, DAEMON};
use crate::ending::{self, Failed, Step, Target};
use crate::model::{AuditEntry, Ending, Outcome};
use crate::store::{StoreError, Tx};
use pim_common::types::GrantEnd;
use pim_common::vocab::{AuditAction, EventKind};
use pim_common::PimError;
use pim_config::OnEnd;

/// Processes one record lists; the rest are counted.
const LISTED_PROCESSES: usize = 32;
/// Default `end_grace` for a grant whose role is gone from the configuration.
const GRACE_WITHOUT_ROLE_SECS: u64 = 10;

/// One step of an ending to run: SIGTERM, or (`kill`) the freeze and SIGKILL.
#[derive(Debug, Clone)]
pub struct EndJob {
    pub grant_id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub grace_secs: i64,
    pub targets: Vec<Target>,
    pub kill: bool,
    /// The grant starts of the user and group when the step was handed out: one more
    /// meanwhile aborts it (a new live grant may cover the group again).
    pub starts: GrantStarts,
    pub starts_seen: u64,
}

/// How many grants of each (user, group) this pimd started, shared with the steps that run
/// outside the manager's lock.
#[derive(Debug, Clone, Default)]
pub struct GrantStarts(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, String), u64>>>,
);

impl GrantStarts {
    pub fn get(&self, user: &str, group: &str) -> u64 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(user.to_string(), group.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn bump(&self, user: &str, group: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((user.to_string(), group.to_string()))
            .or_insert(0) += 1;
    }
}

impl EndJob {
    /// Runs the step for every uid and gid of the user and group (ending.rs).
    /// A failure part way returns what was done before it, with the error.
    pub fn run(&self, table: &dyn crate::processes::ProcessTable) -> Result<Step, Failed> {
        let mut all = Step {
            signalled: Vec::new(),
            left: 0,
        };
        for target in &self.targets {
            // Processes under the user's subordinate uids (rootless containers) are theirs.
            let mut target = target.clone();
            target.subuids = table
                .subuids(&self.user, target.uid)
                .map_err(Failed::from)?;
            let abort = || self.starts.get(&self.user, &self.group) != self.starts_seen;
            let step = if self.kill {
                ending::kill_unless(table, target, &abort)
            } else {
                ending::terminate_unless(table, target, &abort)
            };
            match step {
                Ok(step) => {
                    all.signalled.extend(step.signalled);
                    all.left += step.left;
                }
                Err(mut failed) => {
                    all.signalled.append(&mut failed.step.signalled);
                    all.left += failed.step.left.max(1);
                    failed.step = all;
                    return Err(failed);
                }
            }
        }
        Ok(all)
    }
}

/// A warning to write before a grant's end.
#[derive(Debug, Clone)]
pub struct WarnJob {
    pub grant_id: i64,
    pub user: String,
    pub role: String,
    pub ends_at: i64,
    pub lead_secs: u64,
    pub targets: Vec<Target>,
    pub line: String,
}

impl WarnJob {
    /// Writes the line on the user's terminals; how many took it.
    pub fn run(&self, table: &dyn crate::processes::ProcessTable) -> std::io::Result<usize> {
        let mut written = 0;
        for target in &self.targets {
            written += ending::warn(table, target.clone(), &self.line)?;
        }
        Ok(written)
    }
}

impl Manager {
    /// The grace an ending of a grant of `role` gets, or None when its processes are kept:
    /// `on_end = "terminate"`, or a role gone from the configuration, ends them.
    pub(super) fn ending_grace(&self, role: &str) -> Option<u64> {
        match self.config.role(role) {
            Some(r) if r.on_end == OnEnd::Keep => None,
            Some(r) => Some(r.end_grace_secs),
            None => Some(GRACE_WITHOUT_ROLE_SECS),
        }
    }

    /// The uids and gids an ending or a warning is about: those recorded when PIM added the
    /// membership, less a uid that now names another user (renumbered: its processes are
    /// someone else's).
    fn targets(&mut self, user: &str, group: &str) -> Result<Vec<Target>, PimError> {
        let ids = self.store.read(|tx| tx.setgid_ids(user, group))?;
        Ok(ids
            .into_iter()
            .filter(|&(uid, _)| self.accounts.user_name(uid).is_none_or(|name| name == user))
            .filter_map(|(uid, gid)| Target::new(uid, gid))
            .collect())
    }

    /// Why an ending must not touch the user's processes now, if it must not: another live
    /// grant covers the group, or the user holds it outside PIM (a permanent member, added by
    /// hand, the primary group). A lookup that fails is an error: the ending waits.
    fn reason_to_spare(&mut self, e: &Ending) -> Result<Option<String>, PimError> {
        let (live, managed) = self.store.read(|tx| {
            let live = tx.live_grants_of(&e.user)?;
            Ok::<_, PimError>((live, tx.has_membership(&e.user, &e.group)?))
        })?;
        if let Some(g) = live.iter().find(|g| g.group == e.group) {
            return Ok(Some(format!(
                "grant {} of role {} still covers group {}",
                g.id, g.role, e.group
            )));
        }
        if let Some(role) = self.permanent_role_of(&e.user, &e.group)? {
            return Ok(Some(format!(
                "{} is a permanent member of role {role}",
                e.user
            )));
        }
        if !managed && self.in_group(&e.user, &e.group)? {
            return Ok(Some(format!(
                "{} is a member of group {} outside PIM",
                e.user, e.group
            )));
        }
        Ok(None)
    }

    /// The steps of endings due now, and the first lookup that failed (its ending waits; the
    /// others go on). Endings that must not touch anything are closed here, each with its
    /// record.
    pub fn endings_due(&mut self) -> Result<(Vec<EndJob>, Option<PimError>), PimError> {
        let now = self.now();
        let open = self.store.read(|tx| tx.open_endings())?;
        let mut jobs = Vec::new();
        let mut first_error = None;
        for e in open {
            if e.term_at.is_some_and(|at| now < at + e.grace_secs) {
                continue;
            }
            let audit = Audit::new(DAEMON, AuditAction::ProcessesEnd).about(&e.user, &e.role);
            let spare = match self.reason_to_spare(&e) {
                Ok(spare) => spare,
                Err(err) => {
                    first_error.get_or_insert(err);
                    continue;
                }
            };
            let targets = self.targets(&e.user, &e.group)?;
            let closing = match spare {
                Some(why) => Some((
                    Outcome::Success,
                    format!("grant {}: processes left running: {why}", e.grant_id),
                )),
                None if targets.is_empty() => Some((
                    Outcome::Error,
                    format!(
                        "grant {}: no uid and gid of {} and group {} were recorded, so pimd \
                         cannot tell their processes; end them by hand",
                        e.grant_id, e.user, e.group
                    ),
                )),
                None => None,
            };
            if let Some((outcome, detail)) = closing {
                let entry = audit.entry(now, outcome, detail);
                self.commit(|tx| {
                    tx.ending_done(e.grant_id, now)?;
                    Ok(tx.audit(entry)?)
                })?;
                continue;
            }
            jobs.push(EndJob {
                grant_id: e.grant_id,
                role: e.role,
                grace_secs: e.grace_secs,
                targets,
                kill: e.term_at.is_some(),
                starts_seen: self.grant_starts.get(&e.user, &e.group),
                starts: self.grant_starts.clone(),
                user: e.user,
                group: e.group,
            });
        }
        Ok((jobs, first_error))
    }

    /// Records the steps run: the processes signalled, in the audit and as an event, with the
    /// ending's new state in the same transaction. A table that could not be read changes
    /// nothing: the step runs again.
    pub fn record_endings(
        &mut self,
        results: Vec<(EndJob, Result<Step, Failed>)>,
    ) -> Result<(), PimError> {
        let now = self.now();
        let mut first_error = None;
        for (job, result) in results {
            let step = match result {
                Ok(step) => step,
                Err(failed) => {
                    // Recorded as an error, with what was signalled before it; the ending
                    // stays as it was and the step runs again.
                    let message = format!(
                        "cannot end the processes of {} carrying group {}: {}; pimd tries again",
                        job.user, job.group, failed.error
                    );
                    let detail = format!(
                        "grant {}: {message}; signalled before: {}",
                        job.grant_id,
                        ending::describe(&failed.step.signalled, LISTED_PROCESSES)
                    );
                    let audit =
                        Audit::new(DAEMON, AuditAction::ProcessesEnd).about(&job.user, &job.role);
                    let entry = audit.entry(now, Outcome::Error, detail);
                    if let Err(e) = self.commit(|tx| Ok(tx.audit(entry)?)) {
                        first_error.get_or_insert(e);
                    }
                    first_error.get_or_insert(PimError::Internal(message));
                    continue;
                }
            };
            let listed = ending::describe(&step.signalled, LISTED_PROCESSES);
            let (user, group) = (&job.user, &job.group);
            let done = step.left == 0;
            let detail = match (job.kill, done) {
                (false, true) => format!(
                    "grant {}: SIGTERM to {} process(es) of {user} carrying group {group}: \
                     {listed}; none left",
                    job.grant_id,
                    step.signalled.len()
                ),
                (false, false) => format!(
                    "grant {}: SIGTERM to {} process(es) of {user} carrying group {group}: \
                     {listed}; {} left, SIGKILL in {}",
                    job.grant_id,
                    step.signalled.len(),
                    step.left,
                    pim_common::duration::format(job.grace_secs as u64)
                ),
                (true, true) => format!(
                    "grant {}: after {}, SIGKILL to {} process(es) of {user} carrying group \
                     {group}: {listed}; none left",
                    job.grant_id,
                    pim_common::duration::format(job.grace_secs as u64),
                    step.signalled.len()
                ),
                (true, false) => format!(
                    "grant {}: SIGKILL to {} process(es) of {user} carrying group {group}: \
                     {listed}; {} still carry it, pimd goes on",
                    job.grant_id,
                    step.signalled.len(),
                    step.left
                ),
            };
            let audit = Audit::new(DAEMON, AuditAction::ProcessesEnd).about(user, &job.role);
            let entry = audit.entry(now, Outcome::Success, detail);
            let result =
                self.commit_and_tell(EventKind::ProcessesEnded, job.grant_id, entry, |tx| {
                    if !job.kill {
                        tx.ending_terminated(job.grant_id, now)?;
                    }
                    if done {
                        tx.ending_done(job.grant_id, now)?;
                    }
                    Ok(())
                });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Commits `change` with `entry`, then sends the event of kind `kind` that tells it.
    fn commit_and_tell(
        &mut self,
        kind: EventKind,
        grant_id: i64,
        entry: AuditEntry,
        change: impl FnOnce(&Tx) -> Result<(), StoreError>,
    ) -> Result<(), PimError> {
        let (user, role, detail) = (entry.user.clone(), entry.role.clone(), entry.detail.clone());
        self.commit(|tx| {
            change(tx)?;
            Ok(tx.audit(entry)?)
        })?;
        self.event(kind, &user, &role, 0, grant_id, DAEMON, detail);
        Ok(())
    }

    /// The warnings due now: for each live grant of a role with `warn_before`, the shortest
    /// lead time already reached and not yet sent for this end. A grant no longer than a
    /// lead time gets no warning for it. Lead times passed while pimd was down are recorded
    /// as sent with the one that goes, so each goes at most once.
    pub fn warnings_due(&mut self) -> Result<(Vec<WarnJob>, Option<PimError>), PimError> {
        let now = self.now();
        let live = self.store.read(|tx| tx.live_grants())?;
        let mut jobs = Vec::new();
        for grant in live {
            let Some(role) = self.config.role(&grant.role).cloned() else {
                continue;
            };
            let left = grant.ends_at - now;
            let reached: Vec<u64> = role
                .warn_before_secs
                .iter()
                .copied()
                .filter(|&lead| {
                    left > 0
                        && left <= lead as i64
                        && grant.ends_at - grant.started_at > lead as i64
                })
                .collect();
            let Some(&lead) = reached.last() else {
                continue;
            };
            let sent = self
                .store
                .read(|tx| tx.warning_sent(grant.id, grant.ends_at, lead))?;
            if sent {
                continue;
            }
            jobs.push(WarnJob {
                grant_id: grant.id,
                targets: self.targets(&grant.user, &grant.group)?,
                line: ending::warning_line(&grant.role, &grant.group, left),
                user: grant.user,
                role: grant.role,
                ends_at: grant.ends_at,
                lead_secs: lead,
            });
        }
        Ok((jobs, None))
    }

    /// Records the warnings written (each lead time reached counts as sent), with an event.
    pub fn record_warnings(
        &mut self,
        results: Vec<(WarnJob, std::io::Result<usize>)>,
    ) -> Result<(), PimError> {
        let now = self.now();
        let mut first_error = None;
        for (job, written) in results {
            let left = pim_common::duration::format((job.ends_at - now).max(1) as u64);
            let (outcome, detail) = match written {
                Ok(n) => (
                    Outcome::Success,
                    format!(
                        "grant {} ends in {left}: warned on {n} terminal(s); 'pim extend {}' \
                         keeps it",
                        job.grant_id, job.role
                    ),
                ),
                Err(e) => (
                    Outcome::Error,
                    format!(
                        "grant {} ends in {left}: cannot look for the terminals of {}: {e}",
                        job.grant_id, job.user
                    ),
                ),
            };
            let role = self.config.role(&job.role).cloned();
            let leads: Vec<u64> = role
                .map(|r| r.warn_before_secs)
                .unwrap_or_default()
                .into_iter()
                .filter(|&lead| lead >= job.lead_secs)
                .collect();
            let audit = Audit::new(DAEMON, AuditAction::EndWarning).about(&job.user, &job.role);
            let entry = audit.entry(now, outcome, detail);
            // A warning that could not go is not marked sent: it is tried again.
            let sent = outcome == Outcome::Success;
            if !sent {
                first_error.get_or_insert(PimError::Internal(format!(
                    "the warning of grant {} could not be written; pimd tries again",
                    job.grant_id
                )));
            }
            let result = self.commit_and_tell(EventKind::GrantEnding, job.grant_id, entry, |tx| {
                if sent {
                    for &lead in leads.iter().chain([&job.lead_secs]) {
                        tx.record_warning(job.grant_id, job.ends_at, lead, now)?;
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Audits (as an error) that pimd cannot see every process (processes.rs, hidepid).
    pub fn audit_proc_problem(&mut self, problem: &str) -> Result<(), PimError> {
        let entry = Audit::new(DAEMON, AuditAction::ProcessesEnd).entry(
            self.now(),
            Outcome::Error,
            format!("at start: {problem}"),
        );
        self.commit(|tx| Ok(tx.audit(entry)?))
    }

    /// When endings or warnings next have work: the next SIGKILL step, or the next lead
    /// time of a live grant.
    pub fn next_end_deadline(&mut self) -> Result<Option<i64>, PimError> {
        let now = self.now();
        let (step, live) = self
            .store
            .read(|tx| Ok::<_, PimError>((tx.next_ending_step()?, tx.live_grants()?)))?;
        let warnings = live.iter().flat_map(|g| {
            self.config
                .role(&g.role)
                .map(|r| r.warn_before_secs.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|lead| g.ends_at - lead as i64)
                .filter(|&at| at > now)
        });
        Ok(step.into_iter().chain(warnings).min())
    }

    /// For each of the caller's live grants, how many of their processes carry the group now
    /// and what becomes of them at the end (`pim status`). A table that cannot be read
    /// leaves the count at -1, never 0.
    pub fn grant_ends(&mut self, caller: &Caller) -> Result<Vec<GrantEnd>, PimError> {
        let live = self.store.read(|tx| tx.live_grants_of(&caller.name))?;
        let mut ends = Vec::new();
        for g in live {
            let grace = self.ending_grace(&g.role);
            let targets = self.targets(&g.user, &g.group)?;
            let counted: std::io::Result<Vec<usize>> = targets
                .iter()
                .map(|t| ending::count(&*self.processes, t.clone()))
                .collect();
            ends.push(GrantEnd {
                grant_id: g.id,
                processes: counted.map_or(-1, |c| c.iter().sum::<usize>() as i64),
                on_end: if grace.is_some() { "terminate" } else { "keep" }.into(),
                end_grace_secs: grace.unwrap_or(0),
            });
        }
        Ok(ends)
    }
}

#[cfg(test)]
mod tests;
