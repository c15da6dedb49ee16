//! TOTP second factor (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps), one-time recovery codes
//! and the lockout after repeated wrong codes. Pure: the caller passes the time in and keeps
//! the state (last used step, failure counters) in the database.

use pim_common::text::{self, escape};
use sha2::{Digest, Sha256};
use std::fmt;
use totp_rs::{Algorithm, Builder};

/// 160-bit secrets, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
pub const STEP_SECS: u64 = 30;
pub const DIGITS: usize = 6;
pub const RECOVERY_CODE_COUNT: usize = 10;

/// Steps accepted on either side of the current one, for clock drift and typing time.
const SKEW_STEPS: u64 = 1;

/// Crockford's base32 alphabet in lower case: no `i`, `l`, `o`, `u`, so nothing a person
/// could misread. 32 symbols give exactly 5 bits per character.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 10 characters × 5 bits = 50 bits per code.
const RECOVERY_CODE_CHARS: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MfaError {
    #[error("the system random number generator is unavailable ({0}); pimd cannot create secrets until getrandom(2) works")]
    RandomUnavailable(String),
    #[error("MFA issuer '{}' cannot be used: it must be non-empty, without ':' or control characters; fix [mfa] issuer in the configuration", escape(.0))]
    InvalidIssuer(String),
    #[error("account name '{}' cannot be used in an otpauth URI: it must be non-empty, without ':' or control characters", escape(.0))]
    InvalidAccount(String),
}

/// The shared TOTP secret (raw bytes). Debug never shows the bytes, so it cannot leak
/// through a log line or a panic message.
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    /// A fresh secret of `SECRET_BYTES` from the kernel's CSPRNG.
    pub fn generate() -> Result<Self, MfaError> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| MfaError::RandomUnavailable(e.to_string()))?;
        Ok(Self(bytes))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Unpadded RFC 4648 base32, as authenticator apps and `oathtool -b` expect.
    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone()).to_base32()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// The enrolment URI, `otpauth://totp/ISSUER:ACCOUNT?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30`,
/// with issuer and account percent-encoded. `account` is `user@host`.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> Result<String, MfaError> {
    // ':' separates issuer from account in the label; control characters would show up
    // garbled in the authenticator app.
    let usable = |s: &str| !s.is_empty() && !s.contains(':') && !s.chars().any(text::is_unsafe);
    if !usable(issuer) {
        return Err(MfaError::InvalidIssuer(issuer.to_string()));
    }
    if !usable(account) {
        return Err(MfaError::InvalidAccount(account.to_string()));
    }
    let url = totp(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build_noncompliant()
        .to_url()
        .map_err(|_| MfaError::InvalidAccount(account.to_string()))?;
    // totp-rs leaves out parameters equal to the defaults; spell them out so that apps which
    // assume other defaults still compute what verify_totp checks.
    Ok(format!(
        "{url}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    ))
}

/// The TOTP time step containing `now`. Times before the epoch count as step 0.
pub fn current_step(now: i64) -> u64 {
    u64::try_from(now).unwrap_or(0) / STEP_SECS
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpCheck {
    /// Correct and unused: the caller must store `step` as the last used step.
    Accepted {
        step: u64,
    },
    /// Correct, but for a step at or before the last used one.
    Replayed,
    Wrong,
}

/// Checks a TOTP code at `now`, allowing one step of skew either way. A code whose matching
/// step is <= `last_used_step` is `Replayed`: once a step is used, it and every earlier step
/// are dead, so a code seen over someone's shoulder cannot be used again. Codes are compared
/// in constant time. Anything but exactly 6 ASCII digits (after trimming spaces) is `Wrong`.
pub fn verify_totp(
    secret: &TotpSecret,
    code: &str,
    now: i64,
    last_used_step: Option<u64>,
) -> TotpCheck {
    let code = code.trim();
    if !looks_like_totp(code) {
        return TotpCheck::Wrong;
    }
    // Skew 0 here: we walk the window ourselves to learn every matching step, not just the
    // first, and judge each against the last used step.
    let totp = totp(secret).with_skew(0).build_noncompliant();
    let current = current_step(now);
    let mut matched_fresh = None;
    let mut matched_used = false;
    // No early exit: every candidate step costs the same, matched or not.
    for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
        // Token equality inside check() is constant-time.
        if totp.check(code, step * STEP_SECS).is_some() {
            if last_used_step.is_some_and(|last| step <= last) {
                matched_used = true;
            } else {
                // The highest: a code matching two steps of the window (a collision of six
                // digits) must kill both, or it would be accepted again for the later one.
                matched_fresh = Some(step);
            }
        }
    }
    match (matched_fresh, matched_used) {
        (Some(step), _) => TotpCheck::Accepted { step },
        (None, true) => TotpCheck::Replayed,
        (None, false) => TotpCheck::Wrong,
    }
}

/// A builder with pim's fixed parameters. `build_noncompliant` because the only check it
/// skips that could fail is the 128-bit minimum secret length, and secrets are ours
/// (`generate`) or were stored by us; HMAC works with any key length.
fn totp(secret: &TotpSecret) -> Builder {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_step_duration(STEP_SECS)
        .with_skew(SKEW_STEPS as u16)
        .with_secret(secret.as_bytes().to_vec())
}

/// No Debug: the plain code is a credential and must not reach a log by accident.
#[derive(Clone)]
pub struct RecoveryCode {
    /// Shown to the user once, e.g. `k7m2p-9xq4r`.
    pub plain: String,
    /// `hash_recovery_code(plain)`, the only form stored.
    pub hash: String,
}

/// `RECOVERY_CODE_COUNT` fresh, distinct recovery codes (50 bits each) with their hashes.
pub fn generate_recovery_codes() -> Result<Vec<RecoveryCode>, MfaError> {
    let mut codes: Vec<RecoveryCode> = Vec::with_capacity(RECOVERY_CODE_COUNT);
    while codes.len() < RECOVERY_CODE_COUNT {
        let mut random = [0u8; RECOVERY_CODE_CHARS];
        getrandom::fill(&mut random).map_err(|e| MfaError::RandomUnavailable(e.to_string()))?;
        // 256 is a multiple of 32, so masking to 5 bits keeps every symbol equally likely.
        let chars: String = random
            .iter()
            .map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)]))
            .collect();
        let half = RECOVERY_CODE_CHARS / 2;
        let plain = format!("{}-{}", &chars[..half], &chars[half..]);
        let hash = hash_recovery_code(&plain);
        // Collisions are astronomically unlikely, but a duplicate would silently leave the
        // user with one code fewer than printed.
        if codes.iter().all(|c| c.hash != hash) {
            codes.push(RecoveryCode { plain, hash });
        }
    }
    Ok(codes)
}

/// SHA-256 (lower-case hex) of the normalised code, for storage and lookup. Normalising trims,
/// lower-cases, drops dashes and spaces, and reads `o` as `0`, `i`/`l` as `1` (Crockford), so
/// the user may type the code as they read it. A plain hash is enough: the codes carry 50
/// random bits, and whoever can read the hashes (root, in the database) can read the TOTP
/// secret beside them anyway.
pub fn hash_recovery_code(code: &str) -> String {
    let digest = Sha256::digest(normalise_recovery_code(code).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `code` has the shape of a recovery code (as opposed to a TOTP code).
pub fn looks_like_recovery_code(code: &str) -> bool {
    let code = normalise_recovery_code(code);
    code.len() == RECOVERY_CODE_CHARS && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
}

/// Whether `code` is exactly `DIGITS` ASCII digits after trimming spaces.
pub fn looks_like_totp(code: &str) -> bool {
    let code = code.trim();
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

fn normalise_recovery_code(code: &str) -> String {
    code.trim()
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect()
}

/// `max_failures` wrong codes within `window_secs` lock the user's MFA for `lockout_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window_secs: u64,
    pub lockout_secs: u64,
}

/// A user's wrong-code counter, as stored. All times are unix seconds; 0 means never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureState {
    pub failures: u32,
    pub window_start: i64,
    pub locked_until: i64,
}

impl LockoutPolicy {
    /// `Err(locked_until)` while locked.
    pub fn check(&self, state: &FailureState, now: i64) -> Result<(), i64> {
        if now < state.locked_until {
            Err(state.locked_until)
        } else {
            Ok(())
        }
    }

    /// The state after a wrong code at `now`, and whether this failure started a lockout (so
    /// the caller audits the lockout once). A failure outside the current window starts a new
    /// one. Reaching `max_failures` locks until `now + lockout_secs` and empties the counter,
    /// so the user has a full budget when the lockout ends. While locked nothing changes:
    /// codes should not even be checked then, and the lockout is not prolonged.
    pub fn record_failure(&self, state: &FailureState, now: i64) -> (FailureState, bool) {
        if self.check(state, now).is_err() {
            return (*state, false);
        }
        let window_over = now >= state.window_start.saturating_add(secs(self.window_secs));
        let mut next = if state.failures == 0 || window_over {
            FailureState {
                failures: 1,
                window_start: now,
                locked_until: state.locked_until,
            }
        } else {
            FailureState {
                failures: state.failures.saturating_add(1),
                ..*state
            }
        };
        if next.failures < self.max_failures {
            return (next, false);
        }
        next.failures = 0;
        next.locked_until = now.saturating_add(secs(self.lockout_secs));
        (next, true)
    }

    /// The state after a correct code: cleared.
    pub fn record_success(&self) -> FailureState {
        FailureState::default()
    }
}

fn secs(duration: u64) -> i64 {
    i64::try_from(duration).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SECRET.to_vec())
    }

    /// The code for `step`, computed independently of verify_totp's window logic.
    fn code_at(secret: &TotpSecret, step: u64) -> String {
        totp(secret)
            .build_noncompliant()
            .generate(step * STEP_SECS)
            .to_string()
    }

    #[test]
    fn given_rfc6238_sha1_vectors_then_last_six_digits_accepted() {
        // RFC 6238 appendix B, SHA-1, 8 digits; a 6-digit code is the same value mod 10^6.
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        let secret = rfc_secret();
        for (time, code) in vectors {
            let six = &code[2..];
            assert_eq!(code_at(&secret, current_step(time)), six, "t={time}");
            assert_eq!(
                verify_totp(&secret, six, time, None),
                TotpCheck::Accepted {
                    step: current_step(time)
                },
                "t={time}"
            );
        }
    }

    #[test]
    fn given_one_step_of_skew_then_accepted_and_two_refused() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = current_step(now);
        for matched in [step - 1, step, step + 1] {
            let code = code_at(&secret, matched);
            assert_eq!(
                verify_totp(&secret, &code, now, None),
                TotpCheck::Accepted { step: matched }
            );
        }
        for far in [step - 2, step + 2] {
            let code = code_at(&secret, far);
            assert_eq!(verify_totp(&secret, &code, now, None), TotpCheck::Wrong);
        }
    }

    #[test]
    fn given_code_of_used_step_then_replayed() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = current_step(now);
        let code = code_at(&secret, step);
        assert_eq!(
            verify_totp(&secret, &code, now, None),
            TotpCheck::Accepted { step }
        );
        assert_eq!(
            verify_totp(&secret, &code, now, Some(step)),
            TotpCheck::Replayed
        );
        // Still refused when presented again in the next step, where it is within skew.
        assert_eq!(
            verify_totp(&secret, &code, now + 30, Some(step)),
            TotpCheck::Replayed
        );
    }

    #[test]
    fn given_earlier_step_after_later_one_used_then_replayed() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = current_step(now);
        let earlier = code_at(&secret, step - 1);
        assert_eq!(
            verify_totp(&secret, &earlier, now, Some(step + 1)),
            TotpCheck::Replayed
        );
        let later = code_at(&secret, step + 1);
        assert_eq!(
            verify_totp(&secret, &later, now, Some(step)),
            TotpCheck::Accepted { step: step + 1 }
        );
    }

    #[test]
    fn given_code_matching_two_steps_of_the_window_then_highest_recorded_and_not_reused() {
        // With the RFC secret the codes of steps 153567 and 153569 are both 468457 (found by
        // search), and both lie in the window around step 153568.
        let secret = rfc_secret();
        let (low, high) = (153_567, 153_569);
        assert_eq!(code_at(&secret, low), "468457");
        assert_eq!(code_at(&secret, high), "468457");
        let now = (low as i64 + 1) * STEP_SECS as i64;
        assert_eq!(
            verify_totp(&secret, "468457", now, None),
            TotpCheck::Accepted { step: high }
        );
        assert_eq!(
            verify_totp(&secret, "468457", now, Some(high)),
            TotpCheck::Replayed
        );
    }

    #[test]
    fn given_wrong_code_after_use_then_wrong_not_replayed() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = current_step(now);
        let good = code_at(&secret, step);
        let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(
            verify_totp(&secret, &wrong, now, Some(step)),
            TotpCheck::Wrong
        );
    }

    #[test]
    fn given_malformed_codes_then_wrong() {
        let secret = rfc_secret();
        let now = 59;
        for bad in [
            "",
            "28708",
            "2870822",
            "28708a",
            "+87082",
            "-87082",
            "287 082",
            "２８７０８２",
            "287082\n1",
        ] {
            assert_eq!(
                verify_totp(&secret, bad, now, None),
                TotpCheck::Wrong,
                "{bad:?}"
            );
        }
        assert_eq!(
            verify_totp(&secret, " 287082 ", now, None),
            TotpCheck::Accepted { step: 1 }
        );
    }

    #[test]
    fn given_times_then_current_step_divides_by_thirty() {
        assert_eq!(current_step(0), 0);
        assert_eq!(current_step(29), 0);
        assert_eq!(current_step(30), 1);
        assert_eq!(current_step(-5), 0);
    }

    #[test]
    fn given_generated_secret_then_base32_round_trips() {
        let secret = TotpSecret::generate().unwrap();
        assert_eq!(secret.as_bytes().len(), SECRET_BYTES);
        let encoded = secret.base32();
        assert_eq!(encoded.len(), 32);
        assert!(!encoded.contains('='));
        let decoded = totp_rs::Secret::try_from_base32(&encoded).unwrap();
        assert_eq!(decoded.as_bytes(), secret.as_bytes());
        assert_ne!(
            TotpSecret::generate().unwrap().as_bytes(),
            secret.as_bytes()
        );
    }

    #[test]
    fn given_rfc_secret_then_base32_is_the_known_encoding() {
        assert_eq!(rfc_secret().base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn given_secret_then_debug_hides_bytes() {
        let shown = format!("{:?}", rfc_secret());
        assert!(!shown.contains("49"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn given_oathtool_installed_then_codes_agree() {
        let oathtool = std::path::Path::new("/usr/bin/oathtool");
        if !oathtool.exists() {
            return;
        }
        let secret = TotpSecret::generate().unwrap();
        let now: i64 = 1_700_000_000;
        let out = std::process::Command::new(oathtool)
            .args(["--totp", "-b", &secret.base32(), "-N", &format!("@{now}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let code = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            verify_totp(&secret, code.trim(), now, None),
            TotpCheck::Accepted {
                step: current_step(now)
            }
        );
        assert_eq!(code.trim(), code_at(&secret, current_step(now)));
    }

    #[test]
    fn given_issuer_and_account_then_uri_is_complete_and_escaped() {
        let uri = otpauth_uri(&rfc_secret(), "ACME pim", "alice@web 1").unwrap();
        assert_eq!(
            uri,
            "otpauth://totp/ACME%20pim:alice%40web%201?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=ACME%20pim&algorithm=SHA1&digits=6&period=30"
        );
        let parsed = totp_rs::Totp::from_url(&uri).unwrap();
        assert_eq!(parsed.issuer(), Some("ACME pim"));
        assert_eq!(parsed.account_name(), "alice@web 1");
        assert_eq!(parsed.secret().as_bytes(), RFC_SECRET);
    }

    #[test]
    fn given_unusable_issuer_or_account_then_refused() {
        let secret = rfc_secret();
        for issuer in ["", "a:b", "bad\nissuer"] {
            assert_eq!(
                otpauth_uri(&secret, issuer, "alice@host"),
                Err(MfaError::InvalidIssuer(issuer.to_string()))
            );
        }
        for account in ["", "alice:x@host", "alice\x1b@host"] {
            assert_eq!(
                otpauth_uri(&secret, "pim", account),
                Err(MfaError::InvalidAccount(account.to_string()))
            );
        }
        let message = MfaError::InvalidIssuer("bad\nissuer".into()).to_string();
        assert!(message.contains("bad\\x0aissuer") && message.contains("[mfa] issuer"));
    }

    #[test]
    fn given_generated_recovery_codes_then_ten_distinct_well_formed() {
        let codes = generate_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        for code in &codes {
            assert_eq!(code.plain.len(), 11, "{}", code.plain);
            assert_eq!(code.plain.as_bytes()[5], b'-');
            assert!(looks_like_recovery_code(&code.plain), "{}", code.plain);
            assert!(!looks_like_totp(&code.plain));
            assert_eq!(code.hash, hash_recovery_code(&code.plain));
            assert_eq!(code.hash.len(), 64);
        }
        let mut hashes: Vec<&str> = codes.iter().map(|c| c.hash.as_str()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
    }

    #[test]
    fn given_recovery_code_variants_then_same_hash() {
        let canonical = hash_recovery_code("k7m2p-9xq41");
        for variant in [
            "k7m2p9xq41",
            " K7M2P-9XQ41 ",
            "k7m2p 9xq41",
            "k7m2p-9xq4l",
            "k7m2p-9xq4I",
        ] {
            assert_eq!(hash_recovery_code(variant), canonical, "{variant}");
        }
        assert_ne!(hash_recovery_code("k7m2p-9xq42"), canonical);
        assert_eq!(
            hash_recovery_code("0o0o0-o0o0o"),
            hash_recovery_code("0000000000")
        );
        // SHA-256 of "k7m2p9xq41": the stored form must never change.
        assert_eq!(
            canonical,
            "1af65b53841dad3a5de4bb279cb6e66bccb5146684de9a0c897ff50a64d3d0ba"
        );
    }

    #[test]
    fn given_code_shapes_then_classified() {
        assert!(looks_like_totp("123456"));
        assert!(looks_like_totp(" 123456 "));
        assert!(!looks_like_totp("12345"));
        assert!(!looks_like_totp("12345a"));
        assert!(looks_like_recovery_code("k7m2p-9xq4r"));
        assert!(looks_like_recovery_code("K7M2P9XQ4R"));
        assert!(!looks_like_recovery_code("k7m2p-9xq4"));
        assert!(!looks_like_recovery_code("k7m2p-9xq4u"));
        assert!(!looks_like_recovery_code("123456"));
    }

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 3,
        window_secs: 300,
        lockout_secs: 900,
    };

    #[test]
    fn given_failures_within_window_then_locked_once_until_lockout_ends() {
        let t0 = 1_000_000;
        let (s1, locked) = POLICY.record_failure(&FailureState::default(), t0);
        assert!(!locked);
        assert_eq!(
            s1,
            FailureState {
                failures: 1,
                window_start: t0,
                locked_until: 0
            }
        );
        let (s2, locked) = POLICY.record_failure(&s1, t0 + 100);
        assert!(!locked);
        assert_eq!(s2.failures, 2);
        assert_eq!(POLICY.check(&s2, t0 + 100), Ok(()));
        let (s3, locked) = POLICY.record_failure(&s2, t0 + 200);
        assert!(locked);
        assert_eq!(s3.locked_until, t0 + 200 + 900);
        assert_eq!(POLICY.check(&s3, t0 + 200), Err(t0 + 1100));
        assert_eq!(POLICY.check(&s3, t0 + 1099), Err(t0 + 1100));
        assert_eq!(POLICY.check(&s3, t0 + 1100), Ok(()));
        // Failures during the lockout neither re-announce nor prolong it.
        let (s4, locked) = POLICY.record_failure(&s3, t0 + 500);
        assert!(!locked);
        assert_eq!(s4, s3);
        // After the lockout the user has a full budget again.
        let (s5, locked) = POLICY.record_failure(&s3, t0 + 1100);
        assert!(!locked);
        assert_eq!(s5.failures, 1);
        let (s6, _) = POLICY.record_failure(&s5, t0 + 1101);
        let (_, locked) = POLICY.record_failure(&s6, t0 + 1102);
        assert!(locked);
    }

    #[test]
    fn given_failures_spread_beyond_window_then_counter_restarts() {
        let t0 = 1_000_000;
        let (s1, _) = POLICY.record_failure(&FailureState::default(), t0);
        let (s2, _) = POLICY.record_failure(&s1, t0 + 299);
        assert_eq!(s2.failures, 2);
        let (s3, locked) = POLICY.record_failure(&s2, t0 + 300);
        assert!(!locked);
        assert_eq!(
            s3,
            FailureState {
                failures: 1,
                window_start: t0 + 300,
                locked_until: 0
            }
        );
    }

    #[test]
    fn given_success_then_failures_and_lockout_cleared() {
        let (s1, _) = POLICY.record_failure(&FailureState::default(), 1_000);
        let (s2, _) = POLICY.record_failure(&s1, 1_001);
        assert_eq!(s2.failures, 2);
        let cleared = POLICY.record_success();
        assert_eq!(cleared, FailureState::default());
        // Two more failures do not lock: the earlier ones were forgiven.
        let (s3, _) = POLICY.record_failure(&cleared, 1_002);
        let (_, locked) = POLICY.record_failure(&s3, 1_003);
        assert!(!locked);
    }
}
