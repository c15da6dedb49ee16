//! sudo's own files: `Set group_source` in /etc/sudo.conf, and the Defaults of every
//! sudoers file sudo reads (read by the pim-sudoers crate, includes followed).

use super::findings::Finding;
use super::{list, show, MODULE};
use std::path::PathBuf;

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
        for (line, option) in pim_sudoers::defaults(text) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;
    use crate::doctor::pam::module_seen_to_run;
    use crate::doctor::testing::files;
    use std::path::Path;

    #[test]
    fn given_defaults_bound_to_a_uid_then_the_option_still_counts() {
        let file = vec![(
            PathBuf::from("/etc/sudoers"),
            "Defaults:#1000 !pam_acct_mgmt\n".to_string(),
        )];
        let skipped = check_sudoers_defaults(&file, true, &[]);
        assert_eq!(skipped.status, Status::Fail, "{skipped:?}");
    }

    #[test]
    fn given_include_directives_then_the_included_files_are_judged_with_their_place() {
        let fs = files(&[
            ("/etc/sudoers", "@include /opt/site/sudoers\n"),
            ("/opt/site/sudoers", "Defaults !pam_acct_mgmt\n"),
        ]);
        let read = |path: &Path| {
            fs.get(path)
                .cloned()
                .map_or(pim_sudoers::FileRead::Skipped, pim_sudoers::FileRead::Text)
        };
        let sudoers = pim_sudoers::files(Path::new("/etc/sudoers"), &read, &|_| Vec::new()).files;
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
}
