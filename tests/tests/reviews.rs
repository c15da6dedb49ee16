//! Access reviews end to end, with real `pimd`, `pim`, `dbus-daemon` and `gpasswd`: a one-off
//! review of role `docker` lasting seconds in which gina (its owner) keeps alice, removes dave
//! (an assignment) and leaves erin (standing, through %devs) to the default, "remove"; at its
//! end exactly that is applied (dave's and erin's grants end and their memberships go, neither
//! can activate again), and erin's suspended standing entry, once reinstated, activates again.
//! And the attacks: a non-reviewer non-admin (hank) is refused every review call, through `pim`
//! and straight through the bus, with the answers of a review that does not exist; a reviewer
//! is refused their own item; an owner is refused a role they do not own.

use std::time::Duration;

use pim_e2e::{Output, Sandbox, CONFIG_PATH};
use serde_json::Value;

/// Generous limit for anything that should happen "at once" (it returns as soon as it does).
const WAIT: Duration = Duration::from_secs(120);
const GROUP: &str = "deployers";

const CONFIG: &str = r#"
[daemon]
admins = ["%pim-admins"]
auditors = ["audra"]
# The short review below lasts 75 s.
min_review_duration = "30s"

[roles.docker]
group = "deployers"
description = "Deployments"
eligible = ["alice", "%devs"]
owners = ["gina"]
require_mfa = false
require_justification = false
max_duration = "1h"
reviewers = ["owners"]
review_default = "remove"

[roles.other]
group = "othergrp"
eligible = ["hank"]
owners = ["hank"]
require_mfa = false
require_justification = false
require_approval = true
approvers = ["bob"]
"#;

fn site() -> Sandbox {
    let sb = Sandbox::start();
    for group in ["pim-admins", GROUP, "othergrp", "devs"] {
        sb.add_group(group);
    }
    for user in ["alice", "bob", "dave", "gina", "hank", "audra"] {
        sb.add_user(user, &[]);
    }
    sb.add_user("erin", &["devs"]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
        .assert_success();
    sb.start_pimd();
    sb.run("root", &["pim", "admin", "assign", "dave", "docker"])
        .assert_success();
    sb
}

fn pim(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(args);
    sb.run(user, &argv)
}

/// `pim --json admin review start docker ARGS` as `user`: the review's id.
#[track_caller]
fn start_review(sb: &Sandbox, user: &str, args: &[&str]) -> i64 {
    let mut argv = vec!["--json", "admin", "review", "start", "docker"];
    argv.extend_from_slice(args);
    let out = pim(sb, user, &argv);
    out.assert_success().json()["review"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no review id:\n{out}"))
}

fn activate(sb: &Sandbox, user: &str) -> Output {
    pim(sb, user, &["activate", "docker", "-d", "30m"])
}

/// The auditor's record of review `id`.
fn record(sb: &Sandbox, id: i64) -> Value {
    pim(
        sb,
        "audra",
        &["--json", "admin", "review", "show", &id.to_string()],
    )
    .assert_success()
    .json()["review"]
        .clone()
}

fn result_of(review: &Value, user: &str) -> String {
    review["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["user"] == user))
        .and_then(|i| i["result"].as_str())
        .unwrap_or_else(|| panic!("no result for {user} in {review}"))
        .to_string()
}

/// `sudo -n true` as `user` from a shell that still carries the role's group (a login from
/// while the grant was live): the PAM module's check.
fn sudo_with_the_group(sb: &Sandbox, user: &str) -> Output {
    sb.run_with_groups(user, &[GROUP], &["sudo", "-n", "true"])
}

#[test]
fn a_short_review_keeps_removes_and_defaults_then_a_suspended_entry_is_reinstated() {
    let sb = site();
    sb.setup_sudo(Some(&format!("groups={GROUP}")));
    sb.write_file(
        "/etc/sudoers.d/deployers",
        &format!("%{GROUP} ALL=(ALL:ALL) NOPASSWD: ALL\n"),
        0o440,
    );
    for user in ["alice", "dave", "erin"] {
        activate(&sb, user).assert_success();
        assert!(sb.is_member(user, GROUP), "{user} holds the group");
        sudo_with_the_group(&sb, user).assert_success();
    }
    let mut phone = sb.enroll_mfa("gina");
    let id = start_review(&sb, "gina", &["--duration", "75s"]);
    let ids = id.to_string();

    // gina's side: her open items, with recommendations from use.
    let mine = pim(&sb, "gina", &["--json", "reviews"])
        .assert_success()
        .json();
    let users: Vec<&str> = mine["reviews"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "dave", "erin"], "{mine}");
    pim(&sb, "gina", &["reviews"])
        .assert_success()
        .assert_stdout_contains("holds a live grant");

    let code = phone.next_code(&sb);
    pim(
        &sb,
        "gina",
        &[
            "review", "keep", &ids, "alice", "-c", "on call", "--code", &code,
        ],
    )
    .assert_success();
    let code = phone.next_code(&sb);
    pim(
        &sb,
        "gina",
        &[
            "review", "remove", &ids, "dave", "-c", "left", "--code", &code,
        ],
    )
    .assert_success();

    // Asked every 2 s: the auditor's reads a minute are bounded.
    sb.wait_until("the review's end", WAIT, || {
        std::thread::sleep(Duration::from_secs(2));
        !record(&sb, id)["completed_at"].is_null()
    });
    let done = record(&sb, id);
    assert_eq!(result_of(&done, "alice"), "kept (decided by gina)");
    assert_eq!(
        result_of(&done, "dave"),
        "removed: assignment removed (decided by gina)"
    );
    assert_eq!(
        result_of(&done, "erin"),
        "removed: standing entry suspended (default remove)"
    );
    // Exactly that applied: alice keeps her grant; dave's and erin's are gone, memberships
    // out (gpasswd -d), and neither may activate again.
    sb.wait_until("the removed users' memberships to go", WAIT, || {
        !sb.is_member("dave", GROUP) && !sb.is_member("erin", GROUP)
    });
    assert!(sb.is_member("alice", GROUP));
    sudo_with_the_group(&sb, "alice").assert_success();
    for user in ["dave", "erin"] {
        activate(&sb, user)
            .assert_failure()
            .assert_stderr_contains("not eligible");
        // A shell from before keeps the group; sudo refuses it (no live grant covers it).
        sudo_with_the_group(&sb, user).assert_failure();
    }
    let csv = pim(&sb, "audra", &["admin", "review", "show", &ids, "--csv"]);
    let text = csv.assert_success().stdout_trimmed().to_string();
    assert_eq!(text.lines().count(), 4, "{csv}");
    assert!(text.starts_with("review,role,"), "{csv}");
    let applied = sb.audit_records("audra", &["--role", "docker"]);
    let actions: Vec<&str> = applied
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "review-start",
        "review-decide",
        "review-apply",
        "review-end",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // Reinstated by the owner: erin's standing entry makes her eligible again.
    pim(&sb, "gina", &["admin", "reinstate", "erin", "docker"]).assert_success();
    activate(&sb, "erin").assert_success();
    assert!(sb.is_member("erin", GROUP));
    sudo_with_the_group(&sb, "erin").assert_success();
    // dave's assignment is gone for good: reinstating does not apply to it.
    pim(&sb, "gina", &["admin", "reinstate", "dave", "docker"]).assert_failure();
}

#[test]
fn a_non_reviewer_non_admin_is_refused_every_review_call() {
    let sb = site();
    let id = start_review(&sb, "root", &["--duration", "1h"]);
    let idb = start_review(&sb, "root", &["--duration", "1h", "--reviewers", "%devs"]);
    let (ids, idbs) = (id.to_string(), idb.to_string());

    // Deciding another's review: the answer for a review that does not exist, word for word.
    let decide = |user: &str, review: &str, whom: &str| {
        pim(
            &sb,
            user,
            &["review", "remove", review, whom, "--code", "123456"],
        )
    };
    let seen = decide("hank", &ids, "alice");
    let none = decide("hank", "9999", "alice");
    seen.assert_failure();
    assert_eq!(seen.stderr, none.stderr, "{seen}\n{none}");
    assert!(seen.stderr.contains("no such review"), "{seen}");
    // An item (dave), not a reviewer: likewise.
    assert_eq!(decide("dave", &ids, "dave").stderr, none.stderr);
    // Straight through the bus, past pim's checks.
    let bus = sb.call_pimd(
        "hank",
        "ReviewDecide",
        "xssss",
        &[&ids, "alice", "remove", "", "123456"],
    );
    bus.assert_failure();
    let bus_none = sb.call_pimd(
        "hank",
        "ReviewDecide",
        "xssss",
        &["9999", "alice", "remove", "", "123456"],
    );
    assert_eq!(bus.stderr, bus_none.stderr, "{bus}\n{bus_none}");
    assert!(pim(&sb, "hank", &["--json", "reviews"])
        .assert_success()
        .json()["reviews"]
        .as_array()
        .unwrap()
        .is_empty());

    // Reading the record: likewise.
    let seen = pim(&sb, "hank", &["admin", "review", "show", &ids]);
    let none = pim(&sb, "hank", &["admin", "review", "show", "9999"]);
    seen.assert_failure();
    assert_eq!(seen.stderr, none.stderr);

    // Starting a review of a role they do not own, and reinstating on it.
    pim(&sb, "hank", &["admin", "review", "start", "docker"])
        .assert_failure()
        .assert_stderr_contains("owner of role 'docker'");
    sb.call_pimd("hank", "AdminReviewStart", "stas", &["docker", "60", "0"])
        .assert_failure();
    pim(&sb, "hank", &["admin", "reinstate", "erin", "docker"]).assert_failure();
    // gina owns docker, not other.
    pim(&sb, "gina", &["admin", "review", "start", "other"])
        .assert_failure()
        .assert_stderr_contains("owner of role 'other'");

    // Reviewing one's own item: erin reviews review B through %devs, and is an item of it.
    decide("erin", &idbs, "erin")
        .assert_failure()
        .assert_stderr_contains("your own access");

    // Nothing was decided, and every refusal is in the audit.
    let review = pim(&sb, "root", &["--json", "admin", "review", "show", &ids])
        .assert_success()
        .json();
    assert!(review["review"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["decision"].is_null()));
    let hank = sb.audit_records("hank", &[]);
    let refused = hank
        .iter()
        .filter(|r| r["actor"] == "hank" && r["outcome"] == "refused")
        .count();
    assert!(refused >= 8, "{hank:?}");

    // pim roles: bob approves 'other' and is eligible for nothing; gina owns docker.
    pim(&sb, "bob", &["roles"])
        .assert_success()
        .assert_stdout_contains("You decide for:")
        .assert_stdout_contains("approver");
    let gina = pim(&sb, "gina", &["--json", "roles"])
        .assert_success()
        .json();
    assert_eq!(gina["decides_for"][0]["role"], "docker", "{gina}");
    assert_eq!(gina["decides_for"][0]["as"][0], "owner", "{gina}");
}

#[test]
fn an_oversized_list_of_reviewers_over_the_bus_is_refused_naming_the_bound() {
    let sb = site();
    let start = |reviewers: &[String]| {
        let count = reviewers.len().to_string();
        let mut args = vec!["docker", "3600", count.as_str()];
        args.extend(reviewers.iter().map(String::as_str));
        sb.call_pimd("gina", "AdminReviewStart", "stas", &args)
    };
    // Twenty thousand entries, straight to pimd past pim's checks.
    let many = vec!["alice".to_string(); 20_000];
    start(&many)
        .assert_failure()
        .assert_stderr_contains("the reviewers name 20000 entries; at most 64 are allowed");
    let long = vec!["owners".to_string(), "x".repeat(100_000)];
    start(&long)
        .assert_failure()
        .assert_stderr_contains("a reviewer is 100000 bytes long");
    // No review was started, each refusal is audited, and pimd answers on.
    let none = pim(&sb, "gina", &["--json", "reviews"])
        .assert_success()
        .json();
    assert!(none["reviews"].as_array().unwrap().is_empty(), "{none}");
    let refused = sb
        .audit_records("root", &[])
        .into_iter()
        .filter(|r| r["actor"] == "gina" && r["action"] == "review-start")
        .filter(|r| r["outcome"] == "refused")
        .count();
    assert_eq!(refused, 2);
    start(&["owners".to_string()]).assert_success();
}

#[test]
fn a_review_leaves_an_assignment_the_owner_changed_while_it_ran_and_says_so() {
    let sb = site();
    let id = start_review(&sb, "gina", &["--duration", "30s"]);
    // Undecided, dave's item falls to the default (remove); meanwhile the owner renews
    // his assignment on new terms, which no reviewer looked at.
    pim(
        &sb,
        "gina",
        &["admin", "assign", "dave", "docker", "--until", "+20d"],
    )
    .assert_success();
    // Polled as root, whom the calls-per-minute limit does not slow.
    let ids = id.to_string();
    let ended = || {
        let shown = pim(&sb, "root", &["--json", "admin", "review", "show", &ids]);
        !shown.assert_success().json()["review"]["completed_at"].is_null()
    };
    sb.wait_until("the review's end", WAIT, ended);
    let done = record(&sb, id);
    assert_eq!(
        result_of(&done, "dave"),
        "removed: eligible assignment changed since the review started; not removed \
         (default remove)",
        "{done}"
    );
    // The owner's assignment stands: dave may still activate.
    activate(&sb, "dave").assert_success();
    let applied = sb
        .audit_records("audra", &["--user", "dave"])
        .into_iter()
        .any(|r| {
            r["action"] == "review-apply"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("changed since the review started; not removed"))
        });
    assert!(applied, "the review's record says what it left");
}
