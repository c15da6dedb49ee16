//! The configuration model lives in the `pim-config` crate (shared with `pim doctor`); this
//! re-export keeps the daemon's `crate::config::...` paths while the manager is being split.
pub use pim_config::*;
