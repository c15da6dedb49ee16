//! Grants and the memberships they stand for, shared by every capability that starts or
//! ends one: the grant's record, `gpasswd -a` after it is committed, and the membership's
//! release once no live grant needs it.

use super::*;

/// Why `role` cannot be granted to a user who is a `permanent` member of it, or whose group
/// does not exist, or who holds the group outside PIM (`held_outside`, asked last, as it
/// may need a lookup).
pub(super) fn membership_obstacle(
    role: &Role,
    permanent: bool,
    group_exists: bool,
    held_outside: impl FnOnce() -> Result<bool, PimError>,
) -> Result<(), PimError> {
    if permanent {
        return Err(PimError::AlreadyMember(format!(
            "you are a permanent member of role {}'s group {}; there is nothing to activate",
            role.name, role.group
        )));
    }
    if !group_exists {
        return Err(PimError::Internal(format!(
            "group {} of role {} does not exist on this host; ask an administrator to create it",
            role.group, role.name
        )));
    }
    if held_outside()? {
        return Err(PimError::AlreadyMember(format!(
            "you are already a member of group {} outside PIM; PIM will neither grant nor remove it",
            role.group
        )));
    }
    Ok(())
}

impl Manager {
    /// Refuses when the user already holds the group outside PIM: PIM must never take away a
    /// membership it did not add.
    pub(super) fn check_unmanaged_membership(
        &mut self,
        user: &str,
        role: &Role,
    ) -> Result<(), PimError> {
        let permanent = self.permanent(user, role)?;
        let group_exists = self.accounts.group_exists(&role.group);
        membership_obstacle(role, permanent, group_exists, || {
            let managed = self.store.read(|tx| tx.has_membership(user, &role.group))?;
            Ok(self.in_group(user, &role.group)? && !managed)
        })
    }

    /// Adds the membership for a grant just committed. On failure the grant is ended and
    /// the error returned: nothing stays granted that the host does not reflect.
    pub(super) fn apply_grant(&mut self, grant: &Grant) -> Result<(), PimError> {
        // Not known to be listed (the lookup failed): gpasswd -a adds the user, or finds them.
        if self
            .accounts
            .listed_in_group(&grant.user, &grant.group)
            .unwrap_or(false)
        {
            return Ok(());
        }
        if let Err(e) = self.accounts.add_member(&grant.user, &grant.group) {
            let err = PimError::Internal(format!(
                "could not add {} to group {}: {e}; nothing was granted",
                grant.user, grant.group
            ));
            let now = self.now();
            let audit =
                Audit::new(DAEMON, AuditAction::GrantFailed).about(&grant.user, &grant.role);
            let entry = audit.entry(now, Outcome::Error, err.message());
            self.commit(|tx| {
                tx.end_grant(grant.id, now, "failed")?;
                Ok(tx.audit(entry)?)
            })?;
            self.release_membership(&grant.user, &grant.group)?;
            return Err(err);
        }
        self.alerts_after_change();
        Ok(())
    }

    /// The uid and gid the user and group have as a grant starts, recorded with it: the
    /// set-group-ID sweep at its end looks for files of these numbers (setgid.rs), even if the
    /// user is gone by then or the group's name means another gid. A failed lookup refuses
    /// the grant.
    pub(super) fn ids_for_grant(&self, user: &str, group: &str) -> Result<(u32, u32), PimError> {
        self.known_ids(user, group)?.ok_or_else(|| {
            PimError::Internal(format!(
                "user {user} or group {group} does not exist; nothing was granted"
            ))
        })
    }

    /// [`Self::ids_for_grant`], with a user or group not found (`None`) told apart from a
    /// lookup that reported an error.
    pub(super) fn known_ids(
        &self,
        user: &str,
        group: &str,
    ) -> Result<Option<(u32, u32)>, PimError> {
        self.accounts.ids(user, group).map_err(|e| {
            PimError::Internal(format!(
                "cannot look up the ids of {user} and group {group}: {e}; nothing was granted"
            ))
        })
    }

    /// Inserts a grant and the membership record in `tx`.
    pub(super) fn insert_grant(
        tx: &Tx,
        g: &NewGrant<'_>,
        (uid, gid): (u32, u32),
    ) -> Result<Grant, PimError> {
        tx.add_membership(g.user, g.group, g.started_at)?;
        tx.record_setgid_ids(g.user, g.group, uid, gid)?;
        let id = tx.insert_grant(g)?;
        Ok(Grant {
            id,
            user: g.user.into(),
            role: g.role.into(),
            group: g.group.into(),
            started_at: g.started_at,
            ends_at: g.ends_at,
            reason: g.reason.into(),
            ticket: g.ticket.into(),
            request_id: g.request_id,
            ended_at: None,
            end_reason: None,
        })
    }

    /// A grant's end, capped by the end of a time-bound assignment.
    pub(super) fn grant_end(now: i64, secs: u64, eligibility: Eligibility) -> i64 {
        let end = now.saturating_add(secs as i64);
        match eligibility {
            Eligibility::Assigned { until: Some(until) } => end.min(until),
            _ => end,
        }
    }

    /// Ends a grant: database first (with its audit record), then the membership.
    pub(super) fn end_grant(
        &mut self,
        grant: &Grant,
        audit: &Audit<'_>,
        end_reason: &str,
        detail: String,
    ) -> Result<(), PimError> {
        let now = self.now();
        let entry = audit.entry(now, Outcome::Success, detail);
        let grace = self.ending_grace(&grant.role);
        self.commit(|tx| {
            tx.end_grant(grant.id, now, end_reason)?;
            if let Some(grace) = grace {
                tx.add_ending(grant, grace)?;
            }
            Ok(tx.audit(entry)?)
        })?;
        self.event(
            EventKind::GrantEnded,
            &grant.user,
            &grant.role,
            grant.request_id.unwrap_or(0),
            grant.id,
            audit.actor,
            end_reason.into(),
        );
        let released = self.release_membership(&grant.user, &grant.group);
        self.alerts_after_change();
        released
    }

    /// Takes back a membership PIM added, unless a live grant still needs it.
    pub(super) fn release_membership(&mut self, user: &str, group: &str) -> Result<(), PimError> {
        let (managed, needed) = self.store.read(|tx| {
            let managed = tx.has_membership(user, group)?;
            let needed = tx.live_grants_of(user)?.iter().any(|g| g.group == group);
            Ok::<_, PimError>((managed, needed))
        })?;
        if !managed || needed {
            return Ok(());
        }
        let now = self.now();
        if let Some(role) = self.permanent_role_of(user, group)? {
            // Made permanent (by a reload) while PIM held the membership: it is theirs now.
            let audit = Audit::new(DAEMON, AuditAction::MembershipKeep).about(user, &role);
            let entry = audit.entry(
                now,
                Outcome::Success,
                format!(
                    "left in group {group}: {user} is now a permanent member of role {role}, \
                     so PIM no longer manages the membership"
                ),
            );
            return self.commit(|tx| {
                tx.remove_membership(user, group)?;
                Ok(tx.audit(entry)?)
            });
        }
        let audit = Audit::new(DAEMON, AuditAction::MembershipRemove).about(user, "");
        let listed = self.accounts.listed_in_group(user, group).map_err(|e| {
            // Not "not listed": the membership record stays, so reconciliation tries again.
            PimError::Internal(format!(
                "{e}; the membership of {user} stays until pimd can look again, at its next \
                 reconciliation"
            ))
        })?;
        if listed {
            if let Err(e) = self.accounts.remove_member(user, group) {
                // The membership record stays, so reconciliation tries again.
                let entry = audit.entry(now, Outcome::Error, e.to_string());
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                return Err(PimError::Internal(format!(
                    "{e}; pimd will retry at its next reconciliation"
                )));
            }
        }
        let entry = audit.entry(now, Outcome::Success, format!("removed from group {group}"));
        self.commit(|tx| {
            tx.remove_membership(user, group)?;
            Ok(tx.audit(entry)?)
        })
    }

    /// A role of `group` that lists `user` as `permanent`, if any. A lookup that fails is an
    /// error: PIM neither removes the membership nor lets go of it until it can tell.
    pub(super) fn permanent_role_of(
        &self,
        user: &str,
        group: &str,
    ) -> Result<Option<String>, PimError> {
        for role in self.config.roles.values().filter(|r| r.group == group) {
            let permanent = self.permanent(user, role).map_err(|e| {
                PimError::Internal(format!(
                    "cannot tell whether {user} is a permanent member of role {}: {}; the \
                     membership of group {group} stays until pimd can, at a later \
                     reconciliation",
                    role.name,
                    e.message()
                ))
            })?;
            if permanent {
                return Ok(Some(role.name.clone()));
            }
        }
        Ok(None)
    }
}
