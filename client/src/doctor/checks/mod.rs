//! The checks that are neither PAM stacks nor sudoers, one file each with its tests:
//!
//! | module | checks |
//! | --- | --- |
//! | [`alerts`] | alerts: the ones pimd has open |
//! | [`bus`] | daemon, bus-policy, activation |
//! | [`unit`] | service |
//! | [`nosuid`] | nosuid |
//! | [`hidepid`] | hidepid: /proc shows pimd every process |
//! | [`config`] | config (judged by `pim-config`, pimd's own model), reload |
//! | [`database`] | database |
//! | [`pam_socket`] | pam-socket: pimd's socket for the module |
//! | [`roles`] | groups, pam-groups, members: the roles pimd runs on (the file's, or on a fleet host the fleet's policy) against the host |
//! | [`fleet`] | fleet, fleet-link, fleet-unit: a fleet host's `[fleet]`, link and unit |

pub mod alerts;
pub mod bus;
pub mod config;
pub mod database;
pub mod fleet;
pub mod hidepid;
pub mod nosuid;
pub mod pam_socket;
pub mod roles;
pub mod unit;

/// This host's users and groups (NSS), as pimd looks them up to check the configuration.
pub struct HostAccounts;

impl pim_config::Directory for HostAccounts {
    fn user_exists(&self, name: &str) -> bool {
        matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
    }
    fn group_exists(&self, name: &str) -> bool {
        matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
    }
}
