//! The SQLite backend of the store's port ([`super`]): one file in WAL mode with
//! `synchronous=FULL`, migrated on open. [`SqliteStore`] is the manager's connection; each
//! write transaction is `BEGIN IMMEDIATE`, so it holds the write lock from its first read.
//! [`SqliteReader`] is a second, read-only connection for the access check, which WAL lets
//! read while the other writes. The audit table refuses UPDATE and DELETE by trigger.
//!
//! The database's directory and files are checked before SQLite opens them (see
//! [`prepare_directory`]): root's alone, no link followed, the mode of no directory changed
//! that pimd did not create (save /var/lib/pim).

use super::{Key, ReadStore, Store, StoreError, Transaction};

mod fleet;
mod reviews;
use crate::mfa::FailureState;
use crate::model::{
    AlertRow, AlertState, Assignment, AuditQuery, Ending, FleetSync, Grant, MfaRecord, NewAlert,
    NewGrant, PendingSecret, PendingSweep, Renewal, Request, RequestState, SweepRecheck,
};
use crate::model::{Review, ReviewDecision, ReviewItem};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE grants (
    id          INTEGER PRIMARY KEY,
    user        TEXT NOT NULL,
    role        TEXT NOT NULL,
    grp         TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    request_id  INTEGER,
    ended_at    INTEGER,
    end_reason  TEXT
);
-- One live grant per user and role: concurrent activations cannot both win.
CREATE UNIQUE INDEX grants_one_live ON grants(user, role) WHERE ended_at IS NULL;
CREATE INDEX grants_live_end ON grants(ends_at) WHERE ended_at IS NULL;

-- Group memberships PIM itself added (and so must take away); nothing else is ever removed.
CREATE TABLE memberships (
    user      TEXT NOT NULL,
    grp       TEXT NOT NULL,
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (user, grp)
);

CREATE TABLE assignments (
    user         TEXT NOT NULL,
    role         TEXT NOT NULL,
    not_before   INTEGER,
    not_after    INTEGER,
    assigned_by  TEXT NOT NULL,
    assigned_at  INTEGER NOT NULL,
    PRIMARY KEY (user, role)
);

CREATE TABLE mfa (
    user         TEXT PRIMARY KEY,
    secret       BLOB NOT NULL,
    confirmed    INTEGER NOT NULL,
    last_step    INTEGER,
    created_at   INTEGER NOT NULL
);

CREATE TABLE mfa_failures (
    user          TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    user     TEXT NOT NULL,
    hash     TEXT NOT NULL,
    used_at  INTEGER,
    PRIMARY KEY (user, hash)
);

CREATE TABLE requests (
    id                  INTEGER PRIMARY KEY,
    user                TEXT NOT NULL,
    role                TEXT NOT NULL,
    grp                 TEXT NOT NULL,
    duration_secs       INTEGER NOT NULL,
    reason              TEXT NOT NULL,
    ticket              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    approvals_required  INTEGER NOT NULL,
    state               TEXT NOT NULL
        CHECK (state IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
    decided_at          INTEGER,
    decided_by          TEXT,
    comment             TEXT
);
CREATE UNIQUE INDEX requests_one_open ON requests(user, role) WHERE state = 'pending';

CREATE TABLE approvals (
    request_id  INTEGER NOT NULL REFERENCES requests(id),
    approver    TEXT NOT NULL,
    at          INTEGER NOT NULL,
    comment     TEXT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    user     TEXT NOT NULL,
    role     TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    ticket   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(at);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    r#"
-- The look for files a user made set-group-ID for a group PIM took away from them (see
-- setgid.rs): every grant of user and grp that ended at or before swept_through is done;
-- walked_at and failures describe the walks of the sweep under way. Grants that ended before
-- this table existed have no row, so they are swept once too.
CREATE TABLE setgid_sweeps (
    user           TEXT NOT NULL,
    grp            TEXT NOT NULL,
    swept_through  INTEGER,
    walked_at      INTEGER,
    failures       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, grp)
);
"#,
    r#"
-- The uid and gid of each user and group when PIM added the membership: the set-group-ID
-- sweep looks for these numbers, whatever became of the names. rechecked_at: the last of the
-- walks that look again after a sweep is done (at each start of pimd, and daily for 30 days).
CREATE TABLE setgid_ids (
    user  TEXT NOT NULL,
    grp   TEXT NOT NULL,
    uid   INTEGER NOT NULL,
    gid   INTEGER NOT NULL,
    PRIMARY KEY (user, grp, uid, gid)
);
ALTER TABLE setgid_sweeps ADD COLUMN rechecked_at INTEGER;
"#,
    r#"
-- The end of the processes that still carry a group after a grant of it ended (ending.rs):
-- one row per ended grant of a role with on_end = "terminate", written with the grant's end.
-- term_at: when SIGTERM went; done_at: when none was left, or the ending was not needed.
CREATE TABLE endings (
    grant_id  INTEGER PRIMARY KEY,
    user      TEXT NOT NULL,
    role      TEXT NOT NULL,
    grp       TEXT NOT NULL,
    grace     INTEGER NOT NULL,
    term_at   INTEGER,
    done_at   INTEGER
);
CREATE INDEX endings_open ON endings(grant_id) WHERE done_at IS NULL;
-- Warnings sent before a grant's end, one per grant, end and lead time: never repeated.
CREATE TABLE end_warnings (
    grant_id  INTEGER NOT NULL,
    ends_at   INTEGER NOT NULL,
    lead      INTEGER NOT NULL,
    sent_at   INTEGER NOT NULL,
    PRIMARY KEY (grant_id, ends_at, lead)
);
"#,
    r#"
-- The audit chain (pim_common::chain): each record's predecessor's hash and its own, made by
-- the store's port. Records from before this migration keep NULLs: the chain starts after
-- them, at a genesis record the port writes.
ALTER TABLE audit ADD COLUMN prev TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
"#,
    r#"
-- Active assignments (issue 13): the user holds the group for the window without activating;
-- at its start it materialises as a grant (grant_id), so every end path applies to it.
-- notices_sent: the notices of its end sent (1: 14 days before, 2: 1 day before).
ALTER TABLE assignments ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE assignments ADD COLUMN grant_id INTEGER;
ALTER TABLE assignments ADD COLUMN notices_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN by_assignment INTEGER NOT NULL DEFAULT 0;
-- Renewal requests share the requests' ids and life (approve, deny, cancel, expiry); one open
-- request per user, role and kind.
ALTER TABLE requests ADD COLUMN kind TEXT NOT NULL DEFAULT 'activation';
ALTER TABLE requests ADD COLUMN renew_until INTEGER;
DROP INDEX requests_one_open;
CREATE UNIQUE INDEX requests_one_open ON requests(user, role, kind) WHERE state = 'pending';
"#,
    r#"
-- Access reviews: one per role and start; items are the users whose access it reviews, as it
-- stood at the start. decision is the last reviewer's (last one wins); result what the end
-- applied. A suspension keeps a standing `eligible` entry of the configuration from making
-- its user eligible until an administrator or owner reinstates it.
CREATE TABLE reviews (
    id                INTEGER PRIMARY KEY,
    role              TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    ends_at           INTEGER NOT NULL,
    reviewers         TEXT NOT NULL,
    default_decision  TEXT NOT NULL,
    recurring         INTEGER NOT NULL,
    started_by        TEXT NOT NULL,
    completed_at      INTEGER
);
CREATE INDEX reviews_open ON reviews(ends_at) WHERE completed_at IS NULL;
CREATE TABLE review_items (
    review_id           INTEGER NOT NULL REFERENCES reviews(id),
    user                TEXT NOT NULL,
    standing            INTEGER NOT NULL,
    assigned            INTEGER NOT NULL,
    active              INTEGER NOT NULL,
    recommendation      TEXT NOT NULL,
    recommendation_why  TEXT NOT NULL,
    decision            TEXT,
    decided_by          TEXT,
    decided_at          INTEGER,
    comment             TEXT NOT NULL DEFAULT '',
    result              TEXT,
    PRIMARY KEY (review_id, user)
);
CREATE TABLE suspensions (
    user       TEXT NOT NULL,
    role       TEXT NOT NULL,
    review_id  INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (user, role)
);
"#,
    r#"
-- An assignment's revision: each put_assignment gives it a number no version of any
-- assignment had before (AUTOINCREMENT never hands a number out twice, so unassigning and
-- assigning again gives a new one too). A renewal request keeps the revision it was filed
-- against: approving it once the assignment changed is refused as stale. Assignments and
-- renewals from before this migration share revision 0.
CREATE TABLE assignment_revisions (n INTEGER PRIMARY KEY AUTOINCREMENT);
ALTER TABLE assignments ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN renew_revision INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- A change of device in progress (issue 15): the new secret, made when its user proved the
-- enrolment's code, until a code of the new secret confirms it; the enrolment's own secret
-- keeps working meanwhile.
CREATE TABLE mfa_rotations (
    user        TEXT PRIMARY KEY,
    secret      BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
"#,
    r#"
-- Alerts (see alerts.rs): one row per alert raised. holds_key: this row stands for its key
-- (open, or dismissed while its cause persists), so the same cause is raised once; a
-- resolved alert, or a dismissed one whose cause went, lets it go.
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    key             TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('open', 'resolved', 'dismissed')),
    user            TEXT NOT NULL,
    role            TEXT NOT NULL,
    detail          TEXT NOT NULL,
    raised_at       INTEGER NOT NULL,
    closed_at       INTEGER,
    dismissed_by    TEXT NOT NULL DEFAULT '',
    dismiss_reason  TEXT NOT NULL DEFAULT '',
    holds_key       INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX alerts_one_per_key ON alerts(key) WHERE holds_key = 1;
CREATE INDEX alerts_open ON alerts(state) WHERE state = 'open';
-- The alerts read grants by start: those of the last frequent_activation.within, and the
-- last start of each user and role.
CREATE INDEX grants_started ON grants(started_at);
CREATE INDEX grants_user_role_started ON grants(user, role, started_at);
"#,
    r#"
-- When a user's recovery codes were issued (`pim mfa status` shows it); 0 for codes issued
-- before this migration.
ALTER TABLE recovery_codes ADD COLUMN issued_at INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- A review item keeps the revision of the assignment it reviews: the review's end removes
-- the assignment only while it is unchanged. Items of reviews still open take the revision
-- their assignment has now (what the end removed before this migration).
ALTER TABLE review_items ADD COLUMN revision INTEGER;
UPDATE review_items SET revision = (
    SELECT a.revision FROM assignments a JOIN reviews r ON r.id = review_items.review_id
    WHERE a.user = review_items.user AND a.role = r.role)
WHERE assigned = 1 AND review_id IN (SELECT id FROM reviews WHERE completed_at IS NULL);
-- A pending renewal filed before revisions existed (revision 0) against an assignment made
-- or changed after it was filed asked about terms that no longer hold: stale (-1 is no
-- assignment's revision).
UPDATE requests SET renew_revision = -1
WHERE kind = 'renewal' AND state = 'pending' AND renew_revision = 0 AND EXISTS (
    SELECT 1 FROM assignments a
    WHERE a.user = requests.user AND a.role = requests.role
      AND a.assigned_at > requests.created_at);
"#,
    r#"
-- Fleet mode: a local grant that mirrors a grant of the fleet's authority carries its id
-- (a fleet grant may be mirrored by several local grants in turn: one ends while the host is
-- stale, the next starts when it is fresh again). One row each: the last successful
-- synchronisation, and the last local audit record shipped to the fleet.
ALTER TABLE grants ADD COLUMN fleet_id INTEGER;
CREATE INDEX grants_live_fleet ON grants(fleet_id) WHERE ended_at IS NULL AND fleet_id IS NOT NULL;
CREATE TABLE fleet_sync (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    synced_at       INTEGER NOT NULL,
    db_now          INTEGER NOT NULL,
    policy_version  INTEGER NOT NULL
);
CREATE TABLE fleet_shipped (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    through  INTEGER NOT NULL
);
"#,
    r#"
-- Fleet mode: the last synchronisation's place in the host's boot (CLOCK_BOOTTIME and the
-- boot id), so that a wall clock set back cannot make it look recent. A row from before
-- has no boot: stale until the next synchronisation.
ALTER TABLE fleet_sync ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
ALTER TABLE fleet_sync ADD COLUMN boot_secs INTEGER NOT NULL DEFAULT 0;
"#,
];

/// The audit table's guard against deletion, which retention lifts for its own removal
/// alone, in its transaction.
const AUDIT_NO_DELETE: &str = "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";

const AUDIT_COLUMNS: &str =
    "id, at, actor, action, user, role, outcome, reason, ticket, detail, prev, hash";

fn audit_from_row(r: &Row<'_>) -> rusqlite::Result<pim_common::types::AuditRecord> {
    Ok(pim_common::types::AuditRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: named(r, 3)?,
        user: r.get(4)?,
        role: r.get(5)?,
        outcome: named(r, 6)?,
        reason: r.get(7)?,
        ticket: r.get(8)?,
        detail: r.get(9)?,
        prev: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
        hash: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
    })
}

/// The manager's connection, which writes.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. Its directory, and each one on the
    /// way to it, must be safe from everyone but root (see [`prepare_directory`]); the
    /// database's files must be regular, root's and of one link, and are made 0600.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            prepare_directory(dir)?;
        }
        for file in database_files(path) {
            if let Some(meta) = existing(&file, std::fs::symlink_metadata(&file))? {
                check_database_file(&file, &meta)?;
            }
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let store = SqliteStore::setup(conn)?;
        for file in database_files(path) {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
                .open(&file);
            let Some(opened) = existing(&file, opened)? else {
                continue;
            };
            let meta = opened.metadata().map_err(io_error(&file))?;
            check_database_file(&file, &meta)?;
            opened
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io_error(&file))?;
        }
        Ok(store)
    }

    /// A second, read-only connection to the database at `path`, which [`SqliteStore::open`]
    /// has created and migrated: in WAL mode it reads while the other connection writes.
    pub fn open_read_only(path: &Path) -> Result<SqliteReader, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The access check's: well below the PAM module's timeout (2 s by default), so that a
        // read that cannot start is an error pimd answers, not a check that times out.
        conn.busy_timeout(std::time::Duration::from_millis(250))?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteReader { conn })
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Plans that never depend on bound values: otherwise SQLite recompiles some cached
        // statements (`user = ?1 ... ORDER BY`) on every new binding, which was a quarter of
        // pimd's work on each CheckAccess that sudo waits for.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        // Room for every statement pimd caches (each `grants_where`/`requests_where` clause is
        // one: close to twenty in all), so none is evicted and compiled again.
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew(version));
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }
}

impl ReadStore for SqliteStore {
    fn begin_read(&mut self, _: Key) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(SqliteTx {
            tx: self.conn.transaction()?,
        }))
    }
}

impl Store for SqliteStore {
    fn begin_write(&mut self, _: Key) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(SqliteTx {
            tx: self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
        }))
    }
}

/// The access check's connection (see [`SqliteStore::open_read_only`]).
pub struct SqliteReader {
    conn: Connection,
}

impl ReadStore for SqliteReader {
    fn begin_read(&mut self, _: Key) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(SqliteTx {
            tx: self.conn.transaction()?,
        }))
    }
}

/// The unit's `StateDirectory=pim`: pimd's own.
const STATE_DIRECTORY: &str = "/var/lib/pim";

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Directory {
        path: pim_common::text::escape(&path.display().to_string()),
        source,
    }
}

/// `Some` of what was found at `path`, `None` if nothing is there.
fn existing<T>(path: &Path, found: std::io::Result<T>) -> Result<Option<T>, StoreError> {
    match found {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// The database's own files: the database, its WAL, shared memory and rollback journal.
fn database_files(database: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// A file of the database must be pimd's own: not a link to another file someone planted
/// (which a chmod would follow), not a second name of another file.
fn check_database_file(file: &Path, meta: &std::fs::Metadata) -> Result<(), StoreError> {
    let why = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_string()
    } else if !meta.file_type().is_file() {
        "it is not a regular file".to_string()
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        format!("it belongs to uid {}", meta.uid())
    } else if meta.nlink() != 1 {
        format!("it has {} links", meta.nlink())
    } else {
        return Ok(());
    };
    Err(StoreError::UnsafeFile {
        path: pim_common::text::escape(&file.display().to_string()),
        why,
    })
}

/// Makes sure that nobody but root can change the database's directory or any directory on
/// the way to it, creating the missing ones (one `mkdir` at a time, each root's alone: 0700).
/// The mode of an existing directory is never changed (it may be /srv, or a fresh /tmp), save
/// the state directory's, which is pimd's by the unit and the package: the database's
/// directory must already be root's alone, and each one above it root's, writable by nobody
/// else unless sticky (others cannot rename or remove what root made in /tmp). No symbolic
/// link is followed: each step is looked at with lstat, and changed through a descriptor
/// opened with O_NOFOLLOW.
fn prepare_directory(dir: &Path) -> Result<(), StoreError> {
    let pimd_uid = nix::unistd::geteuid().as_raw();
    let mut path = PathBuf::new();
    let mut components = dir.components().peekable();
    while let Some(component) = components.next() {
        path.push(component);
        let place = if components.peek().is_some() {
            Place::Above
        } else {
            Place::DatabaseDirectory {
                is_state_directory: path == Path::new(STATE_DIRECTORY),
            }
        };
        let created = match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_error(&path)(e)),
        };
        let verdict = if created {
            Verdict::Tighten
        } else {
            let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
            let kind = if meta.file_type().is_symlink() {
                EntryKind::Symlink
            } else if meta.is_dir() {
                EntryKind::Directory
            } else {
                EntryKind::Other
            };
            let entry = Entry {
                kind,
                owner: meta.uid(),
                mode: meta.mode() & 0o7777,
            };
            verdict(&entry, place, pimd_uid)
        };
        match verdict {
            Verdict::Keep => {}
            // Through a descriptor of this very directory: umask may have taken bits from
            // the mkdir, and a state directory is made root's alone.
            Verdict::Tighten => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
                .open(&path)
                .and_then(|opened| opened.set_permissions(std::fs::Permissions::from_mode(0o700)))
                .map_err(io_error(&path))?,
            Verdict::Refuse(why) => {
                return Err(StoreError::UnsafeDirectory {
                    path: pim_common::text::escape(&path.display().to_string()),
                    why,
                })
            }
        }
    }
    Ok(())
}

/// An existing step on the way to the database, as lstat saw it.
#[derive(Debug)]
struct Entry {
    kind: EntryKind,
    owner: u32,
    mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Directory,
    Symlink,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A directory above the database's.
    Above,
    DatabaseDirectory {
        is_state_directory: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Make it 0700: pimd created it, or it is the state directory.
    Tighten,
    Refuse(String),
}

fn verdict(entry: &Entry, place: Place, pimd_uid: u32) -> Verdict {
    match entry.kind {
        EntryKind::Directory => {}
        EntryKind::Symlink => {
            return Verdict::Refuse(
                "it is a symbolic link, which pimd does not follow on the way to its database \
                 (name the directory it points to)"
                    .into(),
            )
        }
        EntryKind::Other => return Verdict::Refuse("it is not a directory".into()),
    }
    if entry.owner != pimd_uid {
        return Verdict::Refuse(format!(
            "it belongs to uid {}, who could replace the database",
            entry.owner
        ));
    }
    let open_to_others = entry.mode & 0o077 != 0;
    match place {
        Place::Above if entry.mode & 0o022 != 0 && entry.mode & 0o1000 == 0 => {
            Verdict::Refuse(format!(
                "it is mode {:04o}: others may write in it, and without the sticky bit they \
                 could put a directory of their own in place of the database's",
                entry.mode
            ))
        }
        Place::Above => Verdict::Keep,
        Place::DatabaseDirectory { .. } if !open_to_others => Verdict::Keep,
        Place::DatabaseDirectory {
            is_state_directory: true,
        } => Verdict::Tighten,
        Place::DatabaseDirectory {
            is_state_directory: false,
        } => Verdict::Refuse(format!(
            "it is mode {:04o}, open to others, and pimd did not create it (pimd changes the \
             mode of no directory it did not create, and keeps its database only in one that \
             is root's alone)",
            entry.mode
        )),
    }
}

/// One transaction on a connection; dropped uncommitted, rusqlite rolls it back.
fn alert_state(s: &str) -> rusqlite::Result<AlertState> {
    AlertState::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown alert state {s}").into(),
        )
    })
}

const ALERT_COLUMNS: &str = "id, kind, key, state, user, role, detail, raised_at, closed_at, \
                             dismissed_by, dismiss_reason, holds_key";

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        key: r.get(2)?,
        state: alert_state(&r.get::<_, String>(3)?)?,
        user: r.get(4)?,
        role: r.get(5)?,
        detail: r.get(6)?,
        raised_at: r.get(7)?,
        closed_at: r.get(8)?,
        dismissed_by: r.get(9)?,
        dismiss_reason: r.get(10)?,
        holds_key: r.get(11)?,
    })
}

struct SqliteTx<'c> {
    tx: rusqlite::Transaction<'c>,
}

fn grant_from_row(r: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        user: r.get(1)?,
        role: r.get(2)?,
        group: r.get(3)?,
        started_at: r.get(4)?,
        ends_at: r.get(5)?,
        reason: r.get(6)?,
        ticket: r.get(7)?,
        request_id: r.get(8)?,
        ended_at: r.get(9)?,
        end_reason: r.get(10)?,
    })
}

const GRANT_COLUMNS: &str =
    "id, user, role, grp, started_at, ends_at, reason, ticket, request_id, ended_at, end_reason";

fn request_from_row(r: &Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: r.get(0)?,
        user: r.get(1)?,
        role: r.get(2)?,
        group: r.get(3)?,
        duration_secs: r.get::<_, i64>(4)? as u64,
        reason: r.get(5)?,
        ticket: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
        approvals_required: r.get::<_, i64>(9)? as u32,
        state: named(r, 10)?,
    })
}

/// Column `i` as one of a vocabulary's names (a request state, an audit action...); a name the
/// vocabulary does not know is a conversion error, like a wrong type.
fn named<T: std::str::FromStr<Err = pim_common::vocab::UnknownName>>(
    r: &Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let name: String = r.get(i)?;
    name.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

const ASSIGNMENT_COLUMNS: &str =
    "user, role, not_before, not_after, active, reason, grant_id, notices_sent, revision";

fn assignment_from_row(r: &Row<'_>) -> rusqlite::Result<Assignment> {
    Ok(Assignment {
        user: r.get(0)?,
        role: r.get(1)?,
        not_before: r.get(2)?,
        not_after: r.get(3)?,
        active: r.get(4)?,
        reason: r.get(5)?,
        grant_id: r.get(6)?,
        notices_sent: r.get(7)?,
        revision: r.get(8)?,
    })
}

const REQUEST_COLUMNS: &str = "id, user, role, grp, duration_secs, reason, ticket, created_at, \
     expires_at, approvals_required, state";

fn grants_sql(clause: &str) -> String {
    format!("SELECT {GRANT_COLUMNS} FROM grants WHERE {clause}")
}

const LIVE_GRANTS_OF_USER: &str = "user = ?1 AND ended_at IS NULL ORDER BY ends_at, id";

impl SqliteTx<'_> {
    fn grants_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<Grant>> {
        let mut stmt = self.tx.prepare_cached(&grants_sql(clause))?;
        let rows = stmt.query_map(args, grant_from_row)?;
        rows.collect()
    }

    fn requests_where(
        &self,
        clause: &str,
        args: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<Request>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE {clause}");
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt.query_map(args, request_from_row)?;
        rows.collect()
    }
}

impl Transaction for SqliteTx<'_> {
    // --- audit ---

    fn append_audit(&self, r: &pim_common::types::AuditRecord) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO audit (id, at, actor, action, user, role, outcome, reason, ticket,
                                    detail, prev, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                r.id,
                r.at,
                r.actor,
                r.action.as_str(),
                r.user,
                r.role,
                r.outcome.as_str(),
                r.reason,
                r.ticket,
                r.detail,
                r.prev,
                r.hash
            ])?;
        Ok(())
    }

    fn audit_tip(&self) -> Result<Option<super::AuditTip>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
            .query_row([], |r| {
                Ok(super::AuditTip {
                    id: r.get(0)?,
                    hash: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                })
            })
            .optional()?)
    }

    fn audit_prunable(
        &self,
        before: i64,
    ) -> Result<Option<(i64, pim_common::chain::Head)>, StoreError> {
        let first: Option<i64> = self
            .tx
            .query_row("SELECT MIN(id) FROM audit", [], |r| r.get(0))?;
        let Some(first) = first else {
            return Ok(None);
        };
        // The last record before the first one that is not old enough (or the last of all).
        let last: Option<(i64, Option<String>)> = self
            .tx
            .query_row(
                "SELECT id, hash FROM audit
                 WHERE id < COALESCE((SELECT MIN(id) FROM audit WHERE at >= ?1), 9223372036854775807)
                 ORDER BY id DESC LIMIT 1",
                [before],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(last.map(|(id, hash)| {
            (
                first,
                pim_common::chain::Head {
                    id,
                    hash: hash.unwrap_or_default(),
                },
            )
        }))
    }

    fn delete_audit_through(&self, last: i64) -> Result<bool, StoreError> {
        self.tx.execute_batch("DROP TRIGGER audit_no_delete")?;
        let removed = self
            .tx
            .execute("DELETE FROM audit WHERE id <= ?1", [last])?;
        self.tx.execute_batch(AUDIT_NO_DELETE)?;
        Ok(removed > 0)
    }

    fn audit_chain(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<pim_common::types::AuditRecord>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2");
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![after, limit], audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn audit_record(&self, id: i64) -> Result<Option<pim_common::types::AuditRecord>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE id = ?1");
        Ok(self
            .tx
            .prepare_cached(&sql)?
            .query_row([id], audit_from_row)
            .optional()?)
    }

    fn audit_records(
        &self,
        q: &AuditQuery<'_>,
    ) -> Result<Vec<pim_common::types::AuditRecord>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE at >= ?1
               AND (?2 IS NULL OR user = ?2)
               AND (?3 IS NULL OR role = ?3)
               AND (?4 IS NULL OR user = ?4 OR actor = ?5)
             ORDER BY id LIMIT ?6"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let limit = pim_common::types::MAX_AUDIT_RECORDS;
        let params = params![q.since, q.user, q.role, q.involving, q.by, limit];
        let rows = stmt.query_map(params, audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- grants ---

    fn insert_grant(&self, g: &NewGrant<'_>) -> Result<i64, StoreError> {
        self.tx.execute(
            "INSERT INTO grants (user, role, grp, started_at, ends_at, reason, ticket, request_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                g.user,
                g.role,
                g.group,
                g.started_at,
                g.ends_at,
                g.reason,
                g.ticket,
                g.request_id
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn live_grant(&self, user: &str, role: &str) -> Result<Option<Grant>, StoreError> {
        Ok(self
            .grants_where(
                "user = ?1 AND role = ?2 AND ended_at IS NULL",
                params![user, role],
            )?
            .pop())
    }

    fn live_grants(&self) -> Result<Vec<Grant>, StoreError> {
        Ok(self.grants_where("ended_at IS NULL ORDER BY ends_at, id", [])?)
    }

    fn live_grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        Ok(self.grants_where(LIVE_GRANTS_OF_USER, [user])?)
    }

    fn due_grants(&self, now: i64) -> Result<Vec<Grant>, StoreError> {
        Ok(self.grants_where(
            "ended_at IS NULL AND ends_at <= ?1 ORDER BY ends_at, id",
            [now],
        )?)
    }

    fn last_ended_grant(&self, user: &str, groups: &[String]) -> Result<Option<Grant>, StoreError> {
        let all = self.grants_where(
            "user = ?1 AND ended_at IS NOT NULL ORDER BY ended_at DESC, id DESC LIMIT 50",
            [user],
        )?;
        Ok(all.into_iter().find(|g| groups.contains(&g.group)))
    }

    fn end_grant(&self, id: i64, at: i64, reason: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE grants SET ended_at = ?2, end_reason = ?3 WHERE id = ?1 AND ended_at IS NULL",
            params![id, at, reason],
        )?;
        Ok(())
    }

    fn set_grant_end(&self, id: i64, ends_at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE grants SET ends_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
            params![id, ends_at],
        )?;
        Ok(())
    }

    fn next_grant_end(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(ends_at) FROM grants WHERE ended_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    // --- memberships PIM added ---

    fn has_membership(&self, user: &str, group: &str) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM memberships WHERE user = ?1 AND grp = ?2",
                [user, group],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn add_membership(&self, user: &str, group: &str, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT OR IGNORE INTO memberships (user, grp, added_at) VALUES (?1, ?2, ?3)",
            params![user, group, at],
        )?;
        Ok(())
    }

    fn remove_membership(&self, user: &str, group: &str) -> Result<(), StoreError> {
        self.tx.execute(
            "DELETE FROM memberships WHERE user = ?1 AND grp = ?2",
            [user, group],
        )?;
        Ok(())
    }

    fn orphaned_memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT user, grp FROM memberships m WHERE NOT EXISTS (
                 SELECT 1 FROM grants g
                 WHERE g.user = m.user AND g.grp = m.grp AND g.ended_at IS NULL)
             ORDER BY user, grp",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- set-group-ID sweeps ---

    fn pending_setgid_sweeps(&self) -> Result<Vec<PendingSweep>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT g.user, g.grp, MAX(g.ended_at), s.walked_at, COALESCE(s.failures, 0)
             FROM grants g LEFT JOIN setgid_sweeps s ON s.user = g.user AND s.grp = g.grp
             WHERE g.ended_at IS NOT NULL
               AND g.ended_at > COALESCE(s.swept_through, -1)
               AND NOT EXISTS (SELECT 1 FROM memberships m
                               WHERE m.user = g.user AND m.grp = g.grp)
             GROUP BY g.user, g.grp
             ORDER BY g.user, g.grp",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PendingSweep {
                user: r.get(0)?,
                group: r.get(1)?,
                ended_through: r.get(2)?,
                walked_at: r.get(3)?,
                failures: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn setgid_sweep_walked(
        &self,
        user: &str,
        group: &str,
        at: i64,
        failed: bool,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO setgid_sweeps (user, grp, walked_at, failures) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, grp) DO UPDATE SET walked_at = ?3,
                 failures = CASE WHEN ?4 = 0 THEN 0 ELSE failures + 1 END",
            params![user, group, at, failed as i64],
        )?;
        Ok(())
    }

    fn setgid_sweep_done(
        &self,
        user: &str,
        group: &str,
        through: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO setgid_sweeps (user, grp, swept_through, rechecked_at)
                 VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, grp) DO UPDATE SET swept_through = ?3, walked_at = NULL,
                 failures = 0, rechecked_at = ?4",
            params![user, group, through, at],
        )?;
        Ok(())
    }

    fn setgid_rechecks(&self, since: i64) -> Result<Vec<SweepRecheck>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT s.user, s.grp, s.swept_through, s.rechecked_at FROM setgid_sweeps s
             WHERE s.swept_through >= ?1
               AND s.swept_through >= (SELECT MAX(g.ended_at) FROM grants g
                                       WHERE g.user = s.user AND g.grp = s.grp)
               AND NOT EXISTS (SELECT 1 FROM memberships m
                               WHERE m.user = s.user AND m.grp = s.grp)
             ORDER BY s.user, s.grp",
        )?;
        let rows = stmt.query_map([since], |r| {
            Ok(SweepRecheck {
                user: r.get(0)?,
                group: r.get(1)?,
                ended_through: r.get(2)?,
                rechecked_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn setgid_sweep_rechecked(&self, user: &str, group: &str, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE setgid_sweeps SET rechecked_at = ?3 WHERE user = ?1 AND grp = ?2",
            params![user, group, at],
        )?;
        Ok(())
    }

    fn setgid_sweep_reopened(&self, user: &str, group: &str, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE setgid_sweeps SET swept_through = NULL, walked_at = ?3, rechecked_at = ?3
             WHERE user = ?1 AND grp = ?2",
            params![user, group, at],
        )?;
        Ok(())
    }

    fn record_setgid_ids(
        &self,
        user: &str,
        group: &str,
        uid: u32,
        gid: u32,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT OR IGNORE INTO setgid_ids (user, grp, uid, gid) VALUES (?1, ?2, ?3, ?4)",
            params![user, group, uid, gid],
        )?;
        Ok(())
    }

    fn setgid_ids(&self, user: &str, group: &str) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT uid, gid FROM setgid_ids WHERE user = ?1 AND grp = ?2 ORDER BY uid, gid",
        )?;
        let rows = stmt.query_map([user, group], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- the end of processes carrying a group (ending.rs) ---

    fn add_ending(&self, grant: &Grant, grace_secs: u64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT OR IGNORE INTO endings (grant_id, user, role, grp, grace)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                grant.id,
                grant.user,
                grant.role,
                grant.group,
                grace_secs as i64
            ],
        )?;
        Ok(())
    }

    fn open_endings(&self) -> Result<Vec<Ending>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT grant_id, user, role, grp, grace, term_at FROM endings
             WHERE done_at IS NULL ORDER BY grant_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Ending {
                grant_id: r.get(0)?,
                user: r.get(1)?,
                role: r.get(2)?,
                group: r.get(3)?,
                grace_secs: r.get(4)?,
                term_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn ending_terminated(&self, grant_id: i64, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE endings SET term_at = ?2 WHERE grant_id = ?1 AND term_at IS NULL",
            params![grant_id, at],
        )?;
        Ok(())
    }

    fn ending_done(&self, grant_id: i64, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE endings SET done_at = ?2 WHERE grant_id = ?1 AND done_at IS NULL",
            params![grant_id, at],
        )?;
        Ok(())
    }

    fn next_ending_step(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(COALESCE(term_at + grace, 0)) FROM endings WHERE done_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    fn warning_sent(&self, grant_id: i64, ends_at: i64, lead: u64) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM end_warnings WHERE grant_id = ?1 AND ends_at = ?2 AND lead = ?3",
                params![grant_id, ends_at, lead as i64],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn record_warning(
        &self,
        grant_id: i64,
        ends_at: i64,
        lead: u64,
        at: i64,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT OR IGNORE INTO end_warnings (grant_id, ends_at, lead, sent_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![grant_id, ends_at, lead as i64, at],
        )?;
        Ok(())
    }

    // --- eligibility assignments ---

    fn put_assignment(&self, a: &Assignment, by: &str, at: i64) -> Result<i64, StoreError> {
        self.tx
            .execute("INSERT INTO assignment_revisions DEFAULT VALUES", [])?;
        let revision = self.tx.last_insert_rowid();
        // Only the last number is needed for AUTOINCREMENT to go on from it.
        self.tx
            .execute("DELETE FROM assignment_revisions WHERE n < ?1", [revision])?;
        self.tx.execute(
            "INSERT INTO assignments (user, role, not_before, not_after, assigned_by, assigned_at,
                 active, reason, grant_id, notices_sent, revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (user, role) DO UPDATE SET not_before = ?3, not_after = ?4,
                 assigned_by = ?5, assigned_at = ?6, active = ?7, reason = ?8, grant_id = ?9,
                 notices_sent = ?10, revision = ?11",
            params![
                a.user,
                a.role,
                a.not_before,
                a.not_after,
                by,
                at,
                a.active,
                a.reason,
                a.grant_id,
                a.notices_sent,
                revision
            ],
        )?;
        Ok(revision)
    }

    fn assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ASSIGNMENT_COLUMNS} FROM assignments ORDER BY user, role"
        ))?;
        let rows = stmt.query_map([], assignment_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_assignment_grant(
        &self,
        user: &str,
        role: &str,
        grant_id: i64,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE assignments SET grant_id = ?3 WHERE user = ?1 AND role = ?2",
            params![user, role, grant_id],
        )?;
        Ok(())
    }

    fn mark_grant_by_assignment(&self, id: i64) -> Result<(), StoreError> {
        self.tx
            .execute("UPDATE grants SET by_assignment = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn grant_by_assignment(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT by_assignment FROM grants WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }

    fn set_assignment_notices(&self, user: &str, role: &str, sent: u32) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE assignments SET notices_sent = ?3 WHERE user = ?1 AND role = ?2",
            params![user, role, sent],
        )?;
        Ok(())
    }

    fn delete_assignment(&self, user: &str, role: &str) -> Result<(bool, bool), StoreError> {
        let deleted = self.tx.execute(
            "DELETE FROM assignments WHERE user = ?1 AND role = ?2",
            [user, role],
        )? > 0;
        Ok((deleted, deleted))
    }

    fn assignment(&self, user: &str, role: &str) -> Result<Option<Assignment>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(&format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE user = ?1 AND role = ?2"
            ))?
            .query_row([user, role], assignment_from_row)
            .optional()?)
    }

    fn next_assignment_end(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(a.not_after) FROM assignments a
             WHERE a.not_after > ?1 AND EXISTS (
                 SELECT 1 FROM grants g
                 WHERE g.user = a.user AND g.role = a.role AND g.ended_at IS NULL)",
            [now],
            |r| r.get(0),
        )?)
    }

    // --- alerts ---

    fn memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT user, grp FROM memberships ORDER BY user, grp")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn dated_assignments(&self) -> Result<Vec<(Assignment, i64)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ASSIGNMENT_COLUMNS}, assigned_at FROM assignments ORDER BY user, role"
        ))?;
        let rows = stmt.query_map([], |r| Ok((assignment_from_row(r)?, r.get(8)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn grant_starts_since(&self, since: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT user, role, started_at FROM grants WHERE started_at >= ?1
             ORDER BY started_at",
        )?;
        let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn last_grant_starts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT user, role, MAX(started_at) FROM grants GROUP BY user, role")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn first_audit_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .query_row("SELECT MIN(at) FROM audit", [], |r| r.get(0))?)
    }

    fn current_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE holds_key = 1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([], alert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn current_alert(&self, key: &str) -> Result<Option<AlertRow>, StoreError> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE holds_key = 1 AND key = ?1"),
                [key],
                alert_row,
            )
            .optional()?)
    }

    fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_row,
            )
            .optional()?)
    }

    fn alerts(&self, all: bool, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ?1 OR state = 'open'
             ORDER BY state = 'open' DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![all, limit], alert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn alert_dismissals(&self, kind: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT key, MAX(closed_at) FROM alerts
             WHERE kind = ?1 AND state = 'dismissed' AND closed_at IS NOT NULL
             GROUP BY key ORDER BY key",
        )?;
        let rows = stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn insert_alert(&self, a: &NewAlert<'_>) -> Result<i64, StoreError> {
        self.tx.execute(
            "INSERT INTO alerts (kind, key, state, user, role, detail, raised_at, holds_key)
             VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, 1)",
            params![a.kind, a.key, a.user, a.role, a.detail, a.at],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn resolve_alert(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE alerts SET state = 'resolved', closed_at = ?2, holds_key = 0
             WHERE id = ?1 AND state = 'open'",
            params![id, at],
        )?;
        Ok(())
    }

    fn dismiss_alert(&self, id: i64, by: &str, reason: &str, at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE alerts SET state = 'dismissed', closed_at = ?2, dismissed_by = ?3,
                 dismiss_reason = ?4
             WHERE id = ?1 AND state = 'open'",
            params![id, at, by, reason],
        )?;
        Ok(())
    }

    fn release_alert(&self, id: i64) -> Result<(), StoreError> {
        self.tx
            .execute("UPDATE alerts SET holds_key = 0 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn delete_closed_alerts(&self, before: i64) -> Result<(u64, bool), StoreError> {
        let removed = self.tx.execute(
            "DELETE FROM alerts WHERE holds_key = 0 AND state != 'open' AND closed_at < ?1",
            [before],
        )? as u64;
        Ok((removed, removed > 0))
    }

    // --- MFA ---

    fn mfa(&self, user: &str) -> Result<Option<MfaRecord>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT secret, confirmed, last_step, created_at FROM mfa WHERE user = ?1",
                [user],
                |r| {
                    Ok(MfaRecord {
                        secret: r.get(0)?,
                        confirmed: r.get(1)?,
                        last_step: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    fn put_pending_mfa(&self, user: &str, secret: &[u8], at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO mfa (user, secret, confirmed, last_step, created_at)
             VALUES (?1, ?2, 0, NULL, ?3)
             ON CONFLICT (user) DO UPDATE SET secret = ?2, confirmed = 0, last_step = NULL,
                 created_at = ?3",
            params![user, secret, at],
        )?;
        Ok(())
    }

    fn confirm_mfa(&self, user: &str) -> Result<(), StoreError> {
        self.tx
            .execute("UPDATE mfa SET confirmed = 1 WHERE user = ?1", [user])?;
        Ok(())
    }

    fn set_last_step(&self, user: &str, step: u64) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE mfa SET last_step = ?2 WHERE user = ?1",
            params![user, step as i64],
        )?;
        Ok(())
    }

    fn mfa_rotation(&self, user: &str) -> Result<Option<PendingSecret>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT secret, created_at FROM mfa_rotations WHERE user = ?1",
                [user],
                |r| {
                    Ok(PendingSecret {
                        secret: r.get(0)?,
                        created_at: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn put_mfa_rotation(&self, user: &str, secret: &[u8], at: i64) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO mfa_rotations (user, secret, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user) DO UPDATE SET secret = ?2, created_at = ?3",
            params![user, secret, at],
        )?;
        Ok(())
    }

    fn finish_mfa_rotation(
        &self,
        user: &str,
        secret: &[u8],
        step: u64,
    ) -> Result<bool, StoreError> {
        let moved = self.tx.execute(
            "UPDATE mfa SET
                 secret = ?3,
                 created_at = (SELECT created_at FROM mfa_rotations
                               WHERE user = ?1 AND secret = ?3),
                 last_step = ?2
             WHERE user = ?1 AND confirmed = 1
                 AND EXISTS (SELECT 1 FROM mfa_rotations WHERE user = ?1 AND secret = ?3)",
            params![user, step as i64, secret],
        )?;
        self.tx.execute(
            "DELETE FROM mfa_rotations WHERE user = ?1 AND secret = ?2",
            params![user, secret],
        )?;
        Ok(moved == 1)
    }

    fn delete_mfa_rotation(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .tx
            .execute("DELETE FROM mfa_rotations WHERE user = ?1", [user])?
            > 0)
    }

    fn delete_mfa(&self, user: &str) -> Result<(bool, bool), StoreError> {
        let others = self
            .tx
            .execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?
            + self
                .tx
                .execute("DELETE FROM mfa_failures WHERE user = ?1", [user])?
            + self
                .tx
                .execute("DELETE FROM mfa_rotations WHERE user = ?1", [user])?;
        let had = self.tx.execute("DELETE FROM mfa WHERE user = ?1", [user])? > 0;
        Ok((had, had || others > 0))
    }

    fn failure_state(&self, user: &str) -> Result<FailureState, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT failures, window_start, locked_until FROM mfa_failures WHERE user = ?1",
                [user],
                |r| {
                    Ok(FailureState {
                        failures: r.get::<_, i64>(0)? as u32,
                        window_start: r.get(1)?,
                        locked_until: r.get(2)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    fn set_failure_state(&self, user: &str, s: &FailureState) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO mfa_failures (user, failures, window_start, locked_until)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user) DO UPDATE SET failures = ?2, window_start = ?3, locked_until = ?4",
            params![user, s.failures as i64, s.window_start, s.locked_until],
        )?;
        Ok(())
    }

    fn replace_recovery_codes(
        &self,
        user: &str,
        hashes: &[String],
        at: i64,
    ) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?;
        for hash in hashes {
            self.tx.execute(
                "INSERT INTO recovery_codes (user, hash, used_at, issued_at)
                 VALUES (?1, ?2, NULL, ?3)",
                params![user, hash, at],
            )?;
        }
        Ok(())
    }

    fn recovery_codes_issued_at(&self, user: &str) -> Result<i64, StoreError> {
        Ok(self.tx.query_row(
            "SELECT COALESCE(MAX(issued_at), 0) FROM recovery_codes WHERE user = ?1",
            [user],
            |r| r.get::<_, i64>(0),
        )?)
    }

    fn use_recovery_code(&self, user: &str, hash: &str, at: i64) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "UPDATE recovery_codes SET used_at = ?3
             WHERE user = ?1 AND hash = ?2 AND used_at IS NULL",
            params![user, hash, at],
        )? == 1)
    }

    fn recovery_codes_left(&self, user: &str) -> Result<u32, StoreError> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM recovery_codes WHERE user = ?1 AND used_at IS NULL",
            [user],
            |r| r.get::<_, i64>(0),
        )? as u32)
    }

    // --- requests ---

    fn insert_request(&self, r: &Request) -> Result<i64, StoreError> {
        self.tx.execute(
            "INSERT INTO requests (user, role, grp, duration_secs, reason, ticket, created_at,
                 expires_at, approvals_required, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending')",
            params![
                r.user,
                r.role,
                r.group,
                r.duration_secs as i64,
                r.reason,
                r.ticket,
                r.created_at,
                r.expires_at,
                r.approvals_required as i64
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn request(&self, id: i64) -> Result<Option<Request>, StoreError> {
        Ok(self.requests_where("id = ?1", [id])?.pop())
    }

    fn pending_request(&self, user: &str, role: &str) -> Result<Option<Request>, StoreError> {
        Ok(self
            .requests_where(
                "user = ?1 AND role = ?2 AND state = 'pending' AND kind = 'activation'",
                [user, role],
            )?
            .pop())
    }

    fn pending_renewal(&self, user: &str, role: &str) -> Result<Option<Request>, StoreError> {
        Ok(self
            .requests_where(
                "user = ?1 AND role = ?2 AND state = 'pending' AND kind = 'renewal'",
                [user, role],
            )?
            .pop())
    }

    fn renewal(&self, id: i64) -> Result<Option<Renewal>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT renew_until, renew_revision FROM requests WHERE id = ?1 AND kind = 'renewal'",
                [id],
                |r| {
                    Ok(Renewal {
                        until: r.get(0)?,
                        revision: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn insert_renewal(&self, r: &Request, renewal: &Renewal) -> Result<i64, StoreError> {
        self.tx.execute(
            "INSERT INTO requests (user, role, grp, duration_secs, reason, ticket, created_at,
                 expires_at, approvals_required, state, kind, renew_until, renew_revision)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, 'pending', 'renewal', ?9, ?10)",
            params![
                r.user,
                r.role,
                r.group,
                r.reason,
                r.ticket,
                r.created_at,
                r.expires_at,
                r.approvals_required as i64,
                renewal.until,
                renewal.revision
            ],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    fn pending_requests(&self) -> Result<Vec<Request>, StoreError> {
        Ok(self.requests_where("state = 'pending' ORDER BY id", [])?)
    }

    fn due_requests(&self, now: i64) -> Result<Vec<Request>, StoreError> {
        Ok(self.requests_where("state = 'pending' AND expires_at <= ?1 ORDER BY id", [now])?)
    }

    fn next_request_expiry(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(expires_at) FROM requests WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    fn decide_request(
        &self,
        id: i64,
        state: RequestState,
        at: i64,
        by: &str,
        comment: &str,
    ) -> Result<(), StoreError> {
        self.tx.execute(
            "UPDATE requests SET state = ?2, decided_at = ?3, decided_by = ?4, comment = ?5
             WHERE id = ?1 AND state = 'pending'",
            params![id, state.as_str(), at, by, comment],
        )?;
        Ok(())
    }

    fn add_approval(
        &self,
        id: i64,
        approver: &str,
        at: i64,
        comment: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.tx.execute(
            "INSERT OR IGNORE INTO approvals (request_id, approver, at, comment)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, approver, at, comment],
        )? == 1)
    }

    fn approvers_of(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT approver FROM approvals WHERE request_id = ?1 ORDER BY at, approver",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- access reviews (reviews.rs) ---

    fn review(&self, id: i64) -> Result<Option<Review>, StoreError> {
        reviews::review(&self.tx, id)
    }

    fn open_reviews(&self) -> Result<Vec<Review>, StoreError> {
        reviews::open_reviews(&self.tx)
    }

    fn next_review_end(&self) -> Result<Option<i64>, StoreError> {
        reviews::next_review_end(&self.tx)
    }

    fn last_recurring_review(&self, role: &str) -> Result<Option<Review>, StoreError> {
        reviews::last_recurring_review(&self.tx, role)
    }

    fn review_items(&self, id: i64) -> Result<Vec<ReviewItem>, StoreError> {
        reviews::review_items(&self.tx, id)
    }

    fn last_grant_start(&self, user: &str, role: &str) -> Result<Option<i64>, StoreError> {
        reviews::last_grant_start(&self.tx, user, role)
    }

    fn suspended(&self, user: &str, role: &str) -> Result<bool, StoreError> {
        reviews::suspended(&self.tx, user, role)
    }

    fn insert_review(&self, r: &Review) -> Result<i64, StoreError> {
        reviews::insert_review(&self.tx, r)
    }

    fn insert_review_item(&self, item: &ReviewItem) -> Result<(), StoreError> {
        reviews::insert_review_item(&self.tx, item)
    }

    fn decide_review_item(
        &self,
        id: i64,
        user: &str,
        decision: ReviewDecision,
        by: &str,
        at: i64,
        comment: &str,
    ) -> Result<(), StoreError> {
        reviews::decide_review_item(&self.tx, id, user, decision, by, at, comment)
    }

    fn set_review_item_result(&self, id: i64, user: &str, result: &str) -> Result<(), StoreError> {
        reviews::set_review_item_result(&self.tx, id, user, result)
    }

    fn complete_review(&self, id: i64, at: i64) -> Result<(), StoreError> {
        reviews::complete_review(&self.tx, id, at)
    }

    fn suspend(&self, user: &str, role: &str, review_id: i64, at: i64) -> Result<(), StoreError> {
        reviews::suspend(&self.tx, user, role, review_id, at)
    }

    fn reinstate(&self, user: &str, role: &str) -> Result<(bool, bool), StoreError> {
        let removed = reviews::reinstate(&self.tx, user, role)?;
        Ok((removed, removed))
    }

    fn fleet_id_of(&self, id: i64) -> Result<Option<i64>, StoreError> {
        fleet::fleet_id_of(&self.tx, id)
    }

    fn fleet_mirrored(&self) -> Result<Vec<(i64, Grant)>, StoreError> {
        fleet::fleet_mirrored(&self.tx)
    }

    fn fleet_sync(&self) -> Result<Option<FleetSync>, StoreError> {
        fleet::fleet_sync(&self.tx)
    }

    fn audit_shipped(&self) -> Result<i64, StoreError> {
        fleet::audit_shipped(&self.tx)
    }

    fn mark_grant_from_fleet(&self, id: i64, fleet_id: i64) -> Result<(), StoreError> {
        fleet::mark_grant_from_fleet(&self.tx, id, fleet_id)
    }

    fn set_fleet_sync(&self, sync: &FleetSync) -> Result<(), StoreError> {
        fleet::set_fleet_sync(&self.tx, sync)
    }

    fn set_audit_shipped(&self, through: i64) -> Result<(), StoreError> {
        fleet::set_audit_shipped(&self.tx, through)
    }

    fn commit(self: Box<Self>, _: Key) -> Result<(), StoreError> {
        Ok(self.tx.commit()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{entry, grant};

    mod conformance {
        crate::store::conformance::suite!(super::SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn given_a_record_of_an_unknown_action_then_reading_the_audit_fails_naming_it() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        store
            .conn
            .execute(
                "INSERT INTO audit (at, actor, action, user, role, outcome, reason, ticket, detail)
                 VALUES (1, 'alice', 'activate-forever', 'alice', 'admin', 'success', '', '', '')",
                [],
            )
            .unwrap();
        let store: &mut dyn Store = &mut store;
        let err = store
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown audit action 'activate-forever'"),
            "{err}"
        );
    }

    #[test]
    fn given_reads_for_different_users_then_the_cached_statement_is_not_recompiled() {
        let mut sqlite = SqliteStore::open_in_memory().unwrap();
        let store: &mut dyn Store = &mut sqlite;
        store
            .write(|tx| {
                tx.insert_grant(&grant("alice", "admin"))?;
                tx.audit(entry("activate"))
            })
            .unwrap();
        for user in ["alice", "bob", "alice", "carol"] {
            store.read(|tx| tx.live_grants_of(user)).unwrap();
        }
        let stmt = sqlite
            .conn
            .prepare_cached(&grants_sql(LIVE_GRANTS_OF_USER))
            .unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn given_a_database_with_records_from_before_the_chain_then_a_genesis_starts_it() {
        let mut sqlite = SqliteStore::open_in_memory().unwrap();
        // As an older pimd left it: rows without prev and hash.
        for n in 1..=2 {
            sqlite
                .conn
                .execute(
                    "INSERT INTO audit (at, actor, action, user, role, outcome, reason, ticket,
                                        detail)
                     VALUES (?1, 'alice', 'activate', 'alice', 'admin', 'success', '', '', '')",
                    [n],
                )
                .unwrap();
        }
        let store: &mut dyn Store = &mut sqlite;
        let (_, audited) = store.write(|tx| tx.audit(entry("extend"))).unwrap();
        assert_eq!(audited.len(), 2, "the genesis goes to syslog too");
        let records = store
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap();
        let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            ["activate", "activate", "audit-chain-start", "extend"]
        );
        assert_eq!(records[2].prev, pim_common::chain::GENESIS_PREV);
        assert!(
            records[2].detail.contains("up to 2"),
            "{}",
            records[2].detail
        );
        let v = crate::store::conformance::verify(store);
        assert!(v.ok(), "{v:?}");
        assert_eq!((v.unchained, v.checked, v.genesis), (2, 2, 3));
    }

    #[test]
    fn given_a_renewal_filed_before_revisions_against_terms_changed_since_then_the_upgrade_makes_it_stale(
    ) {
        // A database as the pimd before review-item revisions (the 12th migration) left it.
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..11] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 11).unwrap();
        conn.execute_batch(
            "INSERT INTO assignments (user, role, assigned_by, assigned_at)
                 VALUES ('dave', 'docker', 'gina', 300), ('erin', 'docker', 'gina', 50);
             INSERT INTO requests (id, user, role, grp, duration_secs, reason, ticket, created_at,
                                   expires_at, approvals_required, state, kind, renew_until)
                 VALUES (1, 'dave', 'docker', 'docker', 0, 'r', '', 100, 999, 1, 'pending',
                         'renewal', 500),
                        (2, 'erin', 'docker', 'docker', 0, 'r', '', 100, 999, 1, 'pending',
                         'renewal', 500);
             INSERT INTO reviews (id, role, started_at, ends_at, reviewers, default_decision,
                                  recurring, started_by)
                 VALUES (1, 'docker', 60, 900, 'owners', 'remove', 0, 'gina');
             INSERT INTO review_items (review_id, user, standing, assigned, active,
                                       recommendation, recommendation_why)
                 VALUES (1, 'erin', 0, 1, 0, 'remove', 'never activated');",
        )
        .unwrap();
        let mut sqlite = SqliteStore::setup(conn).unwrap();
        let store: &mut dyn Store = &mut sqlite;
        let revision =
            |store: &mut dyn Store, id| store.read(|tx| tx.renewal(id)).unwrap().unwrap();
        assert_eq!(
            revision(store, 1).revision,
            -1,
            "dave's assignment was made after his renewal: stale"
        );
        assert_eq!(revision(store, 2).revision, 0, "erin's is unchanged since");
        let items = store.read(|tx| tx.review_items(1)).unwrap();
        assert_eq!(
            items[0].revision,
            Some(0),
            "the open review's item, as it is now"
        );
    }

    #[test]
    fn given_more_closed_alerts_than_the_limit_then_the_open_ones_are_listed_first() {
        let mut sqlite = SqliteStore::open_in_memory().unwrap();
        let store: &mut dyn Store = &mut sqlite;
        let raise = |store: &mut dyn Store, key: &str| {
            let alert = NewAlert {
                kind: "weak-role",
                key,
                user: "",
                role: "r",
                detail: "d",
                at: 10,
            };
            store
                .write(|tx| {
                    let id = tx.insert_alert(&alert)?;
                    tx.audit(entry("alert-raise"))?;
                    Ok::<_, StoreError>(id)
                })
                .unwrap()
                .0
        };
        let open = raise(store, "old");
        for key in ["a", "b", "c"] {
            let id = raise(store, key);
            store
                .write(|tx| {
                    tx.resolve_alert(id, 20)?;
                    tx.audit(entry("alert-resolve"))
                })
                .unwrap();
        }
        let listed = store.read(|tx| tx.alerts(true, 2)).unwrap();
        let ids: Vec<i64> = listed.iter().map(|a| a.id).collect();
        assert_eq!(ids, [open, 4], "the open one, then the newest closed one");
    }

    #[test]
    fn given_pruning_then_the_guard_against_deletion_is_back_after_it() {
        let mut sqlite = SqliteStore::open_in_memory().unwrap();
        let store: &mut dyn Store = &mut sqlite;
        store.write(|tx| tx.audit(entry("activate"))).unwrap();
        store.write(|tx| tx.prune_audit(1000, 1000, "x")).unwrap();
        let err = sqlite.conn.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }

    #[test]
    fn given_audit_rows_then_update_and_delete_are_refused_by_the_database() {
        let mut sqlite = SqliteStore::open_in_memory().unwrap();
        let store: &mut dyn Store = &mut sqlite;
        store.write(|tx| tx.audit(entry("activate"))).unwrap();
        for sql in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
            let err = sqlite.conn.execute(sql, []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
    }

    #[test]
    fn given_a_file_database_then_directory_and_files_are_private_and_schema_persists() {
        let dir = std::env::temp_dir().join(format!("pim-store-test-{}", std::process::id()));
        let path = dir.join("state").join("pim.db");
        {
            let store: &mut dyn Store = &mut SqliteStore::open(&path).unwrap();
            store.write(|tx| tx.audit(entry("activate"))).unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        let again: &mut dyn Store = &mut SqliteStore::open(&path).unwrap();
        let n = again
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap()
            .len();
        assert_eq!(n, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_dir(name: &str, mode: u32) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn given_a_database_in_a_directory_others_use_then_it_is_refused_and_left_alone() {
        let dir = scratch_dir("shared-dir", 0o755);
        std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let err = SqliteStore::open(&dir.join("pim-state.db")).err().unwrap();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "refusing to keep the database under {}: it is mode 0755, open to others, and \
                 pimd did not create it",
                dir.display()
            )),
            "{message}"
        );
        assert!(message.contains("set [daemon] database"), "{message}");
        assert_eq!(mode_of(&dir), 0o755);
        assert!(!dir.join("pim-state.db").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// D1: `database = "/srv/pim.db"` (or /mnt, or a fresh /tmp) used to make that existing,
    /// empty directory 0700.
    #[test]
    fn given_an_existing_empty_open_directory_then_it_is_refused_and_its_mode_kept() {
        for mode in [0o755, 0o1777] {
            let dir = scratch_dir("srv-like", mode);
            let err = SqliteStore::open(&dir.join("pim.db")).err().unwrap();
            assert!(matches!(err, StoreError::UnsafeDirectory { .. }), "{err}");
            assert_eq!(mode_of(&dir), mode);
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn given_an_existing_directory_root_alone_then_it_is_used_as_it_is() {
        let dir = scratch_dir("private-dir", 0o700);
        SqliteStore::open(&dir.join("pim.db")).unwrap();
        SqliteStore::open_read_only(&dir.join("pim.db")).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
        assert_eq!(mode_of(&dir.join("pim.db")), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// D2: a link where the database's directory should be: its target was made 0700.
    #[test]
    fn given_a_symlinked_database_directory_then_it_is_refused_and_the_target_left_alone() {
        let dir = scratch_dir("symlinked-dir", 0o700);
        let target = dir.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("link")).unwrap();
        let err = SqliteStore::open(&dir.join("link").join("pim.db"))
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "under {}: it is a symbolic link",
                dir.join("link").display()
            )),
            "{message}"
        );
        assert_eq!(mode_of(&target), 0o755);
        assert!(!target.join("pim.db").exists());
        // A link further up is refused too.
        let err = SqliteStore::open(&dir.join("link").join("new").join("pim.db"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("it is a symbolic link"), "{err}");
        assert!(!target.join("new").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// D2: a `-wal` planted as a link to another file: the chmod 0600 of the database's files
    /// followed it.
    #[test]
    fn given_a_planted_wal_symlink_then_the_database_is_refused_and_the_target_left_alone() {
        let dir = scratch_dir("planted-wal", 0o700);
        let victim = dir.join("passwd");
        std::fs::write(&victim, "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("pim.db-wal")).unwrap();
        let err = SqliteStore::open(&dir.join("pim.db")).err().unwrap();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "refusing to open the database file {}: it is a symbolic link",
                dir.join("pim.db-wal").display()
            )),
            "{message}"
        );
        assert_eq!(mode_of(&victim), 0o644);
        assert!(!dir.join("pim.db").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn given_a_database_that_is_a_symlink_or_a_hard_link_then_it_is_refused() {
        let dir = scratch_dir("linked-db", 0o700);
        let elsewhere = dir.join("elsewhere.db");
        SqliteStore::open(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("sym.db")).unwrap();
        let err = SqliteStore::open(&dir.join("sym.db")).err().unwrap();
        assert!(err.to_string().contains("it is a symbolic link"), "{err}");
        // SQLite itself refuses the link for the read-only connection.
        assert!(SqliteStore::open_read_only(&dir.join("sym.db")).is_err());
        std::fs::hard_link(&elsewhere, dir.join("hard.db")).unwrap();
        let err = SqliteStore::open(&dir.join("hard.db")).err().unwrap();
        assert!(err.to_string().contains("it has 2 links"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// D2: in a directory others may write (not sticky), another user could move pimd's
    /// directory away and put their own in its place.
    #[test]
    fn given_a_parent_others_may_write_then_the_database_is_refused_and_nothing_created() {
        let parent = scratch_dir("writable-parent", 0o777);
        let err = SqliteStore::open(&parent.join("state").join("pim.db"))
            .err()
            .unwrap();
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "under {}: it is mode 0777: others may write in it",
                parent.display()
            )),
            "{message}"
        );
        assert!(!parent.join("state").exists());
        assert_eq!(mode_of(&parent), 0o777);
        std::fs::remove_dir_all(&parent).unwrap();
    }

    /// Like /tmp: others may write there, but cannot move what root made; pimd creates its
    /// directory there, 0700.
    #[test]
    fn given_a_sticky_parent_then_pimd_creates_its_own_directory_in_it() {
        let parent = scratch_dir("sticky-parent", 0o1777);
        let path = parent.join("state").join("pim.db");
        SqliteStore::open(&path).unwrap();
        assert_eq!(mode_of(&parent.join("state")), 0o700);
        assert_eq!(mode_of(&parent), 0o1777);
        std::fs::remove_dir_all(&parent).unwrap();
    }

    fn found(kind: EntryKind, owner: u32, mode: u32) -> Entry {
        Entry { kind, owner, mode }
    }

    const DATABASE_DIRECTORY: Place = Place::DatabaseDirectory {
        is_state_directory: false,
    };
    const STATE: Place = Place::DatabaseDirectory {
        is_state_directory: true,
    };

    #[test]
    fn given_a_directory_of_another_owner_then_it_is_refused_even_when_private() {
        for place in [Place::Above, DATABASE_DIRECTORY, STATE] {
            assert_eq!(
                verdict(&found(EntryKind::Directory, 1000, 0o700), place, 0),
                Verdict::Refuse("it belongs to uid 1000, who could replace the database".into())
            );
        }
    }

    #[test]
    fn given_existing_directories_of_root_then_only_the_state_directory_is_tightened() {
        let dir = |mode| found(EntryKind::Directory, 0, mode);
        assert_eq!(verdict(&dir(0o700), DATABASE_DIRECTORY, 0), Verdict::Keep);
        assert_eq!(verdict(&dir(0o700), STATE, 0), Verdict::Keep);
        assert_eq!(verdict(&dir(0o755), STATE, 0), Verdict::Tighten);
        assert!(matches!(
            verdict(&dir(0o755), DATABASE_DIRECTORY, 0),
            Verdict::Refuse(_)
        ));
        assert!(matches!(
            verdict(&dir(0o1777), DATABASE_DIRECTORY, 0),
            Verdict::Refuse(_)
        ));
        assert_eq!(verdict(&dir(0o755), Place::Above, 0), Verdict::Keep);
        assert_eq!(verdict(&dir(0o1777), Place::Above, 0), Verdict::Keep);
        assert!(matches!(
            verdict(&dir(0o775), Place::Above, 0),
            Verdict::Refuse(_)
        ));
        // A symlinked /var/lib/pim is not the state directory.
        for kind in [EntryKind::Symlink, EntryKind::Other] {
            for place in [Place::Above, DATABASE_DIRECTORY, STATE] {
                assert!(matches!(
                    verdict(&found(kind, 0, 0o700), place, 0),
                    Verdict::Refuse(_)
                ));
            }
        }
    }
}
