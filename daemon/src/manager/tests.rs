//! Tests of what every capability shares (callers, reloads, refusal records under a flood,
//! limits on calls and events), over the shared environment of `test_support`.

use super::*;
use crate::manager::test_support::*;
use pim_config as config;

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
