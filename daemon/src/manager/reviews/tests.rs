//! The access review's lifecycle on a fake clock: start (items and recommendations), decide
//! (MFA, last one wins, self-review only with "self", the answer for those who may not see a
//! review), the end applied for each `review_default`, suspension honoured by activation and
//! the PAM check, reinstatement, recurrence, and `pim roles` for those who decide.

use super::*;
use crate::manager::test_support::*;

/// The fixture with gina owning docker (eligible: alice and %ops, that is erin) and dave
/// assigned to docker; `extra` goes into docker's table. Reviews of a minute may be started.
fn reviewed(extra: &str) -> Env {
    let mut e = env();
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        &format!("[roles.docker]\nowners = [\"gina\"]\n{extra}"),
    );
    let text = replaced(
        &text,
        "[daemon]\n",
        "[daemon]\nmin_review_duration = \"1m\"\n",
    );
    e.reload(&text);
    let root = e.who("root");
    e.m.admin_assign(&root, "dave", "docker", 0, 0).unwrap();
    e.enrol("gina");
    e
}

fn start(e: &mut Env, by: &str, secs: u64, reviewers: &[&str]) -> Result<ReviewInfo, PimError> {
    let caller = e.who(by);
    let reviewers: Vec<String> = reviewers.iter().map(|s| s.to_string()).collect();
    e.m.admin_review_start(&caller, "docker", secs, &reviewers)
}

fn decide(e: &mut Env, by: &str, id: i64, user: &str, d: &str) -> Result<ReviewItemInfo, PimError> {
    let code = e.code(by);
    let caller = e.who(by);
    e.m.review_decide(&caller, id, user, d, "checked with the team", &code)
}

fn show(e: &mut Env, id: i64) -> ReviewInfo {
    let root = e.who("root");
    e.m.admin_review_show(&root, id).unwrap()
}

fn result_of(r: &ReviewInfo, user: &str) -> String {
    r.items
        .iter()
        .find(|i| i.user == user)
        .map(|i| i.result.clone())
        .unwrap_or_else(|| panic!("no item for {user}"))
}

#[test]
fn given_a_one_off_review_then_its_items_are_standing_entries_groups_expanded_and_assignments() {
    let mut e = reviewed("");
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let r = start(&mut e, "gina", 3600, &[]).unwrap();
    assert_eq!(r.reviewers, ["owners"], "the role's reviewers by default");
    assert_eq!(r.default_decision, "remove");
    assert_eq!(r.ends_at, e.now() + 3600);
    let items: Vec<(&str, &str, &str)> = r
        .items
        .iter()
        .map(|i| {
            (
                i.user.as_str(),
                i.access.as_str(),
                i.recommendation.as_str(),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("alice", "standing", "keep"),
            ("dave", "assignment", "remove"),
            ("erin", "standing", "remove"),
        ]
    );
    let start = e.audited("review-start");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].actor, "gina");
    assert!(start[0].detail.contains("3 item(s)"), "{}", start[0].detail);
}

#[test]
fn given_recommendations_then_they_come_from_the_grants_table() {
    let now = T0;
    assert_eq!(recommend(None, false, now).0, ReviewDecision::Remove);
    assert_eq!(
        recommend(Some(now - 86_400), false, now).0,
        ReviewDecision::Keep
    );
    let (d, why) = recommend(Some(now - UNUSED_SECS - 1), false, now);
    assert_eq!(d, ReviewDecision::Remove);
    assert!(why.contains("no activation in 30 days"), "{why}");
    assert_eq!(recommend(None, true, now).0, ReviewDecision::Keep);
}

#[test]
fn given_decisions_then_the_end_applies_them_and_the_default_to_the_rest() {
    let mut e = reviewed("");
    let dave_grant = e
        .activate("dave", "docker", 8 * 3600, "", "", "")
        .unwrap()
        .grant;
    let erin_grant = e
        .activate("erin", "docker", 8 * 3600, "", "", "")
        .unwrap()
        .grant;
    assert!(dave_grant.id > 0 && erin_grant.id > 0);
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    decide(&mut e, "gina", r.id, "alice", "keep").unwrap();
    decide(&mut e, "gina", r.id, "dave", "remove").unwrap();
    // erin is left to the default (remove).

    e.set(r.ends_at - 1);
    e.m.reconcile().unwrap();
    assert!(show(&mut e, r.id).completed_at == 0, "not before its end");
    assert_eq!(e.m.next_deadline().unwrap(), Some(r.ends_at));

    e.advance(1);
    e.m.reconcile().unwrap();
    let done = show(&mut e, r.id);
    assert!(done.completed_at > 0);
    assert_eq!(result_of(&done, "alice"), "kept (decided by gina)");
    assert_eq!(
        result_of(&done, "dave"),
        "removed: assignment removed (decided by gina)"
    );
    assert_eq!(
        result_of(&done, "erin"),
        "removed: standing entry suspended (default remove)"
    );
    // dave: assignment gone, grant ended, membership out; erin: suspended, grant ended.
    assert!(e.docker_role_of("dave").is_none());
    assert!(e.docker_role_of("erin").is_none());
    assert!(e.docker_role_of("alice").is_some());
    assert!(!e.managed("dave", "docker"));
    assert!(!e.managed("erin", "docker"));
    assert!(!e.accounts.members("docker").contains(&"dave".to_string()));
    let ends = e.eligibility_ends();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert!(ends
        .iter()
        .all(|(_, _, _, why)| why.contains("access review")));
    assert_err!(e.activate("erin", "docker", 0, "", "", ""), NotEligible);
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert_eq!(e.audited("review-apply").len(), 3);
    assert_eq!(e.audited("review-end").len(), 1);
    assert!(e.event_kinds().contains(&"review-ended".to_string()));
}

#[test]
fn given_default_keep_then_undecided_items_stay() {
    let mut e = reviewed("review_default = \"keep\"\n");
    let r = start(&mut e, "gina", 60, &[]).unwrap();
    assert_eq!(r.default_decision, "keep");
    e.advance(60);
    e.m.reconcile().unwrap();
    let done = show(&mut e, r.id);
    for user in ["alice", "dave", "erin"] {
        assert_eq!(result_of(&done, user), "kept (default keep)");
        assert!(e.docker_role_of(user).is_some(), "{user}");
    }
}

#[test]
fn given_default_recommendation_then_the_unused_are_removed_and_the_used_kept() {
    let mut e = reviewed("review_default = \"recommendation\"\n");
    e.activate("alice", "docker", 60, "", "", "").unwrap();
    e.advance(120);
    e.m.reconcile().unwrap();
    let r = start(&mut e, "gina", 60, &[]).unwrap();
    e.advance(60);
    e.m.reconcile().unwrap();
    let done = show(&mut e, r.id);
    assert_eq!(result_of(&done, "alice"), "kept (default recommendation)");
    assert!(result_of(&done, "dave").starts_with("removed"));
    assert!(result_of(&done, "erin").starts_with("removed"));
    assert!(e.docker_role_of("alice").is_some());
    assert!(e.docker_role_of("erin").is_none());
}

#[test]
fn given_two_reviewers_then_the_last_decision_before_the_end_wins() {
    let mut e = reviewed("");
    e.enrol("frank");
    let r = start(&mut e, "gina", 600, &["owners", "admins"]).unwrap();
    decide(&mut e, "frank", r.id, "alice", "remove").unwrap();
    let item = decide(&mut e, "gina", r.id, "alice", "keep").unwrap();
    assert_eq!(
        (item.decision.as_str(), item.decided_by.as_str()),
        ("keep", "gina")
    );
    let decided = e.audited("review-decide");
    assert!(
        decided[1].detail.contains("replaces remove by frank"),
        "{}",
        decided[1].detail
    );
    e.advance(600);
    e.m.reconcile().unwrap();
    assert_eq!(
        result_of(&show(&mut e, r.id), "alice"),
        "kept (decided by gina)"
    );
    // After the end nobody decides any more.
    let m = assert_err!(decide(&mut e, "gina", r.id, "alice", "remove"), Conflict);
    assert!(m.contains("has ended"), "{m}");
}

#[test]
fn given_a_reviewer_then_their_own_item_is_refused_unless_reviewers_say_self() {
    let mut e = reviewed("");
    e.enrol("erin");
    e.enrol("alice");
    // erin reviews through %ops, and is an item herself (standing through %ops).
    let r = start(&mut e, "gina", 600, &["%ops"]).unwrap();
    let m = assert_err!(
        decide(&mut e, "erin", r.id, "erin", "keep"),
        PermissionDenied
    );
    assert!(m.contains("your own access"), "{m}");
    decide(&mut e, "erin", r.id, "alice", "keep").unwrap();
    // Self-review: each user decides their own item, nobody else's.
    let s = start(&mut e, "gina", 600, &["self"]).unwrap();
    decide(&mut e, "alice", s.id, "alice", "keep").unwrap();
    let other = assert_err!(decide(&mut e, "alice", s.id, "erin", "keep"), NotFound);
    let absent = assert_err!(decide(&mut e, "alice", s.id, "nobody", "keep"), NotFound);
    assert_eq!(
        other.replace("erin", "X"),
        absent.replace("nobody", "X"),
        "another's item reads as one that does not exist"
    );
    let alice = e.who("alice");
    let mine = e.m.list_reviews(&alice).unwrap();
    let items: Vec<Vec<String>> = mine
        .iter()
        .map(|r| r.items.iter().map(|i| i.user.clone()).collect())
        .collect();
    assert_eq!(
        items,
        [vec!["alice".to_string()]],
        "alice sees only her own item"
    );
}

#[test]
fn given_a_non_reviewer_non_admin_then_every_review_call_is_refused_as_if_there_were_none() {
    let mut e = reviewed("");
    e.enrol("hank");
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    let hank = e.who("hank");
    // Deciding: the same answer as for a review that does not exist.
    let seen = assert_err!(decide(&mut e, "hank", r.id, "alice", "remove"), NotFound);
    let none = assert_err!(decide(&mut e, "hank", 9999, "alice", "remove"), NotFound);
    assert_eq!(seen, none);
    // Reading the record: likewise.
    let seen = assert_err!(e.m.admin_review_show(&hank, r.id), NotFound);
    let none = assert_err!(e.m.admin_review_show(&hank, 9999), NotFound);
    assert_eq!(seen, none);
    // Starting one and reinstating: not theirs to govern.
    assert_err!(start(&mut e, "hank", 600, &[]), PermissionDenied);
    assert_err!(
        e.m.admin_reinstate(&hank, "erin", "docker"),
        PermissionDenied
    );
    // An owner of docker may not start one on another role.
    let gina = e.who("gina");
    assert_err!(
        e.m.admin_review_start(&gina, "admin", 60, &[]),
        PermissionDenied
    );
    assert!(e.m.list_reviews(&hank).unwrap().is_empty());
    // Each refusal is audited; hank's records name neither the item's user nor the role.
    let refused: Vec<AuditRecord> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.actor == "hank" && r.outcome == "refused")
        .collect();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert!(refused
        .iter()
        .filter(|r| r.action == "review-decide")
        .all(|r| r.user.is_empty() && r.role.is_empty()));
    // Nothing was decided.
    assert!(show(&mut e, r.id)
        .items
        .iter()
        .all(|i| i.decision.is_empty()));
}

#[test]
fn given_a_wrong_code_then_the_decision_is_refused() {
    let mut e = reviewed("");
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    let gina = e.who("gina");
    let wrong = e.wrong_code("gina");
    assert_err!(
        e.m.review_decide(&gina, r.id, "alice", "keep", "", &wrong),
        InvalidCode
    );
    assert!(show(&mut e, r.id)
        .items
        .iter()
        .all(|i| i.decision.is_empty()));
}

#[test]
fn given_a_suspended_standing_entry_then_pam_refuses_and_reinstate_lets_the_user_activate() {
    let mut e = reviewed("");
    let r = start(&mut e, "gina", 60, &[]).unwrap();
    e.advance(60);
    e.m.reconcile().unwrap();
    assert!(result_of(&show(&mut e, r.id), "alice").starts_with("removed"));
    assert_err!(e.activate("alice", "docker", 0, "", "", ""), NotEligible);
    // alice is still eligible for the other roles that list her.
    assert!(e.activate("alice", "rescue", 0, "", "", "").is_ok());

    // The PAM check honours the suspension: a grant that stands only on it does not count,
    // even before reconciliation ends it.
    let root = e.who("root");
    e.m.reinstate_for_test("alice", "docker");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert!(grant.id > 0);
    let allowed =
        e.m.check_access(&root, "alice", &groups(&["docker"]))
            .unwrap();
    assert!(allowed.allowed, "{allowed:?}");
    e.m.suspend_for_test("alice", "docker");
    let refused =
        e.m.check_access(&root, "alice", &groups(&["docker"]))
            .unwrap();
    assert!(!refused.allowed, "{refused:?}");
    e.m.reconcile().unwrap();
    assert!(
        !e.managed("alice", "docker"),
        "reconciliation ended the grant"
    );

    // Reinstated by the owner: eligible again, audited.
    let gina = e.who("gina");
    e.m.admin_reinstate(&gina, "alice", "docker").unwrap();
    assert!(e.activate("alice", "docker", 0, "", "", "").is_ok());
    let reinstated = e.audited("admin-reinstate");
    assert_eq!(
        reinstated.iter().filter(|r| r.actor == "gina").count(),
        1,
        "{reinstated:?}"
    );
    let again = assert_err!(e.m.admin_reinstate(&gina, "alice", "docker"), NotFound);
    assert!(again.contains("not suspended"), "{again}");
}

#[test]
fn given_an_owner_suspended_by_a_review_then_reinstating_themselves_is_refused_and_audited() {
    let mut e = env();
    // alice owns docker and is also one of its standing entries.
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\nowners = [\"alice\", \"gina\"]\n",
    );
    let text = replaced(
        &text,
        "[daemon]\n",
        "[daemon]\nmin_review_duration = \"1m\"\n",
    );
    e.reload(&text);
    e.enrol("gina");
    let r = start(&mut e, "gina", 60, &[]).unwrap();
    e.advance(60);
    e.m.reconcile().unwrap();
    assert!(result_of(&show(&mut e, r.id), "alice").starts_with("removed"));

    let alice = e.who("alice");
    let m = assert_err!(
        e.m.admin_reinstate(&alice, "alice", "docker"),
        PermissionDenied
    );
    assert!(m.contains("cannot reinstate themselves"), "{m}");
    assert_err!(e.activate("alice", "docker", 0, "", "", ""), NotEligible);
    let refused: Vec<AuditRecord> = e
        .audited("admin-reinstate")
        .into_iter()
        .filter(|r| r.actor == "alice")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].outcome, "refused");
    assert_eq!(
        (refused[0].user.as_str(), refused[0].role.as_str()),
        ("alice", "docker")
    );

    // Another owner may; so may an administrator.
    let gina = e.who("gina");
    e.m.admin_reinstate(&gina, "alice", "docker").unwrap();
    assert!(e.activate("alice", "docker", 0, "", "", "").is_ok());
    e.m.suspend_for_test("alice", "docker");
    let root = e.who("root");
    e.m.admin_reinstate(&root, "alice", "docker").unwrap();
}

#[test]
fn given_review_every_then_reviews_recur_from_the_previous_start() {
    let mut e = reviewed("review_every = \"1d\"\nreview_duration = \"1h\"\n");
    let t0 = e.now();
    e.m.reconcile().unwrap();
    let gina = e.who("gina");
    let first = e.m.list_reviews(&gina).unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].recurring);
    assert_eq!(first[0].started_by, "pimd");
    assert_eq!((first[0].started_at, first[0].ends_at), (t0, t0 + 3600));
    assert_eq!(e.m.next_deadline().unwrap(), Some(t0 + 3600));

    e.advance(3600);
    e.m.reconcile().unwrap();
    assert!(show(&mut e, first[0].id).completed_at > 0);
    assert!(e.m.list_reviews(&gina).unwrap().is_empty());
    assert_eq!(e.m.next_deadline().unwrap(), Some(t0 + 86_400));

    // pimd was down for a day and a half: one review, on the schedule, with its full hour.
    e.set(t0 + 86_400 + 86_400 + 43_200);
    e.m.reconcile().unwrap();
    let next = e.m.list_reviews(&gina).unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].started_at, t0 + 2 * 86_400);
    assert_eq!(next[0].ends_at, e.now() + 3600);
}

#[test]
fn given_an_approver_or_owner_then_decided_roles_names_their_roles() {
    let mut e = reviewed("");
    let bob = e.who("bob");
    let roles = e.m.decided_roles(&bob).unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(
        (roles[0].role.as_str(), roles[0].capacities.clone()),
        ("db", vec!["approver".to_string()])
    );
    let gina = e.who("gina");
    let before = e.m.decided_roles(&gina).unwrap();
    assert_eq!(before[0].capacities, ["owner"]);
    start(&mut e, "gina", 600, &[]).unwrap();
    let during = e.m.decided_roles(&gina).unwrap();
    assert_eq!(during[0].capacities, ["owner", "reviewer"]);
    let hank = e.who("hank");
    assert!(e.m.decided_roles(&hank).unwrap().is_empty());
}

#[test]
fn given_an_auditor_then_they_read_the_record_but_start_nothing() {
    let mut e = reviewed("");
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    let audra = e.who("audra");
    assert_eq!(e.m.admin_review_show(&audra, r.id).unwrap().items.len(), 3);
    assert_err!(
        e.m.admin_review_start(&audra, "docker", 60, &[]),
        PermissionDenied
    );
    let bad = e.who("root");
    assert_err!(
        e.m.admin_review_start(&bad, "docker", 60, &["%no such".to_string()]),
        InvalidArgument
    );
}

impl Manager {
    fn suspend_for_test(&mut self, user: &str, role: &str) {
        let entry =
            Audit::new("test", AuditAction::ReviewApply).entry(self.now(), Outcome::Success, "");
        self.commit(|tx| {
            tx.suspend(user, role, 0, 0)?;
            Ok(tx.audit(entry)?)
        })
        .unwrap();
    }

    fn reinstate_for_test(&mut self, user: &str, role: &str) {
        let entry =
            Audit::new("test", AuditAction::AdminReinstate).entry(self.now(), Outcome::Success, "");
        self.commit(|tx| {
            tx.reinstate(user, role)?;
            Ok(tx.audit(entry)?)
        })
        .unwrap();
    }
}

#[test]
fn given_an_active_assignment_removed_by_a_review_then_its_grant_ends_with_it() {
    let mut e = reviewed("");
    let gina = e.who("gina");
    // hank holds docker's group by an active assignment; he is eligible no other way.
    e.m.admin_assign_active(&gina, "hank", "docker", 0, e.now() + 2 * HOUR, "on call")
        .unwrap();
    assert!(e.managed("hank", "docker"));
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    let hank = r.items.iter().find(|i| i.user == "hank").expect("an item");
    assert_eq!(hank.access, "active assignment");
    decide(&mut e, "gina", r.id, "hank", "remove").unwrap();
    e.set(r.ends_at);
    e.m.reconcile().unwrap();
    assert_eq!(
        result_of(&show(&mut e, r.id), "hank"),
        "removed: active assignment removed (decided by gina)"
    );
    assert!(!e.managed("hank", "docker"));
    assert!(e.grants("hank").is_empty());
}

#[test]
fn given_review_events_then_the_roles_owners_see_them_and_others_do_not() {
    let mut e = reviewed("");
    e.m.take_outbox();
    start(&mut e, "gina", 600, &[]).unwrap();
    let events = e.m.take_outbox().events;
    let started = events
        .iter()
        .find(|ev| ev.kind == "review-started")
        .expect("an event");
    assert!(e.m.may_see(&e.who("gina"), started));
    assert!(e.m.may_see(&e.who("audra"), started));
    assert!(!e.m.may_see(&e.who("hank"), started));
    assert!(!e.m.may_see(&e.who("alice"), started));
}

#[test]
fn given_review_durations_then_below_the_minimum_or_above_a_year_is_refused_naming_the_bound() {
    let m = assert_err!(check_review_duration(1, 3600), InvalidArgument);
    assert!(
        m.contains("at least 1h") && m.contains("[daemon] min_review_duration"),
        "{m}"
    );
    assert!(
        m.contains("would last 1s") && m.contains("--duration"),
        "{m}"
    );
    assert_err!(check_review_duration(3599, 3600), InvalidArgument);
    assert!(check_review_duration(3600, 3600).is_ok());
    assert!(check_review_duration(0, 3600).is_ok(), "the role's own");
    assert!(check_review_duration(365 * 86_400, 3600).is_ok());
    let m = assert_err!(
        check_review_duration(365 * 86_400 + 1, 3600),
        InvalidArgument
    );
    assert!(m.contains("at most 365d"), "{m}");
    assert_err!(check_review_duration(u64::MAX, 3600), InvalidArgument);
}

#[test]
fn given_an_owner_starting_a_one_second_review_then_refused_by_the_default_minimum_and_nobody_suspended(
) {
    // The attack: a review over before anyone can look, whose default removes everyone.
    let mut e = env();
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\nowners = [\"gina\"]\n",
    );
    e.reload(&text);
    assert_eq!(e.m.config().daemon.min_review_duration_secs, 3600);
    for secs in [1, 3599, 365 * 86_400 + 1] {
        let m = assert_err!(start(&mut e, "gina", secs, &[]), InvalidArgument);
        assert!(
            m.contains("min_review_duration") || m.contains("at most 365d"),
            "{m}"
        );
    }
    let refused = e.audited("review-start");
    assert_eq!(refused.len(), 3);
    assert!(refused
        .iter()
        .all(|r| r.outcome == "refused" && r.actor == "gina"));
    e.advance(2);
    e.m.reconcile().unwrap();
    assert!(e.audited("review-apply").is_empty());
    assert!(
        e.docker_role_of("alice").is_some(),
        "alice is still eligible"
    );
    let r = start(&mut e, "gina", 3600, &[]).unwrap();
    assert_eq!(r.ends_at, e.now() + 3600);
}

#[test]
fn given_an_assignment_changed_during_a_review_then_its_end_leaves_it_and_says_so() {
    let mut e = reviewed("");
    let gina = e.who("gina");
    e.m.admin_assign(&gina, "hank", "docker", 0, 0).unwrap();
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    decide(&mut e, "gina", r.id, "dave", "remove").unwrap();
    decide(&mut e, "gina", r.id, "hank", "remove").unwrap();
    // While the review runs, an owner gives dave an active assignment: not what the
    // reviewers looked at.
    e.m.admin_assign_active(&gina, "dave", "docker", 0, e.now() + 2 * HOUR, "on call")
        .unwrap();
    assert!(e.managed("dave", "docker"));
    e.set(r.ends_at);
    e.m.reconcile().unwrap();
    let done = show(&mut e, r.id);
    assert_eq!(
        result_of(&done, "dave"),
        "removed: active assignment changed since the review started; not removed \
         (decided by gina)"
    );
    assert_eq!(
        result_of(&done, "hank"),
        "removed: assignment removed (decided by gina)"
    );
    let dave =
        e.m.store
            .read(|tx| tx.assignment("dave", "docker"))
            .unwrap();
    assert!(dave.is_some_and(|a| a.active), "the change stands");
    assert!(e.managed("dave", "docker"), "and its grant");
    assert!(e.docker_role_of("hank").is_none());
    let applied: Vec<AuditRecord> = e
        .audited("review-apply")
        .into_iter()
        .filter(|r| r.user == "dave")
        .collect();
    assert_eq!(applied.len(), 1);
    assert!(
        applied[0]
            .detail
            .contains("changed since the review started; not removed"),
        "{}",
        applied[0].detail
    );
    let end = e.audited("review-end");
    assert!(
        // alice and erin (standing, default remove), hank; dave left.
        end[0]
            .detail
            .contains("0 kept, 3 removed (1 to remove left"),
        "{}",
        end[0].detail
    );
}

#[test]
fn given_an_assignment_removed_during_a_review_then_its_end_says_nothing_was_left_to_remove() {
    let mut e = reviewed("");
    let r = start(&mut e, "gina", 600, &[]).unwrap();
    decide(&mut e, "gina", r.id, "dave", "remove").unwrap();
    e.m.admin_unassign(&e.who("gina"), "dave", "docker")
        .unwrap();
    e.set(r.ends_at);
    e.m.reconcile().unwrap();
    assert_eq!(
        result_of(&show(&mut e, r.id), "dave"),
        "removed: assignment removed since the review started (decided by gina)"
    );
}

#[test]
fn given_a_roles_review_duration_below_the_minimum_then_its_reviews_last_the_minimum() {
    let mut e = env();
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\nowners = [\"gina\"]\nreview_every = \"1d\"\nreview_duration = \"30s\"\n",
    );
    let text = replaced(
        &text,
        "[daemon]\n",
        "[daemon]\nmin_review_duration = \"10m\"\n",
    );
    let problems = e.take_config(&text);
    assert_eq!(problems.len(), 1, "the checker warns: {problems:?}");
    assert_eq!(problems[0].key, "roles.docker.review_duration");
    e.m.reconcile().unwrap();
    let now = e.now();
    let recurring = e.m.list_reviews(&e.who("gina")).unwrap();
    assert_eq!(recurring.len(), 1);
    assert_eq!(recurring[0].ends_at, now + 600, "the minimum, not 30s");
    let one_off = start(&mut e, "gina", 0, &[]).unwrap();
    assert_eq!(one_off.ends_at, now + 600);
}
