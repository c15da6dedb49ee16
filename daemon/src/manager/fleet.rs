//! Fleet mode (`[fleet]`): the calls that need the fleet's authority go to it (activate,
//! approve, deny, cancel, requests, deactivate, revoke, MFA enrolment, hosts, policy), and
//! its snapshots are mirrored into the local store, where PAM checks, expiry and gpasswd work
//! as for a host on its own. What fleet mode does not do yet (assignments, renewals, reviews,
//! extending, MFA resets) is refused naming the limitation.
//!
//! Every decision is the database's: this side bounds the input before the network, carries
//! the call, mirrors what it granted, and audits locally what it refused (those records are
//! shipped to the fleet's audit with the rest of the local spool).

use super::activation::no_live_grant;
use super::*;
use crate::fleet::authority::{
    self as fa, Activated, AdminProof, Authority, AuthorityError, Decided, Decision, FleetGrant,
    FleetRequest, HostInfo, Snapshot,
};
use crate::fleet::mirror::{self, EndWhy};
use crate::model::FleetSync;
use pim_common::types::FleetHostInfo;
use std::collections::BTreeSet;

/// Opens connections to the fleet's authority: the PostgreSQL one in pimd, a fake in tests.
pub trait Connector: Send + Sync {
    fn connect(&self) -> Result<Box<dyn Authority>, AuthorityError>;
}

/// Local audit records shipped to the fleet per round at most: a long partition's spool goes
/// out over several rounds, each a bounded transaction there.
pub const SHIP_BATCH: u32 = 500;

/// Longest policy file `pim admin policy push` takes.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// Longest one-time code taken before any work (TOTP codes are 6 digits, recovery codes
/// longer; anything beyond this is not a code).
const MAX_CODE_BYTES: usize = 64;

/// Longest enrolment ticket taken before any work (they are 23 characters with dashes; the
/// database's own bound).
pub const MAX_TICKET_BYTES: usize = 64;

/// At most this many tags per host.
pub const MAX_HOST_TAGS: usize = 32;
/// The bounds `pim_api.ship_audit` puts on a shipped record's names (actor, user, role),
/// reason and detail, and ticket, in bytes.
const SHIPPED_NAME_BYTES: usize = 256;
const SHIPPED_TEXT_BYTES: usize = 4096;
const SHIPPED_TICKET_BYTES: usize = 1024;

/// What fleet mode does not do yet, for the refusal that names it.
#[derive(Debug, Clone, Copy)]
pub enum NotInFleet {
    Assignments,
    Renewals,
    Reviews,
    Extend,
    MfaReset,
    DeviceChange,
    RecoveryCodes,
}

impl NotInFleet {
    fn describe(self) -> &'static str {
        match self {
            NotInFleet::Assignments => "assignments (pim admin assign, unassign, reinstate)",
            NotInFleet::Renewals => "renewals (pim renew)",
            NotInFleet::Reviews => "access reviews",
            NotInFleet::Extend => "extending a grant (pim extend); deactivate and activate again",
            NotInFleet::MfaReset => "MFA resets and unlocks",
            NotInFleet::DeviceChange => "changing an enrolment's device (pim mfa enroll again)",
            NotInFleet::RecoveryCodes => "recovery codes",
        }
    }
}

/// The manager's link to the fleet: its own connection to the authority (opened when a call
/// needs it, dropped when it fails), this host's name and the host's own configuration,
/// which each policy version is put together with.
pub struct Fleet {
    connector: Arc<dyn Connector>,
    authority: Option<Box<dyn Authority>>,
    host: String,
    max_staleness: u64,
    /// This host's pim.toml: `[daemon]`'s host settings, `[audit]`, `[fleet]`.
    local: Config,
    /// The policy version the running configuration comes from (0: none yet), and that
    /// policy (`None`: none yet, so no roles).
    policy_version: i64,
    policy: Option<Config>,
    /// Fleet grants this host does not start, already audited (once each, not every round).
    ignored: BTreeSet<(i64, String)>,
    /// The sync thread's last round got no answer from the authority: calls fail at once
    /// as unreachable instead of each waiting out its own timeouts (under the manager's
    /// lock, which expiry needs) until a round gets an answer again.
    known_unreachable: bool,
}

impl Fleet {
    /// `local` must hold `[fleet]`; `host` is its `host`, or the host's name.
    pub fn new(connector: Arc<dyn Connector>, local: Config, host: String) -> Fleet {
        let max_staleness = local
            .fleet
            .as_ref()
            .map_or(pim_config::DEFAULT_MAX_STALENESS_SECS, |f| {
                f.max_staleness_secs
            });
        Fleet {
            connector,
            authority: None,
            host,
            max_staleness,
            local,
            policy_version: 0,
            policy: None,
            ignored: BTreeSet::new(),
            known_unreachable: false,
        }
    }
}

/// What one mirroring did, for the sync loop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mirrored {
    pub started: usize,
    pub ended: usize,
    /// Why fleet grants do not count now, if they do not.
    pub stale: Option<String>,
}

fn fleet_grant_info(g: &FleetGrant) -> GrantInfo {
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

fn fleet_request_info(r: &FleetRequest, group: &str) -> RequestInfo {
    RequestInfo {
        id: r.id,
        user: r.user.clone(),
        role: r.role.clone(),
        group: group.to_string(),
        duration_secs: r.duration_secs,
        reason: r.reason.clone(),
        ticket: r.ticket.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        state: r.state.parse().unwrap_or(RequestState::Pending),
        approvals_required: r.approvals_required,
        // The database counts approvals; their names stay in its audit.
        approved_by: vec![String::new(); r.approvals as usize],
    }
}

fn fleet_host_info(h: &HostInfo) -> FleetHostInfo {
    FleetHostInfo {
        name: h.name.clone(),
        tags: h.tags.clone(),
        last_seen: h.last_seen.unwrap_or(0),
        last_sync: h.last_sync.unwrap_or(0),
        skew_ms: h.skew_ms.unwrap_or(0),
    }
}

fn check_code(code: &str) -> Result<(), PimError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(PimError::InvalidArgument(format!(
            "the code is {} bytes long; a code is at most {MAX_CODE_BYTES}",
            code.len()
        )));
    }
    text::check("the code", code, MAX_CODE_BYTES).map_err(PimError::InvalidArgument)
}

/// An enrolment ticket as `pim mfa enroll --ticket` gives it: present (fleet mode enrols
/// with one only), bounded, printable. The database decides whether it is `user`'s.
fn check_ticket(user: &str, ticket: &str) -> Result<(), PimError> {
    if ticket.trim().is_empty() {
        return Err(PimError::PermissionDenied(format!(
            "in fleet mode a first enrolment needs the one-time enrolment ticket a fleet \
             administrator issues for you ('pim admin mfa-ticket {user}'); then run \
             'pim mfa enroll --ticket TICKET'"
        )));
    }
    text::check("the enrolment ticket", ticket, MAX_TICKET_BYTES).map_err(PimError::InvalidArgument)
}

/// In fleet mode an administrator's call carries their code, for the database to check.
fn require_admin_code(code: &str, what: &str) -> Result<(), PimError> {
    if code.is_empty() {
        return Err(PimError::MfaRequired(format!(
            "in fleet mode the fleet's database checks an administrator's TOTP code for {what}; \
             give --code CODE"
        )));
    }
    Ok(())
}

fn check_text(what: &str, value: &str, max: usize) -> Result<(), PimError> {
    text::check(what, value, max).map_err(PimError::InvalidArgument)
}

impl Manager {
    pub fn set_fleet(&mut self, fleet: Fleet) {
        self.fleet = Some(fleet);
    }

    pub fn in_fleet(&self) -> bool {
        self.fleet.is_some()
    }

    /// The refusal of what fleet mode does not do yet, audited like any refusal.
    pub(super) fn not_in_fleet<T>(
        &mut self,
        caller: &Caller,
        action: AuditAction,
        what: NotInFleet,
    ) -> Result<T, PimError> {
        let audit = Audit::new(&caller.name, action).about(&caller.name, "");
        self.refused(
            &audit,
            PimError::Conflict(format!(
                "fleet mode does not support {} yet; this host takes its policy, grants and \
                 MFA from the fleet's database",
                what.describe()
            )),
        )
    }

    /// How long ago the last synchronisation was, for messages.
    fn last_sync_told(&mut self) -> String {
        let now = self.now();
        match self.store.read(|tx| tx.fleet_sync()) {
            Ok(Some(sync)) => format!(
                "last synchronised {} ago",
                duration::format(now.saturating_sub(sync.synced_at).max(0) as u64)
            ),
            Ok(None) => "never synchronised".to_string(),
            Err(_) => "last synchronisation unknown".to_string(),
        }
    }

    /// Runs `f` on the authority, connecting first if needed. A connection that failed is
    /// dropped (the next call connects again); nothing was decided then.
    pub(super) fn on_authority<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Authority) -> Result<T, AuthorityError>,
    ) -> Result<T, PimError> {
        let Some(fleet) = self.fleet.as_mut() else {
            return Err(PimError::Internal(
                "this host is not in a fleet ([fleet] is not configured)".into(),
            ));
        };
        if fleet.known_unreachable {
            return Err(self.unreachable());
        }
        let outcome = match fleet.authority.as_mut() {
            Some(authority) => f(authority.as_mut()),
            None => match fleet.connector.connect() {
                Ok(authority) => f(fleet.authority.insert(authority).as_mut()),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(value) => Ok(value),
            Err(AuthorityError::Refused(e)) => Err(e),
            Err(AuthorityError::Unreachable(why)) => {
                fleet.authority = None;
                let _ = why;
                Err(self.unreachable())
            }
            Err(AuthorityError::Database(why)) => {
                fleet.authority = None;
                Err(PimError::Internal(format!(
                    "the fleet's database failed: {}; nothing was changed",
                    text::escape(&why)
                )))
            }
        }
    }

    /// The refusal of a call that needs the authority while it does not answer.
    fn unreachable(&mut self) -> PimError {
        PimError::Internal(format!(
            "the fleet's database is unreachable ({}); new activations are refused until it \
             answers; existing grants still end on time",
            self.last_sync_told()
        ))
    }

    /// The groups of the caller that the policy names (as `%group` principals): the
    /// database relies on this host's word for them. A lookup that fails counts as "not in".
    fn policy_groups_of(&self, user: &str) -> Vec<String> {
        let mut named = BTreeSet::new();
        let mut add = |list: &[Principal]| {
            for p in list {
                if let Principal::Group(g) = p {
                    named.insert(g.clone());
                }
            }
        };
        add(&self.config.daemon.admins);
        add(&self.config.daemon.auditors);
        for role in self.config.roles.values() {
            add(&role.eligible);
            add(&role.approvers);
            add(&role.permanent);
        }
        named
            .into_iter()
            .filter(|g| self.in_group(user, g).unwrap_or(false))
            .collect()
    }

    // --- the calls routed to the authority ---

    /// `pim activate ROLE [--host H]` in fleet mode: the database checks eligibility, the
    /// code and the approvals; a grant it made is mirrored at once when it is in this host's
    /// scope.
    #[allow(clippy::too_many_arguments)]
    pub fn fleet_activate(
        &mut self,
        caller: &Caller,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
        only_host: Option<&str>,
    ) -> Result<ActivateReply, PimError> {
        let (reason_text, ticket_text) = (
            text::for_record(reason, text::MAX_REASON_BYTES),
            text::for_record(ticket, text::MAX_TICKET_BYTES),
        );
        let audit = Audit::new(&caller.name, AuditAction::Activate)
            .about(&caller.name, name_or_empty(role))
            .with_text(&reason_text, &ticket_text);
        let checked = check_name("role", role)
            .and(check_text("the reason", reason, text::MAX_REASON_BYTES))
            .and(check_text("the ticket", ticket, text::MAX_TICKET_BYTES))
            .and(check_code(code))
            .and(only_host.map_or(Ok(()), |h| check_name("host", h)))
            // The role's own rules on the reason and ticket, as a local activation applies
            // them (the database does not know them all).
            .and(self.config.role(role).map_or(Ok(()), |r| {
                policy::check_reason(r, reason).and(policy::check_ticket(r, ticket))
            }));
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        let duration_secs = match (duration_secs, self.config.role(role)) {
            (0, Some(r)) => r.default_duration_secs,
            (d, _) => d,
        };
        let groups = self.policy_groups_of(&caller.name);
        let ask = fa::ActivationAsk {
            user: &caller.name,
            user_groups: &groups,
            role,
            duration_secs,
            reason,
            ticket,
            code,
            only_host,
        };
        match self.on_authority(|a| a.activate(&ask)) {
            Ok(Activated::Granted(grant)) => {
                self.resync_after_change();
                Ok(ActivateReply {
                    state: ActivationState::Active,
                    grant: fleet_grant_info(&grant),
                    request: RequestInfo::default(),
                })
            }
            Ok(Activated::Pending {
                request_id,
                approvals_required,
            }) => {
                let group = self.config.role(role).map(|r| r.group.clone());
                Ok(ActivateReply {
                    state: ActivationState::Pending,
                    grant: GrantInfo::default(),
                    request: RequestInfo {
                        id: request_id,
                        user: caller.name.clone(),
                        role: role.to_string(),
                        group: group.unwrap_or_default(),
                        duration_secs,
                        reason: reason.to_string(),
                        ticket: ticket.to_string(),
                        approvals_required,
                        ..RequestInfo::default()
                    },
                })
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim activate ROLE --host H`: only in fleet mode.
    #[allow(clippy::too_many_arguments)]
    pub fn activate_on_host(
        &mut self,
        caller: &Caller,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
        host: &str,
    ) -> Result<ActivateReply, PimError> {
        if !self.in_fleet() {
            let audit = Audit::new(&caller.name, AuditAction::Activate)
                .about(&caller.name, name_or_empty(role));
            return self.refused(
                &audit,
                PimError::InvalidArgument(
                    "--host narrows a grant to one host of a fleet; this host is not in a fleet,                      so leave --host out"
                        .into(),
                ),
            );
        }
        let only_host = (!host.is_empty()).then_some(host);
        self.fleet_activate(caller, role, duration_secs, reason, ticket, code, only_host)
    }

    /// A snapshot right after a change this host asked for, so that the caller's answer
    /// already holds here; if it fails, the sync loop's next round catches up.
    fn resync_after_change(&mut self) {
        if let Ok(snapshot) = self.on_authority(|a| a.snapshot()) {
            if let Err(e) = self.mirror(Some(&snapshot)) {
                self.outbox.syslog.push((
                    Severity::Error,
                    format!("fleet: mirroring after a change failed: {}", e.message()),
                ));
            }
        }
    }

    pub(super) fn fleet_decide(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
        approve: bool,
    ) -> Result<RequestInfo, PimError> {
        let action = if approve {
            AuditAction::Approve
        } else {
            AuditAction::Deny
        };
        let comment_text = text::for_record(comment, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, action).with_text(&comment_text, "");
        let checked = policy::check_comment(comment).and(check_code(code));
        if let Err(e) = checked {
            return self.refused_about(&audit, &format!("request {id}"), e);
        }
        let groups = self.policy_groups_of(&caller.name);
        let decision = Decision {
            request_id: id,
            approver: &caller.name,
            approver_groups: &groups,
            code,
            comment,
        };
        let decided = if approve {
            self.on_authority(|a| a.approve(&decision))
        } else {
            self.on_authority(|a| a.deny(&decision))
                .map(|()| Decided::Denied)
        };
        let state = match decided {
            Ok(Decided::Granted(_)) => {
                self.resync_after_change();
                RequestState::Approved
            }
            Ok(Decided::StillPending { .. }) => RequestState::Pending,
            Ok(Decided::Denied) => RequestState::Denied,
            Err(e) => return self.refused_about(&audit, &format!("request {id}"), e),
        };
        Ok(RequestInfo {
            id,
            state,
            ..RequestInfo::default()
        })
    }

    pub(super) fn fleet_cancel(
        &mut self,
        caller: &Caller,
        id: i64,
    ) -> Result<RequestInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::Cancel).about(&caller.name, "");
        match self.on_authority(|a| a.cancel(&caller.name, id)) {
            Ok(()) => Ok(RequestInfo {
                id,
                user: caller.name.clone(),
                state: RequestState::Cancelled,
                ..RequestInfo::default()
            }),
            Err(e) => self.refused_about(&audit, &format!("request {id}"), e),
        }
    }

    pub(super) fn fleet_requests(&mut self, caller: &Caller) -> Result<Vec<RequestInfo>, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::ListRequests).about(&caller.name, "");
        let groups = self.policy_groups_of(&caller.name);
        match self.on_authority(|a| a.requests_for(&caller.name, &groups)) {
            Ok(requests) => Ok(requests
                .iter()
                .map(|r| {
                    let group = self
                        .config
                        .role(&r.role)
                        .map(|role| role.group.clone())
                        .unwrap_or_default();
                    fleet_request_info(r, &group)
                })
                .collect()),
            Err(e) => self.refused(&audit, e),
        }
    }

    pub(super) fn fleet_deactivate(
        &mut self,
        caller: &Caller,
        role: &str,
    ) -> Result<GrantInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::Deactivate)
            .about(&caller.name, name_or_empty(role));
        if let Err(e) = check_name("role", role) {
            return self.refused(&audit, e);
        }
        let local = self.store.read(|tx| tx.live_grant(&caller.name, role))?;
        match self.on_authority(|a| a.deactivate(&caller.name, role)) {
            Ok(ended) if ended.is_empty() => self.refused(&audit, no_live_grant(role)),
            Ok(_) => {
                self.resync_after_change();
                Ok(local.as_ref().map(grant_info).unwrap_or_default())
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim admin revoke` in fleet mode: the database checks the admin's code.
    pub fn fleet_revoke(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError> {
        let reason_text = text::for_record(reason, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, AuditAction::AdminRevoke)
            .about(name_or_empty(user), name_or_empty(role))
            .with_text(&reason_text, "");
        let checked = check_name("user", user)
            .and(check_name("role", role))
            .and(check_text("the reason", reason, text::MAX_REASON_BYTES))
            .and(check_code(code))
            .and(require_admin_code(code, "a revocation"));
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        let local = self.store.read(|tx| tx.live_grant(user, role))?;
        let proof = AdminProof {
            actor: &caller.name,
            code,
        };
        match self.on_authority(|a| a.revoke(&proof, user, role, reason)) {
            Ok(ended) if ended.is_empty() => self.refused(
                &audit,
                PimError::NotFound(format!("{user} has no live grant for role {role}")),
            ),
            Ok(_) => {
                self.resync_after_change();
                Ok(local.as_ref().map(grant_info).unwrap_or_default())
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim mfa enroll --ticket T` in fleet mode: the secret goes to the database (pending
    /// until its first code), never into the local store. The database takes it only with
    /// the enrolment ticket a fleet administrator issued for the caller: otherwise the first
    /// host to ask would enrol an administrator the policy names with a secret of its own.
    pub(super) fn fleet_mfa_enroll(
        &mut self,
        caller: &Caller,
        ticket: &str,
    ) -> Result<(String, String), PimError> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaEnroll).about(user, "");
        if let Err(e) = check_ticket(user, ticket) {
            return self.refused(&audit, e);
        }
        let secret = TotpSecret::generate()?;
        let account = format!("{user}@{}", self.fleet_host());
        let uri = crate::mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
        match self.on_authority(|a| a.enrol(user, secret.as_bytes(), ticket)) {
            Ok(()) => {
                let now = self.now();
                let entry = audit.entry(
                    now,
                    Outcome::Success,
                    "fleet enrolment started with an enrolment ticket; awaiting first code",
                );
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                Ok((uri, secret.base32()))
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim admin mfa-ticket USER [--reset]`: a fleet administrator (their code checked by
    /// the database) issues USER's one-time enrolment ticket, which replaces any earlier one;
    /// with `reset` (a lost device) USER's enrolment is removed first. The ticket is returned
    /// once and is in no record.
    pub fn fleet_mfa_ticket(
        &mut self,
        caller: &Caller,
        user: &str,
        code: &str,
        reset: bool,
    ) -> Result<String, PimError> {
        let audit =
            Audit::new(&caller.name, AuditAction::FleetMfaTicket).about(name_or_empty(user), "");
        let checked = if !self.in_fleet() {
            Err(not_a_fleet_host())
        } else {
            check_name("user", user)
                .and(check_code(code))
                .and(require_admin_code(code, "an enrolment ticket"))
                .and(self.fleet_admin_named(caller))
        };
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        if reset {
            self.refuse_own_mfa(caller, user, &audit, "reset your own enrolment")?;
        }
        let proof = AdminProof {
            actor: &caller.name,
            code,
        };
        match self.on_authority(|a| a.mfa_ticket(&proof, user, reset)) {
            Ok(ticket) => {
                let detail = if reset {
                    format!("enrolment of {user} removed and a new enrolment ticket issued")
                } else {
                    format!("enrolment ticket issued for {user}; any earlier one is void")
                };
                let entry = audit.entry(self.now(), Outcome::Success, detail);
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                Ok(ticket)
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    pub(super) fn fleet_mfa_confirm(
        &mut self,
        caller: &Caller,
        code: &str,
    ) -> Result<Vec<String>, PimError> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaConfirm).about(user, "");
        if let Err(e) = check_code(code) {
            return self.refused(&audit, e);
        }
        match self.on_authority(|a| a.confirm_enrolment(user, code)) {
            Ok(()) => {
                let entry = audit.entry(
                    self.now(),
                    Outcome::Success,
                    "fleet enrolment confirmed (no recovery codes in fleet mode)",
                );
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                Ok(Vec::new())
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    pub(super) fn fleet_mfa_status(&mut self, caller: &Caller) -> Result<MfaStatusInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::MfaStatus).about(&caller.name, "");
        match self.on_authority(|a| a.mfa_enrolled(&caller.name)) {
            Ok(enrolled) => Ok(MfaStatusInfo {
                enrolled,
                ..MfaStatusInfo::default()
            }),
            Err(e) => self.refused(&audit, e),
        }
    }

    fn fleet_host(&self) -> String {
        self.fleet
            .as_ref()
            .map_or_else(|| self.host.clone(), |f| f.host.clone())
    }

    /// `pim admin hosts`: the fleet's hosts, for admins and auditors of the policy.
    pub fn fleet_hosts(&mut self, caller: &Caller) -> Result<Vec<FleetHostInfo>, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::FleetHosts).about(&caller.name, "");
        if !self.in_fleet() {
            return self.refused(&audit, not_a_fleet_host());
        }
        if !self.is_auditor(caller) {
            return self.refused(
                &audit,
                PimError::PermissionDenied(
                    "only administrators and auditors may list the fleet's hosts".into(),
                ),
            );
        }
        match self.on_authority(|a| a.hosts()) {
            Ok(hosts) => Ok(hosts.iter().map(fleet_host_info).collect()),
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim admin host add NAME [--tags T,...]`: returns the new host's database password
    /// (shown once; it is in no record).
    pub fn fleet_host_add(
        &mut self,
        caller: &Caller,
        name: &str,
        tags: &[String],
        code: &str,
    ) -> Result<String, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::FleetHostAdd)
            .about("", "")
            .with_text(name_or_empty(name), "");
        let checked = if !self.in_fleet() {
            Err(not_a_fleet_host())
        } else if tags.len() > MAX_HOST_TAGS {
            Err(PimError::InvalidArgument(format!(
                "{} tags given; a host has at most {MAX_HOST_TAGS}",
                tags.len()
            )))
        } else {
            check_name("host", name)
                .and(tags.iter().try_for_each(|t| check_name("tag", t)))
                .and(check_code(code))
                .and(self.fleet_admin_named(caller))
        };
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        let proof = AdminProof {
            actor: &caller.name,
            code,
        };
        match self.on_authority(|a| a.add_host(&proof, name, tags)) {
            Ok(password) => {
                let entry = audit.entry(
                    self.now(),
                    Outcome::Success,
                    format!("host {name} added to the fleet, tags [{}]", tags.join(",")),
                );
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                Ok(password)
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim admin policy push FILE`: checked here with the configuration's own checker, then
    /// stored by the database (which checks the admin's code) as the next version.
    pub fn fleet_policy_push(
        &mut self,
        caller: &Caller,
        policy_text: &str,
        code: &str,
    ) -> Result<i64, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::FleetPolicyPush).about("", "");
        let checked = if !self.in_fleet() {
            Err(not_a_fleet_host())
        } else if policy_text.len() > MAX_POLICY_BYTES {
            Err(PimError::InvalidArgument(format!(
                "the policy is {} bytes long; at most {MAX_POLICY_BYTES} are taken",
                policy_text.len()
            )))
        } else {
            check_code(code)
                .and(self.fleet_admin_named(caller))
                .and_then(|()| self.check_policy(policy_text).map(|_| ()))
        };
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        let policy = self.check_policy(policy_text)?;
        let normalized = crate::fleet::policy::normalize(&policy);
        let proof = AdminProof {
            actor: &caller.name,
            code,
        };
        match self.on_authority(|a| a.push_policy(&proof, policy_text, &normalized)) {
            Ok(version) => {
                let entry = audit.entry(
                    self.now(),
                    Outcome::Success,
                    format!(
                        "policy version {version} pushed ({} role(s))",
                        policy.roles.len()
                    ),
                );
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                Ok(version)
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    /// Whether the current policy names the caller among its administrators (the database
    /// still decides, with the admin's code): a local user no policy names gets no call to
    /// the database, and no refusal of its making in the audit.
    fn fleet_admin_named(&self, caller: &Caller) -> Result<(), PimError> {
        if self
            .listed(&self.config.daemon.admins, &caller.name)
            .unwrap_or(false)
        {
            return Ok(());
        }
        Err(PimError::PermissionDenied(format!(
            "this needs a fleet administrator; the fleet's policy does not name {} in its admins",
            caller.name
        )))
    }

    /// A policy's text through the configuration's checker: every error, one a line.
    fn check_policy(&self, policy_text: &str) -> Result<Config, PimError> {
        let (config, problems) =
            pim_config::parse_policy(policy_text, "policy", &AccountsDirectory(&*self.accounts));
        let errors: Vec<String> = problems
            .iter()
            .filter(|p| p.severity == pim_config::Severity::Error)
            .map(ToString::to_string)
            .collect();
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(PimError::InvalidArgument(format!(
                "the policy has {} error(s); nothing was pushed:\n{}",
                errors.len(),
                errors.join("\n")
            ))),
        }
    }

    // --- the mirror ---

    /// Makes the local mirror equal `snapshot` (the authority answered) or, with `None` (it
    /// did not), applies staleness alone: a stale host ends every mirrored grant. Records the
    /// synchronisation.
    pub fn mirror(&mut self, snapshot: Option<&Snapshot>) -> Result<Mirrored, PimError> {
        let Some(fleet) = self.fleet.as_mut() else {
            return Ok(Mirrored::default());
        };
        fleet.known_unreachable = snapshot.is_none();
        let max_staleness = fleet.max_staleness;
        let now = self.now();
        if let Some(s) = snapshot {
            let sync = FleetSync {
                synced_at: now,
                db_now: s.db_now,
                policy_version: s.policy_version,
            };
            self.store.write(|tx| tx.set_fleet_sync(&sync))?;
        }
        let (mirrored, sync) = self
            .store
            .read(|tx| Ok::<_, StoreError>((tx.fleet_mirrored()?, tx.fleet_sync()?)))?;
        let fresh = mirror::freshness(sync.as_ref(), now, max_staleness);
        let stale = fresh.as_ref().err().map(|s| s.describe(now, max_staleness));
        let plan = mirror::plan(
            &self.config,
            &mirrored,
            snapshot.map(|s| s.grants.as_slice()),
            fresh,
            now,
        );
        let mut first_error = None;
        let mut report = Mirrored {
            stale,
            ..Mirrored::default()
        };
        for (grant, why) in &plan.end {
            match self.end_mirrored(grant, why, now, max_staleness) {
                Ok(()) => report.ended += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        for (grant, ends_at) in &plan.moved {
            let audit = Audit::new(DAEMON, AuditAction::FleetGrant).about(&grant.user, &grant.role);
            let entry = audit.entry(
                now,
                Outcome::Success,
                format!(
                    "grant {}: the fleet moved its end to {}",
                    grant.id,
                    describe(*ends_at, now)
                ),
            );
            if let Err(e) = self.commit(|tx| {
                tx.set_grant_end(grant.id, *ends_at)?;
                Ok(tx.audit(entry)?)
            }) {
                first_error.get_or_insert(e);
            }
        }
        for g in &plan.start {
            match self.start_mirrored(g, now) {
                Ok(()) => report.started += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let ignored: Vec<(i64, String, String, String)> = plan
            .ignored
            .iter()
            .filter(|(g, why)| {
                self.fleet
                    .as_mut()
                    .is_some_and(|f| f.ignored.insert((g.id, why.clone())))
            })
            .map(|(g, why)| (g.id, g.user.clone(), g.role.clone(), why.clone()))
            .collect();
        for (id, user, role, why) in ignored {
            let audit = Audit::new(DAEMON, AuditAction::FleetGrant)
                .about(name_or_empty(&user), name_or_empty(&role));
            let entry = audit.entry(
                now,
                Outcome::Refused,
                format!("fleet grant {id} not started on this host: {why}"),
            );
            if let Err(e) = self.commit(|tx| Ok(tx.audit(entry)?)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    fn end_mirrored(
        &mut self,
        grant: &Grant,
        why: &EndWhy,
        now: i64,
        max_staleness: u64,
    ) -> Result<(), PimError> {
        let audit = Audit::new(DAEMON, AuditAction::FleetEnd).about(&grant.user, &grant.role);
        let (end_reason, detail) = match why {
            EndWhy::GoneFromFleet => (
                "fleet",
                format!(
                    "grant {}: the fleet no longer holds it for this host",
                    grant.id
                ),
            ),
            EndWhy::Stale(stale) => (
                "stale",
                format!(
                    "grant {}: {}; it starts again when this host synchronises while it is \
                     live",
                    grant.id,
                    stale.describe(now, max_staleness)
                ),
            ),
        };
        self.end_grant(grant, &audit, end_reason, detail)
    }

    fn start_mirrored(&mut self, g: &FleetGrant, now: i64) -> Result<(), PimError> {
        let Some(role) = self.config.role(&g.role).cloned() else {
            return Ok(());
        };
        let audit = Audit::new(DAEMON, AuditAction::FleetGrant)
            .about(&g.user, &g.role)
            .with_text(&g.reason, &g.ticket);
        if let Err(e) = self
            .check_unmanaged_membership(&g.user, &role)
            .and_then(|()| self.ids_for_grant(&g.user, &g.group))
        {
            return self.refused_about(&audit, &format!("fleet grant {}", g.id), e);
        }
        let ids = self.ids_for_grant(&g.user, &g.group)?;
        let entry = audit.entry(
            now,
            Outcome::Success,
            format!(
                "fleet grant {} of group {} until {}",
                g.id,
                g.group,
                describe(g.ends_at, now)
            ),
        );
        let new = NewGrant {
            user: &g.user,
            role: &g.role,
            group: &g.group,
            started_at: now,
            ends_at: g.ends_at,
            reason: &g.reason,
            ticket: &g.ticket,
            request_id: g.request_id,
        };
        let grant = self.commit(|tx| {
            let grant = Self::insert_grant(tx, &new, ids)?;
            tx.mark_grant_from_fleet(grant.id, g.id)?;
            tx.audit(entry)?;
            Ok(grant)
        })?;
        self.grant_starts.bump(&grant.user, &grant.group);
        self.apply_grant(&grant)?;
        self.event(
            EventKind::GrantStarted,
            &grant.user,
            &grant.role,
            grant.request_id.unwrap_or(0),
            grant.id,
            DAEMON,
            format!("fleet grant {}", g.id),
        );
        Ok(())
    }

    /// A new policy version from the fleet: checked like a file, put together with this
    /// host's own settings, and taken like a reload. A policy that does not check is kept
    /// out (the running one stays) and said so.
    pub fn apply_policy(&mut self, version: i64, policy_text: &str) -> Result<(), PimError> {
        let Some(local) = self.fleet.as_ref().map(|f| f.local.clone()) else {
            return Ok(());
        };
        let policy = self.check_policy(policy_text)?;
        let config = local.in_fleet(&policy);
        let detail = format!(
            "fleet policy version {version}: {} role(s)",
            config.roles.len()
        );
        let entry = Audit::new(DAEMON, AuditAction::ConfigReload).entry(
            self.now(),
            Outcome::Success,
            detail,
        );
        self.commit(|tx| Ok(tx.audit(entry)?))?;
        self.config = Arc::new(config);
        if let Some(fleet) = self.fleet.as_mut() {
            fleet.policy_version = version;
            fleet.policy = Some(policy);
            fleet.ignored.clear();
        }
        Ok(())
    }

    /// The policy version the running configuration comes from (0: none yet).
    pub fn fleet_policy_version(&self) -> i64 {
        self.fleet.as_ref().map_or(0, |f| f.policy_version)
    }

    /// A reloaded host file (SIGHUP) in fleet mode: its host settings with the running
    /// policy's roles, administrators and `[mfa]`.
    pub(super) fn with_fleet_policy(&mut self, local: Config) -> Config {
        match self.fleet.as_mut() {
            Some(fleet) => {
                fleet.local = local.clone();
                match &fleet.policy {
                    Some(policy) => local.in_fleet(policy),
                    None => local,
                }
            }
            None => local,
        }
    }

    /// Local audit records not shipped to the fleet yet, oldest first, at most
    /// [`SHIP_BATCH`].
    /// Each record's text escaped and cut to what `pim_api.ship_audit` takes (control
    /// characters refused, a bound per field): a record that would be refused must not
    /// stall the spool (a refused policy's errors hold newlines).
    pub fn audit_to_ship(&mut self) -> Result<Vec<AuditRecord>, PimError> {
        let after = self.store.read(|tx| tx.audit_shipped())?;
        let records = self.store.read(|tx| tx.audit_chain(after, SHIP_BATCH))?;
        Ok(records.into_iter().map(for_shipping).collect())
    }

    /// Records that the local audit up to `through` is in the fleet's.
    pub fn audit_shipped(&mut self, through: i64) -> Result<(), PimError> {
        self.store.write(|tx| tx.set_audit_shipped(through))?;
        Ok(())
    }
}

/// `record` as `pim_api.ship_audit` takes it: each text within that function's bound for
/// it, control characters escaped.
fn for_shipping(record: AuditRecord) -> AuditRecord {
    let fit = |text: &str, max: usize| text::for_record(text, max);
    AuditRecord {
        actor: fit(&record.actor, SHIPPED_NAME_BYTES),
        user: fit(&record.user, SHIPPED_NAME_BYTES),
        role: fit(&record.role, SHIPPED_NAME_BYTES),
        reason: fit(&record.reason, SHIPPED_TEXT_BYTES),
        ticket: fit(&record.ticket, SHIPPED_TICKET_BYTES),
        detail: fit(&record.detail, SHIPPED_TEXT_BYTES),
        ..record
    }
}

fn not_a_fleet_host() -> PimError {
    PimError::Conflict(
        "this host is not in a fleet; add [fleet] to its pim.toml (see pim.toml(5))".into(),
    )
}

/// The host's accounts as the configuration's checker looks users and groups up.
struct AccountsDirectory<'a>(&'a dyn Accounts);

impl pim_config::Directory for AccountsDirectory<'_> {
    fn user_exists(&self, name: &str) -> bool {
        self.0.user_exists(name)
    }
    fn group_exists(&self, name: &str) -> bool {
        self.0.group_exists(name)
    }
}

#[cfg(test)]
mod tests;
