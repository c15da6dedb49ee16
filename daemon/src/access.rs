//! The PAM module's question, `CheckAccess(user, groups)`: may `user`, who holds the gated
//! `groups`, use them now? Every held group must be covered on its own, by a live grant of a
//! role of that group or by a `permanent` listing in such a role: a grant of one group never
//! vouches for another, and a group no role grants cannot be covered at all.
//!
//! Sudo waits on this answer, so it has a read path of its own ([`AccessReader`]): its own
//! read-only handle on the store ([`ReadStore`]; with SQLite, a read-only connection that WAL
//! lets read while the manager writes) and a snapshot of the configuration that a reload
//! swaps. No lock that activations, MFA or audit writes hold is
//! taken on the way. pimd keeps one for root's questions on the bus and one for each thread
//! of the PAM socket (`service::AccessReaders`), each used off its async thread.

use crate::accounts::Accounts;
use crate::clock::{describe, Boot, Clock};
use crate::fleet::mirror::{self, Stale};
use crate::manager::MAX_ACCESS_GROUPS;
use crate::model::{Assignment, FleetSync, Grant};
use crate::policy;
use crate::store::{ReadStore, Tx};
use pim_common::text;
use pim_common::types::AccessDecision;
use pim_common::PimError;
use pim_config::{Config, Role};
use std::sync::Arc;

/// Longest user name taken: the module sends names from NSS, which (sssd's `kim@corp`, LDAP)
/// need not fit useradd's syntax nor its 32 characters.
pub const MAX_USER_NAME_BYTES: usize = 256;

/// Refuses a question that is not worth any work: an empty or overlong user name, one with
/// control or invisible characters, no groups or too many, or a malformed group name.
pub fn check_question(user: &str, groups: &[String]) -> Result<(), PimError> {
    if user.is_empty() {
        return Err(PimError::InvalidArgument("the user name is empty".into()));
    }
    text::check("the user name", user, MAX_USER_NAME_BYTES).map_err(PimError::InvalidArgument)?;
    if groups.is_empty() || groups.len() > MAX_ACCESS_GROUPS {
        return Err(PimError::InvalidArgument(format!(
            "give between 1 and {MAX_ACCESS_GROUPS} groups to check"
        )));
    }
    for g in groups {
        text::check_name("group", g).map_err(PimError::InvalidArgument)?;
    }
    Ok(())
}

/// A group the check let through because the user is listed `permanent` in a role of it:
/// what the `break-glass-used` alert is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermanentPass {
    pub user: String,
    pub role: String,
    pub group: String,
}

/// The answer and, when it allows, the groups a `permanent` listing covered.
#[derive(Debug, Clone)]
pub struct Decided {
    pub answer: AccessDecision,
    pub permanent: Vec<PermanentPass>,
}

/// Hears of every allowed check that a `permanent` listing covered (the PAM socket's readers
/// and the manager's own check tell it, so the transport does not matter). It must not wait:
/// sudo waits on the answer.
pub trait PassWatcher: Send + Sync {
    fn permanent_passed(&self, passes: Vec<PermanentPass>);
}

/// What [`decide`] reads of the state: a transaction's, or the snapshot the PAM socket keeps in
/// memory ([`crate::access_snapshot`]), which errs on what it does not hold.
pub trait AccessFacts {
    fn live_grants_of(&self, user: &str) -> Result<Vec<Grant>, PimError>;
    fn fleet_sync(&self) -> Result<Option<FleetSync>, PimError>;
    fn assignment(&self, user: &str, role: &str) -> Result<Option<Assignment>, PimError>;
    fn grant_by_assignment(&self, id: i64) -> Result<bool, PimError>;
    fn fleet_id_of(&self, id: i64) -> Result<Option<i64>, PimError>;
    fn suspended(&self, user: &str, role: &str) -> Result<bool, PimError>;
    fn last_ended_grant(&self, user: &str, groups: &[String]) -> Result<Option<Grant>, PimError>;
}

impl AccessFacts for Tx<'_> {
    fn live_grants_of(&self, user: &str) -> Result<Vec<Grant>, PimError> {
        Ok(Tx::live_grants_of(self, user)?)
    }
    fn fleet_sync(&self) -> Result<Option<FleetSync>, PimError> {
        Ok(Tx::fleet_sync(self)?)
    }
    fn assignment(&self, user: &str, role: &str) -> Result<Option<Assignment>, PimError> {
        Ok(Tx::assignment(self, user, role)?)
    }
    fn grant_by_assignment(&self, id: i64) -> Result<bool, PimError> {
        Ok(Tx::grant_by_assignment(self, id)?)
    }
    fn fleet_id_of(&self, id: i64) -> Result<Option<i64>, PimError> {
        Ok(Tx::fleet_id_of(self, id)?)
    }
    fn suspended(&self, user: &str, role: &str) -> Result<bool, PimError> {
        Ok(Tx::suspended(self, user, role)?)
    }
    fn last_ended_grant(&self, user: &str, groups: &[String]) -> Result<Option<Grant>, PimError> {
        Ok(Tx::last_ended_grant(self, user, groups)?)
    }
}

/// What [`decide`] asks of the user and group databases.
pub trait AccessAccounts {
    fn user_exists(&self, name: &str) -> bool;
    /// A lookup that fails is an error, never a "no".
    fn in_group(&self, user: &str, group: &str) -> Result<bool, crate::accounts::AccountsError>;
}

impl<A: Accounts + ?Sized> AccessAccounts for A {
    fn user_exists(&self, name: &str) -> bool {
        Accounts::user_exists(self, name)
    }
    fn in_group(&self, user: &str, group: &str) -> Result<bool, crate::accounts::AccountsError> {
        Accounts::in_group(self, user, group)
    }
}

/// The answer for `user` holding `groups` at `now`, read in `tx`, and which groups a
/// `permanent` listing covered. The question must have passed [`check_question`].
///
/// A fact that cannot be read or looked up never covers a group: the answer only allows what
/// every fact it needed said.
pub fn decide(
    config: &Config,
    tx: &dyn AccessFacts,
    accounts: &(impl AccessAccounts + ?Sized),
    (now, boot): (i64, &Boot),
    user: &str,
    groups: &[String],
) -> Result<Decided, PimError> {
    let refused = |answer| {
        Ok(Decided {
            answer,
            permanent: Vec::new(),
        })
    };
    if !accounts.user_exists(user) {
        return refused(refusal(format!(
            "pim: your account is not in this host's user database, so pim cannot vouch for group {}; ask an administrator",
            groups.join(",")
        )));
    }
    let in_group = |g: &str| accounts.in_group(user, g);
    let live = tx.live_grants_of(user)?;
    let fleet = match &config.fleet {
        Some(fleet) => Some(FleetVantage {
            fresh: mirror::freshness(
                tx.fleet_sync()?.as_ref(),
                now,
                boot,
                fleet.max_staleness_secs,
            ),
        }),
        None => None,
    };
    let mut passes = Vec::new();
    for group in groups {
        let roles: Vec<&Role> = config
            .roles
            .values()
            .filter(|r| r.group == *group)
            .collect();
        // A lookup that fails covers nothing.
        let permanent = roles
            .iter()
            .find(|r| matches!(policy::any_matches(&r.permanent, user, &in_group), Ok(true)));
        if let Some(role) = permanent {
            passes.push(PermanentPass {
                user: user.to_string(),
                role: role.name.clone(),
                group: group.clone(),
            });
            continue;
        }
        let mut granted = false;
        for grant in live.iter().filter(|g| g.group == *group && g.ends_at > now) {
            if grant_stands(config, tx, &in_group, now, grant, fleet.as_ref())? {
                granted = true;
                break;
            }
        }
        if !granted {
            if let Some(Err(stale)) = fleet.as_ref().map(|f| &f.fresh) {
                let max = config.fleet.as_ref().map_or(0, |f| f.max_staleness_secs);
                return refused(refusal(format!(
                    "pim: group {group} is not covered here: {}; grants from the fleet do not \
                     count until it synchronises",
                    stale.describe(now, max)
                )));
            }
            return refused(uncovered(tx, accounts, now, user, group, &roles, &live)?);
        }
    }
    Ok(Decided {
        answer: AccessDecision {
            allowed: true,
            message: String::new(),
        },
        permanent: passes,
    })
}

/// A fleet host's view at the moment of the question: whether fleet grants count at all.
struct FleetVantage {
    fresh: Result<(), Stale>,
}

/// Whether a live grant still rests on what made it: its role, still of the grant's group;
/// for the grant of an active assignment, that assignment, still pointing at it; and the
/// user, still eligible or permanent. Reconciliation ends a grant that does not (audited);
/// until it has, the answer must not wait for it, nor count on it.
///
/// A grant that mirrors the fleet's rests on the fleet's decision instead of local
/// eligibility (the database checked it), and counts only while the host is fresh
/// (see [`crate::fleet::mirror`]): a stale or skewed host refuses it even before the mirror
/// ends it.
fn grant_stands(
    config: &Config,
    tx: &dyn AccessFacts,
    in_group: &dyn Fn(&str) -> Result<bool, crate::accounts::AccountsError>,
    now: i64,
    grant: &Grant,
    fleet: Option<&FleetVantage>,
) -> Result<bool, PimError> {
    let Some(role) = config.role(&grant.role) else {
        return Ok(false);
    };
    if role.group != grant.group {
        return Ok(false);
    }
    // In the order of the manager's `lost_eligibility`, which ends the grants that do not.
    let assignment = tx.assignment(&grant.user, &role.name)?;
    let marked = tx.grant_by_assignment(grant.id)?;
    if !policy::assignment_grant_holds(grant.id, marked, assignment.as_ref()) {
        return Ok(false);
    }
    if let Some(fleet) = fleet {
        if tx.fleet_id_of(grant.id)?.is_some() {
            return Ok(fleet.fresh.is_ok());
        }
    }
    if matches!(
        policy::any_matches(&role.permanent, &grant.user, in_group),
        Ok(true)
    ) {
        return Ok(true);
    }
    let suspended = tx.suspended(&grant.user, &role.name)?;
    let eligible = policy::eligibility(
        role,
        &grant.user,
        assignment.as_ref(),
        suspended,
        now,
        in_group,
    );
    Ok(matches!(eligible, Ok(e) if e.is_eligible()))
}

fn refusal(message: String) -> AccessDecision {
    AccessDecision {
        allowed: false,
        message,
    }
}

/// The refusal for `group`, which nothing covers: the grant of it that ended last, else the
/// role to activate, else that no role grants it.
fn uncovered(
    tx: &dyn AccessFacts,
    accounts: &(impl AccessAccounts + ?Sized),
    now: i64,
    user: &str,
    group: &str,
    roles: &[&Role],
    live: &[Grant],
) -> Result<AccessDecision, PimError> {
    let past_end = live
        .iter()
        .filter(|g| g.group == group)
        .min_by_key(|g| g.ends_at)
        .map(|g| (g.role.clone(), g.ends_at));
    let ended = match past_end {
        Some(e) => Some(e),
        None => tx
            .last_ended_grant(user, &[group.to_string()])?
            .map(|g| (g.role, g.ended_at.unwrap_or(g.ends_at))),
    };
    if let Some((role, at)) = ended {
        return Ok(refusal(format!(
            "pim: your grant for role {role} (group {group}) ended at {}; run 'pim activate {role}'",
            describe(at, now)
        )));
    }
    for role in roles {
        let assignment = tx.assignment(user, &role.name)?;
        let suspended = tx.suspended(user, &role.name)?;
        let eligible = policy::eligibility(role, user, assignment.as_ref(), suspended, now, &|g| {
            accounts.in_group(user, g)
        });
        if matches!(eligible, Ok(e) if e.is_eligible()) {
            return Ok(refusal(format!(
                "pim: you hold group {group} without a live grant; run 'pim activate {}'",
                role.name
            )));
        }
    }
    Ok(refusal(format!(
        "pim: you hold group {group} without a live grant, and no pim role grants it to you; ask an administrator"
    )))
}

/// CheckAccess's own read path: a read-only connection to the database and the configuration
/// as last loaded.
pub struct AccessReader {
    config: Arc<Config>,
    store: Box<dyn ReadStore>,
    accounts: Box<dyn Accounts>,
    clock: Box<dyn Clock>,
    watcher: Option<Arc<dyn PassWatcher>>,
}

impl AccessReader {
    pub fn new(
        config: Arc<Config>,
        store: impl ReadStore + 'static,
        accounts: Box<dyn Accounts>,
        clock: Box<dyn Clock>,
    ) -> AccessReader {
        AccessReader {
            config,
            store: Box::new(store),
            accounts,
            clock,
            watcher: None,
        }
    }

    /// From now on, tells `watcher` of every check a `permanent` listing let through.
    pub fn watch_passes(&mut self, watcher: Arc<dyn PassWatcher>) {
        self.watcher = Some(watcher);
    }

    /// Takes the configuration a reload installed.
    pub fn set_config(&mut self, config: Arc<Config>) {
        self.config = config;
    }

    /// The answer for root's question about `user` (see [`decide`]); not audited here.
    pub fn decide(&mut self, user: &str, groups: &[String]) -> Result<AccessDecision, PimError> {
        check_question(user, groups)?;
        let (now, boot) = (self.clock.now(), self.clock.boot());
        let (config, accounts) = (&self.config, &*self.accounts);
        let decided = self
            .store
            .read(|tx| decide(config, tx, accounts, (now, &boot), user, groups))?;
        if let Some(watcher) = &self.watcher {
            if decided.answer.allowed && !decided.permanent.is_empty() {
                watcher.permanent_passed(decided.permanent);
            }
        }
        Ok(decided.answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::fake::FakeAccounts;
    use crate::clock::fake::FakeClock;
    use crate::manager::{Caller, Manager};
    use crate::store::sqlite::SqliteStore;
    use pim_config as config;

    const NOW: i64 = 1_800_000_000;

    fn config(text: &str, accounts: &FakeAccounts) -> Arc<Config> {
        let (config, problems) = config::parse(text, "pim.toml", accounts);
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(config.unwrap())
    }

    #[test]
    fn given_a_writer_in_the_middle_of_a_transaction_then_the_reader_still_answers() {
        let dir = std::env::temp_dir().join(format!("pim-access-test-{}", std::process::id()));
        let path = dir.join("pim.db");
        let accounts = FakeAccounts::default();
        accounts.add_user("alice", 1000);
        accounts.add_group("sudo", &[]);
        accounts.add_group("docker", &[]);
        let admin_only = "[roles.admin]\ngroup = \"sudo\"\neligible = [\"alice\"]\n\
                          require_mfa = false\nrequire_justification = false\n";
        let clock = FakeClock::at(NOW);
        let mut manager = Manager::new(
            config(admin_only, &accounts),
            SqliteStore::open(&path).unwrap(),
            Box::new(accounts.clone()),
            Box::new(clock.clone()),
            Box::new(crate::processes::fake::FakeProcesses::default()),
            "host".into(),
        );
        let alice = Caller {
            uid: 1000,
            name: "alice".into(),
        };
        manager.activate(&alice, "admin", 0, "", "", "").unwrap();
        let mut reader = AccessReader::new(
            config(admin_only, &accounts),
            SqliteStore::open_read_only(&path).unwrap(),
            Box::new(accounts.clone()),
            Box::new(clock),
        );
        // Another connection holds the write lock, as during an activation or an audit write:
        // the access check neither waits for it nor fails.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let sudo = vec!["sudo".to_string()];
        let answered = reader.decide("alice", &sudo).unwrap();
        assert!(answered.allowed, "{answered:?}");
        drop(other);

        // A reloaded configuration is used from the next question on.
        let both = vec!["sudo".to_string(), "docker".to_string()];
        let refused = reader.decide("alice", &both).unwrap();
        assert!(
            refused.message.contains("group docker") && refused.message.contains("no pim role"),
            "{refused:?}"
        );
        let with_docker = format!("{admin_only}[roles.docker]\neligible = [\"alice\"]\n");
        reader.set_config(config(&with_docker, &accounts));
        let refused = reader.decide("alice", &both).unwrap();
        assert!(
            refused.message.ends_with("run 'pim activate docker'"),
            "{refused:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
    #[test]
    fn given_a_malformed_question_then_refused_before_any_read() {
        let long = "g".repeat(MAX_USER_NAME_BYTES + 1);
        let sudo = vec!["sudo".to_string()];
        for (user, groups) in [
            ("", sudo.clone()),
            (long.as_str(), sudo.clone()),
            ("kim\u{1b}[2J", sudo.clone()),
            ("kim@corp", vec![]),
            ("kim@corp", vec!["su do".to_string()]),
        ] {
            assert!(
                matches!(
                    check_question(user, &groups),
                    Err(PimError::InvalidArgument(_))
                ),
                "{user:?} {groups:?}"
            );
        }
        assert!(check_question("kim@corp.example", &sudo).is_ok());
    }
}
