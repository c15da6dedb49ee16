//! `pimd --fleet-setup ADMIN_CONNINFO [--policy FILE] [--add-host NAME [--tags T,...]]
//! [--enrol-admin NAME]...`: creates or upgrades the authority's schema (schema.sql) through
//! an administrator's connection, stores the first policy version (there is no fleet
//! administrator yet to sign a push), adds the first hosts, and issues the first
//! administrators' enrolment tickets (no administrator is enrolled yet to issue them). Safe to run again: the schema is applied
//! idempotently, an unchanged policy is not stored twice, a host already there keeps its
//! password. Everything happens in one transaction, so a failure changes nothing.

use super::authority::SCHEMA_VERSION;
use super::conninfo::ConnInfo;
use super::policy;
use crate::accounts::SystemAccounts;
use pim_config::Severity;
use std::path::PathBuf;
use std::process::ExitCode;

/// The authority's schema, applied as a whole on every run.
const SCHEMA: &str = include_str!("schema.sql");
/// Held for the transaction: two setups at once apply one after the other.
const SETUP_LOCK: i64 = 0x7069_6d5f_7365_7475; // "pim_setu"
/// How the records of what setup does name the host they came from.
const SETUP_ACTOR: &str = "fleet-setup";
/// The largest policy file read.
const MAX_POLICY_BYTES: u64 = 1 << 20;

pub const USAGE: &str =
    "usage: pimd --fleet-setup ADMIN_CONNINFO [--policy FILE] [--add-host NAME [--tags T,...]]
                          [--enrol-admin NAME]...

  ADMIN_CONNINFO   libpq key=value string of a PostgreSQL superuser (password= or passfile=)
  --policy FILE    the fleet's policy (required on the first run; stored when it changed)
  --add-host NAME  add a host and print its database password once
  --tags T,...     the new host's tags (for roles' hosts = [\"tag:T\"])
  --enrol-admin NAME
                   print a one-time enrolment ticket for NAME, an administrator the policy
                   names and not enrolled yet ('pim mfa enroll --ticket -' on any host);
                   may be repeated";

#[derive(Debug, PartialEq, Eq)]
pub struct SetupArgs {
    pub conninfo: String,
    pub policy: Option<PathBuf>,
    pub add_host: Option<String>,
    /// `None`: not given (a host already there keeps its tags).
    pub tags: Option<Vec<String>>,
    /// Administrators to issue enrolment tickets for, in the order given.
    pub enrol_admins: Vec<String>,
}

/// The arguments after `--fleet-setup`.
pub fn parse_args(args: &[String]) -> Result<SetupArgs, String> {
    let mut args = args.iter();
    let conninfo = args
        .next()
        .filter(|a| !a.starts_with("--"))
        .ok_or("--fleet-setup needs the administrator's connection string first")?
        .clone();
    let mut parsed = SetupArgs {
        conninfo,
        policy: None,
        add_host: None,
        tags: None,
        enrol_admins: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg.as_str() {
            "--policy" => parsed.policy = Some(PathBuf::from(value("a file")?)),
            "--add-host" => parsed.add_host = Some(value("a host name")?),
            "--enrol-admin" => parsed.enrol_admins.push(value("a user name")?),
            "--tags" => {
                let list = value("a comma-separated list of tags")?;
                let tags = list.split(',').map(str::trim).filter(|t| !t.is_empty());
                parsed.tags = Some(tags.map(String::from).collect());
            }
            other => {
                return Err(format!(
                    "unknown argument '{}' for --fleet-setup",
                    pim_common::text::escape(other)
                ))
            }
        }
    }
    if parsed.tags.is_some() && parsed.add_host.is_none() {
        return Err("--tags goes with --add-host NAME".into());
    }
    Ok(parsed)
}

/// Runs the setup; prints what it did, or why it did nothing.
pub fn run(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("pimd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match setup(&args) {
        Ok(report) => {
            for line in report {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pimd --fleet-setup: {e}; nothing was changed");
            ExitCode::FAILURE
        }
    }
}

fn setup(args: &SetupArgs) -> Result<Vec<String>, String> {
    let policy = args.policy.as_ref().map(read_policy).transpose()?;
    let conninfo = ConnInfo::parse(&args.conninfo)?;
    let mut client = conninfo
        .connect()
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    check_encoding(&mut client)?;
    let mut tx = client.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SETUP_LOCK])
        .map_err(db)?;
    let has_schema: bool = tx
        .query_one("SELECT to_regclass('pim.schema_version') IS NOT NULL", &[])
        .map_err(db)?
        .get(0);
    let installed: Option<i32> = if has_schema {
        tx.query_opt("SELECT version FROM pim.schema_version", &[])
            .map_err(db)?
            .map(|row| row.get(0))
    } else {
        None
    };
    if installed.is_some_and(|v| v > SCHEMA_VERSION) {
        return Err(format!(
            "the database holds schema version {}, newer than this pimd's {SCHEMA_VERSION}",
            installed.unwrap_or_default()
        ));
    }
    tx.batch_execute(SCHEMA).map_err(db)?;
    let mut report = vec![match installed {
        None => format!("schema pim created (version {SCHEMA_VERSION})"),
        Some(v) if v == SCHEMA_VERSION => format!("schema pim up to date (version {v})"),
        Some(v) => format!("schema pim upgraded from version {v} to {SCHEMA_VERSION}"),
    }];

    let latest: Option<(i64, String)> = tx
        .query_opt(
            "SELECT version, text FROM pim.policies ORDER BY version DESC LIMIT 1",
            &[],
        )
        .map_err(db)?
        .map(|row| (row.get(0), row.get(1)));
    match (&policy, &latest) {
        (None, None) => {
            return Err("the fleet has no policy yet: give --policy FILE".into());
        }
        (None, Some((version, _))) => report.push(format!("policy version {version} kept")),
        (Some((text, _)), Some((version, latest_text))) if text == latest_text => {
            report.push(format!("policy unchanged (version {version})"))
        }
        (Some((text, normalized)), _) => {
            let version: i64 = tx
                .query_one(
                    "SELECT pim.store_policy($1, $2, $3, $3)",
                    &[text, normalized, &SETUP_ACTOR],
                )
                .map_err(db)?
                .get(0);
            report.push(format!("policy version {version} stored"));
        }
    }

    if let Some(name) = &args.add_host {
        let exists = tx
            .query_opt("SELECT FROM pim.hosts WHERE name = $1", &[name])
            .map_err(db)?
            .is_some();
        if exists {
            if let Some(tags) = &args.tags {
                tx.execute(
                    "UPDATE pim.hosts SET tags = pim.check_names('a tag', $2) WHERE name = $1",
                    &[name, tags],
                )
                .map_err(db)?;
            }
            let tags: Vec<String> = tx
                .query_one("SELECT tags FROM pim.hosts WHERE name = $1", &[name])
                .map_err(db)?
                .get(0);
            report.push(format!(
                "host {name} is already in the fleet (tags [{}]); its password is unchanged",
                tags.join(",")
            ));
        } else {
            let tags = args.tags.clone().unwrap_or_default();
            let password: String = tx
                .query_one(
                    "SELECT pim.create_host($1, $2, $3, $3)",
                    &[name, &tags, &SETUP_ACTOR],
                )
                .map_err(db)?
                .get(0);
            let login: String = tx
                .query_one("SELECT login::text FROM pim.hosts WHERE name = $1", &[name])
                .map_err(db)?
                .get(0);
            report.push(format!(
                "host {name} added: database login {login}, password {password} \
                 (shown once: put it in the host's root-only pgpass file)"
            ));
        }
    }
    for name in &args.enrol_admins {
        report.push(enrolment_ticket(&mut tx, name)?);
    }
    tx.commit().map_err(db)?;
    Ok(report)
}

/// Refuses a database whose text is not UTF-8: the hosts' text (names, reasons, audit
/// records) is UTF-8, and one that such a database cannot hold would be refused every time
/// it is shipped, stalling that host's audit. (pimd's connections ask for UTF8 as their
/// client_encoding, as the driver always does.)
fn check_encoding(client: &mut postgres::Client) -> Result<(), String> {
    let encoding: String = client
        .query_one("SELECT current_setting('server_encoding')", &[])
        .map_err(db)?
        .get(0);
    if encoding != "UTF8" {
        return Err(format!(
            "the database's server_encoding is {}, not UTF8: text that is not UTF-8 (a \
             user's reason, say) would stall their host's audit shipping; create the \
             database with `createdb -E UTF8 -T template0 NAME` and run the setup on it",
            pim_common::text::escape(&encoding)
        ));
    }
    Ok(())
}

/// Issues the enrolment ticket of `name`, an administrator the current policy names: the
/// first administrators' way in, since no enrolled administrator can issue theirs. A
/// ticket issued before for `name` is void.
fn enrolment_ticket(tx: &mut postgres::Transaction<'_>, name: &str) -> Result<String, String> {
    let named: bool = tx
        .query_one(
            "SELECT coalesce((pim.current_policy()).normalized -> 'admins', '[]') ? $1",
            &[&name],
        )
        .map_err(db)?
        .get(0);
    if !named {
        return Err(format!(
            "--enrol-admin {}: the fleet's policy does not name this user in its admins; \
             other users get their ticket from an administrator ('pim admin mfa-ticket USER')",
            pim_common::text::escape(name)
        ));
    }
    let ticket: String = tx
        .query_one(
            "SELECT pim.issue_enrolment_ticket($1, $2, $2)",
            &[&name, &SETUP_ACTOR],
        )
        .map_err(db)?
        .get(0);
    Ok(format!(
        "enrolment ticket for {name}: {ticket} (shown once, good for 24 hours: {name} runs \
         'pim mfa enroll --ticket {ticket}' on any host of the fleet)"
    ))
}

/// The policy file's text and its normalized JSON, after the configuration checker.
fn read_policy(path: &PathBuf) -> Result<(String, serde_json::Value), String> {
    use std::io::Read;
    let shown = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the policy {shown}: {e}"))?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!("the policy {shown} is larger than 1 MiB"));
    }
    let (config, problems) = pim_config::parse_policy(&text, &shown.to_string(), &SystemAccounts);
    for problem in &problems {
        eprintln!("{problem}");
    }
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let config = config
        .filter(|_| errors == 0)
        .ok_or_else(|| format!("the policy {shown} has {errors} error(s)"))?;
    Ok((text, policy::normalize(&config)))
}

fn db(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => pim_common::text::escape_unsafe(db.message()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests;
