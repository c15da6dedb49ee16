//! sudo's own files: `Set group_source` in /etc/sudo.conf, and the Defaults and `%group`
//! names of every sudoers file sudo reads (includes followed).

use super::findings::Finding;
use super::{list, show, MODULE};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SUDOERS: &str = "/etc/sudoers";
const SUDOERS_DIR: &str = "/etc/sudoers.d";
/// sudo's own bound on nested includes.
const MAX_SUDOERS_DEPTH: usize = 128;

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

/// The text of /etc/sudoers, of the files sudo reads from /etc/sudoers.d, and of every file
/// an `@include`/`#include` or `@includedir`/`#includedir` brings in, wherever it is; read as
/// root.
pub fn sudoers_texts() -> Vec<(PathBuf, String)> {
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
pub fn sudoers_groups(sudoers: &[(PathBuf, String)]) -> BTreeSet<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;
    use crate::doctor::pam::module_seen_to_run;
    use crate::doctor::testing::files;

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
    fn sudoers_group_names_skip_comments_but_not_uids() {
        let text = "# %commented ALL=(ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n\
                    #1000 ALL=(ALL) ALL\nUser_Alias A = %wheel, bob # %late\n\
                    Defaults iolog_dir=/var/log/sudo-io/%{user}\n";
        let names: Vec<String> = sudoers_group_names(text).into_iter().collect();
        assert_eq!(names, ["sudo", "wheel"]);
    }
}
