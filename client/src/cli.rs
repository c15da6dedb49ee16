//! The command line (SPEC.md, "Command line").

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  pim roles                                   what you may activate, and what each requires
  pim activate admin -d 30m -r \"rotate the TLS keys\"   asks for the code
  pim status                                  your grants, with the time left
  pim deactivate admin

Colour: errors and warnings are coloured when they go to a terminal, unless NO_COLOR is set.

Exit status: 0 done; 1 refused or failed; 2 usage error; 3 (activate) the request waits for
approval.

TOTP codes: --code CODE, or --code - to read one line from standard input; without --code the
code is asked for on the terminal (not echoed) when the role needs one.

With --json, stdout holds exactly one JSON document (pim watch: one document per line). Absent
values are null. Every time is given twice: FIELD as an RFC 3339 UTC string
(\"2026-11-21T14:00:00Z\") and FIELD_unix as seconds since the epoch. Durations are whole
seconds in fields ending in _secs. Errors go to stderr as 'pim: ...' and nothing to stdout.";

/// The long help of a time option: its description, then the time syntax.
macro_rules! time_help {
    ($what:literal) => {
        concat!(
            $what,
            ".\n\nT is RFC 3339 (2026-11-21T14:00:00Z), a date (2026-11-21, local midnight), \
             'YYYY-MM-DD HH:MM' (local), @UNIX, now, or relative: -2h, +30m, '2h ago'"
        )
    };
}

/// Just-in-time Unix group membership: activate a role for a while, with MFA and approvals.
#[derive(Debug, Parser)]
#[command(name = "pim", version, after_long_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text (see --help)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The shells `pim completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Roles you are eligible for, with what each requires
    Roles,
    /// Activate a role, or file a request when the role needs approval
    Activate(ActivateArgs),
    /// End your grant of a role now
    Deactivate {
        /// The role
        role: String,
    },
    /// Extend your live grant of a role, under the same policy
    Extend(ExtendArgs),
    /// Your live grants (with time left) and open requests
    Status,
    /// TOTP enrolment
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// Open requests you may approve or deny
    Requests,
    /// Approve a request (approvers prove MFA too)
    Approve(ApproveArgs),
    /// Deny a request, saying why
    Deny(DenyArgs),
    /// Withdraw your own open request
    Cancel {
        /// The request's id
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
    /// Follow the events you may see, one line each, until interrupted
    Watch,
    /// The audit log (admins and auditors see everything; others their own records)
    Audit(AuditArgs),
    /// Open alerts: drift from just-in-time access (admins and auditors)
    Alerts(AlertsArgs),
    /// Ask for a longer eligible or active assignment (from 14 days before its end up to 30
    /// days after it); the role's owners or admins decide
    Renew(RenewArgs),
    /// One request in full (activation or renewal), with who decides it
    Show {
        /// The request's id
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
    /// Wait for a request's decision (exit 0 approved, 1 otherwise)
    Wait {
        /// The request's id
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },
    /// Administration (admins, and a role's owners for that role; root always)
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check that this host is set up for pim, and say how to fix what is not
    Doctor(DoctorArgs),
    /// Print a completion script for a shell, e.g. `pim completions bash > /etc/bash_completion.d/pim`
    Completions {
        /// The shell: bash, zsh or fish
        shell: CompletionShell,
    },
    /// Open access reviews and the items you may decide
    Reviews,
    /// Decide one item of an access review: keep or remove a user's access
    #[command(subcommand)]
    Review(ReviewCommand),
}

/// `pim review keep|remove REVIEW USER`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Keep the user's access to the review's role
    Keep(ReviewDecideArgs),
    /// Remove it at the review's end (an assignment is deleted, a standing entry suspended)
    Remove(ReviewDecideArgs),
}

#[derive(Debug, Args)]
pub struct ReviewDecideArgs {
    /// The review's id ('pim reviews')
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub review: i64,
    /// Whose access
    pub user: String,
    /// A comment for the record
    #[arg(short, long)]
    pub comment: Option<String>,
    /// The code your authenticator app shows, or - to read it from stdin
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
}

/// `pim admin review start|show`.
#[derive(Debug, Subcommand)]
pub enum AdminReviewCommand {
    /// Start a one-off access review of a role (admins and the role's owners); prints its id
    Start {
        /// The role to review, as pim.toml names it
        role: String,
        /// How long reviewers have (default: the role's review_duration)
        #[arg(long, value_name = "D")]
        duration: Option<String>,
        /// Who reviews, comma-separated: self, owners, admins, users, %groups (default: the
        /// role's reviewers)
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        reviewers: Vec<String>,
    },
    /// A review's items, decisions and results (auditors, admins, the role's owners)
    Show {
        /// The review's id (printed by 'pim admin review start')
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        review: i64,
        /// RFC 4180 CSV, one row per item
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
}

#[derive(Debug, Args)]
#[command(after_long_help = DOCTOR_HELP)]
pub struct DoctorArgs {
    /// The configuration to check (default /etc/pim/pim.toml)
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
}

const DOCTOR_HELP: &str = "\
Checks: the daemon answers on the system bus; the bus policy and activation files, the PAM
module and sudo's PAM stacks (sudo, sudo-i) are in place; group_source in /etc/sudo.conf; the
service is enabled. As root also: the configuration (pimd --check-config), the database's
permissions, that every role's group exists, that the groups pam_pim.so gates match the roles
and sudoers, and which members of gated groups would be refused sudo.

Exit status: 0 when no check failed (warnings and skipped checks do not count), 1 otherwise.";

const ACTIVATE_HELP: &str = "\
Examples:
  pim activate                                 the roles you can activate
  pim activate admin -d 30m -r \"rotate the TLS keys on web1\"
                                               asks for the TOTP code on the terminal
  printf '%s\\n' \"$code\" | pim --json activate admin -r \"nightly job\" --code -
  pim activate db -d 1h -r \"restore the orders table\" -t CHG1234 --wait
                                               waits for the approvers' decision
  pim activate docker --shell                  then a shell that carries group docker";

#[derive(Debug, Args)]
#[command(after_help = ACTIVATE_HELP)]
pub struct ActivateArgs {
    /// The role to activate (without it: the roles you can activate)
    pub role: Option<String>,
    /// How long, e.g. 30m, 2h, 1h30m (default: the role's default)
    #[arg(short, long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why you need it (asked for when the role requires one and stdin is a terminal)
    #[arg(short, long)]
    pub reason: Option<String>,
    /// Ticket reference (asked for when the role requires one and stdin is a terminal)
    #[arg(short, long)]
    pub ticket: Option<String>,
    /// TOTP code, or - to read it from stdin
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// When approval is needed, wait for the decision (exit 0 granted, 1 refused)
    #[arg(long)]
    pub wait: bool,
    /// Once granted, start a shell on this terminal that carries the role's group (newgrp
    /// GROUP); with --wait, after the approval. Not with --json
    #[arg(long)]
    pub shell: bool,
    /// Fleet mode: the grant applies on this host of the fleet only
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The role whose assignment to renew
    pub role: String,
    /// The new end (default: the role's longest assignment from now, or 90 days)
    #[arg(long, value_name = "T", allow_hyphen_values = true, long_help = time_help!("The new end (default: the role's longest assignment from now, or 90 days)"))]
    pub until: Option<String>,
    /// Why you still need it
    #[arg(short, long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// The role whose grant to extend
    pub role: String,
    /// New time left from now, e.g. 1h, or +30m for 30 minutes after the current end
    /// (default: the role's default)
    #[arg(short, long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why you need more time (asked for when the role requires one and stdin is a terminal)
    #[arg(short, long)]
    pub reason: Option<String>,
    /// TOTP code, or - to read it from stdin
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// Start enrolment, or move an enrolment to a new device: prints the otpauth URI, the
    /// secret and a QR code
    #[command(after_long_help = ENROLL_HELP)]
    Enroll {
        /// When already enrolled: a code of your current device (or a recovery code), or - to
        /// read it from stdin; asked for on the terminal otherwise
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
        /// Fleet mode: the one-time enrolment ticket a fleet administrator issued for you
        /// ('pim admin mfa-ticket USER'), or - to read it from stdin
        #[arg(long, value_name = "TICKET", conflicts_with = "code")]
        ticket: Option<String>,
    },
    /// Finish enrolment with a first code; prints one-time recovery codes
    Confirm {
        /// The code your authenticator app shows, or - to read it from stdin
        #[arg(required_unless_present = "code_flag")]
        code: Option<String>,
        /// The same as CODE, spelt as everywhere else
        #[arg(
            long = "code",
            value_name = "CODE",
            conflicts_with = "code",
            allow_hyphen_values = true
        )]
        code_flag: Option<String>,
    },
    /// Whether you are enrolled, locked out, and how many recovery codes are left
    Status,
    /// Replace your recovery codes with ten new ones (the old ones stop working)
    RecoveryCodes {
        /// Your TOTP code (or a recovery code), or - to read it from stdin; asked for on the
        /// terminal otherwise
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
}

const ENROLL_HELP: &str = "\
Already enrolled, 'pim mfa enroll' moves your enrolment to a new device: it asks for a code of
the current one (or a recovery code, if the device is lost) and shows a new secret. The current
device keeps working until 'pim mfa confirm' takes a first code of the new one; your recovery
codes stay. Without any code left, an administrator's 'pim admin mfa-reset' starts over.

In fleet mode a first enrolment takes the one-time ticket a fleet administrator issued for you
with 'pim admin mfa-ticket USER': 'pim mfa enroll --ticket -' on any host of the fleet reads it
from standard input (kept out of ps and shell history; '--ticket TICKET' works too).

Examples:
  pim mfa enroll                # scan the QR code, then:
  pim mfa confirm               # type the code the app shows
  pim mfa enroll --ticket -     # fleet mode: the ticket read from stdin";

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The request's id (see 'pim requests')
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
    /// A comment for the requester and the audit log
    #[arg(short, long)]
    pub comment: Option<String>,
    /// Your TOTP code, or - to read it from stdin
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    /// The request's id (see 'pim requests')
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
    /// Why (required)
    #[arg(short, long)]
    pub comment: String,
    /// Your TOTP code, or - to read it from stdin
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only records at or after this time
    #[arg(long, value_name = "T", allow_hyphen_values = true, long_help = time_help!("Only records at or after this time"))]
    pub since: Option<String>,
    /// Only records about this user
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only records about this role
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// Only records before this time
    #[arg(long, value_name = "T", allow_hyphen_values = true, long_help = time_help!("Only records before this time"))]
    pub until: Option<String>,
    /// Only records of this action (as `pim --json audit` names them: activate, approve,
    /// mfa-failure, ...)
    #[arg(long, value_name = "A")]
    pub action: Option<String>,
    /// Only the last N records that match
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print RFC 4180 CSV with a header row instead of text (clap sees --json only after
    /// `audit`; `pim --json audit --csv` is refused by `pim audit` itself)
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AlertsArgs {
    /// Include resolved and dismissed alerts
    #[arg(long)]
    pub all: bool,
    #[command(subcommand)]
    pub command: Option<AlertsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Dismiss an open alert (admins): it does not come back while its cause persists
    Dismiss {
        /// The alert's id
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
        /// Why it may be left as it is
        #[arg(short, long, value_name = "REASON")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain: report the first record where it breaks (exit 1), or how many
    /// records hold
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also check against this head (ID:HASH), as pimd logged it to syslog (a remote copy)
    #[arg(long, value_name = "ID:HASH")]
    pub head: Option<String>,
    /// Verify an export ('pim --json audit' saved to FILE) here, without pimd; repeat it for
    /// the pages of a longer export, in order (the records they share are taken once)
    #[arg(long, value_name = "FILE")]
    pub file: Vec<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Every live grant on the host
    Grants,
    /// Make a user eligible for a role (or, with --active, hold it), optionally for a time
    /// window
    Assign {
        /// The user to make eligible (a login name)
        user: String,
        /// The role, as pim.toml names it
        role: String,
        /// Eligible (or active) from (default: now)
        #[arg(long, value_name = "T", allow_hyphen_values = true, long_help = time_help!("Eligible (or active) from (default: now)"))]
        from: Option<String>,
        /// Eligible (or active) until (default: no end, where the role's cap allows it)
        #[arg(long, value_name = "T", allow_hyphen_values = true, long_help = time_help!("Eligible (or active) until (default: no end, where the role's cap allows it)"))]
        until: Option<String>,
        /// An active assignment: the user holds the role's group for the window without
        /// activating
        #[arg(long, requires = "reason")]
        active: bool,
        /// Why (required with --active; recorded in the audit log)
        #[arg(short, long, requires = "active")]
        reason: Option<String>,
    },
    /// Remove an assignment made with 'pim admin assign'
    Unassign {
        /// The user whose assignment ends
        user: String,
        /// The role of the assignment
        role: String,
    },
    /// End someone's grant now
    Revoke {
        /// The user whose grant ends
        user: String,
        /// The role of the grant
        role: String,
        /// Why (recorded in the audit log)
        #[arg(short, long)]
        reason: Option<String>,
        /// Fleet mode: your TOTP code (the fleet's database checks it), or - to read it
        /// from stdin
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
    /// Drop a user's MFA enrolment (they enrol again with 'pim mfa enroll')
    MfaReset {
        /// The user whose enrolment is dropped
        user: String,
    },
    /// Fleet mode: issue a user's one-time enrolment ticket (shown once, good for 24 hours;
    /// it replaces any earlier one), for 'pim mfa enroll --ticket TICKET'
    MfaTicket {
        /// The user who enrols with it
        user: String,
        /// Remove the user's enrolment first (a lost device): their old device stops working
        #[arg(long)]
        reset: bool,
        /// Your TOTP code, or - to read it from stdin (asked for otherwise)
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
    /// End a user's MFA lockout after too many wrong codes, keeping their enrolment
    MfaUnlock {
        /// The user whose lockout ends
        user: String,
    },
    /// Access reviews: start a one-off review, show a review's record
    #[command(subcommand)]
    Review(AdminReviewCommand),
    /// Lift an access review's suspension of a user's standing eligibility for a role
    Reinstate {
        /// The user whose standing eligibility was suspended
        user: String,
        /// The role of the suspension
        role: String,
    },
    /// Fleet mode: the fleet's hosts, when each was last seen and synchronised
    Hosts,
    /// Fleet mode: add, disable or enable a host of the fleet
    #[command(subcommand)]
    Host(AdminHostCommand),
    /// Fleet mode: the policy every host of the fleet runs
    #[command(subcommand)]
    Policy(AdminPolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminHostCommand {
    /// Add a host; prints its database password once
    Add {
        /// The host's name in the fleet (its [fleet] host)
        name: String,
        /// Tags the roles' hosts = ["tag:NAME"] match, comma-separated
        #[arg(long, value_name = "T,...", value_delimiter = ',')]
        tags: Vec<String>,
        /// Your TOTP code, or - to read it from stdin (asked for otherwise)
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
    /// Disable a host: its database login and calls are refused, the grants for it alone end
    Disable {
        /// The host's name in the fleet
        name: String,
        /// Your TOTP code, or - to read it from stdin (asked for otherwise)
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
    /// Let a disabled host back into the fleet
    Enable {
        /// The host's name in the fleet
        name: String,
        /// Your TOTP code, or - to read it from stdin (asked for otherwise)
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminPolicyCommand {
    /// Check FILE (a pim.toml of roles, admins and [mfa]) and store it as the next version
    Push {
        /// The policy file
        file: std::path::PathBuf,
        /// Your TOTP code, or - to read it from stdin (asked for otherwise)
        #[arg(long, value_name = "CODE")]
        code: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pim").chain(args.iter().copied()))
    }

    #[test]
    fn given_the_definition_then_clap_accepts_it() {
        Cli::command().debug_assert();
    }

    #[test]
    fn given_activate_with_every_flag_then_all_are_parsed() {
        let cli = parse(&[
            "activate", "admin", "-d", "1h", "-r", "deploy", "-t", "INC1", "--code", "-", "--wait",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Activate(a) = cli.command else {
            panic!("not activate")
        };
        assert_eq!(a.role.as_deref(), Some("admin"));
        assert_eq!(a.duration.as_deref(), Some("1h"));
        assert_eq!(a.reason.as_deref(), Some("deploy"));
        assert_eq!(a.ticket.as_deref(), Some("INC1"));
        assert_eq!(a.code.as_deref(), Some("-"));
        assert!(a.wait);
    }

    #[test]
    fn given_governance_commands_then_active_needs_a_reason_and_renew_one_too() {
        let cli = parse(&[
            "admin", "assign", "dave", "docker", "--active", "--until", "+2h", "-r", "on call",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::Assign { active, reason, .. }) = cli.command else {
            panic!("not assign")
        };
        assert!(active);
        assert_eq!(reason.as_deref(), Some("on call"));
        assert_eq!(
            parse(&["admin", "assign", "dave", "docker", "--active"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(parse(&["renew", "docker"]).unwrap_err().exit_code(), 2);
        assert!(parse(&["renew", "docker", "--until", "+30d", "-r", "still needed"]).is_ok());
        assert!(parse(&["show", "7"]).is_ok() && parse(&["wait", "7", "--json"]).is_ok());
        assert_eq!(parse(&["show", "0"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn given_json_before_the_command_then_it_applies() {
        assert!(parse(&["--json", "status"]).unwrap().json);
    }

    #[test]
    fn given_deny_without_comment_then_usage_error() {
        let err = parse(&["deny", "7"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(parse(&["deny", "7", "-c", "no"]).is_ok());
    }

    #[test]
    fn given_bad_ids_then_usage_error() {
        for args in [&["approve", "x"][..], &["cancel", "0"], &["cancel", "-1"]] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn given_alerts_then_listing_and_dismissing_parse_and_a_dismissal_needs_id_and_reason() {
        let cli = parse(&["alerts", "--all", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Alerts(AlertsArgs {
                all: true,
                command: None
            })
        ));
        let cli = parse(&["alerts", "dismiss", "7", "-r", "known break-glass rule"]).unwrap();
        let Command::Alerts(AlertsArgs {
            command: Some(AlertsCommand::Dismiss { id, reason }),
            ..
        }) = cli.command
        else {
            panic!("not a dismissal");
        };
        assert_eq!((id, reason.as_str()), (7, "known break-glass rule"));
        for bad in [
            &["alerts", "dismiss", "7"][..],
            &["alerts", "dismiss", "-r", "x"],
            &["alerts", "dismiss", "0", "-r", "x"],
            &["alerts", "--all", "dismiss", "7", "-r", "x"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn given_csv_and_json_together_then_usage_error() {
        assert_eq!(
            parse(&["audit", "--csv", "--json"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert!(parse(&["audit", "--csv"]).is_ok());
    }

    #[test]
    fn given_a_negative_relative_time_then_taken_as_a_value() {
        let cli = parse(&["audit", "--since", "-2h"]).unwrap();
        let Command::Audit(a) = cli.command else {
            panic!("not audit")
        };
        assert_eq!(a.since.as_deref(), Some("-2h"));
        let cli = parse(&[
            "admin", "assign", "bob", "db", "--from", "-1h", "--until", "+2h",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::Assign { from, until, .. }) = cli.command else {
            panic!("not assign")
        };
        assert_eq!(from.as_deref(), Some("-1h"));
        assert_eq!(until.as_deref(), Some("+2h"));
    }

    #[test]
    fn given_mfa_confirm_then_the_code_is_positional_or_code_but_not_both() {
        for argv in [
            &["mfa", "confirm", "123456"][..],
            &["mfa", "confirm", "--code", "123456"],
        ] {
            let cli = parse(argv).unwrap();
            let Command::Mfa(MfaCommand::Confirm { code, code_flag }) = cli.command else {
                panic!("not confirm")
            };
            assert_eq!(code.or(code_flag).as_deref(), Some("123456"), "{argv:?}");
        }
        assert!(parse(&["mfa", "confirm", "1", "--code", "2"]).is_err());
    }

    #[test]
    fn given_completions_then_bash_zsh_and_fish_are_accepted() {
        for shell in ["bash", "zsh", "fish"] {
            assert!(parse(&["completions", shell]).is_ok(), "{shell}");
        }
        assert!(parse(&["completions", "tcsh"]).is_err());
    }

    #[test]
    fn given_long_help_then_time_options_keep_their_description_and_admin_arguments_have_one() {
        let mut cli = Cli::command();
        cli.build();
        let help = |cli: &mut clap::Command, path: &[&str]| {
            let mut cmd = cli.clone();
            for name in path {
                cmd = cmd.find_subcommand(name).unwrap().clone();
            }
            cmd.render_long_help().to_string()
        };
        let audit = help(&mut cli, &["audit"]);
        assert!(
            audit.contains("Only records at or after this time."),
            "{audit}"
        );
        assert!(audit.contains("Only records before this time."), "{audit}");
        let assign = help(&mut cli, &["admin", "assign"]);
        assert!(
            assign.contains("Eligible (or active) from (default: now)."),
            "{assign}"
        );
        assert!(assign.contains("Eligible (or active) until"), "{assign}");
        for path in [
            &["admin", "assign"][..],
            &["admin", "unassign"],
            &["admin", "revoke"],
            &["admin", "mfa-reset"],
            &["admin", "mfa-unlock"],
        ] {
            let cmd = path.iter().fold(cli.clone(), |c, name| {
                c.find_subcommand(name).unwrap().clone()
            });
            for arg in cmd.get_positionals() {
                assert!(arg.get_help().is_some(), "{path:?} {}", arg.get_id());
            }
        }
    }

    #[test]
    fn given_admin_mfa_reset_then_kebab_case_name() {
        let cli = parse(&["admin", "mfa-reset", "bob"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::MfaReset { ref user }) if user == "bob"
        ));
    }

    #[test]
    fn given_help_then_examples_are_shown() {
        let mut cli = Cli::command();
        cli.build();
        let top = cli.render_long_help().to_string();
        assert!(top.contains("Examples:\n  pim roles"), "{top}");
        assert!(top.contains("NO_COLOR"), "{top}");
        let activate = cli.find_subcommand_mut("activate").unwrap();
        for help in [
            activate.render_help().to_string(),
            activate.render_long_help().to_string(),
        ] {
            assert!(help.contains("Examples:"), "{help}");
            assert!(help.contains("pim activate docker --shell"), "{help}");
            assert!(help.contains("--code -"), "{help}");
        }
    }

    #[test]
    fn given_the_mfa_lifecycle_commands_then_their_arguments_are_parsed() {
        let cli = parse(&["mfa", "enroll", "--code", "-"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Mfa(MfaCommand::Enroll { code: Some(ref c), .. }) if c == "-"
        ));
        assert!(matches!(
            parse(&["mfa", "enroll"]).unwrap().command,
            Command::Mfa(MfaCommand::Enroll { code: None, .. })
        ));
        let cli = parse(&["mfa", "enroll", "--ticket", "-"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Mfa(MfaCommand::Enroll { code: None, ticket: Some(ref t) }) if t == "-"
        ));
        assert!(parse(&["mfa", "enroll", "--ticket", "T", "--code", "1"]).is_err());
        let cli = parse(&["admin", "mfa-ticket", "alice", "--code", "123456"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::MfaTicket { ref user, reset: false, code: Some(ref c) })
                if user == "alice" && c == "123456"
        ));
        assert!(matches!(
            parse(&["admin", "mfa-ticket", "bob", "--reset"])
                .unwrap()
                .command,
            Command::Admin(AdminCommand::MfaTicket {
                reset: true,
                code: None,
                ..
            })
        ));
        let cli = parse(&["mfa", "recovery-codes", "--code", "123456"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Mfa(MfaCommand::RecoveryCodes { code: Some(ref c) }) if c == "123456"
        ));
        let cli = parse(&["admin", "mfa-unlock", "bob"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::MfaUnlock { ref user }) if user == "bob"
        ));
        assert_eq!(parse(&["admin", "mfa-unlock"]).unwrap_err().exit_code(), 2);
        assert_eq!(
            parse(&["mfa", "recovery-codes", "123456"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn given_review_commands_then_their_arguments_are_parsed() {
        let cli = parse(&["review", "remove", "3", "bob", "-c", "left", "--code", "-"]).unwrap();
        let Command::Review(ReviewCommand::Remove(a)) = cli.command else {
            panic!("not review remove")
        };
        assert_eq!((a.review, a.user.as_str()), (3, "bob"));
        assert_eq!(a.comment.as_deref(), Some("left"));
        let cli = parse(&[
            "admin",
            "review",
            "start",
            "db",
            "--duration",
            "30s",
            "--reviewers",
            "carol,%secops,self,owners",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::Review(AdminReviewCommand::Start {
            role,
            duration,
            reviewers,
        })) = cli.command
        else {
            panic!("not admin review start")
        };
        assert_eq!(role, "db");
        assert_eq!(duration.as_deref(), Some("30s"));
        assert_eq!(reviewers, ["carol", "%secops", "self", "owners"]);
        assert!(parse(&["admin", "review", "show", "3", "--csv"]).is_ok());
        assert_eq!(
            parse(&["admin", "review", "show", "3", "--csv", "--json"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            parse(&["review", "maybe", "3", "bob"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert!(parse(&["admin", "reinstate", "bob", "db"]).is_ok());
    }

    #[test]
    fn given_doctor_then_config_is_optional() {
        let cli = parse(&["doctor", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Doctor(DoctorArgs { config: None })
        ));
        let cli = parse(&["doctor", "--config", "/tmp/x.toml"]).unwrap();
        let Command::Doctor(args) = cli.command else {
            panic!("not doctor")
        };
        assert_eq!(
            args.config.as_deref(),
            Some(std::path::Path::new("/tmp/x.toml"))
        );
    }

    #[test]
    fn given_unknown_command_or_missing_argument_then_usage_error() {
        assert_eq!(parse(&["frobnicate"]).unwrap_err().exit_code(), 2);
        // `pim activate` alone lists the caller's roles, then exits 2 (commands::activate).
        assert!(matches!(
            parse(&["activate"]).unwrap().command,
            Command::Activate(ActivateArgs { role: None, .. })
        ));
        assert_eq!(parse(&["mfa", "confirm"]).unwrap_err().exit_code(), 2);
    }
}
