//! Tests of approvals, over the shared environment of `test_support`.

use super::*;
use crate::manager::test_support::*;

/// `prober`, who may not decide request `id`, approves and denies it and a request that does
/// not exist: the answers are the same word for word, and so are `prober`'s own records of
/// them (they read those), which name no requester and no role. Returns the answer.
fn assert_probing_tells_nothing(e: &mut Env, prober: &str, id: i64) -> String {
    let missing = id + 100;
    let msg = assert_err!(e.approve(prober, id, ""), NotFound);
    assert_eq!(msg, assert_err!(e.approve(prober, missing, ""), NotFound));
    assert_eq!(
        assert_err!(e.deny(prober, id, "no"), NotFound),
        assert_err!(e.deny(prober, missing, "no"), NotFound)
    );
    assert_eq!(e.request(id).state, RequestState::Pending);
    let caller = e.who(prober);
    let refusals: Vec<AuditRecord> =
        e.m.audit(&caller, 0, "", "")
            .unwrap()
            .into_iter()
            .filter(|r| r.actor == prober && r.outcome == "refused")
            .collect();
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    let shape = |r: &AuditRecord, n: i64| {
        (
            r.action,
            r.user.clone(),
            r.role.clone(),
            r.detail.replace(&n.to_string(), "N"),
        )
    };
    assert_eq!(shape(&refusals[0], id), shape(&refusals[1], missing));
    assert_eq!(shape(&refusals[2], id), shape(&refusals[3], missing));
    assert_eq!(
        (refusals[0].user.as_str(), refusals[0].role.as_str()),
        ("", "")
    );
    assert!(refusals[0].detail.starts_with(&format!("request {id}:")));
    msg
}

/// Alice, bob and carol enrolled; alice has filed a request for `db` (two hours).
fn with_db_request() -> (Env, i64) {
    let mut e = env();
    for user in ["alice", "bob", "carol"] {
        e.enrol(user);
    }
    e.m.take_outbox();
    let id = e.file_db_request("alice");
    (e, id)
}

#[test]
fn given_approval_role_then_activation_files_a_pending_request() {
    let (mut e, id) = with_db_request();
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "dbadmin"));
    let open = e.requests_of("alice");
    assert_eq!(open.len(), 1);
    let r = &open[0];
    assert_eq!(
        (r.id, r.state.as_str(), r.role.as_str()),
        (id, "pending", "db")
    );
    assert_eq!((r.duration_secs, r.approvals_required), (7200, 2));
    assert_eq!(r.expires_at, r.created_at + HOUR);
    assert!(r.approved_by.is_empty());
    assert_eq!(e.event_kinds(), ["request-filed"]);
    let filed = e.audited("request");
    assert_eq!(filed.len(), 1);
    assert_eq!(filed[0].outcome, "success");
    assert!(filed[0].detail.contains("mfa totp"), "{:?}", filed[0]);

    // A second one for the same role conflicts, before any code is spent.
    let code = e.code("alice");
    let msg = assert_err!(
        e.activate("alice", "db", 0, "restore the orders table", "", &code),
        Conflict
    );
    assert!(msg.contains(&format!("request {id}")), "{msg}");
    assert_eq!(e.requests_of("alice").len(), 1);
    // Filing needs the requester's MFA.
    let msg = assert_err!(
        e.activate("dave", "db", 0, "restore the orders table", "", ""),
        MfaNotEnrolled
    );
    assert!(!msg.is_empty());
}

#[test]
fn given_two_approvals_needed_then_the_grant_starts_at_the_second() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    assert!(e.list_requests("alice").is_empty(), "not her own");
    assert_eq!(e.list_requests("bob"), [id]);
    assert_eq!(e.list_requests("carol"), [id]);
    assert!(e.list_requests("dave").is_empty());
    assert!(e.list_requests("audra").is_empty());

    let msg = assert_err!(e.approve("alice", id, ""), PermissionDenied);
    assert!(msg.contains("own request"), "{msg}");

    let bob = e.who("bob");
    assert_err!(e.m.approve(&bob, id, "", ""), MfaRequired);
    let wrong = e.wrong_code("bob");
    assert_err!(e.m.approve(&bob, id, "", &wrong), InvalidCode);
    assert!(e.requests_of("alice")[0].approved_by.is_empty());
    assert_eq!(e.mfa_status("bob").recent_failures, 1);
    let info = e.approve("bob", id, "looks right").unwrap();
    assert_eq!(info.state, "pending");
    assert_eq!(info.approved_by, ["bob"]);
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(e.list_requests("bob").is_empty(), "already approved by bob");
    assert_eq!(e.list_requests("carol"), [id]);

    let msg = assert_err!(e.approve("bob", id, "again"), Conflict);
    assert!(msg.contains("already approved"), "{msg}");
    assert_eq!(e.requests_of("alice")[0].approved_by, ["bob"]);

    e.advance(600);
    let info = e.approve("carol", id, "").unwrap();
    let approved_at = e.now();
    assert_eq!(info.state, "approved");
    assert_eq!(info.approved_by.len(), 2);
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
    assert!(e.requests_of("alice").is_empty());
    assert_eq!(e.request(id).state, RequestState::Approved);
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].started_at, approved_at);
    assert_eq!(grants[0].ends_at, approved_at + 2 * HOUR);
    assert_eq!(grants[0].reason, "restore the orders table");
    assert!(e.list_requests("carol").is_empty());

    let start = e.audited("grant-start");
    assert_eq!(start.len(), 1);
    assert_eq!(
        (
            start[0].actor.as_str(),
            start[0].user.as_str(),
            start[0].role.as_str()
        ),
        ("carol", "alice", "db")
    );
    let approvals: Vec<(String, String)> = e
        .audited("approve")
        .into_iter()
        .map(|r| (r.actor, r.outcome.into()))
        .collect();
    let pair = |a: &str, o: &str| (a.to_string(), o.to_string());
    assert_eq!(
        approvals,
        [
            pair("alice", "refused"),
            pair("bob", "refused"),
            pair("bob", "refused"),
            pair("bob", "success"),
            pair("bob", "refused"),
            pair("carol", "success"),
        ]
    );

    // The grant expires like any other.
    e.set(approved_at + 2 * HOUR);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("dbadmin").is_empty());
    let events = e.m.take_outbox().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "request-approved",
            "request-approved",
            "grant-started",
            "grant-ended"
        ]
    );
    assert!(events.iter().all(|ev| ev.request_id == id));
    assert_eq!(events[2].actor, "carol");
}

#[test]
fn given_a_denial_then_the_request_ends() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    let msg = assert_err!(e.deny("bob", id, ""), InvalidArgument);
    assert!(msg.contains("comment"), "{msg}");
    assert_err!(e.deny("bob", id, "   "), InvalidArgument);
    e.approve("bob", id, "").unwrap();
    let info = e.deny("carol", id, "not during the freeze").unwrap();
    assert_eq!(info.state, "denied");
    assert_eq!(e.request(id).state, RequestState::Denied);
    let msg = assert_err!(e.approve("carol", id, ""), Conflict);
    assert!(msg.contains("denied"), "{msg}");
    assert_err!(e.deny("bob", id, "too"), Conflict);
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(e.grants("alice").is_empty());
    assert!(e.requests_of("alice").is_empty());
    assert_eq!(e.event_kinds(), ["request-approved", "request-denied"]);
    let denials = e.audited("deny");
    let ok: Vec<_> = denials.iter().filter(|r| r.outcome == "success").collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(
        (
            ok[0].actor.as_str(),
            ok[0].user.as_str(),
            ok[0].reason.as_str()
        ),
        ("carol", "alice", "not during the freeze")
    );
    // She may file again.
    e.file_db_request("alice");
}

#[test]
fn given_non_approver_then_the_answer_of_a_request_that_does_not_exist() {
    let (mut e, id) = with_db_request();
    e.enrol("dave");
    // dave approves no role.
    let msg = assert_probing_tells_nothing(&mut e, "dave", id);
    assert!(!msg.contains(&id.to_string()), "{msg}");
    assert!(!msg.contains("alice") && !msg.contains("db"), "{msg}");
    // bob approves db but not a request that does not exist: the same answer again.
    assert_eq!(assert_err!(e.approve("bob", id + 100, ""), NotFound), msg);
}

#[test]
fn given_an_approver_of_another_role_then_the_answer_of_a_request_that_does_not_exist() {
    let (mut e, id) = with_db_request();
    // gina approves role web, not db.
    let text = replaced(
        CONFIG,
        "[roles.wheel]",
        "[roles.web]\ngroup = \"deploy\"\neligible = [\"dave\"]\nrequire_approval = true\n\
         approvers = [\"gina\"]\napprovals_required = 1\n\n[roles.wheel]",
    );
    e.reload(&text);
    e.enrol("gina");
    assert_probing_tells_nothing(&mut e, "gina", id);
    assert!(e.list_requests("gina").is_empty());
}

#[test]
fn given_approvers_dropped_by_reload_then_their_approvals_no_longer_count() {
    let (mut e, id) = with_db_request();
    for user in ["gina", "hank"] {
        e.enrol(user);
    }
    e.accounts.add_group("dbas", &["gina", "hank"]);
    e.approve("bob", id, "").unwrap();
    // bob is no longer an approver; gina and hank are, through %dbas.
    let text = replaced(
        CONFIG,
        "approvers = [\"bob\", \"carol\", \"alice\"]",
        "approvers = [\"carol\", \"alice\", \"%dbas\"]",
    );
    e.reload(&text);
    let mine = &e.requests_of("alice")[0];
    assert!(mine.approved_by.is_empty(), "{mine:?}");
    assert_eq!(mine.approvals_required, 2);
    assert_eq!(e.request(id).state, RequestState::Pending);

    // gina approves, then leaves %dbas: her approval goes with her.
    let info = e.approve("gina", id, "").unwrap();
    assert_eq!(
        (info.state.as_str(), info.approved_by.len()),
        ("pending", 1)
    );
    e.accounts.add_group("dbas", &["hank"]);
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(
        info.state, "pending",
        "bob's and gina's approvals do not count"
    );
    assert_eq!(info.approved_by, ["carol"]);
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
    let carol = e.audited("approve").pop().unwrap();
    assert!(
        carol.detail.contains(
            "approval 1 of 2 (2 earlier approval(s) by approvers who no longer qualify not counted)"
        ),
        "{carol:?}"
    );

    // bob cannot decide it any more, nor come back in through a deny.
    assert_err!(e.deny("bob", id, "changed my mind"), NotFound);
    let info = e.approve("hank", id, "").unwrap();
    assert_eq!(info.state, "approved");
    assert_eq!(info.approved_by, ["carol", "hank"]);
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
}

#[test]
fn given_an_approvers_group_that_cannot_be_looked_up_then_its_members_do_not_qualify() {
    let (mut e, id) = with_db_request();
    e.enrol("gina");
    e.accounts.add_group("dbas", &["gina"]);
    let text = replaced(
        CONFIG,
        "approvers = [\"bob\", \"carol\", \"alice\"]",
        "approvers = [\"bob\", \"carol\", \"alice\", \"%dbas\"]",
    );
    e.reload(&text);
    e.approve("gina", id, "").unwrap();
    e.accounts.unreachable("dbas");
    // While %dbas cannot be looked up, gina's approval does not count (fail closed).
    assert!(e.requests_of("alice")[0].approved_by.is_empty());
    let info = e.approve("bob", id, "").unwrap();
    assert_eq!(
        (info.state.as_str(), info.approved_by.clone()),
        ("pending", vec!["bob".to_string()])
    );
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
}

#[test]
fn given_approvals_required_changed_by_reload_then_the_current_number_applies() {
    let (mut e, id) = with_db_request();
    e.enrol("gina");
    let text = replaced(
        CONFIG,
        "approvers = [\"bob\", \"carol\", \"alice\"]\napprovals_required = 2",
        "approvers = [\"bob\", \"carol\", \"alice\", \"gina\"]\napprovals_required = 3",
    );
    e.reload(&text);
    assert_eq!(e.requests_of("alice")[0].approvals_required, 3);
    e.approve("bob", id, "").unwrap();
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(
        (info.state.as_str(), info.approvals_required),
        ("pending", 3),
        "two of the three now required"
    );
    assert!(e.grants("alice").is_empty());
    assert_eq!(e.approve("gina", id, "").unwrap().state, "approved");
    assert_eq!(e.grants("alice").len(), 1);
}

#[test]
fn given_approvals_required_lowered_by_reload_then_the_reload_completes_nothing() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "one of two").unwrap();
    let text = replaced(CONFIG, "approvals_required = 2", "approvals_required = 1");
    e.reload(&text);
    // bob's approval would now be enough, but he gave it as one of two: the request waits
    // for the next approver's own decision.
    assert_eq!(e.request(id).state, RequestState::Pending);
    assert!(e.grants("alice").is_empty());
    let mine = &e.requests_of("alice")[0];
    assert_eq!((mine.approved_by.len(), mine.approvals_required), (1, 1));
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(info.state, "approved");
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
}

#[test]
fn given_an_approver_who_approved_then_denying_is_refused_and_the_approval_stands() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    let msg = assert_err!(e.deny("bob", id, "on second thoughts"), Conflict);
    assert!(msg.contains("already approved request"), "{msg}");
    assert!(msg.contains("cannot deny"), "{msg}");
    assert_eq!(e.request(id).state, RequestState::Pending);
    assert_eq!(e.requests_of("alice")[0].approved_by, ["bob"]);
    let refused = e.audited("deny").pop().unwrap();
    assert_eq!(
        (
            refused.actor.as_str(),
            refused.outcome.as_str(),
            refused.user.as_str()
        ),
        ("bob", "refused", "alice")
    );
    assert_eq!(e.approve("carol", id, "").unwrap().state, "approved");
}

#[test]
fn given_cancel_then_only_the_requester_may() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    let bob = e.who("bob");
    assert_err!(e.m.cancel(&bob, id), NotFound);
    assert_eq!(e.request(id).state, RequestState::Pending);
    let alice = e.who("alice");
    let info = e.m.cancel(&alice, id).unwrap();
    assert_eq!(info.state, "cancelled");
    assert_eq!(e.request(id).state, RequestState::Cancelled);
    assert_err!(e.m.cancel(&alice, id), Conflict);
    assert_err!(e.approve("bob", id, ""), Conflict);
    assert!(e.list_requests("bob").is_empty());
    assert_eq!(e.event_kinds(), ["request-cancelled"]);
    let outcomes: Vec<(String, String)> = e
        .audited("cancel")
        .into_iter()
        .map(|r| (r.actor, r.outcome.into()))
        .collect();
    let pair = |a: &str, o: &str| (a.to_string(), o.to_string());
    assert_eq!(
        outcomes,
        [
            pair("bob", "refused"),
            pair("alice", "success"),
            pair("alice", "refused")
        ]
    );
}

#[test]
fn given_undecided_request_then_it_expires_after_its_ttl() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    let expires = e.request(id).expires_at;
    e.set(expires - 1);
    e.m.reconcile().unwrap();
    assert_eq!(e.request(id).state, RequestState::Pending);
    e.set(expires);
    assert!(e.list_requests("bob").is_empty(), "not offered once due");
    e.m.reconcile().unwrap();
    assert_eq!(e.request(id).state, RequestState::Expired);
    assert!(e.requests_of("alice").is_empty());
    let expired = e.audited("request-expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (
            expired[0].actor.as_str(),
            expired[0].user.as_str(),
            expired[0].role.as_str()
        ),
        ("pimd", "alice", "db")
    );
    assert_eq!(e.event_kinds(), ["request-expired"]);
    let msg = assert_err!(e.approve("bob", id, ""), Conflict);
    assert!(msg.contains("expired"), "{msg}");
    assert!(e.accounts.members("dbadmin").is_empty());
}

#[test]
fn given_approval_after_the_ttl_before_reconcile_then_conflict_and_expired() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    let expires = e.request(id).expires_at;
    e.set(expires);
    let msg = assert_err!(e.approve("carol", id, ""), Conflict);
    assert!(msg.contains("expired"), "{msg}");
    assert_eq!(e.request(id).state, RequestState::Expired);
    assert!(e.accounts.members("dbadmin").is_empty());
    assert_eq!(e.audited("request-expire").len(), 1);
    e.m.reconcile().unwrap();
    assert_eq!(e.audited("request-expire").len(), 1, "expired once");
}

#[test]
fn given_requester_no_longer_eligible_at_final_approval_then_the_request_is_void() {
    let mut e = env();
    for user in ["bob", "carol", "gina"] {
        e.enrol(user);
    }
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "gina", "db", 0, 0).unwrap();
    let id = e.file_db_request("gina");
    e.approve("bob", id, "").unwrap();
    e.m.admin_unassign(&frank, "gina", "db").unwrap();
    e.m.take_outbox();

    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(info.state, "denied");
    assert_eq!(e.request(id).state, RequestState::Denied);
    assert!(e.grants("gina").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(!e.managed("gina", "dbadmin"));
    let void = e.audited("request-void");
    assert_eq!(void.len(), 1);
    assert_eq!(
        (
            void[0].actor.as_str(),
            void[0].user.as_str(),
            void[0].outcome.as_str()
        ),
        ("pimd", "gina", "refused")
    );
    assert!(
        void[0].detail.contains("no longer eligible"),
        "{:?}",
        void[0]
    );
    let events = e.m.take_outbox().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["request-approved", "request-denied"]);
    assert!(events[1].detail.contains("no longer eligible"));
}

#[test]
fn given_requester_added_outside_pim_before_final_approval_then_the_request_is_void() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    e.accounts.add_group("dbadmin", &["alice"]);
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(info.state, "denied");
    assert!(e.grants("alice").is_empty());
    let void = e.audited("request-void");
    assert_eq!(void.len(), 1);
    assert!(void[0].detail.contains("outside PIM"), "{:?}", void[0]);
    // Her membership is not PIM's to take.
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
    assert!(e.accounts.calls().is_empty());
}

#[test]
fn given_gpasswd_failure_at_final_approval_then_internal_and_nothing_granted() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    e.accounts.fail_next_add();
    let msg = assert_err!(e.approve("carol", id, ""), Internal);
    assert!(msg.contains("could not add alice"), "{msg}");
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(!e.managed("alice", "dbadmin"));
    assert_eq!(e.request(id).state, RequestState::Approved);
    let last = e.audit_log().pop().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.outcome.as_str()
        ),
        ("carol", "approve", "error")
    );
    assert_eq!(e.audited("grant-failed").len(), 1);
    // A new request can be filed.
    e.file_db_request("alice");
}

#[test]
fn given_list_requests_then_only_what_the_caller_may_decide() {
    let (mut e, alices) = with_db_request();
    e.enrol("dave");
    let daves = e.file_db_request("dave");
    assert_eq!(
        e.list_requests("alice"),
        [daves],
        "approver, but not of her own"
    );
    assert_eq!(e.list_requests("bob"), [alices, daves]);
    e.approve("bob", daves, "").unwrap();
    assert_eq!(e.list_requests("bob"), [alices]);
    assert_eq!(e.list_requests("carol"), [alices, daves]);
    assert!(e.list_requests("dave").is_empty());
    // Alice's approval completes dave's request.
    let info = e.approve("alice", daves, "").unwrap();
    assert_eq!(info.state, "approved");
    assert_eq!(e.accounts.members("dbadmin"), ["dave"]);
    assert_eq!(e.list_requests("carol"), [alices]);
}
