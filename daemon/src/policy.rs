//! Pure policy decisions: who is eligible, and whether an activation's duration, reason and
//! ticket satisfy a role. No I/O; group membership is asked through a closure.

use crate::model::Assignment;
use pim_common::text;
use pim_common::PimError;
use pim_config::{Principal, Role};

/// Why a user may activate a role right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    /// Listed in the role's `eligible` (directly or through a group).
    Standing,
    /// Through an admin assignment; `until` is its end, if any.
    Assigned {
        until: Option<i64>,
    },
    No,
}

impl Eligibility {
    pub fn is_eligible(self) -> bool {
        self != Eligibility::No
    }
}

/// Whether `user` is one of `list`. A principal that matches settles it even when the lookup
/// of another failed; without a match, a failed lookup is the answer (no answer, not "no").
pub fn any_matches<E>(
    list: &[Principal],
    user: &str,
    in_group: &dyn Fn(&str) -> Result<bool, E>,
) -> Result<bool, E> {
    let mut failed = None;
    for p in list {
        match p {
            Principal::User(name) if name == user => return Ok(true),
            Principal::User(_) => {}
            Principal::Group(group) => match in_group(group) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            },
        }
    }
    failed.map_or(Ok(false), Err)
}

/// Standing eligibility wins over an assignment; an assignment counts only inside its window
/// (`not_before` inclusive, `not_after` exclusive). When a group lookup fails, an assignment in
/// force still answers; without one the failure is the answer. `suspended`: an access review
/// removed the user's standing eligibility, so the role's `eligible` entries do not count for
/// them (until `pim admin reinstate`).
pub fn eligibility<E>(
    role: &Role,
    user: &str,
    assignment: Option<&Assignment>,
    suspended: bool,
    now: i64,
    in_group: &dyn Fn(&str) -> Result<bool, E>,
) -> Result<Eligibility, E> {
    let standing = if suspended {
        Ok(false)
    } else {
        any_matches(&role.eligible, user, in_group)
    };
    if let Ok(true) = standing {
        return Ok(Eligibility::Standing);
    }
    match assignment {
        Some(a) if a.not_before.is_none_or(|t| now >= t) && a.not_after.is_none_or(|t| now < t) => {
            Ok(Eligibility::Assigned { until: a.not_after })
        }
        _ => standing.map(|_| Eligibility::No),
    }
}

/// Whether grant `grant_id` may still run on the active assignment it was materialised from:
/// a grant `marked` as an active assignment's stands only while the user's assignment to its
/// role (`assignment`) is active and points at that very grant. Removed, replaced by an
/// eligible one, or made again (a new assignment points at no grant until its own starts),
/// the old grant stands on nothing. A grant no assignment made: yes.
pub fn assignment_grant_holds(
    grant_id: i64,
    marked: bool,
    assignment: Option<&Assignment>,
) -> bool {
    !marked || assignment.is_some_and(|a| a.active && a.grant_id == Some(grant_id))
}

/// The duration to grant: the role's default when none was asked for, refused above the cap.
pub fn duration(role: &Role, requested_secs: u64) -> Result<u64, PimError> {
    if requested_secs == 0 {
        return Ok(role.default_duration_secs);
    }
    pim_common::limits::check_duration(&role.name, requested_secs, role.max_duration_secs)
        .map_err(PimError::InvalidArgument)?;
    Ok(requested_secs)
}

pub fn check_reason(role: &Role, reason: &str) -> Result<(), PimError> {
    text::check("the reason", reason, text::MAX_REASON_BYTES).map_err(PimError::InvalidArgument)?;
    pim_common::limits::check_reason(
        &role.name,
        role.require_justification,
        role.min_justification,
        reason,
    )
    .map_err(PimError::InvalidArgument)?;
    Ok(())
}

pub fn check_ticket(role: &Role, ticket: &str) -> Result<(), PimError> {
    text::check("the ticket", ticket, text::MAX_TICKET_BYTES).map_err(PimError::InvalidArgument)?;
    if ticket.is_empty() {
        if role.require_ticket {
            return Err(PimError::InvalidArgument(format!(
                "role {} requires a ticket reference; give one with -t",
                role.name
            )));
        }
        return Ok(());
    }
    if let (Some(pattern), Some(text)) = (&role.ticket_pattern, role.ticket_pattern_text()) {
        if !pattern.is_match(ticket) {
            return Err(PimError::InvalidArgument(format!(
                "ticket '{ticket}' does not match role {}'s pattern {}",
                role.name, text
            )));
        }
    }
    Ok(())
}

/// A comment on an approval or denial: bounded like a reason.
pub fn check_comment(comment: &str) -> Result<(), PimError> {
    text::check("the comment", comment, text::MAX_REASON_BYTES).map_err(PimError::InvalidArgument)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn role(name: &str) -> Role {
        Role {
            name: name.into(),
            group: "sudo".into(),
            description: String::new(),
            eligible: vec![
                Principal::User("alice".into()),
                Principal::Group("ops".into()),
            ],
            permanent: vec![],
            max_duration_secs: 7200,
            default_duration_secs: 3600,
            require_mfa: true,
            require_justification: true,
            min_justification: 10,
            require_ticket: false,
            ticket_pattern: None,
            require_approval: false,
            approvers: vec![],
            approvals_required: 1,
            request_ttl_secs: 86400,
            owners: vec![],
            review_every_secs: None,
            review_duration_secs: pim_config::DEFAULT_REVIEW_DURATION_SECS,
            reviewers: vec![pim_config::Reviewer::Owners],
            review_default: pim_config::ReviewDefault::Remove,
            max_eligible_assignment_secs: None,
            max_active_assignment_secs: Some(30 * 86400),
            on_end: pim_config::OnEnd::Terminate,
            end_grace_secs: 10,
            warn_before_secs: vec![300, 60],
            hosts: vec![],
        }
    }

    fn in_ops(g: &str) -> Result<bool, String> {
        Ok(g == "ops")
    }
    fn in_none(_: &str) -> Result<bool, String> {
        Ok(false)
    }
    fn unreachable(g: &str) -> Result<bool, String> {
        Err(format!("cannot look up {g}"))
    }

    fn assignment(not_before: Option<i64>, not_after: Option<i64>) -> Assignment {
        Assignment {
            user: "dave".into(),
            role: "admin".into(),
            not_before,
            not_after,
            ..Assignment::default()
        }
    }

    #[test]
    fn given_listed_user_or_group_member_then_standing_eligibility() {
        let r = role("admin");
        assert_eq!(
            eligibility(&r, "alice", None, false, 0, &in_none),
            Ok(Eligibility::Standing)
        );
        assert_eq!(
            eligibility(&r, "erin", None, false, 0, &in_ops),
            Ok(Eligibility::Standing)
        );
        assert_eq!(
            eligibility(&r, "erin", None, false, 0, &in_none),
            Ok(Eligibility::No)
        );
    }

    #[test]
    fn given_a_suspended_standing_entry_then_only_an_assignment_makes_the_user_eligible() {
        let r = role("admin");
        assert_eq!(
            eligibility(&r, "alice", None, true, 0, &in_none),
            Ok(Eligibility::No)
        );
        assert_eq!(
            eligibility(&r, "erin", None, true, 0, &in_ops),
            Ok(Eligibility::No)
        );
        let a = assignment(None, None);
        assert_eq!(
            eligibility(&r, "alice", Some(&a), true, 0, &in_none),
            Ok(Eligibility::Assigned { until: None })
        );
    }

    #[test]
    fn given_assignment_window_then_eligible_only_inside_it() {
        let r = role("admin");
        let a = assignment(Some(100), Some(200));
        let at = |now| eligibility(&r, "dave", Some(&a), false, now, &in_none).unwrap();
        assert_eq!(at(99), Eligibility::No);
        assert_eq!(at(100), Eligibility::Assigned { until: Some(200) });
        assert_eq!(at(199), Eligibility::Assigned { until: Some(200) });
        assert_eq!(at(200), Eligibility::No);
        let open = assignment(None, None);
        assert_eq!(
            eligibility(&r, "dave", Some(&open), false, 5, &in_none),
            Ok(Eligibility::Assigned { until: None })
        );
    }

    #[test]
    fn given_a_group_lookup_that_fails_then_no_answer_unless_a_name_or_assignment_settles_it() {
        let r = role("admin");
        // alice is listed by name: the failed lookup of %ops does not matter.
        assert_eq!(
            eligibility(&r, "alice", None, false, 0, &unreachable),
            Ok(Eligibility::Standing)
        );
        // erin could only be eligible through %ops: no answer, never "not eligible".
        assert_eq!(
            eligibility(&r, "erin", None, false, 0, &unreachable),
            Err("cannot look up ops".to_string())
        );
        // dave's assignment is in force whatever %ops says.
        let a = assignment(None, Some(200));
        assert_eq!(
            eligibility(&r, "dave", Some(&a), false, 100, &unreachable),
            Ok(Eligibility::Assigned { until: Some(200) })
        );
        assert!(eligibility(&r, "dave", Some(&a), false, 200, &unreachable).is_err());
    }

    #[test]
    fn given_durations_then_default_cap_and_edges_apply() {
        let r = role("admin");
        assert_eq!(duration(&r, 0).unwrap(), 3600);
        assert_eq!(duration(&r, 1).unwrap(), 1);
        assert_eq!(duration(&r, 7200).unwrap(), 7200);
        let err = duration(&r, 7201).unwrap_err().message();
        assert!(err.contains("maximum of 2h"), "{err}");
    }

    #[test]
    fn given_reasons_then_length_and_characters_are_checked() {
        let r = role("admin");
        assert!(check_reason(&r, "")
            .unwrap_err()
            .message()
            .contains("requires a reason"));
        assert!(check_reason(&r, "too short")
            .unwrap_err()
            .message()
            .contains("at least 10"));
        assert!(
            check_reason(&r, "          x").is_err(),
            "padding does not count"
        );
        assert!(check_reason(&r, "rotate the TLS keys").is_ok());
        assert!(check_reason(&r, "rotate the\nTLS keys")
            .unwrap_err()
            .message()
            .contains("control"));
        assert!(check_reason(&r, &"x".repeat(1025))
            .unwrap_err()
            .message()
            .contains("1025 bytes"));
        let mut relaxed = role("admin");
        relaxed.require_justification = false;
        assert!(check_reason(&relaxed, "").is_ok());
        assert!(check_reason(&relaxed, "bad\x1b[0m").is_err());
    }

    #[test]
    fn given_tickets_then_requirement_and_pattern_apply() {
        let mut r = role("admin");
        assert!(check_ticket(&r, "").is_ok());
        r.require_ticket = true;
        assert!(check_ticket(&r, "")
            .unwrap_err()
            .message()
            .contains("requires a ticket"));
        r.ticket_pattern = Some(regex::Regex::new("^(?:(INC|CHG)[0-9]+)$").unwrap());
        assert!(check_ticket(&r, "INC123").is_ok());
        assert!(check_ticket(&r, "INC")
            .unwrap_err()
            .message()
            .contains("does not match"));
        assert!(check_ticket(&r, "xINC1").is_err());
        assert!(check_ticket(&r, &"1".repeat(200)).is_err());
    }
}
