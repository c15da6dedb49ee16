//! What a first-time user meets (issue 15), end to end: `pim activate` without a role; a shell
//! from before a grant, which `pim status` notices (the caller's own process groups) and `pim
//! activate --shell` replaces with one that carries the group.

use pim_e2e::{Sandbox, CONFIG_PATH};

const CONFIG: &str = r#"
[roles.deploy]
group = "deploy"
eligible = ["alice"]
require_mfa = false
require_justification = false
require_approval = false
"#;

fn site() -> Sandbox {
    let sb = Sandbox::start();
    sb.add_group("deploy");
    sb.add_user("alice", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.start_pimd();
    sb
}

const MISSING: &str = "This shell does not carry group deploy";

#[test]
fn given_a_shell_from_before_the_grant_then_status_says_so_and_names_the_command_to_get_the_group()
{
    let sb = site();
    sb.run("alice", &["pim", "activate", "deploy"])
        .assert_success();

    // A process that logged in before the grant.
    let stale = sb.run_with_groups("alice", &[], &["pim", "status"]);
    stale
        .assert_success()
        .assert_stdout_contains(MISSING)
        .assert_stdout_contains("run 'newgrp deploy'");
    let doc = sb
        .run_with_groups("alice", &[], &["pim", "--json", "status"])
        .assert_success()
        .json();
    assert_eq!(doc["grants"][0]["this_process_has_group"], false, "{doc}");

    // A fresh login carries it: nothing to say.
    let fresh = sb.run("alice", &["pim", "status"]);
    assert!(!fresh.assert_success().stdout.contains(MISSING), "{fresh}");
    let doc = sb.run("alice", &["pim", "--json", "status"]).json();
    assert_eq!(doc["grants"][0]["this_process_has_group"], true, "{doc}");
}

#[test]
fn given_activate_shell_then_the_shell_it_starts_carries_the_group() {
    let sb = site();
    // The login starts without the group; the shell after the grant reads its commands from
    // standard input.
    let out = sb.run_with_stdin(
        "alice",
        &["pim", "activate", "deploy", "--shell"],
        "id -Gn\npim status\necho primary=$(id -gn)\nf=$(mktemp)\nstat -c file-group=%G \"$f\"\n",
    );
    out.assert_success().assert_stdout_contains("deploy");
    // The granted group is supplementary: the shell's primary group stays alice's own, so a
    // file made there does not belong to the privileged group (and outlive the grant so).
    out.assert_stdout_contains("primary=alice")
        .assert_stdout_contains("file-group=alice");
    // `id -Gn` of the new shell: alice's own group and the granted one.
    assert!(
        out.stdout.lines().any(|l| {
            let groups: Vec<&str> = l.split_whitespace().collect();
            groups.contains(&"alice") && groups.contains(&"deploy") && groups.len() == 2
        }),
        "no id -Gn line with alice and deploy:\n{out}"
    );
    assert!(!out.stdout.contains(MISSING), "{out}");
    // Not with --json: a shell after a JSON document is nothing a script can read.
    for argv in [
        &["pim", "--json", "activate", "deploy", "--shell"][..],
        &["pim", "activate", "deploy", "--shell", "--json"],
    ] {
        sb.run("alice", argv)
            .assert_status(2)
            .assert_stderr_contains("not with --json");
    }
}

#[test]
fn given_activate_without_a_role_then_the_callers_roles_are_listed_and_nothing_is_activated() {
    let sb = site();
    sb.run("alice", &["pim", "activate"])
        .assert_status(2)
        .assert_stderr_contains("deploy")
        .assert_stderr_contains("pim activate ROLE");
    let doc = sb.run("alice", &["pim", "--json", "status"]).json();
    assert_eq!(doc["grants"], serde_json::json!([]), "{doc}");
}

#[test]
fn given_a_terminal_then_an_error_is_coloured_unless_no_color_is_set() {
    let sb = site();
    // `script` gives the command a terminal of its own and copies what it shows to stdout.
    let on_terminal = |env: &str| {
        sb.sh(
            "alice",
            &format!("{env} script -qec 'pim deactivate deploy' /dev/null"),
        )
    };
    let coloured = on_terminal("");
    assert!(
        coloured
            .stdout
            .contains("\x1b[1;31mpim:\x1b[0m you have no live grant"),
        "{coloured}"
    );
    let plain = on_terminal("NO_COLOR=1");
    assert!(
        plain.stdout.contains("pim: ") && !plain.stdout.contains('\x1b'),
        "{plain}"
    );
    let piped = sb.run("alice", &["pim", "deactivate", "deploy"]);
    piped.assert_status(1).assert_stderr_contains("pim: ");
    assert!(!piped.stderr.contains('\x1b'), "{piped}");
}

#[test]
fn given_sudo_refused_by_pim_then_a_line_after_the_reason_says_sudos_own_message_can_be_ignored() {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    sb.write_file(
        CONFIG_PATH,
        "[roles.admin]\ngroup = \"sudo\"\neligible = [\"alice\"]\nrequire_mfa = false\n\
         require_justification = false\n",
        0o644,
    );
    sb.setup_sudo(Some("groups=sudo"));
    sb.start_pimd();
    // A shell that still carries group sudo, without a grant.
    let out = sb.run_with_groups("alice", &["sudo"], &["sudo", "-n", "true"]);
    out.assert_failure();
    let lines: Vec<&str> = out.stderr.lines().map(str::trim).collect();
    let reason = lines.iter().position(|l| l.starts_with("pim: "));
    let afterword = lines
        .iter()
        .position(|l| l.starts_with("(sudo's own message after this line"));
    let sudo_says = lines.iter().position(|l| l.starts_with("sudo: "));
    assert!(
        matches!((reason, afterword, sudo_says), (Some(r), Some(a), Some(s)) if r < a && a < s),
        "the reason, then the line about sudo's message, then sudo's:\n{out}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("pim: ")).count(),
        1,
        "{out}"
    );
}

#[test]
fn given_extend_with_a_plus_duration_then_the_grant_ends_that_much_later() {
    let sb = site();
    // Nothing to extend yet: said before anything else, naming how to start.
    sb.run("alice", &["pim", "extend", "deploy", "-d", "+30m"])
        .assert_status(1)
        .assert_stderr_contains("pim activate deploy");
    let grant = sb
        .run(
            "alice",
            &["pim", "--json", "activate", "deploy", "-d", "10m"],
        )
        .assert_success()
        .json()["grant"]
        .clone();
    let before = grant["ends_at_unix"].as_i64().unwrap();
    let out = sb.run(
        "alice",
        &["pim", "--json", "extend", "deploy", "-d", "+30m"],
    );
    let after = out.assert_success().json()["grant"]["ends_at_unix"]
        .as_i64()
        .unwrap();
    // pim and pimd each read the clock once: a second apart at most.
    assert!(
        (after - (before + 1800)).abs() <= 1,
        "{before} + 30m, got {after}:\n{out}"
    );
    sb.run("alice", &["pim", "extend", "deploy", "-d", "+0s"])
        .assert_status(2);
}
