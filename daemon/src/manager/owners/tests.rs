//! Owner scoping: an owner governs their role and no other; a non-owner non-admin is refused
//! every governance call, and every refusal is audited like an admin refusal.

use super::*;
use crate::manager::test_support::*;

/// The fixture with gina owning docker (directly) and erin owning db (through %ops).
fn owned() -> Env {
    let mut e = env();
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\nowners = [\"gina\"]\n",
    );
    let text = replaced(
        &text,
        "request_ttl = \"1h\"\n",
        "request_ttl = \"1h\"\nowners = [\"%ops\"]\n",
    );
    e.reload(&text);
    e
}

#[test]
fn given_owners_then_may_govern_is_root_admins_and_owners_of_that_role_only() {
    let e = owned();
    let root = e.who("root");
    let frank = e.who("frank");
    let gina = e.who("gina");
    let erin = e.who("erin");
    let hank = e.who("hank");
    for role in ["docker", "db", "admin", "nosuchrole"] {
        assert!(e.m.may_govern(&root, role), "root governs {role}");
    }
    for role in ["docker", "db", "admin"] {
        assert!(e.m.may_govern(&frank, role), "an admin governs {role}");
    }
    assert!(e.m.may_govern(&gina, "docker"));
    assert!(!e.m.may_govern(&gina, "db"));
    assert!(!e.m.may_govern(&gina, "admin"));
    assert!(e.m.may_govern(&erin, "db"), "owner through %ops");
    assert!(!e.m.may_govern(&erin, "docker"));
    for role in ["docker", "db", "admin", "nosuchrole"] {
        assert!(
            !e.m.may_govern(&hank, role),
            "hank governs nothing ({role})"
        );
    }
}

#[test]
fn given_an_owner_then_they_assign_unassign_and_revoke_their_role_and_are_refused_another() {
    let mut e = owned();
    let gina = e.who("gina");
    e.m.admin_assign(&gina, "dave", "docker", 0, 0).unwrap();
    assert!(e.docker_role_of("dave").is_some());
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    assert!(grant.id > 0);
    let revoked =
        e.m.admin_revoke(&gina, "dave", "docker", "left the team")
            .unwrap();
    assert_eq!(revoked.id, grant.id);
    assert!(!e.managed("dave", "docker"));
    e.m.admin_unassign(&gina, "dave", "docker").unwrap();
    assert!(e.docker_role_of("dave").is_none());

    // Another role: refused, with the admin refusal's shape, and audited.
    let m = assert_err!(
        e.m.admin_assign(&gina, "dave", "admin", 0, 0),
        PermissionDenied
    );
    assert!(m.contains("owner of role 'admin'"), "{m}");
    assert_err!(
        e.m.admin_unassign(&gina, "alice", "wheel"),
        PermissionDenied
    );
    let live = e.activate("alice", "rescue", 0, "", "", "").unwrap().grant;
    assert!(live.id > 0);
    assert_err!(
        e.m.admin_revoke(&gina, "alice", "rescue", "not mine to end"),
        PermissionDenied
    );
    assert!(e.managed("alice", "sudo"), "the grant runs on");
    let refused: Vec<(String, String, String)> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.actor == "gina" && r.outcome == "refused")
        .map(|r| (r.action.as_str().to_string(), r.user, r.role))
        .collect();
    let row = |a: &str, u: &str, r: &str| (a.to_string(), u.to_string(), r.to_string());
    assert_eq!(
        refused,
        [
            row("admin-assign", "dave", "admin"),
            row("admin-unassign", "alice", "wheel"),
            row("admin-revoke", "alice", "rescue"),
        ]
    );
}

#[test]
fn given_an_owner_then_admin_grants_shows_their_roles_only_and_a_non_owner_is_refused() {
    let mut e = owned();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let gina = e.who("gina");
    let roles: Vec<String> =
        e.m.admin_grants(&gina)
            .unwrap()
            .into_iter()
            .map(|g| g.role)
            .collect();
    assert_eq!(roles, ["docker"]);
    let frank = e.who("frank");
    assert_eq!(e.m.admin_grants(&frank).unwrap().len(), 2);
    let hank = e.who("hank");
    assert_err!(e.m.admin_grants(&hank), PermissionDenied);
}

#[test]
fn given_a_non_owner_non_admin_then_every_governance_call_is_refused_the_same_way() {
    let mut e = owned();
    let hank = e.who("hank");
    let existing = assert_err!(
        e.m.admin_assign(&hank, "dave", "docker", 0, 0),
        PermissionDenied
    );
    let missing = assert_err!(
        e.m.admin_assign(&hank, "dave", "nosuch", 0, 0),
        PermissionDenied
    );
    assert_eq!(
        existing.replace("docker", "X"),
        missing.replace("nosuch", "X"),
        "a role's existence is not told"
    );
    assert_err!(
        e.m.admin_unassign(&hank, "alice", "docker"),
        PermissionDenied
    );
    assert_err!(
        e.m.admin_revoke(&hank, "alice", "docker", "no reason"),
        PermissionDenied
    );
    let refused = e
        .audit_log()
        .into_iter()
        .filter(|r| r.actor == "hank" && r.outcome == "refused")
        .count();
    assert_eq!(refused, 4);
}

#[test]
fn given_an_owner_then_they_cannot_assign_their_role_to_themselves_but_an_admin_may() {
    let mut e = owned();
    let gina = e.who("gina");
    let m = assert_err!(
        e.m.admin_assign(&gina, "gina", "docker", 0, 0),
        PermissionDenied
    );
    assert!(m.contains("themselves"), "{m}");
    assert_err!(
        e.m.admin_assign_active(&gina, "gina", "docker", 0, T0 + HOUR, "self service"),
        PermissionDenied
    );
    assert!(e.grants("gina").is_empty());
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "frank", "docker", 0, 0).unwrap();
}

#[test]
fn given_an_owner_then_they_watch_the_events_of_their_role_only() {
    let e = owned();
    let gina = e.who("gina");
    let event = |role: &str| EventInfo {
        kind: EventKind::RequestFiled,
        user: "dave".into(),
        role: role.into(),
        ..EventInfo::default()
    };
    assert!(e.m.may_see(&gina, &event("docker")));
    assert!(!e.m.may_see(&gina, &event("admin")));
}
