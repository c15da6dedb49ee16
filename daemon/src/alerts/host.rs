//! The look at the host the alerts need, made outside the manager's lock (like the set-group-ID
//! sweep's walk): the groups in /etc/group (through NSS), the process table (the `processes`
//! port: /proc, or its fake), the sudoers files. Each part that cannot be read is left
//! `None`, so its kind is not judged.

use super::{HostFacts, ProcessFact};
use crate::accounts::Accounts;
use crate::processes::{Process, ProcessTable};
use pim_sudoers::Who;
use std::collections::{BTreeMap, BTreeSet};

/// Where the sudoers files are read from.
pub type SudoersSource = dyn Fn() -> pim_sudoers::Sudoers + Send + Sync;

/// Looks at the host: `groups` (the managed ones and those the roles' lists name), the
/// processes and the names of the users they run as, and the sudoers rules that give root.
pub fn look(
    accounts: &dyn Accounts,
    processes: &dyn ProcessTable,
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
            .iter()
            .flat_map(process_facts)
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
    let read = sudoers();
    // A run-as `%group` lets `sudo -u root` work when root is in the group: only a group
    // that is found, is not root's gid 0 and does not list root is known to leave root out.
    let root_outside = |who: &Who| match who {
        Who::Group(name) => matches!(
            accounts.group(name),
            Ok(Some((gid, listed))) if gid != 0 && !listed.iter().any(|u| u == "root")
        ),
        _ => false,
    };
    let rules = pim_sudoers::read_rules_knowing(&read.files, &root_outside);
    facts.sudoers = Some(rules.root);
    facts.sudoers_unparsed = rules.unparsed;
    facts.sudoers_unreadable = read.unreadable;
    facts.sudoers_refused = read.refused;
    facts
}

/// A process as the alerts see it: per real uid its threads act as (a thread may have
/// changed its own), every gid they carry (real, effective, saved, supplementary).
fn process_facts(process: &Process) -> Vec<ProcessFact> {
    let mut by_uid: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for thread in &process.threads {
        let gids = by_uid.entry(thread.uids[0]).or_default();
        gids.extend(thread.gids);
        gids.extend(thread.groups.iter().copied());
    }
    by_uid
        .into_iter()
        .map(|(uid, gids)| ProcessFact {
            pid: process.pid,
            uid,
            gids,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::fake::FakeAccounts;
    use crate::processes::fake::FakeProcesses;
    use std::path::PathBuf;

    #[test]
    fn given_the_host_then_groups_processes_and_sudoers_are_looked_at() {
        let accounts = FakeAccounts::default();
        accounts.add_user("bob", 1001);
        accounts.add_group("sudo", &["bob"]);
        accounts.set_gid("sudo", 27);
        let processes = FakeProcesses::default();
        processes.add(10, 1001, 1001, &[27], "bash");
        processes.add(11, 1001, 1001, &[1001], "bash");
        // A process whose primary (real, effective, saved) gid is the group carries it too.
        processes.add(12, 1001, 27, &[], "sg sudo bash");
        let sudoers = || pim_sudoers::Sudoers {
            files: vec![(
                PathBuf::from("/etc/sudoers.d/x"),
                "bob ALL=(ALL) ALL\n".to_string(),
            )],
            ..Default::default()
        };
        let groups: BTreeSet<String> = ["sudo".to_string()].into();
        let facts = look(&accounts, &processes, &sudoers, &groups);
        assert_eq!(facts.members.unwrap()["sudo"], ["bob".to_string()].into());
        assert_eq!(facts.gids["sudo"], 27);
        // Only the processes carrying a managed group are kept.
        let pids: Vec<u32> = facts.processes.unwrap().iter().map(|p| p.pid).collect();
        assert_eq!(pids, [10, 12]);
        assert_eq!(facts.user_names[&1001], "bob");
        assert_eq!(facts.sudoers.unwrap().len(), 1);
        // A directory outage or an unreadable /proc leaves its part unjudged.
        accounts.unreachable("sudo");
        processes.state().fail_list = true;
        let facts = look(&accounts, &processes, &sudoers, &groups);
        assert!(facts.members.is_none() && facts.processes.is_none());
    }

    #[test]
    fn given_a_run_as_group_then_it_gives_root_when_root_is_in_it() {
        let accounts = FakeAccounts::default();
        accounts.add_user("root", 0);
        accounts.add_group("wheel", &["root"]);
        accounts.set_gid("wheel", 10);
        accounts.add_group("staff", &["bob"]);
        accounts.set_gid("staff", 50);
        let processes = FakeProcesses::default();
        let sudoers = || pim_sudoers::Sudoers {
            files: vec![(
                PathBuf::from("/etc/sudoers.d/x"),
                "eve ALL=(%wheel) ALL\nmallory ALL=(%staff) ALL\n".to_string(),
            )],
            ..Default::default()
        };
        let facts = look(&accounts, &processes, &sudoers, &BTreeSet::new());
        let who: Vec<String> = facts
            .sudoers
            .unwrap()
            .iter()
            .filter(|r| r.root)
            .flat_map(|r| r.who.iter().map(Who::to_string))
            .collect();
        assert_eq!(who, ["eve"]);
    }
}
