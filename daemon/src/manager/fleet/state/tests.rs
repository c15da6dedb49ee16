use super::super::tests::fleet_env;
use super::*;
use crate::manager::test_support::*;

#[test]
fn given_a_synchronised_host_then_root_reads_the_policys_roles_and_a_fresh_link() {
    let mut f = fleet_env();
    f.sync();
    let root = f.e.who("root");
    let state = f.e.m.fleet_state(&root).unwrap();
    assert_eq!((state.host.as_str(), state.policy_version), ("web7", 1));
    let roles: Vec<(&str, &str)> = state
        .roles
        .iter()
        .map(|r| (r.name.as_str(), r.group.as_str()))
        .collect();
    assert_eq!(roles, [("admin", "sudo"), ("docker", "docker")]);
    assert_eq!((state.last_sync, state.db_now), (T0, T0));
    assert_eq!(state.synced_policy_version, 1);
    assert_eq!(state.max_staleness_secs, 600);
    assert_eq!(state.stale, "");
    assert!(!state.unreachable);
}

#[test]
fn given_a_host_that_never_synchronised_then_the_state_says_so() {
    let mut f = fleet_env();
    let root = f.e.who("root");
    let state = f.e.m.fleet_state(&root).unwrap();
    assert_eq!(state.last_sync, 0);
    assert!(
        state.stale.contains("has not synchronised"),
        "{}",
        state.stale
    );
}

#[test]
fn given_the_authority_unreachable_past_max_staleness_then_the_state_is_stale_and_unreachable() {
    let mut f = fleet_env();
    f.sync();
    f.fake.fleet().reachable = false;
    f.advance(601);
    f.sync();
    let root = f.e.who("root");
    let state = f.e.m.fleet_state(&root).unwrap();
    assert!(state.unreachable);
    assert_eq!(state.last_sync, T0);
    assert!(
        state.stale.contains("more than max_staleness (10m) ago"),
        "{}",
        state.stale
    );
}

#[test]
fn given_a_caller_other_than_root_then_the_fleet_state_is_refused_and_audited() {
    let mut f = fleet_env();
    let alice = f.e.who("alice");
    let refused = f.e.m.fleet_state(&alice).unwrap_err();
    assert!(
        matches!(refused, PimError::PermissionDenied(_)),
        "{refused:?}"
    );
    assert_eq!(f.e.audited("fleet-state").len(), 1);
}

#[test]
fn given_a_host_not_in_a_fleet_then_the_fleet_state_is_refused() {
    let mut e = env();
    let root = e.who("root");
    let refused = e.m.fleet_state(&root).unwrap_err();
    assert!(matches!(refused, PimError::Conflict(_)), "{refused:?}");
}
