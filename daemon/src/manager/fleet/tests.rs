use super::super::test_support::*;
use super::*;
use crate::clock::fake::FakeClock;
use crate::fleet::fake::FakeAuthority;
use crate::fleet::mirror::MAX_SKEW_SECS;
use crate::fleet::sync::{self, Managed, RoundError};
use crate::store::sqlite::SqliteStore;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

/// The manager reached directly, as the sync thread reaches it through pimd's core.
struct Direct<'a> {
    manager: RefCell<&'a mut Manager>,
    config_changes: Cell<u32>,
}

impl Managed for Direct<'_> {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Manager) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        f(&mut self.manager.borrow_mut())
    }

    fn config_changed(&self) {
        self.config_changes.set(self.config_changes.get() + 1);
    }
}

const LOCAL: &str = r#"
[daemon]
database = "/nonexistent/pim.db"

[fleet]
database = "host=db.example dbname=pim user=pim_host_web7 sslmode=verify-full sslrootcert=/etc/pim/fleet-ca.pem passfile=/etc/pim/pgpass"
host = "web7"
max_staleness = "10m"
"#;

const POLICY: &str = r#"
[daemon]
admins = ["%pim-admins"]

[roles.admin]
group = "sudo"
eligible = ["alice", "%ops"]
max_duration = "2h"
hosts = ["tag:web"]

[roles.docker]
eligible = ["alice"]
require_mfa = false
require_justification = false
"#;

pub(super) struct Fleet {
    pub(super) e: Env,
    pub(super) fake: FakeAuthority,
}

/// A fleet host web7 at T0 whose authority's clock agrees with its own, running POLICY
/// (version 1), not synchronised yet.
pub(super) fn fleet_env() -> Fleet {
    fleet_env_on(env())
}

/// [`fleet_env`] on the pimd of `e`.
fn fleet_env_on(mut e: Env) -> Fleet {
    let directory = HostDirectory(e.accounts.clone());
    let (local, problems) = pim_config::parse(LOCAL, "pim.toml", &directory);
    assert!(problems.is_empty(), "{problems:?}");
    let local = local.unwrap();
    let fake = FakeAuthority::reachable("web7", T0);
    fake.fleet().policy_text = POLICY.into();
    e.m.set_fleet(super::Fleet::new(
        Arc::new(fake.clone()),
        local,
        "web7".into(),
    ));
    e.m.apply_policy(1, POLICY).unwrap();
    Fleet { e, fake }
}

fn fleet_grant(id: i64, user: &str, role: &str, group: &str, ends_at: i64) -> FleetGrant {
    FleetGrant {
        id,
        user: user.into(),
        role: role.into(),
        group: group.into(),
        started_at: T0,
        ends_at,
        reason: REASON.into(),
        ticket: String::new(),
        request_id: None,
        only_host: None,
    }
}

impl Fleet {
    /// The mirror of a snapshot if the authority answers, else the staleness rule alone.
    pub(super) fn sync(&mut self) -> Mirrored {
        self.try_sync().unwrap()
    }

    fn try_sync(&mut self) -> Result<Mirrored, PimError> {
        let fetch = self.e.m.fleet_fetch_begins();
        let fetched = self
            .fake
            .clone()
            .snapshot()
            .ok()
            .map(|snapshot| Fetched { fetch, snapshot });
        self.e.m.mirror(fetched.as_ref())
    }

    /// When the synchronisation on record began.
    fn synced_at(&mut self) -> Option<i64> {
        let recorded = self.e.m.store.read(|tx| tx.fleet_sync()).unwrap();
        recorded.map(|s| s.synced_at)
    }

    /// One whole round of the sync thread; also how many times the configuration changed.
    fn round(&mut self) -> (Result<sync::RoundReport, RoundError>, u32) {
        let direct = Direct {
            manager: RefCell::new(&mut self.e.m),
            config_changes: Cell::new(0),
        };
        let mut authority = self.fake.clone();
        let outcome = sync::round(&mut authority, &direct);
        (outcome, direct.config_changes.get())
    }

    fn sudo_allowed(&mut self, user: &str) -> AccessDecision {
        let root = self.e.who("root");
        self.e
            .m
            .check_access(&root, user, &groups(&["sudo"]))
            .unwrap()
    }

    fn in_sudo(&self, user: &str) -> bool {
        self.e.accounts.members("sudo").contains(&user.to_string())
    }

    /// Both clocks move on.
    pub(super) fn advance(&mut self, secs: i64) {
        self.e.advance(secs);
        self.fake.fleet().db_now += secs;
    }
}

#[test]
fn given_a_snapshot_with_a_grant_then_it_is_mirrored_with_its_membership_and_audit() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    let report = f.sync();
    assert_eq!((report.started, report.ended, report.stale), (1, 0, None));
    assert!(f.in_sudo("alice"));
    assert!(f.e.managed("alice", "sudo"));
    assert!(f.sudo_allowed("alice").allowed);
    let started = f.e.audited("fleet-grant");
    assert_eq!(started.len(), 1);
    assert!(
        started[0].detail.contains("fleet grant 7 of group sudo"),
        "{started:?}"
    );
    // The same snapshot again changes nothing.
    let again = f.sync();
    assert_eq!((again.started, again.ended), (0, 0));
    assert_eq!(f.e.audited("fleet-grant").len(), 1);
}

#[test]
fn given_the_fleet_drops_a_grant_then_the_mirror_ends_it_and_takes_the_membership_away() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    f.sync();
    f.fake.fleet().grants.clear();
    let report = f.sync();
    assert_eq!(report.ended, 1);
    assert!(!f.in_sudo("alice"));
    assert!(!f.sudo_allowed("alice").allowed);
    let ended = f.e.audited("fleet-end");
    assert!(
        ended[0].detail.contains("the fleet no longer holds it"),
        "{ended:?}"
    );
}

#[test]
fn given_no_synchronisation_for_longer_than_max_staleness_then_pam_refuses_memberships_go_and_a_resync_restores_them(
) {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    f.sync();
    f.fake.fleet().reachable = false;

    // Unreachable but within max_staleness: the grant still counts.
    f.advance(300);
    assert_eq!(f.sync().stale, None);
    assert!(f.sudo_allowed("alice").allowed);

    // Past max_staleness: PAM refuses at once, saying why, and the mirror ends the grant.
    f.advance(301);
    let refused = f.sudo_allowed("alice");
    assert!(!refused.allowed);
    assert!(
        refused
            .message
            .contains("more than max_staleness (10m) ago"),
        "{}",
        refused.message
    );
    let report = f.sync();
    assert!(report.stale.is_some());
    assert_eq!(report.ended, 1);
    assert!(!f.in_sudo("alice"));
    let ended = f.e.audited("fleet-end");
    assert!(ended[0]
        .detail
        .contains("it starts again when this host synchronises"));

    // The authority answers again: the still-live grant comes back.
    f.fake.fleet().reachable = true;
    let report = f.sync();
    assert_eq!((report.started, report.stale), (1, None));
    assert!(f.in_sudo("alice"));
    assert!(f.sudo_allowed("alice").allowed);
}

#[test]
fn given_a_host_clock_skewed_from_the_database_s_then_fleet_grants_do_not_count() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    f.fake.fleet().db_now = T0 - MAX_SKEW_SECS - 5;
    let report = f.sync();
    let stale = report.stale.expect("skewed");
    assert!(
        stale.contains("35 s ahead of the fleet database's"),
        "{stale}"
    );
    assert_eq!(report.started, 0);
    assert!(!f.in_sudo("alice"));
    assert!(!f.sudo_allowed("alice").allowed);

    // The clock set right: the grant starts.
    f.fake.fleet().db_now = T0;
    assert_eq!(f.sync().started, 1);
    assert!(f.sudo_allowed("alice").allowed);
}

#[test]
fn given_a_fleet_grant_that_ends_then_local_expiry_ends_it_without_the_network() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 60)];
    f.sync();
    f.fake.fleet().reachable = false;
    f.advance(60);
    assert!(!f.sudo_allowed("alice").allowed);
    f.e.m.reconcile().unwrap();
    assert!(!f.in_sudo("alice"));
    assert_eq!(f.e.audited("expire").len(), 1);
    // Back in touch with a database that has not expired it yet: it is not started again.
    f.fake.fleet().reachable = true;
    assert_eq!(f.sync().started, 0);
}

#[test]
fn given_an_unreachable_authority_then_activation_is_refused_naming_the_last_sync_and_nothing_changes(
) {
    let mut f = fleet_env();
    f.sync();
    f.fake.fleet().reachable = false;
    f.advance(120);
    let alice = f.e.who("alice");
    let e = assert_err!(
        f.e.m.activate(&alice, "admin", 0, REASON, "", "123456"),
        Internal
    );
    assert!(
        e.contains("the fleet's database is unreachable (last synchronised 2m ago); new activations are refused until it answers; existing grants still end on time"),
        "{e}"
    );
    assert!(!f.in_sudo("alice"));
    assert!(f.e.audited("activate")[0].detail.contains("unreachable"));
}

#[test]
fn given_fleet_mode_then_an_activation_goes_to_the_authority_with_the_policy_groups_and_is_mirrored_at_once(
) {
    let mut f = fleet_env();
    f.e.accounts.add_group("ops", &["erin"]);
    f.fake.fleet().activation = Some(Activated::Granted(fleet_grant(
        9,
        "erin",
        "admin",
        "sudo",
        T0 + HOUR,
    )));
    let erin = f.e.who("erin");
    let reply =
        f.e.m
            .fleet_activate(&erin, "admin", 0, REASON, "", "123456", Some("web7"))
            .inline(&mut f.e.m)
            .unwrap();
    assert_eq!(reply.state, ActivationState::Active);
    assert_eq!(reply.grant.id, 9);
    let asked = f.fake.fleet().calls.clone();
    assert!(
        asked.contains(
            &"activate erin admin 3600s groups=[\"ops\"] code=123456 host=Some(\"web7\")"
                .to_string()
        ),
        "{asked:?}"
    );
    // Mirrored before the call returned.
    assert!(f.in_sudo("erin"));
    assert!(f.sudo_allowed("erin").allowed);
}

#[test]
fn given_a_role_needing_approval_then_the_activation_is_pending_with_the_fleet_s_request() {
    let mut f = fleet_env();
    f.fake.fleet().activation = Some(Activated::Pending {
        request_id: 31,
        approvals_required: 2,
    });
    let alice = f.e.who("alice");
    let reply =
        f.e.m
            .activate(&alice, "admin", 600, REASON, "", "123456")
            .unwrap();
    assert_eq!(reply.state, ActivationState::Pending);
    assert_eq!(
        (reply.request.id, reply.request.approvals_required),
        (31, 2)
    );
    assert!(!f.in_sudo("alice"));
}

#[test]
fn given_an_approval_that_grants_then_the_grant_is_mirrored_here() {
    let mut f = fleet_env();
    f.fake.fleet().decision = Some(Decided::Granted(fleet_grant(
        4,
        "alice",
        "admin",
        "sudo",
        T0 + HOUR,
    )));
    let frank = f.e.who("frank");
    let decided = f.e.m.approve(&frank, 31, "ok", "654321").unwrap();
    assert_eq!(decided.state, RequestState::Approved);
    assert!(f.in_sudo("alice"));
    assert!(f
        .fake
        .fleet()
        .calls
        .contains(&"approve 31 by frank code=654321".to_string()));
}

#[test]
fn given_a_refusal_by_the_database_then_the_caller_gets_it_and_it_is_audited_locally() {
    let mut f = fleet_env();
    let alice = f.e.who("alice");
    let e = assert_err!(
        f.e.m.activate(&alice, "admin", 0, REASON, "", "1"),
        NotEligible
    );
    assert!(e.contains("not eligible"));
    let refused = f.e.audited("activate");
    assert_eq!(refused[0].outcome, Outcome::Refused);
}

#[test]
fn given_deactivate_and_revoke_then_they_go_to_the_authority_and_the_mirror_ends_the_grant() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![
        fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR),
        fleet_grant(8, "alice", "docker", "docker", T0 + HOUR),
    ];
    f.sync();
    let alice = f.e.who("alice");
    f.e.m.deactivate(&alice, "admin").unwrap();
    assert!(!f.in_sudo("alice"));

    // A revocation needs the admin's code, which the database checks.
    let frank = f.e.who("frank");
    let e = assert_err!(
        f.e.m
            .admin_revoke(&frank, "alice", "docker", "left the team"),
        MfaRequired
    );
    assert!(e.contains("give --code CODE"), "{e}");
    f.e.m
        .fleet_revoke(&frank, "alice", "docker", "left the team", "112233")
        .inline(&mut f.e.m)
        .unwrap();
    assert!(!f
        .e
        .accounts
        .members("docker")
        .contains(&"alice".to_string()));
    assert!(f
        .fake
        .fleet()
        .calls
        .contains(&"revoke alice docker by frank code=112233".to_string()));
}

#[test]
fn given_fleet_mode_then_what_it_does_not_do_yet_is_refused_naming_the_limitation() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    let alice = f.e.who("alice");
    let refusals = [
        assert_err!(f.e.m.admin_assign(&frank, "alice", "admin", 0, 0), Conflict),
        assert_err!(f.e.m.admin_unassign(&frank, "alice", "admin"), Conflict),
        assert_err!(f.e.m.renew(&alice, "admin", T0 + HOUR, REASON), Conflict),
        assert_err!(f.e.m.admin_review_start(&frank, "admin", 0, &[]), Conflict),
        assert_err!(f.e.m.extend(&alice, "admin", 60, REASON, ""), Conflict),
        assert_err!(f.e.m.admin_mfa_reset(&frank, "alice"), Conflict),
        assert_err!(f.e.m.admin_mfa_unlock(&frank, "alice"), Conflict),
        assert_err!(f.e.m.mfa_rotate(&alice, "123456"), Conflict),
        assert_err!(f.e.m.mfa_recovery_codes(&alice, "123456"), Conflict),
    ];
    for (message, what) in refusals.iter().zip([
        "assignments",
        "assignments",
        "renewals",
        "access reviews",
        "extending a grant",
        "MFA resets",
        "MFA resets and unlocks",
        "changing an enrolment's device",
        "recovery codes",
    ]) {
        assert!(
            message.starts_with(&format!("fleet mode does not support {what}")),
            "{message}"
        );
    }
    assert!(f.fake.fleet().calls.is_empty());
}

#[test]
fn given_a_new_policy_version_then_applying_it_changes_the_roles_and_a_reload_keeps_them() {
    let mut f = fleet_env();
    assert_eq!(f.e.m.fleet_policy_version(), 1);
    let next = POLICY.replace(
        "[roles.docker]",
        "[roles.deploy]\ngroup = \"deploy\"\neligible = [\"bob\"]\n\n[roles.docker]",
    );
    f.e.m.apply_policy(2, &next).unwrap();
    assert!(f.e.m.config().role("deploy").is_some());
    assert_eq!(f.e.m.fleet_policy_version(), 2);
    let reload = f.e.audited("config-reload");
    assert!(reload
        .last()
        .unwrap()
        .detail
        .contains("fleet policy version 2: 3 role(s)"));

    // A policy that does not check is kept out: the running one stays.
    let e = assert_err!(
        f.e.m.apply_policy(3, "[roles.x]\nbogus = 1\n"),
        InvalidArgument
    );
    assert!(e.contains("roles.x.bogus: unknown key"), "{e}");
    assert!(f.e.m.config().role("deploy").is_some());

    // SIGHUP re-reads the host's file: its settings change, the policy's roles stay.
    let directory = HostDirectory(f.e.accounts.clone());
    let local = LOCAL.replace("[fleet]", "calls_per_minute = 7\n\n[fleet]");
    let (local, problems) = pim_config::parse(&local, "pim.toml", &directory);
    assert!(problems.is_empty(), "{problems:?}");
    f.e.m.replace_config(local.unwrap()).unwrap();
    assert_eq!(f.e.m.config().daemon.calls_per_minute, 7);
    assert!(f.e.m.config().role("deploy").is_some());
    assert_eq!(f.e.m.config().daemon.admins.len(), 1);
}

#[test]
fn given_a_policy_push_then_it_is_checked_first_and_sent_with_its_normalized_form() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    let e = assert_err!(
        f.e.m
            .fleet_policy_push(
                &frank,
                "[fleet]\ndatabase = \"host=/run/postgresql\"\n[roles.a]\nmax_duration = \"48h\"\n",
                "123456"
            )
            .inline(&mut f.e.m),
        InvalidArgument
    );
    assert!(e.contains("2 error(s); nothing was pushed"), "{e}");
    assert!(e.contains("fleet: is each host's own setting"), "{e}");
    assert!(
        e.contains("roles.a.max_duration: 48h is over the 24h cap"),
        "{e}"
    );
    assert!(f.fake.fleet().pushed.is_empty());

    let version =
        f.e.m
            .fleet_policy_push(&frank, POLICY, "123456")
            .inline(&mut f.e.m)
            .unwrap();
    assert_eq!(version, 2);
    let pushed = f.fake.fleet().pushed.clone();
    assert_eq!(pushed[0].0, POLICY);
    assert_eq!(
        pushed[0].1["roles"]["admin"]["hosts"],
        serde_json::json!(["tag:web"])
    );
    let records = f.e.audited("admin-policy-push");
    assert_eq!(records[0].outcome, Outcome::Refused);
    assert!(
        records[1].detail.contains("policy version 2 pushed"),
        "{records:?}"
    );
}

#[test]
fn given_host_add_then_bad_names_are_refused_before_the_network_and_the_password_is_in_no_record() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    let e = assert_err!(
        f.e.m
            .fleet_host_add(&frank, "web 8", &[], "123456")
            .inline(&mut f.e.m),
        InvalidArgument
    );
    assert!(e.contains("host 'web 8' is not a valid name"), "{e}");
    let e = assert_err!(
        f.e.m
            .fleet_host_add(&frank, "web8", &["d b".into()], "123456")
            .inline(&mut f.e.m),
        InvalidArgument
    );
    assert!(e.contains("tag 'd b'"), "{e}");
    assert!(f.fake.fleet().calls.is_empty());
    let password =
        f.e.m
            .fleet_host_add(&frank, "web8", &["web".into()], "123456")
            .inline(&mut f.e.m)
            .unwrap();
    assert_eq!(password, "s3cret-once");
    assert!(f.e.audit_log().iter().all(|r| !r.detail.contains("s3cret")));
    let hosts = f.e.m.fleet_hosts(&frank).inline(&mut f.e.m).unwrap();
    assert_eq!(hosts[0].name, "web8");
    let alice = f.e.who("alice");
    assert_err!(
        f.e.m.fleet_hosts(&alice).inline(&mut f.e.m),
        PermissionDenied
    );
}

#[test]
fn given_local_records_then_the_spool_is_given_in_order_after_the_shipped_marker() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    f.sync();
    let spool = f.e.m.audit_to_ship().unwrap();
    assert!(spool.len() >= 2);
    assert!(spool.windows(2).all(|w| w[0].id < w[1].id));
    f.e.m.audit_shipped(spool[0].id).unwrap();
    let rest = f.e.m.audit_to_ship().unwrap();
    assert_eq!(rest[0].id, spool[1].id);
    f.e.m.audit_shipped(spool.last().unwrap().id).unwrap();
    assert!(f.e.m.audit_to_ship().unwrap().is_empty());
}

#[test]
fn given_fleet_enrolment_then_the_secret_goes_to_the_authority_and_not_the_local_store() {
    let mut f = fleet_env();
    let alice = f.e.who("alice");
    let frank = f.e.who("frank");
    let ticket =
        f.e.m
            .fleet_mfa_ticket(&frank, "alice", "112233", false)
            .inline(&mut f.e.m)
            .unwrap();
    let (uri, _) = f.e.m.mfa_enroll_with_ticket(&alice, &ticket).unwrap();
    assert!(uri.contains("alice%40web7"), "{uri}");
    assert_eq!(f.fake.fleet().enrolled[0].0, "alice");
    assert!(f.e.m.store.read(|tx| tx.mfa("alice")).unwrap().is_none());
    assert!(f.e.m.mfa_confirm(&alice, "123456").unwrap().is_empty());
    assert!(f.e.m.mfa_status(&alice).unwrap().enrolled);
}

#[test]
fn given_fleet_mode_and_no_ticket_then_enrolment_is_refused_naming_the_administrators_ticket() {
    let mut f = fleet_env();
    let alice = f.e.who("alice");
    let e = assert_err!(f.e.m.mfa_enroll(&alice), PermissionDenied);
    assert!(e.contains("'pim admin mfa-ticket alice'"), "{e}");
    assert!(e.contains("pim mfa enroll --ticket -"), "{e}");
    let e = assert_err!(f.e.m.mfa_enroll_with_ticket(&alice, "  "), PermissionDenied);
    assert!(e.contains("enrolment ticket"), "{e}");
    let long = "A".repeat(MAX_TICKET_BYTES + 1);
    let e = assert_err!(f.e.m.mfa_enroll_with_ticket(&alice, &long), InvalidArgument);
    assert!(e.contains("at most 64"), "{e}");
    let e = assert_err!(
        f.e.m.mfa_enroll_with_ticket(&alice, "ABCDE\u{1b}[2J"),
        InvalidArgument
    );
    assert!(e.contains("enrolment ticket"), "{e}");
    assert!(f.fake.fleet().calls.is_empty());
    let log = f.e.audit_log();
    let enrolments: Vec<_> = log
        .iter()
        .filter(|r| r.action == AuditAction::MfaEnroll.as_str())
        .collect();
    assert_eq!(enrolments.len(), 4);
    assert!(enrolments.iter().all(|r| r.outcome == "refused"));
}

#[test]
fn given_an_enrolment_ticket_then_the_authority_gets_it_and_no_record_holds_it() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    let ticket =
        f.e.m
            .fleet_mfa_ticket(&frank, "alice", "112233", false)
            .inline(&mut f.e.m)
            .unwrap();
    // bob cannot use alice's ticket: the authority refuses it, and the refusal is audited.
    let bob = f.e.who("bob");
    assert_err!(f.e.m.mfa_enroll_with_ticket(&bob, &ticket), NotFound);
    let alice = f.e.who("alice");
    f.e.m.mfa_enroll_with_ticket(&alice, &ticket).unwrap();
    // Used: a second enrolment with it is refused.
    assert_err!(f.e.m.mfa_enroll_with_ticket(&alice, &ticket), NotFound);
    let calls = f.fake.fleet().calls.clone();
    assert!(calls.contains(&"mfa_ticket alice by frank code=112233 reset=false".to_string()));
    assert!(calls.contains(&format!("enrol alice ticket={ticket}")));
    let log = f.e.audit_log();
    assert!(log.iter().all(|r| !r.detail.contains(&ticket)), "{log:?}");
    let issued: Vec<_> = log
        .iter()
        .filter(|r| r.action == AuditAction::FleetMfaTicket.as_str())
        .collect();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        (issued[0].actor.as_str(), issued[0].user.as_str()),
        ("frank", "alice")
    );
    assert_eq!(issued[0].outcome, "success");
}

#[test]
fn given_mfa_ticket_with_reset_then_the_enrolment_goes_and_the_new_ticket_enrols_again() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    let alice = f.e.who("alice");
    let ticket =
        f.e.m
            .fleet_mfa_ticket(&frank, "alice", "112233", false)
            .inline(&mut f.e.m)
            .unwrap();
    f.e.m.mfa_enroll_with_ticket(&alice, &ticket).unwrap();
    assert!(f.e.m.mfa_status(&alice).unwrap().enrolled);
    let ticket =
        f.e.m
            .fleet_mfa_ticket(&frank, "alice", "223344", true)
            .inline(&mut f.e.m)
            .unwrap();
    assert!(!f.e.m.mfa_status(&alice).unwrap().enrolled);
    f.e.m.mfa_enroll_with_ticket(&alice, &ticket).unwrap();
    // An administrator does not reset their own enrolment (nothing reaches the authority).
    let e = assert_err!(
        f.e.m
            .fleet_mfa_ticket(&frank, "frank", "334455", true)
            .inline(&mut f.e.m),
        PermissionDenied
    );
    assert!(e.contains("cannot reset your own enrolment"), "{e}");
    let calls = f.fake.fleet().calls.clone();
    assert!(calls.contains(&"mfa_ticket alice by frank code=223344 reset=true".to_string()));
    assert!(!calls.iter().any(|c| c.starts_with("mfa_ticket frank")));
    let detail =
        f.e.audit_log()
            .into_iter()
            .filter(|r| r.action == AuditAction::FleetMfaTicket.as_str() && r.outcome == "success")
            .map(|r| r.detail)
            .collect::<Vec<_>>();
    assert!(
        detail[1].contains("enrolment of alice removed"),
        "{detail:?}"
    );
}

#[test]
fn given_mfa_ticket_then_only_an_administrator_with_a_code_reaches_the_authority() {
    let mut f = fleet_env();
    let alice = f.e.who("alice");
    let e = assert_err!(
        f.e.m
            .fleet_mfa_ticket(&alice, "bob", "112233", false)
            .inline(&mut f.e.m),
        PermissionDenied
    );
    assert!(e.contains("does not name alice in its admins"), "{e}");
    let frank = f.e.who("frank");
    let e = assert_err!(
        f.e.m
            .fleet_mfa_ticket(&frank, "bob", "", false)
            .inline(&mut f.e.m),
        MfaRequired
    );
    assert!(e.contains("give --code CODE"), "{e}");
    let e = assert_err!(
        f.e.m
            .fleet_mfa_ticket(&frank, "b ob", "112233", false)
            .inline(&mut f.e.m),
        InvalidArgument
    );
    assert!(e.contains("not a valid name"), "{e}");
    assert!(f.fake.fleet().calls.is_empty());
    let log = f.e.audit_log();
    let tickets: Vec<_> = log
        .iter()
        .filter(|r| r.action == AuditAction::FleetMfaTicket.as_str())
        .collect();
    assert_eq!(tickets.len(), 3);
    assert!(tickets.iter().all(|r| r.outcome == "refused"));
}

#[test]
fn given_no_fleet_then_enrolment_tickets_are_refused_and_enrolment_is_as_before() {
    let mut e = env();
    let alice = e.who("alice");
    let msg = assert_err!(e.m.mfa_enroll_with_ticket(&alice, "ABCDE"), InvalidArgument);
    assert!(msg.contains("not in a fleet"), "{msg}");
    let frank = e.who("frank");
    let msg = assert_err!(
        e.m.fleet_mfa_ticket(&frank, "alice", "123456", false)
            .inline(&mut e.m),
        Conflict
    );
    assert!(msg.contains("not in a fleet"), "{msg}");
    let (uri, _) = e.m.mfa_enroll(&alice).unwrap();
    assert!(uri.starts_with("otpauth://"), "{uri}");
}

#[test]
fn given_no_fleet_then_nothing_routes_and_fleet_calls_say_so() {
    let mut e = env();
    let frank = e.who("frank");
    let e2 = assert_err!(e.m.fleet_hosts(&frank).inline(&mut e.m), Conflict);
    assert!(e2.contains("this host is not in a fleet"), "{e2}");
    assert_eq!(e.m.mirror(None).unwrap(), Mirrored::default());
}

#[test]
fn given_a_round_with_a_new_policy_then_it_is_taken_before_the_mirror_and_the_spool_is_shipped_in_order(
) {
    let mut f = fleet_env();
    let next = POLICY.replace(
        "[roles.docker]",
        "[roles.deploy]\ngroup = \"deploy\"\neligible = [\"bob\"]\n\n[roles.docker]",
    );
    {
        let mut fleet = f.fake.fleet();
        fleet.policy_version = 2;
        fleet.policy_text = next;
        // Of a role only the new policy has: it starts in the same round.
        fleet.grants = vec![fleet_grant(5, "bob", "deploy", "deploy", T0 + HOUR)];
    }
    let (outcome, changes) = f.round();
    let report = outcome.unwrap();
    assert_eq!(
        (report.policy, changes, report.mirrored.started),
        (Some(2), 1, 1)
    );
    assert!(f.e.accounts.members("deploy").contains(&"bob".to_string()));
    let calls = f.fake.fleet().calls.clone();
    assert_eq!(
        &calls[..4],
        ["snapshot", "policy 2", "expire_due", &calls[3]]
    );
    assert!(calls[3].starts_with("ship "), "{calls:?}");

    // Shipped: every local record, in chain order, once; the next round ships nothing new.
    let local: Vec<i64> = f.e.audit_log().iter().map(|r| r.id).collect();
    let shipped: Vec<i64> = f.fake.fleet().shipped.iter().map(|r| r.id).collect();
    assert_eq!(shipped, local);
    assert_eq!(report.shipped, local.len());
    let (again, changes) = f.round();
    assert_eq!((again.unwrap().shipped, changes), (0, 0));
}

#[test]
fn given_a_ship_whose_answer_was_lost_then_the_next_round_moves_past_it_and_ships_the_rest() {
    // The authority stored the batch but the host never heard: shipped again, it counts
    // none of it as new. Taken for "none held", the spool stopped there for good, and every
    // later record stayed off the fleet's audit.
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    f.fake.fleet().lose_ship_answer = true;
    assert!(matches!(f.round().0, Err(RoundError::Unreachable(_))));
    let held = f.fake.fleet().shipped.len();
    assert!(held > 0);
    f.fake.fleet().grants.clear();
    f.round().0.unwrap();
    let shipped: Vec<i64> = f.fake.fleet().shipped.iter().map(|r| r.id).collect();
    let local: Vec<i64> = f.e.audit_log().iter().map(|r| r.id).collect();
    assert!(
        local.len() > held,
        "the second round wrote records of its own"
    );
    assert_eq!(shipped, local);
    assert_eq!(
        f.e.m.audit_to_ship().unwrap(),
        [],
        "the host knows the authority holds them all"
    );
}

#[test]
fn given_a_partition_then_rounds_fail_records_are_spooled_and_shipped_on_reconnect_and_grants_come_back(
) {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    f.round().0.unwrap();
    let shipped_before = f.fake.fleet().shipped.len();

    f.fake.fleet().reachable = false;
    f.advance(601);
    // PAM refuses meanwhile (a local record of the partition), the round fails and ends the
    // grant locally.
    assert!(!f.sudo_allowed("alice").allowed);
    assert!(matches!(f.round().0, Err(RoundError::Unreachable(_))));
    assert!(!f.in_sudo("alice"));
    assert_eq!(f.fake.fleet().shipped.len(), shipped_before);

    f.fake.fleet().reachable = true;
    let report = f.round().0.unwrap();
    assert_eq!(report.mirrored.started, 1);
    assert!(f.in_sudo("alice"));
    let shipped: Vec<String> = f
        .fake
        .fleet()
        .shipped
        .iter()
        .map(|r| r.action.to_string())
        .collect();
    for action in ["access-check", "fleet-end", "membership-remove"] {
        assert!(
            shipped.contains(&action.to_string()),
            "{action}: {shipped:?}"
        );
    }
    let ids: Vec<i64> = f.fake.fleet().shipped.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[test]
fn given_a_policy_version_that_does_not_check_then_the_round_goes_on_with_the_running_one() {
    let mut f = fleet_env();
    {
        let mut fleet = f.fake.fleet();
        fleet.policy_version = 2;
        fleet.policy_text = "[roles.admin]\nbogus = 1\n".into();
        fleet.grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    }
    let (outcome, changes) = f.round();
    let report = outcome.unwrap();
    assert_eq!((report.policy, changes), (None, 0));
    assert!(
        report.problems[0].contains("policy version 2 not taken"),
        "{report:?}"
    );
    assert_eq!(report.mirrored.started, 1);
    assert_eq!(f.e.m.fleet_policy_version(), 1);
}

#[test]
fn given_a_role_s_reason_and_ticket_rules_then_a_fleet_activation_breaking_them_is_refused_before_the_authority(
) {
    let mut f = fleet_env();
    let strict = format!(
        "{POLICY}\n[roles.strict]\ngroup = \"sudo\"\neligible = [\"alice\"]\n\
         min_justification = 30\nrequire_ticket = true\nticket_pattern = \"^INC-[0-9]+$\"\n"
    );
    f.fake.fleet().policy_text = strict.clone();
    f.e.m.apply_policy(2, &strict).unwrap();
    let alice = f.e.who("alice");
    let long_reason = "rotate the TLS keys of the web tier today";
    for (reason, ticket, why) in [
        ("too short", "INC-1", "at least 30"),
        (long_reason, "", "requires a ticket"),
        (long_reason, "JIRA-1", "does not match"),
    ] {
        let e = assert_err!(
            f.e.m
                .fleet_activate(&alice, "strict", 0, reason, ticket, "123456", None)
                .inline(&mut f.e.m),
            InvalidArgument
        );
        assert!(e.contains(why), "{e}");
    }
    let asked = f.fake.fleet().calls.clone();
    assert!(
        !asked.iter().any(|c| c.starts_with("activate")),
        "{asked:?}"
    );
    assert_eq!(f.e.audited("activate").len(), 3);
}

#[test]
fn given_a_refused_policy_push_with_newlines_in_its_error_then_the_audit_still_ships_escaped() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    let bad = "[roles.a]\nbogus = 1\n[roles.b]\nbogus = 2\n";
    assert_err!(
        f.e.m
            .fleet_policy_push(&frank, bad, "123456")
            .inline(&mut f.e.m),
        InvalidArgument
    );
    let refused = f.e.audited("admin-policy-push");
    assert!(refused[0].detail.contains('\n'), "{refused:?}");

    let (outcome, _) = f.round();
    let report = outcome.unwrap();
    let local: Vec<i64> = f.e.audit_log().iter().map(|r| r.id).collect();
    let shipped = f.fake.fleet().shipped.clone();
    assert_eq!(shipped.iter().map(|r| r.id).collect::<Vec<_>>(), local);
    assert_eq!(report.shipped, local.len());
    let push = shipped
        .iter()
        .find(|r| r.id == refused[0].id)
        .expect("the refused push shipped");
    assert!(!push.detail.chars().any(char::is_control), "{push:?}");
    assert!(push.detail.contains("2 error(s)"), "{push:?}");
}

#[test]
fn given_a_user_the_policy_does_not_name_as_admin_then_policy_push_and_host_add_are_refused_locally(
) {
    let mut f = fleet_env();
    let alice = f.e.who("alice");
    let e = assert_err!(
        f.e.m
            .fleet_policy_push(&alice, POLICY, "123456")
            .inline(&mut f.e.m),
        PermissionDenied
    );
    assert!(
        e.contains("the fleet's policy does not name alice in its admins"),
        "{e}"
    );
    assert_err!(
        f.e.m
            .fleet_host_add(&alice, "web8", &[], "123456")
            .inline(&mut f.e.m),
        PermissionDenied
    );
    let calls = f.fake.fleet().calls.clone();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("push") || c.starts_with("add")),
        "{calls:?}"
    );
    assert_eq!(
        f.e.audited("admin-policy-push")[0].outcome,
        Outcome::Refused
    );
}

#[test]
fn given_the_sync_found_the_authority_unreachable_then_calls_fail_fast_until_a_round_answers() {
    let mut f = fleet_env();
    f.fake.fleet().reachable = false;
    f.sync();
    // Answering again, but no round has seen it yet: no call waits on the network.
    f.fake.fleet().reachable = true;
    let alice = f.e.who("alice");
    let e = assert_err!(
        f.e.m
            .fleet_activate(&alice, "admin", 0, REASON, "", "123456", None)
            .inline(&mut f.e.m),
        Internal
    );
    assert!(e.contains("the fleet's database is unreachable"), "{e}");
    let calls = f.fake.fleet().calls.clone();
    assert!(
        !calls.iter().any(|c| c.starts_with("activate")),
        "{calls:?}"
    );
    // A round that gets an answer lifts it.
    f.sync();
    f.fake.fleet().activation = Some(Activated::Granted(fleet_grant(
        9,
        "alice",
        "admin",
        "sudo",
        T0 + HOUR,
    )));
    let reply =
        f.e.m
            .fleet_activate(&alice, "admin", 0, REASON, "", "123456", None)
            .inline(&mut f.e.m)
            .unwrap();
    assert_eq!(reply.state, ActivationState::Active);
}

// --- A host an administrator disables; approver names (issue 16, review finding 6). ---

#[test]
fn given_host_disable_then_only_a_named_admin_reaches_the_database_and_the_host_shows_disabled() {
    let mut f = fleet_env();
    let frank = f.e.who("frank");
    f.e.m
        .fleet_host_add(&frank, "web8", &[], "123456")
        .inline(&mut f.e.m)
        .unwrap();
    let mut only_web8 = fleet_grant(9, "alice", "docker", "docker", T0 + HOUR);
    only_web8.only_host = Some("web8".into());
    f.fake.fleet().grants.push(only_web8);
    f.fake.fleet().calls.clear();

    let alice = f.e.who("alice");
    assert_err!(
        f.e.m
            .fleet_host_disable(&alice, "web8", "123456")
            .inline(&mut f.e.m),
        PermissionDenied
    );
    assert_err!(
        f.e.m
            .fleet_host_disable(&frank, "web 8", "123456")
            .inline(&mut f.e.m),
        InvalidArgument
    );
    assert!(f.fake.fleet().calls.is_empty());

    let disabled =
        f.e.m
            .fleet_host_disable(&frank, "web8", "654321")
            .inline(&mut f.e.m)
            .unwrap();
    assert_eq!(
        (disabled.grants_ended, disabled.requests_cancelled),
        (vec![9], vec![])
    );
    let hosts = f.e.m.fleet_hosts(&frank).inline(&mut f.e.m).unwrap();
    assert_eq!(
        (hosts[0].disabled_at, hosts[0].disabled_by.as_str()),
        (T0, "frank")
    );
    let records = f.e.audit_log();
    assert!(
        records.iter().any(|r| r.action == "admin-host-disable"
            && r.outcome == "success"
            && r.detail.contains("grants ended [9]")),
        "{records:?}"
    );
}

#[test]
fn given_fleet_requests_with_approvals_then_list_and_show_name_the_approvers() {
    let mut f = fleet_env();
    f.fake.fleet().requests.push(FleetRequest {
        id: 31,
        user: "alice".into(),
        role: "admin".into(),
        duration_secs: 600,
        reason: REASON.into(),
        ticket: String::new(),
        created_at: T0,
        expires_at: T0 + HOUR,
        approvals: 1,
        approvals_required: 2,
        state: "pending".into(),
        only_host: None,
        approved_by: vec!["carol".into()],
    });
    let frank = f.e.who("frank");
    let listed = f.e.m.list_requests(&frank).unwrap();
    assert_eq!(listed[0].approved_by, vec!["carol".to_string()]);
    let alice = f.e.who("alice");
    let shown = f.e.m.show_request(&alice, 31).unwrap();
    assert_eq!(shown.approved_by, vec!["carol".to_string()]);
    assert_eq!(
        (shown.group.as_str(), shown.state.as_str()),
        ("sudo", "pending")
    );
    assert_err!(f.e.m.show_request(&alice, 32), NotFound);
}

#[test]
fn given_an_authority_the_sync_refuses_then_calls_fail_saying_why_until_a_snapshot_comes() {
    let mut f = fleet_env();
    f.fake.fleet().refused = Some(
        "the fleet's database has schema version 1, older than version 2 which this pimd \
         speaks; nothing is taken from it: an administrator runs 'pimd --fleet-setup \
         ADMIN_CONNINFO' again"
            .into(),
    );
    let (outcome, _) = f.round();
    assert!(outcome.is_err());
    let alice = f.e.who("alice");
    let e = assert_err!(
        f.e.m.activate(&alice, "admin", 600, REASON, "", "123456"),
        Internal
    );
    assert!(
        e.contains("takes nothing from the fleet's database") && e.contains("pimd --fleet-setup"),
        "{e}"
    );
    f.fake.fleet().refused = None;
    f.round().0.unwrap();
    f.fake.fleet().activation = None;
    assert_err!(
        f.e.m.activate(&alice, "admin", 600, REASON, "", "123456"),
        NotEligible
    );
}

#[test]
fn given_a_call_waiting_for_the_database_then_expiry_ends_a_due_grant_meanwhile() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + HOUR)];
    f.sync();
    assert!(f.in_sudo("alice"));
    let (waiting, is_waiting) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    f.fake.fleet().hold = Some(crate::fleet::fake::Hold {
        waiting,
        release: released,
    });
    let erin = f.e.who("erin");
    let FleetCall::Remote(network) =
        f.e.m
            .fleet_activate(&erin, "docker", 0, REASON, "", "", None)
    else {
        panic!("the activation did not go to the authority");
    };
    // The network part runs on a thread of its own, as pimd's core runs it: it holds
    // nothing of the manager's.
    let pending = std::thread::spawn(network);
    is_waiting.recv().unwrap();
    f.advance(HOUR);
    f.e.m.reconcile().unwrap();
    assert!(!f.in_sudo("alice"), "the grant outlived its end");
    assert_eq!(f.e.audited("expire").len(), 1);
    release.send(()).unwrap();
    let then = pending.join().unwrap();
    // The fake was told no answer: the refusal is recorded once the manager is back.
    let e = assert_err!(then(&mut f.e.m).inline(&mut f.e.m), NotEligible);
    assert!(e.contains("not eligible"), "{e}");
}

#[test]
fn given_the_wall_clock_set_back_in_a_partition_then_fleet_grants_still_go_stale() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    f.sync();
    f.fake.fleet().reachable = false;
    // Someone sets the clock back as time passes: by the wall clock, the last
    // synchronisation stays a minute old.
    f.e.clock.step_wall(-600);
    f.advance(601);
    assert!(!f.sudo_allowed("alice").allowed);
    let report = f.sync();
    assert_eq!(report.ended, 1);
    assert!(report.stale.unwrap().contains("more than max_staleness"));
    assert!(!f.in_sudo("alice"));
}

#[test]
fn given_a_reboot_then_fleet_grants_wait_for_a_synchronisation_of_this_boot() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    f.sync();
    f.e.clock.reboot();
    f.fake.fleet().reachable = false;
    assert!(!f.sudo_allowed("alice").allowed);
    let report = f.sync();
    assert_eq!(report.ended, 1);
    assert!(report.stale.unwrap().contains("since it booted"));
    f.fake.fleet().reachable = true;
    assert_eq!(f.sync().started, 1);
    assert!(f.sudo_allowed("alice").allowed);
}

#[test]
fn given_a_record_the_authority_refuses_then_it_goes_as_a_stand_in_and_the_rest_are_shipped() {
    let mut f = fleet_env();
    f.round().0.unwrap();
    f.fake.fleet().refuse_role = Some("docker".into());
    let alice = f.e.who("alice");
    // Refused by the fake (no answer set): a local record about role docker.
    let _ = f.e.m.deactivate(&alice, "docker");
    let _ = f.e.m.deactivate(&alice, "admin");
    let (report, _) = f.round();
    let report = report.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let shipped = f.fake.fleet().shipped.clone();
    let local = f.e.audited("deactivate");
    assert_eq!(local.len(), 2);
    let stand_in = shipped.iter().find(|r| r.id == local[0].id).unwrap();
    assert_eq!(
        (stand_in.role.as_str(), stand_in.hash.as_str()),
        ("", local[0].hash.as_str())
    );
    assert!(
        stand_in.detail.contains("not shipped as written"),
        "{}",
        stand_in.detail
    );
    let after = shipped.iter().find(|r| r.id == local[1].id).unwrap();
    assert_eq!(after.role, "admin");
    let logged = f.e.m.take_outbox().syslog;
    assert!(
        logged
            .iter()
            .any(|(_, line)| line.contains(&format!("local audit record {}", local[0].id))),
        "{logged:?}"
    );
    // Nothing is left to ship.
    assert!(f.e.m.audit_to_ship().unwrap().is_empty());
}

#[test]
fn given_the_authority_unreachable_while_shipping_then_the_spool_waits_for_the_next_round() {
    let mut f = fleet_env();
    f.round().0.unwrap();
    let alice = f.e.who("alice");
    let _ = f.e.m.deactivate(&alice, "docker");
    let before = f.e.m.audit_to_ship().unwrap().len();
    assert!(before > 0);
    f.fake.fleet().reachable = false;
    assert!(f.round().0.is_err());
    assert!(f.e.m.audit_to_ship().unwrap().len() >= before);
    f.fake.fleet().reachable = true;
    f.round().0.unwrap();
    assert!(f.e.m.audit_to_ship().unwrap().is_empty());
}

/// The manager shared by the sync thread and a call, as pimd's core shares it.
struct Shared<'a>(Mutex<&'a mut Manager>);

impl Managed for Shared<'_> {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Manager) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError> {
        f(&mut self.0.lock().unwrap())
    }

    fn config_changed(&self) {}
}

#[test]
fn given_a_round_s_snapshot_read_before_a_revocation_and_mirrored_after_it_then_the_grant_stays_ended(
) {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(8, "alice", "docker", "docker", T0 + HOUR)];
    f.sync();
    let in_docker = |f: &Fleet| {
        f.e.accounts
            .members("docker")
            .contains(&"alice".to_string())
    };
    assert!(in_docker(&f));
    let (waiting, is_waiting) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    f.fake.fleet().hold_answer = Some(crate::fleet::fake::Hold {
        waiting,
        release: released,
    });
    let frank = f.e.who("frank");
    let mut authority = f.fake.clone();
    let shared = Shared(Mutex::new(&mut f.e.m));
    let report = std::thread::scope(|s| {
        let round = s.spawn(|| sync::round(&mut authority, &shared));
        // The round's snapshot (A) holds alice's grant; its answer is on its way.
        is_waiting.recv().unwrap();
        {
            let mut guard = shared.0.lock().unwrap();
            let m = &mut **guard;
            // The revocation, and its own snapshot (B) mirrored at once.
            m.fleet_revoke(&frank, "alice", "docker", "left the team", "112233")
                .inline(m)
                .unwrap();
        }
        release.send(()).unwrap();
        round.join().unwrap()
    })
    .unwrap();
    assert!(report.mirrored.superseded, "{report:?}");
    assert_eq!(report.mirrored.started, 0);
    assert!(!in_docker(&f), "the revoked grant started again");
    let started: Vec<_> =
        f.e.audited("fleet-grant")
            .into_iter()
            .filter(|r| r.outcome == Outcome::Success)
            .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    // The next round mirrors as usual.
    let (next, _) = f.round();
    assert!(!next.unwrap().mirrored.superseded);
    assert!(!in_docker(&f));
}

#[test]
fn given_a_snapshot_slow_to_arrive_then_it_is_as_fresh_as_when_its_fetch_began() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    let fetch = f.e.m.fleet_fetch_begins();
    // The database reads its clock 10 s into the fetch; the answer comes 10 s later.
    f.advance(10);
    let snapshot = f.fake.clone().snapshot().unwrap();
    f.advance(10);
    let report = f.e.m.mirror(Some(&Fetched { fetch, snapshot })).unwrap();
    // The 20 s it took are no skew of the clocks.
    assert_eq!((report.started, report.stale), (1, None));
    let sync = f.e.m.store.read(|tx| tx.fleet_sync()).unwrap().unwrap();
    assert_eq!((sync.synced_at, sync.db_now), (T0, T0));
    assert!(f.sudo_allowed("alice").allowed);
    // max_staleness (10 min) runs from when the fetch began, not from when it was mirrored.
    f.fake.fleet().reachable = false;
    f.advance(600 - 20 + 1);
    assert!(!f.sudo_allowed("alice").allowed);
    let report = f.sync();
    let stale = report.stale.unwrap();
    assert!(stale.contains("more than max_staleness"), "{stale}");
    assert!(!f.in_sudo("alice"));
}

#[test]
fn given_a_record_refused_for_its_free_text_then_its_stand_in_keeps_who_acted_and_about_whom() {
    let mut f = fleet_env();
    f.round().0.unwrap();
    f.fake.fleet().refuse_reason = Some("UNSHIPPABLE".into());
    let alice = f.e.who("alice");
    // The fake has no answer set: the activation is refused and audited here, reason and all.
    let _ =
        f.e.m
            .fleet_activate(&alice, "docker", 0, "keys UNSHIPPABLE", "", "", None)
            .inline(&mut f.e.m);
    let (report, _) = f.round();
    let report = report.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let local = f.e.audited("activate");
    let local = local.last().unwrap();
    assert!(local.reason.contains("UNSHIPPABLE"), "{local:?}");
    let shipped = f.fake.fleet().shipped.clone();
    let stand_in = shipped.iter().find(|r| r.id == local.id).unwrap();
    assert_eq!(
        (
            stand_in.actor.as_str(),
            stand_in.user.as_str(),
            stand_in.role.as_str(),
            stand_in.action.as_str(),
            stand_in.hash.as_str()
        ),
        ("alice", "alice", "docker", "activate", local.hash.as_str())
    );
    assert_eq!(
        (stand_in.reason.as_str(), stand_in.ticket.as_str()),
        ("", "")
    );
    assert!(
        stand_in.detail.contains("not shipped as written"),
        "{}",
        stand_in.detail
    );
    assert!(f.e.m.audit_to_ship().unwrap().is_empty());
}

#[test]
fn given_the_boot_id_cannot_be_read_then_fleet_grants_do_not_count_and_the_reason_says_so() {
    let mut f = fleet_env();
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    f.sync();
    assert!(f.sudo_allowed("alice").allowed);
    f.e.clock.lose_boot_id();
    assert!(!f.sudo_allowed("alice").allowed);
    // Even a fresh snapshot: the age of a synchronisation cannot be told.
    let report = f.sync();
    assert_eq!(report.ended, 1);
    let stale = report.stale.unwrap();
    assert!(stale.contains("cannot read its boot id"), "{stale}");
    assert!(!stale.contains("booted"), "{stale}");
    assert!(!f.in_sudo("alice"));
    let ended = f.e.audited("fleet-end");
    assert!(
        ended[0].detail.contains("cannot read its boot id"),
        "{}",
        ended[0].detail
    );
}

/// web7 on a database file of its own in a fresh directory, the caller's to remove; alice's
/// fleet grant 7 of admin (sudo) is mirrored at T0.
fn fleet_on_file(name: &str) -> (Fleet, PathBuf) {
    let dir = std::env::temp_dir().join(format!("pim-mirror-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut f = fleet_env_on(env_with(
        SqliteStore::open(&dir.join("pim.db")).unwrap(),
        FakeClock::at(T0),
    ));
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 2 * HOUR)];
    f.sync();
    assert!(f.sudo_allowed("alice").allowed);
    (f, dir)
}

/// [`fleet_on_file`], alice's fleet grant 9 of docker mirrored too.
fn fleet_on_file_with_docker(name: &str) -> (Fleet, PathBuf) {
    let (mut f, dir) = fleet_on_file(name);
    f.fake
        .fleet()
        .grants
        .push(fleet_grant(9, "alice", "docker", "docker", T0 + 2 * HOUR));
    f.sync();
    assert!(in_docker(&f));
    (f, dir)
}

/// `sql` run on the database in `dir` through a connection of the test's own (triggers that
/// make one write fail).
fn run_sql(dir: &Path, sql: &str) {
    rusqlite::Connection::open(dir.join("pim.db"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

/// [`fleet_on_file`] with `sql` run on it, after no round ran until the host was past
/// max_staleness (so grant 7 is still live while PAM refuses it) and the fleet revoked 7 and
/// gave alice grant 8 of docker.
fn stale_host_after_a_revocation(name: &str, sql: &str) -> (Fleet, PathBuf) {
    let (mut f, dir) = fleet_on_file(name);
    f.advance(601);
    assert!(!f.sudo_allowed("alice").allowed, "stale");
    assert!(
        f.in_sudo("alice"),
        "no round ran: the membership is still there"
    );
    f.fake.fleet().grants = vec![fleet_grant(8, "alice", "docker", "docker", T0 + HOUR)];
    run_sql(&dir, sql);
    (f, dir)
}

/// Grant 7 was ended in the database and is refused by PAM.
fn assert_seven_ended(f: &mut Fleet) {
    let ended = f.e.audited("fleet-end");
    assert!(
        ended
            .iter()
            .any(|r| r.detail.contains("the fleet no longer holds it")),
        "{ended:?}"
    );
    assert!(!f.sudo_allowed("alice").allowed);
}

/// The audit records saying that fleet grant `id` was not started here.
fn said_not_started(f: &mut Fleet, id: i64) -> Vec<String> {
    f.e.audited("fleet-grant")
        .into_iter()
        .filter(|r| r.detail.contains(&format!("fleet grant {id} not started")))
        .map(|r| r.detail)
        .collect()
}

/// A trigger that makes any change of local grant 7's `column` fail with a disk I/O error.
fn seven_fails_to_change(column: &str) -> String {
    format!(
        "CREATE TRIGGER seven_fails BEFORE UPDATE OF {column} ON grants WHEN OLD.fleet_id = 7
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;"
    )
}

/// A round fails with `why`, the record before stays (T0's), and PAM refuses alice as stale.
fn assert_round_fails_and_stays_stale(f: &mut Fleet, why: &str) {
    let error = f.try_sync().unwrap_err();
    assert!(error.message().contains(why), "{error:?}");
    assert_eq!(f.synced_at(), Some(T0), "no fresh record");
    let refused = f.sudo_allowed("alice");
    assert!(!refused.allowed);
    assert!(
        refused.message.contains("max_staleness"),
        "{}",
        refused.message
    );
}

fn in_docker(f: &Fleet) -> bool {
    f.e.accounts
        .members("docker")
        .contains(&"alice".to_string())
}

/// The attack: a host past max_staleness holds a grant the fleet has since revoked. Were the
/// fresh synchronisation recorded before that grant ends, PAM would let the revoked grant
/// through in between.
#[test]
fn given_a_stale_host_and_a_revocation_then_the_grant_has_ended_before_the_fresh_sync_is_recorded()
{
    let (mut f, dir) = stale_host_after_a_revocation(
        "order",
        "CREATE TRIGGER revoked_still_live BEFORE UPDATE ON fleet_sync
         WHEN EXISTS (SELECT 1 FROM grants WHERE fleet_id = 7 AND ended_at IS NULL)
         BEGIN SELECT RAISE(ABORT, 'fresh sync recorded while revoked grant 7 is live'); END;",
    );
    let report = f.sync();
    assert_eq!((report.ended, report.started, report.stale), (1, 1, None));
    assert_eq!(f.synced_at(), Some(T0 + 601));
    assert_seven_ended(&mut f);
    assert!(!f.in_sudo("alice"));
    assert!(in_docker(&f), "grant 8 started on the recorded sync");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_a_revocation_and_a_sync_that_cannot_be_recorded_then_the_grant_ends_and_nothing_starts() {
    let (mut f, dir) = stale_host_after_a_revocation(
        "full",
        "CREATE TRIGGER disk_full BEFORE UPDATE ON fleet_sync
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    );
    let error = f.try_sync().unwrap_err();
    assert!(error.message().contains("disk is full"), "{error:?}");
    assert_eq!(f.synced_at(), Some(T0), "the record before stays");
    assert_seven_ended(&mut f);
    assert!(!f.in_sudo("alice"));
    assert!(
        !in_docker(&f),
        "no grant starts on a sync that is not on record"
    );
    assert_eq!(f.e.audited("fleet-grant").len(), 1, "only grant 7's start");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn given_a_revocation_whose_end_fails_then_no_fresh_sync_is_recorded_and_the_host_stays_stale() {
    let (mut f, dir) = stale_host_after_a_revocation("end", &seven_fails_to_change("ended_at"));
    assert_round_fails_and_stays_stale(&mut f, "disk I/O error");
    assert!(!in_docker(&f));

    // Once the store takes writes again, the next round ends 7 and starts 8.
    run_sql(&dir, "DROP TRIGGER seven_fails;");
    let report = f.sync();
    assert_eq!((report.ended, report.started), (1, 1));
    assert_seven_ended(&mut f);
    assert!(in_docker(&f));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A membership that could not be taken back is not a grant: the end is committed, PAM
/// refuses it, and reconciliation takes the membership later; the sync is recorded.
#[test]
fn given_a_revocation_whose_membership_removal_fails_then_the_sync_is_recorded_and_the_grant_refused(
) {
    let (mut f, dir) = stale_host_after_a_revocation("release", "");
    f.e.accounts.fail_next_remove();
    let error = f.try_sync().unwrap_err();
    assert!(error.message().contains("gpasswd"), "{error:?}");
    assert_eq!(f.synced_at(), Some(T0 + 601));
    assert_seven_ended(&mut f);
    assert!(f.in_sudo("alice"), "the removal failed");
    assert!(in_docker(&f));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fleet shortened grant 7 (to T0 + 700, from T0 + 2 h); a move that does not commit must
/// not let the old end count under a fresh record.
#[test]
fn given_a_stale_host_and_a_shortened_grant_whose_move_fails_then_no_fresh_sync_is_recorded() {
    let (mut f, dir) = stale_host_after_a_revocation("move", &seven_fails_to_change("ends_at"));
    f.fake.fleet().grants = vec![fleet_grant(7, "alice", "admin", "sudo", T0 + 700)];
    assert_round_fails_and_stays_stale(&mut f, "disk I/O error");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The new record is stale itself (the database's clock is more than MAX_SKEW_SECS from the
/// host's): it is written though the end of the revoked grant failed, as it only makes PAM
/// refuse more; the record before, still fresh, would let the revoked grant through.
#[test]
fn given_a_revocation_whose_end_fails_and_a_skewed_clock_then_the_skewed_record_is_written_and_pam_refuses(
) {
    let (mut f, dir) = fleet_on_file("skew");
    f.advance(100);
    f.fake.fleet().grants.clear();
    f.fake.fleet().db_now += MAX_SKEW_SECS + 10;
    run_sql(&dir, &seven_fails_to_change("ended_at"));
    let error = f.try_sync().unwrap_err();
    assert!(error.message().contains("disk I/O error"), "{error:?}");
    assert_eq!(f.synced_at(), Some(T0 + 100));
    let refused = f.sudo_allowed("alice");
    assert!(!refused.allowed);
    assert!(refused.message.contains("clock"), "{}", refused.message);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One grant's move keeps failing, so no fresh record is written: once the record before is
/// stale, the host takes every fleet grant's membership away as any stale host does (docker's
/// is used without PAM), and nothing new starts; they come back once a round is recorded.
#[test]
fn given_a_move_that_keeps_failing_then_past_max_staleness_the_mirrored_grants_end_as_on_any_stale_host(
) {
    let (mut f, dir) = fleet_on_file_with_docker("stuck");
    run_sql(&dir, &seven_fails_to_change("ends_at"));
    f.fake.fleet().grants[0].ends_at = T0 + HOUR;
    f.fake
        .fleet()
        .grants
        .push(fleet_grant(10, "bob", "admin", "sudo", T0 + 2 * HOUR));
    for _ in 0..10 {
        f.advance(60);
        assert!(f.try_sync().is_err());
        assert_eq!(f.synced_at(), Some(T0));
        assert!(in_docker(&f), "the record before is not stale yet");
    }
    f.advance(60);
    assert!(f.try_sync().is_err());
    assert!(!in_docker(&f));
    assert!(!f.in_sudo("alice"));
    assert!(!f.in_sudo("bob"), "nothing starts on a round not recorded");
    let stale_ends = f.e.audited("fleet-end");
    assert_eq!(stale_ends.len(), 2, "{stale_ends:?}");
    assert!(
        stale_ends
            .iter()
            .all(|r| r.detail.contains("max_staleness")),
        "{stale_ends:?}"
    );

    run_sql(&dir, "DROP TRIGGER seven_fails;");
    let report = f.sync();
    assert_eq!((report.started, report.stale), (3, None));
    assert!(in_docker(&f) && f.in_sudo("alice") && f.in_sudo("bob"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fresh record cannot be written, round after round: once the record on file is stale,
/// the grants the fleet still holds end as on any stale host (their docker membership would
/// otherwise outlive PAM's refusal), and they come back once a round is recorded.
#[test]
fn given_a_sync_that_keeps_failing_to_be_recorded_then_past_max_staleness_the_mirrored_grants_end()
{
    let (mut f, dir) = fleet_on_file_with_docker("unrecorded");
    run_sql(
        &dir,
        "CREATE TRIGGER disk_full BEFORE UPDATE ON fleet_sync
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    );
    f.advance(300);
    assert!(f.try_sync().is_err());
    assert!(
        in_docker(&f) && f.in_sudo("alice"),
        "the record on file is fresh"
    );
    f.advance(301);
    let error = f.try_sync().unwrap_err();
    assert!(error.message().contains("disk is full"), "{error:?}");
    assert!(!in_docker(&f) && !f.in_sudo("alice"));
    assert_eq!(f.e.audited("fleet-end").len(), 2);

    run_sql(&dir, "DROP TRIGGER disk_full;");
    let report = f.sync();
    assert_eq!((report.started, report.stale), (2, None));
    assert!(in_docker(&f) && f.in_sudo("alice"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fleet grant this host does not start is audited once; an audit record that could not be
/// written is not taken for written.
#[test]
fn given_the_record_of_a_grant_not_started_cannot_be_written_then_the_next_round_writes_it() {
    let (mut f, dir) = fleet_on_file("ignored");
    run_sql(
        &dir,
        "CREATE TRIGGER audit_full BEFORE INSERT ON audit WHEN NEW.detail LIKE '%not started%'
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    );
    f.fake
        .fleet()
        .grants
        .push(fleet_grant(11, "alice", "nosuchrole", "sudo", T0 + HOUR));
    assert!(f.try_sync().is_err());
    assert_eq!(said_not_started(&mut f, 11).len(), 0);
    run_sql(&dir, "DROP TRIGGER audit_full;");
    f.sync();
    assert_eq!(said_not_started(&mut f, 11).len(), 1);
    f.sync();
    assert_eq!(said_not_started(&mut f, 11).len(), 1, "once");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fleet grants a user this host has in the group outside PIM (PIM must never take such a
/// membership), and one it does not have at all: neither starts, each is said once and not
/// every round, and the first starts once the membership outside PIM is gone.
#[test]
fn given_fleet_grants_this_host_cannot_start_then_each_is_audited_once_and_tried_each_round() {
    let mut f = fleet_env();
    f.e.accounts.add_group("docker", &["alice"]);
    f.fake.fleet().grants = vec![
        fleet_grant(9, "alice", "docker", "docker", T0 + HOUR),
        fleet_grant(12, "zoe", "admin", "sudo", T0 + HOUR),
    ];
    for _ in 0..3 {
        let report = f.sync();
        assert_eq!(report.started, 0);
        f.advance(30);
    }
    let alice = said_not_started(&mut f, 9);
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert!(alice[0].contains("outside PIM"), "{alice:?}");
    let zoe = said_not_started(&mut f, 12);
    assert_eq!(zoe.len(), 1, "{zoe:?}");
    assert!(
        zoe[0].contains("user zoe or group sudo is not found on this host"),
        "{zoe:?}"
    );
    assert!(!f.e.managed("alice", "docker"));

    f.e.accounts.add_group("docker", &[]);
    assert_eq!(f.sync().started, 1);
    assert!(f.e.managed("alice", "docker") && in_docker(&f));
}

/// A lookup that fails is no reason to stop saying so: it is audited as an error and fails
/// the round each time, and nothing starts.
#[test]
fn given_a_group_lookup_that_fails_then_the_fleet_grant_does_not_start_and_each_round_says_so() {
    let mut f = fleet_env();
    f.e.accounts.unreachable("docker");
    f.fake.fleet().grants = vec![fleet_grant(9, "alice", "docker", "docker", T0 + HOUR)];
    for round in 1..=2 {
        let error = f.try_sync().unwrap_err();
        assert!(error.message().contains("docker"), "{error:?}");
        let errors: Vec<_> =
            f.e.audited("fleet-grant")
                .into_iter()
                .filter(|r| r.outcome == "error" && r.detail.starts_with("fleet grant 9:"))
                .collect();
        assert_eq!(errors.len(), round, "{errors:?}");
    }
    assert!(!in_docker(&f));
    f.e.accounts.reachable("docker");
    assert_eq!(f.sync().started, 1);
}

/// A grant held back is said once while the fleet keeps sending it, and again if it comes
/// back after the fleet stopped sending it.
#[test]
fn given_a_grant_held_back_that_leaves_the_snapshot_and_comes_back_then_it_is_said_again() {
    let mut f = fleet_env();
    f.e.accounts.add_group("docker", &["alice"]);
    let nine = fleet_grant(9, "alice", "docker", "docker", T0 + HOUR);
    f.fake.fleet().grants = vec![nine.clone()];
    f.sync();
    f.sync();
    assert_eq!(said_not_started(&mut f, 9).len(), 1);
    f.fake.fleet().grants.clear();
    f.sync();
    f.fake.fleet().grants = vec![nine];
    f.sync();
    assert_eq!(said_not_started(&mut f, 9).len(), 2);
}
