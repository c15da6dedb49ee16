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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRecord {
    pub secret: Vec<u8>,
    pub confirmed: bool,
    pub last_step: Option<u64>,
    /// When the enrolment (its secret) was made.
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
