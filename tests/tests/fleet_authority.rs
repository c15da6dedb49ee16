//! The fleet's authority attacked as a host would: a real PostgreSQL (tests/src/postgres.rs)
//! set up by `pimd --fleet-setup`, and hosts that connect with their own database login and
//! password, as a root on a compromised host could, sending whatever SQL they like. The
//! database alone must hold the invariants: a host reads nothing but what the pim_api
//! functions give it (no table, no secret, no other host's grants), cannot be another host,
//! gets no grant without the user's fresh TOTP code and the approvals, and the races between
//! hosts (the same code sent at once, expiry) have one winner.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use pim_common::types::AuditRecord;
use pim_common::PimError;
use pim_daemon::authority::{
    Activated, ActivationAsk, AdminProof, Authority as _, AuthorityError, Decided, Decision,
    PgAuthority, PgWakeup, Wakeup as _,
};
use pim_daemon::conninfo::ConnInfo;
use pim_e2e::binary;
use pim_e2e::postgres::{Postgres, ServerCertificate};
use pim_e2e::{totp_code, TOTP_STEP};
use postgres::{Client, NoTls};
use serde_json::Value;

/// The policy every test starts from: `dba` for hosts tagged db without approval, `ops` on
/// every host with two approvals, `race0..7` for the concurrency test.
fn policy() -> String {
    let mut text = String::from(
        r#"[daemon]
admins = ["root", "ann"]

[mfa]
max_failures = 3
failure_window = "5m"
lockout = "15m"

[roles.dba]
group = "postgres"
hosts = ["tag:db"]
eligible = ["alice", "%dbas"]
max_duration = "1h"

[roles.ops]
group = "sudo"
eligible = ["alice"]
require_approval = true
approvers = ["carol", "dave", "%leads"]
approvals_required = 2
"#,
    );
    for n in 0..RACE_ROLES {
        text.push_str(&format!(
            "\n[roles.race{n}]\ngroup = \"race{n}\"\neligible = [\"%racers\"]\n"
        ));
    }
    text
}

const RACE_ROLES: usize = 8;

struct Authority {
    pg: Postgres,
    dir: PathBuf,
}

impl Authority {
    /// A cluster set up with [`policy`] and the hosts `(name, tags)`; returns the hosts'
    /// passwords in the same order.
    fn start(hosts: &[(&str, &str)]) -> (Authority, Vec<String>) {
        let pg = Postgres::start("10.77.0.1/16");
        let dir = std::env::temp_dir().join(format!(
            "pim-fleet-authority-{}-{}",
            std::process::id(),
            pim_e2e::postgres::random_hex(4)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.toml"), policy()).unwrap();
        let authority = Authority { pg, dir };
        let policy_file = authority.policy_file();
        let out = authority.setup(&["--policy", &policy_file]);
        assert!(out.status.success(), "{out:?}");
        let passwords = hosts
            .iter()
            .map(|(name, tags)| authority.add_host(name, tags))
            .collect();
        (authority, passwords)
    }

    fn policy_file(&self) -> String {
        self.dir.join("policy.toml").display().to_string()
    }

    /// `pimd --fleet-setup ADMIN_CONNINFO ARGS...`
    fn setup(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary("pimd"))
            .arg("--fleet-setup")
            .arg(self.pg.admin_conninfo())
            .args(args)
            .output()
            .expect("running pimd --fleet-setup")
    }

    fn add_host(&self, name: &str, tags: &str) -> String {
        let out = self.setup(&["--add-host", name, "--tags", tags]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{out:?}");
        stdout
            .split_once(", password ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no password in {stdout:?}"))
            .to_string()
    }

    fn admin(&self) -> Client {
        Client::connect(&self.pg.admin_conninfo(), NoTls).expect("admin connection")
    }

    /// A connection as host `name`'s login, over the socket with its password.
    fn host(&self, name: &str, password: &str) -> Client {
        self.try_login(&format!("pim_host_{name}"), password)
            .unwrap_or_else(|e| panic!("host {name} cannot log in: {e}"))
    }

    fn try_login(&self, login: &str, password: &str) -> Result<Client, postgres::Error> {
        Client::connect(&self.conninfo(login, password), NoTls)
    }

    /// The libpq string of `login` with `password`, over the socket.
    fn conninfo(&self, login: &str, password: &str) -> String {
        self.pg.admin_conninfo().replace(
            "user=postgres",
            &format!("user={login} password='{password}'"),
        )
    }

    /// pimd's own authority (the PostgreSQL implementation of the seam) as host `name`.
    fn pimd_authority(&self, name: &str, password: &str) -> (PgAuthority, PgWakeup) {
        let conninfo = ConnInfo::parse(&self.conninfo(&format!("pim_host_{name}"), password))
            .expect("host conninfo");
        (PgAuthority::new(conninfo.clone()), PgWakeup::new(conninfo))
    }

    /// `user` enrolled and confirmed (arranged as the administrator, so that each test
    /// spends its codes only where it means to); returns the secret in base32.
    fn enrolled(&self, user: &str) -> String {
        let bytes = random_secret();
        self.admin()
            .execute(
                "INSERT INTO pim.mfa (\"user\", secret, confirmed, enrolled_at) \
                 VALUES ($1, $2, true, 0)",
                &[&user, &bytes],
            )
            .unwrap();
        base32(&bytes)
    }

    /// `user`'s enrolment ticket, issued as `pimd --fleet-setup --enrol-admin` issues one
    /// (through the trusted administrator's connection).
    fn ticket(&self, user: &str) -> String {
        self.admin()
            .query_one(
                "SELECT pim.issue_enrolment_ticket($1, 'test', 'test')",
                &[&user],
            )
            .unwrap()
            .get(0)
    }

    fn count(&self, sql: &str) -> i64 {
        self.admin().query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn random_secret() -> Vec<u8> {
    let hex = pim_e2e::postgres::random_hex(20);
    (0..20)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = buf.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(ALPHABET[((n >> (35 - 5 * i)) & 31) as usize] as char);
        }
    }
    out
}

fn now_step() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now / TOTP_STEP
}

fn code(secret: &str, step: i64) -> String {
    totp_code(secret, step * TOTP_STEP)
}

/// One pim_api call's JSON answer, or the database's error.
fn call(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Value, postgres::Error> {
    let text: String = client
        .query_one(&format!("SELECT ({sql})::text"), params)?
        .get(0);
    Ok(serde_json::from_str(&text).unwrap())
}

/// The SQLSTATE of a raised refusal.
fn sqlstate(result: &Result<Value, postgres::Error>) -> String {
    match result {
        Err(e) => e
            .as_db_error()
            .map(|db| db.code().code().to_string())
            .unwrap_or_else(|| format!("not a database error: {e}")),
        Ok(v) => format!("no error: {v}"),
    }
}

/// The kind of a returned refusal (`{"refused": {"kind": ...}}`), or "" when none.
fn refused(result: &Result<Value, postgres::Error>) -> String {
    match result {
        Ok(v) => v["refused"]["kind"].as_str().unwrap_or("").to_string(),
        Err(e) => format!("raised: {e}"),
    }
}

/// Offers `user`'s `code` in a transaction of its own, as pimd does before each call that
/// checks a code; the offer's own answer (a refusal, a lockout) is the caller's to check.
fn offer(client: &mut Client, user: &str, code: &str) -> Result<Value, postgres::Error> {
    call(client, "pim_api.offer_code($1, $2)", &[&user, &code])
}

/// `ticket` offered for `user` in a transaction of its own, then `pim_api.enrol`, as pimd
/// calls them; the answer of enrol.
fn enrol(
    client: &mut Client,
    user: &str,
    secret: &[u8],
    ticket: &str,
) -> Result<Value, postgres::Error> {
    let _ = call(client, "pim_api.offer_ticket($1, $2)", &[&user, &ticket]);
    call(
        client,
        "pim_api.enrol($1, $2, $3)",
        &[&user, &secret, &ticket],
    )
}

/// `offer` then `activate`, as pimd calls them.
fn activate(
    client: &mut Client,
    user: &str,
    groups: &[&str],
    role: &str,
    code: &str,
    only_host: Option<&str>,
) -> Result<Value, postgres::Error> {
    let _ = offer(client, user, code);
    activate_unoffered(client, user, groups, role, code, only_host)
}

fn activate_unoffered(
    client: &mut Client,
    user: &str,
    groups: &[&str],
    role: &str,
    code: &str,
    only_host: Option<&str>,
) -> Result<Value, postgres::Error> {
    call(
        client,
        "pim_api.activate($1, $2, $3, 600, 'rotate the keys', '', $4, $5)",
        &[&user, &groups, &role, &code, &only_host],
    )
}

/// `sql` fails with 42501: insufficient privilege (schema, table, function, language or role).
fn assert_insufficient_privilege(client: &mut Client, sql: &str) {
    let result = client.batch_execute(sql);
    let code = result
        .as_ref()
        .err()
        .and_then(|e| e.as_db_error())
        .map(|db| db.code().code().to_string());
    assert_eq!(code.as_deref(), Some("42501"), "{sql}: {result:?}");
}

fn snapshot_grants(client: &mut Client) -> Vec<(String, String)> {
    let snapshot = call(client, "pim_api.snapshot(0)", &[]).unwrap();
    snapshot["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["user"].as_str().unwrap().to_string(),
                g["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn given_a_host_login_then_it_reads_no_table_no_secret_and_no_helper() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let secret = authority.enrolled("alice");
    let mut host = authority.host("db1", &passwords[0]);
    for sql in [
        "SELECT * FROM pim.mfa",
        "SELECT * FROM pim.grants",
        "SELECT * FROM pim.hosts",
        "SELECT * FROM pim.audit",
        "SELECT * FROM pim.policies",
        "SELECT pim.totp('x'::bytea, 1)",
        "SELECT pim.create_host('evil', '{}', 'me', 'me')",
        "SELECT pim.store_policy('', '{}', 'me', 'me')",
        "SELECT pim_crypto.gen_random_bytes(1)",
        "UPDATE pim.mfa SET last_step = NULL",
        "INSERT INTO pim.grants (\"user\") VALUES ('mallory')",
        "CREATE FUNCTION pim_api.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "SET ROLE pim_owner",
    ] {
        assert_insufficient_privilege(&mut host, sql);
    }
    // What the API gives about MFA is a yes or no, never the secret.
    let enrolled: bool = host
        .query_one("SELECT pim_api.mfa_enrolled('alice')", &[])
        .unwrap()
        .get(0);
    assert!(enrolled);
    let every_answer = [
        call(&mut host, "pim_api.snapshot(0)", &[]).unwrap(),
        call(&mut host, "pim_api.hosts()", &[]).unwrap(),
        call(&mut host, "pim_api.policy(1)", &[]).unwrap(),
    ];
    for answer in every_answer {
        assert!(!answer.to_string().contains(&secret), "{answer}");
    }
    let fresh = code(&secret, now_step());
    activate(&mut host, "alice", &[], "dba", &fresh, None).unwrap();
    let answer = call(&mut host, "pim_api.snapshot(0)", &[]).unwrap();
    assert!(!answer.to_string().contains(&secret));
}

#[test]
fn given_a_host_then_the_database_names_it_by_its_login_and_it_cannot_be_another() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let secret = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    assert_eq!(
        call(&mut db1, "pim_api.snapshot(0)", &[]).unwrap()["host"],
        "db1"
    );
    for sql in [
        "SET ROLE pim_host_web7",
        "SET SESSION AUTHORIZATION pim_host_web7",
    ] {
        let result = db1.batch_execute(sql);
        assert!(result.is_err(), "{sql} was allowed");
    }
    // Another host's password is not this one's.
    assert!(authority.try_login("pim_host_web7", &passwords[0]).is_err());
    // A login in pim_host that setup did not register is no host at all.
    authority
        .admin()
        .batch_execute("CREATE ROLE pim_host_ghost LOGIN PASSWORD 'boo' IN ROLE pim_host")
        .unwrap();
    let mut ghost = authority.try_login("pim_host_ghost", "boo").unwrap();
    let result = call(&mut ghost, "pim_api.snapshot(0)", &[]);
    assert_eq!(sqlstate(&result), "PM007", "{result:?}");

    // What db1 does is recorded as db1's, whatever it says.
    let fresh = code(&secret, now_step());
    let granted = activate(&mut db1, "alice", &[], "dba", &fresh, None).unwrap();
    assert!(granted["granted"]["id"].is_i64(), "{granted}");
    assert_eq!(
        authority
            .count("SELECT count(*) FROM pim.audit WHERE action = 'activate' AND host = 'db1'"),
        1
    );
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.grants WHERE granted_on = 'db1'"),
        1
    );
}

#[test]
fn given_grants_scoped_to_hosts_then_each_host_sees_only_its_own() {
    let (authority, passwords) =
        Authority::start(&[("db1", "db"), ("db2", "db,eu"), ("web7", "web")]);
    let alice = authority.enrolled("alice");
    let bob = authority.enrolled("bob");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut db2 = authority.host("db2", &passwords[1]);
    let mut web7 = authority.host("web7", &passwords[2]);
    let step = now_step();

    // dba applies to tag:db: alice's grant reaches db1 and db2, not web7.
    let granted = activate(&mut web7, "alice", &[], "dba", &code(&alice, step), None).unwrap();
    assert!(granted.get("granted").is_some(), "{granted}");
    // bob is eligible through %dbas, as db2 says: the grant is for db2 alone.
    let narrowed = activate(
        &mut db2,
        "bob",
        &["dbas"],
        "dba",
        &code(&bob, step),
        Some("db2"),
    )
    .unwrap();
    assert_eq!(narrowed["granted"]["only_host"], "db2", "{narrowed}");

    let alice_dba = ("alice".to_string(), "dba".to_string());
    let bob_dba = ("bob".to_string(), "dba".to_string());
    assert_eq!(snapshot_grants(&mut db1), vec![alice_dba.clone()]);
    assert_eq!(snapshot_grants(&mut db2), vec![alice_dba, bob_dba]);
    assert_eq!(snapshot_grants(&mut web7), vec![]);

    // Narrowing to a host outside the role's scope, or to no host, is refused.
    let outside = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&alice, step + 1),
        Some("web7"),
    );
    assert_eq!(sqlstate(&outside), "PM002", "{outside:?}");
    let nowhere = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&alice, step + 1),
        Some("nosuch"),
    );
    assert_eq!(sqlstate(&nowhere), "PM008", "{nowhere:?}");
    // Not eligible: neither named nor in a named group.
    let mallory = activate(&mut db1, "mallory", &["staff"], "dba", "123456", None);
    assert_eq!(sqlstate(&mallory), "PM001", "{mallory:?}");
}

#[test]
fn given_no_fresh_code_then_no_grant_and_wrong_codes_lock_the_user_out() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let secret = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    let step = now_step();
    let grants = || authority.count("SELECT count(*) FROM pim.grants");

    let missing = activate(&mut db1, "alice", &[], "dba", "", None);
    assert_eq!(refused(&missing), "PM003", "{missing:?}");
    let unenrolled = activate(&mut db1, "mallory", &["dbas"], "dba", "123456", None);
    assert_eq!(refused(&unenrolled), "PM004", "{unenrolled:?}");
    // A code two steps old is outside the window.
    let stale = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&secret, step - 2),
        None,
    );
    assert_eq!(refused(&stale), "PM005", "{stale:?}");
    assert_eq!(grants(), 0);
    // The wrong code was counted and audited: the refusal was returned, not raised.
    assert_eq!(
        authority.count("SELECT failures::bigint FROM pim.mfa WHERE \"user\" = 'alice'"),
        1
    );
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.audit WHERE action = 'mfa-failure'"),
        1
    );

    let fresh = code(&secret, step);
    let granted = activate(&mut db1, "alice", &[], "dba", &fresh, None).unwrap();
    assert!(granted.get("granted").is_some(), "{granted}");
    call(&mut db1, "pim_api.deactivate('alice', 'dba')", &[]).unwrap();
    // The same code again, from this host or another connection: replayed.
    let mut again = authority.host("db1", &passwords[0]);
    let replayed = activate(&mut again, "alice", &[], "dba", &fresh, None);
    assert_eq!(refused(&replayed), "PM005", "{replayed:?}");
    assert_eq!(grants(), 1);

    // Two more wrong codes reach max_failures = 3: locked, and then even a fresh code fails.
    for _ in 0..2 {
        let wrong = activate(&mut db1, "alice", &[], "dba", "000000", None);
        assert!(
            ["PM005", "PM006"].contains(&refused(&wrong).as_str()),
            "{wrong:?}"
        );
    }
    let locked = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&secret, step + 1),
        None,
    );
    assert_eq!(refused(&locked), "PM006", "{locked:?}");
    assert_eq!(grants(), 1);
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.audit WHERE action = 'mfa-lockout'"),
        1
    );
}

#[test]
fn given_wrong_codes_checked_in_transactions_rolled_back_then_they_still_lock_the_user_out() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let secret = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    let failures =
        || authority.count("SELECT failures::bigint FROM pim.mfa WHERE \"user\" = 'alice'");

    // A code offered and checked in one transaction is not checked at all, fresh or not:
    // the offer's count would go with a rollback.
    db1.batch_execute("BEGIN").unwrap();
    offer(&mut db1, "alice", &code(&secret, now_step())).unwrap();
    let same = activate_unoffered(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&secret, now_step()),
        None,
    );
    db1.batch_execute("ROLLBACK").unwrap();
    assert_eq!(refused(&same), "PM003", "{same:?}");
    // Nor is a code never offered.
    let unoffered = activate_unoffered(&mut db1, "alice", &[], "dba", "123456", None);
    assert_eq!(refused(&unoffered), "PM003", "{unoffered:?}");
    assert_eq!(failures(), 0);

    // The attack: each wrong code checked inside BEGIN ... ROLLBACK, or with a failing
    // statement after it in the same implicit transaction (as a pipeline does).
    for (n, guess) in ["000001", "000002", "000003"].into_iter().enumerate() {
        offer(&mut db1, "alice", guess).unwrap();
        if n % 2 == 0 {
            db1.batch_execute("BEGIN").unwrap();
            let wrong = activate_unoffered(&mut db1, "alice", &[], "dba", guess, None);
            assert!(
                ["PM005", "PM006"].contains(&refused(&wrong).as_str()),
                "{wrong:?}"
            );
            db1.batch_execute("ROLLBACK").unwrap();
        } else {
            let pipelined = db1.simple_query(&format!(
                "SELECT pim_api.activate('alice', '{{}}', 'dba', 600, 'r', '', '{guess}', NULL); \
                 SELECT 1 / 0"
            ));
            assert!(pipelined.is_err(), "{pipelined:?}");
        }
        assert_eq!(failures(), n as i64 + 1, "guess {guess}");
    }
    // The next offer finds max_failures = 3 counted: locked out, audited, and a fresh code
    // is refused.
    let locked = offer(&mut db1, "alice", &code(&secret, now_step()));
    assert_eq!(refused(&locked), "PM006", "{locked:?}");
    let fresh = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&secret, now_step()),
        None,
    );
    assert_eq!(refused(&fresh), "PM006", "{fresh:?}");
    assert_eq!(authority.count("SELECT count(*) FROM pim.grants"), 0);
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.audit WHERE action = 'mfa-lockout'"),
        1
    );
}

#[test]
fn given_a_host_login_then_it_runs_no_do_block_and_makes_no_temporary_table() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    for sql in [
        "DO $$ BEGIN PERFORM pim_api.snapshot(0); END $$",
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "CREATE TEMP TABLE t (x int)",
    ] {
        assert_insufficient_privilege(&mut db1, sql);
    }
}

#[test]
fn given_a_role_needing_two_approvals_then_the_grant_starts_only_after_the_second_fresh_one() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let alice = authority.enrolled("alice");
    let carol = authority.enrolled("carol");
    let dave = authority.enrolled("dave");
    let erin = authority.enrolled("erin");
    let mallory = authority.enrolled("mallory");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut web7 = authority.host("web7", &passwords[1]);
    let step = now_step();
    let grants = || authority.count("SELECT count(*) FROM pim.grants");

    let pending = activate(&mut db1, "alice", &[], "ops", &code(&alice, step), None).unwrap();
    let id = pending["pending"]["request_id"].as_i64().unwrap();
    assert_eq!(pending["pending"]["approvals_required"], 2);
    assert_eq!(grants(), 0);

    let approve = |client: &mut Client, who: &str, groups: &[&str], code: &str| {
        let _ = offer(client, who, code);
        call(
            client,
            "pim_api.approve($1, $2, $3, $4, 'ok')",
            &[&id, &who, &groups, &code],
        )
    };
    // The requester, and someone who is no approver, even claiming a group that is not one.
    let own = approve(&mut web7, "alice", &[], &code(&alice, step + 1));
    assert_eq!(sqlstate(&own), "PM007", "{own:?}");
    let outsider = approve(&mut web7, "mallory", &["staff"], &code(&mallory, step));
    assert_eq!(sqlstate(&outsider), "PM007", "{outsider:?}");
    // An approver without a fresh code.
    let wrong = approve(&mut web7, "carol", &[], "000000");
    assert_eq!(refused(&wrong), "PM005", "{wrong:?}");
    let first = approve(&mut web7, "carol", &[], &code(&carol, step)).unwrap();
    assert_eq!(first["still_pending"]["approvals"], 1, "{first}");
    assert_eq!(grants(), 0);
    // The same approver twice does not count twice.
    let twice = approve(&mut db1, "carol", &[], &code(&carol, step + 1));
    assert_eq!(sqlstate(&twice), "PM009", "{twice:?}");
    // erin is an approver through %leads only, as web7 says: the fleet does not count it.
    let through_group = approve(&mut web7, "erin", &["leads"], &code(&erin, step));
    assert_eq!(sqlstate(&through_group), "PM007", "{through_group:?}");
    let second = approve(&mut web7, "dave", &[], &code(&dave, step)).unwrap();
    assert_eq!(second["granted"]["user"], "alice", "{second}");
    assert_eq!(second["granted"]["request_id"], id);
    assert_eq!(grants(), 1);
    // Decided: nothing more to approve.
    let late = approve(&mut web7, "carol", &[], "123456");
    assert_eq!(sqlstate(&late), "PM009", "{late:?}");
}

#[test]
fn given_a_host_enrolling_invented_approvers_in_an_approver_group_then_their_approvals_grant_nothing(
) {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let alice = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    let step = now_step();
    let pending = activate(&mut db1, "alice", &[], "ops", &code(&alice, step), None).unwrap();
    let id = pending["pending"]["request_id"].as_i64().unwrap();
    // db1's root invents zz1 and zz2, enrols them with secrets of its own, says they are in
    // %leads (an approver group of ops) and approves alice's request twice.
    for user in ["zz1", "zz2"] {
        let secret = random_secret();
        let ticket = authority.ticket(user);
        let enrolled = enrol(&mut db1, user, &secret, &ticket);
        assert_eq!(refused(&enrolled), "", "{enrolled:?}");
        let confirm = code(&base32(&secret), step);
        offer(&mut db1, user, &confirm).unwrap();
        let confirmed = call(
            &mut db1,
            "pim_api.confirm_enrolment($1, $2)",
            &[&user, &confirm],
        );
        assert_eq!(refused(&confirmed), "", "{confirmed:?}");
        let approval = code(&base32(&secret), step + 1);
        offer(&mut db1, user, &approval).unwrap();
        let approved = call(
            &mut db1,
            "pim_api.approve($1, $2, '{leads}', $3, 'ok')",
            &[&id, &user, &approval],
        );
        assert_eq!(sqlstate(&approved), "PM007", "{approved:?}");
        assert!(
            format!("{approved:?}").contains("only through a group"),
            "{approved:?}"
        );
    }
    // Nor does the request show up for them to decide.
    let listed = call(&mut db1, "pim_api.requests_for('zz1', '{leads}')", &[]).unwrap();
    assert_eq!(listed, serde_json::json!([]));
    assert_eq!(authority.count("SELECT count(*) FROM pim.approvals"), 0);
    assert_eq!(authority.count("SELECT count(*) FROM pim.grants"), 0);
}

#[test]
fn given_a_user_eligible_only_through_a_group_a_host_claims_then_the_grant_is_for_that_host_alone()
{
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("db2", "db")]);
    let bob = authority.enrolled("bob");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut db2 = authority.host("db2", &passwords[1]);
    let step = now_step();
    // db1 says bob is in %dbas (dba's eligible group) and asks for db2, or for every host.
    let elsewhere = activate(
        &mut db1,
        "bob",
        &["dbas"],
        "dba",
        &code(&bob, step),
        Some("db2"),
    );
    assert_eq!(sqlstate(&elsewhere), "PM001", "{elsewhere:?}");
    let everywhere = activate(&mut db1, "bob", &["dbas"], "dba", &code(&bob, step), None).unwrap();
    assert_eq!(everywhere["granted"]["only_host"], "db1", "{everywhere}");
    assert!(snapshot_grants(&mut db2).is_empty());
    assert_eq!(
        snapshot_grants(&mut db1),
        vec![("bob".into(), "dba".into())]
    );
}

#[test]
fn given_an_enrolment_waiting_on_one_host_then_another_host_can_neither_replace_nor_confirm_it() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut web7 = authority.host("web7", &passwords[1]);
    let bob = random_secret();
    let ticket = authority.ticket("bob");
    assert_eq!(
        enrol(&mut db1, "bob", &bob, &ticket).unwrap(),
        serde_json::json!({})
    );
    // web7 tries to swap in a secret it knows (with a ticket of bob's it got somehow), then
    // to confirm db1's with bob's own code.
    let theirs = random_secret();
    let ticket = authority.ticket("bob");
    let swapped = enrol(&mut web7, "bob", &theirs, &ticket);
    assert_eq!(sqlstate(&swapped), "PM009", "{swapped:?}");
    let fresh = code(&base32(&bob), now_step());
    offer(&mut web7, "bob", &fresh).unwrap();
    let confirmed_elsewhere = call(&mut web7, "pim_api.confirm_enrolment('bob', $1)", &[&fresh]);
    assert_eq!(
        sqlstate(&confirmed_elsewhere),
        "PM004",
        "{confirmed_elsewhere:?}"
    );
    // db1 confirms with the same code, still unspent; db1 may restart its own enrolment.
    let confirmed = call(&mut db1, "pim_api.confirm_enrolment('bob', $1)", &[&fresh]).unwrap();
    assert_eq!(confirmed, serde_json::json!({}));
    for secret in [&theirs, &bob] {
        let ticket = authority.ticket("carol");
        assert_eq!(
            enrol(&mut db1, "carol", secret, &ticket).unwrap(),
            serde_json::json!({})
        );
    }
    // An enrolment left unconfirmed past its 10 minutes may be started again elsewhere.
    authority
        .admin()
        .execute(
            "UPDATE pim.mfa SET enrolled_at = enrolled_at - 601 WHERE \"user\" = 'carol'",
            &[],
        )
        .unwrap();
    let ticket = authority.ticket("carol");
    assert_eq!(
        enrol(&mut web7, "carol", &theirs, &ticket).unwrap(),
        serde_json::json!({})
    );
}

// --- Enrolment tickets (review finding 3): no host enrols anyone on its own. ---

/// The printed ticket in `pimd --fleet-setup --enrol-admin`'s output for `user`.
fn printed_ticket(stdout: &str, user: &str) -> String {
    let prefix = format!("enrolment ticket for {user}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no ticket for {user} in {stdout:?}"))
        .to_string()
}

#[test]
fn given_no_ticket_then_a_host_enrols_nobody_not_even_an_unenrolled_admin_of_the_policy() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    // The attack: ann is an administrator of the policy and not enrolled yet.
    let enrolled: bool = db1
        .query_one("SELECT pim_api.mfa_enrolled('ann')", &[])
        .unwrap()
        .get(0);
    assert!(!enrolled);
    let mine = random_secret();
    let bare = call(&mut db1, "pim_api.enrol('ann', $1, '')", &[&mine]);
    assert_eq!(sqlstate(&bare), "PM007", "{bare:?}");
    assert!(
        format!("{bare:?}").contains("pim admin mfa-ticket ann"),
        "{bare:?}"
    );
    let null = call(&mut db1, "pim_api.enrol('ann', $1, NULL)", &[&mine]);
    assert_eq!(sqlstate(&null), "PM007", "{null:?}");
    // A made-up ticket, offered as pimd would: there is none to guess at.
    let guessed = enrol(&mut db1, "ann", &mine, "AAAAA-AAAAA-AAAAA-AAAAA");
    assert_eq!(refused(&guessed), "PM008", "{guessed:?}");
    // The old two-argument enrol is gone.
    let old = call(&mut db1, "pim_api.enrol('ann', $1)", &[&mine]);
    assert_eq!(sqlstate(&old), "42883", "{old:?}");
    assert_eq!(authority.count("SELECT count(*) FROM pim.mfa"), 0);
}

#[test]
fn given_a_ticket_for_alice_then_it_enrols_alice_once_and_never_bob_and_expires() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut web7 = authority.host("web7", &passwords[1]);
    let alices = authority.ticket("alice");
    assert!(
        alices.len() == 23 && alices.split('-').all(|g| g.len() == 5),
        "{alices}"
    );
    // bob has no ticket; then one of his own, which alice's is not.
    let for_bob = enrol(&mut web7, "bob", &random_secret(), &alices);
    assert_eq!(refused(&for_bob), "PM008", "{for_bob:?}");
    let _bobs = authority.ticket("bob");
    let for_bob = enrol(&mut web7, "bob", &random_secret(), &alices);
    assert_eq!(refused(&for_bob), "PM005", "{for_bob:?}");
    // alice's works, typed in lower case without its dashes, once.
    let typed = alices.replace('-', "").to_lowercase();
    let secret = random_secret();
    assert_eq!(
        enrol(&mut db1, "alice", &secret, &typed).unwrap(),
        serde_json::json!({})
    );
    let again = enrol(&mut db1, "alice", &random_secret(), &alices);
    assert_eq!(refused(&again), "PM008", "{again:?}");
    let fresh = code(&base32(&secret), now_step());
    offer(&mut db1, "alice", &fresh).unwrap();
    call(
        &mut db1,
        "pim_api.confirm_enrolment('alice', $1)",
        &[&fresh],
    )
    .unwrap();
    // Enrolled: no ticket is issued for her until a reset.
    let issued = authority
        .admin()
        .query_one("SELECT pim.issue_enrolment_ticket('alice', 't', 't')", &[]);
    assert!(
        format!("{issued:?}").contains("alice is enrolled already"),
        "{issued:?}"
    );
    // A ticket past its 24 hours is refused.
    let carols = authority.ticket("carol");
    authority
        .admin()
        .execute(
            "UPDATE pim.enrolment_tickets SET expires_at = pim.now_s() - 1 WHERE \"user\" = 'carol'",
            &[],
        )
        .unwrap();
    let expired = enrol(&mut db1, "carol", &random_secret(), &carols);
    assert_eq!(refused(&expired), "PM008", "{expired:?}");
    // A new ticket voids the earlier one.
    let first = authority.ticket("dave");
    let second = authority.ticket("dave");
    let voided = enrol(&mut db1, "dave", &random_secret(), &first);
    assert_eq!(refused(&voided), "PM005", "{voided:?}");
    assert_eq!(
        enrol(&mut db1, "dave", &random_secret(), &second).unwrap(),
        serde_json::json!({})
    );
    // Each issue and each use is in the fleet's audit; no ticket is.
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.audit WHERE action = 'admin-mfa-ticket'"),
        5
    );
    assert_eq!(
        authority.count(
            "SELECT count(*) FROM pim.audit WHERE action = 'mfa-enroll' AND detail LIKE '%ticket%'"
        ),
        2
    );
    for ticket in [&alices, &carols, &first, &second] {
        let holding = authority.admin().query_one(
            "SELECT count(*) FROM pim.audit WHERE detail LIKE '%' || $1 || '%'",
            &[&ticket.replace('-', "")],
        );
        assert_eq!(holding.unwrap().get::<_, i64>(0), 0);
    }
}

#[test]
fn given_wrong_tickets_even_checked_in_transactions_rolled_back_then_the_ticket_is_void() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    let ticket = authority.ticket("alice");
    let failures = || {
        authority
            .count("SELECT failures::bigint FROM pim.enrolment_tickets WHERE \"user\" = 'alice'")
    };
    let secret = random_secret();
    // Offered and checked in one transaction: not checked at all.
    db1.batch_execute("BEGIN").unwrap();
    let _ = call(&mut db1, "pim_api.offer_ticket('alice', $1)", &[&ticket]);
    let same = call(
        &mut db1,
        "pim_api.enrol('alice', $1, $2)",
        &[&secret, &ticket],
    );
    db1.batch_execute("ROLLBACK").unwrap();
    assert_eq!(refused(&same), "PM003", "{same:?}");
    // The attack: guesses checked inside BEGIN ... ROLLBACK, or with a failing statement
    // pipelined after them; each still counts (max_failures = 3).
    for (n, guess) in ["AAAAA", "BBBBB", "CCCCC"].into_iter().enumerate() {
        let offered = call(&mut db1, "pim_api.offer_ticket('alice', $1)", &[&guess]).unwrap();
        assert_eq!(offered, serde_json::json!({}), "the offer tells nothing");
        if n % 2 == 0 {
            db1.batch_execute("BEGIN").unwrap();
            let wrong = call(
                &mut db1,
                "pim_api.enrol('alice', $1, $2)",
                &[&secret, &guess],
            );
            assert!(
                ["PM005", "PM006"].contains(&refused(&wrong).as_str()),
                "{wrong:?}"
            );
            db1.batch_execute("ROLLBACK").unwrap();
        } else {
            let pipelined = db1.simple_query(&format!(
                "SELECT pim_api.enrol('alice', '\\x00112233445566778899', '{guess}'); SELECT 1 / 0"
            ));
            assert!(pipelined.is_err(), "{pipelined:?}");
        }
        assert_eq!(failures(), n as i64 + 1, "guess {guess}");
    }
    // The right ticket now finds the count at the limit: void, audited, and gone.
    let late = call(&mut db1, "pim_api.offer_ticket('alice', $1)", &[&ticket]);
    assert_eq!(refused(&late), "PM006", "{late:?}");
    let gone = enrol(&mut db1, "alice", &secret, &ticket);
    assert_eq!(refused(&gone), "PM008", "{gone:?}");
    assert_eq!(authority.count("SELECT count(*) FROM pim.mfa"), 0);
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.audit WHERE action = 'mfa-ticket-void'"),
        1
    );

    // Plain wrong tickets, committed: attempts left, then void at the third.
    let ticket = authority.ticket("bob");
    for (n, guess) in ["AAAAA", "BBBBB", "CCCCC"].into_iter().enumerate() {
        let wrong = enrol(&mut db1, "bob", &secret, guess);
        let want = if n < 2 { "PM005" } else { "PM006" };
        assert_eq!(refused(&wrong), want, "{wrong:?}");
    }
    let gone = enrol(&mut db1, "bob", &secret, &ticket);
    assert_eq!(refused(&gone), "PM008", "{gone:?}");
}

#[test]
fn given_a_host_login_then_it_cannot_read_or_make_tickets_without_an_admins_fresh_code() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let ann = authority.enrolled("ann");
    let mallory = authority.enrolled("mallory");
    let _ = authority.ticket("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    for sql in [
        "SELECT * FROM pim.enrolment_tickets",
        "SELECT * FROM pim.ticket_attempts",
        "UPDATE pim.enrolment_tickets SET failures = 0",
        "SELECT pim.issue_enrolment_ticket('alice', 'me', 'me')",
        "SELECT pim.ticket_hash('alice', 'x')",
    ] {
        assert_insufficient_privilege(&mut db1, sql);
    }
    let step = now_step();
    let issue = |client: &mut Client, actor: &str, code: &str, who: &str| {
        let _ = offer(client, actor, code);
        call(
            client,
            "pim_api.mfa_ticket($1, $2, $3, false)",
            &[&actor, &code, &who],
        )
    };
    // mallory is no administrator; ann's wrong code or none is no proof.
    let not_admin = issue(&mut db1, "mallory", &code(&mallory, step), "bob");
    assert_eq!(sqlstate(&not_admin), "PM007", "{not_admin:?}");
    let wrong = issue(&mut db1, "ann", "000000", "bob");
    assert_eq!(refused(&wrong), "PM005", "{wrong:?}");
    let none = issue(&mut db1, "ann", "", "bob");
    assert_eq!(refused(&none), "PM003", "{none:?}");
    // ann's fresh code on db1: bob's ticket, which enrols bob through web7 (pimd's side).
    let issued = issue(&mut db1, "ann", &code(&ann, step), "bob").unwrap();
    let ticket = issued["ticket"].as_str().unwrap().to_string();
    let (mut web7, _) = authority.pimd_authority("web7", &passwords[1]);
    let bob = random_secret();
    web7.enrol("bob", &bob, &ticket).unwrap();
    web7.confirm_enrolment("bob", &code(&base32(&bob), step))
        .unwrap();
    assert!(web7.mfa_enrolled("bob").unwrap());
    let reused = web7.enrol("carol", &random_secret(), &ticket);
    assert!(
        matches!(reused, Err(AuthorityError::Refused(PimError::NotFound(_)))),
        "{reused:?}"
    );
    assert_eq!(
        authority.count(
            "SELECT count(*) FROM pim.audit WHERE action = 'admin-mfa-ticket' AND actor = 'ann' \
             AND \"user\" = 'bob' AND host = 'db1'"
        ),
        1
    );
}

#[test]
fn given_a_reset_with_an_admins_code_then_the_old_device_stops_and_only_the_new_ticket_enrols() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let ann = authority.enrolled("ann");
    let root = authority.enrolled("root");
    let bob = authority.enrolled("bob");
    let mut db1 = authority.host("db1", &passwords[0]);
    let step = now_step();
    let reset = |client: &mut Client, actor: &str, code: &str, who: &str| {
        let _ = offer(client, actor, code);
        call(
            client,
            "pim_api.mfa_ticket($1, $2, $3, true)",
            &[&actor, &code, &who],
        )
    };
    // A host without an administrator's fresh code resets nothing; ann not her own.
    let wrong = reset(&mut db1, "ann", "000000", "bob");
    assert_eq!(refused(&wrong), "PM005", "{wrong:?}");
    let own = reset(&mut db1, "ann", &code(&ann, step), "ann");
    assert_eq!(sqlstate(&own), "PM007", "{own:?}");
    let nobody = reset(&mut db1, "ann", &code(&ann, step), "zed");
    assert_eq!(sqlstate(&nobody), "PM008", "{nobody:?}");
    assert_eq!(authority.count("SELECT count(*) FROM pim.mfa"), 3);
    // root resets bob: his old device's code is no longer taken, the ticket enrols anew.
    let issued = reset(&mut db1, "root", &code(&root, step), "bob").unwrap();
    let ticket = issued["ticket"].as_str().unwrap().to_string();
    let old = activate(&mut db1, "bob", &["dbas"], "dba", &code(&bob, step), None);
    assert_eq!(refused(&old), "PM004", "{old:?}");
    let new = random_secret();
    assert_eq!(
        enrol(&mut db1, "bob", &new, &ticket).unwrap(),
        serde_json::json!({})
    );
    assert_eq!(
        authority.count(
            "SELECT count(*) FROM pim.audit WHERE action = 'admin-mfa-reset' AND actor = 'root' \
             AND \"user\" = 'bob'"
        ),
        1
    );
}

#[test]
fn given_setup_with_enrol_admin_then_it_prints_a_ticket_for_an_admin_the_policy_names_only() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let out = authority.setup(&["--enrol-admin", "ann"]);
    assert!(out.status.success(), "{out:?}");
    let ticket = printed_ticket(&String::from_utf8_lossy(&out.stdout), "ann");
    let not_admin = authority.setup(&["--enrol-admin", "alice"]);
    assert!(!not_admin.status.success(), "{not_admin:?}");
    let stderr = String::from_utf8_lossy(&not_admin.stderr);
    assert!(
        stderr.contains("does not name this user in its admins"),
        "{stderr}"
    );
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.enrolment_tickets"),
        1
    );
    let (mut db1, _) = authority.pimd_authority("db1", &passwords[0]);
    let secret = random_secret();
    db1.enrol("ann", &secret, &ticket).unwrap();
    db1.confirm_enrolment("ann", &code(&base32(&secret), now_step()))
        .unwrap();
    // Enrolled: setup issues her no second ticket.
    let again = authority.setup(&["--enrol-admin", "ann"]);
    assert!(!again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("ann is enrolled already"));
}

#[test]
fn given_the_same_code_from_many_connections_at_once_then_it_is_accepted_exactly_once() {
    const USERS: usize = 12;
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let authority = Arc::new(authority);
    let passwords = Arc::new(passwords);
    for round in 0..USERS {
        let user = format!("racer{round}");
        let secret = authority.enrolled(&user);
        let fresh = code(&secret, now_step());
        // One connection per role, half of them from each host, all released at once:
        // different roles, so only the code's single use can stop the others.
        let barrier = Arc::new(Barrier::new(RACE_ROLES));
        let racers: Vec<_> = (0..RACE_ROLES)
            .map(|n| {
                let (authority, passwords, barrier) =
                    (authority.clone(), passwords.clone(), barrier.clone());
                let (user, fresh) = (user.clone(), fresh.clone());
                thread::spawn(move || {
                    let host = ["db1", "web7"][n % 2];
                    let mut client = authority.host(host, &passwords[n % 2]);
                    barrier.wait();
                    let role = format!("race{n}");
                    activate(&mut client, &user, &["racers"], &role, &fresh, None)
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let granted = results
            .iter()
            .filter(|r| matches!(r, Ok(v) if v.get("granted").is_some()))
            .count();
        assert_eq!(granted, 1, "round {round}: {results:?}");
        for result in &results {
            // The others are replays: wrong codes, which lock the user out (max_failures 3)
            // as they would on one host.
            let accepted = matches!(result, Ok(v) if v.get("granted").is_some());
            let replay = ["PM005", "PM006"].contains(&refused(result).as_str());
            assert!(accepted || replay, "{result:?}");
        }
        let rows = authority.count(&format!(
            "SELECT count(*) FROM pim.grants WHERE \"user\" = '{user}'"
        ));
        assert_eq!(rows, 1, "round {round}");
    }
}

#[test]
fn given_hosts_racing_to_expire_a_grant_then_one_ends_it_and_one_record_is_written() {
    const ROUNDS: usize = 10;
    const RACERS: usize = 6;
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let authority = Arc::new(authority);
    let passwords = Arc::new(passwords);
    for round in 0..ROUNDS {
        // A grant past its end (arranged by the administrator; grants are otherwise only
        // made by activate and approve).
        let id: i64 = authority
            .admin()
            .query_one(
                "INSERT INTO pim.grants (\"user\", role, \"group\", scope, started_at, ends_at, \
                 reason, ticket, granted_on) VALUES ('alice', 'dba', 'postgres', '{}', \
                 pim.now_s() - 60, pim.now_s() - 1, 'r', '', 'db1') RETURNING id",
                &[],
            )
            .unwrap()
            .get(0);
        let barrier = Arc::new(Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|n| {
                let (authority, passwords, barrier) =
                    (authority.clone(), passwords.clone(), barrier.clone());
                thread::spawn(move || {
                    let host = ["db1", "web7"][n % 2];
                    let mut client = authority.host(host, &passwords[n % 2]);
                    barrier.wait();
                    call(&mut client, "pim_api.expire_due()", &[]).unwrap()
                })
            })
            .collect();
        let winners: usize = racers
            .into_iter()
            .map(|t| t.join().unwrap())
            .map(|ended| {
                let ended = ended.as_array().unwrap().clone();
                ended.iter().filter(|g| g.as_i64() == Some(id)).count()
            })
            .sum();
        assert_eq!(winners, 1, "round {round}");
        let records = authority.count(&format!(
            "SELECT count(*) FROM pim.audit WHERE action = 'expire' \
             AND detail = 'grant {id} expired'"
        ));
        assert_eq!(records, 1, "round {round}");
    }
}

#[test]
fn given_audit_shipped_again_after_a_partial_ship_then_each_record_is_stored_once() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut web7 = authority.host("web7", &passwords[1]);
    let records = |ids: std::ops::RangeInclusive<i64>| -> Value {
        ids.map(|id| {
            serde_json::json!({"id": id, "at": 1_800_000_000 + id, "actor": "alice",
                "action": "pam_denied", "user": "alice", "role": "dba", "outcome": "refused",
                "reason": "", "ticket": "", "detail": format!("record {id}"), "prev": "",
                "hash": ""})
        })
        .collect()
    };
    let ship = |client: &mut Client, batch: Value| -> i64 {
        client
            .query_one(
                "SELECT pim_api.ship_audit($1::text::jsonb)",
                &[&batch.to_string()],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(ship(&mut db1, records(1..=5)), 5);
    // The retry overlaps what the first ship stored.
    assert_eq!(ship(&mut db1, records(3..=8)), 3);
    assert_eq!(ship(&mut db1, records(1..=8)), 0);
    // Another host's records with the same local ids are its own, stamped with its name.
    assert_eq!(ship(&mut web7, records(1..=2)), 2);
    let count = |host: &str| {
        authority.count(&format!(
            "SELECT count(*) FROM pim.audit WHERE host = '{host}' AND local_id IS NOT NULL"
        ))
    };
    assert_eq!((count("db1"), count("web7")), (8, 2));
    let ids: BTreeSet<i64> = authority
        .admin()
        .query(
            "SELECT local_id FROM pim.audit WHERE host = 'db1' AND local_id IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(ids, (1..=8).collect());
    // A record with a control character is refused whole.
    let mut bad = records(9..=9);
    bad[0]["detail"] = Value::from("evil\u{1b}[2J");
    let result = db1.query_one(
        "SELECT pim_api.ship_audit($1::text::jsonb)",
        &[&bad.to_string()],
    );
    assert!(result.is_err(), "{result:?}");
    // So is one without its local id, which would escape the once-only rule.
    let mut anonymous = records(9..=9);
    anonymous[0]["id"] = Value::Null;
    let result = db1.query_one(
        "SELECT pim_api.ship_audit($1::text::jsonb)",
        &[&anonymous.to_string()],
    );
    assert!(result.is_err(), "{result:?}");
    assert_eq!(count("db1"), 8);
}

#[test]
fn given_shipped_audit_with_a_gap_or_a_fork_then_it_is_refused_naming_the_records() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    // A chain: record i's hash is "h{i}", its prev the hash before it.
    let record = |id: i64, prev: &str| -> Value {
        serde_json::json!({"id": id, "at": 1_800_000_000 + id, "actor": "alice",
            "action": "access-check", "user": "alice", "role": "dba", "outcome": "refused",
            "reason": "", "ticket": "", "detail": format!("record {id}"), "prev": prev,
            "hash": format!("h{id}")})
    };
    let ship = |client: &mut Client, batch: Vec<Value>| {
        client
            .query_one(
                "SELECT pim_api.ship_audit($1::text::jsonb)",
                &[&Value::from(batch).to_string()],
            )
            .map(|row| row.get::<_, i64>(0))
    };
    // The first shipment starts anywhere; the next record follows the last.
    assert_eq!(
        ship(&mut db1, vec![record(10, "h9"), record(11, "h10")]).unwrap(),
        2
    );
    assert_eq!(ship(&mut db1, vec![record(12, "h11")]).unwrap(), 1);
    // A retry of stored records is harmless.
    assert_eq!(
        ship(&mut db1, vec![record(11, "h10"), record(12, "h11")]).unwrap(),
        0
    );
    let refused = |result: Result<i64, postgres::Error>| {
        let e = result.unwrap_err();
        let db = e.as_db_error().expect("a refusal of the database's");
        (db.code().code().to_string(), db.message().to_string())
    };
    // A gap: record 14's prev is not record 12's hash (13 never came).
    let (code, message) = refused(ship(&mut db1, vec![record(14, "h13")]));
    assert_eq!(code, "PM009");
    assert!(
        message.contains("record 14 does not follow record 12"),
        "{message}"
    );
    // A fork: record 12 again with another hash.
    let mut forked = record(12, "h11");
    forked["hash"] = Value::from("other");
    let (code, message) = refused(ship(&mut db1, vec![forked]));
    assert_eq!(code, "PM009");
    assert!(message.contains("record 12 differs"), "{message}");
    // Going back below the last shipped id.
    let (_, message) = refused(ship(&mut db1, vec![record(5, "h12")]));
    assert!(message.contains("ids must increase"), "{message}");
    // A refused batch stores nothing, not even its good records before the break.
    let (_, message) = refused(ship(&mut db1, vec![record(13, "h12"), record(15, "h99")]));
    assert!(
        message.contains("record 15 does not follow record 13"),
        "{message}"
    );
    let stored = authority
        .count("SELECT count(*) FROM pim.audit WHERE host = 'db1' AND local_id IS NOT NULL");
    assert_eq!(stored, 3);
}

#[test]
fn given_a_policy_push_or_host_add_then_only_an_admins_fresh_code_is_enough() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let root = authority.enrolled("root");
    let alice = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    let step = now_step();
    let normalized = r#"{"admins": ["root", "ann"], "roles": {}}"#;
    let push = |client: &mut Client, actor: &str, code: &str| {
        let _ = offer(client, actor, code);
        call(
            client,
            "pim_api.push_policy($1, $2, 'new text', $3::text::jsonb)",
            &[&actor, &code, &normalized],
        )
    };
    let versions = || authority.count("SELECT count(*) FROM pim.policies");

    let not_admin = push(&mut db1, "alice", &code(&alice, step));
    assert_eq!(sqlstate(&not_admin), "PM007", "{not_admin:?}");
    let wrong = push(&mut db1, "root", "000000");
    assert_eq!(refused(&wrong), "PM005", "{wrong:?}");
    assert_eq!(versions(), 1);
    let fresh = code(&root, step);
    let pushed = push(&mut db1, "root", &fresh).unwrap();
    assert_eq!(pushed["version"], 2, "{pushed}");
    let replayed = push(&mut db1, "root", &fresh);
    assert_eq!(refused(&replayed), "PM005", "{replayed:?}");
    assert_eq!(versions(), 2);
    // One offer of root's next code serves the calls below until one spends it.
    offer(&mut db1, "root", &code(&root, step + 1)).unwrap();
    // A policy that names no administrator would lock the fleet: refused.
    let orphan = call(
        &mut db1,
        "pim_api.push_policy('root', $1, 't', '{\"admins\": [], \"roles\": {}}')",
        &[&code(&root, step + 1)],
    );
    assert_eq!(sqlstate(&orphan), "PM002", "{orphan:?}");
    // A role whose require_mfa is missing would read as no MFA: refused.
    let lax = call(
        &mut db1,
        "pim_api.push_policy('root', $1, 't', $2::text::jsonb)",
        &[
            &code(&root, step + 1),
            &r#"{"admins": ["root"], "roles": {"x": {"group": "x", "hosts": [],
                "eligible_users": ["alice"], "eligible_groups": [], "approver_users": [],
                "approver_groups": [], "require_approval": false, "approvals_required": 1,
                "max_duration_secs": 60, "request_ttl_secs": 60}}}"#,
        ],
    );
    assert_eq!(sqlstate(&lax), "PM002", "{lax:?}");
    assert!(
        format!("{lax:?}").contains("lacks or mistypes require_mfa"),
        "{lax:?}"
    );

    // Adding a host takes the same proof; the new login works at once.
    let refused_add = call(
        &mut db1,
        "pim_api.add_host('alice', $1, 'web9', '{web}')",
        &[&code(&alice, step + 1)],
    );
    assert_eq!(sqlstate(&refused_add), "PM007", "{refused_add:?}");
    let added = call(
        &mut db1,
        "pim_api.add_host('root', $1, 'web9', '{web}')",
        &[&code(&root, step + 1)],
    )
    .unwrap();
    let password = added["password"].as_str().unwrap();
    let mut web9 = authority.host("web9", password);
    assert_eq!(
        call(&mut web9, "pim_api.snapshot(0)", &[]).unwrap()["host"],
        "web9"
    );
}

#[test]
fn given_setup_run_again_then_schema_policy_and_hosts_are_kept() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let policy_file = authority.policy_file();
    let again = authority.setup(&["--policy", &policy_file, "--add-host", "db1"]);
    let stdout = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success(), "{again:?}");
    assert!(
        stdout.contains("schema pim up to date (version 2)"),
        "{stdout}"
    );
    assert!(stdout.contains("policy unchanged (version 1)"), "{stdout}");
    assert!(
        stdout.contains("host db1 is already in the fleet"),
        "{stdout}"
    );
    assert!(!stdout.contains(", password "), "{stdout}");
    assert!(stdout.contains("(tags [db])"), "{stdout}");
    assert_eq!(authority.count("SELECT count(*) FROM pim.policies"), 1);
    // The host's password still works.
    let mut db1 = authority.host("db1", &passwords[0]);
    assert_eq!(
        call(&mut db1, "pim_api.snapshot(0)", &[]).unwrap()["host"],
        "db1"
    );
    // Another host whose name makes the same login is refused; a dotted name is fine.
    assert!(!authority.add_host("web7.eu", "web").is_empty());
    let clash = authority.setup(&["--add-host", "web7-eu"]);
    assert!(!clash.status.success(), "{clash:?}");
    let clash_err = String::from_utf8_lossy(&clash.stderr);
    assert!(
        clash_err.contains("pim_host_web7_eu exists already"),
        "{clash_err}"
    );
    let upper = authority.setup(&["--add-host", "Web8"]);
    assert!(String::from_utf8_lossy(&upper.stderr).contains("must be lower-case"));
    // A schema newer than this pimd's is left alone.
    authority
        .admin()
        .batch_execute("UPDATE pim.schema_version SET version = 99")
        .unwrap();
    let newer = authority.setup(&[]);
    assert!(!newer.status.success(), "{newer:?}");
    assert!(String::from_utf8_lossy(&newer.stderr).contains("schema version 99, newer"));
    authority
        .admin()
        .batch_execute("UPDATE pim.schema_version SET version = 1")
        .unwrap();
    // No database to reach: a clear error, quickly.
    let nowhere = Command::new(binary("pimd"))
        .args(["--fleet-setup", "host=/nonexistent port=1 user=postgres"])
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(1), "{nowhere:?}");
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("cannot connect to the database"));
    // A broken policy changes nothing.
    std::fs::write(&policy_file, "[roles.x]\nmax_duration = \"forever\"\n").unwrap();
    let broken = authority.setup(&["--policy", &policy_file]);
    assert!(!broken.status.success(), "{broken:?}");
    assert!(String::from_utf8_lossy(&broken.stderr).contains("nothing was changed"));
    assert_eq!(authority.count("SELECT count(*) FROM pim.policies"), 1);
}

#[test]
fn given_pimds_authority_then_every_call_is_decided_in_the_database_and_a_stopped_one_is_unreachable(
) {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let (mut db1, _) = authority.pimd_authority("db1", &passwords[0]);
    let (mut web7, mut web7_wake) = authority.pimd_authority("web7", &passwords[1]);
    let step = now_step();
    let no_groups: Vec<String> = Vec::new();
    // A fresh LISTEN connection counts as a wake: what was sent before it is unknown.
    assert!(web7_wake.wait(Duration::from_secs(5)).unwrap());

    // Enrolment through one host; then no host can swap in a secret of its own.
    let bob_secret = random_secret();
    let bob = base32(&bob_secret);
    db1.enrol("bob", &bob_secret, &authority.ticket("bob"))
        .unwrap();
    assert!(!web7.mfa_enrolled("bob").unwrap());
    db1.confirm_enrolment("bob", &code(&bob, step)).unwrap();
    assert!(web7.mfa_enrolled("bob").unwrap());
    let swapped = web7.enrol("bob", &random_secret(), "AAAAA-AAAAA-AAAAA-AAAAA");
    assert!(
        matches!(swapped, Err(AuthorityError::Refused(PimError::Conflict(_)))),
        "{swapped:?}"
    );

    let bob_groups = vec!["dbas".to_string()];
    fn ask<'a>(
        user: &'a str,
        user_groups: &'a [String],
        role: &'a str,
        code: &'a str,
    ) -> ActivationAsk<'a> {
        ActivationAsk {
            user,
            user_groups,
            role,
            duration_secs: 600,
            reason: "rotate the keys",
            ticket: "",
            code,
            only_host: None,
        }
    }
    let fresh = code(&bob, step + 1);
    let grant = match db1
        .activate(&ask("bob", &bob_groups, "dba", &fresh))
        .unwrap()
    {
        Activated::Granted(grant) => grant,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (grant.group.as_str(), grant.ends_at - grant.started_at),
        ("postgres", 600)
    );
    let replayed = web7.activate(&ask("bob", &bob_groups, "dba", &fresh));
    assert!(
        matches!(replayed, Err(AuthorityError::Refused(_))),
        "{replayed:?}"
    );
    // The grant's commit woke web7, though the grant is not for it.
    assert!(web7_wake.wait(Duration::from_secs(10)).unwrap());
    let snapshot = db1.snapshot().unwrap();
    assert_eq!(
        (snapshot.host.as_str(), snapshot.policy_version),
        ("db1", 1)
    );
    assert_eq!(snapshot.grants, vec![grant.clone()]);
    assert!(web7.snapshot().unwrap().grants.is_empty());
    let hosts = web7.hosts().unwrap();
    let db1_info = hosts.iter().find(|h| h.name == "db1").unwrap();
    assert_eq!(db1_info.tags, vec!["db".to_string()]);
    assert!(
        db1_info.last_sync.is_some() && db1_info.skew_ms.is_some(),
        "{db1_info:?}"
    );
    assert_eq!(db1.policy(1).unwrap().text, policy());
    assert_eq!(db1.deactivate("bob", "dba").unwrap(), vec![grant.id]);
    let again = db1.deactivate("bob", "dba");
    assert!(
        matches!(again, Err(AuthorityError::Refused(PimError::NotFound(_)))),
        "{again:?}"
    );

    // Requests, approvals, a denial, a revocation.
    let alice = authority.enrolled("alice");
    let carol = authority.enrolled("carol");
    let dave = authority.enrolled("dave");
    let root = authority.enrolled("root");
    let ann = authority.enrolled("ann");
    let pending = |outcome| match outcome {
        Activated::Pending {
            request_id,
            approvals_required: 2,
        } => request_id,
        other => panic!("{other:?}"),
    };
    let first = pending(
        db1.activate(&ask("alice", &no_groups, "ops", &code(&alice, step)))
            .unwrap(),
    );
    let second = pending(
        db1.activate(&ask("alice", &no_groups, "ops", &code(&alice, step + 1)))
            .unwrap(),
    );
    let open: Vec<i64> = web7
        .requests_for("carol", &no_groups)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, vec![first, second]);
    assert!(web7.requests_for("alice", &no_groups).unwrap().is_empty());
    fn decision<'a>(
        request_id: i64,
        approver: &'a str,
        approver_groups: &'a [String],
        code: &'a str,
    ) -> Decision<'a> {
        Decision {
            request_id,
            approver,
            approver_groups,
            code,
            comment: "ok",
        }
    }
    web7.deny(&decision(second, "dave", &no_groups, &code(&dave, step)))
        .unwrap();
    let cancelled = db1.cancel("alice", second);
    assert!(
        matches!(
            cancelled,
            Err(AuthorityError::Refused(PimError::Conflict(_)))
        ),
        "{cancelled:?}"
    );
    let carol_code = code(&carol, step);
    let half = web7
        .approve(&decision(first, "carol", &no_groups, &carol_code))
        .unwrap();
    assert_eq!(
        half,
        Decided::StillPending {
            approvals: 1,
            required: 2
        }
    );
    let ops = match web7
        .approve(&decision(first, "dave", &no_groups, &code(&dave, step + 1)))
        .unwrap()
    {
        Decided::Granted(grant) => grant,
        other => panic!("{other:?}"),
    };
    assert_eq!((ops.user.as_str(), ops.request_id), ("alice", Some(first)));
    assert_eq!(web7.snapshot().unwrap().grants, vec![ops.clone()]);
    let not_admin = web7.revoke(
        &AdminProof {
            actor: "carol",
            code: &code(&carol, step + 1),
        },
        "alice",
        "ops",
        "r",
    );
    assert!(
        matches!(
            not_admin,
            Err(AuthorityError::Refused(PimError::PermissionDenied(_)))
        ),
        "{not_admin:?}"
    );
    let root_proof = AdminProof {
        actor: "root",
        code: &code(&root, step),
    };
    assert_eq!(
        web7.revoke(&root_proof, "alice", "ops", "left the team")
            .unwrap(),
        vec![ops.id]
    );
    assert!(db1.expire_due().unwrap().is_empty());

    // Administration: a policy push, a host, an enrolment reset.
    let normalized = serde_json::json!({"admins": ["root", "ann"], "roles": {}});
    let pushed = db1.push_policy(
        &AdminProof {
            actor: "ann",
            code: &code(&ann, step),
        },
        "new",
        &normalized,
    );
    assert_eq!(pushed.unwrap(), 2);
    assert_eq!(web7.snapshot().unwrap().policy_version, 2);
    let web9 = db1
        .add_host(
            &AdminProof {
                actor: "ann",
                code: &code(&ann, step + 1),
            },
            "web9",
            &["web".to_string()],
        )
        .unwrap();
    assert!(authority.try_login("pim_host_web9", &web9).is_ok());
    db1.mfa_reset(
        &AdminProof {
            actor: "root",
            code: &code(&root, step + 1),
        },
        "bob",
    )
    .unwrap();
    assert!(!db1.mfa_enrolled("bob").unwrap());

    // Local audit records shipped twice are held once.
    let records: Vec<AuditRecord> = (1..=3)
        .map(|id| AuditRecord {
            id,
            at: 1_800_000_000 + id,
            actor: "alice".into(),
            ..Default::default()
        })
        .collect();
    assert_eq!(db1.ship_audit(&records).unwrap(), 3);
    assert_eq!(db1.ship_audit(&records).unwrap(), 3);
    let shipped = "SELECT count(*) FROM pim.audit WHERE host = 'db1' AND local_id IS NOT NULL";
    assert_eq!(authority.count(shipped), 3);

    // The database stops: every call, and the wait for a wake, fails as unreachable.
    while web7_wake.wait(Duration::from_millis(100)).unwrap() {}
    authority.pg.stop();
    let down = db1.snapshot();
    assert!(
        matches!(down, Err(AuthorityError::Unreachable(_))),
        "{down:?}"
    );
    let waited = web7_wake.wait(Duration::from_secs(10));
    assert!(
        matches!(waited, Err(AuthorityError::Unreachable(_))),
        "{waited:?}"
    );
    let refused_while_down = db1.activate(&ask("alice", &no_groups, "dba", "123456"));
    assert!(matches!(
        refused_while_down,
        Err(AuthorityError::Unreachable(_))
    ));
    // Back up: the next call reconnects, and the new LISTEN counts as a wake.
    authority.pg.start_again();
    assert_eq!(db1.snapshot().unwrap().host, "db1");
    assert!(web7_wake.wait(Duration::from_secs(10)).unwrap());
}

#[test]
fn given_tcp_then_only_verify_full_against_the_ca_file_connects_and_a_wrong_certificate_is_refused()
{
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let pg = &authority.pg;
    let ca = pg.ca_pem();
    let ca_file = authority.dir.join("ca.crt");
    std::fs::write(&ca_file, ca).unwrap();
    let ca = ca_file.display().to_string();
    let conninfo = |host: &str, tls: &str| {
        format!(
            "host={host} port=5432 dbname=pim user=pim_host_db1 password='{}' {tls}",
            passwords[0]
        )
    };
    // Over TCP, anything but verify-full with a CA file (libpq's default one when none is
    // named) is refused before connecting.
    for tls in [
        String::new(),
        "sslmode=disable".into(),
        "sslmode=require".into(),
        format!("sslmode=require sslrootcert={ca}"),
        format!("sslmode=verify-ca sslrootcert={ca}"),
        "sslmode=verify-full sslrootcert=''".into(),
    ] {
        let refused = ConnInfo::parse(&conninfo("127.0.0.1", &tls)).unwrap_err();
        assert!(
            refused.contains("connects over TCP (127.0.0.1)"),
            "{tls}: {refused}"
        );
    }

    // TCP to 127.0.0.1 exists only in the database's network namespace: connect from a
    // thread moved there.
    let netns = std::fs::File::open(format!("/proc/{}/ns/net", pg.host_pid())).unwrap();
    let verified = format!("sslmode=verify-full sslrootcert={ca}");
    let attempt = |host: &str| {
        let info = ConnInfo::parse(&conninfo(host, &verified)).unwrap();
        PgAuthority::new(info).snapshot().map(|s| s.host)
    };
    let admin_conninfo = pg.admin_conninfo();
    let (trusted, localhost, over_tls, other_ca, other_name) = thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let info = ConnInfo::parse(&conninfo("127.0.0.1", &verified)).unwrap();
            let mut open = PgAuthority::new(info);
            let trusted = open.snapshot().map(|s| s.host);
            // While this verified connection is open, the server says it is TLS.
            let over_tls: i64 = Client::connect(&admin_conninfo, NoTls)
                .unwrap()
                .query_one(
                    "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                     WHERE ssl AND usename = 'pim_host_db1'",
                    &[],
                )
                .unwrap()
                .get(0);
            // The certificate names 127.0.0.1 and the database's address, not localhost.
            let localhost = attempt("localhost");
            pg.serve_certificate(ServerCertificate::OtherCa);
            let other_ca = attempt("127.0.0.1");
            pg.serve_certificate(ServerCertificate::OtherName);
            let other_name = attempt("127.0.0.1");
            pg.serve_certificate(ServerCertificate::Trusted);
            (trusted, localhost, over_tls, other_ca, other_name)
        })
        .join()
        .unwrap()
    });
    assert_eq!(trusted.as_deref().ok(), Some("db1"), "{trusted:?}");
    assert_eq!(over_tls, 1);
    for (what, refused) in [
        ("localhost", &localhost),
        ("another CA", &other_ca),
        ("another name", &other_name),
    ] {
        match refused {
            Err(AuthorityError::Unreachable(why)) => {
                assert!(why.contains("certificate verify failed"), "{what}: {why}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // The Unix socket needs no TLS (the harness's host connections above all use it).
    assert_eq!(
        authority
            .pimd_authority("db1", &passwords[0])
            .0
            .snapshot()
            .unwrap()
            .host,
        "db1"
    );
}

#[test]
fn given_a_call_stuck_behind_a_lock_then_it_ends_unreachable_within_the_statement_timeout() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let alice = authority.enrolled("alice");
    let (mut db1, _) = authority.pimd_authority("db1", &passwords[0]);
    // Someone holds alice's MFA row (as a stuck transaction of a dying database would).
    let mut admin = authority.admin();
    let mut stuck = admin.transaction().unwrap();
    stuck
        .execute(
            "SELECT FROM pim.mfa WHERE \"user\" = 'alice' FOR UPDATE",
            &[],
        )
        .unwrap();
    let no_groups: Vec<String> = Vec::new();
    let ask = ActivationAsk {
        user: "alice",
        user_groups: &no_groups,
        role: "dba",
        duration_secs: 600,
        reason: "rotate the keys",
        ticket: "",
        code: &code(&alice, now_step()),
        only_host: None,
    };
    // pimd's default statement_timeout ends the wait: unreachable, nothing granted.
    let result = db1.activate(&ask);
    assert!(
        matches!(result, Err(AuthorityError::Unreachable(_))),
        "{result:?}"
    );
    stuck.rollback().unwrap();
    assert_eq!(authority.count("SELECT count(*) FROM pim.grants"), 0);
    // The connection is usable again and the code was not spent.
    assert!(matches!(db1.activate(&ask), Ok(Activated::Granted(_))));
}

// --- A host is an untrusted peer: what one host can do to users of the others (issue 16,
// review finding 6). ---

fn alice_failures_fleet_wide(authority: &Authority) -> i64 {
    authority.count("SELECT failures::bigint FROM pim.mfa WHERE \"user\" = 'alice'")
}

fn audit_count(authority: &Authority, action: &str, detail_like: &str) -> i64 {
    authority.count(&format!(
        "SELECT count(*) FROM pim.audit WHERE action = '{action}' AND detail LIKE '{detail_like}'"
    ))
}

#[test]
fn given_wrong_codes_from_one_host_then_alice_is_locked_out_there_alone_and_it_adds_at_most_its_limit(
) {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let secret = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut web7 = authority.host("web7", &passwords[1]);
    // web7 guesses alice's code until it is locked out (max_failures = 3)...
    for guess in ["000001", "000002", "000003"] {
        let wrong = activate(&mut web7, "alice", &[], "dba", guess, None);
        assert!(
            ["PM005", "PM006"].contains(&refused(&wrong).as_str()),
            "{wrong:?}"
        );
    }
    let locked = offer(&mut web7, "alice", "000004");
    assert_eq!(refused(&locked), "PM006", "{locked:?}");
    assert!(
        locked.as_ref().unwrap()["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("on host web7"),
        "{locked:?}"
    );
    assert_eq!(
        audit_count(&authority, "mfa-lockout", "locked on host web7%"),
        1
    );
    // ... which does not lock her out on db1: her fresh code there is taken.
    let granted = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&secret, now_step()),
        None,
    )
    .unwrap();
    assert!(granted.get("granted").is_some(), "{granted}");
    assert_eq!(alice_failures_fleet_wide(&authority), 3);
    // Once web7's own lockout is over, its further wrong codes in the same fleet window no
    // longer count towards the fleet-wide lockout: one host adds at most its own limit.
    authority
        .admin()
        .execute(
            "UPDATE pim.mfa_host_failures SET locked_until = 0 WHERE host = 'web7'",
            &[],
        )
        .unwrap();
    for guess in ["000005", "000006"] {
        let wrong = activate(&mut web7, "alice", &[], "ops", guess, None);
        assert_eq!(refused(&wrong), "PM005", "{wrong:?}");
    }
    assert_eq!(alice_failures_fleet_wide(&authority), 3);
}

#[test]
fn given_ten_hosts_each_at_their_limit_then_alice_is_locked_out_on_every_host() {
    let names: Vec<String> = (0..11).map(|n| format!("h{n}")).collect();
    let specs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "db")).collect();
    let (authority, passwords) = Authority::start(&specs);
    let secret = authority.enrolled("alice");
    let locked_everywhere = || {
        authority
            .count("SELECT count(*) FROM pim.mfa WHERE \"user\" = 'alice' AND locked_until > 0")
    };
    for (n, password) in passwords.iter().enumerate().take(10) {
        let mut host = authority.host(&names[n], password);
        for guess in 0..3 {
            let wrong = activate(
                &mut host,
                "alice",
                &[],
                "dba",
                &format!("{:06}", 100 * n + guess),
                None,
            );
            assert!(
                ["PM005", "PM006"].contains(&refused(&wrong).as_str()),
                "{wrong:?}"
            );
        }
        // Nine hosts at their limit are not enough.
        let expected = i64::from(n == 9);
        assert_eq!(locked_everywhere(), expected, "after host {n}");
    }
    assert_eq!(
        audit_count(&authority, "mfa-lockout", "locked on every host%"),
        1
    );
    // The eleventh host, which sent no wrong code, refuses her fresh code too.
    let mut h10 = authority.host(&names[10], &passwords[10]);
    let fresh = activate(
        &mut h10,
        "alice",
        &[],
        "dba",
        &code(&secret, now_step()),
        None,
    );
    assert_eq!(refused(&fresh), "PM006", "{fresh:?}");
    assert!(
        fresh.as_ref().unwrap()["refused"]["message"]
            .as_str()
            .unwrap()
            .contains("on every host"),
        "{fresh:?}"
    );
    assert_eq!(authority.count("SELECT count(*) FROM pim.grants"), 0);
}

#[test]
fn given_a_grant_for_host_a_alone_then_host_b_can_neither_end_it_nor_cancel_her_request_filed_on_a()
{
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("db2", "db"), ("web7", "web")]);
    let secret = authority.enrolled("alice");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut db2 = authority.host("db2", &passwords[1]);
    let mut web7 = authority.host("web7", &passwords[2]);
    let step = now_step();
    let granted = activate(
        &mut db1,
        "alice",
        &[],
        "dba",
        &code(&secret, step),
        Some("db1"),
    )
    .unwrap();
    assert!(granted.get("granted").is_some(), "{granted}");
    let pending = activate(
        &mut db1,
        "alice",
        &[],
        "ops",
        &code(&secret, step + 1),
        None,
    )
    .unwrap();
    let request = pending["pending"]["request_id"].as_i64().unwrap();

    // db2 (in the role's scope, not in the grant's) and web7 (in neither) try, twice each.
    for host in [&mut db2, &mut web7] {
        for _ in 0..2 {
            let ended = call(host, "pim_api.deactivate('alice', 'dba')", &[]);
            assert_eq!(refused(&ended), "PM007", "{ended:?}");
            let cancelled = call(host, "pim_api.cancel('alice', $1)", &[&request]);
            assert_eq!(refused(&cancelled), "PM007", "{cancelled:?}");
        }
    }
    let live = authority.count("SELECT count(*) FROM pim.grants WHERE ended_at IS NULL");
    assert_eq!(live, 1);
    let state = authority
        .admin()
        .query_one("SELECT state FROM pim.requests WHERE id = $1", &[&request]);
    assert_eq!(state.unwrap().get::<_, String>(0), "pending");
    // Each refusal is audited, once a minute per host and kind: repeating it fills nothing.
    let refusals = |action: &str| {
        authority.count(&format!(
            "SELECT count(*) FROM pim.audit WHERE action = '{action}' AND outcome = 'refused'"
        ))
    };
    assert_eq!(refusals("deactivate"), 2);
    assert_eq!(refusals("cancel"), 2);

    // The host they are for can.
    call(&mut db1, "pim_api.cancel('alice', $1)", &[&request]).unwrap();
    let ended = call(&mut db1, "pim_api.deactivate('alice', 'dba')", &[]).unwrap();
    assert_eq!(ended.as_array().map(Vec::len), Some(1), "{ended}");
}

#[test]
fn given_a_disabled_host_then_it_cannot_log_in_nor_call_and_its_own_grants_and_requests_end() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("db2", "db")]);
    let alice = authority.enrolled("alice");
    let ann = authority.enrolled("ann");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut db2 = authority.host("db2", &passwords[1]);
    let step = now_step();
    // On db2: a grant for db2 alone, one for every db host, and a pending request.
    let own = activate(
        &mut db2,
        "alice",
        &[],
        "dba",
        &code(&alice, step),
        Some("db2"),
    );
    assert!(own.as_ref().unwrap().get("granted").is_some(), "{own:?}");
    let request = activate(&mut db2, "alice", &[], "ops", &code(&alice, step + 1), None).unwrap();
    let request = request["pending"]["request_id"].as_i64().unwrap();
    authority
        .admin()
        .execute(
            "INSERT INTO pim.grants (\"user\", role, \"group\", scope, started_at, ends_at, \
             reason, ticket, granted_on) \
             VALUES ('bob', 'dba', 'postgres', '{tag:db}', 0, pim.now_s() + 600, 'r', '', 'db2')",
            &[],
        )
        .unwrap();
    // What db2's root saw or gave: a ticket shown there, alice's enrolment made there, an
    // approval given there to a request filed on db1.
    let on_db1: i64 = authority
        .admin()
        .query_one(
            "INSERT INTO pim.requests (\"user\", user_groups, role, duration_secs, reason, \
             ticket, filed_on, created_at, expires_at, approvals_required, state) \
             SELECT \"user\", user_groups, role, duration_secs, reason, ticket, 'db1', \
             created_at, expires_at, approvals_required, state FROM pim.requests WHERE id = $1 \
             RETURNING id",
            &[&request],
        )
        .unwrap()
        .get(0);
    authority
        .admin()
        .batch_execute(&format!(
            "SELECT pim.issue_enrolment_ticket('dave', 'ann', 'db2'); \
             SELECT pim.issue_enrolment_ticket('erin', 'ann', 'db1'); \
             UPDATE pim.mfa SET enrolled_on = 'db2' WHERE \"user\" = 'alice'; \
             INSERT INTO pim.approvals (request_id, approver, approver_groups, given_on, \
             comment, at) VALUES ({on_db1}, 'bob', '{{}}', 'db2', 'ok', 0)"
        ))
        .unwrap();

    // A host disables neither itself nor anything without an admin's fresh code.
    let itself = call(
        &mut db2,
        "pim_api.disable_host('ann', '123456', 'db2')",
        &[],
    );
    assert_eq!(sqlstate(&itself), "PM009", "{itself:?}");
    let _ = offer(&mut db1, "alice", "123456");
    let not_admin = call(
        &mut db1,
        "pim_api.disable_host('alice', '123456', 'db2')",
        &[],
    );
    assert_eq!(sqlstate(&not_admin), "PM007", "{not_admin:?}");

    let ann_code = code(&ann, step);
    offer(&mut db1, "ann", &ann_code).unwrap();
    let disabled = call(
        &mut db1,
        "pim_api.disable_host('ann', $1, 'db2')",
        &[&ann_code],
    )
    .unwrap();
    assert_eq!(
        disabled["grants_ended"].as_array().map(Vec::len),
        Some(1),
        "{disabled}"
    );
    assert_eq!(disabled["requests_cancelled"], serde_json::json!([request]));
    assert_eq!(
        disabled["tickets_void"],
        serde_json::json!(["dave"]),
        "{disabled}"
    );
    assert_eq!(
        disabled["approvals_withdrawn"],
        serde_json::json!([on_db1]),
        "{disabled}"
    );
    assert_eq!(
        disabled["enrolled_there"],
        serde_json::json!(["alice"]),
        "{disabled}"
    );
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.enrolment_tickets"),
        1,
        "erin's ticket, shown on db1, stays"
    );
    assert_eq!(
        authority.count(&format!(
            "SELECT count(*) FROM pim.approvals WHERE request_id = {on_db1}"
        )),
        0
    );
    // Bob's grant for every db host stays: its code was checked here, not taken on db2's word.
    assert_eq!(
        authority.count("SELECT count(*) FROM pim.grants WHERE ended_at IS NULL"),
        1
    );
    assert_eq!(
        authority.count(
            "SELECT count(*) FROM pim.audit WHERE action = 'admin-host-disable' \
             AND detail LIKE 'host db2 disabled;%'"
        ),
        1
    );

    // db2's open session was ended and its login refused.
    assert!(call(&mut db2, "pim_api.snapshot(0)", &[]).is_err());
    assert!(authority.try_login("pim_host_db2", &passwords[1]).is_err());
    // A session that got in anyway (its login let back by hand) is refused every call.
    authority
        .admin()
        .batch_execute("ALTER ROLE pim_host_db2 LOGIN")
        .unwrap();
    let mut sneaked = authority.host("db2", &passwords[1]);
    let snapshot = call(&mut sneaked, "pim_api.snapshot(0)", &[]);
    assert_eq!(sqlstate(&snapshot), "PM007", "{snapshot:?}");
    let offered = offer(&mut sneaked, "alice", "123456");
    assert_eq!(sqlstate(&offered), "PM007", "{offered:?}");
    authority
        .admin()
        .batch_execute("ALTER ROLE pim_host_db2 NOLOGIN")
        .unwrap();
    // The fleet's hosts list says so.
    let hosts = call(&mut db1, "pim_api.hosts()", &[]).unwrap();
    let db2_row = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "db2")
        .unwrap();
    assert_eq!(db2_row["disabled_by"], "ann", "{hosts}");

    // Enabled again with a new password (whoever had db2 may know the old one): it logs in
    // with that one only, calls, and what ended stays ended.
    let ann_code = code(&ann, step + 1);
    offer(&mut db1, "ann", &ann_code).unwrap();
    let enabled = call(
        &mut db1,
        "pim_api.enable_host('ann', $1, 'db2')",
        &[&ann_code],
    )
    .unwrap();
    let password = enabled["password"].as_str().unwrap();
    assert_ne!(password, passwords[1]);
    assert!(authority.try_login("pim_host_db2", &passwords[1]).is_err());
    let mut db2 = authority.host("db2", password);
    assert_eq!(
        snapshot_grants(&mut db2),
        vec![("bob".to_string(), "dba".to_string())]
    );
}

#[test]
fn given_an_authority_of_another_schema_version_then_pimd_takes_nothing_from_it() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let (mut pimd, _) = authority.pimd_authority("db1", &passwords[0]);
    pimd.snapshot().expect("the current version is spoken");
    let refusal = |pimd: &mut PgAuthority| match pimd.snapshot() {
        Err(AuthorityError::Database(why)) => why,
        other => panic!("expected a refusal of the schema version, got {other:?}"),
    };
    // A version 1 authority has no pim_api.schema_version: refused as older.
    authority
        .admin()
        .batch_execute(
            "DROP FUNCTION pim_api.schema_version(); UPDATE pim.schema_version SET version = 1",
        )
        .unwrap();
    let (mut old, _) = authority.pimd_authority("db1", &passwords[0]);
    let why = refusal(&mut old);
    assert!(
        why.contains("version 1, older") && why.contains("pimd --fleet-setup"),
        "{why}"
    );
    // Set up again, it is spoken; a newer one is refused.
    let policy_file = authority.policy_file();
    let again = authority.setup(&["--policy", &policy_file]);
    assert!(again.status.success(), "{again:?}");
    let (mut current, _) = authority.pimd_authority("db1", &passwords[0]);
    current.snapshot().expect("spoken again after setup");
    authority
        .admin()
        .batch_execute("UPDATE pim.schema_version SET version = version + 1")
        .unwrap();
    let (mut newer, _) = authority.pimd_authority("db1", &passwords[0]);
    let why = refusal(&mut newer);
    assert!(why.contains("newer"), "{why}");
}

#[test]
fn given_an_approval_then_the_request_names_its_approver_to_whoever_may_see_it() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let alice = authority.enrolled("alice");
    let carol = authority.enrolled("carol");
    let mut db1 = authority.host("db1", &passwords[0]);
    let mut web7 = authority.host("web7", &passwords[1]);
    let pending = activate(
        &mut db1,
        "alice",
        &[],
        "ops",
        &code(&alice, now_step()),
        None,
    )
    .unwrap();
    let id = pending["pending"]["request_id"].as_i64().unwrap();
    let carol_code = code(&carol, now_step());
    offer(&mut web7, "carol", &carol_code).unwrap();
    call(
        &mut web7,
        "pim_api.approve($1, 'carol', '{}', $2, 'ok')",
        &[&id, &carol_code],
    )
    .unwrap();

    let for_dave = call(&mut web7, "pim_api.requests_for('dave', '{}')", &[]).unwrap();
    assert_eq!(
        for_dave[0]["approved_by"],
        serde_json::json!(["carol"]),
        "{for_dave}"
    );
    for viewer in ["alice", "dave", "ann"] {
        let shown = call(&mut db1, "pim_api.request($1, $2)", &[&viewer, &id]).unwrap();
        assert_eq!(
            shown["approved_by"],
            serde_json::json!(["carol"]),
            "{viewer}: {shown}"
        );
    }
    // Anyone else is told there is no such request.
    let hidden = call(&mut db1, "pim_api.request('mallory', $1)", &[&id]);
    assert_eq!(sqlstate(&hidden), "PM008", "{hidden:?}");
}

// --- Limits on what one host takes from the authority as a whole (review finding 7).

/// `login`'s connection limit and session defaults, as the database holds them.
fn login_limits(authority: &Authority, login: &str) -> (i32, Vec<String>) {
    let mut admin = authority.admin();
    let limit: i32 = admin
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .unwrap()
        .get(0);
    let settings: Vec<String> = admin
        .query(
            "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_roles r \
             ON r.oid = s.setrole WHERE r.rolname = $1 AND s.setdatabase = 0 ORDER BY 1",
            &[&login],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    (limit, settings)
}

#[test]
fn given_a_host_opening_more_connections_than_its_limit_then_the_extra_ones_are_refused_and_others_connect(
) {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let (limit, settings) = login_limits(&authority, "pim_host_db1");
    assert_eq!(limit, 6);
    assert_eq!(
        settings,
        [
            "idle_in_transaction_session_timeout=10s",
            "lock_timeout=5s",
            "statement_timeout=10s",
            "tcp_keepalives_count=3",
            "tcp_keepalives_idle=10",
            "tcp_keepalives_interval=3",
            "tcp_user_timeout=15000",
        ]
    );
    // A host added before the limits existed gets them when setup runs again.
    authority
        .admin()
        .batch_execute(
            "ALTER ROLE pim_host_web7 CONNECTION LIMIT -1; ALTER ROLE pim_host_web7 RESET ALL",
        )
        .unwrap();
    assert_eq!(login_limits(&authority, "pim_host_web7"), (-1, vec![]));
    let again = authority.setup(&[]);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(login_limits(&authority, "pim_host_web7"), (limit, settings));

    let held: Vec<Client> = (0..limit)
        .map(|_| authority.host("db1", &passwords[0]))
        .collect();
    let extra = authority.try_login("pim_host_db1", &passwords[0]);
    let refused = match extra {
        Err(e) => e
            .as_db_error()
            .map_or(e.to_string(), |db| db.message().to_string()),
        Ok(_) => "connected".into(),
    };
    assert!(
        refused.contains("too many connections for role \"pim_host_db1\""),
        "{refused}"
    );
    // The other host is not held up, and db1 connects again once it lets one go.
    let mut web7 = authority.host("web7", &passwords[1]);
    assert_eq!(snapshot_grants(&mut web7), []);
    drop(held);
    authority
        .pg
        .wait_until("db1 to connect again", Duration::from_secs(30), || {
            authority.try_login("pim_host_db1", &passwords[0]).is_ok()
        });
}

#[test]
fn given_a_host_idling_in_a_transaction_holding_a_users_row_then_it_is_cut_off_and_other_hosts_proceed(
) {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let alice = authority.enrolled("alice");
    authority.enrolled("bob");
    let mut web7 = authority.host("web7", &passwords[1]);
    // A session left idle in a transaction that holds bob's MFA row (offering a code locks
    // it) ends on its login's idle_in_transaction_session_timeout; web7 then gets through.
    let mut idle = authority.host("db1", &passwords[0]);
    idle.batch_execute("BEGIN").unwrap();
    offer(&mut idle, "bob", "000000").unwrap();
    authority
        .pg
        .wait_until("web7 to get bob's row", Duration::from_secs(60), || {
            offer(&mut web7, "bob", "111111").is_ok()
        });
    assert!(idle.simple_query("SELECT 1").is_err());
    // db1's root turns its own session's timeouts off, locks alice's MFA row and keeps the
    // transaction open.
    let mut db1 = authority.host("db1", &passwords[0]);
    db1.batch_execute(
        "SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; \
         SET lock_timeout = 0; BEGIN",
    )
    .unwrap();
    offer(&mut db1, "alice", "000000").unwrap();
    // web7 waits at most its lock_timeout on each try, and gets through once the database
    // has ended db1's transaction (older than 30 s, on the next call).
    let mut tries = Vec::new();
    authority
        .pg
        .wait_until("web7 to get alice's row", Duration::from_secs(120), || {
            let result = offer(&mut web7, "alice", "111111");
            let through = result.is_ok();
            tries.push(sqlstate(&result));
            through
        });
    assert!(
        tries[..tries.len() - 1].iter().all(|s| s == "55P03"),
        "{tries:?}"
    );
    let fresh = code(&alice, now_step());
    let granted = activate(&mut web7, "alice", &[], "ops", &fresh, None);
    assert!(
        granted
            .as_ref()
            .is_ok_and(|v| v.get("granted").is_some() || v.get("pending").is_some()),
        "{granted:?}"
    );
    // db1's session is gone, with nothing it held: its offer (a failure counted) was
    // rolled back with it.
    assert!(db1.simple_query("SELECT 1").is_err());
    assert!(
        authority
            .pg
            .log()
            .contains("pim: ended a session of host db1 stuck in a transaction"),
        "{}",
        authority.pg.log_tail(20)
    );
}

#[test]
fn given_an_oversized_ship_audit_batch_then_it_is_refused_whole_and_pimd_ships_it_in_smaller_ones()
{
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    let records = |count: i64, text_bytes: usize| -> Vec<AuditRecord> {
        (1..=count)
            .map(|id| AuditRecord {
                id,
                at: 1_800_000_000 + id,
                actor: "alice".into(),
                user: "alice".into(),
                reason: "r".repeat(text_bytes),
                detail: "d".repeat(text_bytes),
                ..AuditRecord::default()
            })
            .collect()
    };
    let shipped = || {
        authority
            .count("SELECT count(*) FROM pim.audit WHERE host = 'db1' AND local_id IS NOT NULL")
    };
    // Too many records, or too many bytes (150 records of 8 kB: 1.2 MB): refused before any
    // is stored.
    for batch in [records(1001, 1), records(150, 4096)] {
        let json = serde_json::to_value(&batch).unwrap();
        let result = call(&mut db1, "pim_api.ship_audit($1)", &[&json]);
        assert_eq!(sqlstate(&result), "PM002");
        let message = result
            .unwrap_err()
            .as_db_error()
            .unwrap()
            .message()
            .to_string();
        assert!(
            message.contains(
                "at most 1000 records and 1048576 bytes of JSON a call; ship in smaller batches"
            ),
            "{message}"
        );
        assert_eq!(shipped(), 0);
    }
    // pimd's authority ships the same spool in calls the function takes.
    let (mut pimd, _) = authority.pimd_authority("db1", &passwords[0]);
    assert_eq!(pimd.ship_audit(&records(150, 4096)).unwrap(), 150);
    assert_eq!(shipped(), 150);
}

#[test]
fn given_a_host_listening_without_reading_then_it_is_cut_off_and_the_notify_queue_drains() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    // web7's root LISTENs in psql and then reads nothing: psql waits on its input, the
    // notifications pile up in the socket and the backend blocks writing them, holding the
    // NOTIFY queue's tail for everyone.
    let mut listener = Command::new(format!("{}/psql", pim_e2e::postgres::PG_BIN))
        .args(["--no-psqlrc", "--quiet", "--dbname"])
        .arg(authority.conninfo("pim_host_web7", &passwords[1]))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = listener.stdin.as_mut().unwrap();
        stdin.write_all(b"LISTEN pim_wake;\n").unwrap();
        stdin.flush().unwrap();
    }
    let listening = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pim_host_web7'";
    let blocked = format!("{listening} AND wait_event = 'ClientWrite'");
    authority
        .pg
        .wait_until("web7 to listen", Duration::from_secs(30), || {
            authority.count(&format!(
                "{listening} AND query LIKE 'LISTEN%' AND state = 'idle'"
            )) == 1
        });
    // 3,000 notifications of 7.9 kB (24 MB), as any session may send them.
    authority.pg.admin_sql(
        "SELECT count(pg_notify('pim_wake', lpad(g::text, 7900, 'x'))) \
         FROM generate_series(1, 3000) g",
    );
    authority.pg.wait_until(
        "web7's backend to block writing",
        Duration::from_secs(30),
        || authority.count(&blocked) == 1,
    );
    assert!(authority.count("SELECT count(*) WHERE pg_notification_queue_usage() > 0") == 1);
    // Any host's call ends it once it has been stuck for 20 s, and the queue's tail moves on.
    let mut db1 = authority.host("db1", &passwords[0]);
    authority
        .pg
        .wait_until("web7's listener to be cut", Duration::from_secs(60), || {
            snapshot_grants(&mut db1);
            authority.count(listening) == 0
        });
    authority
        .pg
        .wait_until("the NOTIFY queue to drain", Duration::from_secs(30), || {
            authority.count("SELECT count(*) WHERE pg_notification_queue_usage() = 0") == 1
        });
    assert!(authority.pg.log().contains(
        "pim: ended a session of host web7 stuck in a transaction or a write (idle, ClientWrite)"
    ));
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
fn given_a_host_holding_its_own_row_in_an_open_transaction_then_an_admin_still_disables_it() {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("db2", "db")]);
    let ann = authority.enrolled("ann");
    let mut db1 = authority.host("db1", &passwords[0]);
    // db2's root, expecting to be disabled, keeps a transaction open on each of its
    // connections holding its own row of pim.hosts (a snapshot writes it), so that the
    // disabling would wait for that lock and fail.
    let mut holders: Vec<Client> = (0..3)
        .map(|_| authority.host("db2", &passwords[1]))
        .collect();
    holders[0]
        .batch_execute("BEGIN; SELECT pim_api.snapshot(0)")
        .unwrap();
    let ann_code = code(&ann, now_step());
    offer(&mut db1, "ann", &ann_code).unwrap();
    let disabled = call(
        &mut db1,
        "pim_api.disable_host('ann', $1, 'db2')",
        &[&ann_code],
    );
    assert!(disabled.is_ok(), "{disabled:?}");
    // Its sessions were ended first, the one holding the lock with them.
    for holder in &mut holders {
        assert!(holder.batch_execute("SELECT 1").is_err());
    }
    assert!(authority.try_login("pim_host_db2", &passwords[1]).is_err());
}

#[test]
fn given_a_host_login_then_it_may_neither_sleep_nor_take_advisory_locks() {
    let (authority, passwords) = Authority::start(&[("db1", "db")]);
    let mut db1 = authority.host("db1", &passwords[0]);
    // A sleep holds a transaction's locks as long as the host likes; a session's advisory
    // lock outlives any transaction and would hang every `pimd --fleet-setup`.
    for sql in [
        "SELECT pg_sleep(0)",
        "SELECT pg_sleep_for('0 s')",
        "SELECT pg_advisory_lock(8101000000000000000)",
        "SELECT pg_try_advisory_lock(1, 2)",
        "SELECT pg_advisory_xact_lock(1)",
    ] {
        let e = db1.batch_execute(sql).expect_err(sql);
        assert_eq!(
            e.as_db_error().map(|db| db.code().code()),
            Some("42501"),
            "{sql}: {e}"
        );
    }
    // The setup itself (the database's administrator) still takes its lock.
    authority
        .admin()
        .batch_execute("SELECT pg_advisory_xact_lock(1)")
        .unwrap();
}

#[test]
fn given_a_database_whose_encoding_is_not_utf8_then_setup_refuses_it_naming_createdb_and_creates_nothing(
) {
    let pg = Postgres::start("10.77.0.1/16");
    Client::connect(&pg.admin_conninfo(), NoTls)
        .expect("admin connection")
        .batch_execute(
            "CREATE DATABASE pim_ascii ENCODING 'SQL_ASCII' TEMPLATE template0 \
             LC_COLLATE 'C' LC_CTYPE 'C'",
        )
        .unwrap();
    let conninfo = pg
        .admin_conninfo()
        .split_whitespace()
        .map(|pair| match pair.starts_with("dbname=") {
            true => "dbname=pim_ascii",
            false => pair,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let dir = std::env::temp_dir().join(format!(
        "pim-fleet-ascii-{}-{}",
        std::process::id(),
        pim_e2e::postgres::random_hex(4)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_file = dir.join("policy.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let out = Command::new(binary("pimd"))
        .arg("--fleet-setup")
        .arg(&conninfo)
        .arg("--policy")
        .arg(&policy_file)
        .args(["--add-host", "web7"])
        .output()
        .expect("running pimd --fleet-setup");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server_encoding is SQL_ASCII, not UTF8"),
        "{stderr}"
    );
    assert!(stderr.contains("createdb -E UTF8 -T template0"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{out:?}");
    // Nothing in that database, nor in the cluster (the roles are the cluster's).
    let mut ascii = Client::connect(&conninfo, NoTls).expect("the SQL_ASCII database");
    let count =
        |client: &mut Client, sql: &str| -> i64 { client.query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(
        count(
            &mut ascii,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('pim', 'pim_api', 'pim_crypto')"
        ),
        0
    );
    assert_eq!(
        count(
            &mut ascii,
            "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut ascii,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pim\\_%'"
        ),
        0
    );
    // pimd's own connections ask for UTF-8 text, whatever the server's encoding.
    let mut pimds = ConnInfo::parse(&conninfo)
        .expect("conninfo")
        .connect()
        .expect("pimd's connection");
    let client_encoding: String = pimds
        .query_one("SELECT current_setting('client_encoding')", &[])
        .unwrap()
        .get(0);
    assert_eq!(client_encoding, "UTF8");
}

#[test]
fn given_a_host_flooding_notifies_then_another_host_s_listener_reads_them_is_not_cut_and_its_grant_arrives(
) {
    let (authority, passwords) = Authority::start(&[("db1", "db"), ("web7", "web")]);
    let alice = authority.enrolled("alice");
    let (mut db1, mut wakeup) = authority.pimd_authority("db1", &passwords[0]);
    // pimd's listener connects (a fresh connection counts as a wake).
    assert!(wakeup.wait(Duration::from_secs(10)).unwrap());
    let db1_sessions = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'pim_host_db1'";
    authority
        .pg
        .wait_until("db1 to listen", Duration::from_secs(30), || {
            authority.count(db1_sessions) == 1
        });
    let listener: i32 = authority
        .admin()
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'pim_host_db1'",
            &[],
        )
        .unwrap()
        .get(0);
    // web7's root floods: 50,000 notifications with distinct payloads (none is folded
    // into another by PostgreSQL), more than a socket holds unread.
    let mut web7 = authority.host("web7", &passwords[1]);
    let flood: String = (0..50_000)
        .map(|n| format!("NOTIFY pim_wake, 'flood {n}';"))
        .collect();
    web7.batch_execute(&flood).unwrap();
    // Meanwhile db1's sync does what a round does, without waiting for a wake: its calls
    // look for stuck sessions, as every host's do.
    authority
        .pg
        .wait_until("the NOTIFY queue to drain", Duration::from_secs(60), || {
            db1.snapshot().unwrap();
            authority.count("SELECT count(*) WHERE pg_notification_queue_usage() = 0") == 1
        });
    let alive = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {listener}");
    assert_eq!(authority.count(&alive), 1, "db1's listener was cut");
    // The flood is one wake (or a few); once they are taken, a grant's wake still comes.
    while wakeup.wait(Duration::from_secs(1)).unwrap() {}
    let granted = activate(
        &mut web7,
        "alice",
        &[],
        "dba",
        &code(&alice, now_step()),
        None,
    )
    .unwrap();
    assert!(granted.get("granted").is_some(), "{granted}");
    assert!(
        wakeup.wait(Duration::from_secs(30)).unwrap(),
        "no wake after the grant"
    );
    let snapshot = db1.snapshot().unwrap();
    assert!(
        snapshot
            .grants
            .iter()
            .any(|g| g.user == "alice" && g.role == "dba"),
        "{:?}",
        snapshot.grants.len()
    );
    assert_eq!(authority.count(&alive), 1, "db1's listener was cut");
    assert!(!authority.pg.log().contains("ended a session of host db1"));
}
