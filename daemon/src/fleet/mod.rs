//! Fleet mode: PostgreSQL is the one authority for policy, requests, approvals, grants, MFA
//! and audit; each pimd mirrors its host's slice locally and enforces it there.
//!
//! `authority` is the seam to the database (trait and PostgreSQL implementation).

pub mod authority;
