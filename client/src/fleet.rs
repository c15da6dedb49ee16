//! Fleet mode on the client side: `pim admin hosts`, `pim admin host add|disable|enable`,
//! `pim admin policy push`, `pim admin mfa-ticket`. The daemon (and, behind it, the fleet's database) decides; this side reads the
//! arguments, asks for the administrator's code and prints the answer.

use crate::cli::{AdminHostCommand, AdminPolicyCommand};
use crate::commands::{check_name, connect, emit, Outcome};
use crate::error::Failure;
use crate::input::{self, Console};
use crate::output::table;
use crate::time::{self, Clock};
use pim_common::text::escape;
use pim_common::types::FleetHostInfo;
use serde_json::{json, Value};

/// Longest policy file read (the daemon's own bound).
const MAX_POLICY_BYTES: u64 = 1 << 20;

fn host_json(h: &FleetHostInfo) -> Value {
    let at = |t: i64| (t != 0).then(|| time::rfc3339(t)).flatten();
    json!({
        "name": h.name,
        "tags": h.tags,
        "last_seen": at(h.last_seen),
        "last_sync": at(h.last_sync),
        "skew_ms": (h.last_sync != 0).then_some(h.skew_ms),
        "disabled_at": at(h.disabled_at),
        "disabled_by": (h.disabled_at != 0).then_some(&h.disabled_by),
    })
}

fn hosts_text(hosts: &[FleetHostInfo], now: i64) -> String {
    if hosts.is_empty() {
        return "No hosts in the fleet yet; add one with 'pim admin host add NAME'.\n".into();
    }
    let ago = |t: i64| {
        if t == 0 {
            "never".to_string()
        } else {
            time::relative(t, now)
        }
    };
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                escape(&h.name),
                if h.tags.is_empty() {
                    "-".into()
                } else {
                    escape(&h.tags.join(","))
                },
                ago(h.last_seen),
                ago(h.last_sync),
                if h.last_sync == 0 {
                    "-".into()
                } else {
                    format!("{} ms", h.skew_ms)
                },
                if h.disabled_at == 0 {
                    "enabled".into()
                } else {
                    format!(
                        "disabled by {} {}",
                        escape(&h.disabled_by),
                        time::relative(h.disabled_at, now)
                    )
                },
            ]
        })
        .collect();
    table(
        "",
        &[
            "HOST",
            "TAGS",
            "LAST SEEN",
            "LAST SYNC",
            "CLOCK SKEW",
            "STATE",
        ],
        &rows,
    )
}

pub async fn hosts(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let hosts = proxy.fleet_hosts().await?;
    let now = Clock::system().now;
    emit(
        json,
        || json!({ "hosts": hosts.iter().map(host_json).collect::<Vec<_>>() }),
        || hosts_text(&hosts, now),
    )?;
    Ok(Outcome::Done)
}

pub async fn host(
    cmd: AdminHostCommand,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let (name, tags, code) = match cmd {
        AdminHostCommand::Add { name, tags, code } => (name, tags, code),
        AdminHostCommand::Disable { name, code } => {
            return disable(&name, code, json, console).await
        }
        AdminHostCommand::Enable { name, code } => return enable(&name, code, json, console).await,
    };
    check_name("host", &name)?;
    for tag in &tags {
        check_name("tag", tag)?;
    }
    let proxy = connect().await?;
    let code = input::code(code.as_deref(), true, &input::current_user(), console)?;
    let password = proxy.fleet_host_add(&name, tags.clone(), &code).await?;
    emit(
        json,
        || json!({ "host": name, "tags": tags, "password": password }),
        || {
            format!(
                "Added host {} to the fleet. Its database login is pim_host_{} with the \
                 password below, shown this once: put it in a root-only pgpass file on that \
                 host and name it with passfile= in its [fleet] database.\n{}\n",
                escape(&name),
                escape(&name),
                escape(&password)
            )
        },
    )?;
    Ok(Outcome::Done)
}

/// What changing host `name` needs first: a checked name, the daemon, the admin's code.
async fn host_change(
    name: &str,
    code: Option<String>,
    console: &mut dyn Console,
) -> Result<(pim_common::proxy::ManagerProxy<'static>, String), Failure> {
    check_name("host", name)?;
    let proxy = connect().await?;
    let code = input::code(code.as_deref(), true, &input::current_user(), console)?;
    Ok((proxy, code))
}

async fn disable(
    name: &str,
    code: Option<String>,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let (proxy, code) = host_change(name, code, console).await?;
    let disabled = proxy.fleet_host_disable(name, &code).await?;
    emit(
        json,
        || {
            json!({
                "host": name,
                "grants_ended": disabled.grants_ended,
                "requests_cancelled": disabled.requests_cancelled,
                "approvals_withdrawn": disabled.approvals_withdrawn,
                "tickets_void": disabled.tickets_void,
                "enrolled_there": disabled.enrolled_there,
            })
        },
        || {
            let mut text = format!(
                "Disabled host {}: the fleet refuses its database login and its calls; {} \
                 grant(s) for it alone ended, {} pending request(s) it filed cancelled, {} \
                 pending request(s) lost the approvals given on it, {} enrolment ticket(s) \
                 shown on it are void.\n",
                escape(name),
                disabled.grants_ended.len(),
                disabled.requests_cancelled.len(),
                disabled.approvals_withdrawn.len(),
                disabled.tickets_void.len(),
            );
            if !disabled.enrolled_there.is_empty() {
                text.push_str(&format!(
                    "These users enrolled on it, so whoever had the host may hold their TOTP \
                     secrets: issue each a new ticket with 'pim admin mfa-ticket USER --reset': \
                     {}\n",
                    disabled
                        .enrolled_there
                        .iter()
                        .map(|u| escape(u))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            text
        },
    )?;
    Ok(Outcome::Done)
}

async fn enable(
    name: &str,
    code: Option<String>,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let (proxy, code) = host_change(name, code, console).await?;
    let password = proxy.fleet_host_enable(name, &code).await?;
    emit(
        json,
        || json!({ "host": name, "enabled": true, "password": password }),
        || {
            format!(
                "Enabled host {}: the grants ended when it was disabled stay ended. Its \
                 database login has a new password, below, shown this once (the old one may \
                 be known to whoever had the host): put it in the host's root-only pgpass \
                 file in place of the old one; the host logs in and synchronises again with \
                 it.\n{}\n",
                escape(name),
                escape(&password)
            )
        },
    )?;
    Ok(Outcome::Done)
}

/// `pim admin mfa-ticket USER [--reset]`: prints USER's one-time enrolment ticket.
pub async fn mfa_ticket(
    user: &str,
    reset: bool,
    code: Option<&str>,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    check_name("user", user)?;
    let proxy = connect().await?;
    let code = input::code(code, true, &input::current_user(), console)?;
    let ticket = proxy.fleet_mfa_ticket(user, &code, reset).await?;
    emit(
        json,
        || json!({ "user": user, "reset": reset, "ticket": ticket }),
        || {
            let reset = if reset {
                format!("Removed the MFA enrolment of {}. ", escape(user))
            } else {
                String::new()
            };
            format!(
                "{reset}Enrolment ticket for {user}, shown this once and good for 24 hours (any \
                 earlier one is void): hand it to {user} in person or over a channel you \
                 trust; they run 'pim mfa enroll --ticket -' on any host of the fleet and paste \
                 it (a ticket on the command line shows in ps and shell history).\n{}\n",
                escape(&ticket),
                user = escape(user),
            )
        },
    )?;
    Ok(Outcome::Done)
}

pub async fn policy(
    cmd: AdminPolicyCommand,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let AdminPolicyCommand::Push { file, code } = cmd;
    let shown = escape(&file.display().to_string());
    let size = std::fs::metadata(&file)
        .map_err(|e| Failure::Failed(format!("cannot read {shown}: {e}")))?
        .len();
    if size > MAX_POLICY_BYTES {
        return Err(Failure::Failed(format!(
            "{shown} is {size} bytes long; a policy is at most {MAX_POLICY_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Failure::Failed(format!("cannot read {shown}: {e}")))?;
    let proxy = connect().await?;
    let code = input::code(code.as_deref(), true, &input::current_user(), console)?;
    let version = proxy.fleet_policy_push(&text, &code).await?;
    emit(
        json,
        || json!({ "version": version }),
        || {
            format!("Pushed {shown} as policy version {version}; every host takes it at its next synchronisation.\n")
        },
    )?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_hosts_then_the_table_says_when_each_was_seen_and_its_skew() {
        let now = 1_800_000_000;
        let hosts = vec![
            FleetHostInfo {
                name: "web7".into(),
                tags: vec!["web".into(), "db".into()],
                last_seen: now - 5,
                last_sync: now - 20,
                skew_ms: -12,
                ..FleetHostInfo::default()
            },
            FleetHostInfo {
                name: "db9".into(),
                disabled_at: now - 60,
                disabled_by: "carol".into(),
                ..FleetHostInfo::default()
            },
            FleetHostInfo {
                name: "db1".into(),
                ..FleetHostInfo::default()
            },
        ];
        let text = hosts_text(&hosts, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("HOST"), "{text}");
        assert!(
            lines[1].contains("web,db") && lines[1].contains("20s ago"),
            "{text}"
        );
        assert!(lines[1].contains("-12 ms"), "{text}");
        assert!(lines[1].contains("enabled"), "{text}");
        assert!(lines[2].contains("disabled by carol 1m ago"), "{text}");
        assert!(lines[3].contains("never"), "{text}");
        let doc = host_json(&hosts[2]);
        assert_eq!(doc["last_sync"], Value::Null);
        assert_eq!(doc["skew_ms"], Value::Null);
    }
}
