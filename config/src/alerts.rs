//! The `[alerts]` table: the thresholds of the alerts pimd raises (see pimd's `alerts`).
//!
//! ```toml
//! [alerts]
//! frequent_activation = { count = 5, within = "1d" }   # per user and role
//! stale_eligibility = "30d"        # eligible but no activation for this long
//! max_privileged = 10              # users eligible for, active in or permanent in one role
//! ```

use super::{value_or, Checker, Section, OTHER_CAP};

pub(crate) const ALERTS_KEYS: &[&str] =
    &["frequent_activation", "stale_eligibility", "max_privileged"];
const FREQUENT_KEYS: &[&str] = &["count", "within"];

const DEFAULT_FREQUENT_COUNT: u32 = 5;
const DEFAULT_FREQUENT_WITHIN_SECS: u64 = 86400;
const DEFAULT_STALE_SECS: u64 = 30 * 86400;
const DEFAULT_MAX_PRIVILEGED: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// `frequent-activation` is raised when this many activations of one role by one user
    /// fall within `frequent_within_secs`.
    pub frequent_count: u32,
    pub frequent_within_secs: u64,
    /// `stale-eligibility`: eligible, and no activation for this long.
    pub stale_eligibility_secs: u64,
    /// `too-many-privileged`: more users than this eligible for, active in or permanent in
    /// one role.
    pub max_privileged: u32,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            frequent_count: DEFAULT_FREQUENT_COUNT,
            frequent_within_secs: DEFAULT_FREQUENT_WITHIN_SECS,
            stale_eligibility_secs: DEFAULT_STALE_SECS,
            max_privileged: DEFAULT_MAX_PRIVILEGED,
        }
    }
}

impl Checker<'_> {
    pub(crate) fn alerts(&mut self, s: &Section<'_, '_>) -> AlertsConfig {
        self.check_keys(s, ALERTS_KEYS);
        let frequent = self.section(s, "frequent_activation");
        self.check_keys(&frequent, FREQUENT_KEYS);
        // One activation is not "frequent": two at least.
        let count = self.integer(&frequent, "count", 2..=u32::MAX);
        let within = self.duration(&frequent, "within", &OTHER_CAP);
        let within = self.valid(&frequent, "within", within, |secs| {
            if *secs == 0 {
                Err("must be longer than 0s".to_string())
            } else {
                Ok(())
            }
        });
        let stale = self.duration(s, "stale_eligibility", &OTHER_CAP);
        let stale = self.valid(s, "stale_eligibility", stale, |secs| {
            if *secs == 0 {
                Err("must be longer than 0s".to_string())
            } else {
                Ok(())
            }
        });
        let max_privileged = self.integer(s, "max_privileged", 1..=u32::MAX);
        let default = AlertsConfig::default();
        AlertsConfig {
            frequent_count: value_or(&count, default.frequent_count).unwrap_or_default(),
            frequent_within_secs: value_or(&within, default.frequent_within_secs)
                .unwrap_or_default(),
            stale_eligibility_secs: value_or(&stale, default.stale_eligibility_secs)
                .unwrap_or_default(),
            max_privileged: value_or(&max_privileged, default.max_privileged).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{check, clean, one_error};
    use crate::AlertsConfig;

    #[test]
    fn given_no_alerts_table_then_the_spec_defaults_hold() {
        let config = clean("[roles.sudo]\n");
        assert_eq!(config.alerts, AlertsConfig::default());
        assert_eq!(config.alerts.frequent_count, 5);
        assert_eq!(config.alerts.frequent_within_secs, 86400);
        assert_eq!(config.alerts.stale_eligibility_secs, 30 * 86400);
        assert_eq!(config.alerts.max_privileged, 10);
    }

    #[test]
    fn given_the_spec_example_then_it_is_read() {
        let config = clean(
            "[alerts]\nfrequent_activation = { count = 3, within = \"1h\" }\n\
             stale_eligibility = \"7d\"\nmax_privileged = 4\n[roles.sudo]\n",
        );
        assert_eq!(
            config.alerts,
            AlertsConfig {
                frequent_count: 3,
                frequent_within_secs: 3600,
                stale_eligibility_secs: 7 * 86400,
                max_privileged: 4,
            }
        );
    }

    #[test]
    fn given_wrong_alert_keys_then_errors_name_the_key_and_line() {
        for (text, key, line) in [
            ("[alerts]\nmax_privileged = 0\n", "alerts.max_privileged", 2),
            (
                "[alerts]\nmax_priviledged = 3\n",
                "alerts.max_priviledged",
                2,
            ),
            (
                "[alerts]\n\nstale_eligibility = 30\n",
                "alerts.stale_eligibility",
                3,
            ),
            (
                "[alerts]\nfrequent_activation = { count = 1, within = \"1d\" }\n",
                "alerts.frequent_activation.count",
                2,
            ),
            (
                "[alerts]\nfrequent_activation = { count = 5, within = \"0s\" }\n",
                "alerts.frequent_activation.within",
                2,
            ),
            (
                "[alerts]\nfrequent_activation = { count = 5, whithin = \"1d\" }\n",
                "alerts.frequent_activation.whithin",
                2,
            ),
            (
                "[alerts]\nfrequent_activation = 5\n",
                "alerts.frequent_activation",
                2,
            ),
            ("alerts = 1\n", "alerts", 1),
        ] {
            let problem = one_error(&format!("{text}[roles.sudo]\n"));
            assert_eq!(problem.key, key, "{text}: {problem}");
            assert_eq!(problem.line, Some(line), "{text}: {problem}");
        }
        let (config, _) = check("[alerts]\nstale_eligibility = \"400d\"\n");
        assert!(config.is_none());
    }

    #[test]
    fn given_the_alerts_keys_then_the_manual_documents_each_in_its_section() {
        let manual = include_str!("../../packaging/man/pim.toml.5");
        let section = manual
            .split_once(".SH [alerts]")
            .and_then(|(_, rest)| rest.split_once("\n.SH "))
            .map(|(section, _)| section)
            .expect("pim.toml.5 has an [alerts] section");
        for key in super::ALERTS_KEYS {
            assert!(
                section.contains(&format!(".TP\n.B {key}\n")),
                "pim.toml.5 does not document alerts.{key}"
            );
        }
    }
}
