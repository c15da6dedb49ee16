//! Proves the harness itself: isolation from the host, the bus with our policy, fresh logins
//! seeing group changes, parallel sandboxes, sudo, background commands, and a clean teardown.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::thread;
use std::time::{Duration, Instant};

use pim_e2e::{totp_code, workspace_root, Authenticator, Sandbox, TOTP_STEP};

const HOST_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/nsswitch.conf",
    "/etc/hosts",
];

fn fingerprint(path: &str) -> String {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    match fs::read(path) {
        Ok(bytes) => {
            let mut h = DefaultHasher::new();
            bytes.hash(&mut h);
            format!("{} bytes, hash {:016x}", bytes.len(), h.finish())
        }
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Host processes in the given PID namespace (as `readlink /proc/PID/ns/pid` names it).
fn host_processes_in(pid_ns: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(ns) = fs::read_link(format!("/proc/{name}/ns/pid")) {
            if ns.display().to_string() == pid_ns {
                let cmd = fs::read(format!("/proc/{name}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default();
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

fn pgrep(pattern: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-a", "-f", pattern])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn useradd_inside_leaves_the_host_untouched() {
    let before: Vec<String> = HOST_FILES.iter().map(|f| fingerprint(f)).collect();
    let host_homes_before = fs::read_dir("/home").map(|d| d.count()).unwrap_or(0);
    {
        let sb = Sandbox::start();
        sb.add_user("pime2e-alice", &["pime2e-ops"]);
        sb.add_group("pime2e-db");
        sb.run("root", &["gpasswd", "-a", "pime2e-alice", "pime2e-db"])
            .assert_success();
        sb.write_file("/etc/pim/pim.toml", "# test\n", 0o600);

        let entry = sb.run("root", &["getent", "passwd", "pime2e-alice"]);
        entry
            .assert_success()
            .assert_stdout_contains("/home/pime2e-alice");
        sb.run("pime2e-alice", &["test", "-d", "/home/pime2e-alice"])
            .assert_success();
        assert_eq!(
            sb.run("root", &["stat", "-c", "%a %U", "/etc/pim/pim.toml"])
                .assert_success()
                .stdout_trimmed(),
            "600 root"
        );
        // Inside, NSS is pinned to files.
        sb.read_file("/etc/nsswitch.conf")
            .lines()
            .filter(|l| {
                ["passwd:", "group:", "shadow:", "gshadow:"]
                    .iter()
                    .any(|k| l.starts_with(k))
            })
            .for_each(|l| assert!(l.split_whitespace().skip(1).eq(["files"]), "{l}"));

        // While the sandbox lives, the host sees none of it.
        let host_passwd = fs::read_to_string("/etc/passwd").unwrap();
        assert!(!host_passwd.contains("pime2e-alice"));
        assert!(
            !std::path::Path::new("/etc/pim/pim.toml").exists() || {
                // A host that really has pim installed: then the file must not be ours.
                fs::read_to_string("/etc/pim/pim.toml").unwrap() != "# test\n"
            }
        );
        assert!(!std::path::Path::new("/home/pime2e-alice").exists());
    }
    let after: Vec<String> = HOST_FILES.iter().map(|f| fingerprint(f)).collect();
    for ((file, b), a) in HOST_FILES.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "host file {file} changed");
    }
    assert_eq!(
        host_homes_before,
        fs::read_dir("/home").map(|d| d.count()).unwrap_or(0),
        "host /home changed"
    );
    assert!(!std::path::Path::new("/run/.sandbox").exists());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("sandbox-"),
        "a sandbox mount leaked into the host's mount namespace:\n{mounts}"
    );
}

#[test]
fn the_bus_answers_and_loads_our_policy_file() {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);

    // The very file from packaging/ is installed.
    let ours =
        fs::read_to_string(workspace_root().join("packaging/dbus/org.pim.Manager1.conf")).unwrap();
    assert_eq!(
        sb.read_file("/etc/dbus-1/system.d/org.pim.Manager1.conf"),
        ours
    );

    for user in ["root", "alice"] {
        sb.run(user, &["busctl", "--system", "--no-pager", "list"])
            .assert_success()
            .assert_stdout_contains("org.freedesktop.DBus");
    }

    let request_name =
        |user: &str| sb.call_bus_driver(user, "RequestName", "su", &["org.pim.Manager1", "0"]);
    // Nobody but root may own the name ...
    let denied = request_name("alice");
    denied.assert_failure();
    assert!(
        denied.stderr.contains("Access denied") || denied.stderr.contains("AccessDenied"),
        "expected AccessDenied:\n{denied}"
    );
    // ... and root may (1 = DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER).
    request_name("root")
        .assert_success()
        .assert_stdout_contains("u 1");

    // The name is free again once that connection is gone.
    sb.wait_until("the name to be released", Duration::from_secs(30), || {
        !sb.bus_name_owned("org.pim.Manager1")
    });
}

#[test]
fn fresh_logins_see_group_changes_and_old_processes_keep_theirs() {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    sb.add_group("dbadmin");
    assert_eq!(sb.groups_of("alice"), ["alice"]);
    assert!(sb.group_members("dbadmin").is_empty());

    // A process started (and running: it printed) before the change ...
    let mut old = sb.spawn(
        "alice",
        &[
            "bash",
            "-c",
            "echo started; until [ -e /tmp/go ]; do sleep 0.05; done; id -Gn; exec sleep 600",
        ],
    );
    old.wait_for_stdout("started\n", Duration::from_secs(30));

    sb.run("root", &["gpasswd", "-a", "alice", "dbadmin"])
        .assert_success();
    assert_eq!(sb.group_members("dbadmin"), ["alice"]);
    assert!(sb.is_member("alice", "dbadmin"));
    // ... a fresh login sees it at once ...
    assert_eq!(sb.groups_of("alice"), ["alice", "dbadmin"]);
    // ... the old process does not.
    sb.write_file("/tmp/go", "", 0o644);
    old.wait_for_stdout("started\nalice\n", Duration::from_secs(30));
    assert_eq!(old.stdout_so_far(), "started\nalice\n");
    let old = old.kill();
    assert_eq!(old.status, 128 + 9, "{old}");

    // Stale groups can also be given explicitly.
    assert_eq!(
        sb.run_with_groups("alice", &[], &["id", "-Gn"])
            .assert_success()
            .stdout_trimmed(),
        "alice"
    );
    assert_eq!(
        sb.run_with_groups("alice", &["dbadmin"], &["id", "-Gn"])
            .assert_success()
            .stdout_trimmed(),
        "alice dbadmin"
    );

    sb.run("root", &["gpasswd", "-d", "alice", "dbadmin"])
        .assert_success();
    assert_eq!(sb.groups_of("alice"), ["alice"]);

    // The environment is clean and PATH finds pim.
    let env = sb.run("alice", &["env"]);
    env.assert_success();
    let mut names: Vec<&str> = env
        .stdout
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HOME",
            "LANG",
            "LOGNAME",
            "PATH",
            "RUST_BACKTRACE",
            "SHELL",
            "USER"
        ],
        "{env}"
    );
    assert!(env.stdout.contains("HOME=/home/alice\n"));
    assert!(env.stdout.contains("PATH=/run/.sandbox/bin:"));
    if pim_e2e_has("pim") {
        assert_eq!(
            sb.run("alice", &["bash", "-c", "command -v pim"])
                .assert_success()
                .stdout_trimmed(),
            "/run/.sandbox/bin/pim"
        );
    }
}

fn pim_e2e_has(name: &str) -> bool {
    std::panic::catch_unwind(|| pim_e2e::binary(name)).is_ok()
}

#[test]
fn two_sandboxes_run_in_parallel_and_are_isolated() {
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(Sandbox::start);
        let b = s.spawn(Sandbox::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.pid_namespace(), b.pid_namespace());
    thread::scope(|s| {
        s.spawn(|| a.add_user("only-in-a", &["team-a"]));
        s.spawn(|| b.add_user("only-in-b", &["team-b"]));
    });
    a.run("root", &["getent", "passwd", "only-in-a"])
        .assert_success();
    a.run("root", &["getent", "passwd", "only-in-b"])
        .assert_status(2);
    b.run("root", &["getent", "passwd", "only-in-b"])
        .assert_success();
    b.run("root", &["getent", "passwd", "only-in-a"])
        .assert_status(2);
    // Separate buses: each sandbox runs its own dbus-daemon.
    let bus_id = |sb: &Sandbox| {
        sb.call_bus_driver("root", "GetId", "", &[])
            .assert_success()
            .stdout_trimmed()
            .to_string()
    };
    assert_ne!(bus_id(&a), bus_id(&b));
    // Separate PID namespaces: each sees only its own processes.
    for sb in [&a, &b] {
        let ps = sb.run("root", &["ps", "-e", "-o", "pid=,comm="]);
        ps.assert_success();
        assert!(ps.stdout.lines().any(|l| l.trim() == "1 bash"), "{ps}");
        assert!(!ps.stdout.contains("cargo"), "{ps}");
    }
}

#[test]
fn teardown_leaves_nothing_behind() {
    let sb = Sandbox::start();
    let marker = sb.marker().to_string();
    let sleeper = format!("{marker}-sleeper");
    let pid_ns = sb.pid_namespace();
    let pid1 = sb.host_pid();
    assert!(!pid_ns.is_empty());

    sb.run(
        "root",
        &[
            "bash",
            "-c",
            r#"(exec -a "$1" sleep 3600) >/dev/null 2>&1 &"#,
            "bash",
            &sleeper,
        ],
    )
    .assert_success();
    sb.add_user("alice", &[]);
    let _bg = sb.spawn("alice", &["sleep", "3600"]);
    let inside = host_processes_in(&pid_ns);
    assert!(
        inside.iter().any(|p| p.contains("dbus-daemon"))
            && inside.iter().any(|p| p.contains(&sleeper))
            && inside.iter().any(|p| p.contains(&marker)),
        "expected init.sh, dbus-daemon and the sleeper in the namespace: {inside:#?}"
    );
    assert!(!pgrep(&sleeper).is_empty());

    drop(_bg);
    drop(sb);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = host_processes_in(&pid_ns);
        let by_marker = pgrep(&marker);
        if left.is_empty() && by_marker.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind: {left:#?}\npgrep: {by_marker}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid1}")).exists() || {
            // The pid may have been reused by an unrelated process; then it is not ours.
            fs::read_link(format!("/proc/{pid1}/ns/pid"))
                .map(|n| n.display().to_string() != pid_ns)
                .unwrap_or(true)
        }
    );
}

#[test]
fn dev_is_the_sandboxs_own_with_a_syslog_socket_and_working_device_nodes() {
    let host_log = |path: &str| fs::symlink_metadata(path).map(|m| (m.dev(), m.ino())).ok();
    let log_before = host_log("/dev/log");
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    let mine = format!("/dev/{}", sb.marker());

    // A tmpfs of its own: what is created there stays there.
    sb.run("root", &["findmnt", "-n", "-o", "SOURCE,FSTYPE", "/dev"])
        .assert_success()
        .assert_stdout_contains("sandbox-dev tmpfs");
    sb.run("root", &["touch", &mine]).assert_success();
    assert!(
        !std::path::Path::new(&mine).exists(),
        "{mine} is on the host"
    );
    assert_eq!(
        host_log("/dev/log"),
        log_before,
        "the host's /dev/log changed"
    );

    // /dev/log takes anyone's datagrams; each one is a line, as sent.
    sb.run(
        "alice",
        &[
            "logger",
            "-p",
            "authpriv.warning",
            "-t",
            "pim-e2e",
            "hello from alice",
        ],
    )
    .assert_success();
    let line = sb.wait_for_syslog_line("logger's line", Duration::from_secs(60), |l| {
        l.contains("pim-e2e")
    });
    assert!(
        line.starts_with("<84>") && line.ends_with(": hello from alice"),
        "{line}"
    );

    // The nodes programs need work for a user, and a pty gets a name in /dev/pts.
    sb.sh(
        "alice",
        "echo x >/dev/null && head -c 3 /dev/zero | od -An -tx1 && head -c 8 /dev/urandom | wc -c \
         && ls /dev/fd/ /dev/stdin /dev/stdout /dev/stderr >/dev/null && echo ok >/dev/shm/alice",
    )
    .assert_success()
    .assert_stdout_contains("00 00 00\n8\n");
    sb.run("alice", &["script", "-qec", "tty", "/dev/null"])
        .assert_success()
        .assert_stdout_contains("/dev/pts/");
    drop(sb);
    assert_eq!(
        host_log("/dev/log"),
        log_before,
        "the host's /dev/log changed"
    );
}

#[test]
fn sudo_and_pam_work_inside() {
    let sb = Sandbox::start();
    sb.setup_sudo(None);
    sb.add_user("alice", &["sudo"]);
    sb.add_user("bob", &[]);
    sb.run("alice", &["sudo", "-n", "id", "-un"])
        .assert_success()
        .assert_stdout_contains("root");
    sb.run("bob", &["sudo", "-n", "true"]).assert_failure();
    // pamtester drives the real sudo stack.
    sb.run("root", &["pamtester", "sudo", "alice", "acct_mgmt"])
        .assert_success();
    // Stale groups: a process that still carries `sudo` after removal keeps sudo rights
    // (that is what pam_pim.so exists to stop).
    sb.run("root", &["gpasswd", "-d", "alice", "sudo"])
        .assert_success();
    sb.run("alice", &["sudo", "-n", "true"]).assert_failure();
    sb.run_with_groups("alice", &["sudo"], &["sudo", "-n", "true"])
        .assert_success();
}

#[test]
fn commands_get_stdin_exit_codes_and_signals() {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    let out = sb.run_with_stdin("alice", &["cat"], "one\ntwo\n");
    out.assert_success();
    assert_eq!(out.stdout, "one\ntwo\n");
    // stdin is at end of file for run(): a prompt cannot hang a test.
    sb.run("alice", &["cat"]).assert_success();
    let out = sb.sh("alice", "echo out; echo err >&2; exit 7");
    out.assert_status(7);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );
    assert!(out.command.contains("[as alice]"), "{out}");
    sb.sh("alice", "kill -TERM $$").assert_status(128 + 15);

    let mut bg = sb.spawn("alice", &["bash", "-c", "echo started; exec sleep 600"]);
    bg.wait_for_stdout("started", Duration::from_secs(30));
    assert!(bg.is_running());
    bg.signal("TERM");
    let out = bg.wait(Duration::from_secs(30));
    out.assert_status(128 + 15);

    let bg = sb.spawn("alice", &["bash", "-c", "echo done; exit 3"]);
    let out = bg.wait(Duration::from_secs(30));
    out.assert_status(3).assert_stdout_contains("done");

    // A background process that keeps the pipe open does not hang run().
    let out = sb.sh("alice", "sleep 600 & echo parent-done");
    out.assert_success().assert_stdout_contains("parent-done");

    // Files can only be written on the sandbox's private mounts.
    let refused = std::panic::catch_unwind(|| sb.write_file("/usr/local/bin/x", "", 0o755));
    assert!(refused.is_err());
}

#[test]
fn totp_codes_match_rfc_6238_and_never_repeat_a_step() {
    // RFC 6238 test vectors (SHA-1, last 6 digits).
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(totp_code(secret, 59), "287082");
    assert_eq!(totp_code(secret, 1_111_111_109), "081804");
    assert_eq!(
        totp_code("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", 59),
        "287082"
    );

    let sb = Sandbox::start();
    let mut auth = Authenticator::new(secret);
    let first = auth.next_code(&sb);
    let step1 = auth.last_step().unwrap();
    let second = auth.next_code(&sb);
    let step2 = auth.last_step().unwrap();
    assert_eq!(step2, step1 + 1);
    assert_eq!(first, sb.totp(secret, step1 * TOTP_STEP));
    assert_eq!(second, sb.totp(secret, step2 * TOTP_STEP));
    let now_step = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / TOTP_STEP;
    assert!(step2 <= now_step + 1, "handed out a code not yet valid");
}
