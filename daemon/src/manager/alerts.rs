//! Alerts (see [`crate::alerts`]): the facts read once from the store and the configuration,
//! beside the last look at the host (made outside the manager by `startup`'s alert loop, as
//! the set-group-ID sweep's walk is); the pure evaluation and plan; each change written with
//! its audit record in one transaction, and sent as an event. Listing is for admins and
//! auditors, dismissing for admins.

use super::*;
use crate::access::PermanentPass;
use crate::alerts::{self, AlertKind, Change, Current, Facts, Finding, HostFacts, RoleFacts};
use crate::model::{AlertRow, AlertState, NewAlert};
use pim_common::types::AlertInfo;
use std::collections::{BTreeMap, BTreeSet};

/// The actor of the alerts' own records.
const ALERTS: &str = DAEMON;

/// Alerts one listing returns, at most (newest first).
pub const MAX_ALERTS_LISTED: u32 = 1000;

fn alert_info(a: &AlertRow) -> AlertInfo {
    AlertInfo {
        id: a.id,
        kind: a.kind.clone(),
        key: a.key.clone(),
        state: a.state.as_str().to_string(),
        user: a.user.clone(),
        role: a.role.clone(),
        detail: a.detail.clone(),
        raised_at: a.raised_at,
        closed_at: a.closed_at.unwrap_or(0),
        dismissed_by: a.dismissed_by.clone(),
        dismiss_reason: a.dismiss_reason.clone(),
    }
}

impl Manager {
    /// The groups the look at the host must read: every role's group, and the groups its
    /// `eligible` and `permanent` lists name (to count and name the users they stand for).
    pub fn alert_groups(&self) -> BTreeSet<String> {
        let mut groups = BTreeSet::new();
        for role in self.config.roles.values() {
            groups.insert(role.group.clone());
            for p in role.eligible.iter().chain(&role.permanent) {
                if let Principal::Group(g) = p {
                    groups.insert(g.clone());
                }
            }
        }
        groups
    }

    /// The look at the host for the alerts has not answered within `secs`: said in syslog
    /// and on stderr (the alerts of the host wait for it; everything else goes on).
    pub fn alert_look_overran(&mut self, secs: u64) {
        let message = format!(
            "alerts: the look at the host (groups, processes, sudoers) has not answered within \
             {secs}s; the host's alerts are judged when it does"
        );
        eprintln!("pimd: warning: {message}");
        self.outbox
            .syslog
            .push((crate::syslog::Severity::Notice, message));
    }

    /// Takes a new look at the host and evaluates every alert with it.
    pub fn record_host_look(&mut self, host: HostFacts) -> Result<(), PimError> {
        self.host_look = host;
        self.evaluate_alerts()
    }

    /// Evaluates every alert on the facts as they are now (the host as last looked at), and
    /// writes what changed: at start-up, after a reload, after the events that can cause or
    /// end one (activation, assignment, grants ending), and with each look at the host.
    pub fn evaluate_alerts(&mut self) -> Result<(), PimError> {
        let facts = self.alert_facts()?;
        let mut evaluation = alerts::evaluate(&facts);
        if facts.host.members.is_none() {
            // Without the groups, users eligible through one are unknown: counting or
            // judging them now would resolve what is still there.
            evaluation.judged.remove(&AlertKind::StaleEligibility);
            evaluation.judged.remove(&AlertKind::TooManyPrivileged);
        }
        let current = self.store.read(|tx| tx.current_alerts())?;
        let current: Vec<Current> = current
            .iter()
            .filter_map(|a| {
                Some(Current {
                    id: a.id,
                    kind: AlertKind::parse(&a.kind)?,
                    key: a.key.clone(),
                    standing: match a.state {
                        AlertState::Open => alerts::Standing::Open,
                        _ => alerts::Standing::Dismissed,
                    },
                })
            })
            .collect();
        let changes = alerts::plan(&current, &evaluation);
        let mut first_error = None;
        for change in changes {
            if let Err(e) = self.write_alert_change(change) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Evaluates the alerts after a change that can cause or end one (a grant started or
    /// ended, an assignment made or removed). The change stands whatever happens here: a
    /// failure is said on stderr, and the next reconciliation evaluates again.
    pub(super) fn alerts_after_change(&mut self) {
        if let Err(e) = self.evaluate_alerts() {
            eprintln!("pimd: cannot evaluate the alerts: {}", e.message());
        }
    }

    /// What the evaluation looks at, read in one transaction.
    fn alert_facts(&mut self) -> Result<Facts, PimError> {
        let now = self.now();
        let thresholds = self.config.alerts.clone();
        let since = now.saturating_sub(thresholds.frequent_within_secs as i64);
        let (live, memberships, assignments, starts, last_starts, first_record, dismissed) =
            self.store.read(|tx| {
                Ok::<_, crate::store::StoreError>((
                    tx.live_grants()?,
                    tx.memberships()?,
                    tx.dated_assignments()?,
                    tx.grant_starts_since(since)?,
                    tx.last_grant_starts()?,
                    tx.first_audit_at()?,
                    tx.alert_dismissals(AlertKind::FrequentActivation.as_str())?,
                ))
            })?;
        let watching_since = first_record.unwrap_or(now);
        let host = self.host_look.clone();
        let expand = |list: &[Principal]| -> BTreeSet<String> {
            let mut users = BTreeSet::new();
            for p in list {
                match p {
                    Principal::User(u) => {
                        users.insert(u.clone());
                    }
                    Principal::Group(g) => {
                        if let Some(members) = host.members.as_ref().and_then(|m| m.get(g)) {
                            users.extend(members.iter().cloned());
                        }
                    }
                }
            }
            users
        };
        let mut roles = Vec::new();
        for role in self.config.roles.values() {
            let mut eligible: BTreeMap<String, i64> = expand(&role.eligible)
                .into_iter()
                .map(|u| (u, watching_since))
                .collect();
            for (a, assigned_at) in assignments.iter().filter(|(a, _)| a.role == role.name) {
                let in_force =
                    a.not_before.is_none_or(|t| now >= t) && a.not_after.is_none_or(|t| now < t);
                if in_force {
                    let from = a.not_before.unwrap_or(*assigned_at).max(*assigned_at);
                    eligible.entry(a.user.clone()).or_insert(from);
                }
            }
            roles.push(RoleFacts {
                name: role.name.clone(),
                group: role.group.clone(),
                require_mfa: role.require_mfa,
                require_justification: role.require_justification,
                max_duration_secs: role.max_duration_secs,
                permanent: expand(&role.permanent),
                eligible,
                active: live
                    .iter()
                    .filter(|g| g.role == role.name && g.ends_at > now)
                    .map(|g| g.user.clone())
                    .collect(),
            });
        }
        let mut activations: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
        for (user, role, at) in starts {
            activations.entry((user, role)).or_default().push(at);
        }
        for times in activations.values_mut() {
            times.sort_unstable();
        }
        Ok(Facts {
            now,
            thresholds,
            roles,
            pim_members: memberships.into_iter().collect(),
            activations,
            last_activation: last_starts
                .into_iter()
                .map(|(user, role, at)| ((user, role), at))
                .collect(),
            frequent_dismissed: dismissed.into_iter().collect(),
            host,
        })
    }

    /// Writes one change of the plan with its audit record, and sends its event.
    fn write_alert_change(&mut self, change: Change) -> Result<(), PimError> {
        let now = self.now();
        let (kind, row) = match change {
            Change::Raise(finding) => (EventKind::AlertRaised, self.raise_alert(&finding, now)?),
            Change::Resolve { id } => {
                let row = self.commit(|tx| {
                    let Some(row) = tx.alert(id)?.filter(|a| a.state == AlertState::Open) else {
                        return Ok(None);
                    };
                    tx.resolve_alert(id, now)?;
                    let entry = Audit::new(ALERTS, AuditAction::AlertResolve)
                        .about(&row.user, &row.role)
                        .entry(
                            now,
                            Outcome::Success,
                            format!(
                                "alert {id} ({}): its cause is gone: {}",
                                row.kind, row.detail
                            ),
                        );
                    tx.audit(entry)?;
                    Ok(tx.alert(id)?)
                })?;
                (EventKind::AlertResolved, row)
            }
            Change::Release { id } => {
                // A dismissed alert whose cause went: nothing anyone sees changes, but its
                // key is free for the cause's return. Audited all the same (a change).
                self.commit(|tx| {
                    let Some(row) = tx.alert(id)?.filter(|a| a.holds_key) else {
                        return Ok(());
                    };
                    tx.release_alert(id)?;
                    let why = if row.kind == AlertKind::FrequentActivation.as_str() {
                        "the activations it saw are seen to; it is raised again when enough \
                         activations after its dismissal fall within the window"
                    } else {
                        "its cause is gone; it is raised again if the cause comes back"
                    };
                    let entry = Audit::new(ALERTS, AuditAction::AlertRelease)
                        .about(&row.user, &row.role)
                        .entry(
                            now,
                            Outcome::Success,
                            format!("dismissed alert {id} ({}): {why}", row.kind),
                        );
                    tx.audit(entry)?;
                    Ok(())
                })?;
                return Ok(());
            }
        };
        if let Some(row) = row {
            self.alert_event(kind, &row);
        }
        Ok(())
    }

    /// Raises `finding` (audited in the same transaction); None when its key is held already.
    fn raise_alert(&mut self, finding: &Finding, now: i64) -> Result<Option<AlertRow>, PimError> {
        self.commit(|tx| {
            if tx.current_alert(&finding.key)?.is_some() {
                return Ok(None);
            }
            let id = tx.insert_alert(&NewAlert {
                kind: finding.kind.as_str(),
                key: &finding.key,
                user: &finding.user,
                role: &finding.role,
                detail: &finding.detail,
                at: now,
            })?;
            let entry = Audit::new(ALERTS, AuditAction::AlertRaise)
                .about(&finding.user, &finding.role)
                .entry(
                    now,
                    Outcome::Success,
                    format!("alert {id} ({}): {}", finding.kind.as_str(), finding.detail),
                );
            tx.audit(entry)?;
            Ok(tx.alert(id)?)
        })
    }

    fn alert_event(&mut self, kind: EventKind, row: &AlertRow) {
        self.event(
            kind,
            &row.user,
            &row.role,
            0,
            0,
            DAEMON,
            format!("alert {} ({}): {}", row.id, row.kind, row.detail),
        );
    }

    /// A `permanent` member passed the PAM check: `break-glass-used`, raised once while it is
    /// open; after a dismissal, the next use raises a new one.
    pub fn break_glass_used(&mut self, passes: Vec<PermanentPass>) -> Result<(), PimError> {
        let now = self.now();
        let mut first_error = None;
        for pass in passes {
            let finding = alerts::break_glass(&pass.user, &pass.role, &pass.group);
            let result = (|| {
                let held = self.store.read(|tx| tx.current_alert(&finding.key))?;
                if let Some(held) = held {
                    if held.state == AlertState::Open {
                        return Ok(());
                    }
                    // Dismissed: that use was seen to; this one is new.
                    self.write_alert_change(Change::Release { id: held.id })?;
                }
                if let Some(row) = self.raise_alert(&finding, now)? {
                    self.alert_event(EventKind::AlertRaised, &row);
                }
                Ok::<(), PimError>(())
            })();
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Admins and auditors: the open alerts, or with `all` every one, newest first.
    pub fn list_alerts(&mut self, caller: &Caller, all: bool) -> Result<Vec<AlertInfo>, PimError> {
        if !self.is_auditor(caller) {
            let audit = Audit::new(&caller.name, AuditAction::ListAlerts);
            return self.refused(
                &audit,
                PimError::PermissionDenied(
                    "only admins and auditors may see the alerts; ask one of them".into(),
                ),
            );
        }
        let rows = self.store.read(|tx| tx.alerts(all, MAX_ALERTS_LISTED))?;
        Ok(rows.iter().map(alert_info).collect())
    }

    /// Admins: dismisses open alert `id` for `reason`.
    pub fn dismiss_alert(
        &mut self,
        caller: &Caller,
        id: i64,
        reason: &str,
    ) -> Result<AlertInfo, PimError> {
        let audit = Audit::new(&caller.name, AuditAction::AlertDismiss).with_text(reason, "");
        if !self.is_admin(caller) {
            return self.refused_about(
                &audit,
                &format!("alert {id}"),
                PimError::PermissionDenied("only admins may dismiss alerts; ask one".into()),
            );
        }
        if let Err(e) = text::check("the reason", reason, text::MAX_REASON_BYTES) {
            return self.refused(&audit, PimError::InvalidArgument(e));
        }
        if reason.trim().is_empty() {
            return self.refused(
                &audit,
                PimError::InvalidArgument("say why the alert is dismissed (-r REASON)".into()),
            );
        }
        let now = self.now();
        let dismissed = self.commit(|tx| {
            let Some(row) = tx.alert(id)?.filter(|a| a.state == AlertState::Open) else {
                return Ok(None);
            };
            tx.dismiss_alert(id, &caller.name, reason, now)?;
            let entry = Audit::new(&caller.name, AuditAction::AlertDismiss)
                .about(&row.user, &row.role)
                .with_text(reason, "")
                .entry(
                    now,
                    Outcome::Success,
                    format!("alert {id} ({}): {}", row.kind, row.detail),
                );
            tx.audit(entry)?;
            Ok(tx.alert(id)?)
        })?;
        match dismissed {
            Some(row) => {
                self.alert_event(EventKind::AlertDismissed, &row);
                Ok(alert_info(&row))
            }
            None => self.refused_about(
                &audit,
                &format!("alert {id}"),
                PimError::NotFound(format!(
                    "no open alert {id}; run 'pim alerts' to see the open ones"
                )),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
