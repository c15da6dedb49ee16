use crate::{parse, parse_policy, Config, Directory, HostScope, Problem, Severity};

struct EveryAccount;

impl Directory for EveryAccount {
    fn user_exists(&self, _: &str) -> bool {
        true
    }
    fn group_exists(&self, _: &str) -> bool {
        true
    }
}

fn host_file(text: &str) -> (Option<Config>, Vec<Problem>) {
    parse(text, "pim.toml", &EveryAccount)
}

fn policy_file(text: &str) -> (Option<Config>, Vec<Problem>) {
    parse_policy(text, "policy.toml", &EveryAccount)
}

fn errors(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}

const FLEET: &str = r#"[fleet]
database = "host=db.example dbname=pim user=pim_host_web7 sslmode=verify-full sslrootcert=/etc/pim/fleet-ca.pem passfile=/etc/pim/pgpass"
host = "web7"
max_staleness = "2m"
"#;

#[test]
fn given_a_fleet_section_then_its_keys_are_read() {
    let (config, problems) = host_file(FLEET);
    assert!(errors(&problems).is_empty(), "{problems:?}");
    let fleet = config.unwrap().fleet.unwrap();
    assert!(fleet.database.starts_with("host=db.example"));
    assert_eq!(fleet.host.as_deref(), Some("web7"));
    assert_eq!(fleet.max_staleness_secs, 120);
}

#[test]
fn given_no_fleet_section_then_the_host_stands_alone_and_roles_are_its_own() {
    let (config, problems) = host_file("[roles.admin]\ngroup = \"sudo\"\n");
    assert!(errors(&problems).is_empty(), "{problems:?}");
    let config = config.unwrap();
    assert!(config.fleet.is_none());
    assert!(config.role("admin").unwrap().hosts.is_empty());
}

#[test]
fn given_fleet_defaults_then_ten_minutes_and_the_hostname_apply() {
    let (config, problems) = host_file("[fleet]\ndatabase = \"host=/run/postgresql dbname=pim\"\n");
    assert!(errors(&problems).is_empty(), "{problems:?}");
    let fleet = config.unwrap().fleet.unwrap();
    assert_eq!(fleet.host, None);
    assert_eq!(fleet.max_staleness_secs, crate::DEFAULT_MAX_STALENESS_SECS);
}

#[test]
fn given_bad_fleet_keys_then_each_error_names_its_key_and_line() {
    let (config, problems) = host_file(
        "[fleet]\ndatabase = 5\nhost = \"web 7\"\nmax_staleness = \"3d\"\nlisten = true\n",
    );
    assert!(config.is_none());
    let errors = errors(&problems);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains(":2: fleet.database: expected a string"));
    assert!(errors[1].contains(":3: fleet.host: host 'web 7' is not a valid name"));
    assert!(errors[2].contains(":4: fleet.max_staleness: 3d is over the 1d cap"));
    assert!(errors[3].contains(":5: fleet.listen: unknown key"));
}

#[test]
fn given_a_fleet_without_database_then_it_is_an_error_naming_the_key() {
    let (config, problems) = host_file("[fleet]\nhost = \"web7\"\n");
    assert!(config.is_none());
    let errors = errors(&problems);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("fleet: a fleet needs database"),
        "{errors:?}"
    );
}

#[test]
fn given_a_password_in_the_connection_string_then_it_is_refused_for_a_passfile() {
    for conninfo in [
        "host=db dbname=pim password=secret",
        "host=db password = secret",
    ] {
        let (config, problems) = host_file(&format!("[fleet]\ndatabase = \"{conninfo}\"\n"));
        assert!(config.is_none(), "{conninfo}");
        let errors = errors(&problems);
        assert!(
            errors[0].contains("fleet.database: holds a password; keep it in a root-only pgpass"),
            "{conninfo}: {errors:?}"
        );
    }
    let (config, _) =
        host_file("[fleet]\ndatabase = \"host=/run/postgresql passfile=/etc/pim/pgpass\"\n");
    assert!(config.is_some());
}

#[test]
fn given_tcp_without_verify_full_and_a_ca_file_then_the_database_key_is_refused_naming_the_fix() {
    for conninfo in [
        "host=db.example dbname=pim passfile=/etc/pim/pgpass",
        "host=db.example sslmode=require passfile=/etc/pim/pgpass",
        "host=db.example sslmode=verify-ca sslrootcert=/etc/pim/fleet-ca.pem",
        "host=db.example sslmode=verify-full sslrootcert=''",
    ] {
        let (config, problems) = host_file(&format!("[fleet]\ndatabase = \"{conninfo}\"\n"));
        assert!(config.is_none(), "{conninfo}");
        let errors = errors(&problems);
        assert_eq!(errors.len(), 1, "{conninfo}: {errors:?}");
        assert!(
            errors[0].contains(":2: fleet.database: connects over TCP (db.example)"),
            "{conninfo}: {errors:?}"
        );
        assert!(
            errors[0].contains("write sslmode=verify-full sslrootcert=FILE"),
            "{conninfo}: {errors:?}"
        );
    }
}

#[test]
fn given_a_url_then_it_is_refused_for_the_key_value_form() {
    let (config, problems) = host_file("[fleet]\ndatabase = \"postgresql://web7:secret@db/pim\"\n");
    assert!(config.is_none());
    let errors = errors(&problems);
    assert!(
        errors[0].contains("fleet.database: is a URL; write it in libpq's key=value form"),
        "{errors:?}"
    );
}

#[test]
fn given_zero_or_a_control_character_then_the_fleet_keys_say_what_is_wrong() {
    let (_, problems) =
        host_file("[fleet]\ndatabase = \"host=db\\u001b[2J\"\nmax_staleness = \"0s\"\n");
    let errors = errors(&problems);
    assert!(
        errors[0].contains("fleet.database: the connection string"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("fleet.max_staleness: '0s' is zero"),
        "{errors:?}"
    );
}

#[test]
fn given_fleet_mode_then_roles_admins_and_mfa_in_the_host_file_are_errors() {
    let text = format!(
        "[daemon]\nadmins = [\"alice\"]\nnotify_timeout = \"5s\"\n[mfa]\nissuer = \"x\"\n{FLEET}[roles.admin]\ngroup = \"sudo\"\n"
    );
    let (config, problems) = host_file(&text);
    assert!(config.is_none());
    let errors = errors(&problems);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains(":2: daemon.admins: admins: in fleet mode this comes from the fleet's policy ('pim admin policy push FILE')"));
    assert!(errors[1].contains(":4: mfa: [mfa]: in fleet mode"));
    assert!(errors[2].contains(":10: roles: roles: in fleet mode"));
}

#[test]
fn given_a_policy_then_host_settings_in_it_are_errors_and_roles_are_read() {
    let (config, problems) = policy_file(
        "[daemon]\nadmins = [\"alice\"]\ndatabase = \"/var/lib/pim/pim.db\"\n[fleet]\ndatabase = \"host=/run/postgresql\"\n[roles.admin]\ngroup = \"sudo\"\n",
    );
    assert!(config.is_none());
    let errors = errors(&problems);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("policy.toml:3: daemon.database: is each host's own setting"));
    assert!(errors[1].contains(":4: fleet: is each host's own setting"));
}

#[test]
fn given_a_policy_with_host_scopes_then_its_roles_are_read() {
    let (config, problems) = policy_file(
        "[daemon]\nadmins = [\"alice\"]\n[roles.dba]\ngroup = \"postgres\"\nhosts = [\"tag:db\", \"web7\"]\n",
    );
    assert!(errors(&problems).is_empty(), "{problems:?}");
    let config = config.unwrap();
    assert_eq!(
        config.role("dba").unwrap().hosts,
        vec![HostScope::Tag("db".into()), HostScope::Host("web7".into())]
    );
}

#[test]
fn given_bad_host_scopes_then_each_is_an_error_naming_the_key() {
    let (config, problems) = host_file("[roles.dba]\nhosts = [\"tag:\", \"web 7\", 3]\n");
    assert!(config.is_none());
    let errors = errors(&problems);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("roles.dba.hosts: tag '' is not a valid name"));
    assert!(errors[1].contains("roles.dba.hosts: host 'web 7' is not a valid name"));
    assert!(errors[2].contains("roles.dba.hosts: expected a host or tag:name as a string"));
}

#[test]
fn given_a_host_file_and_a_policy_then_the_fleet_config_takes_each_side_s_keys() {
    let (local, _) = host_file(&format!("[daemon]\nnotify_timeout = \"5s\"\n{FLEET}"));
    let (policy, _) = policy_file(
        "[daemon]\nadmins = [\"alice\"]\n[mfa]\nmax_failures = 3\n[roles.dba]\nhosts = [\"tag:db\"]\n",
    );
    let merged = local.unwrap().in_fleet(&policy.unwrap());
    assert_eq!(merged.daemon.notify_timeout_secs, 5);
    assert_eq!(merged.daemon.admins.len(), 1);
    assert_eq!(merged.mfa.max_failures, 3);
    assert!(merged.role("dba").is_some());
    assert_eq!(merged.fleet.unwrap().host.as_deref(), Some("web7"));
}

#[test]
fn given_scopes_then_a_host_is_covered_by_its_name_or_one_of_its_tags() {
    let tags = vec!["db".to_string()];
    assert!(HostScope::Tag("db".into()).covers("web7", &tags));
    assert!(!HostScope::Tag("web".into()).covers("web7", &tags));
    assert!(HostScope::Host("web7".into()).covers("web7", &[]));
    assert!(!HostScope::Host("web8".into()).covers("web7", &tags));
}
