//! The seam between pimd and the fleet's authority (PostgreSQL): a synchronous trait the
//! manager calls off the async thread, and its PostgreSQL implementation. Every decision
//! (eligibility, TOTP, approvals, end times) is taken inside the database by the
//! `pim_api` functions of `schema.sql`; this side only carries the call and maps the
//! database's refusals to the `PimError` the caller sees.

use pim_common::PimError;

pub type Unix = i64; // seconds since the epoch, from the database's clock

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetGrant {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub started_at: Unix,
    pub ends_at: Unix,
    pub reason: String,
    pub ticket: String,
    pub request_id: Option<i64>,
    pub only_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub host: String,
    pub db_now: Unix,
    pub policy_version: i64,
    pub grants: Vec<FleetGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: i64,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct ActivationAsk<'a> {
    pub user: &'a str,
    pub user_groups: &'a [String],
    pub role: &'a str,
    pub duration_secs: u64,
    pub reason: &'a str,
    pub ticket: &'a str,
    pub code: &'a str,
    pub only_host: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activated {
    Granted(FleetGrant),
    Pending {
        request_id: i64,
        approvals_required: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Decision<'a> {
    pub request_id: i64,
    pub approver: &'a str,
    pub approver_groups: &'a [String],
    pub code: &'a str,
    pub comment: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    Granted(FleetGrant),
    StillPending { approvals: u32, required: u32 },
    Denied,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetRequest {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub duration_secs: u64,
    pub reason: String,
    pub ticket: String,
    pub created_at: Unix,
    pub expires_at: Unix,
    pub approvals: u32,
    pub approvals_required: u32,
    pub state: String,
    pub only_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub tags: Vec<String>,
    pub last_seen: Option<Unix>,
    pub last_sync: Option<Unix>,
    pub skew_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
pub struct AdminProof<'a> {
    pub actor: &'a str,
    pub code: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// Not connected, connection lost, timeout: nothing was decided.
    #[error("the fleet's database is unreachable: {0}")]
    Unreachable(String),
    /// The database refused, with the PimError the caller should see (mapped from the
    /// SQLSTATE/message the pim_api function raised: not eligible, invalid code, locked out,
    /// permission denied, not found, conflict, invalid argument).
    #[error("{0}")]
    Refused(PimError),
    /// Anything else (a bug, a schema mismatch): nothing was granted.
    #[error("fleet database error: {0}")]
    Database(String),
}

pub trait Authority: Send {
    fn snapshot(&mut self) -> Result<Snapshot, AuthorityError>; // also records last_sync + skew
    fn policy(&mut self, version: i64) -> Result<PolicyVersion, AuthorityError>;
    fn enrol(&mut self, user: &str, secret: &[u8]) -> Result<(), AuthorityError>; // pending
    fn confirm_enrolment(&mut self, user: &str, code: &str) -> Result<(), AuthorityError>;
    fn mfa_enrolled(&mut self, user: &str) -> Result<bool, AuthorityError>;
    fn activate(&mut self, ask: &ActivationAsk<'_>) -> Result<Activated, AuthorityError>;
    fn approve(&mut self, d: &Decision<'_>) -> Result<Decided, AuthorityError>;
    fn deny(&mut self, d: &Decision<'_>) -> Result<(), AuthorityError>;
    fn cancel(&mut self, user: &str, request_id: i64) -> Result<(), AuthorityError>;
    /// Open requests `approver` may decide (database decides who qualifies).
    fn requests_for(
        &mut self,
        approver: &str,
        approver_groups: &[String],
    ) -> Result<Vec<FleetRequest>, AuthorityError>;
    fn deactivate(&mut self, user: &str, role: &str) -> Result<Vec<i64>, AuthorityError>;
    fn revoke(
        &mut self,
        proof: &AdminProof<'_>,
        user: &str,
        role: &str,
        reason: &str,
    ) -> Result<Vec<i64>, AuthorityError>;
    fn expire_due(&mut self) -> Result<Vec<i64>, AuthorityError>;
    /// Local audit records in chain order; returns how many were stored (a retry after a
    /// partial ship must not duplicate: the database keys them by (host, local id)).
    fn ship_audit(
        &mut self,
        records: &[pim_common::types::AuditRecord],
    ) -> Result<usize, AuthorityError>;
    fn push_policy(
        &mut self,
        proof: &AdminProof<'_>,
        text: &str,
        normalized: &serde_json::Value,
    ) -> Result<i64, AuthorityError>;
    /// Returns the new host's database password (shown once).
    fn add_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
        tags: &[String],
    ) -> Result<String, AuthorityError>;
    fn hosts(&mut self) -> Result<Vec<HostInfo>, AuthorityError>;
}

/// Blocks up to `timeout` for a NOTIFY on `pim_wake` (its own connection); Ok(true) if woken.
pub trait Wakeup: Send {
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, AuthorityError>;
}
