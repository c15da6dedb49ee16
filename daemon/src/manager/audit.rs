//! Reading the record: the audit trail, and which events a watcher may see.

use super::*;

impl Manager {
    pub fn audit(
        &mut self,
        caller: &Caller,
        since: i64,
        user: &str,
        role: &str,
    ) -> Result<Vec<AuditRecord>, PimError> {
        if !user.is_empty() {
            check_name("user", user)?;
        }
        if !role.is_empty() {
            check_name("role", role)?;
        }
        let everything = self.is_auditor(caller);
        if !everything && !user.is_empty() && user != caller.name {
            let audit = Audit::new(&caller.name, AuditAction::AuditRead).about(user, role);
            return self.refused(
                &audit,
                PimError::PermissionDenied(
                    "only admins and auditors may read other people's audit records".into(),
                ),
            );
        }
        let own = (!everything).then_some(caller.name.as_str());
        let query = AuditQuery {
            since,
            user: (!user.is_empty()).then_some(user),
            role: (!role.is_empty()).then_some(role),
            involving: own,
            by: own.filter(|name| !NOT_PEOPLE.contains(name)),
        };
        self.store.read(|tx| Ok(tx.audit_records(&query)?))
    }

    /// Whether `caller` may see `event` in `pim watch`: their own, those of roles they
    /// approve or own, and everything for admins and auditors. Alerts are for admins and
    /// auditors alone, even the ones about the caller.
    pub fn may_see(&self, caller: &Caller, event: &EventInfo) -> bool {
        if event.kind.is_alert() {
            return self.is_auditor(caller);
        }
        event.user == caller.name
            || self.is_auditor(caller)
            || self.approves(&caller.name, &event.role)
            || self.owns(&caller.name, &event.role)
    }
}

#[cfg(test)]
mod tests;
