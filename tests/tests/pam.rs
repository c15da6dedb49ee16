//! `pam_pim.so` end to end: the real module in sudo's PAM stack (and driven by `pamtester`),
//! the real `pimd` on the sandbox's system bus, real `gpasswd` and `sudo`.
//!
//! Every sandbox has the same host: role `admin` grants group `sudo` (no MFA, no approval, so
//! that activating needs no TOTP step); `alice` is eligible, `paul` is a `permanent` member
//! (in `sudo` at rest), `bob` is in no managed group but may use sudo through a sudoers rule of
//! his own, `mallory` was put in `sudo` by hand and no role grants it to him, and root is in
//! `sudo` too (uid 0 is never the module's business). sudoers: `%sudo NOPASSWD: ALL`,
//! `Defaults !fqdn` (see `Sandbox::setup_sudo`).
//!
//! The hole the module closes: a process keeps the supplementary groups it logged in with, so
//! a shell started during a grant still carries `sudo` after pimd took the user out of
//! `/etc/group`. Such processes are made with `run_with_groups(user, &["sudo"], ...)` or are
//! real shells `spawn`ed during the grant.

use std::time::{Duration, Instant};

use pim_e2e::{Background, Output, Sandbox, CONFIG_PATH, PAM_MODULE};

const CONFIG: &str = r#"
[roles.admin]
group = "sudo"
description = "Full administration through sudo"
eligible = ["alice"]
permanent = ["paul"]
require_mfa = false
require_approval = false
max_duration = "2h"
default_duration = "1h"
# Shells of the grant are kept after its end: here the module is what refuses them sudo
# (the default, "terminate", would end them: tests/tests/ending.rs).
on_end = "keep"
"#;

/// sudoers rules beyond `%sudo` (which `setup_sudo` writes).
const EXTRA_SUDOERS: &str = "bob ALL=(ALL:ALL) NOPASSWD: ALL\n";

/// The module's line in the tests that are not about its arguments.
const PAM_ARGS: &str = "groups=sudo services=sudo,sudo-i";

/// What the fail-closed refusal says (pam-module/src/decision.rs).
const UNCONFIRMED: &str = "pim: access refused: pimd could not confirm a live grant for group sudo";
/// What a misconfigured line says to the users it refuses.
const MISCONFIGURED: &str = "pim: access refused: pam_pim is misconfigured on this host";

/// A sandbox with the users, the configuration and sudo (module line `pam_args`), without pimd.
fn host(pam_args: &str) -> Sandbox {
    let sb = Sandbox::start();
    assert!(
        sb.has_pam_module(),
        "libpam_pim.so is not built: run `cargo build --workspace` first"
    );
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.add_user("paul", &["sudo"]);
    sb.add_user("mallory", &["sudo"]);
    sb.run("root", &["gpasswd", "-a", "root", "sudo"])
        .assert_success();
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.setup_sudo(Some(pam_args));
    sb.write_file("/etc/sudoers.d/pim-e2e-pam", EXTRA_SUDOERS, 0o440);
    sb.run("root", &["visudo", "-c"]).assert_success();
    sb
}

/// [`host`] with pimd running.
fn host_with_pimd(pam_args: &str) -> Sandbox {
    let sb = host(pam_args);
    sb.start_pimd();
    sb
}

/// Rewrites sudo's PAM stack with another module line (pimd keeps running).
fn set_module_line(sb: &Sandbox, pam_args: &str) {
    sb.setup_sudo(Some(pam_args));
}

/// `pim activate admin` as `user`, for `duration`.
#[track_caller]
fn activate(sb: &Sandbox, user: &str, duration: &str) {
    sb.run(
        user,
        &[
            "pim",
            "activate",
            "admin",
            "-d",
            duration,
            "-r",
            "end-to-end test of pam_pim",
        ],
    )
    .assert_success();
    assert!(
        sb.is_member(user, "sudo"),
        "{user} is not in sudo after activating"
    );
}

/// `sudo -n true` as a fresh login of `user`.
fn sudo_fresh(sb: &Sandbox, user: &str) -> Output {
    sb.run(user, &["sudo", "-n", "true"])
}

/// `sudo -n true` from a process of `user` that still carries group `sudo` (logged in earlier).
fn sudo_stale(sb: &Sandbox, user: &str) -> Output {
    sb.run_with_groups(user, &["sudo"], &["sudo", "-n", "true"])
}

/// The account phase of the `sudo` stack for `user`, as root (pimd answers only root).
fn pamtester(sb: &Sandbox, user: &str) -> Output {
    sb.run("root", &["pamtester", "sudo", user, "acct_mgmt"])
}

/// The lines of stderr the module wrote (they all start with `pim: `).
fn pim_lines(out: &Output) -> Vec<&str> {
    out.stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pim: "))
        .collect()
}

/// Asserts that stderr has exactly one line from the module, starting with `prefix` and ending
/// with `suffix` (whatever sudo or pamtester add around it).
#[track_caller]
fn assert_one_reason(out: &Output, prefix: &str, suffix: &str) {
    let lines = pim_lines(out);
    assert!(
        lines.len() == 1 && lines[0].starts_with(prefix) && lines[0].ends_with(suffix),
        "expected exactly one line `{prefix}...{suffix}` on stderr, got {lines:?}:\n{out}"
    );
}

/// Asserts the command failed and showed the module's one line `prefix...suffix`.
#[track_caller]
fn assert_refused_with(out: &Output, prefix: &str, suffix: &str) {
    out.assert_failure();
    assert_one_reason(out, prefix, suffix);
}

/// The reason shown for a grant that ended: `pim: your grant for role admin (group sudo) ended
/// at HH:MM UTC; run 'pim activate admin'` (the date goes before the time when it was another
/// day).
#[track_caller]
fn assert_grant_ended_reason(out: &Output) {
    assert_one_reason(
        out,
        "pim: your grant for role admin (group sudo) ended at ",
        " UTC; run 'pim activate admin'",
    );
}

/// The command failed with the reason for a grant that ended.
#[track_caller]
fn assert_grant_ended(out: &Output) {
    out.assert_failure();
    assert_grant_ended_reason(out);
}

/// The `access-check` records in the audit log, as root sees them.
fn access_checks(sb: &Sandbox) -> Vec<serde_json::Value> {
    let doc = sb
        .run("root", &["pim", "--json", "audit"])
        .assert_success()
        .json();
    doc["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records array in {doc}"))
        .iter()
        .filter(|r| r["action"] == "access-check")
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The grant's lifecycle
// ---------------------------------------------------------------------------------------------

#[test]
fn sudo_needs_a_live_grant_and_a_shell_from_the_grant_is_refused_after_deactivation() {
    let sb = host_with_pimd(PAM_ARGS);

    // No grant: not in sudo, so sudoers itself refuses; carrying a stale `sudo` does not help.
    sudo_fresh(&sb, "alice").assert_failure();
    assert_refused_with(
        &sudo_stale(&sb, "alice"),
        "pim: you hold group sudo without a live grant; run 'pim activate admin'",
        "",
    );

    // A live grant: a fresh login is in sudo and sudo lets it in.
    activate(&sb, "alice", "1h");
    sb.run("alice", &["sudo", "-n", "id", "-un"])
        .assert_success()
        .assert_stdout_contains("root");
    sb.run("alice", &["sudo", "-i", "-n", "true"])
        .assert_success();
    sudo_stale(&sb, "alice").assert_success();

    // A shell started during the grant: it carries `sudo` and sudo works in it, then it waits
    // for the grant to end and tries again.
    let script = r#"echo "groups: $(id -Gn)"
if sudo -n true; then echo "during: allowed"; else echo "during: refused"; fi
while [ ! -e /tmp/pim-e2e-go ]; do sleep 0.05; done
echo "after: groups $(id -Gn)"
sudo -n true
echo "after: status $?"
"#;
    let mut shell = sb.spawn("alice", &["bash", "-c", script]);
    shell.wait_for_stdout("during: ", Duration::from_secs(60));
    let so_far = shell.stdout_so_far();
    assert!(
        so_far.contains("groups: alice sudo") && so_far.contains("during: allowed"),
        "the shell started during the grant:\n{so_far}\n{}",
        shell.stderr_so_far()
    );

    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    assert!(!sb.is_member("alice", "sudo"));
    assert!(!sb.groups_of("alice").contains(&"sudo".to_string()));

    sb.run("root", &["touch", "/tmp/pim-e2e-go"])
        .assert_success();
    let shell = shell.wait(Duration::from_secs(60));
    shell.assert_success();
    assert!(
        shell.stdout.contains("after: groups alice sudo"),
        "the shell lost its stale group?\n{shell}"
    );
    assert!(
        shell.stdout.contains("after: status 1"),
        "sudo in the stale shell was not refused:\n{shell}"
    );
    assert_grant_ended_reason(&shell);

    // The same through run_with_groups, and a fresh login is refused by sudoers.
    assert_grant_ended(&sudo_stale(&sb, "alice"));
    sudo_fresh(&sb, "alice").assert_failure();
}

#[test]
fn expiry_ends_sudo_for_a_shell_started_during_the_grant() {
    let sb = host_with_pimd(PAM_ARGS);
    // Long enough for the shell below to start and use sudo on a slow machine; the test waits
    // for the expiry anyway.
    activate(&sb, "alice", "20s");

    let script = r#"echo "groups: $(id -Gn)"
if sudo -n true; then echo "during: allowed"; else echo "during: refused"; fi
while [ ! -e /tmp/pim-e2e-go ]; do sleep 0.05; done
sudo -n true
echo "after: status $?"
"#;
    let mut shell = sb.spawn("alice", &["bash", "-c", script]);
    shell.wait_for_stdout("during: ", Duration::from_secs(60));
    assert!(
        shell.stdout_so_far().contains("groups: alice sudo"),
        "{}",
        shell.stdout_so_far()
    );

    sb.wait_until(
        "the grant to expire and alice to leave sudo",
        Duration::from_secs(120),
        || !sb.is_member("alice", "sudo"),
    );
    sb.run("root", &["touch", "/tmp/pim-e2e-go"])
        .assert_success();
    let shell = shell.wait(Duration::from_secs(60));
    assert!(
        shell.stdout.contains("during: allowed"),
        "sudo during the grant was refused:\n{shell}"
    );
    assert!(
        shell.stdout.contains("after: status 1"),
        "sudo after expiry was not refused:\n{shell}"
    );
    assert_grant_ended_reason(&shell);
    assert_grant_ended(&sudo_stale(&sb, "alice"));
}

#[test]
fn permanent_member_passes_without_a_grant() {
    let sb = host_with_pimd(PAM_ARGS);
    assert!(sb.groups_of("paul").contains(&"sudo".to_string()));
    sb.run("paul", &["sudo", "-n", "id", "-un"])
        .assert_success()
        .assert_stdout_contains("root");
    sudo_stale(&sb, "paul").assert_success();
    pamtester(&sb, "paul").assert_success();
    // pimd neither refused nor took the group away.
    assert!(access_checks(&sb).is_empty());
    assert!(sb.is_member("paul", "sudo"));
}

// ---------------------------------------------------------------------------------------------
// Who the module leaves alone
// ---------------------------------------------------------------------------------------------

/// A listener of root's at pimd's socket path in place of pimd (tests/sandbox/fake_pimd.py):
/// reports each connection, then answers "allowed" (`allow`) or nothing (`stall`).
const FAKE_PIMD: &str = include_str!("../sandbox/fake_pimd.py");

/// Stops pimd and puts `fake_pimd.py MODE` at its socket path, as `user` (the directory made
/// everyone's for a user who is not root); returns it, listening.
fn fake_pimd_in_place<'a>(sb: &'a Sandbox, user: &str, mode: &str) -> Background<'a> {
    if sb.pimd_running() {
        sb.kill_pimd("TERM");
    }
    sb.write_file("/tmp/fake_pimd.py", FAKE_PIMD, 0o644);
    let dir_mode = if user == "root" { "0700" } else { "1777" };
    sb.sh(
        "root",
        &format!("mkdir -p /run/pim && chmod {dir_mode} /run/pim"),
    )
    .assert_success();
    let mut fake = sb.spawn(
        user,
        &["python3", "/tmp/fake_pimd.py", mode, "/run/pim/pam.socket"],
    );
    fake.wait_for_stdout("listening", Duration::from_secs(60));
    fake
}

#[test]
fn users_in_no_managed_group_and_root_cause_no_call_to_pimd() {
    let sb = host_with_pimd(PAM_ARGS);
    assert!(sb.groups_of("root").contains(&"sudo".to_string()));
    // A listener that reports every connection stands in for pimd.
    let fake = fake_pimd_in_place(&sb, "root", "allow");
    sudo_fresh(&sb, "bob").assert_success();
    sudo_fresh(&sb, "root").assert_success();
    sb.run("root", &["sudo", "-n", "-u", "bob", "true"])
        .assert_success();
    pamtester(&sb, "bob").assert_success();
    pamtester(&sb, "root").assert_success();
    let seen = fake.stdout_so_far();
    assert!(
        !seen.contains("connection"),
        "calls for bob and root reached pimd's socket:\n{seen}"
    );

    // The listener does see the module's call when there is one: a holder's sudo.
    sudo_stale(&sb, "mallory").assert_success();
    let seen = fake.stdout_so_far();
    assert!(
        seen.contains("connection from uid 0"),
        "the listener did not see mallory's check:\n{seen}"
    );
    drop(fake);

    // And without pimd at all, nothing changes for them.
    sb.sh("root", "rm -f /run/pim/pam.socket").assert_success();
    sudo_fresh(&sb, "bob").assert_success();
    sudo_fresh(&sb, "root").assert_success();
    pamtester(&sb, "bob").assert_success();
    pamtester(&sb, "root").assert_success();
}

// ---------------------------------------------------------------------------------------------
// pimd unreachable or hung
// ---------------------------------------------------------------------------------------------

#[test]
fn pimd_stopped_fail_closed_refuses_holders_at_once() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    sudo_fresh(&sb, "alice").assert_success();

    sb.kill_pimd("TERM");
    let started = Instant::now();
    let out = sudo_fresh(&sb, "alice");
    let took = started.elapsed();
    assert_refused_with(&out, UNCONFIRMED, "");
    // The default timeout= is 2 s; a missing name on the bus is answered at once.
    assert!(took < Duration::from_secs(20), "took {took:?}:\n{out}");
    assert_refused_with(&sudo_stale(&sb, "alice"), UNCONFIRMED, "");
    assert_refused_with(&pamtester(&sb, "alice"), UNCONFIRMED, "");
    // Holders without a grant are refused all the same; others are left alone.
    assert_refused_with(&sudo_fresh(&sb, "mallory"), UNCONFIRMED, "");
    sudo_fresh(&sb, "bob").assert_success();
    sudo_fresh(&sb, "root").assert_success();

    // fail=closed written out is the same.
    set_module_line(&sb, "groups=sudo fail=closed");
    assert_refused_with(&sudo_fresh(&sb, "alice"), UNCONFIRMED, "");

    // pimd back: the grant is still live.
    sb.start_pimd();
    sudo_fresh(&sb, "alice").assert_success();
}

/// What the module logs when it does not believe pimd absent because the sandbox (as every
/// container) is a PID namespace of its own.
const NOT_INITIAL_PID_NAMESPACE: &str = "this is not the initial PID namespace";

/// Whether the module logged, to syslog, a denial that names `why`.
fn module_logged(sb: &Sandbox, why: &str) -> bool {
    sb.syslog_lines()
        .iter()
        .any(|l| l.contains("pam_pim") && l.contains(why))
}

#[test]
fn pimd_stopped_fail_open_in_a_sandbox_refuses_holders_as_absence_cannot_be_trusted() {
    let sb = host(&format!("{PAM_ARGS} fail=open"));
    // pimd never started. fail=open lets an absent pimd through only where the module sees
    // the host as its init does, in the initial PID namespace: the sandbox is a PID namespace
    // of its own (as a firejail sandbox or a container is), so holders are refused there,
    // whether their grant is live or not; everyone else is left to sudoers.
    assert_refused_with(&sudo_stale(&sb, "alice"), UNCONFIRMED, "");
    assert_refused_with(&sudo_fresh(&sb, "mallory"), UNCONFIRMED, "");
    assert_refused_with(&pamtester(&sb, "mallory"), UNCONFIRMED, "");
    sudo_fresh(&sb, "alice").assert_failure(); // not in sudo: sudoers refuses
    sudo_fresh(&sb, "bob").assert_success();
    sb.wait_until(
        "the module's reason in syslog",
        Duration::from_secs(30),
        || module_logged(&sb, NOT_INITIAL_PID_NAMESPACE),
    );

    // With pimd running, fail=open changes nothing: its refusals stand.
    sb.start_pimd();
    assert_refused_with(
        &sudo_fresh(&sb, "mallory"),
        "pim: you hold group sudo without a live grant, and no pim role grants it to you",
        "",
    );
}

/// Asserts that `user`'s sudo is refused as unconfirmed, no sooner than the module's
/// `timeout=1s` and well within a bound, which it returns.
fn assert_refused_after_the_timeout(sb: &Sandbox, user: &str) -> Duration {
    let bound = Duration::from_secs(20);
    let started = Instant::now();
    let out = sudo_fresh(sb, user);
    let took = started.elapsed();
    assert_refused_with(&out, UNCONFIRMED, "");
    assert!(
        took >= Duration::from_secs(1) && took < bound,
        "took {took:?}, expected between timeout=1s and {bound:?}:\n{out}"
    );
    bound
}

#[test]
fn hung_pimd_is_bounded_by_the_module_timeout() {
    let sb = host_with_pimd("groups=sudo timeout=1s");
    activate(&sb, "alice", "1h");
    sudo_fresh(&sb, "alice").assert_success();

    // pimd keeps its name on the bus but answers nothing: the call waits in the bus until the
    // module gives up after timeout=1s (D-Bus's own default method timeout is 25 s).
    assert_eq!(sb.kill_pimd("STOP"), None);
    let bound = assert_refused_after_the_timeout(&sb, "alice");

    let started = Instant::now();
    let out = pamtester(&sb, "alice");
    let took = started.elapsed();
    assert_refused_with(&out, UNCONFIRMED, "");
    assert!(took >= Duration::from_secs(1) && took < bound, "{took:?}");

    // fail=open: a daemon that holds its name but does not answer is not absent (the checked
    // user could bring that about by flooding it): refused all the same.
    set_module_line(&sb, "groups=sudo timeout=1s fail=open");
    let started = Instant::now();
    let out = sudo_stale(&sb, "mallory");
    let took = started.elapsed();
    assert_refused_with(&out, UNCONFIRMED, "");
    assert!(took >= Duration::from_secs(1) && took < bound, "{took:?}");

    // Others never wait for the daemon.
    let started = Instant::now();
    sudo_fresh(&sb, "bob").assert_success();
    sudo_fresh(&sb, "root").assert_success();
    assert!(started.elapsed() < bound);

    // Woken up, pimd answers again.
    assert_eq!(sb.kill_pimd("CONT"), None);
    set_module_line(&sb, "groups=sudo timeout=1s");
    sudo_fresh(&sb, "alice").assert_success();
}

// ---------------------------------------------------------------------------------------------
// The environment cannot choose the bus
// ---------------------------------------------------------------------------------------------

#[test]
fn dbus_system_bus_address_in_the_environment_changes_nothing() {
    let sb = host_with_pimd(PAM_ARGS);
    sb.write_file(
        "/etc/sudoers.d/pim-e2e-env",
        "Defaults env_keep += \"DBUS_SYSTEM_BUS_ADDRESS\"\n",
        0o440,
    );
    sb.run("root", &["visudo", "-c"]).assert_success();

    // A bus of alice's own, where nobody owns org.pim.Manager1, and a socket nobody listens on.
    let mut fake = sb.spawn(
        "alice",
        &[
            "dbus-daemon",
            "--session",
            "--nofork",
            "--address=unix:path=/tmp/alice-bus",
            "--print-address",
        ],
    );
    fake.wait_for_stdout("unix:path=/tmp/alice-bus", Duration::from_secs(60));
    let fakes = [
        "unix:path=/tmp/alice-bus".to_string(),
        "unix:path=/tmp/nobody-listens-here".to_string(),
    ];

    activate(&sb, "alice", "1h");
    for address in &fakes {
        let env = format!("DBUS_SYSTEM_BUS_ADDRESS={address}");
        // The variable does reach sudo's command (env_keep), so it was in sudo's environment.
        sb.run(
            "alice",
            &[
                "env",
                &env,
                "sudo",
                "-n",
                "printenv",
                "DBUS_SYSTEM_BUS_ADDRESS",
            ],
        )
        .assert_success()
        .assert_stdout_contains(address);
        sb.run(
            "root",
            &["env", &env, "pamtester", "sudo", "alice", "acct_mgmt"],
        )
        .assert_success();
        sb.run_with_groups("alice", &["sudo"], &["env", &env, "sudo", "-n", "true"])
            .assert_success();
    }

    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    sb.run("root", &["gpasswd", "-a", "alice", "sudo"])
        .assert_success();
    for address in &fakes {
        let env = format!("DBUS_SYSTEM_BUS_ADDRESS={address}");
        // The refusal is pimd's own, not a fail-closed one from an unusable bus.
        assert_grant_ended(&sb.run("alice", &["env", &env, "sudo", "-n", "true"]));
        assert_grant_ended(&sb.run(
            "root",
            &["env", &env, "pamtester", "sudo", "alice", "acct_mgmt"],
        ));
    }
    assert!(fake.is_running(), "alice's bus died");
}

// ---------------------------------------------------------------------------------------------
// pamtester: the account phase alone
// ---------------------------------------------------------------------------------------------

#[test]
fn pamtester_account_phase_allows_and_denies() {
    let sb = host_with_pimd(PAM_ARGS);
    // Not a holder: the module ignores, the stack passes.
    pamtester(&sb, "alice").assert_success();
    pamtester(&sb, "bob").assert_success();
    pamtester(&sb, "root").assert_success();
    // A permanent member passes.
    pamtester(&sb, "paul").assert_success();
    // A holder no role grants the group to.
    assert_refused_with(
        &pamtester(&sb, "mallory"),
        "pim: you hold group sudo without a live grant, and no pim role grants it to you; ask an administrator",
        "",
    );

    activate(&sb, "alice", "1h");
    pamtester(&sb, "alice")
        .assert_success()
        .assert_stdout_contains("account management done");
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    // Put back in sudo by hand (as if the group file were restored from a backup).
    sb.run("root", &["gpasswd", "-a", "alice", "sudo"])
        .assert_success();
    let out = pamtester(&sb, "alice");
    assert_grant_ended(&out);
    assert!(out.stderr.contains("Permission denied"), "{out}");

    // The sudo-i stack has the module too.
    assert_grant_ended(&sb.run("root", &["pamtester", "sudo-i", "alice", "acct_mgmt"]));
    // A service not in services= is left alone (the stack falls through to `other`).
    set_module_line(&sb, "groups=sudo services=sudo-i");
    pamtester(&sb, "alice").assert_success();
}

// ---------------------------------------------------------------------------------------------
// Misconfiguration
// ---------------------------------------------------------------------------------------------

#[test]
fn a_line_without_groups_lets_root_through_and_refuses_everyone_else() {
    let sb = host_with_pimd("services=sudo,sudo-i");
    activate(&sb, "alice", "1h");
    sudo_fresh(&sb, "root").assert_success();
    pamtester(&sb, "root").assert_success();
    assert_refused_with(&sudo_fresh(&sb, "alice"), MISCONFIGURED, "");
    assert_refused_with(&sudo_fresh(&sb, "paul"), MISCONFIGURED, "");
    assert_refused_with(&pamtester(&sb, "alice"), MISCONFIGURED, "");
    // No usable groups=: the module cannot tell who holds a managed group, so bob too.
    assert_refused_with(&sudo_fresh(&sb, "bob"), MISCONFIGURED, "");

    // A typo in the key is the same as no groups= at all.
    set_module_line(&sb, "grups=sudo");
    sudo_fresh(&sb, "root").assert_success();
    assert_refused_with(&sudo_fresh(&sb, "alice"), MISCONFIGURED, "");
    // pimd was never asked.
    assert!(access_checks(&sb).is_empty());
}

#[test]
fn a_line_with_a_typo_in_a_value_fails_closed_for_holders_only() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    sudo_fresh(&sb, "alice").assert_success();
    for line in [
        "groups=sudo fail=closd",
        "groups=sudo timeout=2",
        "groups=sudo debug=yes",
        "groups=sudo groups=wheel",
    ] {
        set_module_line(&sb, line);
        // Root always passes; a holder, even with a live grant or permanent, is refused.
        sudo_fresh(&sb, "root").assert_success();
        assert_refused_with(&sudo_fresh(&sb, "alice"), MISCONFIGURED, "");
        assert_refused_with(&sudo_fresh(&sb, "paul"), MISCONFIGURED, "");
        // The line still names the managed groups: a non-holder is not the module's business.
        sudo_fresh(&sb, "bob").assert_success();
    }
    // An unknown argument is only logged.
    set_module_line(&sb, "groups=sudo colour=blue");
    sudo_fresh(&sb, "alice").assert_success();
    assert!(access_checks(&sb).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

#[test]
fn denials_are_audited_and_successes_are_not() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    for _ in 0..3 {
        sudo_fresh(&sb, "alice").assert_success();
    }
    pamtester(&sb, "alice").assert_success();
    sudo_fresh(&sb, "paul").assert_success();
    assert_eq!(access_checks(&sb), Vec::<serde_json::Value>::new());

    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    assert_grant_ended(&sudo_stale(&sb, "alice"));
    assert_refused_with(&sudo_fresh(&sb, "mallory"), "pim: you hold group sudo", "");

    // The records are queued to pimd's writer: sudo's answer does not wait for them.
    let mut checks = Vec::new();
    sb.wait_until(
        "both refusals in the audit",
        Duration::from_secs(30),
        || {
            checks = access_checks(&sb);
            checks.len() >= 2
        },
    );
    assert_eq!(checks.len(), 2, "{checks:#?}");
    let alice = checks
        .iter()
        .find(|r| r["user"] == "alice")
        .unwrap_or_else(|| panic!("no access-check for alice: {checks:#?}"));
    assert_eq!(alice["outcome"], "refused", "{alice}");
    assert!(
        alice["detail"]
            .as_str()
            .is_some_and(|d| d.contains("sudo") && d.contains("ended at")),
        "{alice}"
    );
    assert!(checks
        .iter()
        .any(|r| r["user"] == "mallory" && r["outcome"] == "refused"));

    // The human view shows it too, and a user sees their own.
    sb.run("root", &["pim", "audit", "--user", "alice"])
        .assert_success()
        .assert_stdout_contains("access-check");
}

#[test]
fn a_line_in_another_phase_is_ignored() {
    let sb = host_with_pimd(PAM_ARGS);
    // mallory holds `sudo` without a grant: in the account phase the module refuses him.
    pamtester(&sb, "mallory").assert_failure();
    // `requisite` ends the stack on anything but success or ignore, so passing through to
    // pam_permit proves each phase answered PAM_IGNORE.
    let module = pim_e2e::PAM_MODULE;
    let stack = format!(
        "auth requisite {module} {PAM_ARGS}\nauth required pam_permit.so\n\
         account required pam_permit.so\n\
         password requisite {module} {PAM_ARGS}\npassword required pam_permit.so\n\
         session requisite {module} {PAM_ARGS}\nsession required pam_permit.so\n"
    );
    sb.write_file("/etc/pam.d/sudo", &stack, 0o644);
    sb.run(
        "root",
        &[
            "pamtester",
            "sudo",
            "mallory",
            "authenticate",
            "chauthtok",
            "open_session",
            "close_session",
        ],
    )
    .assert_success();
}

// ---------------------------------------------------------------------------------------------
// Attacks on whom and what the check judges
// ---------------------------------------------------------------------------------------------

/// Roles of three gated groups: `admin` (sudo) and the cheap `docker` for alice, and `db`
/// (dbadmin) where dana is `permanent`.
const CONFIG_THREE_GROUPS: &str = r#"
[roles.admin]
group = "sudo"
eligible = ["alice"]
require_mfa = false
require_approval = false

[roles.docker]
group = "docker"
eligible = ["alice"]
require_mfa = false
require_justification = false

[roles.db]
group = "dbadmin"
permanent = ["dana"]
require_mfa = false
"#;

#[test]
fn a_live_grant_of_one_gated_group_does_not_vouch_for_another() {
    let sb = host("groups=sudo,docker,dbadmin services=sudo,sudo-i");
    sb.add_group("docker");
    sb.add_user("dana", &["dbadmin"]);
    sb.write_file(CONFIG_PATH, CONFIG_THREE_GROUPS, 0o644);
    sb.start_pimd();

    // alice's admin grant is revoked; she activates the cheap docker role. A shell she opened
    // during the admin grant still carries sudo, and now docker too.
    activate(&sb, "alice", "1h");
    sb.run(
        "root",
        &[
            "pim",
            "admin",
            "revoke",
            "alice",
            "admin",
            "-r",
            "rotation over",
        ],
    )
    .assert_success();
    sb.run(
        "alice",
        &[
            "pim",
            "activate",
            "docker",
            "-r",
            "end-to-end test of pam_pim",
        ],
    )
    .assert_success();
    let stale = sb.run_with_groups("alice", &["sudo", "docker"], &["sudo", "-n", "true"]);
    assert_refused_with(
        &stale,
        "pim: your grant for role admin (group sudo) ended at ",
        " UTC; run 'pim activate admin'",
    );

    // dana is permanent in db's role only: a stale sudo does not ride on it.
    let dana = sb.run_with_groups("dana", &["sudo", "dbadmin"], &["sudo", "-n", "true"]);
    assert_refused_with(
        &dana,
        "pim: you hold group sudo without a live grant, and no pim role grants it to you",
        "",
    );
    // With only the group it is permanent in, dana is covered.
    pamtester(&sb, "dana").assert_success();

    // Each held group covered by its own grant: allowed.
    activate(&sb, "alice", "1h");
    sb.run_with_groups("alice", &["sudo", "docker"], &["sudo", "-n", "true"])
        .assert_success();
}

#[test]
fn sudo_targetpw_rootpw_and_runaspw_judge_the_invoking_user_not_root() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    for option in ["targetpw", "rootpw", "runaspw"] {
        // They make PAM_USER the target (root); with NOPASSWD sudo still runs the account
        // phase, and a stale holder must be judged as herself there.
        sb.write_file(
            "/etc/sudoers.d/pim-e2e-target",
            &format!("Defaults {option}\n"),
            0o440,
        );
        sb.run("root", &["visudo", "-c"]).assert_success();
        let out = sudo_stale(&sb, "alice");
        out.assert_failure();
        assert_grant_ended_reason(&out);
        let mallory = sudo_fresh(&sb, "mallory");
        assert_refused_with(
            &mallory,
            "pim: you hold group sudo without a live grant",
            "",
        );
        // Root invoking gains nothing and loses nothing; bob holds no gated group.
        sudo_fresh(&sb, "root").assert_success();
        sudo_fresh(&sb, "bob").assert_success();
        // And with a live grant alice passes.
        activate(&sb, "alice", "1h");
        sudo_stale(&sb, "alice").assert_success();
        sb.run("alice", &["pim", "deactivate", "admin"])
            .assert_success();

        // doctor sees the option and that the module, in sudo's stack, judges the invoker.
        let sudoers = doctor_check(&sb, "sudoers");
        assert_eq!(sudoers["status"], "ok", "{sudoers}");
        assert!(
            sudoers["message"]
                .as_str()
                .is_some_and(|m| m.contains(option)),
            "{sudoers}"
        );
    }
}

#[test]
fn sudoers_without_the_account_phase_fails_pim_doctor() {
    let sb = host_with_pimd(PAM_ARGS);
    assert_eq!(doctor_check(&sb, "sudoers")["status"], "ok");
    sb.write_file(
        "/etc/sudoers.d/pim-e2e-acct",
        "Defaults !pam_acct_mgmt\n",
        0o440,
    );
    sb.run("root", &["visudo", "-c"]).assert_success();
    // What doctor warns about: sudo skips the account phase, so a stale holder gets root.
    sudo_fresh(&sb, "mallory").assert_success();
    let doctor = sb.run("root", &["pim", "doctor"]);
    doctor.assert_status(1);
    let sudoers = doctor_check(&sb, "sudoers");
    assert_eq!(sudoers["status"], "fail", "{sudoers}");
    assert!(
        sudoers["message"].as_str().is_some_and(
            |m| m.contains("/etc/sudoers.d/pim-e2e-acct:1") && m.contains("!pam_acct_mgmt")
        ),
        "{sudoers}"
    );
}

#[test]
fn a_groups_typo_refuses_everyone_but_root_and_fails_pim_doctor() {
    let sb = host_with_pimd("groups=sduo services=sudo,sudo-i");
    // mallory is in sudo outside pim: the module meant for sudo must not wave him through.
    assert_refused_with(&sudo_fresh(&sb, "mallory"), MISCONFIGURED, "");
    assert_refused_with(&pamtester(&sb, "mallory"), MISCONFIGURED, "");
    assert_refused_with(&sudo_fresh(&sb, "bob"), MISCONFIGURED, "");
    sudo_fresh(&sb, "root").assert_success();
    assert!(sb
        .syslog_lines()
        .iter()
        .any(|l| l.contains("none of the groups in groups= (sduo) exists on this host")));

    let sudo_pam = doctor_check(&sb, "sudo-pam");
    assert_eq!(sudo_pam["status"], "fail", "{sudo_pam}");
    assert!(
        sudo_pam["message"]
            .as_str()
            .is_some_and(|m| m.contains("none of groups=sduo exists")),
        "{sudo_pam}"
    );
}

/// Lines `pim doctor` once judged otherwise than the module: service names in capitals (the
/// module acts for them), a second `groups=` and a bad `timeout=` (the module refuses every
/// holder). Doctor now reads the line with the module's own grammar.
#[test]
fn pim_doctor_judges_the_module_line_as_the_module_reads_it() {
    let sb = host_with_pimd("groups=sudo services=SUDO,Sudo-I");
    // Linux-PAM's service names compare without regard to case: the module acts for sudo.
    assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    let sudo_pam = doctor_check(&sb, "sudo-pam");
    assert_eq!(sudo_pam["status"], "ok", "{sudo_pam}");

    for args in [
        "groups=sudo groups=wheel services=sudo,sudo-i",
        "groups=sudo services=sudo,sudo-i timeout=soon",
    ] {
        set_module_line(&sb, args);
        // Even paul, a permanent member, is refused: the line has an error.
        assert_refused_with(&sudo_fresh(&sb, "paul"), MISCONFIGURED, "");
        let sudo_pam = doctor_check(&sb, "sudo-pam");
        assert_eq!(sudo_pam["status"], "fail", "{args}: {sudo_pam}");
        assert!(
            sudo_pam["message"]
                .as_str()
                .is_some_and(|m| m.contains("refuses sudo to everyone who holds sudo")),
            "{args}: {sudo_pam}"
        );
    }
}

#[test]
fn fail_open_never_opens_for_a_stopped_pimd_or_an_error_reply() {
    let sb = host_with_pimd(&format!("{PAM_ARGS} timeout=1s fail=open"));
    // A name from NSS that useradd would not make (sssd style), in sudo outside pim: pimd used
    // to reject it, and the error reply let it through under fail=open.
    let kim = "kim@corp";
    add_sudo_member_outside_useradd(&sb, kim, 2001);
    assert_refused_with(
        &pamtester(&sb, kim),
        "pim: you hold group sudo without a live grant, and no pim role grants it to you",
        "",
    );
    // A name pimd rejects outright (longer than any it takes): its error reply denies too.
    let long = format!("k{}", "x".repeat(299));
    add_sudo_member_outside_useradd(&sb, &long, 2002);
    assert_refused_with(&pamtester(&sb, &long), UNCONFIRMED, "");

    // Only an absent pimd, seen from the initial PID namespace, would leave the decision to
    // the rest of the stack; the sandbox is a PID namespace of its own, so it denies here too
    // (see pimd_stopped_fail_open_...).
    sb.kill_pimd("TERM");
    assert_refused_with(&sudo_fresh(&sb, "mallory"), UNCONFIRMED, "");

    // pimd stopped but still owning its name: the call times out, and that denies.
    sb.start_pimd();
    assert_eq!(sb.kill_pimd("STOP"), None);
    assert_refused_with(&sudo_fresh(&sb, "mallory"), UNCONFIRMED, "");
    assert_eq!(sb.kill_pimd("CONT"), None);
}

#[test]
fn a_holders_sudo_is_answered_while_another_user_keeps_pimd_busy() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    // Writes are slow (a root process holds the database's write lock, as a slow disk would
    // make every commit wait), and bob keeps pimd's writer busy with enrolments that each wait
    // on it for the whole busy timeout.
    let mut lock = sb.spawn(
        "root",
        &[
            "python3",
            "-c",
            "import sqlite3, time\n\
             db = sqlite3.connect('/var/lib/pim/pim.db', isolation_level=None)\n\
             db.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             time.sleep(600)\n",
        ],
    );
    lock.wait_for_stdout("locked", Duration::from_secs(30));
    let mut flood = sb.spawn(
        "bob",
        &[
            "bash",
            "-c",
            "for i in 1 2 3; do (while :; do pim mfa enroll >/dev/null 2>&1; done) & done; \
             echo started; wait",
        ],
    );
    flood.wait_for_stdout("started", Duration::from_secs(30));
    for _ in 0..3 {
        sudo_fresh(&sb, "alice").assert_success();
        sudo_stale(&sb, "alice").assert_success();
    }
    flood.kill();
    lock.kill();
}

/// Adds `name` (uid and own group `uid`) straight to passwd, group and shadow, as a directory
/// service (sssd, LDAP) would provide a name that useradd refuses, and puts it in `sudo`.
fn add_sudo_member_outside_useradd(sb: &Sandbox, name: &str, uid: u32) {
    let script = r#"set -e
echo "$1:x:$2:$2::/tmp:/bin/sh" >>/etc/passwd
echo "g$2:x:$2:" >>/etc/group
echo "$1:*:19000:0:99999:7:::" >>/etc/shadow
gpasswd -a "$1" sudo"#;
    sb.run(
        "root",
        &["bash", "-c", script, "bash", name, &uid.to_string()],
    )
    .assert_success();
}

#[test]
fn a_reloaded_configuration_reaches_the_access_check_at_once() {
    let sb = host_with_pimd(PAM_ARGS);
    assert_refused_with(&sudo_fresh(&sb, "mallory"), "pim: you hold group sudo", "");
    // The access check reads a snapshot of the configuration: a reload must swap it.
    let with_mallory = CONFIG.replace(
        r#"permanent = ["paul"]"#,
        r#"permanent = ["paul", "mallory"]"#,
    );
    assert_ne!(with_mallory, CONFIG);
    sb.write_file(CONFIG_PATH, &with_mallory, 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until(
        "pimd to take the new configuration",
        Duration::from_secs(60),
        || sb.pimd_log().contains("configuration reloaded"),
    );
    sudo_fresh(&sb, "mallory").assert_success();
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.kill_pimd("HUP");
    sb.wait_until(
        "pimd to take the old configuration back",
        Duration::from_secs(60),
        || sb.pimd_log().matches("configuration reloaded").count() == 2,
    );
    assert_refused_with(&sudo_fresh(&sb, "mallory"), "pim: you hold group sudo", "");
}

/// The finding `check` of `pim --json doctor` run as root in the sandbox.
fn doctor_check(sb: &Sandbox, check: &str) -> serde_json::Value {
    let report = sb.run("root", &["pim", "--json", "doctor"]).json();
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == check))
        .cloned()
        .unwrap_or_else(|| panic!("no {check} check in {report:#}"))
}

// ---------------------------------------------------------------------------------------------
// Whom a process that is not sudo judges, and names it cannot be fooled by
// ---------------------------------------------------------------------------------------------

/// What pimd tells a holder of `sudo` whom no role grants it (mallory).
const NOT_GRANTED: &str =
    "pim: you hold group sudo without a live grant, and no pim role grants it to you";

/// A PAM service `name` whose account phase is pam_pim with `pam_args` and then pam_permit (as
/// `common-account` ends), so that PAM_IGNORE from pam_pim lets the account through.
fn write_service(sb: &Sandbox, name: &str, pam_args: &str) {
    sb.write_file(
        &format!("/etc/pam.d/{name}"),
        &format!(
            "#%PAM-1.0\naccount    required   {PAM_MODULE} {pam_args}\n\
             account    required   pam_permit.so\n"
        ),
        0o644,
    );
}

#[test]
fn a_root_daemon_taking_the_remote_user_from_the_network_judges_the_local_account() {
    // rshd and rlogind run as root and copy the client's user name into PAM_RUSER; the
    // module sits in common-account without services=. mallory logs in to mallory claiming
    // to be a user nobody has, a user holding nothing, or root.
    let sb = host_with_pimd(PAM_ARGS);
    write_service(&sb, "rsh", "groups=sudo");
    for remote in ["nosuch", "bob", "root"] {
        let out = sb.run(
            "root",
            &[
                "pamtester",
                "-I",
                &format!("ruser={remote}"),
                "rsh",
                "mallory",
                "acct_mgmt",
            ],
        );
        assert_refused_with(&out, NOT_GRANTED, "");
    }
    // Logging in to bob (who holds nothing) on mallory's behalf judges mallory too.
    let out = sb.run(
        "root",
        &[
            "pamtester",
            "-I",
            "ruser=mallory",
            "rsh",
            "bob",
            "acct_mgmt",
        ],
    );
    assert_refused_with(&out, NOT_GRANTED, "");
    // Root's own sudo names root in PAM_RUSER: let through, as without it.
    sb.run(
        "root",
        &[
            "pamtester",
            "-I",
            "ruser=root",
            "sudo",
            "mallory",
            "acct_mgmt",
        ],
    )
    .assert_success();
    sb.run("root", &["sudo", "-n", "-u", "mallory", "true"])
        .assert_success();
    // A non-holder with a non-holder's name stays untouched.
    sb.run(
        "root",
        &["pamtester", "-I", "ruser=nosuch", "rsh", "bob", "acct_mgmt"],
    )
    .assert_success();
}

#[test]
fn a_process_of_a_service_account_authenticating_a_holder_judges_the_holder() {
    // A helper run by bob (who holds nothing), as cockpit-session or polkit-agent-helper-1
    // run for their service accounts, doing the account phase for mallory: mallory is judged
    // (pimd answers only root about someone else, so the check cannot pass).
    let sb = host_with_pimd(PAM_ARGS);
    write_service(&sb, "cockpit", "groups=sudo");
    let out = sb.run("bob", &["pamtester", "cockpit", "mallory", "acct_mgmt"]);
    assert_refused_with(&out, UNCONFIRMED, "");
    sb.run("bob", &["pamtester", "cockpit", "bob", "acct_mgmt"])
        .assert_success();
}

#[test]
fn a_remote_user_that_is_not_utf8_changes_nothing_on_a_service_not_listed() {
    let sb = host_with_pimd(PAM_ARGS);
    write_service(&sb, "pimtest", "groups=sudo services=sudo");
    let script = r#"pamtester -I "ruser=$(printf 'x\377')" "$1" mallory acct_mgmt"#;
    // Not in services=: left alone, whatever PAM_RUSER holds.
    sb.run("root", &["bash", "-c", script, "bash", "pimtest"])
        .assert_success();
    // Where the module acts, the name counts for nothing: mallory is judged.
    write_service(&sb, "pimtest", "groups=sudo");
    assert_refused_with(
        &sb.run("root", &["bash", "-c", script, "bash", "pimtest"]),
        NOT_GRANTED,
        "",
    );
}

#[test]
fn a_member_by_gid_only_is_a_holder() {
    // eve is in an alias group sharing sudo's gid, which sudo's own entry does not list.
    let sb = host_with_pimd(PAM_ARGS);
    sb.sh(
        "root",
        "set -e; groupadd -o -g \"$(getent group sudo | cut -d: -f3)\" sudoalias",
    )
    .assert_success();
    sb.add_user("eve", &["sudoalias"]);
    assert!(!sb.is_member("eve", "sudo"));
    assert_refused_with(&pamtester(&sb, "eve"), NOT_GRANTED, "");
    assert_refused_with(&sudo_fresh(&sb, "eve"), NOT_GRANTED, "");
}

/// `script` run by bash as root in a mount namespace of its own (private propagation), as a
/// set-uid sandbox would give a user: what it mounts there is seen by nobody else.
fn in_mount_namespace_of_its_own(sb: &Sandbox, script: &str) -> Output {
    sb.run(
        "root",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
        ],
    )
}

#[test]
fn fail_open_does_not_open_for_pimds_socket_hidden_in_a_mount_namespace_of_ones_own() {
    // A set-uid sandbox that keeps set-uid working (firejail without nonewprivs,
    // --blacklist=/run/pim) hides pimd's socket, or puts a dead one in its place, while pimd
    // runs: nothing listens there, but pimd is not absent.
    let sb = host_with_pimd(&format!("{PAM_ARGS} timeout=1s fail=open"));
    assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    for hide in [
        "mount -t tmpfs -o mode=0700 tmpfs /run/pim",
        "mount -t tmpfs tmpfs /run/pim",
        "mount -t tmpfs -o mode=0700 tmpfs /run/pim && python3 -c \
         'import socket; socket.socket(socket.AF_UNIX).bind(\"/run/pim/pam.socket\")'",
    ] {
        let out = in_mount_namespace_of_its_own(
            &sb,
            &format!("set -e; {hide}; exec /run/.sandbox/runas mallory sudo -n true"),
        );
        assert_refused_with(&out, UNCONFIRMED, "");
    }
    // Stopped for real, pimd is absent; but the sandbox is not the initial PID namespace, so
    // fail=open does not apply here either (see pimd_stopped_fail_open_...).
    sb.kill_pimd("TERM");
    assert_refused_with(&sudo_fresh(&sb, "mallory"), UNCONFIRMED, "");
}

#[test]
fn fail_open_does_not_open_for_a_pid_namespace_with_a_proc_of_its_own() {
    // firejail's default (`firejail --noprofile --blacklist=/run/pim sudo -i`): a mount and a
    // PID namespace of the user's, a fresh /proc whose PID 1 is the sandbox's own (so "PID 1's
    // mount namespace" is the sandbox's), and /run/pim an empty root 0700 directory there.
    let sb = host_with_pimd(&format!("{PAM_ARGS} timeout=1s fail=open"));
    assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    let out = sb.run(
        "root",
        &[
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "bash",
            "-c",
            "set -e; mount -t tmpfs -o mode=0700 tmpfs /run/pim; \
             exec /run/.sandbox/runas mallory sudo -n true",
        ],
    );
    assert_refused_with(&out, UNCONFIRMED, "");
    sb.wait_until(
        "the module's reason in syslog",
        Duration::from_secs(30),
        || module_logged(&sb, NOT_INITIAL_PID_NAMESPACE),
    );
}

#[test]
fn fail_open_does_not_open_in_a_chroot_that_hides_pimds_socket() {
    // A chroot keeps the mount namespace (PID 1's, here): a tree of the whole file system
    // bound elsewhere, with /proc in it and an empty root 0700 /run/pim.
    let sb = host_with_pimd(&format!("{PAM_ARGS} timeout=1s fail=open"));
    assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    sb.sh(
        "root",
        "set -e; mkdir -p /tmp/croot; mount --rbind / /tmp/croot; \
         mount --rbind /proc /tmp/croot/proc; \
         mount -t tmpfs -o mode=0700 tmpfs /tmp/croot/run/pim; \
         [ -S /run/pim/pam.socket ] && [ ! -e /tmp/croot/run/pim/pam.socket ]",
    )
    .assert_success();
    let out = sb.run(
        "root",
        &[
            "chroot",
            "/tmp/croot",
            "/run/.sandbox/runas",
            "mallory",
            "sudo",
            "-n",
            "true",
        ],
    );
    assert_refused_with(&out, UNCONFIRMED, "");
}

#[test]
fn a_listener_of_a_users_own_at_pimds_socket_path_is_not_taken_for_pimd() {
    // mallory puts a listener of hers at pimd's socket path that answers pimd's "allowed" to
    // each request's id: in a mount namespace where set-uid still works (a sandbox a user may
    // start), and on the host should /run/pim be left writable. sudo must not take it, with
    // fail=closed or fail=open.
    for fail in ["", " fail=open"] {
        let sb = host_with_pimd(&format!("{PAM_ARGS}{fail}"));
        assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
        sb.write_file("/tmp/fake_pimd.py", FAKE_PIMD, 0o644);
        let script = "set -e; mount -t tmpfs -o mode=1777 tmpfs /run/pim; \
             /run/.sandbox/runas mallory python3 /tmp/fake_pimd.py allow /run/pim/pam.socket \
               >/tmp/fake_pimd.out 2>&1 & \
             for _ in $(seq 100); do [ -S /run/pim/pam.socket ] && break; sleep 0.05; done; \
             exec /run/.sandbox/runas mallory sudo -n true";
        let out = in_mount_namespace_of_its_own(&sb, script);
        assert_refused_with(&out, UNCONFIRMED, "");
        let fake = sb.sh("root", "cat /tmp/fake_pimd.out");
        assert!(fake.stdout.contains("connection from uid 0"), "{fake}");

        // The same in PID 1's namespace: pimd stopped and /run/pim made everyone's.
        let fake = fake_pimd_in_place(&sb, "mallory", "allow");
        assert_refused_with(&sudo_fresh(&sb, "mallory"), UNCONFIRMED, "");
        assert!(fake.stdout_so_far().contains("connection from uid 0"));
    }
}

#[test]
fn a_stuck_listener_at_pimds_socket_is_bounded_by_the_module_timeout() {
    for fail in ["", " fail=open"] {
        let sb = host_with_pimd(&format!("groups=sudo timeout=1s{fail}"));
        activate(&sb, "alice", "1h");
        // Root's listener (as pimd is) that takes each request and never answers.
        let fake = fake_pimd_in_place(&sb, "root", "stall");
        assert_refused_after_the_timeout(&sb, "alice");
        assert!(fake.stdout_so_far().contains("connection from uid 0"));
    }
}

/// A request for `user` holding `sudo`, as the module frames it, sent by `python3` from a
/// process of `who` that may bypass file permissions (CAP_DAC_OVERRIDE, as some services run
/// with): prints what pimd answered, or "hung up".
fn ask_pimds_socket_with_dac_override(sb: &Sandbox, who: &str, user: &str) -> Output {
    let script = r#"
import socket, struct, sys
user = sys.argv[1].encode()
body = struct.pack("<H", len(user)) + user + struct.pack("<H", 4) + b"sudo"
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect("/run/pim/pam.socket")
try:
    s.sendall(struct.pack("<4sQI", b"PIMq", 42, len(body)) + body)
    reply = s.recv(4096)
except (BrokenPipeError, ConnectionResetError):
    reply = b""
print("answered %r" % reply if reply else "hung up")
"#;
    sb.run(
        "root",
        &[
            "setpriv",
            &format!("--reuid={who}"),
            &format!("--regid={who}"),
            "--init-groups",
            "--inh-caps=+dac_override",
            "--ambient-caps=+dac_override",
            "python3",
            "-c",
            script,
            user,
        ],
    )
}

#[test]
fn a_process_that_is_not_root_connecting_to_pimds_socket_is_refused_and_audited() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    // Without the capability the socket's permissions keep bob out.
    let out = sb.run(
        "bob",
        &[
            "python3",
            "-c",
            "import socket; socket.socket(socket.AF_UNIX).connect('/run/pim/pam.socket')",
        ],
    );
    assert!(out.stderr.contains("PermissionError"), "{out}");
    // With it, he connects, and pimd hangs up before answering anything.
    for _ in 0..3 {
        let out = ask_pimds_socket_with_dac_override(&sb, "bob", "alice");
        assert_eq!(out.assert_success().stdout.trim(), "hung up", "{out}");
    }
    // Root asking the same way gets pimd's answer, with the request's id.
    let out = ask_pimds_socket_with_dac_override(&sb, "root", "alice");
    assert!(out.assert_success().stdout.contains("PIMa*"), "{out}");
    // Each refusal is audited against bob.
    sb.wait_until(
        "bob's refusals in the audit",
        Duration::from_secs(60),
        || {
            access_checks(&sb)
                .iter()
                .filter(|r| {
                    r["actor"] == "bob"
                        && r["outcome"] == "refused"
                        && r["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("only root may ask"))
                })
                .count()
                == 3
        },
    );
    sudo_fresh(&sb, "alice").assert_success();
}

#[test]
fn with_dbus_daemon_stopped_a_holder_with_a_live_grant_passes_and_one_without_is_refused() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    // The sandbox's own dbus-daemon (its PID namespace holds only the sandbox's processes),
    // stopped: every call on the bus hangs, pimd's socket does not.
    sb.sh("root", "kill -STOP \"$(pgrep -x dbus-daemon)\"")
        .assert_success();
    sudo_fresh(&sb, "alice").assert_success();
    sudo_stale(&sb, "alice").assert_success();
    pamtester(&sb, "alice").assert_success();
    assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    assert_refused_with(&pamtester(&sb, "mallory"), NOT_GRANTED, "");
    sb.sh("root", "kill -CONT \"$(pgrep -x dbus-daemon)\"")
        .assert_success();
    // The denials were audited meanwhile.
    assert!(
        access_checks(&sb).iter().any(|r| r["user"] == "mallory"),
        "{:?}",
        access_checks(&sb)
    );
}

#[test]
fn with_dbus_daemon_killed_pimd_keeps_answering_and_comes_back_on_a_new_bus() {
    let sb = host_with_pimd(PAM_ARGS);
    activate(&sb, "alice", "1h");
    // Killed, not stopped: pimd's connection to the bus closes. pimd used to end with it
    // (and its socket with it), leaving every holder without sudo until a new pimd owned its
    // name on a new bus.
    sb.sh("root", "kill -KILL \"$(pgrep -x dbus-daemon)\"")
        .assert_success();
    sb.wait_until("pimd to see the bus gone", Duration::from_secs(60), || {
        sb.pimd_log()
            .contains("pimd: lost the connection to the system bus")
    });
    assert!(sb.pimd_running(), "{}", sb.pimd_log_tail(20));
    sudo_fresh(&sb, "alice").assert_success();
    sudo_stale(&sb, "alice").assert_success();
    assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    // A new bus: pimd serves it again.
    sb.start_new_bus();
    sb.wait_until("pimd back on the bus", Duration::from_secs(60), || {
        sb.bus_name_owned(pim_e2e::BUS_NAME)
    });
    sb.run("alice", &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("admin");
    sudo_fresh(&sb, "alice").assert_success();
}

#[test]
fn connections_that_never_send_do_not_delay_a_holders_answer() {
    let sb = host_with_pimd(&format!("{PAM_ARGS} timeout=2s"));
    activate(&sb, "alice", "1h");
    // A holder's sudo stopped between connect and send holds a connection open; root's
    // python stands in for many of them at once, more than pimd has workers, renewed as
    // pimd hangs up on them.
    let script = r#"
import socket, sys, time
held = []
deadline = time.time() + 30
print("holding", flush=True)
while time.time() < deadline:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect("/run/pim/pam.socket")
        held.append(s)
    except OSError:
        pass
    held = held[-200:]
    time.sleep(0.005)
"#;
    sb.write_file("/tmp/silent.py", script, 0o644);
    let mut silent = sb.spawn("root", &["python3", "/tmp/silent.py"]);
    silent.wait_for_stdout("holding", Duration::from_secs(60));
    for _ in 0..5 {
        sudo_fresh(&sb, "alice").assert_success();
    }
    silent.kill();
}

#[test]
fn denials_beyond_the_records_of_a_minute_are_counted_and_every_one_is_written_by_a_stopping_pimd()
{
    let sb = host_with_pimd(PAM_ARGS);
    // mallory tries sudo over and over: each is refused; 20 a minute get a record of their own.
    let tries = 25;
    for _ in 0..tries {
        assert_refused_with(&sudo_fresh(&sb, "mallory"), NOT_GRANTED, "");
    }
    // A stopping pimd writes what is queued, then what was counted.
    assert_eq!(sb.kill_pimd("TERM"), Some(0));
    sb.start_pimd();
    let all = sb.audit_records("root", &[]);
    let one_by_one = all
        .iter()
        .filter(|r| r["action"] == "access-check" && r["user"] == "mallory")
        .count();
    let counted: u64 = all
        .iter()
        .filter(|r| r["action"] == "refusals-unrecorded" && r["actor"] == "pam")
        .filter_map(|r| r["detail"].as_str()?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(one_by_one, 20, "{all:#?}");
    assert_eq!(one_by_one as u64 + counted, tries, "{all:#?}");
}

#[test]
fn pim_doctor_asks_pimds_socket_a_real_question_and_says_what_fail_open_does_here() {
    let sb = host_with_pimd(&format!("{PAM_ARGS} fail=open"));
    // The sandbox is a PID namespace of its own: fail=open does not apply in it, and doctor
    // says so rather than "refuses holders (fail=closed)" or a plain pass.
    let here = doctor_check(&sb, "pam-socket");
    assert_eq!(here["status"], "warn", "{here}");
    let message = here["message"].as_str().unwrap_or("");
    assert!(
        message.contains("pimd answers") && message.contains("fail=open does not apply"),
        "{here}"
    );
    // A root listener that takes the question and never answers is not pimd answering; doctor
    // does not hang on it either (its own timeout, well under the command's).
    set_module_line(&sb, PAM_ARGS);
    let _stuck = fake_pimd_in_place(&sb, "root", "stall");
    sb.sh("root", "chmod 0600 /run/pim/pam.socket")
        .assert_success();
    let started = Instant::now();
    let stuck = doctor_check(&sb, "pam-socket");
    assert_eq!(stuck["status"], "fail", "{stuck}");
    assert!(
        stuck["message"]
            .as_str()
            .unwrap_or("")
            .contains("nothing answers"),
        "{stuck}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn pim_doctor_checks_pimds_socket() {
    let sb = host_with_pimd(PAM_ARGS);
    let ok = doctor_check(&sb, "pam-socket");
    assert_eq!(ok["status"], "ok", "{ok}");
    // A directory others may enter: the module would not trust what is in it.
    sb.sh("root", "chmod 0755 /run/pim").assert_success();
    let open = doctor_check(&sb, "pam-socket");
    assert_eq!(open["status"], "fail", "{open}");
    assert!(
        open["message"].as_str().unwrap_or("").contains("mode 755"),
        "{open}"
    );
    sb.sh("root", "chmod 0700 /run/pim").assert_success();
    // A listener that is not root's at the socket's path.
    let _fake = fake_pimd_in_place(&sb, "mallory", "allow");
    sb.sh(
        "root",
        "chmod 0700 /run/pim && chown root /run/pim/pam.socket && chmod 0600 /run/pim/pam.socket",
    )
    .assert_success();
    let foreign = doctor_check(&sb, "pam-socket");
    assert_eq!(foreign["status"], "fail", "{foreign}");
    assert!(
        foreign["message"]
            .as_str()
            .unwrap_or("")
            .contains("not root"),
        "{foreign}"
    );
}
