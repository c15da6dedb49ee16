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
