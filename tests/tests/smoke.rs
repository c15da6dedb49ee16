//! The smallest end-to-end run of the real daemon and client: one role, one user, from
//! enrolment to a fresh login holding the group and back. The detailed behaviour is tested
//! elsewhere; this proves the pieces fit together in the sandbox.

use std::time::Duration;

use pim_e2e::{Authenticator, Sandbox, CONFIG_PATH};

const CONFIG: &str = r#"
[daemon]
admins = ["%pim-admins"]

[roles.admin]
group = "sudo"
description = "Full administration through sudo"
eligible = ["alice"]
require_approval = false
max_duration = "2h"
default_duration = "1h"
"#;

#[test]
fn pimd_serves_pim_from_enrolment_to_a_fresh_login() {
    let sb = Sandbox::start();
    sb.add_group("pim-admins");
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.setup_sudo(Some("groups=sudo services=sudo,sudo-i"));
    sb.run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
        .assert_success();
    sb.start_pimd();

    let roles = sb.run("alice", &["pim", "roles"]);
    roles.assert_success().assert_stdout_contains("admin");
    let bobs = sb.run("bob", &["pim", "roles"]);
    bobs.assert_success();
    assert!(!bobs.stdout.contains("admin"), "{bobs}");

    // Enrol, confirm with a first code.
    let enroll = sb.run("alice", &["pim", "--json", "mfa", "enroll"]);
    let doc = enroll.assert_success().json();
    let secret = doc["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {doc}:\n{enroll}"))
        .to_string();
    let mut phone = Authenticator::new(&secret);
    let code = phone.next_code(&sb);
    sb.run("alice", &["pim", "mfa", "confirm", &code])
        .assert_success();

    // Activate: alice is in `sudo` in the group database, and a fresh login carries it.
    assert!(!sb.groups_of("alice").contains(&"sudo".to_string()));
    let code = phone.next_code(&sb);
    sb.run(
        "alice",
        &[
            "pim",
            "activate",
            "admin",
            "-d",
            "30m",
            "-r",
            "smoke test of the harness",
            "--code",
            &code,
        ],
    )
    .assert_success();
    assert!(sb.is_member("alice", "sudo"));
    assert!(sb.groups_of("alice").contains(&"sudo".to_string()));
    sb.run("alice", &["pim", "status"])
        .assert_success()
        .assert_stdout_contains("admin");
    // sudo, through pam_pim.so, lets her in.
    sb.run("alice", &["sudo", "-n", "id", "-un"])
        .assert_success()
        .assert_stdout_contains("root");

    // Deactivate: the membership is gone.
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    sb.wait_until("alice to leave sudo", Duration::from_secs(30), || {
        !sb.is_member("alice", "sudo")
    });

    // The daemon survives a restart with its state.
    assert_eq!(sb.kill_pimd("TERM"), Some(0), "{}", sb.pimd_log_tail(40));
    sb.start_pimd();
    sb.run("alice", &["pim", "mfa", "status"]).assert_success();
}
