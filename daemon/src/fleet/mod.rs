//! Fleet mode: PostgreSQL is the one authority for policy, requests, approvals, grants, MFA
//! and audit; each pimd mirrors its host's slice locally and enforces it there.
//!
//! - `authority`: the seam to the database (trait and PostgreSQL implementation);
//! - `conninfo`: the `[fleet] database` string made a connection (TLS, passfile, timeouts);
//! - `policy`: the normalized policy the database checks (made from a checked Config);
//! - `setup`: `pimd --fleet-setup` (schema, first policy, first hosts);
//! - `mirror`: whether the host is fresh enough to count fleet grants, and what makes the
//!   local grants equal a snapshot (pure, with the clock passed in);
//! - `sync`: the rounds with the authority (snapshot, expire_due, the audit spool), their
//!   back-off while it does not answer, and the thread that waits for its NOTIFY.

pub mod authority;
pub mod conninfo;
#[cfg(test)]
pub mod fake;
pub mod mirror;
pub mod policy;
pub mod setup;
pub mod sync;
