//! The enumerated values pimd and its clients exchange: audit actions and outcomes, request
//! states, event kinds and what an activation did. Each is listed once here with its name;
//! on the bus (signature `s`), in JSON, in the audit table and in syslog it travels as that
//! name, so the wire and the audit format stay as they were when these were plain strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A name that is not one of a vocabulary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// Which vocabulary, e.g. `request state`.
    pub vocabulary: &'static str,
    pub name: String,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = crate::text::escape_unsafe(&self.name);
        write!(f, "unknown {} '{name}'", self.vocabulary)
    }
}

impl std::error::Error for UnknownName {}

/// Declares a unit enum whose variants each have one name: `as_str`, `FromStr`, `Display`,
/// `ALL`, and serde and D-Bus (`s`) representations by that name. One variant is marked
/// `#[default]`: the wire structs have defaults (D-Bus spells "absent" as a default value).
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, zbus::Type)]
        #[zbus(signature = "s")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name it travels and is stored as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownName {
                        vocabulary: $what,
                        name: other.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.as_str().to_owned()
            }
        }

        /// By name: `value == "pending"` reads as the record or the wire says it.
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary! {
    /// What an audit record says happened.
    AuditAction ("audit action") {
        AccessCheck = "access-check",
        #[default]
        Activate = "activate",
        AdminAssign = "admin-assign",
        /// An active assignment given (`pim admin assign --active`).
        AdminAssignActive = "admin-assign-active",
        AdminGrants = "admin-grants",
        AdminMfaReset = "admin-mfa-reset",
        /// A user's MFA lockout ended by an administrator (`pim admin mfa-unlock`).
        AdminMfaUnlock = "admin-mfa-unlock",
        /// A suspension of standing eligibility lifted (`pim admin reinstate`).
        AdminReinstate = "admin-reinstate",
        AdminRevoke = "admin-revoke",
        AdminUnassign = "admin-unassign",
        /// An alert dismissed by an admin.
        AlertDismiss = "alert-dismiss",
        /// Closed alerts older than `[audit] keep` removed.
        AlertPrune = "alert-prune",
        /// An alert raised (pimd, on what it saw).
        AlertRaise = "alert-raise",
        /// A dismissed alert whose cause went: its key is free for the cause's return.
        AlertRelease = "alert-release",
        /// An open alert whose cause went.
        AlertResolve = "alert-resolve",
        Approve = "approve",
        /// An assignment's end brought within its role's cap, lowered since it was made.
        AssignmentCapped = "assignment-capped",
        /// The notice 14 days or 1 day before an assignment's end.
        AssignmentNotice = "assignment-notice",
        /// The caller's assignments read (`pim status`).
        Assignments = "assignments",
        /// The audit chain's start after records from before it (`chain.rs`).
        AuditChainStart = "audit-chain-start",
        /// Retention's checkpoint: the oldest records removed (`chain.rs`).
        AuditPruned = "audit-pruned",
        AuditRead = "audit-read",
        /// `pim audit verify`, and what it found.
        AuditVerify = "audit-verify",
        Cancel = "cancel",
        ConfigReload = "config-reload",
        Deactivate = "deactivate",
        Deny = "deny",
        /// A grant ended because its assignment no longer allows it.
        EligibilityEnd = "eligibility-end",
        /// A grant's holder warned that it ends soon.
        EndWarning = "end-warning",
        /// Summary of events not sent because their actor sent too many.
        EventsUndelivered = "events-undelivered",
        Expire = "expire",
        Extend = "extend",
        /// A grant of the fleet's authority started on this host (its mirror), or its end
        /// moved by the fleet.
        FleetGrant = "fleet-grant",
        /// A grant of the fleet ended on this host: the fleet no longer holds it, or the host
        /// is stale (it starts again on resync while live).
        FleetEnd = "fleet-end",
        /// The fleet's hosts listed (`pim admin hosts`).
        FleetHosts = "admin-hosts",
        /// A host added to the fleet (`pim admin host add`).
        FleetHostAdd = "admin-host-add",
        /// A host disabled in the fleet (`pim admin host disable`).
        FleetHostDisable = "admin-host-disable",
        /// A disabled host let back into the fleet (`pim admin host enable`).
        FleetHostEnable = "admin-host-enable",
        /// An enrolment ticket issued in the fleet (`pim admin mfa-ticket`).
        FleetMfaTicket = "admin-mfa-ticket",
        /// A policy pushed to the fleet (`pim admin policy push`).
        FleetPolicyPush = "admin-policy-push",
        /// pimd's fleet state read (`pim doctor`, root only).
        FleetState = "fleet-state",
        /// A grant whose membership could not be added, ended.
        GrantFailed = "grant-failed",
        /// The grant an approved request started.
        GrantStart = "grant-start",
        ListAlerts = "list-alerts",
        ListRequests = "list-requests",
        /// The caller's open review items read (`pim reviews`).
        ListReviews = "list-reviews",
        ListRoles = "list-roles",
        MembershipKeep = "membership-keep",
        MembershipRemove = "membership-remove",
        MfaConfirm = "mfa-confirm",
        MfaEnroll = "mfa-enroll",
        MfaFailure = "mfa-failure",
        MfaLockout = "mfa-lockout",
        /// One's recovery codes replaced (`pim mfa recovery-codes`).
        MfaRecoveryCodes = "mfa-recovery-codes",
        /// A change of device started (`pim mfa enroll` while enrolled); `mfa-confirm`
        /// finishes it.
        MfaRotate = "mfa-rotate",
        MfaStatus = "mfa-status",
        /// A wrong enrolment ticket offered in the fleet (`pim mfa enroll --ticket`).
        MfaTicketFailure = "mfa-ticket-failure",
        /// A user's enrolment ticket voided after `[mfa] max_failures` wrong ones.
        MfaTicketVoid = "mfa-ticket-void",
        NotifyFailed = "notify-failed",
        /// The processes that still carried an ended grant's group, ended.
        ProcessesEnd = "processes-end",
        /// Summary of refusals counted, not recorded one by one.
        RefusalsUnrecorded = "refusals-unrecorded",
        /// A renewal request approved: the assignment's end moved.
        RenewApprove = "renew-approve",
        /// A renewal request filed (`pim renew`).
        RenewRequest = "renew-request",
        Request = "request",
        RequestExpire = "request-expire",
        /// A request left without effect (its role or eligibility went away).
        RequestVoid = "request-void",
        /// A review item's result applied at the review's end (kept, removed, suspended).
        ReviewApply = "review-apply",
        /// A reviewer's decision on an item (`pim review keep|remove`).
        ReviewDecide = "review-decide",
        /// A review ended: the summary of what it applied.
        ReviewEnd = "review-end",
        /// A review read in full (`pim admin review show`).
        ReviewShow = "review-show",
        /// A review started (`pim admin review start`, or recurrence).
        ReviewStart = "review-start",
        SetgidClear = "setgid-clear",
        SetgidSweep = "setgid-sweep",
        /// A request read in full (`pim show`, `pim wait`).
        ShowRequest = "show-request",
        Status = "status",
        Watch = "watch",
    }
}

vocabulary! {
    /// How an audited action ended.
    Outcome ("audit outcome") {
        #[default]
        Success = "success",
        Refused = "refused",
        Error = "error",
    }
}

vocabulary! {
    /// Where a request for an approval-bound role stands.
    RequestState ("request state") {
        #[default]
        Pending = "pending",
        Approved = "approved",
        Denied = "denied",
        Cancelled = "cancelled",
        Expired = "expired",
    }
}

vocabulary! {
    /// What an `Event` signal (and `notify_command`) tells.
    EventKind ("event kind") {
        #[default]
        RequestFiled = "request-filed",
        RequestApproved = "request-approved",
        RequestDenied = "request-denied",
        RequestCancelled = "request-cancelled",
        RequestExpired = "request-expired",
        GrantStarted = "grant-started",
        GrantEnded = "grant-ended",
        /// A grant ends soon (`warn_before`).
        GrantEnding = "grant-ending",
        /// The processes that still carried an ended grant's group were ended.
        ProcessesEnded = "processes-ended",
        /// An alert was raised, resolved or dismissed (admins and auditors alone see these).
        AlertRaised = "alert-raised",
        AlertResolved = "alert-resolved",
        AlertDismissed = "alert-dismissed",
        /// An assignment ends in 14 days or 1 day (`pim renew` asks for more).
        AssignmentEnding = "assignment-ending",
        /// An access review started: its reviewers have items to decide.
        ReviewStarted = "review-started",
        /// An access review ended and its results were applied.
        ReviewEnded = "review-ended",
        /// More events of that kind about that role by that actor are not sent for up to a
        /// minute.
        EventsDropped = "events-dropped",
        /// A change of MFA device was started with a recovery code (the lost-phone path, or
        /// someone holding a leaked code): the user and administrators hear of it at once.
        MfaDeviceChangeByRecoveryCode = "mfa-device-change-by-recovery-code",
    }
}

impl EventKind {
    /// An alert's event: for admins and auditors alone.
    pub fn is_alert(self) -> bool {
        matches!(
            self,
            EventKind::AlertRaised | EventKind::AlertResolved | EventKind::AlertDismissed
        )
    }
}

vocabulary! {
    /// What `Activate` did: a grant started, or a request was filed.
    ActivationState ("activation state") {
        #[default]
        Active = "active",
        Pending = "pending",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::wire::{serialized::Context, to_bytes, LE};
    use zbus::Type;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + FromStr<Err = UnknownName> + Serialize + Type,
        T: for<'de> Deserialize<'de> + fmt::Display,
    {
        assert_eq!(T::SIGNATURE, "s");
        for &value in all {
            let name = value.to_string();
            assert_eq!(name.parse::<T>(), Ok(value));
            // On the bus: the same bytes as the name as a plain string.
            let ctxt = Context::new(LE, 0);
            let encoded = to_bytes(ctxt, &value).unwrap();
            assert_eq!(encoded.bytes(), to_bytes(ctxt, &name).unwrap().bytes());
            let decoded: T = encoded.deserialize().unwrap().0;
            assert_eq!(decoded, value);
            // In JSON: the name as a string.
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{name}\"")
            );
        }
    }

    #[test]
    fn given_each_vocabulary_then_names_round_trip_as_plain_strings() {
        round_trips(AuditAction::ALL);
        round_trips(Outcome::ALL);
        round_trips(RequestState::ALL);
        round_trips(EventKind::ALL);
        round_trips(ActivationState::ALL);
    }

    #[test]
    fn given_todays_names_then_they_are_the_vocabulary() {
        let names = |all: &[RequestState]| all.iter().map(|s| s.as_str()).collect::<Vec<_>>();
        assert_eq!(
            names(RequestState::ALL),
            ["pending", "approved", "denied", "cancelled", "expired"]
        );
        assert_eq!(Outcome::Refused.as_str(), "refused");
        assert_eq!(EventKind::EventsDropped.as_str(), "events-dropped");
        assert_eq!(ActivationState::Pending.as_str(), "pending");
        assert_eq!(AuditAction::AdminMfaReset.as_str(), "admin-mfa-reset");
    }

    #[test]
    fn given_unknown_name_then_error_names_vocabulary_and_escapes_it() {
        let err = "granted\n".parse::<RequestState>().unwrap_err();
        assert_eq!(err.to_string(), "unknown request state 'granted\\x0a'");
        let json = serde_json::from_str::<EventKind>("\"grant-renewed\"").unwrap_err();
        assert!(json.to_string().contains("unknown event kind"), "{json}");
    }
}
