//! The tamper-evident audit (SPEC "Audit integrity"), end to end: the chain pimd writes,
//! `pim audit verify` (in pimd for admins and auditors, or over an export with `--file`), and
//! root's tampering with `sqlite3` after dropping the append-only triggers: an edited row, a
//! deleted row, a cut tail (caught against the head pimd logged to syslog, and against its
//! head file), retention's pruning (which still verifies), a refusal for others.
//!
//! Every sandbox: alice may activate `admin` (group sudo) without MFA or approval, audra is an
//! auditor, hank is neither admin nor auditor.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pim_e2e::{Output, Sandbox, CONFIG_PATH, SANDBOX_DIR};
use serde_json::Value;

const DB: &str = "/var/lib/pim/pim.db";
const HEAD_FILE: &str = "/var/lib/pim/pim.db.audit-head";
const DEADLINE: Duration = Duration::from_secs(60);
const REASON: &str = "rotate the TLS certificates";

fn config(extra: &str) -> String {
    format!(
        r#"[daemon]
admins = ["%pim-admins"]
auditors = ["%pim-auditors"]
{extra}
[roles.admin]
group = "sudo"
eligible = ["alice"]
require_mfa = false
require_approval = false
"#
    )
}

fn host(extra: &str) -> Sandbox {
    let sb = Sandbox::start();
    for group in ["pim-admins", "pim-auditors"] {
        sb.add_group(group);
    }
    sb.add_user("alice", &[]);
    sb.add_user("audra", &["pim-auditors"]);
    sb.add_user("hank", &[]);
    sb.write_file(CONFIG_PATH, &config(extra), 0o644);
    sb.start_pimd();
    sb
}

/// `rounds` activations and deactivations by alice: two records each.
fn activity(sb: &Sandbox, rounds: usize) {
    for _ in 0..rounds {
        sb.run(
            "alice",
            &["pim", "activate", "admin", "-r", REASON, "-d", "10m"],
        )
        .assert_success();
        sb.run("alice", &["pim", "deactivate", "admin"])
            .assert_success();
    }
}

/// The number of records in the log, as an auditor reads it.
fn record_ids(sb: &Sandbox) -> Vec<i64> {
    sb.audit_records("audra", &[])
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// `sqlite3 DB SQL` as root, with the append-only triggers dropped first.
fn tamper(sb: &Sandbox, sql: &str) {
    let script = format!(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; {sql}"
    );
    sb.run("root", &["sqlite3", DB, &script]).assert_success();
}

fn verify(sb: &Sandbox, user: &str, args: &[&str]) -> Output {
    let mut argv = vec!["pim", "--json", "audit", "verify"];
    argv.extend_from_slice(args);
    sb.run(user, &argv)
}

/// The break `pim --json audit verify` reported (exit 1): kind and record.
fn broken(out: &Output) -> (String, i64, String) {
    out.assert_status(1);
    let doc = out.json();
    assert_eq!(doc["ok"], Value::Bool(false), "{doc}");
    (
        doc["break"]["kind"].as_str().unwrap().to_string(),
        doc["break"]["record"].as_i64().unwrap(),
        doc["break"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn given_an_untouched_store_then_verify_passes_and_says_how_many_records_it_checked() {
    let sb = host("");
    activity(&sb, 3);
    let ids = record_ids(&sb);
    assert!(ids.len() >= 6, "{ids:?}");
    let out = verify(&sb, "audra", &[]);
    out.assert_success();
    let doc = out.json();
    assert_eq!(doc["ok"], Value::Bool(true), "{doc}");
    assert_eq!(doc["checked"].as_u64(), Some(ids.len() as u64), "{doc}");
    assert_eq!(doc["genesis"].as_i64(), Some(1), "{doc}");
    // In text, for people; its own record (audit-verify) was added, and holds too.
    sb.run("audra", &["pim", "audit", "verify"])
        .assert_success()
        .assert_stdout_contains(&format!(
            "the audit chain holds: {} record(s) checked, 1 to {}",
            ids.len() + 1,
            ids.len() + 1
        ));
    // Every record carries its predecessor's hash, in the export too.
    let records = sb.audit_records("audra", &[]);
    for pair in records.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["hash"], "{pair:?}");
    }
}

#[test]
fn given_a_row_edited_with_sqlite3_then_verify_exits_1_naming_it() {
    let sb = host("");
    activity(&sb, 3);
    tamper(
        &sb,
        "UPDATE audit SET reason = 'nothing to see' WHERE id = 3;",
    );
    let (kind, record, _) = broken(&verify(&sb, "audra", &[]));
    assert_eq!((kind.as_str(), record), ("edited", 3));
    sb.run("audra", &["pim", "audit", "verify"])
        .assert_status(1)
        .assert_stdout_contains("the audit chain is broken at record 3 (edited)");
}

#[test]
fn given_a_row_deleted_with_sqlite3_then_verify_exits_1_naming_the_missing_record() {
    let sb = host("");
    activity(&sb, 3);
    tamper(&sb, "DELETE FROM audit WHERE id = 4;");
    let (kind, record, detail) = broken(&verify(&sb, "audra", &[]));
    assert_eq!((kind.as_str(), record), ("deleted", 4), "{detail}");
    assert!(detail.contains("record 4 is missing"), "{detail}");
}

#[test]
fn given_a_row_inserted_with_sqlite3_then_verify_exits_1_naming_it() {
    let sb = host("");
    activity(&sb, 2);
    let last = *record_ids(&sb).last().unwrap();
    tamper(
        &sb,
        "INSERT INTO audit (at, actor, action, user, role, outcome, reason, ticket, detail) \
         VALUES (strftime('%s'), 'bob', 'approve', 'alice', 'admin', 'success', 'ok', '', '');",
    );
    let (kind, record, _) = broken(&verify(&sb, "audra", &[]));
    assert_eq!((kind.as_str(), record), ("inserted", last + 1));
}

/// Some activity, then a restart of pimd: the head the new pimd logged at its start (see
/// [`start_head`]).
fn head_after_restart(sb: &Sandbox) -> (i64, String) {
    activity(sb, 4);
    sb.kill_pimd("TERM");
    sb.start_pimd();
    start_head(sb)
}

/// The head the running pimd logged to syslog at its start, once its start-up writes were
/// done (as it does every 100 records and every 5 minutes): `(ID, "ID:HASH")`. Earlier
/// lines are an earlier pimd's (at its start, after the alert its configuration raised, and
/// at its stop).
fn start_head(sb: &Sandbox) -> (i64, String) {
    let pid = sb.read_file(&format!("{SANDBOX_DIR}/pimd.pid"));
    let pimd = format!("pimd[{}]: ", pid.trim());
    let line = sb.wait_for_syslog_line("the running pimd's audit-head", DEADLINE, |l| {
        l.contains(&pimd) && l.contains("audit-head ")
    });
    let head = line
        .rsplit("audit-head ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let id = head.split(':').next().unwrap().parse().unwrap();
    (id, head)
}

#[test]
fn given_a_record_written_as_pimd_starts_then_the_head_it_logs_covers_it_and_its_cut_is_caught() {
    let sb = host("");
    sb.kill_pimd("TERM");
    // While pimd is down, root puts hank in sudo by hand: the restarted pimd raises
    // member-outside-pim as it starts, before anyone calls it.
    sb.run("root", &["gpasswd", "-a", "hank", "sudo"])
        .assert_success();
    sb.start_pimd();
    let (id, head) = start_head(&sb);
    let records = sb.audit_records("audra", &[]);
    let last = records.last().unwrap();
    assert_eq!(last["id"].as_i64(), Some(id), "{records:?}");
    assert_eq!(last["action"], "alert-raise", "{last}");
    assert_eq!(sb.read_file(HEAD_FILE).trim(), head);
    // Root cuts that record and pimd's own copy of the head: the head in syslog catches it.
    tamper(&sb, &format!("DELETE FROM audit WHERE id = {id};"));
    sb.run("root", &["rm", "-f", HEAD_FILE]).assert_success();
    let (kind, record, detail) = broken(&verify(&sb, "audra", &["--head", &head]));
    assert_eq!((kind.as_str(), record), ("missing-tail", id), "{detail}");
}

#[test]
fn given_a_tail_truncated_and_the_head_file_removed_then_the_head_in_syslog_catches_it() {
    let sb = host("");
    let (id, head) = head_after_restart(&sb);
    assert_eq!(id, *record_ids(&sb).last().unwrap());
    assert_eq!(sb.read_file(HEAD_FILE).trim(), head);
    // Root cuts the last three records and removes pimd's own copy of the head.
    tamper(&sb, &format!("DELETE FROM audit WHERE id > {};", id - 3));
    sb.run("root", &["rm", "-f", HEAD_FILE]).assert_success();
    let (kind, record, detail) = broken(&verify(&sb, "audra", &["--head", &head]));
    assert_eq!(
        (kind.as_str(), record),
        ("missing-tail", id - 2),
        "{detail}"
    );
    assert!(detail.contains("--head"), "{detail}");
}

#[test]
fn given_a_tail_truncated_then_the_head_file_catches_it_and_pimd_keeps_the_file() {
    let sb = host("");
    let (id, head) = head_after_restart(&sb);
    sb.kill_pimd("TERM");
    tamper(&sb, &format!("DELETE FROM audit WHERE id > {};", id - 2));
    sb.start_pimd();
    // At start pimd finds its head file ahead of the log: it says so and keeps the file.
    sb.wait_for_syslog_line("the head file's break", DEADLINE, |l| {
        l.contains("is not in the audit log any more")
    });
    assert_eq!(sb.read_file(HEAD_FILE).trim(), head);
    let (kind, record, detail) = broken(&verify(&sb, "audra", &[]));
    assert_eq!(
        (kind.as_str(), record),
        ("missing-tail", id - 1),
        "{detail}"
    );
    assert!(detail.contains("the head file"), "{detail}");
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

#[test]
fn given_keep_then_old_records_are_pruned_with_a_checkpoint_and_the_chain_verifies() {
    let sb = host("\n[audit]\nkeep = \"2s\"\n");
    activity(&sb, 2);
    let before = record_ids(&sb);
    let last_old = *before.last().unwrap();
    let made = now_unix();
    sb.wait_until("the records to be older than keep", DEADLINE, || {
        now_unix() > made + 3
    });
    // A reload reconciles at once (else the next round, within a minute).
    sb.kill_pimd("HUP");
    sb.wait_until("retention's checkpoint", DEADLINE, || {
        sb.audit_records("audra", &[])
            .iter()
            .any(|r| r["action"] == "audit-pruned")
    });
    let records = sb.audit_records("audra", &[]);
    assert!(records[0]["id"].as_i64().unwrap() > last_old, "{records:?}");
    let checkpoint = records
        .iter()
        .find(|r| r["action"] == "audit-pruned")
        .unwrap();
    assert!(
        checkpoint["detail"]
            .as_str()
            .unwrap()
            .starts_with("records 1 to "),
        "{checkpoint}"
    );
    let out = verify(&sb, "audra", &[]);
    out.assert_success();
    let doc = out.json();
    assert!(doc["pruned_through"].as_i64().unwrap() >= last_old, "{doc}");
}

#[test]
fn given_someone_neither_admin_nor_auditor_then_verify_is_refused() {
    let sb = host("");
    activity(&sb, 1);
    sb.run("hank", &["pim", "audit", "verify"])
        .assert_status(1)
        .assert_stderr_contains("only admins and auditors may verify the audit log");
    // Straight over the bus, past the client: the same.
    let out = sb.call_pimd("hank", "VerifyAudit", "s", &[""]);
    out.assert_failure()
        .assert_stderr_contains("admins and auditors");
    // The refusal is audited.
    assert!(sb
        .audit_records("audra", &[])
        .iter()
        .any(|r| r["action"] == "audit-verify" && r["outcome"] == "refused"));
}

#[test]
fn given_an_export_then_a_copy_verifies_without_pimd_and_an_edited_copy_does_not() {
    let sb = host("");
    activity(&sb, 2);
    let export = sb.run("audra", &["pim", "--json", "audit"]);
    export.assert_success();
    sb.write_file("/tmp/export.json", &export.stdout, 0o644);
    let (_, head) = {
        let last = &export.json()["records"].as_array().unwrap().clone();
        let last = last.last().unwrap();
        (
            0,
            format!("{}:{}", last["id"], last["hash"].as_str().unwrap()),
        )
    };
    sb.kill_pimd("TERM");
    sb.run(
        "hank",
        &[
            "pim",
            "audit",
            "verify",
            "--file",
            "/tmp/export.json",
            "--head",
            &head,
        ],
    )
    .assert_success()
    .assert_stdout_contains("the audit chain in /tmp/export.json holds");
    let edited = export.stdout.replacen(REASON, "nothing to see", 1);
    sb.write_file("/tmp/edited.json", &edited, 0o644);
    let out = sb.run(
        "hank",
        &[
            "pim",
            "--json",
            "audit",
            "verify",
            "--file",
            "/tmp/edited.json",
        ],
    );
    let (kind, _, _) = broken(&out);
    assert_eq!(kind, "edited");
}
