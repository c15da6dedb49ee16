//! Wire types. D-Bus has no optional values, so "absent" is spelled `0` for timestamps and
//! `""` for strings; every timestamp is seconds since the Unix epoch (UTC).

use crate::vocab::{ActivationState, AuditAction, EventKind, Outcome, RequestState};
use serde::{Deserialize, Serialize};
use zbus::Type;

/// A role as the caller sees it: what it grants and what activating it requires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RoleInfo {
    pub name: String,
    pub group: String,
    pub description: String,
    pub max_duration_secs: u64,
    pub default_duration_secs: u64,
    pub require_mfa: bool,
    pub require_justification: bool,
    pub min_justification: u32,
    pub require_ticket: bool,
    pub ticket_pattern: String,
    pub require_approval: bool,
    pub approvals_required: u32,
    /// End of a time-bound assignment; 0 for standing eligibility.
    pub eligible_until: i64,
    /// End of the caller's live grant for this role; 0 when none.
    pub active_until: i64,
}

/// A grant: a user holds a role's group from `started_at` until `ends_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GrantInfo {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub started_at: i64,
    pub ends_at: i64,
    pub reason: String,
    pub ticket: String,
}

/// What a live grant's end does to the processes of its user that carry the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct GrantEnd {
    pub grant_id: i64,
    /// How many carry it now; -1 when the process table could not be read.
    pub processes: i64,
    /// "terminate" (SIGTERM, then SIGKILL after `end_grace_secs`) or "keep".
    pub on_end: String,
    pub end_grace_secs: u64,
}

/// A request for a role that needs approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RequestInfo {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub duration_secs: u64,
    pub reason: String,
    pub ticket: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: RequestState,
    pub approvals_required: u32,
    pub approved_by: Vec<String>,
}

/// What `Activate` did: `state` is `active` (see `grant`) or `pending` (see `request`); the
/// other one is a default value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ActivateReply {
    pub state: ActivationState,
    pub grant: GrantInfo,
    pub request: RequestInfo,
}

/// The caller's MFA enrolment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct MfaStatusInfo {
    pub enrolled: bool,
    /// Enrolment started but not yet confirmed with a first code; with `enrolled`, a change of
    /// device started ('pim mfa enroll' while enrolled) and not yet confirmed.
    pub pending: bool,
    /// Lockout end; 0 when not locked.
    pub locked_until: i64,
    pub recent_failures: u32,
    pub recovery_codes_left: u32,
    /// When a change of device still waiting for its first code expires; 0 when none is.
    pub device_change_until: i64,
    /// When the recovery codes were issued; 0 when unknown or none.
    pub recovery_codes_issued_at: i64,
}

/// Records one `Audit` call returns at most: the oldest that match, so that asking again with
/// `since` at the last one's time gives the next (a reply is bounded, and so is the manager's
/// time on it).
pub const MAX_AUDIT_RECORDS: u32 = 1000;

/// One row of the append-only audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    /// Who did it (a user name, or `pimd` for the daemon's own actions such as expiry).
    pub actor: String,
    pub action: AuditAction,
    /// Whose grant, request or enrolment it concerns.
    pub user: String,
    pub role: String,
    pub outcome: Outcome,
    pub reason: String,
    pub ticket: String,
    /// Free text: the refusal's message, the duration, the request id, ...
    pub detail: String,
    /// The hash of the record before it in the audit chain (see [`crate::chain`]); "" for a
    /// record written before the chain began.
    pub prev: String,
    /// This record's hash over its fields and `prev`; "" before the chain began.
    pub hash: String,
}

/// The PAM module's question answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AccessDecision {
    pub allowed: bool,
    /// One line for the user when refused (what expired and how to activate again).
    pub message: String,
}

/// A notification for `pim watch` and `pim activate --wait`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct EventInfo {
    pub kind: EventKind,
    pub at: i64,
    pub user: String,
    pub role: String,
    pub request_id: i64,
    pub grant_id: i64,
    pub actor: String,
    pub detail: String,
}

#[path = "types/review.rs"]
mod review;
pub use review::{DecidedRole, ReviewInfo, ReviewItemInfo};
/// One alert (`pim alerts`): drift from just-in-time access that an auditor must hear of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AlertInfo {
    pub id: i64,
    /// `member-outside-pim`, `process-outside-grant`, `sudoers-outside-pim`,
    /// `frequent-activation`, `stale-eligibility`, `too-many-privileged`, `weak-role` or
    /// `break-glass-used`.
    pub kind: String,
    /// The kind and its subject (user, role, group, sudoers file): the same cause gives the
    /// same key, so it is raised once.
    pub key: String,
    /// `open`, `resolved` (its cause went) or `dismissed`.
    pub state: String,
    /// Whom and which role it is about; empty when it is about none.
    pub user: String,
    pub role: String,
    /// What was seen: where (a sudoers file and line, pids), who, how many.
    pub detail: String,
    pub raised_at: i64,
    /// When it was resolved or dismissed; 0 while open.
    pub closed_at: i64,
    /// Who dismissed it and why; empty unless dismissed.
    pub dismissed_by: String,
    pub dismiss_reason: String,
}

/// The end of a grant that has none: an active assignment without an end (where the role's
/// `max_active_assignment` is "permanent"). 9999-12-31T23:59:59Z, far from overflow.
pub const NO_END: i64 = 253_402_300_799;

/// One of the caller's assignments to a role (`pim status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AssignmentInfo {
    pub user: String,
    pub role: String,
    /// An active assignment (the group without activation); else eligible.
    pub active: bool,
    /// Start and end; 0 when none.
    pub not_before: i64,
    pub not_after: i64,
    pub reason: String,
    /// A line for `pim status` within 14 days of its end (or 30 after it); empty otherwise.
    pub notice: String,
}

/// One request in full (`pim show`, `pim wait`): an activation or a renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RequestDetail {
    pub id: i64,
    /// `activation` or `renewal`.
    pub kind: String,
    pub user: String,
    pub role: String,
    pub group: String,
    /// `pending`, `approved`, `denied`, `cancelled` or `expired`.
    pub state: String,
    /// An activation's duration; 0 for a renewal.
    pub duration_secs: u64,
    /// A renewal's new end; 0 for an activation, or a renewal asking for no end.
    pub renew_until: i64,
    pub reason: String,
    pub ticket: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approvals_required: u32,
    pub approved_by: Vec<String>,
    /// Who decides it, as the configuration names them (users and %groups; for a renewal,
    /// the role's owners, the administrators and root).
    pub deciders: Vec<String>,
}

/// What `pim admin host disable` did: the grants for that host alone it ended and the
/// pending requests it cancelled, the requests whose approvals given on the host no longer
/// count, the users whose enrolment tickets shown there are void; and the users who
/// enrolled there (their secrets were made on that host: issue them new tickets with
/// `pim admin mfa-ticket USER --reset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FleetHostDisabled {
    pub grants_ended: Vec<i64>,
    pub requests_cancelled: Vec<i64>,
    pub approvals_withdrawn: Vec<i64>,
    pub tickets_void: Vec<String>,
    pub enrolled_there: Vec<String>,
}

/// One host of the fleet (`pim admin hosts`); times are the database's, 0 when never.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FleetHostInfo {
    pub name: String,
    pub tags: Vec<String>,
    /// The host's last call of any kind.
    pub last_seen: i64,
    /// The host's last snapshot.
    pub last_sync: i64,
    /// The host's clock minus the database's at that snapshot, in milliseconds.
    pub skew_ms: i64,
    /// When an administrator disabled the host (0: it is enabled), and who.
    pub disabled_at: i64,
    pub disabled_by: String,
}

/// A role of the configuration pimd runs on, as much as `pim doctor` judges against the
/// host: its group and its `permanent` principals (users and %groups).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RunningRoleInfo {
    pub name: String,
    pub group: String,
    pub permanent: Vec<String>,
}

/// Fleet mode, root only (`pim doctor`): the policy pimd runs on and its link to the
/// fleet's authority. Times are this host's, 0 when never.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FleetStateInfo {
    /// This host's name in the fleet.
    pub host: String,
    /// The policy version the running configuration comes from; 0: none yet (no roles).
    pub policy_version: i64,
    /// The running configuration's roles (none without a policy).
    pub roles: Vec<RunningRoleInfo>,
    /// The last successful synchronisation.
    pub last_sync: i64,
    /// The database's clock at that synchronisation.
    pub db_now: i64,
    /// The policy version the authority had then.
    pub synced_policy_version: i64,
    pub max_staleness_secs: u64,
    /// Why fleet grants do not count now (pimd refuses them); empty when the host is fresh.
    pub stale: String,
    /// The last synchronisation round got no snapshot: the database did not answer, or
    /// refused this host (pimd's log says which).
    pub unreachable: bool,
}
