//! `pim doctor` on a host set up like `scripts/demo`: the demo's own configuration, sudoers and
//! PAM line (read from the script), so that doctor and the demo cannot drift apart.

use pim_e2e::{Sandbox, CONFIG_PATH, PAM_MODULE};

/// The text of the here-document that `scripts/demo` writes after `opening`.
fn demo_heredoc(demo: &str, opening: &str) -> String {
    let start = demo
        .find(opening)
        .unwrap_or_else(|| panic!("{opening} not in scripts/demo"));
    let body = &demo[start + opening.len()..];
    let body = body.strip_prefix('\n').unwrap();
    body[..body.find("\nEOF\n").unwrap() + 1].to_string()
}

/// The value of `name="..."` in `scripts/demo`.
fn demo_assignment(demo: &str, name: &str) -> String {
    let opening = format!("\n{name}=\"");
    let start = demo.find(&opening).unwrap() + opening.len();
    demo[start..start + demo[start..].find('"').unwrap()].to_string()
}

#[test]
fn given_a_host_set_up_like_the_demo_then_pim_doctor_is_green_and_exits_0() {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo")).unwrap();
    let config = demo_heredoc(&demo, "cat >/etc/pim/pim.toml <<'EOF'");
    let sudoers = demo_heredoc(&demo, "cat >/etc/sudoers.d/pim-demo <<'EOF'");
    let pam_line = demo_assignment(&demo, "pam_line");
    assert!(pam_line.contains(PAM_MODULE), "{pam_line}");
    let mode = if demo.contains("chmod 0600 /etc/pim/pim.toml") {
        0o600
    } else {
        0o644
    };

    let sb = Sandbox::start();
    assert!(
        sb.has_pam_module(),
        "libpam_pim.so is not built: run `cargo build --workspace` first"
    );
    for group in ["pim-admins", "dbadmin"] {
        sb.run("root", &["groupadd", group]).assert_success();
    }
    sb.run("root", &["gpasswd", "-a", "root", "pim-admins"])
        .assert_success();
    for user in ["alice", "bob", "carol"] {
        sb.add_user(user, &[]);
    }
    sb.write_file(CONFIG_PATH, &config, mode);
    sb.write_file("/etc/sudoers.d/pim-demo", &sudoers, 0o440);
    for (service, session) in [
        ("sudo", "common-session-noninteractive"),
        ("sudo-i", "common-session"),
    ] {
        sb.write_file(
            &format!("/etc/pam.d/{service}"),
            &format!(
                "#%PAM-1.0\nsession    required   pam_limits.so\n@include common-auth\n\
                 @include common-account\n{pam_line}\n@include {session}\n"
            ),
            0o644,
        );
    }
    if demo.contains("echo 'Set group_source dynamic' >>/etc/sudo.conf") {
        sb.run(
            "root",
            &[
                "bash",
                "-c",
                "echo 'Set group_source dynamic' >>/etc/sudo.conf",
            ],
        )
        .assert_success();
    }
    sb.run("root", &["visudo", "-c"]).assert_success();
    sb.start_pimd();

    let text = sb.run("root", &["pim", "doctor"]);
    assert!(!text.stdout.contains("[FAIL]"), "{text}");
    text.assert_status(0);
    let report = sb.run("root", &["pim", "--json", "doctor"]).json();
    assert_eq!(report["ok"], true, "{report:#}");
}
