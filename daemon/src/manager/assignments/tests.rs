//! Assignments with a fake clock: caps, active assignments starting and ending on time,
//! notices sent once, renewal windows and decisions, `pim show` scoping.

use super::*;
use crate::manager::test_support::*;

const DAY: i64 = 86_400;

/// The fixture with gina owning docker; docker caps eligible assignments at 180d and keeps
/// the default 30d for active ones; wheel allows permanent active assignments.
fn governed() -> Env {
    let mut e = env();
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\nowners = [\"gina\"]\nmax_eligible_assignment = \"180d\"\n",
    );
    let text = replaced(
        &text,
        "[roles.wheel]\n",
        "[roles.wheel]\nmax_active_assignment = \"permanent\"\n",
    );
    e.reload(&text);
    e.m.take_outbox();
    e
}

fn docker_role() -> Role {
    let mut role = crate::policy::tests::role("docker");
    role.max_eligible_assignment_secs = Some(180 * DAY as u64);
    role
}

#[test]
fn given_caps_then_windows_are_measured_from_start_or_now_and_a_missing_end_is_refused() {
    let now = T0;
    let role = docker_role();
    // Eligible, capped at 180d.
    let m = assert_err!(check_cap(&role, false, None, None, now), InvalidArgument);
    assert!(
        m.contains("max_eligible_assignment") && m.contains("--until"),
        "{m}"
    );
    assert!(check_cap(&role, false, None, Some(now + 180 * DAY), now).is_ok());
    let m = assert_err!(
        check_cap(&role, false, None, Some(now + 181 * DAY), now),
        InvalidArgument
    );
    assert!(
        m.contains("at most 180d") && m.contains("max_eligible_assignment"),
        "{m}"
    );
    // A start in the past counts from now; one in the future from itself.
    assert!(check_cap(
        &role,
        false,
        Some(now - 30 * DAY),
        Some(now + 180 * DAY),
        now
    )
    .is_ok());
    assert!(check_cap(
        &role,
        false,
        Some(now + 10 * DAY),
        Some(now + 190 * DAY),
        now
    )
    .is_ok());
    // Active: 30d by default, no end refused.
    let m = assert_err!(check_cap(&role, true, None, None, now), InvalidArgument);
    assert!(m.contains("max_active_assignment"), "{m}");
    assert!(check_cap(&role, true, None, Some(now + 30 * DAY), now).is_ok());
    assert_err!(
        check_cap(&role, true, None, Some(now + 31 * DAY), now),
        InvalidArgument
    );
    // No cap: anything, without an end too.
    let mut open = docker_role();
    open.max_eligible_assignment_secs = None;
    open.max_active_assignment_secs = None;
    assert!(check_cap(&open, false, None, None, now).is_ok());
    assert!(check_cap(&open, true, None, None, now).is_ok());
}

#[test]
fn given_an_end_then_notices_fall_due_14_days_and_1_day_before_each_once() {
    let end = T0 + 20 * DAY;
    assert_eq!(notice_due(end, 0, T0), None, "20 days left");
    assert_eq!(next_notice_at(end, 0), Some(end - 14 * DAY));
    assert_eq!(notice_due(end, 0, end - 14 * DAY), Some(NOTICE_14D));
    assert_eq!(notice_due(end, NOTICE_14D, end - 13 * DAY), None, "sent");
    assert_eq!(next_notice_at(end, NOTICE_14D), Some(end - DAY));
    assert_eq!(
        notice_due(end, NOTICE_14D, end - DAY),
        Some(NOTICE_1D | NOTICE_14D)
    );
    assert_eq!(notice_due(end, NOTICE_14D | NOTICE_1D, end - 60), None);
    assert_eq!(next_notice_at(end, NOTICE_14D | NOTICE_1D), None);
    // Both due at once (pimd was down): one notice, the late one.
    assert_eq!(notice_due(end, 0, end - 3600), Some(NOTICE_1D | NOTICE_14D));
    assert_eq!(notice_due(end, 0, end), None, "over");
}

#[test]
fn given_an_end_then_renewal_is_open_from_14_days_before_to_30_days_after() {
    let end = T0 + 20 * DAY;
    let m = assert_err!(check_renewal_window("docker", Some(end), T0), Conflict);
    assert!(
        m.contains("14 days before") && m.contains("30 days after"),
        "{m}"
    );
    assert!(check_renewal_window("docker", Some(end), end - 14 * DAY).is_ok());
    assert!(check_renewal_window("docker", Some(end), end).is_ok());
    assert!(check_renewal_window("docker", Some(end), end + 30 * DAY).is_ok());
    assert_err!(
        check_renewal_window("docker", Some(end), end + 30 * DAY + 1),
        Conflict
    );
    let m = assert_err!(check_renewal_window("docker", None, T0), Conflict);
    assert!(m.contains("no end"), "{m}");
}

#[test]
fn given_times_past_no_end_or_negative_then_assign_and_renew_refuse_naming_the_argument() {
    let mut e = governed();
    let gina = e.who("gina");
    for (from, until, named) in [
        (0, i64::MAX, "not_after"),
        (0, NO_END + 1, "not_after"),
        (i64::MAX, 0, "not_before"),
        (-1, T0 + DAY, "not_before"),
        (0, -5, "not_after"),
    ] {
        let m = assert_err!(
            e.m.admin_assign(&gina, "dave", "docker", from, until),
            InvalidArgument
        );
        assert!(m.contains(named) && m.contains("year 9999"), "{m}");
    }
    assert!(e.docker_role_of("dave").is_none(), "nothing was assigned");
    e.m.admin_assign(&gina, "dave", "docker", 0, T0 + 10 * DAY)
        .unwrap();
    let dave = e.who("dave");
    for until in [i64::MAX, NO_END + 1, -1] {
        let m = assert_err!(
            e.m.renew(&dave, "docker", until, "still on the team"),
            InvalidArgument
        );
        assert!(m.contains("until") && m.contains("year 9999"), "{m}");
    }
    // The window's arithmetic saturates rather than overflowing on an end stored earlier.
    assert_err!(check_renewal_window("docker", Some(i64::MAX), T0), Conflict);
    assert!(check_renewal_window("docker", Some(i64::MIN), T0).is_err());
}

#[test]
fn given_an_active_assignment_now_then_the_group_is_held_at_once_and_taken_at_its_end() {
    let mut e = governed();
    let gina = e.who("gina");
    let root = e.who("root");
    let until = T0 + 2 * HOUR;
    let warning =
        e.m.admin_assign_active(&gina, "dave", "docker", 0, until, "on call this week")
            .unwrap();
    assert_eq!(warning, "");
    assert!(e.managed("dave", "docker"));
    assert!(e.accounts.members("docker").contains(&"dave".to_string()));
    let grants = e.grants("dave");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].ends_at, until);
    assert_eq!(grants[0].reason, "on call this week");
    let access =
        e.m.check_access(&root, "dave", &groups(&["docker"]))
            .unwrap();
    assert!(access.allowed, "{access:?}");
    let listed = e.m.admin_grants(&gina).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(e.audited("admin-assign-active").len(), 1);
    assert_eq!(e.audited("grant-start").len(), 1);

    e.set(until);
    e.m.reconcile().unwrap();
    assert!(!e.managed("dave", "docker"));
    assert!(!e.accounts.members("docker").contains(&"dave".to_string()));
    let access =
        e.m.check_access(&root, "dave", &groups(&["docker"]))
            .unwrap();
    assert!(!access.allowed);
    assert_eq!(e.audited("expire").len(), 1);
    // Not started again.
    e.advance(60);
    e.m.reconcile().unwrap();
    assert!(e.grants("dave").is_empty());
}

#[test]
fn given_a_scheduled_active_assignment_then_it_starts_at_its_start_with_that_deadline() {
    let mut e = governed();
    let gina = e.who("gina");
    let from = T0 + HOUR;
    let until = T0 + 3 * HOUR;
    e.m.admin_assign_active(&gina, "dave", "docker", from, until, "maintenance window")
        .unwrap();
    assert!(e.grants("dave").is_empty(), "not before its start");
    assert_eq!(e.m.next_deadline().unwrap(), Some(from));
    e.set(from - 1);
    e.m.reconcile().unwrap();
    assert!(e.grants("dave").is_empty());
    e.set(from);
    e.m.reconcile().unwrap();
    let grants = e.grants("dave");
    assert_eq!(grants.len(), 1);
    assert_eq!((grants[0].started_at, grants[0].ends_at), (from, until));
    assert!(e.event_kinds().contains(&"grant-started".to_string()));
    assert_eq!(e.m.next_deadline().unwrap(), Some(until));
    e.set(until);
    e.m.reconcile().unwrap();
    assert!(e.grants("dave").is_empty());
}

#[test]
fn given_caps_then_a_too_long_or_endless_assignment_is_refused_naming_the_cap_and_audited() {
    let mut e = governed();
    let gina = e.who("gina");
    let m = assert_err!(
        e.m.admin_assign_active(
            &gina,
            "dave",
            "docker",
            0,
            T0 + 31 * DAY,
            "a long holiday cover"
        ),
        InvalidArgument
    );
    assert!(
        m.contains("max_active_assignment") && m.contains("30d"),
        "{m}"
    );
    let m = assert_err!(
        e.m.admin_assign(&gina, "dave", "docker", 0, 0),
        InvalidArgument
    );
    assert!(m.contains("max_eligible_assignment"), "{m}");
    assert_err!(
        e.m.admin_assign(&gina, "dave", "docker", 0, T0 + 200 * DAY),
        InvalidArgument
    );
    assert!(e.grants("dave").is_empty());
    assert!(e.docker_role_of("dave").is_none());
    let refused: Vec<String> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.actor == "gina" && r.outcome == "refused")
        .map(|r| r.action.as_str().to_string())
        .collect();
    assert_eq!(
        refused,
        ["admin-assign-active", "admin-assign", "admin-assign"]
    );
    // An active assignment needs a reason; "permanent" where the role allows it.
    let frank = e.who("frank");
    assert_err!(
        e.m.admin_assign_active(&frank, "dave", "docker", 0, T0 + DAY, ""),
        InvalidArgument
    );
    e.m.admin_assign_active(
        &frank,
        "alice",
        "wheel",
        0,
        0,
        "standing wheel for the lead",
    )
    .unwrap();
    assert_eq!(e.grants("alice")[0].ends_at, NO_END);
}

#[test]
fn given_unassign_of_an_active_assignment_then_its_grant_ends_even_if_eligible_otherwise() {
    let mut e = governed();
    let gina = e.who("gina");
    // alice is standing eligible for docker: the assignment's grant still ends with it.
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + DAY, "incident response")
        .unwrap();
    assert!(e.managed("alice", "docker"));
    let (ended, warning) = e.m.admin_unassign(&gina, "alice", "docker").unwrap();
    assert_eq!(warning, "");
    assert!(ended.id > 0);
    assert!(!e.managed("alice", "docker"));
    assert!(e.grants("alice").is_empty());
}

#[test]
fn given_an_assignment_near_its_end_then_one_notice_each_at_14_days_and_1_day_and_a_status_line() {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + 20 * DAY;
    e.m.admin_assign(&gina, "dave", "docker", 0, end).unwrap();
    e.m.take_outbox();
    e.m.reconcile().unwrap();
    assert!(!e.event_kinds().contains(&"assignment-ending".to_string()));
    assert_eq!(e.m.next_deadline().unwrap(), Some(end - 14 * DAY));
    let dave = e.who("dave");
    assert_eq!(e.m.my_assignments(&dave).unwrap()[0].notice, "");

    e.set(end - 14 * DAY);
    e.m.reconcile().unwrap();
    let kinds = e.event_kinds();
    assert_eq!(
        kinds.iter().filter(|k| *k == "assignment-ending").count(),
        1
    );
    e.advance(3600);
    e.m.reconcile().unwrap();
    assert!(
        !e.event_kinds().contains(&"assignment-ending".to_string()),
        "sent once"
    );
    let notice = e.m.my_assignments(&dave).unwrap()[0].notice.clone();
    assert!(notice.contains("pim renew docker"), "{notice}");

    e.set(end - DAY);
    e.m.reconcile().unwrap();
    assert_eq!(
        e.event_kinds()
            .iter()
            .filter(|k| *k == "assignment-ending")
            .count(),
        1
    );
    e.m.reconcile().unwrap();
    assert!(!e.event_kinds().contains(&"assignment-ending".to_string()));
    assert_eq!(e.audited("assignment-notice").len(), 2);
}

#[test]
fn given_notices_sent_then_they_are_persisted_and_one_already_passed_is_never_sent() {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + 10 * DAY;
    e.m.admin_assign(&gina, "dave", "docker", 0, end).unwrap();
    e.m.reconcile().unwrap();
    assert!(
        e.audited("assignment-notice").is_empty(),
        "10 days: no 14-day notice"
    );
    assert_eq!(e.m.next_deadline().unwrap(), Some(end - DAY));
    e.set(end - DAY);
    e.m.reconcile().unwrap();
    assert_eq!(e.audited("assignment-notice").len(), 1);
    let dave =
        e.m.store
            .read(|tx| tx.assignment("dave", "docker"))
            .unwrap()
            .unwrap();
    assert_eq!(dave.notices_sent, NOTICE_14D | NOTICE_1D, "persisted");
    // A pimd started on the same database sends nothing again.
    e.m.reconcile().unwrap();
    assert_eq!(e.audited("assignment-notice").len(), 1);
}

#[test]
fn given_a_renewal_then_an_owner_approves_it_and_the_end_moves() {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + 20 * DAY;
    e.m.admin_assign(&gina, "dave", "docker", 0, end).unwrap();
    let dave = e.who("dave");
    let m = assert_err!(e.m.renew(&dave, "docker", 0, "still on the team"), Conflict);
    assert!(m.contains("14 days before"), "{m}");

    e.set(end - 5 * DAY);
    let new_end = end + 60 * DAY;
    let filed =
        e.m.renew(&dave, "docker", new_end, "still on the team")
            .unwrap();
    assert_eq!(
        (filed.kind.as_str(), filed.state.as_str()),
        ("renewal", "pending")
    );
    assert!(
        filed.deciders.contains(&"gina".to_string()),
        "{:?}",
        filed.deciders
    );
    assert_err!(e.m.renew(&dave, "docker", new_end, "again"), Conflict);
    // Others: not found, like a request that does not exist.
    let hank = e.who("hank");
    let missing = assert_err!(e.m.show_request(&hank, 999), NotFound);
    let hidden = assert_err!(e.m.show_request(&hank, filed.id), NotFound);
    assert_eq!(
        hidden.replace(&filed.id.to_string(), "N"),
        missing.replace("999", "N")
    );
    assert_eq!(e.list_requests("hank"), Vec::<i64>::new());
    assert_eq!(
        e.list_requests("bob"),
        Vec::<i64>::new(),
        "an approver of db only"
    );
    assert_eq!(e.list_requests("gina"), vec![filed.id]);
    assert_eq!(e.m.show_request(&dave, filed.id).unwrap().id, filed.id);
    // A non-owner approver of another role cannot decide it, either way.
    e.enrol("bob");
    let code = e.code("bob");
    assert_err!(e.m.approve(&e.who("bob"), filed.id, "", &code), NotFound);
    let code = e.code("bob");
    assert_err!(e.m.deny(&e.who("bob"), filed.id, "no", &code), NotFound);
    // The requester cannot decide their own.
    assert_err!(e.m.approve(&dave, filed.id, "", ""), PermissionDenied);

    e.enrol("gina");
    let code = e.code("gina");
    let approved = e.m.approve(&gina, filed.id, "ok", &code).unwrap();
    assert_eq!(approved.state, "approved");
    let a =
        e.m.store
            .read(|tx| tx.assignment("dave", "docker"))
            .unwrap()
            .unwrap();
    assert_eq!(a.not_after, Some(new_end));
    assert_eq!(a.notices_sent, 0, "notices start again for the new end");
    assert_eq!(e.audited("renew-approve").len(), 1);
    // Decided once: no deny after the approval.
    let code = e.code("gina");
    assert_err!(
        e.m.deny(&gina, filed.id, "changed my mind", &code),
        Conflict
    );
    let shown = e.m.show_request(&gina, filed.id).unwrap();
    assert_eq!(shown.approved_by, ["gina"]);
    assert_eq!(shown.renew_until, new_end);
}

#[test]
fn given_a_renewal_too_long_for_the_cap_or_without_an_assignment_then_refused() {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + 10 * DAY;
    e.m.admin_assign(&gina, "dave", "docker", 0, end).unwrap();
    let dave = e.who("dave");
    let m = assert_err!(
        e.m.renew(&dave, "docker", T0 + 200 * DAY, "still on the team"),
        InvalidArgument
    );
    assert!(m.contains("max_eligible_assignment"), "{m}");
    let none = assert_err!(e.m.renew(&dave, "admin", 0, "no assignment"), NotEligible);
    let missing = assert_err!(e.m.renew(&dave, "nosuch", 0, "no assignment"), NotEligible);
    assert_eq!(none.replace("admin", "X"), missing.replace("nosuch", "X"));
    // Without --until: the cap from now.
    let filed = e.m.renew(&dave, "docker", 0, "still on the team").unwrap();
    assert_eq!(filed.renew_until, T0 + 180 * DAY);
}

#[test]
fn given_a_lapsed_active_assignment_then_an_approved_renewal_starts_it_again() {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + DAY;
    e.m.admin_assign_active(&gina, "dave", "docker", 0, end, "on call this week")
        .unwrap();
    e.set(end + DAY);
    e.m.reconcile().unwrap();
    assert!(e.grants("dave").is_empty());
    let dave = e.who("dave");
    let filed =
        e.m.renew(&dave, "docker", end + 10 * DAY, "on call again")
            .unwrap();
    e.enrol("gina");
    let code = e.code("gina");
    e.m.approve(&gina, filed.id, "", &code).unwrap();
    let grants = e.grants("dave");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].ends_at, end + 10 * DAY);
    assert!(e.managed("dave", "docker"));
}

#[test]
fn given_a_live_active_assignment_then_an_approved_renewal_moves_its_grant_end() {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + 10 * DAY;
    e.m.admin_assign_active(&gina, "dave", "docker", 0, end, "on call this week")
        .unwrap();
    let dave = e.who("dave");
    let filed =
        e.m.renew(&dave, "docker", end + 5 * DAY, "on call longer")
            .unwrap();
    let frank = e.who("frank");
    e.enrol("frank");
    let code = e.code("frank");
    e.m.approve(&frank, filed.id, "", &code).unwrap();
    assert_eq!(e.grants("dave")[0].ends_at, end + 5 * DAY);
}

#[test]
fn given_a_renewal_then_an_owner_may_deny_it_with_a_comment() {
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign(&gina, "dave", "docker", 0, T0 + 3 * DAY)
        .unwrap();
    let dave = e.who("dave");
    let filed =
        e.m.renew(&dave, "docker", T0 + 30 * DAY, "still on the team")
            .unwrap();
    e.enrol("gina");
    let code = e.code("gina");
    let denied = e.m.deny(&gina, filed.id, "moved teams", &code).unwrap();
    assert_eq!(denied.state, "denied");
    let a =
        e.m.store
            .read(|tx| tx.assignment("dave", "docker"))
            .unwrap()
            .unwrap();
    assert_eq!(a.not_after, Some(T0 + 3 * DAY), "the end stays");
}

#[test]
fn given_an_active_assignment_replaced_then_its_grant_follows_the_new_one() {
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign_active(
        &gina,
        "alice",
        "docker",
        0,
        T0 + 10 * DAY,
        "incident response",
    )
    .unwrap();
    let first = e.grants("alice")[0].clone();
    // A shorter active one takes the same grant over, with its end: no membership flap.
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + DAY, "incident, shorter")
        .unwrap();
    let grants = e.grants("alice");
    assert_eq!((grants[0].id, grants[0].ends_at), (first.id, T0 + DAY));
    // An eligible one replaces it: the grant ends, though alice is standing eligible.
    e.m.admin_assign(&gina, "alice", "docker", 0, T0 + 20 * DAY)
        .unwrap();
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert!(e.docker_role_of("alice").is_some(), "still eligible");
}

#[test]
fn given_an_active_assignment_deleted_by_another_path_then_reconciliation_ends_its_grant() {
    // As an access review's removal does: the row goes, whoever deletes it.
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + DAY, "incident response")
        .unwrap();
    let entry = Audit::new("test", AuditAction::AdminUnassign)
        .about("alice", "docker")
        .entry(e.now(), Outcome::Success, "removed");
    e.m.commit(|tx| {
        tx.delete_assignment("alice", "docker")?;
        Ok(tx.audit(entry)?)
    })
    .unwrap();
    e.m.reconcile().unwrap();
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
    let ends = e.eligibility_ends();
    assert!(ends[0].3.contains("active assignment"), "{ends:?}");
}

#[test]
fn given_an_active_assignment_then_the_warnings_and_on_end_of_grants_apply_to_it() {
    use crate::processes::fake::FakeProcesses;
    let mut e = governed();
    e.accounts.set_gid("docker", 999);
    let t = FakeProcesses::default();
    t.add_on_terminal(300, 1003, 1003, &[999], "bash", &[34816]);
    t.state().terminals.push((34816, 1003));
    let gina = e.who("gina");
    let end = T0 + 600;
    e.m.admin_assign_active(&gina, "dave", "docker", 0, end, "on call this week")
        .unwrap();
    // The warning 5 minutes before the end, on dave's terminal.
    e.set(end - 300);
    let (jobs, _) = e.m.warnings_due().unwrap();
    assert_eq!(jobs.len(), 1);
    let results: Vec<_> = jobs
        .into_iter()
        .map(|j| {
            let n = j.run(&t);
            (j, n)
        })
        .collect();
    e.m.record_warnings(results).unwrap();
    assert_eq!(e.audited("end-warning").len(), 1);
    // At the end: expiry, then on_end = "terminate" for the process still carrying docker.
    e.set(end);
    e.m.reconcile().unwrap();
    assert!(!e.managed("dave", "docker"));
    let (jobs, _) = e.m.endings_due().unwrap();
    assert_eq!(jobs.len(), 1, "an ending of the assignment's grant");
    let results: Vec<_> = jobs
        .into_iter()
        .map(|j| {
            let s = j.run(&t);
            (j, s)
        })
        .collect();
    e.m.record_endings(results).unwrap();
    assert!(
        t.state().signals.iter().any(|s| s.0 == 300),
        "{:?}",
        t.state().signals
    );
}

#[test]
fn given_the_assignment_changed_after_a_renewal_was_filed_then_approving_it_is_refused_as_stale() {
    // Each change an owner or admin may make between the filing and the approval: the
    // approval must not put the renewal's end over it.
    const END: i64 = T0 + 10 * DAY;
    let (end, asked) = (END, END + 60 * DAY);
    type Change = fn(&mut Env, &Caller);
    let changes: [(&str, Change); 4] = [
        ("its end moved", |e, gina| {
            e.m.admin_assign(gina, "dave", "docker", 0, T0 + 2 * DAY)
                .unwrap();
        }),
        ("re-assigned as an active one", |e, gina| {
            e.m.admin_assign_active(gina, "dave", "docker", 0, T0 + 2 * DAY, "on call")
                .unwrap();
        }),
        ("unassigned and assigned again, same terms", |e, gina| {
            e.m.admin_unassign(gina, "dave", "docker").unwrap();
            e.m.admin_assign(gina, "dave", "docker", 0, END).unwrap();
        }),
        ("assigned again, same terms", |e, gina| {
            e.m.admin_assign(gina, "dave", "docker", 0, END).unwrap();
        }),
    ];
    for (change, make) in changes {
        let mut e = governed();
        let gina = e.who("gina");
        e.m.admin_assign(&gina, "dave", "docker", 0, end).unwrap();
        let dave = e.who("dave");
        let filed =
            e.m.renew(&dave, "docker", asked, "still on the team")
                .unwrap();
        e.advance(HOUR);
        make(&mut e, &gina);
        let before =
            e.m.store
                .read(|tx| tx.assignment("dave", "docker"))
                .unwrap()
                .unwrap();
        e.enrol("frank");
        let code = e.code("frank");
        let m = assert_err!(
            e.m.approve(&e.who("frank"), filed.id, "ok", &code),
            Conflict
        );
        assert!(
            m.contains("stale") && m.contains("changed after the renewal was filed"),
            "{change}: {m}"
        );
        assert!(m.contains("pim renew docker"), "{change}: {m}");
        let after =
            e.m.store
                .read(|tx| tx.assignment("dave", "docker"))
                .unwrap()
                .unwrap();
        assert_eq!(after, before, "{change}: the change stands");
        assert_ne!(after.not_after, Some(asked), "{change}");
        // The request ends as stale, audited; it cannot be approved later.
        assert_eq!(e.request(filed.id).state, RequestState::Denied, "{change}");
        let records = e.audited("renew-approve");
        assert_eq!(records.len(), 1, "{change}");
        assert_eq!(records[0].outcome, "refused", "{change}");
        assert!(records[0].detail.contains("stale"), "{change}");
        let code = e.code("frank");
        assert_err!(
            e.m.approve(&e.who("frank"), filed.id, "ok", &code),
            Conflict
        );
        // dave may ask again, against the assignment as it is now.
        e.set(e.now().max(after.not_after.unwrap() - 5 * DAY));
        let again =
            e.m.renew(&dave, "docker", after.not_after.unwrap() + 5 * DAY, "again")
                .unwrap();
        let code = e.code("frank");
        e.m.approve(&e.who("frank"), again.id, "ok", &code).unwrap();
    }
}

#[test]
fn given_the_assignment_unchanged_since_the_renewal_then_its_notices_and_grant_do_not_make_it_stale(
) {
    let mut e = governed();
    let gina = e.who("gina");
    let end = T0 + 20 * DAY;
    e.m.admin_assign_active(&gina, "dave", "docker", T0 + DAY, end, "on call")
        .unwrap();
    e.set(end - 14 * DAY);
    let dave = e.who("dave");
    let filed =
        e.m.renew(&dave, "docker", end + 10 * DAY, "on call longer")
            .unwrap();
    // Its start comes (materialised as a grant) and a notice goes out meanwhile.
    e.advance(HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.grants("dave").len(), 1);
    assert_eq!(e.audited("assignment-notice").len(), 1);
    e.enrol("gina");
    let code = e.code("gina");
    e.m.approve(&gina, filed.id, "ok", &code).unwrap();
    assert_eq!(e.grants("dave")[0].ends_at, end + 10 * DAY);
}

/// Commits `change` with an audit record, as a path whose end of the grant did not go
/// through would leave things: the assignment changed, the grant still live.
fn change_assignment_only(e: &mut Env, change: impl FnOnce(&Tx) -> Result<(), StoreError>) {
    let entry = Audit::new("test", AuditAction::AdminUnassign)
        .about("alice", "docker")
        .entry(e.now(), Outcome::Success, "changed");
    e.m.commit(|tx| {
        change(tx)?;
        Ok(tx.audit(entry)?)
    })
    .unwrap();
}

#[test]
fn given_an_active_assignment_unassigned_then_assigned_again_then_its_old_grant_neither_stands_nor_revives(
) {
    let mut e = governed();
    let gina = e.who("gina");
    let root = e.who("root");
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + DAY, "incident response")
        .unwrap();
    let old = e.grants("alice")[0].clone();
    let docker = groups(&["docker"]);
    assert!(e.m.check_access(&root, "alice", &docker).unwrap().allowed);
    // Unassigned, its grant still live (its end did not go through): alice is standing
    // eligible for docker, yet the grant stood on the assignment alone.
    change_assignment_only(&mut e, |tx| {
        tx.delete_assignment("alice", "docker").map(|_| ())
    });
    let refused = e.m.check_access(&root, "alice", &docker).unwrap();
    assert!(!refused.allowed, "{refused:?}");
    // Assigned again, eligible: nothing points at the old grant.
    let eligible = Assignment {
        user: "alice".into(),
        role: "docker".into(),
        not_after: Some(T0 + DAY),
        ..Assignment::default()
    };
    change_assignment_only(&mut e, |tx| {
        tx.put_assignment(&eligible, "gina", T0).map(|_| ())
    });
    assert!(!e.m.check_access(&root, "alice", &docker).unwrap().allowed);
    // Assigned again, active: the new one points at no grant until its own starts.
    let active = Assignment {
        active: true,
        reason: "incident again".into(),
        ..eligible
    };
    change_assignment_only(&mut e, |tx| {
        tx.put_assignment(&active, "gina", T0).map(|_| ())
    });
    assert!(!e.m.check_access(&root, "alice", &docker).unwrap().allowed);
    // Reconciliation ends the old grant and starts the new one's own: never the old one.
    e.m.reconcile().unwrap();
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1);
    assert_ne!(grants[0].id, old.id, "the old grant is not revived");
    assert_eq!(e.last_ended("alice", "docker").id, old.id);
    assert!(e.m.check_access(&root, "alice", &docker).unwrap().allowed);
}

#[test]
fn given_an_orphaned_grant_of_an_earlier_assignment_then_a_new_active_assignment_does_not_take_it_over(
) {
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + DAY, "incident response")
        .unwrap();
    let old = e.grants("alice")[0].clone();
    change_assignment_only(&mut e, |tx| {
        tx.delete_assignment("alice", "docker").map(|_| ())
    });
    // The owner assigns again at once, through the call: the old grant ends, a new one starts.
    let warning =
        e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + 2 * DAY, "incident again")
            .unwrap();
    assert_eq!(warning, "");
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1);
    assert_ne!(grants[0].id, old.id);
    assert_eq!(grants[0].ends_at, T0 + 2 * DAY);
    assert_eq!(e.last_ended("alice", "docker").id, old.id);
    assert!(e.managed("alice", "docker"));
}

#[test]
fn given_a_cap_then_the_end_an_assignment_must_take_counts_from_its_start_or_now() {
    let mut role = docker_role(); // eligible capped at 180d, active at 30d
    let a = |not_before, not_after, active| Assignment {
        not_before,
        not_after,
        active,
        ..Assignment::default()
    };
    let now = T0;
    assert_eq!(
        capped_end(&role, &a(None, Some(now + 180 * DAY), false), now),
        None
    );
    assert_eq!(
        capped_end(&role, &a(None, Some(now + 181 * DAY), false), now),
        Some(now + 180 * DAY)
    );
    assert_eq!(
        capped_end(&role, &a(None, None, false), now),
        Some(now + 180 * DAY),
        "no end: the cap's"
    );
    assert_eq!(
        capped_end(
            &role,
            &a(Some(now - 10 * DAY), Some(now + 200 * DAY), false),
            now
        ),
        Some(now + 180 * DAY),
        "started: from now"
    );
    assert_eq!(
        capped_end(
            &role,
            &a(Some(now + 10 * DAY), Some(now + 200 * DAY), false),
            now
        ),
        Some(now + 190 * DAY),
        "to come: from its start"
    );
    assert_eq!(
        capped_end(&role, &a(None, Some(now + 31 * DAY), true), now),
        Some(now + 30 * DAY),
        "active: its own cap"
    );
    assert_eq!(
        capped_end(&role, &a(None, Some(now - DAY), false), now),
        None,
        "over"
    );
    role.max_eligible_assignment_secs = None;
    assert_eq!(
        capped_end(&role, &a(None, None, false), now),
        None,
        "no cap"
    );
}

#[test]
fn given_a_reload_that_lowers_the_caps_then_longer_assignments_are_brought_within_them() {
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign(&gina, "dave", "docker", 0, T0 + 170 * DAY)
        .unwrap();
    e.m.admin_assign(&gina, "erin", "docker", T0 + 10 * DAY, T0 + 170 * DAY)
        .unwrap();
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + 20 * DAY, "migration")
        .unwrap();
    e.m.admin_assign(&gina, "hank", "docker", 0, T0 + 25 * DAY)
        .unwrap();
    e.m.admin_assign(&e.who("root"), "dave", "db", 0, 0)
        .unwrap();
    let grant = e.grants("alice")[0].clone();
    // alice asked for more before the caps were lowered.
    e.set(T0 + 6 * DAY + 1);
    let alice = e.who("alice");
    let filed =
        e.m.renew(&alice, "docker", T0 + 30 * DAY, "migration goes on")
            .unwrap();
    let now = e.now();
    e.m.take_outbox();

    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\nowners = [\"gina\"]\nmax_eligible_assignment = \"30d\"\n\
         max_active_assignment = \"7d\"\n",
    );
    let text = replaced(
        &text,
        "[roles.db]\n",
        "[roles.db]\nmax_eligible_assignment = \"10d\"\n",
    );
    e.reload(&text);
    let end_of = |e: &mut Env, user: &str, role: &str| {
        e.m.store
            .read(|tx| tx.assignment(user, role))
            .unwrap()
            .unwrap()
            .not_after
    };
    assert_eq!(end_of(&mut e, "dave", "docker"), Some(now + 30 * DAY));
    assert_eq!(
        end_of(&mut e, "erin", "docker"),
        Some(T0 + 40 * DAY),
        "from its start"
    );
    assert_eq!(end_of(&mut e, "alice", "docker"), Some(now + 7 * DAY));
    assert_eq!(
        end_of(&mut e, "hank", "docker"),
        Some(T0 + 25 * DAY),
        "within"
    );
    assert_eq!(
        end_of(&mut e, "dave", "db"),
        Some(now + 10 * DAY),
        "had no end"
    );
    // The live grant of the active one ends with it; and the rest is as any end.
    let grants = e.grants("alice");
    assert_eq!((grants[0].id, grants[0].ends_at), (grant.id, now + 7 * DAY));
    let capped = e.audited("assignment-capped");
    let who: Vec<(&str, &str)> = capped
        .iter()
        .map(|r| (r.user.as_str(), r.role.as_str()))
        .collect();
    assert_eq!(
        who,
        [
            ("alice", "docker"),
            ("dave", "db"),
            ("dave", "docker"),
            ("erin", "docker")
        ]
    );
    assert!(
        capped
            .iter()
            .all(|r| r.actor == "pimd" && r.outcome == "success"),
        "{capped:?}"
    );
    assert!(
        capped[0].detail.contains("max_active_assignment is now 7d"),
        "{}",
        capped[0].detail
    );
    assert!(capped[0]
        .detail
        .contains(&format!("grant {} ends with it", grant.id)));
    // Notices as usual: those whose new end is within 14 days get theirs at once.
    let notices: Vec<(String, String)> = e
        .audited("assignment-notice")
        .into_iter()
        .map(|r| (r.user, r.role))
        .collect();
    assert_eq!(
        notices,
        [
            ("alice".to_string(), "docker".to_string()),
            ("dave".to_string(), "db".to_string())
        ]
    );
    // alice's renewal was filed against the assignment as it was: stale.
    e.enrol("gina");
    let code = e.code("gina");
    let m = assert_err!(e.m.approve(&gina, filed.id, "", &code), Conflict);
    assert!(m.contains("stale"), "{m}");
    // Once within the cap, it stays as it is.
    e.advance(DAY);
    e.m.reconcile().unwrap();
    assert_eq!(e.audited("assignment-capped").len(), 4);
    // The grant ends at the capped end.
    e.set(now + 7 * DAY);
    e.m.reconcile().unwrap();
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
}

fn assignment_of(e: &mut Env, user: &str, role: &str) -> Assignment {
    e.m.store
        .read(|tx| tx.assignment(user, role))
        .unwrap()
        .unwrap()
}

#[test]
fn given_an_active_assignments_grant_revoked_or_deactivated_then_an_approved_renewal_does_not_bring_it_back(
) {
    for how in ["revoked by its owner", "deactivated by its user"] {
        let mut e = governed();
        let gina = e.who("gina");
        let end = T0 + 10 * DAY;
        e.m.admin_assign_active(&gina, "dave", "docker", 0, end, "on call")
            .unwrap();
        let dave = e.who("dave");
        if how.starts_with("revoked") {
            e.m.admin_revoke(&gina, "dave", "docker", "left the rotation")
                .unwrap();
        } else {
            e.m.deactivate(&dave, "docker").unwrap();
        }
        assert!(e.grants("dave").is_empty(), "{how}");
        // dave asks, and a busy admin approves.
        let filed =
            e.m.renew(&dave, "docker", end + 5 * DAY, "on call longer")
                .unwrap();
        e.enrol("frank");
        let code = e.code("frank");
        e.m.approve(&e.who("frank"), filed.id, "", &code).unwrap();
        e.m.reconcile().unwrap();
        assert!(e.grants("dave").is_empty(), "{how}: the end stands");
        assert!(!e.managed("dave", "docker"), "{how}");
        assert_eq!(
            assignment_of(&mut e, "dave", "docker").not_after,
            Some(end + 5 * DAY),
            "{how}: the assignment is renewed"
        );
        // Only once it has lapsed does a renewal start it again (a fresh decision).
        e.set(end + 5 * DAY + 1);
        e.m.reconcile().unwrap();
        let again =
            e.m.renew(&dave, "docker", end + 20 * DAY, "on call again")
                .unwrap();
        let code = e.code("frank");
        e.m.approve(&e.who("frank"), again.id, "", &code).unwrap();
        assert_eq!(e.grants("dave").len(), 1, "{how}");
    }
}

#[test]
fn given_a_taken_over_activation_ending_after_the_renewed_end_then_the_renewal_keeps_its_end() {
    let mut e = governed();
    e.activate("alice", "docker", 2 * HOUR as u64, "", "", "")
        .unwrap();
    let own_end = e.grants("alice")[0].ends_at;
    let gina = e.who("gina");
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + 10 * 60, "on call")
        .unwrap();
    assert_eq!(e.grants("alice")[0].ends_at, own_end, "taken over");
    let alice = e.who("alice");
    let filed =
        e.m.renew(&alice, "docker", T0 + HOUR, "a little longer")
            .unwrap();
    e.enrol("frank");
    let code = e.code("frank");
    e.m.approve(&e.who("frank"), filed.id, "", &code).unwrap();
    assert_eq!(
        assignment_of(&mut e, "alice", "docker").not_after,
        Some(T0 + HOUR)
    );
    assert_eq!(
        e.grants("alice")[0].ends_at,
        own_end,
        "never below the activation's own end"
    );
}

#[test]
fn given_a_stale_renewal_approved_then_the_refusal_is_audited_once() {
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign(&gina, "dave", "docker", 0, T0 + 10 * DAY)
        .unwrap();
    let filed =
        e.m.renew(&e.who("dave"), "docker", T0 + 40 * DAY, "still here")
            .unwrap();
    e.m.admin_assign(&gina, "dave", "docker", 0, T0 + 2 * DAY)
        .unwrap();
    e.enrol("frank");
    let code = e.code("frank");
    let m = assert_err!(
        e.m.approve(&e.who("frank"), filed.id, "ok", &code),
        Conflict
    );
    assert!(
        m.contains("filed (it is now eligible until") && !m.contains("  "),
        "one space where the line continues: {m}"
    );
    let refusals: Vec<AuditRecord> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.actor == "frank" && r.outcome == "refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].action, "renew-approve");
}

#[test]
fn given_the_roles_group_changed_then_a_new_active_assignment_does_not_carry_on_a_grant_of_the_old_group(
) {
    let mut e = governed();
    let gina = e.who("gina");
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + 5 * DAY, "on call")
        .unwrap();
    let old = e.grants("alice")[0].clone();
    assert_eq!(old.group, "docker");
    // The configuration now gives docker another group; reconciliation has not run yet.
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\ngroup = \"deploy\"\nowners = [\"gina\"]\n\
         max_eligible_assignment = \"180d\"\n",
    );
    let text = replaced(
        &text,
        "[roles.wheel]\n",
        "[roles.wheel]\nmax_active_assignment = \"permanent\"\n",
    );
    let (config, problems) =
        pim_config::parse(&text, "pim.toml", &HostDirectory(e.accounts.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    e.m.replace_config(config.unwrap()).unwrap();
    e.m.admin_assign_active(&gina, "alice", "docker", 0, T0 + 6 * DAY, "on call")
        .unwrap();
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_ne!(
        grants[0].id, old.id,
        "the old group's grant is not carried on"
    );
    assert_eq!(grants[0].group, "deploy");
    assert_eq!(
        assignment_of(&mut e, "alice", "docker").grant_id,
        Some(grants[0].id)
    );
    assert!(!e.managed("alice", "docker"));
    assert!(e.managed("alice", "deploy"));
}
