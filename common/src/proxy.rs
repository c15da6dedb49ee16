//! Client side of `org.pim.Manager1`. The daemon's `#[interface]` implements the same methods:
//! both are held against the committed `common/interface/org.pim.Manager1.xml` by unit tests
//! (here: `introspection::tests`), so a method changed on one side only fails them.

use crate::types::{
    AccessDecision, ActivateReply, AlertInfo, AssignmentInfo, AuditRecord, DecidedRole, EventInfo,
    FleetHostDisabled, FleetHostInfo, FleetStateInfo, GrantEnd, GrantInfo, MfaStatusInfo,
    RequestDetail, RequestInfo, ReviewInfo, ReviewItemInfo, RoleInfo,
};
use crate::PimError;
use zbus::proxy;

#[proxy(
    interface = "org.pim.Manager1",
    default_service = "org.pim.Manager1",
    default_path = "/org/pim/Manager1"
)]
pub trait Manager {
    /// Roles the caller is eligible for, now.
    fn list_roles(&self) -> Result<Vec<RoleInfo>, PimError>;

    /// Activates `role` for `duration_secs` (0: the role's default), or files a request when the
    /// role needs approval. Empty strings mean "not given".
    fn activate(
        &self,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
    ) -> Result<ActivateReply, PimError>;

    /// Ends the caller's live grant for `role` now.
    fn deactivate(&self, role: &str) -> Result<GrantInfo, PimError>;

    /// Extends the caller's live grant so that it ends `duration_secs` from now.
    fn extend(
        &self,
        role: &str,
        duration_secs: u64,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError>;

    /// The caller's live grants and open requests, and what each grant's end does to the
    /// processes that carry its group.
    fn status(&self) -> Result<(Vec<GrantInfo>, Vec<RequestInfo>, Vec<GrantEnd>), PimError>;

    /// Starts (or restarts) TOTP enrolment; returns the otpauth URI and the base32 secret.
    fn mfa_enroll(&self) -> Result<(String, String), PimError>;

    /// Fleet mode: starts enrolment with the one-time ticket a fleet administrator issued;
    /// returns the otpauth URI and the base32 secret.
    fn mfa_enroll_with_ticket(&self, ticket: &str) -> Result<(String, String), PimError>;

    /// Confirms enrolment with a first code; returns the one-time recovery codes. Confirms a
    /// change of device with a first code of the new secret; returns no codes then (the
    /// recovery codes stay).
    fn mfa_confirm(&self, code: &str) -> Result<Vec<String>, PimError>;

    fn mfa_status(&self) -> Result<MfaStatusInfo, PimError>;

    /// Starts a change of device: `code` proves the current enrolment (TOTP or recovery
    /// code); returns the new secret's otpauth URI and base32 form, which `mfa_confirm`
    /// confirms. The current device works until then.
    fn mfa_rotate(&self, code: &str) -> Result<(String, String), PimError>;

    /// Replaces the caller's recovery codes after `code` proves MFA; returns the new ones.
    fn mfa_recovery_codes(&self, code: &str) -> Result<Vec<String>, PimError>;

    /// Audit records at or after `since` (0: all), filtered by subject user and role ("" for any).
    /// Admins and auditors see every record; others only their own.
    fn audit(&self, since: i64, user: &str, role: &str) -> Result<Vec<AuditRecord>, PimError>;

    /// Walks the audit chain (admins and auditors): against the head pimd keeps in its head
    /// file and, unless empty, against `head` (`ID:HASH`, e.g. from a remote syslog).
    fn verify_audit(&self, head: &str) -> Result<crate::chain::Verification, PimError>;

    /// Open requests the caller may decide.
    fn list_requests(&self) -> Result<Vec<RequestInfo>, PimError>;

    fn approve(&self, id: i64, comment: &str, code: &str) -> Result<RequestInfo, PimError>;

    fn deny(&self, id: i64, comment: &str, code: &str) -> Result<RequestInfo, PimError>;

    fn cancel(&self, id: i64) -> Result<RequestInfo, PimError>;

    /// Subscribes the calling connection to `Event` signals it may see; they are sent to it
    /// alone (unicast), so nobody learns of others' requests by listening on the bus.
    fn watch(&self) -> Result<(), PimError>;

    #[zbus(signal)]
    fn event(&self, event: EventInfo) -> zbus::Result<()>;

    fn admin_grants(&self) -> Result<Vec<GrantInfo>, PimError>;

    /// Makes `user` eligible for `role` from `not_before` until `not_after` (0: unbounded).
    /// Gives a warning (empty when none) when ending a grant the new window no longer allows
    /// did not go through: the assignment stands, and pimd finishes that at reconciliation.
    fn admin_assign(
        &self,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
    ) -> Result<String, PimError>;

    /// Removes an assignment; gives the grant that ended with it (id 0 when none did: there
    /// was none, or the user is still eligible for the role another way) and a warning
    /// (empty when none) when ending it did not go through: the assignment is gone, and pimd
    /// finishes that at reconciliation.
    fn admin_unassign(&self, user: &str, role: &str) -> Result<(GrantInfo, String), PimError>;

    fn admin_revoke(&self, user: &str, role: &str, reason: &str) -> Result<GrantInfo, PimError>;

    /// Gives `user` an active assignment to `role` from `not_before` until `not_after` (0:
    /// unbounded): the group for that window without activation. `reason` is required. Admins
    /// and the role's owners. Gives a warning as `admin_assign` does.
    fn admin_assign_active(
        &self,
        user: &str,
        role: &str,
        not_before: i64,
        not_after: i64,
        reason: &str,
    ) -> Result<String, PimError>;

    /// Asks for the caller's assignment to `role` to end at `until` (0: the role's longest);
    /// files a renewal request that the role's owners or admins decide.
    fn renew(&self, role: &str, until: i64, reason: &str) -> Result<RequestDetail, PimError>;

    /// Request `id` in full, for whoever may see it (else the not-found answer).
    fn show_request(&self, id: i64) -> Result<RequestDetail, PimError>;

    /// The caller's assignments, with the notice `pim status` shows near their end.
    fn my_assignments(&self) -> Result<Vec<AssignmentInfo>, PimError>;

    fn admin_mfa_reset(&self, user: &str) -> Result<(), PimError>;

    /// Ends `user`'s MFA lockout, keeping the enrolment (administrators).
    fn admin_mfa_unlock(&self, user: &str) -> Result<(), PimError>;

    /// Roles the caller decides for other than by being eligible: as approver, owner, admin
    /// or reviewer of an open review.
    fn decided_roles(&self) -> Result<Vec<DecidedRole>, PimError>;

    /// Starts a one-off access review of `role` lasting `duration_secs` (0: the role's
    /// `review_duration`) with `reviewers` (empty: the role's); admins and the role's owners.
    fn admin_review_start(
        &self,
        role: &str,
        duration_secs: u64,
        reviewers: Vec<String>,
    ) -> Result<ReviewInfo, PimError>;

    /// Open reviews with the items the caller may decide.
    fn list_reviews(&self) -> Result<Vec<ReviewInfo>, PimError>;

    /// Decides `user`'s item of review `id`: `decision` is `keep` or `remove`.
    fn review_decide(
        &self,
        id: i64,
        user: &str,
        decision: &str,
        comment: &str,
        code: &str,
    ) -> Result<ReviewItemInfo, PimError>;

    /// A review's record in full (auditors, admins, the role's owners).
    fn admin_review_show(&self, id: i64) -> Result<ReviewInfo, PimError>;

    /// Lifts a review's suspension of `user`'s standing eligibility for `role`.
    fn admin_reinstate(&self, user: &str, role: &str) -> Result<(), PimError>;

    /// Root only (the PAM module): may `user`, who holds the gated `groups`, use them now? Yes
    /// only when each of them is covered by its own live grant or `permanent` listing.
    fn check_access(&self, user: &str, groups: Vec<String>) -> Result<AccessDecision, PimError>;

    /// Fleet mode: `activate` with the grant narrowed to the fleet's host `host`.
    fn activate_on_host(
        &self,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: &str,
        code: &str,
        host: &str,
    ) -> Result<ActivateReply, PimError>;

    /// Fleet mode: `admin_revoke` with the administrator's TOTP code, which the fleet's
    /// database checks.
    fn admin_revoke_with_code(
        &self,
        user: &str,
        role: &str,
        reason: &str,
        code: &str,
    ) -> Result<GrantInfo, PimError>;

    /// Fleet mode: the fleet's hosts (administrators and auditors).
    fn fleet_hosts(&self) -> Result<Vec<FleetHostInfo>, PimError>;

    /// Fleet mode: adds host `name` with `tags`; returns its database password (shown once).
    fn fleet_host_add(&self, name: &str, tags: Vec<String>, code: &str)
        -> Result<String, PimError>;

    /// Fleet mode: disables host `name` (its login, its calls, its grants for it alone,
    /// the tickets shown and approvals given on it); says what it ended.
    fn fleet_host_disable(&self, name: &str, code: &str) -> Result<FleetHostDisabled, PimError>;

    /// Fleet mode: lets disabled host `name` back into the fleet with a new database
    /// password, which it returns (shown once).
    fn fleet_host_enable(&self, name: &str, code: &str) -> Result<String, PimError>;

    /// Fleet mode: issues `user`'s one-time enrolment ticket (shown once), replacing any
    /// earlier one; with `reset`, `user`'s enrolment is removed first (a lost device).
    fn fleet_mfa_ticket(&self, user: &str, code: &str, reset: bool) -> Result<String, PimError>;

    /// Fleet mode: checks `policy` (a pim.toml's text) and stores it as the fleet's next
    /// policy version, which it returns.
    fn fleet_policy_push(&self, policy: &str, code: &str) -> Result<i64, PimError>;

    /// Fleet mode, root only (`pim doctor`): the policy pimd runs on (its version and roles)
    /// and its link to the fleet's authority (last synchronisation, staleness).
    fn fleet_state(&self) -> Result<FleetStateInfo, PimError>;

    /// Admins and auditors: the open alerts, or with `all` the resolved and dismissed ones too,
    /// newest first.
    fn list_alerts(&self, all: bool) -> Result<Vec<AlertInfo>, PimError>;

    /// Admins: dismisses an open alert, for `reason`; it does not come back while its cause
    /// persists.
    fn dismiss_alert(&self, id: i64, reason: &str) -> Result<AlertInfo, PimError>;
}
