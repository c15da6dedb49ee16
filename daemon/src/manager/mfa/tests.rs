//! Tests of MFA enrolment, over the shared environment of `test_support`.

use super::*;
use crate::manager::test_support::*;
use crate::mfa;

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
