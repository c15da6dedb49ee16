//! The PAM socket's quick answer: what the access check reads of the database (every live
//! grant, what each rests on, the fleet's last synchronisation), kept in memory by a thread of
//! its own and read again after each commit, so that a holder's sudo is answered with no
//! database read, no user database lookup and no hand-over to another thread (issue 12: those
//! were most of pimd's part in sudo's time).
//!
//! It only ever allows. Its answer is [`access::decide`]'s own, over the snapshot, with user
//! databases that look nothing up: a group membership the answer would need is an error,
//! which covers nothing (so a holder eligible through a group is answered by the full check).
//! Whatever is not an allowance (a refusal, a fact the snapshot does not hold, a `permanent`
//! pass, which the break-glass alert must hear of, and any question about a group some role
//! lists `permanent` through a group, which only a lookup can settle) goes to the full check
//! on the database, which words the refusal and audits it.
//!
//! A snapshot counts only while no commit was begun since it was read ([`commits`]): a grant
//! ended, an assignment changed or a fleet synchronisation reaches the next check at once,
//! read from the database until the snapshot is read again; a reload drops it. Times are not
//! in it: each answer compares the grants' ends and the fleet's freshness with the clock of
//! the moment. Whether a user with a live grant exists is looked up when the snapshot is
//! read, which is at least every [`MAX_AGE`] / 3, and a snapshot older than [`MAX_AGE`] is not
//! trusted: the module only asks about a user its own lookup found, so this is a second look,
//! which the full check repeats on every refusal. Writing the database by hand while pimd
//! runs is not seen until pimd's next commit or that age (the README says not to).
#![forbid(unsafe_code)]

use crate::access::{self, AccessAccounts, AccessFacts};
use crate::accounts::{Accounts, AccountsError};
use crate::clock::Clock;
use crate::model::{Assignment, FleetSync, Grant};
use crate::store::{commits, ReadStore};
use pim_common::PimError;
use pim_config::{Config, Principal};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

/// What the access check reads, as of one count of commits.
pub struct AccessSnapshot {
    /// The [`commits::settled`] count it was read at.
    commits: u64,
    /// When: the users' existence is as of then (see [`MAX_AGE`]).
    read_at: Instant,
    config: Arc<Config>,
    /// Live grants by user, the soonest to end first (as `live_grants_of` gives them).
    live: HashMap<String, Vec<Grant>>,
    /// By (user, role) of each live grant.
    assignments: HashMap<(String, String), Option<Assignment>>,
    suspended: HashMap<(String, String), bool>,
    /// By the id of each live grant.
    by_assignment: HashMap<i64, bool>,
    fleet_ids: HashMap<i64, Option<i64>>,
    fleet_sync: Option<FleetSync>,
    /// The users with a live grant whom the user database knew when it was read.
    known_users: HashSet<String>,
    /// The groups of roles that list someone `permanent` through a group.
    permanent_by_group: HashSet<String>,
}

fn not_held() -> PimError {
    PimError::Internal("not in the access snapshot".into())
}

fn key(user: &str, role: &str) -> (String, String) {
    (user.to_string(), role.to_string())
}

impl AccessSnapshot {
    /// Reads it from `store` at the settled count `at`, with `config`.
    pub fn read(
        at: u64,
        config: Arc<Config>,
        store: &mut dyn ReadStore,
        accounts: &dyn Accounts,
    ) -> Result<AccessSnapshot, PimError> {
        let mut snapshot = store.read(|tx| -> Result<AccessSnapshot, PimError> {
            let mut snapshot = AccessSnapshot {
                commits: at,
                read_at: Instant::now(),
                config: config.clone(),
                live: HashMap::new(),
                assignments: HashMap::new(),
                suspended: HashMap::new(),
                by_assignment: HashMap::new(),
                fleet_ids: HashMap::new(),
                fleet_sync: tx.fleet_sync()?,
                known_users: HashSet::new(),
                permanent_by_group: config
                    .roles
                    .values()
                    .filter(|role| {
                        role.permanent
                            .iter()
                            .any(|p| matches!(p, Principal::Group(_)))
                    })
                    .map(|role| role.group.clone())
                    .collect(),
            };
            for grant in tx.live_grants()? {
                let held = key(&grant.user, &grant.role);
                if !snapshot.assignments.contains_key(&held) {
                    let assignment = tx.assignment(&grant.user, &grant.role)?;
                    let suspended = tx.suspended(&grant.user, &grant.role)?;
                    snapshot.assignments.insert(held.clone(), assignment);
                    snapshot.suspended.insert(held, suspended);
                }
                snapshot
                    .by_assignment
                    .insert(grant.id, tx.grant_by_assignment(grant.id)?);
                snapshot
                    .fleet_ids
                    .insert(grant.id, tx.fleet_id_of(grant.id)?);
                snapshot
                    .live
                    .entry(grant.user.clone())
                    .or_default()
                    .push(grant);
            }
            Ok(snapshot)
        })?;
        snapshot.known_users = snapshot
            .live
            .keys()
            .filter(|user| accounts.user_exists(user))
            .cloned()
            .collect();
        Ok(snapshot)
    }

    /// Whether `user`, holding `groups`, may use them at `now` by this snapshot alone (see the
    /// module's doc: false is "ask the full check", never a refusal).
    pub fn allows(&self, clock: &dyn Clock, user: &str, groups: &[String]) -> bool {
        if access::check_question(user, groups).is_err() {
            return false;
        }
        // A `permanent` listing through a group would be a break-glass pass the alert must
        // hear of, and only a lookup can tell: not answered here, even when a grant covers it.
        if groups.iter().any(|g| self.permanent_by_group.contains(g)) {
            return false;
        }
        let (now, boot) = (clock.now(), clock.boot());
        let accounts = NoLookups(&self.known_users);
        match access::decide(&self.config, self, &accounts, (now, &boot), user, groups) {
            Ok(decided) => decided.answer.allowed && decided.permanent.is_empty(),
            Err(_) => false,
        }
    }
}

impl AccessFacts for AccessSnapshot {
    fn live_grants_of(&self, user: &str) -> Result<Vec<Grant>, PimError> {
        // Every live grant is here: a user without one has none.
        Ok(self.live.get(user).cloned().unwrap_or_default())
    }
    fn fleet_sync(&self) -> Result<Option<FleetSync>, PimError> {
        Ok(self.fleet_sync.clone())
    }
    fn assignment(&self, user: &str, role: &str) -> Result<Option<Assignment>, PimError> {
        self.assignments
            .get(&key(user, role))
            .cloned()
            .ok_or_else(not_held)
    }
    fn grant_by_assignment(&self, id: i64) -> Result<bool, PimError> {
        self.by_assignment.get(&id).copied().ok_or_else(not_held)
    }
    fn fleet_id_of(&self, id: i64) -> Result<Option<i64>, PimError> {
        self.fleet_ids.get(&id).copied().ok_or_else(not_held)
    }
    fn suspended(&self, user: &str, role: &str) -> Result<bool, PimError> {
        self.suspended
            .get(&key(user, role))
            .copied()
            .ok_or_else(not_held)
    }
    fn last_ended_grant(&self, _: &str, _: &[String]) -> Result<Option<Grant>, PimError> {
        Err(not_held())
    }
}

/// The user databases as the snapshot saw them: users it found, and no group lookups.
struct NoLookups<'a>(&'a HashSet<String>);

impl AccessAccounts for NoLookups<'_> {
    fn user_exists(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn in_group(&self, _: &str, group: &str) -> Result<bool, AccountsError> {
        Err(AccountsError::Lookup {
            what: format!("group {group}"),
            detail: "not looked up on the quick path".into(),
        })
    }
}

/// How long the reading thread waits for a commit before it looks again anyway.
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// A snapshot older than this is not trusted, commit or not: what the user database said of
/// each holder is at most this old. The thread reads a new one after a third of it.
const MAX_AGE: Duration = Duration::from_secs(30);
/// After each reading, the thread rests this many times as long as it took: however often
/// commits come, reading snapshots takes at most a fifth of one CPU.
const REST_FACTOR: u32 = 4;

/// The current snapshot, and the thread that reads it again after each commit.
pub struct AccessSnapshots {
    current: RwLock<Option<Arc<AccessSnapshot>>>,
    /// The configuration the next snapshot is read with.
    config: Mutex<Arc<Config>>,
    clock: Box<dyn Clock + Sync>,
}

impl AccessSnapshots {
    /// No snapshot yet (every check goes to the full one until [`AccessSnapshots::start`]'s
    /// thread, or [`AccessSnapshots::refresh`], reads one).
    pub fn new(config: Arc<Config>, clock: Box<dyn Clock + Sync>) -> Arc<AccessSnapshots> {
        Arc::new(AccessSnapshots {
            current: RwLock::new(None),
            config: Mutex::new(config),
            clock,
        })
    }

    /// Starts the thread that reads a snapshot from `store` after each commit, for as long as
    /// `self` lives.
    pub fn start(
        self: &Arc<AccessSnapshots>,
        mut store: Box<dyn ReadStore>,
        accounts: Box<dyn Accounts>,
    ) -> Result<(), String> {
        let snapshots = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("access-snapshot".into())
            .spawn(move || keep_reading(snapshots, &mut *store, &*accounts))
            .map(drop)
            .map_err(|e| format!("cannot start the access snapshot's thread: {e}"))
    }

    /// Whether the current snapshot allows `user` holding `groups` now (see the module's doc).
    pub fn allows(&self, user: &str, groups: &[String]) -> bool {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(snapshot)
                if commits::settled() == Some(snapshot.commits)
                    && snapshot.read_at.elapsed() < MAX_AGE =>
            {
                snapshot.allows(&*self.clock, user, groups)
            }
            _ => false,
        }
    }

    /// Takes the configuration a reload installed: the snapshot read with the old one is
    /// dropped at once.
    pub fn set_config(&self, config: Arc<Config>) {
        let mut held = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        *held = config;
        let old = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(held);
        // Freed here, not under the lock the PAM socket's answer takes.
        drop(old);
        commits::nudge();
    }

    /// Reads a snapshot now, unless a commit is under way or one is begun meanwhile; whether it
    /// is the current one now.
    pub fn refresh(
        &self,
        store: &mut dyn ReadStore,
        accounts: &dyn Accounts,
    ) -> Result<bool, PimError> {
        let Some(seen) = commits::settled() else {
            return Ok(false);
        };
        let config = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let snapshot = AccessSnapshot::read(seen, config, store, accounts)?;
        let held = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        // Read with the configuration of now, and nothing committed since it was read.
        if !Arc::ptr_eq(&held, &snapshot.config) || commits::settled() != Some(seen) {
            return Ok(false);
        }
        let old = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Arc::new(snapshot));
        drop(held);
        drop(old);
        Ok(true)
    }

    /// The count and configuration of the current snapshot, if there is one young enough
    /// not to be read again yet.
    fn current_at(&self) -> Option<(u64, Arc<Config>)> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|s| s.read_at.elapsed() < MAX_AGE / 3)
            .map(|s| (s.commits, s.config.clone()))
    }
}

/// The reading thread: a snapshot after each commit and each reload, resting between
/// readings (see [`REST_FACTOR`]); gone with the last reference to `snapshots`.
fn keep_reading(
    snapshots: Weak<AccessSnapshots>,
    store: &mut dyn ReadStore,
    accounts: &dyn Accounts,
) {
    let mut failing = false;
    loop {
        let Some(strong) = snapshots.upgrade() else {
            return;
        };
        let settled = commits::settled();
        let config = strong
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let up_to_date = match (settled, strong.current_at()) {
            (Some(seen), Some((at, with))) => seen == at && Arc::ptr_eq(&with, &config),
            _ => false,
        };
        if up_to_date || settled.is_none() {
            drop(strong);
            commits::wait_while(settled, IDLE_LOOK);
            continue;
        }
        let started = Instant::now();
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            strong.refresh(store, accounts)
        }))
        .unwrap_or_else(|_| Err(PimError::Internal("reading it panicked".into())));
        match read {
            Ok(_) => failing = false,
            Err(e) => {
                if !failing {
                    eprintln!(
                        "pimd: cannot read the access snapshot: {}; sudo's checks read the \
                         database meanwhile",
                        e.message()
                    );
                }
                failing = true;
            }
        }
        drop(strong);
        let rest = started.elapsed() * REST_FACTOR;
        std::thread::sleep(if failing { rest.max(IDLE_LOOK) } else { rest });
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
    use std::path::PathBuf;

    const NOW: i64 = 1_800_000_000;
    const ADMIN: &str = "[roles.admin]\ngroup = \"sudo\"\neligible = [\"alice\", \"%ops\"]\n\
                         require_mfa = false\nrequire_justification = false\n\
                         max_duration = \"2h\"\n";

    struct Host {
        dir: PathBuf,
        accounts: FakeAccounts,
        clock: FakeClock,
        manager: Manager,
        snapshots: Arc<AccessSnapshots>,
        reader: Box<dyn ReadStore>,
    }

    fn caller(name: &str, uid: u32) -> Caller {
        Caller {
            uid,
            name: name.into(),
        }
    }

    fn config(text: &str, accounts: &FakeAccounts) -> Arc<Config> {
        let (config, problems) = config::parse(text, "pim.toml", accounts);
        assert!(problems.is_empty(), "{problems:?}");
        Arc::new(config.unwrap())
    }

    fn host(name: &str) -> Host {
        let dir = std::env::temp_dir().join(format!("pim-snapshot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("pim.db");
        let accounts = FakeAccounts::default();
        accounts.add_user("alice", 1000);
        accounts.add_user("olga", 1001);
        accounts.add_group("sudo", &[]);
        accounts.add_group("ops", &["olga"]);
        let clock = FakeClock::at(NOW);
        let manager = Manager::new(
            config(ADMIN, &accounts),
            SqliteStore::open(&path).unwrap(),
            Box::new(accounts.clone()),
            Box::new(clock.clone()),
            Box::new(crate::processes::fake::FakeProcesses::default()),
            "host".into(),
        );
        let snapshots = AccessSnapshots::new(config(ADMIN, &accounts), Box::new(clock.clone()));
        let reader = Box::new(SqliteStore::open_read_only(&path).unwrap());
        Host {
            dir,
            accounts,
            clock,
            manager,
            snapshots,
            reader,
        }
    }

    impl Host {
        fn activate(&mut self, user: &str, uid: u32) {
            self.manager
                .activate(&caller(user, uid), "admin", 3600, "", "", "")
                .unwrap();
        }
        /// The snapshot's answer, from a snapshot that was current throughout: other tests
        /// commit in parallel, which makes any snapshot out of date, so it is read again
        /// until one holds from before the question to after it.
        fn answer(&mut self, user: &str, groups: &[&str]) -> bool {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let Some(seen) = commits::settled() else {
                    // Another test's commit is under way (a sync to disk takes a while).
                    commits::wait_while(None, Duration::from_millis(100));
                    continue;
                };
                self.snapshots
                    .refresh(&mut *self.reader, &self.accounts)
                    .unwrap();
                if self.snapshots.current_at().map(|(at, _)| at) != Some(seen) {
                    continue;
                }
                let answer = self.snapshots.allows(user, &groups);
                if commits::settled() == Some(seen) {
                    return answer;
                }
            }
            panic!("no snapshot stayed current between other tests' commits");
        }
        fn allows(&self, user: &str, groups: &[&str]) -> bool {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            self.snapshots.allows(user, &groups)
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn given_a_live_grant_in_the_snapshot_then_its_group_is_allowed_and_no_other() {
        let mut host = host("live");
        host.activate("alice", 1000);
        assert!(!host.allows("alice", &["sudo"]), "no snapshot read yet");
        assert!(host.answer("alice", &["sudo"]));
        assert!(!host.answer("alice", &["sudo", "docker"]));
        assert!(!host.answer("bob", &["sudo"]));
        assert!(!host.answer("", &["sudo"]));
    }

    #[test]
    fn given_a_grant_ended_after_the_snapshot_then_the_snapshot_no_longer_allows_it() {
        let mut host = host("ended");
        host.activate("alice", 1000);
        assert!(host.answer("alice", &["sudo"]));
        host.manager
            .deactivate(&caller("alice", 1000), "admin")
            .unwrap();
        // The snapshot still lists the grant: the commit alone makes it count for nothing.
        assert!(host.snapshots.current_at().is_some());
        assert!(!host.allows("alice", &["sudo"]));
        assert!(!host.answer("alice", &["sudo"]));
    }

    #[test]
    fn given_a_grant_past_its_end_and_no_commit_then_the_clock_of_the_question_refuses_it() {
        let mut host = host("past");
        host.activate("alice", 1000);
        assert!(host.answer("alice", &["sudo"]));
        host.clock.advance(3601);
        assert!(!host.answer("alice", &["sudo"]));
    }

    #[test]
    fn given_a_holder_eligible_through_a_group_then_the_snapshot_leaves_it_to_the_full_check() {
        let mut host = host("group");
        host.activate("olga", 1001);
        host.activate("alice", 1000);
        assert!(!host.answer("olga", &["sudo"]));
        assert!(
            host.answer("alice", &["sudo"]),
            "the same snapshot allows a holder by name"
        );
    }

    #[test]
    fn given_a_user_the_user_database_lost_then_the_snapshot_leaves_it_to_the_full_check() {
        let mut host = host("gone");
        host.activate("alice", 1000);
        assert!(host.answer("alice", &["sudo"]));
        let same = config(ADMIN, &host.accounts);
        host.accounts.remove_user("alice");
        // Read again (the user database is looked at each time a snapshot is read).
        host.snapshots.set_config(same);
        assert!(!host.answer("alice", &["sudo"]));
    }

    /// ADMIN with `permanent` added: what a reload after alice's activation may bring.
    fn admin_with_permanent(host: &Host, permanent: &str) -> Arc<Config> {
        let text = format!("{ADMIN}permanent = [\"{permanent}\"]\n");
        config(&text, &host.accounts)
    }

    #[test]
    fn given_a_grant_and_a_permanent_listing_through_a_group_then_the_full_check_answers() {
        let mut host = host("permgroup");
        host.activate("alice", 1000);
        assert!(host.answer("alice", &["sudo"]));
        // alice is in %oncall, listed permanent: a pass the break-glass alert must hear of,
        // which only the full check's lookup finds, even though her grant would cover sudo.
        host.accounts.add_group("oncall", &["alice"]);
        let reloaded = admin_with_permanent(&host, "%oncall");
        host.snapshots.set_config(reloaded);
        assert!(!host.answer("alice", &["sudo"]));
    }

    #[test]
    fn given_a_permanent_listing_by_name_then_the_full_check_answers() {
        let mut host = host("permname");
        host.activate("alice", 1000);
        let reloaded = admin_with_permanent(&host, "alice");
        host.snapshots.set_config(reloaded);
        assert!(!host.answer("alice", &["sudo"]));
    }

    #[test]
    fn given_a_reload_then_the_snapshot_read_with_the_old_configuration_is_dropped() {
        let mut host = host("reload");
        host.activate("alice", 1000);
        assert!(host.answer("alice", &["sudo"]));
        host.snapshots
            .set_config(config("[roles.other]\ngroup = \"sudo\"\n", &host.accounts));
        assert!(host.snapshots.current_at().is_none());
        assert!(!host.allows("alice", &["sudo"]));
        // Read again with the new configuration, whose role alice holds no grant of.
        assert!(!host.answer("alice", &["sudo"]));
    }

    #[test]
    fn given_the_reading_thread_then_a_snapshot_follows_each_commit() {
        let host = host("thread");
        let path = host.dir.join("pim.db");
        host.snapshots
            .start(
                Box::new(SqliteStore::open_read_only(&path).unwrap()),
                Box::new(host.accounts.clone()),
            )
            .unwrap();
        let mut host = host;
        host.activate("alice", 1000);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !host.allows("alice", &["sudo"]) {
            assert!(
                Instant::now() < deadline,
                "no snapshot after the activation"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
