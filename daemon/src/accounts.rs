//! The host's users and groups: lookups through NSS and membership changes through
//! `/usr/sbin/gpasswd`, behind a trait so the domain logic can be tested without touching
//! /etc/group.

use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("could not run gpasswd: {0}")]
    Spawn(std::io::Error),
    #[error("gpasswd {action} {user} {group} failed: {detail}")]
    Gpasswd {
        action: &'static str,
        user: String,
        group: String,
        detail: String,
    },
    /// NSS could not answer (e.g. SSSD or LDAP down): no answer, not "no".
    #[error("could not look up {what}: {detail}")]
    Lookup { what: String, detail: String },
}

pub trait Accounts: Send {
    fn user_exists(&self, name: &str) -> bool;
    fn user_name(&self, uid: u32) -> Option<String>;
    fn group_exists(&self, name: &str) -> bool;
    /// Whether `user` belongs to `group` at all: as its primary group or as a listed member.
    /// A lookup that fails is an error, never a "no".
    fn in_group(&self, user: &str, group: &str) -> Result<bool, AccountsError>;
    /// Whether `user` is listed as a supplementary member of `group` (what gpasswd edits).
    /// A lookup that fails is an error, never a "no".
    fn listed_in_group(&self, user: &str, group: &str) -> Result<bool, AccountsError>;
    /// The uid of `user` and the gid of `group`; None when either does not exist. A lookup
    /// that fails is an error.
    fn ids(&self, user: &str, group: &str) -> Result<Option<(u32, u32)>, AccountsError>;
    /// The users listed as supplementary members of `group` (none when there is no such
    /// group). A lookup that fails is an error.
    fn group_members(&self, group: &str) -> Result<Vec<String>, AccountsError>;
    /// The gid of `group` and the members its entry lists (what gpasswd edits); None when
    /// there is no such group. A lookup that fails is an error.
    fn group(&self, group: &str) -> Result<Option<(u32, Vec<String>)>, AccountsError>;
    /// The users of /etc/passwd whose primary group is `gid`.
    fn primary_members(&self, gid: u32) -> Result<Vec<String>, AccountsError>;
    fn add_member(&mut self, user: &str, group: &str) -> Result<(), AccountsError>;
    fn remove_member(&mut self, user: &str, group: &str) -> Result<(), AccountsError>;
}

/// The real thing: NSS lookups (re-read on every call, so edits are seen at once) and gpasswd.
pub struct SystemAccounts;

/// Where distributions put gpasswd (Debian and Fedora: /usr/bin; some others: /usr/sbin).
/// A fixed list of absolute paths, never a PATH search.
const GPASSWD_PATHS: [&str; 4] = [
    "/usr/sbin/gpasswd",
    "/usr/bin/gpasswd",
    "/sbin/gpasswd",
    "/bin/gpasswd",
];

impl SystemAccounts {
    fn gpasswd(action: &'static str, user: &str, group: &str) -> Result<(), AccountsError> {
        let program = GPASSWD_PATHS
            .iter()
            .find(|p| std::path::Path::new(p).is_file())
            .ok_or_else(|| {
                AccountsError::Spawn(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "none of {} exists; install the passwd package",
                        GPASSWD_PATHS.join(", ")
                    ),
                ))
            })?;
        // Absolute path, empty environment, no shell: nothing the caller controls reaches it.
        // Names were checked against the strict name syntax before they got here.
        let output = Command::new(program)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(action)
            .arg(user)
            .arg(group)
            .output()
            .map_err(AccountsError::Spawn)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(AccountsError::Gpasswd {
                action,
                user: user.to_string(),
                group: group.to_string(),
                detail: format!(
                    "{} ({})",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    output.status
                ),
            })
        }
    }
}

/// `group`'s entry (`None`: there is no such group), or why NSS could not say.
/// Where the users' primary groups are read (sudo's `%group` matches them too).
const PASSWD: &str = "/etc/passwd";

/// The names of the `passwd` lines (name:password:uid:gid:...) whose gid is `gid`.
fn users_of_primary_gid(passwd: &str, gid: u32) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let primary = fields.nth(2)?.parse::<u32>().ok()?;
            (primary == gid && !name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

fn group_entry(group: &str) -> Result<Option<nix::unistd::Group>, AccountsError> {
    nix::unistd::Group::from_name(group).map_err(|e| AccountsError::Lookup {
        what: format!("group {group}"),
        detail: e.to_string(),
    })
}

impl Accounts for SystemAccounts {
    fn user_exists(&self, name: &str) -> bool {
        matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
    }

    fn user_name(&self, uid: u32) -> Option<String> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    }

    fn group_exists(&self, name: &str) -> bool {
        matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
    }

    fn in_group(&self, user: &str, group: &str) -> Result<bool, AccountsError> {
        let Some(grp) = group_entry(group)? else {
            return Ok(false);
        };
        if grp.mem.iter().any(|m| m == user) {
            return Ok(true);
        }
        let account = nix::unistd::User::from_name(user).map_err(|e| AccountsError::Lookup {
            what: format!("user {user}"),
            detail: e.to_string(),
        })?;
        Ok(account.is_some_and(|u| u.gid == grp.gid))
    }

    fn listed_in_group(&self, user: &str, group: &str) -> Result<bool, AccountsError> {
        Ok(group_entry(group)?.is_some_and(|g| g.mem.iter().any(|m| m == user)))
    }

    fn group_members(&self, group: &str) -> Result<Vec<String>, AccountsError> {
        Ok(group_entry(group)?.map(|g| g.mem).unwrap_or_default())
    }

    fn ids(&self, user: &str, group: &str) -> Result<Option<(u32, u32)>, AccountsError> {
        let Some(grp) = group_entry(group)? else {
            return Ok(None);
        };
        let account = nix::unistd::User::from_name(user).map_err(|e| AccountsError::Lookup {
            what: format!("user {user}"),
            detail: e.to_string(),
        })?;
        Ok(account.map(|u| (u.uid.as_raw(), grp.gid.as_raw())))
    }

    fn group(&self, group: &str) -> Result<Option<(u32, Vec<String>)>, AccountsError> {
        Ok(group_entry(group)?.map(|g| (g.gid.as_raw(), g.mem)))
    }

    fn primary_members(&self, gid: u32) -> Result<Vec<String>, AccountsError> {
        let passwd = std::fs::read_to_string(PASSWD).map_err(|e| AccountsError::Lookup {
            what: PASSWD.into(),
            detail: e.to_string(),
        })?;
        Ok(users_of_primary_gid(&passwd, gid))
    }

    fn add_member(&mut self, user: &str, group: &str) -> Result<(), AccountsError> {
        Self::gpasswd("-a", user, group)
    }

    fn remove_member(&mut self, user: &str, group: &str) -> Result<(), AccountsError> {
        Self::gpasswd("-d", user, group)
    }
}

impl pim_config::Directory for SystemAccounts {
    fn user_exists(&self, name: &str) -> bool {
        Accounts::user_exists(self, name)
    }
    fn group_exists(&self, name: &str) -> bool {
        Accounts::group_exists(self, name)
    }
}

#[cfg(test)]
pub mod fake {
    use super::{Accounts, AccountsError};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct Db {
        pub users: BTreeMap<String, (u32, String)>, // name -> (uid, primary group)
        pub groups: BTreeMap<String, BTreeSet<String>>, // group -> listed members
        /// Group ids set by a test; any other group's is 5000 plus its rank by name.
        pub gids: BTreeMap<String, u32>,
        pub fail_next_add: bool,
        pub fail_next_remove: bool,
        /// Groups whose lookups fail, as when NSS cannot reach the directory.
        pub unreachable: BTreeSet<String>,
        pub calls: Vec<String>,
    }

    /// In-memory users and groups; clones share the same database so a test can look inside.
    #[derive(Clone, Default)]
    pub struct FakeAccounts(pub Arc<Mutex<Db>>);

    impl FakeAccounts {
        pub fn add_user(&self, name: &str, uid: u32) {
            let mut db = self.0.lock().unwrap();
            db.users.insert(name.into(), (uid, name.into()));
            db.groups.entry(name.into()).or_default();
        }
        pub fn add_group(&self, name: &str, members: &[&str]) {
            let mut db = self.0.lock().unwrap();
            db.groups
                .insert(name.into(), members.iter().map(|m| m.to_string()).collect());
        }
        pub fn set_gid(&self, group: &str, gid: u32) {
            self.0.lock().unwrap().gids.insert(group.into(), gid);
        }
        /// `user`'s primary group becomes `group` (useradd -g).
        pub fn set_primary(&self, user: &str, group: &str) {
            if let Some(entry) = self.0.lock().unwrap().users.get_mut(user) {
                entry.1 = group.into();
            }
        }
        pub fn remove_user(&self, name: &str) {
            self.0.lock().unwrap().users.remove(name);
        }
        pub fn members(&self, group: &str) -> Vec<String> {
            let db = self.0.lock().unwrap();
            db.groups
                .get(group)
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default()
        }
        pub fn fail_next_add(&self) {
            self.0.lock().unwrap().fail_next_add = true;
        }
        pub fn fail_next_remove(&self) {
            self.0.lock().unwrap().fail_next_remove = true;
        }
        /// From now on, looking up `group` fails (`reachable` undoes it).
        pub fn unreachable(&self, group: &str) {
            self.0.lock().unwrap().unreachable.insert(group.into());
        }
        pub fn reachable(&self, group: &str) {
            self.0.lock().unwrap().unreachable.remove(group);
        }
        pub fn calls(&self) -> Vec<String> {
            self.0.lock().unwrap().calls.clone()
        }
    }

    /// The configuration checker sees the same users and groups.
    impl pim_config::Directory for FakeAccounts {
        fn user_exists(&self, name: &str) -> bool {
            Accounts::user_exists(self, name)
        }
        fn group_exists(&self, name: &str) -> bool {
            Accounts::group_exists(self, name)
        }
    }

    impl Accounts for FakeAccounts {
        fn user_exists(&self, name: &str) -> bool {
            self.0.lock().unwrap().users.contains_key(name)
        }
        fn user_name(&self, uid: u32) -> Option<String> {
            let db = self.0.lock().unwrap();
            db.users
                .iter()
                .find(|(_, (u, _))| *u == uid)
                .map(|(n, _)| n.clone())
        }
        fn group_exists(&self, name: &str) -> bool {
            self.0.lock().unwrap().groups.contains_key(name)
        }
        fn in_group(&self, user: &str, group: &str) -> Result<bool, AccountsError> {
            if self.listed_in_group(user, group)? {
                return Ok(true);
            }
            let db = self.0.lock().unwrap();
            Ok(db
                .users
                .get(user)
                .is_some_and(|(_, primary)| primary == group))
        }
        fn listed_in_group(&self, user: &str, group: &str) -> Result<bool, AccountsError> {
            let db = self.0.lock().unwrap();
            if db.unreachable.contains(group) {
                return Err(AccountsError::Lookup {
                    what: format!("group {group}"),
                    detail: "simulated directory outage".into(),
                });
            }
            Ok(db.groups.get(group).is_some_and(|m| m.contains(user)))
        }

        fn group_members(&self, group: &str) -> Result<Vec<String>, AccountsError> {
            if self.0.lock().unwrap().unreachable.contains(group) {
                return Err(AccountsError::Lookup {
                    what: format!("group {group}"),
                    detail: "simulated directory outage".into(),
                });
            }
            Ok(self.members(group))
        }
        fn ids(&self, user: &str, group: &str) -> Result<Option<(u32, u32)>, AccountsError> {
            self.listed_in_group(user, group)?;
            let db = self.0.lock().unwrap();
            let gid = db.gids.get(group).copied().or_else(|| {
                let rank = db.groups.keys().position(|g| g == group)?;
                Some(5000 + rank as u32)
            });
            Ok(db.users.get(user).map(|(uid, _)| *uid).zip(gid))
        }
        fn group(&self, group: &str) -> Result<Option<(u32, Vec<String>)>, AccountsError> {
            self.listed_in_group("", group)?;
            let db = self.0.lock().unwrap();
            let Some(members) = db.groups.get(group) else {
                return Ok(None);
            };
            let gid = db.gids.get(group).copied().unwrap_or_else(|| {
                let rank = db.groups.keys().position(|g| g == group).unwrap_or(0);
                5000 + rank as u32
            });
            Ok(Some((gid, members.iter().cloned().collect())))
        }
        fn primary_members(&self, gid: u32) -> Result<Vec<String>, AccountsError> {
            let names: Vec<String> = self.0.lock().unwrap().groups.keys().cloned().collect();
            let mut primary = Vec::new();
            for name in names {
                if matches!(self.group(&name)?, Some((g, _)) if g == gid) {
                    let db = self.0.lock().unwrap();
                    primary.extend(
                        db.users
                            .iter()
                            .filter(|(_, (_, p))| *p == name)
                            .map(|(user, _)| user.clone()),
                    );
                }
            }
            Ok(primary)
        }
        fn add_member(&mut self, user: &str, group: &str) -> Result<(), AccountsError> {
            let mut db = self.0.lock().unwrap();
            db.calls.push(format!("-a {user} {group}"));
            if std::mem::take(&mut db.fail_next_add) {
                return Err(AccountsError::Gpasswd {
                    action: "-a",
                    user: user.into(),
                    group: group.into(),
                    detail: "simulated failure".into(),
                });
            }
            db.groups
                .entry(group.into())
                .or_default()
                .insert(user.into());
            Ok(())
        }
        fn remove_member(&mut self, user: &str, group: &str) -> Result<(), AccountsError> {
            let mut db = self.0.lock().unwrap();
            db.calls.push(format!("-d {user} {group}"));
            if std::mem::take(&mut db.fail_next_remove) {
                return Err(AccountsError::Gpasswd {
                    action: "-d",
                    user: user.into(),
                    group: group.into(),
                    detail: "simulated failure".into(),
                });
            }
            db.groups.entry(group.into()).or_default().remove(user);
            Ok(())
        }
    }
}
