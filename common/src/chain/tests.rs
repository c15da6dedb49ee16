use super::*;

fn record(id: i64, action: AuditAction, prev: &str) -> AuditRecord {
    let mut r = AuditRecord {
        id,
        at: 1_700_000_000 + id,
        actor: "alice".into(),
        action,
        user: "alice".into(),
        role: "admin".into(),
        outcome: crate::vocab::Outcome::Success,
        reason: format!("reason {id}"),
        ticket: String::new(),
        detail: String::new(),
        prev: prev.into(),
        hash: String::new(),
    };
    r.hash = hash(&r);
    r
}

/// A chain of `n` records: the genesis (1), then `activate` records.
fn chain(n: i64) -> Vec<AuditRecord> {
    let mut out = vec![record(1, GENESIS_ACTION, GENESIS_PREV)];
    for id in 2..=n {
        let prev = out.last().unwrap().hash.clone();
        out.push(record(id, AuditAction::Activate, &prev));
    }
    out
}

fn verify(records: Vec<AuditRecord>, heads: Vec<KeptHead>) -> Verification {
    let mut v = Verifier::new(heads);
    for r in records {
        v.push(r);
    }
    v.finish()
}

fn kept(id: i64, hash: &str) -> KeptHead {
    KeptHead {
        head: Head {
            id,
            hash: hash.into(),
        },
        source: "the head file".into(),
    }
}

fn broke(v: &Verification) -> (&str, i64) {
    (v.break_kind.as_str(), v.break_record)
}

#[test]
fn given_a_record_then_its_encoding_is_the_documented_netstrings() {
    let r = AuditRecord {
        id: 7,
        at: 1_700_000_000,
        actor: "bob".into(),
        action: AuditAction::Approve,
        user: "alice".into(),
        role: "admin".into(),
        outcome: crate::vocab::Outcome::Success,
        reason: "ok, é".into(),
        ticket: "".into(),
        detail: "request 3".into(),
        prev: GENESIS_PREV.into(),
        hash: "ignored".into(),
    };
    let expected = format!(
        "pim-audit-v1\n1:7,10:1700000000,3:bob,7:approve,5:alice,5:admin,7:success,6:ok, é,0:,\
         9:request 3,64:{GENESIS_PREV},"
    );
    assert_eq!(String::from_utf8(encode(&r)).unwrap(), expected);
    // The module doc's Python (hashlib) over the same fields gives this.
    assert_eq!(
        hash(&r),
        "6ff924107795cc5a675135067e6af8f9ed090153ed5e0015965605b26824bfba"
    );
}

#[test]
fn given_fields_that_shift_between_neighbours_then_the_hashes_differ() {
    let mut a = record(2, AuditAction::Activate, GENESIS_PREV);
    let mut b = a.clone();
    a.reason = "ab".into();
    a.ticket = "c".into();
    b.reason = "a".into();
    b.ticket = "bc".into();
    assert_ne!(hash(&a), hash(&b));
    let mut c = a.clone();
    c.id = 3;
    assert_ne!(
        hash(&a),
        hash(&c),
        "the id is hashed: a record cannot be moved"
    );
}

#[test]
fn given_an_untouched_chain_then_it_verifies_with_its_count() {
    let records = chain(10);
    let head = records[9].hash.clone();
    let v = verify(records, vec![kept(10, &head)]);
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.checked, v.first, v.last, v.genesis), (10, 1, 10, 1));
    assert_eq!(v.heads_checked, vec![format!("the head file 10:{head}")]);
}

#[test]
fn given_an_empty_log_then_it_verifies_with_nothing_checked() {
    let v = verify(Vec::new(), Vec::new());
    assert!(v.ok());
    assert_eq!(v.checked, 0);
}

#[test]
fn given_records_before_the_genesis_then_they_are_counted_unchained() {
    let mut records: Vec<AuditRecord> = (1..=3)
        .map(|id| {
            let mut r = record(id, AuditAction::Activate, "");
            r.hash = String::new();
            r
        })
        .collect();
    let mut next = vec![record(4, GENESIS_ACTION, GENESIS_PREV)];
    let prev = next[0].hash.clone();
    next.push(record(5, AuditAction::Activate, &prev));
    records.extend(next);
    let v = verify(records, Vec::new());
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.unchained, v.checked, v.genesis), (3, 2, 4));
}

#[test]
fn given_an_edited_record_then_it_is_named_as_edited() {
    let mut records = chain(10);
    records[4].reason = "nothing to see".into();
    let v = verify(records, Vec::new());
    assert_eq!(broke(&v), ("edited", 5));
    assert_eq!(v.checked, 4);
}

#[test]
fn given_an_edited_last_record_then_it_is_named_as_edited() {
    let mut records = chain(10);
    records[9].actor = "mallory".into();
    assert_eq!(broke(&verify(records, Vec::new())), ("edited", 10));
}

#[test]
fn given_an_edit_with_its_hash_recomputed_then_the_edited_record_is_named() {
    let mut records = chain(10);
    records[4].reason = "nothing to see".into();
    records[4].hash = hash(&records[4]);
    let v = verify(records, Vec::new());
    assert_eq!(broke(&v), ("edited", 5));
    assert!(v.break_detail.contains("recomputed"), "{}", v.break_detail);
}

#[test]
fn given_a_deleted_record_then_the_missing_id_is_named() {
    let mut records = chain(10);
    records.remove(4);
    let v = verify(records, Vec::new());
    assert_eq!(broke(&v), ("deleted", 5));
    assert!(
        v.break_detail.contains("record 5 is missing"),
        "{}",
        v.break_detail
    );
}

#[test]
fn given_several_deleted_records_then_the_first_missing_id_is_named() {
    let mut records = chain(10);
    records.drain(3..6);
    assert_eq!(broke(&verify(records, Vec::new())), ("deleted", 4));
}

#[test]
fn given_a_record_inserted_between_others_then_it_is_named_as_inserted() {
    // Ids shifted up to make room, as an insertion in the middle must.
    let records = chain(10);
    let mut forged = record(6, AuditAction::Activate, &records[4].hash);
    forged.reason = "forged".into();
    forged.hash = String::new();
    let mut tampered: Vec<AuditRecord> = records[..5].to_vec();
    tampered.push(forged);
    for r in &records[5..] {
        let mut moved = r.clone();
        moved.id += 1;
        tampered.push(moved);
    }
    assert_eq!(broke(&verify(tampered, Vec::new())), ("inserted", 6));
}

#[test]
fn given_an_inserted_record_with_a_valid_hash_then_it_is_named_as_inserted() {
    let records = chain(10);
    let forged = record(6, AuditAction::Activate, &records[3].hash);
    let mut tampered: Vec<AuditRecord> = records[..5].to_vec();
    tampered.push(forged);
    // The next record, renumbered with its link kept.
    let mut moved = records[5].clone();
    moved.id = 7;
    tampered.push(moved);
    assert_eq!(broke(&verify(tampered, Vec::new())), ("inserted", 6));
}

#[test]
fn given_a_row_appended_outside_pimd_then_it_is_named_as_inserted() {
    let mut records = chain(5);
    let mut row = record(6, AuditAction::Activate, "");
    row.hash = String::new();
    records.push(row);
    assert_eq!(broke(&verify(records, Vec::new())), ("inserted", 6));
}

#[test]
fn given_a_cut_tail_then_the_head_kept_names_the_first_missing_record() {
    let records = chain(10);
    let head = records[9].hash.clone();
    let v = verify(records[..7].to_vec(), vec![kept(10, &head)]);
    assert_eq!(broke(&v), ("missing-tail", 8));
    assert!(v.break_detail.contains("file"), "{}", v.break_detail);
    assert_eq!(v.checked, 7);
}

#[test]
fn given_a_cut_tail_written_again_then_the_head_names_a_rewrite() {
    let records = chain(10);
    let head = records[9].hash.clone();
    let mut again = records[..7].to_vec();
    for id in 8..=10 {
        let prev = again.last().unwrap().hash.clone();
        again.push(record(id, AuditAction::Deactivate, &prev));
    }
    assert_eq!(
        broke(&verify(again, vec![kept(10, &head)])),
        ("rewritten", 10)
    );
}

#[test]
fn given_a_head_older_than_the_tail_then_it_is_checked_on_its_record() {
    let records = chain(10);
    let head = records[4].hash.clone();
    let v = verify(records.clone(), vec![kept(5, &head)]);
    assert!(v.ok(), "{v:?}");
    assert_eq!(
        broke(&verify(records, vec![kept(5, &"a".repeat(64))])),
        ("rewritten", 5)
    );
}

/// Records 1..=through removed, with a checkpoint appended after the rest.
fn pruned(mut records: Vec<AuditRecord>, through: usize) -> Vec<AuditRecord> {
    let last = Head {
        id: records[through - 1].id,
        hash: records[through - 1].hash.clone(),
    };
    let mut checkpoint = record(
        records.len() as i64 + 1,
        CHECKPOINT_ACTION,
        &records.last().unwrap().hash,
    );
    checkpoint.detail = checkpoint_detail(1, &last, "older than 400d");
    checkpoint.hash = hash(&checkpoint);
    records.push(checkpoint);
    records.drain(..through);
    records
}

#[test]
fn given_a_pruned_chain_then_it_verifies_from_its_checkpoint() {
    let records = pruned(chain(10), 4);
    let v = verify(records, Vec::new());
    assert!(v.ok(), "{v:?}");
    assert_eq!(
        (v.checked, v.first, v.pruned_through, v.genesis),
        (7, 5, 4, 0)
    );
}

#[test]
fn given_a_pruned_chain_then_an_old_head_is_reported_as_pruned_not_broken() {
    let all = chain(10);
    let old = all[2].hash.clone();
    let v = verify(pruned(all, 4), vec![kept(3, &old)]);
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.heads_pruned, vec![format!("the head file 3:{old}")]);
}

#[test]
fn given_more_removed_than_the_checkpoint_says_then_the_first_missing_is_named() {
    let mut records = pruned(chain(10), 4);
    records.drain(..2);
    assert_eq!(broke(&verify(records, Vec::new())), ("deleted", 5));
}

#[test]
fn given_a_log_whose_start_was_removed_without_a_checkpoint_then_it_is_a_deletion() {
    let mut records = chain(10);
    records.drain(..3);
    assert_eq!(broke(&verify(records, Vec::new())), ("deleted", 3));
}

#[test]
fn given_a_checkpoint_detail_then_its_last_removed_record_is_read_back() {
    let head = Head {
        id: 57,
        hash: "ab".repeat(32),
    };
    let detail = checkpoint_detail(1, &head, "older than 400d");
    assert_eq!(checkpoint_head(&detail), Some(head));
    let unchained = Head {
        id: 3,
        hash: String::new(),
    };
    assert_eq!(
        checkpoint_head(&checkpoint_detail(1, &unchained, "x")),
        None
    );
}

#[test]
fn given_head_text_then_only_id_colon_hash_parses() {
    let hash = "AB".repeat(32);
    let head: Head = format!(" 12:{hash}\n").parse().unwrap();
    assert_eq!(head.to_string(), format!("12:{}", "ab".repeat(32)));
    for bad in [
        "12",
        "x:aa",
        "0:aa",
        &format!("-1:{hash}"),
        "12:abc",
        &format!("12:{hash}0"),
    ] {
        assert!(bad.parse::<Head>().is_err(), "{bad}");
    }
}

#[test]
fn given_a_slice_of_a_chain_then_its_links_and_heads_are_checked_not_its_start() {
    let records = chain(10);
    let head = records[9].hash.clone();
    let mut v = Verifier::for_slice(vec![kept(10, &head)]);
    for r in records[3..].iter().cloned() {
        v.push(r);
    }
    let v = v.finish();
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.first, v.checked), (4, 7));
    let mut tampered = records[3..].to_vec();
    tampered.remove(2);
    let mut v = Verifier::for_slice(Vec::new());
    for r in tampered {
        v.push(r);
    }
    assert_eq!(broke(&v.finish()), ("deleted", 6));
}

#[test]
fn given_records_before_the_chain_and_its_genesis_removed_then_the_genesis_is_named() {
    let mut records: Vec<AuditRecord> = (1..=2)
        .map(|id| AuditRecord {
            hash: String::new(),
            ..record(id, AuditAction::Activate, "")
        })
        .collect();
    let genesis = record(3, GENESIS_ACTION, GENESIS_PREV);
    records.push(record(4, AuditAction::Activate, &genesis.hash));
    assert_eq!(broke(&verify(records, Vec::new())), ("deleted", 3));
}

fn verify_slice(records: &[AuditRecord], heads: Vec<KeptHead>) -> Verification {
    let mut v = Verifier::for_slice(heads);
    for r in records.iter().cloned() {
        v.push(r);
    }
    v.finish()
}

#[test]
fn given_a_fabricated_export_starting_after_the_head_then_the_head_is_not_counted_checked() {
    let genuine = chain(10);
    let head = genuine[9].hash.clone();
    // A forger's records 11.. chained to a `prev` of their choosing, not to the head.
    let mut forged = vec![record(11, AuditAction::Activate, &"f".repeat(64))];
    forged.push(record(12, AuditAction::Activate, &forged[0].hash.clone()));
    let v = verify_slice(&forged, vec![kept(10, &head)]);
    assert!(!v.ok(), "{v:?}");
    assert_eq!(broke(&v), ("rewritten", 10));
    assert!(v.heads_checked.is_empty(), "{v:?}");
    // A copy that starts later still is not covering the head either.
    let mut later = vec![record(12, AuditAction::Activate, &"f".repeat(64))];
    later.push(record(13, AuditAction::Activate, &later[0].hash.clone()));
    let v = verify_slice(&later, vec![kept(10, &head)]);
    assert_eq!(broke(&v), ("head-not-covered", 10));
    assert!(
        v.break_detail.contains("not covered by this export"),
        "{v:?}"
    );
    assert!(v.heads_checked.is_empty(), "{v:?}");
}

#[test]
fn given_a_genuine_slice_starting_right_after_the_head_then_the_head_is_checked() {
    let mut records = chain(10);
    let head = records[5].hash.clone();
    let v = verify_slice(&records.split_off(6), vec![kept(6, &head)]);
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.first, 7);
    assert_eq!(v.heads_checked, ["the head file 6:".to_string() + &head]);
}
