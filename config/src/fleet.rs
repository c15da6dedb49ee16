//! `[fleet]`: this host is one of a fleet whose authority is a PostgreSQL database, and the
//! `hosts` role key (where a role applies). See the README's "Fleet" section.
//!
//! ```toml
//! [fleet]
//! database = "host=db.example dbname=pim user=pim_host_web7 sslmode=verify-full sslrootcert=/etc/pim/fleet-ca.pem passfile=/etc/pim/pgpass"
//! host = "web7"            # default: the host's name
//! max_staleness = "10m"    # default 10m
//! ```
//!
//! In fleet mode the roles, the administrators and auditors and `[mfa]` come from the
//! policy pushed to the database (`pim admin policy push FILE`, checked by [`parse_policy`]);
//! a host's own file holds `[daemon]`'s host settings, `[audit]`, `[alerts]` (alerts are
//! evaluated on each host) and `[fleet]`, and the two
//! are put together by [`Config::in_fleet`].

use super::{text, Cap, Checker, Config, Directory, Problem, Section};
use std::fmt;
use toml::Spanned;

const FLEET_KEYS: &[&str] = &["database", "host", "max_staleness"];

/// Default `max_staleness`: ten minutes without a synchronisation and fleet grants stop
/// counting on this host.
pub const DEFAULT_MAX_STALENESS_SECS: u64 = 600;
/// Longest connection string accepted, in bytes.
const MAX_CONNINFO_BYTES: usize = 1024;
/// A day without hearing from the authority is already far too long to trust its grants.
const STALENESS_CAP: Cap = Cap {
    secs: 86_400,
    text: "1d",
    why: "for max_staleness",
};

/// The local keys that the fleet's policy sets instead, in fleet mode.
const POLICY_ONLY: &[(&str, &str)] = &[
    ("roles", "roles"),
    ("mfa", "[mfa]"),
    ("daemon.admins", "admins"),
    ("daemon.auditors", "auditors"),
];
/// The keys of a policy file that are each host's own (set in its pim.toml).
const HOST_ONLY: &[&str] = &[
    "fleet",
    "audit",
    "alerts",
    "daemon.database",
    "daemon.notify_command",
    "daemon.notify_timeout",
    "daemon.calls_per_minute",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The libpq connection string to the fleet's database (host login, never a password:
    /// `passfile=` names a root-only pgpass file, or a client certificate is used).
    pub database: String,
    /// This host's name in the fleet; `None`: its hostname (pimd reads it).
    pub host: Option<String>,
    /// A host that has not synchronised for this long stops counting fleet grants.
    pub max_staleness_secs: u64,
}

/// Where a role applies: a host by name, or every host with a tag (`tag:db`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostScope {
    Host(String),
    Tag(String),
}

impl HostScope {
    pub fn parse(s: &str) -> Result<HostScope, String> {
        match s.strip_prefix("tag:") {
            Some(tag) => {
                text::check_name("tag", tag)?;
                Ok(HostScope::Tag(tag.to_string()))
            }
            None => {
                text::check_name("host", s)?;
                Ok(HostScope::Host(s.to_string()))
            }
        }
    }

    /// Whether a host named `host` with `tags` is in this scope.
    pub fn covers(&self, host: &str, tags: &[String]) -> bool {
        match self {
            HostScope::Host(name) => name == host,
            HostScope::Tag(tag) => tags.iter().any(|t| t == tag),
        }
    }
}

impl fmt::Display for HostScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostScope::Host(name) => f.write_str(name),
            HostScope::Tag(tag) => write!(f, "tag:{tag}"),
        }
    }
}

/// Which file is being checked: a host's own pim.toml, or a policy for the whole fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Host,
    Policy,
}

/// Checks a policy file (`pim admin policy push FILE`): the same checks as a host's
/// pim.toml, and the keys that are each host's own (`[fleet]`, `[audit]`, the database and
/// notifier of `[daemon]`) are errors.
pub fn parse_policy(
    text: &str,
    source: &str,
    directory: &dyn Directory,
) -> (Option<Config>, Vec<Problem>) {
    super::parse_as(text, source, directory, Kind::Policy)
}

impl Config {
    /// The configuration a fleet host runs on: its own file's host settings (`[daemon]`
    /// database and notifier, `[audit]`, `[fleet]`) and the policy's roles, administrators,
    /// auditors and `[mfa]`.
    pub fn in_fleet(&self, policy: &Config) -> Config {
        let mut daemon = self.daemon.clone();
        daemon.admins = policy.daemon.admins.clone();
        daemon.auditors = policy.daemon.auditors.clone();
        Config {
            daemon,
            mfa: policy.mfa.clone(),
            audit: self.audit.clone(),
            roles: policy.roles.clone(),
            alerts: self.alerts.clone(),
            fleet: self.fleet.clone(),
        }
    }
}

impl Checker<'_> {
    pub(super) fn fleet(&mut self, s: &Section<'_, '_>) -> Option<FleetConfig> {
        s.table?;
        self.check_keys(s, FLEET_KEYS);
        let database = self.checked_string(s, "database", check_conninfo);
        let host = self.checked_string(s, "host", |h| text::check_name("host", h));
        let staleness = self.duration(s, "max_staleness", &STALENESS_CAP);
        let database = match database {
            Ok(Some(database)) => database.into_inner(),
            Ok(None) => {
                self.error(
                    s.prefix.clone(),
                    &s.span.clone(),
                    "a fleet needs database = \"...\", the libpq connection string of the \
                     fleet's PostgreSQL (see pim.toml(5))",
                );
                String::new()
            }
            Err(_) => String::new(),
        };
        Some(FleetConfig {
            database,
            host: host.ok().flatten().map(Spanned::into_inner),
            max_staleness_secs: super::value_or(&staleness, DEFAULT_MAX_STALENESS_SECS)
                .unwrap_or_default(),
        })
    }

    /// The keys a file of `kind` must not hold: in a fleet host's file what the policy sets,
    /// in a policy what each host sets.
    pub(super) fn fleet_split(&mut self, top: &Section<'_, '_>, kind: Kind, in_fleet: bool) {
        let (keys, why): (Vec<&str>, &str) = match kind {
            Kind::Host if in_fleet => (
                POLICY_ONLY.iter().map(|(key, _)| *key).collect(),
                "in fleet mode this comes from the fleet's policy ('pim admin policy push \
                 FILE'); remove it from this host's file",
            ),
            Kind::Host => return,
            Kind::Policy => (
                HOST_ONLY.to_vec(),
                "is each host's own setting; set it in the host's pim.toml, not in the \
                 fleet's policy",
            ),
        };
        for key in keys {
            // A section that is not a table was reported as such already.
            let (section, name) = match key.split_once('.') {
                Some((section, name)) => (
                    Section {
                        prefix: section.to_string(),
                        table: top.get(section).and_then(|v| v.get_ref().as_table()),
                        span: top.span.clone(),
                    },
                    name,
                ),
                None => (
                    Section {
                        prefix: String::new(),
                        table: top.table,
                        span: top.span.clone(),
                    },
                    key,
                ),
            };
            if let Some(value) = section.get(name) {
                let message = match POLICY_ONLY.iter().find(|(k, _)| *k == key) {
                    Some((_, what)) if kind == Kind::Host => format!("{what}: {why}"),
                    _ => why.to_string(),
                };
                self.error(section.key(name), &value.span(), message);
            }
        }
    }

    /// A list of hosts and `tag:` names.
    pub(super) fn host_scopes(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
    ) -> super::Read<Vec<HostScope>> {
        self.name_list(
            section,
            name,
            "such as [\"tag:db\", \"web7\"]",
            "a host or tag:name",
            HostScope::parse,
            |_| None,
        )
    }
}

/// A connection string pimd may keep in its file: bounded, one line, without a password (a
/// root-only pgpass file named by `passfile=`, or a client certificate, instead), and over a
/// Unix socket or verified TLS ([`super::conninfo::check_transport`]).
fn check_conninfo(conninfo: &str) -> Result<(), String> {
    if conninfo.trim().is_empty() {
        return Err("is empty; give the libpq connection string of the fleet's database".into());
    }
    text::check("the connection string", conninfo, MAX_CONNINFO_BYTES)?;
    let lower = conninfo.to_ascii_lowercase();
    if lower.trim_start().starts_with("postgres://")
        || lower.trim_start().starts_with("postgresql://")
    {
        return Err(
            "is a URL; write it in libpq's key=value form, e.g. \"host=db.example dbname=pim \
             user=pim_host_web7 passfile=/etc/pim/pgpass\""
                .into(),
        );
    }
    // `password=x`, `password = x`.
    let has_password = lower
        .split(|c: char| c.is_whitespace() || c == '=')
        .any(|word| word == "password");
    if has_password {
        return Err(
            "holds a password; keep it in a root-only pgpass file named by passfile=... (or \
             use a client certificate), never in pim.toml"
                .into(),
        );
    }
    super::conninfo::check_transport(&super::conninfo::pairs(conninfo)?)
}

#[cfg(test)]
mod tests;
