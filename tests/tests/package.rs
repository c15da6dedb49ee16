//! The Debian package, end to end: `dpkg -i` in a sandbox whose `/usr` is an overlay too, pimd
//! started from its installed path, sudo's PAM stack changed only by `pam-auth-update` with the
//! shipped profile, the core scenario (enrol, activate, sudo allowed, expiry, sudo refused),
//! `pim doctor`, D-Bus activation, and `dpkg -r` / `dpkg --purge` leaving the PAM stack as it
//! was. Also: lintian finds no errors in the package, `systemd-analyze verify` passes on the
//! unit, and the shipped example configuration is valid.
//!
//! The package is built by `scripts/package` (scripts/test runs it before `cargo test`):
//! these tests use `target/debian/pim.deb` and fail, saying so, when it is missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pim_e2e::{binary, built_deb, workspace_root, Output, Sandbox, BUS_NAME, CONFIG_PATH};

/// PATH for commands that must use installed files only.
const SYSTEM_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const PAM_MODULE_PATH: &str = "/usr/lib/x86_64-linux-gnu/security/pam_pim.so";
const UNIT_PATH: &str = "/usr/lib/systemd/system/pimd.service";
const DEADLINE: Duration = Duration::from_secs(60);
const REASON: &str = "rotate the TLS certificates";

/// The configuration the scenario runs with: alice may activate admin (group sudo),
/// breakglass is a permanent member, dave holds sudo at rest without being either.
const CONFIG: &str = r#"
[roles.admin]
group = "sudo"
description = "Full administration through sudo"
eligible = ["alice"]
permanent = ["breakglass"]
max_duration = "1h"
require_approval = false
"#;

fn host(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Output {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: format!("[host] {program} {}", args.join(" ")),
        pimd_log_tail: String::new(),
    }
}

/// Puts an overlay over the sandbox's `/usr` (upper layer on its /run tmpfs), so that dpkg can
/// install there, and hides the binaries the harness bind-mounts for every user, so that only
/// installed files are found. Refuses to run unless the sandbox has a mount namespace of its
/// own: the host's /usr is never written.
fn overlay_usr(sb: &Sandbox) {
    let ours = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
    let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", sb.host_pid()))
        .expect("the sandbox's mount namespace");
    assert_ne!(
        ours, theirs,
        "the sandbox shares the test's mount namespace: not mounting over /usr"
    );
    sb.sh(
        "root",
        r#"set -e
mkdir -p /run/.sandbox/usr-upper /run/.sandbox/usr-work
mount -t overlay sandbox-usr \
    -o lowerdir=/usr,upperdir=/run/.sandbox/usr-upper,workdir=/run/.sandbox/usr-work /usr
[ "$(findmnt -n -o FSTYPE /usr)" = overlay ]
mount -t tmpfs -o mode=0755 sandbox-nobin /run/.sandbox/bin
mount -t tmpfs -o mode=0755 sandbox-nolib /run/.sandbox/lib"#,
    )
    .assert_success();
}

/// Runs `script` with bash as `user` with the system PATH only.
fn installed(sb: &Sandbox, user: &str, script: &str) -> Output {
    sb.run(user, &["env", SYSTEM_PATH, "bash", "-c", script])
}

/// Every file of the PAM configuration with its checksum, and pam-auth-update's state.
fn pam_state(sb: &Sandbox) -> String {
    installed(
        sb,
        "root",
        "cd /etc/pam.d && sha256sum -- * | sort -k 2; echo '--- enabled profiles'; \
         cat /var/lib/pam/seen 2>/dev/null | grep -v '^pim$' | sort",
    )
    .assert_success()
    .stdout
    .clone()
}

/// `pamtester SERVICE USER acct_mgmt` as root: the account phase alone.
fn account(sb: &Sandbox, service: &str, user: &str) -> Output {
    sb.run(
        "root",
        &["env", SYSTEM_PATH, "pamtester", service, user, "acct_mgmt"],
    )
}

/// The unit's `CapabilityBoundingSet=` as setpriv's `--bounding-set` argument
/// (`-all,+chown,...`): the installed pimd runs here with what the unit gives it, no more.
fn setpriv_bounding_set(unit: &str) -> String {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("pimd.service has a CapabilityBoundingSet= line");
    let caps: Vec<String> = line
        .split_whitespace()
        .map(|cap| {
            let name = cap
                .strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{cap:?} in CapabilityBoundingSet= is not CAP_*"));
            format!("+{}", name.to_ascii_lowercase())
        })
        .collect();
    assert!(
        !caps.is_empty(),
        "pimd.service's CapabilityBoundingSet= is empty"
    );
    format!("-all,{}", caps.join(","))
}

fn host_has_pim() -> bool {
    Path::new("/usr/sbin/pimd").exists() || Path::new(PAM_MODULE_PATH).exists()
}

#[test]
fn given_the_deb_when_installed_then_the_core_scenario_runs_on_installed_files_and_removal_restores_pam(
) {
    let deb = built_deb();
    let host_had_pim = host_has_pim();
    let sb = Sandbox::start();
    overlay_usr(&sb);
    let pam_before = pam_state(&sb);

    // --- Install. The profile is not enabled by installing: nothing about sudo changes yet.
    let install = installed(&sb, "root", &format!("dpkg -i '{}'", deb.display()));
    install
        .assert_success()
        .assert_stdout_contains("Setting up pim");
    let listed = installed(&sb, "root", "dpkg -L pim")
        .assert_success()
        .stdout
        .clone();
    for path in [
        "/usr/sbin/pimd",
        "/usr/bin/pim",
        PAM_MODULE_PATH,
        UNIT_PATH,
        "/usr/share/dbus-1/system.d/org.pim.Manager1.conf",
        "/usr/share/dbus-1/system-services/org.pim.Manager1.service",
        "/usr/share/pam-configs/pim",
        "/etc/pim/pim.toml",
        "/usr/libexec/pim/pim-notify-mail",
        "/usr/libexec/pim/pim-notify-webhook",
        "/usr/share/doc/pim/notify/README.md",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "dpkg -L pim lacks {path}:\n{listed}"
        );
    }
    let conffiles = installed(&sb, "root", "dpkg-query -W -f='${Conffiles}' pim");
    conffiles
        .assert_success()
        .assert_stdout_contains("/etc/pim/pim.toml");
    let modes = installed(
        &sb,
        "root",
        "stat -c '%a %U %n' /etc/pim/pim.toml /usr/sbin/pimd /usr/bin/pim \
         /usr/libexec/pim/pim-notify-mail",
    );
    modes
        .assert_success()
        .assert_stdout_contains("755 root /usr/libexec/pim/pim-notify-mail")
        .assert_stdout_contains("600 root /etc/pim/pim.toml")
        .assert_stdout_contains("755 root /usr/sbin/pimd")
        .assert_stdout_contains("755 root /usr/bin/pim");
    assert_eq!(
        pam_state(&sb),
        pam_before,
        "installing changed the PAM configuration before the profile was enabled"
    );
    // The unit is enabled for boot (deb-systemd-helper), and verifies as installed.
    installed(
        &sb,
        "root",
        "test -L /etc/systemd/system/multi-user.target.wants/pimd.service",
    )
    .assert_success();
    let verify = installed(&sb, "root", &format!("systemd-analyze verify {UNIT_PATH}"));
    verify.assert_success();
    assert_eq!(verify.stdout.trim(), "", "{verify}");
    assert_eq!(verify.stderr.trim(), "", "{verify}");

    // --- First configuration: users, roles, sudoers, the PAM profile, only the installed
    // bus policy.
    sb.add_user("alice", &[]);
    sb.add_user("carol", &[]);
    sb.add_user("dave", &["sudo"]);
    sb.add_user("breakglass", &["sudo"]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o600);
    sb.setup_sudo(None);
    installed(&sb, "root", "pam-auth-update --enable pim").assert_success();
    let common_account = sb.read_file("/etc/pam.d/common-account");
    assert!(
        common_account
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "account",
                    "requisite",
                    "pam_pim.so",
                    "groups=sudo",
                    "services=sudo,sudo-i"
                ]),
        "pam-auth-update did not add the profile's line:\n{common_account}"
    );
    installed(
        &sb,
        "root",
        "rm /etc/dbus-1/system.d/org.pim.Manager1.conf && \
         busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
         ReloadConfig",
    )
    .assert_success();

    // --- pimd from its installed path, owning its name through the installed policy, with
    // no more privilege than pimd.service gives it: the unit's capability bounding set and no
    // new privileges (gpasswd, setuid root, gains nothing from its mode).
    let unit = std::fs::read_to_string(workspace_root().join("systemd/pimd.service")).unwrap();
    let bounding_set = setpriv_bounding_set(&unit);
    let pimd = sb.spawn(
        "root",
        &[
            "setpriv",
            "--no-new-privs",
            "--bounding-set",
            &bounding_set,
            "--",
            "/usr/sbin/pimd",
        ],
    );
    sb.wait_until("the installed pimd to own its bus name", DEADLINE, || {
        sb.bus_name_owned(BUS_NAME)
    });

    // --- The account phase as sudo sees it, before any grant.
    account(&sb, "sudo", "root").assert_success();
    account(&sb, "sudo", "carol").assert_success();
    account(&sb, "sudo", "breakglass").assert_success();
    account(&sb, "sudo", "alice").assert_success();
    account(&sb, "sudo", "dave").assert_failure();
    account(&sb, "sudo-i", "dave").assert_failure();
    account(&sb, "login", "dave").assert_success();
    sb.run("dave", &["sudo", "-n", "true"])
        .assert_failure()
        .assert_stderr_contains("pim:");
    sb.run("breakglass", &["sudo", "-n", "true"])
        .assert_success();

    // --- Enrol, activate, sudo allowed.
    let which = sb.run("alice", &["bash", "-c", "command -v pim"]);
    assert_eq!(which.assert_success().stdout_trimmed(), "/usr/bin/pim");
    let mut phone = sb.enroll_mfa("alice");
    let code = phone.next_code(&sb);
    let activated = sb.run(
        "alice",
        &[
            "pim", "--json", "activate", "admin", "-d", "20s", "-r", REASON, "--code", &code,
        ],
    );
    assert_eq!(activated.assert_success().json()["state"], "active");
    assert!(sb.is_member("alice", "sudo"));
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();
    account(&sb, "sudo", "alice").assert_success();

    // --- Expiry: the membership goes, and a shell that kept the group is refused sudo.
    sb.wait_until("alice's grant to expire", DEADLINE, || {
        !sb.is_member("alice", "sudo")
    });
    // Until pimd has ended the processes that carry the group, a shell started with it is
    // one of them (a race CI hit: the sudo below was killed, exit 137): wait for that end.
    sb.wait_until(
        "pimd to end alice's processes of the grant",
        DEADLINE,
        || {
            sb.audit_records("root", &[]).iter().any(|r| {
                r["action"] == "processes-end"
                    && r["user"] == "alice"
                    && r["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("none left"))
            })
        },
    );
    sb.run_with_groups("alice", &["sudo"], &["sudo", "-n", "true"])
        .assert_failure()
        .assert_stderr_contains("pim: your grant for role admin (group sudo) ended");
    sb.run("alice", &["sudo", "-n", "true"]).assert_failure();

    // --- pim doctor on the installed host.
    let doctor = sb.run("root", &["pim", "--json", "doctor"]);
    let report = doctor.json();
    assert_eq!(doctor.status, 0, "doctor failed:\n{doctor}");
    let status_of = |check: &str| -> Vec<String> {
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["check"] == check)
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
            .collect()
    };
    for check in [
        "daemon",
        "bus-policy",
        "activation",
        "pam-module",
        "sudoers",
        "config",
        "database",
        "groups",
        "pam-groups",
    ] {
        assert_eq!(status_of(check), ["ok"], "{check}:\n{doctor}");
    }
    assert_eq!(status_of("sudo-pam"), ["ok", "ok"], "{doctor}");
    assert_eq!(status_of("group-source"), ["warn"], "{doctor}");
    assert_eq!(status_of("members"), ["warn"], "{doctor}");
    doctor.assert_stdout_contains("sudo: dave");
    let as_user = sb.run("carol", &["pim", "--json", "doctor"]);
    assert_eq!(as_user.status, 0, "{as_user}");
    let needs_root: Vec<String> = as_user.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] == "skip" && c["message"].as_str().unwrap_or("").contains("root"))
        .map(|c| c["check"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        needs_root,
        [
            "sudoers",
            "config",
            "reload",
            "database",
            "groups",
            "pam-groups",
            "members",
            "alerts"
        ],
        "{as_user}"
    );

    // --- D-Bus activation: with pimd gone, a call starts the installed pimd again.
    drop(pimd.kill());
    sb.wait_until("pimd's name to be released", DEADLINE, || {
        !sb.bus_name_owned(BUS_NAME)
    });
    sb.run("alice", &["pim", "roles"])
        .assert_success()
        .assert_stdout_contains("admin");
    assert!(sb.bus_name_owned(BUS_NAME));
    let started = installed(&sb, "root", "pgrep -a -x pimd");
    started
        .assert_success()
        .assert_stdout_contains("/usr/sbin/pimd");

    // --- A live grant when the package goes: removal ends it.
    let code = phone.next_code(&sb);
    sb.run(
        "alice",
        &[
            "pim", "activate", "admin", "-d", "30m", "-r", REASON, "--code", &code,
        ],
    )
    .assert_success();
    assert!(sb.is_member("alice", "sudo"));

    let remove = installed(&sb, "root", "dpkg -r pim");
    remove
        .assert_success()
        .assert_stdout_contains("ended alice's grant of admin");
    assert!(!sb.is_member("alice", "sudo"), "{remove}");
    assert!(
        sb.is_member("dave", "sudo"),
        "removal touched a membership pim did not add"
    );
    assert_eq!(
        pam_state(&sb),
        pam_before,
        "the PAM configuration is not back as it was after dpkg -r"
    );
    installed(
        &sb,
        "root",
        &format!(
            "! test -e /usr/sbin/pimd && ! test -e {PAM_MODULE_PATH} && \
             ! test -e /usr/share/pam-configs/pim && test -f /etc/pim/pim.toml"
        ),
    )
    .assert_success();
    account(&sb, "sudo", "dave").assert_success();

    let purge = installed(&sb, "root", "dpkg --purge pim");
    purge.assert_success();
    installed(&sb, "root", "! test -e /etc/pim && ! test -e /var/lib/pim").assert_success();
    assert_eq!(pam_state(&sb), pam_before);

    drop(sb);
    assert_eq!(
        host_has_pim(),
        host_had_pim,
        "the host's /usr changed: the overlay leaked"
    );
}

#[test]
fn given_the_deb_then_lintian_reports_no_errors() {
    let deb = built_deb();
    let out = host(
        "lintian",
        &["--no-tag-display-limit", &deb.display().to_string()],
    );
    let errors: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("E: "))
        .collect();
    assert!(
        errors.is_empty(),
        "lintian errors:\n{}\n{out}",
        errors.join("\n")
    );
    // lintian exits 1 only for errors (and 2 when it cannot run at all).
    assert!(out.status == 0 || out.status == 1, "{out}");
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("W: "))
        .collect();
    // Kept warnings are listed in README.md ("Installing"); a new one needs a look.
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    for warning in warnings {
        let tag = warning.split_whitespace().nth(2).unwrap_or(warning);
        assert!(
            readme.contains(tag),
            "lintian warns {warning:?}, which README.md does not list: fix it or list it"
        );
    }
}

/// The highest GLIBC_x.y among the version references of an ELF file (`objdump -p`): what the
/// dynamic loader checks when it loads the file.
fn glibc_needed(file: &Path) -> Option<String> {
    let out = host("objdump", &["-p", &file.display().to_string()]);
    out.assert_success();
    let references = out.stdout.split("Version References:").nth(1)?;
    references
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .max_by_key(|v| {
            v.split('.')
                .map(|n| n.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .map(str::to_string)
}

#[test]
fn given_the_deb_then_its_libc6_dependency_covers_the_glibc_its_files_need() {
    // A file that needs a newer glibc than the package declares installs and then fails to
    // load: for pam_pim.so, every sudo through its line is refused.
    let deb = built_deb();
    let deb = deb.display().to_string();
    let unpacked = std::env::temp_dir().join(format!("pim-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&unpacked);
    host("dpkg-deb", &["-x", &deb, &unpacked.display().to_string()]).assert_success();
    let depends = host("dpkg-deb", &["-f", &deb, "Depends"]);
    let depends = depends.assert_success().stdout_trimmed();
    // Every clause must hold; one with alternatives promises nothing.
    let declared: Vec<&str> = depends
        .split(',')
        .filter_map(|clause| clause.trim().strip_prefix("libc6 (>= ")?.strip_suffix(')'))
        .collect();
    let files = ["/usr/sbin/pimd", "/usr/bin/pim", PAM_MODULE_PATH];
    let needs: Vec<Option<String>> = files
        .iter()
        .map(|file| glibc_needed(&unpacked.join(&file[1..])))
        .collect();
    let _ = std::fs::remove_dir_all(&unpacked);
    for (file, need) in files.iter().zip(needs) {
        let need = need.unwrap_or_else(|| panic!("{file} in the package names no GLIBC version"));
        assert!(
            declared.iter().any(|minimum| {
                host("dpkg", &["--compare-versions", minimum, "ge", &need]).status == 0
            }),
            "{file} needs glibc >= {need}, but the package's Depends only has {declared:?}: \
             {depends}"
        );
    }
}

#[test]
fn given_the_unit_file_then_systemd_analyze_verify_is_clean() {
    let pimd = binary("pimd");
    let sb = Sandbox::start();
    overlay_usr(&sb);
    let unit = workspace_root().join("systemd/pimd.service");
    let man = workspace_root().join("packaging/man");
    // What the unit points at must exist, as the package installs it: the binary and the
    // manual pages named in Documentation= (verify runs `man` on each).
    let script = format!(
        "set -e; install -m 0755 '{}' /usr/sbin/pimd; \
         for page in '{}'/*.[158]; do \
           section=${{page##*.}}; install -d /usr/share/man/man$section; \
           gzip -9nc \"$page\" >/usr/share/man/man$section/$(basename \"$page\").gz; \
         done; systemd-analyze verify '{}'",
        pimd.display(),
        man.display(),
        unit.display()
    );
    let out = installed(&sb, "root", &script);
    out.assert_success();
    assert_eq!(out.stdout.trim(), "", "{out}");
    assert_eq!(out.stderr.trim(), "", "{out}");

    // The hardening it claims, as systemd reads it.
    let security = installed(
        &sb,
        "root",
        &format!(
            "systemd-analyze security --offline=yes --threshold=30 '{}'",
            unit.display()
        ),
    );
    security.assert_success();
}

#[test]
fn the_shipped_configuration_is_valid_commented_and_uncommented() {
    let pimd = binary("pimd");
    let example = workspace_root().join("packaging/pim.toml");
    let check = |path: &Path| {
        let out = host(
            &pimd.display().to_string(),
            &["--check-config", "--config", &path.display().to_string()],
        );
        out.assert_success();
        out
    };
    check(&example).assert_stderr_contains("no roles defined");

    // Every example line, uncommented, is a valid configuration too.
    let text = std::fs::read_to_string(&example).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\n[roles.admin]"), "{uncommented}");
    let scratch = std::env::temp_dir().join(format!("pim-example-{}.toml", std::process::id()));
    std::fs::write(&scratch, uncommented).unwrap();
    let out = check(&scratch);
    let _ = std::fs::remove_file(&scratch);
    assert!(!out.stderr.contains("error"), "{out}");
}

#[test]
fn the_packaging_files_agree_with_each_other() {
    let root = workspace_root();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();

    // The Debian changelog names the version being packaged.
    let changelog = read("packaging/debian/changelog");
    let first = changelog.lines().next().unwrap_or("");
    let expected = format!("pim ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with(&expected),
        "packaging/debian/changelog starts with {first:?}; add an entry for {expected:?}"
    );

    // Both removal scripts end live grants with the same function.
    let function = |text: &str| -> String {
        let start = text.find("pim_end_grants() {").expect("pim_end_grants");
        let end = text[start..].find("\n}\n").expect("end of function") + start;
        text[start..end].to_string()
    };
    assert_eq!(
        function(&read("packaging/debian/prerm")),
        function(&read("packaging/rpm/preun")),
        "packaging/debian/prerm and packaging/rpm/preun must end grants the same way"
    );

    // The profile's line is the one the SPEC and `pim doctor` expect.
    let profile = read("packaging/pam-configs/pim");
    assert!(profile.contains("Account-Type: Additional"), "{profile}");
    assert!(
        profile.contains("requisite\tpam_pim.so groups=sudo services=sudo,sudo-i"),
        "{profile}"
    );

    // The bus policy the harness loads is the one the package installs.
    let manifest = read("daemon/Cargo.toml");
    assert!(manifest.contains(
        r#"["../packaging/dbus/org.pim.Manager1.conf", "usr/share/dbus-1/system.d/", "644"]"#
    ));
}
