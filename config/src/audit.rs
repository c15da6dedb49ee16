//! `[audit]`: how long audit records are kept.
//!
//! ```toml
//! [audit]
//! keep = "400d"     # default: forever
//! ```

use super::{Cap, Checker, Section};
use toml::Spanned;

const AUDIT_KEYS: &[&str] = &["keep"];

/// The longest `keep` may be: a century, far above any retention rule, and still clear of
/// timestamp overflow.
const KEEP_CAP: Cap = Cap {
    secs: 36_500 * 86_400,
    text: "36500d",
    why: "for audit retention",
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// Records older than this many seconds are removed (with a checkpoint in the chain);
    /// `None`: kept forever.
    pub keep_secs: Option<u64>,
}

impl Checker<'_> {
    pub(super) fn audit(&mut self, s: &Section<'_, '_>) -> AuditConfig {
        self.check_keys(s, AUDIT_KEYS);
        let keep = self.duration(s, "keep", &KEEP_CAP);
        let keep = self.valid(s, "keep", keep, |secs| {
            if *secs == 0 {
                Err("must be at least 1s; leave keep out to keep records forever".into())
            } else {
                Ok(())
            }
        });
        AuditConfig {
            keep_secs: keep.ok().flatten().map(Spanned::into_inner),
        }
    }
}
