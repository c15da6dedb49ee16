//! Assignments as governance has them: eligible and active assignments with their caps per
//! role, the notices before an assignment ends, and renewal.
//!
//! **Active assignments** (`pim admin assign --active`). An active assignment is a row of the
//! assignments (`active`) that, once its start has come, *materialises as a grant*: an
//! ordinary live grant (no request), ending at the assignment's end, whose id the assignment
//! keeps (`grant_id`; the grant is marked `by_assignment` too). So everything a grant has applies to it unchanged: the
//! membership is added and taken back by `grants`, expiry ends it on time, PAM's access check
//! covers the group while it is live (the per-group rule of `access` is untouched), `on_end`
//! and the warnings before the end apply, `pim status` and `pim admin grants` list it, and
//! it is audited like a grant (`grant-start` by its assigner, `expire`, ...). A start in the
//! future is the job [`StartActiveAssignments`], whose deadline is the next start. An active
//! assignment also makes its user eligible for the role within its window, so a user who
//! ended it early (`pim deactivate`) may activate the role under its own policy; it is not
//! materialised twice. An assignment without an end gets a grant ending at [`NO_END`].
//! Whatever removes or replaces an active assignment (unassign, a review, a new assignment),
//! its grant ends through lost eligibility (`lost_active_assignment`): a marked grant no
//! active assignment points to may not run, even for a user eligible another way, and PAM's
//! access check does not count it meanwhile (`policy::assignment_grant_holds`, one rule for
//! both). Only an active assignment that replaces the one a live grant belongs to, starting
//! at once, carries that grant on; a grant nothing points at is never taken over again.
//!
//! **Caps** (`max_eligible_assignment`, `max_active_assignment`) bound the length from the
//! assignment's start, or from now when it starts earlier, to its end; with a cap an
//! assignment without an end is refused (`check_cap`, pure).
//!
//! **Notices** go out 14 days and 1 day before an assignment ends (job [`AssignmentNotices`]):
//! an event (`assignment-ending`, for watchers and `notify_command`) and an audit record,
//! each once, as the assignment's `notices_sent` records (a notice whose time had passed when
//! the assignment was made or renewed is never sent: a 3-day assignment gets the 1-day one); `pim status` shows the caller a
//! line for each of their assignments within 14 days of its end.
//!
//! **Renewal** (`pim renew`) files a request of kind renewal (a row of the requests: same
//! ids, `pim approve`, `pim deny`, `pim cancel`, `pim show`, expiry after [`RENEWAL_TTL`]),
//! from 14 days before the assignment's end up to 30 days after it. Whoever may govern the
//! role (`may_govern`) decides it, one approval suffices, with MFA as for approvals; on
//! approval the assignment's end moves (the live grant of an active one with it, never to an
//! end earlier than its own: a taken-over activation keeps a later end), and a lapsed active
//! assignment is materialised again. An active assignment still running whose grant ended
//! early (`pim admin revoke`, `pim deactivate`) is not: the renewal moves its end and the
//! revoke stands (the user may activate under the role's policy meanwhile). Once it has lapsed,
//! approving its renewal is a fresh decision, and it starts again.
//!
//! A cap lowered by a reload moves the end of the assignment's live grant down to the
//! assignment's new end, even when that grant was the user's own activation taken over with a
//! later end: the cap bounds the group's holding through the assignment, and the grant cannot
//! tell the two ends apart (the user may activate again under the role's policy).

use super::*;
use crate::model::{Renewal, NOTICE_14D, NOTICE_1D};
use pim_common::types::{AssignmentInfo, RequestDetail, NO_END};

const DAY: i64 = 86_400;
/// Notices go out this long before an assignment ends, and renewal opens then.
pub const NOTICE_EARLY_SECS: i64 = 14 * DAY;
/// The last notice, this long before the end.
pub const NOTICE_LATE_SECS: i64 = DAY;
/// A lapsed assignment may be renewed for this long after its end.
pub const RENEW_AFTER_END_SECS: i64 = 30 * DAY;
/// An undecided renewal request lapses after this (owners may take days).
pub const RENEWAL_TTL: i64 = 7 * DAY;
/// A renewal without `--until`, of a role without a cap, asks for this much from now.
pub const DEFAULT_RENEWAL_SECS: i64 = 90 * DAY;

/// The cap of `role` for an assignment of that kind, and the key that sets it.
fn cap_of(role: &Role, active: bool) -> (Option<u64>, &'static str) {
    if active {
        (role.max_active_assignment_secs, "max_active_assignment")
    } else {
        (role.max_eligible_assignment_secs, "max_eligible_assignment")
    }
}

fn kind_name(active: bool) -> &'static str {
    if active {
        "active"
    } else {
        "eligible"
    }
}

/// Refuses an assignment window the role's cap does not allow: one without an end where
/// there is a cap, or one longer than it from its start (or from now, when that is later).
pub(super) fn check_cap(
    role: &Role,
    active: bool,
    not_before: Option<i64>,
    not_after: Option<i64>,
    now: i64,
) -> Result<(), PimError> {
    let (cap, key) = cap_of(role, active);
    let Some(cap) = cap else {
        return Ok(());
    };
    let kind = kind_name(active);
    let Some(end) = not_after else {
        return Err(PimError::InvalidArgument(format!(
            "role {} caps {kind} assignments at {} ({key}); give an end with --until",
            role.name,
            duration::format(cap)
        )));
    };
    let start = not_before.unwrap_or(now).max(now);
    let length = end.saturating_sub(start);
    if length > cap as i64 {
        return Err(PimError::InvalidArgument(format!(
            "an {kind} assignment of role {} may last at most {} ({key}); this one would last {}",
            role.name,
            duration::format(cap),
            duration::format(length as u64)
        )));
    }
    Ok(())
}

/// The end `a` must take to hold its role's cap as configured now (`role`, lowered since it
/// was made or renewed): its start, or now when that is later, plus the cap. `None` when it
/// holds it already, or is over.
pub(super) fn capped_end(role: &Role, a: &Assignment, now: i64) -> Option<i64> {
    let cap = i64::try_from(cap_of(role, a.active).0?).unwrap_or(i64::MAX);
    let limit = a.not_before.unwrap_or(now).max(now).saturating_add(cap);
    match a.not_after {
        Some(end) if end <= now || end <= limit => None,
        _ => Some(limit),
    }
}

/// Which notice is due for an assignment ending at `end`, given those sent: the bits to
/// record and the time left, or `None`.
pub(super) fn notice_due(end: i64, sent: u32, now: i64) -> Option<u32> {
    let left = end - now;
    if left <= 0 {
        return None;
    }
    if left <= NOTICE_LATE_SECS && sent & NOTICE_1D == 0 {
        // The late notice covers the early one when both are due at once.
        return Some(NOTICE_1D | NOTICE_14D);
    }
    if left <= NOTICE_EARLY_SECS && sent & NOTICE_14D == 0 {
        return Some(NOTICE_14D);
    }
    None
}

/// The notices an assignment made (or renewed) at `now` to end at `end` never gets: those
/// whose time had already passed then (a 10-day assignment gets the 1-day notice only).
pub(super) fn notices_passed(end: Option<i64>, now: i64) -> u32 {
    let Some(end) = end else {
        return 0;
    };
    let mut passed = 0;
    if end - now <= NOTICE_EARLY_SECS {
        passed |= NOTICE_14D;
    }
    if end - now <= NOTICE_LATE_SECS {
        passed |= NOTICE_1D;
    }
    passed
}

/// When the next notice of an assignment ending at `end` is due, if one is still to be sent.
pub(super) fn next_notice_at(end: i64, sent: u32) -> Option<i64> {
    if sent & NOTICE_14D == 0 {
        Some(end - NOTICE_EARLY_SECS)
    } else if sent & NOTICE_1D == 0 {
        Some(end - NOTICE_LATE_SECS)
    } else {
        None
    }
}

/// A deadline for work that was due at `t`: `t` while it is to come; once past (the work
/// failed and waits), a retry a minute from `now`, so that reconciliation does not spin.
fn deadline(t: i64, now: i64) -> i64 {
    if t > now {
        t
    } else {
        now + 60
    }
}

/// Whether a renewal of an assignment ending at `end` may be filed at `now`: from 14 days
/// before the end up to 30 days after it. The refusal names the window.
pub(super) fn check_renewal_window(role: &str, end: Option<i64>, now: i64) -> Result<(), PimError> {
    let Some(end) = end else {
        return Err(PimError::Conflict(format!(
            "your assignment to role {role} has no end; there is nothing to renew"
        )));
    };
    let opens = end.saturating_sub(NOTICE_EARLY_SECS);
    let closes = end.saturating_add(RENEW_AFTER_END_SECS);
    if now < opens || now > closes {
        return Err(PimError::Conflict(format!(
            "a renewal of role {role} may be asked from 14 days before the assignment's end up \
             to 30 days after it: from {} until {} (it ends {})",
            describe(opens, now),
            describe(closes, now),
            describe(end, now)
        )));
    }
    Ok(())
}

/// The text of a window, for audit records and answers.
fn window_text(not_before: Option<i64>, not_after: Option<i64>, now: i64) -> String {
    match (not_before, not_after) {
        (None, None) => "without time limit".to_string(),
        (None, Some(b)) => format!("until {}", describe(b, now)),
        (Some(a), None) => format!("from {}", describe(a, now)),
        (Some(a), Some(b)) => format!("from {} until {}", describe(a, now), describe(b, now)),
    }
}

/// A time from the bus (`0`: none): refused when negative or past [`NO_END`], so the
/// arithmetic on it cannot overflow. The refusal names the argument.
fn check_time(argument: &str, t: i64) -> Result<(), PimError> {
    if (0..=NO_END).contains(&t) {
        Ok(())
    } else {
        Err(PimError::InvalidArgument(format!(
            "{argument} must be a time between the epoch and the year 9999, not {t}"
        )))
    }
}

/// `0` (none) as `None`.
fn given(t: i64) -> Option<i64> {
    (t > 0).then_some(t)
}

impl Manager {
    /// `pim admin assign` (eligible) and `pim admin assign --active`: checks the caller
    /// governs the role, the names, the window and the role's cap; writes the assignment
    /// (replacing any earlier one of the user for the role); an active one whose start has
    /// come starts at once. Returns a warning (empty when none) about what could not be
    /// finished (reconciliation finishes it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn assign(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
        active: bool,
        reason: &str,
    ) -> Result<String, PimError> {
        let reason_text = text::for_record(reason, text::MAX_REASON_BYTES);
        let action = if active {
            AuditAction::AdminAssignActive
        } else {
            AuditAction::AdminAssign
        };
        let audit = Audit::new(&caller.name, action)
            .about(name_or_empty(user), name_or_empty(role))
            .with_text(&reason_text, "");
        self.require_governor(caller, role, &audit)?;
        let now = self.now();
        if user == caller.name && !self.is_admin(caller) {
            // An owner holding the role by their own word would skip its activation policy
            // (MFA, approval): another owner or an admin must assign them.
            return self.refused(
                &audit,
                PimError::PermissionDenied(format!(
                    "an owner cannot assign role '{}' to themselves; another owner or a pim \
                     administrator must",
                    text::escape(role)
                )),
            );
        }
        let checked = (|| {
            check_name("user", user)?;
            check_name("role", role)?;
            let Some(role) = self.config.role(role) else {
                return Err(PimError::NotFound(format!(
                    "there is no role {role} in the configuration"
                )));
            };
            if !self.accounts.user_exists(user) {
                return Err(PimError::NotFound(format!(
                    "there is no user {user} on this host"
                )));
            }
            check_time("not_before (--from)", not_before)?;
            check_time("not_after (--until)", not_after)?;
            if not_before > 0 && not_after > 0 && not_after <= not_before {
                return Err(PimError::InvalidArgument(
                    "the assignment's end must come after its start".into(),
                ));
            }
            if active && not_after > 0 && not_after <= now {
                return Err(PimError::InvalidArgument(
                    "the active assignment's end is already past; give a later --until".into(),
                ));
            }
            if active {
                text::check("the reason", reason, text::MAX_REASON_BYTES)
                    .map_err(PimError::InvalidArgument)?;
                if reason.trim().is_empty() {
                    return Err(PimError::InvalidArgument(
                        "an active assignment needs a reason; give one with -r".into(),
                    ));
                }
            }
            check_cap(role, active, given(not_before), given(not_after), now)
        })();
        if let Err(e) = checked {
            return self.refused(&audit, e);
        }
        // An active assignment that replaces one whose grant is live, and starts now, carries
        // that grant on with its own end: no membership flap. Only the grant the replaced
        // assignment points at: one no assignment points at (an unassign whose end of it did
        // not go through) is never revived.
        let carried = if active && given(not_before).is_none_or(|t| t <= now) {
            // Of the role's group as configured now: a grant of the group it had before a
            // reload is ended, not carried on.
            let group = self.config.role(role).map(|r| r.group.clone());
            self.store.read(|tx| {
                let replaced = tx.assignment(user, role)?;
                let live = tx.live_grant(user, role)?;
                Ok::<_, StoreError>(live.filter(|g| {
                    group.as_deref() == Some(g.group.as_str())
                        && replaced.is_some_and(|r| r.active && r.grant_id == Some(g.id))
                }))
            })?
        } else {
            None
        };
        let assignment = Assignment {
            user: user.into(),
            role: role.into(),
            not_before: given(not_before),
            not_after: given(not_after),
            active,
            reason: if active {
                reason.to_string()
            } else {
                String::new()
            },
            grant_id: carried.as_ref().map(|g| g.id),
            notices_sent: notices_passed(given(not_after), now),
            revision: 0,
        };
        let detail = format!(
            "{} {}",
            kind_name(active),
            window_text(assignment.not_before, assignment.not_after, now)
        );
        let entry = audit.entry(now, Outcome::Success, detail);
        let end = assignment.not_after.unwrap_or(NO_END);
        let carried_entry = carried.as_ref().map(|g| {
            Audit::new(&caller.name, AuditAction::GrantStart)
                .about(user, role)
                .with_text(reason, "")
                .entry(
                    now,
                    Outcome::Success,
                    format!(
                        "active assignment: live grant {} of the one it replaces carried on, \
                         ends {}",
                        g.id,
                        describe(end, now)
                    ),
                )
        });
        self.commit(|tx| {
            tx.put_assignment(&assignment, &caller.name, now)?;
            tx.audit(entry)?;
            if let (Some(grant), Some(entry)) = (&carried, carried_entry) {
                tx.set_grant_end(grant.id, end)?;
                tx.audit(entry)?;
            }
            Ok(())
        })?;
        let mut warnings = Vec::new();
        // The user's own live grant is taken over by a new active assignment; the grant of an
        // earlier active assignment, which no assignment points to now, ends (below, or
        // before the new one's grant starts).
        if active {
            if let Err(e) = self.start_active_assignments() {
                warnings.push(format!(
                    "the active assignment is recorded but its grant did not start: {}; pimd \
                     tries again at its next reconciliation",
                    e.message()
                ));
            }
        }
        // A new window replaces the old one: a grant the old one allowed may have lost it.
        let (_, warning) = self.end_grant_after_assignment_change(user, role, &caller.name, None);
        if !warning.is_empty() {
            warnings.push(warning);
        }
        self.alerts_after_change();
        Ok(warnings.join("; "))
    }

    /// Why `grant`, the grant of an active assignment, may no longer run: no active
    /// assignment points to it any more (removed by unassign or a review, replaced, turned
    /// into an eligible one). `None` for every other grant. Whatever removes an assignment,
    /// its grant ends through the common path of lost eligibility.
    pub(super) fn lost_active_assignment(
        &mut self,
        grant: &Grant,
    ) -> Result<Option<String>, PimError> {
        let (marked, assignment) = self.store.read(|tx| {
            Ok::<_, PimError>((
                tx.grant_by_assignment(grant.id)?,
                tx.assignment(&grant.user, &grant.role)?,
            ))
        })?;
        if policy::assignment_grant_holds(grant.id, marked, assignment.as_ref()) {
            return Ok(None);
        }
        Ok(Some(format!(
            "the active assignment of {} to role {} it stood for is gone",
            grant.user, grant.role
        )))
    }

    /// Materialises every active assignment whose start has come and that has no grant yet;
    /// tries them all, returns the first error.
    pub(super) fn start_active_assignments(&mut self) -> Result<(), PimError> {
        let now = self.now();
        let due: Vec<Assignment> = self
            .store
            .read(|tx| tx.assignments())?
            .into_iter()
            .filter(|a| {
                a.active
                    && a.grant_id.is_none()
                    && a.not_before.is_none_or(|t| t <= now)
                    && a.not_after.is_none_or(|t| t > now)
                    // A role removed from the configuration grants nothing (its assignment
                    // stays, in case the role comes back).
                    && self.config.role(&a.role).is_some()
            })
            .collect();
        let mut first_error = None;
        for a in due {
            if let Err(e) = self.start_active_assignment(&a) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The grant of one active assignment: the user's own live grant of the role (their
    /// activation) is taken over, its end moved to the assignment's when that is later;
    /// otherwise a new grant, added like any other. A live grant of an earlier assignment,
    /// which nothing points at any more, ends first: it is never revived. Refusals (the user
    /// holds the group outside PIM, the role is gone) are audited and the assignment waits
    /// for the next reconciliation.
    fn start_active_assignment(&mut self, a: &Assignment) -> Result<(), PimError> {
        let now = self.now();
        let end = a.not_after.unwrap_or(NO_END);
        let audit = Audit::new(DAEMON, AuditAction::GrantStart)
            .about(&a.user, &a.role)
            .with_text(&a.reason, "");
        let Some(role) = self.config.role(&a.role).cloned() else {
            return self.refused(
                &audit,
                PimError::NotFound(format!("role {} is no longer configured", a.role)),
            );
        };
        // A live grant of an earlier assignment, or of the group the role granted before a
        // reload, is never taken over: it ends (through lost eligibility) first.
        let live = match self.store.read(|tx| tx.live_grant(&a.user, &a.role))? {
            Some(old)
                if old.group != role.group
                    || self.store.read(|tx| tx.grant_by_assignment(old.id))? =>
            {
                let (ended, warning) =
                    self.end_grant_after_assignment_change(&a.user, &a.role, DAEMON, None);
                if ended.is_none() {
                    return Err(PimError::Internal(format!(
                        "grant {} of {} to role {} (of an earlier assignment, or of group {}) \
                         has not ended ({warning}); the new one's grant waits for it",
                        old.id, a.user, a.role, old.group
                    )));
                }
                None
            }
            own => own,
        };
        if let Some(grant) = live {
            // The user's own activation is not cut short.
            let ends_at = grant.ends_at.max(end);
            let entry = audit.entry(
                now,
                Outcome::Success,
                format!(
                    "active assignment: live grant {} taken over, ends {}",
                    grant.id,
                    describe(ends_at, now)
                ),
            );
            return self.commit(|tx| {
                tx.set_grant_end(grant.id, ends_at)?;
                tx.mark_grant_by_assignment(grant.id)?;
                tx.set_assignment_grant(&a.user, &a.role, grant.id)?;
                Ok(tx.audit(entry)?)
            });
        }
        if let Err(e) = self.check_unmanaged_membership(&a.user, &role) {
            return self.refused(&audit, e);
        }
        let ids = match self.ids_for_grant(&a.user, &role.group) {
            Ok(ids) => ids,
            Err(e) => return self.refused(&audit, e),
        };
        let detail = format!(
            "active assignment: group {} {}",
            role.group,
            window_text(None, a.not_after, now)
        );
        let entry = audit.entry(now, Outcome::Success, detail);
        let grant = self.commit(|tx| {
            let grant = Self::insert_grant(
                tx,
                &NewGrant {
                    user: &a.user,
                    role: &role.name,
                    group: &role.group,
                    started_at: now,
                    ends_at: end,
                    reason: &a.reason,
                    ticket: "",
                    request_id: None,
                },
                ids,
            )?;
            tx.mark_grant_by_assignment(grant.id)?;
            tx.set_assignment_grant(&a.user, &a.role, grant.id)?;
            tx.audit(entry)?;
            Ok(grant)
        })?;
        self.apply_grant(&grant)?;
        self.event(
            EventKind::GrantStarted,
            &a.user,
            &role.name,
            0,
            grant.id,
            DAEMON,
            "active assignment".into(),
        );
        Ok(())
    }

    /// Brings every assignment within its role's cap as configured now (a reload, or a start
    /// with a new configuration, may have lowered it): see [`Self::hold_to_cap`].
    pub(super) fn hold_assignments_to_caps(&mut self) -> Result<(), PimError> {
        let now = self.now();
        let config = self.config.clone();
        let over: Vec<(&Role, Assignment, i64)> = self
            .store
            .read(|tx| tx.assignments())?
            .into_iter()
            .filter_map(|a| {
                let role = config.role(&a.role)?;
                let end = capped_end(role, &a, now)?;
                Some((role, a, end))
            })
            .collect();
        let mut first_error = None;
        for (role, a, end) in over {
            if let Err(e) = self.hold_to_cap(role, &a, end) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Moves the end of `a`, longer than the cap of `role` allows now, to `end`: the live
    /// grant of an active one with it, audited in the same transaction. Its notices start
    /// again for the new end (the notice job sends the one due at once), and a renewal filed
    /// before is stale, as after any other change of the assignment.
    fn hold_to_cap(&mut self, role: &Role, a: &Assignment, end: i64) -> Result<(), PimError> {
        let now = self.now();
        let live = match a.grant_id.filter(|_| a.active) {
            Some(id) => self
                .store
                .read(|tx| tx.live_grant(&a.user, &a.role))?
                .filter(|g| g.id == id && g.ends_at > end),
            None => None,
        };
        let (cap, key) = cap_of(role, a.active);
        let was = a.not_after.map_or("had no end".to_string(), |t| {
            format!("was to end {}", describe(t, now))
        });
        let detail = format!(
            "the {} assignment of {} to role {} ends {} ({key} is now {}; it {was}){}",
            kind_name(a.active),
            a.user,
            a.role,
            describe(end, now),
            cap.map_or("permanent".to_string(), duration::format),
            live.as_ref()
                .map_or(String::new(), |g| format!("; grant {} ends with it", g.id))
        );
        let entry = Audit::new(DAEMON, AuditAction::AssignmentCapped)
            .about(&a.user, &a.role)
            .entry(now, Outcome::Success, detail);
        let capped = Assignment {
            not_after: Some(end),
            notices_sent: 0,
            ..a.clone()
        };
        self.commit(|tx| {
            tx.put_assignment(&capped, DAEMON, now)?;
            if let Some(grant) = &live {
                tx.set_grant_end(grant.id, end)?;
            }
            Ok(tx.audit(entry)?)
        })
    }

    /// Sends the notices that are due (14 days and 1 day before an assignment's end), each
    /// once: the record of it sent and its audit row in one transaction, then the event.
    pub(super) fn send_assignment_notices(&mut self) -> Result<(), PimError> {
        let now = self.now();
        let due: Vec<(Assignment, u32)> = self
            .store
            .read(|tx| tx.assignments())?
            .into_iter()
            .filter_map(|a| {
                let end = a.not_after?;
                notice_due(end, a.notices_sent, now).map(|bits| (a, bits))
            })
            .collect();
        for (a, bits) in due {
            let end = a.not_after.unwrap_or_default();
            let detail = format!(
                "the {} assignment of {} to role {} ends {}; 'pim renew {}' asks for more",
                kind_name(a.active),
                a.user,
                a.role,
                describe(end, now),
                a.role
            );
            let entry = Audit::new(DAEMON, AuditAction::AssignmentNotice)
                .about(&a.user, &a.role)
                .entry(now, Outcome::Success, detail.clone());
            self.commit(|tx| {
                tx.set_assignment_notices(&a.user, &a.role, a.notices_sent | bits)?;
                Ok(tx.audit(entry)?)
            })?;
            self.event(
                EventKind::AssignmentEnding,
                &a.user,
                &a.role,
                0,
                0,
                DAEMON,
                detail,
            );
        }
        Ok(())
    }

    /// The next notice due, over every assignment with an end still to come.
    fn next_notice(&mut self, now: i64) -> Result<Option<i64>, PimError> {
        Ok(self
            .store
            .read(|tx| tx.assignments())?
            .into_iter()
            .filter_map(|a| {
                let end = a.not_after.filter(|end| *end > now)?;
                next_notice_at(end, a.notices_sent).map(|t| deadline(t, now))
            })
            .min())
    }

    /// The next start of an active assignment not yet materialised.
    fn next_active_start(&mut self, now: i64) -> Result<Option<i64>, PimError> {
        Ok(self
            .store
            .read(|tx| tx.assignments())?
            .into_iter()
            .filter(|a| {
                a.active
                    && a.grant_id.is_none()
                    && a.not_after.is_none_or(|t| t > now)
                    && self.config.role(&a.role).is_some()
            })
            .map(|a| deadline(a.not_before.unwrap_or(now), now))
            .min())
    }

    /// The caller's assignments, each with the line `pim status` shows within 14 days of its
    /// end (empty otherwise).
    pub fn my_assignments(&mut self, caller: &Caller) -> Result<Vec<AssignmentInfo>, PimError> {
        let now = self.now();
        let mine = self.store.read(|tx| tx.assignments())?;
        Ok(mine
            .into_iter()
            .filter(|a| a.user == caller.name)
            .map(|a| {
                let notice = match a.not_after {
                    Some(end) if end > now && end - now <= NOTICE_EARLY_SECS => format!(
                        "your {} assignment to role {} ends {}; 'pim renew {} -r REASON' asks \
                         for more",
                        kind_name(a.active),
                        a.role,
                        describe(end, now),
                        a.role
                    ),
                    Some(end) if end <= now && now - end <= RENEW_AFTER_END_SECS => format!(
                        "your {} assignment to role {} ended {}; 'pim renew {} -r REASON' may \
                         still renew it",
                        kind_name(a.active),
                        a.role,
                        describe(end, now),
                        a.role
                    ),
                    _ => String::new(),
                };
                AssignmentInfo {
                    user: a.user,
                    role: a.role,
                    active: a.active,
                    not_before: a.not_before.unwrap_or(0),
                    not_after: a.not_after.unwrap_or(0),
                    reason: a.reason,
                    notice,
                }
            })
            .collect())
    }

    /// `pim renew ROLE [--until T] -r REASON`: files a renewal request of the caller's
    /// assignment to `role_name` (see the module's doc).
    pub fn renew(
        &mut self,
        caller: &Caller,
        role_name: &str,
        until: i64,
        reason: &str,
    ) -> Result<RequestDetail, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::RenewRequest,
                fleet::NotInFleet::Renewals,
            );
        }
        let reason_text = text::for_record(reason, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, AuditAction::RenewRequest)
            .about(&caller.name, name_or_empty(role_name))
            .with_text(&reason_text, "");
        let now = self.now();
        let checked = (|| {
            check_name("role", role_name)?;
            check_time("until (--until)", until)?;
            // The same answer for "no such role" and "no assignment": roles cannot be probed.
            let nothing_to_renew = || {
                PimError::NotEligible(format!(
                    "you have no assignment to a role named '{}' to renew; 'pim roles' lists \
                     yours",
                    text::escape(role_name)
                ))
            };
            let role = self
                .config
                .role(role_name)
                .cloned()
                .ok_or_else(nothing_to_renew)?;
            let assignment = self
                .store
                .read(|tx| tx.assignment(&caller.name, role_name))?
                .ok_or_else(nothing_to_renew)?;
            text::check("the reason", reason, text::MAX_REASON_BYTES)
                .map_err(PimError::InvalidArgument)?;
            if reason.trim().is_empty() {
                return Err(PimError::InvalidArgument(
                    "a renewal needs a reason; give one with -r".into(),
                ));
            }
            check_renewal_window(role_name, assignment.not_after, now)?;
            let end = assignment.not_after.unwrap_or(now);
            let until = match given(until) {
                Some(t) => Some(t),
                None => Some(
                    now.saturating_add(
                        cap_of(&role, assignment.active)
                            .0
                            .map_or(DEFAULT_RENEWAL_SECS, |c| c as i64),
                    ),
                ),
            };
            if until.is_some_and(|t| t <= end.max(now)) {
                return Err(PimError::InvalidArgument(format!(
                    "--until must be after the assignment's end ({}) and after now",
                    describe(end, now)
                )));
            }
            check_cap(&role, assignment.active, Some(now), until, now)?;
            let renewal = Renewal {
                until,
                revision: assignment.revision,
            };
            if let Some(open) = self
                .store
                .read(|tx| tx.pending_renewal(&caller.name, role_name))?
            {
                return Err(PimError::Conflict(format!(
                    "you already asked for a renewal of role {role_name}: request {}; 'pim \
                     cancel {}' withdraws it",
                    open.id, open.id
                )));
            }
            Ok((role, renewal))
        })();
        let (role, renewal) = match checked {
            Ok(v) => v,
            Err(e) => return self.refused(&audit, e),
        };
        let request = Request {
            id: 0,
            user: caller.name.clone(),
            role: role.name.clone(),
            group: role.group.clone(),
            duration_secs: 0,
            reason: reason.to_string(),
            ticket: String::new(),
            created_at: now,
            expires_at: now + RENEWAL_TTL,
            approvals_required: 1,
            state: RequestState::Pending,
        };
        let detail = format!(
            "renewal requested until {}",
            renewal.until.map_or("no end".into(), |t| describe(t, now))
        );
        let id = self.commit(|tx| {
            let id = tx.insert_renewal(&request, &renewal)?;
            tx.audit(audit.entry(now, Outcome::Success, format!("request {id}: {detail}")))?;
            Ok(id)
        })?;
        self.event(
            EventKind::RequestFiled,
            &caller.name,
            &role.name,
            id,
            0,
            &caller.name,
            "renewal".into(),
        );
        let request = Request { id, ..request };
        Ok(self.request_detail(&request, Some(&renewal), Vec::new()))
    }

    /// Whether `caller` may decide `request`: for a renewal, whoever governs its role; for an
    /// activation, its role's approvers. Never its requester.
    pub(super) fn may_decide(&self, caller: &Caller, request: &Request, renewal: bool) -> bool {
        if request.user == caller.name {
            return false;
        }
        if renewal {
            self.may_govern(caller, &request.role)
        } else {
            self.approves(&caller.name, &request.role)
        }
    }

    /// Approves renewal `request` (decided by `caller`, who may govern its role): one
    /// approval moves the assignment's end; MFA as for approvals. A stale renewal's refusal
    /// comes inside `Ok`: it is audited already, with its end.
    pub(super) fn approve_renewal(
        &mut self,
        caller: &Caller,
        request: Request,
        renewal: Renewal,
        comment: &str,
        code: &str,
    ) -> Result<Result<RequestInfo, PimError>, PimError> {
        let id = request.id;
        let now = self.now();
        let approver = caller.name.as_str();
        let assignment = self
            .store
            .read(|tx| tx.assignment(&request.user, &request.role))?;
        let audit = Audit::new(approver, AuditAction::RenewApprove)
            .about(&request.user, &request.role)
            .with_text(comment, "");
        let assignment = match assignment {
            Some(a) if a.revision == renewal.revision => a,
            // Unassigned (or removed by a review) since: nothing to renew.
            None => {
                return self.end_stale_renewal(
                    &audit,
                    &request,
                    "the assignment is gone; nothing to renew",
                )
            }
            // Changed since (re-assigned, its end moved, unassigned and assigned again): the
            // request asked about terms that no longer hold, and would overwrite the change.
            Some(a) => {
                let why = format!(
                    "the assignment was changed after the renewal was filed (it is now {} {}); \
                     nothing was renewed, and {} may ask again with 'pim renew {}'",
                    kind_name(a.active),
                    window_text(a.not_before, a.not_after, now),
                    request.user,
                    request.role
                );
                return self.end_stale_renewal(&audit, &request, &why);
            }
        };
        // The cap as configured now (a reload may have lowered it since the request).
        if let Some(role) = self.config.role(&request.role) {
            check_cap(role, assignment.active, Some(now), renewal.until, now)
                .map_err(|e| PimError::Conflict(format!("request {id}: {}", e.message())))?;
        }
        let old_end = assignment.not_after;
        let live_grant = match assignment.grant_id.filter(|_| assignment.active) {
            Some(gid) => self
                .store
                .read(|tx| tx.live_grants())?
                .into_iter()
                .find(|g| g.id == gid),
            None => None,
        };
        // A lapsed active assignment starts again: a grant of its own, at once. One still
        // running whose grant ended early (revoked by an owner or admin, or ended by its user)
        // keeps that end: the renewal moves the assignment's end, it does not undo a revoke.
        let lapsed = old_end.is_some_and(|t| t <= now);
        let renewed = Assignment {
            not_after: renewal.until,
            notices_sent: notices_passed(renewal.until, now),
            grant_id: if assignment.active && live_grant.is_none() && lapsed {
                None
            } else {
                assignment.grant_id
            },
            ..assignment.clone()
        };
        let detail_until = renewal
            .until
            .map_or("no end".to_string(), |t| describe(t, now));
        let was = match old_end {
            None => "had no end".to_string(),
            Some(t) if t <= now => format!("lapsed {}", describe(t, now)),
            Some(t) => format!("was to end {}", describe(t, now)),
        };
        self.with_mfa(approver, code, true, |tx, proof| {
            tx.add_approval(id, approver, now, comment)?;
            tx.decide_request(id, RequestState::Approved, now, approver, comment)?;
            tx.put_assignment(&renewed, approver, now)?;
            if let Some(grant) = &live_grant {
                // Never shorter: a grant that ends later than the assignment did is the user's
                // own activation, taken over, and keeps its end.
                tx.set_grant_end(grant.id, renewal.until.unwrap_or(NO_END).max(grant.ends_at))?;
            }
            Ok(tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "request {id}: {} assignment renewed until {detail_until} (it {was}); {}",
                    kind_name(assignment.active),
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
            format!("renewal until {detail_until}"),
        );
        if renewed.active && renewed.grant_id.is_none() {
            // Reconciliation tries again if this does not go through.
            let _ = self.start_active_assignments();
        }
        Ok(Ok(request_info(
            &Request {
                state: RequestState::Approved,
                ..request
            },
            vec![approver.to_string()],
        )))
    }

    /// Ends renewal `request` as stale, `why`: denied by pimd, audited (as `audit`, refused)
    /// in the same transaction, and the approver told (the refusal inside `Ok`: audited).
    fn end_stale_renewal<T>(
        &mut self,
        audit: &Audit<'_>,
        request: &Request,
        why: &str,
    ) -> Result<Result<T, PimError>, PimError> {
        let (id, now) = (request.id, self.now());
        let why = format!("stale: {why}");
        let entry = audit.entry(now, Outcome::Refused, format!("request {id}: {why}"));
        self.commit(|tx| {
            tx.decide_request(id, RequestState::Denied, now, DAEMON, &why)?;
            Ok(tx.audit(entry)?)
        })?;
        self.event(
            EventKind::RequestDenied,
            &request.user,
            &request.role,
            id,
            0,
            DAEMON,
            why.clone(),
        );
        Ok(Err(PimError::Conflict(format!("request {id} is {why}"))))
    }

    /// Who decides `request`, as the configuration names them: the role's approvers for an
    /// activation; its owners and the administrators for a renewal.
    fn deciders(&self, request: &Request, renewal: bool) -> Vec<String> {
        let Some(role) = self.config.role(&request.role) else {
            return Vec::new();
        };
        let mut names: Vec<String> = if renewal {
            role.owners
                .iter()
                .chain(self.config.daemon.admins.iter())
                .map(|p| p.to_string())
                .collect()
        } else {
            role.approvers.iter().map(|p| p.to_string()).collect()
        };
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        if renewal {
            names.push("root".into());
        }
        names
    }

    pub(super) fn request_detail(
        &self,
        r: &Request,
        renewal: Option<&Renewal>,
        approved_by: Vec<String>,
    ) -> RequestDetail {
        RequestDetail {
            id: r.id,
            kind: if renewal.is_some() {
                "renewal"
            } else {
                "activation"
            }
            .into(),
            user: r.user.clone(),
            role: r.role.clone(),
            group: r.group.clone(),
            state: r.state.as_str().into(),
            duration_secs: r.duration_secs,
            renew_until: renewal.and_then(|x| x.until).unwrap_or(0),
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            approvals_required: if renewal.is_some() {
                1
            } else {
                self.config
                    .role(&r.role)
                    .map_or(r.approvals_required, |role| role.approvals_required)
            },
            approved_by,
            deciders: self.deciders(r, renewal.is_some()),
        }
    }

    /// `pim show ID` (and `pim wait ID`, which asks until it is decided): request `id` in
    /// full, for whoever may see it: its requester, whoever may decide it, administrators and
    /// auditors. Anyone else gets the answer a request that does not exist gets.
    pub fn show_request(&mut self, caller: &Caller, id: i64) -> Result<RequestDetail, PimError> {
        if self.in_fleet() {
            return self.fleet_show_request(caller, id).inline(self);
        }
        let found = self.store.read(|tx| {
            let Some(r) = tx.request(id)? else {
                return Ok::<_, PimError>(None);
            };
            let renewal = tx.renewal(id)?;
            let approved = tx.approvers_of(id)?;
            Ok(Some((r, renewal, approved)))
        })?;
        let visible = found.filter(|(r, renewal, _)| {
            r.user == caller.name
                || self.is_auditor(caller)
                || self.may_decide(caller, r, renewal.is_some())
        });
        match visible {
            Some((r, renewal, approved)) => Ok(self.request_detail(&r, renewal.as_ref(), approved)),
            None => {
                let audit =
                    Audit::new(&caller.name, AuditAction::ShowRequest).about(&caller.name, "");
                self.refused_about(
                    &audit,
                    &format!("request {id}"),
                    PimError::NotFound(format!(
                        "there is no request {id} that you may see; 'pim status' lists yours \
                         and 'pim requests' those you may decide"
                    )),
                )
            }
        }
    }
}

/// Starts the active assignments whose start has come (their deadline: the next start).
pub(super) struct StartActiveAssignments;

impl reconcile::Job for StartActiveAssignments {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        m.start_active_assignments()
    }

    fn next_deadline(&self, m: &mut Manager, now: i64) -> Result<Option<i64>, PimError> {
        m.next_active_start(now)
    }
}

/// Brings assignments within their role's cap when the configuration lowered it. It has no
/// deadline: a cap changes only with the configuration, and reconciliation runs at once
/// after a reload and at start.
pub(super) struct HoldAssignmentsToCaps;

impl reconcile::Job for HoldAssignmentsToCaps {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        m.hold_assignments_to_caps()
    }
}

/// Sends the notices 14 days and 1 day before an assignment ends.
pub(super) struct AssignmentNotices;

impl reconcile::Job for AssignmentNotices {
    fn run(&self, m: &mut Manager, _now: i64) -> Result<(), PimError> {
        m.send_assignment_notices()
    }

    fn next_deadline(&self, m: &mut Manager, now: i64) -> Result<Option<i64>, PimError> {
        m.next_notice(now)
    }
}

#[cfg(test)]
mod tests;
