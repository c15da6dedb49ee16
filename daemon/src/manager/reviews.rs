//! Access reviews: recurring (a role's `review_every`) and one-off (`pim admin review start`).
//! A review lists, as its items, every user whose access to the role stood when it started:
//! standing `eligible` entries (a `%group` expanded to its members) and assignments. Each item
//! carries a recommendation from use (the grants table). Reviewers decide items with
//! `pim review keep|remove`; at the review's end (the `CompleteReviews` job) every item gets its
//! decision, or the review's default, applied in one transaction with its audit records: a
//! removed assignment is deleted, a removed standing entry suspended (so the configuration's
//! entry no longer makes the user eligible, for activation, for the PAM check and for a grant
//! that stands on it) until `pim admin reinstate`; then the grants that stood on what was
//! removed end, unless their user is still eligible another way.
//!
//! Decisions: the last reviewer's decision on an item wins while the review is open (each one
//! is in the audit; the review's record keeps the last, with who, when and the comment).
//! Nobody decides their own item unless the review's reviewers include `self`. A caller who may
//! decide no item of a review gets, for that review, the answer a review that does not exist
//! gets.

use super::*;
use crate::model::{Assignment, Review, ReviewDecision, ReviewItem};
use pim_common::types::{DecidedRole, ReviewInfo, ReviewItemInfo};
use pim_config::{ReviewDefault, Reviewer};
use std::collections::BTreeSet;

/// An item whose user has not activated the role for this long is recommended for removal.
pub const UNUSED_SECS: i64 = 30 * 86_400;

/// The longest review one may start by hand (the shortest is `[daemon] min_review_duration`).
const MAX_REVIEW_SECS: u64 = 365 * 86_400;

/// Refuses a one-off review's `--duration` (0: the role's `review_duration`, which the
/// configuration sets) shorter than `min` (`[daemon] min_review_duration`) or longer than a
/// year: a review that ends before anyone could look would apply its default (by default,
/// removal) to everyone.
pub(super) fn check_review_duration(duration_secs: u64, min: u64) -> Result<(), PimError> {
    if duration_secs > MAX_REVIEW_SECS {
        return Err(PimError::InvalidArgument(format!(
            "a review lasts at most {}; this one would last {}: ask for less with --duration",
            duration::format(MAX_REVIEW_SECS),
            duration::format(duration_secs)
        )));
    }
    if duration_secs != 0 && duration_secs < min {
        return Err(PimError::InvalidArgument(format!(
            "a review lasts at least {} ([daemon] min_review_duration), so that reviewers can \
             decide before its default applies; this one would last {}: ask for more with \
             --duration",
            duration::format(min),
            duration::format(duration_secs)
        )));
    }
    Ok(())
}

/// The answer for a review the caller may not see, word for word the one for a review that
/// does not exist.
fn no_such_review() -> PimError {
    PimError::NotFound(
        "there is no such review with items you may decide; 'pim reviews' lists yours".into(),
    )
}

fn no_such_record() -> PimError {
    PimError::NotFound(
        "there is no such review that you may read; auditors, admins and the role's owners may"
            .into(),
    )
}

/// The item `user` of a review the caller may decide does not name, or names but not for them.
fn no_such_item(id: i64, user: &str) -> PimError {
    PimError::NotFound(format!(
        "review {id} has no item for {} that you may decide; 'pim reviews' lists yours",
        text::escape(user)
    ))
}

/// The recommendation for a user whose last grant of the role started at `last` (if ever),
/// with `live` when one runs now.
pub(super) fn recommend(last: Option<i64>, live: bool, now: i64) -> (ReviewDecision, String) {
    if live {
        return (ReviewDecision::Keep, "holds a live grant".into());
    }
    match last {
        Some(at) if now - at < UNUSED_SECS => (
            ReviewDecision::Keep,
            format!("last activated {}", describe(at, now)),
        ),
        Some(at) => (
            ReviewDecision::Remove,
            format!("no activation in 30 days (last {})", describe(at, now)),
        ),
        None => (ReviewDecision::Remove, "never activated".into()),
    }
}

/// What an undecided item gets under `default`.
pub(super) fn default_for(default: ReviewDefault, item: &ReviewItem) -> ReviewDecision {
    match default {
        ReviewDefault::Remove => ReviewDecision::Remove,
        ReviewDefault::Keep => ReviewDecision::Keep,
        ReviewDefault::Recommendation => item.recommendation,
    }
}

fn item_info(i: &ReviewItem) -> ReviewItemInfo {
    let access: Vec<&str> = [
        ("standing", i.standing),
        ("assignment", i.assigned && !i.active),
        ("active assignment", i.active),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name)
    .collect();
    ReviewItemInfo {
        user: i.user.clone(),
        access: access.join(","),
        recommendation: i.recommendation.as_str().into(),
        recommendation_why: i.recommendation_why.clone(),
        decision: i
            .decision
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
        decided_by: i.decided_by.clone().unwrap_or_default(),
        decided_at: i.decided_at.unwrap_or(0),
        comment: i.comment.clone(),
        result: i.result.clone().unwrap_or_default(),
    }
}

fn review_info(r: &Review, items: Vec<ReviewItemInfo>) -> ReviewInfo {
    ReviewInfo {
        id: r.id,
        role: r.role.clone(),
        started_at: r.started_at,
        ends_at: r.ends_at,
        reviewers: r.reviewers.clone(),
        default_decision: r.default_decision.clone(),
        recurring: r.recurring,
        started_by: r.started_by.clone(),
        completed_at: r.completed_at.unwrap_or(0),
        items,
    }
}

/// The summary's note of items decided for removal whose assignment changed (or went) since
/// the review started, so that nothing was removed.
fn unchanged_note(left: usize) -> String {
    match left {
        0 => String::new(),
        n => format!(" ({n} to remove left: changed since the review started)"),
    }
}

fn parse_default(text: &str) -> ReviewDefault {
    // Written by pimd from the configuration's own values; anything else is the safe default
    // of the key, which the configuration documents.
    ReviewDefault::parse(text).unwrap_or_default()
}

impl Manager {
    /// Whether `caller` may decide `item_user`'s item of `review`: their own only when the
    /// reviewers include `self`; anyone else's when another entry names them ("owners" for
    /// the role's owners as configured now, "admins", a user, a `%group`).
    pub(super) fn may_review(&self, caller: &Caller, review: &Review, item_user: &str) -> bool {
        let reviewers: Vec<Reviewer> = review
            .reviewers
            .iter()
            .filter_map(|r| Reviewer::parse(r).ok())
            .collect();
        if item_user == caller.name {
            return reviewers.contains(&Reviewer::Oneself);
        }
        reviewers.iter().any(|r| match r {
            Reviewer::Oneself => false,
            Reviewer::Owners => self.owns(&caller.name, &review.role),
            Reviewer::Admins => self.is_admin(caller),
            Reviewer::Principal(p) => self
                .listed(std::slice::from_ref(p), &caller.name)
                .unwrap_or(false),
        })
    }

    /// The users whose access to `role` a review starting now covers, with how they hold it
    /// (standing, assigned) and the recommendation from use. A `%group` lookup that fails is
    /// an error: a review must not leave anyone out.
    fn review_items_now(&mut self, role: &Role) -> Result<Vec<ReviewItem>, PimError> {
        let now = self.now();
        let assignments: Vec<Assignment> = self
            .store
            .read(|tx| tx.assignments())?
            .into_iter()
            .filter(|a| a.role == role.name)
            .collect();
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        for p in &role.eligible {
            match p {
                Principal::User(u) => {
                    candidates.insert(u.clone());
                }
                Principal::Group(g) => {
                    let members = self
                        .accounts
                        .group_members(g)
                        .map_err(|e| PimError::Internal(e.to_string()))?;
                    candidates.extend(members);
                }
            }
        }
        candidates.extend(assignments.iter().map(|a| a.user.clone()));
        // Users whose primary group is an eligible %group are not listed as its members; those
        // who ever held the role are found from their grants.
        let live = self.store.read(|tx| tx.live_grants())?;
        candidates.extend(
            live.iter()
                .filter(|g| g.role == role.name)
                .map(|g| g.user.clone()),
        );
        let mut items = Vec::new();
        for user in candidates {
            if self.permanent(&user, role)? {
                continue;
            }
            let (suspended, last, holds) = self.store.read(|tx| {
                Ok::<_, StoreError>((
                    tx.suspended(&user, &role.name)?,
                    tx.last_grant_start(&user, &role.name)?,
                    tx.live_grant(&user, &role.name)?.is_some(),
                ))
            })?;
            let standing = !suspended && self.listed(&role.eligible, &user)?;
            let assignment = assignments
                .iter()
                .find(|a| a.user == user && a.not_after.is_none_or(|end| end > now));
            let assigned = assignment.is_some();
            let active = assignment.is_some_and(|a| a.active);
            let revision = assignment.map(|a| a.revision);
            if !standing && !assigned {
                continue;
            }
            let (recommendation, why) = recommend(last, holds, now);
            items.push(ReviewItem {
                review_id: 0,
                user,
                standing,
                assigned,
                active,
                revision,
                recommendation,
                recommendation_why: why,
                decision: None,
                decided_by: None,
                decided_at: None,
                comment: String::new(),
                result: None,
            });
        }
        Ok(items)
    }

    /// Starts a review of `role` (its items as they stand now), audited as `audit`.
    fn start_review(
        &mut self,
        role: &Role,
        review: Review,
        audit: &Audit<'_>,
    ) -> Result<ReviewInfo, PimError> {
        let items = self.review_items_now(role)?;
        let now = self.now();
        let count = items.len();
        let detail =
            |id: i64| {
                format!(
                "review {id} of role {} started ({}): {count} item(s), reviewers {}, default {}, \
                 ends {}",
                role.name,
                if review.recurring { "recurring" } else { "one-off" },
                review.reviewers.join(","),
                review.default_decision,
                describe(review.ends_at, now)
            )
            };
        let (id, items) = self.commit(|tx| {
            let id = tx.insert_review(&review)?;
            let mut written = Vec::new();
            for item in items {
                let item = ReviewItem {
                    review_id: id,
                    ..item
                };
                tx.insert_review_item(&item)?;
                written.push(item);
            }
            tx.audit(audit.entry(now, Outcome::Success, detail(id)))?;
            Ok((id, written))
        })?;
        self.event(
            EventKind::ReviewStarted,
            "",
            &role.name,
            0,
            0,
            audit.actor,
            format!("review {id} of role {}", role.name),
        );
        let review = Review { id, ..review };
        Ok(review_info(&review, items.iter().map(item_info).collect()))
    }

    /// `pim admin review start ROLE [--duration D] [--reviewers ...]`: administrators and the
    /// role's owners. `duration_secs` 0 and empty `reviewers` take the role's own.
    pub fn admin_review_start(
        &mut self,
        caller: &Caller,
        role_name: &str,
        duration_secs: u64,
        reviewers: &[String],
    ) -> Result<ReviewInfo, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(caller, AuditAction::ReviewStart, fleet::NotInFleet::Reviews);
        }
        let audit =
            Audit::new(&caller.name, AuditAction::ReviewStart).about("", name_or_empty(role_name));
        if let Err(e) = check_name("role", role_name) {
            return self.refused(&audit, e);
        }
        self.require_governor(caller, role_name, &audit)?;
        let checked = (|| {
            let role = self.config.role(role_name).cloned().ok_or_else(|| {
                PimError::NotFound(format!("there is no role {role_name} in the configuration"))
            })?;
            check_review_duration(duration_secs, self.config.daemon.min_review_duration_secs)?;
            let parsed = reviewers
                .iter()
                .map(|r| Reviewer::parse(r).map_err(PimError::InvalidArgument))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((role, parsed))
        })();
        let (role, parsed) = match checked {
            Ok(ok) => ok,
            Err(e) => return self.refused(&audit, e),
        };
        let parsed = if parsed.is_empty() {
            role.reviewers.clone()
        } else {
            parsed
        };
        let length = if duration_secs == 0 {
            self.role_review_secs(&role)
        } else {
            duration_secs
        };
        let now = self.now();
        let review = Review {
            id: 0,
            role: role.name.clone(),
            started_at: now,
            ends_at: now + length as i64,
            reviewers: parsed.iter().map(Reviewer::text).collect(),
            default_decision: role.review_default.as_str().into(),
            recurring: false,
            started_by: caller.name.clone(),
            completed_at: None,
        };
        match self.start_review(&role, review, &audit) {
            Ok(info) => Ok(info),
            Err(e) => self.refused(&audit, e),
        }
    }

    /// `pim reviews`: the open reviews in which the caller may decide an item, with those items.
    pub fn list_reviews(&mut self, caller: &Caller) -> Result<Vec<ReviewInfo>, PimError> {
        let now = self.now();
        let open = self.store.read(|tx| {
            let mut out = Vec::new();
            for r in tx.open_reviews()? {
                let items = tx.review_items(r.id)?;
                out.push((r, items));
            }
            Ok::<_, StoreError>(out)
        })?;
        Ok(open
            .into_iter()
            .filter(|(r, _)| r.ends_at > now)
            .filter_map(|(r, items)| {
                let mine: Vec<ReviewItemInfo> = items
                    .iter()
                    .filter(|i| self.may_review(caller, &r, &i.user))
                    .map(item_info)
                    .collect();
                (!mine.is_empty()).then(|| review_info(&r, mine))
            })
            .collect())
    }

    /// `pim review keep|remove REVIEW USER`: one reviewer's decision on one item, with MFA as
    /// for approvals. The last decision before the end wins.
    pub fn review_decide(
        &mut self,
        caller: &Caller,
        id: i64,
        user: &str,
        decision: &str,
        comment: &str,
        code: &str,
    ) -> Result<ReviewItemInfo, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::ReviewDecide,
                fleet::NotInFleet::Reviews,
            );
        }
        let result = self.try_review_decide(caller, id, user, decision, comment, code);
        let err = match result {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        // The record names the item's user and role only for a caller who may see the review:
        // others read their own records, and must not learn from them what a review id is.
        let review = self.store.read(|tx| tx.review(id)).ok().flatten();
        let visible = review.filter(|r| self.may_see_review(caller, r));
        let (about, role) = visible
            .map(|r| (name_or_empty(user).to_string(), r.role))
            .unwrap_or_default();
        let comment_text = text::for_record(comment, text::MAX_REASON_BYTES);
        let audit = Audit::new(&caller.name, AuditAction::ReviewDecide)
            .about(&about, &role)
            .with_text(&comment_text, "");
        self.refused_about(&audit, &format!("review {id}"), err)
    }

    /// Whether `caller` may decide any item of `review` (and so may know it exists).
    fn may_see_review(&mut self, caller: &Caller, review: &Review) -> bool {
        let items = self
            .store
            .read(|tx| tx.review_items(review.id))
            .unwrap_or_default();
        items
            .iter()
            .any(|i| self.may_review(caller, review, &i.user))
    }

    fn try_review_decide(
        &mut self,
        caller: &Caller,
        id: i64,
        user: &str,
        decision: &str,
        comment: &str,
        code: &str,
    ) -> Result<ReviewItemInfo, PimError> {
        let decision = ReviewDecision::parse(decision).ok_or_else(|| {
            PimError::InvalidArgument(format!(
                "'{}' is not a decision: keep or remove",
                text::escape(decision)
            ))
        })?;
        policy::check_comment(comment)?;
        let (review, items) = self
            .store
            .read(|tx| Ok::<_, StoreError>((tx.review(id)?, tx.review_items(id)?)))?;
        let review = review.ok_or_else(no_such_review)?;
        if !items
            .iter()
            .any(|i| self.may_review(caller, &review, &i.user))
        {
            return Err(no_such_review());
        }
        let item = items.iter().find(|i| i.user == user);
        if item.is_some() && user == caller.name && !self.may_review(caller, &review, user) {
            return Err(PimError::PermissionDenied(
                "you cannot review your own access to this role; another reviewer must".into(),
            ));
        }
        let item = match item {
            Some(item) if self.may_review(caller, &review, user) => item.clone(),
            _ => return Err(no_such_item(id, user)),
        };
        let now = self.now();
        if review.completed_at.is_some() || review.ends_at <= now {
            return Err(PimError::Conflict(format!(
                "review {id} has ended; 'pim admin review show {id}' has its results"
            )));
        }
        let reviewer = caller.name.as_str();
        let audit = Audit::new(reviewer, AuditAction::ReviewDecide)
            .about(&item.user, &review.role)
            .with_text(comment, "");
        let replaced = match (&item.decision, &item.decided_by) {
            (Some(d), Some(by)) => format!(" (replaces {} by {by})", d.as_str()),
            _ => String::new(),
        };
        self.with_mfa(reviewer, code, true, |tx, proof| {
            tx.decide_review_item(id, &item.user, decision, reviewer, now, comment)?;
            Ok(tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "review {id}: {}{replaced}; {}",
                    decision.as_str(),
                    proof.describe()
                ),
            ))?)
        })?;
        Ok(item_info(&ReviewItem {
            decision: Some(decision),
            decided_by: Some(reviewer.into()),
            decided_at: Some(now),
            comment: comment.into(),
            ..item
        }))
    }

    /// `pim admin review show REVIEW`: the auditor's record. Auditors, admins and the role's
    /// owners; anyone else gets the answer a review that does not exist gets.
    pub fn admin_review_show(&mut self, caller: &Caller, id: i64) -> Result<ReviewInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::ReviewShow);
        let found = self
            .store
            .read(|tx| Ok::<_, StoreError>((tx.review(id)?, tx.review_items(id)?)))?;
        match found {
            (Some(r), items) if self.is_auditor(caller) || self.owns(&caller.name, &r.role) => {
                Ok(review_info(&r, items.iter().map(item_info).collect()))
            }
            _ => self.refused_about(&audit, &format!("review {id}"), no_such_record()),
        }
    }

    /// `pim admin reinstate USER ROLE`: lifts a review's suspension of `user`'s standing
    /// eligibility for `role` (administrators and the role's owners).
    pub fn admin_reinstate(
        &mut self,
        caller: &Caller,
        user: &str,
        role: &str,
    ) -> Result<(), PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::AdminReinstate,
                fleet::NotInFleet::Reviews,
            );
        }
        let audit = Audit::new(&caller.name, AuditAction::AdminReinstate)
            .about(name_or_empty(user), name_or_empty(role));
        if let Err(e) = check_name("user", user).and(check_name("role", role)) {
            return self.refused(&audit, e);
        }
        self.require_governor(caller, role, &audit)?;
        if user == caller.name && !self.is_admin(caller) {
            // An owner a review suspended would overrule the review by their own word:
            // another owner or an admin must reinstate them.
            return self.refused(
                &audit,
                PimError::PermissionDenied(format!(
                    "an owner cannot reinstate themselves for role '{}'; another owner or a pim \
                     administrator must",
                    text::escape(role)
                )),
            );
        }
        let now = self.now();
        let entry = audit.entry(now, Outcome::Success, "standing eligibility reinstated");
        self.remove_or_refuse(
            &audit,
            entry,
            |tx| tx.reinstate(user, role),
            PimError::NotFound(format!(
                "{user}'s standing eligibility for role {role} is not suspended"
            )),
        )
    }

    /// Applies review `review`'s decisions and default, closes it, then ends the grants that
    /// stood on what it removed. Each item's result and the review's end are one transaction
    /// with their audit records. An assignment is removed only while it is the one the review
    /// started with (same revision): one changed since (re-assigned, renewed, capped) was not
    /// what the reviewers looked at, and stays; the record names what was removed as it is
    /// now.
    pub(super) fn complete_review(&mut self, review: &Review) -> Result<(), PimError> {
        let now = self.now();
        let items = self.store.read(|tx| tx.review_items(review.id))?;
        let default = parse_default(&review.default_decision);
        let id = review.id;
        let role = review.role.as_str();
        let decided: Vec<(&ReviewItem, ReviewDecision, String)> = items
            .iter()
            .map(|item| match (item.decision, &item.decided_by) {
                (Some(d), Some(by)) => (item, d, format!("decided by {by}")),
                _ => (
                    item,
                    default_for(default, item),
                    format!("default {}", default.as_str()),
                ),
            })
            .collect();
        // An active assignment's grant ends with it below (its grant is the assignment's).
        let (removed, kept, left) = self.commit(|tx| {
            let (mut removed, mut kept, mut left) = (Vec::new(), 0, 0);
            for (item, decision, how) in &decided {
                let result = match decision {
                    ReviewDecision::Keep => {
                        kept += 1;
                        format!("kept ({how})")
                    }
                    ReviewDecision::Remove => {
                        let (mut what, mut took) = (Vec::new(), false);
                        if item.standing {
                            tx.suspend(&item.user, role, id, now)?;
                            took = true;
                            what.push("standing entry suspended".to_string());
                        }
                        if item.assigned {
                            let now_assigned = tx.assignment(&item.user, role)?;
                            match now_assigned {
                                Some(a) if Some(a.revision) == item.revision => {
                                    tx.delete_assignment(&item.user, role)?;
                                    took = true;
                                    what.push(if a.active {
                                        "active assignment removed".to_string()
                                    } else {
                                        "assignment removed".to_string()
                                    });
                                }
                                Some(a) => what.push(format!(
                                    "{} assignment changed since the review started; not \
                                     removed",
                                    if a.active { "active" } else { "eligible" }
                                )),
                                None => {
                                    what.push("assignment removed since the review started".into())
                                }
                            }
                        }
                        if took {
                            removed.push(item.user.clone());
                        } else {
                            left += 1;
                        }
                        format!("removed: {} ({how})", what.join(", "))
                    }
                };
                tx.set_review_item_result(id, &item.user, &result)?;
                tx.audit(
                    Audit::new(DAEMON, AuditAction::ReviewApply)
                        .about(&item.user, role)
                        .with_text(&item.comment, "")
                        .entry(now, Outcome::Success, format!("review {id}: {result}")),
                )?;
            }
            tx.complete_review(id, now)?;
            tx.audit(
                Audit::new(DAEMON, AuditAction::ReviewEnd)
                    .about("", role)
                    .entry(
                        now,
                        Outcome::Success,
                        format!(
                            "review {id} of role {role} ended: {kept} kept, {} removed{}",
                            removed.len(),
                            unchanged_note(left)
                        ),
                    ),
            )?;
            Ok((removed, kept, left))
        })?;
        self.event(
            EventKind::ReviewEnded,
            "",
            role,
            0,
            0,
            DAEMON,
            format!(
                "review {id} of role {role}: {kept} kept, {} removed{}",
                removed.len(),
                unchanged_note(left)
            ),
        );
        let why = format!("removed by access review {id}");
        let mut first_error = None;
        for user in removed {
            let (_, warning) =
                self.end_grant_after_assignment_change(&user, role, DAEMON, Some(&why));
            if !warning.is_empty() {
                first_error.get_or_insert(PimError::Internal(warning));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// How long a review of `role` that takes the role's own length lasts: its
    /// `review_duration`, but never less than `[daemon] min_review_duration` (the checker
    /// warns of a shorter one), which bounds every review alike.
    fn role_review_secs(&self, role: &Role) -> u64 {
        role.review_duration_secs
            .max(self.config.daemon.min_review_duration_secs)
    }

    /// When `role`'s next recurring review is due (`None`: the role has none): at once when it
    /// never had one, else `review_every` after the previous one's start.
    pub(super) fn next_recurring_review(&mut self, role: &Role) -> Result<Option<i64>, PimError> {
        let Some(every) = role.review_every_secs else {
            return Ok(None);
        };
        let last = self.store.read(|tx| tx.last_recurring_review(&role.name))?;
        Ok(Some(match last {
            Some(last) => last.started_at + every as i64,
            None => self.now(),
        }))
    }

    /// Starts `role`'s recurring review when it is due. Its start is the schedule's (the last
    /// one's start plus a whole number of `review_every`, periods missed while pimd was down
    /// skipped); reviewers have `review_duration` from now.
    pub(super) fn start_recurring_review(&mut self, role: &Role) -> Result<(), PimError> {
        let now = self.now();
        let Some(due) = self.next_recurring_review(role)? else {
            return Ok(());
        };
        if due > now {
            return Ok(());
        }
        let every = role.review_every_secs.unwrap_or(1).max(1) as i64;
        let started_at = due + (now - due) / every * every;
        let review = Review {
            id: 0,
            role: role.name.clone(),
            started_at,
            ends_at: now + self.role_review_secs(role) as i64,
            reviewers: role.reviewers.iter().map(Reviewer::text).collect(),
            default_decision: role.review_default.as_str().into(),
            recurring: true,
            started_by: DAEMON.into(),
            completed_at: None,
        };
        let audit = Audit::new(DAEMON, AuditAction::ReviewStart).about("", &role.name);
        self.start_review(role, review, &audit).map(|_| ())
    }

    /// The roles `caller` decides for other than by being eligible: as approver, owner, admin,
    /// or reviewer of an open review (`pim roles`).
    pub fn decided_roles(&mut self, caller: &Caller) -> Result<Vec<DecidedRole>, PimError> {
        let reviewing: BTreeSet<String> = self
            .list_reviews(caller)?
            .into_iter()
            .map(|r| r.role)
            .collect();
        let admin = self.is_admin(caller);
        Ok(self
            .config
            .roles
            .values()
            .filter_map(|role| {
                let capacities: Vec<String> = [
                    (
                        "approver",
                        role.require_approval && self.is_approver(&caller.name, role),
                    ),
                    ("owner", self.owns(&caller.name, &role.name)),
                    ("admin", admin),
                    ("reviewer", reviewing.contains(&role.name)),
                ]
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(c, _)| c.to_string())
                .collect();
                (!capacities.is_empty()).then(|| DecidedRole {
                    role: role.name.clone(),
                    group: role.group.clone(),
                    capacities,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
