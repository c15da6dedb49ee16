//! Tests of administration and the end of eligibility, over the shared environment of
//! `test_support`.

use super::*;
use crate::manager::test_support::*;

/// An eligibility-end record as `Env::eligibility_ends` gives it.
fn end_record(actor: &str, user: &str, role: &str, why: &str) -> (String, String, String, String) {
    let reason = format!("eligibility ended: {why}");
    (actor.into(), user.into(), role.into(), reason)
}

#[test]
fn given_unassign_then_eligibility_is_gone() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let docker = e.docker_role_of("dave").expect("eligible for docker");
    assert_eq!(docker.eligible_until, 0, "no end");

    e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert!(e.docker_role_of("dave").is_none());
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert_err!(e.m.admin_unassign(&frank, "dave", "docker"), NotFound);

    let records: Vec<(String, String, String, String, String)> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.action.as_str().starts_with("admin-"))
        .map(|r| (r.actor, r.action.into(), r.user, r.role, r.outcome.into()))
        .collect();
    let row = |a: &str, o: &str| {
        (
            "frank".to_string(),
            a.to_string(),
            "dave".to_string(),
            "docker".to_string(),
            o.to_string(),
        )
    };
    assert_eq!(
        records,
        [
            row("admin-assign", "success"),
            row("admin-unassign", "success"),
            row("admin-unassign", "refused"),
        ]
    );
}

#[test]
fn given_admin_revoke_then_the_grant_ends_and_membership_is_removed() {
    let mut e = env();
    let frank = e.who("frank");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.m.take_outbox();
    e.advance(60);
    let revoked =
        e.m.admin_revoke(&frank, "alice", "docker", "laptop reported stolen")
            .unwrap();
    assert_eq!(revoked.id, grant.id);
    assert!(e.accounts.members("docker").is_empty());
    assert!(e.grants("alice").is_empty());
    assert_eq!(
        e.last_ended("alice", "docker").end_reason.as_deref(),
        Some("revoked")
    );
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("grant-ended", "frank")
    );
    let records = e.audited("admin-revoke");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.actor.as_str(),
            r.user.as_str(),
            r.role.as_str(),
            r.outcome.as_str(),
            r.reason.as_str()
        ),
        (
            "frank",
            "alice",
            "docker",
            "success",
            "laptop reported stolen"
        )
    );
    // Alice sees what was done to her.
    let alice = e.who("alice");
    let hers = e.m.audit(&alice, 0, "", "").unwrap();
    assert!(hers.iter().any(|r| r.action == "admin-revoke"));

    assert_err!(e.m.admin_revoke(&frank, "alice", "docker", ""), NotFound);
    assert_eq!(e.audited("admin-revoke")[1].outcome, "refused");
}

#[test]
fn given_non_admin_then_every_admin_call_is_refused_and_audited() {
    let mut e = env();
    e.enrol("bob");
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    for who in ["alice", "audra"] {
        let caller = e.who(who);
        assert_err!(e.m.admin_grants(&caller), PermissionDenied);
        assert_err!(
            e.m.admin_assign(&caller, "dave", "docker", 0, 0),
            PermissionDenied
        );
        assert_err!(
            e.m.admin_unassign(&caller, "dave", "docker"),
            PermissionDenied
        );
        assert_err!(
            e.m.admin_revoke(&caller, "alice", "docker", ""),
            PermissionDenied
        );
        assert_err!(e.m.admin_mfa_reset(&caller, "bob"), PermissionDenied);
        let refused: Vec<String> = e
            .audit_log()
            .into_iter()
            .filter(|r| r.actor == who && r.outcome == "refused")
            .map(|r| r.action.to_string())
            .collect();
        assert_eq!(
            refused,
            [
                "admin-grants",
                "admin-assign",
                "admin-unassign",
                "admin-revoke",
                "admin-mfa-reset"
            ],
            "{who}"
        );
    }
    // Nothing changed.
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert!(e.mfa_status("bob").enrolled);
}

#[test]
fn given_root_or_pim_admins_member_then_admin_calls_are_allowed() {
    let mut e = env();
    let (root, frank) = (e.who("root"), e.who("frank"));
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(
        e.m.admin_grants(&root).unwrap(),
        std::slice::from_ref(&grant)
    );
    assert_eq!(e.m.admin_grants(&frank).unwrap(), [grant]);

    e.m.admin_assign(&root, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    assert_eq!(e.m.admin_grants(&frank).unwrap().len(), 2);
    e.m.admin_revoke(&frank, "dave", "docker", "").unwrap();
    e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    e.m.admin_revoke(&root, "alice", "docker", "").unwrap();
    assert!(e.m.admin_grants(&root).unwrap().is_empty());
    assert!(e.accounts.members("docker").is_empty());
    let actors: Vec<(String, String)> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.action.as_str().starts_with("admin-"))
        .map(|r| (r.actor, r.outcome.into()))
        .collect();
    assert!(actors.iter().all(|(_, o)| o == "success"), "{actors:?}");
    assert_eq!(actors.len(), 4, "listing grants is not audited: {actors:?}");
}

#[test]
fn given_bad_assignment_arguments_then_refused() {
    let mut e = env();
    let frank = e.who("frank");
    assert_err!(e.m.admin_assign(&frank, "dave", "nosuch", 0, 0), NotFound);
    assert_err!(e.m.admin_assign(&frank, "nobody", "docker", 0, 0), NotFound);
    assert_err!(
        e.m.admin_assign(&frank, "dave", "docker", T0 + 10, T0 + 10),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_assign(&frank, "dave", "docker", -1, 0),
        InvalidArgument
    );
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    let refused = e
        .audited("admin-assign")
        .iter()
        .filter(|r| r.outcome == "refused")
        .count();
    assert_eq!(refused, 4);
}

#[test]
fn given_mfa_reset_then_the_user_is_unenrolled() {
    let mut e = env();
    e.enrol("alice");
    // Lock her out first: a reset also lifts that.
    for _ in 0..3 {
        let wrong = e.wrong_code("alice");
        let _ = e.activate("alice", "admin", 0, REASON, "", &wrong);
    }
    assert!(e.mfa_status("alice").locked_until > 0);
    let frank = e.who("frank");
    e.m.admin_mfa_reset(&frank, "alice").unwrap();
    let status = e.mfa_status("alice");
    assert_eq!(
        status,
        MfaStatusInfo {
            enrolled: false,
            pending: false,
            locked_until: 0,
            recent_failures: 0,
            recovery_codes_left: 0,
            device_change_until: 0,
            recovery_codes_issued_at: 0,
        }
    );
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", "123456"),
        MfaNotEnrolled
    );
    let r = &e.audited("admin-mfa-reset")[0];
    assert_eq!(
        (r.actor.as_str(), r.user.as_str(), r.outcome.as_str()),
        ("frank", "alice", "success")
    );
    // She may enrol a new device, and nobody else has an enrolment to reset.
    e.enrol("alice");
    e.activate_admin("alice", 0).unwrap();
    assert_err!(e.m.admin_mfa_reset(&frank, "bob"), NotFound);
}

#[test]
fn given_unassign_then_the_grant_that_depended_on_it_ends_audited_and_the_membership_goes() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(e.accounts.members("docker"), ["dave"]);
    e.m.take_outbox();

    e.advance(60);
    let (told, warning) = e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert_eq!(
        told.id, grant.id,
        "the grant that ended with the assignment"
    );
    assert_eq!(warning, "");
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("dave", "docker"));
    assert_eq!(e.accounts.calls(), ["-a dave docker", "-d dave docker"]);
    let ended = e.last_ended("dave", "docker");
    assert_eq!(ended.id, grant.id);
    assert_eq!(ended.ended_at, Some(T0 + 60));
    assert_eq!(ended.end_reason.as_deref(), Some("eligibility-ended"));
    assert_eq!(
        e.eligibility_ends(),
        [end_record("frank", "dave", "docker", "unassigned by frank")]
    );
    // The unassignment's own record comes first, the removal from the group last.
    let actions: Vec<String> = e
        .audit_log()
        .into_iter()
        .skip_while(|r| r.action != "admin-unassign")
        .map(|r| r.action.to_string())
        .collect();
    assert_eq!(
        actions,
        ["admin-unassign", "eligibility-end", "membership-remove"]
    );
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("grant-ended", "frank")
    );
    // The PAM check refuses the group from now on.
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "dave", &groups(&["docker"]))
            .unwrap();
    assert!(!decision.allowed, "{decision:?}");
}

#[test]
fn given_unassign_of_a_user_still_eligible_another_way_then_the_grant_stays() {
    let mut e = env();
    let frank = e.who("frank");
    // erin is eligible for docker through %ops, and assigned to it as well.
    e.m.admin_assign(&frank, "erin", "docker", 0, 0).unwrap();
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    let (ended, warning) = e.m.admin_unassign(&frank, "erin", "docker").unwrap();
    assert_eq!((ended.id, warning.as_str()), (0, ""), "{ended:?}");
    e.m.reconcile().unwrap();
    assert_eq!(e.grants("erin").len(), 1);
    assert_eq!(e.accounts.members("docker"), ["erin"]);
    assert!(e.eligibility_ends().is_empty());
}

#[test]
fn given_an_assignment_cut_short_then_the_grant_ends_at_the_assignment_end() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(grant.ends_at, T0 + HOUR);
    // The assignment now ends in ten minutes: the grant runs until then, not an hour.
    e.m.admin_assign(&frank, "dave", "docker", 0, T0 + 600)
        .unwrap();
    assert_eq!(e.grants("dave").len(), 1);
    assert_eq!(e.m.next_deadline().unwrap(), Some(T0 + 600));

    e.set(T0 + 599);
    e.m.reconcile().unwrap();
    assert_eq!(e.grants("dave").len(), 1);
    assert_eq!(e.accounts.members("docker"), ["dave"]);

    // pimd may have been down at the end: its first reconciliation ends the grant.
    e.set(T0 + 900);
    e.m.reconcile().unwrap();
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    let ended = e.last_ended("dave", "docker");
    assert_eq!(ended.ended_at, Some(T0 + 900));
    assert_eq!(ended.end_reason.as_deref(), Some("eligibility-ended"));
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "pimd",
            "dave",
            "docker",
            "the assignment of dave to role docker ended 08:10 UTC"
        )]
    );
    assert_eq!(e.m.next_deadline().unwrap(), None);
}

#[test]
fn given_an_assignment_moved_to_the_future_then_the_running_grant_ends_at_once() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    e.m.admin_assign(&frank, "dave", "docker", T0 + HOUR, 0)
        .unwrap();
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "frank",
            "dave",
            "docker",
            "the assignment of dave to role docker starts only 09:00 UTC"
        )]
    );
}

#[test]
fn given_a_reload_that_removes_a_role_or_a_user_then_their_grants_end_and_others_stay() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    e.enrol("alice");
    e.activate_admin("alice", 0).unwrap();
    // rescue is gone; docker no longer names %ops (erin's way in); admin is unchanged.
    let text = replaced(
        &replaced(CONFIG, "[roles.rescue]", "[roles.rescue-renamed]"),
        "[roles.docker]\neligible = [\"alice\", \"%ops\"]",
        "[roles.docker]\neligible = [\"alice\"]",
    );
    e.reload(&text);
    let live = |e: &mut Env, user: &str| -> Vec<String> {
        e.grants(user).into_iter().map(|g| g.role).collect()
    };
    assert_eq!(live(&mut e, "alice"), ["docker", "admin"]);
    assert!(live(&mut e, "erin").is_empty());
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    // rescue and admin share sudo: the membership stays for admin.
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    let mut ends = e.eligibility_ends();
    ends.sort();
    assert_eq!(
        ends,
        [
            end_record(
                "pimd",
                "alice",
                "rescue",
                "role rescue is no longer in the configuration"
            ),
            end_record(
                "pimd",
                "erin",
                "docker",
                "erin is no longer eligible for role docker"
            ),
        ]
    );
}

#[test]
fn given_a_user_made_permanent_by_reload_then_the_grant_runs_on_and_its_end_leaves_the_membership_alone(
) {
    let mut e = env();
    let grant = e.activate("alice", "wheel", 0, "", "", "").unwrap().grant;
    let text = replaced(
        CONFIG,
        "eligible = [\"alice\", \"paul\"]\npermanent = [\"paul\"]",
        "eligible = [\"paul\"]\npermanent = [\"paul\", \"alice\"]",
    );
    e.reload(&text);
    assert_eq!(e.grants("alice").len(), 1);
    assert!(e.accounts.members("wheel").contains(&"alice".to_string()));
    assert!(e.eligibility_ends().is_empty());

    // At its natural end the grant goes, the membership stays: alice is a permanent member
    // now, and PIM never removes one; it lets go of the membership instead.
    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.grants("alice").is_empty());
    assert_eq!(
        e.last_ended("alice", "wheel").end_reason.as_deref(),
        Some("expired")
    );
    assert_eq!(e.accounts.members("wheel"), ["alice", "paul"]);
    assert!(!e.managed("alice", "wheel"));
    assert_eq!(e.accounts.calls(), ["-a alice wheel"]);
    assert!(e.audited("membership-remove").is_empty());
    let kept = e.audited("membership-keep");
    assert_eq!(kept.len(), 1, "{kept:#?}");
    assert_eq!(
        (
            kept[0].actor.as_str(),
            kept[0].user.as_str(),
            kept[0].role.as_str()
        ),
        ("pimd", "alice", "wheel")
    );
    assert!(
        kept[0]
            .detail
            .contains("left in group wheel: alice is now a permanent member of role wheel"),
        "{kept:#?}"
    );
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "alice", &groups(&["wheel"]))
            .unwrap();
    assert!(decision.allowed, "{decision:?}");
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("wheel"), ["alice", "paul"]);
}

#[test]
fn given_a_permanent_listing_that_cannot_be_looked_up_at_the_grants_end_then_the_membership_waits()
{
    let mut e = env();
    e.accounts.add_group("oncall", &["alice"]);
    let grant = e.activate("alice", "wheel", 0, "", "", "").unwrap().grant;
    let text = replaced(
        CONFIG,
        "permanent = [\"paul\"]",
        "permanent = [\"paul\", \"%oncall\"]",
    );
    e.reload(&text);
    e.set(grant.ends_at);
    // Whether alice is permanent cannot be told: her membership is neither removed nor let go.
    e.accounts.unreachable("oncall");
    let err = assert_err!(e.m.reconcile(), Internal);
    assert!(
        err.contains("cannot tell whether alice is a permanent member of role wheel"),
        "{err}"
    );
    assert!(e.grants("alice").is_empty());
    assert!(e.managed("alice", "wheel"));
    assert_eq!(e.accounts.calls(), ["-a alice wheel"]);
    // Once it can, she is: PIM lets go of the membership untouched.
    e.accounts.reachable("oncall");
    e.m.reconcile().unwrap();
    assert!(!e.managed("alice", "wheel"));
    assert_eq!(e.accounts.members("wheel"), ["alice", "paul"]);
    assert_eq!(e.audited("membership-keep").len(), 1);
}

#[test]
fn given_a_reload_that_moves_a_role_to_another_group_then_the_grant_of_the_old_group_ends() {
    let mut e = env();
    e.accounts.add_group("docker-ng", &[]);
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(grant.group, "docker");
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\ngroup = \"docker-ng\"\n",
    );
    e.reload(&text);
    // alice is still eligible for docker, but docker no longer grants group docker.
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "pimd",
            "alice",
            "docker",
            "role docker now grants group docker-ng, not docker"
        )]
    );
    // A shell still carrying group docker gets no sudo through it.
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "alice", &groups(&["docker"]))
            .unwrap();
    assert!(!decision.allowed, "{decision:?}");
    // Activating again grants the new group.
    let again = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(again.group, "docker-ng");
    assert_eq!(e.accounts.members("docker-ng"), ["alice"]);
}

#[test]
fn given_a_user_taken_out_of_the_eligible_group_then_reconcile_ends_the_grant_but_not_on_a_failed_lookup(
) {
    let mut e = env();
    // erin is eligible for docker through %ops, alice by name.
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.accounts.unreachable("ops");
    let err = assert_err!(e.m.reconcile(), Internal);
    assert!(
        err.contains("cannot tell whether erin may still hold role docker")
            && err.contains("could not look up group ops"),
        "{err}"
    );
    assert_eq!(e.grants("erin").len(), 1);
    assert_eq!(e.grants("alice").len(), 1);
    assert_eq!(e.accounts.members("docker"), ["alice", "erin"]);
    assert!(e.eligibility_ends().is_empty());

    // When the directory answers again, its answer counts: erin has left %ops meanwhile.
    e.accounts.add_group("ops", &[]);
    e.accounts.reachable("ops");
    e.m.reconcile().unwrap();
    assert!(e.grants("erin").is_empty());
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "pimd",
            "erin",
            "docker",
            "erin is no longer eligible for role docker"
        )]
    );
}

#[test]
fn given_a_group_lookup_failing_then_nothing_is_granted_through_it() {
    let mut e = env();
    e.accounts.unreachable("ops");
    // erin could only be eligible through %ops: refused, saying what failed.
    let err = assert_err!(e.activate("erin", "docker", 0, "", "", ""), Internal);
    assert!(err.contains("could not look up group ops"), "{err}");
    assert!(e.grants("erin").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    // alice is listed by name: the outage does not concern her.
    e.activate("alice", "docker", 0, "", "", "").unwrap();

    // The role's group itself cannot be read: PIM cannot tell whether alice holds it outside
    // PIM, so it grants nothing.
    e.accounts.unreachable("deploy");
    let err = assert_err!(e.activate("alice", "ticketed", 0, "", "INC1", ""), Internal);
    assert!(err.contains("could not look up group deploy"), "{err}");
    assert!(e.grants("alice").iter().all(|g| g.role != "ticketed"));
    assert!(e.accounts.members("deploy").is_empty());

    // frank is an admin through %pim-admins: while it cannot be looked up, he is not.
    e.accounts.unreachable("pim-admins");
    let frank = e.who("frank");
    assert_err!(e.m.admin_grants(&frank), PermissionDenied);
}

#[test]
fn given_the_group_unreadable_when_a_grant_ends_then_pim_keeps_its_record_until_it_has_removed_the_member(
) {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.accounts.unreachable("docker");
    let alice = e.who("alice");
    let err = assert_err!(e.m.deactivate(&alice, "docker"), Internal);
    assert!(err.contains("could not look up group docker"), "{err}");
    assert!(e.grants("alice").is_empty());
    // Not "not listed": nothing is recorded as removed, and PIM still knows it added her.
    assert!(e.managed("alice", "docker"));
    assert!(e.audited("membership-remove").is_empty());
    e.accounts.reachable("docker");
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert_eq!(e.accounts.calls(), ["-a alice docker", "-d alice docker"]);
}

#[test]
fn given_gpasswd_failing_at_unassign_then_it_succeeds_with_a_warning_and_reconcile_finishes() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    e.accounts.fail_next_remove();
    let (ended, warning) = e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert_eq!(ended.id, grant.id, "the grant ended in the database");
    assert!(
        warning.contains("ending dave's grant of docker did not complete")
            && warning.contains("gpasswd -d dave docker failed"),
        "{warning}"
    );
    assert!(e.grants("dave").is_empty());
    assert_eq!(e.accounts.members("docker"), ["dave"]);
    assert!(e.managed("dave", "docker"));
    // The assignment is gone: that is what a second unassign says.
    assert_err!(e.m.admin_unassign(&frank, "dave", "docker"), NotFound);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("dave", "docker"));
}

#[test]
fn given_gpasswd_failing_when_assign_moves_the_window_then_it_succeeds_with_a_warning() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    e.accounts.fail_next_remove();
    let warning =
        e.m.admin_assign(&frank, "dave", "docker", T0 + HOUR, 0)
            .unwrap();
    assert!(
        warning.contains("ending dave's grant of docker did not complete"),
        "{warning}"
    );
    let assignment =
        e.m.store
            .read(|tx| tx.assignment("dave", "docker"))
            .unwrap();
    assert_eq!(assignment.and_then(|a| a.not_before), Some(T0 + HOUR));
    assert!(e.grants("dave").is_empty());
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
}

#[test]
fn given_an_assignment_end_in_the_past_then_the_grant_on_it_ends_at_once() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    e.advance(600);
    // The client refuses an --until in the past; straight over the bus it ends the grant now.
    let warning =
        e.m.admin_assign(&frank, "dave", "docker", 0, T0 + 60)
            .unwrap();
    assert_eq!(warning, "");
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "frank",
            "dave",
            "docker",
            "the assignment of dave to role docker ended 08:01 UTC"
        )]
    );
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
}
