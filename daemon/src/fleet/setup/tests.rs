use super::*;

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn given_setup_arguments_then_they_are_read() {
    let got = parse_args(&args(&[
        "host=/run/pg user=postgres",
        "--policy",
        "/etc/pim/policy.toml",
        "--add-host",
        "web7",
        "--tags",
        "db, web,",
        "--enrol-admin",
        "carol",
        "--enrol-admin",
        "ann",
    ]))
    .unwrap();
    assert_eq!(
        got,
        SetupArgs {
            conninfo: "host=/run/pg user=postgres".into(),
            policy: Some(PathBuf::from("/etc/pim/policy.toml")),
            add_host: Some("web7".into()),
            tags: Some(vec!["db".into(), "web".into()]),
            enrol_admins: vec!["carol".into(), "ann".into()],
        }
    );
}

#[test]
fn given_wrong_setup_arguments_then_the_error_names_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "needs the administrator's connection string"),
        (
            &["--policy", "f"],
            "needs the administrator's connection string",
        ),
        (&["c", "--policy"], "--policy needs a file"),
        (&["c", "--add-host"], "--add-host needs a host name"),
        (&["c", "--tags", "a"], "--tags goes with --add-host"),
        (&["c", "--enrol-admin"], "--enrol-admin needs a user name"),
        (&["c", "--frob"], "unknown argument '--frob'"),
    ];
    for (words, want) in cases {
        let e = parse_args(&args(words)).unwrap_err();
        assert!(e.contains(want), "{words:?}: {e}");
    }
}

#[test]
fn given_the_schema_then_it_records_this_pimds_version() {
    let line = format!("INSERT INTO pim.schema_version (version) VALUES ({SCHEMA_VERSION})");
    assert!(SCHEMA.contains(&line));
}

/// The action names the authority writes into `pim.audit` (the third argument of each
/// `pim.audit(...)` and `pim.audit_refusal(...)` call in the schema; each branch of a CASE).
fn authority_audit_actions() -> Vec<String> {
    let mut actions = Vec::new();
    for call in SCHEMA.split("PERFORM pim.audit").skip(1) {
        let Some(call) = call
            .strip_prefix('(')
            .or_else(|| call.strip_prefix("_refusal("))
        else {
            continue;
        };
        let (mut depth, mut commas, mut third) = (0, 0, String::new());
        for c in call.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    commas += 1;
                    continue;
                }
                _ => {}
            }
            if commas == 2 {
                third.push(c);
            }
            if commas == 3 {
                break;
            }
        }
        let third = third.trim();
        if third == "action" {
            // pim.audit_refusal passing on its caller's action, checked at that call.
            continue;
        }
        let literals: Vec<&str> = third.split('\'').skip(1).step_by(2).collect();
        if third.starts_with("CASE") {
            // CASE x WHEN 'a' THEN 'action' ... ELSE 'action' END: every other literal.
            actions.extend(literals.iter().skip(1).step_by(2).map(|l| l.to_string()));
            actions.extend(literals.last().map(|l| l.to_string()));
        } else {
            assert_eq!(
                literals.len(),
                1,
                "an action that is not a literal: {third}"
            );
            actions.push(literals[0].to_string());
        }
    }
    actions
}

#[test]
fn given_the_authority_s_audit_records_then_their_actions_are_the_hosts_vocabulary() {
    let actions = authority_audit_actions();
    assert!(actions.len() >= 15, "{actions:?}");
    for action in &actions {
        assert!(
            action.parse::<pim_common::vocab::AuditAction>().is_ok(),
            "pim.audit action '{action}' is not in pim_common::vocab::AuditAction"
        );
    }
    assert!(actions.contains(&"admin-revoke".to_string()), "{actions:?}");
}
