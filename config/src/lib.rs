//! `pim.toml`: the configuration model (`Config`, `Role`, `Principal`), its defaults and its
//! checks, in one crate that both `pimd` (which runs on it) and `pim doctor` (which judges the
//! host with it) use, so that the two never read the file differently.
//!
//! The document is first parsed into a span-preserving table, then every section and role is
//! read key by key, so that one pass reports every problem (as `pimd --check-config` must)
//! with the dotted key and line it concerns. Serde's derive would stop at the first wrong key.
//!
//! Every role key is declared once, in the `role_keys!` table below: its name, the `Role`
//! field it fills, its type, how it is read (with its cap or check), its default and its
//! documentation. Checks across keys (a default above the maximum, approval without
//! approvers) follow the table in `Checker::role`.
#![forbid(unsafe_code)]

mod audit;
pub use audit::AuditConfig;
pub mod conninfo;
mod fleet;
pub mod fleet_files;
pub use fleet::{parse_policy, FleetConfig, HostScope, DEFAULT_MAX_STALENESS_SECS};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use pim_common::{duration, text};
use regex::{Regex, RegexBuilder};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

mod review;
pub use review::{ReviewDefault, Reviewer, DEFAULT_REVIEW_DURATION_SECS};
mod alerts;
pub use alerts::AlertsConfig;

pub const DEFAULT_PATH: &str = "/etc/pim/pim.toml";
/// No role grants its group for longer than a day.
pub const MAX_ROLE_SECS: u64 = 86400;
/// An undecided request lapses within a week: approvers should not find month-old requests.
pub const MAX_REQUEST_TTL_SECS: u64 = 7 * 86400;
/// Bound on the other durations: far above any sane value, and it keeps timestamp arithmetic
/// (now + duration as i64) clear of overflow.
const MAX_OTHER_SECS: u64 = 365 * 86400;

/// Longest `ticket_pattern` accepted, in bytes.
pub const MAX_TICKET_PATTERN_BYTES: usize = 256;
/// Bound on a compiled ticket pattern; tickets are short, so a pattern needing more is a mistake.
const TICKET_REGEX_SIZE_LIMIT: usize = 1 << 20;
const MAX_DESCRIPTION_BYTES: usize = 256;
const MAX_ISSUER_BYTES: usize = 64;

/// The longest a duration key may be, as messages show it.
struct Cap {
    secs: u64,
    text: &'static str,
    why: &'static str,
}

const ROLE_CAP: Cap = Cap {
    secs: MAX_ROLE_SECS,
    text: "24h",
    why: "for any role",
};
const REQUEST_TTL_CAP: Cap = Cap {
    secs: MAX_REQUEST_TTL_SECS,
    text: "7d",
    why: "for an undecided request",
};
/// A process that ignores SIGTERM is killed this long after it, at most.
pub const MAX_END_GRACE_SECS: u64 = 300;
const END_GRACE_CAP: Cap = Cap {
    secs: MAX_END_GRACE_SECS,
    text: "5m",
    why: "for end_grace",
};
const OTHER_CAP: Cap = Cap {
    secs: MAX_OTHER_SECS,
    text: "365d",
    why: "for any duration",
};

const DEFAULT_DATABASE: &str = "/var/lib/pim/pim.db";
const DEFAULT_NOTIFY_TIMEOUT_SECS: u64 = 10;
const DEFAULT_CALLS_PER_MINUTE: u32 = 30;
/// A one-off review shorter than an hour would apply its default before anyone could look.
const DEFAULT_MIN_REVIEW_DURATION_SECS: u64 = 3600;
/// More than this a minute is no longer a bound on a loop.
const MAX_CALLS_PER_MINUTE: u32 = 10_000;
const DEFAULT_ISSUER: &str = "pim";
const DEFAULT_MAX_FAILURES: u32 = 5;
const DEFAULT_FAILURE_WINDOW_SECS: u64 = 5 * 60;
const DEFAULT_LOCKOUT_SECS: u64 = 15 * 60;
const DEFAULT_MAX_DURATION_SECS: u64 = 8 * 3600;
/// The default duration is this, or max_duration when that is shorter.
const DEFAULT_DURATION_SECS: u64 = 3600;
const DEFAULT_MIN_JUSTIFICATION: u32 = 10;
const DEFAULT_REQUEST_TTL_SECS: u64 = 86400;
const DEFAULT_MAX_ACTIVE_ASSIGNMENT_SECS: u64 = 30 * 86400;
const DEFAULT_END_GRACE_SECS: u64 = 10;
const DEFAULT_WARN_BEFORE_SECS: [u64; 2] = [300, 60];
/// More warnings than this before one end would only be noise.
const MAX_WARNINGS: usize = 8;

const TOP_KEYS: &[&str] = &["daemon", "mfa", "audit", "fleet", "roles", "alerts"];
const DAEMON_KEYS: &[&str] = &[
    "database",
    "admins",
    "auditors",
    "notify_command",
    "notify_timeout",
    "calls_per_minute",
    "min_review_duration",
];
const MFA_KEYS: &[&str] = &["issuer", "max_failures", "failure_window", "lockout"];

/// Someone named in the configuration: a user (`alice`) or every member of a group (`%ops`),
/// as in sudoers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    User(String),
    Group(String),
}

impl Principal {
    pub fn parse(s: &str) -> Result<Principal, String> {
        match s.strip_prefix('%') {
            Some(group) => {
                text::check_name("group", group)?;
                Ok(Principal::Group(group.to_string()))
            }
            None => {
                text::check_name("user", s)?;
                Ok(Principal::User(s.to_string()))
            }
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(name) => f.write_str(name),
            Principal::Group(name) => write!(f, "%{name}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub database: PathBuf,
    pub admins: Vec<Principal>,
    pub auditors: Vec<Principal>,
    /// Program and arguments run on events; empty when there is none.
    pub notify_command: Vec<String>,
    pub notify_timeout_secs: u64,
    /// Writing calls of one kind one user may make a minute (see `throttle`).
    pub calls_per_minute: u32,
    /// The shortest one-off access review one may start with `--duration`: reviewers (and
    /// the reviewed) get at least this long before its default applies.
    pub min_review_duration_secs: u64,
}

#[derive(Debug, Clone)]
pub struct MfaConfig {
    pub issuer: String,
    pub max_failures: u32,
    pub failure_window_secs: u64,
    pub lockout_secs: u64,
}

/// What becomes of a user's processes that still carry the group when a grant ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnEnd {
    /// SIGTERM, then SIGKILL after `end_grace`, until none is left.
    #[default]
    Terminate,
    /// Left running (the PAM module still refuses sudo).
    Keep,
}

/// Declares every key of a `[roles.NAME]` table, one line each:
///
/// ```text
/// /// doc line (becomes the field's documentation)
/// key => field: Type = default, reader(cap or check);
/// ```
///
/// and makes of them the `Role` struct (the role's `name`, then one field per key), the list
/// of known keys (for "unknown key" errors), the reading of every key with its `Checker`
/// reader, and the role with each absent key's default. Behaviour across keys (a defaulted
/// group, default against max duration, the approval keys) is in `Checker::role`.
macro_rules! role_keys {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident => $field:ident: $ty:ty = $default:expr, $reader:ident($($arg:expr),*);
    )*) => {
        /// One role as the configuration defines it.
        #[derive(Debug, Clone)]
        pub struct Role {
            /// The name of its `[roles.NAME]` table, used on the command line.
            pub name: String,
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        /// The keys a role table may hold, in the order the table declares them.
        const ROLE_KEYS: &[&str] = &[$(stringify!($key)),*];

        /// Each key of one role table as read: absent, wrong (reported), or its value.
        struct RoleKeys {
            $($field: Read<$ty>,)*
        }

        impl Checker<'_> {
            fn role_keys(&mut self, s: &Section<'_, '_>) -> RoleKeys {
                RoleKeys {
                    $($field: self.$reader(s, stringify!($key) $(, $arg)*),)*
                }
            }
        }

        impl RoleKeys {
            /// The role with the declared default for every absent key. A wrong key gets the
            /// type's zero value: it was reported, so the configuration is discarded.
            fn role(&self, name: &str) -> Role {
                Role {
                    name: name.to_string(),
                    $($field: value_or(&self.$field, $default).unwrap_or_default(),)*
                }
            }
        }
    };
}

role_keys! {
    /// The Unix group granted; when absent, the role's name.
    group => group: String = String::new(), checked_string(check_group);
    /// Shown by `pim roles`.
    description => description: String = String::new(), checked_string(check_description);
    /// Who may activate the role without an assignment (users and `%groups`).
    eligible => eligible: Vec<Principal> = Vec::new(), principals();
    /// Members PIM never adds nor removes and never blocks.
    permanent => permanent: Vec<Principal> = Vec::new(), principals();
    /// The longest grant (default 8h; no role above 24h).
    max_duration => max_duration_secs: u64 = DEFAULT_MAX_DURATION_SECS, duration(&ROLE_CAP);
    /// A grant's length when none is asked for: 1h, or `max_duration` when that is shorter.
    default_duration => default_duration_secs: u64 = DEFAULT_DURATION_SECS, duration(&ROLE_CAP);
    /// Whether activation asks for a TOTP code.
    require_mfa => require_mfa: bool = true, boolean();
    /// Whether activation asks for a reason.
    require_justification => require_justification: bool = true, boolean();
    /// The shortest reason accepted, in characters.
    min_justification => min_justification: u32 = DEFAULT_MIN_JUSTIFICATION, integer(0..=text::MAX_REASON_BYTES as u32);
    /// Whether activation asks for a ticket.
    require_ticket => require_ticket: bool = false, boolean();
    /// What a ticket must look like; compiled as a full match (`^(?:pattern)$`), whatever
    /// anchors the file has.
    ticket_pattern => ticket_pattern: Option<Regex> = None, ticket_pattern();
    /// Whether an activation waits for approvers.
    require_approval => require_approval: bool = false, boolean();
    /// Who may approve (users and `%groups`).
    approvers => approvers: Vec<Principal> = Vec::new(), principals();
    /// How many distinct approvers must approve.
    approvals_required => approvals_required: u32 = 1, integer(1..=u32::MAX);
    /// How long a request waits for its approvals before it lapses (at most 7d).
    request_ttl => request_ttl_secs: u64 = DEFAULT_REQUEST_TTL_SECS, duration(&REQUEST_TTL_CAP);
    /// Who governs the role (users and `%groups`): may assign, unassign, grant, revoke, review
    /// and decide renewals for this role only, as admins may for every role.
    owners => owners: Vec<Principal> = Vec::new(), principals();
    /// How often a recurring access review of the role starts (default: none).
    review_every => review_every_secs: Option<u64> = None, optional_duration(&OTHER_CAP);
    /// How long reviewers have to decide (default 14d).
    review_duration => review_duration_secs: u64 = DEFAULT_REVIEW_DURATION_SECS, duration(&OTHER_CAP);
    /// Who decides a review's items: "self", "owners", "admins", users and `%groups`.
    reviewers => reviewers: Vec<Reviewer> = vec![Reviewer::Owners], reviewers();
    /// What an undecided item gets at the review's end: "remove", "keep" or "recommendation".
    review_default => review_default: ReviewDefault = ReviewDefault::Remove, review_default();
    /// The longest eligible assignment, from its start (or from now, when that is later) to
    /// its end; `None` ("permanent", the default): no cap, and an assignment may have no end.
    max_eligible_assignment => max_eligible_assignment_secs: Option<u64> = None, duration_or_permanent(&OTHER_CAP);
    /// The longest active assignment, measured the same way (default 30d); `None` only where
    /// the file says "permanent".
    max_active_assignment => max_active_assignment_secs: Option<u64> = Some(DEFAULT_MAX_ACTIVE_ASSIGNMENT_SECS), duration_or_permanent(&OTHER_CAP);
    /// What becomes of the user's processes that carry the group at a grant's end.
    on_end => on_end: OnEnd = OnEnd::Terminate, on_end();
    /// How long those processes have between SIGTERM and SIGKILL (at most 5m).
    end_grace => end_grace_secs: u64 = DEFAULT_END_GRACE_SECS, duration(&END_GRACE_CAP);
    /// Lead times of the warnings before a grant's end, longest first, without repeats.
    warn_before => warn_before_secs: Vec<u64> = DEFAULT_WARN_BEFORE_SECS.to_vec(), durations(&ROLE_CAP, MAX_WARNINGS);
    /// Where the role applies in a fleet: host names and `tag:NAME`s (default: every host).
    hosts => hosts: Vec<HostScope> = Vec::new(), host_scopes();
}

impl Role {
    /// The ticket pattern as the administrator wrote it, without the full-match wrapping.
    pub fn ticket_pattern_text(&self) -> Option<&str> {
        self.ticket_pattern.as_ref().map(|re| {
            let wrapped = re.as_str();
            wrapped
                .strip_prefix("^(?:")
                .and_then(|s| s.strip_suffix(")$"))
                .unwrap_or(wrapped)
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub mfa: MfaConfig,
    pub audit: AuditConfig,
    pub roles: BTreeMap<String, Role>,
    /// `[fleet]`: this host is one of a fleet (`None`: a host on its own).
    pub fleet: Option<FleetConfig>,
    pub alerts: AlertsConfig,
}

impl Config {
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }
}

/// Looks users and groups up so that lists can be checked; the daemon passes the real NSS one.
pub trait Directory {
    fn user_exists(&self, name: &str) -> bool;
    fn group_exists(&self, name: &str) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with (or suspicious in) a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The file, as given to `parse` or `load`.
    pub source: String,
    /// Dotted key, e.g. `roles.admin.max_duration`; empty for syntax errors and unreadable files.
    pub key: String,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

/// Parses and validates. Returns the config only if there is no Error-severity problem; always
/// returns every problem found (errors and warnings), in file order.
pub fn parse(
    text: &str,
    source: &str,
    directory: &dyn Directory,
) -> (Option<Config>, Vec<Problem>) {
    parse_as(text, source, directory, fleet::Kind::Host)
}

/// [`parse`] of a host's file or of a fleet's policy ([`parse_policy`]).
fn parse_as(
    text: &str,
    source: &str,
    directory: &dyn Directory,
    kind: fleet::Kind,
) -> (Option<Config>, Vec<Problem>) {
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    let mut checker = Checker {
        text,
        source,
        directory,
        kind,
        problems: Vec::new(),
        min_review_duration_secs: DEFAULT_MIN_REVIEW_DURATION_SECS,
    };
    let config = checker.document(doc.get_ref());

    // Where TOML could not parse a line, the recovered value is made up: report only the
    // syntax error there, not what validation thinks of the made-up value.
    let mut problems = std::mem::take(&mut checker.problems);
    let mut broken_lines = HashSet::new();
    for error in &syntax_errors {
        let span = error.span();
        broken_lines.extend(span.as_ref().map(|s| checker.line(s)));
        let mut message = one_line(error.message());
        // Some messages ("duplicate key") only make sense with the text they point at.
        let snippet = span
            .as_ref()
            .and_then(|s| text.get(s.clone()))
            .unwrap_or("");
        if !snippet.is_empty() && snippet.len() <= 64 && !snippet.contains('\n') {
            message.push_str(&format!(": `{}`", pim_common::text::escape(snippet)));
        }
        checker.report(Severity::Error, String::new(), span.as_ref(), message);
    }
    problems.retain(|p| !p.line.is_some_and(|line| broken_lines.contains(&line)));
    problems.append(&mut checker.problems);
    // Stable, so problems on one line keep the order they were found in; file-wide ones last.
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));

    let failed = problems.iter().any(|p| p.severity == Severity::Error);
    ((!failed).then_some(config), problems)
}

/// Reads and parses the file at `path`; an unreadable file is one Error problem.
pub fn load(path: &Path, directory: &dyn Directory) -> (Option<Config>, Vec<Problem>) {
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &source, directory),
        Err(e) => {
            let problem = Problem {
                severity: Severity::Error,
                source,
                key: String::new(),
                line: None,
                message: format!("cannot read the configuration: {e}"),
            };
            (None, vec![problem])
        }
    }
}

/// Marks a key whose value was present but wrong; the problem is already reported.
struct Reported;

/// A key as read: `Ok(None)` when absent (the default applies).
type Read<T> = Result<Option<Spanned<T>>, Reported>;

/// The key's value, or `default` when absent; `None` when it was wrong, so that checks across
/// keys do not pile more problems onto one already reported. Wherever a `None` is later
/// replaced by a default, an error exists and the config is discarded.
fn value_or<T: Clone>(read: &Read<T>, default: T) -> Option<T> {
    match read {
        Ok(Some(value)) => Some(value.get_ref().clone()),
        Ok(None) => Some(default),
        Err(Reported) => None,
    }
}

/// `written` as seconds, or why it is not a duration of at most `cap`.
fn capped_duration(written: &str, cap: &Cap) -> Result<u64, String> {
    match duration::parse(written) {
        Ok(secs) if secs <= cap.secs => Ok(secs),
        Ok(_) => Err(format!(
            "{} is over the {} cap {}",
            text::escape(written.trim()),
            cap.text,
            cap.why
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Where a key that was read is written.
fn span_of<T>(read: &Read<T>) -> Option<Range<usize>> {
    match read {
        Ok(Some(value)) => Some(value.span()),
        Ok(None) | Err(Reported) => None,
    }
}

/// One table of the document, named by its dotted prefix (`daemon`, `roles.admin`).
struct Section<'t, 'i> {
    prefix: String,
    /// `None` when the table is absent (or not a table): every key then takes its default.
    table: Option<&'t DeTable<'i>>,
    /// Where the table starts (its header or name), for problems about it as a whole.
    span: Range<usize>,
}

impl<'t, 'i> Section<'t, 'i> {
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            key_segment(name)
        } else {
            format!("{}.{}", self.prefix, key_segment(name))
        }
    }

    fn get(&self, name: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.table.and_then(|t| t.get(name))
    }
}

/// A key as it would be written in TOML: bare when it can be, else quoted (and escaped, since
/// it came from the file and goes to a terminal).
fn key_segment(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", text::escape(name))
    }
}

/// Folds multi-line library messages (TOML, regex) into one line per problem.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn integer_value(value: &DeValue<'_>) -> Option<i64> {
    let int = value.as_integer()?;
    i64::from_str_radix(int.as_str(), int.radix()).ok()
}

struct Checker<'a> {
    text: &'a str,
    source: &'a str,
    directory: &'a dyn Directory,
    kind: fleet::Kind,
    problems: Vec<Problem>,
    /// `[daemon] min_review_duration`, read before the roles: a role's `review_duration`
    /// shorter than it is worth a warning.
    min_review_duration_secs: u64,
}

impl Checker<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn report(
        &mut self,
        severity: Severity,
        key: String,
        span: Option<&Range<usize>>,
        message: String,
    ) {
        let line = span.map(|s| self.line(s));
        self.problems.push(Problem {
            severity,
            source: self.source.to_string(),
            key,
            line,
            message,
        });
    }

    fn error(&mut self, key: String, span: &Range<usize>, message: impl Into<String>) {
        self.report(Severity::Error, key, Some(span), message.into());
    }

    fn warn(&mut self, key: String, span: &Range<usize>, message: impl Into<String>) {
        self.report(Severity::Warning, key, Some(span), message.into());
    }

    fn check_keys(&mut self, section: &Section<'_, '_>, known: &[&str]) {
        let Some(table) = section.table else { return };
        for (key, _) in table.iter() {
            if !known.contains(&key.get_ref().as_ref()) {
                self.error(
                    section.key(key.get_ref()),
                    &key.span(),
                    format!("unknown key; the keys here are {}", known.join(", ")),
                );
            }
        }
    }

    /// The sub-table `name` of `parent`; a value of another type is an error.
    fn section<'t, 'i>(&mut self, parent: &Section<'t, 'i>, name: &str) -> Section<'t, 'i> {
        let key = parent.key(name);
        let Some(value) = parent.get(name) else {
            return Section {
                prefix: key,
                table: None,
                span: parent.span.clone(),
            };
        };
        let table = value.get_ref().as_table();
        if table.is_none() {
            self.error(
                key.clone(),
                &value.span(),
                format!(
                    "expected a table [{key}], found {}",
                    value.get_ref().type_str()
                ),
            );
        }
        Section {
            prefix: key,
            table,
            span: value.span(),
        }
    }

    /// Reads `name` with `extract`; a value it does not accept is a type error.
    fn typed<T>(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        expected: &str,
        extract: impl FnOnce(&DeValue<'_>) -> Option<T>,
    ) -> Read<T> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        match extract(value.get_ref()) {
            Some(v) => Ok(Some(Spanned::new(value.span(), v))),
            None => {
                let found = value.get_ref().type_str();
                self.error(
                    section.key(name),
                    &value.span(),
                    format!("expected {expected}, found {found}"),
                );
                Err(Reported)
            }
        }
    }

    /// Runs `check` on a value that was read; its complaint is an error at the value.
    fn valid<T>(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        read: Read<T>,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> Read<T> {
        if let Ok(Some(value)) = &read {
            if let Err(message) = check(value.get_ref()) {
                self.error(section.key(name), &value.span(), message);
                return Err(Reported);
            }
        }
        read
    }

    fn string(&mut self, section: &Section<'_, '_>, name: &str) -> Read<String> {
        self.typed(section, name, "a string", |v| {
            v.as_str().map(str::to_string)
        })
    }

    /// A string that `check` accepts.
    fn checked_string(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Read<String> {
        let read = self.string(section, name);
        self.valid(section, name, read, |value| check(value))
    }

    /// A ticket pattern, compiled (see `compile_ticket_pattern`).
    /// `"terminate"` or `"keep"`.
    fn on_end(&mut self, section: &Section<'_, '_>, name: &str) -> Read<OnEnd> {
        let Some(written) = self.string(section, name)? else {
            return Ok(None);
        };
        let span = written.span();
        match written.get_ref().as_str() {
            "terminate" => Ok(Some(Spanned::new(span, OnEnd::Terminate))),
            "keep" => Ok(Some(Spanned::new(span, OnEnd::Keep))),
            other => {
                let message = format!(
                    "'{}' is not a choice; write \"terminate\" (the default) or \"keep\"",
                    text::escape(other)
                );
                self.error(section.key(name), &span, message);
                Err(Reported)
            }
        }
    }

    fn ticket_pattern(&mut self, section: &Section<'_, '_>, name: &str) -> Read<Option<Regex>> {
        let pattern = match self.string(section, name)? {
            Some(pattern) => pattern,
            None => return Ok(None),
        };
        match compile_ticket_pattern(pattern.get_ref()) {
            Ok(regex) => Ok(Some(Spanned::new(pattern.span(), Some(regex)))),
            Err(message) => {
                self.error(section.key(name), &pattern.span(), message);
                Err(Reported)
            }
        }
    }

    fn boolean(&mut self, section: &Section<'_, '_>, name: &str) -> Read<bool> {
        self.typed(section, name, "true or false", |v| v.as_bool())
    }

    fn integer(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        bounds: RangeInclusive<u32>,
    ) -> Read<u32> {
        let read = self.typed(section, name, "an integer", integer_value);
        let value = match read {
            Ok(Some(value)) => value,
            Ok(None) => return Ok(None),
            Err(reported) => return Err(reported),
        };
        let span = value.span();
        match u32::try_from(value.into_inner()) {
            Ok(n) if bounds.contains(&n) => Ok(Some(Spanned::new(span, n))),
            _ => {
                let message = if *bounds.end() == u32::MAX {
                    format!("must be at least {}", bounds.start())
                } else {
                    format!("must be between {} and {}", bounds.start(), bounds.end())
                };
                self.error(section.key(name), &span, message);
                Err(Reported)
            }
        }
    }

    /// A duration string such as "8h", at most `cap`.
    fn duration(&mut self, section: &Section<'_, '_>, name: &str, cap: &Cap) -> Read<u64> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        let key = section.key(name);
        let span = value.span();
        let Some(written) = value.get_ref().as_str() else {
            let mut message = format!(
                "expected a duration string such as \"8h\", found {}",
                value.get_ref().type_str()
            );
            if let Some(n) = integer_value(value.get_ref()) {
                message.push_str(&format!("; write it with a unit, e.g. \"{n}s\""));
            }
            self.error(key, &span, message);
            return Err(Reported);
        };
        match capped_duration(written, cap) {
            Ok(secs) => Ok(Some(Spanned::new(span, secs))),
            Err(message) => {
                self.error(key, &span, message);
                Err(Reported)
            }
        }
    }

    /// The value of `name` and its items, if it is there; a value that is not a list is an
    /// error (`example` completes "expected a list ...").
    #[allow(clippy::type_complexity)]
    fn list<'t, 'i>(
        &mut self,
        section: &Section<'t, 'i>,
        name: &str,
        example: &str,
    ) -> Result<Option<(&'t Spanned<DeValue<'i>>, &'t [Spanned<DeValue<'i>>])>, Reported> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        match value.get_ref().as_array() {
            Some(items) => Ok(Some((value, items))),
            None => {
                let found = value.get_ref().type_str();
                self.error(
                    section.key(name),
                    &value.span(),
                    format!("expected a list {example}, found {found}"),
                );
                Err(Reported)
            }
        }
    }

    /// A duration as [`Self::duration`] reads it, or `"permanent"` (`None`: no cap).
    fn duration_or_permanent(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        cap: &Cap,
    ) -> Read<Option<u64>> {
        if let Some(value) = section.get(name) {
            if value.get_ref().as_str().map(str::trim) == Some("permanent") {
                return Ok(Some(Spanned::new(value.span(), None)));
            }
        }
        Ok(self
            .duration(section, name, cap)?
            .map(|secs| Spanned::new(secs.span(), Some(secs.into_inner()))))
    }

    /// A list of at most `most` duration strings, each at most `cap`; longest first, each
    /// once.
    fn durations(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        cap: &Cap,
        most: usize,
    ) -> Read<Vec<u64>> {
        let Some((value, items)) =
            self.list(section, name, "of durations such as [\"5m\", \"1m\"]")?
        else {
            return Ok(None);
        };
        let key = section.key(name);
        if items.len() > most {
            self.error(
                key,
                &value.span(),
                format!(
                    "lists {} durations; at most {most} are allowed",
                    items.len()
                ),
            );
            return Err(Reported);
        }
        let mut secs = Vec::new();
        let mut wrong = false;
        for item in items {
            let span = item.span();
            let parsed = match item.get_ref().as_str() {
                None => Err(format!(
                    "expected a duration string such as \"5m\", found {}",
                    item.get_ref().type_str()
                )),
                Some(written) => capped_duration(written, cap),
            };
            match parsed {
                Ok(n) => secs.push(n),
                Err(message) => {
                    self.error(key.clone(), &span, message);
                    wrong = true;
                }
            }
        }
        if wrong {
            Err(Reported)
        } else {
            secs.sort_unstable_by(|a, b| b.cmp(a));
            secs.dedup();
            Ok(Some(Spanned::new(value.span(), secs)))
        }
    }

    /// A list of users and `%groups`. Bad names are errors; names the directory does not know
    /// are warnings (the account may come later, e.g. from LDAP).
    fn principals(&mut self, section: &Section<'_, '_>, name: &str) -> Read<Vec<Principal>> {
        self.name_list(
            section,
            name,
            "such as [\"alice\", \"%ops\"]",
            "a user or %group name",
            Principal::parse,
            |p| Some(p),
        )
    }

    /// A list of strings each of which `parse` makes a `T` (e.g. a principal); the users and
    /// groups among them (`principal`) that the directory does not know are warnings.
    pub(crate) fn name_list<T>(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        example: &str,
        what: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        principal: fn(&T) -> Option<&Principal>,
    ) -> Read<Vec<T>> {
        let Some((value, items)) = self.list(section, name, example)? else {
            return Ok(None);
        };
        let key = section.key(name);
        let mut parsed = Vec::new();
        let mut wrong = false;
        for item in items {
            let span = item.span();
            let Some(written) = item.get_ref().as_str() else {
                let found = item.get_ref().type_str();
                self.error(
                    key.clone(),
                    &span,
                    format!("expected {what} as a string, found {found}"),
                );
                wrong = true;
                continue;
            };
            match parse(written) {
                Ok(value) => {
                    let unknown = match principal(&value) {
                        Some(Principal::User(user)) => (!self.directory.user_exists(user))
                            .then(|| format!("no user '{user}' on this host")),
                        Some(Principal::Group(group)) => (!self.directory.group_exists(group))
                            .then(|| format!("no group '{group}' on this host")),
                        None => None,
                    };
                    if let Some(message) = unknown {
                        self.warn(key.clone(), &span, message);
                    }
                    parsed.push(value);
                }
                Err(message) => {
                    self.error(key.clone(), &span, message);
                    wrong = true;
                }
            }
        }
        if wrong {
            Err(Reported)
        } else {
            Ok(Some(Spanned::new(value.span(), parsed)))
        }
    }

    /// A program to run: a string (one absolute path) or an argv array whose first element is
    /// an absolute path. No shell is involved, so a string is never split at spaces.
    fn command(&mut self, section: &Section<'_, '_>, name: &str) -> Read<Vec<String>> {
        let Some(value) = section.get(name) else {
            return Ok(None);
        };
        let key = section.key(name);
        let argv = match value.get_ref() {
            DeValue::String(program) => {
                if program.contains(char::is_whitespace) {
                    self.warn(
                        key.clone(),
                        &value.span(),
                        "a string is one program path and is not split at spaces; \
                         to pass arguments write a list such as [\"/usr/local/bin/notify\", \"--quiet\"]",
                    );
                }
                vec![program.to_string()]
            }
            DeValue::Array(items) => {
                let mut argv = Vec::new();
                let mut wrong = false;
                for item in items {
                    match item.get_ref().as_str() {
                        Some(arg) => argv.push(arg.to_string()),
                        None => {
                            let found = item.get_ref().type_str();
                            self.error(
                                key.clone(),
                                &item.span(),
                                format!("expected each argument as a string, found {found}"),
                            );
                            wrong = true;
                        }
                    }
                }
                if wrong {
                    return Err(Reported);
                }
                argv
            }
            other => {
                let found = other.type_str();
                self.error(
                    key,
                    &value.span(),
                    format!(
                        "expected a program path or a list of program and arguments, found {found}"
                    ),
                );
                return Err(Reported);
            }
        };
        let read = Ok(Some(Spanned::new(value.span(), argv)));
        self.valid(section, name, read, |argv| {
            if let Some(program) = argv.first() {
                if !Path::new(program).is_absolute() {
                    return Err(format!(
                        "'{}' is not an absolute path; name the program by its full path",
                        text::escape(program)
                    ));
                }
            }
            argv.iter()
                .try_for_each(|arg| text::check("an argument", arg, usize::MAX))
        })
    }

    fn document(&mut self, doc: &DeTable<'_>) -> Config {
        let top = Section {
            prefix: String::new(),
            table: Some(doc),
            span: 0..0,
        };
        self.check_keys(&top, TOP_KEYS);
        let daemon = self.section(&top, "daemon");
        let mfa = self.section(&top, "mfa");
        let audit = self.section(&top, "audit");
        let fleet = self.section(&top, "fleet");
        let fleet = self.fleet(&fleet);
        self.fleet_split(&top, self.kind, fleet.is_some());
        let alerts = self.section(&top, "alerts");
        let daemon = self.daemon(&daemon);
        self.min_review_duration_secs = daemon.min_review_duration_secs;
        Config {
            daemon,
            mfa: self.mfa(&mfa),
            audit: self.audit(&audit),
            // A fleet host's roles are the policy's: none here, and no warning about that.
            roles: if fleet.is_some() && self.kind == fleet::Kind::Host {
                BTreeMap::new()
            } else {
                self.roles(&top)
            },
            fleet,
            alerts: self.alerts(&alerts),
        }
    }

    fn daemon(&mut self, s: &Section<'_, '_>) -> DaemonConfig {
        self.check_keys(s, DAEMON_KEYS);
        let database = self.string(s, "database");
        let database = self.valid(s, "database", database, |path| {
            if Path::new(path).is_absolute() {
                Ok(())
            } else {
                Err(format!("'{}' is not an absolute path", text::escape(path)))
            }
        });
        let admins = self.principals(s, "admins");
        let auditors = self.principals(s, "auditors");
        let notify_command = self.command(s, "notify_command");
        let notify_timeout = self.duration(s, "notify_timeout", &OTHER_CAP);
        let calls_per_minute = self.integer(s, "calls_per_minute", 1..=MAX_CALLS_PER_MINUTE);
        let min_review_duration = self.duration(s, "min_review_duration", &OTHER_CAP);
        DaemonConfig {
            database: PathBuf::from(
                value_or(&database, DEFAULT_DATABASE.to_string()).unwrap_or_default(),
            ),
            admins: value_or(&admins, Vec::new()).unwrap_or_default(),
            auditors: value_or(&auditors, Vec::new()).unwrap_or_default(),
            notify_command: value_or(&notify_command, Vec::new()).unwrap_or_default(),
            notify_timeout_secs: value_or(&notify_timeout, DEFAULT_NOTIFY_TIMEOUT_SECS)
                .unwrap_or_default(),
            calls_per_minute: value_or(&calls_per_minute, DEFAULT_CALLS_PER_MINUTE)
                .unwrap_or_default(),
            min_review_duration_secs: value_or(
                &min_review_duration,
                DEFAULT_MIN_REVIEW_DURATION_SECS,
            )
            .unwrap_or_default(),
        }
    }

    fn mfa(&mut self, s: &Section<'_, '_>) -> MfaConfig {
        self.check_keys(s, MFA_KEYS);
        let issuer = self.string(s, "issuer");
        let issuer = self.valid(s, "issuer", issuer, |issuer| {
            if issuer.is_empty() {
                return Err("is empty; authenticator apps show it to tell accounts apart".into());
            }
            text::check("the issuer", issuer, MAX_ISSUER_BYTES)?;
            if issuer.contains(':') {
                // ':' separates issuer from account in the otpauth label.
                return Err("must not contain ':'".into());
            }
            Ok(())
        });
        let max_failures = self.integer(s, "max_failures", 1..=u32::MAX);
        let failure_window = self.duration(s, "failure_window", &OTHER_CAP);
        let lockout = self.duration(s, "lockout", &OTHER_CAP);
        MfaConfig {
            issuer: value_or(&issuer, DEFAULT_ISSUER.to_string()).unwrap_or_default(),
            max_failures: value_or(&max_failures, DEFAULT_MAX_FAILURES).unwrap_or_default(),
            failure_window_secs: value_or(&failure_window, DEFAULT_FAILURE_WINDOW_SECS)
                .unwrap_or_default(),
            lockout_secs: value_or(&lockout, DEFAULT_LOCKOUT_SECS).unwrap_or_default(),
        }
    }

    fn roles(&mut self, top: &Section<'_, '_>) -> BTreeMap<String, Role> {
        let mut roles = BTreeMap::new();
        let section = self.section(top, "roles");
        let Some(table) = section.table else {
            if top.get("roles").is_some() {
                // Present but not a table: `section` reported it.
                return roles;
            }
            self.report(
                Severity::Warning,
                "roles".to_string(),
                None,
                "no roles defined; nobody can activate anything".to_string(),
            );
            return roles;
        };
        if table.is_empty() {
            self.warn(
                "roles".to_string(),
                &section.span,
                "no roles defined; nobody can activate anything",
            );
        }
        for (name, value) in table.iter() {
            let key = section.key(name.get_ref());
            let name_ok = match text::check_name("role name", name.get_ref()) {
                Ok(()) => true,
                Err(message) => {
                    self.error(key.clone(), &name.span(), message);
                    false
                }
            };
            let Some(role_table) = value.get_ref().as_table() else {
                let found = value.get_ref().type_str();
                self.error(
                    key.clone(),
                    &value.span(),
                    format!("expected a table [{key}], found {found}"),
                );
                continue;
            };
            let role_section = Section {
                prefix: key,
                table: Some(role_table),
                span: name.span(),
            };
            let role = self.role(name.get_ref(), name_ok, &role_section);
            roles.insert(name.get_ref().to_string(), role);
        }
        roles
    }

    fn role(&mut self, name: &str, name_ok: bool, s: &Section<'_, '_>) -> Role {
        self.check_keys(s, ROLE_KEYS);
        let keys = self.role_keys(s);
        let mut role = keys.role(name);

        // A defaulted group is the role's name, already checked (and reported) as such.
        let group_span = match &keys.group {
            Ok(Some(group)) => Some(group.span()),
            Ok(None) if name_ok => {
                role.group = name.to_string();
                Some(s.span.clone())
            }
            Ok(None) | Err(Reported) => None,
        };
        if let Some(span) = group_span {
            if !self.directory.group_exists(&role.group) {
                self.warn(
                    s.key("group"),
                    &span,
                    format!(
                        "no group '{}' on this host; create it before anyone activates this role",
                        role.group
                    ),
                );
            }
        }

        let max = value_or(&keys.max_duration_secs, DEFAULT_MAX_DURATION_SECS);
        match (&keys.default_duration_secs, max) {
            (Ok(Some(default)), Some(max)) if *default.get_ref() > max => self.error(
                s.key("default_duration"),
                &default.span(),
                format!(
                    "{} is longer than max_duration {}",
                    duration::format(*default.get_ref()),
                    duration::format(max)
                ),
            ),
            (Ok(None), _) => {
                role.default_duration_secs = DEFAULT_DURATION_SECS.min(role.max_duration_secs)
            }
            _ => {}
        }

        if let (Ok(Some(required)), Ok(Some(min))) =
            (&keys.require_justification, &keys.min_justification)
        {
            if !*required.get_ref() {
                self.warn(
                    s.key("min_justification"),
                    &min.span(),
                    "ignored: require_justification is false",
                );
            }
        }

        self.check_review(
            s,
            &keys.review_every_secs,
            &keys.review_duration_secs,
            &keys.reviewers,
            &keys.owners,
        );
        self.check_approval(
            s,
            &keys.require_approval,
            &keys.approvers,
            &keys.approvals_required,
            &keys.request_ttl_secs,
        );
        role
    }

    /// Approval without approvers, or more approvals than listed users, could never be granted;
    /// approval keys on a role without approval are ignored, which is worth a warning.
    fn check_approval(
        &mut self,
        s: &Section<'_, '_>,
        require_approval: &Read<bool>,
        approvers: &Read<Vec<Principal>>,
        approvals_required: &Read<u32>,
        request_ttl: &Read<u64>,
    ) {
        let required = match require_approval {
            Ok(Some(required)) => *required.get_ref(),
            // Absent means false: nothing to contradict.
            Ok(None) | Err(Reported) => return,
        };
        if !required {
            let present = [
                ("approvers", span_of(approvers)),
                ("approvals_required", span_of(approvals_required)),
                ("request_ttl", span_of(request_ttl)),
            ];
            for (name, span) in present {
                if let Some(span) = span {
                    self.warn(s.key(name), &span, "ignored: require_approval is false");
                }
            }
            return;
        }
        let approvers = match approvers {
            Ok(Some(approvers)) => approvers,
            Ok(None) => {
                let span = span_of(require_approval);
                self.error(
                    s.key("require_approval"),
                    &span.unwrap_or_else(|| s.span.clone()),
                    "approval is required but no approvers are listed; add approvers = [...]",
                );
                return;
            }
            Err(Reported) => return,
        };
        if approvers.get_ref().is_empty() {
            self.error(
                s.key("approvers"),
                &approvers.span(),
                "approval is required but the list is empty",
            );
            return;
        }
        // Group members cannot be counted here; only a list of plain users is checked.
        let mut users = BTreeSet::new();
        for principal in approvers.get_ref() {
            match principal {
                Principal::User(user) => users.insert(user),
                Principal::Group(_) => return,
            };
        }
        if let Ok(Some(needed)) = approvals_required {
            if *needed.get_ref() as usize > users.len() {
                self.error(
                    s.key("approvals_required"),
                    &needed.span(),
                    format!(
                        "{} distinct approvals are required but approvers names only {} {}",
                        needed.get_ref(),
                        users.len(),
                        if users.len() == 1 { "user" } else { "users" }
                    ),
                );
            }
        }
    }
}

fn check_group(group: &str) -> Result<(), String> {
    text::check_name("group", group)
}

fn check_description(description: &str) -> Result<(), String> {
    text::check("the description", description, MAX_DESCRIPTION_BYTES)
}

/// Compiles a ticket pattern as a full match, so that "INC[0-9]+" cannot be met by
/// "xINC1; anything".
fn compile_ticket_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() {
        return Err("is empty; leave ticket_pattern out to accept any ticket".into());
    }
    if pattern.len() > MAX_TICKET_PATTERN_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_TICKET_PATTERN_BYTES} are allowed",
            pattern.len()
        ));
    }
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(TICKET_REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            // Syntax errors come as a diagram of the pattern ending in "error: <what>"; the
            // diagram would show our wrapping, so keep only the last part.
            let text = e.to_string();
            let what = text
                .rsplit_once("error: ")
                .map_or(one_line(&text), |(_, what)| one_line(what));
            format!("is not a valid regular expression: {what}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeDirectory {
        users: &'static [&'static str],
        groups: &'static [&'static str],
    }

    impl Directory for FakeDirectory {
        fn user_exists(&self, name: &str) -> bool {
            self.users.contains(&name)
        }
        fn group_exists(&self, name: &str) -> bool {
            self.groups.contains(&name)
        }
    }

    const HOST: FakeDirectory = FakeDirectory {
        users: &["alice", "bob", "carol"],
        groups: &[
            "sudo",
            "ops",
            "secops",
            "pim-admins",
            "pim-auditors",
            "admin",
        ],
    };

    const SOURCE: &str = "/etc/pim/pim.toml";

    const SPEC_EXAMPLE: &str = r#"[daemon]
database = "/var/lib/pim/pim.db"
admins = ["%pim-admins"]         # may assign, revoke, reset MFA; root always may
auditors = ["%pim-auditors"]     # may read the whole audit log; admins too

[mfa]
issuer = "pim"                   # shown in authenticator apps, with user@host
max_failures = 5                 # wrong codes within failure_window ...
failure_window = "5m"
lockout = "15m"                  # ... lock that user's MFA for this long

[roles.admin]                    # the role's name, used on the command line
group = "sudo"                   # the Unix group granted; defaults to the role name
description = "Full administration through sudo"
eligible = ["alice", "%ops"]     # standing eligibility (more can be assigned at run time)
permanent = []                   # members PIM never adds nor removes and never blocks
max_duration = "2h"              # default 8h; no role above 24h
default_duration = "1h"
require_mfa = true               # default true
require_justification = true     # default true
min_justification = 10           # characters
require_ticket = false
ticket_pattern = "^(INC|CHG)[0-9]+$"
require_approval = true
approvers = ["bob", "%secops"]
approvals_required = 1           # N distinct approvers
request_ttl = "24h"              # an undecided request expires after this
"#;

    pub(crate) fn check(text: &str) -> (Option<Config>, Vec<Problem>) {
        parse(text, SOURCE, &HOST)
    }

    fn of(problems: &[Problem], severity: Severity) -> Vec<&Problem> {
        problems.iter().filter(|p| p.severity == severity).collect()
    }

    /// The config, asserting that it loaded without any problem at all.
    pub(crate) fn clean(text: &str) -> Config {
        let (config, problems) = check(text);
        assert!(problems.is_empty(), "{problems:#?}");
        config.expect("config")
    }

    /// (key, line) of every error, asserting that the config was refused.
    fn errors(text: &str) -> Vec<(String, Option<usize>)> {
        let (config, problems) = check(text);
        assert!(config.is_none(), "config accepted despite: {problems:#?}");
        of(&problems, Severity::Error)
            .iter()
            .map(|p| (p.key.clone(), p.line))
            .collect()
    }

    /// The one error in `text`.
    pub(crate) fn one_error(text: &str) -> Problem {
        let (config, problems) = check(text);
        assert!(config.is_none());
        let errors = of(&problems, Severity::Error);
        assert_eq!(errors.len(), 1, "{problems:#?}");
        errors[0].clone()
    }

    fn user(name: &str) -> Principal {
        Principal::User(name.to_string())
    }

    fn group(name: &str) -> Principal {
        Principal::Group(name.to_string())
    }

    #[test]
    fn given_the_spec_example_then_it_parses_with_its_values() {
        let config = clean(SPEC_EXAMPLE);
        assert_eq!(config.daemon.database, PathBuf::from("/var/lib/pim/pim.db"));
        assert_eq!(config.daemon.admins, vec![group("pim-admins")]);
        assert_eq!(config.daemon.auditors, vec![group("pim-auditors")]);
        assert_eq!(config.mfa.issuer, "pim");
        assert_eq!(config.mfa.max_failures, 5);
        assert_eq!(config.mfa.failure_window_secs, 300);
        assert_eq!(config.mfa.lockout_secs, 900);
        assert_eq!(config.roles.len(), 1);
        let admin = config.role("admin").expect("admin role");
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.group, "sudo");
        assert_eq!(admin.description, "Full administration through sudo");
        assert_eq!(admin.eligible, vec![user("alice"), group("ops")]);
        assert!(admin.permanent.is_empty());
        assert_eq!(admin.max_duration_secs, 7200);
        assert_eq!(admin.default_duration_secs, 3600);
        assert!(admin.require_mfa && admin.require_justification);
        assert_eq!(admin.min_justification, 10);
        assert!(!admin.require_ticket);
        let pattern = admin.ticket_pattern.as_ref().expect("pattern");
        assert!(pattern.is_match("INC123") && !pattern.is_match("PRB1"));
        assert!(admin.require_approval);
        assert_eq!(admin.approvers, vec![user("bob"), group("secops")]);
        assert_eq!(admin.approvals_required, 1);
        assert_eq!(admin.request_ttl_secs, 86400);
        assert!(config.role("nope").is_none());
    }

    #[test]
    fn given_an_empty_file_then_every_default_applies_with_a_no_roles_warning() {
        let (config, problems) = check("");
        let config = config.expect("an empty file is valid");
        assert_eq!(config.daemon.database, PathBuf::from("/var/lib/pim/pim.db"));
        assert!(config.daemon.admins.is_empty() && config.daemon.auditors.is_empty());
        assert!(config.daemon.notify_command.is_empty());
        assert_eq!(config.daemon.notify_timeout_secs, 10);
        assert_eq!(config.daemon.calls_per_minute, 30);
        assert_eq!(config.mfa.issuer, "pim");
        assert_eq!(config.mfa.max_failures, 5);
        assert_eq!(config.mfa.failure_window_secs, 300);
        assert_eq!(config.mfa.lockout_secs, 900);
        assert!(config.roles.is_empty());
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].severity, Severity::Warning);
        assert_eq!(problems[0].key, "roles");
        assert!(problems[0].message.contains("no roles defined"));
    }

    #[test]
    fn given_a_bare_role_then_every_role_default_applies() {
        let config = clean("[roles.sudo]\n");
        let role = config.role("sudo").expect("role");
        assert_eq!(role.group, "sudo", "group defaults to the role name");
        assert_eq!(role.description, "");
        assert!(role.eligible.is_empty() && role.permanent.is_empty());
        assert_eq!(role.max_duration_secs, 8 * 3600);
        assert_eq!(role.default_duration_secs, 3600);
        assert!(role.require_mfa);
        assert!(role.require_justification);
        assert_eq!(role.min_justification, 10);
        assert!(!role.require_ticket);
        assert!(role.ticket_pattern.is_none());
        assert!(!role.require_approval);
        assert!(role.approvers.is_empty());
        assert_eq!(role.approvals_required, 1);
        assert_eq!(role.request_ttl_secs, 86400);
    }

    #[test]
    fn given_a_bare_role_then_processes_are_terminated_after_10s_with_warnings_at_5m_and_1m() {
        let config = clean("[roles.sudo]\n");
        let role = config.role("sudo").expect("role");
        assert_eq!(role.on_end, OnEnd::Terminate);
        assert_eq!(role.end_grace_secs, 10);
        assert_eq!(role.warn_before_secs, vec![300, 60]);
    }

    #[test]
    fn given_end_keys_then_they_are_read_and_warnings_sorted_longest_first() {
        let config = clean(
            "[roles.docker]\ngroup = \"sudo\"\non_end = \"keep\"\nend_grace = \"5m\"\nwarn_before = [\"1m\", \"10m\", \"1m\"]\n\n[roles.sudo]\nwarn_before = []\n",
        );
        let docker = config.role("docker").expect("role");
        assert_eq!(docker.on_end, OnEnd::Keep);
        assert_eq!(docker.end_grace_secs, 300);
        assert_eq!(docker.warn_before_secs, vec![600, 60]);
        assert!(config
            .role("sudo")
            .expect("role")
            .warn_before_secs
            .is_empty());
    }

    #[test]
    fn given_bad_end_keys_then_each_error_names_key_and_line() {
        let found = errors(
            "[roles.docker]\non_end = \"kill\"\nend_grace = \"6m\"\nwarn_before = \"5m\"\n\n[roles.other]\nwarn_before = [\"5m\", 3, \"25h\"]\nend_grace = 10\non_end = true\n",
        );
        assert_eq!(
            found,
            vec![
                ("roles.docker.on_end".to_string(), Some(2)),
                ("roles.docker.end_grace".to_string(), Some(3)),
                ("roles.docker.warn_before".to_string(), Some(4)),
                ("roles.other.warn_before".to_string(), Some(7)),
                ("roles.other.warn_before".to_string(), Some(7)),
                ("roles.other.end_grace".to_string(), Some(8)),
                ("roles.other.on_end".to_string(), Some(9)),
            ]
        );
        let problem = one_error("[roles.docker]\non_end = \"kill\"\n");
        assert!(problem.message.contains("\"terminate\""), "{problem:?}");
        let problem = one_error("[roles.docker]\nend_grace = \"6m\"\n");
        assert!(problem.message.contains("5m cap"), "{problem:?}");
        let problem = one_error(
            "[roles.docker]\nwarn_before = [\"1s\",\"2s\",\"3s\",\"4s\",\"5s\",\"6s\",\"7s\",\"8s\",\"9s\"]\n",
        );
        assert!(problem.message.contains("at most 8"), "{problem:?}");
    }

    #[test]
    fn given_a_max_duration_under_an_hour_then_the_default_duration_follows_it() {
        let config = clean("[roles.sudo]\nmax_duration = \"30m\"\n");
        assert_eq!(config.role("sudo").unwrap().default_duration_secs, 1800);
    }

    #[test]
    fn given_unknown_keys_in_every_section_then_each_is_an_error_with_its_line() {
        let text = "colour = 1\n\
                    [daemon]\n\
                    databse = \"/x\"\n\
                    admin = []\n\
                    [mfa]\n\
                    isuer = \"x\"\n\
                    [roles.sudo]\n\
                    max_durration = \"1h\"\n";
        assert_eq!(
            errors(text),
            vec![
                ("colour".to_string(), Some(1)),
                ("daemon.databse".to_string(), Some(3)),
                ("daemon.admin".to_string(), Some(4)),
                ("mfa.isuer".to_string(), Some(6)),
                ("roles.sudo.max_durration".to_string(), Some(8)),
            ]
        );
        let problem = one_error("[mfa]\nisuer = \"x\"\n");
        assert!(problem.message.contains("unknown key"), "{problem}");
        assert!(
            problem.message.contains("issuer"),
            "lists the known keys: {problem}"
        );
    }

    #[test]
    fn given_an_audit_section_then_keep_is_read_and_its_mistakes_name_key_and_line() {
        assert_eq!(clean("[roles.sudo]\n").audit.keep_secs, None);
        let config = clean("[audit]\nkeep = \"400d\"\n[roles.sudo]\n");
        assert_eq!(config.audit.keep_secs, Some(400 * 86_400));
        assert_eq!(
            errors("[audit]\nkeep = 400\n"),
            vec![("audit.keep".to_string(), Some(2))]
        );
        assert_eq!(
            errors("[audit]\n\nkeep = \"40000d\"\n"),
            vec![("audit.keep".to_string(), Some(3))]
        );
        assert_eq!(
            errors("[audit]\nkeep = \"0s\"\n"),
            vec![("audit.keep".to_string(), Some(2))]
        );
        assert_eq!(
            errors("[audit]\nkept = \"1d\"\n"),
            vec![("audit.kept".to_string(), Some(2))]
        );
        assert_eq!(errors("audit = 1\n"), vec![("audit".to_string(), Some(1))]);
    }

    #[test]
    fn given_wrong_types_then_each_error_names_key_and_line() {
        let text = "[daemon]\n\
                    database = 5\n\
                    admins = \"alice\"\n\
                    [mfa]\n\
                    max_failures = \"5\"\n\
                    [roles.sudo]\n\
                    require_mfa = \"yes\"\n\
                    max_duration = 3600\n\
                    eligible = [\"alice\", 7]\n";
        assert_eq!(
            errors(text),
            vec![
                ("daemon.database".to_string(), Some(2)),
                ("daemon.admins".to_string(), Some(3)),
                ("mfa.max_failures".to_string(), Some(5)),
                ("roles.sudo.require_mfa".to_string(), Some(7)),
                ("roles.sudo.max_duration".to_string(), Some(8)),
                ("roles.sudo.eligible".to_string(), Some(9)),
            ]
        );
        let problem = one_error("[roles.sudo]\nmax_duration = 3600\n");
        assert!(problem.message.contains("found integer"), "{problem}");
        assert!(problem.message.contains("\"3600s\""), "{problem}");
        let problem = one_error("[daemon]\ndatabase = 5\n");
        assert_eq!(problem.message, "expected a string, found integer");
    }

    #[test]
    fn given_sections_that_are_not_tables_then_errors() {
        assert_eq!(
            errors("daemon = 1\nmfa = \"x\"\n[[roles]]\nname = \"a\"\n"),
            vec![
                ("daemon".to_string(), Some(1)),
                ("mfa".to_string(), Some(2)),
                ("roles".to_string(), Some(3)),
            ]
        );
        assert_eq!(
            errors("[roles]\nsudo = 1\n"),
            vec![("roles.sudo".to_string(), Some(2))]
        );
    }

    #[test]
    fn given_a_duration_over_the_cap_then_error_names_key_and_line() {
        let problem = one_error("[roles.admin]\n\nmax_duration = \"48h\"\n");
        assert_eq!(problem.key, "roles.admin.max_duration");
        assert_eq!(problem.line, Some(3));
        assert_eq!(problem.message, "48h is over the 24h cap for any role");
        assert_eq!(
            problem.to_string(),
            "/etc/pim/pim.toml:3: roles.admin.max_duration: 48h is over the 24h cap for any role"
        );
        let problem = one_error("[roles.admin]\ndefault_duration = \"25h\"\n");
        assert_eq!(problem.key, "roles.admin.default_duration");
        let problem = one_error(
            "[roles.admin]\nrequire_approval = true\napprovers = [\"bob\"]\nrequest_ttl = \"8d\"\n",
        );
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.admin.request_ttl", Some(4))
        );
        assert!(problem.message.contains("7d cap"), "{problem}");
        // Exactly at the cap is fine.
        clean("[roles.admin]\ngroup = \"sudo\"\nmax_duration = \"1d\"\n");
    }

    #[test]
    fn given_calls_per_minute_then_read_and_bounded() {
        let (config, _) = check("[daemon]\ncalls_per_minute = 120\n");
        assert_eq!(config.expect("valid").daemon.calls_per_minute, 120);
        for bad in ["0", "10001", "\"30\""] {
            let problem = one_error(&format!("[daemon]\ncalls_per_minute = {bad}\n"));
            assert_eq!(
                (problem.key.as_str(), problem.line),
                ("daemon.calls_per_minute", Some(2)),
                "{problem}"
            );
        }
    }

    #[test]
    fn given_min_review_duration_then_read_defaulting_to_an_hour_and_bounded() {
        let (config, _) = check("[daemon]\n");
        assert_eq!(config.expect("valid").daemon.min_review_duration_secs, 3600);
        let (config, _) = check("[daemon]\nmin_review_duration = \"30s\"\n");
        assert_eq!(config.expect("valid").daemon.min_review_duration_secs, 30);
        for bad in ["\"0s\"", "\"400d\"", "60"] {
            let problem = one_error(&format!("[daemon]\nmin_review_duration = {bad}\n"));
            assert_eq!(
                problem.key, "daemon.min_review_duration",
                "{bad}: {problem}"
            );
        }
    }

    #[test]
    fn given_malformed_or_zero_durations_then_errors() {
        let problem = one_error("[mfa]\nlockout = \"15 minutes\"\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("mfa.lockout", Some(2))
        );
        assert!(problem.message.contains("is not a duration"), "{problem}");
        let problem = one_error("[daemon]\nnotify_timeout = \"0s\"\n");
        assert_eq!(problem.key, "daemon.notify_timeout");
        assert!(problem.message.contains("zero"), "{problem}");
    }

    #[test]
    fn given_default_duration_over_max_duration_then_error() {
        let problem = one_error(
            "[roles.admin]\ngroup = \"sudo\"\nmax_duration = \"2h\"\ndefault_duration = \"3h\"\n",
        );
        assert_eq!(problem.key, "roles.admin.default_duration");
        assert_eq!(problem.line, Some(4));
        assert_eq!(problem.message, "3h is longer than max_duration 2h");
        // Against the default max_duration of 8h too.
        let problem = one_error("[roles.sudo]\ndefault_duration = \"9h\"\n");
        assert!(problem.message.contains("max_duration 8h"), "{problem}");
    }

    #[test]
    fn given_an_invalid_max_duration_then_default_duration_is_not_also_blamed() {
        let problem =
            one_error("[roles.sudo]\nmax_duration = \"48h\"\ndefault_duration = \"10h\"\n");
        assert_eq!(problem.key, "roles.sudo.max_duration");
    }

    #[test]
    fn given_assignment_caps_then_permanent_durations_and_defaults_are_read() {
        let config = clean("[roles.a]\ngroup = \"sudo\"\n[roles.b]\ngroup = \"sudo\"\nmax_eligible_assignment = \"180d\"\nmax_active_assignment = \"permanent\"\nowners = [\"bob\", \"%secops\"]\n");
        let a = config.role("a").unwrap();
        assert_eq!(a.max_eligible_assignment_secs, None, "no cap by default");
        assert_eq!(
            a.max_active_assignment_secs,
            Some(30 * 86400),
            "30d by default"
        );
        assert!(a.owners.is_empty());
        let b = config.role("b").unwrap();
        assert_eq!(b.max_eligible_assignment_secs, Some(180 * 86400));
        assert_eq!(b.max_active_assignment_secs, None);
        assert_eq!(b.owners, vec![user("bob"), group("secops")]);
        let problem = one_error("[roles.a]\ngroup = \"sudo\"\nmax_active_assignment = \"400d\"\n");
        assert_eq!(problem.key, "roles.a.max_active_assignment");
        assert!(problem.message.contains("365d"), "{problem}");
        let problem =
            one_error("[roles.a]\ngroup = \"sudo\"\nmax_eligible_assignment = \"forever\"\n");
        assert_eq!(problem.key, "roles.a.max_eligible_assignment");
    }

    #[test]
    fn given_approval_without_approvers_then_error() {
        let problem = one_error("[roles.sudo]\nrequire_approval = true\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.sudo.require_approval", Some(2))
        );
        assert!(problem.message.contains("no approvers"), "{problem}");
        let problem = one_error("[roles.sudo]\nrequire_approval = true\napprovers = []\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.sudo.approvers", Some(3))
        );
    }

    #[test]
    fn given_more_approvals_than_listed_users_then_error_unless_a_group_is_listed() {
        let problem = one_error(
            "[roles.sudo]\nrequire_approval = true\napprovers = [\"bob\", \"carol\", \"bob\"]\napprovals_required = 3\n",
        );
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.sudo.approvals_required", Some(4))
        );
        assert!(problem.message.contains("names only 2 users"), "{problem}");
        let config = clean(
            "[roles.sudo]\nrequire_approval = true\napprovers = [\"bob\", \"%secops\"]\napprovals_required = 3\n",
        );
        assert_eq!(config.role("sudo").unwrap().approvals_required, 3);
        let problem = one_error(
            "[roles.sudo]\nrequire_approval = true\napprovers = [\"bob\"]\napprovals_required = 0\n",
        );
        assert_eq!(problem.message, "must be at least 1");
    }

    #[test]
    fn given_approval_keys_without_require_approval_then_warnings_only() {
        let (config, problems) = check(
            "[roles.sudo]\napprovers = [\"bob\"]\napprovals_required = 2\nrequest_ttl = \"1h\"\nrequire_approval = false\n",
        );
        assert!(config.is_some());
        let warned: Vec<_> = problems
            .iter()
            .map(|p| (p.severity, p.key.as_str(), p.line))
            .collect();
        assert_eq!(
            warned,
            vec![
                (Severity::Warning, "roles.sudo.approvers", Some(2)),
                (Severity::Warning, "roles.sudo.approvals_required", Some(3)),
                (Severity::Warning, "roles.sudo.request_ttl", Some(4)),
            ]
        );
        assert!(problems[0].message.contains("ignored"));
    }

    #[test]
    fn given_min_justification_without_require_justification_then_warning() {
        let (config, problems) =
            check("[roles.sudo]\nrequire_justification = false\nmin_justification = 20\n");
        assert!(config.is_some());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "roles.sudo.min_justification");
        assert_eq!(problems[0].severity, Severity::Warning);
    }

    #[test]
    fn given_integers_out_of_bounds_then_errors() {
        let problem = one_error("[roles.sudo]\nmin_justification = 2000\n");
        assert_eq!(problem.message, "must be between 0 and 1024");
        let problem = one_error("[roles.sudo]\nmin_justification = -1\n");
        assert_eq!(problem.key, "roles.sudo.min_justification");
        let problem = one_error("[mfa]\nmax_failures = 0\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("mfa.max_failures", Some(2))
        );
        let problem = one_error("[mfa]\nmax_failures = 5.0\n");
        assert_eq!(problem.message, "expected an integer, found float");
    }

    #[test]
    fn given_a_bad_ticket_pattern_then_error_names_key_and_line() {
        let problem = one_error("[roles.sudo]\nticket_pattern = \"(INC\"\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.sudo.ticket_pattern", Some(2))
        );
        assert_eq!(
            problem.message,
            "is not a valid regular expression: unclosed group"
        );
        let long = format!("[roles.sudo]\nticket_pattern = \"{}\"\n", "a".repeat(300));
        assert!(one_error(&long).message.contains("at most 256"));
        assert!(one_error("[roles.sudo]\nticket_pattern = \"\"\n")
            .message
            .contains("is empty"));
    }

    #[test]
    fn given_a_ticket_pattern_then_it_must_match_the_whole_ticket() {
        let config = clean("[roles.sudo]\nticket_pattern = \"INC[0-9]+|CHG[0-9]+\"\n");
        let pattern = config.role("sudo").unwrap().ticket_pattern.clone().unwrap();
        assert!(pattern.is_match("INC42"));
        assert!(pattern.is_match("CHG7"));
        assert!(!pattern.is_match("xINC42"));
        assert!(!pattern.is_match("INC42; rm -rf"));
        assert!(!pattern.is_match("INC"));
    }

    #[test]
    fn given_unknown_users_and_groups_then_warnings_and_the_config_loads() {
        let text = "[daemon]\n\
                    admins = [\"%wheel\"]\n\
                    auditors = [\"mallory\"]\n\
                    [roles.deploy]\n\
                    eligible = [\"alice\", \"dave\"]\n\
                    permanent = [\"%ghosts\"]\n\
                    require_approval = true\n\
                    approvers = [\"erin\"]\n";
        let (config, problems) = check(text);
        assert!(config.is_some(), "{problems:#?}");
        let warned: Vec<_> = problems
            .iter()
            .map(|p| {
                assert_eq!(p.severity, Severity::Warning, "{p}");
                (p.key.as_str(), p.line, p.message.as_str())
            })
            .collect();
        assert_eq!(
            warned,
            vec![
                ("daemon.admins", Some(2), "no group 'wheel' on this host"),
                ("daemon.auditors", Some(3), "no user 'mallory' on this host"),
                (
                    "roles.deploy.group",
                    Some(4),
                    "no group 'deploy' on this host; create it before anyone activates this role"
                ),
                (
                    "roles.deploy.eligible",
                    Some(5),
                    "no user 'dave' on this host"
                ),
                (
                    "roles.deploy.permanent",
                    Some(6),
                    "no group 'ghosts' on this host"
                ),
                (
                    "roles.deploy.approvers",
                    Some(8),
                    "no user 'erin' on this host"
                ),
            ]
        );
        let (_, problems) = check("[roles.deploy]\ngroup = \"nogroup\"\n");
        assert_eq!(
            (problems[0].key.as_str(), problems[0].line),
            ("roles.deploy.group", Some(2))
        );
    }

    #[test]
    fn given_the_caps_then_their_text_matches_their_seconds() {
        for cap in [ROLE_CAP, REQUEST_TTL_CAP, OTHER_CAP] {
            assert_eq!(duration::parse(cap.text), Ok(cap.secs), "{}", cap.text);
        }
    }

    #[test]
    fn given_a_percent_prefix_then_the_principal_is_a_group() {
        assert_eq!(Principal::parse("%ops"), Ok(group("ops")));
        assert_eq!(Principal::parse("alice"), Ok(user("alice")));
        assert_eq!(Principal::parse("svc$"), Ok(user("svc$")));
        for text in ["%ops", "alice", "a.b-c"] {
            assert_eq!(Principal::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn given_bad_principal_names_then_refused() {
        for bad in ["", "%", "%%ops", "-rf", "a b", "al/ice", "%a:b", "bob\n"] {
            assert!(Principal::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Principal::parse("%").unwrap_err().contains("group"));
        let problem = one_error("[roles.sudo]\neligible = [\n  \"alice\",\n  \"a b\",\n]\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.sudo.eligible", Some(4)),
            "the line of the entry itself"
        );
        assert!(
            problem.message.contains("'a b' is not a valid name"),
            "{problem}"
        );
    }

    #[test]
    fn given_a_bad_role_or_group_name_then_error() {
        let problem = one_error("[roles.\"bad name\"]\ngroup = \"sudo\"\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.\"bad name\"", Some(1))
        );
        let problem = one_error("[roles.sudo]\ngroup = \"%sudo\"\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("roles.sudo.group", Some(2))
        );
    }

    #[test]
    fn given_notify_command_forms_then_argv_or_errors() {
        let config =
            clean("[daemon]\nnotify_command = \"/usr/local/bin/pim-notify\"\n[roles.sudo]\n");
        assert_eq!(
            config.daemon.notify_command,
            vec!["/usr/local/bin/pim-notify"]
        );
        let config = clean(
            "[daemon]\nnotify_command = [\"/usr/bin/logger\", \"-t\", \"pim\"]\nnotify_timeout = \"3s\"\n[roles.sudo]\n",
        );
        assert_eq!(
            config.daemon.notify_command,
            vec!["/usr/bin/logger", "-t", "pim"]
        );
        assert_eq!(config.daemon.notify_timeout_secs, 3);
        assert!(clean("[daemon]\nnotify_command = []\n[roles.sudo]\n")
            .daemon
            .notify_command
            .is_empty());

        let problem = one_error("[daemon]\nnotify_command = [\"logger\", \"x\"]\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("daemon.notify_command", Some(2))
        );
        assert!(
            problem.message.contains("not an absolute path"),
            "{problem}"
        );
        assert!(
            one_error("[daemon]\nnotify_command = [\"/bin/x\", \"a\\nb\"]\n")
                .message
                .contains("control character")
        );
        assert!(one_error("[daemon]\nnotify_command = 1\n")
            .message
            .contains("found integer"));

        let (config, problems) =
            check("[daemon]\nnotify_command = \"/usr/bin/logger -t pim\"\n[roles.sudo]\n");
        assert!(config.is_some());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].severity, Severity::Warning);
        assert!(problems[0].message.contains("not split at spaces"));
    }

    #[test]
    fn given_a_relative_database_then_error() {
        let problem = one_error("[daemon]\ndatabase = \"pim.db\"\n");
        assert_eq!(
            (problem.key.as_str(), problem.line),
            ("daemon.database", Some(2))
        );
        assert_eq!(problem.message, "'pim.db' is not an absolute path");
    }

    #[test]
    fn given_a_bad_issuer_then_error() {
        for bad in ["\"\"", "\"a:b\"", "\"a\\u001bb\""] {
            let problem = one_error(&format!("[mfa]\nissuer = {bad}\n"));
            assert_eq!(
                (problem.key.as_str(), problem.line),
                ("mfa.issuer", Some(2)),
                "{bad}"
            );
        }
        assert_eq!(
            clean("[mfa]\nissuer = \"ACME ops\"\n[roles.sudo]\n")
                .mfa
                .issuer,
            "ACME ops"
        );
    }

    #[test]
    fn given_several_problems_then_all_are_reported_in_file_order_in_one_pass() {
        let text = "[roles.zeta]\n\
                    group = \"sudo\"\n\
                    max_duration = \"2d\"\n\
                    require_approval = true\n\
                    [roles.alpha]\n\
                    bogus = 1\n\
                    eligible = [\"dave\"]\n\
                    ticket_pattern = \"[\"\n\
                    [daemon]\n\
                    database = \"relative\"\n\
                    [mfa]\n\
                    max_failures = 0\n";
        let (config, problems) = check(text);
        assert!(config.is_none());
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.severity, p.key.as_str(), p.line))
            .collect();
        assert_eq!(
            found,
            vec![
                (Severity::Error, "roles.zeta.max_duration", Some(3)),
                (Severity::Error, "roles.zeta.require_approval", Some(4)),
                (Severity::Warning, "roles.alpha.group", Some(5)),
                (Severity::Error, "roles.alpha.bogus", Some(6)),
                (Severity::Warning, "roles.alpha.eligible", Some(7)),
                (Severity::Error, "roles.alpha.ticket_pattern", Some(8)),
                (Severity::Error, "daemon.database", Some(10)),
                (Severity::Error, "mfa.max_failures", Some(12)),
            ]
        );
    }

    #[test]
    fn given_toml_syntax_errors_then_each_is_reported_with_its_line_along_with_other_problems() {
        let text = "[daemon]\n\
                    database = \"/x\n\
                    admins = [\"%wheel\"]\n\
                    [roles.sudo]\n\
                    max_duration = \n\
                    max_duration = \"1h\"\n\
                    bogus = true\n";
        let (config, problems) = check(text);
        assert!(config.is_none());
        let found: Vec<_> = problems
            .iter()
            .map(|p| (p.severity, p.key.as_str(), p.line))
            .collect();
        assert_eq!(
            found,
            vec![
                (Severity::Error, "", Some(2)),
                (Severity::Warning, "daemon.admins", Some(3)),
                (Severity::Error, "", Some(5)),
                (Severity::Error, "", Some(6)),
                (Severity::Error, "roles.sudo.bogus", Some(7)),
            ]
        );
        assert!(
            problems[3].message.contains("duplicate key"),
            "{:?}",
            problems[3]
        );
        assert!(!problems[0].message.contains('\n'));
        assert!(
            problems[0].to_string().starts_with("/etc/pim/pim.toml:2: "),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn given_problems_then_display_gives_source_line_key_and_a_warning_prefix() {
        let problem = Problem {
            severity: Severity::Warning,
            source: SOURCE.to_string(),
            key: "roles.admin.eligible".to_string(),
            line: Some(14),
            message: "no user 'dave' on this host".to_string(),
        };
        assert_eq!(
            problem.to_string(),
            "warning: /etc/pim/pim.toml:14: roles.admin.eligible: no user 'dave' on this host"
        );
        let problem = Problem {
            severity: Severity::Error,
            key: String::new(),
            line: None,
            ..problem
        };
        assert_eq!(
            problem.to_string(),
            "/etc/pim/pim.toml: no user 'dave' on this host"
        );
    }

    #[test]
    fn given_hostile_text_in_keys_then_messages_escape_it() {
        let problem = one_error("[roles.sudo]\n\"bad\\u001b[31m\" = 1\n");
        assert_eq!(problem.key, "roles.sudo.\"bad\\x1b[31m\"");
    }

    #[test]
    fn given_an_unreadable_file_then_load_reports_one_error() {
        let path = Path::new("/nonexistent/pim/pim.toml");
        let (config, problems) = load(path, &HOST);
        assert!(config.is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].severity, Severity::Error);
        assert_eq!(problems[0].source, "/nonexistent/pim/pim.toml");
        assert!(problems[0]
            .message
            .starts_with("cannot read the configuration"));
    }

    #[test]
    fn given_a_readable_file_then_load_parses_it_and_names_it() {
        let dir = std::env::temp_dir().join(format!("pim-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pim.toml");
        std::fs::write(&path, "[roles.sudo]\nbogus = 1\n").unwrap();
        let (config, problems) = load(&path, &HOST);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(config.is_none());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].source, path.display().to_string());
        assert_eq!(problems[0].line, Some(2));
        assert_eq!(DEFAULT_PATH, "/etc/pim/pim.toml");
    }

    #[test]
    fn given_the_role_key_table_then_the_manual_documents_every_key_in_its_roles_section() {
        let manual = include_str!("../../packaging/man/pim.toml.5");
        let roles = manual
            .split_once(".SH [roles.NAME]")
            .and_then(|(_, rest)| rest.split_once("\n.SH "))
            .map(|(section, _)| section)
            .expect("pim.toml.5 has a [roles.NAME] section");
        for key in ROLE_KEYS {
            assert!(
                roles.contains(&format!(".TP\n.B {key}\n")),
                "pim.toml.5 does not document roles.NAME.{key}"
            );
        }
    }
}
