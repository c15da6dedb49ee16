//! Approvals: the requests an approver may decide, approving, denying, cancelling, and
//! requests expiring undecided.

use super::*;

impl Manager {
    pub fn list_requests(&mut self, caller: &Caller) -> Result<Vec<RequestInfo>, PimError> {
        if self.in_fleet() {
            return self.fleet_requests(caller).inline(self);
        }
        let now = self.now();
        let pending = self.store.read(|tx| {
            let mut out = Vec::new();
            for r in tx.pending_requests()? {
                let approvers = tx.approvers_of(r.id)?;
                let renewal = tx.renewal(r.id)?.is_some();
                out.push((r, approvers, renewal));
            }
            Ok::<_, PimError>(out)
        })?;
        Ok(pending
            .into_iter()
            .filter(|(r, approved, renewal)| {
                r.expires_at > now
                    && !approved.contains(&caller.name)
                    && self.may_decide(caller, r, *renewal)
            })
            .map(|(r, approved, _)| self.request_view(&r, approved))
            .collect())
    }

    /// Whether `approver`'s approval of `request` counts now: `role`, as currently
    /// configured, still names them among its approvers, and they are not the requester.
    fn approval_counts(&self, request: &Request, role: &Role, approver: &str) -> bool {
        approver != request.user && self.is_approver(approver, role)
    }

    /// A request as it stands under the current configuration: only the approvals that
    /// count now, against the role's current `approvals_required`.
    pub(super) fn request_view(&self, r: &Request, approved: Vec<String>) -> RequestInfo {
        if r.duration_secs == 0 {
            // A renewal (the only request without a duration): one approval by whoever
            // governs the role.
            let counted = approved
                .into_iter()
                .filter(|a| *a != r.user && self.governs_by_name(a, &r.role))
                .collect();
            return RequestInfo {
                approvals_required: 1,
                ..request_info(r, counted)
            };
        }
        let role = self.config.role(&r.role);
        let counted = approved
            .into_iter()
            .filter(|a| role.is_some_and(|role| self.approval_counts(r, role, a)))
            .collect();
        RequestInfo {
            approvals_required: role.map_or(r.approvals_required, |role| role.approvals_required),
            ..request_info(r, counted)
        }
    }

    /// Whether `caller` may know of `request`: it is theirs, or its role (as currently
    /// configured) names them among its approvers.
    fn may_know_request(&mut self, caller: &Caller, request: &Request) -> bool {
        let renewal = self
            .store
            .read(|tx| tx.renewal(request.id))
            .is_ok_and(|r| r.is_some());
        request.user == caller.name || self.may_decide(caller, request, renewal)
    }

    /// The request `id` in a state the caller may decide, or why not. Its requester is told
    /// they cannot decide their own request (they know it is theirs); anyone else who may not
    /// decide it gets the answer a request that does not exist gets, word for word, so that
    /// request ids cannot be probed for whose they are.
    fn decidable_request(&mut self, caller: &Caller, id: i64) -> Result<(Request, Role), PimError> {
        let no_such_request = || {
            // The client says where to find those one may decide ('pim requests').
            PimError::NotFound("there is no such request that you may decide".into())
        };
        let request = self
            .store
            .read(|tx| tx.request(id))?
            .ok_or_else(no_such_request)?;
        if request.user == caller.name {
            return Err(PimError::PermissionDenied(
                "you cannot decide your own request; another approver must".into(),
            ));
        }
        let renewal = self.store.read(|tx| tx.renewal(id))?.is_some();
        let role = self.config.role(&request.role).cloned();
        let role = match role {
            Some(role) if self.may_decide(caller, &request, renewal) => role,
            _ => return Err(no_such_request()),
        };
        if request.state != RequestState::Pending {
            return Err(PimError::Conflict(format!(
                "request {id} is already {}",
                request.state.as_str()
            )));
        }
        if request.expires_at <= self.now() {
            self.expire_request(&request)?;
            return Err(PimError::Conflict(format!("request {id} has expired")));
        }
        Ok((request, role))
    }

    /// Audits a refused approval or denial against the request's requester and role when the
    /// caller may know them (an approver of the role), so `pim audit --user REQUESTER` shows
    /// those attempts. Otherwise the record is the one a request that does not exist gets:
    /// callers read their own records, and must not learn from them whose request an id is.
    fn audit_decision_refusal<T>(
        &mut self,
        caller: &Caller,
        id: i64,
        action: AuditAction,
        comment: &str,
        result: Result<T, PimError>,
    ) -> Result<T, PimError> {
        let err = match result {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let request = self
            .store
            .read(|tx| tx.request(id))
            .ok()
            .flatten()
            .filter(|r| self.may_know_request(caller, r));
        let (user, role) = request.map(|r| (r.user, r.role)).unwrap_or_default();
        let comment_text = text::for_record(comment, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, action)
            .about(&user, &role)
            .with_text(&comment_text, "");
        self.refused_about(&audit, &format!("request {id}"), err)
    }

    pub fn approve(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        if self.in_fleet() {
            return self
                .fleet_decide(caller, id, comment, code, true)
                .inline(self);
        }
        match self.try_approve(caller, id, comment, code) {
            Ok(answer) => answer,
            Err(e) => {
                self.audit_decision_refusal(caller, id, AuditAction::Approve, comment, Err(e))
            }
        }
    }

    /// The approval's answer, or (`Err`) a refusal still to audit. A refusal inside `Ok` is
    /// audited already, with what it changed (a stale renewal ends denied): once is enough.
    fn try_approve(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<Result<RequestInfo, PimError>, PimError> {
        policy::check_comment(comment)?;
        let (request, role) = self.decidable_request(caller, id)?;
        let already = self.store.read(|tx| tx.approvers_of(id))?;
        if already.contains(&caller.name) {
            return Err(PimError::Conflict(format!(
                "you have already approved request {id}; it needs another approver"
            )));
        }
        if let Some(renewal) = self.store.read(|tx| tx.renewal(id))? {
            return self.approve_renewal(caller, request, renewal, comment, code);
        }
        let approver = caller.name.as_str();
        // Only the approvals of approvers who still qualify count, against the role's current
        // approvals_required: a reload that dropped an approver took their approval away.
        let earlier = already.len();
        let mut counted: Vec<String> = already
            .into_iter()
            .filter(|a| self.approval_counts(&request, &role, a))
            .collect();
        let not_counted = match earlier - counted.len() {
            0 => String::new(),
            n => {
                format!(" ({n} earlier approval(s) by approvers who no longer qualify not counted)")
            }
        };
        counted.push(approver.to_string());
        let request = Request {
            approvals_required: role.approvals_required,
            ..request
        };
        let now = self.now();
        let audit = Audit::new(approver, AuditAction::Approve)
            .about(&request.user, &request.role)
            .with_text(comment, &request.ticket);
        self.with_mfa(approver, code, true, |tx, proof| {
            tx.add_approval(id, approver, now, comment)?;
            Ok(tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "request {id}: approval {} of {}{not_counted}; {}",
                    counted.len(),
                    request.approvals_required,
                    proof.describe()
                ),
            ))?)
        })?;
        self.event(
            EventKind::RequestApproved,
            &request.user,
            &request.role,
            id,
            0,
            approver,
            comment.into(),
        );
        if (counted.len() as u32) < request.approvals_required {
            return Ok(Ok(request_info(&request, counted)));
        }
        let state = self.complete_request(&request, &role, approver)?;
        Ok(Ok(request_info(&Request { state, ..request }, counted)))
    }

    /// Why a fully approved request cannot become a grant now, if anything stands in the way.
    fn grant_obstacle(
        &mut self,
        request: &Request,
        role: &Role,
    ) -> Result<Option<String>, PimError> {
        let user = request.user.as_str();
        match self.eligibility(role, user) {
            Ok(eligibility) if eligibility.is_eligible() => {}
            Ok(_) => {
                return Ok(Some(format!(
                    "{user} is no longer eligible for role {}",
                    role.name
                )))
            }
            Err(e) => {
                return Ok(Some(format!(
                    "cannot tell whether {user} is still eligible for role {}: {}",
                    role.name,
                    e.message()
                )))
            }
        }
        if self
            .store
            .read(|tx| tx.live_grant(user, &role.name))?
            .is_some()
        {
            return Ok(Some(format!(
                "{user} already has role {} active",
                role.name
            )));
        }
        Ok(self
            .check_unmanaged_membership(user, role)
            .err()
            .map(|e| format!("{} (for {user})", e.message())))
    }

    /// Turns a fully approved request into a grant, if the requester may still have it; the
    /// grant lasts the requested duration from now.
    fn complete_request(
        &mut self,
        request: &Request,
        role: &Role,
        approver: &str,
    ) -> Result<RequestState, PimError> {
        let user = request.user.as_str();
        let now = self.now();
        if let Some(obstacle) = self.grant_obstacle(request, role)? {
            let audit = Audit::new(DAEMON, AuditAction::RequestVoid)
                .about(user, &role.name)
                .with_text("", &request.ticket);
            let entry = audit.entry(
                now,
                Outcome::Refused,
                format!("request {}: {obstacle}", request.id),
            );
            self.commit(|tx| {
                tx.decide_request(request.id, RequestState::Denied, now, DAEMON, &obstacle)?;
                Ok(tx.audit(entry)?)
            })?;
            self.event(
                EventKind::RequestDenied,
                user,
                &role.name,
                request.id,
                0,
                DAEMON,
                obstacle,
            );
            return Ok(RequestState::Denied);
        }
        let eligibility = self.eligibility(role, user)?;
        let ends_at = Self::grant_end(now, request.duration_secs, eligibility);
        let audit = Audit::new(approver, AuditAction::GrantStart)
            .about(user, &role.name)
            .with_text(&request.reason, &request.ticket);
        let ids = self.ids_for_grant(user, &role.group)?;
        // Before the grant exists: an ending's step running outside the lock stops.
        self.grant_starts.bump(user, &role.group);
        let grant = self.commit(|tx| {
            let grant = Self::insert_grant(
                tx,
                &NewGrant {
                    user,
                    role: &role.name,
                    group: &role.group,
                    started_at: now,
                    ends_at,
                    reason: &request.reason,
                    ticket: &request.ticket,
                    request_id: Some(request.id),
                },
                ids,
            )?;
            tx.decide_request(request.id, RequestState::Approved, now, approver, "")?;
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "request {} approved; group {} for {}",
                    request.id,
                    role.group,
                    duration::format((ends_at - now) as u64)
                ),
            ))?;
            Ok(grant)
        })?;
        self.apply_grant(&grant)?;
        self.event(
            EventKind::GrantStarted,
            user,
            &role.name,
            request.id,
            grant.id,
            approver,
            String::new(),
        );
        Ok(RequestState::Approved)
    }

    pub fn deny(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        if self.in_fleet() {
            return self
                .fleet_decide(caller, id, comment, code, false)
                .inline(self);
        }
        let result = self.try_deny(caller, id, comment, code);
        self.audit_decision_refusal(caller, id, AuditAction::Deny, comment, result)
    }

    fn try_deny(
        &mut self,
        caller: &Caller,
        id: i64,
        comment: &str,
        code: &str,
    ) -> Result<RequestInfo, PimError> {
        policy::check_comment(comment)?;
        if comment.trim().is_empty() {
            return Err(PimError::InvalidArgument(
                "a denial needs a comment saying why; give one with -c".into(),
            ));
        }
        let (request, _role) = self.decidable_request(caller, id)?;
        if self
            .store
            .read(|tx| tx.approvers_of(id))?
            .contains(&caller.name)
        {
            return Err(PimError::Conflict(format!(
                "you have already approved request {id}; an approver decides once, so you cannot deny it now"
            )));
        }
        let approver = caller.name.as_str();
        let now = self.now();
        let audit = Audit::new(approver, AuditAction::Deny)
            .about(&request.user, &request.role)
            .with_text(comment, &request.ticket);
        let approved_by = self.with_mfa(approver, code, true, |tx, proof| {
            tx.decide_request(id, RequestState::Denied, now, approver, comment)?;
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!("request {id} denied; {}", proof.describe()),
            ))?;
            Ok(tx.approvers_of(id)?)
        })?;
        self.event(
            EventKind::RequestDenied,
            &request.user,
            &request.role,
            id,
            0,
            approver,
            comment.into(),
        );
        Ok(self.request_view(
            &Request {
                state: RequestState::Denied,
                ..request
            },
            approved_by,
        ))
    }

    pub fn cancel(&mut self, caller: &Caller, id: i64) -> Result<RequestInfo, PimError> {
        if self.in_fleet() {
            return self.fleet_cancel(caller, id).inline(self);
        }
        let audit = Audit::new(&caller.name, AuditAction::Cancel).about(&caller.name, "");
        let request = match self.store.read(|tx| tx.request(id))? {
            Some(r) if r.user == caller.name => r,
            _ => {
                return self.refused(
                    &audit,
                    PimError::NotFound(format!("you have no request {id}")),
                )
            }
        };
        if request.state != RequestState::Pending {
            return self.refused(
                &audit,
                PimError::Conflict(format!(
                    "request {id} is already {}",
                    request.state.as_str()
                )),
            );
        }
        let now = self.now();
        let audit = Audit {
            role: &request.role,
            ..audit
        };
        let entry = audit.entry(now, Outcome::Success, format!("request {id} cancelled"));
        let approved_by = self.commit(|tx| {
            tx.decide_request(id, RequestState::Cancelled, now, &caller.name, "")?;
            tx.audit(entry)?;
            Ok(tx.approvers_of(id)?)
        })?;
        self.event(
            EventKind::RequestCancelled,
            &caller.name,
            &request.role,
            id,
            0,
            &caller.name,
            String::new(),
        );
        Ok(self.request_view(
            &Request {
                state: RequestState::Cancelled,
                ..request
            },
            approved_by,
        ))
    }

    pub(super) fn expire_request(&mut self, request: &Request) -> Result<(), PimError> {
        let now = self.now();
        let audit = Audit::new(DAEMON, AuditAction::RequestExpire)
            .about(&request.user, &request.role)
            .with_text("", &request.ticket);
        let entry = audit.entry(
            now,
            Outcome::Success,
            format!("request {} expired undecided", request.id),
        );
        self.commit(|tx| {
            tx.decide_request(request.id, RequestState::Expired, now, DAEMON, "")?;
            Ok(tx.audit(entry)?)
        })?;
        self.event(
            EventKind::RequestExpired,
            &request.user,
            &request.role,
            request.id,
            0,
            DAEMON,
            String::new(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
