//! alerts: the alerts pimd has open (`pim alerts`), one warning naming each.

use crate::doctor::findings::Finding;
use crate::doctor::BUS_TIMEOUT;
use pim_common::proxy::ManagerProxy;
use pim_common::text::escape;
use pim_common::types::AlertInfo;

const CHECK: &str = "alerts";

/// Asks pimd for its open alerts (root is an admin, so may see them).
pub async fn check_alerts(connection: Option<&zbus::Connection>) -> Finding {
    let Some(connection) = connection else {
        return Finding::skip(CHECK, "the daemon is not reachable (see daemon)");
    };
    let listed = async {
        let proxy = ManagerProxy::new(connection).await?;
        proxy.list_alerts(false).await.map_err(|e| match e {
            pim_common::PimError::ZBus(z) => z,
            other => zbus::Error::Failure(other.message().to_string()),
        })
    };
    match tokio::time::timeout(BUS_TIMEOUT, listed).await {
        Ok(Ok(alerts)) => judge_alerts(&alerts),
        Ok(Err(e)) => Finding::skip(
            CHECK,
            format!("cannot list the alerts: {}", escape(&e.to_string())),
        ),
        Err(_) => Finding::skip(CHECK, "pimd did not list the alerts within 10 s"),
    }
}

/// A pass when none is open, else a warning listing each (id, kind, what was seen).
pub fn judge_alerts(alerts: &[AlertInfo]) -> Finding {
    if alerts.is_empty() {
        return Finding::pass(CHECK, "pimd has no open alert");
    }
    let each: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} {}: {}", a.id, escape(&a.kind), escape(&a.detail)))
        .collect();
    Finding::warn(
        CHECK,
        format!("{} open alert(s): {}", alerts.len(), each.join("; ")),
        "see 'pim alerts'; mend the cause, or 'pim alerts dismiss ID -r REASON' (admins)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::Status;

    #[test]
    fn given_open_alerts_then_a_warning_names_each_and_none_is_a_pass() {
        assert_eq!(judge_alerts(&[]).status, Status::Pass);
        let alert = AlertInfo {
            id: 4,
            kind: "member-outside-pim".into(),
            detail: "bob is a member of group sudo\u{1b}[2J".into(),
            ..AlertInfo::default()
        };
        let finding = judge_alerts(&[alert]);
        assert_eq!(finding.status, Status::Warn);
        assert!(
            finding.message.contains("4 member-outside-pim: bob"),
            "{finding:?}"
        );
        assert!(!finding.message.contains('\u{1b}'), "{finding:?}");
        assert!(finding.fix.unwrap().contains("pim alerts dismiss"));
    }
}
