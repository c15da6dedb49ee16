//! The fleet's PostgreSQL harness itself (tests/src/postgres.rs): a cluster of our own in its
//! own namespaces answers its superuser on the socket, wants a password over TCP, survives a
//! restart and a crash with its data, and leaves nothing behind; the fleet's hosts reach it
//! over their own links (tests/src/fleet.rs), each of which can be cut alone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pim_e2e::fleet::{Fleet, HostSpec};
use pim_e2e::postgres::{Postgres, PG_BIN, PG_DIR};

#[test]
fn given_a_fresh_cluster_then_it_answers_keeps_its_data_across_restarts_and_wants_passwords() {
    let pg = Postgres::start("10.77.0.1/16");
    assert!(pg.is_ready());
    assert_eq!(
        pg.admin_sql("SELECT current_setting('server_version_num')::int / 10000")
            .trim(),
        "15"
    );
    pg.admin_sql(
        "CREATE ROLE web1 LOGIN PASSWORD 'right horse'; \
         CREATE TABLE kept (n int); INSERT INTO kept VALUES (7); GRANT SELECT ON kept TO web1",
    );

    // TCP on the database's own address: scram-sha-256, a wrong password is refused.
    let tcp = pg.psql(
        &pg.tcp_conninfo("web1", "right horse"),
        "SELECT n FROM kept",
    );
    assert_eq!(tcp.assert_success().stdout_trimmed(), "7");
    let methods = pg.admin_sql(
        "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules \
         WHERE type = 'hostssl'; SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'web1'",
    );
    assert_eq!(methods.trim(), "scram-sha-256\nSCRAM-SHA-256$");
    pg.psql(&pg.tcp_conninfo("web1", "wrong horse"), "SELECT 1")
        .assert_failure()
        .assert_stderr_contains("password authentication failed");
    pg.psql(&pg.tcp_conninfo("postgres", "not it"), "SELECT 1")
        .assert_failure()
        .assert_stderr_contains("password authentication failed");
    pg.psql(&pg.admin_conninfo_tcp(), "SELECT 1")
        .assert_success();
    // Only the superuser is trusted on the socket.
    pg.psql(
        "host=/run/pg/socket user=web1 dbname=pim password=x",
        "SELECT 1",
    )
    .assert_failure();

    pg.restart();
    assert_eq!(pg.admin_sql("SELECT n FROM kept").trim(), "7");
    pg.crash();
    assert!(!pg.is_ready());
    pg.start_again();
    pg.wait_until(
        "the cluster to answer after recovery",
        Duration::from_secs(60),
        || pg.is_ready(),
    );
    assert_eq!(pg.admin_sql("SELECT n FROM kept").trim(), "7");

    // The extension the authority needs is installed.
    pg.admin_sql("CREATE EXTENSION pgcrypto");

    // The admin conninfo works from the test process itself (the host's network namespace).
    let from_host = Command::new(format!("{PG_BIN}/psql"))
        .args([
            "--no-psqlrc",
            "-At",
            "-c",
            "SELECT n FROM kept",
            &pg.admin_conninfo(),
        ])
        .output()
        .unwrap();
    assert!(from_host.status.success(), "{from_host:?}");
    assert_eq!(String::from_utf8_lossy(&from_host.stdout).trim(), "7");

    let root = format!("/proc/{}/root{PG_DIR}", pg.host_pid());
    drop(pg);
    assert!(!Path::new(&root).exists(), "{root} outlived the cluster");
}

#[test]
fn given_a_fleet_then_each_host_reaches_the_database_and_a_cut_link_cuts_that_host_alone() {
    let fleet = Fleet::start(&[
        HostSpec::new("web1", &["web"]),
        HostSpec::new("db1", &["db"]),
    ]);
    fleet.add_user("alice", &["ops"]);
    for host in &fleet.hosts {
        assert!(fleet.reaches_database(&host.name), "{}", host.name);
        let out = host.psql(&fleet.admin_conninfo(), "SELECT inet_client_addr()");
        assert_eq!(out.assert_success().stdout_trimmed(), host.address);
    }

    fleet.link_down("db1");
    fleet.wait_until("db1 to lose the database", Duration::from_secs(30), || {
        !fleet.reaches_database("db1")
    });
    assert!(fleet.reaches_database("web1"));

    fleet.link_up("db1");
    fleet.wait_until(
        "db1 to reach the database again",
        Duration::from_secs(30),
        || fleet.reaches_database("db1"),
    );
}
