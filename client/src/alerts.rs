//! `pim alerts [--all]` and `pim alerts dismiss ID -r REASON`: the alerts pimd raises (admins
//! and auditors may list them, admins dismiss them), and how they are printed.

use crate::cli::{AlertsArgs, AlertsCommand};
use crate::commands::{connect, emit, Outcome};
use crate::error::Failure;
use crate::output::table;
use crate::time::{self, Clock};
use pim_common::text::{self, escape, MAX_REASON_BYTES};
use pim_common::types::AlertInfo;
use serde_json::{json, Value};

pub async fn run(args: AlertsArgs, json: bool) -> Result<Outcome, Failure> {
    match args.command {
        None => list(args.all, json).await,
        Some(AlertsCommand::Dismiss { id, reason }) => dismiss(id, &reason, json).await,
    }
}

async fn list(all: bool, json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let alerts = proxy.list_alerts(all).await?;
    let clock = Clock::system();
    emit(
        json,
        || json!({ "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>() }),
        || alerts_text(&alerts, all, &clock),
    )?;
    Ok(Outcome::Done)
}

async fn dismiss(id: i64, reason: &str, json: bool) -> Result<Outcome, Failure> {
    text::check("reason", reason, MAX_REASON_BYTES).map_err(Failure::Usage)?;
    if reason.trim().is_empty() {
        return Err(Failure::Usage(
            "give the reason for dismissing the alert with -r REASON".into(),
        ));
    }
    let proxy = connect().await?;
    let alert = proxy.dismiss_alert(id, reason).await?;
    emit(
        json,
        || alert_json(&alert),
        || format!("Dismissed alert {} ({}).\n", alert.id, escape(&alert.kind)),
    )?;
    Ok(Outcome::Done)
}

pub fn alert_json(a: &AlertInfo) -> Value {
    let or_null = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::from(s)
        }
    };
    json!({
        "id": a.id,
        "kind": a.kind,
        "key": a.key,
        "state": a.state,
        "user": or_null(&a.user),
        "role": or_null(&a.role),
        "detail": a.detail,
        "raised_at": a.raised_at,
        "closed_at": (a.closed_at != 0).then_some(a.closed_at),
        "dismissed_by": or_null(&a.dismissed_by),
        "dismiss_reason": or_null(&a.dismiss_reason),
    })
}

fn e(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        escape(s)
    }
}

pub fn alerts_text(alerts: &[AlertInfo], all: bool, clock: &Clock) -> String {
    if alerts.is_empty() {
        return if all {
            "No alerts.\n".to_string()
        } else {
            "No open alerts.\n".to_string()
        };
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let mut state = a.state.clone();
            if !a.dismissed_by.is_empty() {
                state = format!(
                    "{state} by {} ({})",
                    escape(&a.dismissed_by),
                    escape(&a.dismiss_reason)
                );
            }
            vec![
                a.id.to_string(),
                time::local_second(a.raised_at, &clock.tz),
                escape(&a.kind),
                e(&a.user),
                e(&a.role),
                e(&state),
                escape(&a.detail),
            ]
        })
        .collect();
    table(
        "",
        &["ID", "RAISED", "KIND", "USER", "ROLE", "STATE", "DETAIL"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> AlertInfo {
        AlertInfo {
            id: 3,
            kind: "sudoers-outside-pim".into(),
            key: "sudoers-outside-pim:/etc/sudoers.d/x:alice".into(),
            state: "open".into(),
            user: "alice".into(),
            detail: "/etc/sudoers.d/x:1: sudoers gives root to alice\x1b[2J".into(),
            raised_at: 1_800_000_000,
            ..AlertInfo::default()
        }
    }

    #[test]
    fn given_alerts_then_json_keeps_every_field_and_absent_ones_are_null() {
        let doc = alert_json(&alert());
        assert_eq!(doc["kind"], "sudoers-outside-pim");
        assert_eq!(doc["state"], "open");
        assert_eq!(doc["user"], "alice");
        assert!(doc["role"].is_null() && doc["closed_at"].is_null());
        assert!(doc["dismissed_by"].is_null());
    }

    #[test]
    fn given_alerts_then_text_is_a_table_with_what_came_from_files_escaped() {
        let clock = Clock {
            now: 1_800_000_000,
            tz: jiff::tz::TimeZone::UTC,
        };
        let text = alerts_text(&[alert()], false, &clock);
        assert!(text.starts_with("ID  RAISED"), "{text}");
        assert!(text.contains("sudoers-outside-pim"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        let mut dismissed = alert();
        dismissed.state = "dismissed".into();
        dismissed.dismissed_by = "root".into();
        dismissed.dismiss_reason = "break-glass rule".into();
        let text = alerts_text(&[dismissed], true, &clock);
        assert!(
            text.contains("dismissed by root (break-glass rule)"),
            "{text}"
        );
        assert_eq!(alerts_text(&[], false, &clock), "No open alerts.\n");
    }
}
