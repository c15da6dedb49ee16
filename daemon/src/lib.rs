//! pimd: the just-in-time privilege daemon. Owns `org.pim.Manager1` on the system bus, keeps
//! its state in SQLite, and adds and removes Unix group memberships through gpasswd.
//!
//! `manager` is the domain (one file per capability), `service` the D-Bus layer over it,
//! `pam_socket` the PAM module's own root-only socket, `model` the plain types of pimd's state,
//! `store` the storage port (traits, the audit rule) and its SQLite backend, `startup` what
//! runs it; `main.rs` reads the arguments. The configuration model is the `pim-config` crate,
//! which `pim doctor` uses too.
#![forbid(unsafe_code)]

mod access;
mod access_snapshot;
mod accounts;
mod alerts;
mod clock;
mod ending;
mod fleet;
mod manager;
mod mfa;
mod model;
mod pam_socket;
mod policy;
mod processes;
mod refusals;
mod service;
mod setgid;
mod startup;
mod store;
mod syslog;
mod throttle;

pub use fleet::setup::{run as fleet_setup, USAGE as FLEET_SETUP_USAGE};
// The seam to the fleet's database, for its tests against PostgreSQL (tests/tests/).
pub use fleet::{authority, conninfo};
pub use pim_config::DEFAULT_PATH;
pub use processes::{freeze_as, FREEZE_ARG};
pub use startup::{reload_running, start};
