//! MFA: enrolment (enrol, confirm, status) and the verification of a TOTP or recovery code
//! that guards the calls which need one (`with_mfa`).

use super::*;
use crate::mfa::{self, FailureState};
use crate::model::MfaRecord;
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
            return Err(PimError::MfaLockedOut(format!(
                "too many wrong codes; your MFA is locked until {}",
                describe(until, now)
            )));
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
            return Err(PimError::MfaLockedOut(format!(
                "wrong code; too many wrong codes, your MFA is locked until {}",
                describe(next.locked_until, now)
            )));
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
            return self.fleet_mfa_enroll(caller);
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
                        "you are already enrolled; to enrol a new device, ask an administrator to run 'pim admin mfa-reset' for you"
                            .into(),
                    ),
                )
            }
            Some(pending) if Self::reshown(pending.created_at, self.now()) => {
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

    /// Whether a pending enrolment's secret, made at `created`, may be shown again at `now`:
    /// only within [`PENDING_SECRET_SHOWN_SECS`], so that a secret once seen by someone else
    /// (a shared screen, a program that enrolled first) is not handed out for good.
    fn reshown(created: i64, now: i64) -> bool {
        (created..created + PENDING_SECRET_SHOWN_SECS).contains(&now)
    }

    pub fn mfa_confirm(&mut self, caller: &Caller, code: &str) -> Result<Vec<String>, PimError> {
        if self.in_fleet() {
            return self.fleet_mfa_confirm(caller, code);
        }
        let user = caller.name.as_str();
        let audit = Audit::new(user, AuditAction::MfaConfirm).about(user, "");
        match self.try_mfa_confirm(user, code, &audit) {
            Ok(codes) => Ok(codes),
            Err(e) => self.refused(&audit, e),
        }
    }

    fn try_mfa_confirm(
        &mut self,
        user: &str,
        code: &str,
        audit: &Audit<'_>,
    ) -> Result<Vec<String>, PimError> {
        let record = self
            .store
            .read(|tx| tx.mfa(user))?
            .ok_or_else(|| PimError::MfaNotEnrolled("no enrolment to confirm".into()))?;
        if record.confirmed {
            return Err(PimError::Conflict(
                "your enrolment is already confirmed".into(),
            ));
        }
        let policy = self.mfa_policy();
        let now = self.now();
        let codes = mfa::generate_recovery_codes()?;
        let secret = TotpSecret::from_bytes(record.secret);
        self.commit(|tx| {
            let state = tx.failure_state(user)?;
            if let Err(until) = policy.check(&state, now) {
                return Ok(Err(PimError::MfaLockedOut(format!(
                    "too many wrong codes; your MFA is locked until {}",
                    describe(until, now)
                ))));
            }
            match mfa::verify_totp(&secret, code, now, None) {
                TotpCheck::Accepted { step } => {
                    tx.confirm_mfa(user)?;
                    tx.set_last_step(user, step)?;
                    let hashes: Vec<String> = codes.iter().map(|c| c.hash.clone()).collect();
                    tx.replace_recovery_codes(user, &hashes)?;
                    tx.set_failure_state(user, &policy.record_success())?;
                    tx.audit(audit.entry(
                        now,
                        Outcome::Success,
                        format!("enrolled; {} recovery codes issued", hashes.len()),
                    ))?;
                    Ok(Ok(codes.iter().map(|c| c.plain.clone()).collect()))
                }
                TotpCheck::Replayed | TotpCheck::Wrong => {
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
                    tx.audit(failure.entry(
                        now,
                        Outcome::Refused,
                        "wrong code while confirming enrolment",
                    ))?;
                    if newly_locked {
                        return Ok(Err(PimError::MfaLockedOut(format!(
                            "wrong code; too many wrong codes, your MFA is locked until {}",
                            describe(next.locked_until, now)
                        ))));
                    }
                    Ok(Err(code_refused(CodeKind::Totp, &policy, &next, now)))
                }
            }
        })?
    }

    pub fn mfa_status(&mut self, caller: &Caller) -> Result<MfaStatusInfo, PimError> {
        if self.in_fleet() {
            return self.fleet_mfa_status(caller);
        }
        let now = self.now();
        let policy = self.mfa_policy();
        self.store.read(|tx| {
            let record = tx.mfa(&caller.name)?;
            let state = tx.failure_state(&caller.name)?;
            Ok(MfaStatusInfo {
                enrolled: record.as_ref().is_some_and(|r| r.confirmed),
                pending: record.as_ref().is_some_and(|r| !r.confirmed),
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
