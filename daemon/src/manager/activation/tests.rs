//! Tests of activation, over the shared environment of `test_support`, and of its pure
//! decisions on plain facts (`decision`).

use super::*;
use crate::manager::test_support::*;
use crate::mfa;

#[test]
fn given_standing_user_or_group_member_then_eligible_and_others_are_not() {
    let mut e = env();
    let (alice, erin, hank) = (e.who("alice"), e.who("erin"), e.who("hank"));
    assert_eq!(
        names(e.m.list_roles(&alice).unwrap()),
        ["admin", "db", "docker", "rescue", "ticketed", "wheel"]
    );
    assert_eq!(names(e.m.list_roles(&erin).unwrap()), ["admin", "docker"]);
    assert!(e.m.list_roles(&hank).unwrap().is_empty());

    let reply = e.activate("erin", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.state, "active");
    assert_eq!(reply.grant.user, "erin");
    assert_eq!(e.accounts.members("docker"), ["erin"]);
    let roles = e.m.list_roles(&erin).unwrap();
    let docker = roles.iter().find(|r| r.name == "docker").unwrap();
    assert_eq!(docker.active_until, T0 + HOUR);
    assert_eq!(docker.eligible_until, 0);
}

#[test]
fn given_list_roles_then_each_role_shows_what_it_requires() {
    let mut e = env();
    let alice = e.who("alice");
    let roles = e.m.list_roles(&alice).unwrap();
    let role = |name: &str| roles.iter().find(|r| r.name == name).unwrap().clone();
    let admin = role("admin");
    assert_eq!(admin.group, "sudo");
    assert_eq!(admin.description, "Full administration through sudo");
    assert_eq!(
        (admin.max_duration_secs, admin.default_duration_secs),
        (7200, 3600)
    );
    assert!(admin.require_mfa && admin.require_justification && !admin.require_approval);
    assert_eq!((admin.min_justification, admin.approvals_required), (10, 0));
    let ticketed = role("ticketed");
    assert!(ticketed.require_ticket);
    assert!(
        ticketed.ticket_pattern.contains("(INC|CHG)[0-9]+"),
        "{}",
        ticketed.ticket_pattern
    );
    let db = role("db");
    assert!(db.require_approval);
    assert_eq!(db.approvals_required, 2);
    assert_eq!(db.group, "dbadmin");
    assert_eq!(
        role("docker").group,
        "docker",
        "the group defaults to the role's name"
    );
    assert_eq!(role("docker").active_until, 0);
}

#[test]
fn given_not_eligible_or_unknown_role_then_the_same_refusal() {
    let mut e = env();
    let known = assert_err!(e.activate("hank", "docker", 0, "", "", ""), NotEligible);
    let unknown = assert_err!(e.activate("hank", "nosuch", 0, "", "", ""), NotEligible);
    assert_eq!(
        known.replace("docker", "ROLE"),
        unknown.replace("nosuch", "ROLE")
    );
    // Where to see one's roles ('pim roles') is the client's to say: client/src/error.rs.
    assert!(
        known.contains("not eligible for a role named 'docker'"),
        "{known}"
    );
    assert!(e.accounts.calls().is_empty());
    let refused = e.audited("activate");
    assert_eq!(refused.len(), 2);
    for r in &refused {
        assert_eq!((r.actor.as_str(), r.user.as_str()), ("hank", "hank"));
        assert_eq!(r.outcome, "refused");
    }
    assert_eq!(refused[0].role, "docker");
    assert_eq!(refused[1].role, "nosuch");
}

#[test]
fn given_assignment_window_then_eligible_only_inside_it_and_grant_capped_at_its_end() {
    let mut e = env();
    let (frank, dave) = (e.who("frank"), e.who("dave"));
    e.m.admin_assign(&frank, "dave", "docker", T0 + 100, T0 + 1000)
        .unwrap();

    // Before the window.
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert!(e.docker_role_of("dave").is_none());

    // At its start (inclusive): eligible until its end, and the grant stops there.
    e.set(T0 + 100);
    let docker = e.docker_role_of("dave").expect("eligible for docker");
    assert_eq!(docker.eligible_until, T0 + 1000);
    let reply = e.activate("dave", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.grant.started_at, T0 + 100);
    assert_eq!(
        reply.grant.ends_at,
        T0 + 1000,
        "capped at the assignment's end"
    );

    // Extending cannot pass the assignment's end either.
    let msg = assert_err!(e.m.extend(&dave, "docker", 7200, "", ""), InvalidArgument);
    assert!(msg.contains("already ends"), "{msg}");

    // Last second inside.
    e.m.deactivate(&dave, "docker").unwrap();
    e.set(T0 + 999);
    let reply = e.activate("dave", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.grant.ends_at, T0 + 1000);
    e.m.deactivate(&dave, "docker").unwrap();

    // At its end (exclusive): no longer eligible.
    e.set(T0 + 1000);
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert!(e.docker_role_of("dave").is_none());
    assert!(e.accounts.members("docker").is_empty());
}

#[test]
fn given_eligible_user_then_activation_adds_member_and_grant_with_default_duration() {
    let mut e = env();
    let reply = e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.state, "active");
    let g = &reply.grant;
    assert_eq!(
        (g.user.as_str(), g.role.as_str(), g.group.as_str()),
        ("alice", "docker", "docker")
    );
    assert_eq!((g.started_at, g.ends_at), (T0, T0 + HOUR));
    assert_eq!(reply.request, RequestInfo::default());
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_eq!(e.accounts.calls(), ["-a alice docker"]);
    assert!(e.managed("alice", "docker"));
    assert_eq!(e.grants("alice"), std::slice::from_ref(&reply.grant));

    let outbox = e.m.take_outbox();
    assert_eq!(outbox.events.len(), 1);
    let event = &outbox.events[0];
    assert_eq!(event.kind, "grant-started");
    assert_eq!(
        (event.user.as_str(), event.role.as_str()),
        ("alice", "docker")
    );
    assert_eq!(event.grant_id, reply.grant.id);
    assert_eq!(outbox.audit.len(), 1);
    assert_eq!(outbox.audit[0].action, "activate");

    let records = e.audited("activate");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "success");
    assert!(
        records[0].detail.contains("mfa not required"),
        "{:?}",
        records[0]
    );
}

#[test]
fn given_explicit_duration_then_grant_lasts_it_and_over_the_maximum_is_refused() {
    let mut e = env();
    let reply = e.activate("alice", "docker", 1800, "", "", "").unwrap();
    assert_eq!(reply.grant.ends_at, T0 + 1800);

    let msg = assert_err!(
        e.activate("alice", "rescue", 7201, "", "", ""),
        InvalidArgument
    );
    assert!(msg.contains("maximum of 2h"), "{msg}");
    assert!(e.accounts.members("sudo").is_empty());
    let reply = e.activate("alice", "rescue", 7200, "", "", "").unwrap();
    assert_eq!(reply.grant.ends_at, T0 + 7200);

    // Refused before the code is looked at: no failure is counted.
    e.m.deactivate(&e.who("alice"), "rescue").unwrap();
    e.enrol("alice");
    let wrong = e.wrong_code("alice");
    assert_err!(
        e.activate("alice", "admin", 7201, REASON, "", &wrong),
        InvalidArgument
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
}

#[test]
fn given_bad_reasons_then_refused_without_spending_the_code() {
    let mut e = env();
    e.enrol("alice");
    let code = e.code("alice");
    let long = "x".repeat(1025);
    for (reason, expected) in [
        ("", "requires a reason"),
        ("   ", "requires a reason"),
        ("too short", "at least 10"),
        ("rotate keys\nJan 1 pimd: granted root", "control character"),
        ("rotate keys \x1b[2J now", "control character"),
        (long.as_str(), "1025 bytes"),
    ] {
        let msg = assert_err!(
            e.activate("alice", "admin", 0, reason, "", &code),
            InvalidArgument
        );
        assert!(msg.contains(expected), "{reason:?}: {msg}");
    }
    assert!(e.accounts.members("sudo").is_empty());
    assert!(e.grants("alice").is_empty());
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
    // The code was never checked, so it still works.
    let reply = e.activate("alice", "admin", 0, REASON, "", &code).unwrap();
    assert_eq!(reply.grant.reason, REASON);
    // A reason exactly 1 KiB long is fine.
    e.m.deactivate(&e.who("alice"), "admin").unwrap();
    let kib = "y".repeat(1024);
    let code = e.code("alice");
    assert_eq!(
        e.activate("alice", "admin", 0, &kib, "", &code)
            .unwrap()
            .grant
            .reason,
        kib
    );
}

#[test]
fn given_ticketed_role_then_ticket_required_and_must_match_the_pattern() {
    let mut e = env();
    let msg = assert_err!(
        e.activate("alice", "ticketed", 0, "", "", ""),
        InvalidArgument
    );
    assert!(msg.contains("requires a ticket"), "{msg}");
    for bad in ["JIRA-1", "xINC1", "INC", "INC1 ", "INC1\n"] {
        assert_err!(
            e.activate("alice", "ticketed", 0, "", bad, ""),
            InvalidArgument
        );
    }
    assert!(e.accounts.members("deploy").is_empty());
    let reply = e
        .activate("alice", "ticketed", 0, "", "INC123", "")
        .unwrap();
    assert_eq!(reply.grant.ticket, "INC123");
    assert_eq!(e.accounts.members("deploy"), ["alice"]);
    let ok: Vec<_> = e
        .audited("activate")
        .into_iter()
        .filter(|r| r.outcome == "success")
        .collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].ticket, "INC123");
}

#[test]
fn given_mfa_role_then_missing_code_or_enrolment_is_refused() {
    let mut e = env();
    e.enrol("alice");
    let msg = assert_err!(e.activate("alice", "admin", 0, REASON, "", ""), MfaRequired);
    // How to give the code (--code) is the client's to say: client/src/error.rs's tests.
    assert!(msg.contains("TOTP code"), "{msg}");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", "  "),
        MfaRequired
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 0);

    let msg = assert_err!(
        e.activate("erin", "admin", 0, REASON, "", "123456"),
        MfaNotEnrolled
    );
    // How to enrol ('pim mfa enroll') is the client's to say: client/src/error.rs's tests.
    assert!(msg.contains("no TOTP enrolment"), "{msg}");
    // Started but unconfirmed is not enrolled either.
    let erin = e.who("erin");
    e.m.mfa_enroll(&erin).unwrap();
    assert_err!(
        e.activate("erin", "admin", 0, REASON, "", "123456"),
        MfaNotEnrolled
    );
    assert!(e.accounts.members("sudo").is_empty());
    let refused = e
        .audited("activate")
        .iter()
        .filter(|r| r.outcome == "refused")
        .count();
    assert_eq!(refused, 4);
}

#[test]
fn given_wrong_code_then_invalid_code_and_the_failure_is_counted() {
    let mut e = env();
    e.enrol("alice");
    let wrong = e.wrong_code("alice");
    let msg = assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &wrong),
        InvalidCode
    );
    assert!(msg.contains("wrong"), "{msg}");
    assert_eq!(e.mfa_status("alice").recent_failures, 1);
    let failures = e.audited("mfa-failure");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].user, "alice");
    assert_eq!(failures[0].outcome, "refused");
    assert!(failures[0].detail.contains("1 of 3"), "{:?}", failures[0]);
    // A recovery-shaped wrong code counts too.
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", "abcde-fghjk"),
        InvalidCode
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 2);
    assert!(e.accounts.members("sudo").is_empty());

    // The right code works and forgives the failures.
    e.activate_admin("alice", 0).unwrap();
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
}

#[test]
fn given_used_code_then_replays_are_refused() {
    let mut e = env();
    e.enrol("alice");
    let alice = e.who("alice");

    // The code that confirmed the enrolment is spent.
    let confirming = e.code_for_step("alice", mfa::current_step(e.now()));
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &confirming),
        InvalidCode
    );

    // The same step twice.
    let code = e.code("alice");
    e.activate("alice", "admin", 0, REASON, "", &code).unwrap();
    e.m.deactivate(&alice, "admin").unwrap();
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &code),
        InvalidCode
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 1);

    // A later step (inside the skew) and then an earlier one, still inside the window.
    e.advance(30);
    let now_step = mfa::current_step(e.now());
    let later = e.code_for_step("alice", now_step + 1);
    let earlier = e.code_for_step("alice", now_step);
    e.activate("alice", "admin", 0, REASON, "", &later).unwrap();
    e.m.deactivate(&alice, "admin").unwrap();
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &earlier),
        InvalidCode
    );
    assert!(e.accounts.members("sudo").is_empty());
}

#[test]
fn given_recovery_code_then_it_works_once() {
    let mut e = env();
    let codes = e.enrol("alice");
    let alice = e.who("alice");
    e.activate("alice", "admin", 0, REASON, "", &codes[0])
        .unwrap();
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 9);
    let ok = e.audited("activate");
    assert!(
        ok[0].detail.contains("recovery code (9 left)"),
        "{:?}",
        ok[0]
    );
    e.m.deactivate(&alice, "admin").unwrap();

    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &codes[0]),
        InvalidCode
    );
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 9);
    // Another code, typed in capitals, works.
    e.activate("alice", "admin", 0, REASON, "", &codes[1].to_uppercase())
        .unwrap();
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 8);
}

#[test]
fn given_max_failures_wrong_codes_then_locked_out_until_the_lockout_ends() {
    let mut e = env();
    e.enrol("alice");
    for _ in 0..2 {
        let wrong = e.wrong_code("alice");
        assert_err!(
            e.activate("alice", "admin", 0, REASON, "", &wrong),
            InvalidCode
        );
    }
    let wrong = e.wrong_code("alice");
    let locked_at = e.now();
    let msg = assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &wrong),
        MfaLockedOut
    );
    assert!(msg.contains("locked until"), "{msg}");
    let status = e.mfa_status("alice");
    assert_eq!(status.locked_until, locked_at + 900);
    let lockouts = e.audited("mfa-lockout");
    assert_eq!(lockouts.len(), 1);
    assert_eq!(lockouts[0].user, "alice");

    // Even the right code is refused while locked; other roles' codes too.
    let right = e.code("alice");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &right),
        MfaLockedOut
    );
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", ""),
        MfaLockedOut
    );
    e.set(locked_at + 899);
    let right = e.code("alice");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &right),
        MfaLockedOut
    );
    assert!(e.accounts.members("sudo").is_empty());
    assert_eq!(e.audited("mfa-lockout").len(), 1, "announced once");

    e.set(locked_at + 900);
    let right = e.code("alice");
    e.activate("alice", "admin", 0, REASON, "", &right).unwrap();
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    let status = e.mfa_status("alice");
    assert_eq!((status.locked_until, status.recent_failures), (0, 0));
}

#[test]
fn given_failures_spread_beyond_the_window_then_counting_restarts() {
    let mut e = env();
    e.enrol("alice");
    let wrong = |e: &mut Env| {
        let code = e.wrong_code("alice");
        e.activate("alice", "admin", 0, REASON, "", &code)
    };
    assert_err!(wrong(&mut e), InvalidCode);
    e.advance(100);
    assert_err!(wrong(&mut e), InvalidCode);
    assert_eq!(e.mfa_status("alice").recent_failures, 2);
    e.advance(200); // the window (5 minutes from the first failure) is over
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
    assert_err!(wrong(&mut e), InvalidCode);
    assert_err!(wrong(&mut e), InvalidCode);
    assert_eq!(e.mfa_status("alice").recent_failures, 2);
    assert_eq!(e.mfa_status("alice").locked_until, 0);
    assert_err!(wrong(&mut e), MfaLockedOut);
}

#[test]
fn given_live_grant_then_a_second_activation_conflicts_and_one_grant_remains() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let msg = assert_err!(e.activate("alice", "docker", 600, "", "", ""), Conflict);
    assert!(msg.contains("pim extend docker"), "{msg}");
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].ends_at, T0 + HOUR);
    assert_eq!(e.accounts.calls(), ["-a alice docker"]);
    let outcomes: Vec<String> = e
        .audited("activate")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["success", "refused"]);
}

#[test]
fn given_member_outside_pim_then_already_member_and_never_removed() {
    let mut e = env();
    e.accounts.add_group("docker", &["alice"]);
    let msg = assert_err!(e.activate("alice", "docker", 0, "", "", ""), AlreadyMember);
    assert!(msg.contains("outside PIM"), "{msg}");
    let alice = e.who("alice");
    assert_err!(e.m.deactivate(&alice, "docker"), NotFound);
    e.m.reconcile().unwrap();
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert!(!e.managed("alice", "docker"));
    assert!(e.accounts.calls().is_empty(), "{:?}", e.accounts.calls());

    // The same holds for a user whose primary group is the role's group.
    e.accounts
        .0
        .lock()
        .unwrap()
        .users
        .get_mut("erin")
        .unwrap()
        .1 = "docker".into();
    assert_err!(e.activate("erin", "docker", 0, "", "", ""), AlreadyMember);
    assert!(e.accounts.calls().is_empty());
}

#[test]
fn given_permanent_member_then_already_member_and_left_alone() {
    let mut e = env();
    let msg = assert_err!(e.activate("paul", "wheel", 0, "", "", ""), AlreadyMember);
    assert!(msg.contains("permanent"), "{msg}");
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("wheel"), ["paul"]);
    assert!(e.accounts.calls().is_empty());
}

#[test]
fn given_role_group_missing_then_internal_error_audited() {
    let mut e = env();
    e.accounts.0.lock().unwrap().groups.remove("docker");
    let msg = assert_err!(e.activate("alice", "docker", 0, "", "", ""), Internal);
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.calls().is_empty());
    let records = e.audited("activate");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "error");
}

#[test]
fn given_gpasswd_failure_then_internal_and_nothing_left_granted() {
    let mut e = env();
    e.accounts.fail_next_add();
    let msg = assert_err!(e.activate("alice", "docker", 0, "", "", ""), Internal);
    assert!(msg.contains("could not add alice to group docker"), "{msg}");
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert!(e.accounts.members("docker").is_empty());
    assert_eq!(
        e.last_ended("alice", "docker").end_reason.as_deref(),
        Some("failed")
    );
    let failed = e.audited("grant-failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].outcome, "error");
    assert!(
        failed[0].detail.contains("simulated failure"),
        "{:?}",
        failed[0]
    );
    let last = e.audit_log().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("activate", "error")
    );
    assert!(
        !e.event_kinds().contains(&"grant-started".to_string()),
        "no grant was started"
    );

    // Nothing stands in the way of trying again.
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
}

#[test]
fn given_two_roles_on_one_group_then_deactivating_one_keeps_the_membership() {
    let mut e = env();
    e.enrol("alice");
    e.activate_admin("alice", 0).unwrap();
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let alice = e.who("alice");
    e.m.deactivate(&alice, "admin").unwrap();
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    e.m.deactivate(&alice, "rescue").unwrap();
    assert!(e.accounts.members("sudo").is_empty());
}

#[test]
fn given_deactivate_then_the_grant_ends_early() {
    let mut e = env();
    let alice = e.who("alice");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.advance(600);
    let ended = e.m.deactivate(&alice, "docker").unwrap();
    assert_eq!(ended.id, grant.id);
    assert!(e.accounts.members("docker").is_empty());
    assert!(e.grants("alice").is_empty());
    let last = e.last_ended("alice", "docker");
    assert_eq!(last.ended_at, Some(T0 + 600));
    assert_eq!(last.end_reason.as_deref(), Some("deactivated"));
    assert_eq!(
        e.event_kinds(),
        ["grant-started", "grant-ended"],
        "events of activation and deactivation"
    );
    let msg = assert_err!(e.m.deactivate(&alice, "docker"), NotFound);
    assert!(msg.contains("no live grant"), "{msg}");
    let outcomes: Vec<String> = e
        .audited("deactivate")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["success", "refused"]);
    // Reconciling at the original end finds nothing to do.
    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.audited("expire").is_empty());
}

#[test]
fn given_live_grant_then_extend_lengthens_it_within_policy() {
    let mut e = env();
    let alice = e.who("alice");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.advance(600);
    let extended =
        e.m.extend(&alice, "docker", 2 * HOUR as u64, "", "")
            .unwrap();
    assert_eq!(extended.id, grant.id);
    assert_eq!(extended.ends_at, T0 + 600 + 2 * HOUR);
    assert_eq!(e.grants("alice")[0].ends_at, T0 + 600 + 2 * HOUR);

    let msg = assert_err!(
        e.m.extend(&alice, "docker", 8 * HOUR as u64 + 1, "", ""),
        InvalidArgument
    );
    assert!(msg.contains("maximum"), "{msg}");
    let msg = assert_err!(e.m.extend(&alice, "docker", 1800, "", ""), InvalidArgument);
    assert!(msg.contains("already ends"), "{msg}");
    assert_err!(e.m.extend(&alice, "rescue", 1800, "", ""), NotFound);
    assert_err!(
        e.m.extend(&e.who("hank"), "docker", 1800, "", ""),
        NotEligible
    );

    // The old end passes without effect.
    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    e.set(T0 + 600 + 2 * HOUR);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());

    let outcomes: Vec<String> = e
        .audited("extend")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(
        outcomes,
        ["success", "refused", "refused", "refused", "refused"]
    );
}

#[test]
fn given_grant_past_its_end_then_extend_refuses_even_before_reconcile() {
    let mut e = env();
    let alice = e.who("alice");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.set(grant.ends_at);
    let msg = assert_err!(e.m.extend(&alice, "docker", 3600, "", ""), NotFound);
    // What to run next ('pim activate docker') is the client's to say (its with_next_step).
    assert!(msg.contains("no live grant for role docker"), "{msg}");
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    let ended = e.last_ended("alice", "docker");
    assert_eq!(ended.ends_at, grant.ends_at, "not lengthened");
    assert_eq!(ended.end_reason.as_deref(), Some("expired"));
}

#[test]
fn given_mfa_role_then_extend_needs_a_reason_and_a_fresh_code() {
    let mut e = env();
    e.enrol("alice");
    let alice = e.who("alice");
    let grant = e.activate_admin("alice", 1800).unwrap().grant;
    assert_err!(e.m.extend(&alice, "admin", 7200, REASON, ""), MfaRequired);
    let wrong = e.wrong_code("alice");
    assert_err!(
        e.m.extend(&alice, "admin", 7200, REASON, &wrong),
        InvalidCode
    );
    let code = e.code("alice");
    let msg = assert_err!(
        e.m.extend(&alice, "admin", 7200, "", &code),
        InvalidArgument
    );
    assert!(msg.contains("requires a reason"), "{msg}");
    assert_eq!(e.grants("alice")[0].ends_at, grant.ends_at);

    let extended = e.m.extend(&alice, "admin", 7200, REASON, &code).unwrap();
    assert_eq!(extended.ends_at, e.now() + 7200);
    let ok: Vec<_> = e
        .audited("extend")
        .into_iter()
        .filter(|r| r.outcome == "success")
        .collect();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].detail.contains("mfa totp"), "{:?}", ok[0]);
}

#[test]
fn given_approval_role_grant_then_extend_conflicts() {
    let mut e = env();
    for user in ["alice", "bob", "carol"] {
        e.enrol(user);
    }
    let id = e.file_db_request("alice");
    e.approve("bob", id, "").unwrap();
    e.approve("carol", id, "").unwrap();
    let code = e.code("alice");
    let alice = e.who("alice");
    let msg = assert_err!(
        e.m.extend(&alice, "db", 3 * HOUR as u64, REASON, &code),
        Conflict
    );
    assert!(msg.contains("needs approval"), "{msg}");
}

/// The activation's decision alone, on plain facts: no store, no accounts, no clock.
mod decision {
    use super::*;
    use crate::manager::mfa::CodeOutcome;
    use crate::mfa::FailureState;

    const NOW: i64 = T0;
    const SECRET: &[u8] = b"12345678901234567890";

    /// The fixture's `admin` role (up to two hours, one by default, a reason of ten
    /// characters), without MFA.
    fn role() -> Role {
        let config = fixture_config(&fixture_accounts());
        Role {
            require_mfa: false,
            ..config
                .role("admin")
                .expect("the fixture's admin role")
                .clone()
        }
    }

    fn mfa_role() -> Role {
        Role {
            require_mfa: true,
            ..role()
        }
    }

    fn approval_role() -> Role {
        Role {
            require_approval: true,
            approvals_required: 1,
            ..role()
        }
    }

    fn enrolment() -> MfaRecord {
        MfaRecord {
            secret: SECRET.to_vec(),
            confirmed: true,
            last_step: None,
            created_at: NOW - HOUR,
        }
    }

    /// A user who may activate `role` and nothing stands in the way.
    fn facts(role: Role) -> ActivationFacts {
        ActivationFacts {
            role,
            eligibility: Ok(Eligibility::Standing),
            live: None,
            permanent: Ok(false),
            group_exists: true,
            in_group: Ok(false),
            managed: false,
            pending: None,
            ids: Ok((1000, 27)),
            mfa: Some(enrolment()),
            failures: FailureState::default(),
        }
    }

    fn ask(code: &str) -> ActivationAsk<'_> {
        ActivationAsk {
            role: "admin",
            duration_secs: 0,
            reason: REASON,
            ticket: "",
            code,
        }
    }

    fn lockout() -> LockoutPolicy {
        LockoutPolicy {
            max_failures: 3,
            window_secs: 300,
            lockout_secs: 900,
        }
    }

    fn decide(facts: ActivationFacts, ask: &ActivationAsk<'_>) -> Result<ActivationPlan, PimError> {
        decide_activation(facts, ask, NOW, &lockout())
    }

    fn grant_until(ends_at: i64) -> Grant {
        Grant {
            id: 7,
            user: "alice".into(),
            role: "admin".into(),
            group: "sudo".into(),
            started_at: NOW - HOUR,
            ends_at,
            reason: REASON.into(),
            ticket: String::new(),
            request_id: None,
            ended_at: None,
            end_reason: None,
        }
    }

    fn open_request() -> Request {
        Request {
            id: 12,
            user: "alice".into(),
            role: "admin".into(),
            group: "sudo".into(),
            duration_secs: HOUR as u64,
            reason: REASON.into(),
            ticket: String::new(),
            created_at: NOW - 60,
            expires_at: NOW + HOUR,
            approvals_required: 1,
            state: RequestState::Pending,
        }
    }

    fn lookup_failed() -> PimError {
        PimError::Internal("the directory does not answer".into())
    }

    #[test]
    fn given_nothing_in_the_way_then_a_grant_of_the_default_duration_without_a_code_check() {
        let plan = decide(facts(role()), &ask("")).unwrap();
        assert_eq!(
            plan,
            ActivationPlan::StartGrant {
                ends_at: NOW + HOUR,
                ids: (1000, 27),
                mfa: None,
            }
        );
        let asked = ActivationAsk {
            duration_secs: 2 * HOUR as u64,
            ..ask("")
        };
        let plan = decide(facts(role()), &asked).unwrap();
        assert!(
            matches!(plan, ActivationPlan::StartGrant { ends_at, .. } if ends_at == NOW + 2 * HOUR)
        );
    }

    #[test]
    fn given_an_assignment_that_ends_first_then_the_grant_ends_with_it() {
        let mut f = facts(role());
        f.eligibility = Ok(Eligibility::Assigned {
            until: Some(NOW + 600),
        });
        let plan = decide(f, &ask("")).unwrap();
        assert!(matches!(plan, ActivationPlan::StartGrant { ends_at, .. } if ends_at == NOW + 600));
        let mut f = facts(role());
        f.eligibility = Ok(Eligibility::Assigned { until: None });
        let plan = decide(f, &ask("")).unwrap();
        assert!(
            matches!(plan, ActivationPlan::StartGrant { ends_at, .. } if ends_at == NOW + HOUR)
        );
    }

    /// Facts where everything after eligibility would refuse too.
    fn everything_in_the_way(role: Role) -> ActivationFacts {
        ActivationFacts {
            live: Some(grant_until(NOW + 60)),
            permanent: Err(lookup_failed()),
            group_exists: false,
            in_group: Err(lookup_failed()),
            pending: Some(open_request()),
            ids: Err(lookup_failed()),
            mfa: None,
            ..facts(role)
        }
    }

    #[test]
    fn given_not_eligible_then_refused_first_with_the_name_asked_and_a_failed_lookup_is_an_error() {
        let mut f = everything_in_the_way(mfa_role());
        f.eligibility = Ok(Eligibility::No);
        let bad = ActivationAsk {
            duration_secs: 100 * HOUR as u64,
            reason: "",
            ..ask("")
        };
        let e = assert_err!(decide(f, &bad), NotEligible);
        assert!(e.contains("'admin'"), "{e}");
        let mut f = everything_in_the_way(role());
        f.eligibility = Err(lookup_failed());
        let e = assert_err!(decide(f, &bad), Internal);
        assert_eq!(e, "the directory does not answer");
    }

    #[test]
    fn given_a_bad_duration_reason_or_ticket_then_refused_before_the_grants_and_memberships() {
        let too_long = ActivationAsk {
            duration_secs: 3 * HOUR as u64,
            ..ask("")
        };
        let short = ActivationAsk {
            reason: "fix",
            ..ask("")
        };
        let ticketed = Role {
            require_ticket: true,
            ..role()
        };
        for (role, asked, says) in [
            (role(), too_long, "maximum"),
            (role(), short, "at least 10 characters"),
            (ticketed, ask(""), "requires a ticket"),
        ] {
            let e = assert_err!(decide(everything_in_the_way(role), &asked), InvalidArgument);
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn given_a_live_grant_then_conflict_and_one_past_its_end_is_to_be_expired_first() {
        let mut f = facts(role());
        f.live = Some(grant_until(NOW + 60));
        let e = assert_err!(decide(f, &ask("")), Conflict);
        assert!(e.contains("already active"), "{e}");
        let mut f = everything_in_the_way(role());
        f.live = Some(grant_until(NOW));
        assert_eq!(
            decide(f, &ask("")).unwrap(),
            ActivationPlan::ExpireFirst(grant_until(NOW))
        );
    }

    #[test]
    fn given_a_membership_pim_does_not_own_then_refused_in_the_order_permanent_group_held() {
        let blocked = || ActivationFacts {
            live: None,
            ..everything_in_the_way(role())
        };
        let f = ActivationFacts {
            permanent: Ok(true),
            ..blocked()
        };
        let e = assert_err!(decide(f, &ask("")), AlreadyMember);
        assert!(e.contains("permanent member"), "{e}");
        let e = assert_err!(decide(blocked(), &ask("")), Internal);
        assert_eq!(e, "the directory does not answer");
        let f = ActivationFacts {
            permanent: Ok(false),
            ..blocked()
        };
        let e = assert_err!(decide(f, &ask("")), Internal);
        assert!(e.contains("does not exist on this host"), "{e}");
        let f = ActivationFacts {
            permanent: Ok(false),
            group_exists: true,
            ..blocked()
        };
        let e = assert_err!(decide(f, &ask("")), Internal);
        assert_eq!(e, "the directory does not answer");
        let mut f = facts(role());
        f.in_group = Ok(true);
        let e = assert_err!(decide(f, &ask("")), AlreadyMember);
        assert!(e.contains("outside PIM"), "{e}");
        // In the group because PIM put them there (a grant of another role): no obstacle.
        let mut f = facts(role());
        (f.in_group, f.managed) = (Ok(true), true);
        assert!(matches!(
            decide(f, &ask("")).unwrap(),
            ActivationPlan::StartGrant { .. }
        ));
    }

    #[test]
    fn given_an_approval_role_then_a_request_unless_one_is_open_and_no_ids_are_needed() {
        let mut f = facts(approval_role());
        f.ids = Err(lookup_failed());
        assert_eq!(
            decide(f, &ask("")).unwrap(),
            ActivationPlan::FileRequest {
                secs: HOUR as u64,
                mfa: None
            }
        );
        let mut f = facts(approval_role());
        f.pending = Some(open_request());
        f.mfa = None;
        let e = assert_err!(decide(f, &ask("")), Conflict);
        assert!(e.contains("request 12 open"), "{e}");
    }

    #[test]
    fn given_ids_that_cannot_be_looked_up_then_no_grant_and_the_code_is_not_judged() {
        let mut f = facts(mfa_role());
        f.ids = Err(lookup_failed());
        f.mfa = None;
        assert_eq!(
            assert_err!(decide(f, &ask("")), Internal),
            "the directory does not answer"
        );
    }

    #[test]
    fn given_an_mfa_role_then_no_enrolment_a_lockout_or_no_code_refuse_in_that_order() {
        let locked = FailureState {
            failures: 3,
            window_start: NOW - 10,
            locked_until: NOW + 100,
        };
        let mut f = facts(mfa_role());
        (f.mfa, f.failures) = (None, locked);
        assert_err!(decide(f, &ask("")), MfaNotEnrolled);
        let mut f = facts(mfa_role());
        f.mfa.as_mut().unwrap().confirmed = false;
        f.failures = locked;
        assert_err!(decide(f, &ask("")), MfaNotEnrolled);
        let mut f = facts(mfa_role());
        f.failures = locked;
        assert_err!(decide(f, &ask("")), MfaLockedOut);
        assert_err!(decide(facts(mfa_role()), &ask("  ")), MfaRequired);
        // Without MFA, whatever the enrolment, no code is judged.
        let mut f = facts(role());
        (f.mfa, f.failures) = (None, locked);
        assert!(matches!(
            decide(f, &ask("123456")).unwrap(),
            ActivationPlan::StartGrant { mfa: None, .. }
        ));
    }

    /// The code check a grant of the MFA role carries for `code`, on `f`.
    fn judged(f: ActivationFacts, code: &str) -> CodeCheck {
        match decide(f, &ask(code)).unwrap() {
            ActivationPlan::StartGrant { mfa: Some(c), .. } => c,
            other => panic!("expected a grant with a code check, got {other:?}"),
        }
    }

    #[test]
    fn given_a_code_then_the_plan_says_what_it_is_for_the_write_to_spend_or_count() {
        let step = mfa::current_step(NOW);
        let counted = FailureState {
            failures: 1,
            window_start: NOW - 10,
            locked_until: 0,
        };
        let mut f = facts(mfa_role());
        f.failures = counted;
        assert_eq!(
            judged(f, &code_at(SECRET, step)),
            CodeCheck {
                outcome: CodeOutcome::Totp { step },
                state: counted
            }
        );
        let mut f = facts(mfa_role());
        f.mfa.as_mut().unwrap().last_step = Some(step);
        assert_eq!(
            judged(f, &code_at(SECRET, step)).outcome,
            CodeOutcome::Wrong
        );
        assert_eq!(
            judged(facts(mfa_role()), &code_at(SECRET, step + 5)).outcome,
            CodeOutcome::Wrong
        );
        assert_eq!(
            judged(facts(mfa_role()), "abcde23456").outcome,
            CodeOutcome::Recovery {
                hash: mfa::hash_recovery_code("abcde23456")
            }
        );
        let mut f = facts(approval_role());
        f.role.require_mfa = true;
        assert!(matches!(
            decide(f, &ask(&code_at(SECRET, step))).unwrap(),
            ActivationPlan::FileRequest {
                mfa: Some(CodeCheck {
                    outcome: CodeOutcome::Totp { .. },
                    ..
                }),
                ..
            }
        ));
    }

    fn extend(
        facts: ActivationFacts,
        ask: &ActivationAsk<'_>,
    ) -> Result<(i64, Option<CodeCheck>), PimError> {
        decide_extension(facts, ask, NOW, &lockout()).map(|(grant, ends_at, mfa)| {
            assert_eq!(grant, grant_until(NOW + 60));
            (ends_at, mfa)
        })
    }

    #[test]
    fn given_a_live_grant_then_an_extension_to_the_duration_asked_from_now() {
        let f = ActivationFacts {
            live: Some(grant_until(NOW + 60)),
            ..facts(role())
        };
        assert_eq!(extend(f, &ask("")).unwrap(), (NOW + HOUR, None));
        let f = ActivationFacts {
            live: Some(grant_until(NOW + 60)),
            eligibility: Ok(Eligibility::Assigned {
                until: Some(NOW + 600),
            }),
            ..facts(mfa_role())
        };
        let step = mfa::current_step(NOW);
        let (ends_at, mfa) = extend(f, &ask(&code_at(SECRET, step))).unwrap();
        assert_eq!(ends_at, NOW + 600);
        assert_eq!(mfa.unwrap().outcome, CodeOutcome::Totp { step });
    }

    #[test]
    fn given_an_extension_then_refused_in_the_order_eligibility_grant_approval_asked_end_code() {
        let asked = ActivationAsk {
            reason: "",
            ..ask("")
        };
        let f = ActivationFacts {
            eligibility: Ok(Eligibility::No),
            ..everything_in_the_way(approval_role())
        };
        assert_err!(extend(f, &asked), NotEligible);
        let f = ActivationFacts {
            live: Some(grant_until(NOW)),
            ..everything_in_the_way(approval_role())
        };
        let e = assert_err!(extend(f, &asked), NotFound);
        assert!(e.contains("no live grant"), "{e}");
        let mut approval = everything_in_the_way(approval_role());
        approval.role.require_mfa = true;
        let e = assert_err!(extend(approval, &asked), Conflict);
        assert!(e.contains("needs approval"), "{e}");
        let e = assert_err!(
            extend(everything_in_the_way(mfa_role()), &asked),
            InvalidArgument
        );
        assert!(e.contains("requires a reason"), "{e}");
        let sooner = ActivationAsk {
            duration_secs: 60,
            ..ask("")
        };
        let e = assert_err!(
            extend(everything_in_the_way(mfa_role()), &sooner),
            InvalidArgument
        );
        assert!(e.contains("not before the extension's end"), "{e}");
        assert_err!(
            extend(everything_in_the_way(mfa_role()), &ask("")),
            MfaNotEnrolled
        );
    }
}
