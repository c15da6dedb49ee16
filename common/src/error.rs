//! Errors that cross the bus. Each variant has a stable D-Bus name,
//! `org.pim.Manager1.Error.<Variant>`, and carries a message a person can act on.

use zbus::DBusError;

#[derive(Debug, DBusError, PartialEq)]
#[zbus(prefix = "org.pim.Manager1.Error")]
pub enum PimError {
    /// Transport failure (bus unreachable, timeout, malformed reply).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller is not eligible for the role (or the role does not exist for them).
    NotEligible(String),
    /// An argument is malformed, too long, holds control characters, or breaks the role's policy.
    InvalidArgument(String),
    /// The role requires a TOTP code and none was given.
    MfaRequired(String),
    /// The caller has no confirmed TOTP enrolment.
    MfaNotEnrolled(String),
    /// The TOTP or recovery code was wrong, or was already used.
    InvalidCode(String),
    /// Too many wrong codes: the caller's MFA is locked for a while.
    MfaLockedOut(String),
    /// The caller may not do this (not an admin, not an approver, not root).
    PermissionDenied(String),
    /// No such grant, request, assignment or user.
    NotFound(String),
    /// The user is already in the group without PIM, or is a permanent member.
    AlreadyMember(String),
    /// The request is in a state that does not allow this (already decided, expired, ...).
    Conflict(String),
    /// Too many calls from this caller: in progress at once, or in the last minute. Nothing
    /// was done; the message says when to try again.
    Busy(String),
    /// Something failed inside the daemon; nothing was granted.
    Internal(String),
}

impl PimError {
    /// The human part of the error, without the D-Bus name.
    pub fn message(&self) -> String {
        match self {
            PimError::ZBus(e) => e.to_string(),
            PimError::NotEligible(m)
            | PimError::InvalidArgument(m)
            | PimError::MfaRequired(m)
            | PimError::MfaNotEnrolled(m)
            | PimError::InvalidCode(m)
            | PimError::MfaLockedOut(m)
            | PimError::PermissionDenied(m)
            | PimError::NotFound(m)
            | PimError::AlreadyMember(m)
            | PimError::Conflict(m)
            | PimError::Busy(m)
            | PimError::Internal(m) => m.clone(),
        }
    }
}
