//! Tests of reading the audit and events, over the shared environment of `test_support`.

use super::*;
use crate::manager::test_support::*;
use pim_common::types::MAX_AUDIT_RECORDS;
use pim_common::vocab::AuditAction;

#[test]
fn given_a_session_then_every_step_is_audited_with_actor_user_role_and_outcome() {
    let mut e = env();
    e.enrol("alice");
    let alice = e.who("alice");
    e.activate_admin("alice", 1800).unwrap();
    let code = e.code("alice");
    e.m.extend(&alice, "admin", 3600, REASON, &code).unwrap();
    e.m.deactivate(&alice, "admin").unwrap();
    assert_err!(e.activate("hank", "docker", 0, "", "", ""), NotEligible);

    // The fixture's weak roles raised their alerts when the environment started.
    let log: Vec<AuditRecord> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.action != AuditAction::AlertRaise)
        .collect();
    let rows: Vec<[String; 5]> = log
        .clone()
        .into_iter()
        .map(|r| [r.actor, r.action.into(), r.user, r.role, r.outcome.into()])
        .collect();
    let row = |actor: &str, action: &str, user: &str, role: &str, outcome: &str| {
        [actor, action, user, role, outcome].map(String::from)
    };
    assert_eq!(
        rows,
        [
            row("alice", "mfa-enroll", "alice", "", "success"),
            row("alice", "mfa-confirm", "alice", "", "success"),
            row("alice", "activate", "alice", "admin", "success"),
            row("alice", "extend", "alice", "admin", "success"),
            row("alice", "deactivate", "alice", "admin", "success"),
            row("pimd", "membership-remove", "alice", "", "success"),
            row("hank", "activate", "hank", "docker", "refused"),
        ]
    );
    assert_eq!(log[2].reason, REASON);
    assert!(log
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at));
}

#[test]
fn given_non_admin_then_only_own_records_and_auditors_see_everything() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    e.activate("erin", "docker", 0, "", "", "").unwrap();

    let alice = e.who("alice");
    let own = e.m.audit(&alice, 0, "", "").unwrap();
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r.user == "alice" || r.actor == "alice"));
    assert_eq!(e.m.audit(&alice, 0, "alice", "").unwrap(), own);
    let msg = assert_err!(e.m.audit(&alice, 0, "dave", ""), PermissionDenied);
    assert!(msg.contains("auditors"), "{msg}");
    assert!(e.m.audit(&e.who("hank"), 0, "", "").unwrap().is_empty());
    // The refused read itself is on record, about dave.
    let total = e.audit_log().len();

    for who in ["audra", "frank", "root"] {
        let caller = e.who(who);
        assert_eq!(e.m.audit(&caller, 0, "", "").unwrap().len(), total, "{who}");
        let daves = e.m.audit(&caller, 0, "dave", "").unwrap();
        let actions: Vec<&str> = daves.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["activate", "audit-read"], "{who}");
        assert!(daves.iter().all(|r| r.outcome == "refused"));
        let docker = e.m.audit(&caller, 0, "", "docker").unwrap();
        assert!(docker.iter().all(|r| r.role == "docker"));
        assert!(docker.len() >= 3);
        assert!(e.m.audit(&caller, T0 + 1, "", "").unwrap().is_empty());
    }
    assert_err!(
        e.m.audit(&e.who("audra"), 0, "bad name", ""),
        InvalidArgument
    );
}

#[test]
fn given_local_users_named_like_the_daemons_actors_then_its_records_are_not_theirs() {
    let mut e = env();
    e.accounts.add_user("pimd", 1100);
    e.accounts.add_user("pam", 1101);
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    e.m.audit_access_denial("alice", &["docker".to_string()], "no grant")
        .unwrap();
    let log = e.audit_log();
    for actor in ["pimd", "pam"] {
        assert!(
            log.iter().any(|r| r.actor == actor && r.user == "alice"),
            "no {actor} record about alice: {log:#?}"
        );
        let theirs = e.m.audit(&e.who(actor), 0, "", "").unwrap();
        assert!(theirs.is_empty(), "{actor} sees {theirs:#?}");
    }
}

#[test]
fn given_control_characters_then_the_audit_never_stores_them_raw() {
    let mut e = env();
    for user in ["alice", "bob", "carol"] {
        e.enrol(user);
    }
    let (alice, frank, bob) = (e.who("alice"), e.who("frank"), e.who("bob"));
    let forged = "ok\nJan  1 00:00:00 host pimd: granted root";
    assert_err!(
        e.activate("alice", "docker", 0, forged, "", ""),
        InvalidArgument
    );
    assert_err!(
        e.activate("alice", "ticketed", 0, "", "INC1\x1b[2J", ""),
        InvalidArgument
    );
    assert_err!(
        e.activate("alice", "dock\ner", 0, "", "", ""),
        InvalidArgument
    );
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_err!(
        e.m.extend(&alice, "docker", 7200, forged, ""),
        InvalidArgument
    );
    assert_err!(e.m.deactivate(&alice, "dock\u{9b}er"), InvalidArgument);
    assert_err!(
        e.m.admin_revoke(&frank, "alice", "docker", forged),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_revoke(&frank, "al\nice", "docker", ""),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_assign(&frank, "x\ny", "docker", 0, 0),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_unassign(&frank, "x\ny", "docker"),
        InvalidArgument
    );
    assert_err!(e.m.admin_mfa_reset(&frank, "x\ny"), InvalidArgument);
    let id = e.file_db_request("alice");
    let code = e.code("bob");
    assert_err!(e.m.approve(&bob, id, forged, &code), InvalidArgument);
    assert_err!(e.m.deny(&bob, id, forged, &code), InvalidArgument);

    let log = e.audit_log();
    assert!(log.len() >= 15, "{}", log.len());
    for r in &log {
        for field in [
            &r.actor,
            &r.action.to_string(),
            &r.user,
            &r.role,
            &r.reason,
            &r.ticket,
            &r.detail,
        ] {
            assert!(!field.chars().any(char::is_control), "{r:?}");
        }
    }
    let first = &log
        .iter()
        .find(|r| r.action == "activate" && r.outcome == "refused")
        .unwrap();
    assert_eq!(
        first.reason,
        "ok\\x0aJan  1 00:00:00 host pimd: granted root"
    );
    assert!(log.iter().any(|r| r.ticket == "INC1\\x1b[2J"));
    let bad_role = log
        .iter()
        .find(|r| r.action == "activate" && r.detail.contains("dock"))
        .unwrap();
    assert_eq!(
        bad_role.role, "",
        "an invalid name is not recorded as a role"
    );
    assert!(bad_role.detail.contains("dock\\x0aer"), "{bad_role:?}");
}

#[test]
fn given_events_then_may_see_follows_requester_approvers_and_auditors() {
    let mut e = env();
    e.enrol("dave");
    e.m.take_outbox();
    e.file_db_request("dave");
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    let filed = &events[0];
    assert_eq!(
        (filed.kind.as_str(), filed.user.as_str()),
        ("request-filed", "dave")
    );
    for who in ["dave", "bob", "carol", "alice", "audra", "frank", "root"] {
        assert!(e.m.may_see(&e.who(who), filed), "{who} should see it");
    }
    for who in ["erin", "gina", "hank", "paul"] {
        assert!(!e.m.may_see(&e.who(who), filed), "{who} should not see it");
    }
    // A grant of a role without approvers: only its user and the auditors.
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    let started = e.m.take_outbox().events.pop().unwrap();
    assert_eq!(started.kind, "grant-started");
    assert!(e.m.may_see(&e.who("erin"), &started));
    assert!(e.m.may_see(&e.who("audra"), &started));
    assert!(!e.m.may_see(&e.who("bob"), &started));
    assert!(!e.m.may_see(&e.who("dave"), &started));
}

#[test]
fn given_more_audit_records_than_one_reply_holds_then_audit_returns_the_oldest_that_fit() {
    let mut e = env();
    let now = e.now();
    e.m.commit(|tx| {
        for n in 0..MAX_AUDIT_RECORDS + 5 {
            let entry = Audit::new("alice", AuditAction::Activate)
                .about("alice", "rescue")
                .entry(now + i64::from(n), Outcome::Success, format!("record {n}"));
            tx.audit(entry)?;
        }
        Ok(())
    })
    .unwrap();
    let alice = e.who("alice");
    let first = e.m.audit(&alice, 0, "", "").unwrap();
    assert_eq!(first.len(), MAX_AUDIT_RECORDS as usize);
    assert_eq!(first[0].detail, "record 0");
    // Asking again from the last one's time gives the rest.
    let last = first.last().unwrap().at;
    let next = e.m.audit(&alice, last, "", "").unwrap();
    let details: Vec<&str> = next.iter().map(|r| r.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "record 999",
            "record 1000",
            "record 1001",
            "record 1002",
            "record 1003",
            "record 1004"
        ]
    );
}
