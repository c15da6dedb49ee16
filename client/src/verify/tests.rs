use super::*;
use crate::output::audit_json;
use pim_common::chain::{hash, GENESIS_ACTION, GENESIS_PREV};

fn chain(n: i64) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = Vec::new();
    for id in 1..=n {
        let mut r = AuditRecord {
            id,
            at: 1_800_000_000 + id,
            actor: "alice".into(),
            action: if id == 1 {
                GENESIS_ACTION
            } else {
                pim_common::vocab::AuditAction::Activate
            },
            user: "alice".into(),
            role: if id == 1 { "" } else { "admin" }.into(),
            outcome: pim_common::vocab::Outcome::Success,
            reason: "line one\nline \"two\" é".into(),
            ticket: String::new(),
            detail: String::new(),
            prev: out
                .last()
                .map_or(GENESIS_PREV.to_string(), |p| p.hash.clone()),
            hash: String::new(),
        };
        r.hash = hash(&r);
        out.push(r);
    }
    out
}

fn export(records: &[AuditRecord]) -> std::path::PathBuf {
    let doc = json!({ "records": records.iter().map(audit_json).collect::<Vec<_>>() });
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("pim-verify-{}-{n}.json", std::process::id()));
    std::fs::write(&path, crate::output::to_json(&doc, true)).unwrap();
    path
}

#[test]
fn given_the_json_export_then_each_record_reads_back_as_it_was() {
    let records = chain(3);
    for r in &records {
        assert_eq!(record_of(&audit_json(r)).as_ref(), Some(r));
    }
}

#[test]
fn given_an_untouched_export_then_it_verifies_against_its_head() {
    let records = chain(5);
    let head: Head = format!("5:{}", records[4].hash).parse().unwrap();
    let path = export(&records);
    let report = verify_files(std::slice::from_ref(&path), Some(head)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checked, 5);
    let text = report_text(&report, Some("x.json"));
    assert!(
        text.starts_with("the audit chain in x.json holds: 5 record(s) checked, 1 to 5\n"),
        "{text}"
    );
    assert!(text.contains("matches the head kept: --head 5:"), "{text}");
}

#[test]
fn given_an_edited_export_then_the_record_is_named_and_json_says_so() {
    let mut records = chain(5);
    records[2].reason = "edited".into();
    let path = export(&records);
    let report = verify_files(std::slice::from_ref(&path), None).unwrap();
    std::fs::remove_file(&path).unwrap();
    let doc = report_json(&report);
    assert_eq!(doc["ok"], json!(false));
    assert_eq!(doc["break"]["kind"], json!("edited"));
    assert_eq!(doc["break"]["record"], json!(3));
    assert!(
        report_text(&report, None).starts_with("the audit chain is broken at record 3 (edited)")
    );
}

#[test]
fn given_a_file_that_is_not_an_export_then_the_failure_says_what_to_give() {
    let path = std::env::temp_dir().join(format!("pim-verify-{}-bad.json", std::process::id()));
    std::fs::write(&path, "{\"roles\": []}").unwrap();
    let err = verify_files(std::slice::from_ref(&path), None).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(format!("{err:?}").contains("pim --json audit"), "{err:?}");
}

#[test]
fn given_the_pages_of_an_export_that_overlap_then_they_verify_as_one() {
    let records = chain(8);
    let pages = [export(&records[..5]), export(&records[3..])];
    let report = verify_files(&pages, None).unwrap();
    for page in &pages {
        std::fs::remove_file(page).unwrap();
    }
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.first, report.last, report.checked), (1, 8, 8));
}
