//! The look at the host the alerts need, made outside the manager's lock (like the set-group-ID
//! sweep's walk): the groups in /etc/group (through NSS), the process table, the sudoers
//! files. Each part that cannot be read is left `None`, so its kind is not judged.

use super::{HostFacts, ProcessFact};
use crate::accounts::Accounts;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

/// The processes of the host, as the alerts see them.
pub trait ProcessList: Send + Sync {
    /// Every live process; only an unreadable /proc is an error.
    fn list(&self) -> io::Result<Vec<ProcessFact>>;
}

/// Where the sudoers files are read from.
pub type SudoersSource = dyn Fn() -> Vec<(PathBuf, String)> + Send + Sync;

/// Looks at the host: `groups` (the managed ones and those the roles' lists name), the
/// processes and the names of the users they run as, and the sudoers rules that give root.
pub fn look(
    accounts: &dyn Accounts,
    processes: &dyn ProcessList,
    sudoers: &SudoersSource,
    groups: &BTreeSet<String>,
) -> HostFacts {
    let mut facts = HostFacts::default();
    let mut members = BTreeMap::new();
    let mut failed = false;
    for group in groups {
        match accounts.group(group) {
            Ok(Some((gid, listed))) => {
                facts.gids.insert(group.clone(), gid);
                members.insert(group.clone(), listed.into_iter().collect());
            }
            Ok(None) => {
                members.insert(group.clone(), BTreeSet::new());
            }
            Err(_) => failed = true,
        }
    }
    facts.members = (!failed).then_some(members);
    if let Ok(list) = processes.list() {
        let managed: BTreeSet<u32> = facts.gids.values().copied().collect();
        let carrying: Vec<ProcessFact> = list
            .into_iter()
            .filter(|p| p.gids.iter().any(|g| managed.contains(g)))
            .collect();
        for process in &carrying {
            if let std::collections::btree_map::Entry::Vacant(e) =
                facts.user_names.entry(process.uid)
            {
                if let Some(name) = accounts.user_name(process.uid) {
                    e.insert(name);
                }
            }
        }
        facts.processes = Some(carrying);
    }
    facts.sudoers = Some(pim_sudoers::root_rules(&sudoers()));
    facts
}

/// The process table from /proc: each process's real uid and every gid its status lists
/// (real, effective, saved, file system and supplementary).
pub struct ProcProcesses;

impl ProcessList for ProcProcesses {
    fn list(&self) -> io::Result<Vec<ProcessFact>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A process that ended meanwhile is simply not listed.
            let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            if let Some(process) = parse_status(pid, &status) {
                found.push(process);
            }
        }
        Ok(found)
    }
}

/// A process from the text of its /proc/PID/status; None for a zombie or a status without
/// its ids.
pub fn parse_status(pid: u32, status: &str) -> Option<ProcessFact> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|n| n.parse::<u32>().ok())
            })
    };
    let state = status.lines().find_map(|l| l.strip_prefix("State:"))?;
    if matches!(state.trim_start().chars().next(), Some('Z' | 'X')) {
        return None;
    }
    let uid = field("Uid:")?.next()?;
    let mut gids: BTreeSet<u32> = field("Gid:")?.collect();
    gids.extend(field("Groups:").into_iter().flatten());
    Some(ProcessFact { pid, uid, gids })
}

#[cfg(test)]
pub mod fake {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Processes a test sets; `None` makes the listing fail.
    #[derive(Clone, Default)]
    pub struct FakeProcesses(pub Arc<Mutex<Option<Vec<ProcessFact>>>>);

    impl ProcessList for FakeProcesses {
        fn list(&self) -> io::Result<Vec<ProcessFact>> {
            self.0
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| io::Error::other("simulated: /proc unreadable"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeProcesses;
    use super::*;
    use crate::accounts::fake::FakeAccounts;
    use std::sync::{Arc, Mutex};

    #[test]
    fn given_a_proc_status_then_uid_and_every_gid_are_read() {
        let status = "Name:\tbash\nState:\tS (sleeping)\nUid:\t1001\t1001\t1001\t1001\n\
                      Gid:\t1001\t1001\t1001\t1001\nGroups:\t27 1001 \n";
        let process = parse_status(42, status).unwrap();
        assert_eq!(process.uid, 1001);
        assert_eq!(process.gids, [27, 1001].into());
        let zombie = status.replace("S (sleeping)", "Z (zombie)");
        assert_eq!(parse_status(42, &zombie), None);
        assert_eq!(parse_status(42, "State:\tR\n"), None);
    }

    #[test]
    fn given_the_host_then_groups_processes_and_sudoers_are_looked_at() {
        let accounts = FakeAccounts::default();
        accounts.add_user("bob", 1001);
        accounts.add_group("sudo", &["bob"]);
        accounts.set_gid("sudo", 27);
        let processes = FakeProcesses(Arc::new(Mutex::new(Some(vec![
            ProcessFact {
                pid: 10,
                uid: 1001,
                gids: [27].into(),
            },
            ProcessFact {
                pid: 11,
                uid: 1001,
                gids: [1001].into(),
            },
        ]))));
        let sudoers = || {
            vec![(
                PathBuf::from("/etc/sudoers.d/x"),
                "bob ALL=(ALL) ALL\n".to_string(),
            )]
        };
        let groups: BTreeSet<String> = ["sudo".to_string()].into();
        let facts = look(&accounts, &processes, &sudoers, &groups);
        assert_eq!(facts.members.unwrap()["sudo"], ["bob".to_string()].into());
        assert_eq!(facts.gids["sudo"], 27);
        // Only the processes carrying a managed group are kept.
        let pids: Vec<u32> = facts.processes.unwrap().iter().map(|p| p.pid).collect();
        assert_eq!(pids, [10]);
        assert_eq!(facts.user_names[&1001], "bob");
        assert_eq!(facts.sudoers.unwrap().len(), 1);
        // A directory outage or an unreadable /proc leaves its part unjudged.
        accounts.unreachable("sudo");
        *processes.0.lock().unwrap() = None;
        let facts = look(&accounts, &processes, &sudoers, &groups);
        assert!(facts.members.is_none() && facts.processes.is_none());
    }
}
