use super::*;
use crate::model::FleetSync;

const NOW: i64 = 1_800_000_000;
const TEN_MINUTES: u64 = 600;

fn policy() -> Config {
    let text = "[roles.admin]\ngroup = \"sudo\"\n[roles.dba]\ngroup = \"postgres\"\n";
    let (config, problems) = pim_config::parse_policy(text, "policy.toml", &Everyone);
    assert!(problems.is_empty(), "{problems:?}");
    config.unwrap()
}

struct Everyone;

impl pim_config::Directory for Everyone {
    fn user_exists(&self, _: &str) -> bool {
        true
    }
    fn group_exists(&self, _: &str) -> bool {
        true
    }
}

fn fleet_grant(id: i64, user: &str, role: &str, group: &str, ends_at: i64) -> FleetGrant {
    FleetGrant {
        id,
        user: user.into(),
        role: role.into(),
        group: group.into(),
        started_at: NOW - 60,
        ends_at,
        reason: "r".into(),
        ticket: String::new(),
        request_id: None,
        only_host: None,
    }
}

fn local(id: i64, user: &str, role: &str, ends_at: i64) -> Grant {
    Grant {
        id,
        user: user.into(),
        role: role.into(),
        group: "sudo".into(),
        started_at: NOW - 60,
        ends_at,
        reason: "r".into(),
        ticket: String::new(),
        request_id: None,
        ended_at: None,
        end_reason: None,
    }
}

/// The time since boot at NOW (the host booted BOOTED seconds before NOW).
const BOOTED: i64 = 10_000;

fn boot_now() -> Boot {
    Boot {
        id: "boot-1".into(),
        secs: BOOTED,
    }
}

/// A synchronisation at `at` by the wall clock, which has not been set since.
fn synced(at: i64, db_now: i64) -> FleetSync {
    FleetSync {
        synced_at: at,
        db_now,
        policy_version: 1,
        boot: Boot {
            id: "boot-1".into(),
            secs: BOOTED - (NOW - at),
        },
    }
}

#[test]
fn given_a_recent_synchronisation_with_clocks_agreeing_then_the_host_is_fresh() {
    let sync = synced(NOW - 60, NOW - 58);
    assert_eq!(
        freshness(Some(&sync), NOW, &boot_now(), TEN_MINUTES),
        Ok(())
    );
    let sync = synced(NOW - TEN_MINUTES as i64, NOW - TEN_MINUTES as i64);
    assert_eq!(
        freshness(Some(&sync), NOW, &boot_now(), TEN_MINUTES),
        Ok(())
    );
}

#[test]
fn given_no_synchronisation_yet_then_the_host_is_stale() {
    assert_eq!(
        freshness(None, NOW, &boot_now(), TEN_MINUTES),
        Err(Stale::NeverSynced)
    );
}

#[test]
fn given_the_last_synchronisation_older_than_max_staleness_then_the_host_is_stale() {
    let at = NOW - TEN_MINUTES as i64 - 1;
    let stale = freshness(Some(&synced(at, at)), NOW, &boot_now(), TEN_MINUTES).unwrap_err();
    assert_eq!(stale, Stale::TooLong { synced_at: at });
    let told = stale.describe(NOW, TEN_MINUTES);
    assert!(told.contains("more than max_staleness (10m) ago"), "{told}");
}

#[test]
fn given_a_clock_skewed_from_the_database_s_then_the_host_is_stale_either_way() {
    let ahead = freshness(Some(&synced(NOW, NOW - 31)), NOW, &boot_now(), TEN_MINUTES).unwrap_err();
    assert_eq!(ahead, Stale::Skewed { skew: 31 });
    assert!(ahead.describe(NOW, TEN_MINUTES).contains("31 s ahead of"));
    let behind =
        freshness(Some(&synced(NOW, NOW + 45)), NOW, &boot_now(), TEN_MINUTES).unwrap_err();
    assert!(behind.describe(NOW, TEN_MINUTES).contains("45 s behind"));
    assert_eq!(
        freshness(Some(&synced(NOW, NOW + 30)), NOW, &boot_now(), TEN_MINUTES),
        Ok(())
    );
}

#[test]
fn given_a_clock_set_back_before_the_last_synchronisation_then_the_host_is_stale() {
    let sync = synced(NOW + 120, NOW + 120);
    assert!(matches!(
        freshness(Some(&sync), NOW, &boot_now(), TEN_MINUTES),
        Err(Stale::Skewed { .. })
    ));
}

#[test]
fn given_the_wall_clock_set_back_after_a_synchronisation_then_its_age_since_boot_still_counts() {
    // Synchronised 11 minutes ago by the time since boot; the wall clock was then set back
    // 11 minutes, so by it the synchronisation is just now.
    let sync = FleetSync {
        boot: Boot {
            id: "boot-1".into(),
            secs: BOOTED - 660,
        },
        ..synced(NOW, NOW)
    };
    assert_eq!(
        freshness(Some(&sync), NOW, &boot_now(), TEN_MINUTES),
        Err(Stale::TooLong { synced_at: NOW })
    );
}

#[test]
fn given_a_synchronisation_from_another_boot_or_none_recorded_then_the_host_is_stale() {
    let sync = synced(NOW - 60, NOW - 60);
    let rebooted = Boot {
        id: "boot-2".into(),
        secs: 30,
    };
    let stale = freshness(Some(&sync), NOW, &rebooted, TEN_MINUTES).unwrap_err();
    assert_eq!(stale, Stale::OtherBoot);
    assert!(stale.describe(NOW, TEN_MINUTES).contains("since it booted"));
    // A row from before boots were recorded.
    let unknown = FleetSync {
        boot: Boot::default(),
        ..sync.clone()
    };
    assert_eq!(
        freshness(Some(&unknown), NOW, &boot_now(), TEN_MINUTES),
        Err(Stale::OtherBoot)
    );
}

#[test]
fn given_a_boot_id_that_cannot_be_read_then_the_host_is_stale_and_the_reason_says_so() {
    let sync = synced(NOW - 60, NOW - 60);
    let unreadable = Boot::default();
    for recorded in [
        sync.clone(),
        FleetSync {
            boot: Boot::default(),
            ..sync
        },
    ] {
        let stale = freshness(Some(&recorded), NOW, &unreadable, TEN_MINUTES).unwrap_err();
        assert_eq!(stale, Stale::BootUnknown);
        let told = stale.describe(NOW, TEN_MINUTES);
        assert!(told.contains("cannot read its boot id"), "{told}");
        assert!(!told.contains("booted"), "{told}");
    }
}

#[test]
fn given_a_fetch_then_the_database_s_clock_is_placed_at_its_beginning_as_near_as_can_be_told() {
    // The answer came 20 s after the fetch began; the database read its clock in between.
    let (began, answered) = (NOW, NOW + 20);
    // Clocks that agree: the database's is the host's.
    assert_eq!(db_clock_at(began, answered, NOW + 10), began);
    assert_eq!(db_clock_at(began, answered, NOW + 20), began);
    // The host 50 s ahead: its clock was at least 50 s ahead when the fetch began.
    assert_eq!(db_clock_at(began, answered, NOW - 50), NOW - 50);
    // The host 50 s behind: at least 50 s behind, however long the answer took.
    assert_eq!(db_clock_at(began, answered, NOW + 70), NOW + 50);
    // An answer "before" the fetch (the wall clock set back meanwhile): the database's own
    // reading, as for an answer at once.
    assert_eq!(db_clock_at(began, NOW - 5, NOW + 3), NOW + 3);
}

#[test]
fn given_a_fresh_snapshot_then_new_grants_start_missing_ones_end_and_moved_ends_move() {
    let mirrored = vec![
        (10, local(1, "alice", "admin", NOW + 600)),
        (11, local(2, "bob", "admin", NOW + 600)),
    ];
    let snapshot = vec![
        fleet_grant(10, "alice", "admin", "sudo", NOW + 900),
        fleet_grant(12, "carol", "dba", "postgres", NOW + 600),
    ];
    let plan = plan(&policy(), &mirrored, Some(&snapshot), Ok(()), NOW);
    assert_eq!(plan.start, vec![snapshot[1].clone()]);
    assert_eq!(
        plan.end,
        vec![(mirrored[1].1.clone(), EndWhy::GoneFromFleet)]
    );
    assert_eq!(plan.moved, vec![(mirrored[0].1.clone(), NOW + 900)]);
    assert!(plan.ignored.is_empty());
}

#[test]
fn given_the_mirror_equal_to_the_snapshot_then_there_is_nothing_to_do() {
    let mirrored = vec![(10, local(1, "alice", "admin", NOW + 600))];
    let snapshot = vec![fleet_grant(10, "alice", "admin", "sudo", NOW + 600)];
    assert_eq!(
        plan(&policy(), &mirrored, Some(&snapshot), Ok(()), NOW),
        Plan::default()
    );
}

#[test]
fn given_a_stale_host_then_every_mirrored_grant_ends_and_nothing_starts() {
    let mirrored = vec![(10, local(1, "alice", "admin", NOW + 600))];
    let snapshot = vec![
        fleet_grant(10, "alice", "admin", "sudo", NOW + 600),
        fleet_grant(12, "carol", "dba", "postgres", NOW + 600),
    ];
    for snapshot in [Some(snapshot.as_slice()), None] {
        let plan = plan(&policy(), &mirrored, snapshot, Err(Stale::NeverSynced), NOW);
        assert!(plan.start.is_empty());
        assert_eq!(
            plan.end,
            vec![(mirrored[0].1.clone(), EndWhy::Stale(Stale::NeverSynced))]
        );
    }
}

#[test]
fn given_an_unreachable_authority_while_still_fresh_then_the_mirror_stays_as_it_is() {
    let mirrored = vec![(10, local(1, "alice", "admin", NOW + 600))];
    assert_eq!(
        plan(&policy(), &mirrored, None, Ok(()), NOW),
        Plan::default()
    );
}

#[test]
fn given_a_resync_after_staleness_then_the_live_grants_start_again_and_the_expired_do_not() {
    let snapshot = vec![
        fleet_grant(10, "alice", "admin", "sudo", NOW + 600),
        fleet_grant(11, "bob", "admin", "sudo", NOW),
    ];
    let plan = plan(&policy(), &[], Some(&snapshot), Ok(()), NOW);
    assert_eq!(plan.start, vec![snapshot[0].clone()]);
}

#[test]
fn given_a_fleet_grant_of_a_role_or_group_the_policy_does_not_have_then_it_is_ignored_saying_why() {
    let snapshot = vec![
        fleet_grant(10, "alice", "nosuch", "sudo", NOW + 600),
        fleet_grant(11, "alice", "dba", "sudo", NOW + 600),
        fleet_grant(12, "kim\u{1b}[2J", "admin", "sudo", NOW + 600),
    ];
    let plan = plan(&policy(), &[], Some(&snapshot), Ok(()), NOW);
    assert!(plan.start.is_empty());
    let why: Vec<&str> = plan.ignored.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(why.len(), 3);
    assert!(why[0].contains("role 'nosuch' is not in this host's policy"));
    assert!(why[1].contains("grants group postgres in this host's policy, not 'sudo'"));
    assert!(why[2].contains("the user name"));
}

#[test]
fn given_two_fleet_grants_of_one_user_and_role_then_only_the_first_starts() {
    let snapshot = vec![
        fleet_grant(10, "alice", "admin", "sudo", NOW + 600),
        fleet_grant(11, "alice", "admin", "sudo", NOW + 900),
    ];
    let plan = plan(&policy(), &[], Some(&snapshot), Ok(()), NOW);
    assert_eq!(plan.start, vec![snapshot[0].clone()]);
    assert_eq!(plan.ignored.len(), 1);
}

#[test]
fn given_a_mirrored_grant_whose_role_left_the_policy_then_it_ends_even_if_the_fleet_still_lists_it()
{
    let mirrored = vec![(10, local(1, "alice", "gone", NOW + 600))];
    let snapshot = vec![fleet_grant(10, "alice", "gone", "sudo", NOW + 600)];
    let plan = plan(&policy(), &mirrored, Some(&snapshot), Ok(()), NOW);
    assert_eq!(
        plan.end,
        vec![(mirrored[0].1.clone(), EndWhy::GoneFromFleet)]
    );
    assert!(plan.start.is_empty());
}

#[test]
fn given_no_policy_yet_and_no_snapshot_then_mirrored_grants_end() {
    let mirrored = vec![(10, local(1, "alice", "admin", NOW + 600))];
    let (empty, _) = pim_config::parse_policy("", "policy.toml", &Everyone);
    let plan = plan(&empty.unwrap(), &mirrored, None, Ok(()), NOW);
    assert_eq!(
        plan.end,
        vec![(mirrored[0].1.clone(), EndWhy::GoneFromFleet)]
    );
}
