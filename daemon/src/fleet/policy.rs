//! The normalized policy `pim admin policy push` sends beside the file's text: what the
//! database checks for itself (eligibility of named users, approvers, counts, durations,
//! host scope, admins), made from the checked configuration.

use pim_config::{Config, Principal};
use serde_json::{json, Value};

fn principals(list: &[Principal]) -> Value {
    list.iter().map(ToString::to_string).collect()
}

/// The policy as the database reads it.
pub fn normalized(config: &Config) -> Value {
    let roles: serde_json::Map<String, Value> = config
        .roles
        .values()
        .map(|r| {
            (
                r.name.clone(),
                json!({
                    "group": r.group,
                    "hosts": r.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "eligible": principals(&r.eligible),
                    "permanent": principals(&r.permanent),
                    "approvers": principals(&r.approvers),
                    "require_approval": r.require_approval,
                    "approvals_required": r.approvals_required,
                    "max_duration_secs": r.max_duration_secs,
                    "default_duration_secs": r.default_duration_secs,
                    "request_ttl_secs": r.request_ttl_secs,
                    "require_mfa": r.require_mfa,
                }),
            )
        })
        .collect();
    json!({
        "admins": principals(&config.daemon.admins),
        "auditors": principals(&config.daemon.auditors),
        "mfa": {
            "max_failures": config.mfa.max_failures,
            "failure_window_secs": config.mfa.failure_window_secs,
            "lockout_secs": config.mfa.lockout_secs,
        },
        "roles": roles,
    })
}
