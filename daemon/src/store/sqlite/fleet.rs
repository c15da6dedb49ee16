//! The SQLite rows of fleet mode: which local grants mirror a fleet grant (`grants.fleet_id`),
//! the last synchronisation (`fleet_sync`) and how far the local audit was shipped
//! (`fleet_shipped`).

use super::{grant_from_row, GRANT_COLUMNS};
use crate::model::{FleetSync, Grant};
use crate::store::StoreError;
use rusqlite::{params, OptionalExtension, Transaction};

pub fn fleet_id_of(tx: &Transaction<'_>, id: i64) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .query_row("SELECT fleet_id FROM grants WHERE id = ?1", [id], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten())
}

pub fn fleet_mirrored(tx: &Transaction<'_>) -> Result<Vec<(i64, Grant)>, StoreError> {
    // The fleet id follows the grant's columns.
    let sql = format!(
        "SELECT {GRANT_COLUMNS}, fleet_id FROM grants
         WHERE ended_at IS NULL AND fleet_id IS NOT NULL ORDER BY fleet_id"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let fleet_id_column = GRANT_COLUMNS.split(',').count();
    let rows = stmt.query_map([], |r| Ok((r.get(fleet_id_column)?, grant_from_row(r)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn mark_grant_from_fleet(
    tx: &Transaction<'_>,
    id: i64,
    fleet_id: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE grants SET fleet_id = ?2 WHERE id = ?1",
        params![id, fleet_id],
    )?;
    Ok(())
}

pub fn fleet_sync(tx: &Transaction<'_>) -> Result<Option<FleetSync>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT synced_at, db_now, policy_version, boot_id, boot_secs FROM fleet_sync
             WHERE id = 1",
            [],
            |r| {
                Ok(FleetSync {
                    synced_at: r.get(0)?,
                    db_now: r.get(1)?,
                    policy_version: r.get(2)?,
                    boot: crate::clock::Boot {
                        id: r.get(3)?,
                        secs: r.get(4)?,
                    },
                })
            },
        )
        .optional()?)
}

pub fn set_fleet_sync(tx: &Transaction<'_>, s: &FleetSync) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO fleet_sync (id, synced_at, db_now, policy_version, boot_id, boot_secs)
         VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET synced_at = ?1, db_now = ?2, policy_version = ?3,
             boot_id = ?4, boot_secs = ?5",
        params![
            s.synced_at,
            s.db_now,
            s.policy_version,
            s.boot.id,
            s.boot.secs
        ],
    )?;
    Ok(())
}

pub fn audit_shipped(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx
        .query_row("SELECT through FROM fleet_shipped WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

pub fn set_audit_shipped(tx: &Transaction<'_>, through: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO fleet_shipped (id, through) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET through = max(through, ?1)",
        [through],
    )?;
    Ok(())
}
