//! The state database: SQLite in WAL mode with `synchronous=FULL`, migrated on open.
//!
//! Every write goes through [`Store::write`], which hands the closure a [`Tx`] and commits only
//! if each change in it was accompanied by an audit record: a state change and its audit row
//! land together or not at all. The audit table refuses UPDATE and DELETE by trigger.

use crate::mfa::FailureState;
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::cell::{Cell, RefCell};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot prepare {path} for the database: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "refusing to keep the database under {path}: {why}; set [daemon] database to a file in \
         a new directory (pimd creates it, root's alone) below directories only root may \
         change, or in /var/lib/pim"
    )]
    UnsafeDirectory { path: String, why: String },
    #[error(
        "refusing to open the database file {path}: {why}; pimd opens only regular files of \
         its own with one link (remove it if pimd did not make it)"
    )]
    UnsafeFile { path: String, why: String },
    #[error("refusing to commit a state change without its audit record")]
    Unaudited,
    #[error("the database schema version {0} is newer than this pimd understands; upgrade pimd")]
    TooNew(i64),
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
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub started_at: i64,
    pub ends_at: i64,
    pub reason: String,
    pub ticket: String,
    pub request_id: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant<'a> {
    pub user: &'a str,
    pub role: &'a str,
    pub group: &'a str,
    pub started_at: i64,
    pub ends_at: i64,
    pub reason: &'a str,
    pub ticket: &'a str,
    pub request_id: Option<i64>,
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Open,
    Resolved,
    Dismissed,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Resolved => "resolved",
            AlertState::Dismissed => "dismissed",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "open" => AlertState::Open,
            "resolved" => AlertState::Resolved,
            "dismissed" => AlertState::Dismissed,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown alert state {other}").into(),
                ))
            }
        })
    }
}

/// One alert as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub state: AlertState,
    pub user: String,
    pub role: String,
    pub detail: String,
    pub raised_at: i64,
    pub closed_at: Option<i64>,
    pub dismissed_by: String,
    pub dismiss_reason: String,
    /// It stands for its key (open, or dismissed while its cause persists).
    pub holds_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert<'a> {
    pub kind: &'a str,
    pub key: &'a str,
    pub user: &'a str,
    pub role: &'a str,
    pub detail: &'a str,
    pub at: i64,
}

const ALERT_COLUMNS: &str = "id, kind, key, state, user, role, detail, raised_at, closed_at, \
                             dismissed_by, dismiss_reason, holds_key";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        key: r.get(2)?,
        state: AlertState::parse(&r.get::<_, String>(3)?)?,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub user: String,
    pub role: String,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRecord {
    pub secret: Vec<u8>,
    pub confirmed: bool,
    pub last_step: Option<u64>,
    /// When the enrolment (its secret) was made.
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        Ok(match s {
            "pending" => RequestState::Pending,
            "approved" => RequestState::Approved,
            "denied" => RequestState::Denied,
            "cancelled" => RequestState::Cancelled,
            "expired" => RequestState::Expired,
            other => {
                return Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown request state {other}").into(),
                ))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub duration_secs: u64,
    pub reason: String,
    pub ticket: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub approvals_required: u32,
    pub state: RequestState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Refused,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// One audit record as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub user: String,
    pub role: String,
    pub outcome: Outcome,
    pub reason: String,
    pub ticket: String,
    pub detail: String,
}

/// The end of the processes of a grant that ended (see [`Tx::open_endings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub grant_id: i64,
    pub user: String,
    pub role: String,
    pub group: String,
    pub grace_secs: i64,
    pub term_at: Option<i64>,
}

/// A sweep for set-group-ID files that is not done (see [`Tx::pending_setgid_sweeps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSweep {
    pub user: String,
    pub group: String,
    /// The latest end of the user's grants of the group.
    pub ended_through: i64,
    /// The last walk of this sweep, if any.
    pub walked_at: Option<i64>,
    /// Walks in a row that failed.
    pub failures: u32,
}

/// A done sweep whose grant ended recently enough to be looked at again (see
/// [`Tx::setgid_rechecks`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRecheck {
    pub user: String,
    pub group: String,
    pub ended_through: i64,
    pub rechecked_at: Option<i64>,
}

/// Filter for reading the audit log.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery<'a> {
    pub since: i64,
    pub user: Option<&'a str>,
    pub role: Option<&'a str>,
    /// Only records that concern this person (`user`) or, with `by`, that they did (`actor`).
    pub involving: Option<&'a str>,
    /// With `involving`: also the records whose actor is this name.
    pub by: Option<&'a str>,
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`. Its directory, and each one on the
    /// way to it, must be safe from everyone but root (see [`prepare_directory`]); the
    /// database's files must be regular, root's and of one link, and are made 0600.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        let store = Store::setup(conn)?;
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

    /// A second, read-only connection to the database at `path`, which [`Store::open`] has
    /// created and migrated: in WAL mode it reads while the other connection writes.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
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
        Ok(Store { conn })
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Store, StoreError> {
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
        let mut store = Store { conn };
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

    /// Runs `f` in one transaction and commits it if `f` succeeds and every change it made has
    /// an audit record. Returns the audit records written, for syslog and notifications.
    pub fn write<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<(T, Vec<AuditEntry>), E> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let wrapped = Tx {
            tx,
            changed: Cell::new(false),
            audited: RefCell::new(Vec::new()),
        };
        let value = f(&wrapped)?;
        let Tx {
            tx,
            changed,
            audited,
        } = wrapped;
        let audited = audited.into_inner();
        if changed.get() && audited.is_empty() {
            return Err(StoreError::Unaudited.into());
        }
        tx.commit().map_err(StoreError::from)?;
        Ok((value, audited))
    }

    /// Runs `f` in a read transaction; a change attempted in it is refused.
    pub fn read<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&Tx) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.conn.transaction().map_err(StoreError::from)?;
        let wrapped = Tx {
            tx,
            changed: Cell::new(false),
            audited: RefCell::new(Vec::new()),
        };
        let value = f(&wrapped)?;
        if wrapped.changed.get() || !wrapped.audited.borrow().is_empty() {
            return Err(StoreError::Unaudited.into());
        }
        Ok(value)
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

/// A transaction in progress. Mutating methods mark it changed; [`Tx::audit`] records why.
pub struct Tx<'c> {
    tx: rusqlite::Transaction<'c>,
    changed: Cell<bool>,
    audited: RefCell<Vec<AuditEntry>>,
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
        state: RequestState::parse(&r.get::<_, String>(10)?)?,
    })
}

const REQUEST_COLUMNS: &str = "id, user, role, grp, duration_secs, reason, ticket, created_at, \
     expires_at, approvals_required, state";

fn grants_sql(clause: &str) -> String {
    format!("SELECT {GRANT_COLUMNS} FROM grants WHERE {clause}")
}

const LIVE_GRANTS_OF_USER: &str = "user = ?1 AND ended_at IS NULL ORDER BY ends_at, id";

impl Tx<'_> {
    fn changed(&self) {
        self.changed.set(true);
    }

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

    // --- audit ---

    pub fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO audit (at, actor, action, user, role, outcome, reason, ticket, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                entry.at,
                entry.actor,
                entry.action,
                entry.user,
                entry.role,
                entry.outcome.as_str(),
                entry.reason,
                entry.ticket,
                entry.detail
            ])?;
        self.audited.borrow_mut().push(entry);
        Ok(())
    }

    /// The records matching `q`, oldest first, at most [`pim_common::types::MAX_AUDIT_RECORDS`].
    pub fn audit_records(
        &self,
        q: &AuditQuery<'_>,
    ) -> Result<Vec<pim_common::types::AuditRecord>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, at, actor, action, user, role, outcome, reason, ticket, detail FROM audit
             WHERE at >= ?1
               AND (?2 IS NULL OR user = ?2)
               AND (?3 IS NULL OR role = ?3)
               AND (?4 IS NULL OR user = ?4 OR actor = ?5)
             ORDER BY id LIMIT ?6",
        )?;
        let limit = pim_common::types::MAX_AUDIT_RECORDS;
        let params = params![q.since, q.user, q.role, q.involving, q.by, limit];
        let rows = stmt.query_map(params, |r| {
            Ok(pim_common::types::AuditRecord {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                user: r.get(4)?,
                role: r.get(5)?,
                outcome: r.get(6)?,
                reason: r.get(7)?,
                ticket: r.get(8)?,
                detail: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- grants ---

    pub fn insert_grant(&self, g: &NewGrant<'_>) -> Result<i64, StoreError> {
        self.changed();
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

    pub fn live_grant(&self, user: &str, role: &str) -> Result<Option<Grant>, StoreError> {
        Ok(self
            .grants_where(
                "user = ?1 AND role = ?2 AND ended_at IS NULL",
                params![user, role],
            )?
            .pop())
    }

    pub fn live_grants(&self) -> Result<Vec<Grant>, StoreError> {
        Ok(self.grants_where("ended_at IS NULL ORDER BY ends_at, id", [])?)
    }

    pub fn live_grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        Ok(self.grants_where(LIVE_GRANTS_OF_USER, [user])?)
    }

    /// Live grants whose end has come.
    pub fn due_grants(&self, now: i64) -> Result<Vec<Grant>, StoreError> {
        Ok(self.grants_where(
            "ended_at IS NULL AND ends_at <= ?1 ORDER BY ends_at, id",
            [now],
        )?)
    }

    /// The most recently ended grant of `user` for any of `groups`.
    pub fn last_ended_grant(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<Option<Grant>, StoreError> {
        let all = self.grants_where(
            "user = ?1 AND ended_at IS NOT NULL ORDER BY ended_at DESC, id DESC LIMIT 50",
            [user],
        )?;
        Ok(all.into_iter().find(|g| groups.contains(&g.group)))
    }

    pub fn end_grant(&self, id: i64, at: i64, reason: &str) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE grants SET ended_at = ?2, end_reason = ?3 WHERE id = ?1 AND ended_at IS NULL",
            params![id, at, reason],
        )?;
        Ok(())
    }

    pub fn set_grant_end(&self, id: i64, ends_at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE grants SET ends_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
            params![id, ends_at],
        )?;
        Ok(())
    }

    /// When the next live grant ends.
    pub fn next_grant_end(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(ends_at) FROM grants WHERE ended_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    // --- memberships PIM added ---

    pub fn has_membership(&self, user: &str, group: &str) -> Result<bool, StoreError> {
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

    pub fn add_membership(&self, user: &str, group: &str, at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT OR IGNORE INTO memberships (user, grp, added_at) VALUES (?1, ?2, ?3)",
            params![user, group, at],
        )?;
        Ok(())
    }

    pub fn remove_membership(&self, user: &str, group: &str) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "DELETE FROM memberships WHERE user = ?1 AND grp = ?2",
            [user, group],
        )?;
        Ok(())
    }

    /// Memberships PIM added that no live grant needs any more.
    pub fn orphaned_memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
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

    /// Users and groups whose membership PIM took away after a grant ended and whose sweep is
    /// not done: none of theirs is in `memberships` (a live grant still needs it, or its
    /// removal has not succeeded yet).
    pub fn pending_setgid_sweeps(&self) -> Result<Vec<PendingSweep>, StoreError> {
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

    /// A walk of a sweep that is not done yet; `failed` counts towards the retry back-off.
    pub fn setgid_sweep_walked(
        &self,
        user: &str,
        group: &str,
        at: i64,
        failed: bool,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT INTO setgid_sweeps (user, grp, walked_at, failures) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, grp) DO UPDATE SET walked_at = ?3,
                 failures = CASE WHEN ?4 = 0 THEN 0 ELSE failures + 1 END",
            params![user, group, at, failed as i64],
        )?;
        Ok(())
    }

    /// The sweep of every grant of `user` and `group` that ended by `through` is done, by a
    /// walk at `at` (the first look again at it is due a day later, or at the next start).
    pub fn setgid_sweep_done(
        &self,
        user: &str,
        group: &str,
        through: i64,
        at: i64,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT INTO setgid_sweeps (user, grp, swept_through, rechecked_at)
                 VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user, grp) DO UPDATE SET swept_through = ?3, walked_at = NULL,
                 failures = 0, rechecked_at = ?4",
            params![user, group, through, at],
        )?;
        Ok(())
    }

    /// Done sweeps of grants that ended at or after `since`, for users and groups of which
    /// no membership is PIM's now.
    pub fn setgid_rechecks(&self, since: i64) -> Result<Vec<SweepRecheck>, StoreError> {
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

    /// A done sweep was walked again and that walk found nothing.
    pub fn setgid_sweep_rechecked(
        &self,
        user: &str,
        group: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE setgid_sweeps SET rechecked_at = ?3 WHERE user = ?1 AND grp = ?2",
            params![user, group, at],
        )?;
        Ok(())
    }

    /// A done sweep was walked again and found something: it is not done any more.
    pub fn setgid_sweep_reopened(
        &self,
        user: &str,
        group: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE setgid_sweeps SET swept_through = NULL, walked_at = ?3, rechecked_at = ?3
             WHERE user = ?1 AND grp = ?2",
            params![user, group, at],
        )?;
        Ok(())
    }

    /// The uid and gid `user` and `group` have as PIM adds the membership.
    pub fn record_setgid_ids(
        &self,
        user: &str,
        group: &str,
        uid: u32,
        gid: u32,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT OR IGNORE INTO setgid_ids (user, grp, uid, gid) VALUES (?1, ?2, ?3, ?4)",
            params![user, group, uid, gid],
        )?;
        Ok(())
    }

    /// Every (uid, gid) recorded for `user` and `group`.
    pub fn setgid_ids(&self, user: &str, group: &str) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT uid, gid FROM setgid_ids WHERE user = ?1 AND grp = ?2 ORDER BY uid, gid",
        )?;
        let rows = stmt.query_map([user, group], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // --- the end of processes carrying a group (ending.rs) ---

    pub fn add_ending(&self, grant: &Grant, grace_secs: u64) -> Result<(), StoreError> {
        self.changed();
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

    /// Endings not done, oldest first.
    pub fn open_endings(&self) -> Result<Vec<Ending>, StoreError> {
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

    pub fn ending_terminated(&self, grant_id: i64, at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE endings SET term_at = ?2 WHERE grant_id = ?1 AND term_at IS NULL",
            params![grant_id, at],
        )?;
        Ok(())
    }

    pub fn ending_done(&self, grant_id: i64, at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE endings SET done_at = ?2 WHERE grant_id = ?1 AND done_at IS NULL",
            params![grant_id, at],
        )?;
        Ok(())
    }

    /// When the next ending is due to go from SIGTERM to SIGKILL; an ending not started yet is
    /// due now.
    pub fn next_ending_step(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(COALESCE(term_at + grace, 0)) FROM endings WHERE done_at IS NULL",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn warning_sent(&self, grant_id: i64, ends_at: i64, lead: u64) -> Result<bool, StoreError> {
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

    pub fn record_warning(
        &self,
        grant_id: i64,
        ends_at: i64,
        lead: u64,
        at: i64,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT OR IGNORE INTO end_warnings (grant_id, ends_at, lead, sent_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![grant_id, ends_at, lead as i64, at],
        )?;
        Ok(())
    }

    // --- eligibility assignments ---

    pub fn put_assignment(&self, a: &Assignment, by: &str, at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT INTO assignments (user, role, not_before, not_after, assigned_by, assigned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (user, role) DO UPDATE SET not_before = ?3, not_after = ?4,
                 assigned_by = ?5, assigned_at = ?6",
            params![a.user, a.role, a.not_before, a.not_after, by, at],
        )?;
        Ok(())
    }

    pub fn delete_assignment(&self, user: &str, role: &str) -> Result<bool, StoreError> {
        let deleted = self.tx.execute(
            "DELETE FROM assignments WHERE user = ?1 AND role = ?2",
            [user, role],
        )? > 0;
        if deleted {
            self.changed();
        }
        Ok(deleted)
    }

    pub fn assignment(&self, user: &str, role: &str) -> Result<Option<Assignment>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT user, role, not_before, not_after FROM assignments
                 WHERE user = ?1 AND role = ?2",
                [user, role],
                |r| {
                    Ok(Assignment {
                        user: r.get(0)?,
                        role: r.get(1)?,
                        not_before: r.get(2)?,
                        not_after: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// The earliest end after `now` of an assignment whose user holds a live grant of its
    /// role: when such a grant may lose the eligibility it depends on.
    pub fn next_assignment_end(&self, now: i64) -> Result<Option<i64>, StoreError> {
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

    /// Every membership PIM added, as (user, group).
    pub fn memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT user, grp FROM memberships ORDER BY user, grp")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every assignment, with when it was made.
    pub fn assignments(&self) -> Result<Vec<(Assignment, i64)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT user, role, not_before, not_after, assigned_at FROM assignments
             ORDER BY user, role",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                Assignment {
                    user: r.get(0)?,
                    role: r.get(1)?,
                    not_before: r.get(2)?,
                    not_after: r.get(3)?,
                },
                r.get(4)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The start of every grant that started at or after `since`, as (user, role, at).
    pub fn grant_starts_since(&self, since: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT user, role, started_at FROM grants WHERE started_at >= ?1
             ORDER BY started_at",
        )?;
        let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last start of a grant of each user and role, as (user, role, at).
    pub fn last_grant_starts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT user, role, MAX(started_at) FROM grants GROUP BY user, role")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The time of the oldest audit record: since when pimd has been watching this host.
    pub fn first_audit_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .query_row("SELECT MIN(at) FROM audit", [], |r| r.get(0))?)
    }

    /// The alerts that hold their keys (open, or dismissed while their cause persists).
    pub fn current_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE holds_key = 1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([], alert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The alert that holds `key`, if one does.
    pub fn current_alert(&self, key: &str) -> Result<Option<AlertRow>, StoreError> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE holds_key = 1 AND key = ?1"),
                [key],
                alert_row,
            )
            .optional()?)
    }

    pub fn alert(&self, id: i64) -> Result<Option<AlertRow>, StoreError> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_row,
            )
            .optional()?)
    }

    /// The open alerts, or with `all` every one; newest first, at most `limit`.
    pub fn alerts(&self, all: bool, limit: u32) -> Result<Vec<AlertRow>, StoreError> {
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ?1 OR state = 'open'
             ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![all, limit], alert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A new open alert holding its key; refused if another holds it. Returns its id.
    pub fn insert_alert(&self, a: &NewAlert<'_>) -> Result<i64, StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT INTO alerts (kind, key, state, user, role, detail, raised_at, holds_key)
             VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, 1)",
            params![a.kind, a.key, a.user, a.role, a.detail, a.at],
        )?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Open alert `id` is resolved at `at`: its cause went, and its key is free.
    pub fn resolve_alert(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE alerts SET state = 'resolved', closed_at = ?2, holds_key = 0
             WHERE id = ?1 AND state = 'open'",
            params![id, at],
        )?;
        Ok(())
    }

    /// Open alert `id` is dismissed by `by` at `at` for `reason`; it keeps its key while its
    /// cause persists.
    pub fn dismiss_alert(
        &self,
        id: i64,
        by: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE alerts SET state = 'dismissed', closed_at = ?2, dismissed_by = ?3,
                 dismiss_reason = ?4
             WHERE id = ?1 AND state = 'open'",
            params![id, at, by, reason],
        )?;
        Ok(())
    }

    /// Dismissed alert `id`'s cause went: its key is free for the cause's return.
    pub fn release_alert(&self, id: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx
            .execute("UPDATE alerts SET holds_key = 0 WHERE id = ?1", [id])?;
        Ok(())
    }

    // --- MFA ---

    pub fn mfa(&self, user: &str) -> Result<Option<MfaRecord>, StoreError> {
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

    /// Starts (or restarts) an unconfirmed enrolment.
    pub fn put_pending_mfa(&self, user: &str, secret: &[u8], at: i64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT INTO mfa (user, secret, confirmed, last_step, created_at)
             VALUES (?1, ?2, 0, NULL, ?3)
             ON CONFLICT (user) DO UPDATE SET secret = ?2, confirmed = 0, last_step = NULL,
                 created_at = ?3",
            params![user, secret, at],
        )?;
        Ok(())
    }

    pub fn confirm_mfa(&self, user: &str) -> Result<(), StoreError> {
        self.changed();
        self.tx
            .execute("UPDATE mfa SET confirmed = 1 WHERE user = ?1", [user])?;
        Ok(())
    }

    /// Records the TOTP time step just accepted, so it and all earlier ones are dead.
    pub fn set_last_step(&self, user: &str, step: u64) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE mfa SET last_step = ?2 WHERE user = ?1",
            params![user, step as i64],
        )?;
        Ok(())
    }

    /// Drops the enrolment and its recovery codes. Returns whether there was one.
    pub fn delete_mfa(&self, user: &str) -> Result<bool, StoreError> {
        // Only a deletion that removed something is a change: deleting nothing must not make
        // the caller's commit demand an audit record for it.
        let others = self
            .tx
            .execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?
            + self
                .tx
                .execute("DELETE FROM mfa_failures WHERE user = ?1", [user])?;
        let had = self.tx.execute("DELETE FROM mfa WHERE user = ?1", [user])? > 0;
        if had || others > 0 {
            self.changed();
        }
        Ok(had)
    }

    pub fn failure_state(&self, user: &str) -> Result<FailureState, StoreError> {
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

    pub fn set_failure_state(&self, user: &str, s: &FailureState) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "INSERT INTO mfa_failures (user, failures, window_start, locked_until)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user) DO UPDATE SET failures = ?2, window_start = ?3, locked_until = ?4",
            params![user, s.failures as i64, s.window_start, s.locked_until],
        )?;
        Ok(())
    }

    pub fn replace_recovery_codes(&self, user: &str, hashes: &[String]) -> Result<(), StoreError> {
        self.changed();
        self.tx
            .execute("DELETE FROM recovery_codes WHERE user = ?1", [user])?;
        for hash in hashes {
            self.tx.execute(
                "INSERT INTO recovery_codes (user, hash, used_at) VALUES (?1, ?2, NULL)",
                [user, hash],
            )?;
        }
        Ok(())
    }

    /// Marks an unused recovery code used; false if there is no such unused code.
    pub fn use_recovery_code(&self, user: &str, hash: &str, at: i64) -> Result<bool, StoreError> {
        self.changed();
        Ok(self.tx.execute(
            "UPDATE recovery_codes SET used_at = ?3
             WHERE user = ?1 AND hash = ?2 AND used_at IS NULL",
            params![user, hash, at],
        )? == 1)
    }

    pub fn recovery_codes_left(&self, user: &str) -> Result<u32, StoreError> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM recovery_codes WHERE user = ?1 AND used_at IS NULL",
            [user],
            |r| r.get::<_, i64>(0),
        )? as u32)
    }

    // --- requests ---

    #[allow(clippy::too_many_arguments)]
    pub fn insert_request(&self, r: &Request) -> Result<i64, StoreError> {
        self.changed();
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

    pub fn request(&self, id: i64) -> Result<Option<Request>, StoreError> {
        Ok(self.requests_where("id = ?1", [id])?.pop())
    }

    pub fn pending_request(&self, user: &str, role: &str) -> Result<Option<Request>, StoreError> {
        Ok(self
            .requests_where(
                "user = ?1 AND role = ?2 AND state = 'pending'",
                [user, role],
            )?
            .pop())
    }

    pub fn pending_requests(&self) -> Result<Vec<Request>, StoreError> {
        Ok(self.requests_where("state = 'pending' ORDER BY id", [])?)
    }

    pub fn due_requests(&self, now: i64) -> Result<Vec<Request>, StoreError> {
        Ok(self.requests_where("state = 'pending' AND expires_at <= ?1 ORDER BY id", [now])?)
    }

    pub fn next_request_expiry(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.tx.query_row(
            "SELECT MIN(expires_at) FROM requests WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn decide_request(
        &self,
        id: i64,
        state: RequestState,
        at: i64,
        by: &str,
        comment: &str,
    ) -> Result<(), StoreError> {
        self.changed();
        self.tx.execute(
            "UPDATE requests SET state = ?2, decided_at = ?3, decided_by = ?4, comment = ?5
             WHERE id = ?1 AND state = 'pending'",
            params![id, state.as_str(), at, by, comment],
        )?;
        Ok(())
    }

    /// Records an approval; false if this approver had already approved.
    pub fn add_approval(
        &self,
        id: i64,
        approver: &str,
        at: i64,
        comment: &str,
    ) -> Result<bool, StoreError> {
        self.changed();
        Ok(self.tx.execute(
            "INSERT OR IGNORE INTO approvals (request_id, approver, at, comment)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, approver, at, comment],
        )? == 1)
    }

    pub fn approvers_of(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT approver FROM approvals WHERE request_id = ?1 ORDER BY at, approver",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: 100,
            actor: "alice".into(),
            action: action.into(),
            user: "alice".into(),
            role: "admin".into(),
            outcome: Outcome::Success,
            reason: String::new(),
            ticket: String::new(),
            detail: String::new(),
        }
    }

    fn grant<'a>(user: &'a str, role: &'a str) -> NewGrant<'a> {
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

    #[test]
    fn given_alerts_then_one_holds_each_key_until_resolved_or_released() {
        let mut store = Store::open_in_memory().unwrap();
        let alert = |key: &'static str| NewAlert {
            kind: "weak-role",
            key,
            user: "",
            role: "lab",
            detail: "no MFA",
            at: 100,
        };
        let write = |store: &mut Store, f: &dyn Fn(&Tx) -> Result<(), StoreError>| {
            store
                .write(|tx| {
                    f(tx)?;
                    tx.audit(entry("alert"))
                })
                .map(|_| ())
        };
        let mut id = 0;
        store
            .write(|tx| {
                id = tx.insert_alert(&alert("weak-role:lab"))?;
                tx.audit(entry("alert-raise"))
            })
            .unwrap();
        // A second alert of a held key is refused by the database itself.
        let twice = write(&mut store, &|tx| {
            tx.insert_alert(&alert("weak-role:lab")).map(|_| ())
        });
        assert!(twice.is_err());
        let held = store.read(|tx| tx.current_alert("weak-role:lab")).unwrap();
        assert_eq!(held.unwrap().id, id);
        // Dismissed: it keeps the key, and is no longer listed as open.
        write(&mut store, &|tx| {
            tx.dismiss_alert(id, "frank", "known", 150)
        })
        .unwrap();
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
        write(&mut store, &|tx| tx.release_alert(id)).unwrap();
        assert!(store.read(|tx| tx.current_alerts()).unwrap().is_empty());
        let mut again = 0;
        store
            .write(|tx| {
                again = tx.insert_alert(&alert("weak-role:lab"))?;
                tx.audit(entry("alert-raise"))
            })
            .unwrap();
        assert_ne!(again, id);
        write(&mut store, &|tx| tx.resolve_alert(again, 200)).unwrap();
        let row = store.read(|tx| tx.alert(again)).unwrap().unwrap();
        assert_eq!((row.state, row.holds_key), (AlertState::Resolved, false));
        // Newest first.
        let all = store.read(|tx| tx.alerts(true, 10)).unwrap();
        assert_eq!(all.iter().map(|a| a.id).collect::<Vec<_>>(), [again, id]);
    }

    #[test]
    fn given_a_change_without_audit_then_nothing_is_committed() {
        let mut store = Store::open_in_memory().unwrap();
        let err = store
            .write(|tx| tx.insert_grant(&grant("alice", "admin")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Unaudited));
        let live = store.read(|tx| tx.live_grants()).unwrap();
        assert!(live.is_empty());
    }

    #[test]
    fn given_a_change_with_audit_then_both_are_committed() {
        let mut store = Store::open_in_memory().unwrap();
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
        let records = store
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].action, "activate");
    }

    #[test]
    fn given_reads_for_different_users_then_the_cached_statement_is_not_recompiled() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .write(|tx| {
                tx.insert_grant(&grant("alice", "admin"))?;
                tx.audit(entry("activate"))
            })
            .unwrap();
        for user in ["alice", "bob", "alice", "carol"] {
            store.read(|tx| tx.live_grants_of(user)).unwrap();
        }
        let stmt = store
            .conn
            .prepare_cached(&grants_sql(LIVE_GRANTS_OF_USER))
            .unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn given_a_failing_closure_then_audit_and_change_are_rolled_back() {
        let mut store = Store::open_in_memory().unwrap();
        let result: Result<((), _), StoreError> = store.write(|tx| {
            tx.insert_grant(&grant("alice", "admin"))?;
            tx.audit(entry("activate"))?;
            Err(StoreError::Unaudited)
        });
        assert!(result.is_err());
        assert!(store.read(|tx| tx.live_grants()).unwrap().is_empty());
        assert!(store
            .read(|tx| tx.audit_records(&AuditQuery::default()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn given_audit_rows_then_update_and_delete_are_refused_by_the_database() {
        let mut store = Store::open_in_memory().unwrap();
        store.write(|tx| tx.audit(entry("activate"))).unwrap();
        for sql in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
            let err = store.conn.execute(sql, []).unwrap_err().to_string();
            assert!(err.contains("append-only"), "{sql}: {err}");
        }
    }

    #[test]
    fn given_a_live_grant_then_a_second_live_grant_for_the_same_role_is_refused() {
        let mut store = Store::open_in_memory().unwrap();
        let insert = |store: &mut Store| {
            store.write(|tx| {
                tx.insert_grant(&grant("alice", "admin"))?;
                tx.audit(entry("activate"))
            })
        };
        insert(&mut store).unwrap();
        assert!(insert(&mut store).is_err());
    }

    #[test]
    fn given_memberships_then_only_those_without_live_grants_are_orphaned() {
        let mut store = Store::open_in_memory().unwrap();
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

    #[test]
    fn given_a_recovery_code_then_it_works_once() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .write(|tx| {
                tx.replace_recovery_codes("alice", &["h1".into(), "h2".into()])?;
                tx.audit(entry("mfa-confirm"))
            })
            .unwrap();
        let first = store
            .write(|tx| {
                let ok = tx.use_recovery_code("alice", "h1", 5)?;
                tx.audit(entry("mfa-recovery"))?;
                Ok::<_, StoreError>(ok)
            })
            .unwrap()
            .0;
        let second = store
            .write(|tx| {
                let ok = tx.use_recovery_code("alice", "h1", 6)?;
                tx.audit(entry("mfa-recovery"))?;
                Ok::<_, StoreError>(ok)
            })
            .unwrap()
            .0;
        assert!(first && !second);
        assert_eq!(store.read(|tx| tx.recovery_codes_left("alice")).unwrap(), 1);
    }

    #[test]
    fn given_a_file_database_then_directory_and_files_are_private_and_schema_persists() {
        let dir = std::env::temp_dir().join(format!("pim-store-test-{}", std::process::id()));
        let path = dir.join("state").join("pim.db");
        {
            let mut store = Store::open(&path).unwrap();
            store.write(|tx| tx.audit(entry("x"))).unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        let mut again = Store::open(&path).unwrap();
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
        let err = Store::open(&dir.join("pim-state.db")).err().unwrap();
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
            let err = Store::open(&dir.join("pim.db")).err().unwrap();
            assert!(matches!(err, StoreError::UnsafeDirectory { .. }), "{err}");
            assert_eq!(mode_of(&dir), mode);
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn given_an_existing_directory_root_alone_then_it_is_used_as_it_is() {
        let dir = scratch_dir("private-dir", 0o700);
        Store::open(&dir.join("pim.db")).unwrap();
        Store::open_read_only(&dir.join("pim.db")).unwrap();
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
        let err = Store::open(&dir.join("link").join("pim.db")).err().unwrap();
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
        let err = Store::open(&dir.join("link").join("new").join("pim.db"))
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
        let err = Store::open(&dir.join("pim.db")).err().unwrap();
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
        Store::open(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join("sym.db")).unwrap();
        let err = Store::open(&dir.join("sym.db")).err().unwrap();
        assert!(err.to_string().contains("it is a symbolic link"), "{err}");
        // SQLite itself refuses the link for the read-only connection.
        assert!(Store::open_read_only(&dir.join("sym.db")).is_err());
        std::fs::hard_link(&elsewhere, dir.join("hard.db")).unwrap();
        let err = Store::open(&dir.join("hard.db")).err().unwrap();
        assert!(err.to_string().contains("it has 2 links"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// D2: in a directory others may write (not sticky), another user could move pimd's
    /// directory away and put their own in its place.
    #[test]
    fn given_a_parent_others_may_write_then_the_database_is_refused_and_nothing_created() {
        let parent = scratch_dir("writable-parent", 0o777);
        let err = Store::open(&parent.join("state").join("pim.db"))
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
        Store::open(&path).unwrap();
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

    #[test]
    fn given_audit_query_then_filters_apply() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .write(|tx| {
                tx.audit(entry("a"))?;
                let mut other = entry("b");
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
}
