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
            recovery_codes_issued_at: e.now(),
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

/// The raw bytes of a base32 secret as `mfa_enroll` or `mfa_rotate` give it.
fn secret_bytes(base32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(base32)
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// Alice enrolled, then starting a change of device with a code of her current one; the new
/// secret's bytes.
fn rotating_alice(e: &mut Env) -> Vec<u8> {
    e.enrol("alice");
    let code = e.code("alice");
    let (uri, secret) = e.m.mfa_rotate(&e.who("alice"), &code).unwrap();
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    secret_bytes(&secret)
}

#[test]
fn given_a_change_of_device_then_the_old_secret_works_until_a_code_of_the_new_one_confirms_it() {
    let mut e = env();
    let old = {
        e.enrol("alice");
        e.mfa_record("alice").secret
    };
    let code = e.code("alice");
    let (_, new) = e.m.mfa_rotate(&e.who("alice"), &code).unwrap();
    let new = secret_bytes(&new);
    assert_ne!(new, old);
    let status = e.mfa_status("alice");
    assert!(status.enrolled && status.pending, "{status:?}");
    // Meanwhile the old device is the one that counts, and the new one proves nothing yet.
    e.advance(30);
    let new_code = code_at(&new, mfa::current_step(e.now()));
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &new_code),
        InvalidCode
    );
    e.activate_admin("alice", 0).unwrap();

    let confirmed = e.m.mfa_confirm(&e.who("alice"), &new_code).unwrap();
    assert!(confirmed.is_empty(), "no new recovery codes: {confirmed:?}");
    let status = e.mfa_status("alice");
    assert_eq!(
        (status.enrolled, status.pending, status.recovery_codes_left),
        (true, false, 10)
    );
    assert_eq!(e.mfa_record("alice").secret, new);
    e.m.deactivate(&e.who("alice"), "admin").unwrap();
    e.advance(30);
    let old_code = code_at(&old, mfa::current_step(e.now()));
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &old_code),
        InvalidCode
    );
    // The confirming code's step is spent: the new device's next code works.
    e.activate_admin("alice", 0).unwrap();
    let rotate = e.audited("mfa-rotate");
    assert_eq!(rotate.len(), 1, "{rotate:#?}");
    assert!(
        rotate[0].outcome == "success" && rotate[0].detail.contains("mfa totp"),
        "{rotate:#?}"
    );
    let confirm = e.audited("mfa-confirm");
    assert!(
        confirm
            .last()
            .is_some_and(|r| r.outcome == "success" && r.detail.contains("new device confirmed")),
        "{confirm:#?}"
    );
}

#[test]
fn given_a_change_of_device_without_a_valid_code_then_it_is_refused_and_nothing_is_pending() {
    let mut e = env();
    let alice = e.who("alice");
    assert_err!(e.m.mfa_rotate(&alice, "123456"), MfaNotEnrolled);
    e.enrol("alice");
    assert_err!(e.m.mfa_rotate(&alice, ""), MfaRequired);
    let wrong = e.wrong_code("alice");
    assert_err!(e.m.mfa_rotate(&alice, &wrong), InvalidCode);
    // A code already used is no proof either.
    let last = e.mfa_record("alice").last_step.unwrap();
    let used = e.code_for_step("alice", last);
    assert_err!(e.m.mfa_rotate(&alice, &used), InvalidCode);
    // The third wrong code locks her out, and a right one does not help now.
    assert_err!(e.m.mfa_rotate(&alice, "k7m2p-9xq4r"), MfaLockedOut);
    let right = e.code("alice");
    assert_err!(e.m.mfa_rotate(&alice, &right), MfaLockedOut);
    let status = e.mfa_status("alice");
    assert!(status.enrolled && !status.pending, "{status:?}");
    assert!(e
        .m
        .store
        .read(|tx| tx.mfa_rotation("alice"))
        .unwrap()
        .is_none());
    let outcomes: Vec<String> = e
        .audited("mfa-rotate")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["refused"; 6]);
    assert_eq!(e.audited("mfa-failure").len(), 3);
    assert_eq!(e.audited("mfa-lockout").len(), 1);
}

#[test]
fn given_a_change_of_device_then_a_code_of_the_old_device_does_not_confirm_it() {
    let mut e = env();
    let new = rotating_alice(&mut e);
    let old_code = e.code("alice");
    assert_err!(e.m.mfa_confirm(&e.who("alice"), &old_code), InvalidCode);
    let status = e.mfa_status("alice");
    assert!(status.enrolled && status.pending, "{status:?}");
    assert_eq!(status.recent_failures, 1);
    assert_ne!(e.mfa_record("alice").secret, new);
    let failures = e.audited("mfa-failure");
    assert!(
        failures[0].detail.contains("confirming a new device"),
        "{failures:#?}"
    );
}

#[test]
fn given_a_lost_device_then_a_recovery_code_starts_the_change_and_starting_again_replaces_it() {
    let mut e = env();
    let codes = e.enrol("alice");
    let alice = e.who("alice");
    let (_, first) = e.m.mfa_rotate(&alice, &codes[0]).unwrap();
    let (_, second) = e.m.mfa_rotate(&alice, &codes[1]).unwrap();
    assert_ne!(first, second);
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 8);
    let stale = code_at(&secret_bytes(&first), mfa::current_step(e.now()));
    assert_err!(e.m.mfa_confirm(&alice, &stale), InvalidCode);
    let fresh = code_at(&secret_bytes(&second), mfa::current_step(e.now()));
    assert!(e.m.mfa_confirm(&alice, &fresh).unwrap().is_empty());
    assert_eq!(e.mfa_record("alice").secret, secret_bytes(&second));
    let rotate = e.audited("mfa-rotate");
    assert!(
        rotate[1].detail.contains("in place of the one started")
            && rotate[1].detail.contains("recovery code (8 left)"),
        "{rotate:#?}"
    );
}

#[test]
fn given_a_reset_during_a_change_of_device_then_the_change_goes_with_the_enrolment() {
    let mut e = env();
    let new = rotating_alice(&mut e);
    e.m.admin_mfa_reset(&e.who("frank"), "alice").unwrap();
    assert_eq!(e.mfa_status("alice"), MfaStatusInfo::default());
    let code = code_at(&new, mfa::current_step(e.now()));
    assert_err!(e.m.mfa_confirm(&e.who("alice"), &code), MfaNotEnrolled);
}

#[test]
fn given_a_valid_code_then_recovery_codes_are_replaced_and_the_old_ones_stop_working() {
    let mut e = env();
    let old = e.enrol("alice");
    let alice = e.who("alice");
    let code = e.code("alice");
    let new = e.m.mfa_recovery_codes(&alice, &code).unwrap();
    assert_eq!(new.len(), mfa::RECOVERY_CODE_COUNT);
    assert!(new.iter().all(|c| !old.contains(c)), "{new:?} {old:?}");
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 10);
    assert_err!(
        e.activate("alice", "admin", 0, REASON, "", &old[0]),
        InvalidCode
    );
    e.activate("alice", "admin", 0, REASON, "", &new[0])
        .unwrap();
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 9);
    let records = e.audited("mfa-recovery-codes");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert!(
        records[0].outcome == "success"
            && records[0]
                .detail
                .contains("10 unused ones before no longer work"),
        "{records:#?}"
    );
}

#[test]
fn given_recovery_codes_asked_without_a_valid_code_then_refused_and_the_old_codes_stay() {
    let mut e = env();
    let alice = e.who("alice");
    assert_err!(e.m.mfa_recovery_codes(&alice, "123456"), MfaNotEnrolled);
    let old = e.enrol("alice");
    assert_err!(e.m.mfa_recovery_codes(&alice, ""), MfaRequired);
    let wrong = e.wrong_code("alice");
    assert_err!(e.m.mfa_recovery_codes(&alice, &wrong), InvalidCode);
    // A recovery code, even a wrong one, is refused for its kind (see the test below).
    assert_err!(e.m.mfa_recovery_codes(&alice, "k7m2p-9xq4r"), MfaRequired);
    assert_eq!(e.mfa_status("alice").recovery_codes_left, 10);
    e.activate("alice", "admin", 0, REASON, "", &old[0])
        .unwrap();
    let outcomes: Vec<String> = e
        .audited("mfa-recovery-codes")
        .into_iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["refused"; 4]);
}

/// Alice, enrolled, locked out by three wrong codes.
fn locked_out_alice(e: &mut Env) {
    e.enrol("alice");
    for _ in 0..3 {
        let wrong = e.wrong_code("alice");
        let _ = e.activate("alice", "admin", 0, REASON, "", &wrong);
    }
    assert_eq!(e.mfa_status("alice").locked_until, e.now() + 900);
}

#[test]
fn given_a_locked_out_user_then_an_admin_ends_the_lockout_and_the_enrolment_stays() {
    let mut e = env();
    locked_out_alice(&mut e);
    let secret = e.mfa_record("alice").secret;
    e.m.admin_mfa_unlock(&e.who("frank"), "alice").unwrap();
    let status = e.mfa_status("alice");
    assert_eq!(
        (status.enrolled, status.locked_until, status.recent_failures),
        (true, 0, 0)
    );
    assert_eq!(e.mfa_record("alice").secret, secret);
    e.activate_admin("alice", 0).unwrap();
    let records = e.audited("admin-mfa-unlock");
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(
        (r.actor.as_str(), r.user.as_str(), r.outcome.as_str()),
        ("frank", "alice", "success")
    );
    assert!(r.detail.contains("lockout (until"), "{r:?}");
    // Nothing to end any more.
    let msg = assert_err!(e.m.admin_mfa_unlock(&e.who("root"), "alice"), NotFound);
    assert!(msg.contains("not locked out"), "{msg}");
}

#[test]
fn given_a_non_admin_then_mfa_unlock_is_refused_audited_and_the_lockout_stays() {
    let mut e = env();
    locked_out_alice(&mut e);
    for who in ["alice", "bob", "audra"] {
        let msg = assert_err!(e.m.admin_mfa_unlock(&e.who(who), "alice"), PermissionDenied);
        assert!(msg.contains("administrator"), "{msg}");
    }
    assert_eq!(e.mfa_status("alice").locked_until, e.now() + 900);
    let outcomes: Vec<(String, String)> = e
        .audited("admin-mfa-unlock")
        .into_iter()
        .map(|r| (r.actor, r.outcome.to_string()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("alice".into(), "refused".into()),
            ("bob".into(), "refused".into()),
            ("audra".into(), "refused".into())
        ]
    );
    assert_err!(
        e.m.admin_mfa_unlock(&e.who("frank"), "bad\nname"),
        InvalidArgument
    );
}

#[test]
fn given_an_admin_locked_out_then_they_cannot_end_their_own_lockout_nor_reset_their_mfa() {
    let mut e = env();
    e.enrol("frank");
    let frank = e.who("frank");
    for _ in 0..3 {
        let wrong = e.wrong_code("frank");
        let _ = e.m.mfa_recovery_codes(&frank, &wrong);
    }
    let locked_until = e.mfa_status("frank").locked_until;
    assert_eq!(locked_until, e.now() + 900);
    let msg = assert_err!(e.m.admin_mfa_unlock(&frank, "frank"), PermissionDenied);
    assert!(msg.contains("cannot end your own lockout"), "{msg}");
    let msg = assert_err!(e.m.admin_mfa_reset(&frank, "frank"), PermissionDenied);
    assert!(msg.contains("cannot reset your own MFA"), "{msg}");
    let status = e.mfa_status("frank");
    assert_eq!((status.enrolled, status.locked_until), (true, locked_until));
    for action in ["admin-mfa-unlock", "admin-mfa-reset"] {
        let records = e.audited(action);
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!(
            (records[0].actor.as_str(), records[0].outcome.as_str()),
            ("frank", "refused"),
            "{records:#?}"
        );
    }
    // Root (or another administrator) still can.
    e.m.admin_mfa_unlock(&e.who("root"), "frank").unwrap();
    assert_eq!(e.mfa_status("frank").locked_until, 0);
}

#[test]
fn given_a_leaked_recovery_code_then_it_cannot_replace_the_recovery_codes_and_is_not_spent() {
    let mut e = env();
    let codes = e.enrol("alice");
    let alice = e.who("alice");
    let msg = assert_err!(e.m.mfa_recovery_codes(&alice, &codes[0]), MfaRequired);
    assert!(msg.contains("TOTP code of your current device"), "{msg}");
    let status = e.mfa_status("alice");
    assert_eq!(
        (status.recovery_codes_left, status.recent_failures),
        (10, 0)
    );
    let records = e.audited("mfa-recovery-codes");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].outcome, "refused", "{records:#?}");
    // The device's code still can.
    e.advance(HOUR);
    let code = e.code("alice");
    assert_eq!(e.m.mfa_recovery_codes(&alice, &code).unwrap().len(), 10);
    assert_eq!(e.mfa_status("alice").recovery_codes_issued_at, e.now());
}

#[test]
fn given_a_change_of_device_by_a_recovery_code_then_audited_as_such_and_the_user_and_admins_told() {
    let mut e = env();
    let codes = e.enrol("alice");
    e.m.take_outbox();
    let alice = e.who("alice");
    e.m.mfa_rotate(&alice, &codes[0]).unwrap();
    let outbox = e.m.take_outbox();
    let events: Vec<_> = outbox
        .events
        .iter()
        .filter(|ev| ev.kind == EventKind::MfaDeviceChangeByRecoveryCode)
        .collect();
    assert_eq!(events.len(), 1, "{:#?}", outbox.events);
    assert_eq!(events[0].user, "alice");
    assert!(e.m.may_see(&e.who("frank"), events[0]));
    assert!(e.m.may_see(&alice, events[0]));
    assert!(!e.m.may_see(&e.who("bob"), events[0]));
    assert!(
        outbox.syslog.iter().any(
            |(severity, line)| *severity == crate::syslog::Severity::Warning
                && line.contains("change of MFA device for alice was started with a recovery code")
        ),
        "{:?}",
        outbox.syslog
    );
    let rotate = e.audited("mfa-rotate");
    assert!(
        rotate[0].detail.contains("PROVED BY A RECOVERY CODE"),
        "{rotate:#?}"
    );
    // With the device's code: no alarm.
    let code = e.code("alice");
    e.m.mfa_rotate(&alice, &code).unwrap();
    let outbox = e.m.take_outbox();
    assert!(outbox.events.is_empty() && outbox.syslog.is_empty());
}

#[test]
fn given_a_change_of_device_older_than_ten_minutes_then_confirm_refuses_drops_and_audits_it() {
    let mut e = env();
    let new = rotating_alice(&mut e);
    let old = e.mfa_record("alice").secret;
    let until = e.now() + PENDING_SECRET_SHOWN_SECS;
    e.advance(PENDING_SECRET_SHOWN_SECS - 1);
    let status = e.mfa_status("alice");
    assert!(
        status.pending && status.device_change_until == until,
        "{status:?}"
    );
    e.advance(1);
    let status = e.mfa_status("alice");
    assert!(
        !status.pending && status.device_change_until == 0,
        "{status:?}"
    );
    let code = code_at(&new, mfa::current_step(e.now()));
    let msg = assert_err!(e.m.mfa_confirm(&e.who("alice"), &code), Conflict);
    assert!(
        msg.contains("expired unconfirmed (after 10 minutes)"),
        "{msg}"
    );
    assert!(e
        .m
        .store
        .read(|tx| tx.mfa_rotation("alice"))
        .unwrap()
        .is_none());
    assert_eq!(e.mfa_record("alice").secret, old);
    let dropped = e.audited("mfa-rotate");
    assert!(
        dropped
            .last()
            .is_some_and(|r| r.outcome == "refused" && r.detail.contains("was dropped")),
        "{dropped:#?}"
    );
    // Dropped: the next confirm finds nothing to confirm.
    assert_err!(e.m.mfa_confirm(&e.who("alice"), &code), Conflict);
}
