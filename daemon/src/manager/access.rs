//! The PAM module's question (`check_access`) and the audit of its denials.

use super::*;
use crate::access;

impl Manager {
    /// Root only. Allowed when every one of `groups` is covered for `user` (see
    /// [`crate::access`]). Denials are audited; successes are sudo's to log.
    pub fn check_access(
        &mut self,
        caller: &Caller,
        user: &str,
        groups: &[String],
    ) -> Result<AccessDecision, PimError> {
        if !caller.is_root() {
            let audit =
                Audit::new(&caller.name, AuditAction::AccessCheck).about(name_or_empty(user), "");
            return self.refused(
                &audit,
                PimError::PermissionDenied("only root may ask about another user's access".into()),
            );
        }
        access::check_question(user, groups)?;
        let (now, boot) = (self.now(), self.clock.boot());
        let (config, accounts) = (&self.config, &*self.accounts);
        let decided = self
            .store
            .read(|tx| access::decide(config, tx, accounts, (now, &boot), user, groups))?;
        let decision = decided.answer;
        if !decision.allowed {
            self.audit_access_denial(user, groups, &decision.message)?;
        } else if !decided.permanent.is_empty() {
            // The answer stands whatever becomes of the alert.
            if let Err(e) = self.break_glass_used(decided.permanent) {
                eprintln!("pimd: cannot raise break-glass-used: {}", e.message());
            }
        }
        Ok(decision)
    }

    /// Records that the PAM check refused `user`.
    pub fn audit_access_denial(
        &mut self,
        user: &str,
        groups: &[String],
        message: &str,
    ) -> Result<(), PimError> {
        let audit = Audit::new(PAM_CHECK, AuditAction::AccessCheck).about(user, "");
        let entry = audit.entry(
            self.now(),
            Outcome::Refused,
            format!("groups {}: {message}", groups.join(",")),
        );
        let cause = Cause {
            actor: PAM_CHECK.into(),
            user: user.into(),
            ..Cause::default()
        };
        self.record_refusal(&cause, entry)
    }

    /// Counts `n` refusals of the PAM check about `user` that get no record one by one (the
    /// audit's queue was full): they appear in the refusal summaries.
    pub fn count_access_denials(&mut self, user: &str, n: u32) {
        let cause = Cause {
            actor: PAM_CHECK.into(),
            user: user.into(),
            ..Cause::default()
        };
        let now = self.now();
        self.refusals
            .count(&cause, AuditAction::AccessCheck.as_str(), n, now);
    }
}

#[cfg(test)]
mod tests;
