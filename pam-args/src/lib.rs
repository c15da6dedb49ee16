//! The arguments of `pam_pim.so`, as written after it on its line in `/etc/pam.d/*`: one pure
//! grammar that the module (which acts on it) and `pim doctor` (which judges the line with it)
//! share, so doctor never calls a line sound that the module refuses, or the reverse. It stays a
//! crate of its own with no dependency beyond `pim-common`, since the module is loaded into sudo.
//!
//! ```text
//! argument := "services=" list      the PAM services acted for (default: every service)
//!           | "groups=" list        the managed groups (required)
//!           | "timeout=" duration   bound on the whole daemon check (default 2s, at most 1m)
//!           | "fail=" ("closed" | "open")   what an unanswered check does (default closed)
//!           | "debug"               also log the decision path
//! list     := name ("," name)*      no empty items, no spaces; repeats are dropped
//! duration := digits ("ms" | "s" | "m")   e.g. 500ms, 2s, 1m; never zero
//! ```
//!
//! Group names follow the rules of `pim_common::text::check_name`; service names are 1 to 64
//! characters of letters, digits, `.`, `_`, `+` and `-` and are compared without regard to case
//! (Linux-PAM lowercases the service name it is started with).
//!
//! An argument whose key is not one of these is *unknown*: it is reported (so that it gets
//! logged) and otherwise ignored. A known key with a bad value, without its `=value`, with a
//! value where none belongs (`debug=1`), or given twice is *malformed*: it is reported as a
//! configuration error, and the module's decision then fails closed (see
//! `pam_pim::decision`). So is a line without `groups=`.
#![forbid(unsafe_code)]

use std::time::Duration;

/// Bound on the whole daemon check when `timeout=` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `timeout=` accepted: a login or sudo should not hang longer on the daemon.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest service name accepted.
const MAX_SERVICE_BYTES: usize = 64;

/// What to do when the daemon cannot give an answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Deny a user who holds a managed group (the default).
    Closed,
    /// Return PAM_IGNORE, leaving the decision to the rest of the stack.
    Open,
}

/// The module's options, with defaults filled in where an argument is absent or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// PAM services the module acts for; `None` means every service.
    pub services: Option<Vec<String>>,
    /// Managed groups; `None` when `groups=` is absent or malformed (a configuration error).
    pub groups: Option<Vec<String>>,
    /// Bound on connect plus call.
    pub timeout: Duration,
    pub fail: FailMode,
    pub debug: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            services: None,
            groups: None,
            timeout: DEFAULT_TIMEOUT,
            fail: FailMode::Closed,
            debug: false,
        }
    }
}

impl Options {
    /// Whether the module acts for `service`. An unknown service (the item is unset) is acted
    /// for: the module cannot show that it is not listed.
    pub fn acts_for(&self, service: Option<&str>) -> bool {
        match (&self.services, service) {
            (None, _) | (Some(_), None) => true,
            (Some(list), Some(service)) => list.iter().any(|s| s.eq_ignore_ascii_case(service)),
        }
    }
}

/// The arguments parsed: options, plus what is wrong with the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub options: Options,
    /// Unknown arguments, escaped for logging; they are ignored.
    pub unknown: Vec<String>,
    /// Configuration errors (malformed arguments, missing `groups=`), one sentence each, with
    /// user text escaped. Any of them makes the module fail closed.
    pub errors: Vec<String>,
}

impl Parsed {
    /// True when the line has no configuration error.
    pub fn is_sound(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Parses the module's arguments. Never fails: problems are collected in the result.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Parsed {
    let mut options = Options::default();
    let mut unknown = Vec::new();
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut groups_given = false;

    for arg in args {
        let arg = arg.as_ref();
        let shown = pim_common::text::escape(arg);
        let (key, value) = match arg.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (arg, None),
        };
        let known = ["services", "groups", "timeout", "fail", "debug"];
        let Some(key) = known.iter().copied().find(|k| *k == key) else {
            unknown.push(shown);
            continue;
        };
        if key == "debug" {
            match value {
                None => options.debug = true,
                Some(_) => errors.push(format!("'{shown}' is malformed: debug takes no value")),
            }
            continue;
        }
        let Some(value) = value else {
            errors.push(format!("'{shown}' is malformed: write {key}=VALUE"));
            continue;
        };
        if seen.contains(&key) {
            errors.push(format!("'{shown}' is malformed: {key}= is given twice"));
            continue;
        }
        seen.push(key);
        match key {
            "services" => match parse_list(value, check_service) {
                Ok(list) => options.services = Some(list),
                Err(e) => errors.push(format!("'{shown}' is malformed: {e}")),
            },
            "groups" => {
                groups_given = true;
                match parse_list(value, |g| pim_common::text::check_name("group", g)) {
                    Ok(list) => options.groups = Some(list),
                    Err(e) => errors.push(format!("'{shown}' is malformed: {e}")),
                }
            }
            "timeout" => match parse_timeout(value) {
                Ok(timeout) => options.timeout = timeout,
                Err(e) => errors.push(format!("'{shown}' is malformed: {e}")),
            },
            "fail" => match value {
                "closed" => options.fail = FailMode::Closed,
                "open" => options.fail = FailMode::Open,
                _ => errors.push(format!(
                    "'{shown}' is malformed: write fail=closed or fail=open"
                )),
            },
            _ => unreachable!("every known key is handled"),
        }
    }
    if !groups_given {
        errors.push(
            "the module line lacks groups=: name the managed groups, e.g. groups=sudo,wheel"
                .to_string(),
        );
    }
    Parsed {
        options,
        unknown,
        errors,
    }
}

/// A comma-separated list of names, each checked by `check`; repeats are dropped.
fn parse_list(
    value: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let mut list: Vec<String> = Vec::new();
    for item in value.split(',') {
        if item.is_empty() {
            return Err("the list has an empty item; separate names with single commas".into());
        }
        check(item)?;
        if !list.iter().any(|known| known == item) {
            list.push(item.to_string());
        }
    }
    Ok(list)
}

fn check_service(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SERVICE_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "service '{}' is not a valid PAM service name (letters, digits, '.', '_', '+', '-'; at most {MAX_SERVICE_BYTES} bytes)",
            pim_common::text::escape(name)
        ))
    }
}

/// `500ms`, `2s`, `1m`: a positive whole number and one unit, at most `MAX_TIMEOUT`.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "'{}' is not a timeout; write a whole number with ms, s or m, e.g. 500ms, 2s, 1m",
            pim_common::text::escape(value)
        )
    };
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = value.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        _ => return Err(bad()),
    };
    let millis = n.checked_mul(millis_per_unit).ok_or_else(bad)?;
    let timeout = Duration::from_millis(millis);
    if timeout.is_zero() {
        return Err("a timeout of zero would never let the daemon answer".into());
    }
    if timeout > MAX_TIMEOUT {
        return Err(format!(
            "timeout {} is longer than the 1m this module waits at most",
            pim_common::text::escape(value)
        ));
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sound(args: &[&str]) -> Options {
        let parsed = parse(args);
        assert!(parsed.is_sound(), "{args:?}: {:?}", parsed.errors);
        assert!(parsed.unknown.is_empty(), "{args:?}: {:?}", parsed.unknown);
        parsed.options
    }

    fn errors(args: &[&str]) -> Vec<String> {
        let parsed = parse(args);
        assert!(!parsed.is_sound(), "{args:?} should be refused");
        parsed.errors
    }

    #[test]
    fn given_only_groups_then_defaults_fill_the_rest() {
        let options = sound(&["groups=sudo"]);
        assert_eq!(
            options,
            Options {
                services: None,
                groups: Some(vec!["sudo".into()]),
                timeout: Duration::from_secs(2),
                fail: FailMode::Closed,
                debug: false,
            }
        );
    }

    #[test]
    fn given_every_argument_then_each_is_taken() {
        let options = sound(&[
            "groups=sudo,wheel",
            "services=sudo,sudo-i",
            "timeout=500ms",
            "fail=open",
            "debug",
        ]);
        assert_eq!(options.groups, Some(vec!["sudo".into(), "wheel".into()]));
        assert_eq!(options.services, Some(vec!["sudo".into(), "sudo-i".into()]));
        assert_eq!(options.timeout, Duration::from_millis(500));
        assert_eq!(options.fail, FailMode::Open);
        assert!(options.debug);
    }

    #[test]
    fn given_arguments_in_any_order_then_the_same_options() {
        let a = sound(&["debug", "fail=closed", "groups=docker", "services=su"]);
        let b = sound(&["services=su", "groups=docker", "fail=closed", "debug"]);
        assert_eq!(a, b);
    }

    #[test]
    fn given_timeout_units_then_each_is_scaled() {
        for (text, expected) in [
            ("1ms", Duration::from_millis(1)),
            ("500ms", Duration::from_millis(500)),
            ("2s", Duration::from_secs(2)),
            ("1m", Duration::from_secs(60)),
            ("60s", Duration::from_secs(60)),
            ("60000ms", Duration::from_secs(60)),
        ] {
            let options = sound(&["groups=sudo", &format!("timeout={text}")]);
            assert_eq!(options.timeout, expected, "{text}");
        }
    }

    #[test]
    fn given_bad_timeouts_then_each_is_malformed() {
        for text in [
            "",
            "2",
            "s",
            "ms",
            "0s",
            "0ms",
            "2h",
            "1d",
            "2 s",
            "-1s",
            "1.5s",
            "1m30s",
            "2S",
            "61s",
            "2m",
            "60001ms",
            "99999999999999999999s",
            "18446744073709551615m",
        ] {
            let errs = errors(&["groups=sudo", &format!("timeout={text}")]);
            assert_eq!(errs.len(), 1, "{text}: {errs:?}");
            assert!(errs[0].contains("timeout="), "{text}: {errs:?}");
        }
    }

    #[test]
    fn given_bad_timeout_then_default_is_kept() {
        let parsed = parse(&["groups=sudo", "timeout=forever"]);
        assert_eq!(parsed.options.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn given_fail_values_then_only_closed_and_open_pass() {
        assert_eq!(sound(&["groups=g", "fail=closed"]).fail, FailMode::Closed);
        assert_eq!(sound(&["groups=g", "fail=open"]).fail, FailMode::Open);
        for bad in ["fail=", "fail=Open", "fail=yes", "fail", "fail=open,closed"] {
            let parsed = parse(&["groups=g", bad]);
            assert_eq!(parsed.errors.len(), 1, "{bad}: {:?}", parsed.errors);
            assert_eq!(parsed.options.fail, FailMode::Closed, "{bad}");
        }
    }

    #[test]
    fn given_fail_open_and_another_malformed_argument_then_still_reported() {
        let parsed = parse(&["groups=g", "fail=open", "timeout=x"]);
        assert!(!parsed.is_sound());
    }

    #[test]
    fn given_no_groups_argument_then_configuration_error_says_so() {
        let errs = errors(&["services=sudo"]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("lacks groups="), "{errs:?}");
        let errs = errors(&[]);
        assert!(errs[0].contains("lacks groups="), "{errs:?}");
    }

    #[test]
    fn given_bad_group_lists_then_groups_are_unknown() {
        for bad in [
            "groups=",
            "groups=sudo,",
            "groups=,sudo",
            "groups=sudo,,wheel",
            "groups=su do",
            "groups=-rf",
            "groups=a/b",
            "groups=sudo\nwheel",
        ] {
            let parsed = parse(&[bad]);
            assert_eq!(parsed.options.groups, None, "{bad:?}");
            assert_eq!(parsed.errors.len(), 1, "{bad:?}: {:?}", parsed.errors);
            assert!(!parsed.errors[0].contains("lacks"), "{bad:?}");
        }
    }

    #[test]
    fn given_repeated_names_in_a_list_then_kept_once() {
        let options = sound(&["groups=sudo,wheel,sudo", "services=sudo,SUDO"]);
        assert_eq!(options.groups, Some(vec!["sudo".into(), "wheel".into()]));
        assert_eq!(options.services, Some(vec!["sudo".into(), "SUDO".into()]));
    }

    #[test]
    fn given_bad_service_lists_then_services_stay_every_service() {
        for bad in [
            "services=",
            "services=sudo,",
            "services=a b",
            "services=../x",
        ] {
            let parsed = parse(&["groups=sudo", bad]);
            assert_eq!(parsed.options.services, None, "{bad}");
            assert_eq!(parsed.errors.len(), 1, "{bad}: {:?}", parsed.errors);
        }
    }

    #[test]
    fn given_a_key_twice_then_malformed() {
        for args in [
            ["groups=sudo", "groups=wheel"],
            ["groups=sudo", "groups=sudo"],
        ] {
            let errs = errors(&args);
            assert!(errs[0].contains("given twice"), "{errs:?}");
        }
        let errs = errors(&["groups=sudo", "timeout=1s", "timeout=2s"]);
        assert!(errs[0].contains("given twice"), "{errs:?}");
    }

    #[test]
    fn given_debug_twice_then_fine() {
        assert!(sound(&["groups=sudo", "debug", "debug"]).debug);
    }

    #[test]
    fn given_known_keys_without_value_or_with_one_too_many_then_malformed() {
        for bad in ["groups", "services", "timeout", "fail", "debug=1", "debug="] {
            let parsed = parse(&["groups=sudo", bad]);
            assert!(!parsed.is_sound(), "{bad}");
            assert!(parsed.unknown.is_empty(), "{bad}");
        }
    }

    #[test]
    fn given_unknown_arguments_then_listed_and_ignored() {
        let parsed = parse(&["groups=sudo", "quiet", "use_first_pass", "Groups=x", "x=1"]);
        assert!(parsed.is_sound(), "{:?}", parsed.errors);
        assert_eq!(
            parsed.unknown,
            ["quiet", "use_first_pass", "Groups=x", "x=1"]
        );
        assert_eq!(parsed.options.groups, Some(vec!["sudo".into()]));
    }

    #[test]
    fn given_a_typo_in_groups_key_then_unknown_and_groups_missing() {
        let parsed = parse(&["grups=sudo"]);
        assert_eq!(parsed.unknown, ["grups=sudo"]);
        assert_eq!(parsed.options.groups, None);
        assert!(parsed.errors[0].contains("lacks groups="));
    }

    #[test]
    fn given_control_characters_then_reports_are_escaped() {
        let parsed = parse(&["groups=su\x1b[31mdo", "evil\nline"]);
        assert_eq!(parsed.unknown, ["evil\\x0aline"]);
        assert!(parsed
            .errors
            .iter()
            .all(|e| !e.chars().any(char::is_control)));
    }

    #[test]
    fn given_services_then_matching_ignores_case_and_absence_means_all() {
        let listed = sound(&["groups=g", "services=sudo,sudo-i"]);
        assert!(listed.acts_for(Some("sudo")));
        assert!(listed.acts_for(Some("Sudo-I")));
        assert!(!listed.acts_for(Some("sshd")));
        assert!(!listed.acts_for(Some("sud")));
        assert!(listed.acts_for(None));
        let all = sound(&["groups=g"]);
        assert!(all.acts_for(Some("sshd")));
        assert!(all.acts_for(None));
    }
}
