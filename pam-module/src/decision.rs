//! The account decision, free of PAM and of the host: what the module returns, what it tells
//! the user, and what it logs, given its arguments, who is asking, the host's accounts and the
//! daemon.
//!
//! **Whom it judges** (the *judged user*): the person asking for privilege, never the account
//! being switched to.
//!
//! | real uid of the process | PAM_RUSER | judged users |
//! | --- | --- | --- |
//! | not 0, on sudo, sudo-i, su, su-l, runuser or runuser-l | anything (sudo and su are set-uid and keep the invoker's real uid) | the real uid's user; PAM_USER is the target, not judged |
//! | not 0, another service | the real uid's user | the real uid's user |
//! | not 0, another service | unset, or someone else | the real uid's user and PAM_USER: a set-uid helper started by a service account (cockpit-session, polkit-agent-helper-1) authenticates PAM_USER |
//! | 0, on service su, su-l, runuser or runuser-l | anything (util-linux su sets it from getlogin()) | nobody (Ignore): root switching user |
//! | 0, on service sudo or sudo-i | a uid-0 user (sudo names the invoker there) | nobody (Ignore): root's own sudo |
//! | 0, not su or runuser | another user the database knows | PAM_USER and PAM_RUSER |
//! | 0, not su or runuser | unset, unknown, not UTF-8, or (not on sudo) a uid-0 user | PAM_USER: a root daemon logging someone in (sshd, login, cron, rshd, pamtester run by root) |
//!
//! Every judged user must pass (any refusal decides; uid 0 and users holding no managed group
//! pass). A root daemon may take PAM_RUSER from the network (rshd and rlogind copy the client's
//! name into it), so PAM_RUSER can add a user to judge but never takes PAM_USER away; only the
//! service tells root's own sudo, su or runuser. sudo run by a user
//! calls the account phase while its real uid is still the invoker's, so a real uid of 0 under
//! sudo is root's own sudo (with sudo's `!pam_ruser`, PAM_RUSER is unset and root's `sudo -u
//! alice` judges alice: fail closed, and root needs no sudo).
//!
//! So sudo's `targetpw`, `rootpw` and `runaspw`, which make PAM_USER the target, change nothing:
//! `sudo` by alice judges alice whatever the target is.
//!
//! | situation | result | daemon asked |
//! | --- | --- | --- |
//! | service not in `services=` | Ignore | no |
//! | no judged user name (PAM_USER unset and no known PAM_RUSER under real uid 0) | UserUnknown | no |
//! | PAM_USER needed but not UTF-8 | UserUnknown | no |
//! | real uid (not 0) without a user name | UserUnknown | no |
//! | user database lookup fails | SystemError | no |
//! | judged user unknown to the user database (sound line) | Ignore | no |
//! | judged user is uid 0 | Ignore (whatever the line says) | no |
//! | line has errors, `groups=` unusable (absent or malformed) | Deny | no |
//! | line has errors, user holds no managed group | Ignore | no |
//! | line has errors, user holds a managed group | Deny | no |
//! | group lookup fails | SystemError | no |
//! | none of the groups in `groups=` exists (a typo) | Deny | no |
//! | some of the groups in `groups=` do not exist | a Warning, the others decide | |
//! | user holds no managed group | Ignore | no |
//! | daemon allows (every held group covered) | Allow | yes |
//! | daemon refuses | Deny, with the daemon's message | yes |
//! | daemon absent (nothing listens), `fail=open` | Ignore | yes |
//! | daemon absent, `fail=closed` | Deny | yes |
//! | daemon too slow, erring, refusing the call, or the socket breaking down | Deny (whatever `fail=`) | yes |
//!
//! "Line has errors" means a malformed argument or a missing `groups=`; unknown arguments are
//! only logged. A service filter that parsed keeps applying when another argument is malformed,
//! so a broken `timeout=` on a line restricted to sudo cannot affect logins. `fail=open` applies
//! only to an absent daemon: the checked user can slow pimd down or feed it a name it rejects,
//! but cannot make it stop listening.
#![forbid(unsafe_code)]

use pim_common::text::escape;

use crate::args::{FailMode, Parsed};
use crate::pimd::{Daemon, DaemonFailure};

/// Longest message shown to the user, in bytes (PAM_MAX_MSG_SIZE is 512).
pub const MAX_USER_MESSAGE_BYTES: usize = 400;

/// A user's passwd entry, as much as the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEntry {
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
}

/// The managed groups a user holds, and those that do not exist on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub groups: Vec<String>,
    pub missing: Vec<String>,
}

/// A PAM string item as the application set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Unset,
    Text(&'a str),
    /// Set, but not UTF-8 (so no user name this module can look up).
    NotUtf8,
}

impl<'a> From<Option<&'a str>> for Item<'a> {
    fn from(text: Option<&'a str>) -> Self {
        text.map_or(Item::Unset, Item::Text)
    }
}

/// Who is asking, as PAM and the kernel tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker<'a> {
    /// PAM_SERVICE.
    pub service: Option<&'a str>,
    /// PAM_USER: the account logged in to or switched to (root under sudo's `targetpw`).
    pub user: Item<'a>,
    /// PAM_RUSER: the invoking user's name, as the application says (a root daemon may have
    /// it from the network: rshd, rlogind).
    pub ruser: Item<'a>,
    /// The real uid of the process running the PAM stack.
    pub real_uid: u32,
}

/// The host's user and group databases (see `accounts::SystemAccounts`).
pub trait Accounts {
    /// The user's entry; `Ok(None)` when there is no such user.
    fn lookup(&self, user: &str) -> Result<Option<UserEntry>, String>;
    /// The name and entry of the user with `uid`; `Ok(None)` when there is none.
    fn lookup_uid(&self, uid: u32) -> Result<Option<(String, UserEntry)>, String>;
    /// Which of `managed` the user holds, for a process running with `real_uid` (its own groups
    /// count for the user whose uid that is).
    fn held(
        &self,
        user: &str,
        entry: &UserEntry,
        managed: &[String],
        real_uid: u32,
    ) -> Result<Held, String>;
}

/// What the module returns to PAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// PAM_IGNORE: not this module's business.
    Ignore,
    /// PAM_SUCCESS: a live grant (or permanent membership) covers the held groups.
    Allow,
    /// PAM_PERM_DENIED, with one line for the user.
    Deny(String),
    /// PAM_USER_UNKNOWN: no user name to decide about.
    UserUnknown,
    /// PAM_SYSTEM_ERR: the host's databases failed.
    SystemError,
}

/// Syslog priorities the module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

/// One line for syslog. User-supplied parts are escaped already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub text: String,
}

/// The outcome and the log lines that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub log: Vec<LogLine>,
}

struct Recorder {
    debug: bool,
    log: Vec<LogLine>,
}

impl Recorder {
    fn line(&mut self, level: Level, text: String) {
        if level != Level::Debug || self.debug {
            self.log.push(LogLine { level, text });
        }
    }

    fn done(self, outcome: Outcome) -> Decision {
        Decision {
            outcome,
            log: self.log,
        }
    }
}

const MISCONFIGURED: &str =
    "pim: access refused: pam_pim is misconfigured on this host; ask an administrator (details are in the system log)";

/// Decides the account phase for `asker`.
pub fn decide(
    parsed: &Parsed,
    asker: &Asker<'_>,
    accounts: &dyn Accounts,
    daemon: &dyn Daemon,
) -> Decision {
    let options = &parsed.options;
    let mut rec = Recorder {
        debug: options.debug,
        log: Vec::new(),
    };
    for unknown in &parsed.unknown {
        rec.line(
            Level::Warning,
            format!("ignoring unknown argument '{unknown}'"),
        );
    }
    for error in &parsed.errors {
        rec.line(Level::Error, format!("configuration error: {error}"));
    }
    let service = asker.service;
    let shown_service = service.map_or_else(|| "(unset)".to_string(), escape);

    if !options.acts_for(service) {
        rec.line(
            Level::Debug,
            format!("service {shown_service} is not in services=: ignoring"),
        );
        return rec.done(Outcome::Ignore);
    }
    let judged = match judged_users(asker, accounts, &mut rec, &shown_service) {
        Ok(judged) => judged,
        Err(outcome) => return rec.done(outcome),
    };
    let judging = Judging {
        parsed,
        real_uid: asker.real_uid,
        shown_service: &shown_service,
        accounts,
        daemon,
    };
    // Every judged user must pass: one refusal decides; Allow when someone was allowed.
    let mut outcome = Outcome::Ignore;
    for (user, entry) in judged {
        match judging.judge(&user, entry, &mut rec) {
            Outcome::Ignore => {}
            Outcome::Allow => outcome = Outcome::Allow,
            refused => return rec.done(refused),
        }
    }
    rec.done(outcome)
}

/// What judging each user takes: the line, the process's real uid, the service, the host's
/// databases and the daemon.
#[derive(Clone, Copy)]
struct Judging<'a> {
    parsed: &'a Parsed,
    real_uid: u32,
    shown_service: &'a str,
    accounts: &'a dyn Accounts,
    daemon: &'a dyn Daemon,
}

impl Judging<'_> {
    /// The outcome for one judged user.
    fn judge(&self, user: &str, entry: Option<UserEntry>, rec: &mut Recorder) -> Outcome {
        let Judging {
            parsed,
            real_uid,
            shown_service,
            accounts,
            daemon,
        } = *self;
        let options = &parsed.options;
        let shown_user = escape(user);
        if entry.is_some_and(|e| e.uid == 0) {
            if parsed.is_sound() {
                rec.line(
                    Level::Debug,
                    format!("user {shown_user} is uid 0: ignoring"),
                );
            } else {
                rec.line(
                    Level::Notice,
                    format!(
                        "user {shown_user} is uid 0: let through (PAM_IGNORE) despite the configuration errors, so that root is never locked out"
                    ),
                );
            }
            return Outcome::Ignore;
        }

        let Some(managed) = &options.groups else {
            // Only a line with errors lacks usable groups.
            rec.line(
                Level::Error,
                format!(
                    "user {shown_user} denied on {shown_service}: the module line has no usable groups=, so every user but root is refused"
                ),
            );
            return Outcome::Deny(MISCONFIGURED.to_string());
        };

        let Some(entry) = entry else {
            rec.line(
                Level::Debug,
                format!(
                    "user {shown_user} is not in the user database: holds no managed group, ignoring"
                ),
            );
            return Outcome::Ignore;
        };

        let held = match accounts.held(user, &entry, managed, real_uid) {
            Ok(held) => held,
            Err(e) => {
                rec.line(
                    Level::Error,
                    format!(
                        "user {shown_user}: cannot tell which managed groups the user holds: {}",
                        escape(&e)
                    ),
                );
                return Outcome::SystemError;
            }
        };
        if held.missing.len() == managed.len() {
            // A typo (groups=sduo) must not turn the module off for the group that was meant.
            rec.line(
                Level::Error,
                format!(
                    "user {shown_user} denied on {shown_service}: none of the groups in groups= ({}) exists on this host, so every user but root is refused; check groups=",
                    held.missing.join(",")
                ),
            );
            return Outcome::Deny(MISCONFIGURED.to_string());
        }
        if !held.missing.is_empty() {
            rec.line(
                Level::Warning,
                format!(
                    "managed group(s) {} do not exist on this host; check groups=",
                    held.missing.join(",")
                ),
            );
        }
        if held.groups.is_empty() {
            rec.line(
                Level::Debug,
                format!(
                    "user {shown_user} holds none of {}: ignoring",
                    managed.join(",")
                ),
            );
            return Outcome::Ignore;
        }
        let groups = held.groups.join(",");

        if !parsed.is_sound() {
            rec.line(
                Level::Error,
                format!(
                    "user {shown_user} denied on {shown_service}: holds managed group(s) {groups} and the module line has errors; pimd not asked"
                ),
            );
            return Outcome::Deny(MISCONFIGURED.to_string());
        }

        rec.line(
            Level::Debug,
            format!(
                "user {shown_user} holds {groups}: asking pimd (timeout {}ms)",
                options.timeout.as_millis()
            ),
        );
        match daemon.check_access(user, &held.groups) {
            Ok(answer) if answer.allowed => {
                rec.line(
                    Level::Debug,
                    format!("user {shown_user} allowed on {shown_service} for {groups} by pimd"),
                );
                Outcome::Allow
            }
            Ok(answer) => {
                let message = user_message(&answer.message, &groups);
                rec.line(
                    Level::Notice,
                    format!("user {shown_user} denied on {shown_service} for {groups}: {message}"),
                );
                Outcome::Deny(message)
            }
            Err(failure) => {
                let absent = matches!(failure, DaemonFailure::Absent(_));
                let shown_failure = escape(&failure.to_string());
                if absent && options.fail == FailMode::Open {
                    rec.line(
                        Level::Error,
                        format!(
                            "user {shown_user} on {shown_service} holds {groups}: {shown_failure}; ignoring (fail=open)"
                        ),
                    );
                    return Outcome::Ignore;
                }
                let why = match options.fail {
                    FailMode::Closed => "fail=closed",
                    FailMode::Open => "fail=open applies only when pimd is absent",
                };
                rec.line(
                    Level::Error,
                    format!(
                        "user {shown_user} denied on {shown_service} for {groups}: {shown_failure} ({why})"
                    ),
                );
                Outcome::Deny(format!(
                    "pim: access refused: pimd could not confirm a live grant for group {groups}; try again, and ask an administrator if this persists"
                ))
            }
        }
    }
}

/// The services through which a user switches to another account (sudo, su and runuser): at a
/// user's real uid only the invoker is judged, never the target; at real uid 0 a PAM_RUSER of
/// uid 0 on one of them says root is invoking (see also [`ROOT_SU_SERVICES`]).
const ROOT_SWITCH_SERVICES: &[&str] = &["sudo", "sudo-i", "su", "su-l", "runuser", "runuser-l"];

/// Those of [`ROOT_SWITCH_SERVICES`] whose PAM_RUSER does not name the invoker.
const ROOT_SU_SERVICES: &[&str] = &["su", "su-l", "runuser", "runuser-l"];

/// The judged users' names and entries (see the table at the top), in the order they are
/// judged, or the outcome when there is nobody to judge. `None` for an entry: a name the user
/// database does not know.
fn judged_users(
    asker: &Asker<'_>,
    accounts: &dyn Accounts,
    rec: &mut Recorder,
    shown_service: &str,
) -> Result<Vec<(String, Option<UserEntry>)>, Outcome> {
    let database_failed = |rec: &mut Recorder, who: &str, e: &str| {
        rec.line(
            Level::Error,
            format!("{who}: cannot look the user up: {}", escape(e)),
        );
        Outcome::SystemError
    };
    let lookup = |rec: &mut Recorder, name: &str| match accounts.lookup(name) {
        Ok(entry) => Ok((name.to_string(), entry)),
        Err(e) => Err(database_failed(rec, &format!("user {}", escape(name)), &e)),
    };
    let pam_user = |rec: &mut Recorder| match asker.user {
        Item::Unset => Ok(None),
        Item::Text(user) => Ok(Some(user)),
        Item::NotUtf8 => {
            rec.line(
                Level::Error,
                format!("service {shown_service}: the user name (PAM_USER) is not valid UTF-8; refusing"),
            );
            Err(Outcome::UserUnknown)
        }
    };
    let ruser = match asker.ruser {
        Item::Text(r) if !r.is_empty() => Some(Ok(r)),
        Item::NotUtf8 => Some(Err(())),
        _ => None,
    };
    if asker.real_uid != 0 {
        let uid = asker.real_uid;
        let (name, entry) = match accounts.lookup_uid(uid) {
            Ok(Some(found)) => found,
            Ok(None) => {
                rec.line(
                    Level::Error,
                    format!("service {shown_service}: the invoking real uid {uid} has no user name; cannot decide"),
                );
                return Err(Outcome::UserUnknown);
            }
            Err(e) => return Err(database_failed(rec, &format!("uid {uid}"), &e)),
        };
        let mut judged = vec![(name.clone(), Some(entry))];
        // sudo, su and runuser keep the invoker's real uid: PAM_USER is the target, never
        // judged, whatever PAM_RUSER says (unset with sudo's !pam_ruser; util-linux su takes it
        // from getlogin(), the terminal's login). Elsewhere PAM_RUSER naming the invoker says
        // the same.
        if ruser == Some(Ok(name.as_str())) || service_is(asker.service, ROOT_SWITCH_SERVICES) {
            match asker.user {
                Item::Text(target) if target != name => rec.line(
                    Level::Debug,
                    format!(
                        "judging the invoking user {}, not the target {}",
                        escape(&name),
                        escape(target)
                    ),
                ),
                _ => {}
            }
            return Ok(judged);
        }
        // A set-uid helper started by a service account (cockpit-session, polkit's agent
        // helper) authenticates someone else: PAM_USER is judged as well.
        let shown_ruser = match ruser {
            Some(Ok(r)) => escape(r),
            Some(Err(())) => "(not valid UTF-8)".to_string(),
            None => "(unset)".to_string(),
        };
        if let Some(user) = pam_user(rec)?.filter(|u| *u != name) {
            rec.line(
                Level::Debug,
                format!(
                    "PAM_RUSER {shown_ruser} does not name the invoking user {} (real uid {uid}): judging both {} and PAM_USER {}",
                    escape(&name),
                    escape(&name),
                    escape(user)
                ),
            );
            judged.push(lookup(rec, user)?);
        } else if ruser.is_some() {
            rec.line(
                Level::Notice,
                format!(
                    "PAM_RUSER {shown_ruser} is not the invoking user {} (real uid {uid}); judging {}",
                    escape(&name),
                    escape(&name)
                ),
            );
        }
        return Ok(judged);
    }
    // A root process: PAM_USER is the account it logs in to. PAM_RUSER may come from the
    // network (rshd, rlogind), so it can add a user to judge but never take PAM_USER away,
    // except to recognise root itself switching user.
    // su keeps the invoker's real uid and runuser is root's alone, so at real uid 0 on one of
    // them root itself is switching user, whatever PAM_RUSER says (util-linux su takes it from
    // getlogin(): the terminal's login, not the invoker). sudo names the invoker in PAM_RUSER
    // itself, so there a uid-0 PAM_RUSER says so (below).
    if service_is(asker.service, ROOT_SU_SERVICES) {
        rec.line(
            Level::Debug,
            format!("root invoking {shown_service}: ignoring"),
        );
        return Err(Outcome::Ignore);
    }
    let mut judged = Vec::new();
    match ruser {
        Some(Ok(r)) => {
            let found = lookup(rec, r)?;
            match found.1 {
                Some(entry) if entry.uid == 0 => {
                    if service_is(asker.service, ROOT_SWITCH_SERVICES) {
                        rec.line(
                            Level::Debug,
                            format!("root ({}) invoking {shown_service}: ignoring", escape(r)),
                        );
                        return Err(Outcome::Ignore);
                    }
                    rec.line(
                        Level::Debug,
                        format!(
                            "PAM_RUSER {} is uid 0 on {shown_service}, which is not root switching user: judging PAM_USER",
                            escape(r)
                        ),
                    );
                }
                Some(_) => judged.push(found),
                None => rec.line(
                    Level::Notice,
                    format!(
                        "PAM_RUSER {} is not in the user database: judging PAM_USER",
                        escape(r)
                    ),
                ),
            }
        }
        Some(Err(())) => rec.line(
            Level::Notice,
            "PAM_RUSER is not valid UTF-8: judging PAM_USER".to_string(),
        ),
        None => {}
    }
    match pam_user(rec)? {
        Some(user) if judged.iter().all(|(name, _)| name != user) => {
            judged.insert(0, lookup(rec, user)?);
        }
        Some(_) => {}
        None if judged.is_empty() => {
            rec.line(
                Level::Error,
                format!("service {shown_service}: no user name (PAM_USER unset); cannot decide"),
            );
            return Err(Outcome::UserUnknown);
        }
        None => {}
    }
    Ok(judged)
}

/// Whether `service` is one of `names` (PAM service names are matched without case, as
/// `services=` is).
fn service_is(service: Option<&str>, names: &[&str]) -> bool {
    service.is_some_and(|s| names.iter().any(|n| n.eq_ignore_ascii_case(s)))
}

/// The sudo services, whose own message after a refusal ("a password is required", or a
/// password prompt) reads as if a password were the problem.
const SUDO_SERVICES: &[&str] = &["sudo", "sudo-i"];

/// The line shown after the refusal, for `service`: that what sudo says next only follows
/// from it. It does not start with `pim: `, so the refusal stays the one line of pim's.
pub fn afterword(service: Option<&str>) -> Option<&'static str> {
    service_is(service, SUDO_SERVICES).then_some(
        "(sudo's own message after this line, such as \"a password is required\", follows from \
         pim's refusal above and can be ignored)",
    )
}

/// The daemon's refusal as one safe line: control characters escaped, bounded in length, and a
/// fallback when the daemon said nothing.
fn user_message(message: &str, groups: &str) -> String {
    let message = escape(message.trim());
    if message.is_empty() {
        return format!(
            "pim: no live grant for group {groups}; see 'pim roles', then 'pim activate ROLE'"
        );
    }
    if message.len() <= MAX_USER_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_USER_MESSAGE_BYTES - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_a_sudo_service_then_the_refusal_is_followed_by_a_line_about_sudos_own_message() {
        for service in ["sudo", "sudo-i", "SUDO"] {
            let line = super::afterword(Some(service)).unwrap();
            assert!(
                line.contains("a password is required") && !line.starts_with("pim: "),
                "{line}"
            );
        }
        for service in [Some("su"), Some("login"), None] {
            assert_eq!(super::afterword(service), None, "{service:?}");
        }
    }

    use super::*;
    use crate::args;
    use crate::pimd::DaemonFailure;
    use pim_common::types::AccessDecision;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Duration;

    /// alice (1000) is in sudo; bob (1001) holds nothing; carol (1002) has docker as primary
    /// group; cockpit-ws (990) is a service account holding nothing; root is uid 0 and in
    /// wheel (as on some distributions). The process's groups are `process_gids`, counted for
    /// the user whose uid is the real uid.
    struct FakeAccounts {
        fail_lookup: bool,
        fail_groups: bool,
        process_gids: &'static [u32],
    }

    const OK_ACCOUNTS: FakeAccounts = FakeAccounts {
        fail_lookup: false,
        fail_groups: false,
        process_gids: &[],
    };

    impl Accounts for FakeAccounts {
        fn lookup(&self, user: &str) -> Result<Option<UserEntry>, String> {
            if self.fail_lookup {
                return Err("sssd is down".into());
            }
            Ok(match user {
                "root" => Some(UserEntry { uid: 0, gid: 0 }),
                "alice" => Some(UserEntry {
                    uid: 1000,
                    gid: 1000,
                }),
                "bob" => Some(UserEntry {
                    uid: 1001,
                    gid: 1001,
                }),
                "carol" => Some(UserEntry {
                    uid: 1002,
                    gid: 998,
                }),
                "cockpit-ws" => Some(UserEntry { uid: 990, gid: 990 }),
                _ => None,
            })
        }

        fn lookup_uid(&self, uid: u32) -> Result<Option<(String, UserEntry)>, String> {
            let name = match uid {
                0 => "root",
                1000 => "alice",
                1001 => "bob",
                1002 => "carol",
                990 => "cockpit-ws",
                _ => return Ok(None),
            };
            Ok(self.lookup(name)?.map(|entry| (name.to_string(), entry)))
        }

        fn held(
            &self,
            user: &str,
            entry: &UserEntry,
            managed: &[String],
            real_uid: u32,
        ) -> Result<Held, String> {
            if self.fail_groups {
                return Err("ldap is down".into());
            }
            let db: HashMap<&str, (u32, Vec<&str>)> = HashMap::from([
                ("sudo", (27, vec!["alice"])),
                ("wheel", (10, vec!["root"])),
                ("docker", (998, vec![])),
            ]);
            let process = if real_uid == entry.uid {
                self.process_gids
            } else {
                &[]
            };
            let mut held = Held::default();
            for group in managed {
                match db.get(group.as_str()) {
                    Some((gid, members))
                        if *gid == entry.gid
                            || process.contains(gid)
                            || members.contains(&user) =>
                    {
                        held.groups.push(group.clone())
                    }
                    Some(_) => {}
                    None => held.missing.push(group.clone()),
                }
            }
            Ok(held)
        }
    }

    /// Records every question; answers with `answer`.
    struct FakeDaemon {
        answer: Result<AccessDecision, DaemonFailure>,
        calls: RefCell<Vec<(String, Vec<String>)>>,
    }

    impl FakeDaemon {
        fn answering(answer: Result<AccessDecision, DaemonFailure>) -> Self {
            FakeDaemon {
                answer,
                calls: RefCell::new(Vec::new()),
            }
        }

        fn allowing() -> Self {
            Self::answering(Ok(AccessDecision {
                allowed: true,
                message: String::new(),
            }))
        }

        fn refusing(message: &str) -> Self {
            Self::answering(Ok(AccessDecision {
                allowed: false,
                message: message.into(),
            }))
        }

        fn calls(&self) -> Vec<(String, Vec<String>)> {
            self.calls.borrow().clone()
        }
    }

    impl Daemon for FakeDaemon {
        fn check_access(
            &self,
            user: &str,
            groups: &[String],
        ) -> Result<AccessDecision, DaemonFailure> {
            self.calls
                .borrow_mut()
                .push((user.to_string(), groups.to_vec()));
            self.answer.clone()
        }
    }

    /// A root process asking about PAM_USER `user` (pamtester run by root, sshd).
    fn run(args: &[&str], service: &str, user: &str, daemon: &FakeDaemon) -> Decision {
        let asker = Asker {
            service: Some(service),
            user: Item::Text(user),
            ruser: Item::Unset,
            real_uid: 0,
        };
        decide(&args::parse(args), &asker, &OK_ACCOUNTS, daemon)
    }

    /// sudo run by the user with real uid `real_uid`, PAM_USER `target` and PAM_RUSER `ruser`.
    fn sudo_by(real_uid: u32, target: &str, ruser: Option<&str>, daemon: &FakeDaemon) -> Decision {
        asking(
            LINE,
            "sudo",
            real_uid,
            Item::Text(target),
            ruser.into(),
            daemon,
        )
    }

    /// `service` run with real uid `real_uid`, PAM_USER `user` and PAM_RUSER `ruser`.
    fn asking(
        args: &[&str],
        service: &str,
        real_uid: u32,
        user: Item<'_>,
        ruser: Item<'_>,
        daemon: &FakeDaemon,
    ) -> Decision {
        let asker = Asker {
            service: Some(service),
            user,
            ruser,
            real_uid,
        };
        decide(&args::parse(args), &asker, &OK_ACCOUNTS, daemon)
    }

    fn judged(daemon: &FakeDaemon) -> Vec<String> {
        daemon.calls().into_iter().map(|(user, _)| user).collect()
    }

    fn logged(decision: &Decision, level: Level, needle: &str) -> bool {
        decision
            .log
            .iter()
            .any(|l| l.level == level && l.text.contains(needle))
    }

    const LINE: &[&str] = &["groups=sudo,wheel,docker", "services=sudo,sudo-i"];

    #[test]
    fn given_a_service_not_listed_then_ignore_without_asking() {
        let daemon = FakeDaemon::allowing();
        let decision = run(LINE, "sshd", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_no_services_argument_then_every_service_is_checked() {
        let daemon = FakeDaemon::refusing("pim: no");
        let decision = run(&["groups=sudo"], "sshd", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Deny("pim: no".into()));
        assert_eq!(daemon.calls().len(), 1);
    }

    #[test]
    fn given_a_user_without_managed_groups_then_ignore_and_daemon_not_called() {
        let daemon = FakeDaemon::answering(Err(DaemonFailure::Unreachable("down".into())));
        let decision = run(LINE, "sudo", "bob", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(
            daemon.calls().is_empty(),
            "break-glass must not depend on pimd"
        );
    }

    #[test]
    fn given_a_user_unknown_to_the_database_then_ignore_and_daemon_not_called() {
        let daemon = FakeDaemon::allowing();
        let decision = run(LINE, "sudo", "mallory", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_a_live_grant_then_allow_after_asking_with_held_groups_only() {
        let daemon = FakeDaemon::allowing();
        let decision = run(LINE, "sudo", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Allow);
        assert_eq!(
            daemon.calls(),
            [("alice".to_string(), vec!["sudo".to_string()])]
        );
    }

    #[test]
    fn given_a_primary_group_that_is_managed_then_it_counts_as_held() {
        let daemon = FakeDaemon::allowing();
        run(LINE, "sudo", "carol", &daemon);
        assert_eq!(
            daemon.calls(),
            [("carol".to_string(), vec!["docker".to_string()])]
        );
    }

    #[test]
    fn given_a_refusal_then_deny_with_the_daemons_message_and_a_log_line() {
        let message = "pim: your grant for role admin ended at 14:02; run 'pim activate admin'";
        let daemon = FakeDaemon::refusing(message);
        let decision = run(LINE, "sudo", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Deny(message.into()));
        assert!(logged(
            &decision,
            Level::Notice,
            "user alice denied on sudo for sudo"
        ));
    }

    #[test]
    fn given_a_refusal_with_control_characters_then_message_is_escaped_to_one_line() {
        let daemon = FakeDaemon::refusing("pim: expired\n\x1b[2Jroot ok");
        let decision = run(LINE, "sudo", "alice", &daemon);
        assert_eq!(
            decision.outcome,
            Outcome::Deny("pim: expired\\x0a\\x1b[2Jroot ok".into())
        );
        assert!(decision
            .log
            .iter()
            .all(|l| !l.text.chars().any(char::is_control)));
    }

    #[test]
    fn given_a_refusal_without_message_then_a_fallback_names_the_group() {
        let daemon = FakeDaemon::refusing("  ");
        let decision = run(LINE, "sudo", "alice", &daemon);
        let Outcome::Deny(message) = decision.outcome else {
            panic!("{decision:?}")
        };
        assert!(
            message.contains("group sudo") && message.contains("pim activate"),
            "{message}"
        );
    }

    #[test]
    fn given_a_very_long_refusal_then_message_is_bounded() {
        let daemon = FakeDaemon::refusing(&"é".repeat(1000));
        let decision = run(LINE, "sudo", "alice", &daemon);
        let Outcome::Deny(message) = decision.outcome else {
            panic!("{decision:?}")
        };
        assert!(message.len() <= MAX_USER_MESSAGE_BYTES && message.ends_with("..."));
    }

    #[test]
    fn given_daemon_unreachable_and_fail_closed_then_deny_and_log() {
        let daemon =
            FakeDaemon::answering(Err(DaemonFailure::Unreachable("no such socket".into())));
        let decision = run(LINE, "sudo", "alice", &daemon);
        let Outcome::Deny(message) = &decision.outcome else {
            panic!("{decision:?}")
        };
        assert!(message.contains("could not confirm"), "{message}");
        assert!(logged(&decision, Level::Error, "unreachable"));
        assert!(logged(&decision, Level::Error, "fail=closed"));
    }

    #[test]
    fn given_daemon_absent_and_fail_open_then_ignore_and_log() {
        let daemon = FakeDaemon::answering(Err(DaemonFailure::Absent("no such socket".into())));
        let args = [LINE, &["fail=open"]].concat();
        let decision = run(&args, "sudo", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(logged(&decision, Level::Error, "fail=open"));
    }

    #[test]
    fn given_a_daemon_timeout_then_deny_whatever_the_fail_mode() {
        let timeout = Err(DaemonFailure::Timeout(Duration::from_millis(500)));
        let closed = run(
            LINE,
            "sudo",
            "alice",
            &FakeDaemon::answering(timeout.clone()),
        );
        assert!(matches!(closed.outcome, Outcome::Deny(_)));
        assert!(logged(&closed, Level::Error, "within 500ms"));
        let args = [LINE, &["fail=open"]].concat();
        let open = run(&args, "sudo", "alice", &FakeDaemon::answering(timeout));
        assert!(matches!(open.outcome, Outcome::Deny(_)), "{open:?}");
        assert!(logged(&open, Level::Error, "only when pimd is absent"));
    }

    #[test]
    fn given_a_daemon_error_or_a_broken_exchange_then_deny_whatever_the_fail_mode() {
        for failure in [
            DaemonFailure::Error("org.pim.Manager1.Error.InvalidArgument: bad name".into()),
            DaemonFailure::Unreachable("pimd closed the connection".into()),
        ] {
            let error = Err(failure);
            let closed = run(LINE, "sudo", "alice", &FakeDaemon::answering(error.clone()));
            assert!(matches!(closed.outcome, Outcome::Deny(_)));
            let args = [LINE, &["fail=open"]].concat();
            let open = run(&args, "sudo", "alice", &FakeDaemon::answering(error));
            assert!(matches!(open.outcome, Outcome::Deny(_)), "{open:?}");
        }
    }

    #[test]
    fn given_sudo_with_targetpw_then_the_invoking_user_is_judged_not_the_target() {
        // sudo by alice (real uid 1000) with PAM_USER root, as targetpw, rootpw and runaspw make it.
        let daemon = FakeDaemon::refusing("pim: no");
        let decision = sudo_by(1000, "root", Some("alice"), &daemon);
        assert_eq!(decision.outcome, Outcome::Deny("pim: no".into()));
        assert_eq!(
            daemon.calls(),
            [("alice".to_string(), vec!["sudo".to_string()])]
        );
        // And with any other target.
        let daemon = FakeDaemon::refusing("pim: no");
        sudo_by(1000, "bob", Some("alice"), &daemon);
        assert_eq!(daemon.calls()[0].0, "alice");
    }

    #[test]
    fn given_a_ruser_that_is_not_the_real_uids_user_then_the_real_uid_wins() {
        let daemon = FakeDaemon::allowing();
        sudo_by(1000, "alice", Some("root"), &daemon);
        assert_eq!(judged(&daemon), ["alice"]);
    }

    #[test]
    fn given_sudo_by_a_user_naming_another_in_pam_user_and_ruser_then_only_the_invoker_is_judged() {
        // bob (holding nothing) runs sudo; PAM_USER and PAM_RUSER name alice, who holds sudo:
        // alice is the target, never judged, and bob needs no grant.
        let daemon = FakeDaemon::refusing("pim: no");
        let decision = sudo_by(1001, "alice", Some("alice"), &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(judged(&daemon).is_empty());
    }

    #[test]
    fn given_a_process_of_one_user_naming_another_on_another_service_then_both_are_judged() {
        // bob's set-uid helper on a service that does not switch user, naming alice in
        // PAM_USER and PAM_RUSER: alice is judged, and her refusal stands.
        let daemon = FakeDaemon::refusing("pim: no");
        let line = &["groups=sudo"];
        let decision = asking(
            line,
            "cockpit",
            1001,
            Item::Text("alice"),
            Item::Text("alice"),
            &daemon,
        );
        assert_eq!(decision.outcome, Outcome::Deny("pim: no".into()));
        assert_eq!(judged(&daemon), ["alice"]);
    }

    #[test]
    fn given_a_setuid_helper_run_by_a_service_account_then_pam_user_is_judged_too() {
        // cockpit-session or polkit-agent-helper-1, started by cockpit-ws (real uid 990, holds
        // nothing), authenticating alice: alice is judged.
        for ruser in [Item::Unset, Item::Text("cockpit-ws2"), Item::NotUtf8] {
            let daemon = FakeDaemon::refusing("pim: no");
            let decision = asking(
                &["groups=sudo"],
                "cockpit",
                990,
                Item::Text("alice"),
                ruser,
                &daemon,
            );
            assert_eq!(
                decision.outcome,
                Outcome::Deny("pim: no".into()),
                "{ruser:?}"
            );
            assert_eq!(judged(&daemon), ["alice"], "{ruser:?}");
        }
        // PAM_RUSER naming the real uid's user is the sudo and su pattern: PAM_USER is the
        // target and is not judged.
        let daemon = FakeDaemon::refusing("pim: no");
        let decision = asking(
            &["groups=sudo"],
            "su",
            990,
            Item::Text("alice"),
            Item::Text("cockpit-ws"),
            &daemon,
        );
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_root_invoking_then_ignore_whatever_the_target() {
        // sudo, su and runuser run by root: real uid 0, PAM_RUSER root.
        for service in ["sudo", "sudo-i", "su", "su-l", "runuser", "runuser-l"] {
            let daemon = FakeDaemon::allowing();
            let decision = asking(
                LINE,
                service,
                0,
                Item::Text("alice"),
                Item::Text("root"),
                &daemon,
            );
            assert_eq!(decision.outcome, Outcome::Ignore, "{service}");
            assert!(daemon.calls().is_empty(), "{service}");
        }
    }

    #[test]
    fn given_su_or_sudo_by_a_user_then_the_target_is_never_judged_whatever_ruser_says() {
        // alice runs `su - bob` from a terminal root (or carol) logged in to: util-linux su
        // sets PAM_RUSER from getlogin(); sudo with !pam_ruser leaves it unset. bob is the
        // target: only alice (uid 1000, the real uid) is judged.
        for service in ["su", "su-l", "sudo", "sudo-i"] {
            for ruser in [Item::Text("root"), Item::Text("carol"), Item::Unset] {
                let daemon = FakeDaemon::allowing();
                let line = &["groups=sudo", "services=su,su-l,sudo,sudo-i"];
                let decision = asking(line, service, 1000, Item::Text("bob"), ruser, &daemon);
                assert_eq!(decision.outcome, Outcome::Allow, "{service} {ruser:?}");
                assert_eq!(judged(&daemon), ["alice"], "{service} {ruser:?}");
            }
        }
    }

    #[test]
    fn given_root_running_su_from_a_terminal_someone_else_logged_in_to_then_ignore() {
        // util-linux su run by root takes PAM_RUSER from getlogin(): bob logged in, became
        // root, and root runs `su - alice`. Root invoking gains nothing; neither alice (the
        // target) nor bob (not the invoker) is judged.
        for ruser in [
            Item::Text("bob"),
            Item::Text("nosuch"),
            Item::NotUtf8,
            Item::Unset,
        ] {
            let daemon = FakeDaemon::refusing("pim: no");
            let line = &["groups=sudo", "services=su,su-l"];
            let decision = asking(line, "su-l", 0, Item::Text("alice"), ruser, &daemon);
            assert_eq!(decision.outcome, Outcome::Ignore, "{ruser:?}");
            assert!(daemon.calls().is_empty(), "{ruser:?}");
        }
    }

    #[test]
    fn given_a_root_daemon_with_a_remote_user_from_the_network_then_pam_user_is_judged() {
        // rshd or rlogind (real uid 0) logging in to alice, PAM_RUSER the name the client sent;
        // the module in common-account without services=.
        for ruser in [
            Item::Text("nosuch"),
            Item::Text("bob"),
            Item::Text("root"),
            Item::Text(""),
            Item::NotUtf8,
            Item::Unset,
        ] {
            let daemon = FakeDaemon::refusing("pim: no");
            let decision = asking(
                &["groups=sudo"],
                "rsh",
                0,
                Item::Text("alice"),
                ruser,
                &daemon,
            );
            assert_eq!(
                decision.outcome,
                Outcome::Deny("pim: no".into()),
                "{ruser:?}"
            );
            assert_eq!(judged(&daemon), ["alice"], "{ruser:?}");
        }
    }

    #[test]
    fn given_a_root_daemon_naming_a_holder_in_ruser_then_both_are_judged() {
        // Logging in to bob (holds nothing) on behalf of alice (holds sudo): alice is judged.
        let daemon = FakeDaemon::refusing("pim: no");
        let decision = asking(
            &["groups=sudo"],
            "rsh",
            0,
            Item::Text("bob"),
            Item::Text("alice"),
            &daemon,
        );
        assert_eq!(decision.outcome, Outcome::Deny("pim: no".into()));
        assert_eq!(judged(&daemon), ["alice"]);
        // Both holders: both asked, and both must be allowed.
        let daemon = FakeDaemon::allowing();
        let decision = asking(
            &["groups=sudo,docker"],
            "rsh",
            0,
            Item::Text("carol"),
            Item::Text("alice"),
            &daemon,
        );
        assert_eq!(decision.outcome, Outcome::Allow);
        assert_eq!(judged(&daemon), ["carol", "alice"]);
        // A root daemon with PAM_USER unset and a known PAM_RUSER judges PAM_RUSER.
        let daemon = FakeDaemon::refusing("pim: no");
        let decision = asking(
            &["groups=sudo"],
            "rsh",
            0,
            Item::Unset,
            Item::Text("alice"),
            &daemon,
        );
        assert_eq!(decision.outcome, Outcome::Deny("pim: no".into()));
    }

    #[test]
    fn given_a_name_that_is_not_utf8_then_user_unknown_only_when_it_is_needed() {
        for (user, ruser) in [
            (Item::NotUtf8, Item::Unset),
            (Item::Text("alice"), Item::NotUtf8),
        ] {
            // A service the line does not act for: ignored before any name is read.
            let daemon = FakeDaemon::allowing();
            let decision = asking(LINE, "sshd", 0, user, ruser, &daemon);
            assert_eq!(decision.outcome, Outcome::Ignore);
        }
        // sudo by alice: PAM_USER is the target, not needed.
        let daemon = FakeDaemon::allowing();
        let decision = asking(
            LINE,
            "sudo",
            1000,
            Item::NotUtf8,
            Item::Text("alice"),
            &daemon,
        );
        assert_eq!(decision.outcome, Outcome::Allow);
        // A root daemon needs PAM_USER.
        let daemon = FakeDaemon::allowing();
        let decision = asking(LINE, "sudo", 0, Item::NotUtf8, Item::Unset, &daemon);
        assert_eq!(decision.outcome, Outcome::UserUnknown);
        assert!(logged(&decision, Level::Error, "not valid UTF-8"));
    }

    #[test]
    fn given_the_process_groups_then_they_count_only_for_the_real_uids_user() {
        // A process carrying sudo (gid 27) that the group database no longer gives bob.
        let accounts = FakeAccounts {
            process_gids: &[27],
            ..OK_ACCOUNTS
        };
        let decide_for = |real_uid: u32, ruser: Option<&str>, daemon: &FakeDaemon| {
            let asker = Asker {
                service: Some("sudo"),
                user: Item::Text("bob"),
                ruser: ruser.into(),
                real_uid,
            };
            decide(&args::parse(LINE), &asker, &accounts, daemon)
        };
        let daemon = FakeDaemon::refusing("pim: no");
        assert_eq!(
            decide_for(1001, Some("bob"), &daemon).outcome,
            Outcome::Deny("pim: no".into())
        );
        assert_eq!(judged(&daemon), ["bob"]);
        // A root process's groups are root's, not bob's.
        let daemon = FakeDaemon::refusing("pim: no");
        assert_eq!(decide_for(0, None, &daemon).outcome, Outcome::Ignore);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_a_real_uid_without_a_name_then_user_unknown_without_asking() {
        let daemon = FakeDaemon::allowing();
        let decision = sudo_by(4242, "root", Some("alice"), &daemon);
        assert_eq!(decision.outcome, Outcome::UserUnknown);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_root_with_malformed_arguments_then_ignore() {
        for args in [
            &["groups=sudo", "timeout=soon"][..],
            &["grups=sudo"],
            &[],
            &["groups=", "services=sudo"],
        ] {
            let daemon = FakeDaemon::allowing();
            let decision = run(args, "sudo", "root", &daemon);
            assert_eq!(decision.outcome, Outcome::Ignore, "{args:?}");
            assert!(daemon.calls().is_empty());
            assert!(
                logged(&decision, Level::Notice, "never locked out"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn given_root_holding_a_managed_group_with_a_sound_line_then_ignore() {
        let daemon = FakeDaemon::answering(Err(DaemonFailure::Unreachable("down".into())));
        let decision = run(LINE, "sudo", "root", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_non_root_holding_a_managed_group_with_malformed_arguments_then_deny_without_asking() {
        let daemon = FakeDaemon::allowing();
        let args = [LINE, &["timeout=soon", "fail=open"]].concat();
        let decision = run(&args, "sudo", "alice", &daemon);
        let Outcome::Deny(message) = &decision.outcome else {
            panic!("{decision:?}")
        };
        assert!(message.contains("misconfigured"));
        assert!(daemon.calls().is_empty());
        assert!(logged(
            &decision,
            Level::Error,
            "configuration error: 'timeout=soon'"
        ));
    }

    #[test]
    fn given_non_root_without_managed_group_and_malformed_arguments_then_ignore() {
        let daemon = FakeDaemon::allowing();
        let args = [LINE, &["timeout=soon"]].concat();
        let decision = run(&args, "sudo", "bob", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_no_groups_argument_then_every_non_root_user_is_denied() {
        for user in ["alice", "bob", "mallory"] {
            let daemon = FakeDaemon::allowing();
            let decision = run(&["services=sudo", "debug"], "sudo", user, &daemon);
            assert!(matches!(decision.outcome, Outcome::Deny(_)), "{user}");
            assert!(daemon.calls().is_empty());
            assert!(logged(&decision, Level::Error, "lacks groups="));
            assert!(logged(&decision, Level::Error, "no usable groups="));
        }
    }

    #[test]
    fn given_malformed_arguments_and_an_unlisted_service_then_ignore() {
        let daemon = FakeDaemon::allowing();
        let args = [LINE, &["timeout=soon"]].concat();
        let decision = run(&args, "sshd", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(logged(&decision, Level::Error, "timeout=soon"));
    }

    #[test]
    fn given_malformed_services_then_every_service_is_acted_for() {
        let daemon = FakeDaemon::allowing();
        let decision = run(&["groups=sudo", "services=a b"], "sshd", "alice", &daemon);
        assert!(matches!(decision.outcome, Outcome::Deny(_)));
    }

    #[test]
    fn given_unknown_arguments_then_logged_and_decision_unchanged() {
        let daemon = FakeDaemon::allowing();
        let args = [LINE, &["quiet"]].concat();
        let decision = run(&args, "sudo", "alice", &daemon);
        assert_eq!(decision.outcome, Outcome::Allow);
        assert!(logged(
            &decision,
            Level::Warning,
            "unknown argument 'quiet'"
        ));
    }

    #[test]
    fn given_no_user_name_then_user_unknown() {
        let daemon = FakeDaemon::allowing();
        let asker = Asker {
            service: Some("sudo"),
            user: Item::Unset,
            ruser: Item::Unset,
            real_uid: 0,
        };
        let decision = decide(&args::parse(LINE), &asker, &OK_ACCOUNTS, &daemon);
        assert_eq!(decision.outcome, Outcome::UserUnknown);
        assert!(daemon.calls().is_empty());
    }

    #[test]
    fn given_failing_user_database_then_system_error_without_asking() {
        for accounts in [
            FakeAccounts {
                fail_lookup: true,
                ..OK_ACCOUNTS
            },
            FakeAccounts {
                fail_groups: true,
                ..OK_ACCOUNTS
            },
        ] {
            let daemon = FakeDaemon::allowing();
            let asker = Asker {
                service: Some("sudo"),
                user: Item::Text("alice"),
                ruser: Item::Unset,
                real_uid: 0,
            };
            let decision = decide(&args::parse(LINE), &asker, &accounts, &daemon);
            assert_eq!(decision.outcome, Outcome::SystemError);
            assert!(daemon.calls().is_empty());
        }
    }

    #[test]
    fn given_groups_naming_no_existing_group_then_everyone_but_root_is_denied() {
        for user in ["alice", "bob", "carol"] {
            let daemon = FakeDaemon::allowing();
            let decision = run(&["groups=sduo"], "sudo", user, &daemon);
            assert_eq!(
                decision.outcome,
                Outcome::Deny(MISCONFIGURED.into()),
                "{user}"
            );
            assert!(daemon.calls().is_empty());
            assert!(logged(
                &decision,
                Level::Error,
                "none of the groups in groups= (sduo) exists"
            ));
        }
        let daemon = FakeDaemon::allowing();
        let root = run(&["groups=sduo"], "sudo", "root", &daemon);
        assert_eq!(root.outcome, Outcome::Ignore);
    }

    #[test]
    fn given_some_managed_groups_missing_then_the_others_still_decide_and_a_warning_says_so() {
        let daemon = FakeDaemon::allowing();
        let decision = run(&["groups=sudo,sduo"], "sudo", "bob", &daemon);
        assert_eq!(decision.outcome, Outcome::Ignore);
        assert!(logged(&decision, Level::Warning, "sduo do not exist"));
    }

    #[test]
    fn given_fail_open_and_an_absent_daemon_then_ignore() {
        let daemon = FakeDaemon::answering(Err(DaemonFailure::Absent(
            "/run/pim/pam.socket: ENOENT".into(),
        )));
        let args = [LINE, &["fail=open"]].concat();
        assert_eq!(
            run(&args, "sudo", "alice", &daemon).outcome,
            Outcome::Ignore
        );
        let closed = run(LINE, "sudo", "alice", &daemon);
        assert!(matches!(closed.outcome, Outcome::Deny(_)));
    }

    #[test]
    fn given_debug_then_the_decision_path_is_logged_and_otherwise_not() {
        let daemon = FakeDaemon::allowing();
        let quiet = run(LINE, "sudo", "alice", &daemon);
        assert!(quiet.log.is_empty(), "{:?}", quiet.log);
        let args = [LINE, &["debug"]].concat();
        let loud = run(&args, "sudo", "alice", &daemon);
        assert!(logged(
            &loud,
            Level::Debug,
            "holds sudo: asking pimd (timeout 2000ms)"
        ));
        assert!(logged(&loud, Level::Debug, "allowed on sudo"));
    }

    #[test]
    fn given_a_hostile_user_name_then_logs_are_escaped() {
        let daemon = FakeDaemon::allowing();
        let args = [LINE, &["debug"]].concat();
        let decision = run(&args, "sudo", "evil\nuser", &daemon);
        assert!(logged(&decision, Level::Debug, "evil\\x0auser"));
    }
}
