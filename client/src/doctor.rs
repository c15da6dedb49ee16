//! `pim doctor`: is this host set up for pim? Each check says what it found and, when something
//! is wrong, how to fix it.
//!
//! | check | looks at | root only |
//! | --- | --- | --- |
//! | daemon | pimd owns `org.pim.Manager1` on the system bus (or the bus starts it) | |
//! | bus-policy | the bus policy file, and the D-Bus activation file | |
//! | pam-module | `pam_pim.so` in the distribution's PAM module directory | |
//! | sudo-pam | the account stacks of `sudo` and `sudo-i` (following includes) run it, so that its refusal counts and its "not my business" does not, with a `groups=` that names existing groups | |
//! | group-source | `Set group_source` in /etc/sudo.conf | |
//! | sudoers | no `Defaults !pam_acct_mgmt` (sudo would skip the module), whatever it is bound to, in every file sudo reads (includes followed); `targetpw`, `rootpw`, `runaspw` only with the module seen to run in sudo's stack (it judges the invoking user, not PAM_USER); a warning when nsswitch.conf takes sudoers rules from sources doctor cannot read | yes |
//! | service | pimd.service is enabled (when systemd runs) | |
//! | nosuid | places any user can write (/home, /tmp, /var/tmp, /dev/shm, world-writable mount points) are on mounts with `nosuid`, and no network, FUSE or ramfs mount (never swept by pimd) allows set-ID bits | |
//! | config | /etc/pim/pim.toml: owner, mode, `pimd --check-config` | yes |
//! | database | the database's directory (0700) and files (0600), owned by root | yes |
//! | groups | every role's group exists | yes |
//! | pam-groups | every group pam_pim.so gates has a role; no role's group that sudoers names escapes the module | yes |
//! | members | members of gated groups with neither a live grant nor a `permanent` listing | yes |
//!
//! Exit status 0 when nothing failed (warnings and skipped checks included), 1 otherwise.
//! Without root the checks that read root-only files are skipped, and say so.
//!
//! Everything read from files is escaped before it is printed.

mod pam_socket;

use crate::cli::DoctorArgs;
use crate::commands::Outcome;
use crate::error::{Failure, EXIT_FAILED};
use crate::output::to_json;
use pim_common::proxy::ManagerProxy;
use pim_common::reload::{LastReload, LAST_RELOAD_PATH};
use pim_common::text::escape;
use pim_common::{BUS_NAME, OBJECT_PATH};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/pim/pim.toml";
const DEFAULT_DATABASE: &str = "/var/lib/pim/pim.db";
/// The directory the systemd unit makes writable for the database (StateDirectory=pim).
const STATE_DIRECTORY: &str = "/var/lib/pim";
/// What pimd.service keeps read-only to pimd (ProtectSystem=true, ReadOnlyPaths=/run).
const READ_ONLY_TO_PIMD: [&str; 4] = ["/usr", "/boot", "/efi", "/run"];
const PAM_DIR: &str = "/etc/pam.d";
const SUDO_CONF: &str = "/etc/sudo.conf";
const SUDOERS: &str = "/etc/sudoers";
const SUDOERS_DIR: &str = "/etc/sudoers.d";
const NSSWITCH: &str = "/etc/nsswitch.conf";
/// sudo's own bound on nested includes.
const MAX_SUDOERS_DEPTH: usize = 128;
/// The PAM services the module is meant for (SPEC: `services=sudo,sudo-i`).
const SUDO_SERVICES: [&str; 2] = ["sudo", "sudo-i"];
const MODULE: &str = "pam_pim.so";
/// Where the bus reads system policies: the package's place first, the administrator's second.
const POLICY_FILES: [&str; 2] = [
    "/usr/share/dbus-1/system.d/org.pim.Manager1.conf",
    "/etc/dbus-1/system.d/org.pim.Manager1.conf",
];
const ACTIVATION_FILES: [&str; 2] = [
    "/usr/share/dbus-1/system-services/org.pim.Manager1.service",
    "/usr/local/share/dbus-1/system-services/org.pim.Manager1.service",
];
/// pimd's installed places, before a PATH search.
const PIMD_PATHS: [&str; 3] = ["/usr/sbin/pimd", "/usr/local/sbin/pimd", "/sbin/pimd"];
/// Parents of the PAM module directories of the distributions we know: Debian's multiarch
/// directories below them (`x86_64-linux-gnu/security`), and `security` itself (Fedora's
/// /usr/lib64/security, Arch's /usr/lib/security).
const PAM_LIB_PARENTS: [&str; 4] = ["/usr/lib", "/lib", "/usr/lib64", "/lib64"];
const BUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Most lines of pimd's output quoted in one finding.
const MAX_QUOTED_LINES: usize = 6;
const NEEDS_ROOT: &str = "needs root; run 'pim doctor' as root";

// ---------------------------------------------------------------------------------------------
// Findings

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// What one check found. `message` and `fix` are printable (escaped) already.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    pub fix: Option<String>,
}

impl Finding {
    fn pass(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Pass,
            message: message.into(),
            fix: None,
        }
    }

    fn skip(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Skip,
            message: message.into(),
            fix: None,
        }
    }

    fn warn(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

fn show(path: &Path) -> String {
    escape(&path.display().to_string())
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| escape(n))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// The command

pub async fn run(args: DoctorArgs, json: bool) -> Result<Outcome, Failure> {
    let root = nix::unistd::geteuid().is_root();
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let mut findings = Vec::new();

    let (daemon, connection) = check_daemon().await;
    let pimd_running = daemon.status == Status::Pass;
    findings.push(daemon);
    findings.extend(check_bus_files());
    let module_dirs = pam_module_dirs();
    findings.push(check_pam_module(&module_dirs));
    let (sudo_findings, gated) = check_sudo_pam(Path::new(PAM_DIR), &module_dirs);
    let module_runs = module_seen_to_run(&sudo_findings);
    findings.extend(sudo_findings);
    findings.push(check_group_source(
        std::fs::read_to_string(SUDO_CONF).ok().as_deref(),
    ));
    findings.push(check_service());
    findings.push(check_nosuid(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        &|path| std::fs::metadata(path).is_ok_and(|m| m.is_dir() && m.mode() & 0o002 != 0),
    ));

    if root {
        let sudoers = sudoers_texts();
        let elsewhere =
            sudoers_sources_elsewhere(&std::fs::read_to_string(NSSWITCH).unwrap_or_default());
        findings.push(check_sudoers_defaults(&sudoers, module_runs, &elsewhere));
        let (config_findings, config) = check_config(&config_path);
        findings.extend(config_findings);
        findings.push(check_reload(Path::new(LAST_RELOAD_PATH), pimd_running));
        findings.push(pam_socket::check_pam_socket(
            Path::new(pim_common::pam_socket::PAM_SOCKET_DIR),
            Path::new(pim_common::pam_socket::PAM_SOCKET),
            pimd_running,
        ));
        match &config {
            Some(config) => {
                findings.push(check_database(config));
                findings.push(check_groups(config, &|g| {
                    matches!(nix::unistd::Group::from_name(g), Ok(Some(_)))
                }));
                findings.extend(check_pam_groups(config, &gated, &sudoers_groups(&sudoers)));
                findings.push(check_members(config, &gated, connection.as_ref()).await);
            }
            None => {
                let why = "skipped: the configuration could not be read";
                for check in ["database", "groups", "pam-groups", "members"] {
                    findings.push(Finding::skip(check, why));
                }
            }
        }
    } else {
        for check in [
            "sudoers",
            "config",
            "reload",
            "database",
            "groups",
            "pam-groups",
            "members",
        ] {
            findings.push(Finding::skip(check, NEEDS_ROOT));
        }
    }

    let failed = findings.iter().any(|f| f.status == Status::Fail);
    let text = if json {
        to_json(&report_json(&findings, root), true)
    } else {
        report_text(&findings)
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return Err(Failure::Quiet(EXIT_FAILED));
    }
    if failed {
        Err(Failure::Quiet(EXIT_FAILED))
    } else {
        Ok(Outcome::Done)
    }
}

pub fn report_json(findings: &[Finding], root: bool) -> Value {
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    json!({
        "ok": count(Status::Fail) == 0,
        "root": root,
        "passed": count(Status::Pass),
        "warnings": count(Status::Warn),
        "failed": count(Status::Fail),
        "skipped": count(Status::Skip),
        "checks": findings.iter().map(|f| json!({
            "check": f.check,
            "status": f.status.word(),
            "message": f.message,
            "fix": f.fix,
        })).collect::<Vec<_>>(),
    })
}

pub fn report_text(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        let tag = match f.status {
            Status::Pass => "[ ok ]",
            Status::Skip => "[skip]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        out.push_str(&format!(
            "{tag} {:<width$}  {}\n",
            f.check,
            f.message,
            width = width
        ));
        if let Some(fix) = &f.fix {
            out.push_str(&format!(
                "       {:<width$}  fix: {fix}\n",
                "",
                width = width
            ));
        }
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    let (failed, warned, skipped) = (
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Skip),
    );
    out.push('\n');
    out.push_str(&if failed == 0 && warned == 0 {
        format!("No problems found ({} checks", count(Status::Pass))
    } else {
        format!(
            "{failed} problem(s), {warned} warning(s) ({} checks passed",
            count(Status::Pass)
        )
    });
    if skipped > 0 {
        out.push_str(&format!(", {skipped} skipped"));
    }
    out.push_str(").\n");
    out
}

// ---------------------------------------------------------------------------------------------
// The daemon on the bus

async fn check_daemon() -> (Finding, Option<zbus::Connection>) {
    const CHECK: &str = "daemon";
    let connection = match tokio::time::timeout(BUS_TIMEOUT, zbus::Connection::system()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return (
                Finding::fail(
                    CHECK,
                    format!(
                        "cannot connect to the system bus: {}",
                        escape(&e.to_string())
                    ),
                    "start the bus: systemctl start dbus",
                ),
                None,
            )
        }
        Err(_) => {
            return (
                Finding::fail(
                    CHECK,
                    "the system bus did not answer within 10 s",
                    "check the bus: systemctl status dbus",
                ),
                None,
            )
        }
    };
    let owned = async {
        let bus = zbus::fdo::DBusProxy::new(&connection).await?;
        let name = zbus::names::BusName::try_from(BUS_NAME)
            .map_err(|e| zbus::Error::Failure(e.to_string()))?;
        Ok::<bool, zbus::Error>(bus.name_has_owner(name).await?)
    };
    let owned = matches!(tokio::time::timeout(BUS_TIMEOUT, owned).await, Ok(Ok(true)));
    if owned {
        return (
            Finding::pass(
                CHECK,
                format!("pimd is running and owns {BUS_NAME} on the system bus"),
            ),
            Some(connection),
        );
    }
    // Not running: a call to the name makes the bus start it (D-Bus activation).
    let ping = async {
        let peer = zbus::fdo::PeerProxy::builder(&connection)
            .destination(BUS_NAME)
            .path(OBJECT_PATH)
            .build()
            .await?;
        peer.ping().await
    };
    match tokio::time::timeout(BUS_TIMEOUT * 3, ping).await {
        Ok(Ok(())) => (
            Finding::warn(
                CHECK,
                "pimd was not running; the bus started it on demand (D-Bus activation). \
                 Grants end on time only while pimd runs",
                "start it at boot: systemctl enable --now pimd",
            ),
            Some(connection),
        ),
        Ok(Err(e)) => (
            Finding::fail(
                CHECK,
                format!(
                    "pimd is not running and the bus could not start it: {}",
                    escape(&e.to_string())
                ),
                "see why: systemctl status pimd; journalctl -u pimd; pimd --check-config",
            ),
            Some(connection),
        ),
        Err(_) => (
            Finding::fail(
                CHECK,
                format!("{BUS_NAME} did not answer within 30 s"),
                "see why: systemctl status pimd; journalctl -u pimd",
            ),
            Some(connection),
        ),
    }
}

fn check_bus_files() -> Vec<Finding> {
    let mut findings = Vec::new();
    let policy = POLICY_FILES.iter().map(Path::new).find(|p| p.is_file());
    findings.push(match policy {
        Some(path) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(&format!("own=\"{BUS_NAME}\"")) {
                Finding::pass(
                    "bus-policy",
                    format!("{} lets root own {BUS_NAME}", show(path)),
                )
            } else {
                Finding::fail(
                    "bus-policy",
                    format!("{} does not let root own {BUS_NAME}", show(path)),
                    "reinstall the package (apt install --reinstall pim) or restore the file",
                )
            }
        }
        None => Finding::fail(
            "bus-policy",
            format!(
                "no bus policy for {BUS_NAME} ({}): pimd cannot own its name",
                POLICY_FILES.join(", ")
            ),
            "reinstall the package (apt install --reinstall pim)",
        ),
    });
    let activation = ACTIVATION_FILES.iter().map(Path::new).find(|p| p.is_file());
    findings.push(match activation {
        Some(path) => Finding::pass(
            "activation",
            format!("{} lets the bus start pimd on demand", show(path)),
        ),
        None => Finding::warn(
            "activation",
            format!(
                "no D-Bus activation file ({}): nothing starts pimd on demand",
                ACTIVATION_FILES[0]
            ),
            "reinstall the package, or make sure pimd runs: systemctl enable --now pimd",
        ),
    });
    findings
}

// ---------------------------------------------------------------------------------------------
// The PAM module and sudo's stacks

/// The PAM module directories on this host, the distribution's (where pam_unix.so is) first.
pub fn pam_module_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for parent in PAM_LIB_PARENTS {
        let parent = Path::new(parent);
        if let Ok(entries) = std::fs::read_dir(parent) {
            let mut multiarch: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains("-linux-"))
                .map(|e| e.path().join("security"))
                .filter(|p| p.is_dir())
                .collect();
            multiarch.sort();
            dirs.extend(multiarch);
        }
        let plain = parent.join("security");
        if plain.is_dir() {
            dirs.push(plain);
        }
    }
    // One entry per real directory (/lib is often a link to /usr/lib).
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
    dirs.sort_by_key(|d| !d.join("pam_unix.so").is_file());
    dirs
}

fn check_pam_module(dirs: &[PathBuf]) -> Finding {
    const CHECK: &str = "pam-module";
    let found: Vec<&PathBuf> = dirs.iter().filter(|d| d.join(MODULE).is_file()).collect();
    let distribution = dirs.iter().find(|d| d.join("pam_unix.so").is_file());
    match (found.first(), distribution) {
        (None, _) => Finding::fail(
            CHECK,
            format!(
                "{MODULE} is in none of the PAM module directories ({})",
                dirs.iter().map(|d| show(d)).collect::<Vec<_>>().join(", ")
            ),
            "reinstall the package (apt install --reinstall pim)",
        ),
        (Some(_), Some(dist)) if !found.contains(&dist) => Finding::fail(
            CHECK,
            format!(
                "{MODULE} is in {} but PAM loads modules from {} (where pam_unix.so is)",
                show(found[0]),
                show(dist)
            ),
            format!(
                "move it: mv {} {}/",
                show(&found[0].join(MODULE)),
                show(dist)
            ),
        ),
        (Some(dir), _) => Finding::pass(CHECK, show(&dir.join(MODULE))),
    }
}

/// One line of a PAM stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PamLine {
    pub file: PathBuf,
    pub line: usize,
    pub control: String,
    pub module: String,
    pub args: Vec<String>,
}

impl PamLine {
    fn place(&self) -> String {
        format!("{}:{}", show(&self.file), self.line)
    }

    fn arg(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    }

    fn list_arg(&self, name: &str) -> Option<Vec<String>> {
        self.arg(name).map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
    }

    fn is_pim(&self) -> bool {
        Path::new(&self.module)
            .file_name()
            .is_some_and(|n| n == MODULE)
    }
}

/// Splits a PAM configuration line into words; `[...]` stays one word, with its blanks.
pub fn pam_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '[' => {
                depth += 1;
                word.push(c);
            }
            ']' if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Logical lines of a PAM file: comments cut, continuation lines (`\` at the end) joined; each
/// with the number of its first physical line.
fn pam_logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let code = raw.split('#').next().unwrap_or("");
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(head) = code.trim_end().strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            pending = Some((start, acc));
        } else {
            acc.push_str(code);
            out.push((start, acc));
        }
    }
    if let Some(rest) = pending {
        out.push(rest);
    }
    out
}

/// The `kind` lines (`account`, ...) of a PAM service, following `@include FILE`, `include`
/// and `substack`. `read` gives a file's text (None: missing). Err when the service's own file
/// is missing.
pub fn pam_stack(
    dir: &Path,
    service: &str,
    kind: &str,
    read: &dyn Fn(&Path) -> Option<String>,
) -> Result<Vec<PamLine>, String> {
    let path = dir.join(service);
    let Some(text) = read(&path) else {
        return Err(format!("{} does not exist", show(&path)));
    };
    let mut out = Vec::new();
    collect_stack(dir, &path, &text, kind, read, 0, &mut out);
    Ok(out)
}

fn collect_stack(
    dir: &Path,
    path: &Path,
    text: &str,
    kind: &str,
    read: &dyn Fn(&Path) -> Option<String>,
    depth: usize,
    out: &mut Vec<PamLine>,
) {
    // Linux-PAM gives up far earlier; this only stops include loops.
    if depth > 16 {
        return;
    }
    let include = |name: &str, out: &mut Vec<PamLine>| {
        let target = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            dir.join(name)
        };
        if let Some(text) = read(&target) {
            collect_stack(dir, &target, &text, kind, read, depth + 1, out);
        }
    };
    for (number, line) in pam_logical_lines(text) {
        let words = pam_words(&line);
        let Some(first) = words.first() else { continue };
        if first == "@include" {
            if let Some(name) = words.get(1) {
                include(name, out);
            }
            continue;
        }
        if words.len() < 3 || !first.trim_start_matches('-').eq_ignore_ascii_case(kind) {
            continue;
        }
        let control = words[1].clone();
        if control == "include" || control == "substack" {
            include(&words[2], out);
            continue;
        }
        out.push(PamLine {
            file: path.to_path_buf(),
            line: number,
            control,
            module: words[2].clone(),
            args: words[3..].to_vec(),
        });
    }
}

/// What the stack does with a return value of the module, by its control field: `ok`,
/// `ignore`, `bad`, `die`, `done`, `reset` or a jump count.
pub fn control_action(control: &str, value: &str) -> String {
    let simple = |v: &str| -> &'static str {
        match (control, v) {
            ("required", "success") => "ok",
            ("required", "ignore") => "ignore",
            ("required", _) => "bad",
            ("requisite", "success") => "ok",
            ("requisite", "ignore") => "ignore",
            ("requisite", _) => "die",
            ("sufficient", "success") => "done",
            ("sufficient", _) => "ignore",
            ("optional", "success") => "ok",
            ("optional", _) => "ignore",
            _ => "",
        }
    };
    let found = simple(value);
    if !found.is_empty() {
        return found.to_string();
    }
    let Some(inner) = control.strip_prefix('[').and_then(|c| c.strip_suffix(']')) else {
        return "bad".to_string();
    };
    let pairs: BTreeMap<&str, &str> = inner
        .split_whitespace()
        .filter_map(|p| p.split_once('='))
        .collect();
    // Linux-PAM treats a value with neither its own action nor default= as bad.
    pairs
        .get(value)
        .or_else(|| pairs.get("default"))
        .unwrap_or(&"bad")
        .to_string()
}

/// Judges one service's account stack: exactly what pam_pim.so needs to work for it.
/// Returns the finding and the groups the module gates there.
pub fn judge_stack(
    service: &str,
    lines: &[PamLine],
    module_dirs: &[PathBuf],
    group_exists: &dyn Fn(&str) -> bool,
) -> (Finding, Vec<String>) {
    const CHECK: &str = "sudo-pam";
    let enable = "pam-auth-update --enable pim (Debian, Ubuntu); elsewhere add \
                  'account required pam_pim.so groups=sudo services=sudo,sudo-i' after the \
                  other account lines of /etc/pam.d/sudo and /etc/pam.d/sudo-i";
    let Some(index) = lines.iter().position(PamLine::is_pim) else {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: no account line runs {MODULE}, so nothing stops sudo once a grant \
                     has ended (processes keep their groups)"
                ),
                enable,
            ),
            Vec::new(),
        );
    };
    let line = &lines[index];
    let place = line.place();
    let control = escape(&line.control);
    let denied = control_action(&line.control, "perm_denied");
    if denied != "bad" && denied != "die" {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: with control '{control}' a refusal by {MODULE} does not \
                     stop sudo"
                ),
                "make the control 'requisite' (or 'required')",
            ),
            Vec::new(),
        );
    }
    let ignored = control_action(&line.control, "ignore");
    if ignored != "ignore" && ignored != "ok" {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: with control '{control}' users who hold no managed group \
                     are refused sudo too"
                ),
                "make the control 'requisite' (or 'required'), or add ignore=ignore",
            ),
            Vec::new(),
        );
    }
    if let Some(services) = line.list_arg("services") {
        if !services.iter().any(|s| s == service) {
            return (
                Finding::fail(
                    CHECK,
                    format!(
                        "{service}: {place}: services={} leaves out {service}",
                        list(&services)
                    ),
                    format!("add {service} to services= on that line"),
                ),
                Vec::new(),
            );
        }
    }
    let groups = line.list_arg("groups").unwrap_or_default();
    if groups.is_empty() {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: no groups= on the {MODULE} line; the module refuses \
                     everybody"
                ),
                "name the managed groups: groups=sudo (or sudo,wheel, ...)",
            ),
            Vec::new(),
        );
    }
    let (groups, missing): (Vec<String>, Vec<String>) =
        groups.into_iter().partition(|g| group_exists(g));
    if groups.is_empty() {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: none of groups={} exists on this host (a typo?); the \
                     module refuses everybody but root",
                    list(&missing)
                ),
                "name the managed groups as they are in /etc/group: groups=sudo (or sudo,wheel, ...)",
            ),
            Vec::new(),
        );
    }
    if line.module.starts_with('/') {
        if !Path::new(&line.module).is_file() {
            return (
                Finding::fail(
                    CHECK,
                    format!(
                        "{service}: {place}: {} does not exist",
                        escape(&line.module)
                    ),
                    format!("use the module's name alone: {MODULE}"),
                ),
                groups,
            );
        }
    } else if !module_dirs.iter().any(|d| d.join(&line.module).is_file()) {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: PAM finds no {} in its module directories",
                    escape(&line.module)
                ),
                "reinstall the package (apt install --reinstall pim)",
            ),
            groups,
        );
    }
    let skipping = lines[..index]
        .iter()
        .find(|l| l.control == "sufficient" || control_action(&l.control, "success") == "done");
    if let Some(before) = skipping {
        return (
            Finding::warn(
                CHECK,
                format!(
                    "{service}: {MODULE} runs ({place}, groups={}), but {} ({}) comes first and \
                     may end the stack before it",
                    list(&groups),
                    escape(&before.module),
                    before.place()
                ),
                format!(
                    "move the {MODULE} line above {}, or make that line 'required'",
                    escape(&before.module)
                ),
            ),
            groups,
        );
    }
    if !missing.is_empty() {
        return (
            Finding::warn(
                CHECK,
                format!(
                    "{service}: {MODULE} gates groups {} ({place}), but {} in its groups= do(es) \
                     not exist on this host: a typo leaves the group that was meant ungated",
                    list(&groups),
                    list(&missing)
                ),
                "correct groups= on that line, or drop the groups this host does not have",
            ),
            groups,
        );
    }
    (
        Finding::pass(
            CHECK,
            format!(
                "{service}: {MODULE} gates groups {} ({place}, control {control})",
                list(&groups)
            ),
        ),
        groups,
    )
}

/// Judges the stacks of sudo and sudo-i. Returns the findings and every gated group.
fn check_sudo_pam(dir: &Path, module_dirs: &[PathBuf]) -> (Vec<Finding>, Vec<String>) {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let exists = |g: &str| matches!(nix::unistd::Group::from_name(g), Ok(Some(_)));
    let mut findings = Vec::new();
    let mut gated = BTreeSet::new();
    for service in SUDO_SERVICES {
        match pam_stack(dir, service, "account", &read) {
            Ok(lines) => {
                let (finding, groups) = judge_stack(service, &lines, module_dirs, &exists);
                findings.push(finding);
                gated.extend(groups);
            }
            Err(e) if service == "sudo" => findings.push(Finding::fail(
                "sudo-pam",
                format!("{service}: {e}; is sudo installed?"),
                "install sudo",
            )),
            // Some distributions have no sudo-i service: sudo -i then uses sudo's stack.
            Err(e) => findings.push(Finding::skip("sudo-pam", format!("{service}: {e}"))),
        }
    }
    (findings, gated.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// sudo.conf

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSource {
    Static,
    Dynamic,
    Adaptive,
}

/// The `Set group_source` of a sudo.conf (the last one wins; static when absent or unknown).
pub fn group_source(text: &str) -> GroupSource {
    let mut source = GroupSource::Static;
    for line in text.lines() {
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if let ["Set", "group_source", value] = words.as_slice() {
            source = match value.to_ascii_lowercase().as_str() {
                "dynamic" => GroupSource::Dynamic,
                "adaptive" => GroupSource::Adaptive,
                _ => GroupSource::Static,
            };
        }
    }
    source
}

pub fn check_group_source(sudo_conf: Option<&str>) -> Finding {
    const CHECK: &str = "group-source";
    let fix = "add the line 'Set group_source dynamic' to /etc/sudo.conf";
    let why = "sudo takes the groups of the process that runs it, so after 'pim activate' sudo \
               works only in a new login (or after 'newgrp'); expiry is enforced either way";
    match sudo_conf.map(group_source) {
        Some(GroupSource::Dynamic) => Finding::pass(
            CHECK,
            "/etc/sudo.conf sets group_source dynamic: sudo reads the group database at every \
             run, so a new grant works at once in shells opened before it",
        ),
        Some(GroupSource::Adaptive) => Finding::warn(
            CHECK,
            format!("/etc/sudo.conf sets group_source adaptive: {why}"),
            fix,
        ),
        Some(GroupSource::Static) => Finding::warn(
            CHECK,
            format!("/etc/sudo.conf leaves group_source static (the default): {why}"),
            fix,
        ),
        None => Finding::warn(
            CHECK,
            format!("no /etc/sudo.conf, so group_source is static (the default): {why}"),
            fix,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// systemd

fn check_service() -> Finding {
    const CHECK: &str = "service";
    if !Path::new("/run/systemd/system").is_dir() {
        return Finding::skip(CHECK, "systemd is not running on this host");
    }
    let output = Command::new("systemctl")
        .args(["is-enabled", "pimd.service"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output();
    let state = match output {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(e) => {
            return Finding::skip(
                CHECK,
                format!("cannot run systemctl: {}", escape(&e.to_string())),
            )
        }
    };
    match state.as_str() {
        "enabled" | "enabled-runtime" | "static" | "alias" => {
            Finding::pass(CHECK, format!("pimd.service is {state}"))
        }
        "" | "not-found" => Finding::fail(
            CHECK,
            "systemd knows no pimd.service",
            "reinstall the package (apt install --reinstall pim); systemctl daemon-reload",
        ),
        other => Finding::warn(
            CHECK,
            format!(
                "pimd.service is {}: after a reboot, grants that were live end only once \
                 something starts pimd",
                escape(other)
            ),
            "systemctl enable --now pimd",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The configuration (root)

/// What doctor needs from the configuration; pimd --check-config judges the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigSummary {
    pub path: PathBuf,
    pub database: PathBuf,
    /// Role name → (group, permanent principals).
    pub roles: BTreeMap<String, (String, Vec<String>)>,
}

pub fn summarize_config(path: &Path, text: &str) -> Result<ConfigSummary, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let database = table
        .get("daemon")
        .and_then(|d| d.get("database"))
        .and_then(|d| d.as_str())
        .unwrap_or(DEFAULT_DATABASE);
    let mut roles = BTreeMap::new();
    if let Some(defined) = table.get("roles").and_then(|r| r.as_table()) {
        for (name, role) in defined {
            let group = role
                .get("group")
                .and_then(|g| g.as_str())
                .unwrap_or(name)
                .to_string();
            let permanent = role
                .get("permanent")
                .and_then(|p| p.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            roles.insert(name.clone(), (group, permanent));
        }
    }
    Ok(ConfigSummary {
        path: path.to_path_buf(),
        database: PathBuf::from(database),
        roles,
    })
}

fn find_pimd() -> Option<PathBuf> {
    PIMD_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("pimd"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file())
}

fn check_config(path: &Path) -> (Vec<Finding>, Option<ConfigSummary>) {
    const CHECK: &str = "config";
    let mut findings = Vec::new();
    let shown = show(path);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            findings.push(Finding::fail(
                CHECK,
                format!("cannot read {shown}: {}", escape(&e.to_string())),
                "reinstall the package to get the commented example, or pass --config PATH",
            ));
            return (findings, None);
        }
    };
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 || mode & 0o022 != 0 {
        findings.push(Finding::fail(
            CHECK,
            format!(
                "{shown} is owned by uid {} with mode {mode:04o}: someone other than root could \
                 change who becomes root",
                meta.uid()
            ),
            format!("chown root:root {shown} && chmod 600 {shown}"),
        ));
    } else if mode & 0o044 != 0 {
        findings.push(Finding::warn(
            CHECK,
            format!("{shown} is mode {mode:04o}: readable by others (the package ships it 0600)"),
            format!("chmod 600 {shown}"),
        ));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            findings.push(Finding::fail(
                CHECK,
                format!("cannot read {shown}: {}", escape(&e.to_string())),
                "make it readable by root",
            ));
            return (findings, None);
        }
    };
    let summary = summarize_config(path, &text);
    match find_pimd() {
        None => findings.push(Finding::skip(
            CHECK,
            format!("pimd is not installed here, so {shown} was not validated"),
        )),
        Some(pimd) => findings.push(judge_check_config(&pimd, path)),
    }
    match summary {
        Ok(s) => (findings, Some(s)),
        Err(e) => {
            if !findings.iter().any(|f| f.status == Status::Fail) {
                findings.push(Finding::fail(
                    CHECK,
                    format!("{shown} is not valid TOML: {}", escape(&e)),
                    format!("fix it: pimd --check-config --config {shown}"),
                ));
            }
            (findings, None)
        }
    }
}

fn judge_check_config(pimd: &Path, path: &Path) -> Finding {
    const CHECK: &str = "config";
    let shown = show(path);
    let output = Command::new(pimd)
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return Finding::skip(
                CHECK,
                format!("cannot run {}: {}", show(pimd), escape(&e.to_string())),
            )
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<String> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(escape)
        .collect();
    if !output.status.success() {
        let errors: Vec<String> = problems
            .iter()
            .filter(|l| !l.starts_with("warning:"))
            .cloned()
            .collect();
        return Finding::fail(
            CHECK,
            format!("pimd would not start with {shown}: {}", quoted(&errors)),
            format!(
                "fix what 'pimd --check-config --config {shown}' lists, then systemctl restart pimd"
            ),
        );
    }
    let warnings: Vec<String> = problems
        .iter()
        .filter(|l| l.starts_with("warning:"))
        .map(|l| l.trim_start_matches("warning:").trim().to_string())
        .collect();
    if warnings.is_empty() {
        Finding::pass(CHECK, format!("{shown} is valid"))
    } else {
        Finding::warn(
            CHECK,
            format!("{shown} is valid, with warnings: {}", quoted(&warnings)),
            format!("see 'pimd --check-config --config {shown}'"),
        )
    }
}

/// Places every user can write on a usual host.
const USER_WRITABLE: [&str; 4] = ["/home", "/tmp", "/var/tmp", "/dev/shm"];

/// A mount point as mountinfo writes it: the kernel escapes space, tab, newline and backslash.
fn mount_point_field(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Warns about places a non-root user can write that are on mounts without `nosuid`: a copy
/// of a program made set-group-ID there during a grant works for anyone who runs it. pimd
/// clears such files when the grant ends, but its walks can be outrun (a user with a process
/// outside the group and a descriptor kept open can link a copy back later) and it never
/// walks network, FUSE or ramfs file systems; `nosuid` makes such files useless from the
/// start. `world_writable` says whether a mount point is a directory everyone may write.
pub fn check_nosuid(mountinfo: &str, world_writable: &dyn Fn(&str) -> bool) -> Finding {
    const CHECK: &str = "nosuid";
    // (mount point, nosuid, file system type) of each mount, in mount order.
    let mounts: Vec<(String, bool, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let options = fields.get(5)?;
            Some((
                mount_point_field(fields.get(4)?),
                options.split(',').any(|o| o == "nosuid"),
                right.split(' ').next()?.to_string(),
            ))
        })
        .collect();
    if mounts.is_empty() {
        return Finding::skip(CHECK, "cannot read /proc/self/mountinfo");
    }
    let holding = |path: &str| {
        // The deepest mount point above the path; of several there, the last one mounted.
        mounts
            .iter()
            .filter(|(point, _, _)| {
                point == "/"
                    || path == point
                    || path
                        .strip_prefix(point.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .max_by_key(|(point, _, _)| point.len())
            .cloned()
    };
    let mut places: Vec<String> = USER_WRITABLE
        .iter()
        .filter(|p| Path::new(p).is_dir())
        .map(|p| p.to_string())
        .collect();
    for (point, _, _) in &mounts {
        if !places.contains(point) && world_writable(point) {
            places.push(point.clone());
        }
    }
    let open: Vec<String> = places
        .iter()
        .filter_map(|place| match holding(place) {
            Some((point, false, _)) if &point == place => Some(escape(place)),
            Some((point, false, _)) => Some(format!("{} (on {})", escape(place), escape(&point))),
            _ => None,
        })
        .collect();
    let not_swept: Vec<String> = mounts
        .iter()
        .filter(|(_, nosuid, fs_type)| !nosuid && pim_common::mounts::never_swept(fs_type))
        .map(|(point, _, fs_type)| format!("{} ({})", escape(point), escape(fs_type)))
        .collect();
    if open.is_empty() && not_swept.is_empty() {
        return Finding::pass(
            CHECK,
            format!(
                "places users can write are mounted nosuid: {}",
                list(&places)
            ),
        );
    }
    let mut problems = Vec::new();
    if !open.is_empty() {
        problems.push(format!(
            "users can write in {}, mounted without nosuid: a program a user makes \
             set-group-ID there during a grant keeps the group for whoever runs it until pimd \
             clears the bit at the grant's end, and a user who keeps a process outside the \
             group with the file open can bring one back after pimd's walks",
            open.join(", ")
        ));
    }
    if !not_swept.is_empty() {
        problems.push(format!(
            "{} allow set-ID bits, and pimd never walks such file systems: set-group-ID \
             files there are not swept at a grant's end",
            not_swept.join(", ")
        ));
    }
    Finding::warn(
        CHECK,
        problems.join("; "),
        "mount them with nosuid, the only real closure (their options in /etc/fstab, or a \
         tmpfs /tmp and /var/tmp with nosuid); a place on the root file system needs a mount \
         of its own",
    )
}

/// Up to [`MAX_QUOTED_LINES`] of pimd's lines, in one line.
fn quoted(lines: &[String]) -> String {
    let mut text = lines
        .iter()
        .take(MAX_QUOTED_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if lines.len() > MAX_QUOTED_LINES {
        text.push_str(&format!("; and {} more", lines.len() - MAX_QUOTED_LINES));
    }
    text
}

/// pimd's answer to the last reload, which it leaves at `path` (root's alone). A failed one
/// means pimd runs another configuration than the file says, and, when the file has errors,
/// that pimd would not start again (break-glass must not depend on it: see pam_pim(8)).
fn check_reload(path: &Path, pimd_running: bool) -> Finding {
    const CHECK: &str = "reload";
    if !pimd_running {
        // No configuration is running: the next start reads the file as it is now.
        return Finding::skip(
            CHECK,
            "skipped: pimd is not running (see the daemon check); its next start reads the \
             configuration file as it is",
        );
    }
    let shown = show(path);
    let (text, modified) = match std::fs::read_to_string(path).and_then(|text| {
        let modified = std::fs::metadata(path)?.modified()?;
        Ok((text, modified))
    }) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Finding::pass(
            CHECK,
            "no failed reload: pimd runs the configuration it started or was last reloaded with",
        ),
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("cannot read {shown}: {}", escape(&e.to_string())),
                "make it readable by root, or restart pimd (systemctl restart pimd)",
            )
        }
    };
    let when = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| crate::time::rfc3339(d.as_secs() as i64))
        .unwrap_or_else(|| "-".into());
    match LastReload::parse(&text) {
        Ok(reload) if reload.ok => {
            Finding::pass(CHECK, format!("the last reload ({when}) succeeded"))
        }
        Ok(reload) => Finding::fail(
            CHECK,
            format!(
                "the last reload ({when}) failed, so pimd still runs the configuration it had \
                 before: {}",
                quoted(&reload.messages)
            ),
            "fix what the message says ('pimd --check-config' lists the file's problems), then \
             systemctl reload pimd",
        ),
        Err(e) => Finding::fail(
            CHECK,
            format!("{shown} is not pimd's answer to a reload: {}", escape(&e)),
            "remove it, then systemctl reload pimd",
        ),
    }
}

/// Whether a directory or file is root's alone.
pub fn private_problem(uid: u32, mode: u32, want: u32) -> Option<String> {
    let mode = mode & 0o7777;
    if uid != 0 {
        Some(format!("is owned by uid {uid}, not root"))
    } else if mode & 0o077 != 0 {
        Some(format!("is mode {mode:04o}, not {want:04o}"))
    } else {
        None
    }
}

/// The top directory of `path` that pimd.service keeps read-only, if any.
fn read_only_to_pimd(path: &Path) -> Option<&'static str> {
    READ_ONLY_TO_PIMD
        .into_iter()
        .find(|top| path.starts_with(top))
}

fn check_database(config: &ConfigSummary) -> Finding {
    const CHECK: &str = "database";
    let db = &config.database;
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Finding::fail(
            CHECK,
            format!("database = {} has no directory", show(db)),
            "give an absolute path in [daemon] database",
        );
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(_) => {
            return Finding::pass(
                CHECK,
                format!(
                    "{} does not exist yet; pimd creates it (0700) when it first starts",
                    show(dir)
                ),
            )
        }
    };
    if let Some(problem) = private_problem(meta.uid(), meta.mode(), 0o700) {
        return Finding::fail(
            CHECK,
            format!(
                "{} {problem}: it holds TOTP secrets and the audit log",
                show(dir)
            ),
            format!("chown root:root {0} && chmod 700 {0}", show(dir)),
        );
    }
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(meta) = std::fs::symlink_metadata(&file) {
            if let Some(problem) = private_problem(meta.uid(), meta.mode(), 0o600) {
                return Finding::fail(
                    CHECK,
                    format!("{} {problem}", show(&file)),
                    format!("chown root:root {0} && chmod 600 {0}", show(&file)),
                );
            }
            files.push(file);
        }
    }
    let read_only = read_only_to_pimd(db);
    if let Some(top) = read_only.filter(|_| Path::new("/run/systemd/system").is_dir()) {
        return Finding::warn(
            CHECK,
            format!(
                "the database is under {top}, which pimd.service keeps read-only to pimd{}",
                if top == "/run" {
                    " (all but /run/pim, which goes when pimd stops)"
                } else {
                    ""
                }
            ),
            format!("set [daemon] database to a file in {STATE_DIRECTORY}"),
        );
    }
    if files.is_empty() {
        Finding::pass(
            CHECK,
            format!(
                "{} is root's alone (0700); {} does not exist yet",
                show(dir),
                show(db)
            ),
        )
    } else {
        Finding::pass(
            CHECK,
            format!("{} (0700) and {} are root's alone", show(dir), show(db)),
        )
    }
}

pub fn check_groups(config: &ConfigSummary, exists: &dyn Fn(&str) -> bool) -> Finding {
    const CHECK: &str = "groups";
    if config.roles.is_empty() {
        return Finding::warn(
            CHECK,
            format!(
                "{} defines no roles: nobody can activate anything",
                show(&config.path)
            ),
            "add a [roles.NAME] table (the shipped file has commented examples)",
        );
    }
    let missing: Vec<String> = config
        .roles
        .iter()
        .filter(|(_, (group, _))| !exists(group))
        .map(|(role, (group, _))| format!("{} (role {})", escape(group), escape(role)))
        .collect();
    if missing.is_empty() {
        let groups: BTreeSet<&String> = config.roles.values().map(|(g, _)| g).collect();
        Finding::pass(
            CHECK,
            format!(
                "every role's group exists: {}",
                groups
                    .into_iter()
                    .map(|g| escape(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Finding::fail(
            CHECK,
            format!("missing groups: {}", missing.join(", ")),
            "create each with groupadd NAME, or fix the role's group =",
        )
    }
}

/// Whether the sudo-pam check saw pam_pim.so run in sudo's account stack: a pass for at least
/// one service and nothing worse for any (a skip alone has seen nothing).
fn module_seen_to_run(sudo_findings: &[Finding]) -> bool {
    sudo_findings
        .iter()
        .all(|f| matches!(f.status, Status::Pass | Status::Skip))
        && sudo_findings.iter().any(|f| f.status == Status::Pass)
}

/// The text of /etc/sudoers, of the files sudo reads from /etc/sudoers.d, and of every file
/// an `@include`/`#include` or `@includedir`/`#includedir` brings in, wherever it is; read as
/// root.
fn sudoers_texts() -> Vec<(PathBuf, String)> {
    let mut files = sudoers_files(
        Path::new(SUDOERS),
        &|path| std::fs::read_to_string(path).ok(),
        &included_dir,
    );
    for path in included_dir(Path::new(SUDOERS_DIR)) {
        if !files.iter().any(|(seen, _)| *seen == path) {
            files.extend(sudoers_files(
                &path,
                &|path| std::fs::read_to_string(path).ok(),
                &included_dir,
            ));
        }
    }
    files
}

/// The files of `dir` that sudo reads for `@includedir`, in its order: it skips names that
/// contain a dot or end in ~.
fn included_dir(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.contains('.') && !name.ends_with('~')
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// `first` and the files its include directives bring in, depth first as sudo reads them,
/// each once. A relative path is relative to the including file's directory.
pub fn sudoers_files(
    first: &Path,
    read: &dyn Fn(&Path) -> Option<String>,
    list_dir: &dyn Fn(&Path) -> Vec<PathBuf>,
) -> Vec<(PathBuf, String)> {
    fn visit(
        path: &Path,
        depth: usize,
        read: &dyn Fn(&Path) -> Option<String>,
        list_dir: &dyn Fn(&Path) -> Vec<PathBuf>,
        out: &mut Vec<(PathBuf, String)>,
    ) {
        if depth > MAX_SUDOERS_DEPTH || out.iter().any(|(seen, _)| seen == path) {
            return;
        }
        let Some(text) = read(path) else { return };
        out.push((path.to_path_buf(), text.clone()));
        let base = path.parent().unwrap_or(Path::new("/"));
        for (directive, target) in sudoers_includes(&text) {
            let target = base.join(target);
            if directive == "includedir" {
                for file in list_dir(&target) {
                    visit(&file, depth + 1, read, list_dir, out);
                }
            } else {
                visit(&target, depth + 1, read, list_dir, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(first, 0, read, list_dir, &mut out);
    out
}

/// The include directives of sudoers text: (`include` or `includedir`, path), from
/// `@include`, `#include`, `@includedir` and `#includedir` lines (a path may be quoted).
pub fn sudoers_includes(text: &str) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix('@').or_else(|| line.strip_prefix('#')) else {
            continue;
        };
        let (directive, path) = if let Some(path) = rest.strip_prefix("includedir") {
            ("includedir", path)
        } else if let Some(path) = rest.strip_prefix("include") {
            ("include", path)
        } else {
            continue;
        };
        if !path.starts_with(char::is_whitespace) {
            continue;
        }
        let path = path.trim();
        let path = path
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .unwrap_or(path);
        if !path.is_empty() {
            found.push((directive, path.to_string()));
        }
    }
    found
}

/// The sources other than files that nsswitch.conf's `sudoers:` line names (sss, ldap, ...):
/// rules doctor cannot read.
pub fn sudoers_sources_elsewhere(nsswitch: &str) -> Vec<String> {
    nsswitch
        .lines()
        .filter_map(|line| line.split('#').next()?.trim().strip_prefix("sudoers:"))
        .flat_map(|sources| sources.split_whitespace())
        .filter(|source| *source != "files" && !source.starts_with('['))
        .map(str::to_string)
        .collect()
}

/// Groups named in sudoers (`%name`).
fn sudoers_groups(sudoers: &[(PathBuf, String)]) -> BTreeSet<String> {
    sudoers
        .iter()
        .flat_map(|(_, text)| sudoers_group_names(text))
        .collect()
}

/// The code of a sudoers line: up to a `#` that starts a comment (`#1000`, a uid, does not).
fn sudoers_code(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return &line[..i];
        }
    }
    line
}

/// The options of the `Defaults` lines of sudoers text (`Defaults`, `Defaults:user`,
/// `Defaults>runas`, ...), each with its line number, as written (`!pam_acct_mgmt`,
/// `targetpw`, `env_keep+=...`). Comments are skipped, continued lines joined. A binding may
/// be a uid (`Defaults:#1000`) and, as sudo takes it, a list with blanks (`Defaults: alice`,
/// `Defaults:alice, bob`).
pub fn sudoers_defaults(text: &str) -> Vec<(usize, String)> {
    let mut options = Vec::new();
    let mut logical = String::new();
    let mut first = 0;
    for (index, line) in text.lines().enumerate() {
        if logical.is_empty() {
            first = index + 1;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            None => logical.push_str(line),
        }
        let code = std::mem::take(&mut logical);
        let Some(rest) = sudoers_code(&code).trim_start().strip_prefix("Defaults") else {
            continue;
        };
        let settings = if rest.starts_with([':', '@', '>', '!']) {
            after_binding(&rest[1..])
        } else if rest.starts_with(char::is_whitespace) {
            rest
        } else {
            continue;
        };
        for option in settings.split(',') {
            let option = option.trim();
            if !option.is_empty() {
                options.push((first, option.to_string()));
            }
        }
    }
    options
}

/// What follows a Defaults binding list (`alice`, `alice, bob`, ` #1000`, `"x y"`): items
/// separated by commas, blanks allowed around them.
fn after_binding(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        // One item: a quoted string, or up to a blank or a comma.
        let end = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.find('"').map_or(rest.len(), |at| at + 2)
        } else {
            rest.find(|c: char| c.is_whitespace() || c == ',')
                .unwrap_or(rest.len())
        };
        let after = rest[end..].trim_start();
        match after.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None => return after,
        }
    }
}

/// sudoers Defaults that decide whom the module sees or whether it runs at all. `module_runs`:
/// the sudo-pam check found pam_pim.so in sudo's account stack. `elsewhere`: sources of
/// sudoers rules other than files (nsswitch.conf), which doctor cannot read.
pub fn check_sudoers_defaults(
    sudoers: &[(PathBuf, String)],
    module_runs: bool,
    elsewhere: &[String],
) -> Finding {
    const CHECK: &str = "sudoers";
    let mut target_options = Vec::new();
    for (path, text) in sudoers {
        for (line, option) in sudoers_defaults(text) {
            let place = format!("{}:{line}", show(path));
            let name = option.replace(char::is_whitespace, "");
            if name == "!pam_acct_mgmt" {
                return Finding::fail(
                    CHECK,
                    format!(
                        "{place} sets Defaults !pam_acct_mgmt: sudo skips the PAM account phase, \
                         so {MODULE} never runs and a shell that kept a managed group after its \
                         grant ended keeps sudo"
                    ),
                    format!("remove !pam_acct_mgmt from {place}"),
                );
            }
            if ["targetpw", "rootpw", "runaspw"].contains(&name.as_str()) {
                target_options.push(format!("{name} ({place})"));
            }
        }
    }
    let unseen = (!elsewhere.is_empty()).then(|| {
        Finding::warn(
            CHECK,
            format!(
                "nsswitch.conf takes sudoers rules from {} too, which doctor cannot read: a \
                 Defaults !pam_acct_mgmt there would make sudo skip {MODULE}",
                list(elsewhere)
            ),
            format!(
                "check the sudoers rules in {} for !pam_acct_mgmt (and targetpw, rootpw, runaspw)",
                list(elsewhere)
            ),
        )
    });
    if target_options.is_empty() {
        return unseen.unwrap_or_else(|| {
            Finding::pass(
                CHECK,
                "sudoers lets sudo run the PAM account phase and sets none of targetpw, rootpw, runaspw",
            )
        });
    }
    let options = target_options.join(", ");
    if module_runs {
        if let Some(unseen) = unseen {
            return unseen;
        }
        Finding::pass(
            CHECK,
            format!(
                "sudoers sets {options}: PAM_USER is then the target account, but {MODULE} judges \
                 the invoking user (sudo's real uid), so the check is unaffected"
            ),
        )
    } else {
        Finding::fail(
            CHECK,
            format!(
                "sudoers sets {options}, which make PAM_USER the target (root), and {MODULE} is \
                 not seen to run in sudo's account stack to judge the invoking user instead"
            ),
            "put pam_pim.so in sudo's account stack (see sudo-pam), or drop those Defaults",
        )
    }
}

/// The `%group` names in sudoers text (comments skipped; `#123` uids are not comments).
pub fn sudoers_group_names(text: &str) -> BTreeSet<String> {
    let mut groups = BTreeSet::new();
    for line in text.lines() {
        let mut rest = sudoers_code(line);
        while let Some(at) = rest.find('%') {
            let after = &rest[at + 1..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                .collect();
            if !name.is_empty() {
                groups.insert(name.clone());
            }
            rest = &after[name.len()..];
        }
    }
    groups
}

pub fn check_pam_groups(
    config: &ConfigSummary,
    gated: &[String],
    sudoers: &BTreeSet<String>,
) -> Vec<Finding> {
    const CHECK: &str = "pam-groups";
    let role_groups: BTreeSet<&String> = config.roles.values().map(|(g, _)| g).collect();
    let mut findings = Vec::new();
    if gated.is_empty() {
        findings.push(Finding::skip(
            CHECK,
            format!("{MODULE} is not in sudo's stack (see sudo-pam)"),
        ));
        return findings;
    }
    let orphans: Vec<String> = gated
        .iter()
        .filter(|g| !role_groups.contains(g))
        .cloned()
        .collect();
    if !orphans.is_empty() {
        findings.push(Finding::fail(
            CHECK,
            format!(
                "{MODULE} gates {} for sudo but no role grants it: every member is refused sudo \
                 (no grant is possible)",
                list(&orphans)
            ),
            format!(
                "add a role with group = \"{}\" to {} (list standing members in its \
                 permanent), or take the group off the module's groups=",
                escape(&orphans[0]),
                show(&config.path)
            ),
        ));
    }
    let escaping: Vec<String> = role_groups
        .iter()
        .filter(|g| sudoers.contains(g.as_str()) && !gated.contains(g))
        .map(|g| g.to_string())
        .collect();
    if !escaping.is_empty() {
        findings.push(Finding::fail(
            CHECK,
            format!(
                "sudoers gives rights to {} through a role, but {MODULE} does not gate it: \
                 shells opened during a grant keep sudo after it ends",
                escaping
                    .iter()
                    .map(|g| format!("%{}", escape(g)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "add {} to groups= on the {MODULE} line (with pam-auth-update: disable the pim \
                 profile and install your own profile with that line, see pam-auth-update(8))",
                list(&escaping)
            ),
        ));
    }
    if findings.is_empty() {
        findings.push(Finding::pass(
            CHECK,
            format!("every group {MODULE} gates has a role: {}", list(gated)),
        ));
    }
    findings
}

/// Members of gated groups who would be refused sudo: neither a live grant nor `permanent`.
pub fn standing_members(
    config: &ConfigSummary,
    gated: &[String],
    members_of: &dyn Fn(&str) -> Vec<String>,
    granted: &BTreeSet<(String, String)>,
) -> BTreeMap<String, Vec<String>> {
    let mut standing = BTreeMap::new();
    for group in gated {
        let mut permanent = BTreeSet::new();
        for (g, principals) in config.roles.values() {
            if g != group {
                continue;
            }
            for p in principals {
                match p.strip_prefix('%') {
                    Some(unix_group) => permanent.extend(members_of(unix_group)),
                    None => {
                        permanent.insert(p.clone());
                    }
                }
            }
        }
        let left: Vec<String> = members_of(group)
            .into_iter()
            .filter(|m| !permanent.contains(m) && !granted.contains(&(m.clone(), group.clone())))
            .collect();
        if !left.is_empty() {
            standing.insert(group.clone(), left);
        }
    }
    standing
}

async fn check_members(
    config: &ConfigSummary,
    gated: &[String],
    connection: Option<&zbus::Connection>,
) -> Finding {
    const CHECK: &str = "members";
    if gated.is_empty() {
        return Finding::skip(
            CHECK,
            format!("{MODULE} is not in sudo's stack (see sudo-pam)"),
        );
    }
    let Some(connection) = connection else {
        return Finding::skip(CHECK, "the daemon is not reachable (see daemon)");
    };
    let grants = async {
        let proxy = ManagerProxy::new(connection).await?;
        proxy.admin_grants().await.map_err(|e| match e {
            pim_common::PimError::ZBus(z) => z,
            other => zbus::Error::Failure(other.message().to_string()),
        })
    };
    let grants = match tokio::time::timeout(BUS_TIMEOUT, grants).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            return Finding::skip(
                CHECK,
                format!("cannot list the live grants: {}", escape(&e.to_string())),
            )
        }
        Err(_) => return Finding::skip(CHECK, "pimd did not list the live grants within 10 s"),
    };
    let granted: BTreeSet<(String, String)> =
        grants.into_iter().map(|g| (g.user, g.group)).collect();
    let members_of = |group: &str| match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => g.mem,
        _ => Vec::new(),
    };
    let standing = standing_members(config, gated, &members_of, &granted);
    if standing.is_empty() {
        return Finding::pass(
            CHECK,
            format!(
                "every member of {} has a live grant or is permanent",
                list(gated)
            ),
        );
    }
    let described: Vec<String> = standing
        .iter()
        .map(|(group, users)| format!("{}: {}", escape(group), list(users)))
        .collect();
    Finding::warn(
        CHECK,
        format!(
            "members with neither a live grant nor a permanent listing, whom {MODULE} refuses \
             sudo: {}",
            described.join("; ")
        ),
        "list standing members in the role's permanent; take the others out (gpasswd -d \
         USER GROUP) and make them eligible instead; break-glass accounts belong outside the \
         group, with a sudoers rule of their own (pam_pim(8))",
    )
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn files(entries: &[(&str, &str)]) -> HashMap<PathBuf, String> {
        entries
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    fn stack(fs: &HashMap<PathBuf, String>, service: &str) -> Result<Vec<PamLine>, String> {
        pam_stack(Path::new("/etc/pam.d"), service, "account", &|p: &Path| {
            fs.get(p).cloned()
        })
    }

    const DEBIAN_COMMON_ACCOUNT: &str = "\
# here are the per-package modules (the \"Primary\" block)
account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so
account\trequisite\t\t\tpam_deny.so
account\trequired\t\t\tpam_permit.so
# and here are more per-package modules (the \"Additional\" block)
account\trequisite\tpam_pim.so groups=sudo services=sudo,sudo-i
# end of pam-auth-update config
";

    const DEBIAN_SUDO: &str = "#%PAM-1.0\n\nsession    required   pam_limits.so\n\n\
        @include common-auth\n@include common-account\n@include common-session-noninteractive\n";

    #[test]
    fn given_the_units_read_only_places_then_a_database_there_is_found_and_elsewhere_not() {
        let unit = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/pimd.service"),
        )
        .unwrap();
        for line in ["ProtectSystem=true", "ReadOnlyPaths=/run"] {
            assert!(
                unit.lines().any(|l| l == line),
                "the unit no longer has {line}: change READ_ONLY_TO_PIMD too"
            );
        }
        assert_eq!(
            read_only_to_pimd(Path::new("/usr/local/pim/pim.db")),
            Some("/usr")
        );
        assert_eq!(
            read_only_to_pimd(Path::new("/run/pim/pim.db")),
            Some("/run")
        );
        for writable in ["/var/lib/pim/pim.db", "/srv/pim/pim.db", "/usrdata/pim.db"] {
            assert_eq!(read_only_to_pimd(Path::new(writable)), None, "{writable}");
        }
    }

    #[test]
    fn given_debian_sudo_then_the_include_is_followed_to_the_module() {
        let fs = files(&[
            ("/etc/pam.d/sudo", DEBIAN_SUDO),
            ("/etc/pam.d/common-account", DEBIAN_COMMON_ACCOUNT),
            ("/etc/pam.d/common-auth", "auth required pam_unix.so\n"),
        ]);
        let lines = stack(&fs, "sudo").unwrap();
        let modules: Vec<&str> = lines.iter().map(|l| l.module.as_str()).collect();
        assert_eq!(
            modules,
            ["pam_unix.so", "pam_deny.so", "pam_permit.so", "pam_pim.so"]
        );
        let pim = &lines[3];
        assert_eq!(pim.file, PathBuf::from("/etc/pam.d/common-account"));
        assert_eq!(pim.line, 6);
        assert_eq!(pim.control, "requisite");
        assert_eq!(pim.list_arg("groups"), Some(vec!["sudo".to_string()]));
        assert_eq!(
            lines[0].control,
            "[success=1 new_authtok_reqd=done default=ignore]"
        );
    }

    #[test]
    fn given_fedora_style_include_and_substack_then_followed() {
        let fs = files(&[
            (
                "/etc/pam.d/sudo",
                "auth include system-auth\naccount include system-auth\n\
                 -account substack extra\n",
            ),
            (
                "/etc/pam.d/system-auth",
                "auth required pam_env.so\naccount required pam_unix.so\n",
            ),
            (
                "/etc/pam.d/extra",
                "account required /usr/lib64/security/pam_pim.so groups=wheel\n",
            ),
        ]);
        let lines = stack(&fs, "sudo").unwrap();
        let modules: Vec<&str> = lines.iter().map(|l| l.module.as_str()).collect();
        assert_eq!(modules, ["pam_unix.so", "/usr/lib64/security/pam_pim.so"]);
        assert!(lines[1].is_pim());
    }

    #[test]
    fn given_an_include_loop_or_a_missing_file_then_no_hang_and_no_error() {
        let fs = files(&[
            ("/etc/pam.d/sudo", "@include a\n@include missing\n"),
            (
                "/etc/pam.d/a",
                "@include sudo\naccount required pam_permit.so\n",
            ),
        ]);
        let lines = stack(&fs, "sudo").unwrap();
        assert!(!lines.is_empty());
        assert!(stack(&fs, "sudo-i").is_err());
    }

    #[test]
    fn given_comments_continuations_and_brackets_then_words_are_right() {
        let text = "account [success=ok \\\n default=die] pam_pim.so groups=sudo # comment\n\
                    # account required pam_pim.so\n";
        let fs = files(&[("/etc/pam.d/sudo", text)]);
        let lines = stack(&fs, "sudo").unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].control, "[success=ok   default=die]");
        assert_eq!(lines[0].args, ["groups=sudo"]);
        assert_eq!(lines[0].line, 1);
        assert_eq!(
            pam_words("a [b c] d"),
            vec!["a".to_string(), "[b c]".into(), "d".into()]
        );
    }

    #[test]
    fn control_actions_follow_linux_pam() {
        assert_eq!(control_action("required", "perm_denied"), "bad");
        assert_eq!(control_action("required", "ignore"), "ignore");
        assert_eq!(control_action("requisite", "perm_denied"), "die");
        assert_eq!(control_action("optional", "perm_denied"), "ignore");
        assert_eq!(control_action("sufficient", "success"), "done");
        assert_eq!(
            control_action("[success=ok default=die]", "perm_denied"),
            "die"
        );
        assert_eq!(control_action("[success=ok default=die]", "ignore"), "die");
        assert_eq!(
            control_action("[default=die ignore=ignore]", "ignore"),
            "ignore"
        );
        assert_eq!(control_action("[success=ok]", "perm_denied"), "bad");
    }

    fn line(control: &str, module: &str, args: &[&str]) -> PamLine {
        PamLine {
            file: PathBuf::from("/etc/pam.d/common-account"),
            line: 1,
            control: control.into(),
            module: module.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn module_dir() -> (tempdir::Dir, Vec<PathBuf>) {
        let dir = tempdir::Dir::new();
        std::fs::write(dir.path.join("pam_pim.so"), b"").unwrap();
        let dirs = vec![dir.path.clone()];
        (dir, dirs)
    }

    #[test]
    fn given_the_shipped_profile_line_then_both_services_pass() {
        let (_dir, dirs) = module_dir();
        let lines = [
            line("required", "pam_permit.so", &[]),
            line(
                "requisite",
                "pam_pim.so",
                &["groups=sudo", "services=sudo,sudo-i"],
            ),
        ];
        for service in ["sudo", "sudo-i"] {
            let (finding, groups) = judge_stack(service, &lines, &dirs, &every_group);
            assert_eq!(finding.status, Status::Pass, "{finding:?}");
            assert_eq!(groups, ["sudo"]);
        }
    }

    #[test]
    fn given_broken_lines_then_each_fails_with_a_fix() {
        let (_dir, dirs) = module_dir();
        let cases: Vec<(Vec<PamLine>, &str)> = vec![
            (
                vec![line("required", "pam_unix.so", &[])],
                "no account line",
            ),
            (
                vec![line("optional", "pam_pim.so", &["groups=sudo"])],
                "does not stop sudo",
            ),
            (
                vec![line(
                    "[success=ok default=die]",
                    "pam_pim.so",
                    &["groups=sudo"],
                )],
                "refused sudo too",
            ),
            (
                vec![line(
                    "required",
                    "pam_pim.so",
                    &["groups=sudo", "services=sudo"],
                )],
                "leaves out sudo-i",
            ),
            (vec![line("required", "pam_pim.so", &[])], "no groups="),
            (
                vec![line(
                    "required",
                    "/nonexistent/pam_pim.so",
                    &["groups=sudo"],
                )],
                "does not exist",
            ),
        ];
        for (lines, expected) in cases {
            let (finding, _) = judge_stack("sudo-i", &lines, &dirs, &every_group);
            assert_eq!(finding.status, Status::Fail, "{finding:?}");
            assert!(finding.message.contains(expected), "{finding:?}");
            assert!(finding.fix.is_some());
        }
        let (finding, _) = judge_stack(
            "sudo",
            &[line("required", "pam_pim.so", &["groups=sudo"])],
            &[],
            &every_group,
        );
        assert_eq!(finding.status, Status::Fail);
        assert!(finding.message.contains("finds no"), "{finding:?}");
    }

    /// Every group exists.
    fn every_group(_: &str) -> bool {
        true
    }

    #[test]
    fn given_groups_naming_no_existing_group_then_fail_and_a_partial_typo_warns() {
        let (_dir, dirs) = module_dir();
        let exists = |g: &str| ["sudo", "docker"].contains(&g);
        let typo = [line("required", "pam_pim.so", &["groups=sduo"])];
        let (finding, groups) = judge_stack("sudo", &typo, &dirs, &exists);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
        assert!(
            finding.message.contains("none of groups=sduo exists")
                && finding.message.contains("refuses everybody but root"),
            "{finding:?}"
        );
        assert!(groups.is_empty());
        let partial = [line("required", "pam_pim.so", &["groups=docker,sduo"])];
        let (finding, groups) = judge_stack("sudo", &partial, &dirs, &exists);
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        assert!(finding.message.contains("sduo"), "{finding:?}");
        assert_eq!(groups, ["docker"]);
    }

    #[test]
    fn sudoers_defaults_are_read_with_their_lines() {
        let text = "# Defaults !pam_acct_mgmt\nDefaults env_reset, !pam_acct_mgmt\n\
                    Defaults:alice targetpw # why\nDefaults>root \\\n  rootpw,runaspw\n\
                    alice ALL=(ALL) ALL\nDefaultsx foo\n";
        assert_eq!(
            sudoers_defaults(text),
            [
                (2, "env_reset".to_string()),
                (2, "!pam_acct_mgmt".to_string()),
                (3, "targetpw".to_string()),
                (4, "rootpw".to_string()),
                (4, "runaspw".to_string()),
            ]
        );
    }

    #[test]
    fn given_defaults_bound_to_a_uid_or_to_a_list_with_blanks_then_their_options_are_read() {
        let text = "Defaults:#1000 !pam_acct_mgmt\nDefaults>#0 targetpw\n\
                    Defaults: alice !pam_acct_mgmt\nDefaults:alice, bob rootpw\n\
                    Defaults:alice,bob ,  carol runaspw, env_reset # why\n\
                    Defaults@\"host one\" !pam_acct_mgmt\n";
        assert_eq!(
            sudoers_defaults(text),
            [
                (1, "!pam_acct_mgmt".to_string()),
                (2, "targetpw".to_string()),
                (3, "!pam_acct_mgmt".to_string()),
                (4, "rootpw".to_string()),
                (5, "runaspw".to_string()),
                (5, "env_reset".to_string()),
                (6, "!pam_acct_mgmt".to_string()),
            ]
        );
        let file = vec![(
            PathBuf::from("/etc/sudoers"),
            "Defaults:#1000 !pam_acct_mgmt\n".to_string(),
        )];
        let skipped = check_sudoers_defaults(&file, true, &[]);
        assert_eq!(skipped.status, Status::Fail, "{skipped:?}");
    }

    #[test]
    fn given_include_directives_then_the_files_they_name_are_read_wherever_they_are() {
        let fs = files(&[
            (
                "/etc/sudoers",
                "@include /opt/site/sudoers\n#include local\n@includedir /srv/rules\n\
                 #includedir /etc/sudoers.d\n@include /etc/sudoers\n",
            ),
            ("/opt/site/sudoers", "Defaults !pam_acct_mgmt\n"),
            ("/etc/local", "Defaults targetpw\n"),
            ("/srv/rules/a", "Defaults rootpw\n"),
            ("/etc/sudoers.d/b", "@include \"/opt/site/quoted file\"\n"),
            ("/opt/site/quoted file", "Defaults runaspw\n"),
        ]);
        let read = |path: &Path| fs.get(path).cloned();
        let list_dir = |dir: &Path| {
            let mut found: Vec<PathBuf> = fs
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .cloned()
                .collect();
            found.sort();
            found
        };
        let read_files: Vec<PathBuf> = sudoers_files(Path::new("/etc/sudoers"), &read, &list_dir)
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(
            read_files,
            [
                "/etc/sudoers",
                "/opt/site/sudoers",
                "/etc/local",
                "/srv/rules/a",
                "/etc/sudoers.d/b",
                "/opt/site/quoted file",
            ]
            .map(PathBuf::from)
        );
        let sudoers = sudoers_files(Path::new("/etc/sudoers"), &read, &list_dir);
        let finding = check_sudoers_defaults(&sudoers, true, &[]);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
        assert!(
            finding.message.contains("/opt/site/sudoers:1"),
            "{finding:?}"
        );
    }

    #[test]
    fn given_sudoers_rules_from_sssd_or_ldap_then_a_warning_says_doctor_cannot_see_them() {
        let nsswitch =
            "passwd: files sss\n# sudoers: ldap\nsudoers:  files sss [NOTFOUND=return] ldap\n";
        assert_eq!(sudoers_sources_elsewhere(nsswitch), ["sss", "ldap"]);
        assert!(sudoers_sources_elsewhere("sudoers: files\n").is_empty());
        assert!(sudoers_sources_elsewhere("passwd: files\n").is_empty());
        let file = |text: &str| vec![(PathBuf::from("/etc/sudoers"), text.to_string())];
        let elsewhere = ["sss".to_string()];
        for text in ["Defaults env_reset\n", "Defaults targetpw\n"] {
            let finding = check_sudoers_defaults(&file(text), true, &elsewhere);
            assert_eq!(finding.status, Status::Warn, "{finding:?}");
            assert!(finding.message.contains("sss"), "{finding:?}");
        }
        // What doctor can read still fails first.
        let finding = check_sudoers_defaults(&file("Defaults !pam_acct_mgmt\n"), true, &elsewhere);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
    }

    #[test]
    fn given_only_skipped_sudo_stacks_then_the_module_is_not_seen_to_run() {
        let skip = Finding::skip("sudo-pam", "no /etc/pam.d/sudo-i");
        let pass = Finding::pass("sudo-pam", "sudo runs pam_pim.so");
        let fail = Finding::fail("sudo-pam", "no", "fix");
        assert!(!module_seen_to_run(&[]));
        assert!(!module_seen_to_run(&[skip.clone(), skip.clone()]));
        assert!(module_seen_to_run(&[pass.clone(), skip.clone()]));
        assert!(!module_seen_to_run(&[pass, fail]));
        // So targetpw is not passed on the strength of skips alone.
        let file = vec![(
            PathBuf::from("/etc/sudoers"),
            "Defaults targetpw\n".to_string(),
        )];
        let finding = check_sudoers_defaults(&file, module_seen_to_run(&[skip]), &[]);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
    }

    #[test]
    fn given_sudoers_that_skip_or_retarget_the_account_check_then_doctor_judges_them() {
        let file = |text: &str| vec![(PathBuf::from("/etc/sudoers.d/site"), text.to_string())];
        let skipped = check_sudoers_defaults(&file("Defaults !pam_acct_mgmt\n"), true, &[]);
        assert_eq!(skipped.status, Status::Fail, "{skipped:?}");
        assert!(
            skipped.message.contains("/etc/sudoers.d/site:1"),
            "{skipped:?}"
        );
        let negated_twice = check_sudoers_defaults(&file("Defaults ! pam_acct_mgmt\n"), true, &[]);
        assert_eq!(negated_twice.status, Status::Fail, "{negated_twice:?}");
        for option in ["targetpw", "rootpw", "runaspw"] {
            let text = format!("Defaults {option}\n");
            let unseen = check_sudoers_defaults(&file(&text), false, &[]);
            assert_eq!(unseen.status, Status::Fail, "{unseen:?}");
            assert!(unseen.message.contains(option), "{unseen:?}");
            let seen = check_sudoers_defaults(&file(&text), true, &[]);
            assert_eq!(seen.status, Status::Pass, "{seen:?}");
            assert!(seen.message.contains("invoking user"), "{seen:?}");
        }
        let plain =
            check_sudoers_defaults(&file("Defaults !targetpw, pam_acct_mgmt\n"), false, &[]);
        assert_eq!(plain.status, Status::Pass, "{plain:?}");
    }

    #[test]
    fn given_a_sufficient_line_before_the_module_then_a_warning() {
        let (_dir, dirs) = module_dir();
        let lines = [
            line("sufficient", "pam_succeed_if.so", &["uid", "<", "1000"]),
            line("required", "pam_pim.so", &["groups=sudo"]),
        ];
        let (finding, groups) = judge_stack("sudo", &lines, &dirs, &every_group);
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        assert_eq!(groups, ["sudo"]);
    }

    #[test]
    fn sudo_conf_group_source_is_read_like_sudo() {
        assert_eq!(group_source(""), GroupSource::Static);
        assert_eq!(
            group_source("#Set group_source dynamic\n"),
            GroupSource::Static
        );
        assert_eq!(
            group_source("Set group_source dynamic\n"),
            GroupSource::Dynamic
        );
        assert_eq!(
            group_source("Set group_source dynamic\nSet  group_source\tadaptive # later\n"),
            GroupSource::Adaptive
        );
        assert_eq!(
            check_group_source(Some("Set group_source dynamic")).status,
            Status::Pass
        );
        let static_finding = check_group_source(Some("Set disable_coredump false\n"));
        assert_eq!(static_finding.status, Status::Warn);
        assert!(static_finding.message.contains("new login"));
        assert!(static_finding
            .fix
            .unwrap()
            .contains("Set group_source dynamic"));
        assert_eq!(check_group_source(None).status, Status::Warn);
    }

    #[test]
    fn config_summary_takes_database_groups_and_permanent() {
        let text = r#"
[daemon]
database = "/srv/pim/pim.db"
[roles.admin]
group = "sudo"
permanent = ["root2", "%breakglass"]
[roles.docker]
"#;
        let s = summarize_config(Path::new("/etc/pim/pim.toml"), text).unwrap();
        assert_eq!(s.database, PathBuf::from("/srv/pim/pim.db"));
        assert_eq!(
            s.roles["admin"],
            (
                "sudo".to_string(),
                vec!["root2".to_string(), "%breakglass".into()]
            )
        );
        assert_eq!(s.roles["docker"], ("docker".to_string(), vec![]));
        let empty = summarize_config(Path::new("/x"), "# nothing\n").unwrap();
        assert_eq!(empty.database, PathBuf::from(DEFAULT_DATABASE));
        assert!(empty.roles.is_empty());
        assert!(summarize_config(Path::new("/x"), "[roles\n").is_err());
    }

    fn summary(roles: &[(&str, &str, &[&str])]) -> ConfigSummary {
        ConfigSummary {
            path: PathBuf::from("/etc/pim/pim.toml"),
            database: PathBuf::from(DEFAULT_DATABASE),
            roles: roles
                .iter()
                .map(|(r, g, p)| {
                    (
                        r.to_string(),
                        (g.to_string(), p.iter().map(|s| s.to_string()).collect()),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn missing_groups_fail_and_no_roles_warns() {
        let config = summary(&[("admin", "sudo", &[]), ("db", "dbadmin", &[])]);
        let f = check_groups(&config, &|g| g == "sudo");
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("dbadmin (role db)"), "{f:?}");
        assert_eq!(check_groups(&config, &|_| true).status, Status::Pass);
        assert_eq!(check_groups(&summary(&[]), &|_| true).status, Status::Warn);
    }

    #[test]
    fn gated_groups_must_have_roles_and_sudoers_groups_must_be_gated() {
        let config = summary(&[("admin", "sudo", &[]), ("ops", "wheel", &[])]);
        let sudoers: BTreeSet<String> = ["sudo", "wheel"].iter().map(|s| s.to_string()).collect();
        let findings = check_pam_groups(&config, &["sudo".into()], &sudoers);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].status, Status::Fail);
        assert!(findings[0].message.contains("%wheel"), "{findings:?}");

        let findings = check_pam_groups(&summary(&[]), &["sudo".into()], &sudoers);
        assert_eq!(findings[0].status, Status::Fail);
        assert!(findings[0].message.contains("no role grants it"));

        let findings = check_pam_groups(&config, &["sudo".into(), "wheel".into()], &sudoers);
        assert_eq!(findings[0].status, Status::Pass, "{findings:?}");
    }

    #[test]
    fn sudoers_group_names_skip_comments_but_not_uids() {
        let text = "# %commented ALL=(ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n\
                    #1000 ALL=(ALL) ALL\nUser_Alias A = %wheel, bob # %late\n\
                    Defaults iolog_dir=/var/log/sudo-io/%{user}\n";
        let names: Vec<String> = sudoers_group_names(text).into_iter().collect();
        assert_eq!(names, ["sudo", "wheel"]);
    }

    #[test]
    fn standing_members_are_those_without_grant_or_permanence() {
        let config = summary(&[("admin", "sudo", &["breakglass", "%oncall"])]);
        let members_of = |g: &str| -> Vec<String> {
            match g {
                "sudo" => vec![
                    "alice".into(),
                    "bob".into(),
                    "breakglass".into(),
                    "carol".into(),
                ],
                "oncall" => vec!["carol".into()],
                _ => vec![],
            }
        };
        let granted: BTreeSet<(String, String)> = [("alice".to_string(), "sudo".to_string())]
            .into_iter()
            .collect();
        let standing = standing_members(&config, &["sudo".into()], &members_of, &granted);
        assert_eq!(standing.len(), 1);
        assert_eq!(standing["sudo"], ["bob"]);
    }

    #[test]
    fn given_user_writable_places_without_nosuid_then_a_warning_names_them() {
        let mountinfo = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:27 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw
31 27 0:28 / /home rw,relatime - tmpfs tmpfs rw
32 27 0:29 / /srv/drop\\040box rw,relatime - tmpfs tmpfs rw
33 27 0:30 / /srv/safe rw,nosuid - tmpfs tmpfs rw
";
        let everyone = |p: &str| p == "/srv/drop box" || p == "/srv/safe";
        let finding = check_nosuid(mountinfo, &everyone);
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        let message = &finding.message;
        assert!(message.contains("/srv/drop box"), "{message}");
        assert!(!message.contains("/srv/safe"), "{message}");
        assert!(!message.contains("/dev/shm"), "{message}");
        if Path::new("/home").is_dir() {
            assert!(
                message.contains("/home,") || message.contains("/home "),
                "{message}"
            );
        }
        if Path::new("/tmp").is_dir() {
            assert!(message.contains("/tmp (on /)"), "{message}");
        }
    }

    #[test]
    fn given_network_or_fuse_mounts_without_nosuid_then_the_warning_says_they_are_not_swept() {
        let mountinfo = "\
27 1 254:0 / / rw,nosuid - ext4 /dev/vda rw
36 27 0:41 / /net rw - nfs4 server:/ rw
37 27 0:42 / /mnt/fs rw - fuse.sshfs alice@host: rw
38 27 0:43 / /mnt/safe rw,nosuid - cifs //server/share rw
";
        let finding = check_nosuid(mountinfo, &|_| false);
        assert_eq!(finding.status, Status::Warn, "{finding:?}");
        let message = &finding.message;
        assert!(
            message.contains("/net (nfs4), /mnt/fs (fuse.sshfs) allow set-ID bits")
                && message.contains("not swept"),
            "{message}"
        );
        assert!(!message.contains("/mnt/safe"), "{message}");
        assert!(
            finding
                .fix
                .as_deref()
                .unwrap_or("")
                .contains("only real closure"),
            "{finding:?}"
        );
    }

    #[test]
    fn given_every_user_writable_place_nosuid_then_the_check_passes() {
        let mountinfo = "27 1 254:0 / / rw,nosuid - ext4 /dev/vda rw\n";
        let finding = check_nosuid(mountinfo, &|_| false);
        assert_eq!(finding.status, Status::Pass, "{finding:?}");
        assert_eq!(check_nosuid("", &|_| false).status, Status::Skip);
    }

    #[test]
    fn private_problems_name_owner_and_mode() {
        assert_eq!(private_problem(0, 0o40700, 0o700), None);
        assert_eq!(private_problem(0, 0o100600, 0o600), None);
        assert!(private_problem(1000, 0o700, 0o700)
            .unwrap()
            .contains("uid 1000"));
        assert!(private_problem(0, 0o755, 0o700).unwrap().contains("0755"));
    }

    #[test]
    fn reports_count_and_escape() {
        let findings = vec![
            Finding::pass("daemon", "fine"),
            Finding::warn("group-source", "static", "add it"),
            Finding::fail("sudo-pam", "missing", "pam-auth-update --enable pim"),
            Finding::skip("config", NEEDS_ROOT),
        ];
        let text = report_text(&findings);
        assert!(text.contains("[FAIL] sudo-pam"), "{text}");
        assert!(text.contains("fix: pam-auth-update --enable pim"), "{text}");
        assert!(text.contains("1 problem(s), 1 warning(s) (1 checks passed, 1 skipped)."));
        let doc = report_json(&findings, false);
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["failed"], 1);
        assert_eq!(doc["checks"][2]["status"], "fail");
        assert_eq!(doc["checks"][0]["fix"], Value::Null);
        let ok = report_text(&[Finding::pass("daemon", "fine")]);
        assert!(ok.ends_with("No problems found (1 checks).\n"), "{ok}");
    }

    #[test]
    fn given_pimd_answers_to_reloads_then_only_a_failed_or_unreadable_one_fails() {
        let dir = tempdir::Dir::new();
        let path = dir.path.join("last-reload");
        let none = check_reload(&path, true);
        assert_eq!(none.status, Status::Pass, "{none:?}");

        let failed = LastReload {
            ok: false,
            received: 1,
            messages: vec![
                "/etc/pim/pim.toml:2: roles.web.max_duration: 48h is over the 24h cap".into(),
            ],
        };
        std::fs::write(&path, failed.to_text()).unwrap();
        let finding = check_reload(&path, true);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
        assert!(
            finding
                .message
                .contains("still runs the configuration it had"),
            "{finding:?}"
        );
        assert!(
            finding
                .message
                .contains("pim.toml:2: roles.web.max_duration"),
            "{finding:?}"
        );
        assert!(finding
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("systemctl reload pimd"));

        let ok = LastReload {
            ok: true,
            received: 2,
            messages: vec![],
        };
        std::fs::write(&path, ok.to_text()).unwrap();
        assert_eq!(check_reload(&path, true).status, Status::Pass);

        std::fs::write(&path, "whatever\n").unwrap();
        let garbage = check_reload(&path, true);
        assert_eq!(garbage.status, Status::Fail, "{garbage:?}");
        assert!(garbage.message.contains("'whatever'"), "{garbage:?}");
    }

    #[test]
    fn given_pimd_not_running_then_the_reload_check_says_so_instead_of_passing() {
        let dir = tempdir::Dir::new();
        // No /run/pim (pimd is down), or an answer left behind by the pimd that ended.
        let none = check_reload(&dir.path.join("pim/last-reload"), false);
        assert_eq!(none.status, Status::Skip, "{none:?}");
        assert!(none.message.contains("pimd is not running"), "{none:?}");
        let path = dir.path.join("last-reload");
        std::fs::write(&path, "ok\nreceived 1\n").unwrap();
        let left = check_reload(&path, false);
        assert_eq!(left.status, Status::Skip, "{left:?}");
        assert!(!left.message.contains("runs the configuration"), "{left:?}");
    }

    /// A scratch directory removed on drop (no extra crate for it).
    mod tempdir {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicU64, Ordering};

        static NEXT: AtomicU64 = AtomicU64::new(0);

        pub struct Dir {
            pub path: PathBuf,
        }

        impl Dir {
            pub fn new() -> Dir {
                let path = std::env::temp_dir().join(format!(
                    "pim-doctor-test-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }
}
