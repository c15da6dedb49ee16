//! What the manager's tests share: the fixture configuration and accounts, an environment
//! of a manager over an in-memory store with fake accounts and a fake clock (`Env`), and
//! the helpers that drive it.

use super::*;
use crate::accounts::fake::FakeAccounts;
use crate::clock::fake::FakeClock;
use crate::mfa;
use crate::processes::fake::FakeProcesses;
use crate::store::sqlite::SqliteStore;
use pim_config::{self as config, Directory};

/// A whole TOTP step (1_800_000_000 / 30 = 60_000_000), so times read easily.
pub(super) const T0: i64 = 1_800_000_000;

pub(super) const HOUR: i64 = 3600;

pub(super) const CONFIG: &str = r#"
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

pub(super) const USERS: &[(&str, u32)] = &[
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

pub(super) const REASON: &str = "rotate the TLS keys on web1";

/// The fake accounts as the configuration checker sees them.
pub(super) struct HostDirectory(pub(super) FakeAccounts);

impl Directory for HostDirectory {
    fn user_exists(&self, name: &str) -> bool {
        Accounts::user_exists(&self.0, name)
    }
    fn group_exists(&self, name: &str) -> bool {
        Accounts::group_exists(&self.0, name)
    }
}

/// The TOTP code of `secret` for `step`, computed independently of `mfa::verify_totp`.
pub(super) fn code_at(secret: &[u8], step: u64) -> String {
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
pub(super) use assert_err;

pub(super) struct Env {
    pub(super) m: Manager,
    pub(super) accounts: FakeAccounts,
    pub(super) clock: FakeClock,
    /// The host's processes as `status` counts them (the ending's steps take a table of
    /// their own, see ends/tests.rs).
    pub(super) processes: FakeProcesses,
}

pub(super) fn env() -> Env {
    env_with(SqliteStore::open_in_memory().unwrap(), FakeClock::at(T0))
}

/// An environment on `store` at the time of `clock`: a pimd started then.
pub(super) fn env_with(store: SqliteStore, clock: FakeClock) -> Env {
    let accounts = fixture_accounts();
    let config = fixture_config(&accounts);
    let processes = FakeProcesses::default();
    let mut m = Manager::new(
        Arc::new(config),
        store,
        Box::new(accounts.clone()),
        Box::new(clock.clone()),
        Box::new(processes.clone()),
        "host".into(),
    );
    // As pimd does at start: the alerts the fixture calls for (its weak roles) are raised
    // before the test begins, and their records and events are not the test's.
    m.evaluate_alerts().unwrap();
    m.take_outbox();
    Env {
        m,
        accounts,
        clock,
        processes,
    }
}

/// The host's users and groups of the fixture.
pub(super) fn fixture_accounts() -> FakeAccounts {
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
    accounts
}

/// [`CONFIG`], checked against `accounts`.
pub(super) fn fixture_config(accounts: &FakeAccounts) -> Config {
    let (config, problems) = config::parse(CONFIG, "pim.toml", &HostDirectory(accounts.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    config.expect("the fixture configuration is valid")
}

impl Env {
    pub(super) fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(super) fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    pub(super) fn set(&self, at: i64) {
        self.clock.advance(at - self.now());
    }

    pub(super) fn who(&self, name: &str) -> Caller {
        let uid = self.accounts.0.lock().unwrap().users[name].0;
        let caller = self.m.caller(uid).unwrap();
        assert_eq!(caller.name, name);
        caller
    }

    /// Enrols `user` (enroll, first code, confirm); returns the recovery codes.
    pub(super) fn enrol(&mut self, user: &str) -> Vec<String> {
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

    pub(super) fn mfa_record(&mut self, user: &str) -> crate::model::MfaRecord {
        self.m
            .store
            .read(|tx| tx.mfa(user))
            .unwrap()
            .expect("enrolment")
    }

    /// The next unused code of `user`: the clock moves on by whole steps until the current
    /// step is later than the last one used.
    pub(super) fn code(&mut self, user: &str) -> String {
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
    pub(super) fn code_for_step(&mut self, user: &str, step: u64) -> String {
        code_at(&self.mfa_record(user).secret, step)
    }

    /// Six digits that match none of the steps `verify_totp` accepts now.
    pub(super) fn wrong_code(&mut self, user: &str) -> String {
        let secret = self.mfa_record(user).secret;
        let step = mfa::current_step(self.now());
        let valid: Vec<String> = (step - 1..=step + 1).map(|s| code_at(&secret, s)).collect();
        (0..)
            .map(|n: u32| format!("{:06}", (n * 7919) % 1_000_000))
            .find(|c| !valid.contains(c))
            .unwrap()
    }

    pub(super) fn grants(&mut self, user: &str) -> Vec<GrantInfo> {
        let caller = self.who(user);
        self.m.status(&caller).unwrap().0
    }

    pub(super) fn requests_of(&mut self, user: &str) -> Vec<RequestInfo> {
        let caller = self.who(user);
        self.m.status(&caller).unwrap().1
    }

    pub(super) fn request(&mut self, id: i64) -> Request {
        self.m.store.read(|tx| tx.request(id)).unwrap().unwrap()
    }

    pub(super) fn managed(&mut self, user: &str, group: &str) -> bool {
        self.m
            .store
            .read(|tx| tx.has_membership(user, group))
            .unwrap()
    }

    pub(super) fn last_ended(&mut self, user: &str, group: &str) -> Grant {
        self.m
            .store
            .read(|tx| tx.last_ended_grant(user, &[group.to_string()]))
            .unwrap()
            .expect("an ended grant")
    }

    pub(super) fn audit_log(&mut self) -> Vec<AuditRecord> {
        self.m
            .store
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap()
    }

    pub(super) fn audited(&mut self, action: &str) -> Vec<AuditRecord> {
        self.audit_log()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    pub(super) fn mfa_status(&mut self, user: &str) -> MfaStatusInfo {
        let caller = self.who(user);
        self.m.mfa_status(&caller).unwrap()
    }

    pub(super) fn event_kinds(&mut self) -> Vec<String> {
        self.m
            .take_outbox()
            .events
            .into_iter()
            .map(|e| e.kind.to_string())
            .collect()
    }

    pub(super) fn activate(
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
    pub(super) fn activate_admin(
        &mut self,
        user: &str,
        secs: u64,
    ) -> Result<ActivateReply, PimError> {
        let code = self.code(user);
        self.activate(user, "admin", secs, REASON, "", &code)
    }

    pub(super) fn approve(
        &mut self,
        user: &str,
        id: i64,
        comment: &str,
    ) -> Result<RequestInfo, PimError> {
        let code = self.code(user);
        let caller = self.who(user);
        self.m.approve(&caller, id, comment, &code)
    }

    pub(super) fn deny(
        &mut self,
        user: &str,
        id: i64,
        comment: &str,
    ) -> Result<RequestInfo, PimError> {
        let code = self.code(user);
        let caller = self.who(user);
        self.m.deny(&caller, id, comment, &code)
    }

    /// Alice files a request for `db` for two hours; returns its id.
    pub(super) fn file_db_request(&mut self, user: &str) -> i64 {
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
    pub(super) fn docker_role_of(&mut self, user: &str) -> Option<RoleInfo> {
        let caller = self.who(user);
        let roles = self.m.list_roles(&caller).unwrap();
        roles.into_iter().find(|r| r.name == "docker")
    }

    /// What SIGHUP does with `text`: takes it as the configuration, then reconciles at once.
    pub(super) fn reload(&mut self, text: &str) {
        assert_ne!(text, CONFIG, "a reload test must change the configuration");
        let problems = self.take_config(text);
        assert!(problems.is_empty(), "{problems:?}");
        self.m.reconcile().unwrap();
    }

    /// Takes `text` (valid, warnings allowed) as the configuration without reconciling: a
    /// reload whose reconciliation has not run yet. Returns the checker's warnings.
    pub(super) fn take_config(&mut self, text: &str) -> Vec<config::Problem> {
        let (config, problems) =
            config::parse(text, "pim.toml", &HostDirectory(self.accounts.clone()));
        let config = config.unwrap_or_else(|| panic!("{problems:?}"));
        self.m.replace_config(config).unwrap();
        problems
    }

    /// The eligibility-end records, as (actor, user, role, reason).
    pub(super) fn eligibility_ends(&mut self) -> Vec<(String, String, String, String)> {
        self.audited("eligibility-end")
            .into_iter()
            .map(|r| (r.actor, r.user, r.role, r.reason))
            .collect()
    }

    pub(super) fn list_requests(&mut self, user: &str) -> Vec<i64> {
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
pub(super) fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the configuration");
    text.replace(from, to)
}

pub(super) fn names(roles: Vec<RoleInfo>) -> Vec<String> {
    roles.into_iter().map(|r| r.name).collect()
}

pub(super) fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
