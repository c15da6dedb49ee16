//! Fleet mode end to end (issue 16): a real PostgreSQL 15 started by the test
//! (tests/src/postgres.rs) and several hosts, each a full sandbox with its own pimd, bus,
//! users and PAM stack in a network namespace of its own, linked to the database by a veth
//! (tests/src/fleet.rs). Nothing here is mocked: the policy, the requests, approvals, grants,
//! MFA and audit live in the database; each host mirrors its slice and runs gpasswd and PAM
//! from it.
//!
//! The hosts share the machine's clock; every user has one [`Authenticator`] for the whole
//! fleet, since a TOTP step is spent fleet-wide. A user has two codes at hand (the
//! enrolment's and one more) before `next_code` waits for the next 30 s step.

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use pim_e2e::fleet::{Fleet, HostSpec};
use pim_e2e::{Authenticator, Output, Sandbox, CONFIG_PATH};
use serde_json::Value;

/// Generous limit for what a wake-up should bring at once (it returns as soon as it does).
const WAIT: Duration = Duration::from_secs(90);
/// Limit for what needs a host to notice a cut, go stale or reconnect (max_staleness,
/// the periodic snapshot, TCP timeouts and the reconnect backoff).
const SLOW_WAIT: Duration = Duration::from_secs(300);

const REASON: &str = "rotate the replication certificates";
const USERS: &[&str] = &["alice", "bob", "carol", "dave"];

/// The fleet's first policy: `admin` (sudo, every host, no approval), `ops` and `ops2`
/// (groups ops and ops2, every host, no approval, durations down to seconds), `dbadmin`
/// (sudo, hosts tagged db only, one approval by bob), `dbops` (group dbops, tag db, no
/// approval). carol is the fleet's admin. Every role keeps the user's processes at the end
/// (`on_end = "keep"`): the `pim` and `sudo` a test runs as the user carry the group, and the
/// refusals of stale shells are what these tests look at.
const POLICY: &str = r#"
[daemon]
admins = ["carol"]

[roles.admin]
on_end = "keep"
group = "sudo"
eligible = ["alice"]
require_approval = false
max_duration = "2h"
default_duration = "1h"

[roles.ops]
on_end = "keep"
group = "ops"
eligible = ["alice", "bob", "dave", "erin", "frank", "grace"]
require_approval = false
max_duration = "1h"
default_duration = "30m"

[roles.ops2]
on_end = "keep"
group = "ops2"
eligible = ["alice", "bob", "dave", "erin", "frank", "grace"]
require_approval = false
max_duration = "1h"
default_duration = "30m"

[roles.dbadmin]
on_end = "keep"
group = "sudo"
hosts = ["tag:db"]
eligible = ["alice"]
require_approval = true
approvers = ["bob"]
approvals_required = 1
max_duration = "2h"
default_duration = "1h"

[roles.dbops]
on_end = "keep"
group = "dbops"
hosts = ["tag:db"]
eligible = ["alice"]
require_approval = false
max_duration = "1h"
"#;

/// web1 (tag web), db1 and db2 (tag db).
fn three_hosts() -> Vec<HostSpec> {
    vec![
        HostSpec::new("web1", &["web"]),
        HostSpec::new("db1", &["db"]),
        HostSpec::new("db2", &["db"]),
    ]
}

/// A fleet of `specs` with `users` (and USERS) on every host, groups ops, ops2 and dbops,
/// sudo for members of sudo and of ops, gated by pam_pim (groups sudo and ops), set up with [`POLICY`] and `max_staleness`,
/// pimd running everywhere.
fn fleet_with(specs: &[HostSpec], users: &[&str], max_staleness: &str) -> Fleet {
    let fleet = Fleet::start(specs);
    for group in ["ops", "ops2", "dbops"] {
        fleet.add_group(group);
    }
    for user in USERS.iter().chain(users) {
        fleet.add_user(user, &[]);
    }
    fleet.on_every_host(|h| {
        h.sb.setup_sudo(Some("groups=sudo,ops"));
        // ops is a gated group of its own: its members may sudo too, while a grant holds.
        h.sb.write_file(
            "/etc/sudoers.d/pim-e2e-ops",
            "%ops ALL=(ALL:ALL) NOPASSWD: ALL\n",
            0o440,
        );
    });
    fleet.setup(POLICY, max_staleness);
    fleet.start_pimds();
    fleet
}

fn pim(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(args);
    sb.run(user, &argv)
}

/// `pim activate ROLE -d DURATION -r REASON --code NEXT` as `user` on `sb`.
fn activate(
    sb: &Sandbox,
    user: &str,
    phone: &mut Authenticator,
    role: &str,
    duration: &str,
) -> Output {
    let code = phone.next_code(sb);
    pim(
        sb,
        user,
        &[
            "activate", role, "-d", duration, "-r", REASON, "--code", &code,
        ],
    )
}

/// Hosts where `user` is listed in `group`.
fn hosts_with(fleet: &Fleet, user: &str, group: &str) -> Vec<String> {
    fleet
        .membership(user, group)
        .into_iter()
        .filter(|(_, member)| *member)
        .map(|(host, _)| host)
        .collect()
}

/// Names of `fleet`'s hosts among `names`, in the fleet's order (for comparing sets).
fn names(fleet: &Fleet, names: &[&str]) -> Vec<String> {
    fleet
        .hosts
        .iter()
        .filter(|h| names.contains(&h.name.as_str()))
        .map(|h| h.name.clone())
        .collect()
}

/// The database's clock, in seconds since the epoch.
fn db_now(fleet: &Fleet) -> i64 {
    fleet
        .db
        .admin_sql("SELECT floor(extract(epoch FROM now()))::bigint")
        .trim()
        .parse()
        .expect("a number")
}

/// Waits until `host` has taken a snapshot strictly after `since` (database seconds): what
/// it mirrors now includes every change committed before `since`.
#[track_caller]
fn wait_synced_after(fleet: &Fleet, host: &str, since: i64) {
    fleet.wait_until(
        &format!("{host} to synchronise after {since}"),
        SLOW_WAIT,
        || {
            let last = fleet.db.admin_sql(&format!(
                "SELECT coalesce(last_sync, 0) FROM pim.hosts WHERE name = '{host}'"
            ));
            last.trim().parse::<i64>().unwrap_or(0) > since
        },
    );
}

/// `sudo -n true` as `user` on `sb` with exactly `groups` (a shell that logged in earlier).
fn sudo_with_groups(sb: &Sandbox, user: &str, groups: &[&str]) -> Output {
    sb.run_with_groups(user, groups, &["sudo", "-n", "true"])
}

// ---------------------------------------------------------------------------------------------

#[test]
fn given_the_bootstrap_then_each_host_logs_in_as_itself_and_setup_runs_again_safely() {
    let fleet = Fleet::start(&three_hosts());
    for user in USERS {
        fleet.add_user(user, &[]);
    }
    for group in ["ops", "ops2", "dbops"] {
        fleet.add_group(group);
    }
    fleet.setup(POLICY, "10m");
    // Each host's pim.toml passes the checker, and its login (from its root-only pgpass, as
    // pimd reads it) is its own: the database names it.
    for host in &fleet.hosts {
        host.sb
            .run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
            .assert_success();
        let (login, _) = host.login();
        let by_passfile = format!(
            "host={} port=5432 dbname=pim user={login} passfile={} sslmode=verify-full \
             sslrootcert={}",
            fleet.db.address(),
            pim_e2e::fleet::PGPASS_PATH,
            pim_e2e::fleet::CA_PATH
        );
        let snapshot = host.psql(&by_passfile, "SELECT pim_api.snapshot(0) ->> 'host'");
        assert_eq!(snapshot.assert_success().stdout_trimmed(), host.name);
    }
    let tags = fleet
        .db
        .admin_sql("SELECT name || ':' || array_to_string(tags, ',') FROM pim.hosts ORDER BY name");
    assert_eq!(tags.trim(), "db1:db\ndb2:db\nweb1:web");
    // Setup again (an upgrade): nothing changes, the policy is not stored twice, a host
    // already there keeps its password.
    let first = &fleet.hosts[0].sb;
    let admin = fleet.admin_conninfo();
    let policy_path = pim_e2e::fleet::POLICY_PATH;
    for argv in [
        vec!["pimd", "--fleet-setup", &admin, "--policy", policy_path],
        vec![
            "pimd",
            "--fleet-setup",
            &admin,
            "--add-host",
            "db1",
            "--tags",
            "db",
        ],
    ] {
        first.run("root", &argv).assert_success();
    }
    assert_eq!(
        fleet
            .db
            .admin_sql("SELECT count(*) FROM pim.policies")
            .trim(),
        "1"
    );
    let db1 = fleet.host("db1");
    db1.psql(&db1.conninfo(&fleet.db), "SELECT 1")
        .assert_success();
    // A host's own login is no administrator: it cannot run the setup.
    first
        .run(
            "root",
            &[
                "pimd",
                "--fleet-setup",
                &fleet.hosts[0].conninfo(&fleet.db),
                "--policy",
                policy_path,
            ],
        )
        .assert_failure();
    assert_eq!(
        fleet
            .db
            .admin_sql("SELECT count(*) FROM pim.policies")
            .trim(),
        "1"
    );
}

#[test]
fn given_an_approval_on_one_host_then_every_in_scope_host_grants_and_no_other() {
    let fleet = fleet_with(&three_hosts(), &[], "10m");
    let mut alice = fleet.enroll_mfa("web1", "alice");
    let mut bob = fleet.enroll_mfa("db2", "bob");

    // alice asks on db1 for dbadmin (hosts tagged db); bob approves on web1, out of scope.
    let code = alice.next_code(fleet.sb("db1"));
    let asked = pim(
        fleet.sb("db1"),
        "alice",
        &[
            "--json", "activate", "dbadmin", "-d", "30m", "-r", REASON, "--code", &code,
        ],
    );
    asked.assert_status(3);
    let id = asked.json()["request"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no request id:\n{asked}"));
    let listed = pim(fleet.sb("web1"), "bob", &["--json", "requests"]);
    let ids: Vec<i64> = listed.assert_success().json()["requests"]
        .as_array()
        .unwrap_or_else(|| panic!("no requests array:\n{listed}"))
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![id], "bob's requests on web1:\n{listed}");
    let code = bob.next_code(fleet.sb("web1"));
    pim(
        fleet.sb("web1"),
        "bob",
        &[
            "approve",
            &id.to_string(),
            "-c",
            "go ahead",
            "--code",
            &code,
        ],
    )
    .assert_success();
    let approved_at = db_now(&fleet);

    fleet.wait_until("alice in sudo on db1 and db2", WAIT, || {
        fleet.sb("db1").is_member("alice", "sudo") && fleet.sb("db2").is_member("alice", "sudo")
    });
    for host in ["db1", "db2"] {
        sudo_with_groups(fleet.sb(host), "alice", &["sudo"]).assert_success();
    }
    // web1 has mirrored everything committed up to the approval, and still has nothing.
    wait_synced_after(&fleet, "web1", approved_at);
    assert_eq!(
        hosts_with(&fleet, "alice", "sudo"),
        names(&fleet, &["db1", "db2"])
    );
    sudo_with_groups(fleet.sb("web1"), "alice", &["sudo"]).assert_failure();
}

#[test]
fn given_one_enrolment_then_its_codes_work_on_every_host() {
    let fleet = fleet_with(&three_hosts(), &[], "10m");
    let mut alice = fleet.enroll_mfa("db2", "alice");
    for host in &fleet.hosts {
        let status = pim(&host.sb, "alice", &["--json", "mfa", "status"]);
        assert_eq!(
            status.assert_success().json()["enrolled"],
            Value::Bool(true),
            "{}:\n{status}",
            host.name
        );
    }
    // bob never enrolled: no host lets him activate.
    pim(
        fleet.sb("web1"),
        "bob",
        &["activate", "ops", "-r", REASON, "--code", "123456"],
    )
    .assert_failure();

    activate(fleet.sb("web1"), "alice", &mut alice, "ops", "20m").assert_success();
    fleet.wait_until("alice in ops on every host", WAIT, || {
        hosts_with(&fleet, "alice", "ops").len() == fleet.hosts.len()
    });
    activate(fleet.sb("db1"), "alice", &mut alice, "dbops", "20m").assert_success();
    fleet.wait_until("alice in dbops on db1 and db2", WAIT, || {
        hosts_with(&fleet, "alice", "dbops") == names(&fleet, &["db1", "db2"])
    });
}

#[test]
fn given_the_same_code_from_two_hosts_at_once_then_it_is_accepted_exactly_once_many_times() {
    // Six users, three codes each: eighteen races, about a minute of clock.
    let racers = ["alice", "bob", "dave", "erin", "frank", "grace"];
    let fleet = fleet_with(
        &[HostSpec::new("web1", &[]), HostSpec::new("web2", &[])],
        &["erin", "frank", "grace"],
        "10m",
    );
    let mut phones: Vec<Authenticator> =
        racers.iter().map(|u| fleet.enroll_mfa("web1", u)).collect();
    let rounds = 3;
    for round in 0..rounds {
        for (user, phone) in racers.iter().zip(phones.iter_mut()) {
            let code = phone.next_code(fleet.sb("web1"));
            // Two roles, so that a second success could only come from the code counting twice.
            let barrier = Barrier::new(2);
            let (one, two) = thread::scope(|s| {
                let race = |host: &'static str, role: &'static str| {
                    let barrier = &barrier;
                    let code = &code;
                    let fleet = &fleet;
                    s.spawn(move || {
                        barrier.wait();
                        pim(
                            fleet.sb(host),
                            user,
                            &["activate", role, "-d", "10m", "-r", REASON, "--code", code],
                        )
                    })
                };
                let one = race("web1", "ops");
                let two = race("web2", "ops2");
                (one.join().unwrap(), two.join().unwrap())
            });
            assert!(
                one.success() != two.success(),
                "round {round}, {user}: exactly one of the two must be accepted:\n{one}\n{two}"
            );
            let (winner, role, loser) = if one.success() {
                ("web1", "ops", &two)
            } else {
                ("web2", "ops2", &one)
            };
            assert!(
                loser.stderr.to_lowercase().contains("code"),
                "round {round}, {user}: the refusal should be about the code:\n{loser}"
            );
            pim(fleet.sb(winner), user, &["deactivate", role]).assert_success();
        }
    }
    let grants = fleet
        .db
        .admin_sql("SELECT \"user\", count(*) FROM pim.grants GROUP BY \"user\" ORDER BY \"user\"");
    let expected: Vec<String> = {
        let mut users = racers.to_vec();
        users.sort();
        users.iter().map(|u| format!("{u}|{rounds}")).collect()
    };
    assert_eq!(grants.trim().lines().collect::<Vec<_>>(), expected);
}

#[test]
fn given_a_deactivation_on_one_host_then_every_host_ends_the_grant() {
    let fleet = fleet_with(&three_hosts(), &[], "10m");
    let mut alice = fleet.enroll_mfa("web1", "alice");
    let everywhere = names(&fleet, &["web1", "db1", "db2"]);

    activate(fleet.sb("web1"), "alice", &mut alice, "ops", "30m").assert_success();
    fleet.wait_until("alice in ops everywhere", WAIT, || {
        hosts_with(&fleet, "alice", "ops") == everywhere
    });
    for host in &fleet.hosts {
        sudo_with_groups(&host.sb, "alice", &["ops"]).assert_success();
    }
    pim(fleet.sb("db2"), "alice", &["deactivate", "ops"]).assert_success();
    fleet.wait_until("alice out of ops everywhere", WAIT, || {
        hosts_with(&fleet, "alice", "ops").is_empty()
    });
    // A shell still carrying ops gets no sudo on any host.
    for host in &fleet.hosts {
        sudo_with_groups(&host.sb, "alice", &["ops"]).assert_failure();
    }
}

#[test]
fn given_a_revocation_on_one_host_then_every_host_ends_the_grant() {
    let fleet = fleet_with(&three_hosts(), &[], "10m");
    let mut alice = fleet.enroll_mfa("web1", "alice");
    let mut carol = fleet.enroll_mfa("db1", "carol");
    let everywhere = names(&fleet, &["web1", "db1", "db2"]);

    activate(fleet.sb("db1"), "alice", &mut alice, "ops", "30m").assert_success();
    fleet.wait_until("alice in ops everywhere", WAIT, || {
        hosts_with(&fleet, "alice", "ops") == everywhere
    });
    // The database checks the admin's code: without one, or with bob's, nothing ends.
    pim(
        fleet.sb("web1"),
        "bob",
        &[
            "admin",
            "revoke",
            "alice",
            "ops",
            "-r",
            "not mine to end",
            "--code",
            "123456",
        ],
    )
    .assert_failure();
    assert_eq!(hosts_with(&fleet, "alice", "ops"), everywhere);
    let code = carol.next_code(fleet.sb("web1"));
    pim(
        fleet.sb("web1"),
        "carol",
        &[
            "admin",
            "revoke",
            "alice",
            "ops",
            "-r",
            "left the on-call rota",
            "--code",
            &code,
        ],
    )
    .assert_success();
    fleet.wait_until(
        "alice out of ops everywhere after the revocation",
        WAIT,
        || hosts_with(&fleet, "alice", "ops").is_empty(),
    );
    for host in &fleet.hosts {
        sudo_with_groups(&host.sb, "alice", &["ops"]).assert_failure();
    }
}

#[test]
fn given_a_cut_host_then_it_fails_closed_and_catches_up_and_ships_its_audit_on_reconnect() {
    let fleet = fleet_with(
        &[HostSpec::new("web1", &[]), HostSpec::new("web2", &[])],
        &[],
        "90s",
    );
    let mut alice = fleet.enroll_mfa("web1", "alice");
    let mut bob = fleet.enroll_mfa("web1", "bob");
    let mut dave = fleet.enroll_mfa("web2", "dave");

    // alice: sudo for an hour, ops for a minute; both on both hosts.
    activate(fleet.sb("web1"), "alice", &mut alice, "admin", "1h").assert_success();
    activate(fleet.sb("web1"), "alice", &mut alice, "ops", "60s").assert_success();
    fleet.wait_until("alice in sudo and ops on both hosts", WAIT, || {
        fleet
            .hosts
            .iter()
            .all(|h| h.sb.is_member("alice", "sudo") && h.sb.is_member("alice", "ops"))
    });

    sudo_with_groups(fleet.sb("web2"), "alice", &["ops"]).assert_success();
    sudo_with_groups(fleet.sb("web2"), "alice", &["sudo"]).assert_success();
    fleet.link_down("web2");
    let cut_at = db_now(&fleet);

    // A new activation on the cut host is refused, saying why.
    let refused = activate(fleet.sb("web2"), "dave", &mut dave, "ops", "10m");
    refused
        .assert_failure()
        .assert_stderr_contains("unreachable");

    // The expired grant ends on time there, and a shell still carrying ops gets no sudo.
    fleet.wait_until("alice's ops to end on web2 while cut", SLOW_WAIT, || {
        !fleet.sb("web2").is_member("alice", "ops")
    });
    sudo_with_groups(fleet.sb("web2"), "alice", &["ops"]).assert_failure();

    // Meanwhile bob's new grant reaches web1 only.
    activate(fleet.sb("web1"), "bob", &mut bob, "ops", "30m").assert_success();
    fleet.wait_until("bob in ops on web1", WAIT, || {
        fleet.sb("web1").is_member("bob", "ops")
    });

    // After max_staleness the live grant stops counting on web2 (not on web1).
    fleet.wait_until(
        "web2 to take alice's sudo away once stale",
        SLOW_WAIT,
        || !fleet.sb("web2").is_member("alice", "sudo"),
    );
    sudo_with_groups(fleet.sb("web2"), "alice", &["sudo"]).assert_failure();
    assert!(fleet.sb("web1").is_member("alice", "sudo"));
    sudo_with_groups(fleet.sb("web1"), "alice", &["sudo"]).assert_success();
    assert!(!fleet.sb("web2").is_member("bob", "ops"));
    let local_records = local_audit_ids(fleet.sb("web2"));

    fleet.link_up("web2");
    fleet.wait_until(
        "web2 to catch up: alice's sudo back, bob's ops there",
        SLOW_WAIT,
        || fleet.sb("web2").is_member("alice", "sudo") && fleet.sb("web2").is_member("bob", "ops"),
    );
    sudo_with_groups(fleet.sb("web2"), "alice", &["sudo"]).assert_success();
    // Every local record web2 wrote up to the reconnect is in the database, stamped web2,
    // once: among them the PAM refusals and membership removals of the cut.
    let last_local = *local_records.last().expect("web2 has local audit records");
    fleet.wait_until("web2's spooled audit to be shipped", SLOW_WAIT, || {
        let shipped = fleet.db.admin_sql(&format!(
            "SELECT count(*) FROM pim.audit WHERE host = 'web2' AND local_id <= {last_local}"
        ));
        shipped.trim().parse::<usize>().unwrap_or(0) == local_records.len()
    });
    let during_cut = fleet.db.admin_sql(&format!(
        "SELECT action || ':' || outcome FROM pim.audit WHERE host = 'web2' \
         AND local_id IS NOT NULL AND \"user\" = 'alice' AND at >= {cut_at} ORDER BY local_id"
    ));
    assert!(
        during_cut.contains("access-check:refused") && during_cut.contains("membership-remove"),
        "web2's records of the cut were not shipped:\n{during_cut}"
    );
    // And now it takes new activations again.
    activate(fleet.sb("web2"), "dave", &mut dave, "ops", "10m").assert_success();
    fleet.wait_until("dave in ops on both hosts", WAIT, || {
        hosts_with(&fleet, "dave", "ops").len() == 2
    });
}

/// Ids of the records in `sb`'s local audit (`pim --json audit` as root), in order.
fn local_audit_ids(sb: &Sandbox) -> Vec<i64> {
    let mut ids: Vec<i64> = sb
        .audit_records("root", &[])
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn given_the_database_stopped_then_hosts_refuse_new_grants_end_old_ones_and_resync_after_restart() {
    let fleet = fleet_with(
        &[HostSpec::new("web1", &[]), HostSpec::new("web2", &[])],
        &[],
        "10m",
    );
    let mut alice = fleet.enroll_mfa("web1", "alice");
    let mut dave = fleet.enroll_mfa("web2", "dave");
    activate(fleet.sb("web1"), "alice", &mut alice, "admin", "1h").assert_success();
    activate(fleet.sb("web2"), "alice", &mut alice, "ops", "45s").assert_success();
    fleet.wait_until("alice in sudo and ops on both hosts", WAIT, || {
        fleet
            .hosts
            .iter()
            .all(|h| h.sb.is_member("alice", "sudo") && h.sb.is_member("alice", "ops"))
    });

    fleet.db.stop();
    activate(fleet.sb("web2"), "dave", &mut dave, "ops", "10m")
        .assert_failure()
        .assert_stderr_contains("unreachable");
    // The live grant still counts (within max_staleness); the short one ends on time.
    sudo_with_groups(fleet.sb("web1"), "alice", &["sudo"]).assert_success();
    fleet.wait_until("alice's ops to end on both hosts", SLOW_WAIT, || {
        hosts_with(&fleet, "alice", "ops").is_empty()
    });

    fleet.db.start_again();
    let restarted_at = db_now(&fleet);
    for host in ["web1", "web2"] {
        wait_synced_after(&fleet, host, restarted_at);
    }
    // The authority marks the expired grant ended, once.
    fleet.wait_until("the database to end alice's expired ops", WAIT, || {
        fleet
            .db
            .admin_sql(
                "SELECT count(*) FROM pim.grants WHERE \"user\" = 'alice' AND role = 'ops' \
                 AND ended_at IS NOT NULL",
            )
            .trim()
            == "1"
    });
    activate(fleet.sb("web2"), "dave", &mut dave, "ops", "10m").assert_success();
    fleet.wait_until("dave in ops on both hosts", WAIT, || {
        hosts_with(&fleet, "dave", "ops").len() == 2
    });
    assert_eq!(hosts_with(&fleet, "alice", "sudo").len(), 2);
}

#[test]
fn given_a_hosts_database_login_then_it_reads_its_slice_only_no_secret_and_cannot_forge_its_name() {
    let fleet = fleet_with(
        &[
            HostSpec::new("web1", &["web"]),
            HostSpec::new("db1", &["db"]),
        ],
        &[],
        "10m",
    );
    let mut alice = fleet.enroll_mfa("db1", "alice");
    activate(fleet.sb("db1"), "alice", &mut alice, "dbops", "30m").assert_success();
    fleet.wait_until("alice in dbops on db1", WAIT, || {
        fleet.sb("db1").is_member("alice", "dbops")
    });
    let web1 = fleet.host("web1");
    let db1 = fleet.host("db1");
    let mine = web1.conninfo(&fleet.db);

    // Its own slice: web1's snapshot is web1's and holds no grant of db1's scope.
    let snapshot = web1.psql(&mine, "SELECT pim_api.snapshot(0)");
    let snapshot: Value = serde_json::from_str(snapshot.assert_success().stdout_trimmed())
        .unwrap_or_else(|e| panic!("snapshot is not JSON ({e}):\n{snapshot}"));
    assert_eq!(snapshot["host"], "web1");
    assert_eq!(snapshot["grants"], Value::Array(vec![]), "{snapshot}");
    let theirs = db1.psql(&db1.conninfo(&fleet.db), "SELECT pim_api.snapshot(0)");
    assert!(theirs.assert_success().stdout.contains("dbops"), "{theirs}");

    // No table, no secret, no internal function.
    for sql in [
        "SELECT * FROM pim.grants",
        "SELECT secret FROM pim.mfa",
        "SELECT * FROM pim.audit",
        "SELECT * FROM pim.hosts",
        "SELECT pim.totp('\\x00'::bytea, 1)",
        "SELECT rolpassword FROM pg_authid",
        "CREATE TABLE pim_api.mine (x int)",
        "CREATE TABLE public.mine (x int)",
    ] {
        let out = web1.psql(&mine, sql);
        out.assert_failure();
        assert!(
            out.stderr.contains("permission denied"),
            "{sql}: expected a permission error:\n{out}"
        );
    }

    // Its name is the database's to say: no other role, no other login, no claimed host.
    let (db1_login, _) = db1.login();
    let (_, web1_password) = web1.login();
    for sql in [
        format!("SET ROLE {db1_login}"),
        format!("SET SESSION AUTHORIZATION {db1_login}"),
        "SET ROLE pim_owner".to_string(),
    ] {
        web1.psql(&mine, &sql)
            .assert_failure()
            .assert_stderr_contains("permission denied");
    }
    web1.psql(&fleet.conninfo(&db1_login, &web1_password), "SELECT 1")
        .assert_failure()
        .assert_stderr_contains("password authentication failed");
    // The record must follow web1's shipped chain (ship_audit checks it): its prev is the
    // hash of the last record web1 shipped, read again should pimd ship one meanwhile.
    fleet.wait_until("web1 to ship a record claiming db1", WAIT, || {
        let prev = fleet.db.admin_sql(
            "SELECT hash FROM pim.audit WHERE host = 'web1' AND local_id IS NOT NULL \
             ORDER BY local_id DESC LIMIT 1",
        );
        let forged = format!(
            r#"SELECT pim_api.ship_audit('[{{"id": 900001, "at": 1, "host": "db1",
            "actor": "root", "action": "access-check", "user": "alice", "role": "dbops",
            "outcome": "success", "reason": "", "ticket": "", "detail": "", "prev": "{}",
            "hash": "forged"}}]'::jsonb)"#,
            prev.trim()
        );
        web1.psql(&mine, &forged).success()
    });
    assert_eq!(
        fleet
            .db
            .admin_sql("SELECT host FROM pim.audit WHERE local_id = 900001")
            .trim(),
        "web1"
    );

    // And a local user cannot take the host's password.
    fleet
        .sb("web1")
        .run("alice", &["cat", pim_e2e::fleet::PGPASS_PATH])
        .assert_failure();
}

// --- A host an administrator disables (issue 16, review finding 6). ---

#[test]
fn given_a_disabled_host_then_its_grants_for_it_alone_end_and_it_fails_closed_until_enabled() {
    let fleet = fleet_with(
        &[HostSpec::new("web1", &[]), HostSpec::new("web2", &[])],
        &[],
        "90s",
    );
    let mut alice = fleet.enroll_mfa("web2", "alice");
    let mut carol = fleet.enroll_mfa("web1", "carol");
    // alice: ops for web2 alone, sudo on every host.
    let code = alice.next_code(fleet.sb("web2"));
    pim(
        fleet.sb("web2"),
        "alice",
        &[
            "activate", "ops", "-d", "30m", "-r", REASON, "--host", "web2", "--code", &code,
        ],
    )
    .assert_success();
    activate(fleet.sb("web2"), "alice", &mut alice, "admin", "1h").assert_success();
    fleet.wait_until("alice in sudo on both hosts, in ops on web2", WAIT, || {
        hosts_with(&fleet, "alice", "sudo") == names(&fleet, &["web1", "web2"])
            && hosts_with(&fleet, "alice", "ops") == names(&fleet, &["web2"])
    });

    // Only a fleet admin's fresh code disables a host.
    pim(
        fleet.sb("web1"),
        "alice",
        &["admin", "host", "disable", "web2", "--code", "123456"],
    )
    .assert_failure();
    let code = carol.next_code(fleet.sb("web1"));
    pim(
        fleet.sb("web1"),
        "carol",
        &["admin", "host", "disable", "web2", "--code", &code],
    )
    .assert_success()
    .assert_stdout_contains("1 grant(s) for it alone ended");
    pim(fleet.sb("web1"), "carol", &["admin", "hosts"])
        .assert_success()
        .assert_stdout_contains("disabled by carol");
    let live = fleet.db.admin_sql(
        "SELECT role FROM pim.grants WHERE \"user\" = 'alice' AND ended_at IS NULL ORDER BY role",
    );
    assert_eq!(live.trim(), "admin", "{live}");

    // web2 can no longer reach the fleet: a new activation is refused, and once stale it
    // takes alice's memberships away (sudo too: it cannot know the fleet still holds it).
    activate(fleet.sb("web2"), "alice", &mut alice, "ops2", "10m").assert_failure();
    fleet.wait_until("web2 to end alice's memberships", SLOW_WAIT, || {
        !fleet.sb("web2").is_member("alice", "ops") && !fleet.sb("web2").is_member("alice", "sudo")
    });
    sudo_with_groups(fleet.sb("web2"), "alice", &["sudo"]).assert_failure();
    assert!(fleet.sb("web1").is_member("alice", "sudo"));

    // Enabled again with a new database password (whoever had web2 may know the old one):
    // with the old one web2 stays out; given the new one, it takes the fleet's grants back:
    // sudo, not the ended ops.
    let code = carol.next_code(fleet.sb("web1"));
    let enabled = pim(
        fleet.sb("web1"),
        "carol",
        &["--json", "admin", "host", "enable", "web2", "--code", &code],
    );
    let password = enabled.assert_success().json()["password"]
        .as_str()
        .unwrap_or_else(|| panic!("no password in `pim admin host enable`'s JSON:\n{enabled}"))
        .to_string();
    let (login, old_password) = fleet.host("web2").login();
    assert_ne!(password, old_password);
    fleet
        .host("web2")
        .psql(&fleet.conninfo(&login, &old_password), "SELECT 1")
        .assert_failure();
    fleet.set_host_password(fleet.host("web2"), &password);
    fleet.wait_until("alice back in sudo on web2", SLOW_WAIT, || {
        fleet.sb("web2").is_member("alice", "sudo")
    });
    assert!(!fleet.sb("web2").is_member("alice", "ops"));
}

#[test]
fn given_wrong_codes_through_one_host_then_alice_is_locked_out_there_and_not_on_the_other() {
    let fleet = fleet_with(
        &[HostSpec::new("web1", &[]), HostSpec::new("web2", &[])],
        &[],
        "10m",
    );
    let mut alice = fleet.enroll_mfa("web1", "alice");
    // max_failures is 5 (the default): web2's fifth wrong code locks her out there.
    for _ in 0..5 {
        pim(
            fleet.sb("web2"),
            "alice",
            &[
                "activate", "ops", "-d", "10m", "-r", REASON, "--code", "000000",
            ],
        )
        .assert_failure();
    }
    activate(fleet.sb("web2"), "alice", &mut alice, "ops", "10m")
        .assert_failure()
        .assert_stderr_contains("locked on that host");
    let locked_out = |host: &str| {
        let status = pim(fleet.sb(host), "alice", &["mfa", "status"]);
        status.assert_success();
        let line = status.stdout.lines().find(|l| l.starts_with("Locked out:"));
        line.unwrap_or_else(|| panic!("no lockout line: {status}"))
            .trim_start_matches("Locked out:")
            .trim()
            .to_string()
    };
    let on_web2 = locked_out("web2");
    assert!(on_web2.starts_with("until"), "{on_web2}");
    // On web1 she is not locked out: her next code grants, everywhere.
    assert_eq!(locked_out("web1"), "no");
    activate(fleet.sb("web1"), "alice", &mut alice, "ops", "10m").assert_success();
    fleet.wait_until("alice in ops on both hosts", WAIT, || {
        hosts_with(&fleet, "alice", "ops") == names(&fleet, &["web1", "web2"])
    });
}

/// The ticket `pimd --fleet-setup --enrol-admin` or `pim admin mfa-ticket` printed: the last
/// line of the text output, or the JSON's `ticket`.
fn ticket_in(out: &Output) -> String {
    out.stdout
        .lines()
        .rev()
        .find_map(|l| {
            l.split_whitespace()
                .find(|w| w.len() == 23 && w.matches('-').count() == 3)
        })
        .unwrap_or_else(|| panic!("no ticket printed:\n{out}"))
        .to_string()
}

#[test]
fn given_an_admins_ticket_on_one_host_then_alice_enrols_on_another_her_codes_work_on_both_until_a_reset(
) {
    let fleet = fleet_with(&three_hosts(), &[], "10m");
    // Bootstrap: no administrator is enrolled to issue carol's ticket; setup does.
    let setup = fleet.sb("web1").run(
        "root",
        &[
            "pimd",
            "--fleet-setup",
            &fleet.admin_conninfo(),
            "--enrol-admin",
            "carol",
        ],
    );
    let carols = ticket_in(setup.assert_success());
    let mut carol = fleet
        .sb("web1")
        .enroll_mfa_with("carol", &["--ticket", &carols]);

    // alice, on db1, without a ticket: refused, told what to do.
    let bare = pim(fleet.sb("db1"), "alice", &["mfa", "enroll"]);
    assert!(
        bare.assert_failure()
            .stderr
            .contains("'pim admin mfa-ticket alice'"),
        "{bare}"
    );
    // carol issues alice's ticket on web1 with her code; alice enrols on db1 with it,
    // read from stdin.
    let code = carol.next_code(fleet.sb("web1"));
    let issued = pim(
        fleet.sb("web1"),
        "carol",
        &["admin", "mfa-ticket", "alice", "--code", &code],
    );
    let alices = ticket_in(issued.assert_success());
    let enroll = fleet.sb("db1").run_with_stdin(
        "alice",
        &["pim", "--json", "mfa", "enroll", "--ticket", "-"],
        &format!("{alices}\n"),
    );
    let secret = enroll.assert_success().json()["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret:\n{enroll}"))
        .to_string();
    let mut alice = Authenticator::new(&secret);
    let first = alice.next_code(fleet.sb("db1"));
    pim(fleet.sb("db1"), "alice", &["mfa", "confirm", &first]).assert_success();
    // Used: bob gets nothing from it on db2, nor alice again.
    pim(
        fleet.sb("db2"),
        "bob",
        &["mfa", "enroll", "--ticket", &alices],
    )
    .assert_failure();

    // Her codes work on db1 (where she enrolled) and on web1.
    activate(fleet.sb("web1"), "alice", &mut alice, "ops", "20m").assert_success();
    activate(fleet.sb("db1"), "alice", &mut alice, "dbops", "20m").assert_success();
    fleet.wait_until(
        "alice in ops everywhere and dbops on db1 and db2",
        WAIT,
        || {
            hosts_with(&fleet, "alice", "ops").len() == fleet.hosts.len()
                && hosts_with(&fleet, "alice", "dbops") == names(&fleet, &["db1", "db2"])
        },
    );
    // alice lost her phone: carol resets her on db2 and hands over a new ticket; the old
    // phone's codes stop working on every host, the new enrolment's work.
    let code = carol.next_code(fleet.sb("db2"));
    let reset = pim(
        fleet.sb("db2"),
        "carol",
        &["admin", "mfa-ticket", "alice", "--reset", "--code", &code],
    );
    let renewed = ticket_in(reset.assert_success());
    let old_phone = activate(fleet.sb("web1"), "alice", &mut alice, "ops2", "20m");
    assert!(
        old_phone
            .assert_failure()
            .stderr
            .contains("no TOTP enrolment"),
        "{old_phone}"
    );
    let mut alice = fleet
        .sb("web1")
        .enroll_mfa_with("alice", &["--ticket", &renewed]);
    activate(fleet.sb("db2"), "alice", &mut alice, "ops2", "20m").assert_success();

    // The fleet's audit holds the issue and the use, never the ticket.
    let audit = fleet.db.admin_sql(
        "SELECT action || ' ' || actor || ' ' || \"user\" || ' ' || host FROM pim.audit \
         WHERE action IN ('admin-mfa-ticket', 'mfa-enroll') ORDER BY id",
    );
    assert!(
        audit.contains("admin-mfa-ticket carol alice web1"),
        "{audit}"
    );
    assert!(audit.contains("mfa-enroll alice alice db1"), "{audit}");
    assert!(audit.contains("mfa-enroll alice alice web1"), "{audit}");
    let leaked = fleet.db.admin_sql(&format!(
        "SELECT count(*) FROM pim.audit WHERE detail LIKE '%{alices}%' \
         OR detail LIKE '%{}%'",
        alices.replace('-', "")
    ));
    assert_eq!(leaked.trim(), "0");
}

// --- TLS: the authority is the database whose certificate the fleet's CA signed for its name.

#[test]
fn given_sslmode_require_over_tcp_then_the_checker_names_the_key_and_neither_pimd_nor_the_setup_connects(
) {
    let sb = Sandbox::start();
    sb.write_file(
        CONFIG_PATH,
        "[fleet]\n\
         database = \"host=10.77.0.1 port=5432 dbname=pim user=pim_host_web1 \
         passfile=/etc/pim/fleet.pgpass sslmode=require\"\n\
         host = \"web1\"\n",
        0o644,
    );
    let refusal = "fleet.database: connects over TCP (10.77.0.1) with sslmode=require: the \
                   database could be anyone on the network; write sslmode=verify-full \
                   sslrootcert=FILE";
    sb.run("root", &["pimd", "--check-config", "--config", CONFIG_PATH])
        .assert_failure()
        .assert_stderr_contains(&format!("{CONFIG_PATH}:2: {refusal}"));
    sb.run("root", &["pimd", "--config", CONFIG_PATH])
        .assert_status(78)
        .assert_stderr_contains(refusal);
    assert!(!sb.bus_name_owned("org.pim.Manager1"));
    // The administrator's string of --fleet-setup follows the same rule.
    for tls in [
        "",
        "sslmode=require",
        "sslmode=verify-ca sslrootcert=/etc/pim/ca.pem",
    ] {
        let admin = format!("host=10.77.0.1 dbname=pim user=postgres {tls}");
        sb.run(
            "root",
            &["pimd", "--fleet-setup", &admin, "--add-host", "web9"],
        )
        .assert_failure()
        .assert_stderr_contains("connects over TCP (10.77.0.1)")
        .assert_stderr_contains("nothing was changed");
    }
}

/// How many lines of `host`'s pimd log say `what`.
fn log_lines(fleet: &Fleet, host: &str, what: &str) -> usize {
    fleet
        .sb(host)
        .pimd_log()
        .lines()
        .filter(|l| l.contains(what))
        .count()
}

#[test]
fn given_an_authority_with_another_cas_certificate_or_one_for_another_name_then_the_host_syncs_nothing_and_says_why(
) {
    use pim_e2e::postgres::ServerCertificate;
    let fleet = Fleet::start(&[HostSpec::new("web1", &["web"])]);
    for user in USERS {
        fleet.add_user(user, &[]);
    }
    for group in ["ops", "ops2", "dbops"] {
        fleet.add_group(group);
    }
    fleet.setup(POLICY, "10m");
    // A live grant in the database: a host that synchronised would make alice a member.
    fleet.db.admin_sql(
        "INSERT INTO pim.grants (\"user\", role, \"group\", scope, started_at, ends_at, reason, \
         ticket, granted_on) VALUES ('alice', 'ops', 'ops', '{}', pim.now_s(), \
         pim.now_s() + 3600, 'on call', '', 'web1')",
    );
    // Someone on the network answers at the database's address with a certificate of its own
    // CA; then with one of the fleet's CA made for another name.
    let web1 = fleet.sb("web1");
    for (served, why) in [
        (
            ServerCertificate::OtherCa,
            "unable to get local issuer certificate",
        ),
        (ServerCertificate::OtherName, "IP address mismatch"),
    ] {
        if web1.pimd_running() {
            web1.kill_pimd("TERM");
        }
        fleet.db.serve_certificate(served);
        let before = log_lines(&fleet, "web1", why);
        fleet.start_pimds();
        fleet.wait_until(&format!("web1's pimd to refuse {served:?}"), WAIT, || {
            log_lines(&fleet, "web1", why) > before
        });
        assert!(
            web1.pimd_log().contains("certificate verify failed"),
            "{}",
            web1.pimd_log_tail(20)
        );
        assert!(!web1.is_member("alice", "ops"));
        let last_sync = fleet
            .db
            .admin_sql("SELECT coalesce(last_sync, 0) FROM pim.hosts WHERE name = 'web1'");
        assert_eq!(last_sync.trim(), "0");
        // What needs the authority is refused, saying so.
        pim(web1, "alice", &["mfa", "enroll"])
            .assert_failure()
            .assert_stderr_contains("the fleet's database is unreachable");
    }
    // The real certificate again: the same host synchronises and mirrors the grant.
    fleet.db.serve_certificate(ServerCertificate::Trusted);
    fleet.wait_until("web1 to synchronise", SLOW_WAIT, || {
        web1.is_member("alice", "ops")
    });
}

/// `pim --json doctor` as root on `sb`: each check's status and message, in order.
fn doctor(sb: &Sandbox) -> Vec<(String, String, String)> {
    let out = sb.run("root", &["pim", "--json", "doctor"]);
    out.json()["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in:\n{out}"))
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or("").to_string();
            (field("check"), field("status"), field("message"))
        })
        .collect()
}

/// The status and message of `check` in a doctor report.
#[track_caller]
fn finding<'a>(report: &'a [(String, String, String)], check: &str) -> (&'a str, &'a str) {
    let found: Vec<_> = report.iter().filter(|(c, _, _)| c == check).collect();
    assert_eq!(found.len(), 1, "{check} in {report:#?}");
    (found[0].1.as_str(), found[0].2.as_str())
}

/// Waits until doctor's fleet-link on `host` says `status`; returns that report.
#[track_caller]
fn doctor_once_link_is(
    fleet: &Fleet,
    host: &str,
    status: &str,
    timeout: Duration,
) -> Vec<(String, String, String)> {
    let mut report = Vec::new();
    fleet.wait_until(
        &format!("doctor's fleet-link on {host} to say {status}"),
        timeout,
        || {
            report = doctor(fleet.sb(host));
            report
                .iter()
                .any(|(c, s, _)| c == "fleet-link" && s == status)
        },
    );
    report
}

#[test]
fn given_a_fleet_host_with_a_policy_then_doctor_judges_the_fleets_roles_and_its_link() {
    let fleet = fleet_with(&[HostSpec::new("web1", &["web"])], &[], "10m");
    let report = doctor_once_link_is(&fleet, "web1", "ok", WAIT);

    // The roles are the policy's, not the host file's (which has none).
    let (status, message) = finding(&report, "groups");
    assert_eq!(status, "ok", "{report:#?}");
    assert!(
        message.contains("dbops, ops, ops2, sudo"),
        "groups did not judge the fleet's roles: {message}"
    );
    let (status, message) = finding(&report, "pam-groups");
    assert_eq!(status, "ok", "{report:#?}");
    assert!(message.contains("ops, sudo"), "{message}");
    assert_ne!(finding(&report, "members").0, "skip", "{report:#?}");

    let (status, message) = finding(&report, "fleet-link");
    assert!(
        message.contains("max_staleness 10m") && message.contains("policy version 1"),
        "{status}: {message}"
    );
    let (status, message) = finding(&report, "fleet");
    assert_eq!(status, "ok", "{message}");
    assert!(message.contains("over TCP"), "{message}");

    // The state doctor reads is root's: not even the fleet's administrator (carol) gets it.
    let sb = fleet.sb("web1");
    for caller in ["alice", "carol"] {
        sb.call_pimd(caller, "FleetState", "", &[])
            .assert_failure()
            .assert_stderr_contains("only root may read pimd's fleet state");
    }
    sb.call_pimd("root", "FleetState", "", &[])
        .assert_success()
        .assert_stdout_contains("\"web1\"");

    // Without pimd nothing says which roles the host runs: the role checks skip, saying why,
    // rather than judge the host file's (it has none).
    sb.kill_pimd("TERM");
    let report = doctor(sb);
    for check in ["groups", "pam-groups", "members"] {
        let (status, message) = finding(&report, check);
        assert_eq!(status, "skip", "{check}: {message}");
        assert!(
            message.starts_with("roles come from the fleet policy; "),
            "{check}: {message}"
        );
    }
    assert_eq!(finding(&report, "fleet-link").0, "skip", "{report:#?}");
}

#[test]
fn given_a_fleet_host_cut_past_max_staleness_then_doctor_fails_its_fleet_link() {
    let fleet = fleet_with(&[HostSpec::new("web1", &["web"])], &[], "90s");
    doctor_once_link_is(&fleet, "web1", "ok", WAIT);
    fleet.link_down("web1");

    let report = doctor_once_link_is(&fleet, "web1", "fail", SLOW_WAIT);
    let (_, message) = finding(&report, "fleet-link");
    assert!(
        message.contains("more than max_staleness (1m30s) ago")
            && message.contains("pimd refuses fleet grants"),
        "{message}"
    );
    let out = fleet.sb("web1").run("root", &["pim", "doctor"]);
    assert_eq!(out.status, 1, "doctor passed a stale host:\n{out}");
    // The policy pimd runs stays: the role checks still judge its roles.
    assert_eq!(finding(&report, "groups").0, "ok", "{report:#?}");
}
