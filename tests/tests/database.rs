//! Where pimd keeps its database: a directory of its own, never one others use.

use pim_e2e::{Sandbox, CONFIG_PATH};

/// The attack (a careless configuration, finding 8): `database = "/etc/pim-state.db"`. pimd
/// used to make the database's directory 0700, so /etc became root's alone and every name
/// lookup by a non-root process failed host-wide.
#[test]
fn given_a_database_in_etc_then_pimd_refuses_to_start_and_leaves_etc_alone() {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    sb.write_file(
        CONFIG_PATH,
        "[daemon]\ndatabase = \"/etc/pim-state.db\"\n",
        0o644,
    );
    let before = sb.run("root", &["stat", "-c", "%a %U", "/etc"]);
    before.assert_success();

    let out = sb.run("root", &["pimd", "--config", CONFIG_PATH]);
    out.assert_failure().assert_stderr_contains(
        "refusing to keep the database in /etc: it is mode 0755 and holds other files",
    );
    out.assert_stderr_contains("set [daemon] database to a file in a new directory");

    let after = sb.run("root", &["stat", "-c", "%a %U", "/etc"]);
    assert_eq!(after.stdout, before.stdout, "/etc's mode changed");
    assert_eq!(before.stdout.trim(), "755 root");
    sb.run("root", &["test", "!", "-e", "/etc/pim-state.db"])
        .assert_success();
    // Name lookups still work for everyone.
    sb.run("alice", &["id", "-un"])
        .assert_success()
        .assert_stdout_contains("alice");
}

/// A database in a directory that does not exist yet: pimd creates it, root's alone.
#[test]
fn given_a_database_in_a_new_directory_then_pimd_creates_it_private() {
    let sb = Sandbox::start();
    sb.write_file(
        CONFIG_PATH,
        "[daemon]\ndatabase = \"/var/lib/pim-elsewhere/state/pim.db\"\n",
        0o644,
    );
    sb.start_pimd();
    sb.run(
        "root",
        &["stat", "-c", "%a %U", "/var/lib/pim-elsewhere/state"],
    )
    .assert_success()
    .assert_stdout_contains("700 root");
}
