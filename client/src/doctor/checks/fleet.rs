//! A fleet host (`[fleet]` in pim.toml): the `[fleet]` section and the files it makes pimd
//! trust (fleet), pimd's link to the fleet's authority (fleet-link), and the unit's network
//! allowance to the database (fleet-unit).

use super::config::ConfigFile;
use crate::doctor::findings::Finding;
use crate::doctor::{list, show, BUS_TIMEOUT};
use pim_common::duration;
use pim_common::proxy::ManagerProxy;
use pim_common::text::escape;
use pim_common::types::FleetStateInfo;
use pim_config::fleet_files::{trusted_files, TrustedFile};
use pim_config::FleetConfig;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

/// What pimd says of its fleet state, or why it cannot be asked.
pub async fn fleet_state(connection: Option<&zbus::Connection>) -> Result<FleetStateInfo, String> {
    let Some(connection) = connection else {
        return Err("the daemon is not reachable (see daemon)".into());
    };
    let asked = async {
        let proxy = ManagerProxy::new(connection).await?;
        proxy.fleet_state().await.map_err(|e| match e {
            pim_common::PimError::ZBus(z) => z,
            other => zbus::Error::Failure(other.message().to_string()),
        })
    };
    match tokio::time::timeout(BUS_TIMEOUT, asked).await {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(e)) => Err(format!(
            "pimd did not say its fleet state: {}",
            escape(&e.to_string())
        )),
        Err(_) => Err("pimd did not say its fleet state within 10 s".into()),
    }
}

/// The `[fleet]` section as pimd reads it (the config check judged the string's transport)
/// and the CA file and passfile it names, each with pimd's own rule.
pub fn check_fleet(
    config: &ConfigFile,
    fleet: &FleetConfig,
    check_file: &dyn Fn(&TrustedFile) -> Result<(), String>,
) -> Finding {
    const CHECK: &str = "fleet";
    let pairs = match pim_config::conninfo::pairs(&fleet.database) {
        Ok(pairs) => pairs,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!(
                    "[fleet] database is not a connection string: {}",
                    escape(&e)
                ),
                format!(
                    "fix [fleet] database in {} (see pim.toml(5))",
                    show(&config.path)
                ),
            )
        }
    };
    let files = trusted_files(&pairs);
    let problems: Vec<String> = files
        .iter()
        .filter_map(|f| check_file(f).err())
        .map(|e| escape(&e))
        .collect();
    if !problems.is_empty() {
        return Finding::fail(
            CHECK,
            format!(
                "pimd cannot trust what [fleet] database names: {}",
                problems.join("; ")
            ),
            "put the CA certificate that signed the database's certificate in place (root's, \
             chmod 644) and the passfile (root's, chmod 600), in directories only root can \
             write; then systemctl restart pimd",
        );
    }
    let tcp = pim_config::conninfo::tcp_hosts(&pairs);
    let reached = if tcp.is_empty() {
        "over a Unix socket".to_string()
    } else {
        format!("over TCP to {} with sslmode=verify-full", list(&tcp))
    };
    let trusted: Vec<String> = files
        .iter()
        .map(|f| format!("{} {} (root's)", f.key, show(&f.path)))
        .collect();
    let host = fleet.host.as_deref().map_or_else(
        || "this host's hostname".to_string(),
        |h| format!("'{}'", escape(h)),
    );
    Finding::pass(
        CHECK,
        format!(
            "the fleet's database is reached {reached}{}; this host is {host} in the fleet; \
             max_staleness {}",
            if trusted.is_empty() {
                String::new()
            } else {
                format!(", trusting {}", trusted.join(", "))
            },
            duration::format(fleet.max_staleness_secs)
        ),
    )
}

/// pimd's link to the authority: a fail when the host is stale (it refuses fleet grants), a
/// warning when it never synchronised (or the last round got no answer, or a policy version
/// was not taken), a pass with the figures otherwise.
pub fn check_fleet_link(state: &FleetStateInfo, now: i64) -> Finding {
    const CHECK: &str = "fleet-link";
    let no_answer = "the last synchronisation round got no snapshot: the database does not \
                     answer, or refuses this host (its login, a schema version this pimd does \
                     not speak); journalctl -u pimd says which";
    let fix = "restore the link: the network to the database (and fleet-unit), the database's \
               pg_hba.conf and this host's login (pim admin hosts), the clock (NTP); then \
               journalctl -u pimd shows 'synchronised'";
    if state.last_sync == 0 {
        let mut message = "pimd has not synchronised with the fleet's database yet: fleet \
                           grants do not count on this host until it does"
            .to_string();
        if state.unreachable {
            message.push_str(&format!("; {no_answer}"));
        }
        return Finding::warn(CHECK, message, fix);
    }
    let skew_and_version = format!(
        "clock skew {} s, policy version {}",
        state.last_sync - state.db_now,
        state.policy_version
    );
    if !state.stale.is_empty() {
        let mut message = format!(
            "stale: {}; pimd refuses fleet grants until it synchronises ({skew_and_version})",
            escape(&state.stale)
        );
        if state.unreachable {
            message.push_str(&format!("; {no_answer}"));
        }
        return Finding::fail(CHECK, message, fix);
    }
    let figures = format!(
        "last synchronised {} ago (max_staleness {}), {skew_and_version}",
        duration::format(now.saturating_sub(state.last_sync).max(0) as u64),
        duration::format(state.max_staleness_secs),
    );
    if state.unreachable {
        return Finding::warn(
            CHECK,
            format!(
                "{figures}; {no_answer}: fleet grants stop counting once the last \
                 synchronisation is max_staleness old"
            ),
            fix,
        );
    }
    if state.synced_policy_version != state.policy_version {
        return Finding::warn(
            CHECK,
            format!(
                "{figures}; the fleet is at policy version {}, which pimd did not take on this \
                 host",
                state.synced_policy_version
            ),
            "journalctl -u pimd says why the policy does not check here (a group or user \
             missing on this host?); fix the policy and push it again",
        );
    }
    Finding::pass(CHECK, figures)
}

/// pimd's unit (no network of its own, `PrivateNetwork=yes`) lets it reach the database:
/// `systemctl show` of its network settings, in effect, drop-ins included.
pub fn check_fleet_unit(fleet: &FleetConfig) -> Finding {
    const CHECK: &str = "fleet-unit";
    if !Path::new("/run/systemd/system").is_dir() {
        return Finding::skip(CHECK, "systemd is not running on this host");
    }
    let Ok(pairs) = pim_config::conninfo::pairs(&fleet.database) else {
        return Finding::skip(
            CHECK,
            "[fleet] database is not a connection string (see fleet)",
        );
    };
    let output = Command::new("systemctl")
        .args([
            "show",
            "pimd.service",
            "-p",
            "PrivateNetwork",
            "-p",
            "IPAddressAllow",
            "-p",
            "IPAddressDeny",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output();
    match output {
        Ok(o) if o.status.success() => judge_unit(&String::from_utf8_lossy(&o.stdout), &pairs),
        Ok(o) => Finding::skip(
            CHECK,
            format!(
                "systemctl show pimd.service failed: {}",
                escape(String::from_utf8_lossy(&o.stderr).trim())
            ),
        ),
        Err(e) => Finding::skip(
            CHECK,
            format!("cannot run systemctl: {}", escape(&e.to_string())),
        ),
    }
}

const DROP_IN_FIX: &str = "install packaging/fleet/pimd-fleet-network.conf as \
     /etc/systemd/system/pimd.service.d/fleet-network.conf with the database's addresses in \
     IPAddressAllow= (or systemctl edit pimd), then systemctl daemon-reload && systemctl \
     restart pimd";

/// [`check_fleet_unit`]'s verdict on `systemctl show`'s `KEY=VALUE` lines, for the
/// connection string's `pairs`.
pub fn judge_unit(shown: &str, pairs: &[(String, String)]) -> Finding {
    const CHECK: &str = "fleet-unit";
    let value = |key: &str| {
        shown
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .trim()
    };
    let tcp = pim_config::conninfo::tcp_hosts(pairs);
    if tcp.is_empty() {
        return Finding::pass(
            CHECK,
            "pimd reaches the fleet's database over a Unix socket: its unit needs no network",
        );
    }
    if value("PrivateNetwork") == "yes" {
        return Finding::fail(
            CHECK,
            "pimd.service has PrivateNetwork=yes: pimd cannot reach the fleet's database, so \
             this host goes stale and refuses fleet grants",
            DROP_IN_FIX,
        );
    }
    let allowed: Vec<(IpAddr, u8)> = value("IPAddressAllow")
        .split_whitespace()
        .filter_map(prefix)
        .collect();
    let denied_all = value("IPAddressDeny")
        .split_whitespace()
        .filter_map(prefix)
        .any(|(_, len)| len == 0);
    if !denied_all {
        return Finding::warn(
            CHECK,
            "pimd.service may reach any address (no IPAddressDeny=any): the fleet's drop-in \
             allows the database only",
            DROP_IN_FIX,
        );
    }
    let refused: Vec<String> = tcp
        .iter()
        .filter_map(|h| h.parse::<IpAddr>().ok())
        .filter(|ip| !allowed.iter().any(|(net, len)| covers(*net, *len, *ip)))
        .map(|ip| ip.to_string())
        .collect();
    if allowed.is_empty() || !refused.is_empty() {
        let allow = value("IPAddressAllow");
        let allow = if allow.is_empty() {
            "none".to_string()
        } else {
            escape(allow)
        };
        let which = if refused.is_empty() {
            "every address".to_string()
        } else {
            refused.join(", ")
        };
        return Finding::fail(
            CHECK,
            format!(
                "pimd.service denies every address but its IPAddressAllow ({}), and refuses \
                 pimd {which} that [fleet] database connects to",
                allow
            ),
            DROP_IN_FIX,
        );
    }
    let named: Vec<&&str> = tcp
        .iter()
        .filter(|h| h.parse::<IpAddr>().is_err())
        .collect();
    let mut message = format!(
        "pimd.service may reach {} and nothing else",
        escape(value("IPAddressAllow"))
    );
    if !named.is_empty() {
        message.push_str(&format!(
            "; [fleet] database names {} by name: their addresses (and the resolver) must be \
             among those",
            list(&named)
        ));
    }
    Finding::pass(CHECK, message)
}

/// `192.0.2.20/32`, `::/0`, or a bare address (its whole length), as systemd prints them.
fn prefix(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let addr = text.parse::<IpAddr>().ok()?;
            (addr, if addr.is_ipv4() { 32 } else { 128 })
        }
    };
    Some((addr, len))
}

/// Whether `net/len` holds `ip`.
fn covers(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    let bits = |a: IpAddr| -> (u128, u8) {
        match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    let ((n, width), (i, other)) = (bits(net), bits(ip));
    if width != other || len > width {
        return false;
    }
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    n & mask == i & mask
}

#[cfg(test)]
mod tests;
