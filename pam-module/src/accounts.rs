//! Which managed groups a user holds.
//!
//! A user holds a group when its gid is
//! - the user's primary group (passwd entry),
//! - or among the calling process's groups (`getgroups`, real and effective gid) *when the
//!   process's real uid is the user's uid*: that is sudo's case (sudo is set-uid root, so its
//!   real uid and its group vector are the invoking user's), and it is what makes expiry real —
//!   a process keeps supplementary groups that /etc/group no longer lists;
//!
//! - or among the gids the group database gives the user (`getgrouplist`, as `initgroups` at
//!   login would): matched by gid, not by name in the group's member list, so that members
//!   that `getgrnam` does not list (sssd's `ignore_group_members`, nested directory groups)
//!   and groups sharing a managed group's gid count.
//!
//! Each managed group is looked up by name (`getgrnam`) for its gid; a failed lookup is an
//! error, never "not held". The process's groups are *not*
//! counted for a process whose real uid is someone else's (sshd, login, cron, su run by root):
//! those groups are the daemon's, not the user's, and counting them would refuse every login
//! whenever root happens to sit in a managed group (as on distributions that put root in
//! `wheel`).
#![forbid(unsafe_code)]

use std::ffi::CString;

use nix::unistd::{self, Gid, Group, Uid, User};

use crate::decision::{Accounts, Held, UserEntry};

/// The host's user and group databases and the calling process's credentials.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn lookup(&self, user: &str) -> Result<Option<UserEntry>, String> {
        if user.contains('\0') {
            return Ok(None);
        }
        match User::from_name(user) {
            Ok(Some(entry)) => Ok(Some(UserEntry {
                uid: entry.uid.as_raw(),
                gid: entry.gid.as_raw(),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("user database lookup failed: {e}")),
        }
    }

    fn lookup_uid(&self, uid: u32) -> Result<Option<(String, UserEntry)>, String> {
        match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(entry)) => Ok(Some((
                entry.name,
                UserEntry {
                    uid: entry.uid.as_raw(),
                    gid: entry.gid.as_raw(),
                },
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("user database lookup of uid {uid} failed: {e}")),
        }
    }

    fn held(
        &self,
        user: &str,
        entry: &UserEntry,
        managed: &[String],
        real_uid: u32,
    ) -> Result<Held, String> {
        // Each managed group looked up once, whichever gids are asked about.
        let mut resolved = Vec::with_capacity(managed.len());
        for group in managed {
            let gid = Group::from_name(group)
                .map_err(|e| format!("group database lookup of {group} failed: {e}"))?
                .map(|g| g.gid.as_raw());
            resolved.push((group.as_str(), gid));
        }
        let lookup = |group: &str| {
            Ok(resolved
                .iter()
                .find(|(name, _)| *name == group)
                .and_then(|(_, gid)| *gid))
        };
        // The process's own groups first (sudo's case): when they hold every managed group
        // there is, the group database has nothing to add, and its walk (a whole /etc/group,
        // or a directory's round trip) is spared.
        let mut gids = vec![entry.gid];
        if real_uid == entry.uid {
            gids.extend(process_gids()?);
            let held = held_groups(&gids, managed, lookup)?;
            if held.groups.len() + held.missing.len() == managed.len() {
                return Ok(held);
            }
        }
        gids.extend(group_list(user, entry.gid)?);
        held_groups(&gids, managed, lookup)
    }
}

/// The gids the group database gives `user` (with `primary`), as `initgroups` would set them:
/// by gid, so that a member the group's own entry does not list (sssd's
/// `ignore_group_members`, nested directory groups) and a group sharing the gid of a managed
/// one count.
fn group_list(user: &str, primary: u32) -> Result<Vec<u32>, String> {
    let name = CString::new(user).map_err(|_| format!("user name {user:?} contains NUL"))?;
    let gids = unistd::getgrouplist(&name, Gid::from_raw(primary))
        .map_err(|e| format!("group database lookup of the groups of {user} failed: {e}"))?;
    Ok(gids.into_iter().map(Gid::as_raw).collect())
}

/// The calling process's real, effective and supplementary gids.
fn process_gids() -> Result<Vec<u32>, String> {
    let mut gids: Vec<u32> = unistd::getgroups()
        .map_err(|e| format!("getgroups failed: {e}"))?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    gids.push(unistd::getgid().as_raw());
    gids.push(unistd::getegid().as_raw());
    Ok(gids)
}

/// The managed groups held, given the gids counted for the user and a group lookup giving a
/// group's gid (`Ok(None)` for a group that does not exist). Any failed lookup fails the whole
/// answer: the module must not guess that a group is not held.
pub fn held_groups(
    gids: &[u32],
    managed: &[String],
    lookup: impl Fn(&str) -> Result<Option<u32>, String>,
) -> Result<Held, String> {
    let mut held = Held::default();
    for group in managed {
        match lookup(group)? {
            Some(gid) => {
                if gids.contains(&gid) {
                    held.groups.push(group.clone());
                }
            }
            None => held.missing.push(group.clone()),
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(group: &str) -> Result<Option<u32>, String> {
        match group {
            "sudo" => Ok(Some(27)),
            "wheel" => Ok(Some(10)),
            "docker" => Ok(Some(998)),
            "broken" => Err("ldap is down".into()),
            _ => Ok(None),
        }
    }

    fn managed(groups: &[&str]) -> Vec<String> {
        groups.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn given_a_gid_from_the_group_list_then_the_group_is_held() {
        // The group database gave 27 (a member of sudo, whether sudo's entry lists the user
        // or not: sssd's ignore_group_members, a nested directory group, an alias group
        // sharing gid 27).
        let held = held_groups(&[1000, 27], &managed(&["sudo", "wheel"]), database).unwrap();
        assert_eq!(held.groups, ["sudo"]);
        assert!(held.missing.is_empty());
    }

    #[test]
    fn given_no_gid_of_a_managed_group_then_nothing_held() {
        let held = held_groups(&[1000], &managed(&["sudo", "wheel", "docker"]), database).unwrap();
        assert!(held.groups.is_empty());
    }

    #[test]
    fn given_a_group_that_does_not_exist_then_reported_missing() {
        let held = held_groups(&[27], &managed(&["nosuch", "sudo"]), database).unwrap();
        assert_eq!(held.groups, ["sudo"]);
        assert_eq!(held.missing, ["nosuch"]);
    }

    #[test]
    fn given_a_failed_group_lookup_then_error_not_a_guess() {
        let err = held_groups(&[], &managed(&["sudo", "broken"]), database).unwrap_err();
        assert!(err.contains("ldap is down"), "{err}");
    }

    #[test]
    fn given_root_on_this_host_then_lookup_finds_uid_0() {
        let entry = SystemAccounts.lookup("root").unwrap().unwrap();
        assert_eq!(entry.uid, 0);
        let (name, by_uid) = SystemAccounts.lookup_uid(0).unwrap().unwrap();
        assert_eq!((name.as_str(), by_uid), ("root", entry));
        assert_eq!(SystemAccounts.lookup_uid(4_000_000_123).unwrap(), None);
    }

    #[test]
    fn given_a_name_nobody_has_then_lookup_finds_none() {
        assert_eq!(SystemAccounts.lookup("pim-no-such-user-x").unwrap(), None);
        assert_eq!(SystemAccounts.lookup("nul\0name").unwrap(), None);
    }

    #[test]
    fn given_root_then_its_primary_group_is_held_and_an_absent_group_is_missing() {
        let root_group = Group::from_gid(Gid::from_raw(0)).unwrap().unwrap().name;
        let entry = SystemAccounts.lookup("root").unwrap().unwrap();
        let held = SystemAccounts
            .held(
                "root",
                &entry,
                &managed(&[&root_group, "pim-no-such-group-x"]),
                4_000_000_123,
            )
            .unwrap();
        assert_eq!(held.groups, [root_group]);
        assert_eq!(held.missing, ["pim-no-such-group-x"]);
    }
}
