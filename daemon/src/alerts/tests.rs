//! Each kind, over plain facts at a fixed time (the clock is a number in the facts).

use super::*;
use std::path::PathBuf;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A strong role `admin` of group `sudo`, with `alice` eligible since long ago.
fn facts() -> Facts {
    let role = RoleFacts {
        name: "admin".into(),
        group: "sudo".into(),
        require_mfa: true,
        require_justification: true,
        max_duration_secs: 3600,
        permanent: set(&["root-bg"]),
        eligible: [("alice".to_string(), NOW - 400 * DAY)].into(),
        active: BTreeSet::new(),
    };
    Facts {
        now: NOW,
        thresholds: pim_config::AlertsConfig::default(),
        roles: vec![role],
        last_activation: [(("alice".into(), "admin".into()), NOW - DAY)].into(),
        host: HostFacts {
            members: Some([("sudo".to_string(), BTreeSet::new())].into()),
            gids: [("sudo".to_string(), 27)].into(),
            processes: Some(Vec::new()),
            user_names: [(1000, "alice".to_string()), (1001, "bob".to_string())].into(),
            sudoers: Some(Vec::new()),
            sudoers_unreadable: Vec::new(),
            sudoers_unparsed: Vec::new(),
            sudoers_refused: Vec::new(),
        },
        ..Facts::default()
    }
}

fn keys(facts: &Facts) -> Vec<String> {
    evaluate(facts)
        .findings
        .into_iter()
        .map(|f| f.key)
        .collect()
}

#[test]
fn given_a_well_kept_host_then_no_alert() {
    let evaluation = evaluate(&facts());
    assert!(evaluation.findings.is_empty(), "{evaluation:?}");
    // Every kind but break-glass-used (an event) was judged.
    let judged: Vec<AlertKind> = evaluation.judged.into_iter().collect();
    assert_eq!(judged.len(), AlertKind::ALL.len() - 1);
    assert!(!judged.contains(&AlertKind::BreakGlassUsed));
}

#[test]
fn given_a_member_pim_did_not_add_then_member_outside_pim() {
    let mut f = facts();
    f.host.members = Some([("sudo".to_string(), set(&["bob", "carol", "root-bg"]))].into());
    f.pim_members.insert(("carol".into(), "sudo".into()));
    let found = evaluate(&f).findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "member-outside-pim:sudo:bob");
    assert_eq!(
        (found[0].user.as_str(), found[0].role.as_str()),
        ("bob", "admin")
    );
    assert!(found[0].detail.contains("/etc/group"), "{found:?}");
    // Unreadable: not judged, so nothing resolves either.
    f.host.members = None;
    assert!(!evaluate(&f).judged.contains(&AlertKind::MemberOutsidePim));
}

#[test]
fn given_a_process_with_a_managed_gid_and_no_grant_then_process_outside_grant() {
    let mut f = facts();
    let process = |pid, uid, gids: &[u32]| ProcessFact {
        pid,
        uid,
        gids: gids.iter().copied().collect(),
    };
    f.host.processes = Some(vec![
        process(10, 1001, &[1001, 27]),
        process(11, 1001, &[27]),
        process(12, 1000, &[27]),
        process(13, 0, &[0, 27]),
        process(14, 1002, &[1002]),
    ]);
    assert_eq!(
        keys(&f),
        [
            "process-outside-grant:sudo:alice",
            "process-outside-grant:sudo:bob"
        ]
    );
    let bob = &evaluate(&f).findings[1];
    assert!(bob.detail.contains("pid 10, 11"), "{bob:?}");
    // alice's grant covers her process; root's never counts.
    f.roles[0].active.insert("alice".into());
    assert_eq!(keys(&f), ["process-outside-grant:sudo:bob"]);
    // A user without a name is named by uid.
    f.host.processes = Some(vec![process(20, 4242, &[27])]);
    assert_eq!(keys(&f), ["process-outside-grant:sudo:#4242"]);
}

#[test]
fn given_sudoers_rules_then_only_those_around_managed_groups_alert_with_file_and_line() {
    let mut f = facts();
    let text = "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n%#27 ALL=(ALL) ALL\n\
                alice ALL=(ALL) ALL\n%wheel ALL = (root) /bin/ls\nbob ALL = (postgres) ALL\n";
    let files = vec![(PathBuf::from("/etc/sudoers.d/local"), text.to_string())];
    f.host.sudoers = Some(pim_sudoers::root_rules(&files));
    let found = evaluate(&f).findings;
    // Keyed by file, subject and the rule's fingerprint.
    let got: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (f.key.rsplit_once(':').unwrap().0, f.user.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("sudoers-outside-pim:/etc/sudoers.d/local:%wheel", ""),
            ("sudoers-outside-pim:/etc/sudoers.d/local:alice", "alice"),
        ]
    );
    let fingerprint = found[1].key.rsplit_once(':').unwrap().1;
    assert_eq!(fingerprint.len(), 32, "{fingerprint}");
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        found[1].detail.starts_with("/etc/sudoers.d/local:4: "),
        "{found:?}"
    );
}

#[test]
fn given_an_unreadable_sudoers_file_then_its_own_alert_and_the_open_sudoers_alerts_stay() {
    let mut f = facts();
    let files = vec![(
        PathBuf::from("/etc/sudoers.d/local"),
        "alice ALL=(ALL) ALL\n".to_string(),
    )];
    f.host.sudoers = Some(pim_sudoers::root_rules(&files));
    let before = evaluate(&f);
    let alice = before.findings[0].key.clone();
    let open = [Current {
        id: 1,
        kind: AlertKind::SudoersOutsidePim,
        key: alice,
        standing: Standing::Open,
    }];
    // The file now cannot be read: its rules are not seen, but that is not "rules gone".
    f.host.sudoers = Some(Vec::new());
    f.host.sudoers_unreadable = vec![(
        PathBuf::from("/etc/sudoers.d/local"),
        "Permission denied".into(),
    )];
    let evaluation = evaluate(&f);
    assert!(!evaluation.judged.contains(&AlertKind::SudoersOutsidePim));
    assert_eq!(
        keys(&f),
        ["sudoers-outside-pim:/etc/sudoers.d/local:unreadable"]
    );
    assert!(
        evaluation.findings[0].detail.contains("Permission denied"),
        "{evaluation:?}"
    );
    let changes = plan(&open, &evaluation);
    assert!(
        matches!(&changes[..], [Change::Raise(f)] if f.key.ends_with(":unreadable")),
        "{changes:?}"
    );
}

#[test]
fn given_a_sudoers_file_name_with_control_characters_then_key_and_detail_are_escaped() {
    let mut f = facts();
    let files = vec![(
        PathBuf::from("/etc/sudoers.d/x\x1b[2Jy"),
        "alice ALL=(ALL) ALL\n".to_string(),
    )];
    f.host.sudoers = Some(pim_sudoers::root_rules(&files));
    let found = evaluate(&f).findings;
    assert_eq!(found.len(), 1);
    assert!(!found[0].key.contains('\x1b'), "{found:?}");
    assert!(!found[0].detail.contains('\x1b'), "{found:?}");
}

#[test]
fn given_a_sudoers_line_pim_cannot_read_then_it_is_an_alert_of_its_own() {
    let mut f = facts();
    let files = vec![(
        PathBuf::from("/etc/sudoers.d/local"),
        "# x\nalice ALL=(ALL) ALL junk = here\n".to_string(),
    )];
    let rules = pim_sudoers::read_rules(&files);
    f.host.sudoers = Some(rules.root);
    f.host.sudoers_unparsed = rules.unparsed;
    let found = evaluate(&f).findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .key
            .starts_with("sudoers-outside-pim:/etc/sudoers.d/local:unparsed:"),
        "{found:?}"
    );
    assert!(
        found[0]
            .detail
            .starts_with("/etc/sudoers.d/local:2: a sudoers line pim cannot read"),
        "{found:?}"
    );
}

#[test]
fn given_a_rule_giving_a_managed_group_or_any_group_through_sudo_g_then_sudoers_outside_pim() {
    let mut f = facts();
    let text = "alice ALL=(:sudo) ALL\nbob ALL=(:ALL) /bin/ls\ncarl ALL=(:#27) ALL\n\
                dave ALL=(:video) ALL\n";
    let files = vec![(PathBuf::from("/etc/sudoers.d/local"), text.to_string())];
    f.host.sudoers = Some(pim_sudoers::read_rules(&files).root);
    let found = evaluate(&f).findings;
    let users: Vec<&str> = found.iter().map(|f| f.user.as_str()).collect();
    assert_eq!(users, ["alice", "bob", "carl"], "{found:?}");
    assert!(
        found[0]
            .detail
            .contains("gives group sudo (sudo -g) to alice"),
        "{found:?}"
    );
}

#[test]
fn given_a_sudoers_file_sudo_refuses_then_an_alert_says_it_is_there_and_the_view_is_judged() {
    let mut f = facts();
    f.host.sudoers_refused = vec![(
        PathBuf::from("/etc/sudoers.d/open"),
        "it is writable by everyone".into(),
    )];
    let evaluation = evaluate(&f);
    assert!(evaluation.judged.contains(&AlertKind::SudoersOutsidePim));
    assert_eq!(
        keys(&f),
        ["sudoers-outside-pim:/etc/sudoers.d/open:refused"]
    );
    assert!(
        evaluation.findings[0]
            .detail
            .contains("writable by everyone"),
        "{evaluation:?}"
    );
}

/// The keys of the sudoers alerts `text` (as /etc/sudoers.d/local) calls for.
fn sudoers_keys(text: &str) -> Vec<String> {
    let mut f = facts();
    let files = vec![(PathBuf::from("/etc/sudoers.d/local"), text.to_string())];
    f.host.sudoers = Some(pim_sudoers::root_rules(&files));
    keys(&f)
}

#[test]
fn given_a_sudoers_rule_then_its_key_is_its_content_not_its_line() {
    let narrow = "alice ALL = (root) /usr/bin/systemctl restart nginx\n";
    let seen = sudoers_keys(narrow);
    assert_eq!(seen.len(), 1);
    // Moved down a line (a comment above it): the same rule, the same key.
    assert_eq!(sudoers_keys(&format!("# web\n{narrow}")), seen);
    // A stronger rule for alice beside it: one more key, the first kept.
    let both = sudoers_keys(&format!("{narrow}alice ALL = (ALL) NOPASSWD: ALL\n"));
    assert_eq!(both.len(), 2);
    assert!(both.contains(&seen[0]), "{both:?}");
    // The rule itself made stronger: another key.
    let edited = sudoers_keys("alice ALL = (root) NOPASSWD: /usr/bin/systemctl restart nginx\n");
    assert_ne!(edited, seen);
    // An alias it uses redefined: the text is the same, the key is not.
    let alias = |cmd: &str| sudoers_keys(&format!("Cmnd_Alias WEB = {cmd}\nalice ALL = WEB\n"));
    assert_ne!(alias("/usr/bin/systemctl restart nginx"), alias("ALL"));
}

#[test]
fn given_count_activations_within_the_window_then_frequent_activation() {
    let mut f = facts();
    f.thresholds.frequent_count = 3;
    f.thresholds.frequent_within_secs = 3600;
    let key = ("alice".to_string(), "admin".to_string());
    f.activations
        .insert(key.clone(), vec![NOW - 4000, NOW - 100, NOW - 50]);
    assert!(keys(&f).is_empty(), "two within the hour");
    f.activations
        .insert(key.clone(), vec![NOW - 3000, NOW - 100, NOW - 50]);
    assert_eq!(keys(&f), ["frequent-activation:admin:alice"]);
    // An hour later they have fallen out of the window.
    f.now += 3600;
    assert!(keys(&f).is_empty());
}

#[test]
fn given_a_dismissed_frequent_activation_then_only_activations_after_the_dismissal_raise_it_again()
{
    let mut f = facts();
    f.thresholds.frequent_count = 3;
    f.thresholds.frequent_within_secs = 3600;
    let pair = ("alice".to_string(), "admin".to_string());
    let key = "frequent-activation:admin:alice".to_string();
    f.activations
        .insert(pair.clone(), vec![NOW - 300, NOW - 200, NOW - 100]);
    // Dismissed after the third: those three are seen to.
    f.frequent_dismissed.insert(key.clone(), NOW - 90);
    assert!(keys(&f).is_empty());
    // Two more within the hour: still under the threshold once the three are left out.
    f.activations
        .get_mut(&pair)
        .unwrap()
        .extend([NOW - 60, NOW - 30]);
    assert!(keys(&f).is_empty());
    // A third after the dismissal: raised again, and the detail says since when it counts.
    f.activations.get_mut(&pair).unwrap().push(NOW);
    let found = evaluate(&f).findings;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, key);
    assert!(
        found[0]
            .detail
            .contains("3 times within 1h since its last dismissal"),
        "{found:?}"
    );
    // Those of the dismissal's own second were seen by it (times are whole seconds).
    f.activations
        .insert(pair, vec![NOW - 90, NOW - 60, NOW - 30]);
    assert!(keys(&f).is_empty());
}

#[test]
fn given_no_activation_for_the_stale_period_then_stale_eligibility() {
    let mut f = facts();
    let key = ("alice".to_string(), "admin".to_string());
    f.last_activation.insert(key.clone(), NOW - 31 * DAY);
    assert_eq!(keys(&f), ["stale-eligibility:admin:alice"]);
    f.last_activation.remove(&key);
    let found = evaluate(&f).findings;
    assert!(found[0].detail.contains("never"), "{found:?}");
    // Eligible only lately (an assignment of last week): not stale yet.
    f.roles[0].eligible.insert("alice".into(), NOW - 7 * DAY);
    assert!(keys(&f).is_empty());
    // Active now: not stale.
    f.roles[0].eligible.insert("alice".into(), NOW - 400 * DAY);
    f.roles[0].active.insert("alice".into());
    assert!(keys(&f).is_empty());
}

#[test]
fn given_more_privileged_users_than_the_maximum_then_too_many_privileged() {
    let mut f = facts();
    f.thresholds.max_privileged = 3;
    f.roles[0].active.insert("alice".into());
    f.roles[0].eligible.insert("bob".into(), NOW);
    // alice (eligible and active, counted once), bob, root-bg.
    assert!(keys(&f).is_empty());
    f.roles[0].active.insert("carol".into());
    assert_eq!(keys(&f), ["too-many-privileged:admin"]);
    assert!(evaluate(&f).findings[0]
        .detail
        .contains("4 privileged users"));
}

#[test]
fn given_a_role_without_mfa_justification_or_with_a_long_maximum_then_weak_role() {
    for (weaken, says) in [
        (
            (|r: &mut RoleFacts| r.require_mfa = false) as fn(&mut RoleFacts),
            "no MFA",
        ),
        (
            |r: &mut RoleFacts| r.require_justification = false,
            "no justification",
        ),
        (
            |r: &mut RoleFacts| r.max_duration_secs = 9 * 3600,
            "over 8h",
        ),
    ] {
        let mut f = facts();
        weaken(&mut f.roles[0]);
        let found = evaluate(&f).findings;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "weak-role:admin");
        assert!(found[0].detail.contains(says), "{found:?}");
    }
    let mut f = facts();
    f.roles[0].max_duration_secs = 8 * 3600;
    assert!(keys(&f).is_empty(), "8h itself is not over 8h");
}

#[test]
fn given_a_permanent_member_passing_the_check_then_break_glass_used() {
    let finding = break_glass("root-bg", "admin", "sudo");
    assert_eq!(finding.kind, AlertKind::BreakGlassUsed);
    assert_eq!(finding.key, "break-glass-used:sudo:root-bg");
    assert!(!AlertKind::BreakGlassUsed.resolves());
}

#[test]
fn plan_raises_once_resolves_when_the_cause_goes_and_keeps_dismissed_ones_quiet() {
    let mut f = facts();
    f.roles[0].require_mfa = false;
    let evaluation = evaluate(&f);
    // Nothing on record: raised.
    let changes = plan(&[], &evaluation);
    assert!(matches!(&changes[..], [Change::Raise(x)] if x.key == "weak-role:admin"));
    let open = Current {
        id: 7,
        kind: AlertKind::WeakRole,
        key: "weak-role:admin".into(),
        standing: Standing::Open,
    };
    // Raised once: the same cause again changes nothing.
    assert!(plan(std::slice::from_ref(&open), &evaluation).is_empty());
    // Dismissed while the cause persists: not raised again.
    let dismissed = Current {
        standing: Standing::Dismissed,
        ..open.clone()
    };
    assert!(plan(std::slice::from_ref(&dismissed), &evaluation).is_empty());
    // The cause goes: the open one resolves, the dismissed one lets its key go.
    let fixed = evaluate(&facts());
    assert_eq!(
        plan(std::slice::from_ref(&open), &fixed),
        [Change::Resolve { id: 7 }]
    );
    assert_eq!(plan(&[dismissed], &fixed), [Change::Release { id: 7 }]);
    // A kind that could not be judged is left alone; so is an event kind.
    let mut unjudged = fixed.clone();
    unjudged.judged.remove(&AlertKind::WeakRole);
    assert!(plan(&[open], &unjudged).is_empty());
    let glass = Current {
        id: 8,
        kind: AlertKind::BreakGlassUsed,
        key: "break-glass-used:sudo:root-bg".into(),
        standing: Standing::Open,
    };
    assert!(plan(&[glass], &fixed).is_empty());
}

#[test]
fn kinds_have_their_spec_names() {
    let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "member-outside-pim",
            "process-outside-grant",
            "sudoers-outside-pim",
            "frequent-activation",
            "stale-eligibility",
            "too-many-privileged",
            "weak-role",
            "break-glass-used",
        ]
    );
    for kind in AlertKind::ALL {
        assert_eq!(AlertKind::parse(kind.as_str()), Some(*kind));
    }
}
