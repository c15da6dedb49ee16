use super::*;
use serde_json::json;

#[test]
fn given_each_refusal_code_then_the_matching_pim_error() {
    let cases = [
        ("PM001", "NotEligible"),
        ("PM002", "InvalidArgument"),
        ("PM003", "MfaRequired"),
        ("PM004", "MfaNotEnrolled"),
        ("PM005", "InvalidCode"),
        ("PM006", "MfaLockedOut"),
        ("PM007", "PermissionDenied"),
        ("PM008", "NotFound"),
        ("PM009", "Conflict"),
    ];
    for (code, kind) in cases {
        let error = refused(code, "why").unwrap();
        assert!(format!("{error:?}").starts_with(kind), "{code}: {error:?}");
        assert_eq!(error.message(), "why");
    }
    assert!(refused("23505", "duplicate").is_none());
}

#[test]
fn given_a_returned_refusal_then_refused_with_its_message_escaped() {
    let value = json!({"refused": {"kind": "PM005", "message": "wrong\u{1b}[2J code"}});
    match refusal(&value) {
        Some(AuthorityError::Refused(PimError::InvalidCode(m))) => {
            assert!(!m.contains('\u{1b}'), "{m}");
            assert!(m.starts_with("wrong"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(refusal(&json!({"granted": {}})).is_none());
    assert!(matches!(
        refusal(&json!({"refused": {"kind": "XX000", "message": "m"}})),
        Some(AuthorityError::Database(_))
    ));
}

#[test]
fn given_the_functions_answers_then_they_decode_to_the_outcomes() {
    let grant = json!({"id": 7, "user": "alice", "role": "db", "group": "dbadm",
        "started_at": 100, "ends_at": 160, "reason": "r", "ticket": "", "request_id": null,
        "only_host": "web7"});
    match decode::<wire::Outcome>(json!({ "granted": grant })).unwrap() {
        wire::Outcome::Granted(g) => {
            let g = FleetGrant::from(g);
            assert_eq!(
                (g.id, g.ends_at, g.only_host.as_deref()),
                (7, 160, Some("web7"))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode::<wire::Outcome>(json!({"pending": {"request_id": 3, "approvals_required": 2}})),
        Ok(wire::Outcome::Pending {
            request_id: 3,
            approvals_required: 2
        })
    ));
    assert!(matches!(
        decode::<wire::Outcome>(json!({"still_pending": {"approvals": 1, "required": 2}})),
        Ok(wire::Outcome::StillPending {
            approvals: 1,
            required: 2
        })
    ));
    assert!(matches!(
        decode::<wire::Outcome>(json!({"surprise": 1})),
        Err(AuthorityError::Database(_))
    ));
}

#[test]
fn given_no_database_then_every_call_is_unreachable_and_nothing_hangs() {
    // A socket nothing listens on: the connection is refused at once.
    let conninfo = ConnInfo::parse("host=/nonexistent port=1 user=web7 dbname=pim").unwrap();
    let mut authority = PgAuthority::new(conninfo.clone());
    assert!(matches!(
        authority.snapshot(),
        Err(AuthorityError::Unreachable(_))
    ));
    assert!(matches!(
        authority.expire_due(),
        Err(AuthorityError::Unreachable(_))
    ));
    let mut wakeup = PgWakeup::new(conninfo);
    assert!(matches!(
        wakeup.wait(std::time::Duration::from_millis(10)),
        Err(AuthorityError::Unreachable(_))
    ));
}

#[test]
fn given_an_authority_of_another_schema_version_then_it_is_refused_naming_what_to_do() {
    assert_eq!(schema_mismatch(Some(SCHEMA_VERSION)), None);
    let older = schema_mismatch(Some(SCHEMA_VERSION - 1)).unwrap();
    assert!(
        older.contains("older") && older.contains("pimd --fleet-setup"),
        "{older}"
    );
    let none = schema_mismatch(None).unwrap();
    assert!(
        none.contains("version none") && none.contains("pimd --fleet-setup"),
        "{none}"
    );
    let newer = schema_mismatch(Some(SCHEMA_VERSION + 1)).unwrap();
    assert!(
        newer.contains("newer") && newer.contains("upgrade pim"),
        "{newer}"
    );
}

#[test]
fn given_a_spool_of_large_records_then_it_ships_in_batches_within_the_functions_bounds() {
    use pim_common::types::AuditRecord;
    let record = |id: i64, text_bytes: usize| AuditRecord {
        id,
        at: 1,
        detail: "d".repeat(text_bytes),
        reason: "r".repeat(text_bytes),
        ..AuditRecord::default()
    };
    // 300 records of about 8 kB: 2.4 MB, more than one call takes.
    let large: Vec<AuditRecord> = (1..=300).map(|id| record(id, 4096)).collect();
    let batches = ship_batches(&large).unwrap();
    assert!(batches.len() >= 5, "{}", batches.len());
    let mut ids = Vec::new();
    for batch in &batches {
        assert!(batch.to_string().len() <= SHIP_BATCH_BYTES);
        let records = batch.as_array().unwrap();
        assert!(records.len() <= SHIP_BATCH);
        ids.extend(records.iter().map(|r| r["id"].as_i64().unwrap()));
    }
    assert_eq!(ids, (1..=300).collect::<Vec<_>>(), "in order, each once");
    // Small records: by count.
    let small: Vec<AuditRecord> = (1..=2500).map(|id| record(id, 10)).collect();
    let sizes: Vec<usize> = ship_batches(&small)
        .unwrap()
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert!(ship_batches(&[]).unwrap().is_empty());
}
