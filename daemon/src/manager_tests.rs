//! Unit tests of the manager over an in-memory store, fake accounts and a fake clock.

use super::*;
use crate::accounts::fake::FakeAccounts;
use crate::clock::fake::FakeClock;
use crate::config::{self, Directory};
use pim_common::types::MAX_AUDIT_RECORDS;
use pim_common::vocab::{AuditAction, EventKind};

/// A whole TOTP step (1_800_000_000 / 30 = 60_000_000), so times read easily.
const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

const CONFIG: &str = r#"
[daemon]
database = "/nonexistent/pim.db"
admins = ["%pim-admins"]
auditors = ["audra"]

[mfa]
issuer = "pim"
max_failures = 3
failure_window = "5m"
lockout = "15m"

[roles.admin]
group = "sudo"
description = "Full administration through sudo"
eligible = ["alice", "%ops"]
max_duration = "2h"
default_duration = "1h"
require_mfa = true
require_justification = true
min_justification = 10

[roles.rescue]
group = "sudo"
eligible = ["alice"]
max_duration = "2h"
default_duration = "30m"
require_mfa = false
require_justification = false

[roles.docker]
eligible = ["alice", "%ops"]
require_mfa = false
require_justification = false

[roles.ticketed]
group = "deploy"
eligible = ["alice"]
require_mfa = false
require_justification = false
require_ticket = true
ticket_pattern = "^(INC|CHG)[0-9]+$"

[roles.db]
group = "dbadmin"
eligible = ["alice", "dave"]
max_duration = "4h"
default_duration = "1h"
require_approval = true
approvers = ["bob", "carol", "alice"]
approvals_required = 2
request_ttl = "1h"

[roles.wheel]
eligible = ["alice", "paul"]
permanent = ["paul"]
require_mfa = false
require_justification = false
"#;

const USERS: &[(&str, u32)] = &[
    ("root", 0),
    ("alice", 1000),
    ("bob", 1001),
    ("carol", 1002),
    ("dave", 1003),
    ("audra", 1004),
    ("erin", 1005),
    ("frank", 1006),
    ("paul", 1007),
    ("gina", 1008),
    ("hank", 1009),
];

const REASON: &str = "rotate the TLS keys on web1";

/// The fake accounts as the configuration checker sees them.
struct HostDirectory(FakeAccounts);

impl Directory for HostDirectory {
    fn user_exists(&self, name: &str) -> bool {
        Accounts::user_exists(&self.0, name)
    }
    fn group_exists(&self, name: &str) -> bool {
        Accounts::group_exists(&self.0, name)
    }
}

/// The TOTP code of `secret` for `step`, computed independently of `mfa::verify_totp`.
fn code_at(secret: &[u8], step: u64) -> String {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .build_noncompliant()
        .generate(step * 30)
        .to_string()
}

/// Unwraps the error variant named, giving its message; anything else fails the test.
macro_rules! assert_err {
    ($result:expr, $variant:ident) => {
        match $result {
            Err(PimError::$variant(message)) => message,
            other => panic!("expected {}, got {:?}", stringify!($variant), other),
        }
    };
}

struct Env {
    m: Manager,
    accounts: FakeAccounts,
    clock: FakeClock,
}

fn env() -> Env {
    env_with(Store::open_in_memory().unwrap(), FakeClock::at(T0))
}

/// An environment on `store` at the time of `clock`: a pimd started then.
fn env_with(store: Store, clock: FakeClock) -> Env {
    let accounts = FakeAccounts::default();
    for (name, uid) in USERS {
        accounts.add_user(name, *uid);
    }
    for group in ["sudo", "docker", "deploy", "dbadmin"] {
        accounts.add_group(group, &[]);
    }
    accounts.add_group("wheel", &["paul"]);
    accounts.add_group("ops", &["erin"]);
    accounts.add_group("pim-admins", &["frank"]);
    let (config, problems) = config::parse(CONFIG, "pim.toml", &HostDirectory(accounts.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    let config = config.expect("the fixture configuration is valid");
    let m = Manager::new(
        Arc::new(config),
        store,
        Box::new(accounts.clone()),
        Box::new(clock.clone()),
        "host".into(),
    );
    Env { m, accounts, clock }
}

impl Env {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    fn set(&self, at: i64) {
        self.clock.advance(at - self.now());
    }

    fn who(&self, name: &str) -> Caller {
        let uid = self.accounts.0.lock().unwrap().users[name].0;
        let caller = self.m.caller(uid).unwrap();
        assert_eq!(caller.name, name);
        caller
    }

    /// Enrols `user` (enroll, first code, confirm); returns the recovery codes.
    fn enrol(&mut self, user: &str) -> Vec<String> {
        let caller = self.who(user);
        let (uri, secret) = self.m.mfa_enroll(&caller).unwrap();
        assert!(uri.starts_with("otpauth://totp/pim:"), "{uri}");
        assert!(uri.contains(&format!("{user}%40host")), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
        let bytes = totp_rs::Secret::try_from_base32(&secret).unwrap();
        let code = code_at(bytes.as_bytes(), mfa::current_step(self.now()));
        let codes = self.m.mfa_confirm(&caller, &code).unwrap();
        assert_eq!(codes.len(), mfa::RECOVERY_CODE_COUNT);
        codes
    }

    fn mfa_record(&mut self, user: &str) -> crate::store::MfaRecord {
        self.m
            .store
            .read(|tx| tx.mfa(user))
            .unwrap()
            .expect("enrolment")
    }

    /// The next unused code of `user`: the clock moves on by whole steps until the current
    /// step is later than the last one used.
    fn code(&mut self, user: &str) -> String {
        let record = self.mfa_record(user);
        while record
            .last_step
            .is_some_and(|last| mfa::current_step(self.now()) <= last)
        {
            self.advance(30);
        }
        code_at(&record.secret, mfa::current_step(self.now()))
    }

    /// The code of `user` for `step`, whether used or not.
    fn code_for_step(&mut self, user: &str, step: u64) -> String {
        code_at(&self.mfa_record(user).secret, step)
    }

    /// Six digits that match none of the steps `verify_totp` accepts now.
    fn wrong_code(&mut self, user: &str) -> String {
        let secret = self.mfa_record(user).secret;
        let step = mfa::current_step(self.now());
        let valid: Vec<String> = (step - 1..=step + 1).map(|s| code_at(&secret, s)).collect();
        (0..)
            .map(|n: u32| format!("{:06}", (n * 7919) % 1_000_000))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    fn grants(&mut self, user: &str) -> Vec<GrantInfo> {
        let caller = self.who(user);
        self.m.status(&caller).unwrap().0
    }

    fn requests_of(&mut self, user: &str) -> Vec<RequestInfo> {
        let caller = self.who(user);
        self.m.status(&caller).unwrap().1
    }

    fn request(&mut self, id: i64) -> Request {
        self.m.store.read(|tx| tx.request(id)).unwrap().unwrap()
    }

    fn managed(&mut self, user: &str, group: &str) -> bool {
        self.m
            .store
            .read(|tx| tx.has_membership(user, group))
            .unwrap()
    }

    fn last_ended(&mut self, user: &str, group: &str) -> Grant {
        self.m
            .store
            .read(|tx| tx.last_ended_grant(user, &[group.to_string()]))
            .unwrap()
            .expect("an ended grant")
    }

    fn audit_log(&mut self) -> Vec<AuditRecord> {
        self.m
            .store
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap()
    }

    fn audited(&mut self, action: &str) -> Vec<AuditRecord> {
        self.audit_log()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    fn mfa_status(&mut self, user: &str) -> MfaStatusInfo {
        let caller = self.who(user);
        self.m.mfa_status(&caller).unwrap()
    }

    fn event_kinds(&mut self) -> Vec<String> {
        self.m
            .take_outbox()
            .events
            .into_iter()
            .map(|e| e.kind.to_string())
            .collect()
    }

    fn activate(
        &mut self,
        user: &str,
        role: &str,
        secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
    ) -> Result<ActivateReply, PimError> {
        let caller = self.who(user);
        self.m.activate(&caller, role, secs, reason, ticket, code)
    }

    /// Activates `admin` for alice (or another enrolled user) with a fresh code.
    fn activate_admin(&mut self, user: &str, secs: u64) -> Result<ActivateReply, PimError> {
        let code = self.code(user);
        self.activate(user, "admin", secs, REASON, "", &code)
    }

    fn approve(&mut self, user: &str, id: i64, comment: &str) -> Result<RequestInfo, PimError> {
        let code = self.code(user);
        let caller = self.who(user);
        self.m.approve(&caller, id, comment, &code)
    }

    fn deny(&mut self, user: &str, id: i64, comment: &str) -> Result<RequestInfo, PimError> {
        let code = self.code(user);
        let caller = self.who(user);
        self.m.deny(&caller, id, comment, &code)
    }

    /// Alice files a request for `db` for two hours; returns its id.
    fn file_db_request(&mut self, user: &str) -> i64 {
        let code = self.code(user);
        let reply = self
            .activate(
                user,
                "db",
                2 * HOUR as u64,
                "restore the orders table",
                "",
                &code,
            )
            .unwrap();
        assert_eq!(reply.state, "pending");
        assert!(reply.request.id > 0);
        reply.request.id
    }

    /// The `docker` role as `user` sees it in `pim roles`, if eligible.
    fn docker_role_of(&mut self, user: &str) -> Option<RoleInfo> {
        let caller = self.who(user);
        let roles = self.m.list_roles(&caller).unwrap();
        roles.into_iter().find(|r| r.name == "docker")
    }

    /// What SIGHUP does with `text`: takes it as the configuration, then reconciles at once.
    fn reload(&mut self, text: &str) {
        assert_ne!(text, CONFIG, "a reload test must change the configuration");
        let (config, problems) =
            config::parse(text, "pim.toml", &HostDirectory(self.accounts.clone()));
        assert!(problems.is_empty(), "{problems:?}");
        self.m.replace_config(config.unwrap()).unwrap();
        self.m.reconcile().unwrap();
    }

    /// The eligibility-end records, as (actor, user, role, reason).
    fn eligibility_ends(&mut self) -> Vec<(String, String, String, String)> {
        self.audited("eligibility-end")
            .into_iter()
            .map(|r| (r.actor, r.user, r.role, r.reason))
            .collect()
    }

    fn list_requests(&mut self, user: &str) -> Vec<i64> {
        let caller = self.who(user);
        self.m
            .list_requests(&caller)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }
}

/// `text` with `from` replaced by `to`. `from` must be there: otherwise a test of the change
/// would pass without the change being made.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the configuration");
    text.replace(from, to)
}

fn names(roles: Vec<RoleInfo>) -> Vec<String> {
    roles.into_iter().map(|r| r.name).collect()
}

// ----- eligibility -----

#[test]
fn given_standing_user_or_group_member_then_eligible_and_others_are_not() {
    let mut e = env();
    let (alice, erin, hank) = (e.who("alice"), e.who("erin"), e.who("hank"));
    assert_eq!(
        names(e.m.list_roles(&alice).unwrap()),
        ["admin", "db", "docker", "rescue", "ticketed", "wheel"]
    );
    assert_eq!(names(e.m.list_roles(&erin).unwrap()), ["admin", "docker"]);
    assert!(e.m.list_roles(&hank).unwrap().is_empty());

    let reply = e.activate("erin", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.state, "active");
    assert_eq!(reply.grant.user, "erin");
    assert_eq!(e.accounts.members("docker"), ["erin"]);
    let roles = e.m.list_roles(&erin).unwrap();
    let docker = roles.iter().find(|r| r.name == "docker").unwrap();
    assert_eq!(docker.active_until, T0 + HOUR);
    assert_eq!(docker.eligible_until, 0);
}

#[test]
fn given_list_roles_then_each_role_shows_what_it_requires() {
    let mut e = env();
    let alice = e.who("alice");
    let roles = e.m.list_roles(&alice).unwrap();
    let role = |name: &str| roles.iter().find(|r| r.name == name).unwrap().clone();
    let admin = role("admin");
    assert_eq!(admin.group, "sudo");
    assert_eq!(admin.description, "Full administration through sudo");
    assert_eq!(
        (admin.max_duration_secs, admin.default_duration_secs),
        (7200, 3600)
    );
    assert!(admin.require_mfa && admin.require_justification && !admin.require_approval);
    assert_eq!((admin.min_justification, admin.approvals_required), (10, 0));
    let ticketed = role("ticketed");
    assert!(ticketed.require_ticket);
    assert!(
        ticketed.ticket_pattern.contains("(INC|CHG)[0-9]+"),
        "{}",
        ticketed.ticket_pattern
    );
    let db = role("db");
    assert!(db.require_approval);
    assert_eq!(db.approvals_required, 2);
    assert_eq!(db.group, "dbadmin");
    assert_eq!(
        role("docker").group,
        "docker",
        "the group defaults to the role's name"
    );
    assert_eq!(role("docker").active_until, 0);
}

#[test]
fn given_not_eligible_or_unknown_role_then_the_same_refusal() {
    let mut e = env();
    let known = assert_err!(e.activate("hank", "docker", 0, "", "", ""), NotEligible);
    let unknown = assert_err!(e.activate("hank", "nosuch", 0, "", "", ""), NotEligible);
    assert_eq!(
        known.replace("docker", "ROLE"),
        unknown.replace("nosuch", "ROLE")
    );
    assert!(known.contains("pim roles"), "{known}");
    assert!(e.accounts.calls().is_empty());
    let refused = e.audited("activate");
    assert_eq!(refused.len(), 2);
    for r in &refused {
        assert_eq!((r.actor.as_str(), r.user.as_str()), ("hank", "hank"));
        assert_eq!(r.outcome, "refused");
    }
    assert_eq!(refused[0].role, "docker");
    assert_eq!(refused[1].role, "nosuch");
}

#[test]
fn given_assignment_window_then_eligible_only_inside_it_and_grant_capped_at_its_end() {
    let mut e = env();
    let (frank, dave) = (e.who("frank"), e.who("dave"));
    e.m.admin_assign(&frank, "dave", "docker", T0 + 100, T0 + 1000)
        .unwrap();

    // Before the window.
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert!(e.docker_role_of("dave").is_none());

    // At its start (inclusive): eligible until its end, and the grant stops there.
    e.set(T0 + 100);
    let docker = e.docker_role_of("dave").expect("eligible for docker");
    assert_eq!(docker.eligible_until, T0 + 1000);
    let reply = e.activate("dave", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.grant.started_at, T0 + 100);
    assert_eq!(
        reply.grant.ends_at,
        T0 + 1000,
        "capped at the assignment's end"
    );

    // Extending cannot pass the assignment's end either.
    let msg = assert_err!(e.m.extend(&dave, "docker", 7200, "", ""), InvalidArgument);
    assert!(msg.contains("already ends"), "{msg}");

    // Last second inside.
    e.m.deactivate(&dave, "docker").unwrap();
    e.set(T0 + 999);
    let reply = e.activate("dave", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.grant.ends_at, T0 + 1000);
    e.m.deactivate(&dave, "docker").unwrap();

    // At its end (exclusive): no longer eligible.
    e.set(T0 + 1000);
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert!(e.docker_role_of("dave").is_none());
    assert!(e.accounts.members("docker").is_empty());
}

#[test]
fn given_unassign_then_eligibility_is_gone() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let docker = e.docker_role_of("dave").expect("eligible for docker");
    assert_eq!(docker.eligible_until, 0, "no end");

    e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert!(e.docker_role_of("dave").is_none());
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert_err!(e.m.admin_unassign(&frank, "dave", "docker"), NotFound);

    let records: Vec<(String, String, String, String, String)> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.action.as_str().starts_with("admin-"))
        .map(|r| (r.actor, r.action.into(), r.user, r.role, r.outcome.into()))
        .collect();
    let row = |a: &str, o: &str| {
        (
            "frank".to_string(),
            a.to_string(),
            "dave".to_string(),
            "docker".to_string(),
            o.to_string(),
        )
    };
    assert_eq!(
        records,
        [
            row("admin-assign", "success"),
            row("admin-unassign", "success"),
            row("admin-unassign", "refused"),
        ]
    );
}

// ----- activation -----

#[test]
fn given_eligible_user_then_activation_adds_member_and_grant_with_default_duration() {
    let mut e = env();
    let reply = e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_eq!(reply.state, "active");
    let g = &reply.grant;
    assert_eq!(
        (g.user.as_str(), g.role.as_str(), g.group.as_str()),
        ("alice", "docker", "docker")
    );
    assert_eq!((g.started_at, g.ends_at), (T0, T0 + HOUR));
    assert_eq!(reply.request, RequestInfo::default());
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_eq!(e.accounts.calls(), ["-a alice docker"]);
    assert!(e.managed("alice", "docker"));
    assert_eq!(e.grants("alice"), std::slice::from_ref(&reply.grant));

    let outbox = e.m.take_outbox();
    assert_eq!(outbox.events.len(), 1);
    let event = &outbox.events[0];
    assert_eq!(event.kind, "grant-started");
    assert_eq!(
        (event.user.as_str(), event.role.as_str()),
        ("alice", "docker")
    );
    assert_eq!(event.grant_id, reply.grant.id);
    assert_eq!(outbox.audit.len(), 1);
    assert_eq!(outbox.audit[0].action, "activate");

    let records = e.audited("activate");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "success");
    assert!(
        records[0].detail.contains("mfa not required"),
        "{:?}",
        records[0]
    );
}

#[test]
fn given_explicit_duration_then_grant_lasts_it_and_over_the_maximum_is_refused() {
    let mut e = env();
    let reply = e.activate("alice", "docker", 1800, "", "", "").unwrap();
    assert_eq!(reply.grant.ends_at, T0 + 1800);

    let msg = assert_err!(
        e.activate("alice", "rescue", 7201, "", "", ""),
        InvalidArgument
    );
    assert!(msg.contains("maximum of 2h"), "{msg}");
    assert!(e.accounts.members("sudo").is_empty());
    let reply = e.activate("alice", "rescue", 7200, "", "", "").unwrap();
    assert_eq!(reply.grant.ends_at, T0 + 7200);

    // Refused before the code is looked at: no failure is counted.
    e.m.deactivate(&e.who("alice"), "rescue").unwrap();
    e.enrol("alice");
    let wrong = e.wrong_code("alice");
    assert_err!(
        e.activate("alice", "admin", 7201, REASON, "", &wrong),
        InvalidArgument
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
}

#[test]
fn given_bad_reasons_then_refused_without_spending_the_code() {
    let mut e = env();
    e.enrol("alice");
    let code = e.code("alice");
    let long = "x".repeat(1025);
    for (reason, expected) in [
        ("", "requires a reason"),
        ("   ", "requires a reason"),
        ("too short", "at least 10"),
        ("rotate keys\nJan 1 pimd: granted root", "control character"),
        ("rotate keys \x1b[2J now", "control character"),
        (long.as_str(), "1025 bytes"),
    ] {
        let msg = assert_err!(
            e.activate("alice", "admin", 0, reason, "", &code),
            InvalidArgument
        );
        assert!(msg.contains(expected), "{reason:?}: {msg}");
    }
    assert!(e.accounts.members("sudo").is_empty());
    assert!(e.grants("alice").is_empty());
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
    // The code was never checked, so it still works.
    let reply = e.activate("alice", "admin", 0, REASON, "", &code).unwrap();
    assert_eq!(reply.grant.reason, REASON);
    // A reason exactly 1 KiB long is fine.
    e.m.deactivate(&e.who("alice"), "admin").unwrap();
    let kib = "y".repeat(1024);
    let code = e.code("alice");
    assert_eq!(
        e.activate("alice", "admin", 0, &kib, "", &code)
            .unwrap()
            .grant
            .reason,
        kib
    );
}

#[test]
fn given_ticketed_role_then_ticket_required_and_must_match_the_pattern() {
    let mut e = env();
    let msg = assert_err!(
        e.activate("alice", "ticketed", 0, "", "", ""),
        InvalidArgument
    );
    assert!(msg.contains("requires a ticket"), "{msg}");
    for bad in ["JIRA-1", "xINC1", "INC", "INC1 ", "INC1\n"] {
        assert_err!(
            e.activate("alice", "ticketed", 0, "", bad, ""),
            InvalidArgument
        );
    }
    assert!(e.accounts.members("deploy").is_empty());
    let reply = e
        .activate("alice", "ticketed", 0, "", "INC123", "")
        .unwrap();
    assert_eq!(reply.grant.ticket, "INC123");
    assert_eq!(e.accounts.members("deploy"), ["alice"]);
    let ok: Vec<_> = e
        .audited("activate")
        .into_iter()
        .filter(|r| r.outcome == "success")
        .collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].ticket, "INC123");
}

#[test]
fn given_mfa_role_then_missing_code_or_enrolment_is_refused() {
    let mut e = env();
    e.enrol("alice");
    let msg = assert_err!(e.activate("alice", "admin", 0, REASON, "", ""), MfaRequired);
    assert!(msg.contains("--code"), "{msg}");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", "  "),
        MfaRequired
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 0);

    let msg = assert_err!(
        e.activate("erin", "admin", 0, REASON, "", "123456"),
        MfaNotEnrolled
    );
    assert!(msg.contains("pim mfa enroll"), "{msg}");
    // Started but unconfirmed is not enrolled either.
    let erin = e.who("erin");
    e.m.mfa_enroll(&erin).unwrap();
    assert_err!(
        e.activate("erin", "admin", 0, REASON, "", "123456"),
        MfaNotEnrolled
    );
    assert!(e.accounts.members("sudo").is_empty());
    let refused = e
        .audited("activate")
        .iter()
        .filter(|r| r.outcome == "refused")
        .count();
    assert_eq!(refused, 4);
}

#[test]
fn given_wrong_code_then_invalid_code_and_the_failure_is_counted() {
    let mut e = env();
    e.enrol("alice");
    let wrong = e.wrong_code("alice");
    let msg = assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &wrong),
        InvalidCode
    );
    assert!(msg.contains("wrong"), "{msg}");
    assert_eq!(e.mfa_status("alice").recent_failures, 1);
    let failures = e.audited("mfa-failure");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].user, "alice");
    assert_eq!(failures[0].outcome, "refused");
    assert!(failures[0].detail.contains("1 of 3"), "{:?}", failures[0]);
    // A recovery-shaped wrong code counts too.
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", "abcde-fghjk"),
        InvalidCode
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 2);
    assert!(e.accounts.members("sudo").is_empty());

    // The right code works and forgives the failures.
    e.activate_admin("alice", 0).unwrap();
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
}

#[test]
fn given_used_code_then_replays_are_refused() {
    let mut e = env();
    e.enrol("alice");
    let alice = e.who("alice");

    // The code that confirmed the enrolment is spent.
    let confirming = e.code_for_step("alice", mfa::current_step(e.now()));
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &confirming),
        InvalidCode
    );

    // The same step twice.
    let code = e.code("alice");
    e.activate("alice", "admin", 0, REASON, "", &code).unwrap();
    e.m.deactivate(&alice, "admin").unwrap();
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &code),
        InvalidCode
    );
    assert_eq!(e.mfa_status("alice").recent_failures, 1);

    // A later step (inside the skew) and then an earlier one, still inside the window.
    e.advance(30);
    let now_step = mfa::current_step(e.now());
    let later = e.code_for_step("alice", now_step + 1);
    let earlier = e.code_for_step("alice", now_step);
    e.activate("alice", "admin", 0, REASON, "", &later).unwrap();
    e.m.deactivate(&alice, "admin").unwrap();
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &earlier),
        InvalidCode
    );
    assert!(e.accounts.members("sudo").is_empty());
}

#[test]
fn given_recovery_code_then_it_works_once() {
    let mut e = env();
    let codes = e.enrol("alice");
    let alice = e.who("alice");
    e.activate("alice", "admin", 0, REASON, "", &codes[0])
        .unwrap();
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 9);
    let ok = e.audited("activate");
    assert!(
        ok[0].detail.contains("recovery code (9 left)"),
        "{:?}",
        ok[0]
    );
    e.m.deactivate(&alice, "admin").unwrap();

    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &codes[0]),
        InvalidCode
    );
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 9);
    // Another code, typed in capitals, works.
    e.activate("alice", "admin", 0, REASON, "", &codes[1].to_uppercase())
        .unwrap();
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 8);
}

#[test]
fn given_max_failures_wrong_codes_then_locked_out_until_the_lockout_ends() {
    let mut e = env();
    e.enrol("alice");
    for _ in 0..2 {
        let wrong = e.wrong_code("alice");
        assert_err!(
            e.activate("alice", "admin", 0, REASON, "", &wrong),
            InvalidCode
        );
    }
    let wrong = e.wrong_code("alice");
    let locked_at = e.now();
    let msg = assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &wrong),
        MfaLockedOut
    );
    assert!(msg.contains("locked until"), "{msg}");
    let status = e.mfa_status("alice");
    assert_eq!(status.locked_until, locked_at + 900);
    let lockouts = e.audited("mfa-lockout");
    assert_eq!(lockouts.len(), 1);
    assert_eq!(lockouts[0].user, "alice");

    // Even the right code is refused while locked; other roles' codes too.
    let right = e.code("alice");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &right),
        MfaLockedOut
    );
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", ""),
        MfaLockedOut
    );
    e.set(locked_at + 899);
    let right = e.code("alice");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &right),
        MfaLockedOut
    );
    assert!(e.accounts.members("sudo").is_empty());
    assert_eq!(e.audited("mfa-lockout").len(), 1, "announced once");

    e.set(locked_at + 900);
    let right = e.code("alice");
    e.activate("alice", "admin", 0, REASON, "", &right).unwrap();
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    let status = e.mfa_status("alice");
    assert_eq!((status.locked_until, status.recent_failures), (0, 0));
}

#[test]
fn given_failures_spread_beyond_the_window_then_counting_restarts() {
    let mut e = env();
    e.enrol("alice");
    let wrong = |e: &mut Env| {
        let code = e.wrong_code("alice");
        e.activate("alice", "admin", 0, REASON, "", &code)
    };
    assert_err!(wrong(&mut e), InvalidCode);
    e.advance(100);
    assert_err!(wrong(&mut e), InvalidCode);
    assert_eq!(e.mfa_status("alice").recent_failures, 2);
    e.advance(200); // the window (5 minutes from the first failure) is over
    assert_eq!(e.mfa_status("alice").recent_failures, 0);
    assert_err!(wrong(&mut e), InvalidCode);
    assert_err!(wrong(&mut e), InvalidCode);
    assert_eq!(e.mfa_status("alice").recent_failures, 2);
    assert_eq!(e.mfa_status("alice").locked_until, 0);
    assert_err!(wrong(&mut e), MfaLockedOut);
}

#[test]
fn given_live_grant_then_a_second_activation_conflicts_and_one_grant_remains() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let msg = assert_err!(e.activate("alice", "docker", 600, "", "", ""), Conflict);
    assert!(msg.contains("pim extend docker"), "{msg}");
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].ends_at, T0 + HOUR);
    assert_eq!(e.accounts.calls(), ["-a alice docker"]);
    let outcomes: Vec<String> = e
        .audited("activate")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["success", "refused"]);
}

#[test]
fn given_member_outside_pim_then_already_member_and_never_removed() {
    let mut e = env();
    e.accounts.add_group("docker", &["alice"]);
    let msg = assert_err!(e.activate("alice", "docker", 0, "", "", ""), AlreadyMember);
    assert!(msg.contains("outside PIM"), "{msg}");
    let alice = e.who("alice");
    assert_err!(e.m.deactivate(&alice, "docker"), NotFound);
    e.m.reconcile().unwrap();
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert!(!e.managed("alice", "docker"));
    assert!(e.accounts.calls().is_empty(), "{:?}", e.accounts.calls());

    // The same holds for a user whose primary group is the role's group.
    e.accounts
        .0
        .lock()
        .unwrap()
        .users
        .get_mut("erin")
        .unwrap()
        .1 = "docker".into();
    assert_err!(e.activate("erin", "docker", 0, "", "", ""), AlreadyMember);
    assert!(e.accounts.calls().is_empty());
}

#[test]
fn given_permanent_member_then_already_member_and_left_alone() {
    let mut e = env();
    let msg = assert_err!(e.activate("paul", "wheel", 0, "", "", ""), AlreadyMember);
    assert!(msg.contains("permanent"), "{msg}");
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("wheel"), ["paul"]);
    assert!(e.accounts.calls().is_empty());
}

#[test]
fn given_role_group_missing_then_internal_error_audited() {
    let mut e = env();
    e.accounts.0.lock().unwrap().groups.remove("docker");
    let msg = assert_err!(e.activate("alice", "docker", 0, "", "", ""), Internal);
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.calls().is_empty());
    let records = e.audited("activate");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "error");
}

#[test]
fn given_gpasswd_failure_then_internal_and_nothing_left_granted() {
    let mut e = env();
    e.accounts.fail_next_add();
    let msg = assert_err!(e.activate("alice", "docker", 0, "", "", ""), Internal);
    assert!(msg.contains("could not add alice to group docker"), "{msg}");
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert!(e.accounts.members("docker").is_empty());
    assert_eq!(
        e.last_ended("alice", "docker").end_reason.as_deref(),
        Some("failed")
    );
    let failed = e.audited("grant-failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].outcome, "error");
    assert!(
        failed[0].detail.contains("simulated failure"),
        "{:?}",
        failed[0]
    );
    let last = e.audit_log().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("activate", "error")
    );
    assert!(
        !e.event_kinds().contains(&"grant-started".to_string()),
        "no grant was started"
    );

    // Nothing stands in the way of trying again.
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
}

// ----- expiry -----

#[test]
fn given_live_grant_then_reconcile_removes_membership_exactly_at_its_end() {
    let mut e = env();
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.m.take_outbox();
    e.set(grant.ends_at - 1);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_eq!(e.grants("alice").len(), 1);
    assert!(e.event_kinds().is_empty());

    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert_eq!(e.accounts.calls(), ["-a alice docker", "-d alice docker"]);
    let ended = e.last_ended("alice", "docker");
    assert_eq!(ended.ended_at, Some(grant.ends_at));
    assert_eq!(ended.end_reason.as_deref(), Some("expired"));

    let expired = e.audited("expire");
    assert_eq!(expired.len(), 1);
    let r = &expired[0];
    assert_eq!(
        (
            r.actor.as_str(),
            r.user.as_str(),
            r.role.as_str(),
            r.outcome.as_str()
        ),
        ("pimd", "alice", "docker", "success")
    );
    assert_eq!(e.audited("membership-remove").len(), 1);
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "grant-ended");
    assert_eq!(events[0].grant_id, grant.id);

    // Nothing more to do.
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.calls().len(), 2);
}

#[test]
fn given_two_roles_on_one_group_then_membership_lasts_until_the_last_grant_ends() {
    let mut e = env();
    e.enrol("alice");
    let rescue = e.activate("alice", "rescue", 0, "", "", "").unwrap().grant;
    assert_eq!(rescue.ends_at, T0 + 1800);
    let admin = e.activate_admin("alice", 0).unwrap().grant;
    assert!(admin.ends_at > rescue.ends_at);
    assert_eq!(e.accounts.calls(), ["-a alice sudo"]);

    e.set(rescue.ends_at);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    assert!(e.managed("alice", "sudo"));
    assert_eq!(e.grants("alice"), std::slice::from_ref(&admin));

    e.set(admin.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("sudo").is_empty());
    assert!(!e.managed("alice", "sudo"));
    assert_eq!(e.accounts.calls(), ["-a alice sudo", "-d alice sudo"]);
}

#[test]
fn given_two_roles_on_one_group_then_deactivating_one_keeps_the_membership() {
    let mut e = env();
    e.enrol("alice");
    e.activate_admin("alice", 0).unwrap();
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let alice = e.who("alice");
    e.m.deactivate(&alice, "admin").unwrap();
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    e.m.deactivate(&alice, "rescue").unwrap();
    assert!(e.accounts.members("sudo").is_empty());
}

#[test]
fn given_grants_and_requests_then_next_deadline_is_the_earliest() {
    let mut e = env();
    assert_eq!(e.m.next_deadline().unwrap(), None);
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "rescue", 600, "", "", "").unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), Some(T0 + 600));

    e.enrol("alice");
    let id = e.file_db_request("alice");
    let expires = e.request(id).expires_at;
    assert_eq!(expires, e.now() + HOUR);

    e.set(T0 + 600);
    e.m.reconcile().unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), Some(T0 + HOUR));
    e.set(T0 + HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), Some(expires));
    e.set(expires);
    e.m.reconcile().unwrap();
    assert_eq!(e.m.next_deadline().unwrap(), None);
}

#[test]
fn given_orphaned_membership_then_reconcile_removes_it() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    // What a crash can leave: bob was added by gpasswd but his grant never committed (or
    // ended without the membership being taken back); carol's record has no gpasswd behind
    // it at all.
    e.accounts.add_group("docker", &["alice", "bob"]);
    let entry = AuditEntry {
        at: T0,
        actor: "test".into(),
        action: AuditAction::Activate,
        user: "bob".into(),
        role: "docker".into(),
        outcome: Outcome::Success,
        reason: String::new(),
        ticket: String::new(),
        detail: String::new(),
    };
    e.m.store
        .write(|tx| {
            tx.add_membership("bob", "docker", T0)?;
            tx.add_membership("carol", "sudo", T0)?;
            tx.audit(entry)
        })
        .unwrap();

    e.m.reconcile().unwrap();
    assert_eq!(
        e.accounts.members("docker"),
        ["alice"],
        "alice's grant is live"
    );
    assert!(!e.managed("bob", "docker"));
    assert!(!e.managed("carol", "sudo"));
    assert!(e.managed("alice", "docker"));
    assert_eq!(e.accounts.calls(), ["-a alice docker", "-d bob docker"]);
    let removed: Vec<String> = e
        .audited("membership-remove")
        .into_iter()
        .map(|r| r.user)
        .collect();
    assert_eq!(removed, ["bob", "carol"]);
}

#[test]
fn given_deactivate_then_the_grant_ends_early() {
    let mut e = env();
    let alice = e.who("alice");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.advance(600);
    let ended = e.m.deactivate(&alice, "docker").unwrap();
    assert_eq!(ended.id, grant.id);
    assert!(e.accounts.members("docker").is_empty());
    assert!(e.grants("alice").is_empty());
    let last = e.last_ended("alice", "docker");
    assert_eq!(last.ended_at, Some(T0 + 600));
    assert_eq!(last.end_reason.as_deref(), Some("deactivated"));
    assert_eq!(
        e.event_kinds(),
        ["grant-started", "grant-ended"],
        "events of activation and deactivation"
    );
    let msg = assert_err!(e.m.deactivate(&alice, "docker"), NotFound);
    assert!(msg.contains("no live grant"), "{msg}");
    let outcomes: Vec<String> = e
        .audited("deactivate")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["success", "refused"]);
    // Reconciling at the original end finds nothing to do.
    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.audited("expire").is_empty());
}

#[test]
fn given_live_grant_then_extend_lengthens_it_within_policy() {
    let mut e = env();
    let alice = e.who("alice");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.advance(600);
    let extended =
        e.m.extend(&alice, "docker", 2 * HOUR as u64, "", "")
            .unwrap();
    assert_eq!(extended.id, grant.id);
    assert_eq!(extended.ends_at, T0 + 600 + 2 * HOUR);
    assert_eq!(e.grants("alice")[0].ends_at, T0 + 600 + 2 * HOUR);

    let msg = assert_err!(
        e.m.extend(&alice, "docker", 8 * HOUR as u64 + 1, "", ""),
        InvalidArgument
    );
    assert!(msg.contains("maximum"), "{msg}");
    let msg = assert_err!(e.m.extend(&alice, "docker", 1800, "", ""), InvalidArgument);
    assert!(msg.contains("already ends"), "{msg}");
    assert_err!(e.m.extend(&alice, "rescue", 1800, "", ""), NotFound);
    assert_err!(
        e.m.extend(&e.who("hank"), "docker", 1800, "", ""),
        NotEligible
    );

    // The old end passes without effect.
    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    e.set(T0 + 600 + 2 * HOUR);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());

    let outcomes: Vec<String> = e
        .audited("extend")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(
        outcomes,
        ["success", "refused", "refused", "refused", "refused"]
    );
}

#[test]
fn given_grant_past_its_end_then_extend_refuses_even_before_reconcile() {
    let mut e = env();
    let alice = e.who("alice");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.set(grant.ends_at);
    let msg = assert_err!(e.m.extend(&alice, "docker", 3600, "", ""), NotFound);
    assert!(msg.contains("pim activate docker"), "{msg}");
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    let ended = e.last_ended("alice", "docker");
    assert_eq!(ended.ends_at, grant.ends_at, "not lengthened");
    assert_eq!(ended.end_reason.as_deref(), Some("expired"));
}

#[test]
fn given_mfa_role_then_extend_needs_a_reason_and_a_fresh_code() {
    let mut e = env();
    e.enrol("alice");
    let alice = e.who("alice");
    let grant = e.activate_admin("alice", 1800).unwrap().grant;
    assert_err!(e.m.extend(&alice, "admin", 7200, REASON, ""), MfaRequired);
    let wrong = e.wrong_code("alice");
    assert_err!(
        e.m.extend(&alice, "admin", 7200, REASON, &wrong),
        InvalidCode
    );
    let code = e.code("alice");
    let msg = assert_err!(
        e.m.extend(&alice, "admin", 7200, "", &code),
        InvalidArgument
    );
    assert!(msg.contains("requires a reason"), "{msg}");
    assert_eq!(e.grants("alice")[0].ends_at, grant.ends_at);

    let extended = e.m.extend(&alice, "admin", 7200, REASON, &code).unwrap();
    assert_eq!(extended.ends_at, e.now() + 7200);
    let ok: Vec<_> = e
        .audited("extend")
        .into_iter()
        .filter(|r| r.outcome == "success")
        .collect();
    assert_eq!(ok.len(), 1);
    assert!(ok[0].detail.contains("mfa totp"), "{:?}", ok[0]);
}

#[test]
fn given_approval_role_grant_then_extend_conflicts() {
    let mut e = env();
    for user in ["alice", "bob", "carol"] {
        e.enrol(user);
    }
    let id = e.file_db_request("alice");
    e.approve("bob", id, "").unwrap();
    e.approve("carol", id, "").unwrap();
    let code = e.code("alice");
    let alice = e.who("alice");
    let msg = assert_err!(
        e.m.extend(&alice, "db", 3 * HOUR as u64, REASON, &code),
        Conflict
    );
    assert!(msg.contains("needs approval"), "{msg}");
}

#[test]
fn given_admin_revoke_then_the_grant_ends_and_membership_is_removed() {
    let mut e = env();
    let frank = e.who("frank");
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    e.m.take_outbox();
    e.advance(60);
    let revoked =
        e.m.admin_revoke(&frank, "alice", "docker", "laptop reported stolen")
            .unwrap();
    assert_eq!(revoked.id, grant.id);
    assert!(e.accounts.members("docker").is_empty());
    assert!(e.grants("alice").is_empty());
    assert_eq!(
        e.last_ended("alice", "docker").end_reason.as_deref(),
        Some("revoked")
    );
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("grant-ended", "frank")
    );
    let records = e.audited("admin-revoke");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.actor.as_str(),
            r.user.as_str(),
            r.role.as_str(),
            r.outcome.as_str(),
            r.reason.as_str()
        ),
        (
            "frank",
            "alice",
            "docker",
            "success",
            "laptop reported stolen"
        )
    );
    // Alice sees what was done to her.
    let alice = e.who("alice");
    let hers = e.m.audit(&alice, 0, "", "").unwrap();
    assert!(hers.iter().any(|r| r.action == "admin-revoke"));

    assert_err!(e.m.admin_revoke(&frank, "alice", "docker", ""), NotFound);
    assert_eq!(e.audited("admin-revoke")[1].outcome, "refused");
}

// ----- audit -----

#[test]
fn given_a_session_then_every_step_is_audited_with_actor_user_role_and_outcome() {
    let mut e = env();
    e.enrol("alice");
    let alice = e.who("alice");
    e.activate_admin("alice", 1800).unwrap();
    let code = e.code("alice");
    e.m.extend(&alice, "admin", 3600, REASON, &code).unwrap();
    e.m.deactivate(&alice, "admin").unwrap();
    assert_err!(e.activate("hank", "docker", 0, "", "", ""), NotEligible);

    let rows: Vec<[String; 5]> = e
        .audit_log()
        .into_iter()
        .map(|r| [r.actor, r.action.into(), r.user, r.role, r.outcome.into()])
        .collect();
    let row = |actor: &str, action: &str, user: &str, role: &str, outcome: &str| {
        [actor, action, user, role, outcome].map(String::from)
    };
    assert_eq!(
        rows,
        [
            row("alice", "mfa-enroll", "alice", "", "success"),
            row("alice", "mfa-confirm", "alice", "", "success"),
            row("alice", "activate", "alice", "admin", "success"),
            row("alice", "extend", "alice", "admin", "success"),
            row("alice", "deactivate", "alice", "admin", "success"),
            row("pimd", "membership-remove", "alice", "", "success"),
            row("hank", "activate", "hank", "docker", "refused"),
        ]
    );
    let log = e.audit_log();
    assert_eq!(log[2].reason, REASON);
    assert!(log
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at));
}

#[test]
fn given_non_admin_then_only_own_records_and_auditors_see_everything() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    e.activate("erin", "docker", 0, "", "", "").unwrap();

    let alice = e.who("alice");
    let own = e.m.audit(&alice, 0, "", "").unwrap();
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r.user == "alice" || r.actor == "alice"));
    assert_eq!(e.m.audit(&alice, 0, "alice", "").unwrap(), own);
    let msg = assert_err!(e.m.audit(&alice, 0, "dave", ""), PermissionDenied);
    assert!(msg.contains("auditors"), "{msg}");
    assert!(e.m.audit(&e.who("hank"), 0, "", "").unwrap().is_empty());
    // The refused read itself is on record, about dave.
    let total = e.audit_log().len();

    for who in ["audra", "frank", "root"] {
        let caller = e.who(who);
        assert_eq!(e.m.audit(&caller, 0, "", "").unwrap().len(), total, "{who}");
        let daves = e.m.audit(&caller, 0, "dave", "").unwrap();
        let actions: Vec<&str> = daves.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["activate", "audit-read"], "{who}");
        assert!(daves.iter().all(|r| r.outcome == "refused"));
        let docker = e.m.audit(&caller, 0, "", "docker").unwrap();
        assert!(docker.iter().all(|r| r.role == "docker"));
        assert!(docker.len() >= 3);
        assert!(e.m.audit(&caller, T0 + 1, "", "").unwrap().is_empty());
    }
    assert_err!(
        e.m.audit(&e.who("audra"), 0, "bad name", ""),
        InvalidArgument
    );
}

#[test]
fn given_local_users_named_like_the_daemons_actors_then_its_records_are_not_theirs() {
    let mut e = env();
    e.accounts.add_user("pimd", 1100);
    e.accounts.add_user("pam", 1101);
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    e.m.audit_access_denial("alice", &["docker".to_string()], "no grant")
        .unwrap();
    let log = e.audit_log();
    for actor in ["pimd", "pam"] {
        assert!(
            log.iter().any(|r| r.actor == actor && r.user == "alice"),
            "no {actor} record about alice: {log:#?}"
        );
        let theirs = e.m.audit(&e.who(actor), 0, "", "").unwrap();
        assert!(theirs.is_empty(), "{actor} sees {theirs:#?}");
    }
}

#[test]
fn given_control_characters_then_the_audit_never_stores_them_raw() {
    let mut e = env();
    for user in ["alice", "bob", "carol"] {
        e.enrol(user);
    }
    let (alice, frank, bob) = (e.who("alice"), e.who("frank"), e.who("bob"));
    let forged = "ok\nJan  1 00:00:00 host pimd: granted root";
    assert_err!(
        e.activate("alice", "docker", 0, forged, "", ""),
        InvalidArgument
    );
    assert_err!(
        e.activate("alice", "ticketed", 0, "", "INC1\x1b[2J", ""),
        InvalidArgument
    );
    assert_err!(
        e.activate("alice", "dock\ner", 0, "", "", ""),
        InvalidArgument
    );
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    assert_err!(
        e.m.extend(&alice, "docker", 7200, forged, ""),
        InvalidArgument
    );
    assert_err!(e.m.deactivate(&alice, "dock\u{9b}er"), InvalidArgument);
    assert_err!(
        e.m.admin_revoke(&frank, "alice", "docker", forged),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_revoke(&frank, "al\nice", "docker", ""),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_assign(&frank, "x\ny", "docker", 0, 0),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_unassign(&frank, "x\ny", "docker"),
        InvalidArgument
    );
    assert_err!(e.m.admin_mfa_reset(&frank, "x\ny"), InvalidArgument);
    let id = e.file_db_request("alice");
    let code = e.code("bob");
    assert_err!(e.m.approve(&bob, id, forged, &code), InvalidArgument);
    assert_err!(e.m.deny(&bob, id, forged, &code), InvalidArgument);

    let log = e.audit_log();
    assert!(log.len() >= 15, "{}", log.len());
    for r in &log {
        for field in [
            &r.actor,
            &r.action.to_string(),
            &r.user,
            &r.role,
            &r.reason,
            &r.ticket,
            &r.detail,
        ] {
            assert!(!field.chars().any(char::is_control), "{r:?}");
        }
    }
    let first = &log
        .iter()
        .find(|r| r.action == "activate" && r.outcome == "refused")
        .unwrap();
    assert_eq!(
        first.reason,
        "ok\\x0aJan  1 00:00:00 host pimd: granted root"
    );
    assert!(log.iter().any(|r| r.ticket == "INC1\\x1b[2J"));
    let bad_role = log
        .iter()
        .find(|r| r.action == "activate" && r.detail.contains("dock"))
        .unwrap();
    assert_eq!(
        bad_role.role, "",
        "an invalid name is not recorded as a role"
    );
    assert!(bad_role.detail.contains("dock\\x0aer"), "{bad_role:?}");
}

// ----- administration -----

#[test]
fn given_non_admin_then_every_admin_call_is_refused_and_audited() {
    let mut e = env();
    e.enrol("bob");
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    for who in ["alice", "audra"] {
        let caller = e.who(who);
        assert_err!(e.m.admin_grants(&caller), PermissionDenied);
        assert_err!(
            e.m.admin_assign(&caller, "dave", "docker", 0, 0),
            PermissionDenied
        );
        assert_err!(
            e.m.admin_unassign(&caller, "dave", "docker"),
            PermissionDenied
        );
        assert_err!(
            e.m.admin_revoke(&caller, "alice", "docker", ""),
            PermissionDenied
        );
        assert_err!(e.m.admin_mfa_reset(&caller, "bob"), PermissionDenied);
        let refused: Vec<String> = e
            .audit_log()
            .into_iter()
            .filter(|r| r.actor == who && r.outcome == "refused")
            .map(|r| r.action.to_string())
            .collect();
        assert_eq!(
            refused,
            [
                "admin-grants",
                "admin-assign",
                "admin-unassign",
                "admin-revoke",
                "admin-mfa-reset"
            ],
            "{who}"
        );
    }
    // Nothing changed.
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    assert!(e.mfa_status("bob").enrolled);
}

#[test]
fn given_root_or_pim_admins_member_then_admin_calls_are_allowed() {
    let mut e = env();
    let (root, frank) = (e.who("root"), e.who("frank"));
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(
        e.m.admin_grants(&root).unwrap(),
        std::slice::from_ref(&grant)
    );
    assert_eq!(e.m.admin_grants(&frank).unwrap(), [grant]);

    e.m.admin_assign(&root, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    assert_eq!(e.m.admin_grants(&frank).unwrap().len(), 2);
    e.m.admin_revoke(&frank, "dave", "docker", "").unwrap();
    e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    e.m.admin_revoke(&root, "alice", "docker", "").unwrap();
    assert!(e.m.admin_grants(&root).unwrap().is_empty());
    assert!(e.accounts.members("docker").is_empty());
    let actors: Vec<(String, String)> = e
        .audit_log()
        .into_iter()
        .filter(|r| r.action.as_str().starts_with("admin-"))
        .map(|r| (r.actor, r.outcome.into()))
        .collect();
    assert!(actors.iter().all(|(_, o)| o == "success"), "{actors:?}");
    assert_eq!(actors.len(), 4, "listing grants is not audited: {actors:?}");
}

#[test]
fn given_bad_assignment_arguments_then_refused() {
    let mut e = env();
    let frank = e.who("frank");
    assert_err!(e.m.admin_assign(&frank, "dave", "nosuch", 0, 0), NotFound);
    assert_err!(e.m.admin_assign(&frank, "nobody", "docker", 0, 0), NotFound);
    assert_err!(
        e.m.admin_assign(&frank, "dave", "docker", T0 + 10, T0 + 10),
        InvalidArgument
    );
    assert_err!(
        e.m.admin_assign(&frank, "dave", "docker", -1, 0),
        InvalidArgument
    );
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
    let refused = e
        .audited("admin-assign")
        .iter()
        .filter(|r| r.outcome == "refused")
        .count();
    assert_eq!(refused, 4);
}

#[test]
fn given_mfa_reset_then_the_user_is_unenrolled() {
    let mut e = env();
    e.enrol("alice");
    // Lock her out first: a reset also lifts that.
    for _ in 0..3 {
        let wrong = e.wrong_code("alice");
        let _ = e.activate("alice", "admin", 0, REASON, "", &wrong);
    }
    assert!(e.mfa_status("alice").locked_until > 0);
    let frank = e.who("frank");
    e.m.admin_mfa_reset(&frank, "alice").unwrap();
    let status = e.mfa_status("alice");
    assert_eq!(
        status,
        MfaStatusInfo {
            enrolled: false,
            pending: false,
            locked_until: 0,
            recent_failures: 0,
            recovery_codes_left: 0,
        }
    );
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", "123456"),
        MfaNotEnrolled
    );
    let r = &e.audited("admin-mfa-reset")[0];
    assert_eq!(
        (r.actor.as_str(), r.user.as_str(), r.outcome.as_str()),
        ("frank", "alice", "success")
    );
    // She may enrol a new device, and nobody else has an enrolment to reset.
    e.enrol("alice");
    e.activate_admin("alice", 0).unwrap();
    assert_err!(e.m.admin_mfa_reset(&frank, "bob"), NotFound);
}

// ----- MFA -----

#[test]
fn given_enrol_again_soon_before_confirming_then_the_same_secret_and_each_disclosure_audited() {
    let mut e = env();
    let alice = e.who("alice");
    let (first_uri, first) = e.m.mfa_enroll(&alice).unwrap();
    for _ in 0..5 {
        e.advance(60);
        assert_eq!(
            e.m.mfa_enroll(&alice).unwrap(),
            (first_uri.clone(), first.clone())
        );
    }
    let records = e.audited("mfa-enroll");
    assert_eq!(
        records.len(),
        6,
        "one record per secret shown: {records:#?}"
    );
    assert!(
        records[1..]
            .iter()
            .all(|r| r.outcome == "success" && r.detail.contains("pending secret (from ")),
        "{records:#?}"
    );
    let secret = totp_rs::Secret::try_from_base32(&first)
        .unwrap()
        .as_bytes()
        .to_vec();
    let codes =
        e.m.mfa_confirm(&alice, &code_at(&secret, mfa::current_step(e.now())));
    assert_eq!(codes.unwrap().len(), 10);
    assert!(e.mfa_status("alice").enrolled);
}

#[test]
fn given_a_pending_enrolment_older_than_ten_minutes_then_enrolling_replaces_its_secret() {
    let mut e = env();
    let alice = e.who("alice");
    // Planted (or seen on a shared screen) and left pending.
    let (_, planted) = e.m.mfa_enroll(&alice).unwrap();
    e.advance(PENDING_SECRET_SHOWN_SECS - 1);
    assert_eq!(e.m.mfa_enroll(&alice).unwrap().1, planted);
    e.advance(1);
    let (_, fresh) = e.m.mfa_enroll(&alice).unwrap();
    assert_ne!(fresh, planted);
    // The new secret's own ten minutes start now.
    e.advance(PENDING_SECRET_SHOWN_SECS - 1);
    assert_eq!(e.m.mfa_enroll(&alice).unwrap().1, fresh);
    let records = e.audited("mfa-enroll");
    assert_eq!(records.len(), 4, "{records:#?}");
    assert!(
        records[2]
            .detail
            .starts_with("enrolment started again with a new secret"),
        "{records:#?}"
    );
    // The planted secret no longer confirms anything.
    let planted = totp_rs::Secret::try_from_base32(&planted)
        .unwrap()
        .as_bytes()
        .to_vec();
    let code = code_at(&planted, mfa::current_step(e.now()));
    assert!(e.m.mfa_confirm(&alice, &code).is_err());
    assert!(!e.mfa_status("alice").enrolled);
}

#[test]
fn given_a_clock_that_went_back_then_the_pending_secret_is_not_shown_again() {
    let mut e = env();
    let alice = e.who("alice");
    let (_, first) = e.m.mfa_enroll(&alice).unwrap();
    e.set(T0 - HOUR);
    assert_ne!(e.m.mfa_enroll(&alice).unwrap().1, first);
}

#[test]
fn given_a_pending_enrolment_reset_by_an_admin_then_enrolling_gives_a_new_secret() {
    let mut e = env();
    let alice = e.who("alice");
    let (_, first) = e.m.mfa_enroll(&alice).unwrap();
    e.m.admin_mfa_reset(&e.who("root"), "alice").unwrap();
    let (_, second) = e.m.mfa_enroll(&alice).unwrap();
    assert_ne!(first, second);
    assert_eq!(e.audited("mfa-enroll").len(), 2);
}

#[test]
fn given_confirmed_enrolment_then_enrolling_again_conflicts() {
    let mut e = env();
    e.enrol("alice");
    let secret = e.mfa_record("alice").secret;
    let alice = e.who("alice");
    let msg = assert_err!(e.m.mfa_enroll(&alice), Conflict);
    assert!(msg.contains("mfa-reset"), "{msg}");
    assert_eq!(e.mfa_record("alice").secret, secret, "the secret is kept");
    let outcomes: Vec<String> = e
        .audited("mfa-enroll")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["success", "refused"]);
    assert_err!(e.m.mfa_confirm(&alice, "123456"), Conflict);
}

#[test]
fn given_wrong_confirmation_code_then_the_failure_is_counted() {
    let mut e = env();
    let alice = e.who("alice");
    assert_err!(e.m.mfa_confirm(&alice, "123456"), MfaNotEnrolled);
    e.m.mfa_enroll(&alice).unwrap();
    let wrong = e.wrong_code("alice");
    assert_err!(e.m.mfa_confirm(&alice, &wrong), InvalidCode);
    let status = e.mfa_status("alice");
    assert!(status.pending && !status.enrolled);
    assert_eq!(status.recent_failures, 1);
    let failures = e.audited("mfa-failure");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].outcome, "refused");
    // Reaching the limit locks confirmation too.
    assert_err!(e.m.mfa_confirm(&alice, &wrong), InvalidCode);
    assert_err!(e.m.mfa_confirm(&alice, &wrong), MfaLockedOut);
    let right = e.code("alice");
    assert_err!(e.m.mfa_confirm(&alice, &right), MfaLockedOut);
    assert_eq!(e.audited("mfa-lockout").len(), 1);
}

#[test]
fn given_mfa_status_then_its_fields_follow_the_enrolment() {
    let mut e = env();
    let alice = e.who("alice");
    assert_eq!(e.mfa_status("alice"), MfaStatusInfo::default());
    e.m.mfa_enroll(&alice).unwrap();
    assert_eq!(
        e.mfa_status("alice"),
        MfaStatusInfo {
            pending: true,
            ..Default::default()
        }
    );
    let secret = e.mfa_record("alice").secret;
    e.m.mfa_confirm(&alice, &code_at(&secret, mfa::current_step(e.now())))
        .unwrap();
    assert_eq!(
        e.mfa_status("alice"),
        MfaStatusInfo {
            enrolled: true,
            recovery_codes_left: 10,
            ..Default::default()
        }
    );
    let wrong = e.wrong_code("alice");
    let _ = e.activate("alice", "admin", 0, REASON, "", &wrong);
    let status = e.mfa_status("alice");
    assert_eq!((status.recent_failures, status.locked_until), (1, 0));
    let _ = e.activate("alice", "admin", 0, REASON, "", &wrong);
    let _ = e.activate("alice", "admin", 0, REASON, "", &wrong);
    let status = e.mfa_status("alice");
    assert_eq!(status.locked_until, e.now() + 900);
    assert!(status.enrolled && !status.pending);
    assert_eq!(status.recovery_codes_left, 10);
}

// ----- the PAM module's question -----

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn given_non_root_caller_then_check_access_is_refused() {
    let mut e = env();
    let alice = e.who("alice");
    assert_err!(
        e.m.check_access(&alice, "alice", &groups(&["sudo"])),
        PermissionDenied
    );
    let root = e.who("root");
    assert_err!(e.m.check_access(&root, "alice", &[]), InvalidArgument);
    assert_err!(
        e.m.check_access(&root, "alice", &groups(&["su do"])),
        InvalidArgument
    );
}

#[test]
fn given_live_grant_then_access_is_allowed_and_not_audited() {
    let mut e = env();
    let root = e.who("root");
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let before = e.audit_log().len();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert_eq!(
        decision,
        AccessDecision {
            allowed: true,
            message: String::new()
        }
    );
    assert_eq!(e.audit_log().len(), before);
    // A grant for another group does not count.
    let other =
        e.m.check_access(&root, "alice", &groups(&["docker"]))
            .unwrap();
    assert!(!other.allowed);
}

#[test]
fn given_a_live_grant_of_one_group_then_another_held_group_is_still_refused_by_name() {
    // alice's admin grant (sudo) is revoked; she activates the cheap docker role. A shell from
    // the admin grant holds sudo and docker: docker's grant must not vouch for sudo.
    let mut e = env();
    let root = e.who("root");
    let frank = e.who("frank");
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    e.m.admin_revoke(&frank, "alice", "rescue", "rotation over")
        .unwrap();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["docker", "sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision
            .message
            .starts_with("pim: your grant for role rescue (group sudo) ended at"),
        "{}",
        decision.message
    );
    assert!(decision.message.ends_with("run 'pim activate rescue'"));
    // Each group covered on its own: allowed.
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    assert!(
        e.m.check_access(&root, "alice", &groups(&["docker", "sudo"]))
            .unwrap()
            .allowed
    );
}

#[test]
fn given_eligibility_gone_before_any_reconcile_then_the_live_grant_no_longer_covers() {
    // erin holds docker through %ops. She leaves ops (or the directory cannot say) and a
    // reload moves the role to another group: the PAM check must not wait for reconciliation
    // to end the grant before it stops counting it.
    let mut e = env();
    let root = e.who("root");
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    let docker = groups(&["docker"]);
    assert!(e.m.check_access(&root, "erin", &docker).unwrap().allowed);

    e.accounts.unreachable("ops");
    assert!(
        !e.m.check_access(&root, "erin", &docker).unwrap().allowed,
        "a failed lookup vouches for nothing"
    );
    e.accounts.reachable("ops");
    e.accounts.add_group("ops", &[]);
    let refused = e.m.check_access(&root, "erin", &docker).unwrap();
    assert!(!refused.allowed, "{refused:?}");
    assert!(
        refused.message.contains("group docker"),
        "{}",
        refused.message
    );
    assert!(e.m.check_access(&root, "alice", &docker).unwrap().allowed);

    // The role now grants another group: its grant of the old one covers nothing.
    let moved = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\ngroup = \"deploy\"\n",
    );
    let (config, problems) = config::parse(&moved, "pim.toml", &HostDirectory(e.accounts.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    e.m.replace_config(config.unwrap()).unwrap();
    assert!(!e.m.check_access(&root, "alice", &docker).unwrap().allowed);
}

#[test]
fn given_permanent_in_one_role_then_another_held_group_is_refused_by_name() {
    // paul is permanent in wheel only; a stale sudo must not ride on it.
    let mut e = env();
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "paul", &groups(&["wheel", "sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("group sudo") && !decision.message.contains("wheel"),
        "{}",
        decision.message
    );
    let records = e.audited("access-check");
    assert_eq!(records.len(), 1);
}

#[test]
fn given_a_held_group_no_role_grants_then_refused_whatever_else_is_covered() {
    let mut e = env();
    let root = e.who("root");
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo", "ops"]))
            .unwrap();
    assert!(!decision.allowed);
    assert_eq!(
        decision.message,
        "pim: you hold group ops without a live grant, and no pim role grants it to you; ask an administrator"
    );
}

#[test]
fn given_a_name_from_nss_outside_useradd_syntax_then_it_is_judged() {
    let mut e = env();
    let root = e.who("root");
    e.accounts.add_user("kim@corp", 1100);
    e.accounts.add_group("sudo", &["kim@corp"]);
    let decision =
        e.m.check_access(&root, "kim@corp", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("without a live grant"),
        "{}",
        decision.message
    );
    // A name NSS does not know is refused, not an error.
    let unknown =
        e.m.check_access(&root, "nobody@corp", &groups(&["sudo"]))
            .unwrap();
    assert!(!unknown.allowed);
    assert!(
        unknown.message.contains("not in this host's user database"),
        "{}",
        unknown.message
    );
    // Still bounded and free of control characters.
    assert_err!(
        e.m.check_access(&root, "kim\ncorp", &groups(&["sudo"])),
        InvalidArgument
    );
    assert_err!(
        e.m.check_access(&root, &"k".repeat(257), &groups(&["sudo"])),
        InvalidArgument
    );
    assert_err!(
        e.m.check_access(&root, "", &groups(&["sudo"])),
        InvalidArgument
    );
}

#[test]
fn given_no_grant_then_denied_naming_the_role_to_activate_and_audited() {
    let mut e = env();
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("pim activate admin"),
        "{}",
        decision.message
    );
    let records = e.audited("access-check");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.actor.as_str(), r.user.as_str(), r.outcome.as_str()),
        ("pam", "alice", "refused")
    );
    assert!(r.detail.contains("sudo"), "{r:?}");

    let stranger = e.m.check_access(&root, "hank", &groups(&["sudo"])).unwrap();
    assert!(!stranger.allowed);
    assert!(
        stranger.message.contains("ask an administrator"),
        "{}",
        stranger.message
    );
}

#[test]
fn given_grant_past_its_end_then_denied_even_before_reconcile() {
    let mut e = env();
    let root = e.who("root");
    let grant = e.activate("alice", "rescue", 0, "", "", "").unwrap().grant;
    e.set(grant.ends_at - 1);
    assert!(
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap()
            .allowed
    );
    e.set(grant.ends_at);
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("ended at"),
        "{}",
        decision.message
    );
    assert!(
        decision.message.contains("pim activate rescue"),
        "{}",
        decision.message
    );
    // The same after reconciliation.
    e.m.reconcile().unwrap();
    let decision =
        e.m.check_access(&root, "alice", &groups(&["sudo"]))
            .unwrap();
    assert!(!decision.allowed);
    assert!(
        decision.message.contains("ended at"),
        "{}",
        decision.message
    );
    assert!(decision.message.contains("pim activate rescue"));
    assert_eq!(e.audited("access-check").len(), 2);
}

#[test]
fn given_permanent_member_then_access_is_allowed() {
    let mut e = env();
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "paul", &groups(&["wheel"]))
            .unwrap();
    assert!(decision.allowed);
    assert!(e.audited("access-check").is_empty());
    // Being permanent in wheel says nothing about sudo.
    assert!(
        !e.m.check_access(&root, "paul", &groups(&["sudo"]))
            .unwrap()
            .allowed
    );
}

// ----- the end of eligibility ends the grants that depended on it -----

/// An eligibility-end record as `Env::eligibility_ends` gives it.
fn end_record(actor: &str, user: &str, role: &str, why: &str) -> (String, String, String, String) {
    let reason = format!("eligibility ended: {why}");
    (actor.into(), user.into(), role.into(), reason)
}

#[test]
fn given_unassign_then_the_grant_that_depended_on_it_ends_audited_and_the_membership_goes() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(e.accounts.members("docker"), ["dave"]);
    e.m.take_outbox();

    e.advance(60);
    let (told, warning) = e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert_eq!(
        told.id, grant.id,
        "the grant that ended with the assignment"
    );
    assert_eq!(warning, "");
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("dave", "docker"));
    assert_eq!(e.accounts.calls(), ["-a dave docker", "-d dave docker"]);
    let ended = e.last_ended("dave", "docker");
    assert_eq!(ended.id, grant.id);
    assert_eq!(ended.ended_at, Some(T0 + 60));
    assert_eq!(ended.end_reason.as_deref(), Some("eligibility-ended"));
    assert_eq!(
        e.eligibility_ends(),
        [end_record("frank", "dave", "docker", "unassigned by frank")]
    );
    // The unassignment's own record comes first, the removal from the group last.
    let actions: Vec<String> = e
        .audit_log()
        .into_iter()
        .skip_while(|r| r.action != "admin-unassign")
        .map(|r| r.action.to_string())
        .collect();
    assert_eq!(
        actions,
        ["admin-unassign", "eligibility-end", "membership-remove"]
    );
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind.as_str(), events[0].actor.as_str()),
        ("grant-ended", "frank")
    );
    // The PAM check refuses the group from now on.
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "dave", &groups(&["docker"]))
            .unwrap();
    assert!(!decision.allowed, "{decision:?}");
}

#[test]
fn given_unassign_of_a_user_still_eligible_another_way_then_the_grant_stays() {
    let mut e = env();
    let frank = e.who("frank");
    // erin is eligible for docker through %ops, and assigned to it as well.
    e.m.admin_assign(&frank, "erin", "docker", 0, 0).unwrap();
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    let (ended, warning) = e.m.admin_unassign(&frank, "erin", "docker").unwrap();
    assert_eq!((ended.id, warning.as_str()), (0, ""), "{ended:?}");
    e.m.reconcile().unwrap();
    assert_eq!(e.grants("erin").len(), 1);
    assert_eq!(e.accounts.members("docker"), ["erin"]);
    assert!(e.eligibility_ends().is_empty());
}

#[test]
fn given_an_assignment_cut_short_then_the_grant_ends_at_the_assignment_end() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(grant.ends_at, T0 + HOUR);
    // The assignment now ends in ten minutes: the grant runs until then, not an hour.
    e.m.admin_assign(&frank, "dave", "docker", 0, T0 + 600)
        .unwrap();
    assert_eq!(e.grants("dave").len(), 1);
    assert_eq!(e.m.next_deadline().unwrap(), Some(T0 + 600));

    e.set(T0 + 599);
    e.m.reconcile().unwrap();
    assert_eq!(e.grants("dave").len(), 1);
    assert_eq!(e.accounts.members("docker"), ["dave"]);

    // pimd may have been down at the end: its first reconciliation ends the grant.
    e.set(T0 + 900);
    e.m.reconcile().unwrap();
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    let ended = e.last_ended("dave", "docker");
    assert_eq!(ended.ended_at, Some(T0 + 900));
    assert_eq!(ended.end_reason.as_deref(), Some("eligibility-ended"));
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "pimd",
            "dave",
            "docker",
            "the assignment of dave to role docker ended 08:10 UTC"
        )]
    );
    assert_eq!(e.m.next_deadline().unwrap(), None);
}

#[test]
fn given_an_assignment_moved_to_the_future_then_the_running_grant_ends_at_once() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    e.m.admin_assign(&frank, "dave", "docker", T0 + HOUR, 0)
        .unwrap();
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "frank",
            "dave",
            "docker",
            "the assignment of dave to role docker starts only 09:00 UTC"
        )]
    );
}

#[test]
fn given_a_reload_that_removes_a_role_or_a_user_then_their_grants_end_and_others_stay() {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "rescue", 0, "", "", "").unwrap();
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    e.enrol("alice");
    e.activate_admin("alice", 0).unwrap();
    // rescue is gone; docker no longer names %ops (erin's way in); admin is unchanged.
    let text = replaced(
        &replaced(CONFIG, "[roles.rescue]", "[roles.rescue-renamed]"),
        "[roles.docker]\neligible = [\"alice\", \"%ops\"]",
        "[roles.docker]\neligible = [\"alice\"]",
    );
    e.reload(&text);
    let live = |e: &mut Env, user: &str| -> Vec<String> {
        e.grants(user).into_iter().map(|g| g.role).collect()
    };
    assert_eq!(live(&mut e, "alice"), ["docker", "admin"]);
    assert!(live(&mut e, "erin").is_empty());
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    // rescue and admin share sudo: the membership stays for admin.
    assert_eq!(e.accounts.members("sudo"), ["alice"]);
    let mut ends = e.eligibility_ends();
    ends.sort();
    assert_eq!(
        ends,
        [
            end_record(
                "pimd",
                "alice",
                "rescue",
                "role rescue is no longer in the configuration"
            ),
            end_record(
                "pimd",
                "erin",
                "docker",
                "erin is no longer eligible for role docker"
            ),
        ]
    );
}

#[test]
fn given_a_user_made_permanent_by_reload_then_the_grant_runs_on_and_its_end_leaves_the_membership_alone(
) {
    let mut e = env();
    let grant = e.activate("alice", "wheel", 0, "", "", "").unwrap().grant;
    let text = replaced(
        CONFIG,
        "eligible = [\"alice\", \"paul\"]\npermanent = [\"paul\"]",
        "eligible = [\"paul\"]\npermanent = [\"paul\", \"alice\"]",
    );
    e.reload(&text);
    assert_eq!(e.grants("alice").len(), 1);
    assert!(e.accounts.members("wheel").contains(&"alice".to_string()));
    assert!(e.eligibility_ends().is_empty());

    // At its natural end the grant goes, the membership stays: alice is a permanent member
    // now, and PIM never removes one; it lets go of the membership instead.
    e.set(grant.ends_at);
    e.m.reconcile().unwrap();
    assert!(e.grants("alice").is_empty());
    assert_eq!(
        e.last_ended("alice", "wheel").end_reason.as_deref(),
        Some("expired")
    );
    assert_eq!(e.accounts.members("wheel"), ["alice", "paul"]);
    assert!(!e.managed("alice", "wheel"));
    assert_eq!(e.accounts.calls(), ["-a alice wheel"]);
    assert!(e.audited("membership-remove").is_empty());
    let kept = e.audited("membership-keep");
    assert_eq!(kept.len(), 1, "{kept:#?}");
    assert_eq!(
        (
            kept[0].actor.as_str(),
            kept[0].user.as_str(),
            kept[0].role.as_str()
        ),
        ("pimd", "alice", "wheel")
    );
    assert!(
        kept[0]
            .detail
            .contains("left in group wheel: alice is now a permanent member of role wheel"),
        "{kept:#?}"
    );
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "alice", &groups(&["wheel"]))
            .unwrap();
    assert!(decision.allowed, "{decision:?}");
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("wheel"), ["alice", "paul"]);
}

#[test]
fn given_a_permanent_listing_that_cannot_be_looked_up_at_the_grants_end_then_the_membership_waits()
{
    let mut e = env();
    e.accounts.add_group("oncall", &["alice"]);
    let grant = e.activate("alice", "wheel", 0, "", "", "").unwrap().grant;
    let text = replaced(
        CONFIG,
        "permanent = [\"paul\"]",
        "permanent = [\"paul\", \"%oncall\"]",
    );
    e.reload(&text);
    e.set(grant.ends_at);
    // Whether alice is permanent cannot be told: her membership is neither removed nor let go.
    e.accounts.unreachable("oncall");
    let err = assert_err!(e.m.reconcile(), Internal);
    assert!(
        err.contains("cannot tell whether alice is a permanent member of role wheel"),
        "{err}"
    );
    assert!(e.grants("alice").is_empty());
    assert!(e.managed("alice", "wheel"));
    assert_eq!(e.accounts.calls(), ["-a alice wheel"]);
    // Once it can, she is: PIM lets go of the membership untouched.
    e.accounts.reachable("oncall");
    e.m.reconcile().unwrap();
    assert!(!e.managed("alice", "wheel"));
    assert_eq!(e.accounts.members("wheel"), ["alice", "paul"]);
    assert_eq!(e.audited("membership-keep").len(), 1);
}

#[test]
fn given_a_reload_that_moves_a_role_to_another_group_then_the_grant_of_the_old_group_ends() {
    let mut e = env();
    e.accounts.add_group("docker-ng", &[]);
    let grant = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(grant.group, "docker");
    let text = replaced(
        CONFIG,
        "[roles.docker]\n",
        "[roles.docker]\ngroup = \"docker-ng\"\n",
    );
    e.reload(&text);
    // alice is still eligible for docker, but docker no longer grants group docker.
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "pimd",
            "alice",
            "docker",
            "role docker now grants group docker-ng, not docker"
        )]
    );
    // A shell still carrying group docker gets no sudo through it.
    let root = e.who("root");
    let decision =
        e.m.check_access(&root, "alice", &groups(&["docker"]))
            .unwrap();
    assert!(!decision.allowed, "{decision:?}");
    // Activating again grants the new group.
    let again = e.activate("alice", "docker", 0, "", "", "").unwrap().grant;
    assert_eq!(again.group, "docker-ng");
    assert_eq!(e.accounts.members("docker-ng"), ["alice"]);
}

#[test]
fn given_a_user_taken_out_of_the_eligible_group_then_reconcile_ends_the_grant_but_not_on_a_failed_lookup(
) {
    let mut e = env();
    // erin is eligible for docker through %ops, alice by name.
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.accounts.unreachable("ops");
    let err = assert_err!(e.m.reconcile(), Internal);
    assert!(
        err.contains("cannot tell whether erin may still hold role docker")
            && err.contains("could not look up group ops"),
        "{err}"
    );
    assert_eq!(e.grants("erin").len(), 1);
    assert_eq!(e.grants("alice").len(), 1);
    assert_eq!(e.accounts.members("docker"), ["alice", "erin"]);
    assert!(e.eligibility_ends().is_empty());

    // When the directory answers again, its answer counts: erin has left %ops meanwhile.
    e.accounts.add_group("ops", &[]);
    e.accounts.reachable("ops");
    e.m.reconcile().unwrap();
    assert!(e.grants("erin").is_empty());
    assert_eq!(e.accounts.members("docker"), ["alice"]);
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "pimd",
            "erin",
            "docker",
            "erin is no longer eligible for role docker"
        )]
    );
}

#[test]
fn given_a_group_lookup_failing_then_nothing_is_granted_through_it() {
    let mut e = env();
    e.accounts.unreachable("ops");
    // erin could only be eligible through %ops: refused, saying what failed.
    let err = assert_err!(e.activate("erin", "docker", 0, "", "", ""), Internal);
    assert!(err.contains("could not look up group ops"), "{err}");
    assert!(e.grants("erin").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    // alice is listed by name: the outage does not concern her.
    e.activate("alice", "docker", 0, "", "", "").unwrap();

    // The role's group itself cannot be read: PIM cannot tell whether alice holds it outside
    // PIM, so it grants nothing.
    e.accounts.unreachable("deploy");
    let err = assert_err!(e.activate("alice", "ticketed", 0, "", "INC1", ""), Internal);
    assert!(err.contains("could not look up group deploy"), "{err}");
    assert!(e.grants("alice").iter().all(|g| g.role != "ticketed"));
    assert!(e.accounts.members("deploy").is_empty());

    // frank is an admin through %pim-admins: while it cannot be looked up, he is not.
    e.accounts.unreachable("pim-admins");
    let frank = e.who("frank");
    assert_err!(e.m.admin_grants(&frank), PermissionDenied);
}

#[test]
fn given_the_group_unreadable_when_a_grant_ends_then_pim_keeps_its_record_until_it_has_removed_the_member(
) {
    let mut e = env();
    e.activate("alice", "docker", 0, "", "", "").unwrap();
    e.accounts.unreachable("docker");
    let alice = e.who("alice");
    let err = assert_err!(e.m.deactivate(&alice, "docker"), Internal);
    assert!(err.contains("could not look up group docker"), "{err}");
    assert!(e.grants("alice").is_empty());
    // Not "not listed": nothing is recorded as removed, and PIM still knows it added her.
    assert!(e.managed("alice", "docker"));
    assert!(e.audited("membership-remove").is_empty());
    e.accounts.reachable("docker");
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("alice", "docker"));
    assert_eq!(e.accounts.calls(), ["-a alice docker", "-d alice docker"]);
}

#[test]
fn given_gpasswd_failing_at_unassign_then_it_succeeds_with_a_warning_and_reconcile_finishes() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    let grant = e.activate("dave", "docker", 0, "", "", "").unwrap().grant;
    e.accounts.fail_next_remove();
    let (ended, warning) = e.m.admin_unassign(&frank, "dave", "docker").unwrap();
    assert_eq!(ended.id, grant.id, "the grant ended in the database");
    assert!(
        warning.contains("ending dave's grant of docker did not complete")
            && warning.contains("gpasswd -d dave docker failed"),
        "{warning}"
    );
    assert!(e.grants("dave").is_empty());
    assert_eq!(e.accounts.members("docker"), ["dave"]);
    assert!(e.managed("dave", "docker"));
    // The assignment is gone: that is what a second unassign says.
    assert_err!(e.m.admin_unassign(&frank, "dave", "docker"), NotFound);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
    assert!(!e.managed("dave", "docker"));
}

#[test]
fn given_gpasswd_failing_when_assign_moves_the_window_then_it_succeeds_with_a_warning() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    e.accounts.fail_next_remove();
    let warning =
        e.m.admin_assign(&frank, "dave", "docker", T0 + HOUR, 0)
            .unwrap();
    assert!(
        warning.contains("ending dave's grant of docker did not complete"),
        "{warning}"
    );
    let assignment =
        e.m.store
            .read(|tx| tx.assignment("dave", "docker"))
            .unwrap();
    assert_eq!(assignment.and_then(|a| a.not_before), Some(T0 + HOUR));
    assert!(e.grants("dave").is_empty());
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("docker").is_empty());
}

#[test]
fn given_an_assignment_end_in_the_past_then_the_grant_on_it_ends_at_once() {
    let mut e = env();
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "dave", "docker", 0, 0).unwrap();
    e.activate("dave", "docker", 0, "", "", "").unwrap();
    e.advance(600);
    // The client refuses an --until in the past; straight over the bus it ends the grant now.
    let warning =
        e.m.admin_assign(&frank, "dave", "docker", 0, T0 + 60)
            .unwrap();
    assert_eq!(warning, "");
    assert!(e.grants("dave").is_empty());
    assert!(e.accounts.members("docker").is_empty());
    assert_eq!(
        e.eligibility_ends(),
        [end_record(
            "frank",
            "dave",
            "docker",
            "the assignment of dave to role docker ended 08:01 UTC"
        )]
    );
    assert_err!(e.activate("dave", "docker", 0, "", "", ""), NotEligible);
}

// ----- approvals -----

/// Alice, bob and carol enrolled; alice has filed a request for `db` (two hours).
fn with_db_request() -> (Env, i64) {
    let mut e = env();
    for user in ["alice", "bob", "carol"] {
        e.enrol(user);
    }
    e.m.take_outbox();
    let id = e.file_db_request("alice");
    (e, id)
}

#[test]
fn given_approval_role_then_activation_files_a_pending_request() {
    let (mut e, id) = with_db_request();
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(e.grants("alice").is_empty());
    assert!(!e.managed("alice", "dbadmin"));
    let open = e.requests_of("alice");
    assert_eq!(open.len(), 1);
    let r = &open[0];
    assert_eq!(
        (r.id, r.state.as_str(), r.role.as_str()),
        (id, "pending", "db")
    );
    assert_eq!((r.duration_secs, r.approvals_required), (7200, 2));
    assert_eq!(r.expires_at, r.created_at + HOUR);
    assert!(r.approved_by.is_empty());
    assert_eq!(e.event_kinds(), ["request-filed"]);
    let filed = e.audited("request");
    assert_eq!(filed.len(), 1);
    assert_eq!(filed[0].outcome, "success");
    assert!(filed[0].detail.contains("mfa totp"), "{:?}", filed[0]);

    // A second one for the same role conflicts, before any code is spent.
    let code = e.code("alice");
    let msg = assert_err!(
        e.activate("alice", "db", 0, "restore the orders table", "", &code),
        Conflict
    );
    assert!(msg.contains(&format!("request {id}")), "{msg}");
    assert_eq!(e.requests_of("alice").len(), 1);
    // Filing needs the requester's MFA.
    let msg = assert_err!(
        e.activate("dave", "db", 0, "restore the orders table", "", ""),
        MfaNotEnrolled
    );
    assert!(!msg.is_empty());
}

#[test]
fn given_two_approvals_needed_then_the_grant_starts_at_the_second() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    assert!(e.list_requests("alice").is_empty(), "not her own");
    assert_eq!(e.list_requests("bob"), [id]);
    assert_eq!(e.list_requests("carol"), [id]);
    assert!(e.list_requests("dave").is_empty());
    assert!(e.list_requests("audra").is_empty());

    let msg = assert_err!(e.approve("alice", id, ""), PermissionDenied);
    assert!(msg.contains("own request"), "{msg}");

    let bob = e.who("bob");
    assert_err!(e.m.approve(&bob, id, "", ""), MfaRequired);
    let wrong = e.wrong_code("bob");
    assert_err!(e.m.approve(&bob, id, "", &wrong), InvalidCode);
    assert!(e.requests_of("alice")[0].approved_by.is_empty());
    assert_eq!(e.mfa_status("bob").recent_failures, 1);
    let info = e.approve("bob", id, "looks right").unwrap();
    assert_eq!(info.state, "pending");
    assert_eq!(info.approved_by, ["bob"]);
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(e.list_requests("bob").is_empty(), "already approved by bob");
    assert_eq!(e.list_requests("carol"), [id]);

    let msg = assert_err!(e.approve("bob", id, "again"), Conflict);
    assert!(msg.contains("already approved"), "{msg}");
    assert_eq!(e.requests_of("alice")[0].approved_by, ["bob"]);

    e.advance(600);
    let info = e.approve("carol", id, "").unwrap();
    let approved_at = e.now();
    assert_eq!(info.state, "approved");
    assert_eq!(info.approved_by.len(), 2);
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
    assert!(e.requests_of("alice").is_empty());
    assert_eq!(e.request(id).state, RequestState::Approved);
    let grants = e.grants("alice");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].started_at, approved_at);
    assert_eq!(grants[0].ends_at, approved_at + 2 * HOUR);
    assert_eq!(grants[0].reason, "restore the orders table");
    assert!(e.list_requests("carol").is_empty());

    let start = e.audited("grant-start");
    assert_eq!(start.len(), 1);
    assert_eq!(
        (
            start[0].actor.as_str(),
            start[0].user.as_str(),
            start[0].role.as_str()
        ),
        ("carol", "alice", "db")
    );
    let approvals: Vec<(String, String)> = e
        .audited("approve")
        .into_iter()
        .map(|r| (r.actor, r.outcome.into()))
        .collect();
    let pair = |a: &str, o: &str| (a.to_string(), o.to_string());
    assert_eq!(
        approvals,
        [
            pair("alice", "refused"),
            pair("bob", "refused"),
            pair("bob", "refused"),
            pair("bob", "success"),
            pair("bob", "refused"),
            pair("carol", "success"),
        ]
    );

    // The grant expires like any other.
    e.set(approved_at + 2 * HOUR);
    e.m.reconcile().unwrap();
    assert!(e.accounts.members("dbadmin").is_empty());
    let events = e.m.take_outbox().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "request-approved",
            "request-approved",
            "grant-started",
            "grant-ended"
        ]
    );
    assert!(events.iter().all(|ev| ev.request_id == id));
    assert_eq!(events[2].actor, "carol");
}

#[test]
fn given_a_denial_then_the_request_ends() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    let msg = assert_err!(e.deny("bob", id, ""), InvalidArgument);
    assert!(msg.contains("comment"), "{msg}");
    assert_err!(e.deny("bob", id, "   "), InvalidArgument);
    e.approve("bob", id, "").unwrap();
    let info = e.deny("carol", id, "not during the freeze").unwrap();
    assert_eq!(info.state, "denied");
    assert_eq!(e.request(id).state, RequestState::Denied);
    let msg = assert_err!(e.approve("carol", id, ""), Conflict);
    assert!(msg.contains("denied"), "{msg}");
    assert_err!(e.deny("bob", id, "too"), Conflict);
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(e.grants("alice").is_empty());
    assert!(e.requests_of("alice").is_empty());
    assert_eq!(e.event_kinds(), ["request-approved", "request-denied"]);
    let denials = e.audited("deny");
    let ok: Vec<_> = denials.iter().filter(|r| r.outcome == "success").collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(
        (
            ok[0].actor.as_str(),
            ok[0].user.as_str(),
            ok[0].reason.as_str()
        ),
        ("carol", "alice", "not during the freeze")
    );
    // She may file again.
    e.file_db_request("alice");
}

/// `prober`, who may not decide request `id`, approves and denies it and a request that does
/// not exist: the answers are the same word for word, and so are `prober`'s own records of
/// them (they read those), which name no requester and no role. Returns the answer.
fn assert_probing_tells_nothing(e: &mut Env, prober: &str, id: i64) -> String {
    let missing = id + 100;
    let msg = assert_err!(e.approve(prober, id, ""), NotFound);
    assert_eq!(msg, assert_err!(e.approve(prober, missing, ""), NotFound));
    assert_eq!(
        assert_err!(e.deny(prober, id, "no"), NotFound),
        assert_err!(e.deny(prober, missing, "no"), NotFound)
    );
    assert_eq!(e.request(id).state, RequestState::Pending);
    let caller = e.who(prober);
    let refusals: Vec<AuditRecord> =
        e.m.audit(&caller, 0, "", "")
            .unwrap()
            .into_iter()
            .filter(|r| r.actor == prober && r.outcome == "refused")
            .collect();
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    let shape = |r: &AuditRecord, n: i64| {
        (
            r.action,
            r.user.clone(),
            r.role.clone(),
            r.detail.replace(&n.to_string(), "N"),
        )
    };
    assert_eq!(shape(&refusals[0], id), shape(&refusals[1], missing));
    assert_eq!(shape(&refusals[2], id), shape(&refusals[3], missing));
    assert_eq!(
        (refusals[0].user.as_str(), refusals[0].role.as_str()),
        ("", "")
    );
    assert!(refusals[0].detail.starts_with(&format!("request {id}:")));
    msg
}

#[test]
fn given_non_approver_then_the_answer_of_a_request_that_does_not_exist() {
    let (mut e, id) = with_db_request();
    e.enrol("dave");
    // dave approves no role.
    let msg = assert_probing_tells_nothing(&mut e, "dave", id);
    assert!(!msg.contains(&id.to_string()), "{msg}");
    assert!(!msg.contains("alice") && !msg.contains("db"), "{msg}");
    // bob approves db but not a request that does not exist: the same answer again.
    assert_eq!(assert_err!(e.approve("bob", id + 100, ""), NotFound), msg);
}

#[test]
fn given_an_approver_of_another_role_then_the_answer_of_a_request_that_does_not_exist() {
    let (mut e, id) = with_db_request();
    // gina approves role web, not db.
    let text = replaced(
        CONFIG,
        "[roles.wheel]",
        "[roles.web]\ngroup = \"deploy\"\neligible = [\"dave\"]\nrequire_approval = true\n\
         approvers = [\"gina\"]\napprovals_required = 1\n\n[roles.wheel]",
    );
    e.reload(&text);
    e.enrol("gina");
    assert_probing_tells_nothing(&mut e, "gina", id);
    assert!(e.list_requests("gina").is_empty());
}

#[test]
fn given_approvers_dropped_by_reload_then_their_approvals_no_longer_count() {
    let (mut e, id) = with_db_request();
    for user in ["gina", "hank"] {
        e.enrol(user);
    }
    e.accounts.add_group("dbas", &["gina", "hank"]);
    e.approve("bob", id, "").unwrap();
    // bob is no longer an approver; gina and hank are, through %dbas.
    let text = replaced(
        CONFIG,
        "approvers = [\"bob\", \"carol\", \"alice\"]",
        "approvers = [\"carol\", \"alice\", \"%dbas\"]",
    );
    e.reload(&text);
    let mine = &e.requests_of("alice")[0];
    assert!(mine.approved_by.is_empty(), "{mine:?}");
    assert_eq!(mine.approvals_required, 2);
    assert_eq!(e.request(id).state, RequestState::Pending);

    // gina approves, then leaves %dbas: her approval goes with her.
    let info = e.approve("gina", id, "").unwrap();
    assert_eq!(
        (info.state.as_str(), info.approved_by.len()),
        ("pending", 1)
    );
    e.accounts.add_group("dbas", &["hank"]);
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(
        info.state, "pending",
        "bob's and gina's approvals do not count"
    );
    assert_eq!(info.approved_by, ["carol"]);
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
    let carol = e.audited("approve").pop().unwrap();
    assert!(
        carol.detail.contains(
            "approval 1 of 2 (2 earlier approval(s) by approvers who no longer qualify not counted)"
        ),
        "{carol:?}"
    );

    // bob cannot decide it any more, nor come back in through a deny.
    assert_err!(e.deny("bob", id, "changed my mind"), NotFound);
    let info = e.approve("hank", id, "").unwrap();
    assert_eq!(info.state, "approved");
    assert_eq!(info.approved_by, ["carol", "hank"]);
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
}

#[test]
fn given_an_approvers_group_that_cannot_be_looked_up_then_its_members_do_not_qualify() {
    let (mut e, id) = with_db_request();
    e.enrol("gina");
    e.accounts.add_group("dbas", &["gina"]);
    let text = replaced(
        CONFIG,
        "approvers = [\"bob\", \"carol\", \"alice\"]",
        "approvers = [\"bob\", \"carol\", \"alice\", \"%dbas\"]",
    );
    e.reload(&text);
    e.approve("gina", id, "").unwrap();
    e.accounts.unreachable("dbas");
    // While %dbas cannot be looked up, gina's approval does not count (fail closed).
    assert!(e.requests_of("alice")[0].approved_by.is_empty());
    let info = e.approve("bob", id, "").unwrap();
    assert_eq!(
        (info.state.as_str(), info.approved_by.clone()),
        ("pending", vec!["bob".to_string()])
    );
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
}

#[test]
fn given_approvals_required_changed_by_reload_then_the_current_number_applies() {
    let (mut e, id) = with_db_request();
    e.enrol("gina");
    let text = replaced(
        CONFIG,
        "approvers = [\"bob\", \"carol\", \"alice\"]\napprovals_required = 2",
        "approvers = [\"bob\", \"carol\", \"alice\", \"gina\"]\napprovals_required = 3",
    );
    e.reload(&text);
    assert_eq!(e.requests_of("alice")[0].approvals_required, 3);
    e.approve("bob", id, "").unwrap();
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(
        (info.state.as_str(), info.approvals_required),
        ("pending", 3),
        "two of the three now required"
    );
    assert!(e.grants("alice").is_empty());
    assert_eq!(e.approve("gina", id, "").unwrap().state, "approved");
    assert_eq!(e.grants("alice").len(), 1);
}

#[test]
fn given_approvals_required_lowered_by_reload_then_the_reload_completes_nothing() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "one of two").unwrap();
    let text = replaced(CONFIG, "approvals_required = 2", "approvals_required = 1");
    e.reload(&text);
    // bob's approval would now be enough, but he gave it as one of two: the request waits
    // for the next approver's own decision.
    assert_eq!(e.request(id).state, RequestState::Pending);
    assert!(e.grants("alice").is_empty());
    let mine = &e.requests_of("alice")[0];
    assert_eq!((mine.approved_by.len(), mine.approvals_required), (1, 1));
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(info.state, "approved");
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
}

#[test]
fn given_an_approver_who_approved_then_denying_is_refused_and_the_approval_stands() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    let msg = assert_err!(e.deny("bob", id, "on second thoughts"), Conflict);
    assert!(msg.contains("already approved request"), "{msg}");
    assert!(msg.contains("cannot deny"), "{msg}");
    assert_eq!(e.request(id).state, RequestState::Pending);
    assert_eq!(e.requests_of("alice")[0].approved_by, ["bob"]);
    let refused = e.audited("deny").pop().unwrap();
    assert_eq!(
        (
            refused.actor.as_str(),
            refused.outcome.as_str(),
            refused.user.as_str()
        ),
        ("bob", "refused", "alice")
    );
    assert_eq!(e.approve("carol", id, "").unwrap().state, "approved");
}

#[test]
fn given_cancel_then_only_the_requester_may() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    let bob = e.who("bob");
    assert_err!(e.m.cancel(&bob, id), NotFound);
    assert_eq!(e.request(id).state, RequestState::Pending);
    let alice = e.who("alice");
    let info = e.m.cancel(&alice, id).unwrap();
    assert_eq!(info.state, "cancelled");
    assert_eq!(e.request(id).state, RequestState::Cancelled);
    assert_err!(e.m.cancel(&alice, id), Conflict);
    assert_err!(e.approve("bob", id, ""), Conflict);
    assert!(e.list_requests("bob").is_empty());
    assert_eq!(e.event_kinds(), ["request-cancelled"]);
    let outcomes: Vec<(String, String)> = e
        .audited("cancel")
        .into_iter()
        .map(|r| (r.actor, r.outcome.into()))
        .collect();
    let pair = |a: &str, o: &str| (a.to_string(), o.to_string());
    assert_eq!(
        outcomes,
        [
            pair("bob", "refused"),
            pair("alice", "success"),
            pair("alice", "refused")
        ]
    );
}

#[test]
fn given_undecided_request_then_it_expires_after_its_ttl() {
    let (mut e, id) = with_db_request();
    e.m.take_outbox();
    let expires = e.request(id).expires_at;
    e.set(expires - 1);
    e.m.reconcile().unwrap();
    assert_eq!(e.request(id).state, RequestState::Pending);
    e.set(expires);
    assert!(e.list_requests("bob").is_empty(), "not offered once due");
    e.m.reconcile().unwrap();
    assert_eq!(e.request(id).state, RequestState::Expired);
    assert!(e.requests_of("alice").is_empty());
    let expired = e.audited("request-expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (
            expired[0].actor.as_str(),
            expired[0].user.as_str(),
            expired[0].role.as_str()
        ),
        ("pimd", "alice", "db")
    );
    assert_eq!(e.event_kinds(), ["request-expired"]);
    let msg = assert_err!(e.approve("bob", id, ""), Conflict);
    assert!(msg.contains("expired"), "{msg}");
    assert!(e.accounts.members("dbadmin").is_empty());
}

#[test]
fn given_approval_after_the_ttl_before_reconcile_then_conflict_and_expired() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    let expires = e.request(id).expires_at;
    e.set(expires);
    let msg = assert_err!(e.approve("carol", id, ""), Conflict);
    assert!(msg.contains("expired"), "{msg}");
    assert_eq!(e.request(id).state, RequestState::Expired);
    assert!(e.accounts.members("dbadmin").is_empty());
    assert_eq!(e.audited("request-expire").len(), 1);
    e.m.reconcile().unwrap();
    assert_eq!(e.audited("request-expire").len(), 1, "expired once");
}

#[test]
fn given_requester_no_longer_eligible_at_final_approval_then_the_request_is_void() {
    let mut e = env();
    for user in ["bob", "carol", "gina"] {
        e.enrol(user);
    }
    let frank = e.who("frank");
    e.m.admin_assign(&frank, "gina", "db", 0, 0).unwrap();
    let id = e.file_db_request("gina");
    e.approve("bob", id, "").unwrap();
    e.m.admin_unassign(&frank, "gina", "db").unwrap();
    e.m.take_outbox();

    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(info.state, "denied");
    assert_eq!(e.request(id).state, RequestState::Denied);
    assert!(e.grants("gina").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(!e.managed("gina", "dbadmin"));
    let void = e.audited("request-void");
    assert_eq!(void.len(), 1);
    assert_eq!(
        (
            void[0].actor.as_str(),
            void[0].user.as_str(),
            void[0].outcome.as_str()
        ),
        ("pimd", "gina", "refused")
    );
    assert!(
        void[0].detail.contains("no longer eligible"),
        "{:?}",
        void[0]
    );
    let events = e.m.take_outbox().events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["request-approved", "request-denied"]);
    assert!(events[1].detail.contains("no longer eligible"));
}

#[test]
fn given_requester_added_outside_pim_before_final_approval_then_the_request_is_void() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    e.accounts.add_group("dbadmin", &["alice"]);
    let info = e.approve("carol", id, "").unwrap();
    assert_eq!(info.state, "denied");
    assert!(e.grants("alice").is_empty());
    let void = e.audited("request-void");
    assert_eq!(void.len(), 1);
    assert!(void[0].detail.contains("outside PIM"), "{:?}", void[0]);
    // Her membership is not PIM's to take.
    e.advance(10 * HOUR);
    e.m.reconcile().unwrap();
    assert_eq!(e.accounts.members("dbadmin"), ["alice"]);
    assert!(e.accounts.calls().is_empty());
}

#[test]
fn given_gpasswd_failure_at_final_approval_then_internal_and_nothing_granted() {
    let (mut e, id) = with_db_request();
    e.approve("bob", id, "").unwrap();
    e.accounts.fail_next_add();
    let msg = assert_err!(e.approve("carol", id, ""), Internal);
    assert!(msg.contains("could not add alice"), "{msg}");
    assert!(e.grants("alice").is_empty());
    assert!(e.accounts.members("dbadmin").is_empty());
    assert!(!e.managed("alice", "dbadmin"));
    assert_eq!(e.request(id).state, RequestState::Approved);
    let last = e.audit_log().pop().unwrap();
    assert_eq!(
        (
            last.actor.as_str(),
            last.action.as_str(),
            last.outcome.as_str()
        ),
        ("carol", "approve", "error")
    );
    assert_eq!(e.audited("grant-failed").len(), 1);
    // A new request can be filed.
    e.file_db_request("alice");
}

#[test]
fn given_events_then_may_see_follows_requester_approvers_and_auditors() {
    let mut e = env();
    e.enrol("dave");
    e.m.take_outbox();
    e.file_db_request("dave");
    let events = e.m.take_outbox().events;
    assert_eq!(events.len(), 1);
    let filed = &events[0];
    assert_eq!(
        (filed.kind.as_str(), filed.user.as_str()),
        ("request-filed", "dave")
    );
    for who in ["dave", "bob", "carol", "alice", "audra", "frank", "root"] {
        assert!(e.m.may_see(&e.who(who), filed), "{who} should see it");
    }
    for who in ["erin", "gina", "hank", "paul"] {
        assert!(!e.m.may_see(&e.who(who), filed), "{who} should not see it");
    }
    // A grant of a role without approvers: only its user and the auditors.
    e.activate("erin", "docker", 0, "", "", "").unwrap();
    let started = e.m.take_outbox().events.pop().unwrap();
    assert_eq!(started.kind, "grant-started");
    assert!(e.m.may_see(&e.who("erin"), &started));
    assert!(e.m.may_see(&e.who("audra"), &started));
    assert!(!e.m.may_see(&e.who("bob"), &started));
    assert!(!e.m.may_see(&e.who("dave"), &started));
}

#[test]
fn given_list_requests_then_only_what_the_caller_may_decide() {
    let (mut e, alices) = with_db_request();
    e.enrol("dave");
    let daves = e.file_db_request("dave");
    assert_eq!(
        e.list_requests("alice"),
        [daves],
        "approver, but not of her own"
    );
    assert_eq!(e.list_requests("bob"), [alices, daves]);
    e.approve("bob", daves, "").unwrap();
    assert_eq!(e.list_requests("bob"), [alices]);
    assert_eq!(e.list_requests("carol"), [alices, daves]);
    assert!(e.list_requests("dave").is_empty());
    // Alice's approval completes dave's request.
    let info = e.approve("alice", daves, "").unwrap();
    assert_eq!(info.state, "approved");
    assert_eq!(e.accounts.members("dbadmin"), ["dave"]);
    assert_eq!(e.list_requests("carol"), [alices]);
}

#[test]
fn given_unknown_uid_then_no_caller() {
    let e = env();
    assert_err!(e.m.caller(4242), PermissionDenied);
}

#[test]
fn given_a_reloaded_configuration_then_roles_change_but_startup_settings_cannot() {
    let mut e = env();
    let alice = e.who("alice");
    let accounts = e.accounts.clone();
    let parse = |text: &str| {
        let (config, problems) = config::parse(text, "pim.toml", &HostDirectory(accounts.clone()));
        assert!(
            problems
                .iter()
                .all(|p| p.severity == config::Severity::Warning),
            "{problems:?}"
        );
        config.unwrap()
    };
    let without_docker = replaced(CONFIG, "[roles.docker]", "[roles.docker-gone]");
    e.m.replace_config(parse(&without_docker)).unwrap();
    let names: Vec<String> =
        e.m.list_roles(&alice)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
    assert!(!names.contains(&"docker".to_string()), "{names:?}");
    assert!(e.audit_log().iter().any(|r| r.action == "config-reload"));

    let moved = replaced(CONFIG, "/nonexistent/pim.db", "/srv/pim/pim.db");
    assert_err!(e.m.replace_config(parse(&moved)), Conflict);
}

// ----- refusal records under a flood -----

#[test]
fn given_a_user_looping_on_a_refused_call_then_every_call_is_refused_and_the_excess_summarised() {
    let mut e = env();
    let per_window = crate::refusals::RECORDS_PER_WINDOW as usize;
    for _ in 0..50 {
        assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
        e.advance(1);
    }
    let refused = e.audited("activate");
    assert_eq!(refused.len(), per_window);
    assert!(refused.iter().all(|r| r.actor == "hank"));
    assert!(e.audited("refusals-unrecorded").is_empty());
    // Someone else's refusals are not held back by hank's.
    assert_err!(e.activate("dave", "admin", 0, REASON, "", ""), NotEligible);
    assert_eq!(e.audited("activate").len(), per_window + 1);

    e.advance(crate::refusals::WINDOW_SECS);
    e.m.reconcile().unwrap();
    let summary = e.audited("refusals-unrecorded");
    assert_eq!(summary.len(), 1, "{summary:#?}");
    let s = &summary[0];
    assert_eq!(
        (s.actor.as_str(), s.user.as_str(), s.outcome.as_str()),
        ("hank", "hank", "refused")
    );
    let unrecorded = 50 - per_window;
    assert!(
        s.detail
            .starts_with(&format!("{unrecorded} more refusal(s) between ")),
        "{}",
        s.detail
    );
    assert!(
        s.detail.ends_with(&format!(": activate {unrecorded}")),
        "{}",
        s.detail
    );
    // Hank sees the summary as his own record; the next refusal is recorded again.
    let hank = e.who("hank");
    let own = e.m.audit(&hank, 0, "", "").unwrap();
    assert!(own.iter().any(|r| r.action == "refusals-unrecorded"));
    assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    assert_eq!(e.audited("activate").len(), per_window + 2);
}

#[test]
fn given_a_refusal_after_the_window_then_its_summary_is_written_with_it() {
    let mut e = env();
    let per_window = crate::refusals::RECORDS_PER_WINDOW as usize;
    for _ in 0..per_window + 3 {
        assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    }
    e.advance(crate::refusals::WINDOW_SECS);
    // No sweep in between: the next refusal brings the count along.
    assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    let log = e.audit_log();
    let tail: Vec<&str> = log
        .iter()
        .rev()
        .take(2)
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(tail, ["activate", "refusals-unrecorded"]);
    assert!(log[log.len() - 2].detail.starts_with("3 more refusal(s)"));
    e.m.reconcile().unwrap();
    assert_eq!(e.audited("refusals-unrecorded").len(), 1);
}

#[test]
fn given_sudo_refused_in_a_loop_then_access_check_records_are_summarised_per_user() {
    let mut e = env();
    let per_window = crate::refusals::RECORDS_PER_WINDOW as usize;
    let root = e.who("root");
    for _ in 0..per_window + 10 {
        let d =
            e.m.check_access(&root, "alice", &groups(&["sudo"]))
                .unwrap();
        assert!(!d.allowed);
    }
    let bob = e.m.check_access(&root, "bob", &groups(&["sudo"])).unwrap();
    assert!(!bob.allowed);
    let checks = e.audited("access-check");
    assert_eq!(
        checks.iter().filter(|r| r.user == "alice").count(),
        per_window
    );
    assert_eq!(checks.iter().filter(|r| r.user == "bob").count(), 1);

    e.advance(crate::refusals::WINDOW_SECS);
    e.m.record_unrecorded_refusals(false).unwrap();
    let summary = e.audited("refusals-unrecorded");
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert_eq!(
        (summary[0].actor.as_str(), summary[0].user.as_str()),
        ("pam", "alice")
    );
    assert!(summary[0].detail.starts_with("10 more refusal(s)"));
    assert!(summary[0].detail.ends_with(": access-check 10"));
}

#[test]
fn given_refusals_being_counted_then_a_wrong_code_is_still_recorded_with_its_failure() {
    let mut e = env();
    e.enrol("alice");
    let per_window = crate::refusals::RECORDS_PER_WINDOW as usize;
    for _ in 0..per_window {
        assert_err!(
            e.activate("alice", "nosuch", 0, REASON, "", ""),
            NotEligible
        );
    }
    let wrong = e.wrong_code("alice");
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &wrong),
        InvalidCode
    );
    // The failure counts towards lockout: a state change, recorded with it.
    let failures = e.audited("mfa-failure");
    assert_eq!(failures.len(), 1);
    assert_eq!(e.mfa_status("alice").recent_failures, 1);
    // The refusal of the activation itself was only counted.
    assert_eq!(e.audited("activate").len(), per_window);
}

#[test]
fn given_pimd_stopping_then_open_windows_are_summarised_at_once() {
    let mut e = env();
    let per_window = crate::refusals::RECORDS_PER_WINDOW as usize;
    for _ in 0..per_window + 4 {
        assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    }
    e.m.record_unrecorded_refusals(false).unwrap();
    assert!(e.audited("refusals-unrecorded").is_empty());
    e.m.record_unrecorded_refusals(true).unwrap();
    let summary = e.audited("refusals-unrecorded");
    assert_eq!(summary.len(), 1);
    assert!(summary[0].detail.starts_with("4 more refusal(s)"));
    let syslog: Vec<String> =
        e.m.take_outbox()
            .audit
            .into_iter()
            .map(|a| a.action.to_string())
            .collect();
    assert!(syslog.contains(&"refusals-unrecorded".to_string()));
    // Nothing counted after this could be written: from now on every refusal is recorded.
    for _ in 0..5 {
        assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    }
    assert_eq!(e.audited("activate").len(), per_window + 5);
}

#[test]
fn given_a_flood_then_refusals_about_another_person_are_summarised_where_that_person_sees_them() {
    let mut e = env();
    e.enrol("dave");
    let id = e.file_db_request("dave");
    for _ in 0..crate::refusals::RECORDS_PER_WINDOW {
        assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    }
    // Past his allowance, hank goes after dave's request and grant: only counted now...
    let hank = e.who("hank");
    for _ in 0..5 {
        assert!(e
            .m
            .approve(&hank, id, "looks fine to me", "000000")
            .is_err());
        assert_err!(
            e.m.admin_revoke(&hank, "dave", "db", "not yours"),
            PermissionDenied
        );
    }
    assert_err!(e.activate("hank", "admin", 0, REASON, "", ""), NotEligible);
    let dave = e.who("dave");
    let summaries_seen_by = |e: &mut Env, who: &Caller| -> Vec<AuditRecord> {
        e.m.audit(who, 0, "", "")
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "refusals-unrecorded")
            .collect()
    };
    assert!(summaries_seen_by(&mut e, &dave).is_empty());

    // ...but summarised about dave, so dave sees what was tried against him. (Not the
    // approvals: hank may not know whose request that is, and he reads his own records.)
    e.advance(crate::refusals::WINDOW_SECS);
    e.m.reconcile().unwrap();
    let seen = summaries_seen_by(&mut e, &dave);
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let s = &seen[0];
    assert_eq!((s.actor.as_str(), s.user.as_str()), ("hank", "dave"));
    assert!(
        s.detail
            .starts_with("5 more refusal(s) about dave between "),
        "{}",
        s.detail
    );
    assert!(s.detail.ends_with(": admin-revoke 5"), "{}", s.detail);
    // Hank's refusals about nobody else are summarised about him.
    let own = summaries_seen_by(&mut e, &hank);
    assert!(
        own.iter()
            .any(|r| r.user == "hank" && r.detail.ends_with(": activate 1, approve 5")),
        "{own:#?}"
    );
}

// ----- set-group-ID sweeps -----

mod setgid_sweeps {
    use super::*;
    use crate::setgid::fake::FakeSetgidFiles;
    use crate::setgid::{sweep_round, Target};

    const SUDO_GID: u32 = 27;
    const COPY: &str = "/home/alice/mycat";

    /// alice's copy of cat, set-group-ID for sudo, and root's set-group-ID file of the group.
    fn files() -> FakeSetgidFiles {
        let files = FakeSetgidFiles::default();
        files.state().users.insert("alice".into(), 1000);
        files.state().groups.insert("sudo".into(), SUDO_GID);
        files.add_file(COPY, 1000, SUDO_GID, 0o2755);
        files.add_file("/usr/bin/rootcat", 0, SUDO_GID, 0o2755);
        files
    }

    /// The fixture with sudo's gid as the files have it.
    fn setup() -> (Env, FakeSetgidFiles) {
        let e = env();
        e.accounts.set_gid("sudo", SUDO_GID);
        (e, files())
    }

    /// One round as the daemon runs it; returns whether it asks for another at once.
    fn round(e: &mut Env, files: &FakeSetgidFiles) -> bool {
        let jobs = e.m.setgid_sweeps_due().unwrap();
        let results = sweep_round(files, jobs);
        e.m.record_setgid_sweeps(results).unwrap()
    }

    fn details(e: &mut Env, action: &str) -> Vec<String> {
        e.audited(action).into_iter().map(|r| r.detail).collect()
    }

    #[test]
    fn given_a_grant_ended_then_the_copy_is_cleared_audited_and_the_sweep_done_after_a_clean_walk()
    {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty(), "live grant");
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();

        assert!(
            round(&mut e, &files),
            "a walk that cleared something is checked again"
        );
        assert_eq!(files.mode(COPY), 0o755);
        assert_eq!(files.mode("/usr/bin/rootcat"), 0o2755);
        assert_eq!(
            details(&mut e, "setgid-clear"),
            [format!(
                "group sudo: \"{COPY}\" (device 254:0, inode 7): set-group-ID cleared, mode \
                 2755 -> 0755"
            )]
        );
        assert!(!round(&mut e, &files));
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
        assert_eq!(
            details(&mut e, "setgid-sweep"),
            [
                "1 file(s) cleared; pimd looks again to make sure none is left",
                "no file of alice is set-group-ID for group sudo any more",
            ]
        );
        assert_eq!(files.state().walks, 2);
    }

    #[test]
    fn given_two_roles_sharing_a_group_then_no_sweep_while_the_other_grant_lives() {
        let (mut e, files) = setup();
        e.enrol("alice");
        e.activate_admin("alice", 600).unwrap();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
        assert_eq!(files.mode(COPY), 0o2755);

        e.m.deactivate(&e.who("alice"), "admin").unwrap();
        let jobs = e.m.setgid_sweeps_due().unwrap();
        assert_eq!(jobs.len(), 1, "one sweep for the group: {jobs:?}");
        assert_eq!(
            (jobs[0].user.as_str(), jobs[0].group.as_str()),
            ("alice", "sudo")
        );
    }

    #[test]
    fn given_a_user_who_holds_the_group_again_outside_pim_then_no_sweep_until_they_do_not() {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        e.accounts.add_group("sudo", &["alice"]);
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
        assert_eq!(files.mode(COPY), 0o2755);

        e.accounts.add_group("sudo", &[]);
        round(&mut e, &files);
        assert_eq!(files.mode(COPY), 0o755);
    }

    #[test]
    fn given_an_expiry_then_the_sweep_is_due_like_after_deactivate() {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.advance(601);
        e.m.reconcile().unwrap();
        round(&mut e, &files);
        assert_eq!(files.mode(COPY), 0o755);
    }

    #[test]
    fn given_a_process_still_carrying_the_group_then_the_sweep_waits_until_it_is_gone() {
        let (mut e, files) = setup();
        let alice_sudo = Target {
            uid: 1000,
            gid: SUDO_GID,
        };
        files.state().carried.insert(alice_sudo);
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();

        assert!(
            !round(&mut e, &files),
            "the old login could make more at once"
        );
        assert_eq!(files.mode(COPY), 0o755, "the first walk does not wait");
        // The old login makes another copy: not looked for while it lives.
        files.add_file("/tmp/late", 1000, SUDO_GID, 0o2755);
        e.advance(60);
        round(&mut e, &files);
        assert_eq!(files.state().walks, 1);
        assert_eq!(files.mode("/tmp/late"), 0o2755);

        files.state().carried.clear();
        e.advance(60);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/late"), 0o755);
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
    }

    #[test]
    fn given_a_file_that_cannot_be_cleared_then_the_failure_is_audited_and_retried_later() {
        let (mut e, files) = setup();
        files.state().stuck.insert(COPY.into());
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();

        assert!(!round(&mut e, &files));
        let failures: Vec<AuditRecord> = e
            .audited("setgid-clear")
            .into_iter()
            .filter(|r| r.outcome == "error")
            .collect();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(
            failures[0].detail,
            format!("group sudo: \"{COPY}\": Operation not permitted; pimd tries again")
        );
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty(), "backing off");

        files.state().stuck.clear();
        e.advance(60);
        while round(&mut e, &files) {}
        assert_eq!(files.mode(COPY), 0o755);
        assert!(e.m.setgid_sweeps_due().unwrap().is_empty());
    }

    /// Ends alice's grant of sudo and runs rounds until none asks for another.
    fn grant_and_end(e: &mut Env, files: &FakeSetgidFiles) {
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        while round(e, files) {}
    }

    fn sweep_done(e: &mut Env) -> bool {
        details(e, "setgid-sweep")
            .last()
            .is_some_and(|d| d.starts_with("no file of alice"))
    }

    #[test]
    fn given_a_copy_set_user_and_set_group_id_then_both_bits_are_cleared_and_audited() {
        let (mut e, files) = setup();
        files.add_file("/home/alice/both", 1000, SUDO_GID, 0o6755);
        grant_and_end(&mut e, &files);
        assert_eq!(files.mode("/home/alice/both"), 0o755);
        let both = details(&mut e, "setgid-clear")
            .into_iter()
            .find(|d| d.contains("both"))
            .unwrap();
        assert!(
            both.contains(
                "\"/home/alice/both\" (device 254:0, inode 7): set-user-ID and set-group-ID \
                 cleared, mode 6755 -> 0755"
            ),
            "{both}"
        );
    }

    /// 1000 decoys do not hide the interesting file: every file is listed, in bounded records.
    #[test]
    fn given_more_files_than_one_record_holds_then_every_one_is_listed_in_several_records() {
        let (mut e, files) = setup();
        for i in 0..1100 {
            files.add_file(&format!("/tmp/decoy{i:04}"), 1000, SUDO_GID, 0o2755);
        }
        files.add_file("/srv/zz-interesting", 1000, SUDO_GID, 0o2755);
        grant_and_end(&mut e, &files);
        let records = details(&mut e, "setgid-clear");
        assert_eq!(records.len(), 1102_usize.div_ceil(SWEEP_RECORD_ITEMS));
        assert!(records.iter().all(|r| r.len() < 64 * 1024));
        let listed: usize = records
            .iter()
            .map(|r| r.matches("set-group-ID cleared").count())
            .sum();
        assert_eq!(listed, 1102);
        assert!(records
            .iter()
            .any(|r| r.contains("\"/srv/zz-interesting\"")));
    }

    /// alice is offboarded and the group recreated with another gid: the sweep still looks for
    /// the numbers the grant had, never the new group's.
    #[test]
    fn given_the_user_gone_and_the_group_recreated_then_the_recorded_ids_are_swept() {
        let (mut e, files) = setup();
        e.activate("alice", "rescue", 600, "", "", "").unwrap();
        e.m.deactivate(&e.who("alice"), "rescue").unwrap();
        files.state().users.clear();
        files.state().groups.insert("sudo".into(), 4242);
        files.add_file("/home/carol/new-sudo", 1000, 4242, 0o2755);
        e.accounts.remove_user("alice");
        e.accounts.set_gid("sudo", 4242);
        while round(&mut e, &files) {}
        assert_eq!(files.mode(COPY), 0o755);
        assert_eq!(files.mode("/home/carol/new-sudo"), 0o2755);
        assert!(sweep_done(&mut e));
        // And a directory outage changes nothing either.
        assert_eq!(
            files.state().walks_for[0],
            [Target {
                uid: 1000,
                gid: SUDO_GID
            }]
        );
    }

    #[test]
    fn given_an_entry_vanishing_during_the_walk_then_the_sweep_is_not_done() {
        let (mut e, files) = setup();
        files.state().vanishing.push("/tmp/moved".into());
        grant_and_end(&mut e, &files);
        assert!(!sweep_done(&mut e));
        let failures = details(&mut e, "setgid-clear");
        assert!(
            failures
                .iter()
                .any(|d| d.contains("\"/tmp/moved\": moved or removed during the walk")),
            "{failures:?}"
        );
        files.state().vanishing.clear();
        e.advance(60);
        while round(&mut e, &files) {}
        assert!(sweep_done(&mut e));
    }

    #[test]
    fn given_mounts_never_searched_then_each_sweep_audits_them() {
        let (mut e, files) = setup();
        files.state().not_searched.push("\"/net\" (nfs4)".into());
        grant_and_end(&mut e, &files);
        let sweep = details(&mut e, "setgid-sweep");
        assert!(
            sweep
                .iter()
                .any(|d| d.contains("not searched") && d.contains("\"/net\" (nfs4)")),
            "{sweep:?}"
        );
        assert!(
            sweep_done(&mut e),
            "what cannot be searched does not hold the sweep"
        );
    }

    /// A copy that comes back after a sweep is done (linked back from a descriptor kept open,
    /// or moved ahead of the walk) is found by the looks again: daily for 30 days after the
    /// end, and at each start of pimd.
    #[test]
    fn given_a_done_sweep_then_it_is_walked_again_daily_and_at_each_start_for_30_days() {
        let dir = std::env::temp_dir().join(format!("pim-recheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = dir.join("pim.db");
        let mut e = env_with(Store::open(&db).unwrap(), FakeClock::at(T0));
        e.accounts.set_gid("sudo", SUDO_GID);
        let files = files();
        grant_and_end(&mut e, &files);
        assert!(sweep_done(&mut e));
        assert!(
            e.m.setgid_sweeps_due().unwrap().is_empty(),
            "not again within a day"
        );

        files.add_file("/tmp/linked-back", 1000, SUDO_GID, 0o2755);
        e.advance(DAY_SECS);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/linked-back"), 0o755);
        assert!(sweep_done(&mut e), "found, cleared, and done again");

        // A restart looks again at once.
        files.add_file("/tmp/after-restart", 1000, SUDO_GID, 0o2755);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/after-restart"), 0o2755);
        let mut e = env_with(Store::open(&db).unwrap(), e.clock.clone());
        e.accounts.set_gid("sudo", SUDO_GID);
        while round(&mut e, &files) {}
        assert_eq!(files.mode("/tmp/after-restart"), 0o755);

        e.advance(SWEEP_RECHECK_DAYS * DAY_SECS);
        while round(&mut e, &files) {}
        files.add_file("/tmp/too-late", 1000, SUDO_GID, 0o2755);
        let walks = files.state().walks;
        e.advance(DAY_SECS);
        assert!(
            e.m.setgid_sweeps_due().unwrap().is_empty(),
            "30 days are over"
        );
        assert_eq!(files.state().walks, walks);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
// ----- limits on calls and events -----

#[test]
fn given_more_writing_calls_than_the_allowance_then_busy_audited_and_root_never_limited() {
    let mut e = env();
    let alice = e.who("alice");
    for _ in 0..30 {
        e.m.admit_call(&alice, AuditAction::MfaEnroll, CallKind::Mfa)
            .unwrap();
    }
    let msg = assert_err!(
        e.m.admit_call(&alice, AuditAction::MfaEnroll, CallKind::Mfa),
        Busy
    );
    assert!(
        msg.contains("30 a minute are allowed; try again in 60 s"),
        "{msg}"
    );
    let refused = e.audited("mfa-enroll");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(
        (refused[0].actor.as_str(), refused[0].outcome.as_str()),
        ("alice", "refused")
    );
    assert!(
        refused[0].detail.contains("too many mfa"),
        "{:?}",
        refused[0]
    );
    // Another kind has its own allowance, and the next minute a new one.
    e.m.admit_call(&alice, AuditAction::Activate, CallKind::Grants)
        .unwrap();
    let root = e.who("root");
    for _ in 0..100 {
        e.m.admit_call(&root, AuditAction::AdminRevoke, CallKind::Admin)
            .unwrap();
    }
    e.advance(crate::throttle::WINDOW_SECS);
    e.m.admit_call(&alice, AuditAction::MfaEnroll, CallKind::Mfa)
        .unwrap();
}

#[test]
fn given_calls_turned_away_then_the_summary_counts_them() {
    let mut e = env();
    let alice = e.who("alice");
    e.m.count_turned_away(&alice, 7);
    e.advance(crate::refusals::WINDOW_SECS);
    e.m.record_unrecorded_refusals(false).unwrap();
    let summary = e.audited("refusals-unrecorded");
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert!(
        summary[0].detail.starts_with("7 more refusal(s) between ")
            && summary[0].detail.ends_with(": calls-in-progress 7"),
        "{}",
        summary[0].detail
    );
}

#[test]
fn given_a_user_looping_on_activate_and_deactivate_then_watchers_get_the_allowance_and_the_rest_is_summarised(
) {
    let mut e = env();
    let alice = e.who("alice");
    e.m.take_outbox();
    for _ in 0..25 {
        e.m.activate(&alice, "rescue", 0, "", "", "").unwrap();
        e.m.deactivate(&alice, "rescue").unwrap();
    }
    let events = e.m.take_outbox().events;
    let kinds = |kind: &str| events.iter().filter(|ev| ev.kind == kind).count();
    // Each kind has its allowance, and its first drop is announced.
    assert_eq!(kinds("grant-started"), EVENTS_PER_WINDOW as usize);
    assert_eq!(kinds("grant-ended"), EVENTS_PER_WINDOW as usize);
    let dropped: Vec<&EventInfo> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::EventsDropped)
        .collect();
    assert_eq!(dropped.len(), 2, "{dropped:#?}");
    assert_eq!(
        (dropped[0].user.as_str(), dropped[0].role.as_str()),
        ("alice", "rescue")
    );
    assert!(
        dropped[0]
            .detail
            .contains("grant-started events about role rescue by alice"),
        "{}",
        dropped[0].detail
    );
    assert!(e.audited("events-undelivered").is_empty());
    // Every change is still audited.
    assert_eq!(e.audited("activate").len(), 25);

    e.advance(crate::refusals::WINDOW_SECS);
    e.m.record_unrecorded_refusals(false).unwrap();
    let summary = e.audited("events-undelivered");
    assert_eq!(summary.len(), 2, "{summary:#?}");
    for record in &summary {
        assert_eq!(
            (
                record.actor.as_str(),
                record.user.as_str(),
                record.role.as_str()
            ),
            ("alice", "alice", "rescue")
        );
    }
    let mut details: Vec<&str> = summary.iter().map(|r| r.detail.as_str()).collect();
    details.sort_by_key(|d| d.ends_with("grant-started 5"));
    assert!(
        details[0].starts_with("5 more event(s) between ")
            && details[0].ends_with(": grant-ended 5")
            && details[1].ends_with(": grant-started 5"),
        "{details:?}"
    );
    // A new window, new events.
    e.m.activate(&alice, "rescue", 0, "", "", "").unwrap();
    assert_eq!(e.event_kinds(), ["grant-started"]);
}

/// Alice activates and deactivates `rescue` (no MFA) until its events' allowances are used.
fn flood_rescue_events(e: &mut Env) {
    let alice = e.who("alice");
    for _ in 0..EVENTS_PER_WINDOW + 5 {
        e.m.activate(&alice, "rescue", 0, "", "", "").unwrap();
        e.m.deactivate(&alice, "rescue").unwrap();
    }
    e.m.take_outbox();
}

#[test]
fn given_a_flood_of_one_roles_events_then_another_roles_activation_still_reaches_watchers() {
    let mut e = env();
    e.enrol("alice");
    flood_rescue_events(&mut e);
    e.activate_admin("alice", 0).unwrap();
    let started: Vec<EventInfo> =
        e.m.take_outbox()
            .events
            .into_iter()
            .filter(|ev| ev.kind == "grant-started")
            .collect();
    assert_eq!(started.len(), 1, "{started:#?}");
    assert_eq!(started[0].role, "admin");
}

#[test]
fn given_a_flood_of_one_roles_events_then_a_request_still_reaches_the_approvers() {
    let mut e = env();
    e.enrol("alice");
    flood_rescue_events(&mut e);
    let id = e.file_db_request("alice");
    let bob = e.who("bob");
    let events = e.m.take_outbox().events;
    assert!(
        events
            .iter()
            .any(|ev| ev.kind == "request-filed" && ev.request_id == id && e.m.may_see(&bob, ev)),
        "{events:#?}"
    );
}

#[test]
fn given_events_dropped_then_the_notice_reaches_the_watchers_who_would_have_seen_them() {
    let mut e = env();
    let alice = e.who("alice");
    e.m.take_outbox();
    for _ in 0..EVENTS_PER_WINDOW + 3 {
        e.m.activate(&alice, "rescue", 0, "", "", "").unwrap();
        e.m.deactivate(&alice, "rescue").unwrap();
    }
    let events = e.m.take_outbox().events;
    let notices: Vec<&EventInfo> = events
        .iter()
        .filter(|ev| ev.kind == EventKind::EventsDropped)
        .collect();
    // One per kind, however many were dropped.
    assert_eq!(notices.len(), 2, "{notices:#?}");
    let (audra, erin) = (e.who("audra"), e.who("erin"));
    for notice in notices {
        assert_eq!(
            (notice.user.as_str(), notice.role.as_str()),
            ("alice", "rescue")
        );
        assert!(e.m.may_see(&alice, notice), "her own");
        assert!(e.m.may_see(&audra, notice), "an auditor");
        assert!(
            !e.m.may_see(&erin, notice),
            "erin has nothing to do with rescue"
        );
    }
}

#[test]
fn given_more_audit_records_than_one_reply_holds_then_audit_returns_the_oldest_that_fit() {
    let mut e = env();
    let now = e.now();
    e.m.commit(|tx| {
        for n in 0..MAX_AUDIT_RECORDS + 5 {
            let entry = Audit::new("alice", AuditAction::Activate)
                .about("alice", "rescue")
                .entry(now + i64::from(n), Outcome::Success, format!("record {n}"));
            tx.audit(entry)?;
        }
        Ok(())
    })
    .unwrap();
    let alice = e.who("alice");
    let first = e.m.audit(&alice, 0, "", "").unwrap();
    assert_eq!(first.len(), MAX_AUDIT_RECORDS as usize);
    assert_eq!(first[0].detail, "record 0");
    // Asking again from the last one's time gives the rest.
    let last = first.last().unwrap().at;
    let next = e.m.audit(&alice, last, "", "").unwrap();
    let details: Vec<&str> = next.iter().map(|r| r.detail.as_str()).collect();
    assert_eq!(
        details,
        [
            "record 999",
            "record 1000",
            "record 1001",
            "record 1002",
            "record 1003",
            "record 1004"
        ]
    );
}

#[test]
fn given_reads_in_a_loop_then_four_times_calls_per_minute_are_served_and_the_rest_refused() {
    let mut e = env();
    let alice = e.who("alice");
    let allowance = 4 * e.m.config.daemon.calls_per_minute;
    for _ in 0..allowance {
        e.m.admit_call(&alice, AuditAction::Status, CallKind::Reads)
            .unwrap();
    }
    let msg = assert_err!(
        e.m.admit_call(&alice, AuditAction::Status, CallKind::Reads),
        Busy
    );
    assert!(msg.contains(&format!("{allowance} a minute")), "{msg}");
    // Writes keep their own allowance, and root is never limited.
    e.m.admit_call(&alice, AuditAction::Activate, CallKind::Grants)
        .unwrap();
    let root = e.who("root");
    for _ in 0..2 * allowance {
        e.m.admit_call(&root, AuditAction::AuditRead, CallKind::Reads)
            .unwrap();
    }
}
