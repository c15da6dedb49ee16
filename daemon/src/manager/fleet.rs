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
use crate::clock::Boot;
use crate::fleet::authority::{
    self as fa, Activated, AdminProof, Authority, AuthorityError, Decided, Decision, FleetGrant,
    FleetRequest, HostDisabled, HostInfo, Snapshot,
};
use crate::fleet::mirror::{self, EndWhy};
use crate::model::FleetSync;
use pim_common::types::{FleetHostDisabled, FleetHostInfo, RequestDetail};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

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

/// The manager's link to the fleet: the clients' connection to the authority, this host's
/// name and the host's own configuration, which each policy version is put together with.
pub struct Fleet {
    link: AuthorityLink,
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
    /// How many snapshot fetches have begun, and the number of the newest one mirrored: the
    /// sync thread's fetch and a call's own (after a revocation, say) overlap, and a snapshot
    /// read before one already mirrored would start a revoked grant again.
    fetches_begun: u64,
    newest_mirrored: u64,
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
            link: AuthorityLink(Arc::new(LinkState {
                connector,
                authority: Mutex::new(None),
                known_unreachable: AtomicBool::new(false),
                refused: Mutex::new(None),
            })),
            host,
            max_staleness,
            local,
            policy_version: 0,
            policy: None,
            ignored: BTreeSet::new(),
            fetches_begun: 0,
            newest_mirrored: 0,
        }
    }
}

/// The connection the clients' calls share (opened when a call needs it, dropped when it
/// fails), behind a lock of its own: a call that waits for the database holds this one,
/// never the manager's, which expiry, the mirror and the audit need.
#[derive(Clone)]
pub struct AuthorityLink(Arc<LinkState>);

struct LinkState {
    connector: Arc<dyn Connector>,
    authority: Mutex<Option<Box<dyn Authority>>>,
    /// The sync thread's last round got no answer from the authority: calls fail at once
    /// as unreachable instead of each waiting out its own timeouts, until a round gets an
    /// answer again.
    known_unreachable: AtomicBool,
    /// Why the sync thread's last round took nothing from an authority that answered
    /// (another schema version, this host disabled): what calls then fail with.
    refused: Mutex<Option<String>>,
}

impl AuthorityLink {
    /// Runs `f` on the authority, connecting first if needed. A connection that failed is
    /// dropped (the next call connects again); nothing was decided then.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut dyn Authority) -> Result<R, AuthorityError>,
    ) -> Result<R, AuthorityError> {
        if self.0.known_unreachable.load(Ordering::SeqCst) {
            if let Some(why) = self.refused() {
                return Err(AuthorityError::Refused(PimError::Internal(format!(
                    "this host takes nothing from the fleet's database: {}; new activations \
                     are refused until that is fixed; existing grants still end on time",
                    text::escape(&why)
                ))));
            }
            return Err(AuthorityError::Unreachable(
                "the last synchronisation got no answer".into(),
            ));
        }
        let mut authority = self
            .0
            .authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let outcome = match authority.as_mut() {
            Some(a) => f(a.as_mut()),
            None => match self.0.connector.connect() {
                Ok(a) => f(authority.insert(a).as_mut()),
                Err(e) => Err(e),
            },
        };
        if matches!(
            outcome,
            Err(AuthorityError::Unreachable(_) | AuthorityError::Database(_))
        ) {
            *authority = None;
        }
        outcome
    }

    fn refused(&self) -> Option<String> {
        self.0
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_refused(&self, why: Option<String>) {
        *self
            .0
            .refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }
}

/// A call that needs the fleet's authority, taken apart so that the network never holds the
/// manager's lock (a database that does not answer takes 10-25 s a call, and expiry must not
/// wait for it): what needs the manager (checks, refusals, the caller's groups), then the
/// network part alone, then the manager again (records, the mirror), which may lead to
/// another network part.
pub enum FleetCall<T> {
    Done(Result<T, PimError>),
    /// The network part; it returns what follows it, on the manager.
    Remote(Box<dyn FnOnce() -> Then<T> + Send>),
}

/// What follows a call's network part, on the manager.
pub type Then<T> = Box<dyn FnOnce(&mut Manager) -> FleetCall<T> + Send>;

impl<T> FleetCall<T> {
    /// Every step with `m` at hand throughout: for callers that hold the manager anyway
    /// (tests, the manager's own entry points); pimd's core runs the steps apart.
    pub fn inline(mut self, m: &mut Manager) -> Result<T, PimError> {
        loop {
            match self {
                FleetCall::Done(result) => return result,
                FleetCall::Remote(network) => self = network()(m),
            }
        }
    }
}

/// An [`AdminProof`] that outlives the call's arguments, for the network part.
struct KeptProof {
    actor: String,
    code: String,
}

impl KeptProof {
    fn of(caller: &Caller, code: &str) -> KeptProof {
        KeptProof {
            actor: caller.name.clone(),
            code: code.to_string(),
        }
    }

    fn proof(&self) -> AdminProof<'_> {
        AdminProof {
            actor: &self.actor,
            code: &self.code,
        }
    }
}

/// An [`Audit`] that outlives the call's arguments, for the records made after the network.
struct KeptAudit {
    actor: String,
    action: AuditAction,
    user: String,
    role: String,
    reason: String,
    ticket: String,
}

impl KeptAudit {
    fn of(audit: &Audit<'_>) -> KeptAudit {
        KeptAudit {
            actor: audit.actor.to_string(),
            action: audit.action,
            user: audit.user.to_string(),
            role: audit.role.to_string(),
            reason: audit.reason.to_string(),
            ticket: audit.ticket.to_string(),
        }
    }

    fn audit(&self) -> Audit<'_> {
        Audit::new(&self.actor, self.action)
            .about(&self.user, &self.role)
            .with_text(&self.reason, &self.ticket)
    }
}

/// What one mirroring did, for the sync loop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mirrored {
    pub started: usize,
    pub ended: usize,
    /// Why fleet grants do not count now, if they do not.
    pub stale: Option<String>,
    /// The snapshot was older than one already mirrored, and was dropped (only the
    /// staleness rule was applied).
    pub superseded: bool,
}

/// A snapshot fetch, as the manager numbers and dates it (under its lock) just before the
/// fetch begins: snapshots are mirrored in that order, and one is as fresh as the moment its
/// fetch began, however long the answer took.
#[derive(Debug, Clone)]
pub struct Fetch {
    number: u64,
    began_at: i64,
    boot: Boot,
}

/// A snapshot and the fetch that brought it.
pub struct Fetched {
    pub fetch: Fetch,
    pub snapshot: Snapshot,
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
        approved_by: r.approved_by.clone(),
    }
}

fn fleet_host_info(h: &HostInfo) -> FleetHostInfo {
    FleetHostInfo {
        name: h.name.clone(),
        tags: h.tags.clone(),
        last_seen: h.last_seen.unwrap_or(0),
        last_sync: h.last_sync.unwrap_or(0),
        skew_ms: h.skew_ms.unwrap_or(0),
        disabled_at: h.disabled_at.unwrap_or(0),
        disabled_by: h.disabled_by.clone().unwrap_or_default(),
    }
}

/// The audit of an administrator's change to host `name` of the fleet.
fn host_audit<'a>(caller: &'a Caller, action: AuditAction, name: &'a str) -> Audit<'a> {
    Audit::new(&caller.name, action)
        .about("", "")
        .with_text(name_or_empty(name), "")
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
             'pim mfa enroll --ticket -' and paste it (kept out of ps and shell history)"
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

    /// `fleet`'s steps in fleet mode, else `local`'s answer: for pimd's core, which runs the
    /// steps of a fleet call apart.
    pub fn fleet_or_local<T>(
        &mut self,
        fleet: impl FnOnce(&mut Manager) -> FleetCall<T>,
        local: impl FnOnce(&mut Manager) -> Result<T, PimError>,
    ) -> FleetCall<T> {
        if self.in_fleet() {
            fleet(self)
        } else {
            FleetCall::Done(local(self))
        }
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

    /// The sync thread's round got `why` from the authority instead of a snapshot (it was
    /// mirrored as no answer): calls fail with it until a snapshot comes.
    pub fn authority_refused(&mut self, why: String) {
        if let Some(fleet) = self.fleet.as_ref() {
            fleet.link.set_refused(Some(why));
        }
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

    /// `call` on the authority outside the manager's lock, then `then` with its outcome on
    /// the manager (a refusal as the caller should see it; unreachable said so).
    fn on_authority<R: Send + 'static, T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut dyn Authority) -> Result<R, AuthorityError> + Send + 'static,
        then: impl FnOnce(&mut Manager, Result<R, PimError>) -> FleetCall<T> + Send + 'static,
    ) -> FleetCall<T> {
        let Some(link) = self.fleet.as_ref().map(|f| f.link.clone()) else {
            return FleetCall::Done(Err(PimError::Internal(
                "this host is not in a fleet ([fleet] is not configured)".into(),
            )));
        };
        FleetCall::Remote(Box::new(move || {
            let outcome = link.call(call);
            Box::new(move |m: &mut Manager| {
                let outcome = m.authority_outcome(outcome);
                then(m, outcome)
            })
        }))
    }

    /// The authority's answer as the caller sees it.
    fn authority_outcome<R>(&mut self, outcome: Result<R, AuthorityError>) -> Result<R, PimError> {
        match outcome {
            Ok(value) => Ok(value),
            Err(AuthorityError::Refused(e)) => Err(e),
            Err(AuthorityError::Unreachable(_)) => Err(self.unreachable()),
            Err(AuthorityError::Database(why)) => Err(PimError::Internal(format!(
                "the fleet's database failed: {}; nothing was changed",
                text::escape(&why)
            ))),
        }
    }

    /// `then` as the whole answer when the authority answered, else the refusal audited.
    fn answered<R, T>(
        &mut self,
        kept: &KeptAudit,
        subject: &str,
        outcome: Result<R, PimError>,
        then: impl FnOnce(&mut Manager, R) -> FleetCall<T>,
    ) -> FleetCall<T> {
        match outcome {
            Ok(value) => then(self, value),
            Err(e) => FleetCall::Done(self.refused_about(&kept.audit(), subject, e)),
        }
    }

    /// `answer`, once its success is in the audit.
    fn succeeded<T>(
        &mut self,
        kept: &KeptAudit,
        detail: impl Into<String>,
        answer: T,
    ) -> FleetCall<T> {
        let entry = kept.audit().entry(self.now(), Outcome::Success, detail);
        FleetCall::Done(self.commit(|tx| Ok(tx.audit(entry)?)).map(|()| answer))
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
    ) -> FleetCall<ActivateReply> {
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
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let duration_secs = match (duration_secs, self.config.role(role)) {
            (0, Some(r)) => r.default_duration_secs,
            (d, _) => d,
        };
        let groups = self.policy_groups_of(&caller.name);
        let pending = RequestInfo {
            user: caller.name.clone(),
            role: role.to_string(),
            group: self
                .config
                .role(role)
                .map(|r| r.group.clone())
                .unwrap_or_default(),
            duration_secs,
            reason: reason.to_string(),
            ticket: ticket.to_string(),
            ..RequestInfo::default()
        };
        let (code, only_host) = (code.to_string(), only_host.map(str::to_string));
        let asked = pending.clone();
        self.on_authority(
            move |a| {
                a.activate(&fa::ActivationAsk {
                    user: &asked.user,
                    user_groups: &groups,
                    role: &asked.role,
                    duration_secs,
                    reason: &asked.reason,
                    ticket: &asked.ticket,
                    code: &code,
                    only_host: only_host.as_deref(),
                })
            },
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, activated| match activated {
                    Activated::Granted(grant) => m.resync_after_change(ActivateReply {
                        state: ActivationState::Active,
                        grant: fleet_grant_info(&grant),
                        request: RequestInfo::default(),
                    }),
                    Activated::Pending {
                        request_id,
                        approvals_required,
                    } => FleetCall::Done(Ok(ActivateReply {
                        state: ActivationState::Pending,
                        grant: GrantInfo::default(),
                        request: RequestInfo {
                            id: request_id,
                            approvals_required,
                            ..pending
                        },
                    })),
                })
            },
        )
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
    ) -> FleetCall<ActivateReply> {
        if !self.in_fleet() {
            let audit = Audit::new(&caller.name, AuditAction::Activate)
                .about(&caller.name, name_or_empty(role));
            return FleetCall::Done(self.refused(
                &audit,
                PimError::InvalidArgument(
                    "--host narrows a grant to one host of a fleet; this host is not in a fleet,                      so leave --host out"
                        .into(),
                ),
            ));
        }
        let only_host = (!host.is_empty()).then_some(host);
        self.fleet_activate(caller, role, duration_secs, reason, ticket, code, only_host)
    }

    /// A snapshot right after a change this host asked for, so that the caller's answer
    /// (`answer`) already holds here; if it fails, the sync loop's next round catches up.
    fn resync_after_change<T: Send + 'static>(&mut self, answer: T) -> FleetCall<T> {
        let fetch = self.fleet_fetch_begins();
        self.on_authority(
            |a| a.snapshot(),
            move |m, snapshot| {
                if let Ok(snapshot) = snapshot {
                    if let Err(e) = m.mirror(Some(&Fetched { fetch, snapshot })) {
                        m.outbox.syslog.push((
                            Severity::Error,
                            format!("fleet: mirroring after a change failed: {}", e.message()),
                        ));
                    }
                }
                FleetCall::Done(Ok(answer))
            },
        )
    }

    pub fn fleet_decide(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
        approve: bool,
    ) -> FleetCall<RequestInfo> {
        let action = if approve {
            AuditAction::Approve
        } else {
            AuditAction::Deny
        };
        let comment_text = text::for_record(comment, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, action).with_text(&comment_text, "");
        let checked = policy::check_comment(comment).and(check_code(code));
        if let Err(e) = checked {
            return FleetCall::Done(self.refused_about(&audit, &format!("request {id}"), e));
        }
        let kept = KeptAudit::of(&audit);
        let groups = self.policy_groups_of(&caller.name);
        let (approver, code, comment) =
            (caller.name.clone(), code.to_string(), comment.to_string());
        self.on_authority(
            move |a| {
                let decision = Decision {
                    request_id: id,
                    approver: &approver,
                    approver_groups: &groups,
                    code: &code,
                    comment: &comment,
                };
                if approve {
                    a.approve(&decision)
                } else {
                    a.deny(&decision).map(|()| Decided::Denied)
                }
            },
            move |m, outcome| {
                m.answered(&kept, &format!("request {id}"), outcome, |m, decided| {
                    let info = |state| RequestInfo {
                        id,
                        state,
                        ..RequestInfo::default()
                    };
                    match decided {
                        Decided::Granted(_) => m.resync_after_change(info(RequestState::Approved)),
                        Decided::StillPending { .. } => {
                            FleetCall::Done(Ok(info(RequestState::Pending)))
                        }
                        Decided::Denied => FleetCall::Done(Ok(info(RequestState::Denied))),
                    }
                })
            },
        )
    }

    pub fn fleet_cancel(&mut self, caller: &Caller, id: i64) -> FleetCall<RequestInfo> {
        let kept =
            KeptAudit::of(&Audit::new(&caller.name, AuditAction::Cancel).about(&caller.name, ""));
        let user = caller.name.clone();
        self.on_authority(
            move |a| a.cancel(&user, id),
            move |m, outcome| {
                m.answered(&kept, &format!("request {id}"), outcome, |_, ()| {
                    FleetCall::Done(Ok(RequestInfo {
                        id,
                        user: kept.user.clone(),
                        state: RequestState::Cancelled,
                        ..RequestInfo::default()
                    }))
                })
            },
        )
    }

    /// `pim show ID` in fleet mode: the database says whether the caller may see it.
    pub fn fleet_show_request(&mut self, caller: &Caller, id: i64) -> FleetCall<RequestDetail> {
        let kept = KeptAudit::of(
            &Audit::new(&caller.name, AuditAction::ShowRequest).about(&caller.name, ""),
        );
        let viewer = caller.name.clone();
        self.on_authority(
            move |a| a.request(&viewer, id),
            move |m, outcome| {
                m.answered(&kept, &format!("request {id}"), outcome, |m, r| {
                    let group = m
                        .config
                        .role(&r.role)
                        .map(|role| role.group.clone())
                        .unwrap_or_default();
                    let info = fleet_request_info(&r, &group);
                    let request = crate::model::Request {
                        id: info.id,
                        user: info.user,
                        role: info.role,
                        group: info.group,
                        duration_secs: info.duration_secs,
                        reason: info.reason,
                        ticket: info.ticket,
                        created_at: info.created_at,
                        expires_at: info.expires_at,
                        approvals_required: info.approvals_required,
                        state: info.state,
                    };
                    FleetCall::Done(Ok(m.request_detail(&request, None, info.approved_by)))
                })
            },
        )
    }

    pub fn fleet_requests(&mut self, caller: &Caller) -> FleetCall<Vec<RequestInfo>> {
        let kept = KeptAudit::of(
            &Audit::new(&caller.name, AuditAction::ListRequests).about(&caller.name, ""),
        );
        let groups = self.policy_groups_of(&caller.name);
        let approver = caller.name.clone();
        self.on_authority(
            move |a| a.requests_for(&approver, &groups),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, requests| {
                    FleetCall::Done(Ok(requests
                        .iter()
                        .map(|r| {
                            let group = m
                                .config
                                .role(&r.role)
                                .map(|role| role.group.clone())
                                .unwrap_or_default();
                            fleet_request_info(r, &group)
                        })
                        .collect()))
                })
            },
        )
    }

    pub fn fleet_deactivate(&mut self, caller: &Caller, role: &str) -> FleetCall<GrantInfo> {
        let audit = Audit::new(&caller.name, AuditAction::Deactivate)
            .about(&caller.name, name_or_empty(role));
        if let Err(e) = check_name("role", role) {
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let local = match self.store.read(|tx| tx.live_grant(&caller.name, role)) {
            Ok(local) => local,
            Err(e) => return FleetCall::Done(Err(e.into())),
        };
        let (user, role) = (caller.name.clone(), role.to_string());
        self.on_authority(
            move |a| a.deactivate(&user, &role),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, ended| {
                    if ended.is_empty() {
                        return FleetCall::Done(
                            m.refused(&kept.audit(), no_live_grant(&kept.role)),
                        );
                    }
                    m.resync_after_change(local.as_ref().map(grant_info).unwrap_or_default())
                })
            },
        )
    }

    /// `pim admin revoke` in fleet mode: the database checks the admin's code.
    pub fn fleet_revoke(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        reason: &str,
        code: &str,
    ) -> FleetCall<GrantInfo> {
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
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let local = match self.store.read(|tx| tx.live_grant(user, role)) {
            Ok(local) => local,
            Err(e) => return FleetCall::Done(Err(e.into())),
        };
        let (proof, user, role, reason) = (
            KeptProof::of(caller, code),
            user.to_string(),
            role.to_string(),
            reason.to_string(),
        );
        self.on_authority(
            move |a| a.revoke(&proof.proof(), &user, &role, &reason),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, ended| {
                    if ended.is_empty() {
                        let e = PimError::NotFound(format!(
                            "{} has no live grant for role {}",
                            kept.user, kept.role
                        ));
                        return FleetCall::Done(m.refused(&kept.audit(), e));
                    }
                    m.resync_after_change(local.as_ref().map(grant_info).unwrap_or_default())
                })
            },
        )
    }

    /// `pim mfa enroll --ticket T` in fleet mode: the secret goes to the database (pending
    /// until its first code), never into the local store. The database takes it only with
    /// the enrolment ticket a fleet administrator issued for the caller: otherwise the first
    /// host to ask would enrol an administrator the policy names with a secret of its own.
    pub fn fleet_mfa_enroll(
        &mut self,
        caller: &Caller,
        ticket: &str,
    ) -> FleetCall<(String, String)> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaEnroll).about(user, "");
        if let Err(e) = check_ticket(user, ticket) {
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let made = TotpSecret::generate().and_then(|secret| {
            let account = format!("{user}@{}", self.fleet_host());
            let uri = crate::mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
            Ok((secret, uri))
        });
        let (secret, uri) = match made {
            Ok(made) => made,
            Err(e) => return FleetCall::Done(Err(e.into())),
        };
        let (user, bytes, base32, ticket) = (
            user.to_string(),
            secret.as_bytes().to_vec(),
            secret.base32(),
            ticket.to_string(),
        );
        self.on_authority(
            move |a| a.enrol(&user, &bytes, &ticket),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, ()| {
                    let started =
                        "fleet enrolment started with an enrolment ticket; awaiting first code";
                    m.succeeded(&kept, started, (uri, base32))
                })
            },
        )
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
    ) -> FleetCall<String> {
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
            return FleetCall::Done(self.refused(&audit, e));
        }
        if reset {
            if let Err(e) = self.refuse_own_mfa(caller, user, &audit, "reset your own enrolment") {
                return FleetCall::Done(Err(e));
            }
        }
        let kept = KeptAudit::of(&audit);
        let (proof, user) = (KeptProof::of(caller, code), user.to_string());
        self.on_authority(
            move |a| a.mfa_ticket(&proof.proof(), &user, reset),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, ticket| {
                    let user = &kept.user;
                    let detail = if reset {
                        format!("enrolment of {user} removed and a new enrolment ticket issued")
                    } else {
                        format!("enrolment ticket issued for {user}; any earlier one is void")
                    };
                    m.succeeded(&kept, detail, ticket)
                })
            },
        )
    }

    pub fn fleet_mfa_confirm(&mut self, caller: &Caller, code: &str) -> FleetCall<Vec<String>> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaConfirm).about(user, "");
        if let Err(e) = check_code(code) {
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let (user, code) = (user.to_string(), code.to_string());
        self.on_authority(
            move |a| a.confirm_enrolment(&user, &code),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, ()| {
                    let confirmed = "fleet enrolment confirmed (no recovery codes in fleet mode)";
                    m.succeeded(&kept, confirmed, Vec::new())
                })
            },
        )
    }

    pub fn fleet_mfa_status(&mut self, caller: &Caller) -> FleetCall<MfaStatusInfo> {
        let kept = KeptAudit::of(
            &Audit::new(&caller.name, AuditAction::MfaStatus).about(&caller.name, ""),
        );
        let user = caller.name.clone();
        self.on_authority(
            move |a| a.mfa_state(&user),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |_, state| {
                    FleetCall::Done(Ok(MfaStatusInfo {
                        enrolled: state.enrolled,
                        locked_until: state.locked_until,
                        recent_failures: state.recent_failures,
                        ..MfaStatusInfo::default()
                    }))
                })
            },
        )
    }

    fn fleet_host(&self) -> String {
        self.fleet
            .as_ref()
            .map_or_else(|| self.host.clone(), |f| f.host.clone())
    }

    /// `pim admin hosts`: the fleet's hosts, for admins and auditors of the policy.
    pub fn fleet_hosts(&mut self, caller: &Caller) -> FleetCall<Vec<FleetHostInfo>> {
        let audit = Audit::new(&caller.name, AuditAction::FleetHosts).about(&caller.name, "");
        if !self.in_fleet() {
            return FleetCall::Done(self.refused(&audit, not_a_fleet_host()));
        }
        if !self.is_auditor(caller) {
            return FleetCall::Done(self.refused(
                &audit,
                PimError::PermissionDenied(
                    "only administrators and auditors may list the fleet's hosts".into(),
                ),
            ));
        }
        let kept = KeptAudit::of(&audit);
        self.on_authority(
            |a| a.hosts(),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |_, hosts| {
                    FleetCall::Done(Ok(hosts.iter().map(fleet_host_info).collect()))
                })
            },
        )
    }

    /// `pim admin host add NAME [--tags T,...]`: returns the new host's database password
    /// (shown once; it is in no record).
    pub fn fleet_host_add(
        &mut self,
        caller: &Caller,
        name: &str,
        tags: &[String],
        code: &str,
    ) -> FleetCall<String> {
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
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let (proof, name, tags) = (KeptProof::of(caller, code), name.to_string(), tags.to_vec());
        let added = format!("host {name} added to the fleet, tags [{}]", tags.join(","));
        self.on_authority(
            move |a| a.add_host(&proof.proof(), &name, &tags),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, password| {
                    m.succeeded(&kept, added, password)
                })
            },
        )
    }

    /// `pim admin host disable NAME`: the database checks the admin's code, refuses the
    /// host's login and calls from then on, ends the grants for it alone, cancels the
    /// pending requests it filed, voids the tickets shown on it and withdraws the approvals
    /// given on it; returns what [`HostDisabled`] holds.
    pub fn fleet_host_disable(
        &mut self,
        caller: &Caller,
        name: &str,
        code: &str,
    ) -> FleetCall<FleetHostDisabled> {
        let audit = host_audit(caller, AuditAction::FleetHostDisable, name);
        if let Err(e) = self.fleet_host_admin_checks(caller, name, code) {
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let (proof, host) = (KeptProof::of(caller, code), name.to_string());
        let name = host.clone();
        self.on_authority(
            move |a| a.disable_host(&proof.proof(), &host),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, disabled: HostDisabled| {
                    let HostDisabled {
                        grants_ended,
                        requests_cancelled,
                        approvals_withdrawn,
                        tickets_void,
                        enrolled_there,
                    } = disabled;
                    let detail = format!(
                        "host {name} disabled in the fleet; grants ended {grants_ended:?}, \
                         requests cancelled {requests_cancelled:?}, approvals withdrawn from \
                         requests {approvals_withdrawn:?}, tickets void {tickets_void:?}, \
                         enrolled on it {enrolled_there:?}"
                    );
                    let answer = FleetHostDisabled {
                        grants_ended,
                        requests_cancelled,
                        approvals_withdrawn,
                        tickets_void,
                        enrolled_there,
                    };
                    match m.succeeded(&kept, detail, answer) {
                        FleetCall::Done(Ok(answer)) => m.resync_after_change(answer),
                        other => other,
                    }
                })
            },
        )
    }

    /// `pim admin host enable NAME`: lets a disabled host back in (its grants do not return)
    /// with a new database password, which it returns.
    pub fn fleet_host_enable(
        &mut self,
        caller: &Caller,
        name: &str,
        code: &str,
    ) -> FleetCall<String> {
        let audit = host_audit(caller, AuditAction::FleetHostEnable, name);
        if let Err(e) = self.fleet_host_admin_checks(caller, name, code) {
            return FleetCall::Done(self.refused(&audit, e));
        }
        let kept = KeptAudit::of(&audit);
        let (proof, name) = (KeptProof::of(caller, code), name.to_string());
        let enabled = format!("host {name} enabled in the fleet");
        self.on_authority(
            move |a| a.enable_host(&proof.proof(), &name),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, password| {
                    m.succeeded(&kept, enabled, password)
                })
            },
        )
    }

    /// What `host disable` and `host enable` check before the network.
    fn fleet_host_admin_checks(
        &self,
        caller: &Caller,
        name: &str,
        code: &str,
    ) -> Result<(), PimError> {
        if !self.in_fleet() {
            return Err(not_a_fleet_host());
        }
        check_name("host", name)
            .and(check_code(code))
            .and(self.fleet_admin_named(caller))
    }

    /// `pim admin policy push FILE`: checked here with the configuration's own checker, then
    /// stored by the database (which checks the admin's code) as the next version.
    pub fn fleet_policy_push(
        &mut self,
        caller: &Caller,
        policy_text: &str,
        code: &str,
    ) -> FleetCall<i64> {
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
                .and_then(|()| self.check_policy(policy_text))
        };
        let policy = match checked {
            Ok(policy) => policy,
            Err(e) => return FleetCall::Done(self.refused(&audit, e)),
        };
        let kept = KeptAudit::of(&audit);
        let normalized = crate::fleet::policy::normalize(&policy);
        let roles = policy.roles.len();
        let (proof, policy_text) = (KeptProof::of(caller, code), policy_text.to_string());
        self.on_authority(
            move |a| a.push_policy(&proof.proof(), &policy_text, &normalized),
            move |m, outcome| {
                m.answered(&kept, "", outcome, |m, version| {
                    let pushed = format!("policy version {version} pushed ({roles} role(s))");
                    m.succeeded(&kept, pushed, version)
                })
            },
        )
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

    /// Numbers and dates a snapshot fetch about to begin (see [`Fetch`]).
    pub fn fleet_fetch_begins(&mut self) -> Fetch {
        let (began_at, boot) = (self.now(), self.clock.boot());
        let number = self.fleet.as_mut().map_or(0, |f| {
            f.fetches_begun += 1;
            f.fetches_begun
        });
        Fetch {
            number,
            began_at,
            boot,
        }
    }

    /// Makes the local mirror equal the snapshot `fetched` (the authority answered) or, with
    /// `None` (it did not), applies staleness alone: a stale host ends every mirrored grant.
    /// Records the synchronisation, dated when its fetch began, once the grants the snapshot
    /// ends are over and the ends it moves are in place (until then the record before keeps
    /// PAM refusing what a stale host holds), and starts its new grants only after that. A
    /// snapshot whose fetch began before that of one already mirrored is older than what the
    /// mirror holds: it is dropped, and only staleness applies.
    pub fn mirror(&mut self, fetched: Option<&Fetched>) -> Result<Mirrored, PimError> {
        let Some(fleet) = self.fleet.as_mut() else {
            return Ok(Mirrored::default());
        };
        fleet
            .link
            .0
            .known_unreachable
            .store(fetched.is_none(), Ordering::SeqCst);
        if fetched.is_some() {
            fleet.link.set_refused(None);
        }
        let superseded = fetched.is_some_and(|f| f.fetch.number < fleet.newest_mirrored);
        let fetched = fetched.filter(|_| !superseded);
        if let Some(f) = fetched {
            fleet.newest_mirrored = f.fetch.number;
        }
        let max_staleness = fleet.max_staleness;
        let (now, boot) = (self.now(), self.clock.boot());
        let synced = fetched.map(|Fetched { fetch, snapshot }| FleetSync {
            synced_at: fetch.began_at,
            db_now: mirror::db_clock_at(fetch.began_at, now, snapshot.db_now),
            policy_version: snapshot.policy_version,
            boot: fetch.boot.clone(),
        });
        let snapshot = fetched.map(|f| &f.snapshot);
        let (mirrored, recorded) = self
            .store
            .read(|tx| Ok::<_, StoreError>((tx.fleet_mirrored()?, tx.fleet_sync()?)))?;
        let fresh = mirror::freshness(
            synced.as_ref().or(recorded.as_ref()),
            now,
            &boot,
            max_staleness,
        );
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
            superseded,
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
        let mut moved_all = true;
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
                moved_all = false;
                first_error.get_or_insert(e);
            }
        }
        if let Some(sync) = &synced {
            // A grant the fleet revoked or shortened must not count under a fresh record: if
            // one is still live (its end did not commit) or kept its old end, the record
            // before stays, and the next round tries again. A stale record is written
            // whatever failed: it only makes PAM refuse more.
            let unsettled = report.stale.is_none()
                && (!moved_all
                    || (report.ended < plan.end.len() && self.any_still_mirrored(&plan.end)));
            let recorded_now = match first_error.take_if(|_| unsettled) {
                Some(e) => Err(e),
                None => self
                    .store
                    .write(|tx| tx.set_fleet_sync(sync))
                    .map_err(PimError::from),
            };
            // Nothing starts on a synchronisation that is not recorded: PAM would refuse it,
            // but a membership such as docker's is used without asking PAM.
            if let Err(e) = recorded_now {
                self.end_if_stale_on_record(recorded.as_ref(), now, &boot, max_staleness);
                return Err(e);
            }
        }
        let mut not_started = Vec::new();
        for g in &plan.start {
            match self.start_mirrored(g, now) {
                Ok(None) => report.started += 1,
                Ok(Some(why)) => not_started.push((g.clone(), why)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let unstarted = || plan.ignored.iter().chain(&not_started);
        if let (Some(_), Some(f)) = (&synced, self.fleet.as_mut()) {
            // What this snapshot no longer holds back is said again if it comes back.
            let now_held_back: BTreeSet<_> = unstarted().map(|(g, why)| (g.id, why)).collect();
            f.ignored
                .retain(|(id, why)| now_held_back.contains(&(*id, why)));
        }
        let ignored: Vec<(i64, String, String, String)> = unstarted()
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
                // Not on record: the next round says it again.
                if let Some(f) = self.fleet.as_mut() {
                    f.ignored.remove(&(id, why));
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    /// After a round that left the record before in place: once that record is stale, the
    /// mirrored grants still live end as on any stale host, however fresh the snapshot that
    /// could not be recorded was. An end that fails here is logged and waits for the next
    /// round.
    fn end_if_stale_on_record(
        &mut self,
        recorded: Option<&FleetSync>,
        now: i64,
        boot: &Boot,
        max_staleness: u64,
    ) {
        let Err(stale) = mirror::freshness(recorded, now, boot, max_staleness) else {
            return;
        };
        let Ok(live) = self.store.read(|tx| tx.fleet_mirrored()) else {
            return;
        };
        for (_, grant) in live {
            if let Err(e) =
                self.end_mirrored(&grant, &EndWhy::Stale(stale.clone()), now, max_staleness)
            {
                self.outbox.syslog.push((
                    Severity::Error,
                    format!(
                        "fleet: ending grant {} on a stale host failed: {}",
                        grant.id,
                        e.message()
                    ),
                ));
            }
        }
    }

    /// Whether any of the grants `ended` is still a live mirrored grant; an unreadable store
    /// says yes.
    fn any_still_mirrored(&mut self, ended: &[(Grant, EndWhy)]) -> bool {
        self.store
            .read(|tx| tx.fleet_mirrored())
            .map_or(true, |live| {
                live.iter()
                    .any(|(_, g)| ended.iter().any(|(e, _)| e.id == g.id))
            })
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

    /// Starts fleet grant `g` here, or says why this host cannot (`Ok(Some(why))`: the user
    /// holds the group outside PIM or as a permanent member, or is not found here). That is
    /// tried again each round but said once, as a grant the plan ignores: a fleet grant for a
    /// user some hosts of its scope do not have would otherwise fill their audit. A failure
    /// (a lookup, the store, a group missing) is audited and fails the round, each time.
    fn start_mirrored(&mut self, g: &FleetGrant, now: i64) -> Result<Option<String>, PimError> {
        let Some(role) = self.config.role(&g.role).cloned() else {
            return Ok(Some(format!(
                "role '{}' is not in this host's policy",
                pim_common::text::escape(&g.role)
            )));
        };
        let audit = Audit::new(DAEMON, AuditAction::FleetGrant)
            .about(&g.user, &g.role)
            .with_text(&g.reason, &g.ticket);
        let subject = format!("fleet grant {}", g.id);
        let ids = match self
            .check_unmanaged_membership(&g.user, &role)
            .and_then(|()| self.known_ids(&g.user, &g.group))
        {
            Ok(Some(ids)) => ids,
            // As getpwnam says it: a directory that did not answer can look the same.
            Ok(None) => {
                return Ok(Some(format!(
                    "user {} or group {} is not found on this host",
                    g.user, g.group
                )))
            }
            Err(PimError::AlreadyMember(why)) => return Ok(Some(why)),
            Err(e) => return self.refused_about(&audit, &subject, e),
        };
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
            subject,
        );
        Ok(None)
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

    /// Says (syslog, error) which local audit records went to the fleet only as stand-ins,
    /// and why the fleet's database refused them as written: at most [`SHIP_BATCH`] a call.
    pub fn audit_set_aside(&mut self, set_aside: &[(i64, String)]) {
        for (id, why) in set_aside {
            self.outbox.syslog.push((
                Severity::Error,
                format!(
                    "fleet: local audit record {id} was refused by the fleet's database and \
                     shipped as a stand-in without its text: {}",
                    text::for_record(why, text::MAX_REASON_BYTES)
                ),
            ));
        }
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

mod state;

#[cfg(test)]
mod tests;
