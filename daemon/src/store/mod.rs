//! The store's port: what pimd asks of the database that keeps its state, whatever database
//! that is. SQLite ([`sqlite`]) is the one backend today; a shared one (PostgreSQL for a
//! fleet) is one more implementation of these traits, which must pass
//! the conformance suite (`store/conformance.rs`).
//!
//! - [`ReadStore`]: a handle that only reads. The access check's read path
//!   ([`crate::access::AccessReader`]) holds one of its own, so that sudo's question never
//!   waits behind a writer: a backend gives it a connection of its own, read-only, whose wait
//!   for a read to start is bounded well below the PAM module's timeout, and shares no lock
//!   with the writers.
//! - [`Store`]: a handle that also writes (the manager's).
//! - [`Transaction`]: one backend transaction: the reads and writes of the model
//!   ([`crate::model`]), the append of an audit record, the commit. Dropping one uncommitted
//!   rolls it back. Only this module begins and commits one (both take a [`Key`]).
//! - [`Tx`]: the transaction as callers see it, in `write` and `read` (methods of `dyn Store`
//!   and `dyn ReadStore`, not of the traits, so no backend provides its own). It holds the
//!   rule "no committed change without its audit row" for every backend: each write marks it
//!   changed, [`Tx::audit`] records why, and `write` refuses to commit a change that carries no
//!   audit record ([`StoreError::Unaudited`]); in `read`, a change or an audit record is
//!   refused the same way. A backend only stores what it is given.
//! - The audit chain ([`pim_common::chain`]) is made here too, in [`Tx::audit`], for every
//!   backend: each record gets the next id after the chain's tip, the tip's hash as `prev`,
//!   and its own hash over the canonical encoding, all before the backend stores it. The
//!   first record after records from before the chain (a database an older pimd made) is a
//!   genesis record of its own ([`pim_common::chain::GENESIS_ACTION`]). [`Tx::prune_audit`]
//!   removes the oldest records with the checkpoint that lets the rest verify.
//!
//! The handles are trait objects (`Box<dyn Store>`), not a type parameter of the manager: the
//! backend is chosen when pimd starts (from its configuration, once there are two), the
//! manager and its tests stay one type, and the cost (one allocation and a virtual call per
//! operation) is nothing beside a database round trip. (An associated transaction type,
//! `type Txn<'a>` as in kanidm's resolver cache, would rule out `dyn`.) The traits are
//! synchronous: the manager and the access check already run off the async thread
//! (`spawn_blocking`), so a network backend may use a blocking client there.
//!
//! # What a shared, multi-host backend will need
//!
//! SQLite serves one pimd: its writes are serialised by the database's single writer (each
//! write transaction takes the write lock at its start) and by the manager's process-wide
//! mutex. Several pimds on one database need, beyond these traits:
//!
//! - **Row locks for single-use TOTP.** A code is checked against `mfa.last_step` and the
//!   failure count read in the same transaction that records the step; two hosts checking the
//!   same code at once must not both read the old step. The write transaction must lock the
//!   user's `mfa` and `mfa_failures` rows as it reads them (`SELECT ... FOR UPDATE`, or a
//!   conditional `UPDATE ... WHERE last_step < $step` whose row count decides), instead of
//!   counting on the process-wide mutex. The same goes for recovery codes (already a
//!   conditional update) and approvals.
//! - **A host column on memberships.** `memberships` records what PIM added to this host's
//!   group database; with one database for many hosts each row must say which host's, and
//!   reconciliation (orphans, set-group-ID sweeps and their ids) must read only its own host's
//!   rows. Audit records say which host wrote them; grants and requests say where they apply,
//!   once a role can span hosts.
//! - **Per-host refusal limits.** The refusal and call limiters ([`crate::refusals`],
//!   [`crate::throttle`]) live in each pimd's memory: they bound what one host writes and
//!   logs. They stay per host; only the MFA lockout (`mfa_failures`) is shared, so wrong codes
//!   on one host count on all.
//! - **The database's clock for end times.** Each pimd stamps `started_at`, `ends_at`,
//!   `expires_at` and lockouts from its own clock; across hosts whose clocks disagree, a grant
//!   would end at different times on each. A shared backend takes "now" for these from the
//!   database (`now()` in the transaction) and compares due grants and requests against it.
//!   (The access check still compares a grant's end with the host's clock, which must keep to
//!   the database's: a host whose clock is behind keeps a grant alive for sudo that long.)
//!
//! "One live grant per user and role" and "one open request per user and role" are partial
//! unique indexes here: any backend must refuse the second one in the database itself, not by
//! reading first, or two hosts activating at once both win.

pub mod commits;
pub mod sqlite;

#[cfg(test)]
pub mod conformance;

use crate::mfa::FailureState;
use crate::model::{
    AlertRow, Assignment, AuditEntry, AuditQuery, Ending, FleetSync, Grant, MfaRecord, NewAlert,
    NewGrant, PendingSecret, PendingSweep, Renewal, Request, RequestState, Review, ReviewDecision,
    ReviewItem, SweepRecheck,
};
use pim_common::chain::{self, Head, CHECKPOINT_ACTION, GENESIS_ACTION, GENESIS_PREV};
use pim_common::types::AuditRecord;
use std::cell::{Cell, RefCell};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot prepare {path} for the database: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to keep the database under {path}: {why}; set [daemon] database to a file in \
         a new directory (pimd creates it, root's alone) below directories only root may \
         change, or in /var/lib/pim"
    )]
    UnsafeDirectory { path: String, why: String },
    #[error(
        "refusing to open the database file {path}: {why}; pimd opens only regular files of \
         its own with one link (remove it if pimd did not make it)"
    )]
    UnsafeFile { path: String, why: String },
    #[error("refusing to commit a state change without its audit record")]
    Unaudited,
    #[error("the database schema version {0} is newer than this pimd understands; upgrade pimd")]
    TooNew(i64),
}

/// Only this module (and the backends below it) can make one: beginning and committing a
/// [`Transaction`] is [`Tx`]'s business, so no caller commits around the audit rule.
pub struct Key(());

/// A handle on the database that reads (see the module's doc).
pub trait ReadStore: Send {
    /// A transaction that only reads: one consistent view of the database.
    fn begin_read(&mut self, key: Key) -> Result<Box<dyn Transaction + '_>, StoreError>;
}

/// A handle on the database that reads and writes (see the module's doc).
pub trait Store: ReadStore {
    /// A transaction that will write: it holds what it needs to write from its start, so that
    /// what it read stays true until it commits.
    fn begin_write(&mut self, key: Key) -> Result<Box<dyn Transaction + '_>, StoreError>;
}

impl dyn Store + '_ {
    /// Runs `f` in one transaction and commits it if `f` succeeds and every change it made has
    /// an audit record. Returns the audit records written, for syslog and notifications.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<(T, Vec<AuditEntry>), E> {
        let tx = Tx::new(self.begin_write(Key(()))?);
        let value = f(&tx)?;
        let Tx {
            txn,
            changed,
            audited,
            ..
        } = tx;
        let audited = audited.into_inner();
        if changed.get() && audited.is_empty() {
            return Err(StoreError::Unaudited.into());
        }
        commits::counted(|| txn.commit(Key(())))?;
        Ok((value, audited))
    }

    /// Runs `f` in a read transaction; a change attempted in it is refused.
    pub fn read<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<T, E> {
        read_in(self.begin_read(Key(()))?, f)
    }
}

impl dyn ReadStore + '_ {
    /// Runs `f` in a read transaction; a change attempted in it is refused.
    pub fn read<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<T, E> {
        read_in(self.begin_read(Key(()))?, f)
    }
}

fn read_in<T, E: From<StoreError>>(
    txn: Box<dyn Transaction + '_>,
    f: impl FnOnce(&Tx) -> Result<T, E>,
) -> Result<T, E> {
    let tx = Tx::new(txn);
    let value = f(&tx)?;
    if tx.changed.get() || !tx.audited.borrow().is_empty() {
        return Err(StoreError::Unaudited.into());
    }
    Ok(value)
}

/// A transaction in progress. Its writes mark it changed; [`Tx::audit`] records why.
pub struct Tx<'a> {
    txn: Box<dyn Transaction + 'a>,
    changed: Cell<bool>,
    audited: RefCell<Vec<AuditEntry>>,
    /// The chain's last record as this transaction left it, once read.
    tip: RefCell<Option<Option<AuditTip>>>,
}

/// The last record of the audit log: its id, and its hash ("" for a record from before the
/// chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTip {
    pub id: i64,
    pub hash: String,
}

/// What [`Tx::prune_audit`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub first: i64,
    pub last: i64,
}

/// The actor of the records the port writes by itself (the genesis).
const DAEMON: &str = "pimd";

impl<'a> Tx<'a> {
    fn new(txn: Box<dyn Transaction + 'a>) -> Tx<'a> {
        Tx {
            txn,
            changed: Cell::new(false),
            audited: RefCell::new(Vec::new()),
            tip: RefCell::new(None),
        }
    }

    /// Appends `entry` to the audit log, in this transaction, chained to the record before it
    /// (see the module's doc).
    pub fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let tip = self.tip()?;
        if let Some(tip) = tip.as_ref().filter(|t| t.hash.is_empty()) {
            // Records from before the chain: it starts with a record of its own.
            let genesis = AuditEntry {
                at: entry.at,
                actor: DAEMON.into(),
                action: GENESIS_ACTION,
                user: String::new(),
                role: String::new(),
                outcome: crate::model::Outcome::Success,
                reason: String::new(),
                ticket: String::new(),
                detail: format!(
                    "the audit chain starts here; the records up to {}, written before it, are \
                     not chained",
                    tip.id
                ),
            };
            self.append_chained(genesis, tip.id + 1, GENESIS_PREV)?;
        }
        let tip = self.tip()?;
        let (id, prev) = match &tip {
            Some(t) => (t.id + 1, t.hash.clone()),
            None => (1, GENESIS_PREV.to_string()),
        };
        self.append_chained(entry, id, &prev)
    }

    fn tip(&self) -> Result<Option<AuditTip>, StoreError> {
        if let Some(tip) = self.tip.borrow().as_ref() {
            return Ok(tip.clone());
        }
        let tip = self.txn.audit_tip()?;
        *self.tip.borrow_mut() = Some(tip.clone());
        Ok(tip)
    }

    fn append_chained(&self, entry: AuditEntry, id: i64, prev: &str) -> Result<(), StoreError> {
        let mut record = AuditRecord {
            id,
            at: entry.at,
            actor: entry.actor.clone(),
            action: entry.action,
            user: entry.user.clone(),
            role: entry.role.clone(),
            outcome: entry.outcome,
            reason: entry.reason.clone(),
            ticket: entry.ticket.clone(),
            detail: entry.detail.clone(),
            prev: prev.to_string(),
            hash: String::new(),
        };
        record.hash = chain::hash(&record);
        self.txn.append_audit(&record)?;
        *self.tip.borrow_mut() = Some(Some(AuditTip {
            id,
            hash: record.hash,
        }));
        self.audited.borrow_mut().push(entry);
        Ok(())
    }

    /// Removes the records older than `before` that run from the start of the log (a record
    /// is removed only with all those before it), and appends the checkpoint that names the
    /// last one removed, with `why` (e.g. "older than 400d"), so that the rest still
    /// verifies. Nothing to remove: nothing is written.
    pub fn prune_audit(
        &self,
        before: i64,
        at: i64,
        why: &str,
    ) -> Result<Option<Pruned>, StoreError> {
        let Some((first, last)) = self.txn.audit_prunable(before)? else {
            return Ok(None);
        };
        // The checkpoint goes after the tip as it was, whatever is removed.
        self.tip()?;
        if !self.txn.delete_audit_through(last.id)? {
            return Ok(None);
        }
        self.changed.set(true);
        let entry = AuditEntry {
            at,
            actor: DAEMON.into(),
            action: CHECKPOINT_ACTION,
            user: String::new(),
            role: String::new(),
            outcome: crate::model::Outcome::Success,
            reason: String::new(),
            ticket: String::new(),
            detail: chain::checkpoint_detail(first, &last, why),
        };
        self.audit(entry)?;
        Ok(Some(Pruned {
            first,
            last: last.id,
        }))
    }
}

/// Declares each operation of a transaction once: as a method of [`Transaction`], which a
/// backend implements, and as the method of [`Tx`] that callers use, which marks the
/// transaction changed for a write (for a removal, when it removed anything) and forwards.
macro_rules! operations {
    (
        reads { $( $(#[$rdoc:meta])* fn $read:ident($($rarg:ident: $rty:ty),*) -> $rout:ty; )* }
        writes { $( $(#[$wdoc:meta])* fn $write:ident($($warg:ident: $wty:ty),*) -> $wout:ty; )* }
        removals {
            $( $(#[$ddoc:meta])* fn $remove:ident($($darg:ident: $dty:ty),*) -> $dout:ty; )*
        }
        bookkeeping {
            $( $(#[$bdoc:meta])* fn $keep:ident($($barg:ident: $bty:ty),*) -> $bout:ty; )*
        }
    ) => {
        /// One transaction of a backend (see the module's doc). Each removal returns, beside
        /// its value, whether it removed anything: removing nothing is no change to audit.
        pub trait Transaction {
            $( $(#[$rdoc])* fn $read(&self, $($rarg: $rty),*) -> Result<$rout, StoreError>; )*
            $( $(#[$wdoc])* fn $write(&self, $($warg: $wty),*) -> Result<$wout, StoreError>; )*
            $(
                $(#[$ddoc])*
                fn $remove(&self, $($darg: $dty),*) -> Result<($dout, bool), StoreError>;
            )*
            $( $(#[$bdoc])* fn $keep(&self, $($barg: $bty),*) -> Result<$bout, StoreError>; )*
            /// Appends one record to the audit log, which is append-only, as given: its id,
            /// `prev` and `hash` are the port's (see [`Tx::audit`]).
            fn append_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;
            /// The run of records from the start of the log that are all older than `before`:
            /// the first one's id, and the last one's id and hash ("" if from before the
            /// chain). None if the first record is not older.
            fn audit_prunable(&self, before: i64) -> Result<Option<(i64, Head)>, StoreError>;
            /// Removes the audit records up to `last` (retention's alone: see
            /// [`Tx::prune_audit`]); whether it removed any.
            fn delete_audit_through(&self, last: i64) -> Result<bool, StoreError>;
            /// Makes every change of this transaction durable, or none of them.
            fn commit(self: Box<Self>, key: Key) -> Result<(), StoreError>;
        }

        impl Tx<'_> {
            $(
                $(#[$rdoc])*
                pub fn $read(&self, $($rarg: $rty),*) -> Result<$rout, StoreError> {
                    self.txn.$read($($rarg),*)
                }
            )*
            $(
                $(#[$wdoc])*
                pub fn $write(&self, $($warg: $wty),*) -> Result<$wout, StoreError> {
                    self.changed.set(true);
                    self.txn.$write($($warg),*)
                }
            )*
            $(
                $(#[$ddoc])*
                pub fn $remove(&self, $($darg: $dty),*) -> Result<$dout, StoreError> {
                    let (value, removed) = self.txn.$remove($($darg),*)?;
                    if removed {
                        self.changed.set(true);
                    }
                    Ok(value)
                }
            )*
            $(
                $(#[$bdoc])*
                pub fn $keep(&self, $($barg: $bty),*) -> Result<$bout, StoreError> {
                    self.txn.$keep($($barg),*)
                }
            )*
        }
    };
}

operations! {
    reads {
        /// The records matching `q`, oldest first, at most
        /// [`pim_common::types::MAX_AUDIT_RECORDS`].
        fn audit_records(q: &AuditQuery<'_>) -> Vec<AuditRecord>;
        /// At most `limit` records with ids above `after`, in id order, whatever their
        /// subject: the walk of `pim audit verify`.
        fn audit_chain(after: i64, limit: u32) -> Vec<AuditRecord>;
        /// The record `id`, if it is there.
        fn audit_record(id: i64) -> Option<AuditRecord>;
        /// The last record of the audit log, if any: where the chain goes on.
        fn audit_tip() -> Option<AuditTip>;
        fn live_grant(user: &str, role: &str) -> Option<Grant>;
        /// Every live grant, the soonest to end first.
        fn live_grants() -> Vec<Grant>;
        /// The live grants of `user`, the soonest to end first.
        fn live_grants_of(user: &str) -> Vec<Grant>;
        /// Live grants whose end has come.
        fn due_grants(now: i64) -> Vec<Grant>;
        /// The most recently ended grant of `user` for any of `groups`.
        fn last_ended_grant(user: &str, groups: &[String]) -> Option<Grant>;
        /// When the next live grant ends.
        fn next_grant_end() -> Option<i64>;
        /// Whether PIM added `user` to `group` (and so must take the membership away).
        fn has_membership(user: &str, group: &str) -> bool;
        /// Memberships PIM added that no live grant needs any more, as (user, group).
        fn orphaned_memberships() -> Vec<(String, String)>;
        /// Users and groups whose membership PIM took away after a grant ended and whose
        /// sweep is not done: none of theirs is in the memberships PIM added (a live grant
        /// still needs it, or its removal has not succeeded yet).
        fn pending_setgid_sweeps() -> Vec<PendingSweep>;
        /// Done sweeps of grants that ended at or after `since`, for users and groups of
        /// which no membership is PIM's now.
        fn setgid_rechecks(since: i64) -> Vec<SweepRecheck>;
        /// Every (uid, gid) recorded for `user` and `group`.
        fn setgid_ids(user: &str, group: &str) -> Vec<(u32, u32)>;
        /// Endings not done, oldest first.
        fn open_endings() -> Vec<Ending>;
        /// When the next ending is due to go from SIGTERM to SIGKILL; an ending not started
        /// yet is due now.
        fn next_ending_step() -> Option<i64>;
        /// Whether the warning `lead` seconds before `ends_at` of grant `grant_id` went.
        fn warning_sent(grant_id: i64, ends_at: i64, lead: u64) -> bool;
        fn assignment(user: &str, role: &str) -> Option<Assignment>;
        /// The earliest end after `now` of an assignment whose user holds a live grant of
        /// its role: when such a grant may lose the eligibility it depends on.
        fn next_assignment_end(now: i64) -> Option<i64>;
        /// Whether grant `id` is (or was) the grant of an active assignment.
        fn grant_by_assignment(id: i64) -> bool;
        /// Every assignment (eligible and active), by user and role.
        fn assignments() -> Vec<Assignment>;
        fn mfa(user: &str) -> Option<MfaRecord>;
        /// The new secret of a change of device that its code has not confirmed yet.
        fn mfa_rotation(user: &str) -> Option<PendingSecret>;
        /// The user's wrong codes and lockout; the default if none is recorded.
        fn failure_state(user: &str) -> FailureState;
        fn recovery_codes_left(user: &str) -> u32;
        /// When the user's recovery codes were issued; 0 if they have none, or if they were
        /// issued before pim recorded it.
        fn recovery_codes_issued_at(user: &str) -> i64;
        fn request(id: i64) -> Option<Request>;
        /// The user's pending activation request for `role` (renewals are not counted).
        fn pending_request(user: &str, role: &str) -> Option<Request>;
        /// The user's pending renewal request for `role`.
        fn pending_renewal(user: &str, role: &str) -> Option<Request>;
        /// What request `id` asks as a renewal; `None` for an activation request.
        fn renewal(id: i64) -> Option<Renewal>;
        /// Every pending request, oldest first.
        fn pending_requests() -> Vec<Request>;
        /// Pending requests whose time to be decided has run out.
        fn due_requests(now: i64) -> Vec<Request>;
        /// When the next pending request expires.
        fn next_request_expiry() -> Option<i64>;
        /// Who approved request `id`, in the order they did.
        fn approvers_of(id: i64) -> Vec<String>;
        fn review(id: i64) -> Option<Review>;
        /// Reviews not completed yet, the soonest to end first.
        fn open_reviews() -> Vec<Review>;
        /// When the next open review ends.
        fn next_review_end() -> Option<i64>;
        /// The latest review `role`'s `review_every` started.
        fn last_recurring_review(role: &str) -> Option<Review>;
        /// The items of review `id`, by user name.
        fn review_items(id: i64) -> Vec<ReviewItem>;
        /// When `user`'s latest grant of `role` started.
        fn last_grant_start(user: &str, role: &str) -> Option<i64>;
        /// Whether a review suspended `user`'s standing eligibility for `role`.
        fn suspended(user: &str, role: &str) -> bool;
        /// The fleet grant local grant `id` mirrors; `None` for a grant of this host's own.
        fn fleet_id_of(id: i64) -> Option<i64>;
        /// Every live local grant that mirrors a fleet grant, with that grant's fleet id.
        fn fleet_mirrored() -> Vec<(i64, Grant)>;
        /// The last successful synchronisation with the fleet, if any.
        fn fleet_sync() -> Option<FleetSync>;
        /// The id of the last local audit record shipped to the fleet (0: none yet).
        fn audit_shipped() -> i64;
        /// Every membership PIM added, as (user, group).
        fn memberships() -> Vec<(String, String)>;
        /// Every assignment (as `assignments`), with when it was made.
        fn dated_assignments() -> Vec<(Assignment, i64)>;
        /// The start of every grant that started at or after `since`, as (user, role, at).
        fn grant_starts_since(since: i64) -> Vec<(String, String, i64)>;
        /// The last start of a grant of each user and role, as (user, role, at).
        fn last_grant_starts() -> Vec<(String, String, i64)>;
        /// The time of the oldest audit record: since when pimd has been watching this host.
        fn first_audit_at() -> Option<i64>;
        /// The alerts that hold their keys (open, or dismissed while their cause persists).
        fn current_alerts() -> Vec<AlertRow>;
        /// The alert that holds `key`, if one does.
        fn current_alert(key: &str) -> Option<AlertRow>;
        fn alert(id: i64) -> Option<AlertRow>;
        /// The open alerts, or with `all` every one; the open ones first, each newest first,
        /// at most `limit`.
        fn alerts(all: bool, limit: u32) -> Vec<AlertRow>;
        /// The last dismissal of each key among the alerts of `kind`, as (key, at).
        fn alert_dismissals(kind: &str) -> Vec<(String, i64)>;
    }
    writes {
        /// A new live grant; refused if `g.user` already holds a live grant of `g.role`.
        /// Returns its id.
        fn insert_grant(g: &NewGrant<'_>) -> i64;
        /// Ends grant `id` (if live) at `at`, for `reason`.
        fn end_grant(id: i64, at: i64, reason: &str) -> ();
        /// Moves the end of live grant `id`.
        fn set_grant_end(id: i64, ends_at: i64) -> ();
        /// PIM is adding `user` to `group` (kept if already recorded).
        fn add_membership(user: &str, group: &str, at: i64) -> ();
        /// PIM has taken `user` out of `group`.
        fn remove_membership(user: &str, group: &str) -> ();
        /// A walk of a sweep that is not done yet; `failed` counts towards the retry
        /// back-off.
        fn setgid_sweep_walked(user: &str, group: &str, at: i64, failed: bool) -> ();
        /// The sweep of every grant of `user` and `group` that ended by `through` is done, by
        /// a walk at `at` (the first look again at it is due a day later, or at the next
        /// start).
        fn setgid_sweep_done(user: &str, group: &str, through: i64, at: i64) -> ();
        /// A done sweep was walked again and that walk found nothing.
        fn setgid_sweep_rechecked(user: &str, group: &str, at: i64) -> ();
        /// A done sweep was walked again and found something: it is not done any more.
        fn setgid_sweep_reopened(user: &str, group: &str, at: i64) -> ();
        /// The uid and gid `user` and `group` have as PIM adds the membership.
        fn record_setgid_ids(user: &str, group: &str, uid: u32, gid: u32) -> ();
        /// The processes of ended `grant` are to be ended, SIGKILL `grace_secs` after SIGTERM
        /// (kept if already recorded).
        fn add_ending(grant: &Grant, grace_secs: u64) -> ();
        /// SIGTERM went to the processes of grant `grant_id` at `at`.
        fn ending_terminated(grant_id: i64, at: i64) -> ();
        /// No process of grant `grant_id` was left at `at`, or ending them was not needed.
        fn ending_done(grant_id: i64, at: i64) -> ();
        /// The warning `lead` seconds before `ends_at` of grant `grant_id` went at `at`.
        fn record_warning(grant_id: i64, ends_at: i64, lead: u64, at: i64) -> ();
        /// Makes (or replaces) the assignment of `a.user` to `a.role`, by `by` at `at`, with a
        /// revision no version of any assignment had before (`a.revision` is not used);
        /// returns it.
        fn put_assignment(a: &Assignment, by: &str, at: i64) -> i64;
        /// Marks grant `id` as the grant of an active assignment.
        fn mark_grant_by_assignment(id: i64) -> ();
        /// Records the grant active assignment `user`/`role` materialised as.
        fn set_assignment_grant(user: &str, role: &str, grant_id: i64) -> ();
        /// Records the notices of its end sent (bits of [`crate::model::NOTICE_14D`], ...).
        fn set_assignment_notices(user: &str, role: &str, sent: u32) -> ();
        /// A new pending renewal request (as `insert_request`) asking `renewal`; returns its
        /// id. Refused if `r.user` already has a pending renewal for `r.role`.
        fn insert_renewal(r: &Request, renewal: &Renewal) -> i64;
        /// Starts (or restarts) an unconfirmed enrolment.
        fn put_pending_mfa(user: &str, secret: &[u8], at: i64) -> ();
        fn confirm_mfa(user: &str) -> ();
        /// Starts (or restarts) a change of a confirmed enrolment's device: `secret` waits for
        /// its first code beside the enrolment's, which keeps working.
        fn put_mfa_rotation(user: &str, secret: &[u8], at: i64) -> ();
        /// The change of device is confirmed: its `secret` (the one the confirming code was
        /// checked against) becomes the enrolment's, with `step` (the code's) as the last used
        /// step. False if there was no change with that secret to finish.
        fn finish_mfa_rotation(user: &str, secret: &[u8], step: u64) -> bool;
        /// Drops the user's change of device in progress; false if there was none.
        fn delete_mfa_rotation(user: &str) -> bool;
        /// Records the TOTP time step just accepted, so it and all earlier ones are dead.
        fn set_last_step(user: &str, step: u64) -> ();
        fn set_failure_state(user: &str, s: &FailureState) -> ();
        /// The user's recovery codes (their hashes) become `hashes`, all unused.
        fn replace_recovery_codes(user: &str, hashes: &[String], at: i64) -> ();
        /// Marks an unused recovery code used; false if there is no such unused code.
        fn use_recovery_code(user: &str, hash: &str, at: i64) -> bool;
        /// A new pending request (`r.id` and `r.state` are not used); returns its id.
        /// Refused if `r.user` already has a pending request for `r.role`.
        fn insert_request(r: &Request) -> i64;
        /// Decides request `id`, if it is still pending.
        fn decide_request(id: i64, state: RequestState, at: i64, by: &str, comment: &str) -> ();
        /// Records an approval; false if this approver had already approved.
        fn add_approval(id: i64, approver: &str, at: i64, comment: &str) -> bool;
        /// A new access review (`r.id` and `r.completed_at` are not used); returns its id.
        fn insert_review(r: &Review) -> i64;
        /// One item of a review, undecided.
        fn insert_review_item(item: &ReviewItem) -> ();
        /// A reviewer's decision on an item; it replaces an earlier one (last one wins).
        fn decide_review_item(
            id: i64, user: &str, decision: ReviewDecision, by: &str, at: i64, comment: &str
        ) -> ();
        /// What the review's end did to an item.
        fn set_review_item_result(id: i64, user: &str, result: &str) -> ();
        /// The review's decisions are applied: it is closed.
        fn complete_review(id: i64, at: i64) -> ();
        /// `user`'s standing eligibility for `role` no longer counts (kept if already so).
        fn suspend(user: &str, role: &str, review_id: i64, at: i64) -> ();
        /// Marks local grant `id` as the mirror of fleet grant `fleet_id`.
        fn mark_grant_from_fleet(id: i64, fleet_id: i64) -> ();
        /// A new open alert holding its key; refused if another alert holds it. Returns its
        /// id.
        fn insert_alert(a: &NewAlert<'_>) -> i64;
        /// Open alert `id` is resolved at `at`: its cause went, and its key is free.
        fn resolve_alert(id: i64, at: i64) -> ();
        /// Open alert `id` is dismissed by `by` at `at` for `reason`; it keeps its key while
        /// its cause persists.
        fn dismiss_alert(id: i64, by: &str, reason: &str, at: i64) -> ();
        /// Dismissed alert `id`'s cause went: its key is free for the cause's return.
        fn release_alert(id: i64) -> ();
    }
    removals {
        /// Removes the assignment of `user` to `role`; returns whether there was one.
        fn delete_assignment(user: &str, role: &str) -> bool;
        /// Drops the enrolment, its recovery codes, its failure state and a change of device in
        /// progress. Returns whether there was an enrolment.
        fn delete_mfa(user: &str) -> bool;
        /// Lifts a review's suspension of `user`'s standing eligibility for `role`; returns
        /// whether there was one.
        fn reinstate(user: &str, role: &str) -> bool;
        /// Removes the closed alerts (resolved, or dismissed and holding no key) closed before
        /// `before`; returns how many.
        fn delete_closed_alerts(before: i64) -> u64;
    }
    // Markers of what was read from or sent to the fleet's authority: they grant and take
    // nothing, so they carry no audit record (a record each 30 s snapshot, or for each
    // shipment of records, which would itself need shipping, would only be noise).
    bookkeeping {
        /// Records a successful synchronisation with the fleet.
        fn set_fleet_sync(sync: &FleetSync) -> ();
        /// The local audit records up to `through` are in the fleet's audit.
        fn set_audit_shipped(through: i64) -> ();
    }
}
