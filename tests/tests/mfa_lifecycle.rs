//! The life of an MFA enrolment after its start (issue 15, point 13), end to end: moving to a
//! new device (`pim mfa enroll` while enrolled, proven by a code of the current one), new
//! recovery codes (`pim mfa recovery-codes`), and an administrator ending a lockout (`pim
//! admin mfa-unlock`). alice is enrolled and eligible for `admin` (MFA required); erin is a
//! pim administrator; mallory is nobody, and her calls also go straight to pimd over the bus.

use pim_e2e::{now_unix, Authenticator, Output, Sandbox, CONFIG_PATH, TOTP_STEP};
use serde_json::Value;
use std::time::Duration;

const REASON: &str = "rotate the TLS certificates";
const WAIT: Duration = Duration::from_secs(10);

const CONFIG: &str = r#"
[daemon]
admins = ["%pim-admins"]

[mfa]
max_failures = 3

[roles.admin]
group = "sudo"
eligible = ["alice"]
require_approval = false
"#;

fn site() -> Sandbox {
    let sb = Sandbox::start();
    sb.add_group("pim-admins");
    sb.add_user("alice", &[]);
    sb.add_user("erin", &["pim-admins"]);
    sb.add_user("mallory", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.start_pimd();
    sb
}

fn pim(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(args);
    sb.run(user, &argv)
}

/// `pim ARGS --code -` as `user`, the code on standard input (never on the command line).
fn pim_with_code(sb: &Sandbox, user: &str, args: &[&str], code: &str) -> Output {
    let mut argv = vec!["pim"];
    argv.extend_from_slice(args);
    argv.extend(["--code", "-"]);
    sb.run_with_stdin(user, &argv, &format!("{code}\n"))
}

fn activate(sb: &Sandbox, code: &str) -> Output {
    pim_with_code(sb, "alice", &["activate", "admin", "-r", REASON], code)
}

/// A code of `secret` that no step pimd accepts now would match (an hour ahead).
fn wrong_code(sb: &Sandbox, secret: &str) -> String {
    sb.totp(secret, now_unix() + 3600)
}

/// The code of `secret` for the current step: for a secret pimd no longer holds.
fn current_code(sb: &Sandbox, secret: &str) -> String {
    sb.totp(secret, now_unix() / TOTP_STEP * TOTP_STEP)
}

fn mfa_status(sb: &Sandbox, user: &str) -> Value {
    pim(sb, user, &["--json", "mfa", "status"])
        .assert_success()
        .json()
}

/// alice enrolled; her authenticator and her recovery codes.
fn enrolled_alice(sb: &Sandbox) -> (Authenticator, Vec<String>) {
    let enroll = pim(sb, "alice", &["--json", "mfa", "enroll"]);
    let doc = enroll.assert_success().json();
    assert_eq!(doc["new_device"], false, "{enroll}");
    let mut phone = Authenticator::new(doc["secret"].as_str().unwrap());
    let code = phone.next_code(sb);
    let confirm = pim_with_code(sb, "alice", &["--json", "mfa", "confirm"], &code);
    let codes = strings(&confirm.assert_success().json()["recovery_codes"]);
    assert_eq!(codes.len(), 10, "{confirm}");
    (phone, codes)
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The outcomes of `action`'s records, oldest first, as (actor, outcome), read by root.
fn outcomes(sb: &Sandbox, action: &str) -> Vec<(String, String)> {
    sb.audit_records("root", &["--action", action])
        .into_iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or_default().to_string(),
                r["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pair(actor: &str, outcome: &str) -> (String, String) {
    (actor.to_string(), outcome.to_string())
}

#[test]
fn given_an_enrolled_user_then_a_change_of_device_needs_the_current_code_and_the_old_one_works_until_the_new_one_is_confirmed(
) {
    let sb = site();
    let (mut phone, _) = enrolled_alice(&sb);
    let old_secret = phone.secret().to_string();

    // Without a code of the current device, no new secret: a wrong one, or none at all.
    pim_with_code(
        &sb,
        "alice",
        &["mfa", "enroll"],
        &wrong_code(&sb, &old_secret),
    )
    .assert_status(1)
    .assert_stderr_contains("attempts left");
    pim(&sb, "alice", &["mfa", "enroll"])
        .assert_status(1)
        .assert_stderr_contains("already enrolled")
        .assert_stderr_contains("--code");
    // Straight to pimd, past the client.
    sb.call_pimd("alice", "MfaRotate", "s", &[""])
        .assert_failure();
    let status = mfa_status(&sb, "alice");
    assert_eq!(
        (&status["enrolled"], &status["pending"]),
        (&Value::Bool(true), &Value::Bool(false)),
        "{status}"
    );

    let code = phone.next_code(&sb);
    let rotate = pim_with_code(&sb, "alice", &["--json", "mfa", "enroll"], &code);
    let doc = rotate.assert_success().json();
    assert_eq!(doc["new_device"], true, "{rotate}");
    let new_secret = doc["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, old_secret);
    let status = mfa_status(&sb, "alice");
    assert_eq!(
        (&status["enrolled"], &status["pending"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{status}"
    );

    // Until the new device is confirmed, the old one is the one that counts.
    let mut new_phone = Authenticator::new(&new_secret);
    activate(&sb, &current_code(&sb, &new_secret)).assert_status(1);
    activate(&sb, &phone.next_code(&sb)).assert_success();
    pim(&sb, "alice", &["deactivate", "admin"]).assert_success();
    // A code of the old device does not confirm the new one.
    pim_with_code(
        &sb,
        "alice",
        &["mfa", "confirm"],
        &current_code(&sb, &old_secret),
    )
    .assert_status(1)
    .assert_stderr_contains("a code of the new device");

    let confirm = pim_with_code(&sb, "alice", &["mfa", "confirm"], &new_phone.next_code(&sb));
    confirm
        .assert_success()
        .assert_stdout_contains("New device confirmed");
    let status = mfa_status(&sb, "alice");
    assert_eq!(
        (&status["pending"], &status["recovery_codes_left"]),
        (&Value::Bool(false), &Value::from(10)),
        "{status}"
    );
    activate(&sb, &current_code(&sb, &old_secret)).assert_status(1);
    activate(&sb, &new_phone.next_code(&sb)).assert_success();

    assert_eq!(
        outcomes(&sb, "mfa-rotate"),
        [
            pair("alice", "refused"),
            pair("alice", "refused"),
            pair("alice", "success")
        ]
    );
    let confirms = outcomes(&sb, "mfa-confirm");
    assert_eq!(
        confirms.last(),
        Some(&pair("alice", "success")),
        "{confirms:?}"
    );
}

#[test]
fn given_new_recovery_codes_asked_then_only_a_valid_code_replaces_them_and_the_old_ones_stop_working(
) {
    let sb = site();
    // Not enrolled is said before any code is asked for.
    pim(&sb, "mallory", &["mfa", "recovery-codes"])
        .assert_status(1)
        .assert_stderr_contains("pim mfa enroll");
    let (mut phone, old) = enrolled_alice(&sb);

    pim_with_code(
        &sb,
        "alice",
        &["mfa", "recovery-codes"],
        &wrong_code(&sb, phone.secret()),
    )
    .assert_status(1)
    .assert_stderr_contains("attempts left");
    pim(&sb, "alice", &["mfa", "recovery-codes"])
        .assert_status(1)
        .assert_stderr_contains("--code");
    // Straight to pimd, past the client: no code, no codes.
    sb.call_pimd("alice", "MfaRecoveryCodes", "s", &[""])
        .assert_failure();
    assert_eq!(mfa_status(&sb, "alice")["recovery_codes_left"], 10);

    let out = pim_with_code(
        &sb,
        "alice",
        &["--json", "mfa", "recovery-codes"],
        &phone.next_code(&sb),
    );
    let new = strings(&out.assert_success().json()["recovery_codes"]);
    assert_eq!(new.len(), 10, "{out}");
    assert!(new.iter().all(|c| !old.contains(c)), "{new:?} {old:?}");
    activate(&sb, &old[0]).assert_status(1);
    activate(&sb, &new[0]).assert_success();
    assert_eq!(mfa_status(&sb, "alice")["recovery_codes_left"], 9);

    let records = outcomes(&sb, "mfa-recovery-codes");
    assert_eq!(
        records,
        [
            pair("alice", "refused"),
            pair("alice", "refused"),
            pair("alice", "refused"),
            pair("alice", "success")
        ]
    );
}

#[test]
fn given_a_locked_out_user_then_only_an_administrator_ends_the_lockout_and_the_enrolment_stays() {
    let sb = site();
    let (mut phone, _) = enrolled_alice(&sb);
    for _ in 0..3 {
        activate(&sb, &wrong_code(&sb, phone.secret())).assert_status(1);
    }
    activate(&sb, &phone.next_code(&sb))
        .assert_status(1)
        .assert_stderr_contains("pim admin mfa-unlock");
    let locked = || {
        mfa_status(&sb, "alice")["locked_until_unix"]
            .as_i64()
            .is_some_and(|t| t > now_unix())
    };
    assert!(locked());

    for who in ["mallory", "alice"] {
        pim(&sb, who, &["admin", "mfa-unlock", "alice"])
            .assert_status(1)
            .assert_stderr_contains("administrator");
    }
    sb.call_pimd("mallory", "AdminMfaUnlock", "s", &["alice"])
        .assert_failure();
    assert!(locked());

    pim(&sb, "erin", &["admin", "mfa-unlock", "alice"])
        .assert_success()
        .assert_stdout_contains("Ended the MFA lockout of alice");
    assert!(!locked());
    activate(&sb, &phone.next_code(&sb)).assert_success();
    pim(&sb, "erin", &["admin", "mfa-unlock", "alice"])
        .assert_status(1)
        .assert_stderr_contains("not locked out");

    assert_eq!(
        outcomes(&sb, "admin-mfa-unlock"),
        [
            pair("mallory", "refused"),
            pair("alice", "refused"),
            pair("mallory", "refused"),
            pair("erin", "success"),
            pair("erin", "refused")
        ]
    );
}

#[test]
fn given_a_leaked_recovery_code_then_it_gives_no_new_recovery_codes_and_a_change_of_device_by_it_is_loud(
) {
    let sb = site();
    let (_, codes) = enrolled_alice(&sb);
    let mut erin_watch = sb.spawn("erin", &["pim", "watch"]);
    let mallory_watch = sb.spawn("mallory", &["pim", "watch"]);
    for watch in [&erin_watch, &mallory_watch] {
        sb.wait_until("the watch to follow events", WAIT, || {
            watch.stderr_so_far().contains("following events")
        });
    }

    // Whoever holds one recovery code cannot mint a fresh set (lasting control)...
    pim_with_code(&sb, "alice", &["mfa", "recovery-codes"], &codes[0])
        .assert_status(1)
        .assert_stderr_contains("TOTP code of your current device");
    sb.call_pimd("alice", "MfaRecoveryCodes", "s", &[&codes[0]])
        .assert_failure();
    assert_eq!(mfa_status(&sb, "alice")["recovery_codes_left"], 10);

    // ...and moving the MFA to a new device with it (the lost-phone path) is heard of at once.
    pim_with_code(&sb, "alice", &["--json", "mfa", "enroll"], &codes[1]).assert_success();
    erin_watch.wait_for_stdout("mfa-device-change-by-recovery-code", WAIT);
    sb.wait_for_syslog_line("the warning", WAIT, |l| {
        l.starts_with("<84>")
            && l.contains("change of MFA device for alice was started with a recovery code")
    });
    let rotate = sb.audit_records("root", &["--action", "mfa-rotate"]);
    assert!(
        rotate.iter().any(|r| r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("PROVED BY A RECOVERY CODE")),
        "{rotate:#?}"
    );
    // `pim mfa status` shows the change waiting, until when, and when the codes were issued.
    let status = mfa_status(&sb, "alice");
    assert_eq!(status["recovery_codes_left"], 9, "{status}");
    assert!(
        status["device_change_until_unix"]
            .as_i64()
            .is_some_and(|t| t > now_unix()),
        "{status}"
    );
    assert!(
        status["recovery_codes_issued_at_unix"]
            .as_i64()
            .is_some_and(|t| t <= now_unix()),
        "{status}"
    );
    pim(&sb, "alice", &["mfa", "status"])
        .assert_success()
        .assert_stdout_contains("a new device waits for its first code until")
        .assert_stdout_contains("Recovery codes from:");
    let mallory_saw = mallory_watch.kill();
    assert!(
        !mallory_saw.stdout.contains("mfa-device-change"),
        "{mallory_saw}"
    );
    erin_watch.kill();
}

#[test]
fn given_a_locked_out_administrator_then_they_cannot_end_their_own_lockout_nor_reset_their_own_mfa()
{
    let sb = site();
    let mut phone = sb.enroll_mfa("erin");
    for _ in 0..3 {
        pim_with_code(
            &sb,
            "erin",
            &["mfa", "recovery-codes"],
            &wrong_code(&sb, phone.secret()),
        )
        .assert_status(1);
    }
    let locked = || {
        mfa_status(&sb, "erin")["locked_until_unix"]
            .as_i64()
            .is_some_and(|t| t > now_unix())
    };
    assert!(locked());
    pim(&sb, "erin", &["admin", "mfa-unlock", "erin"])
        .assert_status(1)
        .assert_stderr_contains("cannot end your own lockout");
    sb.call_pimd("erin", "AdminMfaUnlock", "s", &["erin"])
        .assert_failure();
    pim(&sb, "erin", &["admin", "mfa-reset", "erin"])
        .assert_status(1)
        .assert_stderr_contains("cannot reset your own MFA");
    assert!(locked());
    assert!(mfa_status(&sb, "erin")["enrolled"] == true);
    assert_eq!(
        outcomes(&sb, "admin-mfa-unlock"),
        [pair("erin", "refused"), pair("erin", "refused")]
    );
    assert_eq!(outcomes(&sb, "admin-mfa-reset"), [pair("erin", "refused")]);
    // Root still may.
    pim(&sb, "root", &["admin", "mfa-unlock", "erin"]).assert_success();
    assert!(!locked());
    pim_with_code(
        &sb,
        "erin",
        &["mfa", "recovery-codes"],
        &phone.next_code(&sb),
    )
    .assert_success();
}
