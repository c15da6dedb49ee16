//! `pim doctor`: is this host set up for pim? Each check says what it found and, when something
//! is wrong, how to fix it.
//!
//! | check | looks at | root only |
//! | --- | --- | --- |
//! | daemon | pimd owns `org.pim.Manager1` on the system bus (or the bus starts it) | |
//! | bus-policy | the bus policy file, and the D-Bus activation file | |
//! | pam-module | `pam_pim.so` in the distribution's PAM module directory | |
//! | sudo-pam | the account stacks of `sudo` and `sudo-i` (following includes) run it, so that its refusal counts and its "not my business" does not, with arguments the module accepts (read with its own grammar) and a `groups=` that names existing groups | |
//! | group-source | `Set group_source` in /etc/sudo.conf | |
//! | sudoers | no `Defaults !pam_acct_mgmt` (sudo would skip the module), whatever it is bound to, in every file sudo reads (includes followed); `targetpw`, `rootpw`, `runaspw` only with the module seen to run in sudo's stack (it judges the invoking user, not PAM_USER); a warning when nsswitch.conf takes sudoers rules from sources doctor cannot read | yes |
//! | service | pimd.service is enabled (when systemd runs) | |
//! | hidepid | /proc is not mounted `hidepid` (pimd could not see the processes it ends at a grant's end) | |
//! | nosuid | places any user can write (/home, /tmp, /var/tmp, /dev/shm, world-writable mount points) are on mounts with `nosuid`, and no network, FUSE or ramfs mount (never swept by pimd) allows set-ID bits | |
//! | config | /etc/pim/pim.toml: owner, mode, and what `pimd --check-config` says of it (the same reader, `pim-config`) | yes |
//! | database | the database's directory (0700) and files (0600), owned by root | yes |
//! | fleet | fleet hosts: `[fleet]` as pimd reads it, and the files its database string makes pimd trust (the CA file, `sslrootcert` or libpq's default /root/.postgresql/root.crt; a `passfile`), with pimd's rule: regular, root's, writable (the passfile: readable) by root only, in directories only root can change | yes |
//! | fleet-link | fleet hosts: what pimd says of its link to the fleet's database (`FleetState`, root only): fails when the host is stale (it refuses fleet grants), warns when it never synchronised, when its last round got no answer or when it did not take the fleet's policy version; else the figures (age of the last synchronisation, max_staleness, clock skew, policy version) | yes |
//! | fleet-unit | fleet hosts under systemd: pimd.service may reach the database's addresses (`systemctl show pimd -p PrivateNetwork -p IPAddressAllow -p IPAddressDeny`, drop-ins included; packaging/fleet/pimd-fleet-network.conf); nothing needed over a Unix socket | yes |
//! | groups | every role's group exists | yes |
//! | pam-groups | every group pam_pim.so gates has a role; no role's group that sudoers names escapes the module | yes |
//! | members | members of gated groups with neither a live grant nor a `permanent` listing | yes |
//! | alerts | the alerts pimd has open (`pim alerts`) | yes |
//!
//! On a fleet host (`[fleet]` in pim.toml) the roles that groups, pam-groups and members judge
//! are the fleet's policy as pimd runs it (asked over the bus); while pimd is not reachable or
//! has no policy yet, those three are skipped and say why. The fleet checks are left out of a
//! single host's report, and of a report made without root (the configuration, which says
//! whether the host is in a fleet, is root's): a single host's report is as before.
//!
//! Exit status 0 when nothing failed (warnings and skipped checks included), 1 otherwise.
//! Without root the checks that read root-only files are skipped, and say so.
//!
//! Everything read from files is escaped before it is printed.
//!
//! What lives where:
//!
//! | module | holds |
//! | --- | --- |
//! | [`findings`] | what a check reports (`Finding`, `Status`) and the report, as text or JSON |
//! | [`pam`] | the PAM module's place and sudo's account stacks, read as Linux-PAM reads them; the module's arguments are judged with its own grammar (`pim-pam-args`) |
//! | [`sudoers`] | /etc/sudo.conf and the sudoers files sudo reads |
//! | [`checks`] | the other checks: the daemon and its bus files, the unit, mounts, and the configuration (judged with pimd's own model, `pim-config`) with the database, groups and members it names (on a fleet host: the fleet's policy as pimd runs it), and a fleet host's `[fleet]`, link and unit |
//!
//! This file runs them in order and prints the report.

mod checks;
mod findings;
mod pam;
mod sudoers;
#[cfg(test)]
mod testing;

use crate::cli::DoctorArgs;
use crate::commands::Outcome;
use crate::error::{Failure, EXIT_FAILED};
use crate::output::to_json;
use checks::bus::{check_bus_files, check_daemon};
use checks::config::{check_config, check_reload};
use checks::database::check_database;
use checks::fleet::{check_fleet, check_fleet_link, check_fleet_unit, fleet_state};
use checks::hidepid::check_hidepid;
use checks::nosuid::check_nosuid;
use checks::roles::{check_groups, check_members, check_pam_groups, Roles};
use checks::unit::check_service;
use checks::HostAccounts;
use findings::{report_json, report_text, Finding, Status};
use pam::{
    absolute_module_paths, check_pam_module, check_sudo_pam, module_seen_to_run, pam_module_dirs,
};
use pim_common::reload::LAST_RELOAD_PATH;
use pim_common::text::escape;
use pim_config::fleet_files::check_trusted;
use pim_config::Directory;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sudoers::{check_group_source, check_sudoers_defaults, sudoers_sources_elsewhere};

const PAM_DIR: &str = "/etc/pam.d";
const SUDO_CONF: &str = "/etc/sudo.conf";
const NSSWITCH: &str = "/etc/nsswitch.conf";
const MODULE: &str = "pam_pim.so";
const BUS_TIMEOUT: Duration = Duration::from_secs(10);
const NEEDS_ROOT: &str = "needs root; run 'pim doctor' as root";

/// A path as printed: escaped, since it may come from a file.
fn show(path: &Path) -> String {
    escape(&path.display().to_string())
}

/// Names as printed: escaped, comma-separated.
fn list<S: AsRef<str>>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| escape(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds since the epoch, for the ages fleet-link prints.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub async fn run(args: DoctorArgs, json: bool) -> Result<Outcome, Failure> {
    let root = nix::unistd::geteuid().is_root();
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(pim_config::DEFAULT_PATH));
    let mut findings = Vec::new();

    let (daemon, connection) = check_daemon().await;
    let pimd_running = daemon.status == Status::Pass;
    findings.push(daemon);
    findings.extend(check_bus_files());
    let module_dirs = pam_module_dirs();
    findings.push(check_pam_module(
        &module_dirs,
        &absolute_module_paths(Path::new(PAM_DIR)),
    ));
    let (sudo_findings, gated) = check_sudo_pam(Path::new(PAM_DIR), &module_dirs);
    let module_runs = module_seen_to_run(&sudo_findings);
    findings.extend(sudo_findings);
    findings.push(check_group_source(
        std::fs::read_to_string(SUDO_CONF).ok().as_deref(),
    ));
    findings.push(check_service());
    findings.push(check_hidepid(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    ));
    findings.push(check_nosuid(
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
        &|path| std::fs::metadata(path).is_ok_and(|m| m.is_dir() && m.mode() & 0o002 != 0),
    ));

    if root {
        let sudoers = pim_sudoers::read_system().files;
        let elsewhere =
            sudoers_sources_elsewhere(&std::fs::read_to_string(NSSWITCH).unwrap_or_default());
        findings.push(check_sudoers_defaults(&sudoers, module_runs, &elsewhere));
        let (config_findings, config) = check_config(&config_path);
        findings.extend(config_findings);
        findings.push(check_reload(Path::new(LAST_RELOAD_PATH), pimd_running));
        findings.push(checks::pam_socket::check_pam_socket(
            Path::new(pim_common::pam_socket::PAM_SOCKET_DIR),
            Path::new(pim_common::pam_socket::PAM_SOCKET),
            pimd_running,
            &checks::pam_socket::FailOpen::of_host(Path::new(PAM_DIR)),
        ));
        match &config {
            Some(config) => {
                findings.push(check_database(config));
                let roles = match &config.model.fleet {
                    None => Ok(Roles::of_file(config)),
                    Some(fleet) => {
                        let state = fleet_state(connection.as_ref()).await;
                        findings.push(check_fleet(config, fleet, &check_trusted));
                        findings.push(match &state {
                            Ok(state) => check_fleet_link(state, unix_now()),
                            Err(why) => Finding::skip("fleet-link", why.clone()),
                        });
                        findings.push(check_fleet_unit(fleet));
                        state
                            .as_ref()
                            .map_err(|why| format!("roles come from the fleet policy; {why}"))
                            .and_then(Roles::of_fleet)
                    }
                };
                match roles {
                    Ok(roles) => {
                        findings.push(check_groups(&roles, &|g| HostAccounts.group_exists(g)));
                        findings.extend(check_pam_groups(
                            &roles,
                            &gated,
                            &pim_sudoers::groups(&sudoers),
                        ));
                        findings.push(check_members(&roles, &gated, connection.as_ref()).await);
                    }
                    Err(why) => {
                        for check in ["groups", "pam-groups", "members"] {
                            findings.push(Finding::skip(check, why.clone()));
                        }
                    }
                }
            }
            None => {
                let why = "skipped: the configuration could not be read, or pimd would not take it (see config)";
                for check in ["database", "groups", "pam-groups", "members"] {
                    findings.push(Finding::skip(check, why));
                }
            }
        }
        findings.push(checks::alerts::check_alerts(connection.as_ref()).await);
    } else {
        for check in [
            "sudoers",
            "config",
            "reload",
            "database",
            "groups",
            "pam-groups",
            "members",
            "alerts",
        ] {
            findings.push(Finding::skip(check, NEEDS_ROOT));
        }
    }

    let failed = findings.iter().any(|f| f.status == Status::Fail);
    let text = if json {
        to_json(&report_json(&findings, root), true)
    } else {
        report_text(&findings)
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return Err(Failure::Quiet(EXIT_FAILED));
    }
    if failed {
        Err(Failure::Quiet(EXIT_FAILED))
    } else {
        Ok(Outcome::Done)
    }
}
