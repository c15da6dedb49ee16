//! Whom an event concerns, by user name, for `notify_command` (which gets them beside the
//! event: see `packaging/notify/README.md`): the user it is about (the requester, or the
//! holder of the grant), the role's approvers, and the admins. `%group` entries stand for
//! the group's listed members; a group that cannot be looked up adds nobody (the event still
//! goes out, to the others). pimd only names them: the adapter decides whom to write to, and
//! how (a mail address per name, a chat channel).

use super::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One person an event is for, and why (`requester`, `user`, `approver`, `admin`), in the
/// order of that list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    pub name: String,
    #[serde(rename = "as")]
    pub as_: Vec<&'static str>,
}

/// Ranks of the reasons, so each recipient's list reads the same way every time.
const REASONS: [&str; 4] = ["requester", "user", "approver", "admin"];

impl Manager {
    /// Whom `event` is for (see the module's doc), sorted by name.
    pub fn recipients(&self, event: &EventInfo) -> Vec<Recipient> {
        let mut found: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        let mut add = |name: &str, reason: &str| {
            if name.is_empty() || NOT_PEOPLE.contains(&name) {
                return;
            }
            let rank = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
            found.entry(name.to_string()).or_default().insert(rank);
        };
        let about = if event.request_id != 0 || event.kind.as_str().starts_with("request-") {
            "requester"
        } else {
            "user"
        };
        // An alert is for admins alone (as in `pim watch`, where auditors see it too), not
        // for the user it is about nor the role's approvers.
        if !event.kind.is_alert() {
            add(&event.user, about);
        }
        if let Some(role) = self
            .config
            .role(&event.role)
            .filter(|_| !event.kind.is_alert())
        {
            for name in self.names(&role.approvers) {
                add(&name, "approver");
            }
        }
        for name in self.names(&self.config.daemon.admins) {
            add(&name, "admin");
        }
        found
            .into_iter()
            .map(|(name, ranks)| Recipient {
                name,
                as_: ranks.into_iter().map(|r| REASONS[r]).collect(),
            })
            .collect()
    }

    /// The user names `list` stands for: its users, and the listed members of its groups.
    fn names(&self, list: &[Principal]) -> Vec<String> {
        let mut names = Vec::new();
        for principal in list {
            match principal {
                Principal::User(user) => names.push(user.clone()),
                Principal::Group(group) => {
                    if let Ok(members) = self.accounts.group_members(group) {
                        names.extend(members);
                    }
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests;
