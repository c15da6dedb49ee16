//! The audit chain: every audit record carries the hash of the record before it, so that an
//! edit, a deletion, an insertion or a cut tail shows. pimd writes the records (in the store's
//! port, for every backend); `pim audit verify` walks them, in pimd over the bus or in `pim`
//! itself over an export (`pim audit verify --file`), with the same [`Verifier`].
//!
//! # The canonical encoding
//!
//! A record's hash is SHA-256, in lower-case hex, of:
//!
//! ```text
//! "pim-audit-v1\n" id at actor action user role outcome reason ticket detail prev
//! ```
//!
//! each field written as a netstring: its length in bytes (decimal ASCII), `:`, its bytes
//! (UTF-8), `,`. `id` and `at` are decimal integers (`at` in seconds since the epoch, UTC,
//! with a `-` if negative), `outcome` is `success`, `refused` or `error`, and `prev` is the
//! hash of the record before it: 64 `0`s for the chain's first record (the genesis: a new
//! database's first record; in one with records from before the chain, a record of its own
//! after them, action [`GENESIS_ACTION`]). Nothing of SQLite is in it: the same fields, from any backend or from
//! an export, give the same hash. In Python:
//!
//! ```text
//! def ns(v): b = str(v).encode(); return str(len(b)).encode() + b":" + b + b","
//! h = hashlib.sha256(b"pim-audit-v1\n" + b"".join(ns(r[k]) for k in FIELDS)).hexdigest()
//! ```
//!
//! # What the walk judges
//!
//! Records are taken in id order. Records before the genesis (written before the chain
//! existed: an older database's) carry no hash and are counted as unchained. From the genesis
//! on, each record must hash to its stored hash, carry its predecessor's hash and have the
//! next id. The first record that does not is the break, one of [`BreakKind`]. A log whose
//! oldest records were removed by retention starts at a record that is not the genesis: its
//! predecessor's id and hash must be those of the latest checkpoint ([`CHECKPOINT_ACTION`])
//! in the chain. A head (id and hash) kept elsewhere, by pimd in its head file or in a remote
//! syslog, must name a record of the chain with that hash: else the tail was cut (the record
//! is missing) or the chain was rewritten (it is there, with another hash).
//!
//! Root can rewrite the whole chain with fresh hashes: that is caught only against a head
//! kept where root on this host cannot reach (a remote syslog), which is why pimd logs it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use zbus::Type;

use crate::types::AuditRecord;
use crate::vocab::AuditAction;

/// The action of the record that starts the chain after records written before it (in a
/// database an older pimd made).
pub const GENESIS_ACTION: AuditAction = AuditAction::AuditChainStart;
/// The action of the record retention writes when it removes old records: its detail ends
/// with the last removed record's `ID:HASH` (see [`checkpoint_detail`]).
pub const CHECKPOINT_ACTION: AuditAction = AuditAction::AuditPruned;
/// The `prev` of the genesis.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// What the encoding starts with; a new encoding would get a new version.
const DOMAIN: &[u8] = b"pim-audit-v1\n";
/// Where a checkpoint's detail names the last removed record.
const CHECKPOINT_MARK: &str = "; the last removed: ";

/// The fields of a record that are hashed, in their order, encoded as described in the
/// module's doc.
pub fn encode(r: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 64 + r.reason.len() + r.detail.len() + 128);
    out.extend_from_slice(DOMAIN);
    let (id, at) = (r.id.to_string(), r.at.to_string());
    let fields: [&[u8]; 11] = [
        id.as_bytes(),
        at.as_bytes(),
        r.actor.as_bytes(),
        r.action.as_str().as_bytes(),
        r.user.as_bytes(),
        r.role.as_bytes(),
        r.outcome.as_str().as_bytes(),
        r.reason.as_bytes(),
        r.ticket.as_bytes(),
        r.detail.as_bytes(),
        r.prev.as_bytes(),
    ];
    for field in fields {
        netstring(&mut out, field);
    }
    out
}

fn netstring(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(field.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(field);
    out.push(b',');
}

/// The record's hash (its `hash` field is not part of it).
pub fn hash(r: &AuditRecord) -> String {
    hex(&Sha256::digest(encode(r)))
}

/// `bytes` in lower-case hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is a hash as the chain writes them: 64 lower-case hex digits.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A record of the chain named by its id and hash: the chain's head as pimd logs it, or the
/// last record a checkpoint says was removed. Written `ID:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub id: i64,
    pub hash: String,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, self.hash)
    }
}

impl FromStr for Head {
    type Err = String;

    fn from_str(s: &str) -> Result<Head, String> {
        let s = s.trim();
        let wrong = || {
            format!(
                "'{}' is not a record's ID:HASH (a positive id, ':', 64 hex digits), as pimd \
                 logs its head",
                crate::text::escape(s)
            )
        };
        let (id, hash) = s.split_once(':').ok_or_else(wrong)?;
        let id: i64 = id.parse().map_err(|_| wrong())?;
        let hash = hash.to_ascii_lowercase();
        if id < 1 || !is_hash(&hash) {
            return Err(wrong());
        }
        Ok(Head { id, hash })
    }
}

/// The detail of a checkpoint record: records `first` to `last.id` were removed (`why`).
/// `last.hash` is empty when all of them were from before the chain.
pub fn checkpoint_detail(first: i64, last: &Head, why: &str) -> String {
    if last.hash.is_empty() {
        format!(
            "records {first} to {} removed ({why}), all from before the chain began",
            last.id
        )
    } else {
        format!(
            "records {first} to {} removed ({why}){CHECKPOINT_MARK}{last}",
            last.id
        )
    }
}

/// The last removed record a checkpoint's detail names, if it names one.
pub fn checkpoint_head(detail: &str) -> Option<Head> {
    let (_, head) = detail.rsplit_once(CHECKPOINT_MARK)?;
    head.parse().ok()
}

/// How the chain breaks (stable names, as `--json` shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakKind {
    /// A record's contents no longer match its hash (or, hash recomputed, its successor's
    /// link).
    Edited,
    /// Records are missing between two others, or before the first one with no checkpoint
    /// to account for them.
    Deleted,
    /// A record that is not part of the chain: its successor follows its predecessor.
    Inserted,
    /// The chain ends before a head kept elsewhere.
    MissingTail,
    /// The chain holds the head's record, with another hash: it was rewritten at or before it.
    Rewritten,
    /// A slice that starts after a head's record without linking to it: nothing in it
    /// shows the head is part of the same chain.
    HeadNotCovered,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Inserted => "inserted",
            BreakKind::MissingTail => "missing-tail",
            BreakKind::Rewritten => "rewritten",
            BreakKind::HeadNotCovered => "head-not-covered",
        }
    }
}

/// A head to check the chain against, and where it came from (`the head file`, `--head`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptHead {
    pub head: Head,
    pub source: String,
}

/// What a walk found. D-Bus has no optional values: 0 and "" mean none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Verification {
    /// Chained records checked and found good (up to the break, if any).
    pub checked: u64,
    /// Records before the genesis, which carry no hash.
    pub unchained: u64,
    /// The first and last record of the chain that were checked.
    pub first: i64,
    pub last: i64,
    /// The last good record's hash: the head as of this walk.
    pub last_hash: String,
    /// The genesis's id, if the chain still starts with it.
    pub genesis: i64,
    /// The last record retention removed, when the chain starts after one.
    pub pruned_through: i64,
    /// Heads checked (`source ID:HASH`, one a line), and those that could not be judged
    /// because retention removed their record.
    pub heads_checked: Vec<String>,
    pub heads_pruned: Vec<String>,
    /// The break: [`BreakKind::as_str`], or "" when the chain is whole.
    pub break_kind: String,
    /// The first bad record (for a deletion or a cut tail, the first missing id).
    pub break_record: i64,
    pub break_detail: String,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.break_kind.is_empty()
    }
}

/// The walk (see the module's doc): give it the records in id order with [`Verifier::push`],
/// then [`Verifier::finish`].
pub struct Verifier {
    heads: Vec<KeptHead>,
    /// For each head, whether the walk reached its record and found its hash.
    heads_walked: Vec<bool>,
    report: Verification,
    /// The last record accepted.
    last: Option<Head>,
    /// The last record before the genesis.
    last_unchained: Option<i64>,
    /// The first chained record, when it is not the genesis: its id and `prev`, which the
    /// latest checkpoint must account for.
    anchor: Option<Head>,
    /// The latest checkpoint's last removed record.
    checkpoint: Option<Head>,
    /// A record that failed, waiting for the next one to tell an insertion from an edit.
    suspect: Option<AuditRecord>,
    broken: bool,
    /// A copy that may start anywhere (an export since some time): a start that is neither
    /// the genesis nor accounted for by a checkpoint is not a break.
    slice: bool,
}

impl Verifier {
    pub fn new(heads: Vec<KeptHead>) -> Verifier {
        Verifier {
            heads_walked: vec![false; heads.len()],
            heads,
            report: Verification::default(),
            last: None,
            last_unchained: None,
            anchor: None,
            checkpoint: None,
            suspect: None,
            broken: false,
            slice: false,
        }
    }

    /// A walk over a copy that may start anywhere (see `slice`).
    pub fn for_slice(heads: Vec<KeptHead>) -> Verifier {
        Verifier {
            slice: true,
            ..Verifier::new(heads)
        }
    }

    /// Whether the walk has found its break (the rest need not be read).
    pub fn done(&self) -> bool {
        self.broken
    }

    fn fail(&mut self, kind: BreakKind, record: i64, detail: String) {
        if self.broken {
            return;
        }
        self.broken = true;
        self.report.break_kind = kind.as_str().to_string();
        self.report.break_record = record;
        self.report.break_detail = detail;
    }

    fn accept(&mut self, r: &AuditRecord) {
        self.report.checked += 1;
        if self.report.first == 0 {
            self.report.first = r.id;
        }
        self.report.last = r.id;
        self.report.last_hash = r.hash.clone();
        if r.action == CHECKPOINT_ACTION {
            if let Some(head) = checkpoint_head(&r.detail) {
                self.checkpoint = Some(head);
            }
        }
        self.last = Some(Head {
            id: r.id,
            hash: r.hash.clone(),
        });
        let mut rewritten = None;
        for (kept, walked) in self.heads.iter().zip(self.heads_walked.iter_mut()) {
            if kept.head.id == r.id && kept.head.hash == r.hash {
                *walked = true;
            }
            if kept.head.id == r.id && kept.head.hash != r.hash {
                rewritten = Some(format!(
                    "record {} has hash {}, not {} as the head from {} says: the chain \
                     was rewritten at or before it (or cut there and written again)",
                    r.id, r.hash, kept.head.hash, kept.source
                ));
            }
        }
        if let Some(detail) = rewritten {
            self.fail(BreakKind::Rewritten, r.id, detail);
        }
    }

    /// Takes the next record, in id order.
    pub fn push(&mut self, r: AuditRecord) {
        if self.broken {
            return;
        }
        if let Some(suspect) = self.suspect.take() {
            self.judge(suspect, Some(&r));
            return;
        }
        let Some(last) = self.last.clone() else {
            self.start(r);
            return;
        };
        if r.id > last.id + 1 {
            let detail = if r.id == last.id + 2 {
                format!(
                    "record {} is missing (between {} and {})",
                    last.id + 1,
                    last.id,
                    r.id
                )
            } else {
                format!(
                    "records {} to {} are missing (between {} and {})",
                    last.id + 1,
                    r.id - 1,
                    last.id,
                    r.id
                )
            };
            self.fail(BreakKind::Deleted, last.id + 1, detail);
            return;
        }
        if !r.hash.is_empty() && hash(&r) == r.hash && r.prev == last.hash {
            self.accept(&r);
        } else {
            self.suspect = Some(r);
        }
    }

    /// The first record with a hash: the genesis, or (after retention) the first kept.
    fn start(&mut self, r: AuditRecord) {
        if r.hash.is_empty() {
            self.report.unchained += 1;
            self.last_unchained = Some(r.id);
            return;
        }
        let self_ok = hash(&r) == r.hash;
        if r.prev == GENESIS_PREV {
            if let Some(before) = self.last_unchained {
                if r.id > before + 1 {
                    self.fail(
                        BreakKind::Deleted,
                        before + 1,
                        format!(
                            "records {} to {} are missing (before the genesis)",
                            before + 1,
                            r.id - 1
                        ),
                    );
                    return;
                }
            }
            if !self_ok {
                self.fail(
                    BreakKind::Edited,
                    r.id,
                    format!("record {} (the genesis) does not match its hash", r.id),
                );
                return;
            }
            self.report.genesis = r.id;
            self.accept(&r);
            return;
        }
        if let Some(before) = self.last_unchained {
            self.fail(
                BreakKind::Deleted,
                before + 1,
                format!(
                    "record {} is chained but no genesis comes before it: the chain's start \
                     (records {} to {}) was removed",
                    r.id,
                    before + 1,
                    r.id - 1
                ),
            );
            return;
        }
        if !self_ok {
            self.fail(
                BreakKind::Edited,
                r.id,
                format!("record {} does not match its hash", r.id),
            );
            return;
        }
        self.anchor = Some(Head {
            id: r.id,
            hash: r.prev.clone(),
        });
        self.accept(&r);
    }

    /// A record that failed (`suspect`), with the one after it if any.
    fn judge(&mut self, s: AuditRecord, next: Option<&AuditRecord>) {
        let Some(last) = self.last.clone() else {
            return;
        };
        let next_follows_last = next.is_some_and(|n| n.prev == last.hash);
        if s.hash.is_empty() || hash(&s) != s.hash {
            if s.hash.is_empty() || next_follows_last {
                let how = if s.hash.is_empty() {
                    "it has no hash"
                } else {
                    "the record after it is chained to the one before it"
                };
                self.fail(
                    BreakKind::Inserted,
                    s.id,
                    format!("record {} is not part of the chain: {how}", s.id),
                );
            } else {
                self.fail(
                    BreakKind::Edited,
                    s.id,
                    format!(
                        "record {} was changed: its contents do not match its hash",
                        s.id
                    ),
                );
            }
        } else if next_follows_last {
            self.fail(
                BreakKind::Inserted,
                s.id,
                format!(
                    "record {} is not part of the chain: it is not chained to record {}, and \
                     the record after it is",
                    s.id, last.id
                ),
            );
        } else {
            self.fail(
                BreakKind::Edited,
                last.id,
                format!(
                    "record {} was changed and its hash recomputed: record {} is chained to \
                     another record {}",
                    last.id, s.id, last.id
                ),
            );
        }
    }

    /// Ends the walk: the start against the latest checkpoint, the end against the heads.
    pub fn finish(mut self) -> Verification {
        if let Some(suspect) = self.suspect.take() {
            self.judge(suspect, None);
        }
        let anchor = self.anchor.clone().filter(|a| {
            !self.slice
                || self
                    .checkpoint
                    .as_ref()
                    .is_some_and(|c| c.id + 1 == a.id && c.hash == a.hash)
        });
        if let Some(anchor) = anchor {
            // The start is judged when the walk reached a checkpoint, or when it is whole.
            match self.checkpoint.clone() {
                Some(c) if c.id + 1 == anchor.id && c.hash == anchor.hash => {
                    self.report.pruned_through = c.id;
                }
                Some(c) if c.id + 1 < anchor.id => {
                    self.broken = false;
                    self.fail(
                        BreakKind::Deleted,
                        c.id + 1,
                        format!(
                            "records {} to {} are missing: retention removed records up to {} \
                             only",
                            c.id + 1,
                            anchor.id - 1,
                            c.id
                        ),
                    );
                }
                Some(c) => {
                    self.broken = false;
                    self.fail(
                        BreakKind::Edited,
                        anchor.id,
                        format!(
                            "record {} does not follow record {} as the checkpoint of retention \
                             recorded it ({c})",
                            anchor.id, c.id
                        ),
                    );
                }
                None if !self.broken => {
                    self.fail(
                        BreakKind::Deleted,
                        anchor.id - 1,
                        format!(
                            "the log starts at record {}, neither the genesis nor after a \
                             checkpoint of retention: the records before it were removed",
                            anchor.id
                        ),
                    );
                }
                None => {}
            }
        }
        if !self.broken {
            let last = self.last.clone();
            let start = self.report.pruned_through;
            let walked = std::mem::take(&mut self.heads_walked);
            for (kept, walked) in std::mem::take(&mut self.heads).into_iter().zip(walked) {
                let line = format!("{} {}", kept.source, kept.head);
                // The first record walked, when it is not the genesis, names its
                // predecessor's hash: a head on that predecessor is covered by the link.
                let linked = self.anchor.as_ref().filter(|a| a.id == kept.head.id + 1);
                match &last {
                    Some(last) if kept.head.id <= last.id => {
                        if kept.head.id <= start {
                            self.report.heads_pruned.push(line);
                        } else if walked {
                            self.report.heads_checked.push(line);
                        } else if let Some(anchor) = linked {
                            if anchor.hash == kept.head.hash {
                                self.report.heads_checked.push(line);
                            } else {
                                self.fail(
                                    BreakKind::Rewritten,
                                    kept.head.id,
                                    format!(
                                        "record {} is chained to a record {} with hash {}, \
                                         not {} as the head from {} says: this copy is not \
                                         the chain that head was kept from",
                                        anchor.id,
                                        kept.head.id,
                                        anchor.hash,
                                        kept.head.hash,
                                        kept.source
                                    ),
                                );
                                break;
                            }
                        } else {
                            self.fail(
                                BreakKind::HeadNotCovered,
                                kept.head.id,
                                format!(
                                    "the head from {} names record {}, which this copy does \
                                     not hold (it starts at record {}) and its first record \
                                     is not chained to: the head is not covered by this \
                                     export; export from record {} or earlier",
                                    kept.source, kept.head.id, self.report.first, kept.head.id
                                ),
                            );
                            break;
                        }
                    }
                    _ => {
                        let from = last.as_ref().map_or(1, |l| l.id + 1);
                        self.fail(
                            BreakKind::MissingTail,
                            from,
                            format!(
                                "the log ends at record {}, but the head from {} names \
                                 record {}: records {from} to {} are missing",
                                last.as_ref().map_or(0, |l| l.id),
                                kept.source,
                                kept.head.id,
                                kept.head.id
                            ),
                        );
                        break;
                    }
                }
            }
        }
        self.report
    }
}

#[cfg(test)]
mod tests;
