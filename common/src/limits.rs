//! A role's limits on a request (its longest duration, its shortest reason), checked by pimd
//! and, before any prompt for a code, by the client from the role's data (`RoleInfo`).

use crate::duration;

/// The duration to grant, `requested_secs` (0: the role's default), refused above `max_secs`.
pub fn check_duration(role: &str, requested_secs: u64, max_secs: u64) -> Result<(), String> {
    if requested_secs > max_secs {
        return Err(format!(
            "{} is longer than role {role}'s maximum of {}; ask for less with -d",
            duration::format(requested_secs),
            duration::format(max_secs)
        ));
    }
    Ok(())
}

/// A reason of at least `min_chars` characters, when the role requires one.
pub fn check_reason(
    role: &str,
    required: bool,
    min_chars: u32,
    reason: &str,
) -> Result<(), String> {
    if !required {
        return Ok(());
    }
    let length = reason.trim().chars().count();
    if length >= min_chars as usize {
        return Ok(());
    }
    Err(if length == 0 {
        format!("role {role} requires a reason; give one with -r")
    } else {
        format!(
            "role {role} requires a reason of at least {min_chars} characters (yours has {length}); say more with -r"
        )
    })
}
