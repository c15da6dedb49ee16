//! The model: what pimd keeps, as plain values with no storage in them. The store's port
//! ([`crate::store`]) reads and writes these; every backend maps them to its own rows.

/// The vocabulary's enums the model is made of (their names are what the rows hold).
pub use pim_common::vocab::{AuditAction, Outcome, RequestState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub started_at: i64,
    pub ends_at: i64,
    pub reason: String,
    pub ticket: String,
    pub request_id: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant<'a> {
    pub user: &'a str,
    pub role: &'a str,
    pub group: &'a str,
    pub started_at: i64,
    pub ends_at: i64,
    pub reason: &'a str,
    pub ticket: &'a str,
    pub request_id: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub user: String,
    pub role: String,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// An active assignment: the user holds the role's group for the window without
    /// activating (it also makes them eligible for the role in that window).
    pub active: bool,
    /// Why it was made, as given (active assignments).
    pub reason: String,
    /// The grant an active assignment materialised as once its start came; `None` before.
    pub grant_id: Option<i64>,
    /// The notices of its end already sent, for its current end ([`NOTICE_14D`],
    /// [`NOTICE_1D`]); moving the end clears them.
    pub notices_sent: u32,
    /// Which version of the assignment this is: the store gives every `put_assignment` a
    /// number no version of any assignment had before (see `Renewal::revision`).
    pub revision: i64,
}

/// [`Assignment::notices_sent`]: the notice 14 days before the end went out.
pub const NOTICE_14D: u32 = 1;
/// [`Assignment::notices_sent`]: the notice 1 day before the end went out.
pub const NOTICE_1D: u32 = 2;

/// What a renewal request (a row of the requests, so that it shares their ids, `pim approve`,
/// `pim deny`, `pim show` and expiry) asks beyond a request: the assignment's new end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The new end; `None`: no end (only where the role's cap is "permanent").
    pub until: Option<i64>,
    /// The revision of the assignment it was filed against: once the assignment changed
    /// (re-assigned, its end moved, unassigned and assigned again), it is stale.
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRecord {
    pub secret: Vec<u8>,
    pub confirmed: bool,
    pub last_step: Option<u64>,
    /// When the enrolment (its secret) was made.
    pub created_at: i64,
}

/// A secret waiting for its first code: the new device of a confirmed enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSecret {
    pub secret: Vec<u8>,
    /// When it was made.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub duration_secs: u64,
    pub reason: String,
    pub ticket: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approvals_required: u32,
    pub state: RequestState,
}

/// The last successful synchronisation of a fleet host with the fleet's authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSync {
    /// When its snapshot's fetch began, by this host's clock (a slow answer is no fresher).
    pub synced_at: i64,
    /// The database's clock at that moment, as near as the host can tell
    /// ([`crate::fleet::mirror::db_clock_at`]).
    pub db_now: i64,
    /// The policy version the authority had then.
    pub policy_version: i64,
    /// Where this host's boot was then: staleness is measured on it too, which no setting of
    /// the wall clock moves back.
    pub boot: crate::clock::Boot,
}

/// One audit record as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: AuditAction,
    pub user: String,
    pub role: String,
    pub outcome: Outcome,
    pub reason: String,
    pub ticket: String,
    pub detail: String,
}

/// The end of the processes of a grant that ended (see [`crate::store::Tx::open_endings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub grant_id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub grace_secs: i64,
    pub term_at: Option<i64>,
}

/// A sweep for set-group-ID files that is not done (see
/// [`crate::store::Tx::pending_setgid_sweeps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSweep {
    pub user: String,
    pub group: String,
    /// The latest end of the user's grants of the group.
    pub ended_through: i64,
    /// The last walk of this sweep, if any.
    pub walked_at: Option<i64>,
    /// Walks in a row that failed.
    pub failures: u32,
}

/// A done sweep whose grant ended recently enough to be looked at again (see
/// [`crate::store::Tx::setgid_rechecks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRecheck {
    pub user: String,
    pub group: String,
    pub ended_through: i64,
    pub rechecked_at: Option<i64>,
}

/// Filter for reading the audit log.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery<'a> {
    pub since: i64,
    pub user: Option<&'a str>,
    pub role: Option<&'a str>,
    /// Only records that concern this person (`user`) or, with `by`, that they did (`actor`).
    pub involving: Option<&'a str>,
    /// With `involving`: also the records whose actor is this name.
    pub by: Option<&'a str>,
}

/// A reviewer's decision on one item of an access review, or what the default made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    Keep,
    Remove,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Keep => "keep",
            ReviewDecision::Remove => "remove",
        }
    }

    /// The decision [`ReviewDecision::as_str`] names; `None` for any other text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(ReviewDecision::Keep),
            "remove" => Some(ReviewDecision::Remove),
            _ => None,
        }
    }
}

/// An access review of one role: who reviews, until when, and what an undecided item gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Unused when inserting.
    pub id: i64,
    pub role: String,
    pub started_at: i64,
    pub ends_at: i64,
    /// As written: "self", "owners", "admins", user names and `%groups`.
    pub reviewers: Vec<String>,
    /// "remove", "keep" or "recommendation".
    pub default_decision: String,
    /// Started by the role's `review_every` (else one-off).
    pub recurring: bool,
    pub started_by: String,
    /// When its decisions were applied; `None` while it is open.
    pub completed_at: Option<i64>,
}

/// One user's access to a review's role, as it stood when the review started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewItem {
    pub review_id: i64,
    pub user: String,
    /// Eligible through the role's `eligible` entries (directly or by a %group).
    pub standing: bool,
    /// Through an assignment (eligible or active).
    pub assigned: bool,
    /// That assignment is an active one (the group without activation).
    pub active: bool,
    /// That assignment's revision: the end removes it only while it is unchanged.
    pub revision: Option<i64>,
    pub recommendation: ReviewDecision,
    /// Why, e.g. "no activation in 30 days".
    pub recommendation_why: String,
    /// The last reviewer's decision (last one wins while the review is open).
    pub decision: Option<ReviewDecision>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub comment: String,
    /// What the review's end did, e.g. "kept (decided)", "removed (default)".
    pub result: Option<String>,
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Resolved,
    Dismissed,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Resolved => "resolved",
            AlertState::Dismissed => "dismissed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => AlertState::Open,
            "resolved" => AlertState::Resolved,
            "dismissed" => AlertState::Dismissed,
            _ => return None,
        })
    }
}

/// One alert as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub state: AlertState,
    pub user: String,
    pub role: String,
    pub detail: String,
    pub raised_at: i64,
    pub closed_at: Option<i64>,
    pub dismissed_by: String,
    pub dismiss_reason: String,
    /// It stands for its key (open, or dismissed while its cause persists).
    pub holds_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert<'a> {
    pub kind: &'a str,
    pub key: &'a str,
    pub user: &'a str,
    pub role: &'a str,
    pub detail: &'a str,
    pub at: i64,
}
