//! The PAM module's place and sudo's account stacks: the files read as Linux-PAM reads them
//! (includes, substacks, continuation lines, `[...]` controls), and the `pam_pim.so` line
//! judged by what the module itself would do with it, through its own argument grammar.

use super::checks::HostAccounts;
use super::findings::{Finding, Status};
use super::{list, show, MODULE};
use pim_common::text::escape;
use pim_config::Directory;
use pim_pam_args::Parsed;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The PAM services the module is meant for (SPEC: `services=sudo,sudo-i`).
const SUDO_SERVICES: [&str; 2] = ["sudo", "sudo-i"];
/// Parents of the PAM module directories of the distributions we know: Debian's multiarch
/// directories below them (`x86_64-linux-gnu/security`), and `security` itself (Fedora's
/// /usr/lib64/security, Arch's /usr/lib/security).
const PAM_LIB_PARENTS: [&str; 4] = ["/usr/lib", "/lib", "/usr/lib64", "/lib64"];

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

/// The module files that the sudo stacks in `dir` name by an absolute path, where they exist.
pub fn absolute_module_paths(dir: &Path) -> Vec<PathBuf> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut paths: Vec<PathBuf> = SUDO_SERVICES
        .iter()
        .filter_map(|service| pam_stack(dir, service, "account", &read).ok())
        .flatten()
        .map(|line| PathBuf::from(line.module))
        .filter(|m| m.is_absolute() && m.file_name().is_some_and(|f| f == MODULE) && m.is_file())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Where pam_pim.so is: in the distribution's module directory, or (as the demo and the test
/// sandbox load it) at an absolute path that a PAM line names, which PAM loads as it is.
pub fn check_pam_module(dirs: &[PathBuf], absolute: &[PathBuf]) -> Finding {
    const CHECK: &str = "pam-module";
    let found: Vec<&PathBuf> = dirs.iter().filter(|d| d.join(MODULE).is_file()).collect();
    let distribution = dirs.iter().find(|d| d.join("pam_unix.so").is_file());
    match (found.first(), distribution) {
        (None, _) if !absolute.is_empty() => Finding::pass(
            CHECK,
            format!(
                "{} (named by its absolute path in sudo's PAM stack)",
                absolute
                    .iter()
                    .map(|p| show(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
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

    /// The module's arguments as the module itself reads them (the grammar is shared).
    fn module_args(&self) -> Parsed {
        pim_pam_args::parse(&self.args)
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
    // Judged exactly as the module reads the line: service names without regard to case, a
    // key given twice or a bad value is an error that makes the module fail closed.
    let Parsed {
        options, errors, ..
    } = line.module_args();
    if !options.acts_for(Some(service)) {
        let services = options.services.unwrap_or_default();
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
    let Some(groups) = options.groups else {
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: no groups= that {MODULE} can use ({}); the module \
                     refuses everybody but root",
                    errors.join("; ")
                ),
                "name the managed groups: groups=sudo (or sudo,wheel, ...)",
            ),
            Vec::new(),
        );
    };
    if !errors.is_empty() {
        // The module still gates these groups: it refuses every holder.
        return (
            Finding::fail(
                CHECK,
                format!(
                    "{service}: {place}: {}; with an error on its line {MODULE} refuses sudo to \
                     everyone who holds {}, grant or not, without asking pimd",
                    errors.join("; "),
                    list(&groups)
                ),
                "correct that argument of the module (its arguments are in pam_pim(8))",
            ),
            groups,
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
pub fn check_sudo_pam(dir: &Path, module_dirs: &[PathBuf]) -> (Vec<Finding>, Vec<String>) {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let exists = |g: &str| HostAccounts.group_exists(g);
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

/// Whether a pam_pim.so line in the account stacks of sudo and sudo-i under `dir` says
/// `fail=open` (as the module itself reads its arguments).
pub fn configured_fail_open(dir: &Path) -> bool {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    SUDO_SERVICES.iter().any(|service| {
        pam_stack(dir, service, "account", &read).is_ok_and(|lines| {
            lines
                .iter()
                .filter(|l| l.is_pim())
                .any(|l| l.module_args().options.fail == pim_pam_args::FailMode::Open)
        })
    })
}

/// Whether the sudo-pam check saw pam_pim.so run in sudo's account stack: a pass for at least
/// one service and nothing worse for any (a skip alone has seen nothing).
pub fn module_seen_to_run(sudo_findings: &[Finding]) -> bool {
    sudo_findings
        .iter()
        .all(|f| matches!(f.status, Status::Pass | Status::Skip))
        && sudo_findings.iter().any(|f| f.status == Status::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testing::{files, Dir};
    use std::collections::HashMap;

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
        assert_eq!(
            pim.module_args().options.groups,
            Some(vec!["sudo".to_string()])
        );
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

    fn module_dir() -> (Dir, Vec<PathBuf>) {
        let dir = Dir::new();
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

    /// The three places where doctor once read the module's line otherwise than the module:
    /// each is now judged through the module's own grammar.
    #[test]
    fn given_groups_given_twice_then_doctor_fails_the_line_as_the_module_refuses_its_holders() {
        let (_dir, dirs) = module_dir();
        let args = ["groups=wheel", "groups=sudo"];
        let parsed = pim_pam_args::parse(&args);
        assert!(!parsed.is_sound(), "{parsed:?}");
        let lines = [line("requisite", "pam_pim.so", &args)];
        let (finding, groups) = judge_stack("sudo", &lines, &dirs, &every_group);
        assert_eq!(finding.status, Status::Fail, "{finding:?}");
        assert!(finding.message.contains("given twice"), "{finding:?}");
        assert!(finding.message.contains("refuses sudo"), "{finding:?}");
        // The module keeps gating the first list it read.
        assert_eq!(groups, parsed.options.groups.unwrap());
    }

    #[test]
    fn given_service_names_in_another_case_then_doctor_passes_them_as_the_module_acts_for_them() {
        let (_dir, dirs) = module_dir();
        let args = ["groups=sudo", "services=SUDO,Sudo-I"];
        let parsed = pim_pam_args::parse(&args);
        assert!(parsed.is_sound(), "{parsed:?}");
        let lines = [line("requisite", "pam_pim.so", &args)];
        for service in ["sudo", "sudo-i"] {
            assert!(parsed.options.acts_for(Some(service)));
            let (finding, groups) = judge_stack(service, &lines, &dirs, &every_group);
            assert_eq!(finding.status, Status::Pass, "{finding:?}");
            assert_eq!(groups, ["sudo"]);
        }
    }

    #[test]
    fn given_a_bad_timeout_then_doctor_fails_the_line_as_the_module_refuses_its_holders() {
        let (_dir, dirs) = module_dir();
        for timeout in ["timeout=soon", "timeout=0s", "timeout=2h", "timeout"] {
            let args = ["groups=sudo", "services=sudo,sudo-i", timeout];
            let parsed = pim_pam_args::parse(&args);
            assert!(!parsed.is_sound(), "{parsed:?}");
            let lines = [line("requisite", "pam_pim.so", &args)];
            let (finding, groups) = judge_stack("sudo", &lines, &dirs, &every_group);
            assert_eq!(finding.status, Status::Fail, "{timeout}: {finding:?}");
            assert!(finding.message.contains(timeout), "{finding:?}");
            assert!(finding.fix.is_some());
            assert_eq!(groups, ["sudo"]);
        }
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
}
