//! An in-memory authority for the tests of the manager's fleet paths and of the sync rounds:
//! it decides nothing itself (the tests say what it answers), records what it was asked, and
//! can be cut off (`reachable = false`: every call, and every new connection, is
//! `Unreachable`).

use super::authority::*;
use crate::manager::Connector;
use pim_common::types::AuditRecord;
use pim_common::PimError;
use std::sync::{Arc, Mutex};

/// What the fake authority holds and answers; shared by every connection to it.
#[derive(Default)]
pub struct FakeFleet {
    pub reachable: bool,
    pub host: String,
    pub db_now: Unix,
    pub policy_version: i64,
    pub policy_text: String,
    pub grants: Vec<FleetGrant>,
    /// The next `activate` answer; `None`: refused as not eligible.
    pub activation: Option<Activated>,
    /// The next `approve` answer.
    pub decision: Option<Decided>,
    pub requests: Vec<FleetRequest>,
    pub hosts: Vec<HostInfo>,
    /// Shipped local records, as stored (keyed by local id: a repeat is not stored twice).
    pub shipped: Vec<AuditRecord>,
    /// The next `ship_audit` stores its records and its answer is lost (the host sees the
    /// connection fail).
    pub lose_ship_answer: bool,
    /// Shipped records about this role are refused as invalid (the whole batch with them).
    pub refuse_role: Option<String>,
    /// Shipped records whose reason holds this text are refused as invalid (the whole batch
    /// with them).
    pub refuse_reason: Option<String>,
    pub expired_calls: u32,
    pub connections: u32,
    /// What was asked, one line per call ("activate alice admin groups=[ops] host=None").
    pub calls: Vec<String>,
    pub pushed: Vec<(String, serde_json::Value)>,
    pub enrolled: Vec<(String, Vec<u8>)>,
    /// Set: every snapshot fails with this `Database` error (an authority pimd refuses,
    /// such as one of another schema version).
    pub refused: Option<String>,
    /// The enrolment tickets issued and not used yet, (user, ticket): enrol takes only these.
    pub tickets: Vec<(String, String)>,
    /// The next call waits here (as on a database that does not answer) until released.
    pub hold: Option<Hold>,
    /// The next call is answered, and its answer waits here until released (as a snapshot
    /// read before a change that commits while the answer is on its way).
    pub hold_answer: Option<Hold>,
}

/// A call held: it says when it is waiting, then waits for the release.
pub struct Hold {
    pub waiting: std::sync::mpsc::Sender<()>,
    pub release: std::sync::mpsc::Receiver<()>,
}

impl Hold {
    fn wait(self) {
        let _ = self.waiting.send(());
        let _ = self.release.recv();
    }
}

#[derive(Clone, Default)]
pub struct FakeAuthority(pub Arc<Mutex<FakeFleet>>);

impl FakeAuthority {
    pub fn reachable(host: &str, db_now: Unix) -> FakeAuthority {
        FakeAuthority(Arc::new(Mutex::new(FakeFleet {
            reachable: true,
            host: host.into(),
            db_now,
            policy_version: 1,
            ..FakeFleet::default()
        })))
    }

    pub fn fleet(&self) -> std::sync::MutexGuard<'_, FakeFleet> {
        self.0.lock().unwrap()
    }

    fn call<T>(
        &mut self,
        line: String,
        f: impl FnOnce(&mut FakeFleet) -> Result<T, AuthorityError>,
    ) -> Result<T, AuthorityError> {
        let (hold, hold_answer) = {
            let mut fleet = self.fleet();
            (fleet.hold.take(), fleet.hold_answer.take())
        };
        if let Some(hold) = hold {
            hold.wait();
        }
        let answer = {
            let mut fleet = self.fleet();
            if !fleet.reachable {
                return Err(AuthorityError::Unreachable("connection refused".into()));
            }
            fleet.calls.push(line);
            f(&mut fleet)
        };
        if let Some(hold) = hold_answer {
            hold.wait();
        }
        answer
    }
}

impl Connector for FakeAuthority {
    fn connect(&self) -> Result<Box<dyn Authority>, AuthorityError> {
        let mut fleet = self.fleet();
        if !fleet.reachable {
            return Err(AuthorityError::Unreachable("connection refused".into()));
        }
        fleet.connections += 1;
        Ok(Box::new(self.clone()))
    }
}

impl Authority for FakeAuthority {
    fn snapshot(&mut self) -> Result<Snapshot, AuthorityError> {
        self.call("snapshot".into(), |f| {
            if let Some(why) = &f.refused {
                return Err(AuthorityError::Database(why.clone()));
            }
            Ok(Snapshot {
                host: f.host.clone(),
                db_now: f.db_now,
                policy_version: f.policy_version,
                grants: f.grants.clone(),
            })
        })
    }

    fn policy(&mut self, version: i64) -> Result<PolicyVersion, AuthorityError> {
        self.call(format!("policy {version}"), |f| {
            Ok(PolicyVersion {
                version,
                text: f.policy_text.clone(),
            })
        })
    }

    fn enrol(&mut self, user: &str, secret: &[u8], ticket: &str) -> Result<(), AuthorityError> {
        self.call(format!("enrol {user} ticket={ticket}"), |f| {
            let issued = (user.to_string(), ticket.to_string());
            if !f.tickets.contains(&issued) {
                return Err(AuthorityError::Refused(PimError::NotFound(format!(
                    "{user} has no enrolment ticket waiting"
                ))));
            }
            f.tickets.retain(|t| *t != issued);
            f.enrolled.push((user.into(), secret.to_vec()));
            Ok(())
        })
    }

    fn confirm_enrolment(&mut self, user: &str, code: &str) -> Result<(), AuthorityError> {
        self.call(format!("confirm {user} {code}"), |_| Ok(()))
    }

    fn mfa_enrolled(&mut self, user: &str) -> Result<bool, AuthorityError> {
        self.call(format!("enrolled? {user}"), |f| {
            Ok(f.enrolled.iter().any(|(u, _)| u == user))
        })
    }

    fn activate(&mut self, ask: &ActivationAsk<'_>) -> Result<Activated, AuthorityError> {
        let line = format!(
            "activate {} {} {}s groups={:?} code={} host={:?}",
            ask.user, ask.role, ask.duration_secs, ask.user_groups, ask.code, ask.only_host
        );
        self.call(line, |f| match f.activation.take() {
            Some(Activated::Granted(g)) => {
                f.grants.push(g.clone());
                Ok(Activated::Granted(g))
            }
            Some(pending) => Ok(pending),
            None => Err(AuthorityError::Refused(PimError::NotEligible(
                "you are not eligible for that role".into(),
            ))),
        })
    }

    fn approve(&mut self, d: &Decision<'_>) -> Result<Decided, AuthorityError> {
        let line = format!("approve {} by {} code={}", d.request_id, d.approver, d.code);
        self.call(line, |f| match f.decision.take() {
            Some(Decided::Granted(g)) => {
                f.grants.push(g.clone());
                Ok(Decided::Granted(g))
            }
            Some(other) => Ok(other),
            None => Err(AuthorityError::Refused(PimError::NotFound(format!(
                "no request {}",
                d.request_id
            )))),
        })
    }

    fn deny(&mut self, d: &Decision<'_>) -> Result<(), AuthorityError> {
        self.call(format!("deny {} by {}", d.request_id, d.approver), |_| {
            Ok(())
        })
    }

    fn cancel(&mut self, user: &str, request_id: i64) -> Result<(), AuthorityError> {
        self.call(format!("cancel {request_id} by {user}"), |_| Ok(()))
    }

    fn requests_for(
        &mut self,
        approver: &str,
        approver_groups: &[String],
    ) -> Result<Vec<FleetRequest>, AuthorityError> {
        self.call(format!("requests {approver} {approver_groups:?}"), |f| {
            Ok(f.requests.clone())
        })
    }

    fn deactivate(&mut self, user: &str, role: &str) -> Result<Vec<i64>, AuthorityError> {
        self.call(format!("deactivate {user} {role}"), |f| {
            Ok(end_where(f, |g| g.user == user && g.role == role))
        })
    }

    fn revoke(
        &mut self,
        proof: &AdminProof<'_>,
        user: &str,
        role: &str,
        _reason: &str,
    ) -> Result<Vec<i64>, AuthorityError> {
        let line = format!(
            "revoke {user} {role} by {} code={}",
            proof.actor, proof.code
        );
        self.call(line, |f| {
            Ok(end_where(f, |g| g.user == user && g.role == role))
        })
    }

    fn expire_due(&mut self) -> Result<Vec<i64>, AuthorityError> {
        self.call("expire_due".into(), |f| {
            f.expired_calls += 1;
            let now = f.db_now;
            Ok(end_where(f, |g| g.ends_at <= now))
        })
    }

    fn ship_audit(&mut self, records: &[AuditRecord]) -> Result<usize, AuthorityError> {
        self.call(format!("ship {}", records.len()), |f| {
            // As pim_api.ship_audit: a control character or an oversized text refuses the
            // whole batch.
            let refused = records.iter().any(|r| {
                [&r.actor, &r.user, &r.role, &r.reason, &r.ticket, &r.detail]
                    .iter()
                    .any(|t| t.len() > 4096 || t.chars().any(char::is_control))
                    || f.refuse_role.as_ref() == Some(&r.role)
                    || f.refuse_reason
                        .as_ref()
                        .is_some_and(|t| r.reason.contains(t))
            });
            if refused {
                return Err(AuthorityError::Refused(PimError::InvalidArgument(
                    "a shipped audit record holds a control character or is too long".into(),
                )));
            }
            // All or nothing, as one transaction; the count is of the new ones only.
            let mut new = 0;
            for r in records {
                if !f.shipped.iter().any(|s| s.id == r.id) {
                    f.shipped.push(r.clone());
                    new += 1;
                }
            }
            if std::mem::take(&mut f.lose_ship_answer) {
                return Err(AuthorityError::Unreachable("the answer was lost".into()));
            }
            Ok(new)
        })
    }

    fn push_policy(
        &mut self,
        proof: &AdminProof<'_>,
        text: &str,
        normalized: &serde_json::Value,
    ) -> Result<i64, AuthorityError> {
        self.call(
            format!("push by {} code={}", proof.actor, proof.code),
            |f| {
                f.pushed.push((text.into(), normalized.clone()));
                f.policy_version += 1;
                f.policy_text = text.into();
                Ok(f.policy_version)
            },
        )
    }

    fn add_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
        tags: &[String],
    ) -> Result<String, AuthorityError> {
        let line = format!("add_host {name} {tags:?} by {}", proof.actor);
        self.call(line, |f| {
            f.hosts.push(HostInfo {
                name: name.into(),
                tags: tags.to_vec(),
                last_seen: None,
                last_sync: None,
                skew_ms: None,
                disabled_at: None,
                disabled_by: None,
            });
            Ok("s3cret-once".into())
        })
    }

    /// Marks the host disabled and ends the grants for it alone, as the database does.
    fn disable_host(
        &mut self,
        proof: &AdminProof<'_>,
        name: &str,
    ) -> Result<HostDisabled, AuthorityError> {
        let line = format!("disable_host {name} by {}", proof.actor);
        self.call(line, |f| {
            let db_now = f.db_now;
            let Some(host) = f.hosts.iter_mut().find(|h| h.name == name) else {
                return Err(AuthorityError::Refused(PimError::NotFound(format!(
                    "there is no host '{name}' in the fleet"
                ))));
            };
            host.disabled_at = Some(db_now);
            host.disabled_by = Some(proof.actor.to_string());
            let grants_ended = end_where(f, |g| g.only_host.as_deref() == Some(name));
            Ok(HostDisabled {
                grants_ended,
                ..HostDisabled::default()
            })
        })
    }

    /// Any request it holds, for anyone (the database decides who may see it).
    fn request(&mut self, viewer: &str, id: i64) -> Result<FleetRequest, AuthorityError> {
        self.call(format!("request {id} for {viewer}"), |f| {
            f.requests
                .iter()
                .find(|r| r.id == id)
                .cloned()
                .ok_or_else(|| {
                    AuthorityError::Refused(PimError::NotFound(format!("no request {id}")))
                })
        })
    }

    fn hosts(&mut self) -> Result<Vec<HostInfo>, AuthorityError> {
        self.call("hosts".into(), |f| Ok(f.hosts.clone()))
    }

    fn mfa_ticket(
        &mut self,
        proof: &AdminProof<'_>,
        user: &str,
        reset: bool,
    ) -> Result<String, AuthorityError> {
        let line = format!(
            "mfa_ticket {user} by {} code={} reset={reset}",
            proof.actor, proof.code
        );
        self.call(line, |f| {
            if reset {
                f.enrolled.retain(|(u, _)| u != user);
            }
            let ticket = format!("TICKET-{user}-{}", f.tickets.len() + 1);
            f.tickets.retain(|(u, _)| u != user);
            f.tickets.push((user.into(), ticket.clone()));
            Ok(ticket)
        })
    }
}

/// Removes the grants `which` picks; their ids.
fn end_where(f: &mut FakeFleet, which: impl Fn(&FleetGrant) -> bool) -> Vec<i64> {
    let ended: Vec<i64> = f.grants.iter().filter(|g| which(g)).map(|g| g.id).collect();
    f.grants.retain(|g| !which(g));
    ended
}
