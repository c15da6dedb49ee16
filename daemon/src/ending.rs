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

use crate::processes::{Owner, Process, ProcessTable, Sent};
use rustix::process::Signal;

/// Whom an ending is about. Never root: root's processes carry every group they like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
    /// The user's primary gid: the freeze helper's only group.
    pub primary_gid: u32,
    /// The user's subordinate uids (/etc/subuid): their processes are the user's too.
    pub subuids: Vec<(u32, u32)>,
}

impl Target {
    pub fn new(uid: u32, gid: u32) -> Option<Target> {
        (uid != 0).then_some(Target {
            uid,
            gid,
            primary_gid: uid,
            subuids: Vec::new(),
        })
    }

    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            subuids: self.subuids.clone(),
        }
    }
}

/// Freezes one [`kill`] tries before it kills what it found anyway and goes on at its next
/// call; each is a fresh kill(-1, SIGSTOP), which also stops what a SIGCONT loop of the
/// user's continued.
const FREEZE_ROUNDS: usize = 50;
/// Freeze-and-kill attempts of one [`kill`].
const KILL_ATTEMPTS: usize = 4;

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
    /// Processes still carrying the group after the step (0 means done: it is only ever 0
    /// after a scan taken while every process of the user was stopped).
    pub left: usize,
}

/// A step that failed part way: what it did before, and why it stopped.
#[derive(Debug)]
pub struct Failed {
    pub step: Step,
    pub error: std::io::Error,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl From<std::io::Error> for Failed {
    fn from(error: std::io::Error) -> Self {
        Failed {
            step: Step {
                signalled: Vec::new(),
                left: 0,
            },
            error,
        }
    }
}

fn carrying_in(listed: &[Process], target: &Target, owner: &Owner) -> Vec<Process> {
    listed
        .iter()
        .filter(|p| p.carries_for(owner, target.gid))
        .cloned()
        .collect()
}

fn carrying(table: &dyn ProcessTable, target: &Target) -> std::io::Result<Vec<Process>> {
    Ok(carrying_in(&table.list()?, target, &target.owner()))
}

/// How many of the user's processes carry the group now.
pub fn count(table: &dyn ProcessTable, target: Target) -> std::io::Result<usize> {
    Ok(carrying(table, &target)?.len())
}

/// Step 1: SIGTERM and SIGCONT to every process of the user that carries the group. When
/// none is left, the freeze of [`kill`] confirms it (a scan of running processes may miss a
/// fork-and-exit chain).
#[cfg(test)]
pub fn terminate(table: &dyn ProcessTable, target: Target) -> Result<Step, Failed> {
    terminate_unless(table, target, &|| false)
}

/// Why a step stops when `abort` says so: a grant of the group started meanwhile.
fn aborted() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Interrupted,
        "a grant of the group started while the step ran; what pimd stopped runs again",
    )
}

/// [`terminate`], which stops before any signal if `abort()` says so.
pub fn terminate_unless(
    table: &dyn ProcessTable,
    target: Target,
    abort: &dyn Fn() -> bool,
) -> Result<Step, Failed> {
    let owner = target.owner();
    let mut signalled = Vec::new();
    let found = carrying(table, &target)?;
    let fail = |signalled: &Vec<Signalled>, error| Failed {
        step: Step {
            signalled: signalled.clone(),
            left: 1,
        },
        error,
    };
    if abort() {
        return Err(aborted().into());
    }
    for process in found {
        match table.signal(&process, &owner, Some(target.gid), Signal::TERM) {
            Ok(Sent::Delivered) => {
                signalled.push(Signalled::from(&process));
                if let Err(e) = table.signal(&process, &owner, Some(target.gid), Signal::CONT) {
                    return Err(fail(&signalled, e));
                }
            }
            Ok(Sent::Gone) => {}
            Err(e) => return Err(fail(&signalled, e)),
        }
    }
    let left = match carrying(table, &target) {
        Ok(c) => c.len(),
        Err(e) => return Err(fail(&signalled, e)),
    };
    if left > 0 {
        return Ok(Step { signalled, left });
    }
    match kill_unless(table, target, abort) {
        Ok(step) => {
            signalled.extend(step.signalled);
            Ok(Step {
                signalled,
                left: step.left,
            })
        }
        Err(mut failed) => {
            signalled.append(&mut failed.step.signalled);
            failed.step.signalled = signalled;
            Err(failed)
        }
    }
}

/// Step 2: freeze every process of the user (kill(-1, SIGSTOP) as the user, atomic with
/// respect to fork, and SIGSTOP to each carrier directly, which reaches those under
/// subordinate uids too), again until a scan shows all of them stopped; then SIGKILL to those
/// that carry the group, and SIGCONT to the others pimd stopped (not to those already
/// stopped before). "None left" is concluded only from such a frozen scan.
#[cfg(test)]
pub fn kill(table: &dyn ProcessTable, target: Target) -> Result<Step, Failed> {
    kill_unless(table, target, &|| false)
}

/// [`kill`], which stops (continuing what it stopped) between rounds and before any SIGKILL
/// if `abort()` says so.
pub fn kill_unless(
    table: &dyn ProcessTable,
    target: Target,
    abort: &dyn Fn() -> bool,
) -> Result<Step, Failed> {
    let owner = target.owner();
    let mut signalled: Vec<Signalled> = Vec::new();
    let mut stopped_by_pimd: Vec<Process> = Vec::new();
    let result = freeze_and_kill(
        table,
        &target,
        &owner,
        abort,
        &mut signalled,
        &mut stopped_by_pimd,
    );
    // Whatever happened, what pimd stopped and did not kill runs again.
    let mut resume_error = None;
    for process in &stopped_by_pimd {
        if let Err(e) = table.resume(process, &owner) {
            resume_error.get_or_insert(e);
        }
    }
    match (result, resume_error) {
        (Ok(left), None) => Ok(Step { signalled, left }),
        (Ok(left), Some(error)) => Err(Failed {
            step: Step { signalled, left },
            error,
        }),
        (Err(error), _) => Err(Failed {
            step: Step { signalled, left: 1 },
            error,
        }),
    }
}

/// The attempts of [`kill`]; how many carriers may be left (0 only after a frozen scan).
fn freeze_and_kill(
    table: &dyn ProcessTable,
    target: &Target,
    owner: &Owner,
    abort: &dyn Fn() -> bool,
    signalled: &mut Vec<Signalled>,
    stopped_by_pimd: &mut Vec<Process>,
) -> std::io::Result<usize> {
    let same = |a: &Process, b: &Process| a.pid == b.pid && a.start_time == b.start_time;
    let mut left = 1;
    for _ in 0..KILL_ATTEMPTS {
        if abort() {
            return Err(aborted());
        }
        // Which of the user's processes were stopped already (a job the user stopped):
        // those stay stopped.
        let before = table.list()?;
        let stopped_before: Vec<Process> = before
            .iter()
            .filter(|p| p.stopped && p.belongs_to(owner))
            .cloned()
            .collect();
        for process in carrying_in(&before, target, owner) {
            if !process.stopped
                && table.signal(&process, owner, Some(target.gid), Signal::STOP)? == Sent::Delivered
            {
                stopped_by_pimd.push(process);
            }
        }
        let mut settled = false;
        let mut now = Vec::new();
        // What the freeze stops, as far as pimd knows before its next read: resumed if that
        // read fails.
        for p in before.iter().filter(|p| p.belongs_to(owner) && !p.stopped) {
            if !stopped_by_pimd.iter().any(|s| same(s, p)) {
                stopped_by_pimd.push(p.clone());
            }
        }
        for _ in 0..FREEZE_ROUNDS {
            table.freeze(target.uid, target.primary_gid)?;
            now = table.list()?;
            let mine: Vec<&Process> = now.iter().filter(|p| p.belongs_to(owner)).collect();
            for p in &mine {
                if !stopped_before.iter().any(|s| same(s, p))
                    && !stopped_by_pimd.iter().any(|s| same(s, p))
                {
                    stopped_by_pimd.push((*p).clone());
                }
            }
            if mine.iter().all(|p| p.stopped) {
                settled = true;
                break;
            }
            // Not yet in effect, or continued meanwhile: stop them again, each directly too.
            for p in mine.iter().filter(|p| !p.stopped) {
                table.signal(p, owner, None, Signal::STOP)?;
            }
        }
        if abort() {
            return Err(aborted());
        }
        let carriers = carrying_in(&now, target, owner);
        for process in &carriers {
            if table.signal(process, owner, Some(target.gid), Signal::KILL)? == Sent::Delivered
                && !signalled.iter().any(|s| s.pid == process.pid)
            {
                signalled.push(Signalled::from(process));
            }
            stopped_by_pimd.retain(|s| !same(s, process));
        }
        if settled {
            // Every process of the user was stopped when `now` was read, so none could fork
            // a carrier after it; those it listed are killed.
            return Ok(0);
        }
        left = carriers.len().max(1);
        for process in stopped_by_pimd.drain(..) {
            table.resume(&process, owner)?;
        }
    }
    Ok(left)
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
    let mut devices: Vec<u64> = carrying(table, &target)?
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
        primary_gid: ALICE,
        subuids: Vec::new(),
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
            userns_outside: vec![],
            unexamined_threads: false,
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
            t.signal(&shell, &TARGET.owner(), Some(DOCKER), Signal::KILL)
                .unwrap(),
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

    #[test]
    fn given_a_fork_and_exit_chain_then_the_freeze_catches_it_and_none_left_is_said_only_then() {
        let t = FakeProcesses::default();
        t.add(500, ALICE, ALICE_GROUP, &[DOCKER], "chain");
        t.add(501, ALICE, ALICE_GROUP, &[], "bash (from before)");
        {
            let mut s = t.state();
            s.chain = vec![500];
            s.ignore_term = vec![500];
        }
        // Every member the scan lists is gone when it is signalled.
        let step = terminate(&t, TARGET).unwrap();
        assert!(
            step.signalled.is_empty(),
            "no member was there to get SIGTERM"
        );
        let step = kill(&t, TARGET).unwrap();
        let left = t
            .state()
            .processes
            .iter()
            .filter(|p| p.carries(ALICE, DOCKER))
            .count();
        assert_eq!((step.left, left), (0, 0), "{:?}", t.pids());
        assert!(
            !t.state().freezes.is_empty(),
            "frozen before none left was said"
        );
        assert!(t.alive(501));
        assert!(!t.state().stopped.contains(&501), "left running");
    }

    #[test]
    fn given_a_sigcont_loop_of_the_user_then_the_carrier_is_killed_anyway() {
        let t = FakeProcesses::default();
        t.add(510, ALICE, ALICE_GROUP, &[DOCKER], "carrier");
        t.add(511, ALICE, ALICE_GROUP, &[], "kill -CONT -1 loop");
        {
            let mut s = t.state();
            s.continuing = vec![511];
            s.forking = vec![510];
            s.ignore_term = vec![510];
        }
        let step = kill(&t, TARGET).unwrap();
        assert_eq!(step.left, 0);
        assert!(t
            .state()
            .processes
            .iter()
            .all(|p| !p.carries(ALICE, DOCKER)));
        assert!(t.alive(511) && !t.state().stopped.contains(&511));
    }

    #[test]
    fn given_a_process_stopped_before_the_freeze_then_it_stays_stopped_and_others_run_again() {
        let t = table();
        t.state().ignore_term.push(100);
        t.state().stopped.push(101);
        kill(&t, TARGET).unwrap();
        let s = t.state();
        assert!(
            s.stopped.contains(&101),
            "the user's own stopped job stays stopped"
        );
        assert!(!s.resumed.contains(&101));
        assert!(!s.processes.iter().any(|p| p.pid == 100));
    }

    #[test]
    fn given_processes_under_subordinate_uids_then_they_are_the_users_and_ended() {
        let t = FakeProcesses::default();
        // A rootless container: its root is alice's subordinate uid 100000; another user's
        // container (bob's range) is not touched.
        t.add(600, 100_000, 100_000, &[DOCKER], "podman container");
        t.add(601, 200_000, 200_000, &[DOCKER], "bob's container");
        // A namespace whose uid_map maps to alice's uid, its process shown as uid 0 of it.
        t.add(602, 165_536, 165_536, &[DOCKER], "nested");
        t.state().processes[2].userns_outside = vec![ALICE];
        t.state().ignore_term = vec![600, 602];
        let target = Target {
            subuids: vec![(100_000, 65_536)],
            ..TARGET
        };
        assert_eq!(count(&t, target.clone()).unwrap(), 2);
        let step = terminate(&t, target.clone()).unwrap();
        assert_eq!(step.left, 2);
        let step = kill(&t, target).unwrap();
        assert_eq!(step.left, 0);
        assert_eq!(t.pids(), vec![601]);
    }

    #[test]
    fn given_more_threads_than_are_looked_at_then_the_process_counts_as_carrying() {
        let t = FakeProcesses::default();
        t.add(700, ALICE, ALICE_GROUP, &[], "many threads");
        t.state().processes[0].unexamined_threads = true;
        t.add(701, BOB, BOB, &[], "bob's many threads");
        t.state().processes[1].unexamined_threads = true;
        assert_eq!(count(&t, TARGET).unwrap(), 1);
    }

    #[test]
    fn given_a_failure_after_signals_then_the_step_says_what_it_did_and_resumes_what_it_stopped() {
        let t = table();
        t.state().ignore_term.push(100);
        // The table fails from the second read of the kill step on.
        struct FailingAfter(FakeProcesses, std::sync::Mutex<usize>);
        impl ProcessTable for FailingAfter {
            fn list(&self) -> std::io::Result<Vec<Process>> {
                let mut n = self.1.lock().unwrap();
                *n += 1;
                if *n > 1 {
                    return Err(std::io::Error::other("simulated"));
                }
                self.0.list()
            }
            fn signal(
                &self,
                p: &Process,
                o: &crate::processes::Owner,
                g: Option<u32>,
                s: Signal,
            ) -> std::io::Result<Sent> {
                self.0.signal(p, o, g, s)
            }
            fn resume(&self, p: &Process, o: &crate::processes::Owner) -> std::io::Result<Sent> {
                self.0.resume(p, o)
            }
            fn freeze(&self, uid: u32, gid: u32) -> std::io::Result<()> {
                self.0.freeze(uid, gid)
            }
            fn write_terminal(&self, d: u64, u: u32, l: &str) -> std::io::Result<()> {
                self.0.write_terminal(d, u, l)
            }
        }
        let failing = FailingAfter(t.clone(), std::sync::Mutex::new(0));
        let failed = kill(&failing, TARGET).unwrap_err();
        assert!(failed.step.left > 0, "never none left on an error");
        assert!(t.alive(100));
        assert!(t.state().stopped.is_empty(), "what pimd stopped runs again");
    }

    #[test]
    fn given_a_new_grant_of_the_group_while_the_step_runs_then_nothing_is_killed_and_all_run() {
        let t = table();
        t.state().ignore_term.push(100);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        // The grant starts after the step's first look.
        let abort = || calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1;
        let failed = kill_unless(&t, TARGET, &abort).unwrap_err();
        assert_eq!(failed.error.kind(), std::io::ErrorKind::Interrupted);
        assert!(t.alive(100) && t.alive(101));
        assert!(t.state().stopped.is_empty(), "what pimd stopped runs again");
        assert!(!t
            .state()
            .signals
            .iter()
            .any(|s| s.1 == Signal::KILL.as_raw()));
    }
}
