//! Tests of the PAM module's question, over the shared environment of `test_support`.

use super::*;
use crate::manager::test_support::*;
use pim_config as config;

#[test]
fn given_non_root_caller_then_check_access_is_refused() {
    let mut e = env();
    let alice = e.who("alice");
    assert_err!(
        e.m.check_access(&alice, "alice", &groups(&["sudo"])),
        PermissionDenied
    );
    let root = e.who("root");
    assert_err!(e.m.check_access(&root, "alice", &[]), InvalidArgument);
    assert_err!(
        e.m.check_access(&root, "alice", &groups(&["su do"])),
        InvalidArgument
    );
}

#[test]
fn given_live_grant_then_access_is_allowed_and_not_audited() {
    let mut e = env();
    let root = e.who("root");
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let before = e.audit_log().len();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert_eq!(
        decision,
        AccessDecision {
            allowed: true,
            message: String::new()
        }
    );
    assert_eq!(e.audit_log().len(), before);
    // A grant for another group does not count.
    let other =
        e.m.check_access(&root, "alice", &groups(&["docker"]))
            .unwrap();
    assert!(!other.allowed);
}

#[test]
fn given_a_live_grant_of_one_group_then_another_held_group_is_still_refused_by_name() {
    // alice's admin grant (sudo) is revoked; she activates the cheap docker role. A shell from
    // the admin grant holds sudo and docker: docker's grant must not vouch for sudo.
    let mut e = env();
    let root = e.who("root");
    let frank = e.who("frank");
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    e.m.admin_revoke(&frank, "alice", "rescue", "rotation over")
        .unwrap();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["docker", "sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision
            .message
            .starts_with("pim: your grant for role rescue (group sudo) ended at"),
        "{}",
        decision.message
    );
    assert!(decision.message.ends_with("run 'pim activate rescue'"));
    // Each group covered on its own: allowed.
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    assert!(
        e.m.check_access(&root, "alice", &groups(&["docker", "sudo"]))
            .unwrap()
            .allowed
    );
}

#[test]
fn given_eligibility_gone_before_any_reconcile_then_the_live_grant_no_longer_covers() {
    // erin holds docker through %ops. She leaves ops (or the directory cannot say) and a
    // reload moves the role to another group: the PAM check must not wait for reconciliation
    // to end the grant before it stops counting it.
    let mut e = env();
    let root = e.who("root");
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let docker = groups(&["docker"]);
    assert!(e.m.check_access(&root, "erin", &docker).unwrap().allowed);

    e.accounts.unreachable("ops");
    assert!(
        !e.m.check_access(&root, "erin", &docker).unwrap().allowed,
        "a failed lookup vouches for nothing"
    );
    e.accounts.reachable("ops");
    e.accounts.add_group("ops", &[]);
    let refused = e.m.check_access(&root, "erin", &docker).unwrap();
    assert!(!refused.allowed, "{refused:?}");
    assert!(
        refused.message.contains("group docker"),
        "{}",
        refused.message
    );
    assert!(e.m.check_access(&root, "alice", &docker).unwrap().allowed);

    // The role now grants another group: its grant of the old one covers nothing.
    let moved = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\ngroup = \"deploy\"\n",
    );
    let (config, problems) = config::parse(&moved, "pim.toml", &HostDirectory(e.accounts.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    e.m.replace_config(config.unwrap()).unwrap();
    assert!(!e.m.check_access(&root, "alice", &docker).unwrap().allowed);
}

#[test]
fn given_permanent_in_one_role_then_another_held_group_is_refused_by_name() {
    // paul is permanent in wheel only; a stale sudo must not ride on it.
    let mut e = env();
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "paul", &groups(&["wheel", "sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("group sudo") && !decision.message.contains("wheel"),
        "{}",
        decision.message
    );
    let records = e.audited("access-check");
    assert_eq!(records.len(), 1);
}

#[test]
fn given_a_held_group_no_role_grants_then_refused_whatever_else_is_covered() {
    let mut e = env();
    let root = e.who("root");
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo", "ops"]))
            .unwrap();
    assert!(!decision.allowed);
    assert_eq!(
        decision.message,
        "pim: you hold group ops without a live grant, and no pim role grants it to you; ask an administrator"
    );
}

#[test]
fn given_a_name_from_nss_outside_useradd_syntax_then_it_is_judged() {
    let mut e = env();
    let root = e.who("root");
    e.accounts.add_user("kim@corp", 1100);
    e.accounts.add_group("sudo", &["kim@corp"]);
    let decision =
        e.m.check_access(&root, "kim@corp", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("without a live grant"),
        "{}",
        decision.message
    );
    // A name NSS does not know is refused, not an error.
    let unknown =
        e.m.check_access(&root, "nobody@corp", &groups(&["sudo"]))
            .unwrap();
    assert!(!unknown.allowed);
    assert!(
        unknown.message.contains("not in this host's user database"),
        "{}",
        unknown.message
    );
    // Still bounded and free of control characters.
    assert_err!(
        e.m.check_access(&root, "kim\ncorp", &groups(&["sudo"])),
        InvalidArgument
    );
    assert_err!(
        e.m.check_access(&root, &"k".repeat(257), &groups(&["sudo"])),
        InvalidArgument
    );
    assert_err!(
        e.m.check_access(&root, "", &groups(&["sudo"])),
        InvalidArgument
    );
}

#[test]
fn given_no_grant_then_denied_naming_the_role_to_activate_and_audited() {
    let mut e = env();
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("pim activate admin"),
        "{}",
        decision.message
    );
    let records = e.audited("access-check");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.actor.as_str(), r.user.as_str(), r.outcome.as_str()),
        ("pam", "alice", "refused")
    );
    assert!(r.detail.contains("sudo"), "{r:?}");

    let stranger = e.m.check_access(&root, "hank", &groups(&["sudo"])).unwrap();
    assert!(!stranger.allowed);
    assert!(
        stranger.message.contains("ask an administrator"),
        "{}",
        stranger.message
    );
}

#[test]
fn given_grant_past_its_end_then_denied_even_before_reconcile() {
    let mut e = env();
    let root = e.who("root");
    let grant = e.activate("alice", "rescue", 0, "", "", "").unwrap().grant;
    e.set(grant.ends_at - 1);
    assert!(
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap()
            .allowed
    );
    e.set(grant.ends_at);
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("ended at"),
        "{}",
        decision.message
    );
    assert!(
        decision.message.contains("pim activate rescue"),
        "{}",
        decision.message
    );
    // The same after reconciliation.
    e.m.reconcile().unwrap();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("ended at"),
        "{}",
        decision.message
    );
    assert!(decision.message.contains("pim activate rescue"));
    assert_eq!(e.audited("access-check").len(), 2);
}

#[test]
fn given_permanent_member_then_access_is_allowed() {
    let mut e = env();
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "paul", &groups(&["wheel"]))
            .unwrap();
    assert!(decision.allowed);
    assert!(e.audited("access-check").is_empty());
    // Being permanent in wheel says nothing about sudo.
    assert!(
        !e.m.check_access(&root, "paul", &groups(&["sudo"]))
            .unwrap()
            .allowed
    );
}

#[test]
fn given_sudo_refused_in_a_loop_then_access_check_records_are_summarised_per_user() {
    let mut e = env();
    let per_window = crate::refusals::RECORDS_PER_WINDOW as usize;
    let root = e.who("root");
    for _ in 0..per_window + 10 {
        let d =
            e.m.check_access(&root, "alice", &groups(&["sudo"]))
                .unwrap();
        assert!(!d.allowed);
    }
    let bob = e.m.check_access(&root, "bob", &groups(&["sudo"])).unwrap();
    assert!(!bob.allowed);
    let checks = e.audited("access-check");
    assert_eq!(
        checks.iter().filter(|r| r.user == "alice").count(),
        per_window
    );
    assert_eq!(checks.iter().filter(|r| r.user == "bob").count(), 1);

    e.advance(crate::refusals::WINDOW_SECS);
    e.m.record_unrecorded_refusals(false).unwrap();
    let summary = e.audited("refusals-unrecorded");
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(
        (summary[0].actor.as_str(), summary[0].user.as_str()),
        ("pam", "alice")
    );
    assert!(summary[0].detail.starts_with("10 more refusal(s)"));
    assert!(summary[0].detail.ends_with(": access-check 10"));
}
