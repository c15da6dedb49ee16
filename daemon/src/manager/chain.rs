//! The audit chain's keeping (see `pim_common::chain` for what the chain is, and the store's
//! port, which makes it): its head published to syslog and to a root-only head file beside
//! the database, `pim audit verify`, and retention (`[audit] keep`).
//!
//! The head (`ID:HASH` of the last record) goes out at start, once start-up's own writes are
//! done (reconciliation, the first evaluation of the alerts: see
//! [`Manager::publish_start_head`]), after every [`HEAD_EVERY_RECORDS`] records, by a
//! reconcile job when it has moved for [`HEAD_EVERY_SECS`] (and hourly when it has not), and
//! when pimd stops (if it moved): to syslog as `audit-head ID:HASH`, where
//! a remote log keeps it beyond root's reach on this host, and to the head file
//! (`DATABASE.audit-head`, 0600, replaced atomically). Before replacing the file, pimd checks
//! that the head it holds is still in the log; when it is not (records were removed or
//! rewritten), the file is left as it is, as evidence for `pim audit verify`, and the break is
//! logged as an error.
//!
//! Verification runs here, in pimd: the database is root's alone, and pimd already decides
//! who may read the whole audit (admins and auditors). It reads the log in pages inside one
//! read transaction, so it sees one state of it; its result is audited (`audit-verify`).

use super::*;
use pim_common::chain::{Head, KeptHead, Verification, Verifier};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The head is published after this many records.
pub const HEAD_EVERY_RECORDS: u32 = 100;
/// A head that moved is published at least this often.
pub const HEAD_EVERY_SECS: i64 = 300;
/// A head that did not move is published again this often (a remote log sees pimd alive).
const HEAD_AGAIN_SECS: i64 = 3600;
/// Records read at a time by the walk.
const VERIFY_PAGE: u32 = 5000;
/// What a syslog line of the head starts with.
pub const HEAD_LINE: &str = "audit-head ";

/// What the manager keeps of the head between calls.
#[derive(Default)]
pub struct HeadKeeper {
    /// The head file; None when pimd keeps none (the manager's tests).
    pub file: Option<PathBuf>,
    /// Records written since the head was last published.
    since: u32,
    /// The head last published, and when.
    published: Option<Head>,
    published_at: i64,
    /// When the periodic job last looked.
    looked_at: i64,
    /// pimd is starting: the periodic job waits for the start's head (see
    /// [`Manager::publish_start_head`]).
    starting: bool,
    /// The break already logged (so it is logged once, not at every record).
    warned: Option<Head>,
}

/// The head file beside `database`.
pub fn head_file_of(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".audit-head");
    database.with_file_name(name)
}

/// The head the file holds; None when there is no file or it holds no head.
pub fn read_head_file(path: &Path) -> Option<Head> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Replaces the head file with `head`: a new file (0600) beside it, synced, renamed over it.
fn write_head_file(path: &Path, head: &Head) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&tmp)?;
    file.write_all(format!("{head}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Manager {
    /// Where pimd keeps the chain's head (set once at start; none in the manager's tests).
    /// From here until [`Manager::publish_start_head`], the periodic job publishes nothing.
    pub fn set_head_file(&mut self, path: PathBuf) {
        self.head.file = Some(path);
        self.head.starting = true;
    }

    /// The head at start, published once pimd's start-up writes are done (what
    /// reconciliation ended, the alerts its first look at the host raised): a head published
    /// before them would leave them out of the head a remote log keeps until the next
    /// publication, and a check of the last head taken at start would not cover them. Forced:
    /// it shows that pimd is up, and checks the head file (a break while pimd was down).
    pub fn publish_start_head(&mut self) {
        self.head.starting = false;
        self.publish_head(true);
    }

    /// Counts records just written; publishes the head when enough have been.
    pub(super) fn count_audited(&mut self, n: usize) {
        self.head.since = self.head.since.saturating_add(n as u32);
        if self.head.since >= HEAD_EVERY_RECORDS {
            self.publish_head(true);
        }
    }

    /// Publishes the chain's head (see the module's doc) if it moved, or if `force`; problems
    /// go to syslog, never to the caller (a call that wrote records has succeeded).
    pub fn publish_head(&mut self, force: bool) {
        let now = self.now();
        let tip = match self.store.read(|tx| tx.audit_tip()) {
            Ok(Some(tip)) => tip,
            Ok(None) => return,
            Err(e) => {
                self.head_notice(
                    Severity::Error,
                    format!("audit chain: cannot read its head: {e}"),
                );
                return;
            }
        };
        if tip.hash.is_empty() {
            // Only records from before the chain: it starts with the next record.
            return;
        }
        let head = Head {
            id: tip.id,
            hash: tip.hash,
        };
        let moved = self.head.published.as_ref() != Some(&head);
        let due = moved || now >= self.head.published_at + HEAD_AGAIN_SECS;
        if !force && !due {
            return;
        }
        self.head.since = 0;
        self.head.published_at = now;
        self.head.looked_at = now;
        self.head.published = Some(head.clone());
        self.head_notice(Severity::Info, format!("{HEAD_LINE}{head}"));
        let Some(file) = self.head.file.clone() else {
            return;
        };
        if let Some(kept) = read_head_file(&file) {
            if let Err(why) = self.still_in_chain(&kept) {
                if self.head.warned.as_ref() != Some(&kept) {
                    self.head.warned = Some(kept.clone());
                    self.head_notice(
                        Severity::Error,
                        format!(
                            "audit chain: the head kept in {} ({kept}) is not in the audit log \
                             any more ({why}): records were removed or changed; the file is \
                             kept as it is; run 'pim audit verify'",
                            file.display()
                        ),
                    );
                }
                return;
            }
        }
        if let Err(e) = write_head_file(&file, &head) {
            self.head_notice(
                Severity::Error,
                format!(
                    "audit chain: cannot write its head to {}: {e}",
                    file.display()
                ),
            );
        }
    }

    /// Whether `kept` names a record of the log with its hash (or one retention removed).
    fn still_in_chain(&mut self, kept: &Head) -> Result<(), String> {
        let (record, first) = self
            .store
            .read(|tx| Ok::<_, StoreError>((tx.audit_record(kept.id)?, tx.audit_chain(0, 1)?)))
            .map_err(|e| e.to_string())?;
        match record {
            Some(r) if r.hash == kept.hash => Ok(()),
            Some(r) => Err(format!("record {} has hash {}", r.id, r.hash)),
            None if first.first().is_some_and(|f| f.id > kept.id) => Ok(()),
            None => Err(format!("there is no record {}", kept.id)),
        }
    }

    fn head_notice(&mut self, severity: Severity, message: String) {
        self.outbox.syslog.push((severity, message));
    }

    /// `pim audit verify`: walks the chain against the head file and `head` (`ID:HASH`, or
    /// empty). Admins and auditors only.
    pub fn verify_audit(&mut self, caller: &Caller, head: &str) -> Result<Verification, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::AuditVerify);
        if !self.is_auditor(caller) {
            return self.refused(
                &audit,
                PimError::PermissionDenied(
                    "only admins and auditors may verify the audit log".into(),
                ),
            );
        }
        let mut heads = Vec::new();
        if let Some(kept) = self.head.file.as_deref().and_then(read_head_file) {
            heads.push(KeptHead {
                head: kept,
                source: "the head file".into(),
            });
        }
        if !head.is_empty() {
            let given: Head = head.parse().map_err(PimError::InvalidArgument)?;
            heads.push(KeptHead {
                head: given,
                source: "--head".into(),
            });
        }
        let report = self.store.read(|tx| {
            let mut verifier = Verifier::new(heads);
            let mut after = 0;
            loop {
                let page = tx.audit_chain(after, VERIFY_PAGE)?;
                let Some(last) = page.last() else {
                    break;
                };
                after = last.id;
                for record in page {
                    verifier.push(record);
                }
                if verifier.done() {
                    break;
                }
            }
            Ok::<_, StoreError>(verifier.finish())
        })?;
        let (outcome, detail) = if report.ok() {
            (
                Outcome::Success,
                format!("the chain holds: {} record(s) checked", report.checked),
            )
        } else {
            (
                Outcome::Error,
                format!(
                    "the chain breaks at record {} ({}): {}",
                    report.break_record, report.break_kind, report.break_detail
                ),
            )
        };
        let entry = audit.entry(self.now(), outcome, detail);
        self.commit(|tx| Ok(tx.audit(entry)?))?;
        Ok(report)
    }

    /// Retention: removes the records older than `[audit] keep` (see
    /// [`crate::store::Tx::prune_audit`]).
    fn prune_audit(&mut self, now: i64) -> Result<(), PimError> {
        let Some(keep) = self.config.audit.keep_secs else {
            return Ok(());
        };
        let why = format!("older than {}", duration::format(keep));
        let before = now.saturating_sub(keep as i64);
        self.commit(|tx| Ok(tx.prune_audit(before, now, &why)?))?;
        Ok(())
    }
}

/// Retention's job: what is older than `[audit] keep` goes, at every round.
pub(super) struct PruneAudit;

impl reconcile::Job for PruneAudit {
    fn run(&self, m: &mut Manager, now: i64) -> Result<(), PimError> {
        m.prune_audit(now)
    }
}

/// The head's periodic publication. It sets no deadline of its own: reconciliation's
/// periodic tick (a minute) is often enough for a five-minute period.
pub(super) struct PublishAuditHead;

impl reconcile::Job for PublishAuditHead {
    fn run(&self, m: &mut Manager, now: i64) -> Result<(), PimError> {
        if !m.head.starting && now >= m.head.looked_at + HEAD_EVERY_SECS {
            m.head.looked_at = now;
            m.publish_head(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
