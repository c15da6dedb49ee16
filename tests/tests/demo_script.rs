//! `scripts/demo`'s command line (issue 15, point 16): `--help` says what it takes without
//! building or starting anything, and an unknown option is a usage error.

use std::process::Command;

fn demo(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo"))
        .args(args)
        // No cargo on PATH: a build would fail at once, so a passing --help built nothing.
        .env("PATH", "/usr/bin:/bin")
        .env_remove("CARGO_HOME")
        .env("HOME", "/nonexistent")
        .output()
        .expect("bash runs scripts/demo")
}

#[test]
fn given_demo_help_then_the_options_are_printed_and_nothing_is_built() {
    for flag in ["--help", "-h"] {
        let out = demo(&[flag]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        for option in ["--no-build", "--bin-dir DIR", "--attach USER"] {
            assert!(stdout.contains(option), "{flag}: {stdout}");
        }
        assert!(!stdout.contains("building the workspace"), "{stdout}");
    }
}

#[test]
fn given_an_unknown_option_then_the_demo_exits_2_naming_it() {
    let out = demo(&["--frobnicate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr.contains("unknown option --frobnicate"), "{stderr}");
    assert!(stderr.contains("usage: scripts/demo"), "{stderr}");
    let out = demo(&["--attach"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
