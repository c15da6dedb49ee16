//! Alerts: the drift an auditor must hear of, decided in pure code over facts read elsewhere
//! (the store, the configuration, and a scan of the host made outside the manager's lock:
//! `/etc/group`, the process table, the sudoers files). [`evaluate`] says which alerts the
//! facts call for; [`plan`] compares them with the alerts on record and says what to raise,
//! resolve or release; `manager/alerts.rs` writes that, audited, and sends the events.
//!
//! Each alert has a stable key (its kind and its subject: user, role, group, sudoers file
//! and the rule's fingerprint), so that a cause seen again and again is one alert. An open alert whose cause is gone is
//! resolved; a dismissed one stays dismissed while its cause persists, and once the cause is
//! gone it is released (the key is free again), so that the cause coming back raises a new
//! alert. `break-glass-used` is an event, not a state: it stays open until dismissed, and a
//! use after the dismissal raises a new one.

pub mod host;

use pim_sudoers::{RootRule, Who};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Above this a role's `max_duration` makes it `weak-role` (SPEC: "max_duration over 8h").
pub const WEAK_MAX_DURATION_SECS: u64 = 8 * 3600;

/// Process ids listed in one alert's detail, at most.
const MAX_PIDS_SHOWN: usize = 8;

/// Bytes of SHA-256 kept in a sudoers rule's fingerprint (see [`rule_fingerprint`]).
const RULE_FINGERPRINT_BYTES: usize = 16;

/// The kinds of alert, by their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    MemberOutsidePim,
    ProcessOutsideGrant,
    SudoersOutsidePim,
    FrequentActivation,
    StaleEligibility,
    TooManyPrivileged,
    WeakRole,
    BreakGlassUsed,
}

impl AlertKind {
    pub const ALL: &'static [AlertKind] = &[
        AlertKind::MemberOutsidePim,
        AlertKind::ProcessOutsideGrant,
        AlertKind::SudoersOutsidePim,
        AlertKind::FrequentActivation,
        AlertKind::StaleEligibility,
        AlertKind::TooManyPrivileged,
        AlertKind::WeakRole,
        AlertKind::BreakGlassUsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MemberOutsidePim => "member-outside-pim",
            AlertKind::ProcessOutsideGrant => "process-outside-grant",
            AlertKind::SudoersOutsidePim => "sudoers-outside-pim",
            AlertKind::FrequentActivation => "frequent-activation",
            AlertKind::StaleEligibility => "stale-eligibility",
            AlertKind::TooManyPrivileged => "too-many-privileged",
            AlertKind::WeakRole => "weak-role",
            AlertKind::BreakGlassUsed => "break-glass-used",
        }
    }

    pub fn parse(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Whether the alert is about a state that can go (and so resolves by itself), rather
    /// than about something that happened.
    pub fn resolves(self) -> bool {
        self != AlertKind::BreakGlassUsed
    }
}

/// An alert the facts call for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: AlertKind,
    /// Kind and subject: the same cause always gives the same key.
    pub key: String,
    pub user: String,
    pub role: String,
    /// What was seen, for people: where, who, how many.
    pub detail: String,
}

impl Finding {
    fn new(kind: AlertKind, subject: &[&str], user: &str, role: &str, detail: String) -> Self {
        let mut key = kind.as_str().to_string();
        for part in subject {
            key.push(':');
            key.push_str(part);
        }
        Finding {
            kind,
            key,
            user: user.to_string(),
            role: role.to_string(),
            detail,
        }
    }
}

/// One role as the alerts see it.
#[derive(Debug, Clone, Default)]
pub struct RoleFacts {
    pub name: String,
    pub group: String,
    pub require_mfa: bool,
    pub require_justification: bool,
    pub max_duration_secs: u64,
    /// Users listed as `permanent` (groups expanded).
    pub permanent: BTreeSet<String>,
    /// Users eligible now (standing, groups expanded, and by assignment), each with when
    /// their eligibility is known to have begun (an assignment's start; for standing
    /// eligibility, the oldest audit record: since when pimd has been watching).
    pub eligible: BTreeMap<String, i64>,
    /// Users with a live grant of the role.
    pub active: BTreeSet<String>,
}

/// A process, as the alerts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFact {
    pub pid: u32,
    /// Real uid.
    pub uid: u32,
    /// Every gid it carries: real, effective, saved and supplementary, of any thread.
    pub gids: BTreeSet<u32>,
}

/// What a look at the host found; a part whose reading failed is `None` (its kind is then not
/// evaluated: a failed read neither raises nor resolves).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Members listed in /etc/group (the supplementary lists) of each group looked at: the
    /// managed ones and those the roles' `eligible` and `permanent` lists name.
    pub members: Option<BTreeMap<String, BTreeSet<String>>>,
    /// The gid of each managed group.
    pub gids: BTreeMap<String, u32>,
    pub processes: Option<Vec<ProcessFact>>,
    /// User names of the uids the processes run as.
    pub user_names: BTreeMap<u32, String>,
    pub sudoers: Option<Vec<RootRule>>,
    /// Sudoers files that should have been read and could not be, with why: while there is
    /// one, what sudo grants is unknown, so `sudoers-outside-pim` is not judged (its alerts
    /// stay as they are) and each such file is an alert of its own.
    pub sudoers_unreadable: Vec<(std::path::PathBuf, String)>,
    /// Lines of the sudoers files pim cannot read with sudo's grammar: each an alert (what
    /// sudo makes of it may be root for someone).
    pub sudoers_unparsed: Vec<pim_sudoers::Unparsed>,
    /// Sudoers files sudo refuses (owner or mode), with why: they grant nothing, but someone
    /// put them there (and a fix of the mode brings their rules in).
    pub sudoers_refused: Vec<(std::path::PathBuf, String)>,
}

/// Everything one evaluation looks at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub now: i64,
    pub thresholds: pim_config::AlertsConfig,
    pub roles: Vec<RoleFacts>,
    /// Memberships PIM added (user, group), as its store records them.
    pub pim_members: BTreeSet<(String, String)>,
    /// Activations (grants started) of each (user, role), times ascending, at least those
    /// within `frequent_activation.within` of `now`.
    pub activations: BTreeMap<(String, String), Vec<i64>>,
    /// The last activation of each (user, role), however old.
    pub last_activation: BTreeMap<(String, String), i64>,
    /// When each `frequent-activation` alert (by key) was last dismissed: the dismissal saw
    /// to the activations made until then, so only later ones count towards raising it again.
    pub frequent_dismissed: BTreeMap<String, i64>,
    /// `None` until the host has been looked at once.
    pub host: HostFacts,
}

/// What [`evaluate`] found, and which kinds it could judge (the others are left as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    pub judged: BTreeSet<AlertKind>,
}

/// The alerts `facts` call for.
pub fn evaluate(facts: &Facts) -> Evaluation {
    let mut out = Evaluation::default();
    weak_roles(facts, &mut out);
    too_many_privileged(facts, &mut out);
    frequent_activation(facts, &mut out);
    stale_eligibility(facts, &mut out);
    members_outside_pim(facts, &mut out);
    processes_outside_grant(facts, &mut out);
    sudoers_outside_pim(facts, &mut out);
    out.findings.sort_by(|a, b| a.key.cmp(&b.key));
    out.findings.dedup_by(|a, b| a.key == b.key);
    out
}

fn weak_roles(facts: &Facts, out: &mut Evaluation) {
    out.judged.insert(AlertKind::WeakRole);
    for role in &facts.roles {
        let mut weak = Vec::new();
        if !role.require_mfa {
            weak.push("no MFA (require_mfa = false)".to_string());
        }
        if !role.require_justification {
            weak.push("no justification (require_justification = false)".to_string());
        }
        if role.max_duration_secs > WEAK_MAX_DURATION_SECS {
            weak.push(format!(
                "max_duration {} is over 8h",
                pim_common::duration::format(role.max_duration_secs)
            ));
        }
        if !weak.is_empty() {
            out.findings.push(Finding::new(
                AlertKind::WeakRole,
                &[&role.name],
                "",
                &role.name,
                format!(
                    "role {} (group {}): {}",
                    role.name,
                    role.group,
                    weak.join("; ")
                ),
            ));
        }
    }
}

fn too_many_privileged(facts: &Facts, out: &mut Evaluation) {
    out.judged.insert(AlertKind::TooManyPrivileged);
    let max = facts.thresholds.max_privileged as usize;
    for role in &facts.roles {
        let users: BTreeSet<&String> = role
            .eligible
            .keys()
            .chain(&role.active)
            .chain(&role.permanent)
            .collect();
        if users.len() > max {
            out.findings.push(Finding::new(
                AlertKind::TooManyPrivileged,
                &[&role.name],
                "",
                &role.name,
                format!(
                    "role {} has {} privileged users (eligible, active or permanent), more than \
                     max_privileged = {max}",
                    role.name,
                    users.len()
                ),
            ));
        }
    }
}

/// `count` activations within `within`, not counting those a dismissal of the alert saw to:
/// after a dismissal at D, it is raised again when `count` activations made after D fall
/// within `within`. Times are whole seconds: the activations of D's own second are taken as
/// seen by it (counting them would raise it again at once for those made just before it).
fn frequent_activation(facts: &Facts, out: &mut Evaluation) {
    out.judged.insert(AlertKind::FrequentActivation);
    let t = &facts.thresholds;
    let window_start = facts.now.saturating_sub(t.frequent_within_secs as i64);
    for ((user, role), times) in &facts.activations {
        // Its detail, once the activations are counted.
        let mut finding = Finding::new(
            AlertKind::FrequentActivation,
            &[role, user],
            user,
            role,
            String::new(),
        );
        let dismissed = facts.frequent_dismissed.get(&finding.key).copied();
        let recent = times
            .iter()
            .filter(|&&at| at > window_start && at <= facts.now)
            .filter(|&&at| dismissed.is_none_or(|d| at > d))
            .count();
        if recent >= t.frequent_count as usize {
            let since_dismissal = match dismissed {
                Some(_) => " since its last dismissal",
                None => "",
            };
            finding.detail = format!(
                "{user} activated role {role} {recent} times within {}{since_dismissal} \
                 (threshold {})",
                pim_common::duration::format(t.frequent_within_secs),
                t.frequent_count
            );
            out.findings.push(finding);
        }
    }
}

fn stale_eligibility(facts: &Facts, out: &mut Evaluation) {
    out.judged.insert(AlertKind::StaleEligibility);
    let stale = facts.thresholds.stale_eligibility_secs as i64;
    for role in &facts.roles {
        for (user, &since) in &role.eligible {
            if role.active.contains(user) || role.permanent.contains(user) {
                continue;
            }
            let last = facts
                .last_activation
                .get(&(user.clone(), role.name.clone()))
                .copied();
            let quiet_since = last.map_or(since, |at| at.max(since));
            if facts.now.saturating_sub(quiet_since) >= stale {
                let what = match last {
                    Some(at) => format!(
                        "has not activated it for {}",
                        pim_common::duration::format((facts.now - at).max(0) as u64)
                    ),
                    None => "has never activated it".to_string(),
                };
                out.findings.push(Finding::new(
                    AlertKind::StaleEligibility,
                    &[&role.name, user],
                    user,
                    &role.name,
                    format!(
                        "{user} is eligible for role {} and {what} (stale_eligibility = {})",
                        role.name,
                        pim_common::duration::format(stale as u64)
                    ),
                ));
            }
        }
    }
}

/// The groups PIM manages, each with its roles.
fn managed_groups(facts: &Facts) -> BTreeMap<&str, Vec<&RoleFacts>> {
    let mut groups: BTreeMap<&str, Vec<&RoleFacts>> = BTreeMap::new();
    for role in &facts.roles {
        groups.entry(role.group.as_str()).or_default().push(role);
    }
    groups
}

fn members_outside_pim(facts: &Facts, out: &mut Evaluation) {
    let Some(members) = &facts.host.members else {
        return;
    };
    out.judged.insert(AlertKind::MemberOutsidePim);
    for (group, roles) in managed_groups(facts) {
        for user in members.get(group).into_iter().flatten() {
            let added = facts
                .pim_members
                .contains(&(user.clone(), group.to_string()));
            let permanent = roles.iter().any(|r| r.permanent.contains(user));
            if !added && !permanent {
                let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
                out.findings.push(Finding::new(
                    AlertKind::MemberOutsidePim,
                    &[group, user],
                    user,
                    names.first().copied().unwrap_or(""),
                    format!(
                        "{user} is a member of group {group} (role {}) in /etc/group, but pim did \
                         not add them and they are not permanent",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
}

fn processes_outside_grant(facts: &Facts, out: &mut Evaluation) {
    let Some(processes) = &facts.host.processes else {
        return;
    };
    out.judged.insert(AlertKind::ProcessOutsideGrant);
    for (group, roles) in managed_groups(facts) {
        let Some(&gid) = facts.host.gids.get(group) else {
            continue;
        };
        // The pids of each user carrying the group without a grant or a permanent listing.
        let mut uncovered: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for process in processes.iter().filter(|p| p.gids.contains(&gid)) {
            // Root may take any group; a root process carrying one is no privilege gained.
            if process.uid == 0 {
                continue;
            }
            let user = facts
                .host
                .user_names
                .get(&process.uid)
                .cloned()
                .unwrap_or_else(|| format!("#{}", process.uid));
            let covered = roles
                .iter()
                .any(|r| r.active.contains(&user) || r.permanent.contains(&user));
            if !covered {
                uncovered.entry(user).or_default().push(process.pid);
            }
        }
        for (user, pids) in uncovered {
            let shown: Vec<String> = pids
                .iter()
                .take(MAX_PIDS_SHOWN)
                .map(u32::to_string)
                .collect();
            let more = pids.len().saturating_sub(MAX_PIDS_SHOWN);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            out.findings.push(Finding::new(
                AlertKind::ProcessOutsideGrant,
                &[group, &user],
                &user,
                roles[0].name.as_str(),
                format!(
                    "{} process(es) of {user} carry group {group} (gid {gid}) without a live \
                     grant or a permanent listing: pid {}{more}",
                    pids.len(),
                    shown.join(", ")
                ),
            ));
        }
    }
}

/// What a dismissal of a `sudoers-outside-pim` alert covers: the rule as it was seen, its
/// text and the definitions of the aliases it uses. Another rule for the same subject in the
/// same file, the rule edited, or an alias it uses redefined, is another fingerprint and so a
/// new alert; the rule moving to another line is not.
fn rule_fingerprint(rule: &RootRule) -> String {
    let mut seen = rule.text.clone();
    for alias in &rule.aliases {
        seen.push('\n');
        seen.push_str(alias);
    }
    pim_common::chain::hex(&Sha256::digest(seen.as_bytes())[..RULE_FINGERPRINT_BYTES])
}

/// Whether a sudoers subject gets root only through a managed group (or is root itself).
fn through_pim(who: &Who, groups: &BTreeSet<&str>, gids: &BTreeSet<u32>) -> bool {
    match who {
        Who::Group(name) => groups.contains(name.as_str()),
        Who::Gid(gid) => gids.contains(gid),
        // Root needs no rule to be root.
        Who::User(name) => name == "root",
        Who::Uid(uid) => *uid == 0,
        Who::All | Who::NonUnixGroup(_) | Who::Netgroup(_) => false,
    }
}

fn sudoers_outside_pim(facts: &Facts, out: &mut Evaluation) {
    let Some(rules) = &facts.host.sudoers else {
        return;
    };
    // Files pim cannot read (the view is then not judged) and files sudo refuses.
    let problems = [
        (
            &facts.host.sudoers_unreadable,
            "unreadable",
            "pim cannot read this sudoers file",
            "so it cannot tell what sudo grants: the sudoers alerts stay as they are until it can",
        ),
        (
            &facts.host.sudoers_refused,
            "refused",
            "sudo refuses this sudoers file",
            "it grants nothing as it is, but someone put it there",
        ),
    ];
    for (files, tag, what, meaning) in problems {
        for (path, why) in files {
            let file = pim_common::text::escape(&path.display().to_string());
            let why = pim_common::text::escape(why);
            out.findings.push(Finding::new(
                AlertKind::SudoersOutsidePim,
                &[&file, tag],
                "",
                "",
                format!("{file}: {what} ({why}); {meaning}"),
            ));
        }
    }
    if facts.host.sudoers_unreadable.is_empty() {
        out.judged.insert(AlertKind::SudoersOutsidePim);
    }
    for line in &facts.host.sudoers_unparsed {
        let file = pim_common::text::escape(&line.file.display().to_string());
        let fingerprint =
            pim_common::chain::hex(&Sha256::digest(line.text.as_bytes())[..RULE_FINGERPRINT_BYTES]);
        out.findings.push(Finding::new(
            AlertKind::SudoersOutsidePim,
            &[&file, "unparsed", &fingerprint],
            "",
            "",
            format!(
                "{file}:{}: a sudoers line pim cannot read (it may give root): {}",
                line.line,
                pim_common::text::escape(&line.text)
            ),
        ));
    }
    let managed = managed_groups(facts);
    let groups: BTreeSet<&str> = managed.keys().copied().collect();
    let gids: BTreeSet<u32> = groups
        .iter()
        .filter_map(|g| facts.host.gids.get(*g).copied())
        .collect();
    for rule in rules {
        // The groups pim manages (or every group) it lets commands run with, without pim.
        let managed_given: Vec<String> = rule
            .groups
            .iter()
            .filter(|g| match g {
                Who::All => true,
                Who::Group(name) => groups.contains(name.as_str()),
                Who::Gid(gid) => gids.contains(gid),
                _ => false,
            })
            .map(|g| match g {
                Who::All => "ALL".to_string(),
                Who::Group(name) => name.clone(),
                other => other.to_string(),
            })
            .collect();
        let gives = match (rule.root, managed_given.is_empty()) {
            (true, true) => "root".to_string(),
            (true, false) => format!("root and group {}", managed_given.join(", ")),
            (false, false) => format!("group {} (sudo -g)", managed_given.join(", ")),
            (false, true) => continue,
        };
        let file = pim_common::text::escape(&rule.file.display().to_string());
        let fingerprint = rule_fingerprint(rule);
        for who in rule.who.iter().filter(|w| !through_pim(w, &groups, &gids)) {
            let subject = who.to_string();
            let user = match who {
                Who::User(name) => name.as_str(),
                _ => "",
            };
            out.findings.push(Finding::new(
                AlertKind::SudoersOutsidePim,
                &[&file, &subject, &fingerprint],
                user,
                "",
                format!(
                    "{file}:{}: sudoers gives {gives} to {subject} other than through a group \
                     pim manages: {}",
                    rule.line,
                    pim_common::text::escape(&rule.text)
                ),
            ));
        }
    }
}

/// A `break-glass-used` finding: `user`, permanent in `role`, passed the PAM check for
/// `group`.
pub fn break_glass(user: &str, role: &str, group: &str) -> Finding {
    Finding::new(
        AlertKind::BreakGlassUsed,
        &[group, user],
        user,
        role,
        format!(
            "{user}, a permanent member of role {role}, passed the PAM check for group {group} \
             without a grant"
        ),
    )
}

/// Where an alert on record stands, as far as planning goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Open,
    /// Dismissed, and its cause has not been seen to go since.
    Dismissed,
}

/// An alert on record that still holds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub id: i64,
    pub kind: AlertKind,
    pub key: String,
    pub standing: Standing,
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Raise(Finding),
    /// An open alert whose cause is gone.
    Resolve {
        id: i64,
    },
    /// A dismissed alert whose cause is gone: its key is free again.
    Release {
        id: i64,
    },
}

/// What turns `current` (the alerts that hold their keys) into what `evaluation` found: a
/// finding without an alert is raised; an alert of a judged kind without a finding is resolved
/// (open) or released (dismissed). Kinds not judged are left alone, and so is
/// `break-glass-used` (see [`AlertKind::resolves`]).
pub fn plan(current: &[Current], evaluation: &Evaluation) -> Vec<Change> {
    let held: BTreeSet<&str> = current.iter().map(|c| c.key.as_str()).collect();
    let found: BTreeSet<&str> = evaluation.findings.iter().map(|f| f.key.as_str()).collect();
    let mut changes: Vec<Change> = evaluation
        .findings
        .iter()
        .filter(|f| !held.contains(f.key.as_str()))
        .map(|f| Change::Raise(f.clone()))
        .collect();
    for alert in current {
        let judged = alert.kind.resolves() && evaluation.judged.contains(&alert.kind);
        if judged && !found.contains(alert.key.as_str()) {
            changes.push(match alert.standing {
                Standing::Open => Change::Resolve { id: alert.id },
                Standing::Dismissed => Change::Release { id: alert.id },
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests;
