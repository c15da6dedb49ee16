//! Activation: the roles a user may take, activating one (a grant, or a request where the
//! role needs approval), extending and ending one's own grant, and one's status.
//!
//! Activating and extending read what they decide on in one step ([`ActivationFacts`]: one
//! store transaction, then the account lookups), decide in pure code ([`decide_activation`],
//! [`decide_extension`]: no store, no accounts, no clock) and write once: the grant, request
//! or new end with its audit record and the MFA code's bookkeeping in one transaction.

use super::grants::membership_obstacle;
use super::mfa::CodeCheck;
use super::*;
use crate::mfa::FailureState;
use crate::model::MfaRecord;

/// What a caller asks of `activate` (or of `extend`, with no ticket).
pub(super) struct ActivationAsk<'a> {
    pub role: &'a str,
    pub duration_secs: u64,
    pub reason: &'a str,
    pub ticket: &'a str,
    pub code: &'a str,
}

/// What the store holds that an activation or extension depends on, read in one transaction.
struct StoredFacts {
    assignment: Option<Assignment>,
    /// A review suspended the user's standing eligibility.
    suspended: bool,
    live: Option<Grant>,
    managed: bool,
    pending: Option<Request>,
    mfa: Option<MfaRecord>,
    failures: FailureState,
}

/// Everything deciding one activation (or extension) needs, gathered before anything is
/// decided: the lookups of the host's accounts are kept as their results, since a failed one
/// refuses only where the decision gets to it.
pub(super) struct ActivationFacts {
    pub role: Role,
    /// How the user may hold the role now.
    pub eligibility: Result<Eligibility, PimError>,
    /// The user's grant of the role that is not ended in the store (perhaps past its end).
    pub live: Option<Grant>,
    /// Whether the user is a `permanent` member of the role.
    pub permanent: Result<bool, PimError>,
    pub group_exists: bool,
    /// Whether the user is in the role's group now, however.
    pub in_group: Result<bool, PimError>,
    /// Whether PIM added the user to the role's group (and has not taken them out yet).
    pub managed: bool,
    /// The user's request for the role that waits for approval.
    pub pending: Option<Request>,
    /// The uid and gid to record with a grant.
    pub ids: Result<(u32, u32), PimError>,
    pub mfa: Option<MfaRecord>,
    pub failures: FailureState,
}

/// What an activation is to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ActivationPlan {
    /// The live grant is past its end, not yet reconciled: end it first, then decide afresh.
    ExpireFirst(Grant),
    /// Start a grant until `ends_at`.
    StartGrant {
        ends_at: i64,
        ids: (u32, u32),
        mfa: Option<CodeCheck>,
    },
    /// File a request of `secs` for the role's approvers.
    FileRequest { secs: u64, mfa: Option<CodeCheck> },
}

/// Decides an activation on its facts, in the order of the refusals a caller meets:
/// eligibility, the duration, reason and ticket asked, a grant already live, a membership
/// PIM does not own, a request already open, then the MFA code (no code check when the role
/// needs no MFA).
pub(super) fn decide_activation(
    facts: ActivationFacts,
    ask: &ActivationAsk<'_>,
    now: i64,
    lockout: &LockoutPolicy,
) -> Result<ActivationPlan, PimError> {
    let role = &facts.role;
    let eligibility = match facts.eligibility? {
        Eligibility::No => return Err(not_eligible(ask.role)),
        eligibility => eligibility,
    };
    let secs = policy::duration(role, ask.duration_secs)?;
    policy::check_reason(role, ask.reason)?;
    policy::check_ticket(role, ask.ticket)?;
    if let Some(live) = facts.live {
        if live.ends_at <= now {
            return Ok(ActivationPlan::ExpireFirst(live));
        }
        return Err(PimError::Conflict(format!(
            "role {} is already active until {}; use 'pim extend {}' to lengthen it",
            role.name,
            describe(live.ends_at, now),
            role.name
        )));
    }
    let (in_group, managed) = (facts.in_group, facts.managed);
    membership_obstacle(role, facts.permanent?, facts.group_exists, || {
        Ok(in_group? && !managed)
    })?;
    let check_code = || code_check(role, facts.mfa.as_ref(), facts.failures, ask, now, lockout);
    if role.require_approval {
        if let Some(open) = facts.pending {
            return Err(PimError::Conflict(format!(
                "you already have request {} open for role {}; wait for it or 'pim cancel {}'",
                open.id, role.name, open.id
            )));
        }
        return Ok(ActivationPlan::FileRequest {
            secs,
            mfa: check_code()?,
        });
    }
    let ends_at = Manager::grant_end(now, secs, eligibility);
    let ids = facts.ids?;
    Ok(ActivationPlan::StartGrant {
        ends_at,
        ids,
        mfa: check_code()?,
    })
}

/// Decides an extension on the same facts, in the order of its refusals: eligibility, a
/// grant to extend, a role that needs approval, the duration and reason, an end that would
/// not be later, then the MFA code. Returns the grant, its new end and the code's check.
pub(super) fn decide_extension(
    facts: ActivationFacts,
    ask: &ActivationAsk<'_>,
    now: i64,
    lockout: &LockoutPolicy,
) -> Result<(Grant, i64, Option<CodeCheck>), PimError> {
    let role = &facts.role;
    let eligibility = match facts.eligibility? {
        Eligibility::No => return Err(not_eligible(ask.role)),
        eligibility => eligibility,
    };
    let grant = facts
        .live
        // A grant past its end is over even before reconciliation records that.
        .filter(|g| g.ends_at > now)
        .ok_or_else(|| no_live_grant(&role.name))?;
    if role.require_approval {
        // The client says what to do instead (a new request with 'pim activate').
        return Err(PimError::Conflict(format!(
            "role {} needs approval, so it cannot be extended",
            role.name
        )));
    }
    let secs = policy::duration(role, ask.duration_secs)?;
    policy::check_reason(role, ask.reason)?;
    let ends_at = Manager::grant_end(now, secs, eligibility);
    if ends_at <= grant.ends_at {
        return Err(PimError::InvalidArgument(format!(
            "your grant already ends at {}, which is not before the extension's end {}; ask for more with -d",
            describe(grant.ends_at, now),
            describe(ends_at, now)
        )));
    }
    let mfa = code_check(
        &facts.role,
        facts.mfa.as_ref(),
        facts.failures,
        ask,
        now,
        lockout,
    )?;
    Ok((grant, ends_at, mfa))
}

/// The check of the code asked with, on what was read; none when the role needs no MFA.
fn code_check(
    role: &Role,
    record: Option<&MfaRecord>,
    failures: FailureState,
    ask: &ActivationAsk<'_>,
    now: i64,
    lockout: &LockoutPolicy,
) -> Result<Option<CodeCheck>, PimError> {
    if !role.require_mfa {
        return Ok(None);
    }
    Manager::check_code(record, failures, lockout, ask.code, now).map(Some)
}

impl Manager {
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
        if self.in_fleet() {
            return self
                .fleet_activate(caller, role, duration_secs, reason, ticket, code, None)
                .inline(self);
        }
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
        let user = caller.name.as_str();
        let ask = ActivationAsk {
            role: role_name,
            duration_secs,
            reason,
            ticket,
            code,
        };
        let (role, plan) = match self.plan_activation(user, &ask)? {
            (_, ActivationPlan::ExpireFirst(ended)) => {
                // Ended but not yet reconciled: expire it (only it) first, then decide afresh
                // on what that left.
                let audit = Audit::new(DAEMON, AuditAction::Expire).about(&ended.user, &ended.role);
                let detail = format!(
                    "grant {} ended at {}",
                    ended.id,
                    describe(ended.ends_at, self.now())
                );
                self.end_grant(&ended, &audit, "expired", detail)?;
                self.plan_activation(user, &ask)?
            }
            decided => decided,
        };
        match plan {
            ActivationPlan::ExpireFirst(ended) => Err(PimError::Internal(format!(
                "grant {} is still live after its end was recorded; nothing was granted",
                ended.id
            ))),
            ActivationPlan::FileRequest { secs, mfa } => {
                self.file_request(user, &role, &ask, secs, mfa)
            }
            ActivationPlan::StartGrant { ends_at, ids, mfa } => {
                self.start_grant(user, &role, &ask, ends_at, ids, mfa)
            }
        }
    }

    /// Reads what deciding `ask` needs in one step, and decides.
    fn plan_activation(
        &mut self,
        user: &str,
        ask: &ActivationAsk<'_>,
    ) -> Result<(Role, ActivationPlan), PimError> {
        let facts = self.activation_facts(user, ask.role)?;
        let role = facts.role.clone();
        let policy = self.mfa_policy();
        let plan = decide_activation(facts, ask, self.now(), &policy)?;
        Ok((role, plan))
    }

    /// What activating role `name` for `user` depends on: one read of the store, and the
    /// lookups of the host's accounts (kept as results: which failure counts is the
    /// decision's to say). An unknown role is refused as one the user is not eligible for.
    fn activation_facts(&mut self, user: &str, name: &str) -> Result<ActivationFacts, PimError> {
        let role = self
            .config
            .role(name)
            .cloned()
            .ok_or_else(|| not_eligible(name))?;
        let read = self.store.read(|tx| {
            Ok::<_, StoreError>(StoredFacts {
                assignment: tx.assignment(user, &role.name)?,
                suspended: tx.suspended(user, &role.name)?,
                live: tx.live_grant(user, &role.name)?,
                managed: tx.has_membership(user, &role.group)?,
                pending: tx.pending_request(user, &role.name)?,
                mfa: tx.mfa(user)?,
                failures: tx.failure_state(user)?,
            })
        })?;
        let now = self.now();
        let eligibility = policy::eligibility(
            &role,
            user,
            read.assignment.as_ref(),
            read.suspended,
            now,
            &|g| self.in_group(user, g),
        );
        Ok(ActivationFacts {
            eligibility,
            permanent: self.permanent(user, &role),
            group_exists: self.accounts.group_exists(&role.group),
            in_group: self.in_group(user, &role.group),
            ids: self.ids_for_grant(user, &role.group),
            live: read.live,
            managed: read.managed,
            pending: read.pending,
            mfa: read.mfa,
            failures: read.failures,
            role,
        })
    }

    /// Writes a grant decided on, then adds the membership.
    fn start_grant(
        &mut self,
        user: &str,
        role: &Role,
        ask: &ActivationAsk<'_>,
        ends_at: i64,
        ids: (u32, u32),
        mfa: Option<CodeCheck>,
    ) -> Result<ActivateReply, PimError> {
        let (reason, ticket) = (ask.reason, ask.ticket);
        let now = self.now();
        let audit = Audit::new(user, AuditAction::Activate)
            .about(user, &role.name)
            .with_text(reason, ticket);
        // Before the grant exists: an ending's step running outside the lock stops.
        self.grant_starts.bump(user, &role.group);
        let grant = self.with_checked_code(user, mfa, |tx, proof| {
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

    /// Writes a request decided on, for the role's approvers.
    fn file_request(
        &mut self,
        user: &str,
        role: &Role,
        ask: &ActivationAsk<'_>,
        secs: u64,
        mfa: Option<CodeCheck>,
    ) -> Result<ActivateReply, PimError> {
        let (reason, ticket) = (ask.reason, ask.ticket);
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
        request.id = self.with_checked_code(user, mfa, |tx, proof| {
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
        if self.in_fleet() {
            return self.fleet_deactivate(caller, role).inline(self);
        }
        let audit = Audit::new(&caller.name, AuditAction::Deactivate)
            .about(&caller.name, name_or_empty(role));
        let result = check_name("role", role).and_then(|_| {
            self.store
                .read(|tx| tx.live_grant(&caller.name, role))?
                .ok_or_else(|| no_live_grant(role))
        });
        match result {
            Ok(grant) => {
                self.end_grant(&grant, &audit, "deactivated", String::new())?;
                Ok(grant_info(&grant))
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    pub fn extend(
        &mut self,
        caller: &Caller,
        role: &str,
        duration_secs: u64,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(caller, AuditAction::Extend, fleet::NotInFleet::Extend);
        }
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
        let user = caller.name.as_str();
        let ask = ActivationAsk {
            role: role_name,
            duration_secs,
            reason,
            ticket: "",
            code,
        };
        let facts = self.activation_facts(user, role_name)?;
        let role = facts.role.clone();
        let now = self.now();
        let (grant, ends_at, mfa) = decide_extension(facts, &ask, now, &self.mfa_policy())?;
        let audit = Audit::new(user, AuditAction::Extend)
            .about(user, &role.name)
            .with_text(reason, "");
        self.with_checked_code(user, mfa, |tx, proof| {
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
}

#[cfg(test)]
mod tests;

/// The caller holds no live grant of `role`. What to run next depends on what they tried, so
/// the client says it (`pim extend` and `pim deactivate` add their own next step).
pub(super) fn no_live_grant(role: &str) -> PimError {
    PimError::NotFound(format!("you have no live grant for role {role}"))
}
