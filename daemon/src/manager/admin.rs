//! Administration: the calls of pim administrators (grants, assign, unassign, revoke, MFA
//! reset), and the end of grants whose eligibility went (an assignment removed or moved, a
//! reloaded configuration). Assign, unassign and revoke are governance calls: a role's
//! `owners` may make them for that role (`may_govern`); `admin grants` shows an owner the
//! grants of the roles they own.

use super::*;

impl Manager {
    pub(super) fn require_admin(
        &mut self,
        caller: &Caller,
        audit: &Audit<'_>,
    ) -> Result<(), PimError> {
        if self.is_admin(caller) {
            return Ok(());
        }
        self.refused(
            audit,
            PimError::PermissionDenied(
                "this needs a pim administrator (root or a member of [daemon] admins)".into(),
            ),
        )
    }

    pub fn admin_grants(&mut self, caller: &Caller) -> Result<Vec<GrantInfo>, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::AdminGrants);
        let governed = self.governed_roles(caller);
        if !self.is_admin(caller) && governed.is_empty() {
            return self.refused(
                &audit,
                PimError::PermissionDenied(
                    "this needs a pim administrator (root or a member of [daemon] admins) or \
                     an owner of a role (its owners = [...])"
                        .into(),
                ),
            );
        }
        let admin = self.is_admin(caller);
        let grants = self.store.read(|tx| tx.live_grants())?;
        Ok(grants
            .iter()
            .filter(|g| admin || governed.contains(&g.role))
            .map(grant_info)
            .collect())
    }

    /// Gives `user` an eligible assignment to `role` (see `assignments`); returns a warning
    /// (empty when none) when ending a grant the new window no longer allows did not go
    /// through.
    pub fn admin_assign(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<String, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::AdminAssign,
                fleet::NotInFleet::Assignments,
            );
        }
        self.assign(caller, user, role, not_before, not_after, false, "")
    }

    /// Gives `user` an active assignment to `role`: the group for the window without
    /// activation (see `assignments`).
    pub fn admin_assign_active(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
        reason: &str,
    ) -> Result<String, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::AdminAssignActive,
                fleet::NotInFleet::Assignments,
            );
        }
        self.assign(caller, user, role, not_before, not_after, true, reason)
    }

    /// Removes an assignment and ends the grant that depended on it; returns that grant (id 0
    /// when none ended) and a warning when ending it did not go through (empty when it did).
    pub fn admin_unassign(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
    ) -> Result<(GrantInfo, String), PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::AdminUnassign,
                fleet::NotInFleet::Assignments,
            );
        }
        let audit = Audit::new(&caller.name, AuditAction::AdminUnassign)
            .about(name_or_empty(user), name_or_empty(role));
        self.require_governor(caller, role, &audit)?;
        if let Err(e) = check_name("user", user).and(check_name("role", role)) {
            return self.refused(&audit, e);
        }
        let now = self.now();
        let entry = audit.entry(now, Outcome::Success, "assignment removed");
        let removed = self.commit(|tx| {
            if tx.delete_assignment(user, role)? {
                tx.audit(entry)?;
                Ok(true)
            } else {
                Ok(false)
            }
        })?;
        if !removed {
            return self.refused(
                &audit,
                PimError::NotFound(format!("{user} has no assignment for role {role}")),
            );
        }
        // The grant of an active assignment ends with it (see `lost_eligibility`).
        let why = format!("unassigned by {}", caller.name);
        let (ended, warning) =
            self.end_grant_after_assignment_change(user, role, &caller.name, Some(&why));
        self.alerts_after_change();
        Ok((ended.as_ref().map(grant_info).unwrap_or_default(), warning))
    }

    /// Why `grant` may no longer run, or `None` while it may: its role still grants its group,
    /// the active assignment it stands for (if it is one's) still points to it, and its user is
    /// still eligible for it in some way (standing, through a %group, or assigned), or a
    /// `permanent` member of it, whom PIM never touches. A lookup that fails
    /// is an error, not an end: the grant runs on and the next reconciliation asks again.
    fn lost_eligibility(&mut self, grant: &Grant) -> Result<Option<String>, PimError> {
        let (user, role_name) = (grant.user.as_str(), grant.role.as_str());
        let Some(role) = self.config.role(role_name).cloned() else {
            return Ok(Some(format!(
                "role {role_name} is no longer in the configuration"
            )));
        };
        if role.group != grant.group {
            return Ok(Some(format!(
                "role {role_name} now grants group {}, not {}",
                role.group, grant.group
            )));
        }
        // In the order of the PAM check's `grant_stands`, which must not count what this ends.
        if let Some(lost) = self.lost_active_assignment(grant)? {
            return Ok(Some(lost));
        }
        if self.permanent(user, &role)? || self.eligibility(&role, user)?.is_eligible() {
            return Ok(None);
        }
        let now = self.now();
        let assignment = self.store.read(|tx| tx.assignment(user, role_name))?;
        let window = assignment.map(|a| (a.not_before, a.not_after));
        Ok(Some(match window {
            Some((_, Some(end))) if end <= now => format!(
                "the assignment of {user} to role {role_name} ended {}",
                describe(end, now)
            ),
            Some((Some(start), _)) if start > now => format!(
                "the assignment of {user} to role {role_name} starts only {}",
                describe(start, now)
            ),
            _ => format!("{user} is no longer eligible for role {role_name}"),
        }))
    }

    /// Ends those of the live `grants` not yet at their end (expiry takes the others) whose
    /// user may no longer hold the role, through the path of any other end (database and
    /// audit record first, then the membership). The record, by `actor`, gives the reason
    /// "eligibility ended: ..." with `why` when the caller knows what ended it, else what is
    /// missing. Tries every grant; returns those it ended in the database (the membership may
    /// still be left for reconciliation to take back) and the first error.
    fn end_grants_without_eligibility(
        &mut self,
        grants: Vec<Grant>,
        actor: &str,
        why: Option<&str>,
    ) -> (Vec<Grant>, Result<(), PimError>) {
        let now = self.now();
        let mut first_error = None;
        let mut ended = Vec::new();
        for grant in grants.into_iter().filter(|g| g.ends_at > now) {
            let lost = match self.lost_eligibility(&grant) {
                Ok(Some(lost)) => lost,
                Ok(None) => continue,
                Err(e) => {
                    first_error.get_or_insert(PimError::Internal(format!(
                        "cannot tell whether {} may still hold role {}: {}; the grant runs on, \
                         and pimd asks again at its next reconciliation",
                        grant.user,
                        grant.role,
                        e.message()
                    )));
                    continue;
                }
            };
            let reason = format!("eligibility ended: {}", why.unwrap_or(&lost));
            let audit = Audit::new(actor, AuditAction::EligibilityEnd)
                .about(&grant.user, &grant.role)
                .with_text(&reason, "");
            let detail = format!(
                "grant {} of group {} ended; it was due to end {}",
                grant.id,
                grant.group,
                describe(grant.ends_at, now)
            );
            let is_over = match self.end_grant(&grant, &audit, "eligibility-ended", detail) {
                Ok(()) => true,
                Err(e) => {
                    first_error.get_or_insert(e);
                    // A failure after the end was committed (taking back the membership)
                    // still ended the grant.
                    self.store
                        .read(|tx| tx.live_grant(&grant.user, &grant.role))
                        .is_ok_and(|live| live.is_none_or(|g| g.id != grant.id))
                }
            };
            if is_over {
                ended.push(grant);
            }
        }
        (ended, first_error.map_or(Ok(()), Err))
    }

    /// What an admin's change of `user`'s assignment to `role` did to the grant that stood on
    /// it: the grant it ended, if any, and a warning when that did not go through. The
    /// assignment is committed by then, so a failure here is no failure of the call:
    /// reconciliation finishes what is left.
    pub(super) fn end_grant_after_assignment_change(
        &mut self,
        user: &str,
        role: &str,
        actor: &str,
        why: Option<&str>,
    ) -> (Option<Grant>, String) {
        let live = match self.store.read(|tx| tx.live_grant(user, role)) {
            Ok(live) => live,
            Err(e) => {
                return (
                    None,
                    format!(
                        "could not check {user}'s grant of {role}: {e}; pimd checks it again \
                         at its next reconciliation"
                    ),
                )
            }
        };
        let (ended, result) =
            self.end_grants_without_eligibility(live.into_iter().collect(), actor, why);
        let warning = result.err().map_or(String::new(), |e| {
            format!(
                "ending {user}'s grant of {role} did not complete: {}",
                e.message()
            )
        });
        (ended.into_iter().next(), warning)
    }

    /// Ends every live grant whose user may no longer hold its role: after a reload, at an
    /// assignment's end, after a user left a %group, and at start for whatever happened while
    /// pimd was down.
    pub(super) fn end_every_grant_without_eligibility(&mut self) -> Result<(), PimError> {
        // A fleet grant rests on the fleet's decision, not on local eligibility: the mirror
        // ends it when the fleet does (or the host goes stale).
        let live = self.store.read(|tx| {
            let mut own = Vec::new();
            for grant in tx.live_grants()? {
                if tx.fleet_id_of(grant.id)?.is_none() {
                    own.push(grant);
                }
            }
            Ok::<_, StoreError>(own)
        })?;
        self.end_grants_without_eligibility(live, DAEMON, None).1
    }

    pub fn admin_revoke(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        reason: &str,
    ) -> Result<GrantInfo, PimError> {
        if self.in_fleet() {
            return self
                .fleet_revoke(caller, user, role, reason, "")
                .inline(self);
        }
        let reason_text = text::for_record(reason, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, AuditAction::AdminRevoke)
            .about(name_or_empty(user), name_or_empty(role))
            .with_text(&reason_text, "");
        self.require_governor(caller, role, &audit)?;
        let found = check_name("user", user)
            .and(check_name("role", role))
            .and(
                text::check("the reason", reason, text::MAX_REASON_BYTES)
                    .map_err(PimError::InvalidArgument),
            )
            .and_then(|_| {
                self.store
                    .read(|tx| tx.live_grant(user, role))?
                    .ok_or_else(|| {
                        PimError::NotFound(format!("{user} has no live grant for role {role}"))
                    })
            });
        match found {
            Ok(grant) => {
                self.end_grant(
                    &grant,
                    &audit,
                    "revoked",
                    format!("grant {} revoked", grant.id),
                )?;
                Ok(grant_info(&grant))
            }
            Err(e) => self.refused(&audit, e),
        }
    }

    pub fn admin_mfa_reset(&mut self, caller: &Caller, user: &str) -> Result<(), PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::AdminMfaReset,
                fleet::NotInFleet::MfaReset,
            );
        }
        let audit =
            Audit::new(&caller.name, AuditAction::AdminMfaReset).about(name_or_empty(user), "");
        self.require_admin(caller, &audit)?;
        if let Err(e) = check_name("user", user) {
            return self.refused(&audit, e);
        }
        self.refuse_own_mfa(caller, user, &audit, "reset your own MFA")?;
        let now = self.now();
        let entry = audit.entry(
            now,
            Outcome::Success,
            "enrolment and recovery codes removed",
        );
        self.remove_or_refuse(
            &audit,
            entry,
            |tx| tx.delete_mfa(user),
            PimError::NotFound(format!("{user} has no MFA enrolment")),
        )
    }
}

#[cfg(test)]
mod tests;
