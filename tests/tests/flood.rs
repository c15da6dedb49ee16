//! Floods of pimd by local users, end to end: what one user sends as fast as they can must
//! neither deny sudo to others nor grow pimd, the audit or approvers' screens without bound.
//!
//! Every sandbox has the same host: role `admin` grants group `sudo` to alice (no MFA, no
//! approval), role `backup` grants the system's `backup` group to alice
//! (likewise), role `db` grants `dbadmin`
//! to alice after bob's approval; mallory is eligible for nothing. sudo has `pam_pim.so groups=sudo` in its account stack.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pim_e2e::{Background, Sandbox, CONFIG_PATH};
use serde_json::Value;

/// How long anything here may take on a slow machine; never a measure of speed.
const WAIT: Duration = Duration::from_secs(180);

const ROLES: &str = r#"
[roles.admin]
group = "sudo"
eligible = ["alice"]
require_mfa = false
max_duration = "2h"
default_duration = "1h"

[roles.backup]
group = "backup"
eligible = ["alice"]
require_mfa = false
require_justification = false

[roles.db]
group = "dbadmin"
eligible = ["alice"]
require_mfa = false
require_approval = true
approvers = ["bob"]
"#;

const REASON: &str = "rotate the TLS keys on web1";

/// The raw D-Bus client that floods pimd (see the script's own description).
const FLOOD_SCRIPT: &str = include_str!("../sandbox/dbus_flood.py");

/// The floods here load the machine: they run one at a time, so that one test's flood is not
/// the load under which another test's sudo must be answered.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host, with pimd running [`ROLES`] (and every default of `[daemon]`, such as
/// `calls_per_minute = 30`).
fn host() -> Sandbox {
    let sb = Sandbox::start();
    assert!(
        sb.has_pam_module(),
        "libpam_pim.so is not built: run `cargo build --workspace` first"
    );
    sb.add_group("dbadmin");
    for user in ["alice", "bob", "mallory"] {
        sb.add_user(user, &[]);
    }
    sb.write_file(CONFIG_PATH, ROLES, 0o644);
    sb.setup_sudo(Some("groups=sudo"));
    sb.start_pimd();
    sb
}

/// A line of pimd's `/proc/PID/status`, in kB (VmRSS: resident now; VmHWM: the peak).
fn pimd_memory_kb(sb: &Sandbox, field: &str) -> u64 {
    let out = sb.sh(
        "root",
        &format!("grep '^{field}:' /proc/$(cat /run/.sandbox/pimd.pid)/status"),
    );
    out.assert_success();
    out.stdout
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {:?}", out.stdout))
}

/// Records of `action` by `actor` with `outcome`.
fn records<'a>(all: &'a [Value], action: &str, actor: &str, outcome: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|r| r["action"] == action && r["actor"] == actor && r["outcome"] == outcome)
        .collect()
}

/// Stops pimd cleanly (which writes what was only counted) and starts it again.
fn restart_pimd(sb: &Sandbox) {
    assert_eq!(sb.kill_pimd("TERM"), Some(0));
    sb.start_pimd();
}

/// The one record of `action` by `actor`, its detail.
#[track_caller]
fn only_detail(all: &[Value], action: &str, actor: &str) -> String {
    let found = records(all, action, actor, "refused");
    assert_eq!(found.len(), 1, "one {action} record by {actor}: {all:#?}");
    found[0]["detail"].as_str().unwrap_or_default().to_string()
}

/// Floods pimd as mallory with [`FLOOD_SCRIPT`] (`args`: CONNECTIONS CALLS MIB, then METHOD
/// if not Activate), runs `meanwhile` while the flood goes on, stops it and gives its result.
fn flood(sb: &Sandbox, args: &[&str], meanwhile: impl FnOnce()) -> Value {
    let (script, stop) = ("/tmp/dbus_flood.py", "/tmp/flood.stop");
    sb.write_file(script, FLOOD_SCRIPT, 0o755);
    let mut argv = vec!["python3", script];
    argv.extend_from_slice(&args[..3]);
    argv.push(stop);
    argv.extend_from_slice(&args[3..]);
    let mut running = sb.spawn("mallory", &argv);
    running.wait_for_stdout("connected", WAIT);
    meanwhile();
    sb.write_file(stop, "", 0o644);
    let out = running.wait(WAIT);
    out.assert_success();
    out.stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no result from the flood: {out:?}"))
}

/// `sudo -n true` as alice, `times` times: each must succeed.
fn sudo_succeeds(sb: &Sandbox, times: usize) {
    for _ in 0..times {
        sb.run("alice", &["sudo", "-n", "true"]).assert_success();
    }
}

#[test]
fn given_a_user_flooding_activate_with_a_30_mib_reason_then_every_sudo_of_a_grant_holder_succeeds_and_pimd_stays_small(
) {
    let _one = one_at_a_time();
    let sb = host();
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();
    let before_kb = pimd_memory_kb(&sb, "VmRSS");

    // Three connections, each sending a 30 MiB reason as soon as the previous call returned.
    let result = flood(&sb, &["3", "100", "30"], || sudo_succeeds(&sb, 10));

    assert!(sb.pimd_running());
    assert!(result["calls"].as_u64() > Some(0), "{result}");
    assert_eq!(
        result["replies"], 0,
        "no call with a 30 MiB reason succeeds: {result}"
    );
    let errors = result["errors"].as_object().expect("errors");
    for name in errors.keys() {
        assert!(
            [
                "org.pim.Manager1.Error.InvalidArgument",
                "org.pim.Manager1.Error.Busy"
            ]
            .contains(&name.as_str()),
            "{result}"
        );
    }
    assert_eq!(
        result["messages"]["org.pim.Manager1.Error.InvalidArgument"],
        "the reason is 31457280 bytes long; at most 1024 are allowed",
        "{result}"
    );
    // What the messages being answered hold (30 MiB each, one or two per connection), not
    // what a queue of them waiting for a lock, and their escaped copies, would.
    let peak_kb = pimd_memory_kb(&sb, "VmHWM");
    assert!(
        peak_kb < before_kb + 256 * 1024,
        "pimd's peak resident memory was {peak_kb} kB (from {before_kb} kB) during the flood"
    );
    eprintln!("pimd resident: {before_kb} kB before, peak {peak_kb} kB during: {result}");
    // The refusals are audited, within mallory's allowance.
    let all = sb.audit_records("root", &[]);
    let refused = records(&all, "activate", "mallory", "refused");
    assert!(!refused.is_empty() && refused.len() <= 20, "{all:#?}");
    assert!(
        refused[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the reason is 31457280 bytes long")),
        "{:#?}",
        refused[0]
    );
    assert!(
        refused[0]["reason"].as_str().unwrap_or_default().is_empty(),
        "the 30 MiB reason is not copied into the record: {:#?}",
        refused[0]
    );
}

#[test]
fn given_a_user_flooding_mfa_enroll_from_eight_connections_then_every_sudo_of_a_grant_holder_succeeds_the_allowance_is_served_and_the_rest_counted(
) {
    let _one = one_at_a_time();
    let sb = host();
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    // Eight connections, each calling again as soon as the previous call returned (the old pimd
    // served every call, each a new enrolment and a commit).
    let result = flood(&sb, &["8", "5000", "0", "MfaEnroll"], || {
        sudo_succeeds(&sb, 10)
    });
    assert!(sb.pimd_running());
    // Every call answered: 30 served (the default `calls_per_minute`), the rest turned away
    // as too many at once or in the minute.
    let busy = &result["errors"]["org.pim.Manager1.Error.Busy"];
    assert_eq!(result["replies"], 30, "{result}");
    assert_eq!(
        busy.as_u64(),
        result["calls"].as_u64().map(|n| n - 30),
        "{result}"
    );
    let all = sb.audit_records("root", &[]);
    // One record for each secret shown.
    assert_eq!(records(&all, "mfa-enroll", "mallory", "success").len(), 30);
    // Those refused as too many in the minute: 20 recorded one by one, the rest counted; those
    // turned away as too many at once: all counted.
    let shapes = &result["shapes"];
    let at_once = shapes
        ["you already have N calls to pimd in progress; wait for them to finish and try again"]
        .as_u64()
        .unwrap_or(0);
    let in_the_minute = busy.as_u64().unwrap_or(0) - at_once;
    assert_eq!(
        records(&all, "mfa-enroll", "mallory", "refused").len() as u64,
        in_the_minute.min(20)
    );
    restart_pimd(&sb);
    let all = sb.audit_records("root", &[]);
    let detail = only_detail(&all, "refusals-unrecorded", "mallory");
    let mut counted = Vec::new();
    if at_once > 0 {
        counted.push(format!("calls-in-progress {at_once}"));
    }
    if in_the_minute > 20 {
        counted.push(format!("mfa-enroll {}", in_the_minute - 20));
    }
    assert!(
        detail.ends_with(&format!(": {}", counted.join(", "))),
        "{detail}\n{result}"
    );
}

#[test]
fn given_a_user_with_no_role_looping_mfa_enroll_then_the_audit_grows_by_a_bounded_number_of_rows_and_a_summary_counts_the_rest(
) {
    let _one = one_at_a_time();
    let sb = host();
    const CALLS: usize = 60;
    let out = sb.sh(
        "mallory",
        &format!(
            "for i in $(seq {CALLS}); do busctl --system call org.pim.Manager1 \
             /org/pim/Manager1 org.pim.Manager1 MfaEnroll 2>&1 || true; done"
        ),
    );
    out.assert_success();
    // The enrolment pending from the first call, given again: one secret, a record each time
    // it is shown.
    let secrets: std::collections::BTreeSet<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("ss "))
        .collect();
    assert_eq!(secrets.len(), 1, "{}", out.stdout);
    // 30 calls a minute of a kind (the default `calls_per_minute`); the rest refused.
    let busy = out
        .stdout
        .lines()
        .filter(|l| {
            l.contains("too many mfa enroll, confirm and recovery-codes calls: 30 a minute")
        })
        .count();
    assert_eq!(busy, CALLS - 30, "{}", out.stdout);

    let all = sb.audit_records("root", &[]);
    assert_eq!(records(&all, "mfa-enroll", "mallory", "success").len(), 30);
    // Refusals: 20 records one by one (the refusal allowance), the rest only counted...
    assert_eq!(records(&all, "mfa-enroll", "mallory", "refused").len(), 20);
    assert!(records(&all, "refusals-unrecorded", "mallory", "refused").is_empty());

    // ...and written down as a summary (at the latest when pimd stops).
    restart_pimd(&sb);
    let all = sb.audit_records("root", &[]);
    let detail = only_detail(&all, "refusals-unrecorded", "mallory");
    assert!(
        detail.starts_with("10 more refusal(s) between ") && detail.ends_with(": mfa-enroll 10"),
        "{detail}"
    );
    assert_eq!(records(&all, "mfa-enroll", "mallory", "success").len(), 30);
    assert_eq!(records(&all, "mfa-enroll", "mallory", "refused").len(), 20);
}

#[test]
fn given_a_requester_looping_on_request_and_cancel_then_the_approvers_watch_gets_a_bounded_number_of_events_a_notice_and_the_drop_is_audited(
) {
    let _one = one_at_a_time();
    let sb = host();
    // Enough calls a minute for more events of one kind than their allowance (20).
    sb.write_file(
        CONFIG_PATH,
        &format!("[daemon]\ncalls_per_minute = 60\n{ROLES}"),
        0o644,
    );
    restart_pimd(&sb);
    let watch = sb.spawn("bob", &["pim", "watch"]);
    sb.wait_until("bob's watch to start", WAIT, || {
        watch.stderr_so_far().contains("following events")
    });
    const CYCLES: usize = 25;
    for _ in 0..CYCLES {
        let filed = sb.run("alice", &["pim", "--json", "activate", "db", "-r", REASON]);
        filed.assert_status(3);
        let id = filed.json()["request"]["id"].to_string();
        sb.run("alice", &["pim", "cancel", &id]).assert_success();
    }
    let lines = |watch: &pim_e2e::Background<'_>, kind: &str| {
        watch
            .stdout_so_far()
            .lines()
            .filter(|l| l.contains(&format!("  {kind}  ")))
            .count()
    };
    // 20 events of a kind a minute from one person (pimd's allowance), and one notice each
    // that the rest are dropped; none after pimd stopped.
    sb.wait_until("bob's watch to show the allowances", WAIT, || {
        lines(&watch, "request-filed") >= 20
            && lines(&watch, "request-cancelled") >= 20
            && lines(&watch, "events-dropped") >= 2
    });
    restart_pimd(&sb);
    let seen = watch.stdout_so_far();
    assert_eq!(lines(&watch, "request-filed"), 20, "{seen}");
    assert_eq!(lines(&watch, "request-cancelled"), 20, "{seen}");
    assert_eq!(lines(&watch, "events-dropped"), 2, "{seen}");
    assert!(
        seen.contains("events-dropped  alice  db  by alice: more than 20 request-filed events"),
        "{seen}"
    );
    watch.kill();

    let all = sb.audit_records("root", &[]);
    assert_eq!(records(&all, "request", "alice", "success").len(), CYCLES);
    assert_eq!(records(&all, "cancel", "alice", "success").len(), CYCLES);
    let mut details: Vec<String> = records(&all, "events-undelivered", "alice", "refused")
        .iter()
        .map(|r| r["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    details.sort();
    assert_eq!(details.len(), 2, "{all:#?}");
    assert!(
        details[0].starts_with("5 more event(s) between ")
            && details[0].ends_with(": request-cancelled 5")
            && details[1].ends_with(": request-filed 5"),
        "{details:?}"
    );
}

/// Makes the user database slow to say that a name does not exist, as sssd or LDAP are for a
/// name never asked before (random names defeat sssd's negative cache): passwd comes from
/// files, then from Hesiod, whose DNS questions go to a server on 127.0.0.1 that never answers
/// (each lookup of an unknown name waits for the resolver's timeout). Known names are found in
/// files at once. pimd is restarted to read the new nsswitch.conf.
fn slow_lookups_of_unknown_names(sb: &Sandbox) -> Background<'_> {
    let mut silent_dns = sb.spawn(
        "root",
        &[
            "python3",
            "-c",
            "import socket, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.1', 53))\n\
             print('listening', flush=True)\n\
             while True: s.recv(4096)\n",
        ],
    );
    silent_dns.wait_for_stdout("listening", WAIT);
    sb.write_file(
        "/etc/resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:3 attempts:2\n",
        0o644,
    );
    sb.write_file(
        "/etc/hesiod.conf",
        "lhs=.ns\nrhs=.pim.invalid\nclasses=IN\n",
        0o644,
    );
    sb.sh(
        "root",
        "sed -i 's/^passwd:.*/passwd:         files hesiod/' /etc/nsswitch.conf",
    )
    .assert_success();
    // The lookup goes to the silent server (and fails once the resolver gives up).
    sb.run("root", &["getent", "passwd", "nosuch-name"])
        .assert_failure();
    sb.run("root", &["getent", "passwd", "alice"])
        .assert_success();
    restart_pimd(sb);
    silent_dns
}

#[test]
fn given_a_user_asking_check_access_about_random_names_on_a_fresh_connection_each_time_then_every_sudo_of_a_grant_holder_succeeds(
) {
    let _one = one_at_a_time();
    let sb = host();
    let silent_dns = slow_lookups_of_unknown_names(&sb);
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    // Six loops, each call on a new connection (pimd does not know the caller yet) about a
    // name nobody has, which the user database takes seconds to say: nothing may be looked
    // up on the caller's behalf before the bus has said who it is.
    let result = flood(&sb, &["6", "100000", "0", "CheckAccess"], || {
        sudo_succeeds(&sb, 10)
    });
    assert!(sb.pimd_running());
    // None of the flood's questions was answered: only root may ask about another user.
    assert_eq!(result["replies"], 0, "{result}");
    assert!(result["calls"].as_u64().unwrap_or(0) > 0, "{result}");
    let errors = result["errors"].as_object().cloned().unwrap_or_default();
    assert!(
        errors.keys().all(|name| [
            "org.pim.Manager1.Error.PermissionDenied",
            "org.pim.Manager1.Error.Busy"
        ]
        .contains(&name.as_str())),
        "{result}"
    );
    silent_dns.kill();
}

#[test]
fn given_a_user_flooding_one_roles_events_then_their_activation_of_another_role_still_reaches_the_watchers(
) {
    let _one = one_at_a_time();
    let sb = host();
    let watch = sb.spawn("root", &["pim", "watch"]);
    sb.wait_until("root's watch to start", WAIT, || {
        watch.stderr_so_far().contains("following events")
    });
    // 20 events of role backup, within the 30 calls a minute a user may make.
    for _ in 0..10 {
        sb.run("alice", &["pim", "activate", "backup"])
            .assert_success();
        sb.run("alice", &["pim", "deactivate", "backup"])
            .assert_success();
    }
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    sb.wait_until("root's watch to show alice's sudo", WAIT, || {
        watch
            .stdout_so_far()
            .contains("grant-started  alice  admin")
    });
    watch.kill();
}

#[test]
fn given_a_user_looping_on_reads_then_four_times_calls_per_minute_are_served_and_the_rest_refused_while_sudo_still_succeeds(
) {
    let _one = one_at_a_time();
    let sb = host();
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    // The old pimd served every one, each holding the manager (an audit since 0 scanning the
    // whole log) while expiry and every other call waited.
    const CALLS: usize = 150;
    let out = sb.sh(
        "mallory",
        &format!(
            "for i in $(seq {CALLS}); do busctl --system call org.pim.Manager1 \
             /org/pim/Manager1 org.pim.Manager1 Audit xss 0 '' '' >/dev/null 2>&1 \
             && echo served || echo refused; done"
        ),
    );
    out.assert_success();
    let served = out.stdout.lines().filter(|l| *l == "served").count();
    assert_eq!(served, 120, "4 × calls_per_minute (30): {}", out.stdout);
    let busy = sb.sh(
        "mallory",
        "busctl --system call org.pim.Manager1 /org/pim/Manager1 org.pim.Manager1 Status 2>&1",
    );
    assert!(busy.stdout.contains("too many reading calls"), "{busy:?}");
    sudo_succeeds(&sb, 3);
    // Others' reads are their own.
    sb.run("alice", &["pim", "status"]).assert_success();
}
