//! The alerts through the manager: raised once with their audit records and events, listed
//! by admins and auditors only, dismissed by admins only, resolved when their cause goes, and
//! a dismissed one quiet while its cause persists. The host is the fake accounts, a fake
//! process table and sudoers text.

use super::*;
use crate::alerts::host;
use crate::manager::test_support::*;
use crate::processes::fake::FakeProcesses;
use std::path::PathBuf;

/// A process of the fake host: (pid, uid, supplementary gids).
type Proc = (u32, u32, &'static [u32]);

/// Looks at the fake host (these processes, and `sudoers` as /etc/sudoers.d/local) and
/// evaluates.
fn look(e: &mut Env, listed: Vec<Proc>, sudoers: &str) {
    let processes = FakeProcesses::default();
    for (pid, uid, groups) in listed {
        processes.add(pid, uid, uid, groups, "sh");
    }
    let text = sudoers.to_string();
    let read = move || pim_sudoers::Sudoers {
        files: vec![(PathBuf::from("/etc/sudoers.d/local"), text.clone())],
        ..Default::default()
    };
    let groups = e.m.alert_groups();
    let facts = host::look(&e.accounts, &processes, &read, &groups);
    e.m.record_host_look(facts).unwrap();
}

fn alerts(e: &mut Env, all: bool) -> Vec<AlertInfo> {
    let audra = e.who("audra");
    e.m.list_alerts(&audra, all).unwrap()
}

/// The open alerts' keys, sorted.
fn open_keys(e: &mut Env) -> Vec<String> {
    let mut keys: Vec<String> = alerts(e, false).into_iter().map(|a| a.key).collect();
    keys.sort();
    keys
}

fn alert_events(e: &mut Env) -> Vec<(String, String)> {
    e.m.take_outbox()
        .events
        .into_iter()
        .filter(|ev| ev.kind.is_alert())
        .map(|ev| (ev.kind.to_string(), ev.detail))
        .collect()
}

fn id_of(e: &mut Env, key: &str) -> i64 {
    alerts(e, false)
        .into_iter()
        .find(|a| a.key == key)
        .unwrap_or_else(|| panic!("no open alert {key}"))
        .id
}

#[test]
fn given_the_fixture_then_its_weak_roles_are_raised_once_and_audited() {
    let mut e = env();
    let weak: Vec<String> = open_keys(&mut e);
    assert_eq!(
        weak,
        [
            "weak-role:docker",
            "weak-role:rescue",
            "weak-role:ticketed",
            "weak-role:wheel"
        ]
    );
    let raised = e.audited("alert-raise");
    assert_eq!(raised.len(), 4);
    assert!(raised.iter().all(|r| r.actor == "pimd"));
    assert!(
        raised[0].detail.contains("no MFA"),
        "{:?}",
        raised[0].detail
    );
    // Evaluated again (a reconciliation, a reload): nothing raised twice.
    e.m.reconcile().unwrap();
    e.m.evaluate_alerts().unwrap();
    assert_eq!(e.audited("alert-raise").len(), 4);
    assert!(alert_events(&mut e).is_empty());
    // A reload that strengthens a role resolves its alert, audited and sent.
    let strong = replaced(
        CONFIG,
        "[roles.docker]\neligible = [\"alice\", \"%ops\"]\nrequire_mfa = false\nrequire_justification = false\n",
        "[roles.docker]\neligible = [\"alice\", \"%ops\"]\n",
    );
    e.reload(&strong);
    assert!(!open_keys(&mut e).contains(&"weak-role:docker".to_string()));
    let resolved = e.audited("alert-resolve");
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].role, "docker");
    let events = alert_events(&mut e);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "alert-resolved");
    let all = alerts(&mut e, true);
    assert!(all
        .iter()
        .any(|a| a.key == "weak-role:docker" && a.state == "resolved" && a.closed_at > 0));
}

#[test]
fn given_someone_not_admin_nor_auditor_then_listing_is_refused_and_dismissing_needs_an_admin() {
    let mut e = env();
    let alice = e.who("alice");
    let msg = assert_err!(e.m.list_alerts(&alice, false), PermissionDenied);
    assert!(msg.contains("auditors"), "{msg}");
    let refused = e.audited("list-alerts");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].outcome, "refused");

    let id = id_of(&mut e, "weak-role:docker");
    // An auditor may see them, not dismiss them.
    let audra = e.who("audra");
    assert_err!(e.m.dismiss_alert(&audra, id, "known"), PermissionDenied);
    assert_err!(e.m.dismiss_alert(&alice, id, "known"), PermissionDenied);
    assert_eq!(alerts(&mut e, false).len(), 4);
    // An admin must say why.
    let frank = e.who("frank");
    assert_err!(e.m.dismiss_alert(&frank, id, "  "), InvalidArgument);
    let dismissed =
        e.m.dismiss_alert(&frank, id, "docker is for the test lab")
            .unwrap();
    assert_eq!(dismissed.state, "dismissed");
    assert_eq!(dismissed.dismissed_by, "frank");
    let record = e.audited("alert-dismiss");
    let success: Vec<_> = record.iter().filter(|r| r.outcome == "success").collect();
    assert_eq!(success.len(), 1);
    assert_eq!(success[0].reason, "docker is for the test lab");
    assert_eq!(alert_events(&mut e)[0].0, "alert-dismissed");
    // Twice: there is no open alert of that id any more.
    assert_err!(e.m.dismiss_alert(&frank, id, "again"), NotFound);
    // Dismissed, and its cause persists: not raised again.
    e.m.evaluate_alerts().unwrap();
    assert!(!open_keys(&mut e).contains(&"weak-role:docker".to_string()));
    assert_eq!(e.audited("alert-raise").len(), 4);
}

#[test]
fn given_a_member_added_by_hand_then_member_outside_pim_until_they_are_out() {
    let mut e = env();
    look(&mut e, vec![], "");
    assert!(!open_keys(&mut e).iter().any(|k| k.starts_with("member")));
    // gpasswd -a bob sudo, by hand.
    e.accounts.add_group("sudo", &["bob"]);
    look(&mut e, vec![], "");
    let key = "member-outside-pim:sudo:bob";
    assert!(open_keys(&mut e).contains(&key.to_string()));
    let events = alert_events(&mut e);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "alert-raised");
    // A member PIM added is not one.
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    look(&mut e, vec![], "");
    assert!(!open_keys(&mut e).contains(&"member-outside-pim:sudo:alice".to_string()));

    // Dismissed: quiet while bob stays; released when he goes; raised anew when he is back.
    let id = id_of(&mut e, key);
    let frank = e.who("frank");
    e.m.dismiss_alert(&frank, id, "bob is on call").unwrap();
    look(&mut e, vec![], "");
    assert!(!open_keys(&mut e).contains(&key.to_string()));
    e.accounts.add_group("sudo", &["alice"]);
    look(&mut e, vec![], "");
    assert_eq!(e.audited("alert-release").len(), 1);
    e.accounts.add_group("sudo", &["alice", "bob"]);
    look(&mut e, vec![], "");
    let again = id_of(&mut e, key);
    assert_ne!(again, id);

    // Out of the group: resolved.
    e.accounts.add_group("sudo", &["alice"]);
    look(&mut e, vec![], "");
    let all = alerts(&mut e, true);
    let row = all.iter().find(|a| a.id == again).unwrap();
    assert_eq!(row.state, "resolved");
}

#[test]
fn given_a_process_carrying_a_managed_gid_without_a_grant_then_process_outside_grant() {
    let mut e = env();
    e.accounts.set_gid("sudo", 27);
    look(&mut e, vec![(4242, 1001, &[1001, 27])], "");
    let key = "process-outside-grant:sudo:bob";
    assert!(open_keys(&mut e).contains(&key.to_string()));
    let alert = alerts(&mut e, false)
        .into_iter()
        .find(|a| a.key == key)
        .unwrap();
    assert!(alert.detail.contains("pid 4242"), "{alert:?}");
    assert_eq!(alert.user, "bob");
    // The process ends: resolved.
    look(&mut e, vec![], "");
    assert!(!open_keys(&mut e).contains(&key.to_string()));
    // alice's with a grant is not one.
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    look(&mut e, vec![(5000, 1000, &[27])], "");
    assert!(!open_keys(&mut e).iter().any(|k| k.starts_with("process")));
}

#[test]
fn given_a_sudoers_rule_around_the_managed_groups_then_sudoers_outside_pim_with_its_line() {
    let mut e = env();
    look(
        &mut e,
        vec![],
        "%sudo ALL=(ALL:ALL) ALL\n\nalice ALL=(ALL) ALL\n",
    );
    let alert = sudoers_alert(&mut e, "alice");
    assert!(
        alert.detail.starts_with("/etc/sudoers.d/local:3:"),
        "{alert:?}"
    );
    look(&mut e, vec![], "%sudo ALL=(ALL:ALL) ALL\n");
    assert!(!open_keys(&mut e).iter().any(|k| k.starts_with("sudoers")));
}

/// The one open sudoers-outside-pim alert about `subject` in /etc/sudoers.d/local.
fn sudoers_alert(e: &mut Env, subject: &str) -> AlertInfo {
    let prefix = format!("sudoers-outside-pim:/etc/sudoers.d/local:{subject}:");
    let mut found: Vec<AlertInfo> = alerts(e, false)
        .into_iter()
        .filter(|a| a.key.starts_with(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

#[test]
fn given_a_dismissed_sudoers_alert_then_a_stronger_rule_in_the_same_file_raises_a_new_one() {
    let mut e = env();
    let narrow = "alice ALL = (root) /usr/bin/systemctl restart nginx\n";
    look(&mut e, vec![], narrow);
    let seen = sudoers_alert(&mut e, "alice");
    let frank = e.who("frank");
    e.m.dismiss_alert(&frank, seen.id, "alice restarts the web server")
        .unwrap();
    look(&mut e, vec![], narrow);
    assert!(!open_keys(&mut e).iter().any(|k| k.starts_with("sudoers")));
    // The same file, the same subject, a rule that gives her everything: a new alert; the
    // dismissed one still covers the rule it was dismissed for.
    let stronger = format!("{narrow}alice ALL = (ALL) NOPASSWD: ALL\n");
    look(&mut e, vec![], &stronger);
    let new = sudoers_alert(&mut e, "alice");
    assert_ne!(new.id, seen.id);
    assert!(new.detail.contains("NOPASSWD: ALL"), "{new:?}");
    assert_eq!(e.audited("alert-release").len(), 0);
    // The dismissed rule itself made stronger in place: it goes (released), and its new
    // text is an alert of its own.
    let edited = "alice ALL = (root) /usr/bin/systemctl\nalice ALL = (ALL) NOPASSWD: ALL\n";
    look(&mut e, vec![], edited);
    assert_eq!(e.audited("alert-release").len(), 1);
    let open: Vec<String> = open_keys(&mut e)
        .into_iter()
        .filter(|k| k.starts_with("sudoers"))
        .collect();
    assert_eq!(open.len(), 2, "{open:?}");
}

#[test]
fn given_count_activations_within_the_window_then_frequent_activation_then_resolved() {
    let mut e = env();
    let alice = e.who("alice");
    for _ in 0..5 {
        e.activate("alice", "docker", 0, "", "", "").unwrap();
        e.m.deactivate(&alice, "docker").unwrap();
        e.advance(60);
    }
    // Raised on the event itself (the fifth grant), not only at the next reconciliation.
    let key = "frequent-activation:docker:alice";
    assert!(open_keys(&mut e).contains(&key.to_string()));
    e.advance(86_400);
    e.m.reconcile().unwrap();
    assert!(!open_keys(&mut e).contains(&key.to_string()));
}

#[test]
fn given_a_dismissed_frequent_activation_then_a_new_burst_raises_it_again() {
    let mut e = env();
    let alice = e.who("alice");
    let burst = |e: &mut Env| {
        for _ in 0..5 {
            e.activate("alice", "docker", 0, "", "", "").unwrap();
            e.m.deactivate(&alice, "docker").unwrap();
            e.advance(60);
        }
    };
    burst(&mut e);
    let key = "frequent-activation:docker:alice";
    let first = id_of(&mut e, key);
    let frank = e.who("frank");
    e.m.dismiss_alert(&frank, first, "alice is migrating the registry")
        .unwrap();
    // The activations it saw no longer count: its key is let go, nothing is raised.
    e.m.reconcile().unwrap();
    assert!(!open_keys(&mut e).contains(&key.to_string()));
    assert_eq!(e.audited("alert-release").len(), 1);
    // Four more within the day: under the threshold on their own.
    e.advance(60);
    for _ in 0..4 {
        e.activate("alice", "docker", 0, "", "", "").unwrap();
        e.m.deactivate(&alice, "docker").unwrap();
        e.advance(60);
    }
    assert!(!open_keys(&mut e).contains(&key.to_string()));
    // The fifth after the dismissal: a new alert, on the activation itself.
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let again = id_of(&mut e, key);
    assert_ne!(again, first);
    let all = alerts(&mut e, true);
    let dismissed = all.iter().find(|a| a.id == first).unwrap();
    assert_eq!(dismissed.state, "dismissed");
}

#[test]
fn given_an_eligible_user_who_never_activates_then_stale_eligibility() {
    let mut e = env();
    look(&mut e, vec![], "");
    assert!(!open_keys(&mut e).iter().any(|k| k.starts_with("stale")));
    e.advance(31 * 86_400);
    look(&mut e, vec![], "");
    let keys = open_keys(&mut e);
    // erin is eligible for docker through %ops.
    for key in ["stale-eligibility:db:dave", "stale-eligibility:docker:erin"] {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
    }
    // paul is permanent in wheel: never stale there.
    assert!(!keys.contains(&"stale-eligibility:wheel:paul".to_string()));
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    assert!(!open_keys(&mut e).contains(&"stale-eligibility:docker:erin".to_string()));
}

#[test]
fn given_a_permanent_member_passing_the_pam_check_then_break_glass_used_raised_once() {
    let mut e = env();
    let root = e.who("root");
    let wheel = groups(&["wheel"]);
    assert!(e.m.check_access(&root, "paul", &wheel).unwrap().allowed);
    let key = "break-glass-used:wheel:paul";
    assert!(open_keys(&mut e).contains(&key.to_string()));
    assert!(e.m.check_access(&root, "paul", &wheel).unwrap().allowed);
    assert_eq!(
        alerts(&mut e, true)
            .iter()
            .filter(|a| a.kind == "break-glass-used")
            .count(),
        1
    );
    // It does not resolve by itself.
    e.m.evaluate_alerts().unwrap();
    assert!(open_keys(&mut e).contains(&key.to_string()));
    // Dismissed, the next use is a new alert.
    let id = id_of(&mut e, key);
    let frank = e.who("frank");
    e.m.dismiss_alert(&frank, id, "paul's drill").unwrap();
    assert!(e.m.check_access(&root, "paul", &wheel).unwrap().allowed);
    assert_ne!(id_of(&mut e, key), id);
}

#[test]
fn given_alert_events_then_only_admins_and_auditors_may_see_them() {
    let mut e = env();
    e.accounts.add_group("sudo", &["bob"]);
    look(&mut e, vec![], "");
    let event =
        e.m.take_outbox()
            .events
            .into_iter()
            .find(|ev| ev.kind == "alert-raised")
            .unwrap();
    assert_eq!(event.user, "bob");
    assert!(e.m.may_see(&e.who("audra"), &event));
    assert!(e.m.may_see(&e.who("frank"), &event));
    // Not even the user it is about.
    assert!(!e.m.may_see(&e.who("bob"), &event));
    assert!(!e.m.may_see(&e.who("alice"), &event));
}

#[test]
fn given_more_privileged_users_than_the_maximum_then_too_many_privileged() {
    let mut e = env();
    let text = CONFIG.replace("[mfa]", "[alerts]\nmax_privileged = 2\n\n[mfa]");
    e.reload(&text);
    look(&mut e, vec![], "");
    // docker: alice and erin (%ops); admin: alice, erin; db: alice, dave; wheel: alice, paul.
    assert!(!open_keys(&mut e).iter().any(|k| k.starts_with("too-many")));
    e.accounts.add_group("ops", &["erin", "gina"]);
    look(&mut e, vec![], "");
    let keys = open_keys(&mut e);
    assert!(
        keys.contains(&"too-many-privileged:docker".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"too-many-privileged:admin".to_string()),
        "{keys:?}"
    );
}
