//! The access-review keys of a role (`review_every`, `review_duration`, `reviewers`,
//! `review_default`): their types, how they are read, and the checks across them.

use super::*;

/// Reviews last two weeks unless the role says otherwise.
pub const DEFAULT_REVIEW_DURATION_SECS: u64 = 14 * 86400;

/// Who may decide the items of an access review.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reviewer {
    /// Each user decides their own item (self-review); nobody else's.
    Oneself,
    /// The role's `owners`.
    Owners,
    /// pim administrators (`[daemon] admins`, root).
    Admins,
    /// A user, or every member of a `%group`.
    Principal(Principal),
}

impl Reviewer {
    pub fn parse(s: &str) -> Result<Reviewer, String> {
        match s {
            "self" => Ok(Reviewer::Oneself),
            "owners" => Ok(Reviewer::Owners),
            "admins" => Ok(Reviewer::Admins),
            other => Principal::parse(other)
                .map(Reviewer::Principal)
                .map_err(|e| {
                    format!(
                        "{e} (a reviewer is \"self\", \"owners\", \"admins\", a user or a %group)"
                    )
                }),
        }
    }

    /// As written in the configuration and on the command line.
    pub fn text(&self) -> String {
        match self {
            Reviewer::Oneself => "self".into(),
            Reviewer::Owners => "owners".into(),
            Reviewer::Admins => "admins".into(),
            Reviewer::Principal(Principal::User(u)) => u.clone(),
            Reviewer::Principal(Principal::Group(g)) => format!("%{g}"),
        }
    }
}

/// What happens at a review's end to an item nobody decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ReviewDefault {
    /// The assignment is removed (a standing entry suspended).
    #[default]
    Remove,
    /// Nothing changes.
    Keep,
    /// The item's recommendation applies: remove where unused for 30 days.
    Recommendation,
}

impl ReviewDefault {
    pub fn parse(s: &str) -> Result<ReviewDefault, String> {
        match s {
            "remove" => Ok(ReviewDefault::Remove),
            "keep" => Ok(ReviewDefault::Keep),
            "recommendation" => Ok(ReviewDefault::Recommendation),
            other => Err(format!(
                "'{}' is not one of \"remove\", \"keep\", \"recommendation\"",
                text::escape(other)
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDefault::Remove => "remove",
            ReviewDefault::Keep => "keep",
            ReviewDefault::Recommendation => "recommendation",
        }
    }
}

impl Checker<'_> {
    /// A duration that may be absent (no default): `review_every`.
    pub(crate) fn optional_duration(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
        cap: &Cap,
    ) -> Read<Option<u64>> {
        match self.duration(section, name, cap) {
            Ok(Some(d)) => {
                let span = d.span();
                if *d.get_ref() == 0 {
                    self.error(section.key(name), &span, "must be longer than 0s");
                    return Err(Reported);
                }
                Ok(Some(Spanned::new(span, Some(d.into_inner()))))
            }
            Ok(None) => Ok(None),
            Err(r) => Err(r),
        }
    }

    /// A list of reviewers: "self", "owners", "admins", users and `%groups`; not empty.
    pub(crate) fn reviewers(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
    ) -> Read<Vec<Reviewer>> {
        let read = self.name_list(
            section,
            name,
            "such as [\"owners\", \"%secops\"]",
            "a reviewer",
            Reviewer::parse,
            |r| match r {
                Reviewer::Principal(p) => Some(p),
                _ => None,
            },
        );
        match read {
            Ok(Some(list)) if list.get_ref().is_empty() => {
                self.error(section.key(name), &list.span(), "names no reviewer");
                Err(Reported)
            }
            other => other,
        }
    }

    /// "remove", "keep" or "recommendation".
    pub(crate) fn review_default(
        &mut self,
        section: &Section<'_, '_>,
        name: &str,
    ) -> Read<ReviewDefault> {
        let read = self.string(section, name)?;
        let Some(value) = read else {
            return Ok(None);
        };
        match ReviewDefault::parse(value.get_ref()) {
            Ok(d) => Ok(Some(Spanned::new(value.span(), d))),
            Err(message) => {
                self.error(section.key(name), &value.span(), message);
                Err(Reported)
            }
        }
    }

    /// A recurring review must end before the next one starts, and must have someone to
    /// decide it: reviewers that are only "owners" on a role without owners would leave every
    /// item to the default (by default, removal) at each review.
    pub(crate) fn check_review(
        &mut self,
        s: &Section<'_, '_>,
        every: &Read<Option<u64>>,
        length: &Read<u64>,
        reviewers: &Read<Vec<Reviewer>>,
        owners: &Read<Vec<Principal>>,
    ) {
        let every_span = match every {
            Ok(Some(every)) if every.get_ref().is_some() => Some(every.span()),
            _ => None,
        };
        let only_owners = match reviewers {
            Ok(Some(list)) => list.get_ref().iter().all(|r| *r == Reviewer::Owners),
            Ok(None) => true,
            Err(Reported) => false,
        };
        let no_owners =
            matches!(owners, Ok(None)) || matches!(owners, Ok(Some(o)) if o.get_ref().is_empty());
        if let Some(span) = every_span.filter(|_| only_owners && no_owners) {
            self.error(
                s.key("review_every"),
                &span,
                "the role's reviews would have no reviewer: reviewers is [\"owners\"] and the \
                 role has no owners; name owners, or other reviewers (\"admins\", users, %groups)",
            );
        }
        let min = self.min_review_duration_secs;
        if let Ok(Some(length)) = length {
            if *length.get_ref() < min {
                self.warn(
                    s.key("review_duration"),
                    &length.span(),
                    format!(
                        "{} is shorter than [daemon] min_review_duration {}: the role's reviews \
                         last {} instead",
                        duration::format(*length.get_ref()),
                        duration::format(min),
                        duration::format(min)
                    ),
                );
            }
        }
        let every = match every {
            Ok(Some(every)) => *every.get_ref(),
            _ => None,
        };
        let (Some(every), Ok(Some(length))) = (every, length) else {
            return;
        };
        if *length.get_ref() > every {
            self.error(
                s.key("review_duration"),
                &length.span(),
                format!(
                    "{} is longer than review_every {}: a review would still be open when the \
                     next one starts",
                    duration::format(*length.get_ref()),
                    duration::format(every)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Everyone;

    impl Directory for Everyone {
        fn user_exists(&self, _: &str) -> bool {
            true
        }
        fn group_exists(&self, _: &str) -> bool {
            true
        }
    }

    fn role(keys: &str) -> (Option<Config>, Vec<Problem>) {
        parse(
            &format!("[roles.db]\neligible = [\"alice\"]\n{keys}"),
            "pim.toml",
            &Everyone,
        )
    }

    #[test]
    fn given_no_review_keys_then_no_recurring_review_owners_review_for_14d_and_remove() {
        let (config, problems) = role("");
        assert!(problems.is_empty(), "{problems:?}");
        let db = config.unwrap().roles["db"].clone();
        assert_eq!(db.review_every_secs, None);
        assert_eq!(db.review_duration_secs, 14 * 86400);
        assert_eq!(db.reviewers, [Reviewer::Owners]);
        assert_eq!(db.review_default, ReviewDefault::Remove);
    }

    #[test]
    fn given_a_review_duration_below_min_review_duration_then_a_warning_naming_both() {
        let (config, problems) = role("review_duration = \"10m\"\n");
        assert!(config.is_some(), "a warning, not an error");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.severity, Severity::Warning);
        assert_eq!(p.key, "roles.db.review_duration");
        assert!(
            p.message.contains("10m") && p.message.contains("min_review_duration 1h"),
            "{}",
            p.message
        );
        let (_, problems) =
            role("review_duration = \"10m\"\n[daemon]\nmin_review_duration = \"5m\"\n");
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn given_review_keys_then_each_is_read() {
        let (config, problems) = role(
            "review_every = \"90d\"\nreview_duration = \"30s\"\n\
             reviewers = [\"self\", \"owners\", \"admins\", \"carol\", \"%secops\"]\n\
             review_default = \"recommendation\"\n\
             [daemon]\nmin_review_duration = \"30s\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let db = config.unwrap().roles["db"].clone();
        assert_eq!(db.review_every_secs, Some(90 * 86400));
        assert_eq!(db.review_duration_secs, 30);
        assert_eq!(
            db.reviewers,
            [
                Reviewer::Oneself,
                Reviewer::Owners,
                Reviewer::Admins,
                Reviewer::Principal(Principal::User("carol".into())),
                Reviewer::Principal(Principal::Group("secops".into())),
            ]
        );
        let texts: Vec<String> = db.reviewers.iter().map(Reviewer::text).collect();
        assert_eq!(texts, ["self", "owners", "admins", "carol", "%secops"]);
        assert_eq!(db.review_default, ReviewDefault::Recommendation);
    }

    #[test]
    fn given_wrong_review_keys_then_each_is_an_error_naming_it() {
        for (keys, key) in [
            ("review_default = \"maybe\"\n", "roles.db.review_default"),
            ("reviewers = []\n", "roles.db.reviewers"),
            ("reviewers = [\"bad name\"]\n", "roles.db.reviewers"),
            ("reviewers = \"owners\"\n", "roles.db.reviewers"),
            ("review_every = \"0s\"\n", "roles.db.review_every"),
            ("review_every = \"400d\"\n", "roles.db.review_every"),
            (
                "review_every = \"1d\"\nreview_duration = \"2d\"\nreviewers = [\"admins\"]\n",
                "roles.db.review_duration",
            ),
            ("review_every = \"1d\"\n", "roles.db.review_every"),
            (
                "review_every = \"1d\"\nreviewers = [\"owners\"]\nowners = []\n",
                "roles.db.review_every",
            ),
        ] {
            let (config, problems) = role(keys);
            assert!(config.is_none(), "{keys}: accepted");
            assert!(
                problems
                    .iter()
                    .any(|p| p.severity == Severity::Error && p.key == key),
                "{keys}: {problems:?}"
            );
        }
    }
}
