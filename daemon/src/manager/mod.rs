//! The domain core: every operation pimd offers, as plain Rust over a store, the host's
//! accounts and a clock. The D-Bus layer identifies the caller and delegates here; nothing in
//! this module knows about the bus.
//!
//! Order of effects, so that a crash never leaves a membership PIM cannot account for:
//! a grant and the record of the membership PIM is about to add are committed (with their
//! audit rows) before `gpasswd -a` runs; a grant is ended in the database before `gpasswd -d`
//! runs, and the membership record is only deleted after it succeeded. Reconciliation (at
//! start and periodically) finishes whatever a crash interrupted.
//!
//! One `impl Manager` per capability, each file with its tests beside it (`x.rs`, `x/tests.rs`):
//! - this file: `Manager`, `Caller`, `Outbox`, and what every capability uses: `commit`, the
//!   `Audit` record builder, refusal records and their summaries under a flood, call admission,
//!   events, the permission predicates (admin, auditor, approver, `may_govern`: admin or
//!   owner of the role) and eligibility;
//! - `activation`: roles, activate (or file a request), extend, deactivate, status; read the
//!   facts once, decide in pure code, write once;
//! - `approvals`: requests, approve, deny, cancel, requests expiring;
//! - `mfa`: enrolment, MFA status, code verification (`with_mfa`);
//! - `owners`: `may_govern`, the one predicate of governance (root, admins, or an owner of the
//!   role), and its refusal;
//! - `assignments`: eligible and active assignments, their caps, the notices before their end,
//!   renewal, and `pim show` of any request;
//! - `admin`: the administrators' calls, and the end of grants whose eligibility went;
//! - `access`: the PAM module's question and the audit of its denials;
//! - `reconcile`: time-driven work as a list of jobs (expiry, lost eligibility, orphaned
//!   memberships, ...), each with its next deadline, and the set-group-ID sweeps;
//! - `audit`: reading the audit trail, and which events a watcher may see;
//! - `chain`: the audit chain's head (syslog, head file), `pim audit verify`, retention;
//! - `grants`: starting and ending grants and the memberships they stand for (gpasswd);
//! - `recipients`: whom an event names for `notify_command`;
//! - `reviews`: access reviews (start, decide, the end applied, recurrence), suspensions of
//!   standing eligibility and their reinstatement, and the roles a caller decides for;
//! - `ends`: the user's processes that still carry the group at a grant's end (ending.rs),
//!   and the warnings before it;
//! - `alerts`: the alerts' facts, their evaluation written with its audit, listing and
//!   dismissing;
//! - `test_support`: the tests' shared environment (fixture configuration, fakes, helpers).

mod access;
mod activation;
mod admin;
mod alerts;
mod approvals;
mod assignments;
mod audit;
mod chain;
mod ends;
mod fleet;
mod grants;
mod mfa;
mod owners;
mod recipients;
mod reconcile;
mod reviews;

pub use chain::head_file_of;
pub use fleet::{
    Connector, Fetched, Fleet, FleetCall, Mirrored, MAX_HOST_TAGS, MAX_POLICY_BYTES,
    MAX_TICKET_BYTES, SHIP_BATCH,
};
pub use recipients::Recipient;

use crate::accounts::Accounts;
use crate::clock::{describe, Clock};
use crate::mfa::{LockoutPolicy, TotpCheck, TotpSecret};
use crate::model::{
    Assignment, AuditEntry, AuditQuery, Grant, NewGrant, Outcome, Request, RequestState,
};
use crate::policy::{self, Eligibility};
use crate::processes::ProcessTable;
use crate::refusals::{self, Admission, Cause, RefusalLimiter, Unrecorded};
use crate::setgid::{SweepJob, Swept, Target};
use crate::store::{Store, StoreError, Tx};
use crate::syslog::Severity;
use crate::throttle::{CallKind, CallLimiter};
use pim_common::duration;
use pim_common::text;
use pim_common::types::{
    AccessDecision, ActivateReply, AuditRecord, EventInfo, GrantInfo, MfaStatusInfo, RequestInfo,
    RoleInfo,
};
use pim_common::vocab::{ActivationState, AuditAction, EventKind};
use pim_common::PimError;
use pim_config::{Config, Principal, Role};
use std::sync::Arc;

/// Who is asking, as the bus vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub name: String,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Most groups one access check may name (a PAM line names a handful).
pub const MAX_ACCESS_GROUPS: usize = 64;

/// Events of one kind about one role that one person's calls send to watchers and
/// `notify_command` per window (of [`refusals::WINDOW_SECS`]); the rest are dropped, counted
/// and summarised in the audit.
pub const EVENTS_PER_WINDOW: u32 = 20;

/// How long after its creation a pending enrolment's secret is shown again by `pim mfa enroll`;
/// after that a new one replaces it.
pub const PENDING_SECRET_SHOWN_SECS: i64 = 600;

/// The daemon's own name in audit records for what it does by itself (expiry, reconciliation).
const DAEMON: &str = "pimd";
/// The actor of the PAM module's access checks (asked by root on a user's behalf).
const PAM_CHECK: &str = "pam";
/// Actor names that are not people: a local account that happens to have one of these names
/// does not get to read these records as its own.
const NOT_PEOPLE: [&str; 2] = [DAEMON, PAM_CHECK];

impl From<StoreError> for PimError {
    fn from(e: StoreError) -> Self {
        PimError::Internal(format!("{e}; nothing was changed"))
    }
}

impl From<crate::mfa::MfaError> for PimError {
    fn from(e: crate::mfa::MfaError) -> Self {
        PimError::Internal(e.to_string())
    }
}

/// What an operation leaves for the outside world once committed: audit lines for syslog and
/// events for watchers and `notify_command`.
#[derive(Default)]
pub struct Outbox {
    pub audit: Vec<AuditEntry>,
    pub events: Vec<EventInfo>,
    /// Lines for syslog that are not audit records (the audit chain's head).
    pub syslog: Vec<(Severity, String)>,
}

pub struct Manager {
    config: Arc<Config>,
    store: Box<dyn Store>,
    accounts: Box<dyn Accounts>,
    clock: Box<dyn Clock>,
    /// The host's processes, counted for `status` (the ending's work runs outside, ends.rs).
    processes: Box<dyn ProcessTable>,
    host: String,
    outbox: Outbox,
    refusals: RefusalLimiter,
    /// Events not sent because their actor's calls sent too many: the same windows and
    /// summaries as refusals.
    events: RefusalLimiter,
    calls: CallLimiter,
    /// No round of set-group-ID sweeps since this pimd started: the first one walks again
    /// every done sweep still within its look-again period.
    recheck_at_start: bool,
    /// Grants started, per user and group: a step of an ending that runs meanwhile stops.
    grant_starts: ends::GrantStarts,
    /// The audit chain's head, as published.
    head: chain::HeadKeeper,
    /// `[fleet]`: the link to the fleet's authority; `None` for a host on its own.
    fleet: Option<fleet::Fleet>,
    /// The last look at the host the alerts were evaluated with (nothing known before the
    /// first: the kinds that need it are not judged).
    host_look: crate::alerts::HostFacts,
}

/// What a summary record counts.
#[derive(Clone, Copy)]
enum Counted {
    Refusals,
    Events,
}

/// The fields every audit record of one operation shares.
#[derive(Clone)]
struct Audit<'a> {
    actor: &'a str,
    action: AuditAction,
    user: &'a str,
    role: &'a str,
    reason: &'a str,
    ticket: &'a str,
}

impl<'a> Audit<'a> {
    fn new(actor: &'a str, action: AuditAction) -> Self {
        Audit {
            actor,
            action,
            user: "",
            role: "",
            reason: "",
            ticket: "",
        }
    }

    /// Whose grant, request or enrolment, and which role.
    fn about(self, user: &'a str, role: &'a str) -> Self {
        Audit { user, role, ..self }
    }

    /// The user's own words: reason (or comment) and ticket.
    fn with_text(self, reason: &'a str, ticket: &'a str) -> Self {
        Audit {
            reason,
            ticket,
            ..self
        }
    }

    fn entry(&self, at: i64, outcome: Outcome, detail: impl Into<String>) -> AuditEntry {
        AuditEntry {
            at,
            actor: self.actor.to_string(),
            action: self.action,
            user: self.user.to_string(),
            role: self.role.to_string(),
            outcome,
            reason: self.reason.to_string(),
            ticket: self.ticket.to_string(),
            detail: detail.into(),
        }
    }
}

fn grant_info(g: &Grant) -> GrantInfo {
    GrantInfo {
        id: g.id,
        user: g.user.clone(),
        role: g.role.clone(),
        group: g.group.clone(),
        started_at: g.started_at,
        ends_at: g.ends_at,
        reason: g.reason.clone(),
        ticket: g.ticket.clone(),
    }
}

fn request_info(r: &Request, approved_by: Vec<String>) -> RequestInfo {
    RequestInfo {
        id: r.id,
        user: r.user.clone(),
        role: r.role.clone(),
        group: r.group.clone(),
        duration_secs: r.duration_secs,
        reason: r.reason.clone(),
        ticket: r.ticket.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        state: r.state,
        approvals_required: r.approvals_required,
        approved_by,
    }
}

/// A name for an audit record: as given when valid, else nothing (the refusal says why).
fn name_or_empty(name: &str) -> &str {
    if text::check_name("name", name).is_ok() {
        name
    } else {
        ""
    }
}

fn check_name(what: &str, name: &str) -> Result<(), PimError> {
    text::check_name(what, name).map_err(PimError::InvalidArgument)
}

/// The refusal of a role `name` the caller may not activate: the same for "no such role" and
/// "not eligible", so that roles cannot be probed. The client says where to see one's roles
/// ('pim roles').
fn not_eligible(name: &str) -> PimError {
    PimError::NotEligible(format!(
        "you are not eligible for a role named '{}'",
        text::escape(name)
    ))
}

/// How an MFA code was proven, for the audit detail.
enum MfaProof {
    NotRequired,
    Totp,
    RecoveryCode { left: u32 },
}

impl MfaProof {
    fn describe(&self) -> String {
        match self {
            MfaProof::NotRequired => "mfa not required".into(),
            MfaProof::Totp => "mfa totp".into(),
            MfaProof::RecoveryCode { left } => {
                format!("mfa recovery code ({left} left)")
            }
        }
    }
}

impl Manager {
    pub fn new(
        config: Arc<Config>,
        store: impl Store + 'static,
        accounts: Box<dyn Accounts>,
        clock: Box<dyn Clock>,
        processes: Box<dyn ProcessTable>,
        host: String,
    ) -> Manager {
        Manager {
            processes,
            recheck_at_start: true,
            grant_starts: ends::GrantStarts::default(),
            config,
            store: Box::new(store),
            accounts,
            clock,
            host,
            outbox: Outbox::default(),
            refusals: RefusalLimiter::default(),
            events: RefusalLimiter::allowing(EVENTS_PER_WINDOW),
            calls: CallLimiter::default(),
            head: chain::HeadKeeper::default(),
            fleet: None,
            host_look: crate::alerts::HostFacts::default(),
        }
    }

    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration in use, to share with the access check's read path.
    pub fn config_snapshot(&self) -> Arc<Config> {
        self.config.clone()
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Resolves a uid the bus gave us to a user name.
    pub fn caller(&self, uid: u32) -> Result<Caller, PimError> {
        let name = self.accounts.user_name(uid).ok_or_else(|| {
            PimError::PermissionDenied(format!("uid {uid} has no user name on this host"))
        })?;
        Ok(Caller { uid, name })
    }

    fn commit<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T, PimError>) -> Result<T, PimError> {
        let (value, audited) = self.store.write(f)?;
        let n = audited.len();
        self.outbox.audit.extend(audited);
        self.count_audited(n);
        Ok(value)
    }

    /// Runs `remove` (a removal that says whether there was anything to remove) with `entry`
    /// in one transaction; when there was nothing, the call is refused with `missing`.
    fn remove_or_refuse(
        &mut self,
        audit: &Audit<'_>,
        entry: AuditEntry,
        remove: impl FnOnce(&Tx) -> Result<bool, StoreError>,
        missing: PimError,
    ) -> Result<(), PimError> {
        let removed = self.commit(|tx| {
            if remove(tx)? {
                tx.audit(entry)?;
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        if removed {
            Ok(())
        } else {
            self.refused(audit, missing)
        }
    }

    /// Writes audit records that go with no change.
    fn commit_audit(&mut self, entries: Vec<AuditEntry>) -> Result<(), PimError> {
        self.commit(|tx| {
            for entry in entries {
                tx.audit(entry)?;
            }
            Ok(())
        })
    }

    /// Audits a refusal (or failure) and hands the error back.
    fn refused<T>(&mut self, audit: &Audit<'_>, err: PimError) -> Result<T, PimError> {
        self.refused_about(audit, "", err)
    }

    /// Like `refused`, with `subject` (e.g. "request 7") before the message in the record.
    fn refused_about<T>(
        &mut self,
        audit: &Audit<'_>,
        subject: &str,
        err: PimError,
    ) -> Result<T, PimError> {
        let outcome = match err {
            PimError::Internal(_) | PimError::ZBus(_) => Outcome::Error,
            _ => Outcome::Refused,
        };
        let detail = if subject.is_empty() {
            err.message()
        } else {
            format!("{subject}: {}", err.message())
        };
        let entry = audit.entry(self.now(), outcome, detail);
        if outcome == Outcome::Refused {
            let cause = Cause {
                actor: audit.actor.into(),
                ..Cause::default()
            };
            self.record_refusal(&cause, entry)?;
        } else {
            self.commit(|tx| Ok(tx.audit(entry)?))?;
        }
        Err(err)
    }

    /// Writes a refusal's record unless its cause has used up its records for the minute
    /// (then it is only counted; see [`crate::refusals`]).
    fn record_refusal(&mut self, cause: &Cause, entry: AuditEntry) -> Result<(), PimError> {
        let about = if entry.user == cause.subject() {
            ""
        } else {
            entry.user.as_str()
        };
        let previous = match self
            .refusals
            .admit(cause, entry.action.as_str(), about, entry.at)
        {
            Admission::Count { .. } => return Ok(()),
            Admission::Record { previous } => previous,
        };
        let mut entries = previous
            .as_ref()
            .map(|p| self.unrecorded_entries(p, Counted::Refusals))
            .unwrap_or_default();
        entries.push(entry);
        let written = self.commit_audit(entries);
        if written.is_err() {
            if let Some(previous) = previous {
                self.refusals.restore(previous);
            }
        }
        written
    }

    /// The summary records of refusals (or events) that were only counted: one about each
    /// person they were about (so that person sees them), one about the cause for the rest.
    fn unrecorded_entries(&self, u: &Unrecorded, counted: Counted) -> Vec<AuditEntry> {
        let now = self.now();
        let subject = u.cause.subject();
        let (action, what, allowance) = match counted {
            Counted::Refusals => (
                AuditAction::RefusalsUnrecorded,
                "refusal(s)",
                refusals::RECORDS_PER_WINDOW,
            ),
            Counted::Events => (
                AuditAction::EventsUndelivered,
                "event(s)",
                EVENTS_PER_WINDOW,
            ),
        };
        u.counts
            .iter()
            .map(|(about, actions)| {
                let (user, whom) = match about.as_str() {
                    "" => (subject, String::new()),
                    refusals::OTHERS => (subject, " about other users".to_string()),
                    named => (named, format!(" about {named}")),
                };
                let total = actions.values().fold(0u32, |t, n| t.saturating_add(*n));
                let actions: Vec<String> =
                    actions.iter().map(|(a, n)| format!("{a} {n}")).collect();
                let fate = match counted {
                    Counted::Refusals => "were counted, not recorded one by one",
                    Counted::Events => "were not sent to watchers or notify_command",
                };
                let audit = Audit::new(&u.cause.actor, action).about(user, &u.cause.role);
                audit.entry(
                    now,
                    Outcome::Refused,
                    format!(
                        "{total} more {what}{whom} between {} and {} {fate} (over {allowance} in \
                         {} s): {}",
                        describe(u.first, now),
                        describe(u.last, now),
                        refusals::WINDOW_SECS,
                        actions.join(", ")
                    ),
                )
            })
            .collect()
    }

    /// Writes the summaries of refusals and events that were only counted: those of windows
    /// that are over, or with `stopping` every one (and from then on every refusal is
    /// recorded and every event sent).
    pub fn record_unrecorded_refusals(&mut self, stopping: bool) -> Result<(), PimError> {
        let now = self.now();
        let (refusals, events) = if stopping {
            (self.refusals.close(), self.events.close())
        } else {
            (self.refusals.take_ended(now), self.events.take_ended(now))
        };
        if refusals.is_empty() && events.is_empty() {
            return Ok(());
        }
        let entries: Vec<AuditEntry> = refusals
            .iter()
            .flat_map(|u| self.unrecorded_entries(u, Counted::Refusals))
            .chain(
                events
                    .iter()
                    .flat_map(|u| self.unrecorded_entries(u, Counted::Events)),
            )
            .collect();
        let written = self.commit_audit(entries);
        if written.is_err() {
            for u in refusals {
                self.refusals.restore(u);
            }
            for u in events {
                self.events.restore(u);
            }
        }
        written
    }

    /// Admits a call of `kind` (audited as `action`) unless the caller has made their
    /// allowance of that kind (from `[daemon] calls_per_minute`) this minute; then it is
    /// refused, and the refusal recorded like any other.
    pub fn admit_call(
        &mut self,
        caller: &Caller,
        action: AuditAction,
        kind: CallKind,
    ) -> Result<(), PimError> {
        let allowance = kind.allowance(self.config.daemon.calls_per_minute);
        match self.calls.admit(caller.uid, kind, allowance, self.now()) {
            Ok(()) => Ok(()),
            Err(wait) => self.refuse_call(
                caller,
                action,
                PimError::Busy(format!(
                    "too many {}: {allowance} a minute are allowed; try again in {wait} s",
                    kind.describe()
                )),
            ),
        }
    }

    /// Refuses a call of `action` by `caller` before any work on its arguments (e.g. one too
    /// long), recording the refusal like any other.
    pub fn refuse_call<T>(
        &mut self,
        caller: &Caller,
        action: AuditAction,
        err: PimError,
    ) -> Result<T, PimError> {
        let audit = Audit::new(&caller.name, action).about(&caller.name, "");
        self.refused(&audit, err)
    }

    /// Counts `n` calls of `caller` turned away because too many were in progress: they had
    /// no record one by one (that would have meant waiting for this lock), so the summary of
    /// the caller's refusals counts them as `calls-in-progress`.
    pub fn count_turned_away(&mut self, caller: &Caller, n: u32) {
        let cause = Cause {
            actor: caller.name.clone(),
            ..Cause::default()
        };
        self.refusals
            .count(&cause, "calls-in-progress", n, self.now());
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        kind: EventKind,
        user: &str,
        role: &str,
        request_id: i64,
        grant_id: i64,
        actor: &str,
        detail: String,
    ) {
        // One person's loop (request, cancel, request...) must not flood approvers' watchers
        // and notifier: beyond the allowance of that actor, kind and role, events are dropped
        // and counted, and the first drop is announced at once to whoever would have seen
        // them. What pimd does by itself (expiry) is never dropped.
        if actor != DAEMON {
            let cause = Cause {
                actor: actor.into(),
                kind: kind.to_string(),
                role: role.into(),
                ..Cause::default()
            };
            let about = if user == actor { "" } else { user };
            match self.events.admit(&cause, kind.as_str(), about, self.now()) {
                Admission::Count { first: false } => return,
                Admission::Count { first: true } => {
                    self.outbox.events.push(EventInfo {
                        kind: EventKind::EventsDropped,
                        at: self.now(),
                        user: user.into(),
                        role: role.into(),
                        request_id: 0,
                        grant_id: 0,
                        actor: actor.into(),
                        detail: format!(
                            "more than {EVENTS_PER_WINDOW} {kind} events about role {role} by \
                             {actor} in {} s: the next ones are not sent for up to a minute; \
                             'pim audit' counts them (events-undelivered)",
                            refusals::WINDOW_SECS
                        ),
                    });
                    return;
                }
                Admission::Record {
                    previous: Some(previous),
                } => {
                    let summaries = self.unrecorded_entries(&previous, Counted::Events);
                    if self.commit_audit(summaries).is_err() {
                        // Written by a later sweep instead.
                        self.events.restore(previous);
                    }
                }
                Admission::Record { previous: None } => {}
            }
        }
        self.outbox.events.push(EventInfo {
            kind,
            at: self.now(),
            user: user.into(),
            role: role.into(),
            request_id,
            grant_id,
            actor: actor.into(),
            detail,
        });
    }

    /// Whether `user` is one of `list`; a group lookup that fails is an error, not a "no".
    fn listed(&self, list: &[Principal], user: &str) -> Result<bool, PimError> {
        policy::any_matches(list, user, &|g| self.in_group(user, g))
    }

    // A lookup that fails gives no power: not an admin, auditor or approver (fail closed).

    fn is_admin(&self, caller: &Caller) -> bool {
        caller.is_root()
            || self
                .listed(&self.config.daemon.admins, &caller.name)
                .unwrap_or(false)
    }

    fn is_auditor(&self, caller: &Caller) -> bool {
        self.is_admin(caller)
            || self
                .listed(&self.config.daemon.auditors, &caller.name)
                .unwrap_or(false)
    }

    fn is_approver(&self, user: &str, role: &Role) -> bool {
        self.listed(&role.approvers, user).unwrap_or(false)
    }

    /// Whether `user` approves role `role_name` as currently configured (no such role: no).
    fn approves(&self, user: &str, role_name: &str) -> bool {
        self.config
            .role(role_name)
            .is_some_and(|role| self.is_approver(user, role))
    }

    /// For the PAM check: a lookup that fails does not make anyone permanent (fail closed).
    /// Where PIM is about to add or remove a membership it uses [`Self::permanent`], which
    /// stops it instead.
    fn permanent(&self, user: &str, role: &Role) -> Result<bool, PimError> {
        self.listed(&role.permanent, user)
    }

    /// Whether `user` is in `group` outside whatever PIM knows; a failed lookup is an error.
    fn in_group(&self, user: &str, group: &str) -> Result<bool, PimError> {
        self.accounts
            .in_group(user, group)
            .map_err(|e| PimError::Internal(e.to_string()))
    }

    /// How `user` may activate `role` now. A group lookup that fails is an error: it refuses
    /// an activation and keeps a running grant, never grants nor ends one.
    fn eligibility(&mut self, role: &Role, user: &str) -> Result<Eligibility, PimError> {
        let (assignment, suspended) = self.store.read(|tx| {
            Ok::<_, StoreError>((
                tx.assignment(user, &role.name)?,
                tx.suspended(user, &role.name)?,
            ))
        })?;
        let now = self.now();
        policy::eligibility(role, user, assignment.as_ref(), suspended, now, &|g| {
            self.in_group(user, g)
        })
    }

    /// Takes a new configuration (SIGHUP). Settings fixed at start (database, notify_command)
    /// must not change: those need a restart, and the reload is refused with that reason.
    /// The caller reconciles at once after it: that ends the grants whose user the new
    /// configuration no longer makes eligible.
    ///
    /// A reload never completes a pending request, even one whose approvals now suffice
    /// (fewer required): a grant starts only at an approver's own approval, and approvals
    /// given towards a higher number did not vouch for the request alone.
    pub fn replace_config(&mut self, config: Config) -> Result<(), PimError> {
        let old = &self.config.daemon;
        if config.daemon.database != old.database
            || config.daemon.notify_command != old.notify_command
            || config.daemon.notify_timeout_secs != old.notify_timeout_secs
        {
            return Err(PimError::Conflict(
                "[daemon] database, notify_command and notify_timeout take effect only at a restart; restart pimd".into(),
            ));
        }
        if config.fleet != self.config.fleet {
            return Err(PimError::Conflict(
                "[fleet] takes effect only at a restart; restart pimd".into(),
            ));
        }
        let config = self.with_fleet_policy(config);
        let detail = format!("{} role(s)", config.roles.len());
        let entry = Audit::new(DAEMON, AuditAction::ConfigReload).entry(
            self.now(),
            Outcome::Success,
            detail,
        );
        self.commit(|tx| Ok(tx.audit(entry)?))?;
        self.config = Arc::new(config);
        Ok(())
    }

    /// Records that `notify_command` failed for an event; the decision itself stands.
    pub fn audit_notify_failure(
        &mut self,
        event: &EventInfo,
        detail: &str,
    ) -> Result<(), PimError> {
        let audit = Audit::new(DAEMON, AuditAction::NotifyFailed).about(&event.user, &event.role);
        let entry = audit.entry(self.now(), Outcome::Error, detail);
        self.commit(|tx| Ok(tx.audit(entry)?))
    }
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
