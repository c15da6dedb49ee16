//! Activation: the roles a user may take, activating one (a grant, or a request where the
//! role needs approval), extending and ending one's own grant, and one's status.

use super::*;

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
            .ok_or_else(|| no_live_grant(&role.name))?;
        if role.require_approval {
            // The client says what to do instead (a new request with 'pim activate').
            return Err(PimError::Conflict(format!(
                "role {} needs approval, so it cannot be extended",
                role.name
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
}

#[cfg(test)]
mod tests;

/// The caller holds no live grant of `role`. What to run next depends on what they tried, so
/// the client says it (`pim extend` and `pim deactivate` add their own next step).
fn no_live_grant(role: &str) -> PimError {
    PimError::NotFound(format!("you have no live grant for role {role}"))
}
