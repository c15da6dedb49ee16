//! Set-group-ID leftovers (SPEC, "When a grant ends"): during a grant for group `secret`,
//! alice copies `cat`, gives the copy the group and makes it set-group-ID, in her home and in
//! /tmp. Such a copy reads the group's 0640 files for anyone who runs it, long after the
//! grant. At the end pimd clears the bit on every file alice owns with that group, audits
//! each one, and leaves everyone else's set-group-ID files alone.

use std::time::Duration;

use pim_e2e::{Sandbox, BUS_NAME, CONFIG_PATH};
use serde_json::Value;

/// Generous limit for anything that should happen "at once" (it returns as soon as it does).
const WAIT: Duration = Duration::from_secs(60);

const GROUP: &str = "secret";
const SECRET_FILE: &str = "/var/secret/plans.txt";
const SECRET: &str = "the launch codes";
const HOME_COPY: &str = "/home/alice/mycat";
const TMP_COPY: &str = "/tmp/alicecat";
/// Set-user-ID (alice) and set-group-ID: pimd.service's RestrictSUIDSGID= refuses any chmod
/// whose new mode keeps either bit, so both must go.
const BOTH_COPY: &str = "/home/alice/bothcat";
/// A directory of the group, set-group-ID: files made in it get the group.
const SHARED_DIR: &str = "/home/alice/shared";

const CONFIG: &str = r#"
[roles.reader]
group = "secret"
eligible = ["alice"]
require_mfa = false
require_justification = false
max_duration = "1h"
# Old logins of the grant outlive its end here: the sweep is what these tests are about (the
# default, "terminate", would end them: tests/tests/ending.rs).
on_end = "keep"
"#;

/// alice and bob, group `secret` owning a 0640 file, pimd running.
fn site() -> Sandbox {
    let sb = site_without_pimd();
    sb.start_pimd();
    sb
}

fn site_without_pimd() -> Sandbox {
    let sb = Sandbox::start();
    sb.add_group(GROUP);
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.write_file(SECRET_FILE, &format!("{SECRET}\n"), 0o640);
    sb.run("root", &["chgrp", GROUP, SECRET_FILE])
        .assert_success();
    sb
}

/// `stat -c %a PATH`: the mode in octal, set-ID bits included.
fn mode(sb: &Sandbox, path: &str) -> String {
    sb.run("root", &["stat", "-c", "%a", path])
        .assert_success()
        .stdout
        .trim()
        .to_string()
}

/// Runs `copy SECRET_FILE` as alice in a process that holds none of her extra groups: only
/// the copy's set-group-ID bit can let it read the file.
fn read_with(sb: &Sandbox, copy: &str) -> pim_e2e::Output {
    sb.run_with_groups("alice", &["alice"], &[copy, SECRET_FILE])
}

/// During a live grant, as alice: the two copies, and one she makes set-group-ID for her own
/// group (not the grant's). Checks that the attack works: the copies read the secret.
fn make_copies(sb: &Sandbox) {
    sb.run("alice", &["id", "-Gn"])
        .assert_success()
        .assert_stdout_contains(GROUP);
    let script = format!(
        "set -e
        for copy in {HOME_COPY} {TMP_COPY}; do
            cp /bin/cat $copy; chgrp {GROUP} $copy; chmod g+s $copy
        done
        cp /bin/cat ~/owncat; chmod 2755 ~/owncat"
    );
    sb.sh("alice", &script).assert_success();
    sb.sh(
        "alice",
        &format!(
            "set -e; cp /bin/cat {BOTH_COPY}; chgrp {GROUP} {BOTH_COPY}; chmod 6755 {BOTH_COPY}
            mkdir {SHARED_DIR}; chgrp {GROUP} {SHARED_DIR}; chmod 2775 {SHARED_DIR}"
        ),
    )
    .assert_success();
    assert_eq!(mode(sb, BOTH_COPY), "6755");
    assert_eq!(mode(sb, SHARED_DIR), "2775");
    read_with(sb, BOTH_COPY)
        .assert_success()
        .assert_stdout_contains(SECRET);
    for copy in [HOME_COPY, TMP_COPY] {
        assert_eq!(mode(sb, copy), "2755");
        read_with(sb, copy)
            .assert_success()
            .assert_stdout_contains(SECRET);
    }
}

/// Set-group-ID files that are not alice's for the group: root's of the group, bob's own, and
/// a system binary if there is one. Returns (path, mode) to compare afterwards.
fn bystanders(sb: &Sandbox) -> Vec<(String, String)> {
    sb.sh(
        "root",
        &format!(
            "cp /bin/cat /tmp/rootcat && chgrp {GROUP} /tmp/rootcat && chmod 2755 /tmp/rootcat"
        ),
    )
    .assert_success();
    sb.sh("bob", "cp /bin/cat ~/bobcat && chmod 2755 ~/bobcat")
        .assert_success();
    let mut paths = vec![
        "/tmp/rootcat".to_string(),
        "/home/bob/bobcat".to_string(),
        "/home/alice/owncat".to_string(),
    ];
    for system in ["/usr/bin/expiry", "/usr/bin/wall", "/usr/bin/chage"] {
        if sb.run("root", &["test", "-g", system]).success() {
            paths.push(system.to_string());
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let m = mode(sb, &p);
            assert!(m.starts_with('2'), "{p} is not set-group-ID: {m}");
            (p, m)
        })
        .collect()
}

fn records_of<'a>(records: &'a [Value], action: &str, detail: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["action"] == action && r["detail"].as_str().unwrap_or("").contains(detail))
        .collect()
}

/// After the end: the bits are gone, the copies read nothing, the audit names each file, and
/// the bystanders are as they were.
fn assert_swept(sb: &Sandbox, bystanders: &[(String, String)]) {
    sb.wait_until("alice's copies to lose set-group-ID", WAIT, || {
        mode(sb, HOME_COPY) == "755" && mode(sb, TMP_COPY) == "755"
    });
    assert_eq!(mode(sb, BOTH_COPY), "755");
    assert_eq!(mode(sb, SHARED_DIR), "775");
    for copy in [HOME_COPY, TMP_COPY, BOTH_COPY] {
        let out = read_with(sb, copy);
        out.assert_failure()
            .assert_stderr_contains("Permission denied");
    }
    sb.wait_until("the sweep to be recorded done", WAIT, || {
        let records = sb.audit_records("root", &["--user", "alice"]);
        !records_of(&records, "setgid-sweep", "no file of alice is set-group-ID").is_empty()
    });
    let records = sb.audit_records("root", &["--user", "alice"]);
    let cleared = [
        (HOME_COPY, "set-group-ID cleared, mode 2755 -> 0755"),
        (TMP_COPY, "set-group-ID cleared, mode 2755 -> 0755"),
        (
            BOTH_COPY,
            "set-user-ID and set-group-ID cleared, mode 6755 -> 0755",
        ),
        (SHARED_DIR, "set-group-ID cleared, mode 2775 -> 0775"),
    ];
    for (path, what) in cleared {
        let found: Vec<&Value> =
            records_of(&records, "setgid-clear", &format!("\"{path}\" (device "))
                .into_iter()
                .filter(|r| {
                    let detail = r["detail"].as_str().unwrap_or("");
                    detail
                        .strip_prefix(&format!("group {GROUP}: "))
                        .is_some_and(|items| {
                            items.split("; ").any(|item| {
                                item.starts_with(&format!("\"{path}\"")) && item.ends_with(what)
                            })
                        })
                })
                .collect();
        assert_eq!(found.len(), 1, "no single record for {path}: {records:#?}");
        assert_eq!(found[0]["actor"], "pimd");
        assert_eq!(found[0]["outcome"], "success");
    }
    for (path, before) in bystanders {
        assert_eq!(&mode(sb, path), before, "{path} was changed");
    }
}

/// alice's grant, her copies, `pim deactivate` and the sweep that clears them.
fn copies_made_then_swept(sb: &Sandbox) {
    sb.run("alice", &["pim", "activate", "reader"])
        .assert_success();
    make_copies(sb);
    let bystanders = bystanders(sb);
    sb.run("alice", &["pim", "deactivate", "reader"])
        .assert_success();
    assert_swept(sb, &bystanders);
}

#[test]
fn given_a_setgid_copy_made_during_a_grant_then_deactivate_clears_it() {
    let sb = site();
    copies_made_then_swept(&sb);

    // The sandbox's /home and /tmp are tmpfs without nosuid: `pim doctor` says so.
    let doctor = sb.run("alice", &["pim", "--json", "doctor"]).json();
    let nosuid: Vec<&Value> = doctor["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == "nosuid")
        .collect();
    assert_eq!(nosuid.len(), 1, "{doctor:#}");
    assert_eq!(nosuid[0]["status"], "warn", "{doctor:#}");
    let message = nosuid[0]["message"].as_str().unwrap();
    assert!(
        message.contains("/home") && message.contains("/tmp"),
        "{message}"
    );
}

/// pimd with no more privilege than pimd.service gives it (its capability bounding set, no
/// new privileges, 1024 open files at most): CAP_FOWNER is what lets it chmod alice's files
/// (without it each clearing fails with EPERM, is audited as an error and retried), and a
/// tree deeper than its open-file limit still has its copy cleared. (The unit's seccomp
/// filters are not applied here; the mode pimd sets keeps no set-ID bit, which
/// RestrictSUIDSGID= requires: see setgid.rs's cleared_mode.)
#[test]
fn given_pimd_confined_to_the_units_capabilities_then_the_copy_is_still_cleared() {
    let unit =
        std::fs::read_to_string(pim_e2e::workspace_root().join("systemd/pimd.service")).unwrap();
    assert!(
        unit.lines()
            .any(|l| l
                == "CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_SETUID CAP_SETGID CAP_AUDIT_WRITE"),
        "the unit's capability set changed: change it here too"
    );
    let sb = site_without_pimd();
    // The unit sets no LimitNOFILE=, so pimd has systemd's soft limit of 1024, which its
    // system call filter (~@resources) keeps it from raising: a hard limit of 1024 here.
    let _pimd = sb.spawn(
        "root",
        &[
            "prlimit",
            "--nofile=1024:1024",
            "--",
            "setpriv",
            "--no-new-privs",
            "--bounding-set",
            "-all,+chown,+dac_override,+fowner,+kill,+audit_write",
            "--",
            "pimd",
            "--config",
            CONFIG_PATH,
        ],
    );
    sb.wait_until("the confined pimd to own its bus name", WAIT, || {
        sb.bus_name_owned(BUS_NAME)
    });
    sb.run("alice", &["pim", "activate", "reader"])
        .assert_success();
    make_copies(&sb);
    // A copy at the bottom of a tree deeper than the descriptors pimd may have open.
    let depth = 1100;
    let deep_copy = format!("/home/alice/deep/{}cat", "d/".repeat(depth));
    let script = format!(
        "set -e; mkdir ~/deep; cd ~/deep
        for i in $(seq {depth}); do mkdir d; cd d; done
        cp /bin/cat cat; chgrp {GROUP} cat; chmod 2755 cat"
    );
    sb.sh("alice", &script).assert_success();
    assert_eq!(mode(&sb, &deep_copy), "2755");
    let bystanders = bystanders(&sb);
    sb.run("alice", &["pim", "deactivate", "reader"])
        .assert_success();
    assert_swept(&sb, &bystanders);
    assert_eq!(mode(&sb, &deep_copy), "755");
}

/// pimd is killed during the grant and comes back after its end: start-up reconciliation
/// ends the grant and the sweep still happens ("after reboots too").
#[test]
fn given_pimd_killed_during_the_grant_then_the_restart_after_its_end_clears_the_copies() {
    let sb = site();
    sb.run("alice", &["pim", "activate", "reader", "-d", "20s"])
        .assert_success();
    make_copies(&sb);
    let bystanders = bystanders(&sb);
    let ends_at = sb
        .run("alice", &["pim", "--json", "status"])
        .assert_success()
        .json()["grants"][0]["ends_at_unix"]
        .as_i64()
        .expect("a live grant with ends_at_unix");
    sb.kill_pimd("KILL");

    sb.wait_until("the grant's end to pass", WAIT, || {
        let now = sb
            .run("root", &["date", "+%s"])
            .stdout
            .trim()
            .parse::<i64>();
        now.is_ok_and(|now| now > ends_at)
    });
    assert_eq!(
        mode(&sb, HOME_COPY),
        "2755",
        "nothing cleared it while pimd was down"
    );
    sb.start_pimd();
    assert_swept(&sb, &bystanders);
}

/// A login from before the end still carries the group and makes a new copy after the first
/// sweep: the sweep is not done while that process lives, and the late copy is cleared once
/// it has gone.
#[test]
fn given_an_old_login_that_makes_a_copy_after_the_end_then_it_is_cleared_once_that_login_ends() {
    let sb = site();
    sb.run("alice", &["pim", "activate", "reader"])
        .assert_success();
    sb.run("alice", &["mkfifo", "/home/alice/go"])
        .assert_success();
    let late = "/home/alice/latecat";
    let script = format!(
        "echo ready; read _ </home/alice/go
        cp /bin/cat {late} && chgrp {GROUP} {late} && chmod g+s {late} && echo made"
    );
    let mut old_login = sb.spawn("alice", &["bash", "-c", &script]);
    old_login.wait_for_stdout("ready", WAIT);
    make_copies(&sb);
    let bystanders = bystanders(&sb);

    sb.run("alice", &["pim", "deactivate", "reader"])
        .assert_success();
    sb.wait_until(
        "the first sweep, waiting for alice's old login",
        WAIT,
        || {
            let records = sb.audit_records("root", &["--user", "alice"]);
            !records_of(&records, "setgid-sweep", "still carries group secret").is_empty()
        },
    );
    assert_eq!(mode(&sb, HOME_COPY), "755");
    sb.run("root", &["bash", "-c", "echo go >/home/alice/go"])
        .assert_success();
    old_login.wait_for_stdout("made", WAIT);
    old_login.wait(WAIT).assert_success();

    sb.wait_until("the late copy to lose set-group-ID", WAIT, || {
        mode(&sb, late) == "755"
    });
    assert_swept(&sb, &bystanders);
    let records = sb.audit_records("root", &["--user", "alice"]);
    assert_eq!(
        records_of(&records, "setgid-clear", late).len(),
        1,
        "{records:#?}"
    );
}

/// Run by alice's set-group-ID copy of python (effective gid `secret`): one thread keeps that
/// gid while the main thread drops it with the raw setresgid system call (glibc's would change
/// every thread), then both wait for a word on ~/go.
const KEEPER: &str = r#"
import ctypes, os, threading
SETRESGID = {"x86_64": 119, "aarch64": 149}[os.uname().machine]
go = threading.Event()
keeper = threading.Thread(target=go.wait)
keeper.start()
gid = os.getgid()
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall(SETRESGID, gid, gid, gid) != 0:
    raise OSError(ctypes.get_errno(), "setresgid")
for task in sorted(os.listdir("/proc/self/task")):
    with open(f"/proc/self/task/{task}/status") as status:
        print(task, [l for l in status if l.startswith("Gid:")][0].split(), flush=True)
print("dropped", flush=True)
open(os.path.expanduser("~alice/go")).read()
go.set()
keeper.join()
"#;

/// Credentials are per thread: a process whose main thread dropped the group while another
/// thread kept it still carries it (that thread can make a new copy at any time), so the sweep
/// is not done while it lives, and is once it has gone.
#[test]
fn given_a_thread_keeping_the_group_its_main_thread_dropped_then_the_sweep_waits_for_it() {
    let sb = site();
    sb.run("alice", &["pim", "activate", "reader"])
        .assert_success();
    sb.write_file("/home/alice/keeper.py", KEEPER, 0o644);
    sb.sh(
        "alice",
        &format!(
            "set -e; cp /usr/bin/python3 ~/py; chgrp {GROUP} ~/py; chmod 2755 ~/py; mkfifo ~/go"
        ),
    )
    .assert_success();
    // Started without alice's supplementary groups: only the copy's bit gives it the group.
    let mut keeper = sb.spawn(
        "root",
        &[
            "setpriv",
            "--reuid=alice",
            "--regid=alice",
            "--clear-groups",
            "--",
            "/home/alice/py",
            "/home/alice/keeper.py",
        ],
    );
    keeper.wait_for_stdout("dropped", WAIT);

    // From a process without the group: only the keeper's thread carries it.
    sb.run_with_groups("alice", &["alice"], &["pim", "deactivate", "reader"])
        .assert_success();
    sb.wait_until("the sweep to wait for the thread", WAIT, || {
        let records = sb.audit_records("root", &["--user", "alice"]);
        !records_of(&records, "setgid-sweep", "still carries group secret").is_empty()
    });
    let records = sb.audit_records("root", &["--user", "alice"]);
    assert!(
        records_of(&records, "setgid-sweep", "no file of alice is set-group-ID").is_empty(),
        "done while a thread still carries the group: {records:#?}"
    );
    assert_eq!(mode(&sb, "/home/alice/py"), "755");

    sb.run("root", &["bash", "-c", "echo go >/home/alice/go"])
        .assert_success();
    keeper.wait(WAIT).assert_success();
    sb.wait_until("the sweep to be done once the thread is gone", WAIT, || {
        let records = sb.audit_records("root", &["--user", "alice"]);
        !records_of(&records, "setgid-sweep", "no file of alice is set-group-ID").is_empty()
    });
}

/// A copy that comes back after the sweep is done (an unlinked copy kept open by a process
/// outside the group and linked back later: root puts one in place here, which is the same to
/// pimd) is cleared by the walk at pimd's next start, and audited.
#[test]
fn given_a_copy_back_after_the_sweep_was_done_then_the_next_start_of_pimd_clears_it() {
    let sb = site();
    copies_made_then_swept(&sb);

    let back = "/home/alice/back";
    sb.sh(
        "root",
        &format!("cp /bin/cat {back} && chown alice:{GROUP} {back} && chmod 2755 {back}"),
    )
    .assert_success();
    sb.kill_pimd("TERM");
    sb.start_pimd();
    sb.wait_until("the copy back to lose set-group-ID", WAIT, || {
        mode(&sb, back) == "755"
    });
    sb.wait_until("the look again to be recorded", WAIT, || {
        let records = sb.audit_records("root", &["--user", "alice"]);
        !records_of(&records, "setgid-clear", &format!("\"{back}\" (device ")).is_empty()
    });
}

/// A copy whose name reads like the end of its record and another one about a file "bobcat",
/// on a line of its own, shows up quoted and escaped: the audit cannot be made to say
/// something about another file.
#[test]
fn given_a_copy_named_like_a_record_about_another_file_then_its_record_is_quoted_and_escaped() {
    let sb = site();
    sb.run("alice", &["pim", "activate", "reader"])
        .assert_success();
    let forged =
        "/tmp/x\" (device 0:0, inode 1): set-group-ID cleared, mode 2755 -> 0755; \n\"bobcat";
    sb.sh(
        "alice",
        &format!(
            "set -e; f=$'{}'; cp /bin/cat \"$f\"; chgrp {GROUP} \"$f\"; chmod 2755 \"$f\"",
            forged.replace('\n', "\\n").replace('"', "\\\"")
        ),
    )
    .assert_success();
    sb.run("alice", &["pim", "deactivate", "reader"])
        .assert_success();
    let escaped = "\"/tmp/x\\x22 (device 0:0, inode 1): set-group-ID cleared, mode 2755 -> 0755; \\x0a\\x22bobcat\" (device ";
    sb.wait_until("the forged name's record", WAIT, || {
        let records = sb.audit_records("root", &["--user", "alice"]);
        !records_of(&records, "setgid-clear", escaped).is_empty()
    });
    let records = sb.audit_records("root", &["--user", "alice"]);
    let forged_items: Vec<&Value> = records
        .iter()
        .filter(|r| {
            let detail = r["detail"].as_str().unwrap_or("");
            detail.contains("; \"bobcat") || detail.contains('\n')
        })
        .collect();
    assert!(forged_items.is_empty(), "{forged_items:#?}");
}
