//! Whether the caller's own process carries the group of each of their live grants. `pim`
//! inherits its groups from the shell it runs in, and a process keeps the groups it started
//! with: a shell from before a grant does not carry its group (sudo there says "a password is
//! required"), a fresh login or `newgrp GROUP` does. `pim status` says so; `pim activate
//! --shell` starts such a shell itself, keeping the user's own primary group.

use crate::error::Failure;
use pim_common::text::escape;
use pim_common::types::GrantInfo;
use std::os::unix::process::CommandExt;

/// The gids this process carries: real, effective and supplementary.
pub fn carried() -> Vec<u32> {
    let mut gids: Vec<u32> = nix::unistd::getgroups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    gids.push(nix::unistd::getgid().as_raw());
    gids.push(nix::unistd::getegid().as_raw());
    gids
}

/// The group database's gid of `name`.
pub fn gid_of(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// The groups of `grants` that a process carrying `carried` lacks, each once, in the grants'
/// order. A group the database does not resolve is left out: there is no gid to compare.
pub fn missing(
    grants: &[GrantInfo],
    carried: &[u32],
    gid_of: impl Fn(&str) -> Option<u32>,
) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for grant in grants {
        let lacks = gid_of(&grant.group).is_some_and(|gid| !carried.contains(&gid));
        if lacks && !missing.contains(&grant.group) {
            missing.push(grant.group.clone());
        }
    }
    missing
}

/// The command that starts a shell carrying `group` from the current terminal.
pub fn shell_command(group: &str) -> String {
    format!("newgrp {}", escape(group))
}

/// One line for each group this shell lacks, with the command that gives one which has it.
pub fn missing_text(missing: &[String]) -> String {
    missing
        .iter()
        .map(|group| {
            format!(
                "This shell does not carry group {} (it started before the grant): run '{}' \
                 for a shell that does, or log in again.\n",
                escape(group),
                shell_command(group)
            )
        })
        .collect()
}

/// Replaces this process with a shell that carries `group` on the same terminal; returns only
/// when that cannot start. `newgrp GROUP` alone would make the group the shell's primary one,
/// and files made there would belong to it, and stay so after the grant ends. So `sg` adds it
/// (as primary), then `newgrp` back to the user's own primary group keeps it as supplementary:
/// both keep the groups the process has and add the new one. Absolute paths: no PATH lookup.
pub fn exec_shell(group: &str) -> Failure {
    let Some(own) = own_primary_group() else {
        return Failure::Failed(
            "cannot find your primary group in the user and group databases; log in again to \
             get a shell with the group"
                .into(),
        );
    };
    let err = std::process::Command::new(SG)
        .arg(group)
        .arg("-c")
        .arg(format!("exec {NEWGRP} {}", sh_quoted(&own)))
        .exec();
    Failure::Failed(format!(
        "cannot start a shell with group {} ({SG}): {err}; log in again to get a shell with the \
         group",
        escape(group)
    ))
}

const SG: &str = "/usr/bin/sg";
const NEWGRP: &str = "/usr/bin/newgrp";

/// The name of the caller's primary group, as the user database has it (not this process's
/// gid, which an earlier `newgrp` may have changed).
fn own_primary_group() -> Option<String> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
    let group = nix::unistd::Group::from_gid(user.gid).ok()??;
    Some(group.name)
}

/// `word` as one word for `sh -c`, whatever it holds.
fn sh_quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: &str, group: &str) -> GrantInfo {
        GrantInfo {
            role: role.into(),
            group: group.into(),
            ..GrantInfo::default()
        }
    }

    fn gid(name: &str) -> Option<u32> {
        match name {
            "sudo" => Some(27),
            "docker" => Some(999),
            _ => None,
        }
    }

    #[test]
    fn given_a_shell_from_before_the_grant_then_its_group_is_missing_once() {
        let grants = [
            grant("admin", "sudo"),
            grant("rescue", "sudo"),
            grant("docker", "docker"),
            grant("gone", "nosuchgroup"),
        ];
        assert_eq!(missing(&grants, &[1000, 999], gid), ["sudo"]);
        assert!(missing(&grants, &[27, 999], gid).is_empty());
        assert!(missing(&[], &[], gid).is_empty());
    }

    #[test]
    fn given_missing_groups_then_each_line_names_the_command() {
        let text = missing_text(&["sudo".into(), "docker".into()]);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("This shell does not carry group sudo")
                && text.contains("run 'newgrp sudo' for a shell that does"),
            "{text}"
        );
        assert!(text.contains("'newgrp docker'"), "{text}");
        assert_eq!(missing_text(&[]), "");
    }

    #[test]
    fn given_any_group_name_then_it_is_one_word_for_the_shell() {
        assert_eq!(sh_quoted("alice"), "'alice'");
        assert_eq!(sh_quoted("a'b; rm -rf ~"), "'a'\\''b; rm -rf ~'");
    }

    #[test]
    fn given_this_process_then_its_own_gid_is_carried() {
        let own = nix::unistd::getegid().as_raw();
        assert!(carried().contains(&own));
    }
}
