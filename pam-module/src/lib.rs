//! `pam_pim.so`: the account check that makes pim's expiry real for sudo.
//!
//! ```text
//! account required pam_pim.so groups=sudo,wheel [services=sudo,sudo-i] [timeout=2s] [fail=closed|open] [debug]
//! ```
//!
//! Processes keep supplementary groups after pimd takes a user out of `/etc/group`, so a user
//! whose grant ended may still carry `sudo`. In the account phase this module finds which of the
//! managed `groups=` the user holds (see [`accounts`]); a user holding none is left alone
//! (PAM_IGNORE, no bus traffic: break-glass accounts never depend on the daemon). Otherwise it
//! asks pimd, over the fixed system bus socket, `CheckAccess(user, held groups)` (see
//! [`daemon`]), and returns PAM_SUCCESS for a live grant or PAM_PERM_DENIED with pimd's one-line
//! reason shown to the user. The full decision table is in [`decision`], the argument grammar in
//! [`args`].
//!
//! Other entry points (`pam_sm_authenticate`, `pam_sm_setcred`, the session pair,
//! `pam_sm_chauthtok`) return PAM_IGNORE, so that a misplaced line breaks no stack. Only the
//! `pam_sm_*` symbols are exported.
//!
//! The module keeps no state between calls. It speaks D-Bus itself (see [`wire`]), without
//! zbus or an async runtime: no threads, no runtime, one blocking socket per call, closed
//! before returning, and the whole exchange with the bus in one write and one round trip. All
//! `unsafe` code is in the private `ffi` module, behind `catch_unwind`.
//!
//! # End-to-end tests (to be written with the real daemon)
//!
//! Run as root, with a private mount namespace binding a scratch directory over `/etc/pam.d`
//! holding a service `pimtest`:
//! `account required <target>/libpam_pim.so groups=<G> debug` then `account required pam_permit.so`,
//! and drive it with `pamtester pimtest USER acct_mgmt`. With pimd running on the system bus:
//! - a user eligible for a role of group `G` with a live grant passes; after `pim deactivate`
//!   (or expiry) the same call fails with pimd's message on stderr
//!   (`pim: your grant for role ... ; run 'pim activate ...'`) and a `denied` line in the
//!   authpriv log;
//! - a `permanent` member of the role passes;
//! - a user who is not in `G` passes without any call reaching pimd (check pimd's audit log
//!   or `dbus-monitor --system`);
//! - pimd stopped: the holder is denied quickly (well under `timeout=`), and passes with
//!   `fail=open`;
//! - pimd stopped on its bus name but a process holding the socket that never answers:
//!   the call returns after `timeout=` (e.g. `timeout=500ms`);
//! - `DBUS_SYSTEM_BUS_ADDRESS` pointing at a bus the user controls changes nothing;
//! - in sudo itself (`sudo -l` as the user), the refusal is printed and sudo exits non-zero.
#![deny(unsafe_code)]

pub mod accounts;
pub mod args;
pub mod daemon;
pub mod decision;
#[allow(unsafe_code)]
mod ffi;
pub mod wire;

/// The account check with the host's databases and pimd on the system bus: parses `args`,
/// decides for `user` of `service`, and returns the decision with its log lines.
pub fn check_account(
    args: &[String],
    service: Option<&str>,
    user: Option<&str>,
) -> decision::Decision {
    let parsed = args::parse(args);
    let daemon = daemon::BusDaemon::system(parsed.options.timeout);
    decision::decide(&parsed, service, user, &accounts::SystemAccounts, &daemon)
}
