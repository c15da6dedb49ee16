//! Tests of whom an event names for `notify_command`.

use super::*;
use crate::manager::test_support::*;

fn event(kind: &str, user: &str, role: &str, request_id: i64) -> EventInfo {
    EventInfo {
        kind: kind.parse().unwrap(),
        at: T0,
        user: user.into(),
        role: role.into(),
        request_id,
        grant_id: 0,
        actor: user.into(),
        detail: String::new(),
    }
}

fn named(recipients: &[Recipient]) -> Vec<(String, Vec<&'static str>)> {
    recipients
        .iter()
        .map(|r| (r.name.clone(), r.as_.clone()))
        .collect()
}

#[test]
fn given_a_request_then_its_requester_approvers_and_admins_are_named_once_each() {
    let e = env();
    // db: approvers bob, carol and alice (who also requests); admins: %pim-admins (frank).
    let recipients = e.m.recipients(&event("request-filed", "alice", "db", 7));
    assert_eq!(
        named(&recipients),
        vec![
            ("alice".to_string(), vec!["requester", "approver"]),
            ("bob".to_string(), vec!["approver"]),
            ("carol".to_string(), vec!["approver"]),
            ("frank".to_string(), vec!["admin"]),
        ]
    );
}

#[test]
fn given_a_grant_event_of_a_role_without_approvers_then_its_user_and_admins_are_named() {
    let e = env();
    let recipients = e.m.recipients(&event("grant-started", "erin", "docker", 0));
    assert_eq!(
        named(&recipients),
        vec![
            ("erin".to_string(), vec!["user"]),
            ("frank".to_string(), vec!["admin"]),
        ]
    );
}

#[test]
fn given_an_admin_group_that_cannot_be_looked_up_then_the_others_are_still_named() {
    let e = env();
    e.accounts.unreachable("pim-admins");
    let recipients = e.m.recipients(&event("grant-ended", "pimd", "docker", 0));
    assert!(
        recipients.is_empty(),
        "pimd is not a person: {recipients:?}"
    );
    let recipients = e.m.recipients(&event("grant-ended", "erin", "docker", 0));
    assert_eq!(named(&recipients), vec![("erin".to_string(), vec!["user"])]);
}
