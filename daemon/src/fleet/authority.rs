//! The seam between pimd and the fleet's authority (PostgreSQL): a synchronous trait the
//! manager calls off the async thread, and its PostgreSQL implementation. Every decision
//! (eligibility, TOTP, approvals, end times) is taken inside the database by the
//! `pim_api` functions of `schema.sql`; this side only carries the call and maps the
//! database's refusals to the `PimError` the caller sees.

use super::conninfo::ConnInfo;
use pim_common::PimError;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

pub type Unix = i64; // seconds since the epoch, from the database's clock

/// The version of the authority's schema (schema.sql records it in pim.schema_version) this
/// pimd speaks: it takes nothing from an authority of another version, older or newer.
/// Bump it with any change of what a pim_api function takes, returns or expects around it.
pub const SCHEMA_VERSION: i32 = 2;

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

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
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
    /// The approvers so far, in the order they approved.
    #[serde(default)]
    pub approved_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub tags: Vec<String>,
    pub last_seen: Option<Unix>,
    pub last_sync: Option<Unix>,
    pub skew_ms: Option<i64>,
    /// When an administrator disabled the host, and who; `None`: it is enabled.
    #[serde(default)]
    pub disabled_at: Option<Unix>,
    #[serde(default)]
    pub disabled_by: Option<String>,
}

/// What `disable_host` ended: the grants for that host alone, the pending requests it
/// filed or that were for it alone, the approvals given on it to pending requests (their
/// ids), the enrolment tickets shown on it (their users); and who enrolled on it (their
/// secrets were made there, so an administrator re-issues them tickets).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct HostDisabled {
    pub grants_ended: Vec<i64>,
    pub requests_cancelled: Vec<i64>,
    #[serde(default)]
    pub approvals_withdrawn: Vec<i64>,
    #[serde(default)]
    pub tickets_void: Vec<String>,
    #[serde(default)]
    pub enrolled_there: Vec<String>,
}

/// What applies to a user's MFA on this host (`pim mfa status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct MfaState {
    pub enrolled: bool,
    /// The end of the lockout that applies here (this host's or every host's); 0: none.
    pub locked_until: Unix,
    /// This host's wrong codes in the current window.
    pub recent_failures: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct AdminProof<'a> {
    pub actor: &'a str,
    pub code: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// Not connected, connection lost, timeout: nothing was decided (or, when the
    /// connection was lost after the commit, what was decided reaches every host through
    /// its next snapshot: the caller must not count on it either way).
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
    /// Starts `user`'s enrolment (pending until confirmed) with the enrolment ticket a fleet
    /// administrator issued for them.
    fn enrol(&mut self, user: &str, secret: &[u8], ticket: &str) -> Result<(), AuthorityError>;
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
    /// Issues `user`'s one-time enrolment ticket (replacing any earlier one) on an
    /// administrator's proof; returns it (shown once). With `reset`, `user`'s enrolment is
    /// removed first (a lost device), in the same transaction.
    fn mfa_ticket(
        &mut self,
        proof: &AdminProof<'_>,
        user: &str,
        reset: bool,
    ) -> Result<String, AuthorityError>;
    /// Removes `user`'s enrolment (a lost device) on an administrator's proof. Added after
    /// the seam was fixed: the default refuses, so that implementations without it build.
    fn mfa_reset(&mut self, proof: &AdminProof<'_>, user: &str) -> Result<(), AuthorityError> {
        let _ = (proof, user);
        Err(AuthorityError::Refused(PimError::Conflict(
            "this authority cannot reset an enrolment".into(),
        )))
    }
    /// Disables host `name` on an administrator's proof (its login, its calls, its grants
    /// for it alone, its pending requests). Added after the seam was fixed, as `mfa_reset`.
    fn disable_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
    ) -> Result<HostDisabled, AuthorityError> {
        let _ = (proof, name);
        Err(AuthorityError::Refused(PimError::Conflict(
            "this authority cannot disable a host".into(),
        )))
    }
    /// Lets disabled host `name` back with a new database password, which it returns (shown
    /// once): the old one may be known to whoever had the host.
    fn enable_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
    ) -> Result<String, AuthorityError> {
        let _ = (proof, name);
        Err(AuthorityError::Refused(PimError::Conflict(
            "this authority cannot enable a host".into(),
        )))
    }
    /// Request `id` as `viewer` may see it (`pim show`): the requester, an approver, an
    /// administrator. Added after the seam was fixed, as `mfa_reset`.
    fn request(&mut self, viewer: &str, id: i64) -> Result<FleetRequest, AuthorityError> {
        let _ = (viewer, id);
        Err(AuthorityError::Refused(PimError::Conflict(
            "this authority cannot show a request".into(),
        )))
    }
    /// The user's enrolment and the lockout that applies on this host.
    fn mfa_state(&mut self, user: &str) -> Result<MfaState, AuthorityError> {
        Ok(MfaState {
            enrolled: self.mfa_enrolled(user)?,
            ..MfaState::default()
        })
    }
}

/// Blocks up to `timeout` for a NOTIFY on `pim_wake` (its own connection); Ok(true) if woken.
pub trait Wakeup: Send {
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, AuthorityError>;
}

// ---------------------------------------------------------------------------------------
// The PostgreSQL implementation.

/// The authority over one connection, opened on the first call and again after it is lost;
/// a call that cannot reach the database fails with `Unreachable`, having decided nothing.
pub struct PgAuthority {
    conninfo: ConnInfo,
    client: Option<postgres::Client>,
}

impl PgAuthority {
    /// Does not connect: pimd starts, and enforces its mirror, while the database is down.
    pub fn new(conninfo: ConnInfo) -> PgAuthority {
        PgAuthority {
            conninfo,
            client: None,
        }
    }

    fn client(&mut self) -> Result<&mut postgres::Client, AuthorityError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let mut client = self
                .conninfo
                .connect()
                .map_err(AuthorityError::Unreachable)?;
            check_schema_version(&mut client)?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| AuthorityError::Unreachable("not connected".into()))
    }

    /// Runs `SELECT <sql>` (one pim_api call, its own transaction) and returns the one
    /// value; a returned `{"refused": ...}` becomes `Refused`.
    fn call<T: postgres::types::FromSqlOwned>(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<T, AuthorityError> {
        let result = self.client()?.query_one(sql, params);
        match result {
            Ok(row) => row
                .try_get(0)
                .map_err(|e| AuthorityError::Database(e.to_string())),
            Err(e) => {
                let error = classify(&e);
                if matches!(error, AuthorityError::Unreachable(_)) {
                    self.client = None;
                }
                Err(error)
            }
        }
    }

    /// Offers `user`'s code to the authority in a call (a transaction) of its own, before
    /// the call that checks it: the database counts it as a wrong code until that call
    /// finds it fresh, so no rollback of the checking call can undo the count. An empty
    /// code is not offered (the checking call says a code is required, if it is).
    fn offer_code(&mut self, user: &str, code: &str) -> Result<(), AuthorityError> {
        if code.trim().is_empty() {
            return Ok(());
        }
        self.call_json("SELECT pim_api.offer_code($1, $2)", &[&user, &code])
            .map(drop)
    }

    fn call_json(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<serde_json::Value, AuthorityError> {
        let value: serde_json::Value = self.call(sql, params)?;
        match refusal(&value) {
            Some(refused) => Err(refused),
            None => Ok(value),
        }
    }
}

/// Refuses (fails closed, the connection unused) an authority whose schema this pimd does
/// not speak; before version 2 there was no pim_api.schema_version.
fn check_schema_version(client: &mut postgres::Client) -> Result<(), AuthorityError> {
    let found = match client.query_one("SELECT pim_api.schema_version()", &[]) {
        Ok(row) => row
            .try_get::<_, Option<i32>>(0)
            .map_err(|e| AuthorityError::Database(e.to_string()))?,
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_FUNCTION) => Some(1),
        Err(e) => return Err(classify(&e)),
    };
    match schema_mismatch(found) {
        Some(why) => Err(AuthorityError::Database(why)),
        None => Ok(()),
    }
}

/// Why an authority of schema version `found` (`None`: none recorded) is refused, if it is.
pub fn schema_mismatch(found: Option<i32>) -> Option<String> {
    match found {
        Some(v) if v == SCHEMA_VERSION => None,
        Some(v) if v > SCHEMA_VERSION => Some(format!(
            "the fleet's database has schema version {v}, newer than version \
             {SCHEMA_VERSION} which this pimd speaks; nothing is taken from it: upgrade pim on \
             this host"
        )),
        found => Some(format!(
            "the fleet's database has schema version {}, older than version {SCHEMA_VERSION} \
             which this pimd speaks; nothing is taken from it: an administrator runs \
             'pimd --fleet-setup ADMIN_CONNINFO' again with this version of pim to upgrade it",
            found.map_or_else(|| "none".to_string(), |v| v.to_string())
        )),
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, AuthorityError> {
    serde_json::from_value(value)
        .map_err(|e| AuthorityError::Database(format!("unexpected answer from the database: {e}")))
}

fn ids(value: serde_json::Value) -> Result<Vec<i64>, AuthorityError> {
    decode(value)
}

fn duration_param(secs: u64) -> Result<i64, AuthorityError> {
    i64::try_from(secs).map_err(|_| {
        AuthorityError::Refused(PimError::InvalidArgument(format!(
            "a duration of {secs} seconds is too long"
        )))
    })
}

fn host_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How many audit records one `pim_api.ship_audit` call takes (the function's own bound).
const SHIP_BATCH: usize = 1000;
/// How much JSON pimd sends in one `pim_api.ship_audit` call: half the function's bound
/// (`pim.ship_max_bytes()`, 1 MiB, measured on the database's rendering, which adds a few
/// spaces a record).
const SHIP_BATCH_BYTES: usize = 512 * 1024;

/// `records` cut into the batches of at most [`SHIP_BATCH`] records and
/// [`SHIP_BATCH_BYTES`] of JSON that `pim_api.ship_audit` takes, in order. A record is
/// never larger than a batch (shipped records are cut to the function's bounds first).
fn ship_batches(
    records: &[pim_common::types::AuditRecord],
) -> Result<Vec<serde_json::Value>, AuthorityError> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 2;
    for record in records {
        let json = serde_json::to_value(record)
            .map_err(|e| AuthorityError::Database(format!("audit records: {e}")))?;
        let size = json.to_string().len() + 1;
        if !batch.is_empty() && (batch.len() == SHIP_BATCH || bytes + size > SHIP_BATCH_BYTES) {
            batches.push(serde_json::Value::Array(std::mem::take(&mut batch)));
            bytes = 2;
        }
        bytes += size;
        batch.push(json);
    }
    if !batch.is_empty() {
        batches.push(serde_json::Value::Array(batch));
    }
    Ok(batches)
}

impl Authority for PgAuthority {
    fn snapshot(&mut self) -> Result<Snapshot, AuthorityError> {
        let value = self.call_json("SELECT pim_api.snapshot($1)", &[&host_now_ms()])?;
        let wire: wire::Snapshot = decode(value)?;
        Ok(Snapshot {
            host: wire.host,
            db_now: wire.db_now,
            policy_version: wire.policy_version,
            grants: wire.grants.into_iter().map(FleetGrant::from).collect(),
        })
    }

    fn policy(&mut self, version: i64) -> Result<PolicyVersion, AuthorityError> {
        let value = self.call_json("SELECT pim_api.policy($1)", &[&version])?;
        let wire: wire::Policy = decode(value)?;
        Ok(PolicyVersion {
            version: wire.version,
            text: wire.text,
        })
    }

    /// The ticket is offered in a call of its own first, as codes are: the database counts
    /// it as a wrong one until enrol finds it right.
    fn enrol(&mut self, user: &str, secret: &[u8], ticket: &str) -> Result<(), AuthorityError> {
        if !ticket.trim().is_empty() {
            self.call_json("SELECT pim_api.offer_ticket($1, $2)", &[&user, &ticket])?;
        }
        self.call_json(
            "SELECT pim_api.enrol($1, $2, $3)",
            &[&user, &secret, &ticket],
        )
        .map(drop)
    }

    fn confirm_enrolment(&mut self, user: &str, code: &str) -> Result<(), AuthorityError> {
        self.offer_code(user, code)?;
        self.call_json("SELECT pim_api.confirm_enrolment($1, $2)", &[&user, &code])
            .map(drop)
    }

    fn mfa_enrolled(&mut self, user: &str) -> Result<bool, AuthorityError> {
        self.call("SELECT pim_api.mfa_enrolled($1)", &[&user])
    }

    fn activate(&mut self, ask: &ActivationAsk<'_>) -> Result<Activated, AuthorityError> {
        let duration = duration_param(ask.duration_secs)?;
        self.offer_code(ask.user, ask.code)?;
        let value = self.call_json(
            "SELECT pim_api.activate($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &ask.user,
                &ask.user_groups,
                &ask.role,
                &duration,
                &ask.reason,
                &ask.ticket,
                &ask.code,
                &ask.only_host,
            ],
        )?;
        match decode::<wire::Outcome>(value)? {
            wire::Outcome::Granted(grant) => Ok(Activated::Granted(grant.into())),
            wire::Outcome::Pending {
                request_id,
                approvals_required,
            } => Ok(Activated::Pending {
                request_id,
                approvals_required,
            }),
            other => Err(unexpected(&other)),
        }
    }

    fn approve(&mut self, d: &Decision<'_>) -> Result<Decided, AuthorityError> {
        self.offer_code(d.approver, d.code)?;
        let value = self.call_json(
            "SELECT pim_api.approve($1, $2, $3, $4, $5)",
            &[
                &d.request_id,
                &d.approver,
                &d.approver_groups,
                &d.code,
                &d.comment,
            ],
        )?;
        match decode::<wire::Outcome>(value)? {
            wire::Outcome::Granted(grant) => Ok(Decided::Granted(grant.into())),
            wire::Outcome::StillPending {
                approvals,
                required,
            } => Ok(Decided::StillPending {
                approvals,
                required,
            }),
            other => Err(unexpected(&other)),
        }
    }

    fn deny(&mut self, d: &Decision<'_>) -> Result<(), AuthorityError> {
        self.offer_code(d.approver, d.code)?;
        let value = self.call_json(
            "SELECT pim_api.deny($1, $2, $3, $4, $5)",
            &[
                &d.request_id,
                &d.approver,
                &d.approver_groups,
                &d.code,
                &d.comment,
            ],
        )?;
        match decode::<wire::Outcome>(value)? {
            wire::Outcome::Denied(true) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    fn cancel(&mut self, user: &str, request_id: i64) -> Result<(), AuthorityError> {
        self.call_json("SELECT pim_api.cancel($1, $2)", &[&user, &request_id])
            .map(drop)
    }

    fn requests_for(
        &mut self,
        approver: &str,
        approver_groups: &[String],
    ) -> Result<Vec<FleetRequest>, AuthorityError> {
        let value = self.call_json(
            "SELECT pim_api.requests_for($1, $2)",
            &[&approver, &approver_groups],
        )?;
        decode(value)
    }

    fn deactivate(&mut self, user: &str, role: &str) -> Result<Vec<i64>, AuthorityError> {
        ids(self.call_json("SELECT pim_api.deactivate($1, $2)", &[&user, &role])?)
    }

    fn revoke(
        &mut self,
        proof: &AdminProof<'_>,
        user: &str,
        role: &str,
        reason: &str,
    ) -> Result<Vec<i64>, AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        ids(self.call_json(
            "SELECT pim_api.revoke($1, $2, $3, $4, $5)",
            &[&proof.actor, &proof.code, &user, &role, &reason],
        )?)
    }

    fn expire_due(&mut self) -> Result<Vec<i64>, AuthorityError> {
        ids(self.call_json("SELECT pim_api.expire_due()", &[])?)
    }

    /// Returns how many of `records` the database holds after the call, stored now or by an
    /// earlier (partial) ship: all of them, unless an error stopped it between batches.
    fn ship_audit(
        &mut self,
        records: &[pim_common::types::AuditRecord],
    ) -> Result<usize, AuthorityError> {
        let mut held = 0;
        for batch in ship_batches(records)? {
            let records_in = batch.as_array().map_or(0, Vec::len);
            let _new: i64 = match self.call("SELECT pim_api.ship_audit($1)", &[&batch]) {
                Ok(new) => new,
                Err(e) if held == 0 => return Err(e),
                Err(_) => return Ok(held),
            };
            held += records_in;
        }
        Ok(held)
    }

    fn push_policy(
        &mut self,
        proof: &AdminProof<'_>,
        text: &str,
        normalized: &serde_json::Value,
    ) -> Result<i64, AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        let value = self.call_json(
            "SELECT pim_api.push_policy($1, $2, $3, $4)",
            &[&proof.actor, &proof.code, &text, normalized],
        )?;
        let wire: wire::Pushed = decode(value)?;
        Ok(wire.version)
    }

    fn add_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
        tags: &[String],
    ) -> Result<String, AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        let value = self.call_json(
            "SELECT pim_api.add_host($1, $2, $3, $4)",
            &[&proof.actor, &proof.code, &name, &tags],
        )?;
        let wire: wire::HostAdded = decode(value)?;
        Ok(wire.password)
    }

    fn hosts(&mut self) -> Result<Vec<HostInfo>, AuthorityError> {
        decode(self.call_json("SELECT pim_api.hosts()", &[])?)
    }

    fn disable_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
    ) -> Result<HostDisabled, AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        decode(self.call_json(
            "SELECT pim_api.disable_host($1, $2, $3)",
            &[&proof.actor, &proof.code, &name],
        )?)
    }

    fn enable_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
    ) -> Result<String, AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        let value = self.call_json(
            "SELECT pim_api.enable_host($1, $2, $3)",
            &[&proof.actor, &proof.code, &name],
        )?;
        let wire: wire::HostAdded = decode(value)?;
        Ok(wire.password)
    }

    fn request(&mut self, viewer: &str, id: i64) -> Result<FleetRequest, AuthorityError> {
        decode(self.call_json("SELECT pim_api.request($1, $2)", &[&viewer, &id])?)
    }

    fn mfa_state(&mut self, user: &str) -> Result<MfaState, AuthorityError> {
        decode(self.call_json("SELECT pim_api.mfa_status($1)", &[&user])?)
    }

    fn mfa_ticket(
        &mut self,
        proof: &AdminProof<'_>,
        user: &str,
        reset: bool,
    ) -> Result<String, AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        let value = self.call_json(
            "SELECT pim_api.mfa_ticket($1, $2, $3, $4)",
            &[&proof.actor, &proof.code, &user, &reset],
        )?;
        let wire: wire::Ticket = decode(value)?;
        Ok(wire.ticket)
    }

    fn mfa_reset(&mut self, proof: &AdminProof<'_>, user: &str) -> Result<(), AuthorityError> {
        self.offer_code(proof.actor, proof.code)?;
        self.call_json(
            "SELECT pim_api.mfa_reset($1, $2, $3)",
            &[&proof.actor, &proof.code, &user],
        )
        .map(drop)
    }
}

fn unexpected(outcome: &wire::Outcome) -> AuthorityError {
    AuthorityError::Database(format!("unexpected answer from the database: {outcome:?}"))
}

/// The PimError kind of each SQLSTATE the pim_api functions raise (schema.sql's header).
fn refused(sqlstate: &str, message: &str) -> Option<PimError> {
    let message = pim_common::text::escape_unsafe(message);
    Some(match sqlstate {
        "PM001" => PimError::NotEligible(message),
        "PM002" => PimError::InvalidArgument(message),
        "PM003" => PimError::MfaRequired(message),
        "PM004" => PimError::MfaNotEnrolled(message),
        "PM005" => PimError::InvalidCode(message),
        "PM006" => PimError::MfaLockedOut(message),
        "PM007" => PimError::PermissionDenied(message),
        "PM008" => PimError::NotFound(message),
        "PM009" => PimError::Conflict(message),
        _ => return None,
    })
}

/// A refusal the function returned rather than raised (it keeps what it wrote, such as a
/// wrong code's failure count).
fn refusal(value: &serde_json::Value) -> Option<AuthorityError> {
    let refused_value = value.get("refused")?;
    let kind = refused_value.get("kind")?.as_str()?;
    let message = refused_value.get("message")?.as_str()?;
    Some(match refused(kind, message) {
        Some(error) => AuthorityError::Refused(error),
        None => AuthorityError::Database(format!("unknown refusal {kind}: {message}")),
    })
}

/// What a failed call means for the caller. Nothing of a failed statement was committed.
fn classify(error: &postgres::Error) -> AuthorityError {
    let Some(db) = error.as_db_error() else {
        // I/O, a closed connection, TLS, a client-side timeout: the database was not heard.
        return AuthorityError::Unreachable(error.to_string());
    };
    let code = db.code().code();
    if let Some(refusal) = refused(code, db.message()) {
        return AuthorityError::Refused(refusal);
    }
    // 57014: statement_timeout; 55P03: lock_timeout (a row another session holds);
    // 08: connection exceptions; 57P: the server shutting down.
    if ["57014", "55P03"].contains(&code) || code.starts_with("08") || code.starts_with("57P") {
        return AuthorityError::Unreachable(db.message().to_string());
    }
    AuthorityError::Database(format!("{code}: {}", db.message()))
}

/// The JSON the pim_api functions return.
mod wire {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
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
        pub only_host: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Snapshot {
        pub host: String,
        pub db_now: i64,
        pub policy_version: i64,
        pub grants: Vec<Grant>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Policy {
        pub version: i64,
        pub text: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Outcome {
        Granted(Grant),
        Pending {
            request_id: i64,
            approvals_required: u32,
        },
        StillPending {
            approvals: u32,
            required: u32,
        },
        Denied(bool),
    }

    #[derive(Debug, Deserialize)]
    pub struct Pushed {
        pub version: i64,
    }

    #[derive(Debug, Deserialize)]
    pub struct HostAdded {
        pub password: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Ticket {
        pub ticket: String,
    }
}

impl From<wire::Grant> for FleetGrant {
    fn from(g: wire::Grant) -> FleetGrant {
        FleetGrant {
            id: g.id,
            user: g.user,
            role: g.role,
            group: g.group,
            started_at: g.started_at,
            ends_at: g.ends_at,
            reason: g.reason,
            ticket: g.ticket,
            request_id: g.request_id,
            only_host: g.only_host,
        }
    }
}

/// Waits for `NOTIFY pim_wake` on a connection of its own, which a thread reads all the
/// time: a session whose notifications pile up unread blocks the NOTIFY queue for every
/// session of the database, and the database ends it (pim.cut_stuck_hosts). A flood of
/// NOTIFYs (any login may send them) is read and folded into one wake.
pub struct PgWakeup {
    conninfo: ConnInfo,
    /// The listening thread's wakes (at most one waiting: it stands for any number), or how
    /// its connection ended; `None`: not listening.
    wakes: Option<Receiver<Result<(), String>>>,
}

/// How often the listening thread runs a query: the database then sees its session active
/// lately, as pim.cut_stuck_hosts asks of a session it may find writing, and a connection
/// that died shows.
const LISTEN_PING: Duration = Duration::from_secs(5);

impl PgWakeup {
    /// Does not connect: the first `wait` does.
    pub fn new(conninfo: ConnInfo) -> PgWakeup {
        PgWakeup {
            conninfo,
            wakes: None,
        }
    }
}

impl Wakeup for PgWakeup {
    /// A fresh connection counts as a wake: notifications sent while disconnected are lost,
    /// so the caller must take a snapshot.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, AuthorityError> {
        let Some(wakes) = self.wakes.as_ref() else {
            let mut client = self
                .conninfo
                .connect()
                .map_err(AuthorityError::Unreachable)?;
            client
                .batch_execute("LISTEN pim_wake")
                .map_err(|e| classify(&e))?;
            let (wake, wakes) = sync_channel(1);
            std::thread::Builder::new()
                .name("pim-fleet-listen".into())
                .spawn(move || listen(client, wake))
                .map_err(|e| AuthorityError::Database(format!("cannot start a thread: {e}")))?;
            self.wakes = Some(wakes);
            return Ok(true);
        };
        match wakes.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(true),
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Ok(Err(why)) => {
                self.wakes = None;
                Err(AuthorityError::Unreachable(why))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.wakes = None;
                Err(AuthorityError::Unreachable(
                    "the connection to the fleet's database was closed".into(),
                ))
            }
        }
    }
}

/// The listening thread: reads every notification as it comes and says that something
/// happened (a wake already waiting says it for this one too), runs a query every
/// [`LISTEN_PING`], and ends with how its connection ended.
fn listen(mut client: postgres::Client, wake: SyncSender<Result<(), String>>) {
    use postgres::fallible_iterator::FallibleIterator;
    loop {
        let ping_at = Instant::now() + LISTEN_PING;
        let read = {
            let mut notifications = client.notifications();
            let mut arriving = notifications.timeout_iter(LISTEN_PING);
            loop {
                match arriving.next() {
                    Ok(Some(_)) => match wake.try_send(Ok(())) {
                        Ok(()) | Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => return,
                    },
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e.to_string()),
                }
                if Instant::now() >= ping_at {
                    break Ok(());
                }
            }
        };
        let ended = read.and_then(|()| {
            if client.is_closed() {
                return Err("the connection to the fleet's database was closed".to_string());
            }
            client.batch_execute("SELECT 1").map_err(|e| e.to_string())
        });
        if let Err(why) = ended {
            let _ = wake.send(Err(why));
            return;
        }
    }
}

#[cfg(test)]
mod tests;
