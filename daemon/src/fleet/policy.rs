//! The normalized policy: what the authority's functions check, made from a checked
//! `pim_config::Config` and stored beside the policy's text (`pim_api.push_policy`,
//! `pimd --fleet-setup --policy`). The database reads only this JSON, never the TOML:
//!
//! ```text
//! { "admins": [users], "mfa": {max_failures, failure_window_secs, lockout_secs},
//!   "roles": { NAME: { group, hosts, eligible_users, eligible_groups, approver_users,
//!                      approver_groups, require_approval, approvals_required,
//!                      max_duration_secs, require_mfa, request_ttl_secs } } }
//! ```
//!
//! Administrators are the users named in `[daemon] admins`: the database takes no host's
//! word on group membership for the fleet's administration, so `%group` admins administer
//! their host only. For eligibility and approval, `%group` principals are kept, and the
//! database relies on the groups the calling host reports (and records that it did).

use pim_config::{Config, Principal, Role};
use serde_json::{json, Value};

/// The normalized JSON of `config` (a checked policy).
pub fn normalize(config: &Config) -> Value {
    let roles: serde_json::Map<String, Value> = config
        .roles
        .values()
        .map(|role| (role.name.clone(), normalize_role(role)))
        .collect();
    json!({
        "admins": users(&config.daemon.admins),
        "mfa": {
            "max_failures": config.mfa.max_failures,
            "failure_window_secs": config.mfa.failure_window_secs,
            "lockout_secs": config.mfa.lockout_secs,
        },
        "roles": roles,
    })
}

fn normalize_role(role: &Role) -> Value {
    let group = if role.group.is_empty() {
        &role.name
    } else {
        &role.group
    };
    let hosts: Vec<String> = role.hosts.iter().map(ToString::to_string).collect();
    json!({
        "group": group,
        "hosts": hosts,
        "eligible_users": users(&role.eligible),
        "eligible_groups": groups(&role.eligible),
        "approver_users": users(&role.approvers),
        "approver_groups": groups(&role.approvers),
        "require_approval": role.require_approval,
        "approvals_required": role.approvals_required,
        "max_duration_secs": role.max_duration_secs,
        "require_mfa": role.require_mfa,
        "request_ttl_secs": role.request_ttl_secs,
    })
}

fn users(principals: &[Principal]) -> Vec<&str> {
    principals
        .iter()
        .filter_map(|p| match p {
            Principal::User(name) => Some(name.as_str()),
            Principal::Group(_) => None,
        })
        .collect()
}

fn groups(principals: &[Principal]) -> Vec<&str> {
    principals
        .iter()
        .filter_map(|p| match p {
            Principal::Group(name) => Some(name.as_str()),
            Principal::User(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
