//! What access reviews look like on the bus and in `--json`.

use serde::{Deserialize, Serialize};
use zbus::Type;

/// An access review of one role, with the items the caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ReviewInfo {
    pub id: i64,
    pub role: String,
    pub started_at: i64,
    pub ends_at: i64,
    /// As written: "self", "owners", "admins", user names and `%groups`.
    pub reviewers: Vec<String>,
    /// What an undecided item gets at the end: `remove`, `keep` or `recommendation`.
    pub default_decision: String,
    /// Started by the role's `review_every` (else one-off).
    pub recurring: bool,
    pub started_by: String,
    /// When its decisions were applied; 0 while it is open.
    pub completed_at: i64,
    pub items: Vec<ReviewItemInfo>,
}

/// One user's access to the reviewed role, and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ReviewItemInfo {
    pub user: String,
    /// `standing` (the role's `eligible` entries), `assignment`, or both, comma-separated.
    pub access: String,
    /// `keep` or `remove`, from use.
    pub recommendation: String,
    /// Why, e.g. `no activation in 30 days`.
    pub recommendation_why: String,
    /// The last reviewer's decision, `keep` or `remove`; empty while undecided.
    pub decision: String,
    pub decided_by: String,
    /// 0 while undecided.
    pub decided_at: i64,
    pub comment: String,
    /// What the end applied (e.g. `removed (default)`); empty while the review is open.
    pub result: String,
}

/// A role the caller decides for, other than by being eligible: as `approver`, `owner`,
/// `admin` or `reviewer` (of an open review).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DecidedRole {
    pub role: String,
    pub group: String,
    pub capacities: Vec<String>,
}
