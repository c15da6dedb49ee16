//! What happens to a user's processes when a grant ends (SPEC "When a grant ends"): a
//! process keeps its supplementary groups for its whole life, so a shell opened during a
//! docker grant would keep the docker socket after it. Plain logic over a [`ProcessTable`].
//!
//! Two steps, each one call, run by pimd off its bus loop:
//!
//! 1. [`terminate`]: SIGTERM (then SIGCONT, so that a stopped job gets it too) to every
//!    process of the user that still carries the group.
//! 2. `end_grace` later, [`kill`]: a freeze, so that nothing forks its way out. Every process
//!    carrying the group is sent SIGSTOP; the table is read again and again, stopping each
//!    new one, until every process carrying the group is one pimd stopped and the kernel
//!    shows it stopped (a stopped process cannot fork; a fork that a SIGSTOP interrupts
//!    is undone by the kernel). Then all of them get SIGKILL, and the table is read again.
//!    pimd repeats the step until no process carries the group.
//!
//! Only processes that act as the user (real, effective or saved uid) and carry the gid (real,
//! effective, saved or supplementary) are touched; a signal goes only to the very process that
//! was listed (see processes.rs). Whether the group should be ended at all (another live grant,
//! a membership outside PIM, `permanent`, `on_end = "keep"`) is the manager's call.

use crate::processes::{Process, ProcessTable, Sent};
use rustix::process::Signal;

/// Whom an ending is about. Never root: root's processes carry every group they like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
}

impl Target {
    pub fn new(uid: u32, gid: u32) -> Option<Target> {
        (uid != 0).then_some(Target { uid, gid })
    }
}

/// Reads of the table one [`kill`] makes at most; what is left is for the next call.
const KILL_ROUNDS: usize = 200;

/// Processes signalled, as records list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signalled {
    pub pid: u32,
    pub command: String,
}

impl From<&Process> for Signalled {
    fn from(p: &Process) -> Self {
        Signalled {
            pid: p.pid,
            command: p.command.clone(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub signalled: Vec<Signalled>,
    /// Processes still carrying the group after the step (for [`kill`]: 0 means done).
    pub left: usize,
}

fn carrying(table: &dyn ProcessTable, target: Target) -> std::io::Result<Vec<Process>> {
    Ok(table
        .list()?
        .into_iter()
        .filter(|p| p.carries(target.uid, target.gid))
        .collect())
}

/// How many of the user's processes carry the group now.
pub fn count(table: &dyn ProcessTable, target: Target) -> std::io::Result<usize> {
    Ok(carrying(table, target)?.len())
}

/// Step 1: SIGTERM and SIGCONT to every process of the user that carries the group.
pub fn terminate(table: &dyn ProcessTable, target: Target) -> std::io::Result<Step> {
    let mut signalled = Vec::new();
    for process in carrying(table, target)? {
        if table.signal(&process, target.uid, target.gid, Signal::TERM)? == Sent::Delivered {
            table.signal(&process, target.uid, target.gid, Signal::CONT)?;
            signalled.push(Signalled::from(&process));
        }
    }
    let left = carrying(table, target)?.len();
    Ok(Step { signalled, left })
}

/// Step 2: freeze every process carrying the group, then SIGKILL them all, until none is left
/// or [`KILL_ROUNDS`] reads of the table were made.
pub fn kill(table: &dyn ProcessTable, target: Target) -> std::io::Result<Step> {
    let same = |a: &Process, b: &Process| a.pid == b.pid && a.start_time == b.start_time;
    let mut stopped: Vec<Process> = Vec::new();
    let mut signalled: Vec<Signalled> = Vec::new();
    for round in 1..=KILL_ROUNDS {
        let found = carrying(table, target)?;
        if found.is_empty() {
            return Ok(Step { signalled, left: 0 });
        }
        if round == KILL_ROUNDS {
            // Never settled (a tracer that does not carry the group may keep continuing a
            // process pimd stopped): kill what there is, and go on at the next step.
            stopped.extend(found.iter().cloned());
            kill_stopped(table, target, &mut stopped, &mut signalled)?;
            break;
        }
        let mut settled = true;
        for process in &found {
            if !stopped.iter().any(|s| same(s, process)) {
                settled = false;
                if table.signal(process, target.uid, target.gid, Signal::STOP)? == Sent::Delivered {
                    stopped.push(process.clone());
                }
            } else if !process.stopped {
                // Sent, but not yet in effect: it may still be forking.
                settled = false;
            }
        }
        if settled {
            kill_stopped(table, target, &mut stopped, &mut signalled)?;
        }
    }
    let left = carrying(table, target)?.len();
    Ok(Step { signalled, left })
}

/// SIGKILL to every process of `stopped` (emptied), each new one added to `signalled`.
fn kill_stopped(
    table: &dyn ProcessTable,
    target: Target,
    stopped: &mut Vec<Process>,
    signalled: &mut Vec<Signalled>,
) -> std::io::Result<()> {
    for process in stopped.drain(..) {
        if table.signal(&process, target.uid, target.gid, Signal::KILL)? == Sent::Delivered
            && !signalled.iter().any(|s| s.pid == process.pid)
        {
            signalled.push(Signalled::from(&process));
        }
    }
    Ok(())
}

/// The processes of a record: `pid 'command'`, escaped (processes.rs), comma-separated, at most
/// `most` listed and the rest counted.
pub fn describe(signalled: &[Signalled], most: usize) -> String {
    if signalled.is_empty() {
        return "none".into();
    }
    let mut listed: Vec<String> = signalled
        .iter()
        .take(most)
        .map(|s| format!("{} '{}'", s.pid, s.command.replace('\'', "\\'")))
        .collect();
    if signalled.len() > most {
        listed.push(format!("and {} more", signalled.len() - most));
    }
    listed.join(", ")
}

/// The line written on the user's terminals before the end. Role names are checked names
/// (no control characters), so nothing in it comes from free user input.
pub fn warning_line(role: &str, group: &str, secs_left: i64) -> String {
    let left = pim_common::duration::format(secs_left.max(1) as u64);
    format!(
        "\r\npim: your grant of role {role} (group {group}) ends in {left}; processes that \
         carry the group will be ended then; 'pim extend {role}' to keep it\r\n"
    )
}

/// Writes `line` on every terminal where a process of the user carrying the group runs;
/// returns how many terminals took it.
pub fn warn(table: &dyn ProcessTable, target: Target, line: &str) -> std::io::Result<usize> {
    let mut devices: Vec<u64> = carrying(table, target)?
        .iter()
        .flat_map(|p| p.terminals.iter().copied())
        .collect();
    devices.sort_unstable();
    devices.dedup();
    Ok(devices
        .into_iter()
        .filter(|&d| table.write_terminal(d, target.uid, line).is_ok())
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processes::fake::FakeProcesses;

    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;
    const DOCKER: u32 = 999;
    const ALICE_GROUP: u32 = 1000;
    const TARGET: Target = Target {
        uid: ALICE,
        gid: DOCKER,
    };

    fn table() -> FakeProcesses {
        let t = FakeProcesses::default();
        t.add(100, ALICE, ALICE_GROUP, &[DOCKER], "bash");
        t.add(101, ALICE, ALICE_GROUP, &[], "sleep 1000");
        t.add(102, BOB, BOB, &[DOCKER], "bash");
        t.add(103, ALICE, DOCKER, &[], "newgrp docker");
        t
    }

    #[test]
    fn given_processes_then_only_the_users_carrying_the_gid_are_terminated() {
        let t = table();
        let step = terminate(&t, TARGET).unwrap();
        assert_eq!(
            step.signalled.iter().map(|s| s.pid).collect::<Vec<_>>(),
            vec![100, 103]
        );
        assert_eq!(step.left, 0);
        assert_eq!(t.pids(), vec![101, 102], "the rest is untouched");
        let signals = t.state().signals.clone();
        assert!(signals.iter().all(|(pid, _)| [100, 103].contains(pid)));
    }

    #[test]
    fn given_a_process_that_ignores_sigterm_then_kill_ends_it_after_the_grace() {
        let t = table();
        t.state().ignore_term.push(100);
        let step = terminate(&t, TARGET).unwrap();
        assert_eq!(step.left, 1);
        assert!(t.alive(100));
        let step = kill(&t, TARGET).unwrap();
        assert_eq!(step.left, 0);
        assert_eq!(step.signalled, vec![Signalled::from(&proc_of(100))]);
        assert!(!t.alive(100) && t.alive(101) && t.alive(102));
        let sent: Vec<i32> = t.state().signals.iter().map(|s| s.1).collect();
        let (term, cont, stop, kill) = (
            Signal::TERM.as_raw(),
            Signal::CONT.as_raw(),
            Signal::STOP.as_raw(),
            Signal::KILL.as_raw(),
        );
        // 103 ended at its SIGTERM, so it got no SIGCONT.
        assert_eq!(sent, vec![term, cont, term, stop, kill]);
    }

    fn proc_of(pid: u32) -> Process {
        Process {
            pid,
            start_time: u64::from(pid),
            stopped: false,
            threads: vec![],
            terminals: vec![],
            command: "bash".into(),
        }
    }

    #[test]
    fn given_a_fork_loop_then_every_child_is_stopped_before_any_is_killed_and_none_is_left() {
        let t = FakeProcesses::default();
        t.add(200, ALICE, ALICE_GROUP, &[DOCKER], "forker");
        t.add(201, ALICE, ALICE_GROUP, &[DOCKER], "forker");
        {
            let mut s = t.state();
            s.forking = vec![200, 201];
            s.ignore_term = vec![200, 201];
        }
        let step = kill(&t, TARGET).unwrap();
        assert_eq!(step.left, 0);
        assert!(t.pids().is_empty(), "{:?}", t.pids());
        assert!(step.signalled.len() > 2, "children were killed too");
        // No SIGKILL before the last SIGSTOP: the set was frozen first.
        let signals = t.state().signals.clone();
        let last_stop = signals
            .iter()
            .rposition(|s| s.1 == Signal::STOP.as_raw())
            .unwrap();
        let first_kill = signals
            .iter()
            .position(|s| s.1 == Signal::KILL.as_raw())
            .unwrap();
        assert!(last_stop < first_kill, "{signals:?}");
    }

    #[test]
    fn given_a_process_that_never_shows_stopped_then_it_is_killed_anyway() {
        let t = FakeProcesses::default();
        t.add(250, ALICE, ALICE_GROUP, &[DOCKER], "traced");
        t.state().unstoppable.push(250);
        let step = kill(&t, TARGET).unwrap();
        assert_eq!(step.left, 0);
        assert!(!t.alive(250));
    }

    #[test]
    fn given_a_pid_reused_by_another_process_then_it_gets_no_signal() {
        let t = table();
        let listed = t.list().unwrap();
        let shell = listed.iter().find(|p| p.pid == 100).unwrap().clone();
        // pid 100 ends and a process of bob's takes its number.
        t.state().processes.retain(|p| p.pid != 100);
        t.add(100, BOB, BOB, &[DOCKER], "bob's editor");
        t.state().processes.last_mut().unwrap().start_time = 9999;
        assert_eq!(
            t.signal(&shell, ALICE, DOCKER, Signal::KILL).unwrap(),
            Sent::Gone
        );
        assert!(t.alive(100));
    }

    #[test]
    fn given_no_process_carrying_the_group_then_nothing_is_signalled() {
        let t = FakeProcesses::default();
        t.add(300, ALICE, ALICE_GROUP, &[], "bash");
        assert_eq!(terminate(&t, TARGET).unwrap().signalled, vec![]);
        assert_eq!(kill(&t, TARGET).unwrap().left, 0);
        assert!(t.state().signals.is_empty());
    }

    #[test]
    fn given_an_unreadable_table_then_the_step_fails_rather_than_reports_none() {
        let t = table();
        t.state().fail_list = true;
        assert!(terminate(&t, TARGET).is_err());
        assert!(kill(&t, TARGET).is_err());
    }

    #[test]
    fn given_root_then_there_is_no_target() {
        assert_eq!(Target::new(0, DOCKER), None);
        assert_eq!(Target::new(ALICE, DOCKER), Some(TARGET));
    }

    #[test]
    fn given_many_processes_then_the_record_lists_some_quoted_and_counts_the_rest() {
        let listed: Vec<Signalled> = (1..=5)
            .map(|pid| Signalled {
                pid,
                command: "it's".into(),
            })
            .collect();
        assert_eq!(describe(&listed, 2), "1 'it\\'s', 2 'it\\'s', and 3 more");
        assert_eq!(describe(&[], 2), "none");
    }

    #[test]
    fn given_terminals_then_the_warning_goes_once_to_each_of_the_users_carrying_processes() {
        let t = FakeProcesses::default();
        t.add_on_terminal(400, ALICE, ALICE_GROUP, &[DOCKER], "bash", &[34816]);
        t.add_on_terminal(401, ALICE, ALICE_GROUP, &[DOCKER], "vim", &[34816, 34817]);
        t.add_on_terminal(402, ALICE, ALICE_GROUP, &[], "bash", &[34818]);
        t.add_on_terminal(403, BOB, BOB, &[DOCKER], "bash", &[34819]);
        // 34817 belongs to someone else (a terminal alice's process holds open).
        t.state().terminals = vec![(34816, ALICE), (34817, BOB), (34818, ALICE), (34819, BOB)];
        let line = warning_line("docker", "docker", 299);
        assert_eq!(warn(&t, TARGET, &line).unwrap(), 1);
        let written = t.state().written.clone();
        assert_eq!(written, vec![(34816, ALICE, line.clone())]);
        assert!(line.contains("ends in 4m59s") && line.contains("'pim extend docker'"));
        assert!(!line.trim().contains(['\n', '\r']), "one line: {line:?}");
    }
}
