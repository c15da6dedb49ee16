//! The roles pimd runs on against the host: their groups exist, the groups the module gates
//! have roles (and sudoers' groups are gated), and who holds a gated group without a grant.
//! The roles are the configuration file's on a host of its own, the fleet's policy (as pimd
//! says it runs it) on a fleet host.

use super::config::ConfigFile;
use crate::doctor::findings::Finding;
use crate::doctor::{list, show, BUS_TIMEOUT, MODULE};
use pim_common::proxy::ManagerProxy;
use pim_common::text::escape;
use pim_common::types::FleetStateInfo;
use pim_config::Principal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What the role checks judge of one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGroup {
    pub name: String,
    pub group: String,
    pub permanent: Vec<Principal>,
}

/// Where the roles come from, for the findings to say where to change them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    File(PathBuf),
    /// The fleet's policy, at the version pimd runs.
    Fleet {
        version: i64,
    },
}

/// The roles pimd runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub source: RoleSource,
    pub roles: Vec<RoleGroup>,
}

impl Roles {
    /// A host of its own: the file's roles.
    pub fn of_file(config: &ConfigFile) -> Roles {
        Roles {
            source: RoleSource::File(config.path.clone()),
            roles: config
                .model
                .roles
                .values()
                .map(|r| RoleGroup {
                    name: r.name.clone(),
                    group: r.group.clone(),
                    permanent: r.permanent.clone(),
                })
                .collect(),
        }
    }

    /// A fleet host: the policy pimd runs, or why there is none to judge (the reason the
    /// role checks are skipped with).
    pub fn of_fleet(state: &FleetStateInfo) -> Result<Roles, String> {
        if state.policy_version == 0 {
            return Err(
                "roles come from the fleet policy; pimd has none yet (see fleet-link)".into(),
            );
        }
        let roles = state
            .roles
            .iter()
            .map(|r| {
                let permanent = r
                    .permanent
                    .iter()
                    .map(|p| Principal::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        format!(
                            "roles come from the fleet policy; pimd named a permanent principal                              of role {} that is not one: {}",
                            escape(&r.name),
                            escape(&e)
                        )
                    })?;
                Ok(RoleGroup {
                    name: r.name.clone(),
                    group: r.group.clone(),
                    permanent,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Roles {
            source: RoleSource::Fleet {
                version: state.policy_version,
            },
            roles,
        })
    }

    /// Where the roles are, as printed: "/etc/pim/pim.toml", "the fleet's policy (version 3)".
    fn shown(&self) -> String {
        match &self.source {
            RoleSource::File(path) => show(path),
            RoleSource::Fleet { version } => format!("the fleet's policy (version {version})"),
        }
    }

    /// Where to add a role, for a fix.
    fn where_to_add(&self) -> String {
        match &self.source {
            RoleSource::File(path) => show(path),
            RoleSource::Fleet { .. } => {
                "the fleet's policy file, then pim admin policy push FILE".to_string()
            }
        }
    }
}

pub fn check_groups(roles: &Roles, exists: &dyn Fn(&str) -> bool) -> Finding {
    const CHECK: &str = "groups";
    if roles.roles.is_empty() {
        let fix = match roles.source {
            RoleSource::File(_) => {
                "add a [roles.NAME] table (the shipped file has commented examples)".to_string()
            }
            RoleSource::Fleet { .. } => {
                format!("add a [roles.NAME] table to {}", roles.where_to_add())
            }
        };
        return Finding::warn(
            CHECK,
            format!(
                "{} defines no roles: nobody can activate anything",
                roles.shown()
            ),
            fix,
        );
    }
    let missing: Vec<String> = roles
        .roles
        .iter()
        .filter(|role| !exists(&role.group))
        .map(|role| format!("{} (role {})", escape(&role.group), escape(&role.name)))
        .collect();
    if missing.is_empty() {
        let groups: BTreeSet<&String> = roles.roles.iter().map(|r| &r.group).collect();
        Finding::pass(
            CHECK,
            format!(
                "every role's group exists: {}",
                groups
                    .into_iter()
                    .map(|g| escape(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        Finding::fail(
            CHECK,
            format!("missing groups: {}", missing.join(", ")),
            "create each with groupadd NAME, or fix the role's group =",
        )
    }
}

pub fn check_pam_groups(
    roles: &Roles,
    gated: &[String],
    sudoers: &BTreeSet<String>,
) -> Vec<Finding> {
    const CHECK: &str = "pam-groups";
    let role_groups: BTreeSet<&String> = roles.roles.iter().map(|r| &r.group).collect();
    let mut findings = Vec::new();
    if gated.is_empty() {
        findings.push(Finding::skip(
            CHECK,
            format!("{MODULE} is not in sudo's stack (see sudo-pam)"),
        ));
        return findings;
    }
    let orphans: Vec<String> = gated
        .iter()
        .filter(|g| !role_groups.contains(g))
        .cloned()
        .collect();
    if !orphans.is_empty() {
        findings.push(Finding::fail(
            CHECK,
            format!(
                "{MODULE} gates {} for sudo but no role grants it: every member is refused sudo \
                 (no grant is possible)",
                list(&orphans)
            ),
            format!(
                "add a role with group = \"{}\" to {} (list standing members in its \
                 permanent), or take the group off the module's groups=",
                escape(&orphans[0]),
                roles.where_to_add()
            ),
        ));
    }
    let escaping: Vec<String> = role_groups
        .iter()
        .filter(|g| sudoers.contains(g.as_str()) && !gated.contains(g))
        .map(|g| g.to_string())
        .collect();
    if !escaping.is_empty() {
        findings.push(Finding::fail(
            CHECK,
            format!(
                "sudoers gives rights to {} through a role, but {MODULE} does not gate it: \
                 shells opened during a grant keep sudo after it ends",
                escaping
                    .iter()
                    .map(|g| format!("%{}", escape(g)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "add {} to groups= on the {MODULE} line (with pam-auth-update: disable the pim \
                 profile and install your own profile with that line, see pam-auth-update(8))",
                list(&escaping)
            ),
        ));
    }
    if findings.is_empty() {
        findings.push(Finding::pass(
            CHECK,
            format!("every group {MODULE} gates has a role: {}", list(gated)),
        ));
    }
    findings
}

/// Members of gated groups who would be refused sudo: neither a live grant nor `permanent`.
pub fn standing_members(
    roles: &Roles,
    gated: &[String],
    members_of: &dyn Fn(&str) -> Vec<String>,
    granted: &BTreeSet<(String, String)>,
) -> BTreeMap<String, Vec<String>> {
    let mut standing = BTreeMap::new();
    for group in gated {
        let mut permanent = BTreeSet::new();
        for role in roles.roles.iter().filter(|r| &r.group == group) {
            for principal in &role.permanent {
                match principal {
                    Principal::Group(unix_group) => permanent.extend(members_of(unix_group)),
                    Principal::User(user) => {
                        permanent.insert(user.clone());
                    }
                }
            }
        }
        let left: Vec<String> = members_of(group)
            .into_iter()
            .filter(|m| !permanent.contains(m) && !granted.contains(&(m.clone(), group.clone())))
            .collect();
        if !left.is_empty() {
            standing.insert(group.clone(), left);
        }
    }
    standing
}

pub async fn check_members(
    roles: &Roles,
    gated: &[String],
    connection: Option<&zbus::Connection>,
) -> Finding {
    const CHECK: &str = "members";
    if gated.is_empty() {
        return Finding::skip(
            CHECK,
            format!("{MODULE} is not in sudo's stack (see sudo-pam)"),
        );
    }
    let Some(connection) = connection else {
        return Finding::skip(CHECK, "the daemon is not reachable (see daemon)");
    };
    let grants = async {
        let proxy = ManagerProxy::new(connection).await?;
        proxy.admin_grants().await.map_err(|e| match e {
            pim_common::PimError::ZBus(z) => z,
            other => zbus::Error::Failure(other.message().to_string()),
        })
    };
    let grants = match tokio::time::timeout(BUS_TIMEOUT, grants).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            return Finding::skip(
                CHECK,
                format!("cannot list the live grants: {}", escape(&e.to_string())),
            )
        }
        Err(_) => return Finding::skip(CHECK, "pimd did not list the live grants within 10 s"),
    };
    let granted: BTreeSet<(String, String)> =
        grants.into_iter().map(|g| (g.user, g.group)).collect();
    let members_of = |group: &str| match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => g.mem,
        _ => Vec::new(),
    };
    let standing = standing_members(roles, gated, &members_of, &granted);
    if standing.is_empty() {
        return Finding::pass(
            CHECK,
            format!(
                "every member of {} has a live grant or is permanent",
                list(gated)
            ),
        );
    }
    let described: Vec<String> = standing
        .iter()
        .map(|(group, users)| format!("{}: {}", escape(group), list(users)))
        .collect();
    Finding::warn(
        CHECK,
        format!(
            "members with neither a live grant nor a permanent listing, whom {MODULE} refuses \
             sudo: {}",
            described.join("; ")
        ),
        "list standing members in the role's permanent; take the others out (gpasswd -d \
         USER GROUP) and make them eligible instead; break-glass accounts belong outside the \
         group, with a sudoers rule of their own (pam_pim(8))",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;
    use crate::doctor::testing::config_file;

    /// A configuration of roles (name, group, permanent), read as pimd reads it.
    fn summary(roles: &[(&str, &str, &[&str])]) -> Roles {
        let text: String = roles
            .iter()
            .map(|(role, group, permanent)| {
                format!("[roles.{role}]\ngroup = \"{group}\"\npermanent = {permanent:?}\n")
            })
            .collect();
        Roles::of_file(&config_file(&text))
    }

    #[test]
    fn missing_groups_fail_and_no_roles_warns() {
        let config = summary(&[("admin", "sudo", &[]), ("db", "dbadmin", &[])]);
        let f = check_groups(&config, &|g| g == "sudo");
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("dbadmin (role db)"), "{f:?}");
        assert_eq!(check_groups(&config, &|_| true).status, Status::Pass);
        assert_eq!(check_groups(&summary(&[]), &|_| true).status, Status::Warn);
    }

    #[test]
    fn gated_groups_must_have_roles_and_sudoers_groups_must_be_gated() {
        let config = summary(&[("admin", "sudo", &[]), ("ops", "wheel", &[])]);
        let sudoers: BTreeSet<String> = ["sudo", "wheel"].iter().map(|s| s.to_string()).collect();
        let findings = check_pam_groups(&config, &["sudo".into()], &sudoers);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].status, Status::Fail);
        assert!(findings[0].message.contains("%wheel"), "{findings:?}");

        let findings = check_pam_groups(&summary(&[]), &["sudo".into()], &sudoers);
        assert_eq!(findings[0].status, Status::Fail);
        assert!(findings[0].message.contains("no role grants it"));

        let findings = check_pam_groups(&config, &["sudo".into(), "wheel".into()], &sudoers);
        assert_eq!(findings[0].status, Status::Pass, "{findings:?}");
    }

    #[test]
    fn standing_members_are_those_without_grant_or_permanence() {
        let config = summary(&[("admin", "sudo", &["breakglass", "%oncall"])]);
        let members_of = |g: &str| -> Vec<String> {
            match g {
                "sudo" => vec![
                    "alice".into(),
                    "bob".into(),
                    "breakglass".into(),
                    "carol".into(),
                ],
                "oncall" => vec!["carol".into()],
                _ => vec![],
            }
        };
        let granted: BTreeSet<(String, String)> = [("alice".to_string(), "sudo".to_string())]
            .into_iter()
            .collect();
        let standing = standing_members(&config, &["sudo".into()], &members_of, &granted);
        assert_eq!(standing.len(), 1);
        assert_eq!(standing["sudo"], ["bob"]);
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::*;
    use crate::doctor::findings::Status;
    use pim_common::types::RunningRoleInfo;

    fn fleet_state(version: i64, roles: &[(&str, &str, &[&str])]) -> FleetStateInfo {
        FleetStateInfo {
            host: "web7".into(),
            policy_version: version,
            roles: roles
                .iter()
                .map(|(name, group, permanent)| RunningRoleInfo {
                    name: name.to_string(),
                    group: group.to_string(),
                    permanent: permanent.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
            ..FleetStateInfo::default()
        }
    }

    #[test]
    fn given_a_fleet_host_whose_pimd_has_no_policy_yet_then_the_role_checks_have_a_reason_to_skip()
    {
        let why = Roles::of_fleet(&fleet_state(0, &[])).unwrap_err();
        assert!(
            why.contains("roles come from the fleet policy; pimd has none yet"),
            "{why}"
        );
    }

    #[test]
    fn given_the_fleets_roles_then_the_role_checks_judge_them_and_say_where_to_change_them() {
        let roles = Roles::of_fleet(&fleet_state(
            3,
            &[("admin", "sudo", &["breakglass", "%oncall"])],
        ))
        .unwrap();
        assert_eq!(
            roles.roles[0].permanent,
            [
                Principal::User("breakglass".into()),
                Principal::Group("oncall".into())
            ]
        );
        assert_eq!(check_groups(&roles, &|g| g == "sudo").status, Status::Pass);
        let missing = check_groups(&roles, &|_| false);
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.message.contains("sudo (role admin)"), "{missing:?}");

        let sudoers = BTreeSet::new();
        let gated = check_pam_groups(&roles, &["sudo".into()], &sudoers);
        assert_eq!(gated[0].status, Status::Pass, "{gated:?}");
        let orphan = check_pam_groups(&roles, &["wheel".into()], &sudoers);
        assert_eq!(orphan[0].status, Status::Fail);
        assert!(
            orphan[0]
                .fix
                .as_deref()
                .unwrap()
                .contains("pim admin policy push"),
            "{orphan:?}"
        );

        let empty = check_groups(&Roles::of_fleet(&fleet_state(3, &[])).unwrap(), &|_| true);
        assert_eq!(empty.status, Status::Warn);
        assert!(
            empty
                .message
                .contains("the fleet's policy (version 3) defines no roles"),
            "{empty:?}"
        );
    }

    #[test]
    fn given_the_fleets_permanent_members_then_they_are_not_standing_members() {
        let roles =
            Roles::of_fleet(&fleet_state(1, &[("admin", "sudo", &["breakglass"])])).unwrap();
        let members_of = |_: &str| vec!["breakglass".to_string(), "bob".to_string()];
        let standing = standing_members(&roles, &["sudo".into()], &members_of, &BTreeSet::new());
        assert_eq!(standing["sudo"], ["bob"]);
    }
}
