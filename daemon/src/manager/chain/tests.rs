//! Tests of the audit chain's keeping: the head, `pim audit verify`, retention.

use super::*;
use crate::manager::test_support::*;

fn head_lines(e: &mut Env) -> Vec<String> {
    e.m.take_outbox()
        .syslog
        .into_iter()
        .map(|(_, line)| line)
        .collect()
}

/// A head file in a directory of its own, removed by the caller.
fn temp_head_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pim-chain-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("pim.db.audit-head")
}

#[test]
fn given_the_database_path_then_the_head_file_is_beside_it() {
    assert_eq!(
        head_file_of(Path::new("/var/lib/pim/pim.db")),
        Path::new("/var/lib/pim/pim.db.audit-head")
    );
}

#[test]
fn given_an_auditor_then_verify_counts_the_records_and_is_audited() {
    let mut e = env();
    e.enrol("alice");
    let audra = e.who("audra");
    let before = e.audit_log().len() as u64;
    let report = e.m.verify_audit(&audra, "").unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, before);
    let done = e.audited("audit-verify");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].outcome, "success");
    assert!(
        done[0].detail.contains(&format!("{before} record(s)")),
        "{}",
        done[0].detail
    );
    // The record of the verification is chained too.
    assert!(e.m.verify_audit(&audra, "").unwrap().ok());
}

#[test]
fn given_someone_neither_admin_nor_auditor_then_verify_is_refused_and_audited() {
    let mut e = env();
    let hank = e.who("hank");
    let message = assert_err!(e.m.verify_audit(&hank, ""), PermissionDenied);
    assert!(message.contains("admins and auditors"), "{message}");
    let refused = e.audited("audit-verify");
    assert_eq!(refused[0].outcome, "refused");
    // An admin (frank, through %pim-admins) may.
    let frank = e.who("frank");
    assert!(e.m.verify_audit(&frank, "").unwrap().ok());
}

#[test]
fn given_a_head_argument_beyond_the_log_then_verify_reports_the_missing_tail() {
    let mut e = env();
    e.enrol("alice");
    let audra = e.who("audra");
    let head = format!("99:{}", "ab".repeat(32));
    let report = e.m.verify_audit(&audra, &head).unwrap();
    assert_eq!(report.break_kind, "missing-tail");
    assert!(
        report.break_detail.contains("--head"),
        "{}",
        report.break_detail
    );
    assert_eq!(e.audited("audit-verify")[0].outcome, "error");
    assert_err!(e.m.verify_audit(&audra, "not-a-head"), InvalidArgument);
}

#[test]
fn given_a_hundred_records_then_the_head_goes_to_syslog_and_the_head_file() {
    let mut e = env();
    let file = temp_head_file("hundred");
    e.m.set_head_file(file.clone());
    let audra = e.who("audra");
    // The fixture's alerts (raised as the environment starts) are records already.
    let before =
        e.m.store
            .read(|tx| tx.audit_tip())
            .unwrap()
            .map_or(0, |t| t.id);
    let to_go = HEAD_EVERY_RECORDS as i64 - before % HEAD_EVERY_RECORDS as i64;
    for _ in 0..to_go {
        e.m.verify_audit(&audra, "").unwrap();
    }
    let lines = head_lines(&mut e);
    let head = e.m.store.read(|tx| tx.audit_tip()).unwrap().unwrap();
    let expected = format!("audit-head {}:{}", head.id, head.hash);
    assert_eq!(lines, vec![expected.clone()]);
    let kept = read_head_file(&file).unwrap();
    assert_eq!(format!("audit-head {kept}"), expected);
    let mode = std::fs::metadata(&file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // And the verification checks against it.
    let report = e.m.verify_audit(&audra, "").unwrap();
    assert_eq!(report.heads_checked, vec![format!("the head file {kept}")]);
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn given_a_head_file_the_log_no_longer_holds_then_it_is_kept_and_the_break_logged() {
    let mut e = env();
    let file = temp_head_file("kept");
    e.m.set_head_file(file.clone());
    e.enrol("alice");
    let forged = format!("999:{}", "cd".repeat(32));
    std::fs::write(&file, format!("{forged}\n")).unwrap();
    e.m.publish_head(true);
    let lines = head_lines(&mut e);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("is not in the audit log"), "{lines:?}");
    assert_eq!(read_head_file(&file).unwrap().to_string(), forged);
    // Logged once, not at every publication.
    e.m.publish_head(true);
    assert_eq!(head_lines(&mut e).len(), 1);
    let audra = e.who("audra");
    assert_eq!(
        e.m.verify_audit(&audra, "").unwrap().break_kind,
        "missing-tail"
    );
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn given_a_head_that_did_not_move_then_the_periodic_job_publishes_it_only_hourly() {
    let mut e = env();
    e.enrol("alice");
    e.m.reconcile().unwrap();
    assert_eq!(head_lines(&mut e).len(), 1);
    e.advance(HEAD_EVERY_SECS);
    e.m.reconcile().unwrap();
    assert!(head_lines(&mut e).is_empty());
    e.advance(HEAD_AGAIN_SECS);
    e.m.reconcile().unwrap();
    assert_eq!(head_lines(&mut e).len(), 1);
}

#[test]
fn given_keep_then_reconcile_removes_older_records_with_a_checkpoint_that_verifies() {
    let mut e = env();
    let text = format!("[audit]\nkeep = \"1d\"\n{CONFIG}");
    let (config, problems) =
        pim_config::parse(&text, "pim.toml", &HostDirectory(e.accounts.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    e.m.replace_config(config.unwrap()).unwrap();
    e.enrol("alice");
    let old = e.audit_log().len();
    e.advance(2 * 86_400);
    let alice = e.who("alice");
    e.m.status(&alice).unwrap();
    e.m.reconcile().unwrap();
    let log = e.audit_log();
    let checkpoint = e.audited("audit-pruned");
    assert_eq!(checkpoint.len(), 1);
    assert!(
        checkpoint[0]
            .detail
            .starts_with(&format!("records 1 to {old} removed (older than 1d)")),
        "{}",
        checkpoint[0].detail
    );
    assert_eq!(log[0].id, old as i64 + 1);
    let audra = e.who("audra");
    let report = e.m.verify_audit(&audra, "").unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.pruned_through, old as i64);
}

/// A look at the fake host for the alerts: its groups, no process, no sudoers file.
fn look_at_host(e: &mut Env) {
    let processes = crate::processes::fake::FakeProcesses::default();
    let groups = e.m.alert_groups();
    let facts = crate::alerts::host::look(
        &e.accounts,
        &processes,
        &pim_sudoers::Sudoers::default,
        &groups,
    );
    e.m.record_host_look(facts).unwrap();
}

/// The last record's `audit-head ID:HASH` line, and its action.
fn tip_line(e: &mut Env) -> (String, String) {
    let tip = e.m.store.read(|tx| tx.audit_tip()).unwrap().unwrap();
    let last = e.audit_log().pop().unwrap();
    assert_eq!(last.id, tip.id);
    (
        format!("audit-head {}:{}", tip.id, tip.hash),
        last.action.to_string(),
    )
}

#[test]
fn given_pimd_starting_then_its_head_is_published_once_after_the_alerts_start_up_raised() {
    let mut e = env();
    let file = temp_head_file("start");
    e.m.set_head_file(file.clone());
    // Start-up: reconciliation publishes no head of its own while pimd starts...
    e.m.reconcile().unwrap();
    assert!(head_lines(&mut e).is_empty());
    // ...nor does the first look at the host, which finds bob added to sudo by hand while
    // pimd was down: a record written at start.
    e.accounts.add_group("sudo", &["bob"]);
    look_at_host(&mut e);
    assert!(head_lines(&mut e).is_empty());
    e.m.publish_start_head();
    let (line, action) = tip_line(&mut e);
    assert_eq!(action, "alert-raise");
    assert_eq!(head_lines(&mut e), vec![line.clone()]);
    assert_eq!(
        format!("audit-head {}", read_head_file(&file).unwrap()),
        line
    );
    // Started: the periodic job publishes a head that moved again.
    e.enrol("alice");
    e.advance(HEAD_EVERY_SECS);
    e.m.reconcile().unwrap();
    assert_eq!(head_lines(&mut e), vec![tip_line(&mut e).0]);
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn given_a_round_that_raises_an_alert_then_the_head_it_publishes_covers_the_alert() {
    let mut e = env();
    look_at_host(&mut e);
    e.m.reconcile().unwrap();
    head_lines(&mut e);
    // A month without an activation: the round raises stale-eligibility, then publishes.
    e.advance(31 * 86_400);
    e.m.reconcile().unwrap();
    let (line, action) = tip_line(&mut e);
    assert_eq!(action, "alert-raise");
    assert_eq!(head_lines(&mut e), vec![line]);
}
