//! The synchronisation with the fleet's authority: rounds of snapshot, policy, mirror,
//! `expire_due` and the audit spool, on every NOTIFY `pim_wake` and at least every
//! [`SNAPSHOT_EVERY`], with a growing pause while the database does not answer.
//!
//! A round holds the manager's lock only for its local parts (mirroring, reading and marking
//! the spool), never while it waits for the network: PAM checks (which take no lock of the
//! manager's at all), expiry and calls go on whatever the database does.

use super::authority::{Authority, AuthorityError, PgAuthority, Wakeup};
use super::conninfo::ConnInfo;
use crate::manager::{Connector, Fetched, Manager, Mirrored};
use pim_common::types::AuditRecord;
use pim_common::PimError;
use std::sync::Arc;
use std::time::Duration;

/// The longest between two snapshots of a host that can reach the database.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);
/// The first pause after a failed round; it doubles up to the snapshot interval.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// How often a host takes a snapshot: every 30 s, or three times within `max_staleness` when
/// that is shorter, so that a host that reaches the database never goes stale between two.
pub fn snapshot_interval(max_staleness_secs: u64) -> Duration {
    SNAPSHOT_EVERY
        .min(Duration::from_secs(max_staleness_secs) / 3)
        .max(Duration::from_millis(200))
}

/// The pause before the next round: the interval after a success, a doubling one (from
/// [`RETRY_FIRST`], at most the interval) after each failure in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    interval: Duration,
    pause: Option<Duration>,
}

impl Backoff {
    pub fn new(interval: Duration) -> Backoff {
        Backoff {
            interval,
            pause: None,
        }
    }

    pub fn succeeded(&mut self) -> Duration {
        self.pause = None;
        self.interval
    }

    pub fn failed(&mut self) -> Duration {
        let pause = self
            .pause
            .map_or(RETRY_FIRST, |p| p.saturating_mul(2))
            .min(self.interval);
        self.pause = Some(pause);
        pause
    }
}

/// The manager as a round reaches it: through pimd's core (which publishes the audit lines
/// and events a call leaves), or directly in tests.
pub trait Managed {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Manager) -> Result<T, PimError> + Send + 'static,
    ) -> Result<T, PimError>;

    /// The configuration changed (a new policy version): the access check takes it.
    fn config_changed(&self);
}

/// What a round did, for the log and the back-off.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub mirrored: Mirrored,
    /// The policy version taken in this round, if a new one was.
    pub policy: Option<i64>,
    pub shipped: usize,
    /// Problems that did not stop the round (a policy that does not check, a failed expiry
    /// call, a grant whose membership could not be added).
    pub problems: Vec<String>,
}

/// Why a round failed: the authority did not answer (the mirror was still held to the
/// staleness rule), or the local side failed.
#[derive(Debug)]
pub enum RoundError {
    Unreachable(String),
    Local(PimError),
}

impl std::fmt::Display for RoundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Unreachable(why) => {
                write!(f, "the fleet's database is unreachable: {why}")
            }
            RoundError::Local(e) => f.write_str(&e.message()),
        }
    }
}

/// The authority's errors other than "unreachable" are problems of the round; unreachable
/// ends it.
fn problem(e: AuthorityError, what: &str, report: &mut RoundReport) -> Result<(), RoundError> {
    match e {
        AuthorityError::Unreachable(why) => Err(RoundError::Unreachable(why)),
        other => {
            report.problems.push(format!("{what}: {other}"));
            Ok(())
        }
    }
}

/// One round: snapshot; the new policy first if its version moved; the mirror; the
/// authority's expiry; the local audit spool, in order, as far as the authority takes it.
/// Without an answer, the mirror is still held to the staleness rule (a stale host ends its
/// fleet grants) and the round fails.
pub fn round(
    authority: &mut dyn Authority,
    managed: &impl Managed,
) -> Result<RoundReport, RoundError> {
    let mut report = RoundReport::default();
    let fetch = managed
        .run(|m| Ok(m.fleet_fetch_begins()))
        .map_err(RoundError::Local)?;
    let snapshot = match authority.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => {
            let why = e.to_string();
            managed.run(|m| m.mirror(None)).map_err(RoundError::Local)?;
            if let AuthorityError::Database(refused) = &e {
                let refused = refused.clone();
                managed
                    .run(move |m| {
                        m.authority_refused(refused);
                        Ok(())
                    })
                    .map_err(RoundError::Local)?;
            }
            return Err(match e {
                AuthorityError::Unreachable(why) => RoundError::Unreachable(why),
                _ => RoundError::Local(PimError::Internal(why)),
            });
        }
    };
    let running = managed
        .run(|m| Ok(m.fleet_policy_version()))
        .map_err(RoundError::Local)?;
    if snapshot.policy_version != running {
        match authority.policy(snapshot.policy_version) {
            Ok(policy) => {
                let version = policy.version;
                match managed.run(move |m| m.apply_policy(version, &policy.text)) {
                    Ok(()) => {
                        report.policy = Some(version);
                        managed.config_changed();
                    }
                    Err(e) => report.problems.push(format!(
                        "policy version {version} not taken: {}",
                        e.message()
                    )),
                }
            }
            Err(e) => problem(e, "fetching the policy", &mut report)?,
        }
    }
    // A call's own snapshot (after a change it made) may have been mirrored meanwhile: then
    // this older one is dropped (`superseded`) and the round goes on.
    match managed.run(move |m| m.mirror(Some(&Fetched { fetch, snapshot }))) {
        Ok(mirrored) => report.mirrored = mirrored,
        Err(e) => report.problems.push(format!("mirroring: {}", e.message())),
    }
    if let Err(e) = authority.expire_due() {
        problem(e, "expire_due", &mut report)?;
    }
    loop {
        let batch = managed
            .run(|m| m.audit_to_ship())
            .map_err(RoundError::Local)?;
        if batch.is_empty() {
            break;
        }
        let (stored, set_aside) = match ship(authority, &batch) {
            Ok(shipped) => shipped,
            Err(e) => {
                problem(e, "shipping the audit", &mut report)?;
                break;
            }
        };
        if !set_aside.is_empty() {
            managed
                .run(move |m| {
                    m.audit_set_aside(&set_aside);
                    Ok(())
                })
                .map_err(RoundError::Local)?;
        }
        if stored == 0 {
            break;
        }
        let through = batch[stored - 1].id;
        managed
            .run(move |m| m.audit_shipped(through))
            .map_err(RoundError::Local)?;
        report.shipped += stored;
        if stored < batch.len() || batch.len() < crate::manager::SHIP_BATCH as usize {
            break;
        }
    }
    Ok(report)
}

/// Ships `batch` (in chain order): how many of its first records the authority holds now,
/// and which of them went only as a stand-in, with why. When the authority refuses the
/// batch as invalid, its records go one at a time and a record refused on its own goes as
/// [`stand_in`] (the same place in the chain, who acted and about whom, none of its free
/// text), so that one record cannot stall the spool. Other errors (unreachable, a break in
/// the chain) are the caller's: shipping retries next round.
fn ship(
    authority: &mut dyn Authority,
    batch: &[AuditRecord],
) -> Result<(usize, Vec<(i64, String)>), AuthorityError> {
    // A call that succeeds leaves the authority holding every record it was given: those
    // it stored now and those it had (a retry after a lost answer; the chain check holds
    // them to the same hash). What it counts is only the new ones, so it says nothing of
    // how far the spool got.
    match authority.ship_audit(batch) {
        Ok(_) => return Ok((batch.len(), Vec::new())),
        Err(AuthorityError::Refused(PimError::InvalidArgument(_))) => {}
        Err(e) => return Err(e),
    }
    let mut set_aside = Vec::new();
    for (held, record) in batch.iter().enumerate() {
        let single = match authority.ship_audit(std::slice::from_ref(record)) {
            Err(AuthorityError::Refused(PimError::InvalidArgument(why))) => {
                let shipped = ship_stand_in(authority, record, &why);
                if shipped.is_ok() {
                    set_aside.push((record.id, why));
                }
                shipped
            }
            other => other,
        };
        match single {
            Ok(_) => {}
            Err(e) if held == 0 => return Err(e),
            Err(_) => return Ok((held, set_aside)),
        }
    }
    Ok((batch.len(), set_aside))
}

/// Ships the [`stand_in`] of `record`, which the authority refused (`why`); should it
/// refuse the names too (they are valid, bounded and escaped here: it should not), the
/// stand-in goes without them, so that the spool still moves on.
fn ship_stand_in(
    authority: &mut dyn Authority,
    record: &AuditRecord,
    why: &str,
) -> Result<usize, AuthorityError> {
    let named = stand_in(record, why);
    match authority.ship_audit(std::slice::from_ref(&named)) {
        Err(AuthorityError::Refused(PimError::InvalidArgument(_))) => {
            let unnamed = AuditRecord {
                actor: String::new(),
                user: String::new(),
                role: String::new(),
                ..named
            };
            authority.ship_audit(std::slice::from_ref(&unnamed))
        }
        other => other,
    }
}

/// Longest refusal quoted in a stand-in.
const WHY_BYTES: usize = 512;

/// What goes to the fleet's audit in place of `record`, which it refused (`why`): the same
/// id, time, actor, action, user, role, outcome and place in the chain (prev and hash), and
/// none of its free text (reason, ticket, detail), which is what a refusal is about.
fn stand_in(record: &AuditRecord, why: &str) -> AuditRecord {
    AuditRecord {
        reason: String::new(),
        ticket: String::new(),
        detail: format!(
            "not shipped as written (the fleet's database refused it: {}); this host's local \
             audit holds it",
            pim_common::text::for_record(why, WHY_BYTES)
        ),
        ..record.clone()
    }
}

/// Connections to the fleet's PostgreSQL, as `[fleet] database` names it (each connects on
/// its first call, so pimd starts and enforces its mirror while the database is down).
pub struct PgConnector(pub ConnInfo);

impl Connector for PgConnector {
    fn connect(&self) -> Result<Box<dyn Authority>, AuthorityError> {
        Ok(Box::new(PgAuthority::new(self.0.clone())))
    }
}

/// The least time from one round to the next: any session may `NOTIFY pim_wake` (NOTIFY
/// needs no privilege in PostgreSQL), so a flood of them must not become a flood of
/// snapshots from every host.
const MIN_ROUND_GAP: Duration = Duration::from_secs(1);

/// The sync thread: a round, then a wait for a NOTIFY (on its own connection) until the
/// next one is due. Runs for as long as pimd does; logs what it cannot do.
pub fn run(
    connector: Arc<dyn Connector>,
    mut wakeup: Box<dyn Wakeup>,
    managed: impl Managed,
    max_staleness_secs: u64,
    log: impl Fn(&str),
) {
    let interval = snapshot_interval(max_staleness_secs);
    let round_gap = interval.min(MIN_ROUND_GAP);
    let mut backoff = Backoff::new(interval);
    let mut authority: Option<Box<dyn Authority>> = None;
    let mut was_failing = false;
    loop {
        let started = std::time::Instant::now();
        let outcome = match authority.as_mut() {
            Some(a) => round(a.as_mut(), &managed),
            None => match connector.connect() {
                Ok(a) => round(authority.insert(a).as_mut(), &managed),
                Err(e) => {
                    let _ = managed.run(|m| m.mirror(None));
                    Err(RoundError::Unreachable(e.to_string()))
                }
            },
        };
        let pause = match outcome {
            Ok(report) => {
                if was_failing {
                    log("fleet: the database answers again; synchronised");
                }
                was_failing = false;
                for p in &report.problems {
                    log(&format!("fleet: {p}"));
                }
                if let Some(version) = report.policy {
                    log(&format!("fleet: policy version {version} taken"));
                }
                backoff.succeeded()
            }
            Err(e) => {
                if !was_failing {
                    log(&format!("fleet: {e}; retrying"));
                }
                was_failing = true;
                if matches!(e, RoundError::Unreachable(_)) {
                    authority = None;
                }
                backoff.failed()
            }
        };
        // A NOTIFY ends the wait early; a wake-up connection that fails waits the pause out.
        if wakeup.wait(pause).is_err() {
            std::thread::sleep(pause);
        }
        if let Some(rest) = round_gap.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_failures_then_the_pause_doubles_up_to_the_interval_and_a_success_resets_it() {
        let mut backoff = Backoff::new(Duration::from_secs(30));
        let pauses: Vec<u64> = (0..7).map(|_| backoff.failed().as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.succeeded(), Duration::from_secs(30));
        assert_eq!(backoff.failed(), RETRY_FIRST);
    }

    #[test]
    fn given_a_short_max_staleness_then_snapshots_come_three_times_within_it() {
        assert_eq!(snapshot_interval(600), SNAPSHOT_EVERY);
        assert_eq!(snapshot_interval(30), Duration::from_secs(10));
        assert_eq!(snapshot_interval(0), Duration::from_millis(200));
    }
}
