//! A grant's end for every use of the group, not only sudo (SPEC "When a grant ends"): a
//! process keeps its supplementary groups for its whole life, so a login opened during a
//! grant of `sockets` kept reading the group's 0660 file (standing in for the docker socket)
//! after the grant ended. With `on_end = "terminate"` pimd ends the user's processes that
//! carry the group: SIGTERM, SIGKILL after `end_grace`, until none is left; with `keep` it
//! leaves them. Before the end, `warn_before` writes a line on the user's terminals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pim_e2e::{Background, Sandbox, CONFIG_PATH};

/// Generous limit for anything that should happen "at once" (it returns as soon as it does).
const WAIT: Duration = Duration::from_secs(60);

const GROUP: &str = "sockets";
const KEPT_GROUP: &str = "kept";
const SOCKET: &str = "/var/run-sockets/docker.sock";
const CONTENTS: &str = "root shell for whoever reads this";
const REASON: &str = "restart the web containers";

const CONFIG: &str = r#"
[roles.docker]
group = "sockets"
eligible = ["alice"]
require_mfa = false
require_justification = false
max_duration = "1h"
end_grace = "2s"
warn_before = []

[roles.keeper]
group = "kept"
eligible = ["alice"]
require_mfa = false
require_justification = false
max_duration = "1h"
on_end = "keep"
warn_before = []

[roles.warned]
group = "sockets"
eligible = ["carol"]
require_mfa = false
require_justification = false
max_duration = "1h"
end_grace = "2s"
warn_before = ["1m"]
"#;

/// alice (eligible), bob (a member of `sockets` outside PIM), carol (eligible for `warned`),
/// the group's 0660 root:sockets file, pimd running.
fn site() -> Sandbox {
    let sb = Sandbox::start();
    sb.add_group(GROUP);
    sb.add_group(KEPT_GROUP);
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[GROUP]);
    sb.add_user("carol", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.write_file(SOCKET, &format!("{CONTENTS}\n"), 0o660);
    sb.run("root", &["chgrp", GROUP, SOCKET]).assert_success();
    sb.start_pimd();
    sb
}

fn activate(sb: &Sandbox, user: &str, role: &str, duration: &str) {
    sb.run(
        user,
        &["pim", "activate", role, "-d", duration, "-r", REASON],
    )
    .assert_success();
}

/// A login of `user` (a fresh one: the groups of the group database now) that reads the
/// socket file, starts a child that ignores SIGTERM (its pid in `child_pid_file`), and waits.
fn login_with_stubborn_child<'a>(
    sb: &'a Sandbox,
    user: &str,
    child_pid_file: &str,
) -> Background<'a> {
    let script = format!(
        "cat {SOCKET} || echo 'cannot read'; (trap '' TERM; exec sleep 1000) & echo $! > {child_pid_file}; \
         echo ready; exec sleep 1000"
    );
    let mut login = sb.spawn(user, &["bash", "-c", &script]);
    login.wait_for_stdout("ready", WAIT);
    login
}

/// `pim deactivate ROLE` as alice from a process without the group: a fresh login during the
/// grant carries it, and would be ended with the rest (and exit 143 before it printed).
fn deactivate(sb: &Sandbox, role: &str) {
    sb.run_with_groups("alice", &["alice"], &["pim", "deactivate", role])
        .assert_success();
}

/// Whether the process `pid` of the sandbox is alive (not gone, not a zombie).
fn alive(sb: &Sandbox, pid: &str) -> bool {
    sb.sh(
        "root",
        &format!("s=$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -c1); [ -n \"$s\" ] && [ \"$s\" != Z ]"),
    )
    .success()
}

fn read_pid(sb: &Sandbox, file: &str) -> String {
    sb.read_file(file).trim().to_string()
}

/// How many processes of `user` carry `group` (real, effective, saved or supplementary gid).
fn carrying(sb: &Sandbox, user: &str, group: &str) -> usize {
    let script = format!(
        "uid=$(id -u {user}); gid=$(getent group {group} | cut -d: -f3); n=0
         for s in /proc/[0-9]*/status; do
             st=$(cat \"$s\" 2>/dev/null) || continue
             case $(printf '%s\\n' \"$st\" | awk '/^State:/{{print $2}}') in Z|X) continue;; esac
             printf '%s\\n' \"$st\" | awk -v u=$uid -v g=$gid '
                 /^Uid:/ {{ for (i = 2; i <= 4; i++) if ($i == u) mu = 1 }}
                 /^Gid:/ {{ for (i = 2; i <= 4; i++) if ($i == g) mg = 1 }}
                 /^Groups:/ {{ for (i = 2; i <= NF; i++) if ($i == g) mg = 1 }}
                 END {{ exit !(mu && mg) }}' && n=$((n+1))
         done; echo $n"
    );
    sb.sh("root", &script)
        .assert_success()
        .stdout
        .trim()
        .parse()
        .expect("a count")
}

/// The details of alice's `processes-end` records.
fn endings(sb: &Sandbox, user: &str) -> Vec<String> {
    sb.audit_records("root", &["--user", user])
        .into_iter()
        .filter(|r| r["action"] == "processes-end")
        .map(|r| r["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A process started with exactly these supplementary groups, outside any login.
fn start_with_groups<'a>(
    sb: &'a Sandbox,
    user: &str,
    groups: &str,
    pid_file: &str,
) -> Background<'a> {
    let script = format!("echo $$ > {pid_file}; echo ready; exec sleep 1000");
    let mut process = sb.spawn(
        "root",
        &[
            "/run/.sandbox/runas",
            user,
            "--groups",
            groups,
            "--",
            "bash",
            "-c",
            &script,
        ],
    );
    process.wait_for_stdout("ready", WAIT);
    process
}

#[test]
fn given_on_end_terminate_then_at_the_end_a_login_and_its_stubborn_child_are_gone_and_nothing_else()
{
    let sb = site();
    // From before the grant: alice's own groups only.
    let _before = start_with_groups(&sb, "alice", "alice", "/tmp/before.pid");
    // bob is a member of the group outside PIM.
    let _bob = start_with_groups(&sb, "bob", "bob,sockets", "/tmp/bob.pid");

    activate(&sb, "alice", "docker", "8s");
    let mut login = login_with_stubborn_child(&sb, "alice", "/tmp/child.pid");
    assert!(
        login.stdout_so_far().contains(CONTENTS),
        "the attack: a login of the grant reads it"
    );
    let child = read_pid(&sb, "/tmp/child.pid");
    assert!(alive(&sb, &child));

    sb.wait_until("the login ends after the grant", WAIT, || {
        !login.is_running()
    });
    sb.wait_until("the child that ignores SIGTERM is killed", WAIT, || {
        !alive(&sb, &child)
    });
    assert_eq!(carrying(&sb, "alice", GROUP), 0);
    assert!(
        alive(&sb, &read_pid(&sb, "/tmp/before.pid")),
        "the process without the gid lives"
    );
    assert!(
        alive(&sb, &read_pid(&sb, "/tmp/bob.pid")),
        "bob's process lives"
    );
    assert_eq!(carrying(&sb, "bob", GROUP), 1);
    sb.wait_until("the SIGKILL step is audited", WAIT, || {
        endings(&sb, "alice")
            .iter()
            .any(|d| d.contains("SIGKILL") && d.contains(&child))
    });
    let records = endings(&sb, "alice");
    assert!(
        records[0].contains("SIGTERM to 2 process(es) of alice carrying group sockets"),
        "{records:?}"
    );
    assert!(records
        .iter()
        .all(|d| !d.contains(&read_pid(&sb, "/tmp/bob.pid"))));
}

#[test]
fn given_deactivate_then_terminate_ends_the_login_and_keep_leaves_the_other() {
    let sb = site();
    activate(&sb, "alice", "docker", "30m");
    activate(&sb, "alice", "keeper", "30m");
    let mut ended = start_with_groups(&sb, "alice", "alice,sockets", "/tmp/ended.pid");
    let _kept = start_with_groups(&sb, "alice", "alice,kept", "/tmp/kept.pid");
    // Asked from a process without either group, which is then not counted.
    let status = sb
        .run_with_groups("alice", &["alice"], &["pim", "--json", "status"])
        .assert_success()
        .json();
    let told: Vec<(String, i64, String)> = status["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["role"].as_str().unwrap().to_string(),
                g["processes"].as_i64().unwrap(),
                g["on_end"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            ("docker".to_string(), 1, "terminate".to_string()),
            ("keeper".to_string(), 1, "keep".to_string())
        ]
    );
    sb.run_with_groups("alice", &["alice"], &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("1 process ended (2s grace)")
        .assert_stdout_contains("1 process kept");
    deactivate(&sb, "keeper");
    deactivate(&sb, "docker");
    sb.wait_until("the docker login ends", WAIT, || !ended.is_running());
    sb.wait_until("the ending is done", WAIT, || {
        endings(&sb, "alice")
            .iter()
            .any(|d| d.contains("none left"))
    });
    assert!(alive(&sb, &read_pid(&sb, "/tmp/kept.pid")), "on_end = keep");
    assert_eq!(carrying(&sb, "alice", KEPT_GROUP), 1);
    assert!(endings(&sb, "alice")
        .iter()
        .all(|d| !d.contains(KEPT_GROUP)));
}

#[test]
fn given_an_admin_revoke_then_the_login_is_ended() {
    let sb = site();
    activate(&sb, "alice", "docker", "30m");
    let mut login = login_with_stubborn_child(&sb, "alice", "/tmp/child.pid");
    let child = read_pid(&sb, "/tmp/child.pid");
    sb.run(
        "root",
        &[
            "pim",
            "admin",
            "revoke",
            "alice",
            "docker",
            "-r",
            "leaving the team",
        ],
    )
    .assert_success();
    sb.wait_until("the login ends", WAIT, || !login.is_running());
    sb.wait_until("the stubborn child is killed", WAIT, || !alive(&sb, &child));
    assert_eq!(carrying(&sb, "alice", GROUP), 0);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn given_pimd_killed_during_a_grant_then_its_start_after_the_end_ends_the_processes() {
    let sb = site();
    activate(&sb, "alice", "docker", "4s");
    let end = now() + 4;
    let mut login = login_with_stubborn_child(&sb, "alice", "/tmp/child.pid");
    sb.kill_pimd("KILL");
    sb.wait_until("the grant's end passes", WAIT, || now() > end + 1);
    assert!(login.is_running(), "nothing ended it while pimd was down");
    sb.start_pimd();
    let child = read_pid(&sb, "/tmp/child.pid");
    sb.wait_until("the login ends", WAIT, || !login.is_running());
    sb.wait_until("the stubborn child is killed", WAIT, || !alive(&sb, &child));
    assert!(!sb.is_member("alice", GROUP));
}

/// Until no process of alice's carries the group and her ending is recorded done.
fn wait_until_none_left(sb: &Sandbox) {
    sb.wait_until("none of alice's processes carries the group", WAIT, || {
        carrying(sb, "alice", GROUP) == 0
    });
    sb.wait_until("the ending is done", WAIT, || {
        endings(sb, "alice").iter().any(|d| d.contains("none left"))
    });
}

#[test]
fn given_a_fork_loop_carrying_the_group_then_none_of_it_survives() {
    let sb = site();
    activate(&sb, "alice", "docker", "30m");
    // Every process of it ignores SIGTERM and keeps starting more; bounded by its own
    // process limit so that it cannot take the host down.
    let script =
        "ulimit -u 150; trap '' TERM; f() { while :; do f & sleep 0.1; done; }; echo ready; f";
    let mut forker = sb.spawn("alice", &["bash", "-c", script]);
    forker.wait_for_stdout("ready", WAIT);
    sb.wait_until("the loop is forking", WAIT, || {
        carrying(&sb, "alice", GROUP) > 10
    });
    // From a fresh login, which carries the group: pim itself lives to print the answer.
    sb.run("alice", &["pim", "deactivate", "docker"])
        .assert_success()
        .assert_stdout_contains("docker");
    wait_until_none_left(&sb);
    assert_eq!(carrying(&sb, "alice", GROUP), 0);
}

#[test]
fn given_warn_before_then_the_warning_shows_in_a_script_typescript_before_the_end() {
    let sb = site();
    activate(&sb, "carol", "warned", "65s");
    let typescript = "/tmp/carol.typescript";
    // `script` gives the shell a terminal of its own, which no utmp entry lists.
    let mut session = sb.spawn(
        "carol",
        &[
            "script",
            "-q",
            "-f",
            "-c",
            "echo ready; exec sleep 1000",
            typescript,
        ],
    );
    session.wait_for_stdout("ready", WAIT);
    sb.wait_until("the warning is in the typescript", WAIT, || {
        sb.read_file(typescript)
            .contains("pim: your grant of role warned (group sockets) ends in")
    });
    let text = sb.read_file(typescript);
    assert!(text.contains("'pim extend warned'"), "{text}");
    assert!(session.is_running(), "the warning comes before the end");
    let warnings: Vec<_> = sb
        .audit_records("root", &["--user", "carol"])
        .into_iter()
        .filter(|r| r["action"] == "end-warning")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]["detail"]
        .as_str()
        .unwrap()
        .contains("warned on 1 terminal(s)"));
}

/// Receives one descriptor on a Unix socket, says so, and reads from it once /tmp/go exists.
const RECEIVER: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("/tmp/fdpass.sock"); s.listen(1)
print("listening", flush=True)
conn, _ = s.accept()
_, fds, _, _ = socket.recv_fds(conn, 16, 1)
print("got", flush=True)
while not os.path.exists("/tmp/go"):
    time.sleep(0.05)
print(os.pread(fds[0], 4096, 0).decode(), flush=True)
"#;
/// Opens the socket file (the group's) and hands the descriptor over.
const SENDER: &str = r#"
import socket
f = open("/var/run-sockets/docker.sock", "rb")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("/tmp/fdpass.sock")
socket.send_fds(s, [b"x"], [f.fileno()])
"#;

/// The caveat the documentation states, measured: pimd ends the processes that carry the
/// group, but a descriptor is not a group. One opened during the grant (a file, or a
/// connection to the docker socket) and handed to a process of the user without the group
/// (or to anyone) still works after the end: the kernel checked the group at open() or
/// connect() only.
#[test]
fn given_a_descriptor_opened_during_the_grant_and_passed_on_then_it_still_reads_after_the_end() {
    let sb = site();
    let mut receiver = sb.spawn(
        "root",
        &[
            "/run/.sandbox/runas",
            "alice",
            "--groups",
            "alice",
            "--",
            "python3",
            "-c",
            RECEIVER,
        ],
    );
    receiver.wait_for_stdout("listening", WAIT);
    activate(&sb, "alice", "docker", "30m");
    sb.run("alice", &["python3", "-c", SENDER]).assert_success();
    receiver.wait_for_stdout("got", WAIT);
    deactivate(&sb, "docker");
    sb.wait_until("the ending is done", WAIT, || {
        endings(&sb, "alice")
            .iter()
            .any(|d| d.contains("none left"))
    });
    assert_eq!(carrying(&sb, "alice", GROUP), 0);
    sb.write_file("/tmp/go", "", 0o644);
    receiver.wait_for_stdout(CONTENTS, WAIT);
}

/// Opens the socket file, leaves a second thread holding it, and ends its main thread: the
/// process is then listed as a zombie (its leader) while the other thread runs with the group.
const MAIN_THREAD_GONE: &str = r#"
import ctypes, os, threading, time
f = open("/var/run-sockets/docker.sock", "rb")
def hold():
    while True:
        time.sleep(1)
threading.Thread(target=hold).start()
print(os.getpid(), flush=True)
ctypes.CDLL(None).pthread_exit(None)
"#;

#[test]
fn given_a_process_whose_main_thread_exited_then_its_other_threads_are_ended_too() {
    let sb = site();
    activate(&sb, "alice", "docker", "30m");
    let mut holder = sb.spawn("alice", &["python3", "-c", MAIN_THREAD_GONE]);
    holder.wait_for_stdout("\n", WAIT);
    let pid = holder.stdout_so_far().trim().to_string();
    sb.wait_until("its main thread is a zombie", WAIT, || {
        sb.read_file(&format!("/proc/{pid}/stat")).contains(") Z ")
    });
    assert_eq!(carrying(&sb, "alice", GROUP), 0,);
    deactivate(&sb, "docker");
    sb.wait_until("the process is gone", WAIT, || !holder.is_running());
    sb.wait_until("the ending is done", WAIT, || {
        endings(&sb, "alice").iter().any(|d| d.contains(&pid))
    });
}

/// The state letter of process `pid` (R, S, T, ...), empty when it is gone.
fn state_of(sb: &Sandbox, pid: &str) -> String {
    sb.sh(
        "root",
        &format!("sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -c1"),
    )
    .stdout
    .trim()
    .to_string()
}

#[test]
fn given_a_fast_fork_and_exit_chain_ignoring_sigterm_then_none_of_it_survives() {
    let sb = site();
    let _before = start_with_groups(&sb, "alice", "alice", "/tmp/before.pid");
    activate(&sb, "alice", "docker", "30m");
    // Each member forks its successor and exits at once: any pid a scan lists is gone when
    // it is signalled (too fast for the shell's scan here too). Every 2000th member writes
    // the count so far (inherited through the forks) to a file: the chain runs while it grows.
    let chain = "$SIG{TERM} = 'IGNORE'; $| = 1; print \"ready\\n\"; my $n = 0; \
                 while (1) { my $p = fork(); next unless defined $p; exit 0 if $p > 0; \
                 if (++$n % 2000 == 0) { open(my $f, '>', '/tmp/chain.count'); print $f $n; \
                 close $f } }";
    let mut forker = sb.spawn("alice", &["perl", "-e", chain]);
    forker.wait_for_stdout("ready", WAIT);
    let count = || sb.sh("root", "cat /tmp/chain.count 2>/dev/null").stdout;
    let runs = || {
        let first = count();
        std::thread::sleep(Duration::from_secs(2));
        first != count()
    };
    sb.wait_until("the chain runs", WAIT, || !count().is_empty() && runs());
    deactivate(&sb, "docker");
    wait_until_none_left(&sb);
    sb.wait_until("the chain stopped", WAIT, || !runs());
    assert!(!runs(), "the chain is gone: {:?}", endings(&sb, "alice"));
    assert_eq!(carrying(&sb, "alice", GROUP), 0);
    let before = read_pid(&sb, "/tmp/before.pid");
    assert!(
        alive(&sb, &before),
        "alice's process from before the grant lives"
    );
    assert_ne!(state_of(&sb, &before), "T", "and is not left stopped");
}

#[test]
fn given_a_sigcont_loop_of_the_user_then_it_does_not_save_a_carrier() {
    let sb = site();
    let _before = start_with_groups(&sb, "alice", "alice", "/tmp/before.pid");
    // A helper of alice's without the group continues everything of hers, all the time.
    let _helper = sb.spawn(
        "root",
        &[
            "/run/.sandbox/runas",
            "alice",
            "--groups",
            "alice",
            "--",
            "bash",
            "-c",
            "echo $$ > /tmp/helper.pid; while :; do kill -CONT -1 2>/dev/null; done",
        ],
    );
    activate(&sb, "alice", "docker", "30m");
    let _login = login_with_stubborn_child(&sb, "alice", "/tmp/child.pid");
    let child = read_pid(&sb, "/tmp/child.pid");
    deactivate(&sb, "docker");
    sb.wait_until("the stubborn child is gone", WAIT, || !alive(&sb, &child));
    sb.wait_until("none carries the group", WAIT, || {
        carrying(&sb, "alice", GROUP) == 0
    });
    let before = read_pid(&sb, "/tmp/before.pid");
    assert!(alive(&sb, &before));
    sb.wait_until("alice's process from before runs", WAIT, || {
        state_of(&sb, &before) != "T"
    });
}
