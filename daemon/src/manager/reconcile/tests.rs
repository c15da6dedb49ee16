//! Tests of time-driven work (expiry, orphans, deadlines, set-group-ID sweeps), over the
//! shared environment of `test_support`.

use super::*;
use crate::clock::fake::FakeClock;
use crate::manager::test_support::*;
use crate::store::sqlite::SqliteStore;

#[test]
fn given_live_grant_then_reconcile_removes_membership_exactly_at_its_end() {
    let mut e = env();
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.m.take_outbox();
    e.set(grant.ends_at - 1);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_eq!(e.grants("alice").len(), 1);
    assert!(e.event_kinds().is_empty());

    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert_eq!(e.accounts.calls(), ["-a alice docker", "-d alice docker"]);
    let ended = e.last_ended("alice", "docker");
    assert_eq!(ended.ended_at, Some(grant.ends_at));
    assert_eq!(ended.end_reason.as_deref(), Some("expired"));

    let expired = e.audited("expire");
    assert_eq!(expired.len(), 1);
    let r = &expired[0];
    assert_eq!(
        (
            r.actor.as_str(),
            r.user.as_str(),
            r.role.as_str(),
            r.outcome.as_str()
        ),
        ("pimd", "alice", "docker", "success")
    );
    assert_eq!(e.audited("membership-remove").len(), 1);
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "grant-ended");
    assert_eq!(events[0].grant_id, grant.id);

    // Nothing more to do.
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.calls().len(), 2);
}

#[test]
fn given_two_roles_on_one_group_then_membership_lasts_until_the_last_grant_ends() {
    let mut e = env();
    e.enrol("alice");
    let rescue = e.activate("alice", "rescue", 0, "", "", "").unwrap().grant;
    assert_eq!(rescue.ends_at, T0 + 1800);
    let admin = e.activate_admin("alice", 0).unwrap().grant;
    assert!(admin.ends_at > rescue.ends_at);
    assert_eq!(e.accounts.calls(), ["-a alice sudo"]);

    e.set(rescue.ends_at);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    assert!(e.managed("alice", "sudo"));
    assert_eq!(e.grants("alice"), std::slice::from_ref(&admin));

    e.set(admin.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("sudo").is_empty());
    assert!(!e.managed("alice", "sudo"));
    assert_eq!(e.accounts.calls(), ["-a alice sudo", "-d alice sudo"]);
}

#[test]
fn given_grants_and_requests_then_next_deadline_is_the_earliest() {
    let mut e = env();
    assert_eq!(e.m.next_deadline().unwrap(), None);
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "rescue", 600, "", "", "").unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), Some(T0 + 600));

    e.enrol("alice");
    let id = e.file_db_request("alice");
    let expires = e.request(id).expires_at;
    assert_eq!(expires, e.now() + HOUR);

    e.set(T0 + 600);
    e.m.reconcile().unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), Some(T0 + HOUR));
    e.set(T0 + HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), Some(expires));
    e.set(expires);
    e.m.reconcile().unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), None);
}

#[test]
fn given_orphaned_membership_then_reconcile_removes_it() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    // What a crash can leave: bob was added by gpasswd but his grant never committed (or
    // ended without the membership being taken back); carol's record has no gpasswd behind
    // it at all.
    e.accounts.add_group("docker", &["alice", "bob"]);
    let entry = AuditEntry {
        at: T0,
        actor: "test".into(),
        action: AuditAction::Activate,
        user: "bob".into(),
        role: "docker".into(),
        outcome: Outcome::Success,
        reason: String::new(),
        ticket: String::new(),
        detail: String::new(),
    };
    e.m.store
        .write(|tx| {
            tx.add_membership("bob", "docker", T0)?;
            tx.add_membership("carol", "sudo", T0)?;
            tx.audit(entry)
        })
        .unwrap();

    e.m.reconcile().unwrap();
    assert_eq!(
        e.accounts.members("docker"),
        ["alice"],
        "alice's grant is live"
    );
    assert!(!e.managed("bob", "docker"));
    assert!(!e.managed("carol", "sudo"));
    assert!(e.managed("alice", "docker"));
    assert_eq!(e.accounts.calls(), ["-a alice docker", "-d bob docker"]);
    let removed: Vec<String> = e
        .audited("membership-remove")
        .into_iter()
        .map(|r| r.user)
        .collect();
    assert_eq!(removed, ["bob", "carol"]);
}

mod setgid_sweeps {
    use super::*;
    use crate::setgid::fake::FakeSetgidFiles;
    use crate::setgid::{sweep_round, Target};

    const SUDO_GID: u32 = 27;
    const COPY: &str = "/home/alice/mycat";

    /// alice's copy of cat, set-group-ID for sudo, and root's set-group-ID file of the group.
    fn files() -> FakeSetgidFiles {
        let files = FakeSetgidFiles::default();
        files.state().users.insert("alice".into(), 1000);
        files.state().groups.insert("sudo".into(), SUDO_GID);
        files.add_file(COPY, 1000, SUDO_GID, 0o2755);
        files.add_file("/usr/bin/rootcat", 0, SUDO_GID, 0o2755);
        files
    }

    /// The fixture with sudo's gid as the files have it.
    fn setup() -> (Env, FakeSetgidFiles) {
        let e = env();
        e.accounts.set_gid("sudo", SUDO_GID);
        (e, files())
    }

    /// One round as the daemon runs it; returns whether it asks for another at once.
    fn round(e: &mut Env, files: &FakeSetgidFiles) -> bool {
        let jobs = e.m.setgid_sweeps_due().unwrap();
        let results = sweep_round(files, jobs);
        e.m.record_setgid_sweeps(results).unwrap()
    }

    fn details(e: &mut Env, action: &str) -> Vec<String> {
        e.audited(action).into_iter().map(|r| r.detail).collect()
    }

    #[test]
    fn given_a_grant_ended_then_the_copy_is_cleared_audited_and_the_sweep_done_after_a_clean_walk()
    {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty(), "live grant");
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();

        assert!(
            round(&mut e, &files),
            "a walk that cleared something is checked again"
        );
        assert_eq!(files.mode(COPY), 0o755);
        assert_eq!(files.mode("/usr/bin/rootcat"), 0o2755);
        assert_eq!(
            details(&mut e, "setgid-clear"),
            [format!(
                "group sudo: \"{COPY}\" (device 254:0, inode 7): set-group-ID cleared, mode \
                 2755 -> 0755"
            )]
        );
        assert!(!round(&mut e, &files));
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
        assert_eq!(
            details(&mut e, "setgid-sweep"),
            [
                "1 file(s) cleared; pimd looks again to make sure none is left",
                "no file of alice is set-group-ID for group sudo any more",
            ]
        );
        assert_eq!(files.state().walks, 2);
    }

    #[test]
    fn given_two_roles_sharing_a_group_then_no_sweep_while_the_other_grant_lives() {
        let (mut e, files) = setup();
        e.enrol("alice");
        e.activate_admin("alice", 600).unwrap();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
        assert_eq!(files.mode(COPY), 0o2755);

        e.m.deactivate(&e.who("alice"), "admin").unwrap();
        let jobs = e.m.setgid_sweeps_due().unwrap();
        assert_eq!(jobs.len(), 1, "one sweep for the group: {jobs:?}");
        assert_eq!(
            (jobs[0].user.as_str(), jobs[0].group.as_str()),
            ("alice", "sudo")
        );
    }

    #[test]
    fn given_a_user_who_holds_the_group_again_outside_pim_then_no_sweep_until_they_do_not() {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        e.accounts.add_group("sudo", &["alice"]);
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
        assert_eq!(files.mode(COPY), 0o2755);

        e.accounts.add_group("sudo", &[]);
        round(&mut e, &files);
        assert_eq!(files.mode(COPY), 0o755);
    }

    #[test]
    fn given_an_expiry_then_the_sweep_is_due_like_after_deactivate() {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.advance(601);
        e.m.reconcile().unwrap();
        round(&mut e, &files);
        assert_eq!(files.mode(COPY), 0o755);
    }

    #[test]
    fn given_a_process_still_carrying_the_group_then_the_sweep_waits_until_it_is_gone() {
        let (mut e, files) = setup();
        let alice_sudo = Target {
            uid: 1000,
            gid: SUDO_GID,
        };
        files.state().carried.insert(alice_sudo);
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();

        assert!(
            !round(&mut e, &files),
            "the old login could make more at once"
        );
        assert_eq!(files.mode(COPY), 0o755, "the first walk does not wait");
        // The old login makes another copy: not looked for while it lives.
        files.add_file("/tmp/late", 1000, SUDO_GID, 0o2755);
        e.advance(60);
        round(&mut e, &files);
        assert_eq!(files.state().walks, 1);
        assert_eq!(files.mode("/tmp/late"), 0o2755);

        files.state().carried.clear();
        e.advance(60);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/late"), 0o755);
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
    }

    #[test]
    fn given_a_file_that_cannot_be_cleared_then_the_failure_is_audited_and_retried_later() {
        let (mut e, files) = setup();
        files.state().stuck.insert(COPY.into());
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();

        assert!(!round(&mut e, &files));
        let failures: Vec<AuditRecord> = e
            .audited("setgid-clear")
            .into_iter()
            .filter(|r| r.outcome == "error")
            .collect();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(
            failures[0].detail,
            format!("group sudo: \"{COPY}\": Operation not permitted; pimd tries again")
        );
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty(), "backing off");

        files.state().stuck.clear();
        e.advance(60);
        while round(&mut e, &files) {}
        assert_eq!(files.mode(COPY), 0o755);
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
    }

    /// Ends alice's grant of sudo and runs rounds until none asks for another.
    fn grant_and_end(e: &mut Env, files: &FakeSetgidFiles) {
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        while round(e, files) {}
    }

    fn sweep_done(e: &mut Env) -> bool {
        details(e, "setgid-sweep")
            .last()
            .is_some_and(|d| d.starts_with("no file of alice"))
    }

    #[test]
    fn given_a_copy_set_user_and_set_group_id_then_both_bits_are_cleared_and_audited() {
        let (mut e, files) = setup();
        files.add_file("/home/alice/both", 1000, SUDO_GID, 0o6755);
        grant_and_end(&mut e, &files);
        assert_eq!(files.mode("/home/alice/both"), 0o755);
        let both = details(&mut e, "setgid-clear")
            .into_iter()
            .find(|d| d.contains("both"))
            .unwrap();
        assert!(
            both.contains(
                "\"/home/alice/both\" (device 254:0, inode 7): set-user-ID and set-group-ID \
                 cleared, mode 6755 -> 0755"
            ),
            "{both}"
        );
    }

    /// 1000 decoys do not hide the interesting file: every file is listed, in bounded records.
    #[test]
    fn given_more_files_than_one_record_holds_then_every_one_is_listed_in_several_records() {
        let (mut e, files) = setup();
        for i in 0..1100 {
            files.add_file(&format!("/tmp/decoy{i:04}"), 1000, SUDO_GID, 0o2755);
        }
        files.add_file("/srv/zz-interesting", 1000, SUDO_GID, 0o2755);
        grant_and_end(&mut e, &files);
        let records = details(&mut e, "setgid-clear");
        assert_eq!(records.len(), 1102_usize.div_ceil(SWEEP_RECORD_ITEMS));
        assert!(records.iter().all(|r| r.len() < 64 * 1024));
        let listed: usize = records
            .iter()
            .map(|r| r.matches("set-group-ID cleared").count())
            .sum();
        assert_eq!(listed, 1102);
        assert!(records
            .iter()
            .any(|r| r.contains("\"/srv/zz-interesting\"")));
    }

    /// alice is offboarded and the group recreated with another gid: the sweep still looks for
    /// the numbers the grant had, never the new group's.
    #[test]
    fn given_the_user_gone_and_the_group_recreated_then_the_recorded_ids_are_swept() {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        files.state().users.clear();
        files.state().groups.insert("sudo".into(), 4242);
        files.add_file("/home/carol/new-sudo", 1000, 4242, 0o2755);
        e.accounts.remove_user("alice");
        e.accounts.set_gid("sudo", 4242);
        while round(&mut e, &files) {}
        assert_eq!(files.mode(COPY), 0o755);
        assert_eq!(files.mode("/home/carol/new-sudo"), 0o2755);
        assert!(sweep_done(&mut e));
        // And a directory outage changes nothing either.
        assert_eq!(
            files.state().walks_for[0],
            [Target {
                uid: 1000,
                gid: SUDO_GID
            }]
        );
    }

    #[test]
    fn given_an_entry_vanishing_during_the_walk_then_the_sweep_is_not_done() {
        let (mut e, files) = setup();
        files.state().vanishing.push("/tmp/moved".into());
        grant_and_end(&mut e, &files);
        assert!(!sweep_done(&mut e));
        let failures = details(&mut e, "setgid-clear");
        assert!(
            failures
                .iter()
                .any(|d| d.contains("\"/tmp/moved\": moved or removed during the walk")),
            "{failures:?}"
        );
        files.state().vanishing.clear();
        e.advance(60);
        while round(&mut e, &files) {}
        assert!(sweep_done(&mut e));
    }

    #[test]
    fn given_mounts_never_searched_then_each_sweep_audits_them() {
        let (mut e, files) = setup();
        files.state().not_searched.push("\"/net\" (nfs4)".into());
        grant_and_end(&mut e, &files);
        let sweep = details(&mut e, "setgid-sweep");
        assert!(
            sweep
                .iter()
                .any(|d| d.contains("not searched") && d.contains("\"/net\" (nfs4)")),
            "{sweep:?}"
        );
        assert!(
            sweep_done(&mut e),
            "what cannot be searched does not hold the sweep"
        );
    }

    /// A copy that comes back after a sweep is done (linked back from a descriptor kept open,
    /// or moved ahead of the walk) is found by the looks again: daily for 30 days after the
    /// end, and at each start of pimd.
    #[test]
    fn given_a_done_sweep_then_it_is_walked_again_daily_and_at_each_start_for_30_days() {
        let dir = std::env::temp_dir().join(format!("pim-recheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = dir.join("pim.db");
        let mut e = env_with(SqliteStore::open(&db).unwrap(), FakeClock::at(T0));
        e.accounts.set_gid("sudo", SUDO_GID);
        let files = files();
        grant_and_end(&mut e, &files);
        assert!(sweep_done(&mut e));
        assert!(
            e.m.setgid_sweeps_due().unwrap().is_empty(),
            "not again within a day"
        );

        files.add_file("/tmp/linked-back", 1000, SUDO_GID, 0o2755);
        e.advance(DAY_SECS);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/linked-back"), 0o755);
        assert!(sweep_done(&mut e), "found, cleared, and done again");

        // A restart looks again at once.
        files.add_file("/tmp/after-restart", 1000, SUDO_GID, 0o2755);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/after-restart"), 0o2755);
        let mut e = env_with(SqliteStore::open(&db).unwrap(), e.clock.clone());
        e.accounts.set_gid("sudo", SUDO_GID);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/after-restart"), 0o755);

        e.advance(SWEEP_RECHECK_DAYS * DAY_SECS);
        while round(&mut e, &files) {}
        files.add_file("/tmp/too-late", 1000, SUDO_GID, 0o2755);
        let walks = files.state().walks;
        e.advance(DAY_SECS);
        assert!(
            e.m.setgid_sweeps_due().unwrap().is_empty(),
            "30 days are over"
        );
        assert_eq!(files.state().walks, walks);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
