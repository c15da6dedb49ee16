//! The conformance suite of the store's port: what every backend must do, as functions over
//! a fresh, empty [`Store`]. A backend runs all of them with one line in its tests:
//! `crate::store::conformance::suite!(MyStore::open_empty_for_tests().unwrap());`
//! (a new case is a function here and its name in [`suite!`]'s list).

use super::{Store, StoreError, Tx};
use crate::model::{
    AlertState, Assignment, AuditEntry, AuditQuery, FleetSync, NewAlert, NewGrant, Outcome,
    Renewal, Request, RequestState,
};
use pim_common::types::AuditRecord;

/// An audit record of `action` by alice about herself.
pub fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        at: 100,
        actor: "alice".into(),
        action: action.parse().expect("an audit action"),
        user: "alice".into(),
        role: "admin".into(),
        outcome: Outcome::Success,
        reason: String::new(),
        ticket: String::new(),
        detail: String::new(),
    }
}

/// A grant of group sudo from 100 to 200.
pub fn grant<'a>(user: &'a str, role: &'a str) -> NewGrant<'a> {
    NewGrant {
        user,
        role,
        group: "sudo",
        started_at: 100,
        ends_at: 200,
        reason: "r",
        ticket: "",
        request_id: None,
    }
}

/// The walk of `pim audit verify` over the whole log.
pub fn verify(store: &mut dyn Store) -> pim_common::chain::Verification {
    let records = store.read(|tx| tx.audit_chain(0, u32::MAX)).unwrap();
    let mut verifier = pim_common::chain::Verifier::new(Vec::new());
    for r in records {
        verifier.push(r);
    }
    verifier.finish()
}

/// An audit record of `action` at `at`.
fn entry_at(action: &str, at: i64) -> AuditEntry {
    AuditEntry {
        at,
        ..entry(action)
    }
}

pub fn given_audit_records_then_each_is_chained_to_the_one_before(store: &mut dyn Store) {
    store
        .write(|tx| {
            tx.audit(entry("activate"))?;
            tx.audit(entry("extend"))
        })
        .unwrap();
    store.write(|tx| tx.audit(entry("deactivate"))).unwrap();
    let records = audit_log(store);
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(records[0].prev, pim_common::chain::GENESIS_PREV);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
    }
    for r in &records {
        assert_eq!(r.hash, pim_common::chain::hash(r));
    }
    let tip = store.read(|tx| tx.audit_tip()).unwrap().unwrap();
    assert_eq!((tip.id, tip.hash.as_str()), (3, records[2].hash.as_str()));
    let v = verify(store);
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.checked, 3);
}

pub fn given_old_records_then_pruning_removes_them_with_a_checkpoint_and_the_rest_verifies(
    store: &mut dyn Store,
) {
    for at in [10, 20, 30, 40] {
        store
            .write(|tx| tx.audit(entry_at("activate", at)))
            .unwrap();
    }
    let (pruned, audited) = store
        .write(|tx| tx.prune_audit(25, 50, "older than 1d"))
        .unwrap();
    assert_eq!(pruned, Some(super::Pruned { first: 1, last: 2 }));
    assert_eq!(
        audited.len(),
        1,
        "the checkpoint is the removal's audit record"
    );
    let records = audit_log(store);
    assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(records[2].action, pim_common::chain::CHECKPOINT_ACTION);
    assert!(records[2]
        .detail
        .starts_with("records 1 to 2 removed (older than 1d)"));
    let v = verify(store);
    assert!(v.ok(), "{v:?}");
    assert_eq!((v.pruned_through, v.checked), (2, 3));
    // Nothing older left: nothing removed, nothing written.
    let (again, audited) = store.write(|tx| tx.prune_audit(25, 60, "x")).unwrap();
    assert_eq!((again, audited.len()), (None, 0));
    // A second round, past the first checkpoint: still verifies.
    store
        .write(|tx| tx.prune_audit(55, 70, "older than 1d"))
        .unwrap();
    let v = verify(store);
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.pruned_through, 5);
    assert_eq!(audit_log(store).len(), 1);
}

pub fn given_a_record_older_than_a_newer_one_before_it_then_pruning_stops_there(
    store: &mut dyn Store,
) {
    // The clock went back between 2 and 3: 3 is older than the cut, but 2 is not.
    for at in [10, 40, 15] {
        store
            .write(|tx| tx.audit(entry_at("activate", at)))
            .unwrap();
    }
    let (pruned, _) = store.write(|tx| tx.prune_audit(25, 50, "x")).unwrap();
    assert_eq!(pruned, Some(super::Pruned { first: 1, last: 1 }));
    assert_eq!(
        audit_log(store).iter().map(|r| r.id).collect::<Vec<_>>(),
        [2, 3, 4]
    );
}

/// The whole audit log, oldest first.
fn audit_log(store: &mut dyn Store) -> Vec<AuditRecord> {
    store
        .read(|tx| tx.audit_records(&AuditQuery::default()))
        .unwrap()
}

pub fn given_a_change_without_audit_then_nothing_is_committed(store: &mut dyn Store) {
    let err = store
        .write(|tx| tx.insert_grant(&grant("alice", "admin")))
        .unwrap_err();
    assert!(matches!(err, StoreError::Unaudited));
    let live = store.read(|tx| tx.live_grants()).unwrap();
    assert!(live.is_empty());
}

pub fn given_a_change_with_audit_then_both_are_committed(store: &mut dyn Store) {
    let (id, audited) = store
        .write(|tx| {
            let id = tx.insert_grant(&grant("alice", "admin"))?;
            tx.audit(entry("activate"))?;
            Ok::<_, StoreError>(id)
        })
        .unwrap();
    assert_eq!(audited.len(), 1);
    let live = store.read(|tx| tx.live_grants()).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, id);
    let records = audit_log(store);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "activate");
}

pub fn given_a_failing_closure_then_audit_and_change_are_rolled_back(store: &mut dyn Store) {
    let result: Result<((), _), StoreError> = store.write(|tx| {
        tx.insert_grant(&grant("alice", "admin"))?;
        tx.audit(entry("activate"))?;
        Err(StoreError::Unaudited)
    });
    assert!(result.is_err());
    assert!(store.read(|tx| tx.live_grants()).unwrap().is_empty());
    assert!(audit_log(store).is_empty());
}

pub fn given_a_live_grant_then_a_second_live_grant_for_the_same_role_is_refused(
    store: &mut dyn Store,
) {
    let insert = |store: &mut dyn Store| {
        store.write(|tx| {
            tx.insert_grant(&grant("alice", "admin"))?;
            tx.audit(entry("activate"))
        })
    };
    insert(store).unwrap();
    assert!(insert(store).is_err());
}

pub fn given_memberships_then_only_those_without_live_grants_are_orphaned(store: &mut dyn Store) {
    store
        .write(|tx| {
            tx.insert_grant(&grant("alice", "admin"))?;
            tx.add_membership("alice", "sudo", 100)?;
            tx.add_membership("bob", "sudo", 100)?;
            tx.audit(entry("activate"))
        })
        .unwrap();
    let orphans = store.read(|tx| tx.orphaned_memberships()).unwrap();
    assert_eq!(orphans, vec![("bob".to_string(), "sudo".to_string())]);
}

pub fn given_a_recovery_code_then_it_works_once(store: &mut dyn Store) {
    store
        .write(|tx| {
            tx.replace_recovery_codes("alice", &["h1".into(), "h2".into()], 3)?;
            tx.audit(entry("mfa-confirm"))
        })
        .unwrap();
    assert_eq!(
        store
            .read(|tx| tx.recovery_codes_issued_at("alice"))
            .unwrap(),
        3
    );
    assert_eq!(
        store.read(|tx| tx.recovery_codes_issued_at("bob")).unwrap(),
        0
    );
    let first = store
        .write(|tx| {
            let ok = tx.use_recovery_code("alice", "h1", 5)?;
            tx.audit(entry("mfa-confirm"))?;
            Ok::<_, StoreError>(ok)
        })
        .unwrap()
        .0;
    let second = store
        .write(|tx| {
            let ok = tx.use_recovery_code("alice", "h1", 6)?;
            tx.audit(entry("mfa-confirm"))?;
            Ok::<_, StoreError>(ok)
        })
        .unwrap()
        .0;
    assert!(first && !second);
    assert_eq!(store.read(|tx| tx.recovery_codes_left("alice")).unwrap(), 1);
}

pub fn given_a_change_of_device_then_the_old_secret_stays_until_it_is_finished(
    store: &mut dyn Store,
) {
    let write = |store: &mut dyn Store, f: &dyn Fn(&super::Tx) -> Result<bool, StoreError>| {
        store
            .write(|tx| {
                let value = f(tx)?;
                tx.audit(entry("mfa-enroll"))?;
                Ok::<_, StoreError>(value)
            })
            .unwrap()
            .0
    };
    write(store, &|tx| {
        tx.put_pending_mfa("alice", b"old", 100)?;
        tx.confirm_mfa("alice")?;
        tx.set_last_step("alice", 7)?;
        Ok(true)
    });
    assert!(!write(store, &|tx| tx.finish_mfa_rotation("alice", b"new", 9)));
    write(store, &|tx| {
        tx.put_mfa_rotation("alice", b"first", 110)?;
        tx.put_mfa_rotation("alice", b"new", 120)?;
        Ok(true)
    });
    let old = store.read(|tx| tx.mfa("alice")).unwrap().unwrap();
    assert_eq!(
        (old.secret.as_slice(), old.last_step),
        (&b"old"[..], Some(7))
    );
    let pending = store.read(|tx| tx.mfa_rotation("alice")).unwrap().unwrap();
    assert_eq!(
        (pending.secret.as_slice(), pending.created_at),
        (&b"new"[..], 120)
    );
    // Only the secret the code was checked against is installed: one written since is not.
    assert!(!write(store, &|tx| tx.finish_mfa_rotation("alice", b"first", 9)));
    assert_eq!(
        store.read(|tx| tx.mfa("alice")).unwrap().unwrap().secret,
        b"old"
    );
    assert!(write(store, &|tx| tx.finish_mfa_rotation("alice", b"new", 9)));
    let new = store.read(|tx| tx.mfa("alice")).unwrap().unwrap();
    assert_eq!(
        (
            new.secret.as_slice(),
            new.confirmed,
            new.last_step,
            new.created_at
        ),
        (&b"new"[..], true, Some(9), 120)
    );
    assert_eq!(store.read(|tx| tx.mfa_rotation("alice")).unwrap(), None);
    // An expired change is dropped, once.
    write(store, &|tx| {
        tx.put_mfa_rotation("alice", b"stale", 125)?;
        Ok(true)
    });
    assert!(write(store, &|tx| tx.delete_mfa_rotation("alice")));
    assert!(!write(store, &|tx| tx.delete_mfa_rotation("alice")));
    assert_eq!(store.read(|tx| tx.mfa_rotation("alice")).unwrap(), None);
    // A reset drops a change in progress with the enrolment.
    write(store, &|tx| {
        tx.put_mfa_rotation("alice", b"newer", 130)?;
        tx.delete_mfa("alice")
    });
    assert_eq!(store.read(|tx| tx.mfa_rotation("alice")).unwrap(), None);
}

pub fn given_audit_query_then_filters_apply(store: &mut dyn Store) {
    store
        .write(|tx| {
            tx.audit(entry("activate"))?;
            let mut other = entry("expire");
            other.user = "bob".into();
            other.actor = "bob".into();
            other.at = 300;
            tx.audit(other)
        })
        .unwrap();
    let mut q = |q: AuditQuery| store.read(|tx| tx.audit_records(&q)).unwrap();
    assert_eq!(
        q(AuditQuery {
            involving: Some("bob"),
            by: Some("bob"),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        q(AuditQuery {
            since: 200,
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        q(AuditQuery {
            user: Some("alice"),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(
        q(AuditQuery {
            role: Some("none"),
            ..Default::default()
        })
        .len(),
        0
    );
}

pub fn given_a_change_in_a_read_transaction_then_it_is_refused(store: &mut dyn Store) {
    let err = store
        .read(|tx| tx.add_membership("alice", "sudo", 100))
        .unwrap_err();
    assert!(matches!(err, StoreError::Unaudited));
    let err = store.read(|tx| tx.audit(entry("activate"))).unwrap_err();
    assert!(matches!(err, StoreError::Unaudited));
    assert!(!store.read(|tx| tx.has_membership("alice", "sudo")).unwrap());
    assert!(audit_log(store).is_empty());
}

pub fn given_a_removal_then_it_needs_an_audit_record_only_if_it_removed_something(
    store: &mut dyn Store,
) {
    let (removed, audited) = store
        .write(|tx| {
            Ok::<_, StoreError>((
                tx.delete_mfa("alice")?,
                tx.delete_assignment("alice", "admin")?,
            ))
        })
        .unwrap();
    assert_eq!((removed, audited.len()), ((false, false), 0));
    store
        .write(|tx| {
            tx.put_pending_mfa("alice", b"secret", 100)?;
            tx.audit(entry("mfa-enroll"))
        })
        .unwrap();
    let err = store.write(|tx| tx.delete_mfa("alice")).unwrap_err();
    assert!(matches!(err, StoreError::Unaudited));
    assert!(store.read(|tx| tx.mfa("alice")).unwrap().is_some());
}

pub fn given_alerts_then_one_holds_each_key_until_resolved_or_released(store: &mut dyn Store) {
    let alert = |key: &'static str| NewAlert {
        kind: "weak-role",
        key,
        user: "",
        role: "lab",
        detail: "no MFA",
        at: 100,
    };
    let write = |store: &mut dyn Store, f: &dyn Fn(&Tx) -> Result<(), StoreError>| {
        store
            .write(|tx| {
                f(tx)?;
                tx.audit(entry("alert-resolve"))
            })
            .map(|_| ())
    };
    let raise = |store: &mut dyn Store| {
        let mut id = 0;
        store
            .write(|tx| {
                id = tx.insert_alert(&alert("weak-role:lab"))?;
                tx.audit(entry("alert-raise"))
            })
            .unwrap();
        id
    };
    let id = raise(store);
    // A second alert of a held key is refused by the database itself.
    let twice = write(store, &|tx| {
        tx.insert_alert(&alert("weak-role:lab")).map(|_| ())
    });
    assert!(twice.is_err());
    let held = store.read(|tx| tx.current_alert("weak-role:lab")).unwrap();
    assert_eq!(held.unwrap().id, id);
    // Dismissed: it keeps the key, and is no longer listed as open.
    write(store, &|tx| tx.dismiss_alert(id, "frank", "known", 150)).unwrap();
    let row = store.read(|tx| tx.alert(id)).unwrap().unwrap();
    assert_eq!(row.state, AlertState::Dismissed);
    assert_eq!(
        (row.dismissed_by.as_str(), row.closed_at),
        ("frank", Some(150))
    );
    assert!(row.holds_key);
    assert!(store.read(|tx| tx.alerts(false, 10)).unwrap().is_empty());
    assert_eq!(store.read(|tx| tx.alerts(true, 10)).unwrap().len(), 1);
    // Released: the key is free for a new one, which resolves.
    write(store, &|tx| tx.release_alert(id)).unwrap();
    assert!(store.read(|tx| tx.current_alerts()).unwrap().is_empty());
    let again = raise(store);
    assert_ne!(again, id);
    write(store, &|tx| tx.resolve_alert(again, 200)).unwrap();
    let row = store.read(|tx| tx.alert(again)).unwrap().unwrap();
    assert_eq!((row.state, row.holds_key), (AlertState::Resolved, false));
    // Newest first.
    let all = store.read(|tx| tx.alerts(true, 10)).unwrap();
    assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), [again, id]);
    // The last dismissal of each key of a kind: the one at 150 (the resolved one is none);
    // dismissed again later, the later one.
    let dismissals =
        |store: &mut dyn Store, kind: &str| store.read(|tx| tx.alert_dismissals(kind)).unwrap();
    assert_eq!(
        dismissals(store, "weak-role"),
        [("weak-role:lab".into(), 150)]
    );
    assert!(dismissals(store, "frequent-activation").is_empty());
    let third = raise(store);
    write(store, &|tx| tx.dismiss_alert(third, "frank", "again", 300)).unwrap();
    assert_eq!(
        dismissals(store, "weak-role"),
        [("weak-role:lab".into(), 300)]
    );
}

pub fn given_an_active_assignment_then_its_fields_and_its_grant_mark_round_trip(
    store: &mut dyn Store,
) {
    let a = Assignment {
        user: "alice".into(),
        role: "admin".into(),
        not_before: Some(100),
        not_after: Some(200),
        active: true,
        reason: "on call".into(),
        grant_id: None,
        notices_sent: 0,
        revision: 0,
    };
    let ((id, revision), _) = store
        .write(|tx| {
            let revision = tx.put_assignment(&a, "carol", 50)?;
            let id = tx.insert_grant(&grant("alice", "admin"))?;
            tx.mark_grant_by_assignment(id)?;
            tx.set_assignment_grant("alice", "admin", id)?;
            tx.set_assignment_notices("alice", "admin", 3)?;
            tx.audit(entry("admin-assign-active"))?;
            Ok::<_, StoreError>((id, revision))
        })
        .unwrap();
    let read = store
        .read(|tx| tx.assignment("alice", "admin"))
        .unwrap()
        .unwrap();
    assert_eq!(
        read,
        Assignment {
            grant_id: Some(id),
            notices_sent: 3,
            revision,
            ..a
        }
    );
    assert!(revision > 0, "a fresh revision, never the one given");
    assert_eq!(store.read(|tx| tx.assignments()).unwrap(), vec![read]);
    assert!(store.read(|tx| tx.grant_by_assignment(id)).unwrap());
    assert!(!store.read(|tx| tx.grant_by_assignment(id + 1)).unwrap());
}

pub fn given_an_assignment_put_again_or_removed_and_made_again_then_its_revision_is_new(
    store: &mut dyn Store,
) {
    let a = Assignment {
        user: "alice".into(),
        role: "admin".into(),
        not_after: Some(200),
        ..Assignment::default()
    };
    let put = |store: &mut dyn Store| {
        store
            .write(|tx| {
                let revision = tx.put_assignment(&a, "carol", 50)?;
                tx.audit(entry("admin-assign"))?;
                Ok::<_, StoreError>(revision)
            })
            .unwrap()
            .0
    };
    let first = put(store);
    let stored = |store: &mut dyn Store| {
        store
            .read(|tx| tx.assignment("alice", "admin"))
            .unwrap()
            .map(|a| a.revision)
    };
    assert_eq!(stored(store), Some(first));
    // The same terms again: a new revision all the same.
    let second = put(store);
    assert!(second > first, "{second} after {first}");
    // The notices and the grant it materialised as are not a new version.
    store
        .write(|tx| {
            tx.set_assignment_notices("alice", "admin", 1)?;
            tx.set_assignment_grant("alice", "admin", 7)?;
            tx.audit(entry("assignment-notice"))
        })
        .unwrap();
    assert_eq!(stored(store), Some(second));
    // Removed, then made again with the same terms: never an earlier number.
    store
        .write(|tx| {
            tx.delete_assignment("alice", "admin")?;
            tx.audit(entry("admin-unassign"))
        })
        .unwrap();
    let third = put(store);
    assert!(third > second, "{third} after {second}");
    assert_eq!(stored(store), Some(third));
}

pub fn given_a_renewal_then_it_is_a_request_of_its_own_kind_beside_an_activation(
    store: &mut dyn Store,
) {
    let request = Request {
        id: 0,
        user: "alice".into(),
        role: "admin".into(),
        group: "sudo".into(),
        duration_secs: 3600,
        reason: "r".into(),
        ticket: String::new(),
        created_at: 100,
        expires_at: 200,
        approvals_required: 1,
        state: RequestState::Pending,
    };
    let ((activation, renewal), _) = store
        .write(|tx| {
            let activation = tx.insert_request(&request)?;
            let renewal = tx.insert_renewal(
                &request,
                &Renewal {
                    until: Some(5000),
                    revision: 4,
                },
            )?;
            tx.audit(entry("renew-request"))?;
            Ok::<_, StoreError>((activation, renewal))
        })
        .unwrap();
    store
        .read(|tx| {
            assert_eq!(
                tx.pending_request("alice", "admin")?.unwrap().id,
                activation
            );
            assert_eq!(tx.pending_renewal("alice", "admin")?.unwrap().id, renewal);
            assert_eq!(
                tx.renewal(renewal)?,
                Some(Renewal {
                    until: Some(5000),
                    revision: 4
                })
            );
            assert_eq!(tx.renewal(activation)?, None);
            assert_eq!(tx.pending_requests()?.len(), 2);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // A second open renewal of the same role is refused by the database itself.
    let second = store.write(|tx| {
        tx.insert_renewal(
            &request,
            &Renewal {
                until: None,
                revision: 4,
            },
        )?;
        tx.audit(entry("renew-request"))
    });
    assert!(second.is_err());
}

pub fn given_fleet_grants_and_markers_then_they_round_trip_and_markers_need_no_audit(
    store: &mut dyn Store,
) {
    let (own, mirrored) = store
        .write(|tx| {
            let own = tx.insert_grant(&grant("alice", "admin"))?;
            let mirrored = tx.insert_grant(&grant("bob", "admin"))?;
            tx.mark_grant_from_fleet(mirrored, 42)?;
            tx.audit(entry("activate"))?;
            Ok::<_, StoreError>((own, mirrored))
        })
        .unwrap()
        .0;
    let (of_own, of_mirrored, listed) = store
        .read(|tx| {
            Ok::<_, StoreError>((
                tx.fleet_id_of(own)?,
                tx.fleet_id_of(mirrored)?,
                tx.fleet_mirrored()?,
            ))
        })
        .unwrap();
    assert_eq!((of_own, of_mirrored), (None, Some(42)));
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0, listed[0].1.id), (42, mirrored));

    // Markers: no audit record needed, the last one wins, the ship marker never goes back.
    assert_eq!(store.read(|tx| tx.fleet_sync()).unwrap(), None);
    assert_eq!(store.read(|tx| tx.audit_shipped()).unwrap(), 0);
    let sync = FleetSync {
        synced_at: 1000,
        db_now: 998,
        policy_version: 3,
        boot: crate::clock::Boot {
            id: "boot-1".into(),
            secs: 77,
        },
    };
    store
        .write(|tx| {
            tx.set_fleet_sync(&FleetSync {
                synced_at: 900,
                ..sync.clone()
            })?;
            tx.set_fleet_sync(&sync)?;
            tx.set_audit_shipped(7)?;
            tx.set_audit_shipped(5)
        })
        .unwrap();
    assert_eq!(store.read(|tx| tx.fleet_sync()).unwrap(), Some(sync));
    assert_eq!(store.read(|tx| tx.audit_shipped()).unwrap(), 7);

    // An ended mirror is no longer listed.
    store
        .write(|tx| {
            tx.end_grant(mirrored, 150, "expired")?;
            tx.audit(entry("expire"))
        })
        .unwrap();
    assert!(store.read(|tx| tx.fleet_mirrored()).unwrap().is_empty());
}

/// One `#[test]` per case of this suite, each on the fresh store `$open` makes.
macro_rules! suite {
    ($open:expr) => {
        $crate::store::conformance::suite!(@cases $open;
            given_a_change_without_audit_then_nothing_is_committed,
            given_a_change_with_audit_then_both_are_committed,
            given_a_failing_closure_then_audit_and_change_are_rolled_back,
            given_a_live_grant_then_a_second_live_grant_for_the_same_role_is_refused,
            given_memberships_then_only_those_without_live_grants_are_orphaned,
            given_a_recovery_code_then_it_works_once,
            given_a_change_of_device_then_the_old_secret_stays_until_it_is_finished,
            given_audit_query_then_filters_apply,
            given_a_change_in_a_read_transaction_then_it_is_refused,
            given_a_removal_then_it_needs_an_audit_record_only_if_it_removed_something,
            given_audit_records_then_each_is_chained_to_the_one_before,
            given_old_records_then_pruning_removes_them_with_a_checkpoint_and_the_rest_verifies,
            given_a_record_older_than_a_newer_one_before_it_then_pruning_stops_there,
            given_alerts_then_one_holds_each_key_until_resolved_or_released,
            given_an_active_assignment_then_its_fields_and_its_grant_mark_round_trip,
            given_an_assignment_put_again_or_removed_and_made_again_then_its_revision_is_new,
            given_a_renewal_then_it_is_a_request_of_its_own_kind_beside_an_activation,
            given_fleet_grants_and_markers_then_they_round_trip_and_markers_need_no_audit,
        );
    };
    (@cases $open:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let mut store = $open;
                $crate::store::conformance::$case(&mut store);
            }
        )*
    };
}
pub(crate) use suite;
