//! How a run ends: exit statuses and the one-line `pim: ...` message with what to do next.

use pim_common::text::escape;
use pim_common::PimError;

/// Done.
pub const EXIT_OK: u8 = 0;
/// Refused by the daemon, or failed.
pub const EXIT_FAILED: u8 = 1;
/// The command line was wrong (clap uses the same status for its own errors).
pub const EXIT_USAGE: u8 = 2;
/// `activate`: a request was filed and waits for approval.
pub const EXIT_PENDING: u8 = 3;

/// A run that did not end well.
#[derive(Debug)]
pub enum Failure {
    /// Our own validation of the command line (bad duration, time, name, ...).
    Usage(String),
    /// The daemon refused, or could not be reached.
    Daemon(PimError),
    /// Something else went wrong here (a request denied while waiting, terminal I/O, ...).
    Failed(String),
    /// Nothing more to say (stdout was closed under us); just the status.
    Quiet(u8),
}

impl From<PimError> for Failure {
    fn from(e: PimError) -> Self {
        Failure::Daemon(e)
    }
}

impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Self {
        Failure::Daemon(PimError::ZBus(e))
    }
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Daemon(_) | Failure::Failed(_) => EXIT_FAILED,
            Failure::Quiet(code) => *code,
        }
    }

    /// The text after `pim: `, or `None` when nothing is to be printed.
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::Usage(m) | Failure::Failed(m) => Some(m.clone()),
            Failure::Daemon(e) => Some(daemon_message(e)),
            Failure::Quiet(_) => None,
        }
    }
}

/// The daemon's message (escaped: it may quote what the user typed) plus what to do about it.
pub fn daemon_message(e: &PimError) -> String {
    if let PimError::ZBus(inner) = e {
        return format!(
            "the pim daemon is not reachable on the system bus ({}); check 'systemctl status pimd'",
            escape(&inner.to_string())
        );
    }
    if let PimError::InvalidCode(m) = e {
        if let Some(refusal) = pim_common::code_refusal::CodeRefusal::from_message(m) {
            // Its sentence holds the advice: no hint after it.
            return refusal.sentence();
        }
    }
    let message = escape(e.message().trim());
    let message = message.trim_end_matches('.');
    let message = if message.is_empty() {
        "the daemon refused without saying why"
    } else {
        message
    };
    match hint(e) {
        Some(hint) if !message.contains(hint_key(hint)) => format!("{message}; {hint}"),
        _ => message.to_string(),
    }
}

/// What to do next, for the errors where the client knows better than the message.
fn hint(e: &PimError) -> Option<&'static str> {
    match e {
        PimError::NotEligible(_) => Some("run 'pim roles' to see what you can activate"),
        PimError::MfaRequired(_) => Some(
            "give the code from your authenticator app with --code CODE (or --code - to read it from stdin)",
        ),
        PimError::MfaNotEnrolled(_) => Some("run 'pim mfa enroll' first"),
        PimError::InvalidCode(_) => Some(
            "check that the authenticator's clock is right and try again with a fresh code",
        ),
        PimError::Internal(_) => {
            Some("nothing was changed; the daemon's log has details ('journalctl -u pimd')")
        }
        PimError::ZBus(_)
        | PimError::InvalidArgument(_)
        | PimError::MfaLockedOut(_)
        | PimError::PermissionDenied(_)
        | PimError::NotFound(_)
        | PimError::AlreadyMember(_)
        | PimError::Conflict(_)
        | PimError::Busy(_) => None,
    }
}

/// The command a hint names; when the daemon's message already names it, the hint is left out.
fn hint_key(hint: &str) -> &str {
    match (hint.find('\''), hint.rfind('\'')) {
        (Some(a), Some(b)) if b > a => &hint[a + 1..b],
        _ => hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_daemon_error() -> Vec<PimError> {
        let m = || "msg".to_string();
        vec![
            PimError::ZBus(zbus::Error::Failure("connection refused".into())),
            PimError::NotEligible(m()),
            PimError::InvalidArgument(m()),
            PimError::MfaRequired(m()),
            PimError::MfaNotEnrolled(m()),
            PimError::InvalidCode(m()),
            PimError::MfaLockedOut(m()),
            PimError::PermissionDenied(m()),
            PimError::NotFound(m()),
            PimError::AlreadyMember(m()),
            PimError::Conflict(m()),
            PimError::Busy(m()),
            PimError::Internal(m()),
        ]
    }

    #[test]
    fn given_any_daemon_error_then_exit_status_is_1() {
        for e in every_daemon_error() {
            let name = format!("{e:?}");
            let failure = Failure::from(e);
            assert_eq!(failure.exit_code(), EXIT_FAILED, "{name}");
            assert!(failure.message().is_some(), "{name}");
        }
    }

    #[test]
    fn given_usage_failed_and_quiet_then_statuses_are_2_1_and_given() {
        assert_eq!(Failure::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(Failure::Failed("x".into()).exit_code(), EXIT_FAILED);
        assert_eq!(Failure::Quiet(EXIT_PENDING).exit_code(), EXIT_PENDING);
        assert_eq!(Failure::Quiet(1).message(), None);
    }

    #[test]
    fn given_a_transport_error_then_message_points_at_systemctl() {
        let m = daemon_message(&PimError::ZBus(zbus::Error::Failure("gone".into())));
        assert!(m.contains("not reachable"), "{m}");
        assert!(m.contains("systemctl status pimd"), "{m}");
        assert!(m.contains("gone"), "{m}");
    }

    #[test]
    fn given_known_variants_then_message_says_what_to_do() {
        let cases = [
            (
                PimError::MfaNotEnrolled("you have no TOTP enrolment".into()),
                "you have no TOTP enrolment; run 'pim mfa enroll' first",
            ),
            (
                PimError::NotEligible("you are not eligible for role 'db'.".into()),
                "you are not eligible for role 'db'; run 'pim roles' to see what you can activate",
            ),
            (
                PimError::MfaLockedOut("too many wrong codes; locked until 15:00".into()),
                "too many wrong codes; locked until 15:00",
            ),
            (
                PimError::PermissionDenied("only admins may revoke".into()),
                "only admins may revoke",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(daemon_message(&e), want);
        }
        assert!(
            daemon_message(&PimError::MfaRequired("role 'admin' requires MFA".into()))
                .contains("--code")
        );
        assert!(
            daemon_message(&PimError::Internal("database locked".into()))
                .contains("journalctl -u pimd")
        );
    }

    #[test]
    fn given_a_refused_code_then_its_advice_is_said_once_with_attempts_left() {
        use pim_common::code_refusal::{CodeKind, CodeRefusal};
        let refusal = |kind| CodeRefusal {
            kind,
            attempts_left: 2,
            next_code_in: 9,
        };
        let totp = daemon_message(&PimError::InvalidCode(refusal(CodeKind::Totp).to_message()));
        assert_eq!(totp, refusal(CodeKind::Totp).sentence());
        assert!(totp.contains("the next code appears in 9 s"), "{totp}");
        assert_eq!(totp.matches("clock").count(), 1, "{totp}");
        assert!(totp.contains("2 attempts left"), "{totp}");
        let recovery = daemon_message(&PimError::InvalidCode(
            refusal(CodeKind::Recovery).to_message(),
        ));
        assert!(!recovery.contains("next code"), "{recovery}");
        // An older pimd's sentence is shown as it was, with the hint.
        assert!(daemon_message(&PimError::InvalidCode("wrong code".into())).contains("clock"));
    }

    #[test]
    fn given_a_message_that_already_names_the_command_then_no_repeat() {
        let m = daemon_message(&PimError::MfaNotEnrolled(
            "not enrolled; run 'pim mfa enroll' first".into(),
        ));
        assert_eq!(m.matches("pim mfa enroll").count(), 1, "{m}");
    }

    #[test]
    fn given_control_characters_from_the_daemon_then_escaped() {
        let m = daemon_message(&PimError::NotFound("no role 'x\x1b[2J'".into()));
        assert!(!m.contains('\x1b'), "{m}");
        assert!(m.contains("\\x1b[2J"), "{m}");
    }

    #[test]
    fn given_an_empty_message_then_something_is_still_said() {
        assert!(!daemon_message(&PimError::Conflict(String::new())).is_empty());
    }
}
