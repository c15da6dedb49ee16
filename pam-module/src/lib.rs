//! `pam_pim.so`: the account check that makes pim's expiry real for sudo.
//!
//! ```text
//! account required pam_pim.so groups=sudo,wheel [services=sudo,sudo-i] [timeout=2s] [fail=closed|open] [debug]
//! ```
//!
//! Processes keep supplementary groups after pimd takes a user out of `/etc/group`, so a user
//! whose grant ended may still carry `sudo`. In the account phase this module finds which of the
//! managed `groups=` the invoking user holds (see [`accounts`]; for sudo and su the person who
//! ran them, by real uid, never the target account); a user holding none is left alone
//! (PAM_IGNORE, no call to pimd: break-glass accounts never depend on the daemon). Otherwise it
//! asks pimd, over pimd's own root-only socket at a fixed path, whether the user may use the
//! held groups (see [`pimd`]), and returns PAM_SUCCESS for a live grant or PAM_PERM_DENIED with pimd's one-line
//! reason shown to the user. The full decision table is in [`decision`], the argument grammar in
//! [`args`].
//!
//! Other entry points (`pam_sm_authenticate`, `pam_sm_setcred`, the session pair,
//! `pam_sm_chauthtok`) return PAM_IGNORE, so that a misplaced line breaks no stack. Only the
//! `pam_sm_*` symbols are exported.
//!
//! The module keeps no state between calls and does not speak D-Bus: no threads, no runtime,
//! one blocking socket per call, closed before returning, one write and one read of a small
//! fixed-header frame. All `unsafe` code is in the private `ffi` module, behind `catch_unwind`.
//!
//! # Tests
//!
//! Unit tests here cover argument parsing, the decision table (with fake accounts and a fake
//! daemon) and the exchange with pimd (against fake listeners at a temporary socket). The
//! behaviour inside sudo is tested end to end in
//! `tests/tests/pam.rs` at the workspace root: real sudo and pamtester through a PAM stack
//! holding this module, with pimd running in a throwaway sandbox.
#![deny(unsafe_code)]

pub mod accounts;
pub use pim_pam_args as args;
pub mod decision;
#[allow(unsafe_code)]
mod ffi;
pub mod pimd;

/// The account check with the host's databases and pimd on its socket: parses `args`,
/// decides for the person asking in `service` (PAM_USER `user`, PAM_RUSER `ruser`, and this
/// process's real uid), and returns the decision with its log lines.
pub fn check_account(
    args: &[String],
    service: Option<&str>,
    user: decision::Item<'_>,
    ruser: decision::Item<'_>,
) -> decision::Decision {
    let parsed = args::parse(args);
    let daemon = pimd::SocketDaemon::system(parsed.options.timeout);
    let asker = decision::Asker {
        service,
        user,
        ruser,
        real_uid: nix::unistd::getuid().as_raw(),
    };
    decision::decide(&parsed, &asker, &accounts::SystemAccounts, &daemon)
}
