//! pimd.service under a real systemd: a minimal Debian 12 root (`mmdebstrap`, cached under
//! `target/nspawn-cache/`) booted with `systemd-nspawn -b`, the built .deb installed with
//! dpkg, then: the unit as systemd sees it and pimd's confinement, D-Bus activation, its lines
//! in the journal, recovery from a crash, from a crash loop and from a restart of the bus
//! daemon, `systemctl reload` with a good and a broken file (and `pim doctor` on the latter),
//! break-glass while pimd cannot start, enrol → activate → sudo → deactivate, an upgrade (to
//! the package repacked as a next revision) with a live grant, the set-group-ID sweep at the
//! grant's end in every place a user may write, removal and purge.
//!
//! The sandbox of the other suites has no systemd; this one boots it. nspawn runs in a mount
//! namespace of its own, with a tmpfs over `/run` (its bookkeeping stays there) and the
//! unified cgroup hierarchy mounted over `/sys/fs/cgroup`, in a cgroup of its own below this
//! process's, removed afterwards; the guest has no network (`--private-network`) and its /tmp
//! is a directory of its root file system, as on a Debian 12 host (not the tmpfs, mounted
//! nosuid, that nspawn puts there by default: the set-group-ID sweep skips nosuid mounts,
//! where the bit does nothing). Nothing on
//! the host changes but `target/nspawn-cache/`. Commands reach the guest through `nsenter`
//! into the namespaces of its PID 1.
//!
//! Where nspawn cannot run (not root, the tools missing, no cgroup2, no package archive to
//! build the root from), the test passes after printing a `SKIPPED:` line, which
//! `scripts/test` lists in its summary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pim_e2e::{built_deb, poll_until, target_dir, totp_code, Output, TOTP_STEP};

/// The guest: Debian 12 with what pim's package needs and what the scenario uses. The root
/// file system is cached under a name that covers this list, so a change builds a new one.
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const PACKAGES: [&str; 7] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "sudo",
    "libpam-runtime",
    "passwd",
    "procps",
];
const GUEST_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest a guest command may run (it is killed then, exit status 124).
const GUEST_COMMAND_SECS: u32 = 120;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const DEADLINE: Duration = Duration::from_secs(60);
/// pam_pim's default `timeout=`: a restarting pimd must be back well within it.
const PAM_TIMEOUT: Duration = Duration::from_secs(2);
const REASON: &str = "rotate the TLS certificates";

/// alice may activate admin (group sudo, with TOTP) and backup (no MFA); keeper is a
/// `permanent` member of sudo; breakglass holds no managed group and has a sudoers rule of
/// its own.
const CONFIG: &str = r#"
[roles.admin]
group = "sudo"
description = "Full administration through sudo"
eligible = ["alice"]
permanent = ["keeper"]
max_duration = "1h"
require_approval = false

[roles.backup]
group = "backup"
eligible = ["alice"]
max_duration = "1h"
require_mfa = false
require_approval = false
"#;
/// Line 3 has the error.
const BROKEN_CONFIG: &str = "[roles.admin]\ngroup = \"sudo\"\nmax_duration = \"48h\"\n";
const SUDOERS: &str = "%sudo ALL=(ALL:ALL) NOPASSWD: ALL\nbreakglass ALL=(ALL:ALL) NOPASSWD: ALL\n";

/// Prints straight to the test's stderr, past the test harness's capture, so that it shows in
/// every run and `scripts/test` can list it.
fn skipped(reason: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: systemd (tests/tests/systemd.rs): {reason}"
    );
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Why nspawn cannot boot a guest here, if it cannot.
fn cannot_boot() -> Option<String> {
    if !nix_is_root() {
        return Some("needs root (namespaces, cgroups, a booted guest)".into());
    }
    for tool in ["systemd-nspawn", "mmdebstrap", "unshare", "nsenter", "tar"] {
        if !on_path(tool) {
            return Some(format!(
                "{tool} is not installed (scripts/deps installs it)"
            ));
        }
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems.lines().any(|l| l.ends_with("\tcgroup2")) {
        return Some("the kernel has no cgroup2 file system".into());
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// FNV-1a: a stable name for the cached root file system.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn cache_dir() -> PathBuf {
    target_dir().join("nspawn-cache")
}

/// The guest's root file system as a tarball: from the cache, or built with mmdebstrap (older
/// ones removed). Err: why it cannot be had.
fn root_tarball() -> Result<PathBuf, String> {
    let key = format!("{SUITE} minbase {MIRROR} {}", PACKAGES.join(","));
    let dir = cache_dir();
    let name = format!("debian12-{:016x}.tar", fnv1a(&key));
    let tarball = dir.join(&name);
    if tarball.is_file() {
        return Ok(tarball);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for old in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let old_name = old.file_name().to_string_lossy().into_owned();
        if old_name.starts_with("debian12-") && old_name != name {
            let _ = std::fs::remove_file(old.path());
        }
    }
    // mmdebstrap picks the format by the extension: keep `.tar` last.
    let partial = dir.join(format!("partial-{name}"));
    let out = Command::new("mmdebstrap")
        .args(["--variant=minbase", "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&partial)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mmdebstrap: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(format!(
            "mmdebstrap could not build the Debian 12 root from {MIRROR} (is the package \
             archive reachable?): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    std::fs::rename(&partial, &tarball)
        .map_err(|e| format!("cannot rename {}: {e}", partial.display()))?;
    Ok(tarball)
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The cgroup (v2) this process is in, e.g. `/` or `/user.slice/...`.
fn own_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap_or_else(|| "/".into())
}

/// Runs nspawn in a mount namespace of its own and cleans up after it: $1 the root directory,
/// $2 the cgroup to create the container's below, $3 the console log.
const BOOT_SCRIPT: &str = r#"set -eu
mount -t tmpfs -o mode=0755 pim-nspawn-run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
parent=/sys/fs/cgroup${2%/}
cgroup=$parent/pim-nspawn-$$
mkdir "$cgroup"
echo $$ >"$cgroup/cgroup.procs"
status=0
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_NSPAWN_TMPFS_TMP=0 systemd-nspawn --quiet --register=no --keep-unit \
    --private-network --link-journal=no --console=pipe --machine=pim-guest \
    --directory="$1" --boot </dev/null >"$3" 2>&1 || status=$?
echo $$ >"$parent/cgroup.procs"
find "$cgroup" -depth -type d -exec rmdir {} +
exit "$status"
"#;

/// A booted Debian 12 guest; powered off, and its files removed, when dropped.
struct Guest {
    boot: Child,
    nspawn: u32,
    leader: u32,
    /// The PID namespace of the guest's PID 1, as found at boot.
    leader_pid_ns: Option<std::path::PathBuf>,
    dir: PathBuf,
}

impl Guest {
    /// Unpacks `tarball`, puts the package in as /root/pim.deb and boots; waits until systemd
    /// says the boot is over.
    fn boot(tarball: &Path, deb: &Path) -> Guest {
        let dir = cache_dir().join("guest");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the last run's guest");
        }
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("create the guest's root");
        let untar = Command::new("tar")
            .arg("--numeric-owner")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&root)
            .status()
            .expect("run tar");
        assert!(untar.success(), "cannot unpack {}", tarball.display());
        std::fs::copy(deb, root.join("root/pim.deb")).expect("copy the package into the guest");

        let boot = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "bash", "-c"])
            .arg(BOOT_SCRIPT)
            .arg("boot")
            .arg(&root)
            .arg(own_cgroup())
            .arg(dir.join("console.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        let mut guest = Guest {
            nspawn: 0,
            leader: 0,
            leader_pid_ns: None,
            boot,
            dir,
        };
        // bash → systemd-nspawn → the guest's systemd (PID 1 inside).
        let found = poll_until(BOOT_TIMEOUT, || {
            let Some(&nspawn) = children(guest.boot.id()).first() else {
                return false;
            };
            let Some(&leader) = children(nspawn).first() else {
                return false;
            };
            let comm = std::fs::read_to_string(format!("/proc/{leader}/comm")).unwrap_or_default();
            guest.nspawn = nspawn;
            guest.leader = leader;
            guest.leader_pid_ns = std::fs::read_link(format!("/proc/{leader}/ns/pid")).ok();
            comm.trim() == "systemd"
        });
        assert!(
            found,
            "the guest's systemd did not start:\n{}",
            guest.console()
        );
        let listening = poll_until(BOOT_TIMEOUT, || {
            guest.sh("test -S /run/systemd/private").success()
        });
        assert!(
            listening,
            "the guest's systemd does not listen:\n{}",
            guest.console()
        );
        let state = guest.sh("systemctl is-system-running --wait");
        assert!(
            matches!(state.stdout_trimmed(), "running" | "degraded"),
            "the guest did not finish booting:\n{state}\n{}",
            guest.sh("systemctl --failed --no-pager")
        );
        guest
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Runs `script` with bash as root in the guest, with a clean environment; on failure the
    /// output has pimd's last lines in the journal.
    fn sh(&self, script: &str) -> Output {
        let mut output = self.bare_sh(script);
        if !output.success() {
            output.pimd_log_tail = self.journal("pimd.service", 25);
        }
        output
    }

    /// Whether the recorded leader is still the guest's PID 1: in the PID namespace found at
    /// boot, which is not ours.
    fn leader_alive(&self) -> bool {
        let pid_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let leader_ns = pid_ns(&self.leader.to_string());
        self.leader != 0
            && leader_ns.is_some()
            && leader_ns == self.leader_pid_ns
            && leader_ns != pid_ns("self")
    }

    /// Whether the recorded nspawn PID is still the boot script's nspawn.
    fn nspawn_alive(&mut self) -> bool {
        self.nspawn != 0
            && matches!(self.boot.try_wait(), Ok(None))
            && std::fs::read_to_string(format!("/proc/{}/comm", self.nspawn))
                .is_ok_and(|comm| comm.trim() == "systemd-nspawn")
    }

    fn bare_sh(&self, script: &str) -> Output {
        // A command meant for the guest must never run on the host.
        assert!(
            self.leader_alive(),
            "the guest's PID 1 ({}) is gone; not running: {script}",
            self.leader
        );
        let leader = self.leader.to_string();
        let limit = GUEST_COMMAND_SECS.to_string();
        let out = Command::new("nsenter")
            .args(["--target", &leader, "--all", "--root", "--wd", "--"])
            .args(["/usr/bin/env", "-i", GUEST_PATH, "LANG=C.UTF-8"])
            .args(["timeout", &limit, "/bin/bash", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter");
        Output {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command: format!("[guest] {script}"),
            pimd_log_tail: String::new(),
        }
    }

    /// `argv` as `user` (runuser: groups from the group database, as a new login has them).
    fn run_as(&self, user: &str, argv: &[&str]) -> Output {
        let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
        self.sh(&format!("runuser -u {user} -- {}", words.join(" ")))
    }

    /// `sudo -n true` as `user` in a new login: the account phase decides (sudoers needs no
    /// password here).
    fn sudo(&self, user: &str) -> Output {
        self.run_as(user, &["sudo", "-n", "true"])
    }

    /// `argv` as `user` with exactly `groups` as supplementary groups: a shell opened while a
    /// grant was live.
    fn run_with_groups(&self, user: &str, groups: &str, argv: &[&str]) -> Output {
        let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
        self.sh(&format!(
            "setpriv --reuid={user} --regid={user} --groups={groups} -- {}",
            words.join(" ")
        ))
    }

    /// The last `lines` lines of `unit` in the guest's journal.
    fn journal(&self, unit: &str, lines: usize) -> String {
        self.bare_sh(&format!(
            "journalctl --no-pager -o cat -n {lines} -u {unit}"
        ))
        .stdout
    }

    /// A property of pimd.service (`systemctl show -P`).
    fn property(&self, name: &str) -> String {
        self.sh(&format!("systemctl show -P {name} pimd.service"))
            .assert_success()
            .stdout_trimmed()
            .to_string()
    }

    /// `systemctl is-active pimd.service`: active, inactive, failed, activating...
    fn active_state(&self) -> String {
        self.sh("systemctl is-active pimd.service")
            .stdout_trimmed()
            .to_string()
    }

    fn main_pid(&self) -> u32 {
        self.property("MainPID").parse().unwrap_or(0)
    }

    /// Waits until pimd.service is active with a main process other than `old`, and answers.
    #[track_caller]
    fn wait_for_new_pimd(&self, old: u32, what: &str) -> u32 {
        let mut pid = 0;
        let back = poll_until(DEADLINE, || {
            pid = self.main_pid();
            pid != 0
                && pid != old
                && self.active_state() == "active"
                && self.run_as("alice", &["pim", "status"]).success()
        });
        assert!(
            back,
            "pimd is not back after {what}:\n{}\n{}",
            self.sh("systemctl status --no-pager pimd.service"),
            self.journal("pimd.service", 40)
        );
        pid
    }

    fn doctor_check(&self, check: &str) -> serde_json::Value {
        let doctor = self.sh("pim --json doctor");
        let report = doctor.json();
        let found: Vec<serde_json::Value> = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["check"] == check)
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "{check}:\n{doctor}");
        found[0].clone()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if std::thread::panicking() && self.leader_alive() {
            eprintln!(
                "--- the guest's journal (tail) ---\n{}\n--- console ---\n{}",
                self.sh("journalctl -b --no-pager -n 150").stdout,
                self.console()
            );
        }
        // nspawn turns SIGTERM into a clean shutdown of the guest; a second one, or SIGKILL
        // when that hangs, ends it at once.
        // Only while the boot script runs is the recorded PID still nspawn's (a PID freed
        // since could be any host process's).
        if self.nspawn_alive() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.nspawn.to_string()])
                .status();
        }
        let done = poll_until(DEADLINE, || matches!(self.boot.try_wait(), Ok(Some(_))));
        if !done && self.nspawn_alive() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.nspawn.to_string()])
                .status();
            let _ = self.boot.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// systemd's time span (`200ms`, `2s`, `1min 30s`, `0`) as a Duration.
fn systemd_span(text: &str) -> Duration {
    text.split_whitespace()
        .map(|part| {
            let split = part
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(part.len());
            let (number, unit) = part.split_at(split);
            let number: f64 = number
                .parse()
                .unwrap_or_else(|_| panic!("time span {text:?}"));
            let unit_secs = match unit {
                "us" => 1e-6,
                "ms" => 1e-3,
                "" | "s" => 1.0,
                "min" => 60.0,
                other => panic!("time span {text:?}: unit {other:?}"),
            };
            Duration::from_secs_f64(number * unit_secs)
        })
        .sum()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

#[test]
fn given_the_deb_on_a_booted_debian_12_then_the_unit_activation_recovery_reload_and_sudo_flow_hold_until_purge(
) {
    if let Some(reason) = cannot_boot() {
        skipped(&reason);
        return;
    }
    let deb = built_deb();
    let tarball = match root_tarball() {
        Ok(tarball) => tarball,
        Err(reason) => {
            skipped(&reason);
            return;
        }
    };
    let guest = Guest::boot(&tarball, &deb);

    // --- Install: enabled and started by the package.
    guest
        .sh("dpkg -i /root/pim.deb")
        .assert_success()
        .assert_stdout_contains("Setting up pim");
    assert_eq!(
        guest
            .sh("systemctl is-enabled pimd.service")
            .stdout_trimmed(),
        "enabled"
    );
    assert_eq!(guest.active_state(), "active");

    // --- The unit as systemd reads it: restarted always, at once, without a start limit.
    // Not Type=dbus: systemd would stop pimd whenever its name leaves the bus (issue 12).
    assert_eq!(guest.property("Type"), "notify");
    assert_eq!(guest.property("Restart"), "always");
    assert_eq!(guest.property("StartLimitIntervalUSec"), "0");
    let restart_delay = systemd_span(&guest.property("RestartUSec"));
    assert!(
        restart_delay * 4 <= PAM_TIMEOUT,
        "RestartSec={restart_delay:?} is not well under pam_pim's {PAM_TIMEOUT:?} timeout"
    );
    let allowed = guest.property("SystemCallFilter");
    let allowed: Vec<&str> = allowed.split_whitespace().collect();
    assert!(allowed.contains(&"openat"), "{allowed:?}");
    for denied in [
        "setpriority",
        "setrlimit",
        "sched_setscheduler",
        "reboot",
        "mount",
    ] {
        assert!(!allowed.contains(&denied), "pimd may call {denied}");
    }

    // --- Confinement of the running pimd: /usr, /boot and /run are read-only; /etc, its state
    // and runtime directories and every place a user may write (the set-group-ID sweep
    // chmods files there) are writable, /tmp the host's own.
    let pid = guest.main_pid();
    let status = guest
        .sh(&format!("cat /proc/{pid}/status"))
        .assert_success()
        .stdout
        .clone();
    assert!(status.lines().any(|l| l == "Seccomp:\t2"), "{status}");
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
    // CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_KILL (ending processes at a grant's end),
    // CAP_SETGID and CAP_SETUID (the freeze helper becomes the user) and CAP_AUDIT_WRITE:
    // bits 0, 1, 3, 5, 6, 7 and 29, nothing more.
    assert!(
        status.lines().any(|l| l == "CapBnd:\t00000000200000eb"),
        "{status}"
    );
    guest
        .sh("touch /tmp/.pim-host-tmp && mkdir -p /var/crash && chmod 1777 /var/crash")
        .assert_success();
    for dir in [
        "/etc",
        "/var/lib/pim",
        "/run/pim",
        "/tmp",
        "/var/tmp",
        "/var/crash",
        "/home",
        "/srv",
        "/opt",
        "/var",
    ] {
        guest
            .sh(&format!(
                "nsenter -t {pid} -m -- sh -c 'touch {dir}/.pim-probe && rm {dir}/.pim-probe'"
            ))
            .assert_success();
    }
    guest
        .sh(&format!(
            "nsenter -t {pid} -m -- test -e /tmp/.pim-host-tmp && rm /tmp/.pim-host-tmp"
        ))
        .assert_success();
    // systemd remounts what it confines nosuid in pimd's view (NoNewPrivileges), and the
    // set-group-ID sweep skips nosuid mounts as pimd sees them: the root file system, with
    // /home, /tmp, /var and /srv in this guest, must not be one of them.
    let root_options = guest
        .sh(&format!("nsenter -t {pid} -m -- findmnt -n -o OPTIONS /"))
        .assert_success()
        .stdout_trimmed()
        .to_string();
    assert!(
        !root_options.split(',').any(|o| o == "nosuid"),
        "pimd sees / mounted {root_options}: the sweep would skip it"
    );
    for dir in [
        "/run",
        "/run/lock",
        "/run/systemd",
        "/run/dbus",
        "/usr",
        "/boot",
    ] {
        guest
            .sh(&format!("nsenter -t {pid} -m -- touch {dir}/.pim-probe"))
            .assert_failure()
            .assert_stderr_contains("Read-only file system");
    }

    // --- The journal has pimd's own lines.
    let journal = guest.journal("pimd.service", 50);
    assert!(
        journal.contains("pimd: serving org.pim.Manager1 on the system bus"),
        "{journal}"
    );

    // --- Users, the configuration (applied by a reload), sudoers and the PAM profile.
    guest
        .sh(&format!(
            "set -e
             useradd -m alice; useradd -m breakglass; useradd -m -G sudo keeper
             install -m 0440 /dev/stdin /etc/sudoers.d/pim-test <<'EOF'\n{SUDOERS}EOF\n\
             visudo -c"
        ))
        .assert_success();
    guest
        .sh(&format!(
            "cat >/etc/pim/pim.toml <<'EOF'\n{CONFIG}EOF\nsystemctl reload pimd.service"
        ))
        .assert_success();
    assert!(guest
        .journal("pimd.service", 10)
        .contains("pimd: configuration reloaded from /etc/pim/pim.toml"));
    // pimd's answer to the reload is root's alone.
    let answer = guest.sh("stat -c '%a %U' /run/pim /run/pim/last-reload");
    assert_eq!(
        answer.assert_success().stdout,
        "700 root\n600 root\n",
        "{answer}"
    );
    guest.sh("pam-auth-update --enable pim").assert_success();

    // --- D-Bus activation: with pimd stopped, a call starts pimd.service.
    guest.sh("systemctl stop pimd.service").assert_success();
    assert_eq!(guest.active_state(), "inactive");
    guest
        .run_as("alice", &["pim", "roles"])
        .assert_success()
        .assert_stdout_contains("admin");
    assert_eq!(guest.active_state(), "active");

    // --- Enrol, activate, sudo.
    let enroll = guest.run_as("alice", &["pim", "--json", "mfa", "enroll"]);
    let secret = enroll.assert_success().json()["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    let now = now_unix();
    guest
        .run_as(
            "alice",
            &["pim", "mfa", "confirm", &totp_code(&secret, now)],
        )
        .assert_success();
    // The next step's code: accepted now (one step of skew), not spent yet.
    let code = totp_code(&secret, now + TOTP_STEP);
    let activated = guest.run_as(
        "alice",
        &[
            "pim", "--json", "activate", "admin", "-d", "30m", "-r", REASON, "--code", &code,
        ],
    );
    assert_eq!(activated.assert_success().json()["state"], "active");
    guest.sudo("alice").assert_success();
    guest.sudo("keeper").assert_success();
    guest.sudo("breakglass").assert_success();
    // pimd's audit reaches the journal through syslog (authpriv, ident pimd).
    let audit = guest
        .sh("journalctl --no-pager -o cat SYSLOG_IDENTIFIER=pimd SYSLOG_FACILITY=10")
        .assert_success()
        .stdout
        .clone();
    assert!(audit.contains(REASON), "{audit}");

    // --- A crash: pimd is back, the grant with it.
    let pid = guest.main_pid();
    // SIGKILL, as the OOM killer would: a signal that dumps core could reach the host's
    // core_pattern handler. A holder's sudo right after it waits for the new pimd: the module
    // tries pimd's socket again until its timeout, and RestartSec is well under it.
    guest
        .sh(&format!(
            "kill -KILL {pid} && while kill -0 {pid} 2>/dev/null; do :; done"
        ))
        .assert_success();
    guest.sudo("alice").assert_success();
    let pid = guest.wait_for_new_pimd(pid, "SIGKILL");

    // --- A crash loop, faster than the default start limit (5 in 10 s) allows.
    let restarts_before: u32 = guest.property("NRestarts").parse().unwrap_or(0);
    let mut pid = pid;
    for round in 0..8 {
        guest.sh(&format!("kill -KILL {pid}")).assert_success();
        pid = guest.wait_for_new_pimd(pid, &format!("SIGKILL number {}", round + 1));
    }
    let restarts: u32 = guest.property("NRestarts").parse().unwrap_or(0);
    assert!(
        restarts >= restarts_before + 8,
        "{restarts_before} → {restarts}"
    );
    guest
        .run_as("alice", &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("admin");

    // --- The bus daemon restarts: pimd keeps running (and answering sudo), and serves the
    // new bus by itself (issue 12: it used to end with the bus).
    guest.sh("systemctl restart dbus.service").assert_success();
    guest.sudo("alice").assert_success();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !guest
        .journal("pimd.service", 40)
        .contains("pimd: lost the connection to the system bus")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(guest
        .journal("pimd.service", 40)
        .contains("pimd: lost the connection to the system bus"));
    assert_eq!(guest.main_pid(), pid, "pimd must survive the bus's restart");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !guest.run_as("alice", &["pim", "status"]).success()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    guest
        .run_as("alice", &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("admin");
    guest.sudo("alice").assert_success();

    // --- Reload with a broken file: systemctl reload fails, the journal has the error, pimd
    // keeps the running configuration and doctor reports it.
    assert_eq!(guest.doctor_check("reload")["status"], "ok");
    guest
        .sh(&format!(
            "cat >/etc/pim/pim.toml <<'EOF'\n{BROKEN_CONFIG}EOF"
        ))
        .assert_success();
    let reload = guest.sh("systemctl reload pimd.service");
    reload.assert_failure();
    let journal = guest.journal("pimd.service", 20);
    assert!(
        journal.contains("/etc/pim/pim.toml:3: roles.admin.max_duration: 48h"),
        "{journal}"
    );
    assert!(journal.contains("reload failed"), "{journal}");
    assert_eq!(
        guest.main_pid(),
        pid,
        "a failed reload must not restart pimd"
    );
    guest
        .run_as("alice", &["pim", "roles"])
        .assert_success()
        .assert_stdout_contains("backup");
    let finding = guest.doctor_check("reload");
    assert_eq!(finding["status"], "fail", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap_or("")
            .contains("/etc/pim/pim.toml:3: roles.admin.max_duration"),
        "{finding}"
    );

    // --- With that file pimd cannot start, and is not restarted in a loop; sudo is refused to
    // holders of the gated group, permanent members too (fail closed), but the break-glass
    // account, outside the gated groups with a sudoers rule of its own, never needs pimd.
    guest.sh("systemctl restart pimd.service").assert_failure();
    assert_eq!(guest.active_state(), "failed");
    assert_eq!(guest.property("ExecMainStatus"), "78");
    guest.sudo("breakglass").assert_success();
    guest.sudo("keeper").assert_failure();
    guest.sudo("alice").assert_failure();

    // --- Fixed: it starts, a reload succeeds, doctor is content.
    guest
        .sh(&format!(
            "cat >/etc/pim/pim.toml <<'EOF'\n{CONFIG}EOF\nsystemctl start pimd.service && \
             systemctl reload pimd.service"
        ))
        .assert_success();
    assert_eq!(guest.doctor_check("reload")["status"], "ok");
    guest.sudo("alice").assert_success();

    // --- Upgrade to a next revision (the same files, repacked with the revision raised) with a
    // live grant: pimd is restarted, the grant lives on.
    let pid = guest.main_pid();
    guest
        .sh("set -e
             dpkg-deb -R /root/pim.deb /root/next
             version=$(dpkg-deb -f /root/pim.deb Version)
             sed -i \"s/^Version: .*/Version: $version+next/\" /root/next/DEBIAN/control
             dpkg-deb -Znone -b /root/next /root/pim-next.deb >/dev/null
             dpkg -i /root/pim-next.deb
             dpkg-query -W -f='${Version}' pim | grep -q '+next$'")
        .assert_success();
    guest.wait_for_new_pimd(pid, "the upgrade");
    guest
        .run_as("alice", &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("admin");
    guest.sudo("alice").assert_success();

    // --- During the grant alice makes copies of cat set-group-ID for sudo wherever she can
    // write: her home, /tmp, /var/tmp, /var/crash (1777, as on Ubuntu) and a directory of her
    // own under /srv, the last two read-only to pimd under ProtectSystem=strict.
    guest
        .sh("install -d -o alice -m 0755 /srv/alice")
        .assert_success();
    let copies = [
        "/home/alice/sudocat",
        "/tmp/sudocat",
        "/var/tmp/sudocat",
        "/var/crash/sudocat",
        "/srv/alice/sudocat",
    ];
    for copy in copies {
        guest
            .run_as(
                "alice",
                &[
                    "sh",
                    "-c",
                    &format!("cp /bin/cat {copy} && chgrp sudo {copy} && chmod g+s {copy}"),
                ],
            )
            .assert_success();
        guest
            .sh(&format!("stat -c '%a %G' {copy}"))
            .assert_success()
            .assert_stdout_contains("2755 sudo");
    }

    // A process of alice's that carries sudo, as a login of the grant would: pimd ends it at
    // the grant's end (on_end = "terminate" by default), under the unit's confinement
    // (CAP_KILL, the system call filter, PrivateDevices).
    let carrier = guest
        .sh(
            "setsid setpriv --reuid=alice --regid=alice --groups=sudo -- sleep 1000 \
             </dev/null >/dev/null 2>&1 & echo $!",
        )
        .assert_success()
        .stdout
        .trim()
        .to_string();
    assert!(guest.sh(&format!("kill -0 {carrier}")).success());

    // --- Deactivate: a shell that kept the group is refused sudo, so is a new login, and the
    // set-group-ID bit of each copy is cleared and audited; the process that carried the
    // group is ended.
    guest
        .run_as("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    let ended = poll_until(DEADLINE, || {
        !guest.sh(&format!("test -d /proc/{carrier}")).success()
    });
    assert!(ended, "{}", guest.sh("pim --json audit --user alice"));
    let modes = format!("stat -c %a {}", copies.join(" "));
    let cleared = poll_until(DEADLINE, || {
        let out = guest.sh(&modes);
        out.success() && out.stdout.lines().filter(|mode| *mode == "755").count() == copies.len()
    });
    assert!(
        cleared,
        "{}\n{}",
        guest.sh(&modes),
        guest.sh("findmnt -o TARGET,FSTYPE,OPTIONS")
    );
    // The audit records land after the chmods: wait for them, then each copy is named once
    // (records list the files of a group, quoted, with device and inode).
    let clear_records = |copy: &str| {
        let named = format!("\"{copy}\" (device ");
        let audit = guest.sh("pim --json audit --user alice");
        let found = audit.assert_success().json()["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["action"] == "setgid-clear")
            .filter_map(|r| r["detail"].as_str())
            .filter(|d| d.starts_with("group sudo: "))
            .flat_map(|d| d.split("; "))
            .filter(|f| {
                f.contains(&named) && f.ends_with("set-group-ID cleared, mode 2755 -> 0755")
            })
            .count();
        (found, audit)
    };
    let audited = poll_until(DEADLINE, || copies.iter().all(|c| clear_records(c).0 > 0));
    for copy in copies {
        let (found, audit) = clear_records(copy);
        assert!(audited && found == 1, "{copy}: {found} records\n{audit}");
    }
    guest
        .run_with_groups("alice", "sudo", &["sudo", "-n", "true"])
        .assert_failure()
        .assert_stderr_contains("pim:");
    guest.sudo("alice").assert_failure();

    // --- Removal ends the live grant, stops pimd and takes the module out of PAM; purge
    // removes the configuration and the database.
    guest
        .run_as(
            "alice",
            &["pim", "activate", "backup", "-d", "30m", "-r", REASON],
        )
        .assert_success();
    guest.sh("id -Gn alice | grep -qw backup").assert_success();
    guest
        .sh("dpkg -r pim")
        .assert_success()
        .assert_stdout_contains("ended alice's grant of backup");
    guest
        .sh("! id -Gn alice | grep -qw backup")
        .assert_success();
    assert_eq!(guest.active_state(), "inactive");
    guest
        .sh(
            "! grep -q pam_pim /etc/pam.d/common-account && ! test -e /usr/sbin/pimd && \
             ! test -e /usr/lib/systemd/system/pimd.service && test -f /etc/pim/pim.toml",
        )
        .assert_success();
    guest.sudo("keeper").assert_success();
    guest.sh("dpkg --purge pim").assert_success();
    guest
        .sh("! test -e /etc/pim && ! test -e /var/lib/pim && \
             ! test -e /etc/systemd/system/multi-user.target.wants/pimd.service")
        .assert_success();
}
