//! MFA on the command line: enrolment and a change of device (`pim mfa enroll`, `confirm`),
//! `pim mfa status`, new recovery codes (`pim mfa recovery-codes`) and an administrator ending
//! a lockout (`pim admin mfa-unlock`).

use super::*;

/// `pim mfa enroll`: a first enrolment, or, when the caller is enrolled, a change of device
/// that a code of the current one proves (asked for before anything else happens).
pub(super) async fn enroll(
    code: Option<&str>,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let new_device = proxy.mfa_status().await?.enrolled;
    let (uri, secret) = if new_device {
        if code.is_none() && !console.interactive() {
            return Err(Failure::Failed(
                "you are already enrolled; to move to a new device, give a code of your current \
                 one (or a recovery code) with --code CODE, or --code - to read it from stdin"
                    .into(),
            ));
        }
        let code = input::code(code, true, &input::current_user(), console)?;
        proxy.mfa_rotate(&code).await?
    } else {
        if code.is_some() {
            return Err(Failure::Usage(
                "--code proves your current device when moving to a new one, and you are not \
                 enrolled: run 'pim mfa enroll' without it"
                    .into(),
            ));
        }
        proxy.mfa_enroll().await?
    };
    show_secret(&uri, &secret, new_device, json)
}

/// `pim mfa enroll --ticket T`: a first enrolment in fleet mode, with the one-time ticket a
/// fleet administrator issued.
pub(super) async fn enroll_with_ticket(
    ticket: &str,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let ticket = input::ticket(ticket, console)?;
    let proxy = connect().await?;
    let (uri, secret) = proxy.mfa_enroll_with_ticket(&ticket).await?;
    show_secret(&uri, &secret, false, json)
}

/// Prints a new secret: its otpauth URI, the secret and a QR code.
fn show_secret(uri: &str, secret: &str, new_device: bool, json: bool) -> Result<Outcome, Failure> {
    emit(
        json,
        || json!({ "uri": uri, "secret": secret, "new_device": new_device }),
        || {
            let qr = output::enroll_text(
                uri,
                secret,
                std::io::IsTerminal::is_terminal(&std::io::stdout()),
            );
            if new_device {
                output::new_device_text() + &qr
            } else {
                qr
            }
        },
    )?;
    Ok(Outcome::Done)
}

/// `pim mfa confirm`: the first code of a new secret (an enrolment's, or a new device's).
pub(super) async fn confirm(
    code: Option<&str>,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let code = input::code(code, true, &input::current_user(), console)?;
    let proxy = connect().await?;
    let codes = match proxy.mfa_confirm(&code).await {
        Ok(codes) => codes,
        Err(e) => {
            let rotating = proxy
                .mfa_status()
                .await
                .is_ok_and(|s| s.enrolled && s.pending);
            if rotating && matches!(e, PimError::InvalidCode(_)) {
                note(
                    "(a change of device is confirmed by a code of the new device, from the \
                     secret 'pim mfa enroll' showed last; the current device's codes do not count)",
                );
            }
            return Err(e.into());
        }
    };
    // A change of device keeps the recovery codes: pimd gives none then.
    let new_device = codes.is_empty();
    emit(
        json,
        || json!({ "recovery_codes": codes, "new_device": new_device }),
        || {
            if new_device {
                output::device_confirmed_text()
            } else {
                output::recovery_codes_text(&codes)
            }
        },
    )?;
    Ok(Outcome::Done)
}

pub(super) async fn status(json: bool) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    let status = proxy.mfa_status().await?;
    let clock = Clock::system();
    emit(
        json,
        || output::mfa_status_json(&status),
        || output::mfa_status_text(&status, &clock),
    )?;
    Ok(Outcome::Done)
}

/// `pim mfa recovery-codes`: not being enrolled is said before a code is asked for.
pub(super) async fn recovery_codes(
    code: Option<&str>,
    json: bool,
    console: &mut dyn Console,
) -> Result<Outcome, Failure> {
    let proxy = connect().await?;
    if !proxy.mfa_status().await?.enrolled {
        return Err(PimError::MfaNotEnrolled("you have no TOTP enrolment".into()).into());
    }
    let code = input::code(code, true, &input::current_user(), console)?;
    let codes = proxy.mfa_recovery_codes(&code).await?;
    emit(
        json,
        || json!({ "recovery_codes": codes }),
        || output::new_recovery_codes_text(&codes),
    )?;
    Ok(Outcome::Done)
}

pub(super) async fn admin_unlock(user: &str, json: bool) -> Result<Outcome, Failure> {
    check_name("user", user)?;
    let proxy = connect().await?;
    proxy.admin_mfa_unlock(user).await?;
    emit(
        json,
        || json!({ "user": user }),
        || {
            format!(
                "Ended the MFA lockout of {}; their enrolment and recovery codes are unchanged.\n",
                escape(user)
            )
        },
    )?;
    Ok(Outcome::Done)
}
