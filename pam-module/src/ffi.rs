//! The C boundary, and the only place with `unsafe`: the exported `pam_sm_*` entry points, a
//! borrowed wrapper around the PAM handle, and the few libpam calls the module makes
//! (`pam_get_item`, `pam_syslog`, `pam_prompt` for error messages).
//!
//! Every entry point runs its body under `catch_unwind`: a panic becomes PAM_SYSTEM_ERR and a
//! log line, never an unwind into the host. (The panic message is also written to stderr by
//! Rust's default panic hook; the module does not replace that hook, which is process-wide.)
//!
//! Declarations follow `<security/_pam_types.h>`, `<security/pam_modules.h>` and
//! `<security/pam_ext.h>` of Linux-PAM.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use crate::decision::{Item, Level, Outcome};

// Return values (_pam_types.h).
pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SYSTEM_ERR: c_int = 4;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_USER_UNKNOWN: c_int = 10;
pub const PAM_IGNORE: c_int = 25;

// Items for pam_get_item (_pam_types.h).
const PAM_SERVICE: c_int = 1;
const PAM_USER: c_int = 2;
const PAM_RUSER: c_int = 8;

// Message styles (_pam_types.h).
const PAM_ERROR_MSG: c_int = 3;

/// `pam_handle_t`, opaque.
#[repr(C)]
pub struct PamHandleT {
    _opaque: [u8; 0],
}

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *const PamHandleT, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_syslog(pamh: *const PamHandleT, priority: c_int, fmt: *const c_char, ...);
    fn pam_prompt(
        pamh: *mut PamHandleT,
        style: c_int,
        response: *mut *mut c_char,
        fmt: *const c_char,
        ...
    ) -> c_int;
}

/// The handle PAM passed to an entry point, borrowed for that call only.
struct PamHandle<'a> {
    raw: NonNull<PamHandleT>,
    _call: PhantomData<&'a mut PamHandleT>,
}

impl PamHandle<'_> {
    /// A string item (PAM_SERVICE, PAM_USER, PAM_RUSER): `None` when unset, `Some(Err(()))` when it is not
    /// UTF-8.
    fn string_item(&self, item_type: c_int) -> Option<Result<String, ()>> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: `raw` is the live handle PAM passed to this call; `item` is a valid place for
        // pam_get_item to store a pointer. For PAM_SERVICE and PAM_USER the stored pointer is
        // NULL or a NUL-terminated string owned by the handle; likewise PAM_RUSER.
        let status = unsafe { pam_get_item(self.raw.as_ptr(), item_type, &mut item) };
        if status != PAM_SUCCESS || item.is_null() {
            return None;
        }
        // SAFETY: non-NULL, NUL-terminated (see above), and not changed by PAM while this call
        // borrows the handle; the bytes are copied before returning.
        let text = unsafe { CStr::from_ptr(item.cast::<c_char>()) };
        Some(text.to_str().map(str::to_owned).map_err(|_| ()))
    }

    /// Writes one line to syslog (facility authpriv, tagged by libpam with module and service).
    fn log(&self, level: Level, text: &str) {
        let priority = match level {
            Level::Error => libc::LOG_ERR,
            Level::Warning => libc::LOG_WARNING,
            Level::Notice => libc::LOG_NOTICE,
            Level::Info => libc::LOG_INFO,
            Level::Debug => libc::LOG_DEBUG,
        };
        let text = c_string(text);
        // SAFETY: live handle; the format is the literal "%s" and the one variadic argument is
        // a NUL-terminated C string that outlives the call, as "%s" requires.
        unsafe { pam_syslog(self.raw.as_ptr(), priority, c"%s".as_ptr(), text.as_ptr()) };
    }

    /// Shows one line to the user through the application's conversation, as PAM_ERROR_MSG (a
    /// message, not a prompt: nothing is read back). Returns libpam's status.
    fn error_message(&self, text: &str) -> c_int {
        let text = c_string(text);
        // SAFETY: live handle; `response` NULL tells pam_prompt that no reply is wanted (it frees
        // any the application returns); format "%s" with one NUL-terminated string argument that
        // outlives the call.
        unsafe {
            pam_prompt(
                self.raw.as_ptr(),
                PAM_ERROR_MSG,
                ptr::null_mut(),
                c"%s".as_ptr(),
                text.as_ptr(),
            )
        }
    }
}

/// A C string of `text`, with any NUL (there should be none: lines are escaped) made visible.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\\x00")).unwrap_or_default()
}

/// The module's arguments as strings (not UTF-8 is shown with replacement characters, which no
/// valid argument contains, so such an argument is unknown or malformed).
///
/// # Safety
/// `argv` must be NULL or point to `argc` pointers, each NULL or a NUL-terminated string, valid
/// for the duration of the call, as PAM guarantees.
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: by this function's contract, `argv` points to `argc` readable pointers.
    let pointers = unsafe { std::slice::from_raw_parts(argv, count) };
    pointers
        .iter()
        .filter(|p| !p.is_null())
        // SAFETY: by this function's contract, each non-NULL pointer is a NUL-terminated string.
        .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        .collect()
}

/// Runs `body`, turning a panic into `Err` with its message.
fn guarded<F: FnOnce() -> c_int>(body: F) -> Result<c_int, String> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

/// The PAM code for an outcome.
fn code(outcome: &Outcome) -> c_int {
    match outcome {
        Outcome::Ignore => PAM_IGNORE,
        Outcome::Allow => PAM_SUCCESS,
        Outcome::Deny(_) => PAM_PERM_DENIED,
        Outcome::UserUnknown => PAM_USER_UNKNOWN,
        Outcome::SystemError => PAM_SYSTEM_ERR,
    }
}

/// The account check, on a handle. PAM_USER and PAM_RUSER are passed as they are (a name that
/// is not UTF-8 included): the decision tells whether it needs them, after the `services=`
/// filter.
fn account(pamh: &PamHandle<'_>, args: &[String]) -> c_int {
    let service = pamh.string_item(PAM_SERVICE).and_then(Result::ok);
    let user = pamh.string_item(PAM_USER);
    let ruser = pamh.string_item(PAM_RUSER);
    let decision = crate::check_account(args, service.as_deref(), item(&user), item(&ruser));
    for line in &decision.log {
        pamh.log(line.level, &line.text);
    }
    if let Outcome::Deny(message) = &decision.outcome {
        let mut status = pamh.error_message(message);
        if let Some(afterword) = crate::decision::afterword(service.as_deref()) {
            if status == PAM_SUCCESS {
                status = pamh.error_message(afterword);
            }
        }
        if status != PAM_SUCCESS {
            pamh.log(
                Level::Debug,
                &format!("could not show the refusal to the user (conversation status {status})"),
            );
        }
    }
    code(&decision.outcome)
}

/// A string item as the decision takes it.
fn item(value: &Option<Result<String, ()>>) -> Item<'_> {
    match value {
        None => Item::Unset,
        Some(Ok(text)) => Item::Text(text),
        Some(Err(())) => Item::NotUtf8,
    }
}

/// Shared shape of every entry point: validate the handle, run `body` guarded, log a panic.
///
/// # Safety
/// `pamh` must be NULL or the handle PAM passed to the entry point; `argc`/`argv` as for
/// [`arguments`].
unsafe fn entry(
    pamh: *mut PamHandleT,
    argc: c_int,
    argv: *const *const c_char,
    body: fn(&PamHandle<'_>, &[String]) -> c_int,
) -> c_int {
    let Some(raw) = NonNull::new(pamh) else {
        return PAM_SYSTEM_ERR;
    };
    let handle = PamHandle {
        raw,
        _call: PhantomData,
    };
    let result = guarded(|| {
        // SAFETY: forwarded from this function's contract.
        let args = unsafe { arguments(argc, argv) };
        body(&handle, &args)
    });
    match result {
        Ok(code) => code,
        Err(message) => {
            // Logging must not panic again either.
            let _ = guarded(|| {
                handle.log(
                    Level::Error,
                    &format!(
                        "internal error (panic): {}; returning PAM_SYSTEM_ERR",
                        pim_common::text::escape(&message)
                    ),
                );
                PAM_SUCCESS
            });
            PAM_SYSTEM_ERR
        }
    }
}

fn ignore(_: &PamHandle<'_>, _: &[String]) -> c_int {
    PAM_IGNORE
}

/// Account management: the module's one real check.
///
/// # Safety
/// Called by libpam with its handle and the module line's arguments.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: *mut PamHandleT,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam passes its live handle and the line's argc/argv.
    unsafe { entry(pamh, argc, argv, account) }
}

/// The entry points of the other PAM phases. pam_pim is an account module only: each of these
/// returns PAM_IGNORE, so that a line put in the wrong phase changes nothing.
macro_rules! ignored_phases {
    ($($name:ident),+ $(,)?) => {$(
        /// PAM_IGNORE: pam_pim only acts in the account phase.
        ///
        /// # Safety
        /// Called by libpam with its handle and the module line's arguments.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            pamh: *mut PamHandleT,
            _flags: c_int,
            argc: c_int,
            argv: *const *const c_char,
        ) -> c_int {
            // SAFETY: libpam passes its live handle and the line's argc/argv.
            unsafe { entry(pamh, argc, argv, ignore) }
        }
    )+};
}

ignored_phases!(
    pam_sm_authenticate,
    pam_sm_setcred,
    pam_sm_open_session,
    pam_sm_close_session,
    pam_sm_chauthtok,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_panicking_body_then_guarded_returns_its_message() {
        assert_eq!(guarded(|| PAM_IGNORE), Ok(PAM_IGNORE));
        assert_eq!(guarded(|| panic!("boom")), Err("boom".to_string()));
        let n = 7;
        assert_eq!(guarded(|| panic!("boom {n}")), Err("boom 7".to_string()));
    }

    #[test]
    fn given_outcomes_then_pam_codes_match_the_headers() {
        assert_eq!(code(&Outcome::Allow), 0);
        assert_eq!(code(&Outcome::Deny(String::new())), 6);
        assert_eq!(code(&Outcome::UserUnknown), 10);
        assert_eq!(code(&Outcome::SystemError), 4);
        assert_eq!(code(&Outcome::Ignore), 25);
    }

    #[test]
    fn given_a_null_handle_then_system_error_and_no_crash() {
        // SAFETY: a NULL handle is part of `entry`'s contract and is refused before any use.
        let status = unsafe { pam_sm_acct_mgmt(ptr::null_mut(), 0, 0, ptr::null()) };
        assert_eq!(status, PAM_SYSTEM_ERR);
    }

    #[test]
    fn given_c_arguments_then_converted_and_nulls_skipped() {
        let a = c"groups=sudo";
        let b = c"debug";
        let argv = [a.as_ptr(), ptr::null(), b.as_ptr()];
        // SAFETY: `argv` holds 3 pointers, NULL or NUL-terminated, alive for the call.
        let args = unsafe { arguments(3, argv.as_ptr()) };
        assert_eq!(args, ["groups=sudo", "debug"]);
        // SAFETY: NULL argv and negative argc are refused before any read.
        assert!(unsafe { arguments(-1, argv.as_ptr()) }.is_empty());
        // SAFETY: as above.
        assert!(unsafe { arguments(2, ptr::null()) }.is_empty());
    }

    #[test]
    fn given_text_with_nul_then_c_string_keeps_it_visible() {
        assert_eq!(c_string("a\0b").as_bytes(), b"a\\x00b");
    }
}
