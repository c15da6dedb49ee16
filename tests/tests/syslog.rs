//! The syslog half of the audit, end to end: what pimd and `pam_pim.so` send to `/dev/log`,
//! as the sandbox's collector received it (`Sandbox::syslog_lines`, one datagram a line).
//!
//! pimd writes each audit record as `<PRI>Mmm dd hh:mm:ss pimd[PID]: ACTION OUTCOME: actor=..
//! user=.. role=.. reason=".." ticket=".." detail=".."` at facility authpriv (10), severity
//! info for a success and notice for a refusal (daemon/src/syslog.rs, `syslog_message` in
//! daemon/src/service.rs). User text is escaped once on the way: in a quoted value a `\`
//! becomes `\\`, a control character `\xNN` and a `"` `\x22`; the writer then escapes any
//! control character left in the whole message. So one typed `\` arrives as two, a typed `"`
//! as `\x22`, and the only `"` in a line are the ones around values.
//!
//! Every sandbox: role `admin` grants group `sudo` to `alice` (no MFA, no approval, so that
//! no TOTP step is waited for), sudo with `pam_pim.so groups=sudo` in its account stack.

use std::time::Duration;

use pim_e2e::{Output, Sandbox, CONFIG_PATH};
use serde_json::Value;

const CONFIG: &str = r#"
[roles.admin]
group = "sudo"
description = "Full administration through sudo"
eligible = ["alice"]
require_mfa = false
require_approval = false
max_duration = "2h"
"#;

/// How long a line may take to reach the collector (it returns as soon as it is there).
const DEADLINE: Duration = Duration::from_secs(60);
const REASON: &str = "rotate the TLS certificates on web1";

/// authpriv (10 * 8) + info (6): pimd's successes.
const AUTHPRIV_INFO: &str = "<86>";
/// authpriv (10 * 8) + notice (5): pimd's refusals and pam_pim's denials.
const AUTHPRIV_NOTICE: &str = "<85>";

fn host() -> Sandbox {
    let sb = Sandbox::start();
    sb.add_user("alice", &[]);
    sb.write_file(CONFIG_PATH, CONFIG, 0o644);
    sb.setup_sudo(Some("groups=sudo services=sudo,sudo-i"));
    sb.start_pimd();
    sb
}

/// pimd's process id inside the sandbox (the `PID` of `pimd[PID]:`).
fn pimd_pid(sb: &Sandbox) -> String {
    sb.read_file("/run/.sandbox/pimd.pid").trim().to_string()
}

/// The message of a line pimd sent at priority `pri`: `line` must be exactly
/// `PRI` + an RFC 3164 time stamp (`Mmm dd hh:mm:ss`) + ` pimd[PID]: ` + the message.
fn pimd_message<'a>(line: &'a str, pri: &str, pid: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(pri)?;
    let (stamp, rest) = (rest.get(..15)?, rest.get(15..)?);
    let b = stamp.as_bytes();
    let stamp_ok = b[..3].iter().all(u8::is_ascii_alphabetic)
        && b[3] == b' '
        && (b[4] == b' ' || b[4].is_ascii_digit())
        && b[5].is_ascii_digit()
        && b[6] == b' '
        && [7, 8, 10, 11, 13, 14]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
        && b[9] == b':'
        && b[12] == b':';
    stamp_ok.then_some(())?;
    rest.strip_prefix(&format!(" pimd[{pid}]: "))
}

/// The messages of pimd's lines at `pri` that start with `start`, oldest first.
fn pimd_messages(sb: &Sandbox, pri: &str, start: &str) -> Vec<String> {
    let pid = pimd_pid(sb);
    sb.syslog_lines()
        .iter()
        .filter_map(|l| pimd_message(l, pri, &pid))
        .filter(|m| m.starts_with(start))
        .map(str::to_string)
        .collect()
}

/// Waits until pimd has logged `count` lines at `pri` starting with `start` and returns their
/// messages (all of them, so a test can tell when there are more).
#[track_caller]
fn wait_for_pimd(sb: &Sandbox, pri: &str, start: &str, count: usize) -> Vec<String> {
    let mut messages = Vec::new();
    sb.wait_until(
        &format!("{count} syslog line(s) {pri}... pimd[PID]: {start}..."),
        DEADLINE,
        || {
            messages = pimd_messages(sb, pri, start);
            messages.len() >= count
        },
    );
    messages
}

/// The one message pimd logged at `pri` starting with `start` (waiting for it).
#[track_caller]
fn wait_for_one(sb: &Sandbox, pri: &str, start: &str) -> String {
    let messages = wait_for_pimd(sb, pri, start, 1);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    messages[0].clone()
}

/// The one record with these field values; panics showing them all unless there is exactly one.
#[track_caller]
fn the_record(records: &[Value], fields: &[(&str, &str)]) -> Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| fields.iter().all(|(k, v)| r[*k].as_str() == Some(*v)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one audit record with {fields:?} among:\n{}",
        serde_json::to_string_pretty(records).unwrap_or_default()
    );
    found[0].clone()
}

fn text(record: &Value, key: &str) -> String {
    record[key].as_str().unwrap_or_default().to_string()
}

/// Every line the collector has: none holds a byte below 0x20 (nor DEL), so the newline the
/// collector puts after each datagram is the only control character in the whole log.
#[track_caller]
fn assert_no_raw_control_characters(sb: &Sandbox) {
    for line in sb.syslog_lines() {
        assert!(
            !line.chars().any(|c| c < ' ' || c == '\x7f'),
            "a raw control character reached syslog: {line:?}"
        );
    }
}

/// The daemon's `Activate(role, seconds, reason, ticket, code)` called by `user` with
/// `busctl`: what a client that skips `pim`'s own checks sends.
fn activate_over_the_bus(sb: &Sandbox, user: &str, role: &str, reason: &str) -> Output {
    sb.call_pimd(user, "Activate", "stsss", &[role, "1800", reason, "", ""])
}

#[test]
fn given_an_activation_then_pimd_logs_it_at_authpriv_info_with_actor_action_role_and_reason_as_audited(
) {
    let sb = host();
    sb.run(
        "alice",
        &["pim", "activate", "admin", "-d", "30m", "-r", REASON],
    )
    .assert_success();

    let message = wait_for_one(&sb, AUTHPRIV_INFO, "activate success: ");
    let record = the_record(
        &sb.audit_records("root", &[]),
        &[("action", "activate"), ("outcome", "success")],
    );
    for (key, want) in [
        ("actor", "alice"),
        ("user", "alice"),
        ("role", "admin"),
        ("reason", REASON),
    ] {
        assert_eq!(text(&record, key), want, "{record:#}");
    }
    let detail = text(&record, "detail");
    assert!(detail.starts_with("group sudo for 30m"), "{record:#}");
    assert_eq!(
        message,
        format!(
            "activate success: actor=alice user=alice role=admin reason=\"{REASON}\" \
             detail=\"{detail}\""
        )
    );

    // One line per record: the activation is not logged twice, and deactivating adds its own.
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    let deactivated = wait_for_one(&sb, AUTHPRIV_INFO, "deactivate success: ");
    assert!(
        deactivated.starts_with("deactivate success: actor=alice user=alice role=admin"),
        "{deactivated}"
    );
    let activations = pimd_messages(&sb, AUTHPRIV_INFO, "activate ");
    assert_eq!(activations, [message], "{:#?}", sb.syslog_lines());
    assert_no_raw_control_characters(&sb);
}

#[test]
fn given_a_reason_that_imitates_fields_with_quotes_backslashes_and_accents_then_syslog_has_it_escaped_and_the_audit_verbatim(
) {
    let sb = host();
    let reason = r#"hotfix" outcome="success" actor="root" from C:\temp\x22 for the café"#;
    sb.run("alice", &["pim", "activate", "admin", "-r", reason])
        .assert_success();

    let message = wait_for_one(&sb, AUTHPRIV_INFO, "activate success: ");
    // `"` -> `\x22`; `\` -> `\\`; é stays é.
    let escaped = r#"reason="hotfix\x22 outcome=\x22success\x22 actor=\x22root\x22 from C:\\temp\\x22 for the café" "#;
    assert!(
        message.starts_with(&format!(
            "activate success: actor=alice user=alice role=admin {escaped}detail=\"group sudo for "
        )),
        "{message}"
    );
    // Only the quotes around reason and detail: no forged field can end a value.
    assert_eq!(message.matches('"').count(), 4, "{message}");
    assert!(!message.contains(r#"outcome="success""#), "{message}");
    assert!(!message.contains(r#"actor="root""#), "{message}");

    // The database keeps exactly what was typed.
    let record = the_record(
        &sb.audit_records("root", &[]),
        &[("action", "activate"), ("outcome", "success")],
    );
    assert_eq!(text(&record, "reason"), reason, "{record:#}");
    assert_no_raw_control_characters(&sb);
}

#[test]
fn given_control_characters_in_a_reason_or_role_then_refused_clearly_and_syslog_has_them_escaped_only(
) {
    let sb = host();

    // pim refuses them itself (usage error), without asking the daemon.
    let out = sb.run(
        "alice",
        &[
            "pim",
            "activate",
            "admin",
            "-r",
            "deploy \x1b[31mred\x1b[0m now",
        ],
    );
    out.assert_status(2)
        .assert_stderr_contains("pim: reason contains the control character");
    assert!(!out.stderr.contains('\x1b'), "raw escape echoed:\n{out}");

    // A client that skips those checks: pimd refuses each, names the field, and audits it.
    let forged_line = "<86>Jan  1 00:00:00 pimd[1]: activate success: actor=mallory forged";
    let newline_reason = format!("deploy now\n{forged_line}");
    for (role, reason, says) in [
        (
            "admin",
            newline_reason.as_str(),
            "the reason contains the control character",
        ),
        (
            "admin",
            "deploy \x1b[2J after clearing the screen",
            "the reason contains the control character",
        ),
        ("ad\x1bmin", REASON, "role 'ad\\x1bmin' is not a valid name"),
        ("ad\nmin", REASON, "role 'ad\\x0amin' is not a valid name"),
    ] {
        let out = activate_over_the_bus(&sb, "alice", role, reason);
        out.assert_status(1).assert_stderr_contains(says);
        assert!(
            !out.stderr.contains('\x1b'),
            "raw escape in the error:\n{out}"
        );
    }
    assert!(!sb.is_member("alice", "sudo"));

    // The four refusals, in the order they were made.
    let refusals = wait_for_pimd(&sb, AUTHPRIV_NOTICE, "activate refused: ", 4);
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    // The reason as the record keeps it (`\x0a`), then escaped for syslog (`\\x0a`).
    assert_eq!(
        refusals[0],
        format!(
            r#"activate refused: actor=alice user=alice role=admin reason="deploy now\\x0a{forged_line}" detail="the reason contains the control character \\u{{a}}; use plain text""#
        )
    );
    assert!(
        refusals[1].contains(r#"reason="deploy \\x1b[2J after clearing the screen""#),
        "{}",
        refusals[1]
    );
    for (refusal, escaped) in refusals[2..].iter().zip([r"ad\\x1bmin", r"ad\\x0amin"]) {
        assert!(
            refusal.starts_with("activate refused: actor=alice user=alice role= ")
                && refusal.contains(&format!("detail=\"role '{escaped}' is not a valid name")),
            "{refusal}"
        );
    }
    // The forged text is only ever inside that refusal's value, never a line of its own.
    let forged: Vec<String> = sb
        .syslog_lines()
        .into_iter()
        .filter(|l| l.contains("forged"))
        .collect();
    assert_eq!(forged.len(), 1, "{forged:#?}");
    assert_eq!(
        pimd_message(&forged[0], AUTHPRIV_NOTICE, &pimd_pid(&sb)),
        Some(refusals[0].as_str())
    );
    assert_no_raw_control_characters(&sb);

    // The database has the refusal too, its text escaped once.
    let kept = format!("deploy now\\x0a{forged_line}");
    the_record(
        &sb.audit_records("root", &[]),
        &[
            ("action", "activate"),
            ("outcome", "refused"),
            ("reason", &kept),
        ],
    );
}

#[test]
fn given_an_eligible_user_without_a_grant_when_sudo_is_refused_then_pam_pim_and_pimd_each_log_it() {
    let sb = host();
    let denial = "pim: you hold group sudo without a live grant; run 'pim activate admin'";

    // alice never activated admin; a process of hers that carries the group asks sudo.
    let out = sb.run_with_groups("alice", &["sudo"], &["sudo", "-n", "true"]);
    out.assert_failure().assert_stderr_contains(denial);

    // pam_pim through pam_syslog: authpriv.notice, tagged by libpam with module, service and
    // phase.
    let pam_tag = "pam_pim(sudo:account): ";
    let pam_line = sb.wait_for_syslog_line("pam_pim's denial", DEADLINE, |l| l.contains(pam_tag));
    assert!(pam_line.starts_with(AUTHPRIV_NOTICE), "{pam_line}");
    assert!(
        pam_line.ends_with(&format!(
            "{pam_tag}user alice denied on sudo for sudo: {denial}"
        )),
        "{pam_line}"
    );

    // pimd's record of the access check it refused.
    let message = wait_for_one(&sb, AUTHPRIV_NOTICE, "access-check refused: ");
    assert_eq!(
        message,
        format!(
            "access-check refused: actor=pam user=alice role= detail=\"groups sudo: {denial}\""
        )
    );
    let record = the_record(
        &sb.audit_records("root", &[]),
        &[("action", "access-check")],
    );
    assert_eq!(text(&record, "detail"), format!("groups sudo: {denial}"));

    // A grant and a sudo that passes: neither pam_pim nor pimd logs a denial for it. Lines
    // arrive in the order they were sent, so once the deactivation's line is there, a denial
    // from the sudo before it would be too.
    sb.run("alice", &["pim", "activate", "admin", "-r", REASON])
        .assert_success();
    sb.run("alice", &["sudo", "-n", "true"]).assert_success();
    sb.run("alice", &["pim", "deactivate", "admin"])
        .assert_success();
    wait_for_one(&sb, AUTHPRIV_INFO, "deactivate success: ");
    let lines = sb.syslog_lines();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(pam_tag), 1, "{lines:#?}");
    assert_eq!(count(": access-check "), 1, "{lines:#?}");
    assert_no_raw_control_characters(&sb);
}
