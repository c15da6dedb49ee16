//! `pim doctor` on a fleet host: what pimd runs on (the policy's version and roles) and how
//! its link to the fleet's authority stands, read from the manager alone (no network).

use super::*;
use pim_common::types::{FleetStateInfo, RunningRoleInfo};

impl Manager {
    /// Root only: the fleet's policy as this host runs it and the last synchronisation, with
    /// why fleet grants do not count now (the staleness rule the access check applies).
    pub fn fleet_state(&mut self, caller: &Caller) -> Result<FleetStateInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::FleetState);
        if !caller.is_root() {
            return self.refused(
                &audit,
                PimError::PermissionDenied("only root may read pimd's fleet state".into()),
            );
        }
        let Some(fleet) = self.fleet.as_ref() else {
            return self.refused(&audit, not_a_fleet_host());
        };
        let (host, max_staleness, policy_version) = (
            fleet.host.clone(),
            fleet.max_staleness,
            fleet.policy_version,
        );
        let unreachable = fleet.link.0.known_unreachable.load(Ordering::SeqCst);
        let roles = match fleet.policy {
            Some(_) => self.config.roles.values().map(running_role).collect(),
            None => Vec::new(),
        };
        let sync = self.store.read(|tx| tx.fleet_sync())?;
        let (now, boot) = (self.now(), self.clock.boot());
        let stale = match mirror::freshness(sync.as_ref(), now, &boot, max_staleness) {
            Ok(()) => String::new(),
            Err(why) => why.describe(now, max_staleness),
        };
        Ok(FleetStateInfo {
            host,
            policy_version,
            roles,
            last_sync: sync.as_ref().map_or(0, |s| s.synced_at),
            db_now: sync.as_ref().map_or(0, |s| s.db_now),
            synced_policy_version: sync.as_ref().map_or(0, |s| s.policy_version),
            max_staleness_secs: max_staleness,
            stale,
            unreachable,
        })
    }
}

fn running_role(role: &pim_config::Role) -> RunningRoleInfo {
    RunningRoleInfo {
        name: role.name.clone(),
        group: role.group.clone(),
        permanent: role.permanent.iter().map(ToString::to_string).collect(),
    }
}

#[cfg(test)]
mod tests;
