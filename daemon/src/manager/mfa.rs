//! MFA: enrolment (enrol, confirm, status), its life after (a change of device, new recovery
//! codes, an administrator ending a lockout) and the verification of a TOTP or recovery code
//! that guards the calls which need one (`with_mfa`).

use super::*;
use crate::mfa::{self, FailureState};
use crate::model::{MfaRecord, PendingSecret};
use pim_common::code_refusal::{CodeKind, CodeRefusal};

/// A code judged on the enrolment and failure state read before the write.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CodeCheck {
    pub(super) outcome: CodeOutcome,
    /// The failure state the judgement was made on, which a wrong code adds to.
    pub(super) state: FailureState,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum CodeOutcome {
    /// A TOTP code accepted for `step`.
    Totp { step: u64 },
    /// Shaped like a recovery code: whether it is one of the user's unused ones is for the
    /// write to find out, as it marks it used.
    Recovery { hash: String },
    /// Wrong, or a TOTP code already used.
    Wrong,
}

/// A wrong code's refusal, as data the client formats: its kind, the wrong codes left before a
/// lockout (after this one) and the seconds to the next TOTP step.
fn code_refused(
    kind: CodeKind,
    policy: &LockoutPolicy,
    after: &FailureState,
    now: i64,
) -> PimError {
    let step = mfa::STEP_SECS;
    PimError::InvalidCode(
        CodeRefusal {
            kind,
            attempts_left: policy.max_failures.saturating_sub(after.failures),
            next_code_in: step - u64::try_from(now).unwrap_or(0) % step,
        }
        .to_message(),
    )
}

/// The refusal while MFA is locked until `until`; `just_now` when this wrong code locked it.
fn locked_out(just_now: bool, until: i64, now: i64) -> PimError {
    PimError::MfaLockedOut(format!(
        "{}too many wrong codes, your MFA is locked until {} (an administrator can end it sooner \
         with 'pim admin mfa-unlock')",
        if just_now { "wrong code; " } else { "" },
        describe(until, now)
    ))
}

impl Manager {
    pub(super) fn mfa_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            max_failures: self.config.mfa.max_failures,
            window_secs: self.config.mfa.failure_window_secs,
            lockout_secs: self.config.mfa.lockout_secs,
        }
    }

    /// The MFA check of `code`, as far as what was read decides it: no confirmed enrolment,
    /// a lockout or no code at all are refused with nothing written; otherwise what the code
    /// is, for [`Self::spend_code`] to write.
    pub(super) fn check_code(
        record: Option<&MfaRecord>,
        state: FailureState,
        policy: &LockoutPolicy,
        code: &str,
        now: i64,
    ) -> Result<CodeCheck, PimError> {
        // The client says how to enrol ('pim mfa enroll').
        let record = record
            .filter(|r| r.confirmed)
            .ok_or_else(|| PimError::MfaNotEnrolled("you have no TOTP enrolment".into()))?;
        if let Err(until) = policy.check(&state, now) {
            return Err(locked_out(false, until, now));
        }
        let code = code.trim();
        if code.is_empty() {
            // The client says how to give one (its --code option).
            return Err(PimError::MfaRequired(
                "a TOTP code (or a recovery code) is required".into(),
            ));
        }
        let outcome = if mfa::looks_like_recovery_code(code) {
            CodeOutcome::Recovery {
                hash: mfa::hash_recovery_code(code),
            }
        } else {
            let secret = TotpSecret::from_bytes(record.secret.clone());
            match mfa::verify_totp(&secret, code, now, record.last_step) {
                TotpCheck::Accepted { step } => CodeOutcome::Totp { step },
                TotpCheck::Replayed | TotpCheck::Wrong => CodeOutcome::Wrong,
            }
        };
        Ok(CodeCheck { outcome, state })
    }

    /// Writes what `check` makes of a code inside `tx`. A good code is spent (its step
    /// recorded, or the recovery code marked used); the caller's audit record covers that.
    /// On a wrong code the failure (and a lockout, if reached) is written and audited in
    /// `tx`, which the caller must commit even though it returns the error.
    fn spend_code(
        tx: &Tx,
        policy: &LockoutPolicy,
        user: &str,
        check: CodeCheck,
        now: i64,
    ) -> Result<MfaProof, PimError> {
        let state = check.state;
        let kind = match check.outcome {
            CodeOutcome::Recovery { .. } => CodeKind::Recovery,
            CodeOutcome::Totp { .. } | CodeOutcome::Wrong => CodeKind::Totp,
        };
        let proof = match check.outcome {
            CodeOutcome::Recovery { hash } => {
                if tx.use_recovery_code(user, &hash, now)? {
                    Some(MfaProof::RecoveryCode {
                        left: tx.recovery_codes_left(user)?,
                    })
                } else {
                    None
                }
            }
            CodeOutcome::Totp { step } => {
                tx.set_last_step(user, step)?;
                Some(MfaProof::Totp)
            }
            CodeOutcome::Wrong => None,
        };
        if let Some(proof) = proof {
            if state.failures > 0 {
                tx.set_failure_state(user, &policy.record_success())?;
            }
            return Ok(proof);
        }
        let (next, newly_locked) = policy.record_failure(&state, now);
        tx.set_failure_state(user, &next)?;
        let audit = Audit::new(user, AuditAction::MfaFailure).about(user, "");
        tx.audit(audit.entry(
            now,
            Outcome::Refused,
            format!(
                "wrong or reused code ({} of {})",
                next.failures, policy.max_failures
            ),
        ))?;
        if newly_locked {
            let lock = Audit {
                action: AuditAction::MfaLockout,
                ..audit
            };
            tx.audit(lock.entry(
                now,
                Outcome::Refused,
                format!("locked until {}", describe(next.locked_until, now)),
            ))?;
            return Err(locked_out(true, next.locked_until, now));
        }
        Err(code_refused(kind, policy, &next, now))
    }

    /// Runs `f` after an MFA check of `code` (when `required`): the enrolment and failure
    /// state are read, the code judged on them, then the code's bookkeeping and `f` are
    /// written in one transaction (see [`Self::with_checked_code`]).
    pub(super) fn with_mfa<T>(
        &mut self,
        user: &str,
        code: &str,
        required: bool,
        f: impl FnOnce(&Tx, MfaProof) -> Result<T, PimError>,
    ) -> Result<T, PimError> {
        let check = if required {
            let (record, state) = self
                .store
                .read(|tx| Ok::<_, StoreError>((tx.mfa(user)?, tx.failure_state(user)?)))?;
            let policy = self.mfa_policy();
            Some(Self::check_code(
                record.as_ref(),
                state,
                &policy,
                code,
                self.now(),
            )?)
        } else {
            None
        };
        self.with_checked_code(user, check, f)
    }

    /// Writes a judged code (`None`: no MFA needed) and runs `f` in one transaction: the
    /// code's failure bookkeeping is committed even when it was wrong; `f` runs only when it
    /// was good.
    pub(super) fn with_checked_code<T>(
        &mut self,
        user: &str,
        check: Option<CodeCheck>,
        f: impl FnOnce(&Tx, MfaProof) -> Result<T, PimError>,
    ) -> Result<T, PimError> {
        let policy = self.mfa_policy();
        let now = self.now();
        self.commit(|tx| {
            let proof = match check {
                Some(check) => match Self::spend_code(tx, &policy, user, check, now) {
                    Ok(proof) => proof,
                    Err(e) => return Ok(Err(e)),
                },
                None => MfaProof::NotRequired,
            };
            // A failure in `f` rolls everything back, the spent code included.
            f(tx, proof).map(Ok)
        })?
    }

    pub fn mfa_enroll(&mut self, caller: &Caller) -> Result<(String, String), PimError> {
        if self.in_fleet() {
            return self.fleet_mfa_enroll(caller, "").inline(self);
        }
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaEnroll).about(user, "");
        let existing = self.store.read(|tx| tx.mfa(user))?;
        let replaced_from = existing.as_ref().map(|r| r.created_at);
        let account = format!("{user}@{}", self.host);
        match existing {
            Some(r) if r.confirmed => {
                return self.refused(
                    &audit,
                    PimError::Conflict(
                        "you are already enrolled; to move to a new device, prove a code of your \
                         current one or a recovery code ('pim mfa enroll' asks for it); with \
                         neither, an administrator's 'pim admin mfa-reset' starts over"
                            .into(),
                    ),
                )
            }
            Some(pending) if Self::pending_fresh(pending.created_at, self.now()) => {
                // Asked again soon after (the QR code was lost, the terminal closed): the same
                // secret again. Each disclosure is audited; calls_per_minute bounds them.
                let secret = TotpSecret::from_bytes(pending.secret);
                let uri = mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
                let now = self.now();
                let entry = audit.entry(
                    now,
                    Outcome::Success,
                    format!(
                        "the pending secret (from {}) shown again; awaiting first code",
                        describe(pending.created_at, now)
                    ),
                );
                self.commit(|tx| Ok(tx.audit(entry)?))?;
                return Ok((uri, secret.base32()));
            }
            Some(_) | None => {}
        }
        let secret = TotpSecret::generate()?;
        let uri = mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
        let now = self.now();
        let detail = match replaced_from {
            Some(from) => format!(
                "enrolment started again with a new secret (the pending one, from {}, is shown \
                 again for {} minutes only); awaiting first code",
                describe(from, now),
                PENDING_SECRET_SHOWN_SECS / 60
            ),
            None => "enrolment started; awaiting first code".into(),
        };
        self.commit(|tx| {
            tx.put_pending_mfa(user, secret.as_bytes(), now)?;
            Ok(tx.audit(audit.entry(now, Outcome::Success, detail))?)
        })?;
        Ok((uri, secret.base32()))
    }

    /// `pim mfa enroll --ticket T`: fleet mode's enrolment, with the ticket a fleet
    /// administrator issued. A host on its own has no tickets: refused, naming the way.
    pub fn mfa_enroll_with_ticket(
        &mut self,
        caller: &Caller,
        ticket: &str,
    ) -> Result<(String, String), PimError> {
        if self.in_fleet() {
            return self.fleet_mfa_enroll(caller, ticket).inline(self);
        }
        let audit = Audit::new(&caller.name, AuditAction::MfaEnroll).about(&caller.name, "");
        self.refused(
            &audit,
            PimError::InvalidArgument(
                "enrolment tickets are for fleet mode and this host is not in a fleet: run \
                 'pim mfa enroll' without --ticket"
                    .into(),
            ),
        )
    }

    /// Whether a pending secret made at `created` still counts at `now`: a first enrolment's
    /// may be shown again, a change of device's may be confirmed, only within
    /// [`PENDING_SECRET_SHOWN_SECS`], so that a secret once seen by someone else (a shared
    /// screen, a program that enrolled first, a change started with a leaked recovery code) is
    /// not good for ever.
    fn pending_fresh(created: i64, now: i64) -> bool {
        (created..created + PENDING_SECRET_SHOWN_SECS).contains(&now)
    }

    /// Runs `f` on the caller's own MFA (their name, and the record of `action` about them),
    /// auditing its refusal.
    fn own_mfa<T>(
        &mut self,
        caller: &Caller,
        action: AuditAction,
        f: impl FnOnce(&mut Self, &str, &Audit<'_>) -> Result<T, PimError>,
    ) -> Result<T, PimError> {
        let user = caller.name.as_str();
        let audit = Audit::new(user, action).about(user, "");
        match f(self, user, &audit) {
            Ok(value) => Ok(value),
            Err(e) => self.refused(&audit, e),
        }
    }

    pub fn mfa_confirm(&mut self, caller: &Caller, code: &str) -> Result<Vec<String>, PimError> {
        if self.in_fleet() {
            return self.fleet_mfa_confirm(caller, code).inline(self);
        }
        self.own_mfa(caller, AuditAction::MfaConfirm, |m, user, audit| {
            m.try_mfa_confirm(user, code, audit)
        })
    }

    fn try_mfa_confirm(
        &mut self,
        user: &str,
        code: &str,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>, PimError> {
        let (record, rotation) = self
            .store
            .read(|tx| Ok::<_, StoreError>((tx.mfa(user)?, tx.mfa_rotation(user)?)))?;
        let record =
            record.ok_or_else(|| PimError::MfaNotEnrolled("no enrolment to confirm".into()))?;
        if record.confirmed {
            return match rotation {
                Some(rotation) => self.confirm_rotation(user, code, rotation, audit),
                None => Err(PimError::Conflict(
                    "your enrolment is already confirmed".into(),
                )),
            };
        }
        let codes = mfa::generate_recovery_codes()?;
        let secret = TotpSecret::from_bytes(record.secret);
        let now = self.now();
        self.confirm_first_code(
            user,
            code,
            &secret,
            audit,
            "wrong code while confirming enrolment",
            |tx, step| {
                tx.confirm_mfa(user)?;
                tx.set_last_step(user, step)?;
                let hashes: Vec<String> = codes.iter().map(|c| c.hash.clone()).collect();
                tx.replace_recovery_codes(user, &hashes, now)?;
                Ok((
                    format!("enrolled; {} recovery codes issued", hashes.len()),
                    codes.iter().map(|c| c.plain.clone()).collect(),
                ))
            },
        )
    }

    /// Checks a first code of a new `secret` (an enrolment's, or a new device's) and, in the
    /// same transaction, runs `accepted` with its step: it does its writes and gives the audit
    /// detail and the reply. A wrong code is counted towards the lockout and audited with
    /// `wrong` instead; a lockout refuses before the code is looked at.
    fn confirm_first_code<T>(
        &mut self,
        user: &str,
        code: &str,
        secret: &TotpSecret,
        audit: &Audit<'_>,
        wrong: &str,
        accepted: impl FnOnce(&Tx, u64) -> Result<(String, T), PimError>,
    ) -> Result<T, PimError> {
        let policy = self.mfa_policy();
        let now = self.now();
        self.commit(|tx| {
            let state = tx.failure_state(user)?;
            if let Err(until) = policy.check(&state, now) {
                return Ok(Err(locked_out(false, until, now)));
            }
            let TotpCheck::Accepted { step } = mfa::verify_totp(secret, code, now, None) else {
                let (next, newly_locked) = policy.record_failure(&state, now);
                tx.set_failure_state(user, &next)?;
                let failure = Audit {
                    action: if newly_locked {
                        AuditAction::MfaLockout
                    } else {
                        AuditAction::MfaFailure
                    },
                    ..audit.clone()
                };
                tx.audit(failure.entry(now, Outcome::Refused, wrong))?;
                if newly_locked {
                    return Ok(Err(locked_out(true, next.locked_until, now)));
                }
                return Ok(Err(code_refused(CodeKind::Totp, &policy, &next, now)));
            };
            // A refusal here rolls back its writes; nothing about the code is kept.
            let (detail, reply) = accepted(tx, step)?;
            tx.set_failure_state(user, &policy.record_success())?;
            tx.audit(audit.entry(now, Outcome::Success, detail))?;
            Ok(Ok(reply))
        })?
    }

    /// Starts a change of device for an enrolled caller who proves the enrolment's code (a
    /// TOTP or a recovery code, as for any call that needs MFA): a new secret waits for its
    /// first code (`mfa_confirm`) while the old one keeps working. Returns the new secret's
    /// otpauth URI and base32 form. Starting again replaces a change not yet confirmed.
    pub fn mfa_rotate(
        &mut self,
        caller: &Caller,
        code: &str,
    ) -> Result<(String, String), PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::MfaRotate,
                fleet::NotInFleet::DeviceChange,
            );
        }
        self.own_mfa(caller, AuditAction::MfaRotate, |m, user, audit| {
            m.try_mfa_rotate(user, code, audit)
        })
    }

    fn try_mfa_rotate(
        &mut self,
        user: &str,
        code: &str,
        audit: &Audit<'_>,
    ) -> Result<(String, String), PimError> {
        let secret = TotpSecret::generate()?;
        let account = format!("{user}@{}", self.host);
        let uri = mfa::otpauth_uri(&secret, &self.config.mfa.issuer, &account)?;
        let now = self.now();
        let by_recovery = self.with_mfa(user, code, true, |tx, proof| {
            let replaced = match tx.mfa_rotation(user)? {
                Some(earlier) => format!(
                    " (in place of the one started {})",
                    describe(earlier.created_at, now)
                ),
                None => String::new(),
            };
            tx.put_mfa_rotation(user, secret.as_bytes(), now)?;
            let by_recovery = matches!(proof, MfaProof::RecoveryCode { .. });
            let warning = if by_recovery {
                "; PROVED BY A RECOVERY CODE, not the current device (a lost phone, or a leaked \
                 code)"
            } else {
                ""
            };
            tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "change of device started{replaced}; the current device works until a \
                     code of the new one confirms it; {}{warning}",
                    proof.describe()
                ),
            ))?;
            Ok(by_recovery)
        })?;
        if by_recovery {
            self.announce_rotation_by_recovery_code(user);
        }
        Ok((uri, secret.base32()))
    }

    /// Finishes a change of device with a first code of the new secret: it becomes the
    /// enrolment's, and the old one stops working. The recovery codes stay; the reply has none.
    fn confirm_rotation(
        &mut self,
        user: &str,
        code: &str,
        rotation: PendingSecret,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>, PimError> {
        let now = self.now();
        if !Self::pending_fresh(rotation.created_at, now) {
            let expired = format!(
                "the change of device started {} expired unconfirmed (after {} minutes) and was \
                 dropped",
                describe(rotation.created_at, now),
                PENDING_SECRET_SHOWN_SECS / 60
            );
            let entry = Audit {
                action: AuditAction::MfaRotate,
                ..audit.clone()
            }
            .entry(now, Outcome::Refused, expired.clone());
            self.commit(|tx| {
                tx.delete_mfa_rotation(user)?;
                Ok(tx.audit(entry)?)
            })?;
            return Err(PimError::Conflict(format!(
                "{expired}: your current device still works; start again with 'pim mfa enroll'"
            )));
        }
        let secret = TotpSecret::from_bytes(rotation.secret);
        self.confirm_first_code(
            user,
            code,
            &secret,
            audit,
            "wrong code while confirming a new device",
            |tx, step| {
                if !tx.finish_mfa_rotation(user, secret.as_bytes(), step)? {
                    return Err(PimError::Conflict(
                        "your change of device is no longer in progress".into(),
                    ));
                }
                let left = tx.recovery_codes_left(user)?;
                let detail = format!(
                    "new device confirmed (its secret from {}); the old device's codes no \
                     longer work; {left} recovery codes kept",
                    describe(rotation.created_at, now)
                );
                Ok((detail, Vec::new()))
            },
        )
    }

    /// A change of device proved by a recovery code is how a lost phone is replaced, and also
    /// what a leaked recovery code allows: a warning in syslog and an event to the user and
    /// administrators (`pim watch`, `notify_command`), so the user can answer within the
    /// change's ten minutes with their device ('pim mfa enroll' again replaces the change).
    fn announce_rotation_by_recovery_code(&mut self, user: &str) {
        let text = format!(
            "a change of MFA device for {user} was started with a recovery code, not the current \
             device; if {user} did not, end it ('pim mfa enroll' with the current device's code \
             replaces it) and replace the recovery codes"
        );
        self.outbox
            .syslog
            .push((Severity::Warning, text::escape(&text)));
        self.event(
            EventKind::MfaDeviceChangeByRecoveryCode,
            user,
            "",
            0,
            0,
            user,
            text,
        );
    }

    /// Replaces the caller's recovery codes with new ones, after proving MFA with a TOTP code
    /// of the current device: a recovery code is refused (else one leaked code would give a
    /// fresh set, and lasting control). Returns the new codes, shown once.
    pub fn mfa_recovery_codes(
        &mut self,
        caller: &Caller,
        code: &str,
    ) -> Result<Vec<String>, PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::MfaRecoveryCodes,
                fleet::NotInFleet::RecoveryCodes,
            );
        }
        self.own_mfa(caller, AuditAction::MfaRecoveryCodes, |m, user, audit| {
            m.try_mfa_recovery_codes(user, code, audit)
        })
    }

    fn try_mfa_recovery_codes(
        &mut self,
        user: &str,
        code: &str,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>, PimError> {
        if mfa::looks_like_recovery_code(code.trim()) {
            return Err(PimError::MfaRequired(
                "new recovery codes need a TOTP code of your current device, not a recovery \
                 code (without the device: 'pim mfa enroll' with a recovery code moves you to a \
                 new one first)"
                    .into(),
            ));
        }
        let codes = mfa::generate_recovery_codes()?;
        let hashes: Vec<String> = codes.iter().map(|c| c.hash.clone()).collect();
        let now = self.now();
        self.with_mfa(user, code, true, |tx, proof| {
            let void = tx.recovery_codes_left(user)?;
            tx.replace_recovery_codes(user, &hashes, now)?;
            Ok(tx.audit(audit.entry(
                now,
                Outcome::Success,
                format!(
                    "{} new recovery codes issued; the {void} unused ones before no longer \
                     work; {}",
                    hashes.len(),
                    proof.describe()
                ),
            ))?)
        })?;
        Ok(codes.into_iter().map(|c| c.plain).collect())
    }

    /// Ends `user`'s MFA lockout (and forgets their recent wrong codes) without touching the
    /// enrolment: administrators only.
    pub fn admin_mfa_unlock(&mut self, caller: &Caller, user: &str) -> Result<(), PimError> {
        if self.in_fleet() {
            return self.not_in_fleet(
                caller,
                AuditAction::AdminMfaUnlock,
                fleet::NotInFleet::MfaReset,
            );
        }
        let audit =
            Audit::new(&caller.name, AuditAction::AdminMfaUnlock).about(name_or_empty(user), "");
        self.require_admin(caller, &audit)?;
        if let Err(e) = check_name("user", user) {
            return self.refused(&audit, e);
        }
        self.refuse_own_mfa(caller, user, &audit, "end your own lockout")?;
        let now = self.now();
        let policy = self.mfa_policy();
        let state = self.store.read(|tx| tx.failure_state(user))?;
        let Err(until) = policy.check(&state, now) else {
            return self.refused(
                &audit,
                PimError::NotFound(format!("{user}'s MFA is not locked out")),
            );
        };
        let entry = audit.entry(
            now,
            Outcome::Success,
            format!("lockout (until {}) ended", describe(until, now)),
        );
        self.commit(|tx| {
            tx.set_failure_state(user, &policy.record_success())?;
            Ok(tx.audit(entry)?)
        })
    }

    /// An administrator's call on `user`'s MFA is refused when `user` is the caller (root
    /// excepted): a stolen admin session must not undo the lockout that its wrong codes
    /// caused, nor reset the MFA it cannot prove, which another administrator has to do.
    pub(super) fn refuse_own_mfa(
        &mut self,
        caller: &Caller,
        user: &str,
        audit: &Audit<'_>,
        what: &str,
    ) -> Result<(), PimError> {
        if caller.name != user || caller.is_root() {
            return Ok(());
        }
        self.refused(
            audit,
            PimError::PermissionDenied(format!(
                "an administrator cannot {what}: another administrator (or root) must"
            )),
        )
    }

    pub fn mfa_status(&mut self, caller: &Caller) -> Result<MfaStatusInfo, PimError> {
        if self.in_fleet() {
            return self.fleet_mfa_status(caller).inline(self);
        }
        let now = self.now();
        let policy = self.mfa_policy();
        self.store.read(|tx| {
            let record = tx.mfa(&caller.name)?;
            let state = tx.failure_state(&caller.name)?;
            let enrolled = record.as_ref().is_some_and(|r| r.confirmed);
            let device_change_until = match tx.mfa_rotation(&caller.name)? {
                Some(r) if enrolled && Self::pending_fresh(r.created_at, now) => {
                    r.created_at + PENDING_SECRET_SHOWN_SECS
                }
                _ => 0,
            };
            Ok(MfaStatusInfo {
                enrolled,
                pending: record.as_ref().is_some_and(|r| !r.confirmed) || device_change_until > 0,
                device_change_until,
                recovery_codes_issued_at: tx.recovery_codes_issued_at(&caller.name)?,
                locked_until: policy.check(&state, now).err().unwrap_or(0),
                recent_failures: if now < state.window_start + policy.window_secs as i64 {
                    state.failures
                } else {
                    0
                },
                recovery_codes_left: tx.recovery_codes_left(&caller.name)?,
            })
        })
    }
}

#[cfg(test)]
mod tests;
