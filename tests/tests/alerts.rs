//! Alerts (issue 14), end to end: each kind raised by a real cause on the sandbox's host (a
//! `gpasswd -a` by hand, a process started with a managed gid by a user without a grant, a
//! sudoers.d file giving alice root, activations in a row, a role without MFA, a permanent
//! member's sudo, an eligibility unused for the stale period, an eligible group grown past
//! the maximum), visible in `pim alerts --json`, dismissed, resolved when the cause goes;
//! a dismissal covers what it saw (a stronger sudoers rule, a new burst of activations
//! raise again);
//! listing and dismissing refused to those who may not, through the client and straight over
//! the bus.
//!
//! pimd looks at the host once a minute and after every SIGHUP: the tests send SIGHUP after
//! each cause rather than wait the minute.

use std::time::Duration;

use pim_e2e::{now_unix, Sandbox, CONFIG_PATH};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// Role `admin` (group sudo, strong, paul permanent), role `lab` (group docker, no MFA and no
/// justification: a weak role), three activations within an hour are frequent.
const CONFIG: &str = r#"[daemon]
admins = ["%pim-admins"]
auditors = ["%pim-auditors"]

[alerts]
frequent_activation = { count = 3, within = "1h" }

[roles.admin]
group = "sudo"
eligible = ["alice"]
permanent = ["paul"]

[roles.lab]
group = "docker"
eligible = ["alice"]
require_mfa = false
require_justification = false
"#;

fn host() -> Sandbox {
    host_with(|_| {})
}

/// [`host`], with `before` done to it before pimd starts.
fn host_with(before: impl FnOnce(&Sandbox)) -> Sandbox {
    let sb = Sandbox::start();
    for group in ["docker", "pim-admins", "pim-auditors"] {
        sb.add_group(group);
    }
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.add_user("carl", &[]);
    sb.add_user("paul", &["sudo"]);
    sb.add_user("audra", &["pim-auditors"]);
    sb.add_user("frank", &["pim-admins"]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.setup_sudo(Some("groups=sudo,docker"));
    before(&sb);
    sb.start_pimd();
    sb
}

/// pimd looks at the host again now (SIGHUP), and has once the reload is logged.
fn look_again(sb: &Sandbox) {
    let reloads = |sb: &Sandbox| sb.pimd_log().matches("configuration reloaded").count();
    let before = reloads(sb);
    sb.kill_pimd("HUP");
    sb.wait_until("pimd to reload", WAIT, || reloads(sb) > before);
}

/// `pim --json alerts [--all]` as the auditor.
fn alerts(sb: &Sandbox, all: bool) -> Vec<Value> {
    let mut argv = vec!["pim", "--json", "alerts"];
    if all {
        argv.push("--all");
    }
    let out = sb.run("audra", &argv);
    out.assert_success();
    out.json()["alerts"].as_array().cloned().unwrap_or_default()
}

fn find(alerts: &[Value], key: &str) -> Option<Value> {
    alerts.iter().find(|a| a["key"] == key).cloned()
}

/// Waits until an open alert of `key` is listed; returns it.
fn wait_open(sb: &Sandbox, key: &str) -> Value {
    wait_open_where(sb, key, |a| a["key"] == key)
}

/// Waits until an open alert that `matches` is listed; returns it.
fn wait_open_where(sb: &Sandbox, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    sb.wait_until(&format!("alert {what}"), WAIT, || {
        found = alerts(sb, false).into_iter().find(&matches);
        found.is_some()
    });
    found.unwrap()
}

/// The start of the keys of the sudoers-outside-pim alerts about `subject` in `file` (the
/// rule's fingerprint follows).
fn sudoers_key(file: &str, subject: &str) -> String {
    format!("sudoers-outside-pim:{file}:{subject}:")
}

fn key_starts(alert: &Value, prefix: &str) -> bool {
    alert["key"].as_str().unwrap_or("").starts_with(prefix)
}

/// Waits until the alert `id` is in `state` (in `--all`).
fn wait_state(sb: &Sandbox, id: i64, state: &str) -> Value {
    let mut found = None;
    sb.wait_until(&format!("alert {id} {state}"), WAIT, || {
        found = alerts(sb, true)
            .into_iter()
            .find(|a| a["id"] == id && a["state"] == state);
        found.is_some()
    });
    found.unwrap()
}

fn id(alert: &Value) -> i64 {
    alert["id"].as_i64().unwrap()
}

/// frank (an admin) dismisses `alert` for `reason`; waits until it is listed dismissed.
fn dismiss(sb: &Sandbox, alert: &Value, reason: &str) {
    sb.run(
        "frank",
        &[
            "pim",
            "alerts",
            "dismiss",
            &id(alert).to_string(),
            "-r",
            reason,
        ],
    )
    .assert_success();
    wait_state(sb, id(alert), "dismissed");
}

#[test]
fn given_a_role_without_mfa_then_weak_role_at_start() {
    let sb = host();
    let alert = wait_open(&sb, "weak-role:lab");
    assert_eq!(alert["kind"], "weak-role");
    assert_eq!(alert["role"], "lab");
    assert!(
        alert["detail"].as_str().unwrap().contains("no MFA"),
        "{alert}"
    );
    // Raised once: another look changes nothing.
    look_again(&sb);
    let all = alerts(&sb, true);
    assert_eq!(
        all.iter().filter(|a| a["key"] == "weak-role:lab").count(),
        1
    );
    // Audited, as the daemon's.
    let raised = sb.audit_records("audra", &["--role", "lab"]);
    assert!(
        raised
            .iter()
            .any(|r| r["action"] == "alert-raise" && r["actor"] == "pimd"),
        "{raised:?}"
    );
    // The text form and pim doctor name it too.
    sb.run("audra", &["pim", "alerts"])
        .assert_success()
        .assert_stdout_contains("weak-role");
    sb.run("root", &["pim", "--json", "doctor"])
        .assert_stdout_contains("weak-role");
    // The role strengthened (a reload): resolved.
    let strong = CONFIG.replace("require_mfa = false\nrequire_justification = false\n", "");
    sb.write_file(CONFIG_PATH, &strong, 0o644);
    look_again(&sb);
    wait_state(&sb, id(&alert), "resolved");
}

#[test]
fn given_a_member_added_by_hand_then_member_outside_pim_dismissed_and_quiet_while_it_persists() {
    let sb = host();
    sb.run("root", &["gpasswd", "-a", "bob", "sudo"])
        .assert_success();
    look_again(&sb);
    let alert = wait_open(&sb, "member-outside-pim:sudo:bob");
    assert_eq!(alert["user"], "bob");
    // paul is permanent: no alert for him.
    assert!(find(&alerts(&sb, false), "member-outside-pim:sudo:paul").is_none());

    // Not an admin: refused, through the client and over the bus.
    let alert_id = id(&alert).to_string();
    for user in ["audra", "carl"] {
        sb.run(
            user,
            &["pim", "alerts", "dismiss", &alert_id, "-r", "known"],
        )
        .assert_failure();
        sb.call_pimd(user, "DismissAlert", "xs", &[&alert_id, "known"])
            .assert_failure();
    }
    let still = wait_state(&sb, id(&alert), "open");
    assert_eq!(still["dismissed_by"], Value::Null);

    sb.run(
        "frank",
        &[
            "pim",
            "alerts",
            "dismiss",
            &alert_id,
            "-r",
            "bob covers the weekend",
        ],
    )
    .assert_success();
    let dismissed = wait_state(&sb, id(&alert), "dismissed");
    assert_eq!(dismissed["dismissed_by"], "frank");
    assert_eq!(dismissed["dismiss_reason"], "bob covers the weekend");
    let records = sb.audit_records("audra", &["--user", "bob"]);
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "alert-dismiss" && r["actor"] == "frank"),
        "{records:?}"
    );
    // The cause persists: not raised again.
    look_again(&sb);
    assert!(find(&alerts(&sb, false), "member-outside-pim:sudo:bob").is_none());
    // It goes, and comes back: a new alert.
    sb.run("root", &["gpasswd", "-d", "bob", "sudo"])
        .assert_success();
    look_again(&sb);
    sb.run("root", &["gpasswd", "-a", "bob", "sudo"])
        .assert_success();
    look_again(&sb);
    let again = wait_open(&sb, "member-outside-pim:sudo:bob");
    assert_ne!(id(&again), id(&alert));
    // Resolved when bob is out of the group.
    sb.run("root", &["gpasswd", "-d", "bob", "sudo"])
        .assert_success();
    look_again(&sb);
    let resolved = wait_state(&sb, id(&again), "resolved");
    assert!(resolved["closed_at"].as_i64().unwrap() > 0);
}

#[test]
fn given_a_process_with_a_managed_gid_and_no_grant_then_process_outside_grant_until_it_ends() {
    let sb = host();
    let carl_gid = sb
        .run("root", &["id", "-g", "carl"])
        .assert_success()
        .stdout_trimmed()
        .to_string();
    let shell = sb.spawn(
        "root",
        &[
            "setpriv",
            "--reuid=carl",
            &format!("--regid={carl_gid}"),
            "--groups=docker",
            "sleep",
            "600",
        ],
    );
    sb.wait_until("carl's process", WAIT, || {
        sb.run("root", &["pgrep", "-u", "carl", "sleep"]).success()
    });
    look_again(&sb);
    let alert = wait_open(&sb, "process-outside-grant:docker:carl");
    assert_eq!(alert["user"], "carl");
    assert!(alert["detail"].as_str().unwrap().contains("pid"), "{alert}");
    shell.kill();
    look_again(&sb);
    wait_state(&sb, id(&alert), "resolved");
}

#[test]
fn given_a_sudoers_file_giving_alice_root_then_sudoers_outside_pim_with_file_and_line() {
    let sb = host();
    sb.write_file(
        "/etc/sudoers.d/local",
        "# by hand\nalice ALL=(ALL) ALL\n",
        0o440,
    );
    // A file sudo skips (a dot in its name) is not read.
    sb.write_file("/etc/sudoers.d/old.bak", "carl ALL=(ALL) ALL\n", 0o440);
    look_again(&sb);
    let alice = sudoers_key("/etc/sudoers.d/local", "alice");
    let alert = wait_open_where(&sb, &alice, |a| key_starts(a, &alice));
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .starts_with("/etc/sudoers.d/local:2:"),
        "{alert}"
    );
    let open = alerts(&sb, false);
    assert!(
        !open.iter().any(|a| a["key"]
            .as_str()
            .unwrap()
            .starts_with("sudoers-outside-pim:/etc/sudoers.d/old.bak")),
        "{open:?}"
    );
    // The managed group's rule (pim-e2e's %sudo) and root's are not alerts.
    assert!(!open
        .iter()
        .any(|a| key_starts(a, &sudoers_key("/etc/sudoers", "root"))));
    sb.run("root", &["rm", "/etc/sudoers.d/local"])
        .assert_success();
    look_again(&sb);
    wait_state(&sb, id(&alert), "resolved");
}

#[test]
fn given_a_fifo_and_a_non_utf8_file_in_sudoers_d_at_start_then_pimd_serves_and_still_reads_the_rules(
) {
    // A FIFO nobody writes to: opening it to read would wait for ever.
    let sb = host_with(|sb| {
        sb.sh("root", "mkfifo /etc/sudoers.d/pipe").assert_success();
        sb.sh(
            "root",
            "printf 'mallory ALL=(ALL) ALL # caf\\351\\n' > /etc/sudoers.d/latin1 && \
             chmod 440 /etc/sudoers.d/latin1",
        )
        .assert_success();
    });
    let mallory = sudoers_key("/etc/sudoers.d/latin1", "mallory");
    let alert = wait_open_where(&sb, &mallory, |a| key_starts(a, &mallory));
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .starts_with("/etc/sudoers.d/latin1:1:"),
        "{alert}"
    );
    // A file pim cannot read (over its size cap): an alert naming it, and mallory's stays
    // open (what that file grants is unknown, not gone).
    sb.sh(
        "root",
        "head -c 2000000 /dev/zero | tr '\\0' '#' > /etc/sudoers.d/huge && \
         rm /etc/sudoers.d/latin1",
    )
    .assert_success();
    look_again(&sb);
    wait_open(&sb, "sudoers-outside-pim:/etc/sudoers.d/huge:unreadable");
    assert_eq!(wait_state(&sb, id(&alert), "open")["id"], alert["id"]);
    // Readable again: judged, and mallory's rule is gone.
    sb.run("root", &["rm", "/etc/sudoers.d/huge"])
        .assert_success();
    look_again(&sb);
    wait_state(&sb, id(&alert), "resolved");
}

#[test]
fn given_a_dismissed_sudoers_alert_then_a_stronger_rule_for_the_same_user_in_the_same_file_raises_again(
) {
    let sb = host();
    let file = "/etc/sudoers.d/web";
    let narrow = "alice ALL = (root) /usr/bin/systemctl restart nginx\n";
    sb.write_file(file, narrow, 0o440);
    look_again(&sb);
    let alice = sudoers_key(file, "alice");
    let seen = wait_open_where(&sb, &alice, |a| key_starts(a, &alice));
    dismiss(&sb, &seen, "alice restarts nginx");
    // The rule dismissed stays: quiet.
    look_again(&sb);
    assert!(!alerts(&sb, false).iter().any(|a| key_starts(a, &alice)));
    // Root then writes alice everything into the same file, for the same user: the dismissal
    // covered the rule it saw, not this one.
    sb.write_file(
        file,
        &format!("{narrow}alice ALL = (ALL) NOPASSWD: ALL\n"),
        0o440,
    );
    look_again(&sb);
    let stronger = wait_open_where(&sb, &alice, |a| key_starts(a, &alice));
    assert_ne!(id(&stronger), id(&seen));
    assert!(
        stronger["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{file}:2:")),
        "{stronger}"
    );
    assert!(
        stronger["detail"]
            .as_str()
            .unwrap()
            .contains("NOPASSWD: ALL"),
        "{stronger}"
    );
    // The first stays dismissed: its rule is still there.
    wait_state(&sb, id(&seen), "dismissed");
}

#[test]
fn given_activations_in_a_row_then_frequent_activation() {
    let sb = host();
    activations(&sb, 3);
    // Raised on the activation itself: no look at the host needed.
    let alert = wait_open(&sb, "frequent-activation:lab:alice");
    assert_eq!(alert["user"], "alice");
    assert!(
        alert["detail"].as_str().unwrap().contains("3 times"),
        "{alert}"
    );
    // With a window of 20 s, they fall out of it: resolved at the next evaluation.
    let short = CONFIG.replace("within = \"1h\"", "within = \"20s\"");
    sb.write_file(CONFIG_PATH, &short, 0o644);
    sb.wait_until("the activations to fall out of the window", WAIT, || {
        look_again(&sb);
        alerts(&sb, true)
            .iter()
            .any(|a| a["id"] == id(&alert) && a["state"] == "resolved")
    });
}

/// `n` activations and deactivations of `lab` by alice.
fn activations(sb: &Sandbox, n: usize) {
    for _ in 0..n {
        sb.run("alice", &["pim", "activate", "lab"])
            .assert_success();
        sb.run("alice", &["pim", "deactivate", "lab"])
            .assert_success();
    }
}

#[test]
fn given_a_dismissed_frequent_activation_then_a_new_burst_raises_it_again() {
    let sb = host();
    let key = "frequent-activation:lab:alice";
    activations(&sb, 3);
    let first = wait_open(&sb, key);
    dismiss(&sb, &first, "alice is testing the lab images");
    // Times are whole seconds: what the dismissal's own second holds, it saw.
    let dismissed_at = alerts(&sb, true)
        .into_iter()
        .find(|a| a["id"] == id(&first))
        .unwrap()["closed_at"]
        .as_i64()
        .unwrap();
    sb.wait_until("the dismissal's second to pass", WAIT, || {
        now_unix() > dismissed_at
    });
    // Two more within the hour: with the three the dismissal saw, five, but only two since.
    activations(&sb, 2);
    look_again(&sb);
    assert!(find(&alerts(&sb, false), key).is_none());
    // The third since the dismissal: a new alert.
    activations(&sb, 1);
    let again = wait_open(&sb, key);
    assert_ne!(id(&again), id(&first));
    assert!(
        again["detail"]
            .as_str()
            .unwrap()
            .contains("3 times within 1h since its last dismissal"),
        "{again}"
    );
    wait_state(&sb, id(&first), "dismissed");
    let released = sb.audit_records("audra", &["--user", "alice"]);
    assert!(
        released.iter().any(|r| r["action"] == "alert-release"),
        "{released:?}"
    );
}

/// The sandbox's configuration with `[alerts]` given `extra` keys too, loaded (SIGHUP).
fn reload_with_alerts(sb: &Sandbox, extra: &str, config: &str) {
    let alerts = "[alerts]\n";
    assert!(config.contains(alerts));
    sb.write_file(
        CONFIG_PATH,
        &config.replacen(alerts, &format!("{alerts}{extra}\n"), 1),
        0o644,
    );
    look_again(sb);
}

#[test]
fn given_an_eligible_user_who_does_not_activate_for_the_stale_period_then_stale_eligibility() {
    let sb = host();
    // Two seconds without an activation is stale here: alice is eligible for both roles and
    // has activated neither since pimd began watching.
    reload_with_alerts(&sb, "stale_eligibility = \"2s\"", CONFIG);
    let mut lab = None;
    sb.wait_until("alice's eligibility for lab to go stale", WAIT, || {
        look_again(&sb);
        lab = find(&alerts(&sb, false), "stale-eligibility:lab:alice");
        lab.is_some()
    });
    let lab = lab.unwrap();
    assert_eq!(
        (lab["user"].as_str(), lab["role"].as_str()),
        (Some("alice"), Some("lab"))
    );
    assert!(
        lab["detail"]
            .as_str()
            .unwrap()
            .contains("has never activated it"),
        "{lab}"
    );
    let admin = wait_open(&sb, "stale-eligibility:admin:alice");
    // paul is permanent in admin: never stale.
    assert!(find(&alerts(&sb, true), "stale-eligibility:admin:paul").is_none());
    // alice activates lab: that one resolves, on the activation itself; admin's stays.
    sb.run("alice", &["pim", "activate", "lab"])
        .assert_success();
    wait_state(&sb, id(&lab), "resolved");
    wait_state(&sb, id(&admin), "open");
}

#[test]
fn given_more_users_in_an_eligible_group_than_max_privileged_then_too_many_privileged() {
    let sb = host();
    sb.add_user("olga", &["ops"]);
    sb.add_user("oscar", &["ops"]);
    // lab: alice, and the members of ops (olga, oscar): three, over a maximum of two.
    // admin has two (alice eligible, paul permanent): not over.
    let config = CONFIG.replace(
        "[roles.lab]\ngroup = \"docker\"\neligible = [\"alice\"]",
        "[roles.lab]\ngroup = \"docker\"\neligible = [\"alice\", \"%ops\"]",
    );
    assert_ne!(config, CONFIG);
    reload_with_alerts(&sb, "max_privileged = 2", &config);
    let alert = wait_open(&sb, "too-many-privileged:lab");
    assert_eq!(alert["role"], "lab");
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("3 privileged users"),
        "{alert}"
    );
    assert!(find(&alerts(&sb, true), "too-many-privileged:admin").is_none());
    // oscar leaves ops: two are left, and the alert resolves at the next look.
    sb.run("root", &["gpasswd", "-d", "oscar", "ops"])
        .assert_success();
    look_again(&sb);
    wait_state(&sb, id(&alert), "resolved");
}

#[test]
fn given_a_permanent_members_sudo_then_break_glass_used() {
    let sb = host();
    sb.run("paul", &["sudo", "-n", "true"]).assert_success();
    let alert = wait_open(&sb, "break-glass-used:sudo:paul");
    assert_eq!(alert["user"], "paul");
    assert_eq!(alert["role"], "admin");
    // Again: still the one alert.
    sb.run("paul", &["sudo", "-n", "true"]).assert_success();
    look_again(&sb);
    let all = alerts(&sb, true);
    assert_eq!(
        all.iter()
            .filter(|a| a["kind"] == "break-glass-used")
            .count(),
        1,
        "{all:?}"
    );
    // It does not resolve by itself; dismissed, the next use is a new alert.
    let alert_id = id(&alert).to_string();
    sb.run(
        "frank",
        &[
            "pim",
            "alerts",
            "dismiss",
            &alert_id,
            "-r",
            "paul's quarterly drill",
        ],
    )
    .assert_success();
    wait_state(&sb, id(&alert), "dismissed");
    sb.run("paul", &["sudo", "-n", "true"]).assert_success();
    let again = wait_open(&sb, "break-glass-used:sudo:paul");
    assert_ne!(id(&again), id(&alert));
}

#[test]
fn given_a_plain_user_then_the_alerts_are_refused_through_the_client_and_the_bus() {
    let sb = host();
    wait_open(&sb, "weak-role:lab");
    sb.run("carl", &["pim", "alerts"])
        .assert_failure()
        .assert_stderr_contains("auditors");
    sb.run("alice", &["pim", "--json", "alerts", "--all"])
        .assert_failure();
    sb.call_pimd("carl", "ListAlerts", "b", &["true"])
        .assert_failure();
    // Watching, carl sees no alert event; audra does.
    let carl = sb.spawn("carl", &["pim", "watch"]);
    let mut audra = sb.spawn("audra", &["pim", "watch"]);
    // Both watch once pim says so on stderr.
    for watch in [&carl, &audra] {
        sb.wait_until("pim watch to follow events", WAIT, || {
            watch.stderr_so_far().contains("following events")
        });
    }
    sb.run("root", &["gpasswd", "-a", "carl", "docker"])
        .assert_success();
    look_again(&sb);
    audra.wait_for_stdout("alert-raised", WAIT);
    assert!(
        !carl.stdout_so_far().contains("alert"),
        "{}",
        carl.stdout_so_far()
    );
    carl.kill();
    audra.kill();
}
