//! Owners: the one predicate of governance. A role's `owners` (users and `%groups`) may
//! assign, unassign, grant (an active assignment), revoke, review and decide renewals for that
//! role only; root and pim administrators may for every role. Every governance call asks
//! [`Manager::may_govern`] (through `require_governor`, which audits the refusal) with the
//! caller the bus vouched for, and nothing else.

use super::*;

impl Manager {
    /// Whether `user` is listed in the `owners` of `role_name` as currently configured (no
    /// such role: no; a failed lookup: no).
    pub(super) fn owns(&self, user: &str, role_name: &str) -> bool {
        self.config
            .role(role_name)
            .is_some_and(|role| self.listed(&role.owners, user).unwrap_or(false))
    }

    /// The one governance predicate: whether `caller` may assign, unassign, grant (an active
    /// assignment), revoke, review and decide renewals for role `role_name`: root, a pim
    /// administrator, or one of that role's `owners`. The caller is the transport's identity
    /// (the bus's uid), never a name the call carries.
    pub(crate) fn may_govern(&self, caller: &Caller, role_name: &str) -> bool {
        self.is_admin(caller) || self.owns(&caller.name, role_name)
    }

    /// [`Self::may_govern`] for a user known by name only (an approval recorded earlier):
    /// an admin (root included, by name) or an owner of the role.
    pub(super) fn governs_by_name(&self, user: &str, role_name: &str) -> bool {
        user == "root"
            || self
                .listed(&self.config.daemon.admins, user)
                .unwrap_or(false)
            || self.owns(user, role_name)
    }

    /// Refuses (and audits, as `audit` describes) a governance call on `role_name` by someone
    /// who may not govern it; the same answer whether or not the role exists, so that roles
    /// cannot be probed.
    pub(super) fn require_governor(
        &mut self,
        caller: &Caller,
        role_name: &str,
        audit: &Audit<'_>,
    ) -> Result<(), PimError> {
        if self.may_govern(caller, role_name) {
            return Ok(());
        }
        self.refused(
            audit,
            PimError::PermissionDenied(format!(
                "this needs a pim administrator (root or a member of [daemon] admins) or an \
                 owner of role '{}' (its owners = [...])",
                text::escape(role_name)
            )),
        )
    }

    /// The roles `caller` governs (every role for an administrator).
    pub(super) fn governed_roles(&self, caller: &Caller) -> Vec<String> {
        self.config
            .roles
            .keys()
            .filter(|name| self.may_govern(caller, name))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
