//! Governance end to end (issue 13): role owners, active assignments with their caps, and
//! renewal. carol owns role `admin` (group sudo, pam_pim.so in sudo's stack); bob owns role
//! `web`; dave is assigned; erin is nobody in particular (no owner, no admin), and every
//! governance call of hers goes straight to pimd over the real bus and is refused.

use std::time::Duration;

use pim_e2e::{Authenticator, Output, Sandbox, CONFIG_PATH};
use serde_json::Value;

/// Generous limit for anything that should happen "at once".
const WAIT: Duration = Duration::from_secs(60);

const CONFIG: &str = r#"
[daemon]
admins = ["%pim-admins"]

[roles.admin]
group = "sudo"
description = "Full administration through sudo"
require_mfa = false
require_justification = false
owners = ["carol"]
max_active_assignment = "1h"

[roles.web]
group = "webadmin"
description = "Web server administration"
require_mfa = false
require_justification = false
owners = ["bob"]
max_eligible_assignment = "30d"
"#;

fn site() -> Sandbox {
    let sb = Sandbox::start();
    sb.add_group("pim-admins");
    sb.add_group("webadmin");
    for user in ["bob", "carol", "dave", "erin"] {
        sb.add_user(user, &[]);
    }
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.setup_sudo(Some("groups=sudo"));
    sb.run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
        .assert_success();
    sb.start_pimd();
    sb
}

fn pim(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(args);
    sb.run(user, &argv)
}

/// `pim admin assign USER ROLE --active WINDOW... -r REASON` as `by`.
fn assign_active(sb: &Sandbox, by: &str, user: &str, window: &[&str], reason: &str) -> Output {
    let mut args = vec!["admin", "assign", user, "admin", "--active"];
    args.extend_from_slice(window);
    args.extend(["-r", reason]);
    pim(sb, by, &args)
}

/// The refused records of `actor` in the audit log, as (action, role), read by root.
fn refusals_of(sb: &Sandbox, actor: &str) -> Vec<(String, String)> {
    sb.audit_records("root", &[])
        .into_iter()
        .filter(|r| r["actor"] == actor && r["outcome"] == "refused")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or_default().to_string(),
                r["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_active_assignment_starts_and_ends_on_time_and_sudo_follows_it() {
    let sb = site();
    // Starts in 5 s, ends 20 s later: the owner, not an admin, gives it.
    assign_active(
        &sb,
        "carol",
        "dave",
        &["--from", "+5s", "--until", "+25s"],
        "on call tonight",
    )
    .assert_success()
    .assert_stdout_contains("active assignment");
    assert!(!sb.is_member("dave", "sudo"), "not before its start");
    sb.wait_until("the assignment's start", WAIT, || {
        sb.is_member("dave", "sudo")
    });
    // dave never activated: a fresh login holds sudo, and pam_pim.so lets it through.
    sb.run("dave", &["sudo", "-n", "true"]).assert_success();
    let status = pim(&sb, "dave", &["--json", "status"])
        .assert_success()
        .json();
    assert_eq!(status["grants"][0]["role"], "admin", "{status}");
    assert_eq!(status["grants"][0]["reason"], "on call tonight", "{status}");
    let grants = pim(&sb, "carol", &["--json", "admin", "grants"])
        .assert_success()
        .json();
    assert_eq!(grants["grants"][0]["user"], "dave", "{grants}");

    sb.wait_until("the assignment's end", WAIT, || {
        !sb.is_member("dave", "sudo")
    });
    // A process that kept the group is refused by the module now.
    sb.run_with_groups("dave", &["sudo"], &["sudo", "-n", "true"])
        .assert_failure();
    let actions: Vec<String> = sb
        .audit_records("root", &["--user", "dave"])
        .into_iter()
        .filter(|r| r["outcome"] == "success")
        .map(|r| r["action"].as_str().unwrap_or_default().to_string())
        .collect();
    for action in ["admin-assign-active", "grant-start", "expire"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

#[test]
fn a_cap_refuses_a_too_long_assignment_naming_it() {
    let sb = site();
    assign_active(&sb, "carol", "dave", &["--until", "+2h"], "the whole night")
        .assert_failure()
        .assert_stderr_contains("max_active_assignment");
    assert!(!sb.is_member("dave", "sudo"));
    // An eligible assignment without an end, on a role with a cap.
    pim(&sb, "bob", &["admin", "assign", "dave", "web"])
        .assert_failure()
        .assert_stderr_contains("max_eligible_assignment");
    pim(
        &sb,
        "bob",
        &["admin", "assign", "dave", "web", "--until", "+20d"],
    )
    .assert_success();
}

#[test]
fn an_owner_may_act_on_their_role_and_is_refused_on_another() {
    let sb = site();
    pim(
        &sb,
        "bob",
        &["admin", "assign", "dave", "web", "--until", "+1d"],
    )
    .assert_success();
    pim(&sb, "dave", &["activate", "web"]).assert_success();
    assert!(sb.is_member("dave", "webadmin"));
    pim(
        &sb,
        "bob",
        &["admin", "revoke", "dave", "web", "-r", "done for today"],
    )
    .assert_success();
    assert!(!sb.is_member("dave", "webadmin"));
    pim(&sb, "bob", &["admin", "unassign", "dave", "web"]).assert_success();
    pim(&sb, "dave", &["activate", "web"]).assert_failure();

    // bob owns web, not admin.
    pim(&sb, "bob", &["admin", "assign", "dave", "admin"])
        .assert_failure()
        .assert_stderr_contains("owner of role 'admin'");
    assign_active(&sb, "bob", "dave", &["--until", "+10m"], "not mine to give").assert_failure();
    assert!(!sb.is_member("dave", "sudo"));
    assert_eq!(
        refusals_of(&sb, "bob"),
        [
            ("admin-assign".to_string(), "admin".to_string()),
            ("admin-assign-active".to_string(), "admin".to_string()),
        ]
    );
}

#[test]
fn a_renewal_approved_by_an_owner_moves_the_end() {
    let sb = site();
    pim(
        &sb,
        "bob",
        &["admin", "assign", "dave", "web", "--until", "+2d"],
    )
    .assert_success();
    pim(&sb, "dave", &["status"])
        .assert_success()
        .assert_stdout_contains("pim renew web");
    let filed = pim(
        &sb,
        "dave",
        &[
            "--json",
            "renew",
            "web",
            "--until",
            "+25d",
            "-r",
            "still on the web team",
        ],
    )
    .assert_success()
    .json();
    let id = filed["request"]["id"].as_i64().expect("an id").to_string();
    let until = filed["request"]["renew_until_unix"]
        .as_i64()
        .expect("until");
    let shown = pim(&sb, "dave", &["--json", "show", &id])
        .assert_success()
        .json();
    assert_eq!(shown["request"]["kind"], "renewal", "{shown}");
    let deciders: Vec<&str> = shown["request"]["deciders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(deciders.contains(&"bob"), "{deciders:?}");
    // Someone who may not see it gets the answer of a request that does not exist.
    let hidden = pim(&sb, "erin", &["show", &id]);
    hidden.assert_failure();
    let missing = pim(&sb, "erin", &["show", "999"]);
    assert_eq!(
        hidden.stderr.replace(&id, "N"),
        missing.stderr.replace("999", "N")
    );
    // The owner sees it among the requests they decide, and approves with MFA.
    let waiting = sb.spawn("dave", &["pim", "wait", &id]);
    pim(&sb, "bob", &["--json", "requests"])
        .assert_success()
        .assert_stdout_contains("\"id\":");
    let mut phone: Authenticator = sb.enroll_mfa("bob");
    let code = phone.next_code(&sb);
    pim(&sb, "bob", &["approve", &id, "--code", &code]).assert_success();
    waiting.wait(WAIT).assert_success();
    let roles = pim(&sb, "dave", &["--json", "roles"])
        .assert_success()
        .json();
    let web = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .cloned()
        .unwrap_or_else(|| panic!("{roles}"));
    assert_eq!(web["eligible_until_unix"], until, "{web}");
}

#[test]
fn a_non_owner_non_admin_is_refused_every_governance_call_through_the_bus() {
    let sb = site();
    pim(
        &sb,
        "carol",
        &["admin", "assign", "dave", "admin", "--until", "+2d"],
    )
    .assert_success();
    let renewal = pim(
        &sb,
        "dave",
        &[
            "--json",
            "renew",
            "admin",
            "-r",
            "still the admin of record",
        ],
    )
    .assert_success()
    .json();
    let id = renewal["request"]["id"].as_i64().unwrap().to_string();
    let far = "4102444800"; // 2100-01-01
    let calls: [(&str, &str, Vec<&str>); 7] = [
        ("AdminAssign", "ssxx", vec!["erin", "admin", "0", far]),
        (
            "AdminAssignActive",
            "ssxxs",
            vec!["erin", "admin", "0", "0", "give me root"],
        ),
        ("AdminUnassign", "ss", vec!["dave", "admin"]),
        ("AdminRevoke", "sss", vec!["dave", "admin", "no reason"]),
        ("AdminGrants", "", vec![]),
        ("Approve", "xss", vec![&id, "", "000000"]),
        ("Deny", "xss", vec![&id, "not yours", "000000"]),
    ];
    for (method, signature, args) in &calls {
        let out = sb.call_pimd("erin", method, signature, args);
        out.assert_failure();
        let refused = out.stderr.contains("this needs a pim administrator")
            || out.stderr.contains("no such request that you may decide");
        assert!(refused, "{method}: {out}");
    }
    assert!(!sb.is_member("erin", "sudo"));
    let roles = pim(&sb, "dave", &["--json", "roles"])
        .assert_success()
        .json();
    assert!(
        roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "admin"),
        "dave's assignment stands: {roles}"
    );
    let refused = refusals_of(&sb, "erin");
    assert_eq!(
        refused.len(),
        calls.len(),
        "each refusal audited: {refused:?}"
    );
}

/// dave's `eligible_until_unix` for role web, as `pim roles` tells him.
fn web_until(sb: &Sandbox) -> Value {
    let roles = pim(sb, "dave", &["--json", "roles"])
        .assert_success()
        .json();
    roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap_or_else(|| panic!("{roles}"))["eligible_until_unix"]
        .clone()
}

#[test]
fn a_renewal_filed_before_the_owner_changed_the_assignment_is_refused_as_stale() {
    let sb = site();
    pim(
        &sb,
        "bob",
        &["admin", "assign", "dave", "web", "--until", "+2d"],
    )
    .assert_success();
    let filed = pim(
        &sb,
        "dave",
        &[
            "--json",
            "renew",
            "web",
            "--until",
            "+25d",
            "-r",
            "still on the web team",
        ],
    )
    .assert_success()
    .json();
    let id = filed["request"]["id"].as_i64().expect("an id").to_string();
    // The owner shortens the assignment after the renewal was filed.
    pim(
        &sb,
        "bob",
        &["admin", "assign", "dave", "web", "--until", "+1d"],
    )
    .assert_success();
    let shortened = web_until(&sb);
    let mut phone: Authenticator = sb.enroll_mfa("bob");
    let code = phone.next_code(&sb);
    pim(&sb, "bob", &["approve", &id, "--code", &code])
        .assert_failure()
        .assert_stderr_contains("stale")
        .assert_stderr_contains("changed after the renewal was filed");
    assert_eq!(web_until(&sb), shortened, "the owner's change stands");
    let shown = pim(&sb, "dave", &["--json", "show", &id])
        .assert_success()
        .json();
    assert_eq!(shown["request"]["state"], "denied", "{shown}");
    let stale = sb
        .audit_records("root", &["--user", "dave"])
        .into_iter()
        .any(|r| {
            r["action"] == "renew-approve"
                && r["outcome"] == "refused"
                && r["detail"].as_str().is_some_and(|d| d.contains("stale"))
        });
    assert!(stale, "the stale approval is audited");
    assert_eq!(
        refusals_of(&sb, "bob"),
        [("renew-approve".to_string(), "web".to_string())],
        "audited once"
    );
}

#[test]
fn a_renewal_approved_after_an_owner_revoked_the_active_assignments_grant_does_not_bring_it_back() {
    let sb = site();
    assign_active(&sb, "carol", "dave", &["--until", "+30m"], "on call").assert_success();
    sb.run("dave", &["sudo", "-n", "true"]).assert_success();
    pim(
        &sb,
        "carol",
        &["admin", "revoke", "dave", "admin", "-r", "off the rotation"],
    )
    .assert_success();
    assert!(!sb.is_member("dave", "sudo"));
    // dave asks for a renewal at once, and the owner approves it in passing.
    let filed = pim(
        &sb,
        "dave",
        &[
            "--json",
            "renew",
            "admin",
            "--until",
            "+50m",
            "-r",
            "still on call",
        ],
    )
    .assert_success()
    .json();
    let id = filed["request"]["id"].as_i64().expect("an id").to_string();
    let mut phone: Authenticator = sb.enroll_mfa("carol");
    let code = phone.next_code(&sb);
    pim(&sb, "carol", &["approve", &id, "--code", &code]).assert_success();
    let status = pim(&sb, "dave", &["--json", "status"])
        .assert_success()
        .json();
    assert_eq!(status["grants"], Value::Array(Vec::new()), "{status}");
    assert!(!sb.is_member("dave", "sudo"), "the revoke stands");
    sb.run("dave", &["sudo", "-n", "true"]).assert_failure();
    sb.run_with_groups("dave", &["sudo"], &["sudo", "-n", "true"])
        .assert_failure();
}

/// The id of dave's live grant, as `pim status` tells him.
fn grant_id_of_dave(sb: &Sandbox) -> i64 {
    let status = pim(sb, "dave", &["--json", "status"])
        .assert_success()
        .json();
    status["grants"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no grant: {status}"))
}

#[test]
fn an_active_assignment_unassigned_and_given_again_gets_a_grant_of_its_own() {
    let sb = site();
    assign_active(&sb, "carol", "dave", &["--until", "+30m"], "on call").assert_success();
    let first = grant_id_of_dave(&sb);
    sb.run("dave", &["sudo", "-n", "true"]).assert_success();
    pim(&sb, "carol", &["admin", "unassign", "dave", "admin"]).assert_success();
    assert!(!sb.is_member("dave", "sudo"));
    // A shell from before still carries the group: the old grant covers nothing.
    sb.run_with_groups("dave", &["sudo"], &["sudo", "-n", "true"])
        .assert_failure();
    assign_active(&sb, "carol", "dave", &["--until", "+30m"], "on call again").assert_success();
    let second = grant_id_of_dave(&sb);
    assert_ne!(second, first, "the old grant is not revived");
    sb.run("dave", &["sudo", "-n", "true"]).assert_success();
}

#[test]
fn an_owners_one_second_review_is_refused_naming_the_minimum_and_nobody_is_suspended() {
    let sb = site();
    pim(
        &sb,
        "carol",
        &["admin", "assign", "dave", "admin", "--until", "+2d"],
    )
    .assert_success();
    // Its default (remove) would take dave's assignment before anyone could look.
    pim(
        &sb,
        "carol",
        &["admin", "review", "start", "admin", "--duration", "1s"],
    )
    .assert_failure()
    .assert_stderr_contains("at least 1h ([daemon] min_review_duration)");
    // Straight through the bus, past pim's checks; and longer than a year.
    sb.call_pimd("carol", "AdminReviewStart", "stas", &["admin", "1", "0"])
        .assert_failure()
        .assert_stderr_contains("min_review_duration");
    sb.call_pimd(
        "carol",
        "AdminReviewStart",
        "stas",
        &["admin", "31622400", "0"],
    )
    .assert_failure()
    .assert_stderr_contains("at most 365d");
    let refused = refusals_of(&sb, "carol");
    assert_eq!(
        refused,
        vec![("review-start".to_string(), "admin".to_string()); 3],
        "each refusal audited"
    );
    let roles = pim(&sb, "dave", &["--json", "roles"])
        .assert_success()
        .json();
    assert!(
        roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "admin"),
        "dave's assignment stands: {roles}"
    );
    pim(
        &sb,
        "carol",
        &["admin", "review", "start", "admin", "--duration", "1h"],
    )
    .assert_success();
}

#[test]
fn a_reload_that_lowers_the_caps_brings_longer_assignments_within_them() {
    let sb = site();
    pim(
        &sb,
        "bob",
        &["admin", "assign", "dave", "web", "--until", "+20d"],
    )
    .assert_success();
    assign_active(&sb, "carol", "dave", &["--until", "+50m"], "on call").assert_success();
    assert!(sb.is_member("dave", "sudo"));
    let before = web_until(&sb).as_i64().expect("an end");

    let lowered = CONFIG
        .replace(
            "max_active_assignment = \"1h\"",
            "max_active_assignment = \"10s\"",
        )
        .replace(
            "max_eligible_assignment = \"30d\"",
            "max_eligible_assignment = \"1d\"",
        );
    assert_ne!(lowered, CONFIG);
    sb.write_file(CONFIG_PATH, &lowered, 0o644);
    sb.kill_pimd("HUP");
    let capped = || {
        sb.audit_records("root", &["--user", "dave"])
            .into_iter()
            .filter(|r| r["action"] == "assignment-capped")
            .count()
    };
    sb.wait_until("both assignments capped", WAIT, || capped() == 2);
    let after = web_until(&sb).as_i64().expect("an end");
    assert!(
        after < before && after <= before - 18 * 86_400,
        "{after} {before}"
    );
    // dave is told (his end is within 14 days now), and the active one ends with its cap.
    pim(&sb, "dave", &["status"])
        .assert_success()
        .assert_stdout_contains("'pim renew web -r REASON'");
    sb.wait_until("the capped active assignment's end", WAIT, || {
        !sb.is_member("dave", "sudo")
    });
    sb.run_with_groups("dave", &["sudo"], &["sudo", "-n", "true"])
        .assert_failure();
    assert_eq!(capped(), 2, "once each");
}
