//! `pam_pim.so` in the stacks of every service that switches to root, over one table: `sudo`,
//! `sudo -i` (service `sudo-i`), `su` and `su -` (service `su-l`). Whom it judges is the
//! invoking user (the real uid), never the target. For each service: a holder with a live
//! grant passes, a process that kept the group after the grant ended is refused with the
//! module's reason, and a user in no managed group is left to the rest of the stack.
//!
//! `su` asks for the target's password; here `pam_permit` stands in for a user who knows root's
//! password (a stale `wheel` or `sudo` member on a host where pam_wheel is not in su's stack):
//! the password alone then gets root, and only pam_pim stands in the way.
//!
//! pkexec and run0 decide through polkit, which asks the group database (the user's groups as
//! they are now, not the calling process's), so a removed membership is already refused
//! there; see the README ("PAM services").

use pim_e2e::{Output, Sandbox, CONFIG_PATH, PAM_MODULE};

const CONFIG: &str = r#"
[roles.admin]
group = "sudo"
eligible = ["alice"]
require_mfa = false
require_justification = false
max_duration = "1h"
warn_before = []
on_end = "keep"
"#;

const PAM_ARGS: &str = "groups=sudo services=sudo,sudo-i,su,su-l";

/// su's stack with pam_pim in its account phase; `pam_permit` stands for the right password.
fn su_stack() -> String {
    format!(
        "#%PAM-1.0\nauth       sufficient pam_rootok.so\nauth       required   pam_permit.so\n\
         @include common-account\naccount    required   {PAM_MODULE} {PAM_ARGS}\n\
         session    required   pam_limits.so\n@include common-session\n"
    )
}

/// A service that switches to root, and the command that uses it.
struct Service {
    name: &'static str,
    argv: &'static [&'static str],
}

const SERVICES: &[Service] = &[
    Service {
        name: "sudo",
        argv: &["sudo", "-n", "id", "-u"],
    },
    Service {
        name: "sudo-i",
        argv: &["sudo", "-n", "-i", "id", "-u"],
    },
    Service {
        name: "su",
        argv: &["su", "root", "-c", "id -u"],
    },
    Service {
        name: "su-l",
        argv: &["su", "-", "root", "-c", "id -u"],
    },
];

fn host() -> Sandbox {
    let sb = Sandbox::start();
    assert!(
        sb.has_pam_module(),
        "libpam_pim.so is not built: run `cargo build --workspace` first"
    );
    sb.add_user("alice", &[]);
    sb.add_user("bob", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.setup_sudo(Some(PAM_ARGS));
    sb.write_file("/etc/pam.d/su", &su_stack(), 0o644);
    sb.write_file("/etc/pam.d/su-l", "#%PAM-1.0\n@include su\n", 0o644);
    sb.start_pimd();
    sb
}

fn root_through(out: &Output) -> bool {
    out.success() && out.stdout.trim() == "0"
}

#[test]
fn every_service_that_switches_to_root_judges_the_invoking_user() {
    let sb = host();
    // bob holds no managed group: su with the right password gets root, as without pim;
    // sudo has no rule for him.
    for service in SERVICES.iter().filter(|s| ["su", "su-l"].contains(&s.name)) {
        let out = sb.run("bob", service.argv);
        assert!(root_through(&out), "{}: {out}", service.name);
    }

    sb.run(
        "alice",
        &[
            "pim",
            "activate",
            "admin",
            "-d",
            "30m",
            "-r",
            "patch the kernel",
        ],
    )
    .assert_success();
    for service in SERVICES {
        let out = sb.run("alice", service.argv);
        assert!(
            root_through(&out),
            "{} with a live grant: {out}",
            service.name
        );
    }

    sb.run_with_groups("alice", &["alice"], &["pim", "deactivate", "admin"])
        .assert_success();
    assert!(!sb.is_member("alice", "sudo"));
    for service in SERVICES {
        // A shell from the grant: it still carries sudo.
        let out = sb.run_with_groups("alice", &["sudo"], service.argv);
        assert!(
            !root_through(&out),
            "{} from a stale shell: {out}",
            service.name
        );
        assert!(
            out.stderr
                .contains("pim: your grant for role admin (group sudo) ended at "),
            "{}: {out}",
            service.name
        );
    }
}
