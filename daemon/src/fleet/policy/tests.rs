use super::*;

struct Everyone;

impl pim_config::Directory for Everyone {
    fn user_exists(&self, _: &str) -> bool {
        true
    }
    fn group_exists(&self, _: &str) -> bool {
        true
    }
}

fn normalized(text: &str) -> Value {
    let (config, problems) = pim_config::parse_policy(text, "policy.toml", &Everyone);
    assert!(
        !problems
            .iter()
            .any(|p| p.severity == pim_config::Severity::Error),
        "{problems:?}"
    );
    normalize(&config.unwrap())
}

#[test]
fn given_a_policy_then_each_role_is_normalized_with_users_and_groups_apart() {
    let got = normalized(
        r#"
[daemon]
admins = ["alice", "%wheel"]

[mfa]
max_failures = 3
failure_window = "5m"
lockout = "15m"

[roles.dba]
group = "postgres"
hosts = ["tag:db", "web7"]
eligible = ["bob", "%dbas"]
require_approval = true
approvers = ["carol", "%leads"]
approvals_required = 2
max_duration = "4h"
request_ttl = "1h"
"#,
    );
    assert_eq!(got["admins"], json!(["alice"]));
    assert_eq!(
        got["mfa"],
        json!({"max_failures": 3, "failure_window_secs": 300, "lockout_secs": 900})
    );
    assert_eq!(
        got["roles"]["dba"],
        json!({
            "group": "postgres",
            "hosts": ["tag:db", "web7"],
            "eligible_users": ["bob"],
            "eligible_groups": ["dbas"],
            "approver_users": ["carol"],
            "approver_groups": ["leads"],
            "require_approval": true,
            "approvals_required": 2,
            "max_duration_secs": 14400,
            "require_mfa": true,
            "request_ttl_secs": 3600,
        })
    );
}

#[test]
fn given_a_role_without_group_or_hosts_then_its_name_and_every_host() {
    let got = normalized("[daemon]\nadmins = [\"alice\"]\n[roles.docker]\neligible = [\"bob\"]\n");
    let role = &got["roles"]["docker"];
    assert_eq!(role["group"], json!("docker"));
    assert_eq!(role["hosts"], json!([]));
    assert_eq!(role["require_approval"], json!(false));
    assert_eq!(role["require_mfa"], json!(true));
}
