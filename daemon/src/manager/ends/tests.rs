//! The manager's side of ending processes at a grant's end (manager_ends.rs), over the fake
//! process table.

use crate::manager::test_support::*;
use crate::processes::fake::FakeProcesses;
use crate::processes::ProcessTable;
use rustix::process::Signal;

const DOCKER_GID: u32 = 999;
const SUDO_GID: u32 = 27;
const ALICE: u32 = 1000;
const BOB: u32 = 1001;

/// alice's shell and its child carrying docker (the child ignores SIGTERM), her shell from
/// before the grant, and bob's shell as a member of docker outside PIM.
fn setup() -> (Env, FakeProcesses) {
    let e = env();
    e.accounts.set_gid("docker", DOCKER_GID);
    e.accounts.set_gid("sudo", SUDO_GID);
    let t = FakeProcesses::default();
    t.add(100, ALICE, ALICE, &[DOCKER_GID], "bash -l");
    t.add(101, ALICE, ALICE, &[DOCKER_GID], "stubborn");
    t.add(102, ALICE, ALICE, &[], "bash (from before)");
    t.add(103, BOB, BOB, &[DOCKER_GID], "bash");
    t.add(104, ALICE, ALICE, &[SUDO_GID], "bash (sudo)");
    t.state().ignore_term.push(101);
    (e, t)
}

/// One round of the ending loop as the daemon runs it; the steps that ran, as (kill, left).
fn round(e: &mut Env, t: &FakeProcesses) -> Vec<(bool, usize)> {
    let (jobs, failed) = e.m.endings_due().unwrap();
    assert!(failed.is_none(), "{failed:?}");
    let results: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let step = job.run(t);
            (job, step)
        })
        .collect();
    let ran = results
        .iter()
        .map(|(job, step)| (job.kill, step.as_ref().unwrap().left))
        .collect();
    e.m.record_endings(results).unwrap();
    ran
}

fn details(e: &mut Env, action: &str) -> Vec<String> {
    e.audited(action).into_iter().map(|r| r.detail).collect()
}

fn activate(e: &mut Env, role: &str, secs: u64) -> i64 {
    e.activate("alice", role, secs, "", "", "")
        .unwrap()
        .grant
        .id
}

#[test]
fn given_a_grant_expires_then_processes_carrying_the_group_get_sigterm_then_sigkill_after_the_grace(
) {
    let (mut e, t) = setup();
    let id = activate(&mut e, "docker", 600);
    assert!(e.m.endings_due().unwrap().0.is_empty(), "live grant");
    e.advance(600);
    e.m.reconcile().unwrap();
    e.m.take_outbox();

    assert_eq!(round(&mut e, &t), vec![(false, 1)]);
    assert!(!t.alive(100) && t.alive(101), "SIGTERM; 101 ignores it");
    assert!(
        t.alive(102) && t.alive(103) && t.alive(104),
        "{:?}",
        t.pids()
    );
    assert_eq!(
        details(&mut e, "processes-end"),
        [format!(
            "grant {id}: SIGTERM to 2 process(es) of alice carrying group docker: 100 'bash \
             -l', 101 'stubborn'; 1 left, SIGKILL in 10s"
        )]
    );
    assert_eq!(e.event_kinds(), ["processes-ended"]);

    e.advance(9);
    assert!(round(&mut e, &t).is_empty(), "within the grace");
    e.advance(1);
    assert_eq!(round(&mut e, &t), vec![(true, 0)]);
    assert!(!t.alive(101));
    assert_eq!(t.pids(), vec![102, 103, 104]);
    assert!(details(&mut e, "processes-end")[1].ends_with(
        "SIGKILL to 1 process(es) of alice carrying group docker: 101 'stubborn'; none left"
    ));
    e.advance(60);
    assert!(round(&mut e, &t).is_empty(), "done");
    let signalled: Vec<u32> = t.state().signals.iter().map(|s| s.0).collect();
    assert!(
        signalled.iter().all(|p| [100, 101].contains(p)),
        "{signalled:?}"
    );
}

#[test]
fn given_deactivate_or_revoke_then_the_processes_are_ended_too() {
    let (mut e, t) = setup();
    activate(&mut e, "docker", 600);
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    assert_eq!(round(&mut e, &t), vec![(false, 1)]);
    assert!(!t.alive(100));

    t.add(105, ALICE, ALICE, &[DOCKER_GID], "bash -l");
    activate(&mut e, "docker", 600);
    let frank = e.who("frank");
    e.m.admin_revoke(&frank, "alice", "docker", "leaving the team")
        .unwrap();
    // The first ending's SIGKILL step waits for its grace; the revoke's SIGTERM goes now.
    assert_eq!(round(&mut e, &t), vec![(false, 1)]);
    assert!(!t.alive(105));
    e.advance(10);
    assert_eq!(round(&mut e, &t), vec![(true, 0), (true, 0)]);
    assert!(!t.alive(101));
}

#[test]
fn given_another_live_grant_of_the_same_group_then_nothing_is_ended() {
    let (mut e, t) = setup();
    e.enrol("alice");
    activate(&mut e, "rescue", 600);
    let admin = e.activate_admin("alice", 1200).unwrap().grant.id;
    e.m.deactivate(&e.who("alice"), "rescue").unwrap();
    assert!(round(&mut e, &t).is_empty());
    assert!(t.alive(104) && t.state().signals.is_empty());
    assert_eq!(
        details(&mut e, "processes-end").last().unwrap(),
        &format!(
            "grant 1: processes left running: grant {admin} of role admin still covers group \
             sudo"
        )
    );
}

#[test]
fn given_on_end_keep_then_processes_are_left_running() {
    let (mut e, t) = setup();
    e.reload(&CONFIG.replace("[roles.docker]\n", "[roles.docker]\non_end = \"keep\"\n"));
    activate(&mut e, "docker", 600);
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    assert!(round(&mut e, &t).is_empty());
    assert!(t.alive(100) && t.state().signals.is_empty());
    assert!(details(&mut e, "processes-end").is_empty());
}

#[test]
fn given_the_user_is_back_in_the_group_outside_pim_then_nothing_is_ended() {
    let (mut e, t) = setup();
    activate(&mut e, "docker", 600);
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    // An administrator adds her by hand before the ending runs.
    e.accounts.add_group("docker", &["alice"]);
    assert!(round(&mut e, &t).is_empty());
    assert!(t.alive(100) && t.state().signals.is_empty());
    assert!(details(&mut e, "processes-end")[0]
        .ends_with("alice is a member of group docker outside PIM"));
}

#[test]
fn given_an_unreadable_process_table_then_the_ending_stays_open_and_runs_again() {
    let (mut e, t) = setup();
    activate(&mut e, "docker", 600);
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    t.state().fail_list = true;
    let (jobs, failed) = e.m.endings_due().unwrap();
    assert!(failed.is_none(), "{failed:?}");
    let results: Vec<_> = jobs
        .into_iter()
        .map(|j| {
            let step = j.run(&t);
            (j, step)
        })
        .collect();
    assert!(e.m.record_endings(results).is_err());
    t.state().fail_list = false;
    assert_eq!(round(&mut e, &t), vec![(false, 1)]);
}

#[test]
fn given_a_fork_loop_carrying_the_group_then_none_survives_the_kill_step() {
    let (mut e, t) = setup();
    activate(&mut e, "docker", 600);
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    t.add(200, ALICE, ALICE, &[DOCKER_GID], "forker");
    {
        let mut s = t.state();
        s.forking.push(200);
        s.ignore_term.push(200);
    }
    round(&mut e, &t);
    e.advance(10);
    assert_eq!(round(&mut e, &t), vec![(true, 0)]);
    assert_eq!(t.pids(), vec![102, 103, 104]);
    let kills = t
        .state()
        .signals
        .iter()
        .filter(|s| s.1 == Signal::KILL.as_raw())
        .count();
    assert!(kills > 2, "the children were killed too");
}

/// One round of warnings; how many terminals took each.
fn warn_round(e: &mut Env, t: &FakeProcesses) -> Vec<usize> {
    let (jobs, _) = e.m.warnings_due().unwrap();
    let results: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let n = job.run(t);
            (job, n)
        })
        .collect();
    let written = results.iter().map(|r| *r.1.as_ref().unwrap()).collect();
    e.m.record_warnings(results).unwrap();
    written
}

fn on_terminal(t: &FakeProcesses) {
    t.add_on_terminal(300, ALICE, ALICE, &[DOCKER_GID], "bash", &[34816]);
    t.state().terminals.push((34816, ALICE));
}

#[test]
fn given_a_grant_then_each_warning_is_written_once_at_its_lead_time() {
    let (mut e, t) = setup();
    on_terminal(&t);
    let id = activate(&mut e, "docker", 600);
    let end = e.now() + 600;
    assert_eq!(e.m.next_end_deadline().unwrap(), Some(end - 300));
    assert!(warn_round(&mut e, &t).is_empty());
    e.set(end - 300);
    assert_eq!(warn_round(&mut e, &t), vec![1]);
    assert!(warn_round(&mut e, &t).is_empty(), "never repeated");
    let written = t.state().written.clone();
    assert_eq!(written.len(), 1);
    assert!(written[0].2.contains("ends in 5m") && written[0].2.contains("pim extend docker"));
    assert_eq!(e.event_kinds().last().unwrap(), "grant-ending");
    e.set(end - 60);
    assert_eq!(warn_round(&mut e, &t), vec![1]);
    assert_eq!(
        details(&mut e, "end-warning"),
        [
            format!("grant {id} ends in 5m: warned on 1 terminal(s); 'pim extend docker' keeps it"),
            format!("grant {id} ends in 1m: warned on 1 terminal(s); 'pim extend docker' keeps it"),
        ]
    );
    e.set(end - 30);
    assert!(warn_round(&mut e, &t).is_empty());
}

#[test]
fn given_a_grant_shorter_than_a_lead_time_then_that_warning_is_not_sent() {
    let (mut e, t) = setup();
    on_terminal(&t);
    activate(&mut e, "docker", 120);
    let end = e.now() + 120;
    e.set(end - 100);
    assert!(
        warn_round(&mut e, &t).is_empty(),
        "no 5m warning for a 2m grant"
    );
    e.set(end - 60);
    assert_eq!(warn_round(&mut e, &t), vec![1]);
}

#[test]
fn given_lead_times_passed_at_once_then_only_the_last_warning_goes() {
    let (mut e, t) = setup();
    on_terminal(&t);
    activate(&mut e, "docker", 600);
    e.advance(600 - 30);
    assert_eq!(warn_round(&mut e, &t), vec![1]);
    assert!(warn_round(&mut e, &t).is_empty());
    assert_eq!(details(&mut e, "end-warning").len(), 1);
    assert!(t.state().written[0].2.contains("ends in 30s"));
}

#[test]
fn given_another_users_or_a_foreign_terminal_then_no_warning_is_written_there() {
    let (mut e, t) = setup();
    t.add_on_terminal(300, ALICE, ALICE, &[DOCKER_GID], "bash", &[34817]);
    t.add_on_terminal(301, BOB, BOB, &[DOCKER_GID], "bash", &[34818]);
    t.state().terminals = vec![(34817, BOB), (34818, BOB)];
    activate(&mut e, "docker", 600);
    e.advance(300);
    assert_eq!(warn_round(&mut e, &t), vec![0]);
    assert!(t.state().written.is_empty());
    assert!(t.list().unwrap().len() > 2);
}

#[test]
fn given_live_grants_then_status_counts_the_processes_carrying_each_group_and_tells_their_end() {
    let (mut e, _) = setup();
    for (pid, uid, groups) in [
        (100, ALICE, vec![DOCKER_GID]),
        (101, ALICE, vec![DOCKER_GID]),
        (103, BOB, vec![DOCKER_GID]),
    ] {
        e.processes.add(pid, uid, uid, &groups, "bash");
    }
    activate(&mut e, "docker", 600);
    e.reload(&CONFIG.replace("[roles.rescue]\n", "[roles.rescue]\non_end = \"keep\"\n"));
    activate(&mut e, "rescue", 600);
    let ends = e.m.grant_ends(&e.who("alice")).unwrap();
    let told: Vec<(i64, i64, &str, u64)> = ends
        .iter()
        .map(|g| (g.grant_id, g.processes, g.on_end.as_str(), g.end_grace_secs))
        .collect();
    assert_eq!(told, [(1, 2, "terminate", 10), (2, 0, "keep", 0)]);
    e.processes.state().fail_list = true;
    let ends = e.m.grant_ends(&e.who("alice")).unwrap();
    assert_eq!(ends[0].processes, -1, "not counted is not none");
}

#[test]
fn given_eligibility_ends_then_the_grants_processes_are_ended_too() {
    let (mut e, t) = setup();
    const DAVE: u32 = 1003;
    t.add(400, DAVE, DAVE, &[DOCKER_GID], "bash -l");
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 600, "", "", "").unwrap();
    e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert_eq!(round(&mut e, &t), vec![(false, 0)]);
    assert!(!t.alive(400));
    assert!(t.alive(100), "alice's processes are not dave's");
}

#[test]
fn given_a_lookup_failing_for_one_ending_then_it_waits_and_the_others_go_on() {
    let (mut e, t) = setup();
    activate(&mut e, "docker", 600);
    activate(&mut e, "rescue", 600);
    e.m.deactivate(&e.who("alice"), "rescue").unwrap();
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    e.accounts.unreachable("sudo");
    let (jobs, failed) = e.m.endings_due().unwrap();
    assert!(failed.unwrap().message().contains("sudo"));
    assert_eq!(
        jobs.iter().map(|j| j.group.as_str()).collect::<Vec<_>>(),
        ["docker"]
    );
    assert!(t.alive(104), "sudo's ending waits for the lookup");
    e.accounts.reachable("sudo");
    let (jobs, failed) = e.m.endings_due().unwrap();
    assert!(failed.is_none());
    assert_eq!(jobs.len(), 2);
}

#[test]
fn given_the_users_uid_now_names_someone_else_then_that_uid_is_not_ended() {
    let (mut e, t) = setup();
    activate(&mut e, "docker", 600);
    // alice's uid is renumbered and her old uid given to erin, whose shell carries docker as
    // a member outside PIM.
    e.accounts.remove_user("alice");
    e.accounts.add_user("alice", 1500);
    e.accounts.add_user("erin", ALICE);
    e.m.deactivate(&e.who("alice"), "docker").unwrap();
    for _ in 0..3 {
        round(&mut e, &t);
    }
    assert!(
        t.alive(100) && t.alive(101),
        "erin's processes are left alone"
    );
}

#[test]
fn given_a_warning_that_could_not_be_written_then_it_is_not_marked_sent_and_goes_later() {
    let (mut e, t) = setup();
    on_terminal(&t);
    activate(&mut e, "docker", 600);
    let end = e.now() + 600;
    e.set(end - 300);
    t.state().fail_list = true;
    let (jobs, _) = e.m.warnings_due().unwrap();
    let results: Vec<_> = jobs.into_iter().map(|j| (j.clone(), j.run(&t))).collect();
    assert!(results[0].1.is_err());
    assert!(e.m.record_warnings(results).is_err(), "tried again");
    t.state().fail_list = false;
    assert_eq!(
        warn_round(&mut e, &t),
        vec![1],
        "it goes once the table reads"
    );
}
