//! The domain core: every operation pimd offers, as plain Rust over a store, the host's
//! accounts and a clock. The D-Bus layer identifies the caller and delegates here; nothing in
//! this module knows about the bus.
//!
//! Order of effects, so that a crash never leaves a membership PIM cannot account for:
//! a grant and the record of the membership PIM is about to add are committed (with their
//! audit rows) before `gpasswd -a` runs; a grant is ended in the database before `gpasswd -d`
//! runs, and the membership record is only deleted after it succeeded. Reconciliation (at
//! start and periodically) finishes whatever a crash interrupted.

use crate::access;
use crate::accounts::Accounts;
use crate::clock::{describe, Clock};
use crate::config::{Config, Principal, Role};
use crate::mfa::{self, LockoutPolicy, TotpCheck, TotpSecret};
use crate::policy::{self, Eligibility};
use crate::refusals::{self, Admission, Cause, RefusalLimiter, Unrecorded};
use crate::setgid::{SweepJob, Swept, Target};
use crate::store::{
    Assignment, AuditEntry, AuditQuery, Grant, NewGrant, Outcome, Request, RequestState, Store,
    StoreError, Tx,
};
use crate::throttle::{CallKind, CallLimiter};
use pim_common::duration;
use pim_common::text;
use pim_common::types::{
    AccessDecision, ActivateReply, AuditRecord, EventInfo, GrantInfo, MfaStatusInfo, RequestInfo,
    RoleInfo,
};
use pim_common::vocab::{ActivationState, AuditAction, EventKind};
use pim_common::PimError;
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

impl From<mfa::MfaError> for PimError {
    fn from(e: mfa::MfaError) -> Self {
        PimError::Internal(e.to_string())
    }
}

/// What an operation leaves for the outside world once committed: audit lines for syslog and
/// events for watchers and `notify_command`.
#[derive(Default)]
pub struct Outbox {
    pub audit: Vec<AuditEntry>,
    pub events: Vec<EventInfo>,
}

pub struct Manager {
    config: Arc<Config>,
    store: Store,
    accounts: Box<dyn Accounts>,
    clock: Box<dyn Clock>,
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
        store: Store,
        accounts: Box<dyn Accounts>,
        clock: Box<dyn Clock>,
        host: String,
    ) -> Manager {
        Manager {
            recheck_at_start: true,
            config,
            store,
            accounts,
            clock,
            host,
            outbox: Outbox::default(),
            refusals: RefusalLimiter::default(),
            events: RefusalLimiter::allowing(EVENTS_PER_WINDOW),
            calls: CallLimiter::default(),
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
        self.outbox.audit.extend(audited);
        Ok(value)
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
        let assignment = self.store.read(|tx| tx.assignment(user, &role.name))?;
        let now = self.now();
        policy::eligibility(role, user, assignment.as_ref(), now, &|g| {
            self.in_group(user, g)
        })
    }

    /// The role, if `user` may activate it now; the same answer for "no such role" and "not
    /// eligible", so roles cannot be probed.
    fn eligible_role(&mut self, user: &str, name: &str) -> Result<(Role, Eligibility), PimError> {
        let not_eligible = || {
            PimError::NotEligible(format!(
                "you are not eligible for a role named '{}'; run 'pim roles' to see yours",
                text::escape(name)
            ))
        };
        let role = self.config.role(name).cloned().ok_or_else(not_eligible)?;
        match self.eligibility(&role, user)? {
            Eligibility::No => Err(not_eligible()),
            e => Ok((role, e)),
        }
    }

    fn mfa_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            max_failures: self.config.mfa.max_failures,
            window_secs: self.config.mfa.failure_window_secs,
            lockout_secs: self.config.mfa.lockout_secs,
        }
    }

    /// Checks a TOTP or recovery code inside `tx`. On success the code is spent (its step
    /// recorded, or the recovery code marked used); the caller's audit record covers that.
    /// On a wrong code the failure (and a lockout, if reached) is written and audited in
    /// `tx`, which the caller must commit even though it returns the error.
    fn verify_code(
        tx: &Tx,
        policy: &LockoutPolicy,
        user: &str,
        code: &str,
        now: i64,
    ) -> Result<MfaProof, PimError> {
        let record = tx.mfa(user)?.filter(|r| r.confirmed).ok_or_else(|| {
            PimError::MfaNotEnrolled(
                "you have no TOTP enrolment; run 'pim mfa enroll' and 'pim mfa confirm CODE' first"
                    .into(),
            )
        })?;
        let state = tx.failure_state(user)?;
        if let Err(until) = policy.check(&state, now) {
            return Err(PimError::MfaLockedOut(format!(
                "too many wrong codes; your MFA is locked until {}",
                describe(until, now)
            )));
        }
        let code = code.trim();
        if code.is_empty() {
            return Err(PimError::MfaRequired(
                "a TOTP code is required; give it with --code (or a recovery code)".into(),
            ));
        }
        let proof = if mfa::looks_like_recovery_code(code) {
            if tx.use_recovery_code(user, &mfa::hash_recovery_code(code), now)? {
                Some(MfaProof::RecoveryCode {
                    left: tx.recovery_codes_left(user)?,
                })
            } else {
                None
            }
        } else {
            let secret = TotpSecret::from_bytes(record.secret);
            match mfa::verify_totp(&secret, code, now, record.last_step) {
                TotpCheck::Accepted { step } => {
                    tx.set_last_step(user, step)?;
                    Some(MfaProof::Totp)
                }
                TotpCheck::Replayed | TotpCheck::Wrong => None,
            }
        };
        if let Some(proof) = proof {
            if state.failures > 0 {
                tx.set_failure_state(user, &policy.record_success())?;
            }
            return Ok(proof);
        }
        let (next, newly_locked) = policy.record_failure(&state, now);
        tx.set_failure_state(user, &next)?;
        let audit = Audit::new(user, AuditAction::MfaFailure).about(user, "");
        tx.audit(audit.entry(
            now,
            Outcome::Refused,
            format!(
                "wrong or reused code ({} of {})",
                next.failures, policy.max_failures
            ),
        ))?;
        if newly_locked {
            let lock = Audit {
                action: AuditAction::MfaLockout,
                ..audit
            };
            tx.audit(lock.entry(
                now,
                Outcome::Refused,
                format!("locked until {}", describe(next.locked_until, now)),
            ))?;
            return Err(PimError::MfaLockedOut(format!(
                "wrong code; too many wrong codes, your MFA is locked until {}",
                describe(next.locked_until, now)
            )));
        }
        Err(PimError::InvalidCode(
            "wrong or already used code; wait for the next code and try again".into(),
        ))
    }

    /// Runs `f` after an MFA check in one transaction: the check's failure bookkeeping is
    /// committed even when the check fails; `f` runs only when it passes.
    fn with_mfa<T>(
        &mut self,
        user: &str,
        code: &str,
        required: bool,
        f: impl FnOnce(&Tx, MfaProof) -> Result<T, PimError>,
    ) -> Result<T, PimError> {
        let policy = self.mfa_policy();
        let now = self.now();
        self.commit(|tx| {
            let proof = if required {
                match Self::verify_code(tx, &policy, user, code, now) {
                    Ok(proof) => proof,
                    Err(e) => return Ok(Err(e)),
                }
            } else {
                MfaProof::NotRequired
            };
            // A failure in `f` rolls everything back, the spent code included.
            f(tx, proof).map(Ok)
        })?
    }

    /// Refuses when the user already holds the group outside PIM: PIM must never take away a
    /// membership it did not add.
    fn check_unmanaged_membership(&mut self, user: &str, role: &Role) -> Result<(), PimError> {
        if self.permanent(user, role)? {
            return Err(PimError::AlreadyMember(format!(
                "you are a permanent member of role {}'s group {}; there is nothing to activate",
                role.name, role.group
            )));
        }
        if !self.accounts.group_exists(&role.group) {
            return Err(PimError::Internal(format!(
                "group {} of role {} does not exist on this host; ask an administrator to create it",
                role.group, role.name
            )));
        }
        let managed = self.store.read(|tx| tx.has_membership(user, &role.group))?;
        if self.in_group(user, &role.group)? && !managed {
            return Err(PimError::AlreadyMember(format!(
                "you are already a member of group {} outside PIM; PIM will neither grant nor remove it",
                role.group
            )));
        }
        Ok(())
    }

    /// Adds the membership for a grant just committed. On failure the grant is ended and
    /// the error returned: nothing stays granted that the host does not reflect.
    fn apply_grant(&mut self, grant: &Grant) -> Result<(), PimError> {
        // Not known to be listed (the lookup failed): gpasswd -a adds the user, or finds them.
        if self
            .accounts
            .listed_in_group(&grant.user, &grant.group)
            .unwrap_or(false)
        {
            return Ok(());
        }
        if let Err(e) = self.accounts.add_member(&grant.user, &grant.group) {
            let err = PimError::Internal(format!(
                "could not add {} to group {}: {e}; nothing was granted",
                grant.user, grant.group
            ));
            let now = self.now();
            let audit =
                Audit::new(DAEMON, AuditAction::GrantFailed).about(&grant.user, &grant.role);
            let entry = audit.entry(now, Outcome::Error, err.message());
            self.commit(|tx| {
                tx.end_grant(grant.id, now, "failed")?;
                Ok(tx.audit(entry)?)
            })?;
            self.release_membership(&grant.user, &grant.group)?;
            return Err(err);
        }
        Ok(())
    }

    /// The uid and gid the user and group have as a grant starts, recorded with it: the
    /// set-group-ID sweep at its end looks for files of these numbers (setgid.rs), even if the
    /// user is gone by then or the group's name means another gid. A failed lookup refuses
    /// the grant.
    fn ids_for_grant(&self, user: &str, group: &str) -> Result<(u32, u32), PimError> {
        match self.accounts.ids(user, group) {
            Ok(Some(ids)) => Ok(ids),
            Ok(None) => Err(PimError::Internal(format!(
                "user {user} or group {group} does not exist; nothing was granted"
            ))),
            Err(e) => Err(PimError::Internal(format!(
                "cannot look up the ids of {user} and group {group}: {e}; nothing was granted"
            ))),
        }
    }

    /// Inserts a grant and the membership record in `tx`.
    fn insert_grant(tx: &Tx, g: &NewGrant<'_>, (uid, gid): (u32, u32)) -> Result<Grant, PimError> {
        tx.add_membership(g.user, g.group, g.started_at)?;
        tx.record_setgid_ids(g.user, g.group, uid, gid)?;
        let id = tx.insert_grant(g)?;
        Ok(Grant {
            id,
            user: g.user.into(),
            role: g.role.into(),
            group: g.group.into(),
            started_at: g.started_at,
            ends_at: g.ends_at,
            reason: g.reason.into(),
            ticket: g.ticket.into(),
            request_id: g.request_id,
            ended_at: None,
            end_reason: None,
        })
    }

    /// A grant's end, capped by the end of a time-bound assignment.
    fn grant_end(now: i64, secs: u64, eligibility: Eligibility) -> i64 {
        let end = now.saturating_add(secs as i64);
        match eligibility {
            Eligibility::Assigned { until: Some(until) } => end.min(until),
            _ => end,
        }
    }

    // ----- requester operations -----

    pub fn list_roles(&mut self, caller: &Caller) -> Result<Vec<RoleInfo>, PimError> {
        let config = self.config.clone();
        let mut roles = Vec::new();
        for role in config.roles.values() {
            let eligibility = self.eligibility(role, &caller.name)?;
            if !eligibility.is_eligible() {
                continue;
            }
            let live = self
                .store
                .read(|tx| tx.live_grant(&caller.name, &role.name))?;
            roles.push(RoleInfo {
                name: role.name.clone(),
                group: role.group.clone(),
                description: role.description.clone(),
                max_duration_secs: role.max_duration_secs,
                default_duration_secs: role.default_duration_secs,
                require_mfa: role.require_mfa,
                require_justification: role.require_justification,
                min_justification: role.min_justification,
                require_ticket: role.require_ticket,
                ticket_pattern: role.ticket_pattern_text().unwrap_or_default().to_string(),
                require_approval: role.require_approval,
                approvals_required: if role.require_approval {
                    role.approvals_required
                } else {
                    0
                },
                eligible_until: match eligibility {
                    Eligibility::Assigned { until: Some(t) } => t,
                    _ => 0,
                },
                active_until: live.map(|g| g.ends_at).unwrap_or(0),
            });
        }
        Ok(roles)
    }

    pub fn activate(
        &mut self,
        caller: &Caller,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
    ) -> Result<ActivateReply, PimError> {
        let role_label = name_or_empty(role);
        let (reason_text, ticket_text) = (
            text::for_record(reason, text::MAX_REASON_BYTES),
            text::for_record(ticket, text::MAX_TICKET_BYTES),
        );
        let audit = Audit::new(&caller.name, AuditAction::Activate)
            .about(&caller.name, role_label)
            .with_text(&reason_text, &ticket_text);
        match self.try_activate(caller, role, duration_secs, reason, ticket, code) {
            Ok(reply) => Ok(reply),
            Err(e) => self.refused(&audit, e),
        }
    }

    fn try_activate(
        &mut self,
        caller: &Caller,
        role_name: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
    ) -> Result<ActivateReply, PimError> {
        check_name("role", role_name)?;
        let (role, eligibility) = self.eligible_role(&caller.name, role_name)?;
        let secs = policy::duration(&role, duration_secs)?;
        policy::check_reason(&role, reason)?;
        policy::check_ticket(&role, ticket)?;
        let user = caller.name.as_str();
        let mut live = self.store.read(|tx| tx.live_grant(user, &role.name))?;
        if let Some(ended) = live.take_if(|g| g.ends_at <= self.now()) {
            // Ended but not yet reconciled: expire it (only it) first, then activate afresh.
            let audit = Audit::new(DAEMON, AuditAction::Expire).about(&ended.user, &ended.role);
            let detail = format!(
                "grant {} ended at {}",
                ended.id,
                describe(ended.ends_at, self.now())
            );
            self.end_grant(&ended, &audit, "expired", detail)?;
        }
        if let Some(live) = live {
            return Err(PimError::Conflict(format!(
                "role {} is already active until {}; use 'pim extend {}' to lengthen it",
                role.name,
                describe(live.ends_at, self.now()),
                role.name
            )));
        }
        self.check_unmanaged_membership(user, &role)?;
        let now = self.now();
        if role.require_approval {
            return self.file_request(caller, &role, secs, reason, ticket, code);
        }
        let ends_at = Self::grant_end(now, secs, eligibility);
        let audit = Audit::new(user, AuditAction::Activate)
            .about(user, &role.name)
            .with_text(reason, ticket);
        let ids = self.ids_for_grant(user, &role.group)?;
        let grant = self.with_mfa(user, code, role.require_mfa, |tx, proof| {
            let grant = Self::insert_grant(
                tx,
                &NewGrant {
                    user,
                    role: &role.name,
                    group: &role.group,
                    started_at: now,
                    ends_at,
                    reason,
                    ticket,
                    request_id: None,
                },
                ids,
            )?;
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "group {} for {}; {}",
                    role.group,
                    duration::format((ends_at - now) as u64),
                    proof.describe()
                ),
            ))?;
            Ok(grant)
        })?;
        self.apply_grant(&grant)?;
        self.event(
            EventKind::GrantStarted,
            user,
            &role.name,
            0,
            grant.id,
            user,
            String::new(),
        );
        Ok(ActivateReply {
            state: ActivationState::Active,
            grant: grant_info(&grant),
            request: RequestInfo::default(),
        })
    }

    fn file_request(
        &mut self,
        caller: &Caller,
        role: &Role,
        secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
    ) -> Result<ActivateReply, PimError> {
        let user = caller.name.as_str();
        if let Some(open) = self.store.read(|tx| tx.pending_request(user, &role.name))? {
            return Err(PimError::Conflict(format!(
                "you already have request {} open for role {}; wait for it or 'pim cancel {}'",
                open.id, role.name, open.id
            )));
        }
        let now = self.now();
        let mut request = Request {
            id: 0,
            user: user.into(),
            role: role.name.clone(),
            group: role.group.clone(),
            duration_secs: secs,
            reason: reason.into(),
            ticket: ticket.into(),
            created_at: now,
            expires_at: now.saturating_add(role.request_ttl_secs as i64),
            approvals_required: role.approvals_required,
            state: RequestState::Pending,
        };
        let audit = Audit::new(user, AuditAction::Request)
            .about(user, &role.name)
            .with_text(reason, ticket);
        request.id = self.with_mfa(user, code, role.require_mfa, |tx, proof| {
            let id = tx.insert_request(&request)?;
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "request {id} for {}; needs {} approval(s); {}",
                    duration::format(secs),
                    role.approvals_required,
                    proof.describe()
                ),
            ))?;
            Ok(id)
        })?;
        self.event(
            EventKind::RequestFiled,
            user,
            &role.name,
            request.id,
            0,
            user,
            reason.into(),
        );
        Ok(ActivateReply {
            state: ActivationState::Pending,
            grant: GrantInfo::default(),
            request: request_info(&request, vec![]),
        })
    }

    pub fn deactivate(&mut self, caller: &Caller, role: &str) -> Result<GrantInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::Deactivate)
            .about(&caller.name, name_or_empty(role));
        let result = check_name("role", role).and_then(|_| {
            self.store
                .read(|tx| tx.live_grant(&caller.name, role))?
                .ok_or_else(|| {
                    PimError::NotFound(format!(
                        "you have no live grant for role {role}; 'pim status' shows yours"
                    ))
                })
        });
        match result {
            Ok(grant) => {
                self.end_grant(&grant, &audit, "deactivated", String::new())?;
                Ok(grant_info(&grant))
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// Ends a grant: database first (with its audit record), then the membership.
    fn end_grant(
        &mut self,
        grant: &Grant,
        audit: &Audit<'_>,
        end_reason: &str,
        detail: String,
    ) -> Result<(), PimError> {
        let now = self.now();
        let entry = audit.entry(now, Outcome::Success, detail);
        self.commit(|tx| {
            tx.end_grant(grant.id, now, end_reason)?;
            Ok(tx.audit(entry)?)
        })?;
        self.event(
            EventKind::GrantEnded,
            &grant.user,
            &grant.role,
            grant.request_id.unwrap_or(0),
            grant.id,
            audit.actor,
            end_reason.into(),
        );
        self.release_membership(&grant.user, &grant.group)
    }

    /// Takes back a membership PIM added, unless a live grant still needs it.
    fn release_membership(&mut self, user: &str, group: &str) -> Result<(), PimError> {
        let (managed, needed) = self.store.read(|tx| {
            let managed = tx.has_membership(user, group)?;
            let needed = tx.live_grants_of(user)?.iter().any(|g| g.group == group);
            Ok::<_, PimError>((managed, needed))
        })?;
        if !managed || needed {
            return Ok(());
        }
        let now = self.now();
        if let Some(role) = self.permanent_role_of(user, group)? {
            // Made permanent (by a reload) while PIM held the membership: it is theirs now.
            let audit = Audit::new(DAEMON, AuditAction::MembershipKeep).about(user, &role);
            let entry = audit.entry(
                now,
                Outcome::Success,
                format!(
                    "left in group {group}: {user} is now a permanent member of role {role}, \
                     so PIM no longer manages the membership"
                ),
            );
            return self.commit(|tx| {
                tx.remove_membership(user, group)?;
                Ok(tx.audit(entry)?)
            });
        }
        let audit = Audit::new(DAEMON, AuditAction::MembershipRemove).about(user, "");
        let listed = self.accounts.listed_in_group(user, group).map_err(|e| {
            // Not "not listed": the membership record stays, so reconciliation tries again.
            PimError::Internal(format!(
                "{e}; the membership of {user} stays until pimd can look again, at its next \
                 reconciliation"
            ))
        })?;
        if listed {
            if let Err(e) = self.accounts.remove_member(user, group) {
                // The membership record stays, so reconciliation tries again.
                let entry = audit.entry(now, Outcome::Error, e.to_string());
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                return Err(PimError::Internal(format!(
                    "{e}; pimd will retry at its next reconciliation"
                )));
            }
        }
        let entry = audit.entry(now, Outcome::Success, format!("removed from group {group}"));
        self.commit(|tx| {
            tx.remove_membership(user, group)?;
            Ok(tx.audit(entry)?)
        })
    }

    /// A role of `group` that lists `user` as `permanent`, if any. A lookup that fails is an
    /// error: PIM neither removes the membership nor lets go of it until it can tell.
    fn permanent_role_of(&self, user: &str, group: &str) -> Result<Option<String>, PimError> {
        for role in self.config.roles.values().filter(|r| r.group == group) {
            let permanent = self.permanent(user, role).map_err(|e| {
                PimError::Internal(format!(
                    "cannot tell whether {user} is a permanent member of role {}: {}; the \
                     membership of group {group} stays until pimd can, at a later \
                     reconciliation",
                    role.name,
                    e.message()
                ))
            })?;
            if permanent {
                return Ok(Some(role.name.clone()));
            }
        }
        Ok(None)
    }

    pub fn extend(
        &mut self,
        caller: &Caller,
        role: &str,
        duration_secs: u64,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError> {
        let reason_text = text::for_record(reason, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, AuditAction::Extend)
            .about(&caller.name, name_or_empty(role))
            .with_text(&reason_text, "");
        match self.try_extend(caller, role, duration_secs, reason, code) {
            Ok(g) => Ok(g),
            Err(e) => self.refused(&audit, e),
        }
    }

    fn try_extend(
        &mut self,
        caller: &Caller,
        role_name: &str,
        duration_secs: u64,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError> {
        check_name("role", role_name)?;
        let (role, eligibility) = self.eligible_role(&caller.name, role_name)?;
        let user = caller.name.as_str();
        let grant = self
            .store
            .read(|tx| tx.live_grant(user, &role.name))?
            // A grant past its end is over even before reconciliation records that.
            .filter(|g| g.ends_at > self.now())
            .ok_or_else(|| {
                PimError::NotFound(format!(
                    "you have no live grant for role {}; activate it with 'pim activate {}'",
                    role.name, role.name
                ))
            })?;
        if role.require_approval {
            return Err(PimError::Conflict(format!(
                "role {} needs approval, so it cannot be extended; file a new request with 'pim activate {}' when this grant ends",
                role.name, role.name
            )));
        }
        let secs = policy::duration(&role, duration_secs)?;
        policy::check_reason(&role, reason)?;
        let now = self.now();
        let ends_at = Self::grant_end(now, secs, eligibility);
        if ends_at <= grant.ends_at {
            return Err(PimError::InvalidArgument(format!(
                "your grant already ends at {}, which is not before the extension's end {}; ask for more with -d",
                describe(grant.ends_at, now),
                describe(ends_at, now)
            )));
        }
        let audit = Audit::new(user, AuditAction::Extend)
            .about(user, &role.name)
            .with_text(reason, "");
        self.with_mfa(user, code, role.require_mfa, |tx, proof| {
            tx.set_grant_end(grant.id, ends_at)?;
            Ok(tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "grant {} now ends {} (was {}); {}",
                    grant.id,
                    describe(ends_at, now),
                    describe(grant.ends_at, now),
                    proof.describe()
                ),
            ))?)
        })?;
        Ok(grant_info(&Grant { ends_at, ..grant }))
    }

    pub fn status(
        &mut self,
        caller: &Caller,
    ) -> Result<(Vec<GrantInfo>, Vec<RequestInfo>), PimError> {
        self.store
            .read(|tx| {
                let grants = tx
                    .live_grants_of(&caller.name)?
                    .iter()
                    .map(grant_info)
                    .collect();
                let mut requests = Vec::new();
                for r in tx
                    .pending_requests()?
                    .into_iter()
                    .filter(|r| r.user == caller.name)
                {
                    let approvers = tx.approvers_of(r.id)?;
                    requests.push((r, approvers));
                }
                Ok::<_, PimError>((grants, requests))
            })
            .map(|(grants, requests)| {
                let requests = requests
                    .into_iter()
                    .map(|(r, approved)| self.request_view(&r, approved))
                    .collect();
                (grants, requests)
            })
    }

    // ----- MFA -----

    pub fn mfa_enroll(&mut self, caller: &Caller) -> Result<(String, String), PimError> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaEnroll).about(user, "");
        let existing = self.store.read(|tx| tx.mfa(user))?;
        let replaced_from = existing.as_ref().map(|r| r.created_at);
        let account = format!("{user}@{}", self.host);
        match existing {
            Some(r) if r.confirmed => {
                return self.refused(
                    &audit,
                    PimError::Conflict(
                        "you are already enrolled; to enrol a new device, ask an administrator to run 'pim admin mfa-reset' for you"
                            .into(),
                    ),
                )
            }
            Some(pending) if Self::reshown(pending.created_at, self.now()) => {
                // Asked again soon after (the QR code was lost, the terminal closed): the same
                // secret again. Each disclosure is audited; calls_per_minute bounds them.
                let secret = TotpSecret::from_bytes(pending.secret);
                let uri = mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
                let now = self.now();
                let entry = audit.entry(
                    now,
                    Outcome::Success,
                    format!(
                        "the pending secret (from {}) shown again; awaiting first code",
                        describe(pending.created_at, now)
                    ),
                );
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                return Ok((uri, secret.base32()));
            }
            Some(_) | None => {}
        }
        let secret = TotpSecret::generate()?;
        let uri = mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
        let now = self.now();
        let detail = match replaced_from {
            Some(from) => format!(
                "enrolment started again with a new secret (the pending one, from {}, is shown \
                 again for {} minutes only); awaiting first code",
                describe(from, now),
                PENDING_SECRET_SHOWN_SECS / 60
            ),
            None => "enrolment started; awaiting first code".into(),
        };
        self.commit(|tx| {
            tx.put_pending_mfa(user, secret.as_bytes(), now)?;
            Ok(tx.audit(audit.entry(now, Outcome::Success, detail))?)
        })?;
        Ok((uri, secret.base32()))
    }

    /// Whether a pending enrolment's secret, made at `created`, may be shown again at `now`:
    /// only within [`PENDING_SECRET_SHOWN_SECS`], so that a secret once seen by someone else
    /// (a shared screen, a program that enrolled first) is not handed out for good.
    fn reshown(created: i64, now: i64) -> bool {
        (created..created + PENDING_SECRET_SHOWN_SECS).contains(&now)
    }

    pub fn mfa_confirm(&mut self, caller: &Caller, code: &str) -> Result<Vec<String>, PimError> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaConfirm).about(user, "");
        match self.try_mfa_confirm(user, code, &audit) {
            Ok(codes) => Ok(codes),
            Err(e) => self.refused(&audit, e),
        }
    }

    fn try_mfa_confirm(
        &mut self,
        user: &str,
        code: &str,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>, PimError> {
        let record = self.store.read(|tx| tx.mfa(user))?.ok_or_else(|| {
            PimError::MfaNotEnrolled("no enrolment to confirm; run 'pim mfa enroll' first".into())
        })?;
        if record.confirmed {
            return Err(PimError::Conflict(
                "your enrolment is already confirmed".into(),
            ));
        }
        let policy = self.mfa_policy();
        let now = self.now();
        let codes = mfa::generate_recovery_codes()?;
        let secret = TotpSecret::from_bytes(record.secret);
        self.commit(|tx| {
            let state = tx.failure_state(user)?;
            if let Err(until) = policy.check(&state, now) {
                return Ok(Err(PimError::MfaLockedOut(format!(
                    "too many wrong codes; your MFA is locked until {}",
                    describe(until, now)
                ))));
            }
            match mfa::verify_totp(&secret, code, now, None) {
                TotpCheck::Accepted { step } => {
                    tx.confirm_mfa(user)?;
                    tx.set_last_step(user, step)?;
                    let hashes: Vec<String> = codes.iter().map(|c| c.hash.clone()).collect();
                    tx.replace_recovery_codes(user, &hashes)?;
                    tx.set_failure_state(user, &policy.record_success())?;
                    tx.audit(audit.entry(
                        now,
                        Outcome::Success,
                        format!("enrolled; {} recovery codes issued", hashes.len()),
                    ))?;
                    Ok(Ok(codes.iter().map(|c| c.plain.clone()).collect()))
                }
                TotpCheck::Replayed | TotpCheck::Wrong => {
                    let (next, newly_locked) = policy.record_failure(&state, now);
                    tx.set_failure_state(user, &next)?;
                    let failure = Audit {
                        action: if newly_locked {
                            AuditAction::MfaLockout
                        } else {
                            AuditAction::MfaFailure
                        },
                        ..audit.clone()
                    };
                    tx.audit(failure.entry(
                        now,
                        Outcome::Refused,
                        "wrong code while confirming enrolment",
                    ))?;
                    if newly_locked {
                        return Ok(Err(PimError::MfaLockedOut(format!(
                            "wrong code; too many wrong codes, your MFA is locked until {}",
                            describe(next.locked_until, now)
                        ))));
                    }
                    Ok(Err(PimError::InvalidCode(
                        "that code is wrong; check the device's clock and enter the current code"
                            .into(),
                    )))
                }
            }
        })?
    }

    pub fn mfa_status(&mut self, caller: &Caller) -> Result<MfaStatusInfo, PimError> {
        let now = self.now();
        let policy = self.mfa_policy();
        self.store.read(|tx| {
            let record = tx.mfa(&caller.name)?;
            let state = tx.failure_state(&caller.name)?;
            Ok(MfaStatusInfo {
                enrolled: record.as_ref().is_some_and(|r| r.confirmed),
                pending: record.as_ref().is_some_and(|r| !r.confirmed),
                locked_until: policy.check(&state, now).err().unwrap_or(0),
                recent_failures: if now < state.window_start + policy.window_secs as i64 {
                    state.failures
                } else {
                    0
                },
                recovery_codes_left: tx.recovery_codes_left(&caller.name)?,
            })
        })
    }

    // ----- audit -----

    pub fn audit(
        &mut self,
        caller: &Caller,
        since: i64,
        user: &str,
        role: &str,
    ) -> Result<Vec<AuditRecord>, PimError> {
        if !user.is_empty() {
            check_name("user", user)?;
        }
        if !role.is_empty() {
            check_name("role", role)?;
        }
        let everything = self.is_auditor(caller);
        if !everything && !user.is_empty() && user != caller.name {
            let audit = Audit::new(&caller.name, AuditAction::AuditRead).about(user, role);
            return self.refused(
                &audit,
                PimError::PermissionDenied(
                    "only admins and auditors may read other people's audit records".into(),
                ),
            );
        }
        let own = (!everything).then_some(caller.name.as_str());
        let query = AuditQuery {
            since,
            user: (!user.is_empty()).then_some(user),
            role: (!role.is_empty()).then_some(role),
            involving: own,
            by: own.filter(|name| !NOT_PEOPLE.contains(name)),
        };
        self.store.read(|tx| Ok(tx.audit_records(&query)?))
    }

    // ----- approvals -----

    pub fn list_requests(&mut self, caller: &Caller) -> Result<Vec<RequestInfo>, PimError> {
        let now = self.now();
        let pending = self.store.read(|tx| {
            let mut out = Vec::new();
            for r in tx.pending_requests()? {
                let approvers = tx.approvers_of(r.id)?;
                out.push((r, approvers));
            }
            Ok::<_, PimError>(out)
        })?;
        Ok(pending
            .into_iter()
            .filter(|(r, approved)| {
                r.user != caller.name
                    && r.expires_at > now
                    && !approved.contains(&caller.name)
                    && self.approves(&caller.name, &r.role)
            })
            .map(|(r, approved)| self.request_view(&r, approved))
            .collect())
    }

    /// Whether `approver`'s approval of `request` counts now: `role`, as currently
    /// configured, still names them among its approvers, and they are not the requester.
    fn approval_counts(&self, request: &Request, role: &Role, approver: &str) -> bool {
        approver != request.user && self.is_approver(approver, role)
    }

    /// A request as it stands under the current configuration: only the approvals that
    /// count now, against the role's current `approvals_required`.
    fn request_view(&self, r: &Request, approved: Vec<String>) -> RequestInfo {
        let role = self.config.role(&r.role);
        let counted = approved
            .into_iter()
            .filter(|a| role.is_some_and(|role| self.approval_counts(r, role, a)))
            .collect();
        RequestInfo {
            approvals_required: role.map_or(r.approvals_required, |role| role.approvals_required),
            ..request_info(r, counted)
        }
    }

    /// Whether `caller` may know of `request`: it is theirs, or its role (as currently
    /// configured) names them among its approvers.
    fn may_know_request(&self, caller: &Caller, request: &Request) -> bool {
        request.user == caller.name || self.approves(&caller.name, &request.role)
    }

    /// The request `id` in a state the caller may decide, or why not. Its requester is told
    /// they cannot decide their own request (they know it is theirs); anyone else who may not
    /// decide it gets the answer a request that does not exist gets, word for word, so that
    /// request ids cannot be probed for whose they are.
    fn decidable_request(&mut self, caller: &Caller, id: i64) -> Result<(Request, Role), PimError> {
        let no_such_request = || {
            PimError::NotFound(
                "there is no such request that you may decide; 'pim requests' lists those you may"
                    .into(),
            )
        };
        let request = self
            .store
            .read(|tx| tx.request(id))?
            .ok_or_else(no_such_request)?;
        if request.user == caller.name {
            return Err(PimError::PermissionDenied(
                "you cannot decide your own request; another approver must".into(),
            ));
        }
        let role = self.config.role(&request.role).cloned();
        let role = match role {
            Some(role) if self.is_approver(&caller.name, &role) => role,
            _ => return Err(no_such_request()),
        };
        if request.state != RequestState::Pending {
            return Err(PimError::Conflict(format!(
                "request {id} is already {}",
                request.state.as_str()
            )));
        }
        if request.expires_at <= self.now() {
            self.expire_request(&request)?;
            return Err(PimError::Conflict(format!("request {id} has expired")));
        }
        Ok((request, role))
    }

    /// Audits a refused approval or denial against the request's requester and role when the
    /// caller may know them (an approver of the role), so `pim audit --user REQUESTER` shows
    /// those attempts. Otherwise the record is the one a request that does not exist gets:
    /// callers read their own records, and must not learn from them whose request an id is.
    fn audit_decision_refusal<T>(
        &mut self,
        caller: &Caller,
        id: i64,
        action: AuditAction,
        comment: &str,
        result: Result<T, PimError>,
    ) -> Result<T, PimError> {
        let err = match result {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let request = self.store.read(|tx| tx.request(id)).ok().flatten();
        let (user, role) = request
            .filter(|r| self.may_know_request(caller, r))
            .map(|r| (r.user, r.role))
            .unwrap_or_default();
        let comment_text = text::for_record(comment, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, action)
            .about(&user, &role)
            .with_text(&comment_text, "");
        self.refused_about(&audit, &format!("request {id}"), err)
    }

    pub fn approve(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        let result = self.try_approve(caller, id, comment, code);
        self.audit_decision_refusal(caller, id, AuditAction::Approve, comment, result)
    }

    fn try_approve(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        policy::check_comment(comment)?;
        let (request, role) = self.decidable_request(caller, id)?;
        let already = self.store.read(|tx| tx.approvers_of(id))?;
        if already.contains(&caller.name) {
            return Err(PimError::Conflict(format!(
                "you have already approved request {id}; it needs another approver"
            )));
        }
        let approver = caller.name.as_str();
        // Only the approvals of approvers who still qualify count, against the role's current
        // approvals_required: a reload that dropped an approver took their approval away.
        let earlier = already.len();
        let mut counted: Vec<String> = already
            .into_iter()
            .filter(|a| self.approval_counts(&request, &role, a))
            .collect();
        let not_counted = match earlier - counted.len() {
            0 => String::new(),
            n => {
                format!(" ({n} earlier approval(s) by approvers who no longer qualify not counted)")
            }
        };
        counted.push(approver.to_string());
        let request = Request {
            approvals_required: role.approvals_required,
            ..request
        };
        let now = self.now();
        let audit = Audit::new(approver, AuditAction::Approve)
            .about(&request.user, &request.role)
            .with_text(comment, &request.ticket);
        self.with_mfa(approver, code, true, |tx, proof| {
            tx.add_approval(id, approver, now, comment)?;
            Ok(tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "request {id}: approval {} of {}{not_counted}; {}",
                    counted.len(),
                    request.approvals_required,
                    proof.describe()
                ),
            ))?)
        })?;
        self.event(
            EventKind::RequestApproved,
            &request.user,
            &request.role,
            id,
            0,
            approver,
            comment.into(),
        );
        if (counted.len() as u32) < request.approvals_required {
            return Ok(request_info(&request, counted));
        }
        let state = self.complete_request(&request, &role, approver)?;
        Ok(request_info(&Request { state, ..request }, counted))
    }

    /// Why a fully approved request cannot become a grant now, if anything stands in the way.
    fn grant_obstacle(
        &mut self,
        request: &Request,
        role: &Role,
    ) -> Result<Option<String>, PimError> {
        let user = request.user.as_str();
        match self.eligibility(role, user) {
            Ok(eligibility) if eligibility.is_eligible() => {}
            Ok(_) => {
                return Ok(Some(format!(
                    "{user} is no longer eligible for role {}",
                    role.name
                )))
            }
            Err(e) => {
                return Ok(Some(format!(
                    "cannot tell whether {user} is still eligible for role {}: {}",
                    role.name,
                    e.message()
                )))
            }
        }
        if self
            .store
            .read(|tx| tx.live_grant(user, &role.name))?
            .is_some()
        {
            return Ok(Some(format!(
                "{user} already has role {} active",
                role.name
            )));
        }
        Ok(self
            .check_unmanaged_membership(user, role)
            .err()
            .map(|e| format!("{} (for {user})", e.message())))
    }

    /// Turns a fully approved request into a grant, if the requester may still have it; the
    /// grant lasts the requested duration from now.
    fn complete_request(
        &mut self,
        request: &Request,
        role: &Role,
        approver: &str,
    ) -> Result<RequestState, PimError> {
        let user = request.user.as_str();
        let now = self.now();
        if let Some(obstacle) = self.grant_obstacle(request, role)? {
            let audit = Audit::new(DAEMON, AuditAction::RequestVoid)
                .about(user, &role.name)
                .with_text("", &request.ticket);
            let entry = audit.entry(
                now,
                Outcome::Refused,
                format!("request {}: {obstacle}", request.id),
            );
            self.commit(|tx| {
                tx.decide_request(request.id, RequestState::Denied, now, DAEMON, &obstacle)?;
                Ok(tx.audit(entry)?)
            })?;
            self.event(
                EventKind::RequestDenied,
                user,
                &role.name,
                request.id,
                0,
                DAEMON,
                obstacle,
            );
            return Ok(RequestState::Denied);
        }
        let eligibility = self.eligibility(role, user)?;
        let ends_at = Self::grant_end(now, request.duration_secs, eligibility);
        let audit = Audit::new(approver, AuditAction::GrantStart)
            .about(user, &role.name)
            .with_text(&request.reason, &request.ticket);
        let ids = self.ids_for_grant(user, &role.group)?;
        let grant = self.commit(|tx| {
            let grant = Self::insert_grant(
                tx,
                &NewGrant {
                    user,
                    role: &role.name,
                    group: &role.group,
                    started_at: now,
                    ends_at,
                    reason: &request.reason,
                    ticket: &request.ticket,
                    request_id: Some(request.id),
                },
                ids,
            )?;
            tx.decide_request(request.id, RequestState::Approved, now, approver, "")?;
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "request {} approved; group {} for {}",
                    request.id,
                    role.group,
                    duration::format((ends_at - now) as u64)
                ),
            ))?;
            Ok(grant)
        })?;
        self.apply_grant(&grant)?;
        self.event(
            EventKind::GrantStarted,
            user,
            &role.name,
            request.id,
            grant.id,
            approver,
            String::new(),
        );
        Ok(RequestState::Approved)
    }

    pub fn deny(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        let result = self.try_deny(caller, id, comment, code);
        self.audit_decision_refusal(caller, id, AuditAction::Deny, comment, result)
    }

    fn try_deny(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        policy::check_comment(comment)?;
        if comment.trim().is_empty() {
            return Err(PimError::InvalidArgument(
                "a denial needs a comment saying why; give one with -c".into(),
            ));
        }
        let (request, _role) = self.decidable_request(caller, id)?;
        if self
            .store
            .read(|tx| tx.approvers_of(id))?
            .contains(&caller.name)
        {
            return Err(PimError::Conflict(format!(
                "you have already approved request {id}; an approver decides once, so you cannot deny it now"
            )));
        }
        let approver = caller.name.as_str();
        let now = self.now();
        let audit = Audit::new(approver, AuditAction::Deny)
            .about(&request.user, &request.role)
            .with_text(comment, &request.ticket);
        let approved_by = self.with_mfa(approver, code, true, |tx, proof| {
            tx.decide_request(id, RequestState::Denied, now, approver, comment)?;
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!("request {id} denied; {}", proof.describe()),
            ))?;
            Ok(tx.approvers_of(id)?)
        })?;
        self.event(
            EventKind::RequestDenied,
            &request.user,
            &request.role,
            id,
            0,
            approver,
            comment.into(),
        );
        Ok(self.request_view(
            &Request {
                state: RequestState::Denied,
                ..request
            },
            approved_by,
        ))
    }

    pub fn cancel(&mut self, caller: &Caller, id: i64) -> Result<RequestInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::Cancel).about(&caller.name, "");
        let request = match self.store.read(|tx| tx.request(id))? {
            Some(r) if r.user == caller.name => r,
            _ => {
                return self.refused(
                    &audit,
                    PimError::NotFound(format!(
                        "you have no request {id}; 'pim status' lists yours"
                    )),
                )
            }
        };
        if request.state != RequestState::Pending {
            return self.refused(
                &audit,
                PimError::Conflict(format!(
                    "request {id} is already {}",
                    request.state.as_str()
                )),
            );
        }
        let now = self.now();
        let audit = Audit {
            role: &request.role,
            ..audit
        };
        let entry = audit.entry(now, Outcome::Success, format!("request {id} cancelled"));
        let approved_by = self.commit(|tx| {
            tx.decide_request(id, RequestState::Cancelled, now, &caller.name, "")?;
            tx.audit(entry)?;
            Ok(tx.approvers_of(id)?)
        })?;
        self.event(
            EventKind::RequestCancelled,
            &caller.name,
            &request.role,
            id,
            0,
            &caller.name,
            String::new(),
        );
        Ok(self.request_view(
            &Request {
                state: RequestState::Cancelled,
                ..request
            },
            approved_by,
        ))
    }

    fn expire_request(&mut self, request: &Request) -> Result<(), PimError> {
        let now = self.now();
        let audit = Audit::new(DAEMON, AuditAction::RequestExpire)
            .about(&request.user, &request.role)
            .with_text("", &request.ticket);
        let entry = audit.entry(
            now,
            Outcome::Success,
            format!("request {} expired undecided", request.id),
        );
        self.commit(|tx| {
            tx.decide_request(request.id, RequestState::Expired, now, DAEMON, "")?;
            Ok(tx.audit(entry)?)
        })?;
        self.event(
            EventKind::RequestExpired,
            &request.user,
            &request.role,
            request.id,
            0,
            DAEMON,
            String::new(),
        );
        Ok(())
    }

    /// Whether `caller` may see `event` in `pim watch`: their own, those of roles they
    /// approve, and everything for admins and auditors.
    pub fn may_see(&self, caller: &Caller, event: &EventInfo) -> bool {
        event.user == caller.name
            || self.is_auditor(caller)
            || self.approves(&caller.name, &event.role)
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

    // ----- administration -----

    fn require_admin(&mut self, caller: &Caller, audit: &Audit<'_>) -> Result<(), PimError> {
        if self.is_admin(caller) {
            return Ok(());
        }
        self.refused(
            audit,
            PimError::PermissionDenied(
                "this needs a pim administrator (root or a member of [daemon] admins)".into(),
            ),
        )
    }

    pub fn admin_grants(&mut self, caller: &Caller) -> Result<Vec<GrantInfo>, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::AdminGrants);
        self.require_admin(caller, &audit)?;
        let grants = self.store.read(|tx| tx.live_grants())?;
        Ok(grants.iter().map(grant_info).collect())
    }

    /// Gives `user` an assignment to `role`; returns a warning (empty when none) when ending a
    /// grant the new window no longer allows did not go through.
    pub fn admin_assign(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<String, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::AdminAssign)
            .about(name_or_empty(user), name_or_empty(role));
        self.require_admin(caller, &audit)?;
        let checked = (|| {
            check_name("user", user)?;
            check_name("role", role)?;
            if self.config.role(role).is_none() {
                return Err(PimError::NotFound(format!(
                    "there is no role {role} in the configuration"
                )));
            }
            if !self.accounts.user_exists(user) {
                return Err(PimError::NotFound(format!(
                    "there is no user {user} on this host"
                )));
            }
            if not_before < 0
                || not_after < 0
                || (not_before > 0 && not_after > 0 && not_after <= not_before)
            {
                return Err(PimError::InvalidArgument(
                    "the assignment's end must come after its start".into(),
                ));
            }
            Ok(())
        })();
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        let now = self.now();
        let window = match (not_before, not_after) {
            (0, 0) => "without time limit".to_string(),
            (0, b) => format!("until {}", describe(b, now)),
            (a, 0) => format!("from {}", describe(a, now)),
            (a, b) => format!("from {} until {}", describe(a, now), describe(b, now)),
        };
        let entry = audit.entry(now, Outcome::Success, format!("eligible {window}"));
        let assignment = Assignment {
            user: user.into(),
            role: role.into(),
            not_before: (not_before > 0).then_some(not_before),
            not_after: (not_after > 0).then_some(not_after),
        };
        self.commit(|tx| {
            tx.put_assignment(&assignment, &caller.name, now)?;
            Ok(tx.audit(entry)?)
        })?;
        // A new window replaces the old one: a grant the old one allowed may have lost it.
        let (_, warning) = self.end_grant_after_assignment_change(user, role, &caller.name, None);
        Ok(warning)
    }

    /// Removes an assignment and ends the grant that depended on it; returns that grant (id 0
    /// when none ended) and a warning when ending it did not go through (empty when it did).
    pub fn admin_unassign(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
    ) -> Result<(GrantInfo, String), PimError> {
        let audit = Audit::new(&caller.name, AuditAction::AdminUnassign)
            .about(name_or_empty(user), name_or_empty(role));
        self.require_admin(caller, &audit)?;
        if let Err(e) = check_name("user", user).and(check_name("role", role)) {
            return self.refused(&audit, e);
        }
        let now = self.now();
        let entry = audit.entry(now, Outcome::Success, "assignment removed");
        let removed = self.commit(|tx| {
            if tx.delete_assignment(user, role)? {
                tx.audit(entry)?;
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        if !removed {
            return self.refused(
                &audit,
                PimError::NotFound(format!("{user} has no assignment for role {role}")),
            );
        }
        let why = format!("unassigned by {}", caller.name);
        let (ended, warning) =
            self.end_grant_after_assignment_change(user, role, &caller.name, Some(&why));
        Ok((ended.as_ref().map(grant_info).unwrap_or_default(), warning))
    }

    // ----- the end of eligibility -----

    /// Why `grant` may no longer run, or `None` while it may: its role still grants its group
    /// and its user is still eligible for it in some way (standing, through a %group, or
    /// assigned), or a `permanent` member of it, whom PIM never touches. A lookup that fails
    /// is an error, not an end: the grant runs on and the next reconciliation asks again.
    fn lost_eligibility(&mut self, grant: &Grant) -> Result<Option<String>, PimError> {
        let (user, role_name) = (grant.user.as_str(), grant.role.as_str());
        let Some(role) = self.config.role(role_name).cloned() else {
            return Ok(Some(format!(
                "role {role_name} is no longer in the configuration"
            )));
        };
        if role.group != grant.group {
            return Ok(Some(format!(
                "role {role_name} now grants group {}, not {}",
                role.group, grant.group
            )));
        }
        if self.permanent(user, &role)? || self.eligibility(&role, user)?.is_eligible() {
            return Ok(None);
        }
        let now = self.now();
        let assignment = self.store.read(|tx| tx.assignment(user, role_name))?;
        let window = assignment.map(|a| (a.not_before, a.not_after));
        Ok(Some(match window {
            Some((_, Some(end))) if end <= now => format!(
                "the assignment of {user} to role {role_name} ended {}",
                describe(end, now)
            ),
            Some((Some(start), _)) if start > now => format!(
                "the assignment of {user} to role {role_name} starts only {}",
                describe(start, now)
            ),
            _ => format!("{user} is no longer eligible for role {role_name}"),
        }))
    }

    /// Ends those of the live `grants` not yet at their end (expiry takes the others) whose
    /// user may no longer hold the role, through the path of any other end (database and
    /// audit record first, then the membership). The record, by `actor`, gives the reason
    /// "eligibility ended: ..." with `why` when the caller knows what ended it, else what is
    /// missing. Tries every grant; returns those it ended in the database (the membership may
    /// still be left for reconciliation to take back) and the first error.
    fn end_grants_without_eligibility(
        &mut self,
        grants: Vec<Grant>,
        actor: &str,
        why: Option<&str>,
    ) -> (Vec<Grant>, Result<(), PimError>) {
        let now = self.now();
        let mut first_error = None;
        let mut ended = Vec::new();
        for grant in grants.into_iter().filter(|g| g.ends_at > now) {
            let lost = match self.lost_eligibility(&grant) {
                Ok(Some(lost)) => lost,
                Ok(None) => continue,
                Err(e) => {
                    first_error.get_or_insert(PimError::Internal(format!(
                        "cannot tell whether {} may still hold role {}: {}; the grant runs on, \
                         and pimd asks again at its next reconciliation",
                        grant.user,
                        grant.role,
                        e.message()
                    )));
                    continue;
                }
            };
            let reason = format!("eligibility ended: {}", why.unwrap_or(&lost));
            let audit = Audit::new(actor, AuditAction::EligibilityEnd)
                .about(&grant.user, &grant.role)
                .with_text(&reason, "");
            let detail = format!(
                "grant {} of group {} ended; it was due to end {}",
                grant.id,
                grant.group,
                describe(grant.ends_at, now)
            );
            let is_over = match self.end_grant(&grant, &audit, "eligibility-ended", detail) {
                Ok(()) => true,
                Err(e) => {
                    first_error.get_or_insert(e);
                    // A failure after the end was committed (taking back the membership)
                    // still ended the grant.
                    self.store
                        .read(|tx| tx.live_grant(&grant.user, &grant.role))
                        .is_ok_and(|live| live.is_none_or(|g| g.id != grant.id))
                }
            };
            if is_over {
                ended.push(grant);
            }
        }
        (ended, first_error.map_or(Ok(()), Err))
    }

    /// What an admin's change of `user`'s assignment to `role` did to the grant that stood on
    /// it: the grant it ended, if any, and a warning when that did not go through. The
    /// assignment is committed by then, so a failure here is no failure of the call:
    /// reconciliation finishes what is left.
    fn end_grant_after_assignment_change(
        &mut self,
        user: &str,
        role: &str,
        actor: &str,
        why: Option<&str>,
    ) -> (Option<Grant>, String) {
        let live = match self.store.read(|tx| tx.live_grant(user, role)) {
            Ok(live) => live,
            Err(e) => {
                return (
                    None,
                    format!(
                        "could not check {user}'s grant of {role}: {e}; pimd checks it again \
                         at its next reconciliation"
                    ),
                )
            }
        };
        let (ended, result) =
            self.end_grants_without_eligibility(live.into_iter().collect(), actor, why);
        let warning = result.err().map_or(String::new(), |e| {
            format!(
                "ending {user}'s grant of {role} did not complete: {}",
                e.message()
            )
        });
        (ended.into_iter().next(), warning)
    }

    /// Ends every live grant whose user may no longer hold its role: after a reload, at an
    /// assignment's end, after a user left a %group, and at start for whatever happened while
    /// pimd was down.
    fn end_every_grant_without_eligibility(&mut self) -> Result<(), PimError> {
        let live = self.store.read(|tx| tx.live_grants())?;
        self.end_grants_without_eligibility(live, DAEMON, None).1
    }

    pub fn admin_revoke(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        reason: &str,
    ) -> Result<GrantInfo, PimError> {
        let reason_text = text::for_record(reason, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, AuditAction::AdminRevoke)
            .about(name_or_empty(user), name_or_empty(role))
            .with_text(&reason_text, "");
        self.require_admin(caller, &audit)?;
        let found = check_name("user", user)
            .and(check_name("role", role))
            .and(
                text::check("the reason", reason, text::MAX_REASON_BYTES)
                    .map_err(PimError::InvalidArgument),
            )
            .and_then(|_| {
                self.store
                    .read(|tx| tx.live_grant(user, role))?
                    .ok_or_else(|| {
                        PimError::NotFound(format!("{user} has no live grant for role {role}"))
                    })
            });
        match found {
            Ok(grant) => {
                self.end_grant(
                    &grant,
                    &audit,
                    "revoked",
                    format!("grant {} revoked", grant.id),
                )?;
                Ok(grant_info(&grant))
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    pub fn admin_mfa_reset(&mut self, caller: &Caller, user: &str) -> Result<(), PimError> {
        let audit =
            Audit::new(&caller.name, AuditAction::AdminMfaReset).about(name_or_empty(user), "");
        self.require_admin(caller, &audit)?;
        if let Err(e) = check_name("user", user) {
            return self.refused(&audit, e);
        }
        let now = self.now();
        let entry = audit.entry(
            now,
            Outcome::Success,
            "enrolment and recovery codes removed",
        );
        let removed = self.commit(|tx| {
            if tx.delete_mfa(user)? {
                tx.audit(entry)?;
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        if removed {
            Ok(())
        } else {
            self.refused(
                &audit,
                PimError::NotFound(format!("{user} has no MFA enrolment")),
            )
        }
    }

    // ----- the PAM module's question -----

    /// Root only. Allowed when every one of `groups` is covered for `user` (see
    /// [`crate::access`]). Denials are audited; successes are sudo's to log.
    pub fn check_access(
        &mut self,
        caller: &Caller,
        user: &str,
        groups: &[String],
    ) -> Result<AccessDecision, PimError> {
        if !caller.is_root() {
            let audit =
                Audit::new(&caller.name, AuditAction::AccessCheck).about(name_or_empty(user), "");
            return self.refused(
                &audit,
                PimError::PermissionDenied("only root may ask about another user's access".into()),
            );
        }
        access::check_question(user, groups)?;
        let now = self.now();
        let (config, accounts) = (&self.config, &*self.accounts);
        let decision = self
            .store
            .read(|tx| access::decide(config, tx, accounts, now, user, groups))?;
        if !decision.allowed {
            self.audit_access_denial(user, groups, &decision.message)?;
        }
        Ok(decision)
    }

    /// Records that the PAM check refused `user`.
    pub fn audit_access_denial(
        &mut self,
        user: &str,
        groups: &[String],
        message: &str,
    ) -> Result<(), PimError> {
        let audit = Audit::new(PAM_CHECK, AuditAction::AccessCheck).about(user, "");
        let entry = audit.entry(
            self.now(),
            Outcome::Refused,
            format!("groups {}: {message}", groups.join(",")),
        );
        let cause = Cause {
            actor: PAM_CHECK.into(),
            user: user.into(),
            ..Cause::default()
        };
        self.record_refusal(&cause, entry)
    }

    /// Counts `n` refusals of the PAM check about `user` that get no record one by one (the
    /// audit's queue was full): they appear in the refusal summaries.
    pub fn count_access_denials(&mut self, user: &str, n: u32) {
        let cause = Cause {
            actor: PAM_CHECK.into(),
            user: user.into(),
            ..Cause::default()
        };
        let now = self.now();
        self.refusals
            .count(&cause, AuditAction::AccessCheck.as_str(), n, now);
    }

    // ----- time-driven work -----

    /// Ends grants and requests whose time has come, and grants whose user may no longer hold
    /// the role, and takes back memberships no live grant needs (including those a crash left
    /// behind). Returns the first error after trying everything.
    pub fn reconcile(&mut self) -> Result<(), PimError> {
        let now = self.now();
        let mut first_error = self.record_unrecorded_refusals(false).err();
        let due = self.store.read(|tx| tx.due_grants(now))?;
        for grant in due {
            let audit = Audit::new(DAEMON, AuditAction::Expire).about(&grant.user, &grant.role);
            let detail = format!(
                "grant {} ended at {}",
                grant.id,
                describe(grant.ends_at, now)
            );
            if let Err(e) = self.end_grant(&grant, &audit, "expired", detail) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.end_every_grant_without_eligibility() {
            first_error.get_or_insert(e);
        }
        let orphans = self.store.read(|tx| tx.orphaned_memberships())?;
        for (user, group) in orphans {
            if let Err(e) = self.release_membership(&user, &group) {
                first_error.get_or_insert(e);
            }
        }
        let due_requests = self.store.read(|tx| tx.due_requests(now))?;
        for request in due_requests {
            if let Err(e) = self.expire_request(&request) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    // ----- set-group-ID files after a membership went (setgid.rs) -----

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

    /// When reconcile next has work: the earliest grant end, request expiry, or end of an
    /// assignment a live grant may depend on.
    pub fn next_deadline(&mut self) -> Result<Option<i64>, PimError> {
        let now = self.now();
        self.store.read(|tx| {
            let deadlines = [
                tx.next_grant_end()?,
                tx.next_request_expiry()?,
                tx.next_assignment_end(now)?,
            ];
            Ok(deadlines.into_iter().flatten().min())
        })
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
