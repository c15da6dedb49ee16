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
        "refusing to keep the database under /etc: it is mode 0755, open to others, and pimd \
         did not create it",
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

/// `stat -c '%a %U' PATH` in the sandbox.
fn mode_and_owner(sb: &Sandbox, path: &str) -> String {
    sb.run("root", &["stat", "-c", "%a %U", path])
        .assert_success()
        .stdout
        .trim()
        .to_string()
}

/// The sandbox's /srv is the host's: a fresh, empty one (0755, as Debian ships it) over it.
fn fresh_srv(sb: &Sandbox) {
    sb.run(
        "root",
        &["mount", "-t", "tmpfs", "-o", "mode=0755", "pim-srv", "/srv"],
    )
    .assert_success();
}

/// Finding D1: `database = "/srv/pim.db"` (or a file right in /tmp, a fresh tmpfs): pimd used
/// to make that existing, empty directory 0700 (and /tmp lost its sticky bit), though it had
/// not created it. It refuses, naming the directory, and leaves its mode alone.
#[test]
fn given_a_database_right_in_srv_or_tmp_then_pimd_refuses_and_leaves_the_directory_alone() {
    let sb = Sandbox::start();
    fresh_srv(&sb);
    for (dir, mode, octal) in [("/srv", "755 root", "0755"), ("/tmp", "1777 root", "1777")] {
        assert_eq!(mode_and_owner(&sb, dir), mode);
        sb.write_file(
            CONFIG_PATH,
            &format!("[daemon]\ndatabase = \"{dir}/pim.db\"\n"),
            0o644,
        );
        let out = sb.run("root", &["pimd", "--config", CONFIG_PATH]);
        out.assert_failure().assert_stderr_contains(&format!(
            "refusing to keep the database under {dir}: it is mode {octal}, open to others, and \
             pimd did not create it"
        ));
        assert_eq!(mode_and_owner(&sb, dir), mode, "{dir}'s mode changed");
        sb.run("root", &["test", "!", "-e", &format!("{dir}/pim.db")])
            .assert_success();
    }
}

/// Finding D2, as a local user would try it: the configuration puts the database in a new
/// directory under /tmp, and before pimd first starts alice puts a link there to /srv, an
/// empty directory of root's. pimd used to follow it, make /srv 0700 and keep its database
/// there. It refuses the link and creates nothing.
#[test]
fn given_a_link_planted_where_pimds_new_directory_goes_then_pimd_refuses_it() {
    let sb = Sandbox::start();
    fresh_srv(&sb);
    sb.add_user("alice", &[]);
    sb.write_file(
        CONFIG_PATH,
        "[daemon]\ndatabase = \"/tmp/pim-state/pim.db\"\n",
        0o644,
    );
    sb.run("alice", &["ln", "-s", "/srv", "/tmp/pim-state"])
        .assert_success();

    let out = sb.run("root", &["pimd", "--config", CONFIG_PATH]);
    out.assert_failure().assert_stderr_contains(
        "refusing to keep the database under /tmp/pim-state: it is a symbolic link",
    );
    assert_eq!(mode_and_owner(&sb, "/srv"), "755 root");
    sb.run("root", &["test", "!", "-e", "/srv/pim.db"])
        .assert_success();
}

/// Finding D2: a link at /var/lib/pim (to /srv, empty and root's) counted as the state
/// directory, which pimd makes 0700, and was followed. It is refused; /srv keeps its mode.
#[test]
fn given_a_state_directory_that_is_a_link_then_pimd_refuses_it() {
    let sb = Sandbox::start();
    fresh_srv(&sb);
    sb.write_file(CONFIG_PATH, "", 0o644);
    sb.run("root", &["rm", "-rf", "/var/lib/pim"])
        .assert_success();
    sb.run("root", &["ln", "-s", "/srv", "/var/lib/pim"])
        .assert_success();

    let out = sb.run("root", &["pimd", "--config", CONFIG_PATH]);
    out.assert_failure().assert_stderr_contains(
        "refusing to keep the database under /var/lib/pim: it is a symbolic link",
    );
    assert_eq!(mode_and_owner(&sb, "/srv"), "755 root");
    sb.run("root", &["test", "!", "-e", "/srv/pim.db"])
        .assert_success();
}
