//! The host's mirror of its slice of the fleet, as plain decisions over plain values (no I/O,
//! the clock passed in): whether the host is fresh enough to count fleet grants at all
//! ([`freshness`]), and what makes the local grants equal a snapshot ([`plan`]).
//!
//! Partitions fail closed: a fleet grant counts only while `now < ends_at`, the last
//! successful synchronisation is at most `max_staleness` old and the host's clock was within
//! [`MAX_SKEW_SECS`] of the database's then. Its age is measured on the wall clock and on the
//! time since boot (CLOCK_BOOTTIME, which no setting of the clock moves back): a wall clock
//! set back does not make an old synchronisation recent, and one from another boot is stale. A stale host ends its mirrored grants locally
//! (their memberships go, PAM refuses them); the next fresh snapshot that still holds them
//! starts them again, as new local grants of the same fleet grant.

use super::authority::FleetGrant;
use crate::clock::{describe, Boot};
use crate::model::{FleetSync, Grant};
use pim_config::Config;

/// How far the host's clock may be from the database's (at the last synchronisation) for
/// fleet grants to count: end times come from the database's clock and are compared with the
/// host's, so a host behind by this much keeps a grant alive that much longer.
pub const MAX_SKEW_SECS: i64 = 30;

/// Why fleet grants do not count on this host now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// No synchronisation has succeeded yet.
    NeverSynced,
    /// The last one is older than `max_staleness`.
    TooLong { synced_at: i64 },
    /// The host's clock was `skew` seconds ahead of the database's (negative: behind).
    Skewed { skew: i64 },
    /// The last one was in another boot of the host.
    OtherBoot,
    /// This host cannot tell which boot it is in (the kernel's boot id or the time since
    /// boot cannot be read).
    BootUnknown,
}

impl Stale {
    /// For people: audit details, refusals, `pim admin hosts`.
    pub fn describe(&self, now: i64, max_staleness: u64) -> String {
        match self {
            Stale::NeverSynced => {
                "this host has not synchronised with the fleet's database yet".to_string()
            }
            Stale::TooLong { synced_at } => format!(
                "this host last synchronised with the fleet's database {}, more than \
                 max_staleness ({}) ago",
                describe(*synced_at, now),
                pim_common::duration::format(max_staleness)
            ),
            Stale::Skewed { skew } => format!(
                "this host's clock was {} s {} the fleet database's at the last \
                 synchronisation (at most {MAX_SKEW_SECS} s allowed); set the time right \
                 (NTP)",
                skew.unsigned_abs(),
                if *skew > 0 { "ahead of" } else { "behind" }
            ),
            Stale::OtherBoot => "this host has not synchronised with the fleet's database since \
                                 it booted"
                .to_string(),
            Stale::BootUnknown => format!(
                "this host cannot read its boot id ({}) or its time since boot, so the age \
                 of its last synchronisation with the fleet's database cannot be trusted",
                crate::clock::BOOT_ID
            ),
        }
    }
}

/// Whether fleet grants count at `now` (and `boot`), given the last successful
/// synchronisation.
pub fn freshness(
    sync: Option<&FleetSync>,
    now: i64,
    boot: &Boot,
    max_staleness: u64,
) -> Result<(), Stale> {
    let Some(sync) = sync else {
        return Err(Stale::NeverSynced);
    };
    let skew = sync.synced_at - sync.db_now;
    if skew.abs() > MAX_SKEW_SECS {
        return Err(Stale::Skewed { skew });
    }
    // A clock set back to before the last synchronisation is as untrustworthy as a skew.
    let age = now - sync.synced_at;
    if age < -MAX_SKEW_SECS {
        return Err(Stale::Skewed { skew: -age });
    }
    if boot.id.is_empty() {
        return Err(Stale::BootUnknown);
    }
    // A row without a boot was written before boots were recorded (or while the id could
    // not be read): it is from no boot this one can be compared with.
    if sync.boot.id.is_empty() || sync.boot.id != boot.id {
        return Err(Stale::OtherBoot);
    }
    let boot_age = boot.secs - sync.boot.secs;
    if boot_age < 0 {
        // The time since boot only moves forward: this is not the boot it says it is.
        return Err(Stale::OtherBoot);
    }
    if age.max(boot_age) > max_staleness as i64 {
        return Err(Stale::TooLong {
            synced_at: sync.synced_at,
        });
    }
    Ok(())
}

/// The database's clock when a fetch began at `began_at` (this host's clock), given the
/// `db_now` its snapshot carries and the host's clock `answered_at` when the answer came:
/// the database read its clock somewhere in between, so a host whose clock agrees with it
/// finds it there, and only a clock outside that span is off (by the least it can be).
/// A slow answer thus makes the synchronisation no fresher and the clocks no more apart.
pub fn db_clock_at(began_at: i64, answered_at: i64, db_now: i64) -> i64 {
    let took = answered_at.saturating_sub(began_at).max(0);
    began_at.clamp(db_now.saturating_sub(took), db_now)
}

/// Why a mirrored grant ends locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndWhy {
    /// The fleet no longer holds it for this host (deactivated, revoked, ended, out of scope),
    /// or the policy no longer has its role for its group.
    GoneFromFleet,
    /// The host is stale: it comes back on resync while it is still live.
    Stale(Stale),
}

/// What makes the local mirror equal the fleet's slice.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Fleet grants to start locally.
    pub start: Vec<FleetGrant>,
    /// Local grants to end, and why.
    pub end: Vec<(Grant, EndWhy)>,
    /// Local grants whose end the fleet moved, with the new end.
    pub moved: Vec<(Grant, i64)>,
    /// Fleet grants this host does not start, and why (e.g. a role its policy does not have).
    pub ignored: Vec<(FleetGrant, String)>,
}

/// What to do at `now` with the local grants `mirrored` (each with its fleet id): with a
/// snapshot (`Some`), the mirror is made to equal it while the host is fresh; without one
/// (the authority did not answer), nothing starts, a stale host ends every mirrored grant and
/// a fresh one only those whose role the running policy lacks.
pub fn plan(
    config: &Config,
    mirrored: &[(i64, Grant)],
    snapshot: Option<&[FleetGrant]>,
    fresh: Result<(), Stale>,
    now: i64,
) -> Plan {
    let mut plan = Plan::default();
    if let Err(stale) = fresh {
        plan.end = mirrored
            .iter()
            .map(|(_, g)| (g.clone(), EndWhy::Stale(stale.clone())))
            .collect();
        return plan;
    }
    // A grant whose role the running policy does not have (for its group) ends, snapshot or
    // not: a pimd started while the database is down has no policy yet, and holds nothing.
    let (in_policy, out_of_policy): (Vec<_>, Vec<_>) = mirrored
        .iter()
        .partition(|(_, g)| config.role(&g.role).is_some_and(|r| r.group == g.group));
    plan.end = out_of_policy
        .into_iter()
        .map(|(_, g)| (g.clone(), EndWhy::GoneFromFleet))
        .collect();
    let Some(snapshot) = snapshot else {
        return plan;
    };
    for (fleet_id, local) in in_policy {
        match snapshot.iter().find(|g| g.id == *fleet_id) {
            None => plan.end.push((local.clone(), EndWhy::GoneFromFleet)),
            Some(g) if g.ends_at != local.ends_at => plan.moved.push((local.clone(), g.ends_at)),
            Some(_) => {}
        }
    }
    // One live grant per user and role locally, as in the fleet.
    let mut taken: Vec<(&str, &str)> = mirrored
        .iter()
        .map(|(_, g)| (g.user.as_str(), g.role.as_str()))
        .collect();
    for g in snapshot {
        if mirrored.iter().any(|(id, _)| *id == g.id) || g.ends_at <= now {
            continue;
        }
        if let Some(why) = not_startable(config, g) {
            plan.ignored.push((g.clone(), why));
            continue;
        }
        if taken.contains(&(g.user.as_str(), g.role.as_str())) {
            plan.ignored.push((
                g.clone(),
                format!(
                    "{} already holds a live grant of role {} here",
                    g.user, g.role
                ),
            ));
            continue;
        }
        taken.push((&g.user, &g.role));
        plan.start.push(g.clone());
    }
    plan
}

/// Why this host does not start fleet grant `g`: its policy must have the role, for the
/// same group (a database that hands out another group is not followed), and the names must
/// be names.
fn not_startable(config: &Config, g: &FleetGrant) -> Option<String> {
    if let Err(e) =
        pim_common::text::check("the user name", &g.user, crate::access::MAX_USER_NAME_BYTES)
    {
        return Some(e);
    }
    let Some(role) = config.role(&g.role) else {
        return Some(format!(
            "role '{}' is not in this host's policy",
            pim_common::text::escape(&g.role)
        ));
    };
    if role.group != g.group {
        return Some(format!(
            "role {} grants group {} in this host's policy, not '{}'",
            role.name,
            role.group,
            pim_common::text::escape(&g.group)
        ));
    }
    None
}

#[cfg(test)]
mod tests;
